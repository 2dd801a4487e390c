// SPDX-License-Identifier: Apache-2.0
// The IPv4 DIR-16-8-8 table compile.ts builds (pure): longest prefix match by at most three array
// reads, checked against a direct longest-prefix scan, and its capacity limits.
import { describe, expect, it } from 'vitest';
import { buildDir, compilePolicy, DEFAULT_CAPACITY, type AddressEntry, type DirTable } from '../../src/filter/compile.js';
import { makePolicy } from '../../src/filter/policy.js';
import { parseCidr } from '../../src/filter/rules.js';
import * as F from '../../src/gen/filter.js';

const entry = (text: string, cls: number): AddressEntry => {
  const c = parseCidr(text);
  return { family: c.family, addr: c.addr, prefix: c.prefix, value: { cls, rule: F.FLT_NO_RULE, action: 0, rank: 0 } };
};
const ip = (s: string): number => Number(parseCidr(s).addr);

/** What the kernel does: up to three reads. */
function lookup(t: DirTable, side: number, a: number): number {
  let e = t.l1[side][a >>> 16];
  if (e & F.FLT_DIR_CHUNK) e = t.chunks[e & ~F.FLT_DIR_CHUNK][(a >>> 8) & 0xff];
  if (e & F.FLT_DIR_CHUNK) e = t.chunks[e & ~F.FLT_DIR_CHUNK][a & 0xff];
  return e;
}

/** The longest prefix containing a, by a scan. */
function longest(entries: AddressEntry[], a: number): number {
  let best: AddressEntry | null = null;
  for (const e of entries) {
    const shift = 32 - e.prefix;
    const hit = e.prefix === 0 || Math.floor(a / 2 ** shift) === Math.floor(Number(e.addr) / 2 ** shift);
    if (hit && (!best || e.prefix > best.prefix)) best = e;
  }
  return best ? best.value.cls : 0;
}

describe('DIR-16-8-8 table', () => {
  const src = ['10.0.0.0/8', '10.1.0.0/16', '10.1.128.0/17', '10.1.128.0/24', '10.1.128.128/25', '10.1.128.200/32', '0.0.0.0/0', '192.168.7.9/32'].map((t, i) => entry(t, i + 1));
  const dst = [entry('172.16.0.0/12', 1), entry('172.16.5.0/30', 2)];
  const t = buildDir(src, dst, DEFAULT_CAPACITY)!;

  it('answers like a longest-prefix scan at every boundary, on both sides', () => {
    const probes = [
      '9.255.255.255', '10.0.0.0', '10.0.255.255', '10.1.0.0', '10.1.127.255', '10.1.128.0', '10.1.128.127', '10.1.128.128',
      '10.1.128.199', '10.1.128.200', '10.1.128.201', '10.1.128.255', '10.1.129.0', '10.1.255.255', '10.2.0.0', '10.255.255.255',
      '11.0.0.0', '192.168.7.8', '192.168.7.9', '192.168.7.10', '0.0.0.0', '255.255.255.255', '172.16.5.3', '172.16.5.4', '172.31.255.255', '172.32.0.0',
    ].map(ip);
    for (const a of probes) {
      expect(lookup(t, 0, a), `source ${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`).toBe(longest(src, a));
      expect(lookup(t, 1, a)).toBe(longest(dst, a));
    }
    // and a sweep of one /16 with nested prefixes, every address
    for (let a = ip('10.1.128.0'); a <= ip('10.1.129.0'); a++) expect(lookup(t, 0, a)).toBe(longest(src, a));
  });

  it('uses chunks only under prefixes longer than /16, and records their side', () => {
    // 10.1/16 (L2 for /17, /24, /25, /32 and an L3 under 10.1.128/24), 192.168/16 (L2 + L3), 172.16/16 (L2 + L3)
    expect(t.chunks.length).toBe(6);
    expect(t.chunkSide.filter((s) => s === 1).length).toBe(2);
  });

  it('gives up (null) when the chunks or classes would not fit, and when there is no IPv4 prefix', () => {
    expect(buildDir(src, dst, { chunks: 5, classes: 100 })).toBeNull();
    expect(buildDir(src, dst, { chunks: 6, classes: 100 })).not.toBeNull();
    expect(buildDir(src, dst, { chunks: 100, classes: 8 })).toBeNull();
    expect(buildDir([entry('2001:db8::/32', 1)], [], DEFAULT_CAPACITY)).toBeNull();
  });

  it('compilePolicy sets FLT_F_DIR4 only when the DIR table holds the IPv4 classes', () => {
    const v4 = compilePolicy(makePolicy({ deny: ['from 10.0.0.0/8', 'tcp/22 to 192.0.2.1'] }));
    expect(v4.flags & F.FLT_F_DIR4).toBeTruthy();
    expect(v4.dir).not.toBeNull();
    const none = compilePolicy(makePolicy({ deny: ['tcp/22', 'from 2001:db8::/32'] }));
    expect(none.flags & F.FLT_F_DIR4).toBe(0);
    // 70 host prefixes in 70 different /16s need 140 chunks: more than 128
    const many = makePolicy({ deny: Array.from({ length: 70 }, (_, i) => `from 10.${i}.1.1`) });
    const small = compilePolicy(many, undefined, { ...DEFAULT_CAPACITY, chunks: 128 });
    expect(small.dir).toBeNull();
    expect(small.flags & F.FLT_F_DIR4).toBe(0);
    expect(compilePolicy(many, undefined, { ...DEFAULT_CAPACITY, chunks: 140 }).dir).not.toBeNull();
  });
});
