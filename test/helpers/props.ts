// SPDX-License-Identifier: Apache-2.0
// Shared pieces of the parsers' property tests (test/unit/*.prop.test.ts): how a clean rejection
// looks, and generators of the address texts every parser takes.
import fc from 'fast-check';
import { expect } from 'vitest';
import { EbpfnetError } from '../../src/errors.js';

/** How many cases each property runs (kept so the report can add them up). */
export const RUNS = { cheap: 2000, yaml: 500, http: 200 } as const;

/**
 * Runs a parser on hostile input: it returns a value, or throws an EbpfnetError with a usage code
 * and a one-line `operation: detail` message. Anything else (TypeError, RangeError, a raw YAML
 * error, a multi-line message) fails the property. Returns the value, or null when rejected.
 */
export function parsedOrClean<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof EbpfnetError)) throw new Error(`not a clean error: ${(e as Error)?.stack ?? String(e)}`);
    expect(e.code).toBe('EBPFNET_USAGE');
    expect(e.message).toMatch(/^[^\n]+: [^\n]+$/);
    return null;
  }
}

const hex16 = fc.integer({ min: 0, max: 0xffff });

/** An IPv4 address as text, and its value. */
export const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => ({
  text: o.join('.'),
  value: o.reduce((a, x) => (a << 8n) | BigInt(x), 0n),
}));

/**
 * An IPv6 address as text in any of the ways people write it (full, upper case, with leading zeros,
 * :: anywhere it fits, an IPv4 tail), and its value.
 */
export const ipv6 = fc
  .record({
    groups: fc.array(fc.oneof(hex16, fc.constant(0)), { minLength: 8, maxLength: 8 }),
    style: fc.constantFrom('full', 'padded', 'upper', 'compress', 'v4tail'),
    at: fc.nat(7),
    len: fc.integer({ min: 1, max: 8 }),
  })
  .map(({ groups, style, at, len }) => {
    const value = groups.reduce((a, g) => (a << 16n) | BigInt(g), 0n);
    const h = groups.map((g) => g.toString(16));
    let text: string;
    if (style === 'padded') text = groups.map((g) => g.toString(16).padStart(4, '0')).join(':');
    else if (style === 'upper') text = h.join(':').toUpperCase();
    else if (style === 'v4tail') text = `${h.slice(0, 6).join(':')}:${groups[6] >> 8}.${groups[6] & 0xff}.${groups[7] >> 8}.${groups[7] & 0xff}`;
    else if (style === 'compress') {
      // :: stands for a run of zero groups: zero the run so the text means the value
      const n = Math.min(len, 8 - at);
      for (let i = at; i < at + n; i++) groups[i] = 0;
      const v = groups.reduce((a, g) => (a << 16n) | BigInt(g), 0n);
      const g2 = groups.map((g) => g.toString(16));
      return { text: `${g2.slice(0, at).join(':')}::${g2.slice(at + n).join(':')}`, value: v };
    } else text = h.join(':');
    return { text, value };
  });

/** Strings that look like the grammar half the time: tokens of it glued with random separators. */
export const grammarish = (tokens: readonly string[]): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({ maxLength: 60 }),
    fc.string({ unit: 'grapheme', maxLength: 30 }),
    fc.array(fc.oneof(fc.constantFrom(...tokens), fc.string({ maxLength: 6 }), fc.integer({ min: -5, max: 70000 }).map(String)), { maxLength: 8 }).chain((parts) =>
      fc.array(fc.constantFrom(' ', '  ', '/', ':', '-', ',', '=', '\t', ''), { minLength: parts.length, maxLength: parts.length }).map((seps) => parts.map((p, i) => p + seps[i]).join('')),
    ),
  );
