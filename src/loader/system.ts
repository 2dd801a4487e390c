// SPDX-License-Identifier: Apache-2.0
// Facts about this machine the loader needs (CPUs, page size, interfaces, privilege) and the
// pseudo-filesystems BPF depends on: bpffs for pins, tracefs for tracepoints, cgroup v2 for cgroup
// hooks. ensure*() mounts what is missing when we are root and says what it did.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { EbpfnetError } from '../errors.js';
import { libbpf } from '../libbpf/index.js';

let ncpus = 0;
export function possibleCpus(): number {
  if (!ncpus) ncpus = libbpf().libbpf_num_possible_cpus();
  return ncpus;
}

let pagesz = 0;
export function pageSize(): number {
  if (!pagesz) pagesz = Number(libbpf().sysconf(30 /* _SC_PAGESIZE */));
  return pagesz;
}

/**
 * glibc's allocator for a long-running process: blocks of `bytes` and more get mappings of their
 * own, returned to the system when freed. (glibc otherwise raises this threshold to the largest block
 * freed so far, up to 32 MiB, and serves later large blocks from a heap that keeps them once freed.)
 */
export function mmapThreshold(bytes: number): void {
  const M_MMAP_THRESHOLD = -3;
  libbpf().mallopt(M_MMAP_THRESHOLD, bytes);
}

/** glibc: returns the free memory of its heaps to the system (malloc_trim). */
export function trimHeap(): void {
  libbpf().malloc_trim(0);
}

export const isRoot = (): boolean => process.getuid?.() === 0;

/** Whether a process with this pid exists (EPERM: it does, but belongs to another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The cookie of this process's network namespace: what bpf_get_netns_cookie() returns for its
 * sockets (SO_NETNS_COOKIE, Linux 5.14+). null when the kernel cannot say.
 */
export function netnsCookie(): bigint | null {
  const b = libbpf();
  const fd = b.socket(1 /* AF_UNIX */, 2 /* SOCK_DGRAM */, 0);
  if (fd < 0) return null;
  try {
    const val = Buffer.alloc(8);
    const len = [8];
    if (b.getsockopt(fd, 1 /* SOL_SOCKET */, 71 /* SO_NETNS_COOKIE */, val, len) < 0) return null;
    return val.readBigUInt64LE(0);
  } finally {
    b.close(fd);
  }
}

export function requireRoot(op: string): void {
  if (!isRoot()) throw new EbpfnetError('EBPFNET_PERMISSION', op, 'needs root', { hint: 'run it as root: from a root shell, or with sudo (needs CAP_BPF and CAP_NET_ADMIN)' });
}

/** Interfaces of this process's network namespace (/proc/net/dev follows the netns; /sys may not). */
export function interfaceNames(): string[] {
  try {
    return readFileSync('/proc/net/dev', 'utf8')
      .split('\n')
      .slice(2)
      .map((l) => l.split(':')[0].trim())
      .filter(Boolean)
      .sort();
  } catch {
    return [];
  }
}

/** The index of interface `name` in this network namespace, 0 when there is none. */
export const lookupIfindex = (name: string): number => libbpf().if_nametoindex(name);

/** Whether an interface of this name is in this network namespace (no listing, one call). */
export const interfaceExists = (name: string): boolean => lookupIfindex(name) !== 0;

/** The name of interface `ifindex` in this network namespace, or null when there is none. */
export function ifname(ifindex: number): string | null {
  const buf = Buffer.alloc(16);
  return libbpf().if_indextoname(ifindex, buf) ? buf.toString('latin1', 0, buf.indexOf(0)) : null;
}

/** ifindex of a named interface, with the names that do exist when it does not. */
export function ifindex(name: string): number {
  const i = lookupIfindex(name);
  if (!i) {
    throw new EbpfnetError('EBPFNET_NOT_FOUND', `find interface ${name}`, `no interface named ${name}`, {
      hint: `interfaces here: ${interfaceNames().join(', ') || 'none'}`,
    });
  }
  return i;
}

export interface Mount {
  source: string;
  target: string;
  fstype: string;
}

export function mounts(): Mount[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [source, target, fstype] = l.split(' ');
      // /proc/mounts escapes spaces and friends as octal
      return { source, target: target.replace(/\\(\d{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))), fstype };
    });
}

export const BPFFS = '/sys/fs/bpf';
export const TRACEFS = '/sys/kernel/tracing';
export const SECURITYFS = '/sys/kernel/security';
/** ebpfnet's folder in bpffs (pins; see dirs.ts) */
export const PIN_ROOT = `${BPFFS}/ebpfnet`;
/** ebpfnet's folder in /run (records, locks, the lab, a cgroup v2 mount of last resort) */
export const RUN_ROOT = '/run/ebpfnet';
export const CGROUP2_FALLBACK = `${RUN_ROOT}/cgroup2`;

