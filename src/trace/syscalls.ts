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
