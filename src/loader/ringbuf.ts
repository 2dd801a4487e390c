// SPDX-License-Identifier: Apache-2.0
// A BPF ring buffer read in place from JavaScript. The consumer page (read-write) and the producer
// page plus data (read-only, data mapped twice so a record never wraps) are mmapped once; records
// are decoded straight from that memory, and the reader never blocks: consume() takes what is
// there and returns. The kernel side submits with BPF_RB_NO_WAKEUP, so nothing waits on epoll.
// Layout: include/uapi/linux/bpf.h (BPF_RINGBUF_*), kernel/bpf/ringbuf.c.
// Ordering, as the kernel's protocol asks: the producer position and each record header are read
// with acquire semantics and the consumer position is stored with release semantics (Atomics), so
// no record is read before the kernel's commit of it and the kernel never reuses bytes still being
// read. On x86 every load is an acquire already, and Atomics.load on memory that is not a
// SharedArrayBuffer costs ~15x a plain load in V8, so the header loads there are plain.
import { EbpfnetError, kernelError } from '../errors.js';
import { errno, libbpf, view, address } from '../libbpf/index.js';
import { track, untrack, type Closable } from './guard.js';
import type { Codec } from './layout.js';
import type { BpfMap } from './map.js';
import { mapInfoByFd } from './map.js';
import { pageSize } from './system.js';

/** BPF_RINGBUF_BUSY_BIT is the header's sign bit: read as an Int32, a busy record is negative */
const DISCARD = 0x40000000;
const LEN_MASK = 0x3fffffff;
/** x86 (TSO) keeps loads in order with other loads: a plain load of a header is an acquire */
const PLAIN_ACQUIRE = process.arch === 'x64' || process.arch === 'ia32';
const HDR = 8;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
/** store the consumer position at least this often, so the producer sees room early */
const COMMIT_EVERY = 256;

export interface RingStats {
  /** records handed to the callback */
  records: number;
  /** records the kernel side could not reserve (from the lost counter, when one was given) */
  lost: bigint;
}

export interface RingOptions {
  /** reads the kernel's count of failed reservations (a per-CPU counter the program keeps) */
  lost?: () => bigint;
}

