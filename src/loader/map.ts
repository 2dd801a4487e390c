// SPDX-License-Identifier: Apache-2.0
// BpfMap<K, V>: typed access to a live kernel map through the codecs generated from maps/.
import { rmSync } from 'node:fs';
import { EbpfnetError, errnoName, kernelError } from '../errors.js';
import { address, libbpf, MapBatchOpts, sizeof } from '../libbpf/index.js';
import { check, closeFd, closed } from './fd.js';
import { track, untrack } from './guard.js';
import { MAP_TYPE_BY_KIND } from './kinds.js';
import { isPerCpu, type Codec, type MapLayout } from './layout.js';
import { possibleCpus } from './system.js';

export type UpdateFlag = 'any' | 'noexist' | 'exist';
const FLAGS: Record<UpdateFlag, bigint> = { any: 0n, noexist: 1n, exist: 2n };
// the same as plain numbers for the per-element calls: koffi converts a Number faster than a BigInt
const NFLAGS: Record<UpdateFlag, number> = { any: 0, noexist: 1, exist: 2 };

export interface MapInfo {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

const ENOENT = 2;

/** How full one map is. */
export interface MapFill {
  map: string;
  entries: number;
  maxEntries: number;
}

/** Adds per-CPU copies field by field: numbers and bigints are summed, anything else is taken from CPU 0. */
export function sumValues<V>(values: V[]): V {
  if (typeof values[0] === 'number' || typeof values[0] === 'bigint') {
    return values.reduce((a, b) => ((a as number) + (b as number)) as V);
  }
  const out = { ...(values[0] as object) } as Record<string, unknown>;
  for (const v of values.slice(1)) {
    for (const [k, x] of Object.entries(v as object)) {
      if (typeof x === 'bigint') out[k] = (out[k] as bigint) + x;
      else if (typeof x === 'number') out[k] = (out[k] as number) + x;
    }
  }
  return out as V;
}

/**
 * A live map, typed by its layout (generated from maps/): keys and values are encoded and decoded by
 * the layout's codecs, per-CPU values are summed on lookup.
 */
export class BpfMap<K = Buffer, V = Buffer> {
  readonly name: string;
  readonly layout: MapLayout<K, V>;
  readonly perCpu: boolean;
  readonly ncpus: number;
  private _fd: number;
  private readonly owned: boolean;
  private readonly kbuf: Buffer;
  private readonly kbuf2: Buffer;
  private readonly vbuf: Buffer;
  /** native addresses of kbuf and vbuf (their own ArrayBuffers, which never move) */
  private readonly kaddr: number;
  private readonly vaddr: number;
  private readonly kview: DataView;
  private readonly vview: DataView;
  /** bytes one CPU's copy takes in a per-CPU value buffer */
  private readonly stride: number;
  private pinnedAt: string | null = null;

  /**
   * @internal maps come from BpfObject.map() and openPinnedMap()
   * @param fd a map descriptor; `owned` maps close it on close() (a map that belongs to a BpfObject
   *   is closed by the object).
   */
  constructor(fd: number, layout: MapLayout<K, V>, private readonly info: MapInfo, owned: boolean) {
    const kind = MAP_TYPE_BY_KIND[layout.type];
    if (info.type !== kind) {
      throw new EbpfnetError('EBPFNET_KERNEL', `open map ${layout.name}`, `layout says type ${layout.type} but the kernel map has type ${info.type}`, {
        hint: 'the object and maps/ disagree: rebuild (npm run build)',
      });
    }
    const keySize = layout.key?.size ?? 0;
    const valueSize = layout.value?.size ?? 0;
    if (layout.type !== 'ringbuf' && (info.keySize !== keySize || info.valueSize !== valueSize)) {
      throw new EbpfnetError(
        'EBPFNET_KERNEL',
        `open map ${layout.name}`,
        `layout says key ${keySize} / value ${valueSize} bytes but the kernel map has ${info.keySize} / ${info.valueSize}`,
        { hint: 'the object and maps/ disagree: rebuild (npm run build)' },
      );
    }
    this._fd = fd;
    this.name = layout.name;
    this.layout = layout;
    this.owned = owned;
    this.perCpu = isPerCpu(layout.type);
    this.ncpus = this.perCpu ? possibleCpus() : 1;
    this.stride = this.perCpu ? Math.ceil(valueSize / 8) * 8 : valueSize;
    // allocUnsafeSlow: a dedicated off-heap ArrayBuffer each, so the addresses stay valid
    this.kbuf = Buffer.allocUnsafeSlow(Math.max(keySize, 8)).fill(0);
    this.kbuf2 = Buffer.alloc(Math.max(keySize, 8));
    this.vbuf = Buffer.allocUnsafeSlow(Math.max(this.stride * this.ncpus, 8)).fill(0);
    this.kaddr = Number(address(this.kbuf));
    this.vaddr = Number(address(this.vbuf));
    this.kview = new DataView(this.kbuf.buffer, this.kbuf.byteOffset, this.kbuf.length);
    this.vview = new DataView(this.vbuf.buffer, this.vbuf.byteOffset, this.vbuf.length);
    if (owned) track(this);
  }

