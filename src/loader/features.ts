// SPDX-License-Identifier: Apache-2.0
// What this machine can run, checked rather than assumed: privilege, kernel, BTF, JIT, the
// pseudo-filesystems, libbpf, and the program and map types each datapath needs. `ebpfnet doctor`
// presents it; commands use the same checks to fail early with the right NotSupportedError.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { release } from 'node:os';
import { isEbpfnetError } from '../errors.js';
import { libbpf } from '../libbpf/index.js';
import { MAP_TYPE_BY_KIND, PROG_TYPE_BY_KIND } from './kinds.js';
import { bpfObjectDir } from './paths.js';
import { activeLsms, ensureTracefs, isRoot, type MountResult } from './system.js';
import { ensureBpffs, ensureCgroup2 } from './pinfs.js';

export type CheckStatus = 'ok' | 'fixed' | 'missing' | 'optional';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** what to do when it is missing */
  fix?: string;
  /** where it is, for the mount checks */
  path?: string;
}

export interface DatapathReadiness {
  datapath: 'filter' | 'trace' | 'lb';
  ready: boolean;
  needs: string[];
}

export interface MachineReport {
  checks: Check[];
  datapaths: DatapathReadiness[];
  mounted: MountResult[];
  ok: boolean;
}

const MIN_KERNEL: [number, number] = [5, 15];

export function kernelVersion(rel = release()): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/** CAP_NET_ADMIN (12), CAP_SYS_ADMIN (21), CAP_PERFMON (38), CAP_BPF (39) from /proc/self/status. */
function capabilities(): { bpf: boolean; netAdmin: boolean; perfmon: boolean; sysAdmin: boolean } {
  const m = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
  const eff = m ? BigInt(`0x${m[1]}`) : 0n;
  const has = (bit: number): boolean => (eff & (1n << BigInt(bit))) !== 0n;
  return { bpf: has(39) || has(21), netAdmin: has(12), perfmon: has(38) || has(21), sysAdmin: has(21) };
}

const onPath = (cmd: string): string | null => {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
};

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (r.stdout || r.stderr || '').split('\n')[0].trim();
}

/** 1: supported, 0: not, <0: could not tell (not root, or libbpf missing) */
function probeProg(kind: keyof typeof PROG_TYPE_BY_KIND): number {
  try {
    return libbpf().libbpf_probe_bpf_prog_type(PROG_TYPE_BY_KIND[kind], null);
  } catch {
    return -1;
  }
}

function probeMap(kind: keyof typeof MAP_TYPE_BY_KIND): number {
  try {
    return libbpf().libbpf_probe_bpf_map_type(MAP_TYPE_BY_KIND[kind], null);
  } catch {
    return -1;
  }
}

function mountCheck(name: string, fn: () => MountResult, mounted: MountResult[]): Check {
  try {
    const r = fn();
    if (r.mounted) mounted.push(r);
    return { name, status: r.mounted ? 'fixed' : 'ok', detail: r.mounted ? `mounted it at ${r.path}` : `at ${r.path}`, path: r.path };
  } catch (e) {
    // under ip netns exec mounting is not the fix: running without a private /sys is (the hint)
    if (isEbpfnetError(e) && e.code === 'EBPFNET_PRIVATE_MOUNTS' && e.hint) return { name, status: 'missing', detail: e.message.slice(0, -(e.hint.length + 2)), fix: e.hint };
    return { name, status: 'missing', detail: isEbpfnetError(e) ? e.message : String(e), fix: 'run as root so ebpfnet can mount it' };
  }
}

/**
 * Checks the machine. As root it mounts bpffs, tracefs and cgroup v2 when they are missing (and
 * says so in `mounted`); without root it only reports.
 */
