// SPDX-License-Identifier: Apache-2.0
// `ebpfnet trace` options, from the strings a user typed to a checked plan. Pure: nothing here
// touches the kernel, so every mistake is reported before anything is loaded or attached.
import { readFileSync } from 'node:fs';
import { EbpfnetError } from '../errors.js';
import * as G from '../gen/trace.js';
import { resolveSyscalls, type SyscallDef } from './syscalls.js';
import { parseContainerId } from './cgroups.js';

/** What commander hands over: every value still a string, as typed. */
export interface RawTraceOptions {
  pid?: string;
  uid?: string;
  name?: string;
  failed?: boolean;
  cgroup?: string;
  container?: string;
  duration?: string;
  output?: string;
  timestamp?: boolean;
  bufferSize?: string;
}

export type OutputFormat = 'table' | 'json';

export interface TracePlan {
  /** what the user asked for (`mkdir`), for messages */
  target: string;
  syscalls: SyscallDef[];
  /** thread group id to trace, or null for all */
  pid: number | null;
  uid: number | null;
  /** substring of the command name (comm) */
  name: string | null;
  failedOnly: boolean;
  /** the --cgroup argument as given; resolved to a cgroup id by the kernel half */
  cgroup: string | null;
  /** --container: a container id or a prefix of at least 12 hex digits, lower case */
  container: string | null;
  durationMs: number | null;
  output: OutputFormat;
  timestamps: boolean;
  /** ring buffer bytes: a power of two, at least a page */
  bufferSize: number;
}

/** The kernel's PID_MAX_LIMIT on 64-bit: no pid is larger. */
export const PID_MAX = 4_194_304;
/** Ring buffer sizes we accept: a page up to 1 GiB (the reader maps it twice). */
export const BUFFER_MIN = 4096;
export const BUFFER_MAX = 1 << 30;
export const DEFAULT_BUFFER_SIZE = G.TR_EVENTS.maxEntries;
/** The kernel keeps TASK_COMM_LEN - 1 characters of a command name. */
export const COMM_MAX = G.TR_COMM_LEN - 1;

const usage = (detail: string, hint?: string): EbpfnetError => new EbpfnetError('EBPFNET_USAGE', 'trace', detail, { hint });

function parsePid(s: string): number {
  if (!/^\d+$/.test(s.trim())) throw usage(`--pid '${s}' is not a process id`, 'give a positive integer, e.g. -p 1234');
  const n = Number(s.trim());
  if (n < 1 || n > PID_MAX) throw usage(`--pid ${s} is out of range`, `pids run from 1 to ${PID_MAX}`);
  return n;
}

/** uid:name pairs from an /etc/passwd text. */
export function passwdUsers(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name && uid !== undefined && /^\d+$/.test(uid)) out.set(name, Number(uid));
  }
  return out;
}

const systemUsers = (): Map<string, number> => {
  try {
    return passwdUsers(readFileSync('/etc/passwd', 'utf8'));
  } catch {
    return new Map();
  }
};

function parseUid(s: string, users: () => Map<string, number>): number {
  const t = s.trim();
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    // (uid_t)-1 means "no uid" to the kernel; nothing runs as it
    if (n >= 0xffffffff) throw usage(`--uid ${s} is out of range`, 'uids run from 0 to 4294967294');
    return n;
  }
  if (/^[a-z_][a-z0-9_.-]*\$?$/i.test(t)) {
    const uid = users().get(t);
    if (uid !== undefined) return uid;
    throw usage(`--uid: no user named '${t}'`, 'give a numeric uid or a user from /etc/passwd');
  }
  throw usage(`--uid '${s}' is not a user id`, 'give a numeric uid (e.g. -u 1000) or a user name');
}

function parseDuration(s: string): number {
  const t = s.trim();
  if (!/^[-+]?\d+(\.\d+)?$/.test(t)) throw usage(`--duration '${s}' is not a number of seconds`, 'give a positive number, e.g. -d 10');
  const ms = Math.round(Number(t) * 1000);
  if (ms <= 0) throw usage(`--duration ${s} must be more than 0 seconds`, 'give a positive number, e.g. -d 10');
  // setTimeout's limit (about 24.8 days); anyone tracing longer can use Ctrl-C
  if (ms > 2 ** 31 - 1) throw usage(`--duration ${s} is too long`, 'the longest is 2147483 seconds; leave -d out to trace until Ctrl-C');
  return ms;
}

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** `16M`, `512K`, `65536`: bytes, a power of two between a page and 1 GiB. */
export function parseBufferSize(s: string): number {
  const m = /^(\d+)\s*([kmg]?)(?:i?b)?$/i.exec(s.trim());
  const n = m ? Number(m[1]) * UNITS[m[2].toLowerCase()] : NaN;
  if (!m || !Number.isSafeInteger(n)) throw usage(`--buffer-size '${s}' is not a size`, 'give bytes with an optional K, M or G, e.g. 64M');
  if (n < BUFFER_MIN || n > BUFFER_MAX || (n & (n - 1)) !== 0) {
    throw usage(`--buffer-size ${s} is not a power of two between 4K and 1G`, 'ring buffers come in powers of two: 4M, 16M, 64M');
  }
  return n;
}

