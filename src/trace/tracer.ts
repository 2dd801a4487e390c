// SPDX-License-Identifier: Apache-2.0
// The kernel half of `ebpfnet trace`: find which syscall tracepoints this kernel has, resolve the
// cgroup filter, load bpf/trace.bpf.c with the filters as const volatile configuration (only the
// programs it will attach), attach, and read the ring buffer. Detaching is ours too: links go
// before the object, entry hooks before exit hooks, and the exit guard backs all of it up.
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { EbpfnetError, NotSupportedError, VerifierError } from '../errors.js';
import * as G from '../gen/trace.js';
import { activeLsms, ensureTracefs, findCgroup2, type MountResult } from '../loader/system.js';
import { kernelHas } from '../loader/btf.js';
import { cgroup2DirState, ensureCgroup2 } from '../loader/pinfs.js';
import { objectPath } from '../loader/paths.js';
import { ObjectSpec, type BpfObject } from '../loader/object.js';
import type { BpfMap, MapFill } from '../loader/map.js';
import type { Link } from '../loader/link.js';
import { progInfoByFd, type ProgInfo } from '../loader/stats.js';
import { RingBuffer } from '../loader/ringbuf.js';
import { EXIT_PROGRAM, IO_URING, LSM_HOOK, TRACEPOINT_CATEGORY, enterTracepoint, exitTracepoint, type SyscallDef } from './syscalls.js';
import { findContainer, walkCgroups } from './cgroups.js';
import type { ProgramLayout } from '../loader/layout.js';
import type { LostCounts } from './summary.js';

export interface Coverage {
  /** syscalls whose enter and exit tracepoints both exist: these are traced */
  traced: SyscallDef[];
  /** syscalls this kernel has no tracepoints for (arm64 has no mkdir, only mkdirat) */
  missing: SyscallDef[];
}

export interface EntryPaths {
  /** IORING_OP_MKDIRAT followed from submission to completion (io_uring's tracepoints) */
  ioUring: boolean;
  /** lsm/path_mkdir reports the mkdirs of kernel threads (and of io_uring, when ioUring is off) */
  lsm: boolean;
  /** what this run cannot see, and why: one sentence each (a securityfs it mounted to read the
   * active LSMs is said by the loader's onMount listeners, as every mount is) */
  unseen: string[];
}

/**
 * Which entry paths beside the syscalls this kernel lets us follow, for the syscalls asked for.
 * Checked before loading: a trampoline program whose function is missing fails the whole load, and
 * an LSM program attaches even where BPF LSM is off, then never runs.
 */
