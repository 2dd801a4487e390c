// SPDX-License-Identifier: Apache-2.0
// Where pins outlive the command that makes them, and which network namespace a process is in.
//
// A pin lasts as long as its bpffs instance is mounted somewhere. The host's bpffs (mounted in the
// mount namespace of pid 1) outlives every command. `ip netns exec` runs its command in a mount
// namespace of its own with a fresh /sys: a bpffs mounted there dies with the command, and with it
// every pin and the XDP program a pinned link kept attached. So a pin is made only in a bpffs that
// is also mounted in pid 1's mount namespace (the same superblock, as the kernel's mountinfo says),
// reached through /proc/1/root when this process's own /sys is private; when neither works, the
// command refuses and says what to run instead. Nothing here guesses from paths.
import { readFileSync, readdirSync, statSync, statfsSync } from 'node:fs';
import { EbpfnetError } from '../errors.js';
import { BPFFS, CGROUP2_FALLBACK, findCgroup2, mountFs, preferredCgroup2, type MountResult } from './system.js';

/** statfs f_type of a bpf filesystem (include/uapi/linux/magic.h) */
export const BPF_FS_MAGIC = 0xcafe4a11;

export interface MountEntry {
  id: number;
  /** major:minor of the superblock: the same filesystem instance has the same one in every namespace */
  dev: string;
  target: string;
  fstype: string;
}

/** /proc/PID/mountinfo parsed; null when it cannot be read (a kernel that hides it from us). */
function mountinfo(pid: 'self' | number): MountEntry[] | null {
  try {
    return parseMountinfo(readFileSync(`/proc/${pid}/mountinfo`, 'utf8'));
  } catch {
    return null;
  }
}

/** The lines of a mountinfo file: `id parent major:minor root target options [optional...] - fstype source ...`. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    out.push({ id: Number(f[0]), dev: f[2], target: f[4].replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), fstype: f[sep + 1] });
  }
  return out;
}

/** pid 1's mounts when this process is in another mount namespace; null when it is in pid 1's (or cannot tell). */
function foreignHostMounts(self: MountEntry[], host: MountEntry[] | null): MountEntry[] | null {
  const ids = new Set(self.map((m) => m.id));
  // a mount belongs to one namespace, and copying a namespace gives every mount a new id
  return !host || host.some((m) => ids.has(m.id)) ? null : host;
}

/** What pinning looks like from this process. */
export interface PinSite {
  /** the host's bpffs as this process reaches it: /sys/fs/bpf, or /proc/1/root/sys/fs/bpf */
  root: string;
  /** what to put before another of the host's paths (/run) to reach it: '' or '/proc/1/root' */
  prefix: string;
  /** this process runs in a mount namespace other than pid 1's */
  privateMounts: boolean;
  /** this call mounted bpffs at /sys/fs/bpf (on the host) */
  mounted: boolean;
}

/** The host path of a path under the site (for messages): /proc/1/root/sys/fs/bpf/x -> /sys/fs/bpf/x. */
export const hostPath = (site: PinSite, p: string): string => (site.prefix && p.startsWith(site.prefix) ? p.slice(site.prefix.length) : p);

/** The name `ip netns` gives this process's network namespace, as a hint's command line. */
function nsenterHint(): string {
  const name = netnsName(netnsInode());
  return `run it without a private /sys: nsenter --net=${name ? `/run/netns/${name}` : '/proc/<pid>/ns/net'} ebpfnet ... (not ip netns exec)`;
}

export class PrivateMountsError extends EbpfnetError {
  constructor(op: string, detail: string) {
    super('EBPFNET_PRIVATE_MOUNTS', op, detail, { hint: nsenterHint() });
  }
}

const isBpffs = (path: string): boolean => {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
};

/**
 * Where pins go, or where pinned objects are found. `create`: mount bpffs at /sys/fs/bpf when it is
 * missing and this is the host's mount namespace (a pin is about to be made). Without `create`,
 * null means there is no bpffs on the host, so nothing is pinned.
 *
 * From a mount namespace of its own (ip netns exec) the host's bpffs is used when this process can
 * reach it (the same superblock mounted at its /sys/fs/bpf, or pid 1's root through
 * /proc/1/root); otherwise PrivateMountsError, since anything pinned or mounted here would vanish
 * with this process.
 */
export function pinSite(op: string, opts: { create?: boolean } = {}): PinSite | null {
  const c = chooseSite(mountinfo('self') ?? [], mountinfo(1), () => isBpffs(`/proc/1/root${BPFFS}`), !!opts.create);
  switch (c) {
    case 'here':
    case 'shared':
      return { root: BPFFS, prefix: '', privateMounts: c === 'shared', mounted: false };
    case 'mount':
      mountFs('bpf', BPFFS, 'bpffs');
      return { root: BPFFS, prefix: '', privateMounts: false, mounted: true };
    case 'host-root':
      return { root: `/proc/1/root${BPFFS}`, prefix: '/proc/1/root', privateMounts: true, mounted: false };
    case 'none':
      return null;
    case 'unreachable':
      return refuse(op, `cannot reach the host's bpffs (${BPFFS})${opts.create ? '; pins made here would vanish when it exits' : ', where the pins are'}`);
    case 'no-host-bpffs':
      return refuse(op, 'the host has no bpffs mounted; one mounted here, and its pins, would vanish when this command exits');
  }
}

const refuse = (op: string, why: string): never => {
  throw new PrivateMountsError(op, `this command runs in a mount namespace of its own (as under ip netns exec) and ${why}`);
};

