// SPDX-License-Identifier: Apache-2.0
// `ebpfnet doctor` and `ebpfnet verify` as a user runs them. Missing filesystems are simulated in a
// private mount namespace, so the machine's own mounts are never touched.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { packageDir } from '../../src/loader/paths.js';
import { describeKernel } from '../helpers/kernel.js';

const cli = join(packageDir(), 'dist', 'cli', 'main.js');

describeKernel('doctor and verify', () => {
  it('doctor exits 0 here and says every datapath is ready', () => {
    const r = spawnSync(process.execPath, [cli, 'doctor'], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^filter\s+ready$/m);
    expect(r.stdout).toMatch(/^trace\s+ready$/m);
    expect(r.stdout).toMatch(/^lb\s+ready$/m);
  });

  it('doctor mounts bpffs and tracefs when they are missing, and says so', () => {
    const script = `umount -l /sys/fs/bpf 2>/dev/null; umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null;
      grep -qE ' /sys/fs/bpf bpf' /proc/self/mounts && echo STILL-MOUNTED;
      ${process.execPath} ${cli} doctor`;
    // a host without them: the shell is pid 1 of its own pid namespace, in a private copy of the mounts
    // (a private mount namespace under another pid 1 is ip netns exec's case, where doctor refuses)
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', '--pid', '--fork', '--mount-proc', 'sh', '-c', script], { encoding: 'utf8' });
    expect(r.stdout).not.toContain('STILL-MOUNTED');
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^bpffs\s+fixed\s+mounted it at \/sys\/fs\/bpf$/m);
    expect(r.stderr).toMatch(/^mounted bpffs at \/sys\/fs\/bpf$/m);
    expect(r.stderr).toMatch(/^mounted tracefs at \/sys\/kernel\/tracing$/m);
  });

  it('doctor --json is machine-readable', () => {
    const r = spawnSync(process.execPath, [cli, 'doctor', '--json'], { encoding: 'utf8' });
    const j = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ name: string; status: string }> };
    expect(j.ok).toBe(true);
    expect(j.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['privilege', 'kernel', 'BTF', 'JIT', 'libbpf', 'bpffs', 'tracefs', 'cgroup v2']));
  });

  it('verify loads every program and prints the table against the baseline', () => {
    const r = spawnSync(process.execPath, [cli, 'verify', '--json'], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { rows: Array<{ program: string; verdict: string; insns: number }>; regressions: unknown[] };
    expect(j.rows.length).toBeGreaterThanOrEqual(2);
    for (const row of j.rows) {
      // an LSM program may be refused by the kernel's policy on bpf() (the tracer then runs without it)
      expect(row.verdict === 'ok' || (row.verdict === 'refused' && row.program === 'tr_lsm_mkdir'), row.program).toBe(true);
      if (row.verdict === 'ok') expect(row.insns).toBeGreaterThan(0);
    }
    expect(j.regressions).toEqual([]);
  });

  it('verify fails and prints the end of the verifier log for a rejected program', () => {
    const r = spawnSync(process.execPath, [cli, 'verify', '--dir', join(packageDir(), 'build', 'fixtures')], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/reject\s+reject_xdp\s+xdp\s+rejected/);
    expect(r.stdout).toContain('invalid access to packet');
    expect(r.stdout).toContain('REGRESSION reject/reject_xdp: the verifier rejects it');
  });
});

describeKernel('implicit mounts are said, bad input is refused before the kernel', () => {
  it('filter --pin on a host without bpffs mounts it and says so in one line', () => {
    // a private world: own mounts without bpffs, own pid 1, own network namespace (only lo)
    const script = `umount -l /sys/fs/bpf 2>/dev/null; ip link set lo up;
      ${process.execPath} ${cli} filter --pin --iface lo --deny tcp/9 --force; echo "rc=$?";
      ${process.execPath} ${cli} unload --iface lo`;
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', '--pid', '--fork', '--mount-proc', '--net', 'sh', '-c', script], { encoding: 'utf8' });
    expect(r.stdout, r.stdout + r.stderr).toContain('rc=0');
    expect(r.stderr.match(/^mounted bpffs at \/sys\/fs\/bpf$/gm), r.stderr).toHaveLength(1);
    expect(r.stdout).toMatch(/^lo: filter detached and unpinned$/m);
  });

  it('lb add without /PROTO is a syntax error (exit 2) even where no balancer is attached', () => {
    const r = spawnSync(process.execPath, [cli, 'lb', 'add', '10.96.0.1:80'], { encoding: 'utf8', env: { ...process.env, EBPFNET_LB_PIN_DIR: '/sys/fs/bpf/ebpfnet-small-none' } });
    expect(r.stderr).toBe("ebpfnet: lb add: service '10.96.0.1:80' has no protocol; write VIP:PORT/PROTO, e.g. 10.96.0.10:80/tcp or [fd00::1]:53/udp\n");
    expect(r.status).toBe(2);
  });
});