export function entryPaths(syscalls: readonly SyscallDef[], tracefs: string): EntryPaths {
  const names = syscalls.map((s) => s.name);
  const unseen: string[] = [];
  let ioUring = false;
  let lsm = false;
  if (names.includes(IO_URING.syscall)) {
    const tps = [IO_URING.enter.tracepoint, IO_URING.exit.tracepoint].every((tp) => existsSync(join(tracefs, 'events', IO_URING.category, tp)));
    ioUring = tps && kernelHas('struct', IO_URING.struct);
    if (!ioUring) unseen.push(`mkdirat through io_uring (IORING_OP_MKDIRAT): ${tps ? `the kernel's BTF has no struct ${IO_URING.struct}` : `this kernel has no ${IO_URING.category}/${IO_URING.enter.tracepoint} and ${IO_URING.exit.tracepoint} tracepoints`}`);
  }
  if (names.includes(LSM_HOOK.syscall)) {
    const l = activeLsms();
    if (!kernelHas('func', LSM_HOOK.func)) unseen.push(`mkdirs made by kernel threads${ioUring ? '' : ' and io_uring'}: this kernel has no BPF LSM (CONFIG_BPF_LSM)`);
    else if (l.lsms === null) unseen.push(`mkdirs made by kernel threads${ioUring ? '' : ' and io_uring'}: cannot tell whether BPF LSM is on (no securityfs at /sys/kernel/security)`);
    else if (!l.lsms.includes('bpf')) unseen.push(`mkdirs made by kernel threads${ioUring ? '' : ' and io_uring'}: BPF LSM is off (active LSMs: ${l.lsms.join(',')}; boot with lsm=${[...l.lsms, 'bpf'].join(',')})`);
    else lsm = true;
  }
  return { ioUring, lsm, unseen };
}

/**
 * Whether this kernel loads the lsm/path_mkdir program, tried for real (BPF LSM can be active and
 * lsm programs still refused, EPERM as root: a lockdown or security-module policy on bpf()): null
 * when it loads, else the errno. Nothing is attached.
 */
export function lsmLoadRefusal(): string | null {
  try {
    ObjectSpec.open(objectPath(G.LAYOUT.object)).load({ only: [LSM_HOOK.program.name] }).close();
    return null;
  } catch (e) {
    if (e instanceof VerifierError) return 'rejected by the verifier';
    return /\bE[A-Z]+\b/.exec(e instanceof Error ? e.message : String(e))?.[0] ?? String(e);
  }
}

/** Which of `syscalls` this kernel can trace, from <tracefs>/events/syscalls/. */
export function coverage(syscalls: readonly SyscallDef[], tracefs: string): Coverage {
  const has = (tp: string): boolean => existsSync(join(tracefs, 'events', TRACEPOINT_CATEGORY, tp));
  const traced = syscalls.filter((s) => has(enterTracepoint(s)) && has(exitTracepoint(s)));
  return { traced, missing: syscalls.filter((s) => !traced.includes(s)) };
}

export interface CgroupTarget {
  path: string;
  /** the cgroup id the kernel reports: its directory's inode number on cgroup v2 */
  id: bigint;
  /** set when cgroup v2 had to be mounted to resolve a relative path */
  mounted: MountResult | null;
}


/** `--cgroup PATH`: an absolute cgroup v2 directory, or one relative to the cgroup v2 mount. */
export function resolveCgroup(arg: string): CgroupTarget {
  let mounted: MountResult | null = null;
  let full = arg;
  if (!isAbsolute(arg)) {
    const m = ensureCgroup2();
    if (m.mounted) mounted = m;
    full = join(m.path, arg);
  }
  full = resolve(full);
  const where = findCgroup2();
  const hint = where ? `cgroup v2 is mounted at ${where}` : 'mount cgroup v2 first: mount -t cgroup2 none /sys/fs/cgroup';
  let st;
  try {
    st = statSync(full, { bigint: true });
  } catch (e) {
    throw new EbpfnetError('EBPFNET_NOT_FOUND', 'trace', `no cgroup at ${full}`, { hint, cause: e });
  }
  if (cgroup2DirState(full) !== 'cgroup2') {
    throw new EbpfnetError('EBPFNET_USAGE', 'trace', `--cgroup ${full} is not a cgroup v2 directory`, { hint });
  }
  return { path: full, id: st.ino, mounted };
}

/** The cgroup a plan filters on (--cgroup or --container), or null. */
export function targetCgroup(plan: { cgroup: string | null; container: string | null }): CgroupTarget | null {
  if (plan.cgroup !== null) return resolveCgroup(plan.cgroup);
  if (plan.container !== null) return resolveContainer(plan.container);
  return null;
}

/** `--container ID`: the cgroup whose name carries the container id (or a unique prefix of it). */
export function resolveContainer(id: string): CgroupTarget & { container: string } {
  const m = ensureCgroup2();
  const found = findContainer(walkCgroups(m.path), id);
  const path = found.path === '/' ? m.path : join(m.path, found.path);
  return { path, id: BigInt(found.id), mounted: m.mounted ? m : null, container: found.container };
}

export interface TracerConfig {
  syscalls: readonly SyscallDef[];
  pid: number | null;
  uid: number | null;
  failedOnly: boolean;
  cgroupId: bigint | null;
  /** ring buffer bytes (a power of two) */
  bufferSize: number;
}

export class Tracer {
  private closed = false;
  private detached = false;

  private constructor(
    private readonly obj: BpfObject,
    private readonly ring: RingBuffer<G.TrEvent>,
    private readonly counters: BpfMap<number, G.TrCounters>,
    private readonly links: Link[],
    readonly coverage: Coverage,
    /** tracefs, and whether this run mounted it */
    readonly tracefs: MountResult,
    readonly paths: EntryPaths,
    private readonly loaded: ProgramLayout[],
  ) {}

  /**
   * Loads and attaches. Throws NotSupportedError when the kernel has none of the tracepoints; on any
   * failure whatever was already attached is detached again before the error leaves.
   */
  static open(cfg: TracerConfig): Tracer {
    const tracefs = ensureTracefs();
    const cov = coverage(cfg.syscalls, tracefs.path);
    if (!cov.traced.length) {
      const tps = cfg.syscalls.map((s) => `${TRACEPOINT_CATEGORY}/${enterTracepoint(s)}`).join(', ');
      throw new NotSupportedError('trace', `the syscall tracepoints ${tps}`, { hint: `none is in ${tracefs.path}/events; the kernel needs CONFIG_FTRACE_SYSCALLS` });
    }
    const paths = entryPaths(cov.traced, tracefs.path);
    let obj: BpfObject;
    let loaded: ProgramLayout[];
    try {
      ({ obj, loaded } = Tracer.load(cfg, cov, paths, paths.lsm));
    } catch (e) {
      // Some kernels refuse LSM programs where tracepoints load (a security policy on bpf(), a
      // lockdown): trace without it, and say what that leaves unseen.
      if (!paths.lsm || !(e instanceof EbpfnetError) || !/EPERM|EINVAL|ENOTSUPP|EOPNOTSUPP/.test(e.message)) throw e;
      paths.lsm = false;
      paths.unseen.push(`mkdirs made by kernel threads${paths.ioUring ? '' : ' and io_uring'}: this kernel refused the lsm/${LSM_HOOK.hook} program (${/E[A-Z]+/.exec(e.message)?.[0]})`);
      ({ obj, loaded } = Tracer.load(cfg, cov, paths, false));
    }
    const links: Link[] = [];
    let ring: RingBuffer<G.TrEvent> | null = null;
    try {
      const counters = obj.map(G.TR_COUNTERS);
      ring = new RingBuffer(obj.map(G.TR_EVENTS), G.TrEvent);
      // Exit hooks first, so that no call can be entered (and its state stored) without its exit
      // being watched; detach() undoes this in reverse.
      const exit = obj.program(EXIT_PROGRAM);
      for (const s of cov.traced) links.push(exit.attachTracepoint(TRACEPOINT_CATEGORY, exitTracepoint(s)));
      if (paths.ioUring) links.push(obj.program(IO_URING.exit.program).attachTracepoint(IO_URING.category, IO_URING.exit.tracepoint));
      if (paths.lsm) links.push(obj.program(LSM_HOOK.program).attachTrampoline());
      if (paths.ioUring) links.push(obj.program(IO_URING.enter.program).attachTracepoint(IO_URING.category, IO_URING.enter.tracepoint));
      for (const s of cov.traced) links.push(obj.program(s.enter).attachTracepoint(TRACEPOINT_CATEGORY, enterTracepoint(s)));
      return new Tracer(obj, ring, counters, links, cov, tracefs, paths, loaded);
    } catch (e) {
      for (const l of links.reverse()) l.close();
      ring?.close();
      obj.close();
      throw e;
    }
  }

  /** Loads the programs this run attaches, with the filters as const volatile configuration. */
  private static load(cfg: TracerConfig, cov: Coverage, paths: EntryPaths, lsm: boolean): { obj: BpfObject; loaded: ProgramLayout[] } {
    const loaded: ProgramLayout[] = [
      EXIT_PROGRAM,
      ...cov.traced.map((s) => s.enter),
      ...(paths.ioUring ? [IO_URING.enter.program, IO_URING.exit.program] : []),
      ...(lsm ? [LSM_HOOK.program] : []),
    ];
    const spec = ObjectSpec.open(objectPath(G.LAYOUT.object));
    let obj: BpfObject;
    try {
      spec.setConst(G.RODATA.name, G.RODATA.codec, {
        target_tgid: cfg.pid ?? 0,
        target_uid: cfg.uid ?? 0,
        filter_uid: cfg.uid === null ? 0 : 1,
        failed_only: cfg.failedOnly ? 1 : 0,
        uring_hooked: paths.ioUring ? 1 : 0,
        target_cgroup: cfg.cgroupId ?? 0n,
      });
      if (cfg.bufferSize !== G.TR_EVENTS.maxEntries) spec.setMaxEntries(G.TR_EVENTS.name, cfg.bufferSize);
      // Only what will be attached: a syscall without a tracepoint here gets no program at all.
      obj = spec.load({ only: loaded.map((p) => p.name) });
    } catch (e) {
      spec.close();
      throw e;
    }
    return { obj, loaded };
  }

  /** The ring buffer's size in bytes. */
  get bufferSize(): number {
    return this.ring.size;
  }

  /**
   * Hands up to `max` waiting records to `onRecord`, in place: `b` at `offset` holds a tr_event
   * (decode it with decodeEvent) and is valid only during the call. Never blocks. Returns how many.
   */
  poll(onRecord: (b: Buffer, offset: number) => void, max = Infinity): number {
    if (this.closed) return 0;
    return this.ring.consumeRaw((b, offset, len) => {
      // a record shorter than the layout would be an object built from other sources than maps/
      if (len >= G.TrEvent.size) onRecord(b, offset);
    }, max);
  }

  /** Events the kernel could not hand over, summed over CPUs. */
  lostCounts(): LostCounts {
    if (this.closed) return { lost: 0n, untracked: 0n };
    const c = this.counters.lookup(0);
    return { lost: c?.lost ?? 0n, untracked: c?.untracked ?? 0n };
  }

  /** The attached programs' run counts and times: the exit program once, each entry program. */
  programs(): ProgInfo[] {
    if (this.detached) return [];
    return this.loaded.flatMap((p) => progInfoByFd(this.obj.program(p).fd) ?? []);
  }

  /** How full the maps are (the in-flight table is an array: always full; the ring has no entries). */
  mapFill(): MapFill[] {
    if (this.closed) return [];
    return [this.obj.map(G.TR_INFLIGHT).fill(), ...(this.paths.ioUring ? [this.obj.map(G.TR_URING).fill()] : []), this.counters.fill()];
  }

  /** Stops new events (entry hooks first); what is already in the ring can still be polled. */
  detach(): void {
    if (this.detached) return;
    this.detached = true;
    const errors: unknown[] = [];
    for (const l of [...this.links].reverse()) {
      try {
        l.close();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length) throw errors[0];
  }

  close(): void {
    if (this.closed) return;
    try {
      this.detach();
    } finally {
      this.closed = true;
      this.ring.close();
      this.obj.close();
    }
  }
}
