// SPDX-License-Identifier: Apache-2.0
// A traced call as people and scripts see it: decoded from the kernel's tr_event, then shown as a
// table row or as one JSON line (schema: src/trace/event.schema.json, version SCHEMA_VERSION).
// Pure: the clock offset comes in as a number, so every function here is testable without root.
import { isUtf8 } from 'node:buffer';
import { errnoName } from '../errors.js';
import * as G from '../gen/trace.js';
import { syscallName } from './syscalls.js';

/** The `v` of every JSON line. Bump it when a field changes meaning or goes away (adding one does not). */
export const SCHEMA_VERSION = 1;

export interface TraceEvent {
  /** when the call returned, in nanoseconds since the Unix epoch */
  timeNs: bigint;
  syscall: string;
  pid: number;
  tid: number;
  uid: number;
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
  /** the syscall's return value: 0 or -errno */
  ret: number;
  /** `0` or the errno name (`EEXIST`) */
  result: string;
  latencyNs: number;
}

/** `0` for success, else the errno name: the same word in the table, JSON and metric labels. */
export function resultName(ret: number): string {
  if (ret === 0) return '0';
  return ret < 0 ? errnoName(-ret) : String(ret);
}

function cstring(u8: Uint8Array): Buffer {
  const b = Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
  const end = b.indexOf(0);
  return end < 0 ? b : b.subarray(0, end);
}

/**
 * tr_event -> TraceEvent. `wallOffsetNs` turns the kernel's CLOCK_MONOTONIC stamps into wall-clock
 * time (see `wallClockOffsetNs`).
 */
export function decodeEvent(r: G.TrEvent, wallOffsetNs: bigint): TraceEvent {
  const fault = (r.flags & G.TR_F_FAULT) !== 0;
  const raw = cstring(r.path);
  const utf8 = isUtf8(raw);
  return {
    timeNs: r.ts_ns + wallOffsetNs,
    syscall: syscallName(r.syscall),
    pid: r.pid,
    tid: r.tid,
    uid: r.uid,
    comm: cstring(r.comm).toString('utf8'),
    path: fault ? null : raw.toString('utf8'),
    pathHex: fault || utf8 ? null : raw.toString('hex'),
    truncated: (r.flags & G.TR_F_TRUNCATED) !== 0,
    dirfd: r.flags & G.TR_F_DIRFD ? r.dirfd : null,
    mode: r.mode,
    ret: r.ret,
    result: resultName(r.ret),
    latencyNs: Number(r.latency_ns),
  };
}

/**
 * Nanoseconds to add to a CLOCK_MONOTONIC stamp (bpf_ktime_get_ns) to get wall-clock time. Node's
 * hrtime is CLOCK_MONOTONIC too, and performance.timeOrigin + now() is wall time to the microsecond.
 */
export function wallClockOffsetNs(): bigint {
  const mono = process.hrtime.bigint();
  const wall = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e3)) * 1000n;
  return wall - mono;
}

/** 0755 (at least four digits, like ls and chmod print it) */
export const octalMode = (mode: number): string => `0${(mode >>> 0).toString(8).padStart(3, '0')}`;

/** RFC 3339 UTC with microseconds: 2026-11-21T18:47:05.123456Z */
export function isoTime(ns: bigint): string {
  const ms = ns / 1_000_000n;
  const us = Number((ns / 1000n) % 1000n);
  return `${new Date(Number(ms)).toISOString().slice(0, -1)}${String(us).padStart(3, '0')}Z`;
}

/** One JSON Lines record; keys in a fixed order, `path_hex` only when the path is not UTF-8. */
export function jsonLine(e: TraceEvent): string {
  const o: Record<string, unknown> = {
    v: SCHEMA_VERSION,
    time: isoTime(e.timeNs),
    syscall: e.syscall,
    pid: e.pid,
    tid: e.tid,
    uid: e.uid,
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
export function clockTime(ns: bigint): string {
  const d = new Date(Number(ns / 1_000_000n));
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

export interface TableOptions {
  timestamps: boolean;
}

/** Column widths; PATH is last and unpadded, so long paths never push other columns about. */
const COLS = [
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

function line(cells: string[], o: TableOptions): string {
  const cols = o.timestamps ? COLS : COLS.slice(1);
  const parts = cols.map(([name, w], i) => (name === 'LAT(us)' ? cells[i].padStart(w) : cells[i].padEnd(w)));
  return `${parts.join(' ')} ${cells[cells.length - 1]}`;
}

export function tableHeader(o: TableOptions): string {
  const cols = o.timestamps ? COLS : COLS.slice(1);
  return line([...cols.map(([n]) => n), 'PATH'], o);
}

export function tableRow(e: TraceEvent, o: TableOptions): string {
  const cells = [
    String(e.pid),
    String(e.tid),
    String(e.uid),
    printable(e.comm),
    e.syscall,
    octalMode(e.mode),
    e.result,
    (e.latencyNs / 1000).toFixed(1),
    displayPath(e),
  ];
  return line(o.timestamps ? [clockTime(e.timeNs), ...cells] : cells, o);
}