function parseOutput(s: string): OutputFormat {
  const t = s.trim().toLowerCase();
  if (t === 'table' || t === 'json') return t;
  throw usage(`--output '${s}' is not a format`, 'use -o table or -o json');
}

function parseName(s: string): string {
  if (!s.length) throw usage('--name is empty', 'give (part of) a command name, e.g. -n mkdir');
  if (/[\0/]/.test(s)) throw usage(`--name '${s}' cannot be a command name`, 'command names contain no / or NUL; give the name, not a path');
  return s;
}

function parseCgroup(s: string): string {
  if (!s.trim()) throw usage('--cgroup is empty', 'give a cgroup v2 directory, e.g. --cgroup system.slice/ssh.service');
  return s.trim();
}

export interface ParseEnv {
  /** user name -> uid (default: /etc/passwd) */
  users?: () => Map<string, number>;
}

/** Checks everything; throws an EBPFNET_USAGE error naming the first bad option. */
export function parseTraceOptions(target: string, raw: RawTraceOptions, env: ParseEnv = {}): TracePlan {
  const syscalls = resolveSyscalls(target);
  if (raw.cgroup !== undefined && raw.container !== undefined) throw usage('--cgroup and --container both name a cgroup', 'give one of them');
  return {
    target,
    syscalls,
    pid: raw.pid === undefined ? null : parsePid(raw.pid),
    uid: raw.uid === undefined ? null : parseUid(raw.uid, env.users ?? systemUsers),
    name: raw.name === undefined ? null : parseName(raw.name),
    failedOnly: !!raw.failed,
    cgroup: raw.cgroup === undefined ? null : parseCgroup(raw.cgroup),
    container: raw.container === undefined ? null : parseContainerId(raw.container),
    durationMs: raw.duration === undefined ? null : parseDuration(raw.duration),
    output: parseOutput(raw.output ?? 'table'),
    timestamps: !!raw.timestamp,
    bufferSize: raw.bufferSize === undefined ? DEFAULT_BUFFER_SIZE : parseBufferSize(raw.bufferSize),
  };
}

/**
 * -n matches when the command name contains NAME. The kernel keeps only the first 15 characters of a
 * command name, so a longer NAME is compared by its first 15: `-n my-long-server-name` still finds
 * `my-long-server-`.
 */
export function nameMatcher(name: string | null): (comm: string) => boolean {
  if (name === null) return () => true;
  const needle = name.length > COMM_MAX ? name.slice(0, COMM_MAX) : name;
  return (comm) => comm.includes(needle);
}

/** flags' short forms, as hints write them (`-p 1234`) */
const SHORT: Record<string, string> = { p: 'pid', u: 'uid', n: 'name', d: 'duration' };

/**
 * parseTraceOptions for settings that are not command-line flags (the agent's config file, its
 * stream's query parameters): the same checks, with messages naming `pid` rather than `--pid`.
 * `op` starts the message (`read config agent.yaml`, `validate querystring`); `section`, in a config
 * file, names the keys' place (`trace`: messages read `trace.pid: ...`).
 */
export function traceSettings(target: string, raw: RawTraceOptions, op: string, env: ParseEnv = {}, section?: string): TracePlan {
  try {
    return parseTraceOptions(target, raw, env);
  } catch (e) {
    if (!(e instanceof EbpfnetError) || e.code !== 'EBPFNET_USAGE') throw e;
    const keys = (s: string): string => s.replace(/--buffer-size/g, 'bufferSize').replace(/--(\w+)/g, '$1').replace(/(^|[\s(])-([pund]) /g, (_, pre: string, f: string) => `${pre}${SHORT[f]}=`);
    let detail = keys(e.message.slice(0, e.hint ? e.message.length - e.hint.length - 2 : undefined).replace(/^trace: /, ''));
    // in a config file: the key's path (`trace.pid: 'abc' is not a process id`), which the config
    // reader turns into the line it is on
    const k = section ? /^(pid|uid|name|cgroup|container|bufferSize|syscall):? ('.*|\d.*|is .*|no .*)$/s.exec(detail) : null;
    if (k) detail = `${section}.${k[1]}: ${k[2].startsWith('is ') ? `the value ${k[2]}` : k[2]}`;
    else if (section) detail = `${/^unknown syscall /.test(detail) ? `${section}.syscall` : section}: ${detail}`;
    throw new EbpfnetError('EBPFNET_USAGE', op, detail, { hint: e.hint && keys(e.hint) });
  }
}
