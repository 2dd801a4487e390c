// SPDX-License-Identifier: Apache-2.0
// Map entries encoded as they are planned: keys and values back to back, exactly the bytes
// BpfMap.updateBatchEncoded() hands to the kernel. A plan for 100,000 services, or a compiled policy
// of 100,000 decisions, holds a few buffers instead of hundreds of thousands of small objects, and
// what the tests decode and replay is what is written.
import type { Codec } from './layout.js';

export interface BatchLayout<K, V> {
  readonly key: Codec<K> | null;
  readonly value: Codec<V> | null;
}

export class Batch<K, V> {
  readonly key: Codec<K>;
  readonly value: Codec<V>;
  private kbuf: Buffer;
  private vbuf: Buffer;
  private n = 0;

  constructor(layout: BatchLayout<K, V>, capacity = 8) {
    this.key = layout.key!;
    this.value = layout.value!;
    this.kbuf = Buffer.allocUnsafe(this.key.size * capacity);
    this.vbuf = Buffer.allocUnsafe(this.value.size * capacity);
  }

  get length(): number {
    return this.n;
  }

  /** the encoded keys, `length` of them */
  get keys(): Buffer {
    return this.kbuf.subarray(0, this.n * this.key.size);
  }

  /** the encoded values, `length` of them */
  get values(): Buffer {
    return this.vbuf.subarray(0, this.n * this.value.size);
  }

  private grow(): void {
    const k = Buffer.allocUnsafe(this.kbuf.length * 2 || this.key.size * 8);
    const v = Buffer.allocUnsafe(this.vbuf.length * 2 || this.value.size * 8);
    this.kbuf.copy(k, 0, 0, this.n * this.key.size);
    this.vbuf.copy(v, 0, 0, this.n * this.value.size);
    this.kbuf = k;
    this.vbuf = v;
  }

  /** Encodes now: the objects may be reused by the caller as soon as this returns. */
  push(k: K, v: V): void {
    if ((this.n + 1) * this.key.size > this.kbuf.length) this.grow();
    this.key.encode(k, this.kbuf, this.n * this.key.size);
    this.value.encode(v, this.vbuf, this.n * this.value.size);
    this.n++;
  }

  /** Appends another batch of the same layout. */
  append(o: Batch<K, V>): void {
    while ((this.n + o.n) * this.key.size > this.kbuf.length) this.grow();
    o.kbuf.copy(this.kbuf, this.n * this.key.size, 0, o.n * o.key.size);
    o.vbuf.copy(this.vbuf, this.n * this.value.size, 0, o.n * o.value.size);
    this.n += o.n;
  }

  keyAt(i: number): K {
    return this.key.decode(this.kbuf, i * this.key.size);
  }

  valueAt(i: number): V {
    return this.value.decode(this.vbuf, i * this.value.size);
  }

  /** Decoded, for tests, undo and people. */
  entries(): Array<[K, V]> {
    return Array.from({ length: this.n }, (_, i): [K, V] => [this.keyAt(i), this.valueAt(i)]);
  }

  keyList(): K[] {
    return Array.from({ length: this.n }, (_, i) => this.keyAt(i));
  }
}
