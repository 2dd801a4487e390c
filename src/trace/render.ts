// SPDX-License-Identifier: Apache-2.0
// The reader's hot path: ring buffer records read in place and rendered straight into output
// bytes, one Buffer per poll, without an event object or a string per call. In a mkdir storm of
// 100,000+ calls a second the reader's CPU is most of what tracing costs the machine (on a small
// VM it shares the CPU with the traced program), so this is where `trace` is made cheap.
//
// The fast path covers the usual record: a command name and a path of printable ASCII that needs
// no JSON escaping. Anything else (escapes, bytes that are not UTF-8, an unreadable path) goes
// through the reference formatters in event.ts. Both print the same bytes for the same record, and
// test/unit/trace-render.test.ts holds them to it, edge case by edge case.
import * as G from '../gen/trace.js';
import { COLUMNS, SCHEMA_VERSION, UNKNOWN_RESULT, decodeEvent, jsonLine, resultName, tableHeader, tableRow, type CgroupNamer, type TableOptions } from './event.js';
import { syscallName, viaName } from './syscalls.js';

export type RenderFormat = 'json' | 'table';

/** tr_event field offsets, from the generated layout (maps/trace.json), never written by hand. */
const at = Object.fromEntries(G.TrEvent.fields.map((f) => [f.name, f.offset])) as Record<keyof G.TrEvent, number>;
// Records are read as 32-bit words (a typed-array load instead of a Buffer method call per field).
// That needs every number field on a 4-byte boundary; a layout change that breaks it fails here,
// at load, not with garbage in the output.
for (const f of ['ts_ns', 'latency_ns', 'pid', 'tid', 'uid', 'ret', 'mode', 'dirfd', 'syscall', 'ns_pid', 'cgroup_id', 'via', 'comm', 'path'] as const) {
  if (at[f] % 4) throw new Error(`trace/render: tr_event.${f} is not 4-byte aligned; keep maps/trace.json's number fields aligned`);
}
const W = {
  ts: at.ts_ns >> 2,
  lat: at.latency_ns >> 2,
  pid: at.pid >> 2,
  tid: at.tid >> 2,
  uid: at.uid >> 2,
  ret: at.ret >> 2,
  mode: at.mode >> 2,
  dirfd: at.dirfd >> 2,
  comm: at.comm >> 2,
  path: at.path >> 2,
  /** syscall and flags, two u16 in one word */
  sysflags: at.syscall >> 2,
  nsPid: at.ns_pid >> 2,
  cgroup: at.cgroup_id >> 2,
  via: at.via >> 2,
} as const;
// the "same call as the last record" shortcut compares pid up to the path: the new fields must sit inside
if (!(at.ns_pid > at.pid && at.via < at.path && at.cgroup_id < at.path)) throw new Error('trace/render: tr_event ns_pid, cgroup_id and via must lie between pid and path');
if (at.flags !== at.syscall + 2) throw new Error('trace/render: tr_event.flags must follow tr_event.syscall');
// what the fast path compares to tell "same call as the last record": pid up to the path
const SAME_FROM = W.pid;