/**
 * Where pins go, from this process's mounts and pid 1's (the host's; null when unreadable): in
 * the host's namespace, its bpffs (`here`) or one to mount (`mount`); from a namespace of its own,
 * the host's bpffs copied into it (`shared`, as `unshare -m` leaves it) or through /proc/1/root
 * (`host-root`), else a refusal (`unreachable`, `no-host-bpffs`); `none`: nothing is pinned anywhere.
 */
export function chooseSite(self: MountEntry[], host: MountEntry[] | null, hostRootReachable: () => boolean, create: boolean): 'here' | 'mount' | 'shared' | 'host-root' | 'none' | 'unreachable' | 'no-host-bpffs' {
  const foreign = foreignHostMounts(self, host);
  const here = self.find((m) => m.fstype === 'bpf' && m.target === BPFFS);
  if (!foreign) return here ? 'here' : create ? 'mount' : 'none';
  const hostBpf = foreign.find((m) => m.fstype === 'bpf' && m.target === BPFFS);
  // `unshare -m` copies the host's mounts: the same bpffs instance, pins made in it stay
  if (here && hostBpf && here.dev === hostBpf.dev) return 'shared';
  if (hostBpf) return hostRootReachable() ? 'host-root' : 'unreachable';
  return create ? 'no-host-bpffs' : 'none';
}

/**
 * A pin path under /sys/fs/bpf as this process reaches it (through /proc/1/root from a private
 * mount namespace); other paths as they are. Throws PrivateMountsError where pins would vanish.
 */
export function reachPin(path: string, op: string, opts: { create?: boolean } = {}): string {
  if (path !== BPFFS && !path.startsWith(`${BPFFS}/`)) return path;
  const site = pinSite(op, opts);
  return site ? site.root + path.slice(BPFFS.length) : path;
}

/** bpffs at /sys/fs/bpf (or the host's, from a private mount namespace), where pins live. */
export function ensurePinSite(op: string): PinSite {
  return pinSite(op, { create: true })!;
}

/** statfs f_type of a cgroup v2 filesystem (include/uapi/linux/magic.h) */
export const CGROUP2_SUPER_MAGIC = 0x63677270;

/**
 * Whether `dir` is a cgroup v2 directory, asked of the kernel (statfs) rather than inferred from
 * where the usual mount is: a second cgroup2 mount (Cilium's /run/cilium/cgroupv2, a container
 * runtime's view) holds the same cgroups under another path.
 */
export function cgroup2DirState(dir: string): 'cgroup2' | 'missing' | 'other' {
  try {
    if (!statSync(dir).isDirectory()) return 'other';
    return statfsSync(dir).type === CGROUP2_SUPER_MAGIC ? 'cgroup2' : 'other';
  } catch {
    return 'missing';
  }
}

/**
 * From a mount namespace of its own whose /sys has no cgroup v2 (ip netns exec), the host's cgroup
 * v2 mount through /proc/1/root, when reachable: a cgroup path the host names the same way.
 */
export function hostCgroup2(): string | null {
  const host = foreignHostMounts(mountinfo('self') ?? [], mountinfo(1));
  if (!host) return null;
  const target = preferredCgroup2(host);
  if (!target) return null;
  try {
    return statfsSync(`/proc/1/root${target}`).type === CGROUP2_SUPER_MAGIC ? `/proc/1/root${target}` : null;
  } catch {
    return null;
  }
}

/** Whether `dir`, or the nearest part of it that exists, is in a bpf filesystem. */
export function inBpffs(dir: string): boolean {
  for (let d = dir; ; d = d.slice(0, d.lastIndexOf('/')) || '/') {
    try {
      statSync(d);
    } catch {
      if (d === '/') return false;
      continue;
    }
    return isBpffs(d);
  }
}

/**
 * The inode of this process's network namespace (what `ip netns identify` matches and
 * `/proc/self/ns/net` links to): unique while the namespace exists.
 */
export function netnsInode(pid: 'self' | number = 'self'): number {
  return statSync(`/proc/${pid}/ns/net`).ino;
}

/** The `ip netns` name of the namespace with this inode (a bind mount in /run/netns), or null. */
export function netnsName(ino: number, prefix = ''): string | null {
  let names: string[];
  try {
    names = readdirSync(`${prefix}/run/netns`);
  } catch {
    return null;
  }
  // namespaces are inodes of nsfs: the same device for all of them, never a file's in /run/netns
  const nsfs = statSync('/proc/self/ns/net').dev;
  for (const n of names.sort()) {
    try {
      const st = statSync(`${prefix}/run/netns/${n}`);
      if (st.ino === ino && st.dev === nsfs) return n;
    } catch {
      /* removed meanwhile, or not a namespace */
    }
  }
  return null;
}

/**
 * bpffs at /sys/fs/bpf, where pins live: the host's (above), mounted when missing; from a
 * mount namespace of its own (ip netns exec) never a private one, whose pins would vanish.
 */
export function ensureBpffs(op = 'mount bpffs'): MountResult {
  const site = ensurePinSite(op);
  return { what: 'bpffs', path: site.root, mounted: site.mounted };
}

/** A cgroup v2 hierarchy: one mounted here, the host's from a private mount namespace, or one we mount. */
export function ensureCgroup2(): MountResult {
  // under ip netns exec a cgroup2 mounted here would be private; the host's is the same hierarchy
  const found = findCgroup2() ?? hostCgroup2();
  if (found) return { what: 'cgroup2', path: found, mounted: false };
  mountFs('cgroup2', CGROUP2_FALLBACK, 'cgroup2');
  return { what: 'cgroup2', path: CGROUP2_FALLBACK, mounted: true };
}
