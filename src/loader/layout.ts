// SPDX-License-Identifier: Apache-2.0
// The shapes the generated modules in src/gen/ fill in. Nothing here knows a datapath.

/** Encodes a value into exactly `size` bytes and back. */
export interface Codec<T> {
  readonly size: number;
  encode(v: T, b?: Buffer, o?: number): Buffer;
  decode(b: Buffer, o?: number): T;
  /** the same through a DataView the caller keeps (faster for 64-bit fields) */
  encodeView(v: T, d: DataView, o?: number): void;
  decodeView(d: DataView, o?: number): T;
}

export interface FieldLayout {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
}

/** What a struct looks like in maps/: compared with the compiled object's BTF by the drift test. */
export interface StructLayout {
  readonly name: string;
  readonly size: number;
  readonly fields: readonly FieldLayout[];
}

export type MapKind =
  | 'hash'
  | 'array'
  | 'percpu_hash'
  | 'percpu_array'
  | 'lru_hash'
  | 'lru_percpu_hash'
  | 'lpm_trie'
  | 'ringbuf';

export interface MapLayout<K = unknown, V = unknown, R = unknown> {
  readonly name: string;
  readonly type: MapKind;
  readonly maxEntries: number;
  readonly key: Codec<K> | null;
  readonly value: Codec<V> | null;
  /** ring buffers: the record type the kernel submits */
  readonly record: Codec<R> | null;
}

/**
 * A global array the program indexes directly (maps/ "tables"): libbpf makes its .bss section a
 * one-element, mmapable array map, which user space maps and writes in place (BpfTable).
 */
export interface TableLayout<T = unknown> {
  /** the map libbpf makes of the section: ".bss." + variable */
  readonly name: string;
  readonly variable: string;
  readonly entries: number;
  readonly entry: Codec<T>;
}

export type ProgramKind = 'xdp' | 'tc' | 'tracepoint' | 'cgroup_sock_addr' | 'syscall' | 'tracing' | 'lsm';

export interface ProgramLayout {
  readonly name: string;
  readonly type: ProgramKind;
}

export const isPerCpu = (t: MapKind): boolean => t.startsWith('percpu') || t === 'lru_percpu_hash';

function scalarCodec<T>(
  size: number,
  rd: (b: Buffer, o: number) => T,
  wr: (b: Buffer, v: T, o: number) => void,
  get: (d: DataView, o: number) => T,
  set: (d: DataView, v: T, o: number) => void,
): Codec<T> {
  return {
    size,
    encode(v: T, b: Buffer = Buffer.alloc(size), o = 0) {
      wr(b, v, o);
      return b;
    },
    decode: (b: Buffer, o = 0) => rd(b, o),
    encodeView: (v: T, d: DataView, o = 0) => set(d, v, o),
    decodeView: (d: DataView, o = 0) => get(d, o),
  };
}

/** Codecs for maps whose key or value is a bare integer (host byte order). */
export const scalar = {
  u8: scalarCodec<number>(1, (b, o) => b.readUInt8(o), (b, v, o) => b.writeUInt8(v, o), (d, o) => d.getUint8(o), (d, v, o) => d.setUint8(o, v)),
  u16: scalarCodec<number>(2, (b, o) => b.readUInt16LE(o), (b, v, o) => b.writeUInt16LE(v, o), (d, o) => d.getUint16(o, true), (d, v, o) => d.setUint16(o, v, true)),
  u32: scalarCodec<number>(4, (b, o) => b.readUInt32LE(o), (b, v, o) => b.writeUInt32LE(v, o), (d, o) => d.getUint32(o, true), (d, v, o) => d.setUint32(o, v, true)),
  u64: scalarCodec<bigint>(8, (b, o) => b.readBigUInt64LE(o), (b, v, o) => b.writeBigUInt64LE(v, o), (d, o) => d.getBigUint64(o, true), (d, v, o) => d.setBigUint64(o, v, true)),
  s8: scalarCodec<number>(1, (b, o) => b.readInt8(o), (b, v, o) => b.writeInt8(v, o), (d, o) => d.getInt8(o), (d, v, o) => d.setInt8(o, v)),
  s16: scalarCodec<number>(2, (b, o) => b.readInt16LE(o), (b, v, o) => b.writeInt16LE(v, o), (d, o) => d.getInt16(o, true), (d, v, o) => d.setInt16(o, v, true)),
  s32: scalarCodec<number>(4, (b, o) => b.readInt32LE(o), (b, v, o) => b.writeInt32LE(v, o), (d, o) => d.getInt32(o, true), (d, v, o) => d.setInt32(o, v, true)),
  s64: scalarCodec<bigint>(8, (b, o) => b.readBigInt64LE(o), (b, v, o) => b.writeBigInt64LE(v, o), (d, o) => d.getBigInt64(o, true), (d, v, o) => d.setBigInt64(o, v, true)),
  be16: scalarCodec<number>(2, (b, o) => b.readUInt16BE(o), (b, v, o) => b.writeUInt16BE(v, o), (d, o) => d.getUint16(o), (d, v, o) => d.setUint16(o, v)),
  be32: scalarCodec<number>(4, (b, o) => b.readUInt32BE(o), (b, v, o) => b.writeUInt32BE(v, o), (d, o) => d.getUint32(o), (d, v, o) => d.setUint32(o, v)),
} as const;