const TWO32 = 4294967296;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SPACE = 0x20;
const ZERO = 0x30;
const NL = 0x0a;
/** the most one record can take on the fast path; the slow path sizes itself */
const MAX_FAST = 1024;
/** "00" "01" ... "99": numbers are written two digits at a time */
const PAIRS = Buffer.from(Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0')).join(''), 'latin1');

const ascii = (s: string): Uint8Array => Buffer.from(s, 'latin1');

/**
 * One record at a time, read in place: `select` it, then read its fields. The words come from a
 * Uint32Array over the ring's memory, made once per buffer.
 */
export class RecordReader {
  b: Buffer = Buffer.alloc(0);
  /** byte offset of the record in b */
  o = 0;
  /** word index of the record in u32 */
  w = 0;
  u32: Uint32Array = new Uint32Array(0);
  private mem: ArrayBufferLike | null = null;
  private readonly scratch = Buffer.alloc(G.TrEvent.size + 8);
  private readonly comms = new Map<number, { w0: number; w1: number; w2: number; w3: number; comm: string }>();

  select(b: Buffer, o: number): this {
    if ((b.byteOffset + o) & 3) {
      // not word-aligned (the ring's records always are; a test's buffer may not be): read a copy
      const s = this.scratch;
      b.copy(s, 0, o, o + G.TrEvent.size);
      b = s;
      o = 0;
    }
    if (b.buffer !== this.mem) {
      this.mem = b.buffer;
      this.u32 = new Uint32Array(b.buffer, 0, b.buffer.byteLength >> 2);
    }
    this.b = b;
    this.o = o;
    this.w = (b.byteOffset + o) >> 2;
    return this;
  }

  pid(): number {
    return this.u32[this.w + W.pid];
  }
  tid(): number {
    return this.u32[this.w + W.tid];
  }
  uid(): number {
    return this.u32[this.w + W.uid];
  }
  ret(): number {
    return this.u32[this.w + W.ret] | 0;
  }
  mode(): number {
    return this.u32[this.w + W.mode];
  }
  dirfd(): number {
    return this.u32[this.w + W.dirfd] | 0;
  }
  syscall(): number {
    return this.u32[this.w + W.sysflags] & 0xffff;
  }
  nsPid(): number {
    return this.u32[this.w + W.nsPid];
  }
  via(): number {
    return this.u32[this.w + W.via];
  }
  /** exact below 2^53 (kernfs ids are far below it) */
  cgroupId(): number {
    return this.u64(W.cgroup);
  }
  /** `0`, the errno name, or `unknown` when the entry path gives no result */
  result(): string {
    return this.flags() & G.TR_F_NO_RESULT ? UNKNOWN_RESULT : resultName(this.ret());
  }
  flags(): number {
    return this.u32[this.w + W.sysflags] >>> 16;
  }
  /** nanoseconds, exact below 2^53 (104 days of uptime for timestamps, always for latencies) */
  private u64(i: number): number {
    return this.u32[this.w + i + 1] * TWO32 + this.u32[this.w + i];
  }
  latencyNs(): number {
    return this.u64(W.lat);
  }
  /** wall-clock µs, from the kernel's CLOCK_MONOTONIC ns and the offset (wallClockOffsetUs) */
  timeUs(wallOffsetUs: number): number {
    return Math.floor(this.u64(W.ts) / 1000 + wallOffsetUs);
  }

  /**
   * The command name. A pid's name changes only at exec or prctl, so its 16 bytes are compared with
   * the cached ones (four word loads) and decoded only when they differ.
   */
  comm(): string {
    const i = this.w + W.comm;
    const u = this.u32;
    const w0 = u[i];
    const w1 = u[i + 1];
    const w2 = u[i + 2];
    const w3 = u[i + 3];
    const pid = this.pid();
    const hit = this.comms.get(pid);
    if (hit && hit.w0 === w0 && hit.w1 === w1 && hit.w2 === w2 && hit.w3 === w3) return hit.comm;
    const c = this.o + at.comm;
    let end = this.b.indexOf(0, c);
    if (end < 0 || end > c + G.TR_COMM_LEN) end = c + G.TR_COMM_LEN;
    const comm = this.b.toString('utf8', c, end);
    // pids are reused and a long trace sees many: start over rather than grow without bound
    if (this.comms.size >= 8192) this.comms.clear();
    this.comms.set(pid, { w0, w1, w2, w3, comm });
    return comm;
  }
}

export class Renderer {
  private out: Buffer;
  private pos = 0;
  /** records the fast path handed to the reference formatter (tests watch it stays rare) */
  slowRecords = 0;
  private readonly json: boolean;
  private readonly timestamps: boolean;
  private second = NaN;
  private secondBytes: Uint8Array = new Uint8Array(0);
  private readonly names = new Map<number, Uint8Array>();
  private readonly results = new Map<number, Uint8Array>();
  private readonly lit: Record<string, Uint8Array>;
  private readonly vias = new Map<number, Uint8Array>();
  private readonly cgroupBytes = new Map<number, Uint8Array>();
  /** the table's CGROUP column: off until a second cgroup shows up */
  private firstCgroup = -1;
  private multiCgroup = false;
  /**
   * The last fast JSON record's words from pid to the end of its path, and what they rendered to
   * (from the syscall name to just before the latency). A burst from one thread repeats them
   * record after record with only time and latency changing: then a compare and one copy replace
   * rendering eight fields again.
   */
  private readonly lastWords = new Uint32Array((G.TrEvent.size >> 2) + 1);
  private lastWordCount = 0;
  private readonly lastMid = Buffer.alloc(MAX_FAST);
  private lastMidView: Uint8Array = new Uint8Array(0);

  constructor(
    format: RenderFormat,
    private readonly table: TableOptions,
    /** added to the kernel's CLOCK_MONOTONIC stamps to get wall-clock µs (wallClockOffsetUs) */
    private readonly wallOffsetUs: number,
    initialBytes = 1 << 20,
    /** cgroup id -> path (CgroupNames.name) */
    private readonly cgroupName: CgroupNamer = () => null,
  ) {
    this.json = format === 'json';
    this.timestamps = table.timestamps;
    this.out = Buffer.allocUnsafe(Math.max(initialBytes, 2 * MAX_FAST));
    // the fixed parts of a JSON line, in jsonLine's order
    this.lit = {
      v: ascii(`{"v":${SCHEMA_VERSION},"time":"`),
      syscall: ascii('Z","syscall":"'),
      via: ascii('","via":"'),
      pid: ascii('","pid":'),
      nsPid: ascii(',"ns_pid":'),
      tid: ascii(',"tid":'),
      uid: ascii(',"uid":'),
      cgroupId: ascii(',"cgroup_id":'),
      cgroup: ascii(',"cgroup":'),
      comm: ascii(',"comm":"'),
      path: ascii('","path":"'),
      dirfd: ascii('","dirfd":'),
      mode: ascii(',"mode":"0'),
      ret: ascii('","ret":'),
      result: ascii(',"result":"'),
      latency: ascii('","latency_ns":'),
      truncatedTrue: ascii(',"truncated":true}\n'),
      truncatedFalse: ascii(',"truncated":false}\n'),
      nul: ascii('null'),
      fd: ascii('<fd '),
      fdEnd: ascii('>/'),
      dots: ascii('...'),
    };
  }

  /** Bytes rendered so far. Valid until the next record(): write them out first. */
  take(): Buffer {
    const b = this.out.subarray(0, this.pos);
    this.pos = 0;
    return b;
  }

  /** Gives up the buffer take() returned (still queued somewhere): the next records go to a new one. */
  release(): void {
    this.out = Buffer.allocUnsafe(this.out.length);
    this.pos = 0;
  }

  get pending(): number {
    return this.pos;
  }

  private room(n: number): void {
    if (this.pos + n <= this.out.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.out.length * 2, this.pos + n));
    this.out.copy(bigger, 0, 0, this.pos);
    this.out = bigger;
  }

  /** TypedArray#set is a memcpy: past a dozen bytes it beats a byte loop several times over */
  private put(lit: Uint8Array): void {
    this.out.set(lit, this.pos);
    this.pos += lit.length;
  }

  /** a non-negative integer below 2^53 in decimal, two digits at a time while it fits in 31 bits */
  private uint(n: number): void {
    let len = 1;
    for (let x = n; x >= 10; x = Math.floor(x / 10)) len++;
    const out = this.out;
    let p = this.pos + len;
    this.pos = p;
    while (n >= 0x80000000) {
      out[--p] = ZERO + (n % 10);
      n = Math.floor(n / 10);
    }
    let v = n | 0;
    while (v >= 100) {
      const q = (v / 100) | 0;
      const r = (v - q * 100) << 1;
      out[--p] = PAIRS[r + 1];
      out[--p] = PAIRS[r];
      v = q;
    }
    if (v >= 10) {
      out[--p] = PAIRS[(v << 1) + 1];
      out[--p] = PAIRS[v << 1];
    } else {
      out[--p] = ZERO + v;
    }
  }

  private int(n: number): void {
    if (n < 0) {
      this.out[this.pos++] = 0x2d;
      n = -n;
    }
    this.uint(n);
  }

  /** exactly `width` digits, zero-padded (`n` below 10^width and 2^31) */
  private digits(n: number, width: number): void {
    const out = this.out;
    let p = this.pos + width;
    this.pos = p;
    let v = n | 0;
    for (let i = 0; i < width; i++) {
      const q = (v / 10) | 0;
      out[--p] = ZERO + v - q * 10;
      v = q;
    }
  }

  private cached(map: Map<number, Uint8Array>, key: number, make: () => string): Uint8Array {
    let v = map.get(key);
    if (v === undefined) {
      v = ascii(make());
      if (map.size < 4096) map.set(key, v);
    }
    return v;
  }

  /**
   * Copies a NUL-terminated field when every byte is printable ASCII that JSON leaves alone; returns
   * false when the slow path must take the record.
   */
  private plain(b: Buffer, start: number, size: number): boolean {
    const out = this.out;
    let p = this.pos;
    for (let i = start, end = start + size; i < end; i++) {
      const c = b[i];
      if (c === 0) break;
      if (c < SPACE || c > 0x7e || c === QUOTE || c === BACKSLASH) return false;
      out[p++] = c;
    }
    this.pos = p;
    return true;
  }

  /** Appends the selected record as one JSON line or one table row. */
  record(r: RecordReader): void {
    this.room(MAX_FAST);
    if (!this.json && !this.multiCgroup) {
      // the first event from a second cgroup turns the CGROUP column on, under a header that has it
      const id = r.cgroupId();
      if (this.firstCgroup < 0) this.firstCgroup = id;
      else if (id !== this.firstCgroup) {
        this.multiCgroup = true;
        const h = `${tableHeader({ ...this.table, cgroup: true })}\n`;
        this.room(Buffer.byteLength(h) + MAX_FAST);
        this.pos += this.out.write(h, this.pos);
      }
    }
    const start = this.pos;
    if (this.json ? this.jsonFast(r) : this.rowFast(r)) return;
    // the slow path: the reference formatter, for whatever the fast one does not handle
    this.slowRecords++;
    this.pos = start;
    const e = decodeEvent(r.b, r.o, this.wallOffsetUs, this.cgroupName);
    const text = `${this.json ? jsonLine(e) : tableRow(e, { ...this.table, cgroup: this.multiCgroup })}\n`;
    this.room(Buffer.byteLength(text));
    this.pos += this.out.write(text, this.pos);
  }

  /**
   * What starts a line up to the sub-second digits, made once a second: `{"v":1,"time":"` and the
   * ISO date and time for JSON, the local HH:MM:SS for the table.
   */
  private secondPrefix(sec: number): Uint8Array {
    if (sec !== this.second) {
      this.second = sec;
      const d = new Date(sec * 1000);
      const two = (n: number): string => String(n).padStart(2, '0');
      this.secondBytes = this.json
        ? Buffer.concat([this.lit.v, ascii(d.toISOString().slice(0, 20))])
        : ascii(`${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.`);
    }
    return this.secondBytes;
  }

  private octal(m: number): void {
    // at least three octal digits (after the leading 0 the caller wrote), more when there are more bits
    let len = 3;
    for (let x = m >>> 9; x > 0; x >>>= 3) len++;
    const out = this.out;
    for (let i = len - 1; i >= 0; i--) {
      out[this.pos + i] = ZERO + (m & 7);
      m >>>= 3;
    }
    this.pos += len;
  }

  /** Whether the record's words from pid to the end of its path are the last fast record's. */
  private sameAsLast(r: RecordReader, pathWords: number): boolean {
    const n = W.path - SAME_FROM + pathWords;
    if (n !== this.lastWordCount) return false;
    const u = r.u32;
    const last = this.lastWords;
    const base = r.w + SAME_FROM;
    for (let i = 0; i < n; i++) if (u[base + i] !== last[i]) return false;
    return true;
  }

  /** `"/a/b"` or `null`, as JSON; cached once resolved (a name that is null may resolve later). */
  private cgroupJson(id: number): Uint8Array | null {
    const hit = this.cgroupBytes.get(id);
    if (hit) return hit;
    const name = this.cgroupName(id);
    if (name === null) return null;
    const v = Buffer.from(JSON.stringify(name), 'utf8');
    if (this.cgroupBytes.size < 4096) this.cgroupBytes.set(id, v);
    return v;
  }

  private jsonFast(r: RecordReader): boolean {
    const flags = r.flags();
    if (flags & (G.TR_F_FAULT | G.TR_F_NO_RESULT)) return false;
    const L = this.lit;
    const us = r.timeUs(this.wallOffsetUs);
    const sec = Math.floor(us / 1e6);
    this.put(this.secondPrefix(sec));
    this.digits(us - sec * 1e6, 6);
    // the path's length in words, NUL included, bounded by the field
    const ps = r.o + at.path;
    let pe = r.b.indexOf(0, ps);
    if (pe < 0 || pe > ps + G.TR_PATH_MAX) pe = ps + G.TR_PATH_MAX;
    const pathWords = Math.min((pe - ps + 4) >> 2, G.TR_PATH_MAX >> 2);
    if (this.sameAsLast(r, pathWords)) {
      this.out.set(this.lastMidView, this.pos);
      this.pos += this.lastMidView.length;
    } else {
      const mid = this.pos;
      if (!this.jsonMiddle(r, flags)) return false;
      const n = W.path - SAME_FROM + pathWords;
      this.lastWords.set(r.u32.subarray(r.w + SAME_FROM, r.w + SAME_FROM + n));
      this.lastWordCount = n;
      const len = this.pos - mid;
      this.out.copy(this.lastMid, 0, mid, this.pos);
      this.lastMidView = this.lastMid.subarray(0, len);
    }
    this.uint(r.latencyNs());
    this.put(flags & G.TR_F_TRUNCATED ? L.truncatedTrue : L.truncatedFalse);
    return true;
  }

  /** From the syscall name to just before the latency value. */
  private jsonMiddle(r: RecordReader, flags: number): boolean {
    const L = this.lit;
    this.put(L.syscall);
    const sc = r.syscall();
    this.put(this.cached(this.names, sc, () => syscallName(sc)));
    this.put(L.via);
    const via = r.via();
    this.put(this.cached(this.vias, via, () => viaName(via)));
    this.put(L.pid);
    this.uint(r.pid());
    this.put(L.nsPid);
    this.uint(r.nsPid());
    this.put(L.tid);
    this.uint(r.tid());
    this.put(L.uid);
    this.uint(r.uid());
    this.put(L.cgroupId);
    const cg = r.cgroupId();
    this.uint(cg);
    this.put(L.cgroup);
    const name = this.cgroupJson(cg);
    if (name === null) this.put(L.nul);
    else {
      // a long cgroup path could outgrow the fast path's room: leave those to the slow path
      if (name.length > MAX_FAST - G.TR_PATH_MAX - 200) return false;
      this.put(name);
    }
    this.put(L.comm);
    if (!this.plain(r.b, r.o + at.comm, G.TR_COMM_LEN)) return false;
    this.put(L.path);
    if (!this.plain(r.b, r.o + at.path, G.TR_PATH_MAX)) return false;
    this.put(L.dirfd);
    if (flags & G.TR_F_DIRFD) this.int(r.dirfd());
    else this.put(L.nul);
    this.put(L.mode);
    this.octal(r.mode());
    this.put(L.ret);
    const ret = r.ret();
    this.int(ret);
    this.put(L.result);
    this.put(this.cached(this.results, ret, () => resultName(ret)));
    this.put(L.latency);
    return true;
  }

  /** Ends a padded table cell that began at `from`: spaces up to its width, then the separator. */
  private cell(from: number, width: number): number {
    const out = this.out;
    let p = this.pos;
    const end = from + width;
    while (p < end) out[p++] = SPACE;
    out[p++] = SPACE;
    this.pos = p;
    return p;
  }

  /** The same columns as tableRow in event.ts: padded cells, one space apart, PATH last. */
  private rowFast(r: RecordReader): boolean {
    const flags = r.flags();
    // rarer rows (another entry path, no result, a CGROUP column) take the reference formatter
    if (flags & (G.TR_F_FAULT | G.TR_F_NO_RESULT) || this.multiCgroup || r.via() !== G.TR_VIA_SYSCALL) return false;
    const L = this.lit;
    const [time, pid, tid, uid, comm, syscall, mode, result, lat] = COLUMNS;
    let from = this.pos;
    if (this.timestamps) {
      const us = r.timeUs(this.wallOffsetUs);
      const sec = Math.floor(us / 1e6);
      this.put(this.secondPrefix(sec));
      this.digits(Math.floor((us - sec * 1e6) / 1000), 3);
      from = this.cell(from, time[1]);
    }
    this.uint(r.pid());
    from = this.cell(from, pid[1]);
    this.uint(r.tid());
    from = this.cell(from, tid[1]);
    this.uint(r.uid());
    from = this.cell(from, uid[1]);
    if (!this.plain(r.b, r.o + at.comm, G.TR_COMM_LEN)) return false;
    from = this.cell(from, comm[1]);
    const sc = r.syscall();
    this.put(this.cached(this.names, sc, () => syscallName(sc)));
    from = this.cell(from, syscall[1]);
    this.out[this.pos++] = ZERO;
    this.octal(r.mode());
    from = this.cell(from, mode[1]);
    const ret = r.ret();
    this.put(this.cached(this.results, ret, () => resultName(ret)));
    this.cell(from, result[1]);
    // latency in µs with one decimal, right-aligned: latencyUs() in event.ts, in bytes
    const tenths = Math.round(r.latencyNs() / 100);
    const whole = Math.floor(tenths / 10);
    let len = 3;
    for (let x = whole; x >= 10; x = Math.floor(x / 10)) len++;
    for (let i = len; i < lat[1]; i++) this.out[this.pos++] = SPACE;
    this.uint(whole);
    this.out[this.pos++] = 0x2e;
    this.out[this.pos++] = ZERO + (tenths % 10);
    this.out[this.pos++] = SPACE;
    if (flags & G.TR_F_DIRFD) {
      this.put(L.fd);
      this.int(r.dirfd());
      this.put(L.fdEnd);
    }
    if (!this.plain(r.b, r.o + at.path, G.TR_PATH_MAX)) return false;
    if (flags & G.TR_F_TRUNCATED) this.put(L.dots);
    this.out[this.pos++] = NL;
    return true;
  }
}
