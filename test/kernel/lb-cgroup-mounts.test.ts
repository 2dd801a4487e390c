// SPDX-License-Identifier: Apache-2.0
// `lb attach --cgroup DIR` takes a cgroup on any cgroup2 mount (Cilium's /run/cilium/cgroupv2, a
// container runtime's view): the kernel says what a path is (statfs), not where the usual mount is.
// The second mount lives in a private mount namespace (unshare -m), so the host's mounts never change.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensureCgroup2 } from '../../src/loader/index.js';
import { CLI, runCli } from '../helpers/cli.js';
import { describeKernel, sh } from '../helpers/kernel.js';

const PIN_ROOT = `/sys/fs/bpf/ebpfnet-test-cgmounts-${process.pid}`;
const ENV = { ...process.env, EBPFNET_LB_PIN_DIR: `${PIN_ROOT}/lb` };

const attached = (cg: string): string[] =>
  (JSON.parse(sh('bpftool', ['-j', 'cgroup', 'show', cg]).trim() || '[]') as Array<{ name: string }>).map((p) => p.name).filter((n) => n.startsWith('lb_')).sort();

describeKernel('lb attach on a second cgroup2 mount', () => {
  let cg = '';
  const name = `ebpfnet-cgmount-${process.pid}`;
  let mnt = '';

  beforeAll(() => {
    cg = join(ensureCgroup2().path, name);
    mkdirSync(cg);
    mnt = mkdtempSync(join(tmpdir(), 'ebpfnet-cg2-'));
  });

  afterAll(() => {
    if (existsSync(`${PIN_ROOT}/lb`)) runCli(['lb', 'detach'], { env: ENV });
    rmSync(PIN_ROOT, { recursive: true, force: true });
    if (cg && existsSync(cg)) rmdirSync(cg);
    if (mnt) rmSync(mnt, { recursive: true, force: true });
  });

  it('a cgroup named through another cgroup2 mount is the same cgroup: attach works and lands on it', () => {
    // cgroup2 mounted again at a temporary directory, inside a mount namespace of the command's own
    const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount -t cgroup2 none ${mnt} && exec "$0" "$@"`, process.execPath, CLI, 'lb', 'attach', '--cgroup', join(mnt, name)], {
      encoding: 'utf8',
      env: ENV,
      timeout: 30_000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^lb: attached 8 programs to ${join(mnt, name)}`));
    // seen through the usual mount: the programs sit on that cgroup
    expect(attached(cg)).toEqual(['lb_connect4', 'lb_connect6', 'lb_getpeername4', 'lb_getpeername6', 'lb_recvmsg4', 'lb_recvmsg6', 'lb_sendmsg4', 'lb_sendmsg6']);
    const d = runCli(['lb', 'detach'], { env: ENV });
    expect(d.status, d.stderr).toBe(0);
    expect(attached(cg)).toEqual([]);
  });

  it('a directory that is not a cgroup v2 one is refused in one line, and nothing is attached', () => {
    const r = runCli(['lb', 'attach', '--cgroup', mnt], { env: ENV });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`ebpfnet: lb attach: ${mnt} is not a cgroup v2 directory; give a cgroup under a cgroup2 mount such as ${ensureCgroup2().path}, or a path relative to it\n`);
    const gone = runCli(['lb', 'attach', '--cgroup', join(mnt, 'nope')], { env: ENV });
    expect(gone.status).toBe(1);
    expect(gone.stderr).toMatch(/^ebpfnet: lb attach: no cgroup at .*\/nope; create it/);
    expect(existsSync(`${PIN_ROOT}/lb`) && sh('ls', [`${PIN_ROOT}/lb`]).trim() !== '').toBe(false);
  });
});
