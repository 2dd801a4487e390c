// SPDX-License-Identifier: Apache-2.0
// A traced call as people and scripts see it: decoded from the kernel's tr_event, then shown as a
// table row or as one JSON line (schema: src/trace/event.schema.json, version SCHEMA_VERSION).
// This is the reference: plain and obviously right. The reader's hot path (render.ts) prints the
// same bytes without building these objects, and falls back to these functions for the records it
// does not handle itself. Pure: the clock offset comes in as a number, so all of it runs without root.
import { isUtf8 } from 'node:buffer';
import { errnoName } from '../errors.js';
import * as G from '../gen/trace.js';
import { syscallName, viaName } from './syscalls.js';

/** The `v` of every JSON line. Bump it when a field changes meaning or goes away (adding one does not). */
export const SCHEMA_VERSION = 1;

export interface TraceEvent {
  /** when the call returned, in microseconds since the Unix epoch */
  timeUs: number;
  syscall: string;
  /** how the call entered the kernel: syscall, io_uring, kernel */
  via: string;
  pid: number;
  /** the pid in the caller's own pid namespace (a container's pid) */
  nsPid: number;
  tid: number;
  uid: number;
  /** cgroup v2 id (exact below 2^53: kernfs ids on 64-bit kernels are far below it) */
  cgroupId: number;
  /** its path under the cgroup v2 mount (`/` for the root), null when it is gone or unknown */
  cgroup: string | null;
  comm: string;
  /** the path as passed to the syscall; null when it could not be read (the call then fails with EFAULT) */
  path: string | null;
  /** the path's bytes in hex, only when they are not valid UTF-8 (then `path` has U+FFFD in their place) */
  pathHex: string | null;
  /** the path was longer than the TR_PATH_MAX - 1 bytes the tracer copies */
  truncated: boolean;
  /** set when the path is relative to this directory fd (of process pid) rather than to the cwd */
  dirfd: number | null;
  /** the mode argument as passed, before the umask */
  mode: number;
  /** the syscall's return value: 0 or -errno; null when the entry path gives no result (via kernel) */
  ret: number | null;
  /** `0`, the errno name (`EEXIST`), or `unknown` with ret null */
  result: string;
  latencyNs: number;
}

/** `0` for success, else the errno name: the same word in the table, JSON and metric labels. */
export function resultName(ret: number): string {
  if (ret === 0) return '0';
  return ret < 0 ? errnoName(-ret) : String(ret);
}

/**
 * Where each tr_event field is, from the generated layout (maps/trace.json), so the reader can
 * decode records in place in the ring's memory: no copy of the 256-byte path, no BigInt.
 */
const at = Object.fromEntries(G.TrEvent.fields.map((f) => [f.name, f.offset])) as Record<keyof G.TrEvent, number>;

const TWO32 = 4294967296;
const u64 = (b: Buffer, o: number): number => b.readUInt32LE(o + 4) * TWO32 + b.readUInt32LE(o);

/** End of a NUL-terminated string in a fixed-size field (the field's end if it has no NUL). */
function strEnd(b: Buffer, start: number, size: number): number {
  const end = b.indexOf(0, start);
  return end < 0 || end > start + size ? start + size : end;
}

/**
 * The tr_event at offset `o` of `b` (a record in the ring buffer, or a codec-encoded buffer) ->
 * TraceEvent. `wallOffsetUs` turns the kernel's CLOCK_MONOTONIC stamps into wall-clock time (see
 * `wallClockOffsetUs`). Microseconds fit a double exactly, nanoseconds since 1970 do not.
 */
/** Cgroup id -> path; the default knows none. */
export type CgroupNamer = (id: number) => string | null;
const noNames: CgroupNamer = () => null;

/** what the JSON and the table say for a call whose result the tracer cannot know */
export const UNKNOWN_RESULT = 'unknown';

export function decodeEvent(b: Buffer, o: number, wallOffsetUs: number, cgroupName: CgroupNamer = noNames): TraceEvent {
  const flags = b.readUInt16LE(o + at.flags);
  const ret = b.readInt32LE(o + at.ret);
  const fault = (flags & G.TR_F_FAULT) !== 0;
  const noResult = (flags & G.TR_F_NO_RESULT) !== 0;
  const cgroupId = u64(b, o + at.cgroup_id);
  const cs = o + at.comm;
  const ps = o + at.path;
  const pe = strEnd(b, ps, G.TR_PATH_MAX);
  let path: string | null = null;
  let pathHex: string | null = null;
  if (!fault) {
    path = b.toString('utf8', ps, pe);
    // U+FFFD is rare in a real path; only then is it worth checking whether the bytes were UTF-8
    if (path.includes('\ufffd') && !isUtf8(b.subarray(ps, pe))) pathHex = b.toString('hex', ps, pe);
  }
  return {
    timeUs: Math.floor(u64(b, o + at.ts_ns) / 1000 + wallOffsetUs),
    syscall: syscallName(b.readUInt16LE(o + at.syscall)),
    via: viaName(b.readUInt32LE(o + at.via)),
    pid: b.readUInt32LE(o + at.pid),
    nsPid: b.readUInt32LE(o + at.ns_pid),
    tid: b.readUInt32LE(o + at.tid),
    uid: b.readUInt32LE(o + at.uid),
    cgroupId,
    cgroup: cgroupName(cgroupId),
    comm: b.toString('utf8', cs, strEnd(b, cs, G.TR_COMM_LEN)),
    path,
    pathHex,
    truncated: (flags & G.TR_F_TRUNCATED) !== 0,
    dirfd: flags & G.TR_F_DIRFD ? b.readInt32LE(o + at.dirfd) : null,
    mode: b.readUInt32LE(o + at.mode),
    ret: noResult ? null : ret,
    result: noResult ? UNKNOWN_RESULT : resultName(ret),
    latencyNs: u64(b, o + at.latency_ns),
  };
}