  get fd(): number {
    if (this._fd < 0) closed(`map ${this.name}`);
    return this._fd;
  }

  /** max_entries as maps/ declares it */
  get maxEntries(): number {
    return this.layout.maxEntries;
  }

  /** max_entries of the live map (a loader may have resized it) */
  get capacity(): number {
    return this.info.maxEntries;
  }

  /** encodes the key into kbuf and returns kbuf's address */
  private keyAt(k: K): number {
    this.layout.key!.encodeView(k, this.kview, 0);
    return this.kaddr;
  }

  private valueCodec(): Codec<V> {
    return this.layout.value!;
  }

  /** The value for `k`, or undefined. Per-CPU maps: the copies summed (see lookupPerCpu). */
  lookup(k: K): V | undefined {
    const rc = libbpf().bpf_map_lookup_elem_at(this.fd, this.keyAt(k), this.vaddr);
    if (rc === -ENOENT) return undefined;
    check(`lookup in map ${this.name}`, rc);
    return this.perCpu ? sumValues(this.splitCpus()) : this.valueCodec().decodeView(this.vview, 0);
  }

  /** One value per possible CPU. */
  lookupPerCpu(k: K): V[] | undefined {
    if (!this.perCpu) {
      const v = this.lookup(k);
      return v === undefined ? undefined : [v];
    }
    const rc = libbpf().bpf_map_lookup_elem_at(this.fd, this.keyAt(k), this.vaddr);
    if (rc === -ENOENT) return undefined;
    check(`lookup in map ${this.name}`, rc);
    return this.splitCpus();
  }

  private splitCpus(buf: Buffer = this.vbuf, base = 0): V[] {
    const c = this.valueCodec();
    const out: V[] = [];
    for (let i = 0; i < this.ncpus; i++) out.push(c.decode(buf, base + i * this.stride));
    return out;
  }

  private encodeValue(v: V | V[], buf: Buffer = this.vbuf, base = 0): Buffer {
    const c = this.valueCodec();
    if (!this.perCpu) return c.encode(v as V, buf, base);
    // A per-CPU update writes every CPU's copy: one value is copied to all, an array sets each.
    for (let i = 0; i < this.ncpus; i++) {
      const vi = Array.isArray(v) ? v[i] : v;
      buf.fill(0, base + i * this.stride, base + (i + 1) * this.stride);
      if (vi !== undefined) c.encode(vi, buf, base + i * this.stride);
    }
    return buf;
  }

  /** Writes one entry. Per-CPU maps: one value for every CPU, or an array of one per CPU. */
  update(k: K, v: V | V[], flag: UpdateFlag = 'any'): void {
    if (this.perCpu) this.encodeValue(v);
    else this.valueCodec().encodeView(v as V, this.vview, 0);
    const rc = libbpf().bpf_map_update_elem_at(this.fd, this.keyAt(k), this.vaddr, NFLAGS[flag]);
    if (rc < 0) throw this.updateError(-rc, flag);
  }

