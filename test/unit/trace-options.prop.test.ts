// SPDX-License-Identifier: Apache-2.0
// Property tests of `ebpfnet trace` options (src/trace/options.ts): any strings for any option give
// a checked plan or one clean usage error, and a plan's values given back as options give the same plan.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BUFFER_MAX, BUFFER_MIN, parseTraceOptions, PID_MAX, type RawTraceOptions, type TracePlan } from '../../src/trace/options.js';
import { grammarish, parsedOrClean, RUNS } from '../helpers/props.js';

const users = (): Map<string, number> => new Map([['root', 0], ['alice', 1000], ['svc-web.1', 998]]);
const opt = (a: fc.Arbitrary<string>) => fc.option(a, { nil: undefined });

/** A plan as the options that would produce it again. */
const asOptions = (p: TracePlan): RawTraceOptions => ({
  pid: p.pid === null ? undefined : String(p.pid),
  uid: p.uid === null ? undefined : String(p.uid),
  name: p.name ?? undefined,
  failed: p.failedOnly,
  cgroup: p.cgroup ?? undefined,
  duration: p.durationMs === null ? undefined : String(p.durationMs / 1000),
  output: p.output,
  timestamp: p.timestamps,
  bufferSize: String(p.bufferSize),
});

describe('trace options properties', () => {
  it('any strings: a plan that gives itself back, or one clean usage error', () => {
    const noise = grammarish(['1', '0', '-1', '4194304', '4194305', '16M', '4k', '1G', '2G', '0x10', '1e3', 'root', 'alice', 'nobody', 'json', 'table', 'JSON', '/', '.', ' ', '\0']);
    fc.assert(
      fc.property(
        fc.constantFrom('mkdir', 'mkdirat', 'rmdir', 'MKDIR', ''),
        fc.record({ pid: opt(noise), uid: opt(noise), name: opt(noise), cgroup: opt(noise), duration: opt(noise), output: opt(noise), bufferSize: opt(noise), failed: fc.boolean(), timestamp: fc.boolean() }),
        (target, raw) => {
          const p = parsedOrClean(() => parseTraceOptions(target, raw, { users }));
          if (!p) return;
          expect(parseTraceOptions(target, asOptions(p), { users })).toEqual(p);
          if (p.pid !== null) expect(p.pid).toBeGreaterThanOrEqual(1);
          if (p.pid !== null) expect(p.pid).toBeLessThanOrEqual(PID_MAX);
          expect(p.bufferSize & (p.bufferSize - 1)).toBe(0);
          expect(p.bufferSize).toBeGreaterThanOrEqual(BUFFER_MIN);
          expect(p.bufferSize).toBeLessThanOrEqual(BUFFER_MAX);
          if (p.durationMs !== null) expect(p.durationMs).toBeGreaterThan(0);
        },
      ),
      { numRuns: RUNS.cheap },
    );
  });

  it('valid options: accepted, with the numbers they say', () => {
    fc.assert(
      fc.property(
        fc.record({
          pid: fc.integer({ min: 1, max: PID_MAX }),
          uid: fc.oneof(fc.integer({ min: 0, max: 0xfffffffe }).map(String), fc.constantFrom('root', 'alice', 'svc-web.1')),
          ms: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
          shift: fc.integer({ min: 12, max: 30 }),
          unit: fc.constantFrom('', 'K', 'M', 'G', 'k', 'KiB', 'MB'),
        }),
        ({ pid, uid, ms, shift, unit }) => {
          const div = { '': 1, K: 1024, k: 1024, KiB: 1024, M: 1024 ** 2, MB: 1024 ** 2, G: 1024 ** 3 }[unit]!;
          const size = 2 ** shift;
          const buf = size % div === 0 ? `${size / div}${unit}` : String(size);
          const p = parseTraceOptions('mkdir', { pid: String(pid), uid, duration: String(ms / 1000), bufferSize: buf, output: 'json' }, { users });
          expect([p.pid, p.uid, p.durationMs, p.bufferSize, p.output]).toEqual([pid, users().get(uid) ?? Number(uid), ms, size, 'json']);
        },
      ),
      { numRuns: RUNS.cheap },
    );
  });
});