/**
 * Microseconds to add to a CLOCK_MONOTONIC stamp (bpf_ktime_get_ns) to get wall-clock time. Node's
 * hrtime is CLOCK_MONOTONIC too, and performance.timeOrigin + now() is wall time to the microsecond.
 */
export function wallClockOffsetUs(): number {
  const monoUs = Number(process.hrtime.bigint()) / 1000;
  return (performance.timeOrigin + performance.now()) * 1000 - monoUs;
}

/** 0755 (at least four digits, like ls and chmod print it) */
export const octalMode = (mode: number): string => `0${(mode >>> 0).toString(8).padStart(3, '0')}`;

/** RFC 3339 UTC with microseconds: 2026-11-21T18:47:05.123456Z */
export function isoTime(us: number): string {
  const sec = Math.floor(us / 1e6);
  return `${new Date(sec * 1000).toISOString().slice(0, 20)}${String(us - sec * 1e6).padStart(6, '0')}Z`;
}

/** One JSON Lines record: keys in a fixed order, `path_hex` only when the path is not UTF-8. */
export function jsonLine(e: TraceEvent): string {
  const o: Record<string, unknown> = {
    v: SCHEMA_VERSION,
    time: isoTime(e.timeUs),
    syscall: e.syscall,
    via: e.via,
    pid: e.pid,
    ns_pid: e.nsPid,
    tid: e.tid,
    uid: e.uid,
    cgroup_id: e.cgroupId,
    cgroup: e.cgroup,
    comm: e.comm,
    path: e.path,
    dirfd: e.dirfd,
    mode: octalMode(e.mode),
    ret: e.ret,
    result: e.result,
    latency_ns: e.latencyNs,
    truncated: e.truncated,
  };
  if (e.pathHex !== null) o.path_hex = e.pathHex;
  return JSON.stringify(o);
}

/**
 * What a terminal may show of a name: control characters (a newline in a path could forge a row)
 * and bytes that are not UTF-8 become \xNN.
 */
export function printable(text: string, hex: string | null = null): string {
  if (hex !== null) {
    let out = '';
    for (const b of Buffer.from(hex, 'hex')) out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
    return out;
  }
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** The PATH column: `<fd 3>/name` when relative to a directory fd, `...` when truncated. */
export function displayPath(e: TraceEvent): string {
  if (e.path === null) return '<unreadable>';
  const p = printable(e.path, e.pathHex);
  return `${e.dirfd === null ? '' : `<fd ${e.dirfd}>/`}${p}${e.truncated ? '...' : ''}`;
}

/** HH:MM:SS.mmm in local time, as BCC's tools print -T timestamps */
export function clockTime(us: number): string {
  const d = new Date(Math.floor(us / 1000));
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

export interface TableOptions {
  timestamps: boolean;
  /** a CGROUP column before PATH: the renderer turns it on once events come from a second cgroup */
  cgroup?: boolean;
}

/** Column names and widths; PATH is last and unpadded, so long paths never push other columns about. */
export const COLUMNS = [
  ['TIME', 12],
  ['PID', 7],
  ['TID', 7],
  ['UID', 6],
  ['COMM', 15],
  ['SYSCALL', 8],
  ['MODE', 5],
  ['RESULT', 7],
  ['LAT(us)', 8],
] as const;

/** the CGROUP column's width; longer paths push PATH right, as PATH is unpadded anyway */
export const CGROUP_WIDTH = 24;

function line(cells: string[], o: TableOptions): string {
  const cols = o.timestamps ? COLUMNS : COLUMNS.slice(1);
  const parts = cols.map(([name, w], i) => (name === 'LAT(us)' ? cells[i].padStart(w) : cells[i].padEnd(w)));
  if (o.cgroup) parts.push(cells[cols.length].padEnd(CGROUP_WIDTH));
  return `${parts.join(' ')} ${cells[cells.length - 1]}`;
}

/** The SYSCALL cell: the syscall, prefixed with the entry path when that is not the syscall itself. */
export const syscallCell = (syscall: string, via: string): string => (via === 'syscall' ? syscall : `${via}:${syscall}`);
/** The CGROUP cell: the path, or `#<id>` for a cgroup that is gone. */
export const cgroupCell = (id: number, name: string | null): string => (name === null ? `#${id}` : printable(name));

/** µs with one decimal, rounded half up on whole nanoseconds (the renderer rounds the same way). */
export function latencyUs(ns: number): string {
  const tenths = Math.round(ns / 100);
  return `${Math.floor(tenths / 10)}.${tenths % 10}`;
}

export function tableHeader(o: TableOptions): string {
  const cols = o.timestamps ? COLUMNS : COLUMNS.slice(1);
  return line([...cols.map(([n]) => n), ...(o.cgroup ? ['CGROUP'] : []), 'PATH'], o);
}

export function tableRow(e: TraceEvent, o: TableOptions): string {
  const cells = [
    String(e.pid),
    String(e.tid),
    String(e.uid),
    printable(e.comm),
    syscallCell(e.syscall, e.via),
    octalMode(e.mode),
    e.result,
    latencyUs(e.latencyNs),
    ...(o.cgroup ? [cgroupCell(e.cgroupId, e.cgroup)] : []),
    displayPath(e),
  ];
  return line(o.timestamps ? [clockTime(e.timeUs), ...cells] : cells, o);
}