  private updateError(errno: number, flag: UpdateFlag): EbpfnetError {
    const name = errnoName(errno);
    if (name === 'E2BIG' || (name === 'ENOMEM' && this.layout.type.includes('hash')))
      return new EbpfnetError('EBPFNET_MAP_FULL', `update map ${this.name}`, `the map is full (${this.capacity} entries)`, {
        errno,
        hint: 'remove entries or raise max_entries in maps/',
      });
    if (name === 'EEXIST' && flag === 'noexist') return kernelError(`update map ${this.name}`, errno, 'the key already exists');
    if (name === 'ENOENT' && flag === 'exist') return kernelError(`update map ${this.name}`, errno, 'no such key');
    return kernelError(`update map ${this.name}`, errno);
  }

  /** true when the key was there. */
  delete(k: K): boolean {
    const rc = libbpf().bpf_map_delete_elem_at(this.fd, this.keyAt(k));
    if (rc === -ENOENT) return false;
    check(`delete from map ${this.name}`, rc);
    return true;
  }

  /** Every key, in the kernel's order. */
  *keys(): IterableIterator<K> {
    const kc = this.layout.key!;
    for (const k of this.rawKeys()) yield kc.decode(k, 0);
  }

  /** Each key in the kernel's order, as the bytes it gave (valid until the next step). */
  private *rawKeys(): IterableIterator<Buffer> {
    const b = libbpf();
    let prev: Buffer | null = null;
    for (;;) {
      const next: Buffer = prev === this.kbuf ? this.kbuf2 : this.kbuf;
      const rc = b.bpf_map_get_next_key(this.fd, prev, next);
      if (rc === -ENOENT) return;
      check(`iterate map ${this.name}`, rc);
      yield next;
      prev = next;
    }
  }

  /**
   * Entries present. An array holds all of its elements; a hash or LRU map is read in batches where
   * the kernel can (a call per 4,096 entries: a scrape of a 10,000-service balancer counted ~100,000
   * entries, a call each), else walked key by key. Ring buffers have no entries.
   */
  count(): number {
    const t = this.layout.type;
    if (t === 'array' || t === 'percpu_array') return this.capacity;
    if (t === 'ringbuf') return 0;
    let n = 0;
    if (this.scanBatch((_k, _v, got) => ((n += got), true))) return n;
    n = 0;
    for (const _ of this.rawKeys()) n++;
    return n;
  }

  /** count() against the live map's capacity, for the metrics. */
  fill(): MapFill {
    return { map: this.name, entries: this.count(), maxEntries: this.capacity };
  }