export interface MountResult {
  what: 'bpffs' | 'tracefs' | 'cgroup2' | 'securityfs';
  path: string;
  /** true when this call mounted it */
  mounted: boolean;
}

type MountListener = (m: MountResult) => void;
const mountListeners = new Set<MountListener>();

/**
 * Calls `fn` whenever this process mounts bpffs, tracefs or cgroup v2 itself (whichever command or
 * library call needed it), so a face can say so in one line; returns the unsubscribe.
 */
export function onMount(fn: MountListener): () => void {
  mountListeners.add(fn);
  return () => mountListeners.delete(fn);
}

export function mountFs(fstype: string, target: string, what: MountResult['what']): void {
  if (!isRoot()) {
    throw new EbpfnetError('EBPFNET_PERMISSION', `mount ${what}`, `${what} is not mounted at ${target} and only root can mount it`, {
      hint: `run as root, or mount it yourself: sudo mount -t ${fstype} ${fstype === 'cgroup2' ? 'none' : fstype} ${target}`,
    });
  }
  mkdirSync(target, { recursive: true });
  try {
    execFileSync('mount', ['-t', fstype, fstype === 'cgroup2' ? 'none' : fstype, target], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const msg = String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim();
    throw new EbpfnetError('EBPFNET_NOT_SUPPORTED', `mount ${what}`, `mount -t ${fstype} ${target} failed: ${msg}`, {
      hint: `this kernel may lack ${fstype} support`,
    });
  }
  for (const fn of mountListeners) fn({ what, path: target, mounted: true });
}

/** tracefs, where libbpf finds tracepoint ids (it prefers /sys/kernel/debug/tracing when that exists). */
export function ensureTracefs(): MountResult {
  const m = mounts().find((x) => x.fstype === 'tracefs');
  if (m) return { what: 'tracefs', path: m.target, mounted: false };
  if (existsSync('/sys/kernel/debug/tracing/events')) return { what: 'tracefs', path: '/sys/kernel/debug/tracing', mounted: false };
  mountFs('tracefs', TRACEFS, 'tracefs');
  return { what: 'tracefs', path: TRACEFS, mounted: true };
}

/**
 * The LSMs this kernel runs, in order, from securityfs (mounted when missing and we are root), or
 * null when that cannot be read. BPF LSM programs load and attach on any kernel built with
 * CONFIG_BPF_LSM but run only when `bpf` is in this list (the lsm= boot parameter), so this is the
 * only way to know whether an lsm/ hook will see anything.
 */
export function activeLsms(): { lsms: string[] | null; mounted: MountResult | null } {
  let mounted: MountResult | null = null;
  if (!existsSync(`${SECURITYFS}/lsm`) && !mounts().some((m) => m.fstype === 'securityfs') && isRoot()) {
    try {
      mountFs('securityfs', SECURITYFS, 'securityfs');
      mounted = { what: 'securityfs', path: SECURITYFS, mounted: true };
    } catch {
      /* reported as "cannot tell" */
    }
  }
  try {
    return { lsms: readFileSync(`${SECURITYFS}/lsm`, 'utf8').trim().split(',').filter(Boolean), mounted };
  } catch {
    return { lsms: null, mounted };
  }
}

/** A cgroup v2 hierarchy: the usual /sys/fs/cgroup on a unified host, or one we mount. */
export function findCgroup2(): string | null {
  return preferredCgroup2(mounts());
}

/** Of a mount table's cgroup v2 mounts, the usual /sys/fs/cgroup, else the first (Cilium and
 * container runtimes mount further views of the same hierarchy). */
export function preferredCgroup2(table: ReadonlyArray<{ target: string; fstype: string }>): string | null {
  const all = table.filter((x) => x.fstype === 'cgroup2');
  return (all.find((x) => x.target === '/sys/fs/cgroup') ?? all[0])?.target ?? null;
}



/** The interface of the IPv4 default route (then IPv6), or null when there is none. */
export function defaultRouteInterface(): string | null {
  try {
    for (const line of readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
      const [iface, dest, , flags] = line.trim().split(/\s+/);
      if (dest === '00000000' && (parseInt(flags, 16) & 1) === 1) return iface;
    }
    for (const line of readFileSync('/proc/net/ipv6_route', 'utf8').split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 10 && /^0{32}$/.test(f[0]) && f[1] === '00' && f[9] !== 'lo') return f[9];
    }
  } catch {
    /* no procfs routes: treat as no default route */
  }
  return null;
}
