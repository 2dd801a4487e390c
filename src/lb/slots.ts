// SPDX-License-Identifier: Apache-2.0
// Weighted random selection as a table: each active backend fills slots in proportion to its weight,
// so the datapath draws one random index and does one lookup, whatever the weights. Weights are
// reduced by their greatest common divisor; when they still need more than LB_MAX_SLOTS slots, the
// slots are shared out by largest remainder, each active backend keeping at least one.
import { LB_MAX_SLOTS } from '../gen/lb.js';
import type { BackendSpec } from './model.js';

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** Slots per weight: the exact proportions when they fit in `max`, else the closest that does. */
export function apportion(weights: number[], max = LB_MAX_SLOTS): number[] {
  if (!weights.length) return [];
  if (weights.length > max) throw new RangeError(`apportion: ${weights.length} backends do not fit in ${max} slots`);
  const g = weights.reduce(gcd);
  const reduced = weights.map((w) => w / g);
  const total = reduced.reduce((a, b) => a + b, 0);
  if (total <= max) return reduced;
  // Everyone gets one slot; the rest go by quota, then by the largest remainder (ties: first listed).
  const spare = max - weights.length;
  const quota = reduced.map((w) => (w * spare) / total);
  const out = quota.map((q) => 1 + Math.floor(q));
  let left = max - out.reduce((a, b) => a + b, 0);
  const order = quota.map((q, i) => ({ i, r: q - Math.floor(q) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) out[order[k].i]++;
  return out;
}

const IDENTITY: number[][] = [];
/** [0, 1, ..., n-1], shared for small n (callers only read it) */
function identity(n: number): number[] {
  if (n < 64) return (IDENTITY[n] ??= Array.from({ length: n }, (_, i) => i));
  return Array.from({ length: n }, (_, i) => i);
}

/**
 * The selection slots of a service: indexes into `backends`, each active backend repeated by its
 * share of the weight, in the order listed. Draining backends get none. Empty: the service refuses.
 */
export function slotTable(backends: readonly BackendSpec[], max = LB_MAX_SLOTS): number[] {
  // The common case, and the one `lb apply` meets 100,000 times: all active, equal weights.
  const w0 = backends.length ? backends[0].weight : 0;
  let plain = backends.length <= max;
  for (let i = 0; plain && i < backends.length; i++) plain = backends[i].state === 'active' && backends[i].weight === w0;
  if (plain) return identity(backends.length);
  const active = backends.map((b, i) => ({ b, i })).filter((x) => x.b.state === 'active');
  const counts = apportion(
    active.map((x) => x.b.weight),
    max,
  );
  const out: number[] = [];
  active.forEach((x, k) => {
    for (let n = 0; n < counts[k]; n++) out.push(x.i);
  });
  return out;
}
