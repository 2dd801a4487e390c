// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from 'vitest';
import * as G from '../../src/gen/selftest.js';
import { scalar } from '../../src/loader/layout.js';
import { sumValues } from '../../src/loader/map.js';

describe('generated codecs', () => {
  it('round-trip and write network-order fields big-endian', () => {
    const b = G.StKey.encode({ word: 0x0a000001 });
    expect([...b]).toEqual([10, 0, 0, 1]);
    expect(G.StKey.decode(b)).toEqual({ word: 0x0a000001 });
  });

  it('zero padding even in a reused buffer, so hash keys compare equal', () => {
    const b = Buffer.alloc(G.StRule.size, 0xff);
    G.StRule.encode({ action: 2, cookie: 5n }, b);
    expect(b.readUInt32LE(4)).toBe(0);
    expect(G.StRule.decode(b)).toEqual({ action: 2, cookie: 5n });
  });

  it('encode at an offset into a larger buffer (batch operations)', () => {
    const b = Buffer.alloc(G.StEvent.size * 2);
    G.StEvent.encode({ seq: 1n, cookie: 2n, len: 3, cpu: 4 }, b, G.StEvent.size);
    expect(G.StEvent.decode(b, G.StEvent.size)).toEqual({ seq: 1n, cookie: 2n, len: 3, cpu: 4 });
    expect(G.StEvent.decode(b, 0)).toEqual({ seq: 0n, cookie: 0n, len: 0, cpu: 0 });
  });

  it('layouts carry sizes and offsets for the BTF comparison', () => {
    expect(G.StRule.fields).toEqual([
      { name: 'action', offset: 0, size: 4 },
      { name: 'pad', offset: 4, size: 4 },
      { name: 'cookie', offset: 8, size: 8 },
    ]);
    expect(G.ST_RULES).toMatchObject({ name: 'st_rules', type: 'hash', maxEntries: 1024, key: G.StKey, value: G.StRule });
  });

  it('scalar codecs', () => {
    expect(scalar.u32.decode(scalar.u32.encode(0xfffffffe))).toBe(0xfffffffe);
    expect([...scalar.be16.encode(22)]).toEqual([0, 22]);
    expect(scalar.u64.decode(scalar.u64.encode(1n << 63n))).toBe(1n << 63n);
  });

  it('per-CPU values are summed field by field', () => {
    const a = { packets: 1n, bytes: 10n, lost: 0n, calls: 2n };
    const b = { packets: 2n, bytes: 20n, lost: 1n, calls: 0n };
    expect(sumValues([a, b])).toEqual({ packets: 3n, bytes: 30n, lost: 1n, calls: 2n });
    expect(sumValues([1, 2, 3])).toBe(6);
  });
});

describe('DataView codecs agree with Buffer codecs', () => {
  it('byte for byte, for structs with 64-bit, big-endian, byte-array and pad fields', async () => {
    const F = await import('../../src/gen/filter.js');
    const cases: Array<[{ size: number; encode(v: never, b?: Buffer): Buffer; encodeView(v: never, d: DataView): void; decodeView(d: DataView): unknown; decode(b: Buffer): unknown }, unknown]> = [
      [G.StRule as never, { action: 2, cookie: 0xfedcba9876543210n }],
      [G.StKey as never, { word: 0x0a000001 }],
      [F.FltLpmKey as never, { prefixlen: 88, gen: 1, family: 4, addr: Uint8Array.from([10, 1, 2, 3, ...Array(12).fill(0)]) }],
      [F.FltRuleKey as never, { gen: 1, src: 7, dst: 9, pclass: 3, proto: 6, family: 6, group: 2 }],
    ];
    for (const [codec, value] of cases) {
      const a = codec.encode(value as never);
      const b = Buffer.alloc(codec.size, 0xee);
      codec.encodeView(value as never, new DataView(b.buffer, b.byteOffset, b.length));
      expect(b).toEqual(a);
      expect(codec.decodeView(new DataView(a.buffer, a.byteOffset, a.length))).toEqual(codec.decode(a));
    }
  });
});
