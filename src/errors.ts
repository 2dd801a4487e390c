// SPDX-License-Identifier: Apache-2.0
// One error type for everything ebpfnet reports, with one table of codes. The CLI maps a code to an
// exit status, the HTTP API to a status code; library code only throws.
import { constants } from 'node:os';

export const ERROR_CODES = {
  EBPFNET_USAGE: { exit: 2, http: 400, what: 'bad input: a malformed rule, address or option' },
  EBPFNET_NOT_FOUND: { exit: 1, http: 404, what: 'no such interface, object, map entry or pin' },
  EBPFNET_EXISTS: { exit: 1, http: 409, what: 'already there: another program, pin or entry' },
  EBPFNET_PERMISSION: { exit: 1, http: 403, what: 'missing privilege (root, CAP_BPF, CAP_NET_ADMIN)' },
  EBPFNET_UNAUTHORIZED: { exit: 1, http: 401, what: "the agent's API wants its bearer token: none was sent, or a wrong one" },
  EBPFNET_NOT_SUPPORTED: { exit: 1, http: 501, what: 'this kernel or machine lacks a feature' },
  EBPFNET_VERIFIER: { exit: 1, http: 422, what: 'the kernel verifier rejected a program' },
  EBPFNET_MAP_FULL: { exit: 1, http: 507, what: 'a map has no room for another entry' },
  EBPFNET_LIBBPF: { exit: 1, http: 500, what: 'libbpf is missing or too old' },
  EBPFNET_KERNEL: { exit: 1, http: 500, what: 'a bpf() call or kernel operation failed' },
  EBPFNET_BUSY: { exit: 1, http: 503, what: 'a resource is in use' },
  EBPFNET_CLOSED: { exit: 1, http: 503, what: 'the object was closed: the agent is shutting down, or a library handle was used after close()' },
  EBPFNET_STALE: { exit: 1, http: 412, what: 'the state changed since the revision the change was based on' },
  EBPFNET_TOO_LARGE: { exit: 2, http: 413, what: 'a request beyond a configured limit: a body over api.bodyLimit, a policy over filter.maxRules' },
  EBPFNET_HEADERS_TOO_LARGE: { exit: 2, http: 431, what: 'a request line and headers beyond 16 KiB' },
  EBPFNET_TIMEOUT: { exit: 1, http: 408, what: 'a request that did not arrive in time' },
  EBPFNET_MEDIA_TYPE: { exit: 2, http: 415, what: 'a body that is not JSON in UTF-8 (its Content-Type)' },
  EBPFNET_PRIVATE_MOUNTS: { exit: 1, http: 500, what: 'pins would not outlive this process: it runs in a mount namespace of its own (ip netns exec)' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * A value read from a user's file, as text for an error message. Never throws: String() does on
 * {"toString": 0} (a valid JSON object), JSON.stringify on a YAML alias cycle.
 */
export function shownValue(v: unknown): string {
  if (typeof v === 'string') return v;
  try {
    return JSON.stringify(v) ?? typeof v;
  } catch {
    return typeof v;
  }
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));
// The kernel's own "not supported" that never reaches libc's table, but bpf() returns it.
ERRNO_NAMES.set(524, 'ENOTSUPP');

/** EPERM for 1, `errno 9999` for a number the OS does not name. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

export interface ErrorDetails {
  errno?: number;
  hint?: string;
  cause?: unknown;
}

/** `op: detail (ENOENT); hint`: what failed, why, and what a person can do about it. */
export class EbpfnetError extends Error {
  readonly code: ErrorCode;
  readonly op: string;
  readonly errno?: string;
  readonly hint?: string;

  constructor(code: ErrorCode, op: string, detail: string, d: ErrorDetails = {}) {
    const errno = d.errno === undefined ? undefined : errnoName(d.errno);
    super(`${op}: ${detail}${errno && !detail.includes(errno) ? ` (${errno})` : ''}${d.hint ? `; ${d.hint}` : ''}`, { cause: d.cause });
    this.name = 'EbpfnetError';
    this.code = code;
    this.op = op;
    this.errno = errno;
    this.hint = d.hint;
  }
}

export class NotSupportedError extends EbpfnetError {
  readonly feature: string;
  constructor(op: string, feature: string, d: ErrorDetails = {}) {
    super('EBPFNET_NOT_SUPPORTED', op, `this kernel does not support ${feature}`, d);
    this.name = 'NotSupportedError';
    this.feature = feature;
  }
}

export interface VerifierStats {
  /** instructions the verifier processed (`processed N insns`) */
  insns: number;
  /** `total_states` */
  states: number;
  /** `peak_states` */
  peakStates: number;
  /** bytes of stack, all subprograms added (`stack depth 8+16`) */
  stackDepth: number;
}

/** Pulls the statistics out of a verifier log written with BPF_LOG_STATS. */
export function parseVerifierStats(log: string): VerifierStats | null {
  const m = /processed (\d+) insns \(limit \d+\) max_states_per_insn \d+ total_states (\d+) peak_states (\d+)/.exec(log);
  if (!m) return null;
  const s = /stack depth ([\d+]+)/.exec(log);
  const stackDepth = s ? s[1].split('+').reduce((a, x) => a + Number(x || 0), 0) : 0;
  return { insns: Number(m[1]), states: Number(m[2]), peakStates: Number(m[3]), stackDepth };
}

const STATS_LINE = /^(processed \d+ insns|verification time|stack depth|max_states_per_insn)/;

/** The last lines worth showing a person: the failing instruction and the verifier's complaint. */
export function verifierTail(log: string, lines = 8): string {
  const all = log.split('\n').filter((l) => l.trim() !== '' && !STATS_LINE.test(l));
  return all.slice(-lines).join('\n');
}

/** The complaint after the last instruction the verifier walked, and that instruction's index. */
export function verifierComplaint(log: string): { insn: number | null; text: string } {
  const all = log.split('\n').filter((l) => l.trim() !== '' && !STATS_LINE.test(l));
  let last = -1;
  all.forEach((l, i) => {
    if (/^\d+: \(/.test(l)) last = i;
  });
  const insn = last >= 0 ? Number(/^(\d+):/.exec(all[last])![1]) : null;
  const text = all.slice(last + 1).join('; ') || all.slice(-1).join('');
  return { insn, text };
}

export class VerifierError extends EbpfnetError {
  readonly program: string;
  readonly log: string;
  readonly stats: VerifierStats | null;
  constructor(program: string, errno: number, log: string) {
    const c = verifierComplaint(log);
    const detail = c.text ? `${c.text}${c.insn === null ? '' : ` (at instruction ${c.insn})`}` : 'no verifier log';
    super('EBPFNET_VERIFIER', `load program ${program}`, `the verifier rejected it: ${detail}`, {
      errno,
      hint: 'the full log is in error.log; `ebpfnet verify` prints its end',
    });
    this.name = 'VerifierError';
    this.program = program;
    this.log = log;
    this.stats = parseVerifierStats(log);
  }
}

/** A hint a person can act on, for the errno values bpf() and its friends return. */
export function hintFor(errno: number): string | undefined {
  switch (errnoName(errno)) {
    case 'EPERM':
    case 'EACCES':
      return 'run as root (needs CAP_BPF and CAP_NET_ADMIN)';
    case 'ENOMEM':
      return 'the kernel is out of memory for BPF (check the memlock rlimit or the memory cgroup)';
    case 'E2BIG':
      return 'a map is full; raise its size or remove entries';
    case 'EBUSY':
      return 'something else is attached there already';
    case 'EOPNOTSUPP':
    case 'ENOTSUPP':
      return 'this kernel or driver does not support it';
    default:
      return undefined;
  }
}

const ERRNO_CODES: Record<string, ErrorCode> = {
  EPERM: 'EBPFNET_PERMISSION',
  EACCES: 'EBPFNET_PERMISSION',
  ENOENT: 'EBPFNET_NOT_FOUND',
  EEXIST: 'EBPFNET_EXISTS',
  E2BIG: 'EBPFNET_MAP_FULL',
  EBUSY: 'EBPFNET_BUSY',
  EOPNOTSUPP: 'EBPFNET_NOT_SUPPORTED',
  ENOTSUPP: 'EBPFNET_NOT_SUPPORTED',
};

/** Wraps a negative return (or errno) of a kernel call into an EbpfnetError with a hint. */
export function kernelError(op: string, errno: number, detail?: string): EbpfnetError {
  const name = errnoName(errno);
  const code = ERRNO_CODES[name] ?? 'EBPFNET_KERNEL';
  return new EbpfnetError(code, op, detail ?? name, { errno, hint: hintFor(errno) });
}

export const isEbpfnetError = (e: unknown): e is EbpfnetError => e instanceof EbpfnetError;
