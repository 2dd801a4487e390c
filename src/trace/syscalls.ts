// SPDX-License-Identifier: Apache-2.0
// The syscalls the tracer knows: one row each. A row names the entry program that reads its
// arguments (bpf/trace.bpf.c) and the tracepoints it hooks; the exit program is shared by all.
// Tracing another path syscall (rmdir, unlink, unlinkat) is a row here plus its entry program.
import * as G from '../gen/trace.js';
import type { ProgramLayout } from '../loader/layout.js';
import { EbpfnetError } from '../errors.js';

export interface SyscallDef {
  /** the syscall's name, as in syscalls/sys_enter_<name> */
  readonly name: string;
  /** TR_SYS_* in events */
  readonly id: number;
  /** what `ebpfnet trace <family>` selects: mkdir covers mkdir and mkdirat */
  readonly family: string;
  /** the program for syscalls/sys_enter_<name> */
  readonly enter: ProgramLayout;
  /** it takes a directory fd, so a relative path may be relative to that fd rather than the cwd */
  readonly dirfd: boolean;
}

export const SYSCALLS: readonly SyscallDef[] = [
  { name: 'mkdir', id: G.TR_SYS_MKDIR, family: 'mkdir', enter: G.PROG_TR_IN_MKDIR, dirfd: false },
  { name: 'mkdirat', id: G.TR_SYS_MKDIRAT, family: 'mkdir', enter: G.PROG_TR_IN_MKDIRAT, dirfd: true },
];

/** attached to sys_exit_<name> of every traced syscall */
export const EXIT_PROGRAM: ProgramLayout = G.PROG_TR_EXIT;

export const TRACEPOINT_CATEGORY = 'syscalls';
export const enterTracepoint = (s: SyscallDef): string => `sys_enter_${s.name}`;
export const exitTracepoint = (s: SyscallDef): string => `sys_exit_${s.name}`;

const byId = new Map(SYSCALLS.map((s) => [s.id, s]));

/** The syscall's name for an event's TR_SYS_* id (`syscall 7` for an id this build does not know). */
export const syscallName = (id: number): string => byId.get(id)?.name ?? `syscall ${id}`;

export const families = (): string[] => [...new Set(SYSCALLS.map((s) => s.family))];

/** What the user can type after `trace`: each family and each single syscall. */
export function traceTargets(): string[] {
  return [...new Set([...families(), ...SYSCALLS.map((s) => s.name)])];
}

/**
 * `mkdir` -> mkdir and mkdirat (the family: what a user means by "every mkdir"); `mkdirat` -> just
 * that syscall. Anything else is a usage error naming what is supported.
 */
export function resolveSyscalls(what: string): SyscallDef[] {
  const family = SYSCALLS.filter((s) => s.family === what);
  if (family.length) return family;
  const one = SYSCALLS.filter((s) => s.name === what);
  if (one.length) return one;
  const help = families()
    .map((f) => `${f} (${SYSCALLS.filter((s) => s.family === f).map((s) => s.name).join(', ')})`)
    .join('; ');
  throw new EbpfnetError('EBPFNET_USAGE', 'trace', `unknown syscall '${what}'`, { hint: `this tracer knows ${help}` });
}

/** How a call entered the kernel (tr_event.via): its name in events. */
const VIA: Record<number, string> = { [G.TR_VIA_SYSCALL]: 'syscall', [G.TR_VIA_IO_URING]: 'io_uring', [G.TR_VIA_KERNEL]: 'kernel' };
export const viaName = (v: number): string => VIA[v] ?? `via ${v}`;
export const VIA_NAMES: readonly string[] = Object.values(VIA);

/**
 * Entry paths beside the syscall tracepoints, each brought in by tracing one syscall: IORING_OP_MKDIRAT
 * is a mkdirat (its events say so), and the LSM hook's events (a mkdir a kernel thread makes) count
 * as mkdir, so `trace mkdir` covers every entry path and `trace mkdirat` the syscall and io_uring.
 */
export const IO_URING = {
  syscall: 'mkdirat',
  category: 'io_uring',
  enter: { program: G.PROG_TR_URING_IN, tracepoint: 'io_uring_submit_req' },
  exit: { program: G.PROG_TR_URING_EXIT, tracepoint: 'io_uring_complete' },
  /** the request's command area is read through this kernel struct (CO-RE): it must be in the kernel's BTF */
  struct: 'io_mkdir',
} as const;
export const LSM_HOOK = { syscall: 'mkdir', program: G.PROG_TR_LSM_MKDIR, hook: 'path_mkdir', func: 'bpf_lsm_path_mkdir' } as const;