export function probeMachine(): MachineReport {
  const checks: Check[] = [];
  const mounted: MountResult[] = [];
  const add = (c: Check): Check => (checks.push(c), c);

  const caps = capabilities();
  const root = isRoot();
  const priv = add(
    root || (caps.bpf && caps.netAdmin && caps.perfmon)
      ? { name: 'privilege', status: 'ok', detail: root ? 'running as root' : 'CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON' }
      : { name: 'privilege', status: 'missing', detail: 'not root and without CAP_BPF/CAP_NET_ADMIN/CAP_PERFMON', fix: 'run as root (a root shell, or sudo)' },
  );

  const [maj, min] = kernelVersion();
  const kernelOk = maj > MIN_KERNEL[0] || (maj === MIN_KERNEL[0] && min >= MIN_KERNEL[1]);
  add({
    name: 'kernel',
    status: kernelOk ? 'ok' : 'missing',
    detail: `${release()}${kernelOk ? '' : ` (ebpfnet needs ${MIN_KERNEL.join('.')} or newer)`}`,
    fix: kernelOk ? undefined : 'use Ubuntu 22.04 or newer (kernel 5.15+)',
  });

  const btf = existsSync('/sys/kernel/btf/vmlinux');
  add({
    name: 'BTF',
    status: btf ? 'ok' : 'missing',
    detail: btf ? '/sys/kernel/btf/vmlinux' : 'no /sys/kernel/btf/vmlinux: CO-RE objects cannot be relocated',
    fix: btf ? undefined : 'use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every Ubuntu kernel since 20.10)',
  });

  let jit = 'unknown';
  try {
    jit = readFileSync('/proc/sys/net/core/bpf_jit_enable', 'utf8').trim();
  } catch {
    /* absent on kernels with the JIT always on and the knob removed */
  }
  add({
    name: 'JIT',
    status: jit === '0' ? 'missing' : 'ok',
    detail: jit === '0' ? 'the BPF JIT is off: programs run interpreted' : jit === 'unknown' ? 'always on' : `bpf_jit_enable=${jit}`,
    fix: jit === '0' ? 'sysctl -w net.core.bpf_jit_enable=1' : undefined,
  });

  let libbpfOk = false;
  try {
    const b = libbpf();
    libbpfOk = true;
    add({ name: 'libbpf', status: 'ok', detail: `${b.libbpf_version_string()} (libbpf.so.1)` });
  } catch (e) {
    add({ name: 'libbpf', status: 'missing', detail: (e as Error).message, fix: 'apt-get install libbpf1' });
  }

  const bpffs = add(mountCheck('bpffs', ensureBpffs, mounted));
  const tracefs = add(mountCheck('tracefs', ensureTracefs, mounted));
  const cgroup2 = add(mountCheck('cgroup v2', ensureCgroup2, mounted));

  // the tracer's other entry paths: optional, it traces syscalls without them and says what it misses
  const uringTp = tracefs.status !== 'missing' && existsSync(`${tracefs.path}/events/io_uring/io_uring_submit_req`) && existsSync(`${tracefs.path}/events/io_uring/io_uring_complete`);
  add({
    name: 'io_uring tracepoints',
    status: uringTp ? 'ok' : 'optional',
    detail: uringTp ? 'io_uring/io_uring_submit_req and io_uring_complete: trace sees IORING_OP_MKDIRAT' : 'absent: trace cannot see mkdirat submitted through io_uring',
  });
  const lsm = activeLsms();
  if (lsm.mounted) mounted.push(lsm.mounted);
  const bpfLsm = lsm.lsms?.includes('bpf') ?? false;
  add({
    name: 'BPF LSM',
    status: bpfLsm ? 'ok' : 'optional',
    detail: bpfLsm
      ? `active (${lsm.lsms!.join(',')}): trace can see mkdirs made by kernel threads, where the kernel lets lsm programs load`
      : lsm.lsms === null
        ? 'cannot tell (no securityfs): trace may not see mkdirs made by kernel threads'
        : `off (active LSMs: ${lsm.lsms.join(',')}): trace cannot see mkdirs made by kernel threads; boot with lsm=${[...lsm.lsms, 'bpf'].join(',')}`,
  });

  const dir = bpfObjectDir();
  const objects = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.bpf.o')) : [];
  add({
    name: 'BPF objects',
    status: objects.length ? 'ok' : 'missing',
    detail: objects.length ? `${objects.length} in ${dir}` : `none in ${dir}`,
    fix: objects.length ? undefined : 'build them: npm run build (needs clang)',
  });

  const clang = onPath('clang') ?? onPath('clang-19') ?? onPath('clang-16') ?? onPath('clang-14');
  add({
    name: 'clang',
    status: clang ? 'ok' : 'optional',
    detail: clang ? firstLine(clang, ['--version']) : 'not installed (only needed to build from source)',
  });
  const bpftool = onPath('bpftool');
  add({
    name: 'bpftool',
    status: bpftool ? 'ok' : 'optional',
    detail: bpftool ? firstLine(bpftool, ['version']) : 'not installed (only needed to build from source)',
  });

  const canProbe = priv.status === 'ok' && libbpfOk;
  const feature = (label: string, v: number): string | null => (canProbe && v !== 1 ? label : null);
  const base = [priv.status !== 'ok' ? 'privilege' : null, libbpfOk ? null : 'libbpf', btf ? null : 'BTF', kernelOk ? null : 'kernel', objects.length ? null : 'BPF objects'];
  const mkdirTp = tracefs.status !== 'missing' && existsSync(`${tracefs.path}/events/syscalls/sys_enter_mkdirat`);
  const datapaths: DatapathReadiness[] = [
    { datapath: 'filter', needs: [...base, feature('XDP programs', probeProg('xdp')), feature('LPM trie maps', probeMap('lpm_trie')), bpffs.status === 'missing' ? 'bpffs (for --pin)' : null] },
    {
      datapath: 'trace',
      needs: [...base, feature('tracepoint programs', probeProg('tracepoint')), feature('ring buffers', probeMap('ringbuf')), tracefs.status === 'missing' ? 'tracefs' : null, tracefs.status !== 'missing' && !mkdirTp ? 'syscall tracepoints' : null],
    },
    { datapath: 'lb', needs: [...base, feature('cgroup sock_addr programs', probeProg('cgroup_sock_addr')), cgroup2.status === 'missing' ? 'cgroup v2' : null, bpffs.status === 'missing' ? 'bpffs' : null] },
  ].map((d) => {
    const needs = d.needs.filter((x): x is string => !!x);
    return { datapath: d.datapath as DatapathReadiness['datapath'], ready: needs.length === 0, needs };
  });
  return { checks, datapaths, mounted, ok: checks.every((c) => c.status !== 'missing') && datapaths.every((d) => d.ready) };
}
