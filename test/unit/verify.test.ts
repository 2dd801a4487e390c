// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from 'vitest';
import { compareWithBaseline, makeBaseline, type VerifyRow } from '../../src/loader/verify.js';
import { kernelVersion } from '../../src/loader/features.js';

const row = (program: string, insns: number | null, verdict: VerifyRow['verdict'] = 'ok'): VerifyRow => ({
  object: 'filter',
  program,
  type: 'xdp',
  verdict,
  insns,
  states: 1,
  stackDepth: 0,
});

describe('verifier baseline', () => {
  it('passes within 20% growth and fails beyond it', () => {
    const base = makeBaseline([row('a', 100), row('b', 100)]);
    expect(compareWithBaseline([row('a', 120), row('b', 80)], base)).toEqual([]);
    const r = compareWithBaseline([row('a', 121)], base);
    expect(r).toHaveLength(1);
    expect(r[0].problem).toMatch(/grew from 100 to 121 \(\+21%, limit 20%\)/);
  });

  it('a program that stops loading is a regression even without a baseline', () => {
    expect(compareWithBaseline([row('a', null, 'rejected')], null)).toEqual([{ program: 'filter/a', problem: 'the verifier rejects it' }]);
  });

  it('baselines are kept per kernel major.minor', () => {
    expect(kernelVersion('6.18.44-fc-v657')).toEqual([6, 18]);
    expect(kernelVersion('5.15.0-91-generic')).toEqual([5, 15]);
  });
});