  /** Every entry. Uses the batch lookup where the kernel has it for this map type, else key by key. */
  entries(): Array<[K, V]> {
    const batched = this.lookupBatch();
    if (batched) return batched;
    const out: Array<[K, V]> = [];
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v !== undefined) out.push([k, v]);
    }
    return out;
  }

  /**
   * Batch lookup of the whole map, or null when this kernel or map type has no batch operations.
   * `limit` reads only an array's first indexes; a hash map is always read whole (a batch shorter
   * than one of its buckets is refused with ENOSPC).
   */
  lookupBatch(chunk = 4096, limit = Infinity): Array<[K, V]> | null {
    const out: Array<[K, V]> = [];
    const ks = this.layout.key!.size;
    const vs = this.stride * this.ncpus;
    const ok = this.scanBatch(
      (keys, vals, n) => {
        for (let i = 0; i < n; i++) {
          const k = this.layout.key!.decode(keys, i * ks);
          const v = this.perCpu ? sumValues(this.splitCpus(vals, i * vs)) : this.valueCodec().decode(vals, i * vs);
          out.push([k, v]);
        }
        return true;
      },
      chunk,
      limit,
    );
    return ok ? out : null;
  }

  /**
   * The whole map in chunks of up to `chunk` raw entries, through two buffers reused for every
   * chunk (`keys`: n keys back to back; `vals`: n values, per-CPU maps a copy per possible CPU,
   * 8-byte aligned, so a BigUint64Array over `vals.buffer` reads them): nothing per entry is
   * allocated unless `fn` does. `fn` returns false to stop early (array maps come in index order).
   * `limit` stops an array after its first `limit` indexes. False when this kernel or map type
   * has no batch operations.
   */
  scanBatch(fn: (keys: Buffer, vals: Buffer, n: number) => boolean, chunk = 4096, limit = Infinity): boolean {
    if (this.layout.type === 'lpm_trie' || this.layout.type === 'ringbuf') return false;
    if (this.layout.type !== 'array' && this.layout.type !== 'percpu_array') limit = Infinity;
    if (limit <= 0) return true;
    let read = 0;
    const b = libbpf();
    const ks = this.layout.key!.size;
    const keys = Buffer.alloc(ks * chunk);
    // its own ArrayBuffer at offset 0: 8-byte aligned for typed views
    const vals = Buffer.from(new ArrayBuffer(this.stride * this.ncpus * chunk));
    const inTok = Buffer.alloc(Math.max(ks, 8));
    const outTok = Buffer.alloc(Math.max(ks, 8));
    const opts = { sz: sizeof(MapBatchOpts), elem_flags: 0n, flags: 0n };
    let first = true;
    for (;;) {
      const count = [Math.min(chunk, limit - read)];
      const rc = b.bpf_map_lookup_batch(this.fd, first ? null : inTok, outTok, keys, vals, count, opts);
      if (rc < 0 && rc !== -ENOENT) {
        if (first && (errnoName(-rc) === 'EINVAL' || errnoName(-rc) === 'ENOTSUPP' || errnoName(-rc) === 'EOPNOTSUPP')) return false;
        check(`batch lookup in map ${this.name}`, rc);
      }
      read += count[0];
      if (!fn(keys, vals, count[0]) || rc === -ENOENT || read >= limit) return true;
      outTok.copy(inTok);
      first = false;
    }
  }

  /** Writes many entries in one call where the kernel can, else one by one. Returns how many were written. */
  updateBatch(entries: Array<[K, V]>, flag: UpdateFlag = 'any'): number {
    if (!entries.length) return 0;
    const ks = this.layout.key!.size;
    const vs = this.stride * this.ncpus;
    const keys = Buffer.alloc(ks * entries.length);
    const vals = Buffer.alloc(vs * entries.length);
    entries.forEach(([k, v], i) => {
      this.layout.key!.encode(k, keys, i * ks);
      this.encodeValue(v, vals, i * vs);
    });
    return this.updateBatchEncoded(keys, vals, entries.length, flag);
  }

  /**
   * updateBatch() for entries already encoded with the layout's codecs, back to back: `n` keys in
   * `keys`, `n` values in `vals` (per-CPU maps: a copy per possible CPU, 8-byte aligned). Callers
   * that write many entries encode them as they go and skip the array of objects.
   */
  updateBatchEncoded(keys: Buffer, vals: Buffer, n: number, flag: UpdateFlag = 'any'): number {
    if (!n) return 0;
    const ks = this.layout.key!.size;
    const vs = this.stride * this.ncpus;
    if (keys.length < ks * n || vals.length < vs * n) {
      throw new EbpfnetError('EBPFNET_USAGE', `update map ${this.name}`, `${n} entries need ${ks * n} key and ${vs * n} value bytes; got ${keys.length} and ${vals.length}`);
    }
    if (this.layout.type !== 'lpm_trie') {
      const count = [n];
      const opts = { sz: sizeof(MapBatchOpts), elem_flags: FLAGS[flag], flags: 0n };
      const rc = libbpf().bpf_map_update_batch(this.fd, keys, vals, count, opts);
      if (rc >= 0) return count[0];
      const name = errnoName(-rc);
      if (!(name === 'EINVAL' || name === 'ENOTSUPP' || name === 'EOPNOTSUPP') || count[0] > 0) throw this.updateError(-rc, flag);
    }
    const b = libbpf();
    for (let i = 0; i < n; i++) {
      const rc = b.bpf_map_update_elem(this.fd, keys.subarray(i * ks, (i + 1) * ks), vals.subarray(i * vs, (i + 1) * vs), FLAGS[flag]);
      if (rc < 0) throw this.updateError(-rc, flag);
    }
    return n;
  }

  /**
   * Deletes many keys; keys that are not there are ignored. Returns how many were deleted. One
   * call where the kernel can (BPF_MAP_DELETE_BATCH), else key by key: an `lb apply` that replaces
   * 10,000 services deletes tens of thousands of entries.
   */
  deleteBatch(keys: K[]): number {
    if (!keys.length) return 0;
    if (this.layout.type.includes('hash')) {
      const kc = this.layout.key!;
      const ks = kc.size;
      const buf = Buffer.alloc(ks * keys.length);
      for (let i = 0; i < keys.length; i++) kc.encode(keys[i], buf, i * ks);
      const n = this.deleteBatchEncoded(buf, keys.length);
      if (n !== null) return n;
    }
    let n = 0;
    for (const k of keys) if (this.delete(k)) n++;
    return n;
  }

  /**
   * The kernel stops a batch at the first key that is not there (ENOENT) and says how many it
   * deleted before it: that key is skipped and the rest goes in the next call. Null when this
   * kernel has no batch delete for the map (nothing was deleted).
   */
  private deleteBatchEncoded(keys: Buffer, n: number): number | null {
    const b = libbpf();
    const ks = this.layout.key!.size;
    const opts = { sz: sizeof(MapBatchOpts), elem_flags: 0n, flags: 0n };
    let deleted = 0;
    for (let at = 0; at < n; ) {
      const count = [n - at];
      const rc = b.bpf_map_delete_batch(this.fd, at ? keys.subarray(at * ks) : keys, count, opts);
      if (rc >= 0) return deleted + count[0];
      const name = errnoName(-rc);
      if (name === 'ENOENT') {
        deleted += count[0];
        at += count[0] + 1;
        continue;
      }
      if (at === 0 && count[0] === 0 && (name === 'EINVAL' || name === 'ENOTSUPP' || name === 'EOPNOTSUPP')) return null;
      check(`batch delete from map ${this.name}`, rc);
    }
    return deleted;
  }

  /** Removes every entry (array maps cannot delete; they are zeroed instead). */
  clear(): void {
    if (this.layout.type.includes('array')) {
      const zero = Buffer.alloc(this.stride * this.ncpus);
      for (let i = 0; i < this.capacity; i++) {
        const kb = Buffer.alloc(4);
        kb.writeUInt32LE(i);
        check(`clear map ${this.name}`, libbpf().bpf_map_update_elem(this.fd, kb, zero, 0n));
      }
      return;
    }
    for (const k of [...this.keys()]) this.delete(k);
  }

  /** Pins the map in bpffs (see ensureBpffs), so it outlives this process; openPinnedMap() opens it again. */
  pin(path: string): void {
    check(`pin map ${this.name} at ${path}`, libbpf().bpf_obj_pin(this.fd, path));
    this.pinnedAt = path;
  }

  /** Removes the pin; the map lives on while a program or descriptor still holds it. */
  unpin(): void {
    if (this.pinnedAt) rmSync(this.pinnedAt, { force: true });
    this.pinnedAt = null;
  }

  get pinnedPath(): string | null {
    return this.pinnedAt;
  }

  /** Closes this process's descriptor (a map of a BpfObject is closed with the object). */
  close(): void {
    if (this._fd < 0) return;
    if (this.owned) closeFd(this._fd);
    this._fd = -1;
    untrack(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** struct bpf_map_info, the fields we read (see include/uapi/linux/bpf.h). */
export function mapInfoByFd(fd: number): MapInfo & { id: number } {
  const buf = Buffer.alloc(96);
  const len = [buf.length];
  check('read map info', libbpf().bpf_obj_get_info_by_fd(fd, buf, len));
  const nameEnd = buf.indexOf(0, 24);
  return {
    type: buf.readUInt32LE(0),
    id: buf.readUInt32LE(4),
    keySize: buf.readUInt32LE(8),
    valueSize: buf.readUInt32LE(12),
    maxEntries: buf.readUInt32LE(16),
    name: buf.toString('utf8', 24, nameEnd < 0 || nameEnd > 40 ? 40 : nameEnd),
  };
}

/** Opens a map pinned in bpffs, checking it has the layout's sizes. */
export function openPinnedMap<K, V>(path: string, layout: MapLayout<K, V>): BpfMap<K, V> {
  const fd = libbpf().bpf_obj_get(path);
  if (fd < 0) throw kernelError(`open pinned map ${path}`, -fd, errnoName(-fd) === 'ENOENT' ? 'nothing is pinned there' : undefined);
  try {
    return new BpfMap(fd, layout, mapInfoByFd(fd), true);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}
