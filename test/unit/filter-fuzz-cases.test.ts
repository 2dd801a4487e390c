// SPDX-License-Identifier: Apache-2.0
// The fuzzer's policy generator (pure): its policies must reach both kernel paths for IPv4 classes
// (the DIR-16-8-8 table, and the LPM tries when a policy overflows the DIR chunk pool of a
// default-sized filter) and name IPv4 prefixes nested at the DIR table's level boundaries.
import { describe, expect, it } from 'vitest';
import { compilePolicy, DEFAULT_CAPACITY } from '../../src/filter/compile.js';
import { randomPolicy, Rng } from '../../src/filter/fuzz-cases.js';
import { cidrContains } from '../../src/filter/policy.js';
import type { Cidr } from '../../src/filter/rules.js';
import * as F from '../../src/gen/filter.js';

describe('fuzz policies and the IPv4 DIR table', () => {
  const rng = new Rng(4242);
  const policies = Array.from({ length: 200 }, () => randomPolicy(rng));
  const v4 = (c: Cidr | undefined): c is Cidr => c?.family === 4;

  it('the DIR overflow filler, and only it, sends a policy to the tries; both kinds are common', () => {
    let dir = 0;
    let trie = 0;
    for (const fp of policies) {
      const c = compilePolicy(fp.policy, undefined, DEFAULT_CAPACITY);
      const hasV4 = fp.policy.rules.some((r) => v4(r.src) || v4(r.dst));
      if (!hasV4) continue;
      const usesDir = (c.flags & F.FLT_F_DIR4) !== 0;
      expect(usesDir, fp.texts.join('; ')).toBe(fp.fillers === 0);
      if (usesDir) dir++;
      else trie++;
    }
    expect(dir).toBeGreaterThan(60);
    expect(trie).toBeGreaterThan(30);
  });

  it('names IPv4 prefixes at /8, /16, /17, /24, /25 and /32, nested within each other', () => {
    const lengths = new Set<number>();
    let chains = 0;
    for (const fp of policies) {
      const cidrs = fp.policy.rules.slice(0, fp.policy.rules.length - fp.fillers).flatMap((r) => [r.src, r.dst]).filter(v4);
      for (const c of cidrs) lengths.add(c.prefix);
      // a chain: three or more distinct boundary lengths, each inside the next shorter one
      const nested = [8, 16, 17, 24, 25, 32]
        .map((p) => cidrs.find((c) => c.prefix === p))
        .filter((c): c is Cidr => !!c)
        .filter((c, i, a) => i === 0 || cidrContains(a[i - 1], 4, c.addr));
      if (nested.length >= 3) chains++;
    }
    for (const p of [8, 16, 17, 24, 25, 32]) expect(lengths.has(p), `/${p}`).toBe(true);
    expect(chains).toBeGreaterThan(20);
  });
});