export class RingBuffer<R> implements Closable {
  readonly size: number;
  private readonly mask: number;
  private cons: unknown;
  private prod: unknown;
  private readonly consPos: BigUint64Array;
  private readonly prodPos: BigUint64Array;
  private readonly data: Buffer;
  /** the data pages as 32-bit words: record headers and fields are 8-byte aligned, so reading them
   * through a typed array is a plain load, cheaper than DataView or Buffer reads */
  readonly words: Uint32Array;
  /** the same words signed, for the headers' atomic loads (Atomics wants an Int32Array) */
  private readonly headers: Int32Array;
  /** the data pages for the codecs' decodeView: DataView reads 64-bit fields without the
   * byte-by-byte BigInt assembly of Buffer#readBigUInt64LE */
  private readonly dataView: DataView;
  private readonly page: number;
  private records = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    map: BpfMap<unknown, unknown> | { fd: number; name: string },
    private readonly codec: Codec<R>,
    private readonly opts: RingOptions = {},
  ) {
    const info = mapInfoByFd(map.fd);
    if (info.type !== 27) throw new EbpfnetError('EBPFNET_USAGE', `read ring buffer ${map.name}`, 'the map is not a ring buffer');
    this.size = info.maxEntries;
    this.mask = this.size - 1;
    this.page = pageSize();
    const b = libbpf();
    this.cons = b.mmap(null, this.page, PROT_READ | PROT_WRITE, MAP_SHARED, map.fd, 0);
    if (address(this.cons) === 0xffffffffffffffffn) throw kernelError(`map ring buffer ${map.name}`, errno());
    this.prod = b.mmap(null, this.page + 2 * this.size, PROT_READ, MAP_SHARED, map.fd, this.page);
    if (address(this.prod) === 0xffffffffffffffffn) {
      b.munmap(this.cons, this.page);
      throw kernelError(`map ring buffer ${map.name}`, errno());
    }
    this.consPos = new BigUint64Array(view(this.cons, this.page), 0, 1);
    const prodView = view(this.prod, this.page + 2 * this.size);
    this.prodPos = new BigUint64Array(prodView, 0, 1);
    this.data = Buffer.from(prodView, this.page, 2 * this.size);
    this.words = new Uint32Array(prodView, this.page, (2 * this.size) / 4);
    this.headers = new Int32Array(prodView, this.page, (2 * this.size) / 4);
    this.dataView = new DataView(prodView, this.page, 2 * this.size);
    track(this);
  }

  /** Bytes written by the kernel and not yet consumed. */
  pending(): number {
    return Number(Atomics.load(this.prodPos, 0) - this.consPos[0]);
  }

  /**
   * Hands every available record to `onRecord` (decoded with the codec) and returns how many.
   * `max` bounds the work per call so a flood cannot starve the event loop.
   */
  consume(onRecord: (r: R) => void, max = Infinity): number {
    if (!this.cons) return 0;
    // everything the loop touches in locals: the callback may do anything, so fields of `this`
    // would be loaded again on every record
    const headers = this.headers;
    const dv = this.dataView;
    const codec = this.codec;
    const mask = this.mask;
    const consPos = this.consPos;
    let cons = Number(consPos[0]);
    const prod = Number(Atomics.load(this.prodPos, 0));
    let n = 0;
    let sinceCommit = 0;
    while (cons < prod && n < max) {
      const off = cons & mask;
      const word = PLAIN_ACQUIRE ? headers[off >>> 2] : Atomics.load(headers, off >>> 2);
      if (word < 0) break; // reserved, not yet submitted
      const len = word & LEN_MASK;
      if ((word & DISCARD) === 0) {
        onRecord(codec.decodeView(dv, off + HDR));
        n++;
      }
      cons += (len + HDR + 7) & ~7;
      if (++sinceCommit === COMMIT_EVERY) {
        // x86 keeps stores in order after earlier loads, so a plain store is a release there
        if (PLAIN_ACQUIRE) consPos[0] = BigInt(cons);
        else Atomics.store(consPos, 0, BigInt(cons));
        sinceCommit = 0;
      }
    }
    Atomics.store(consPos, 0, BigInt(cons));
    this.records += n;
    return n;
  }

  /**
   * Raw records, read in place: `offset` is the record's byte offset into `b` (and into `words`,
   * at offset / 4); the bytes are valid only during the callback.
   */
  consumeRaw(onRecord: (b: Buffer, offset: number, len: number) => void, max = Infinity): number {
    if (!this.cons) return 0;
    const headers = this.headers;
    const data = this.data;
    const mask = this.mask;
    const consPos = this.consPos;
    let cons = Number(consPos[0]);
    const prod = Number(Atomics.load(this.prodPos, 0));
    let n = 0;
    while (cons < prod && n < max) {
      const off = cons & mask;
      const word = PLAIN_ACQUIRE ? headers[off >>> 2] : Atomics.load(headers, off >>> 2);
      if (word < 0) break;
      const len = word & LEN_MASK;
      if ((word & DISCARD) === 0) {
        onRecord(data, off + HDR, len);
        n++;
      }
      cons += (len + HDR + 7) & ~7;
    }
    Atomics.store(consPos, 0, BigInt(cons));
    this.records += n;
    return n;
  }

  /** Polls every `intervalMs` from a timer: never blocks the event loop. */
  start(onRecord: (r: R) => void, intervalMs = 10, maxPerTick = 1 << 16): void {
    this.stop();
    const tick = (): void => {
      // drain until empty, yielding between slices
      if (this.consume(onRecord, maxPerTick) === maxPerTick) setImmediate(tick);
    };
    this.timer = setInterval(tick, intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  stats(): RingStats {
    return { records: this.records, lost: this.opts.lost?.() ?? 0n };
  }

  close(): void {
    this.stop();
    if (!this.cons) return;
    const b = libbpf();
    b.munmap(this.prod, this.page + 2 * this.size);
    b.munmap(this.cons, this.page);
    this.cons = null;
    this.prod = null;
    untrack(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
