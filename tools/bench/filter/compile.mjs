#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// How the policy compile (src/filter/compile.ts) scales with the number of rules, per shape:
//   ports     udp/P                        (a port class per rule)
//   blocklist from 10.a.b.c/32             (an address class per rule)
//   combined  udp/P from 10.a.b.0/24       (a port and an address class per rule)
// For each size: the compile time and its ratio to the previous size's (about the size ratio when
// the compile is near-linear; its square when quadratic). Pure TypeScript, no root needed.
//   node tools/bench/filter/compile.mjs [--sizes 5000,20000,100000] [--shapes ports,blocklist,combined]
// Needs dist/ (npx tsc -p .).
import { dist } from './util.mjs';

const args = process.argv.slice(2);
const arg = (/** @type {string} */ k, /** @type {string} */ d) => {
  const i = args.indexOf(k);
  return i >= 0 && args[i + 1] ? args[i + 1] : d;
};
const sizes = arg('--sizes', '5000,20000,100000').split(',').map(Number);
const shapes = arg('--shapes', 'ports,blocklist,combined').split(',');
const { compilePolicy, DEFAULT_CAPACITY } = await dist('filter/compile.js');
const { makePolicy } = await dist('filter/policy.js');

/** @type {Record<string, (i: number) => string>} */
const SHAPES = {
  ports: (i) => `udp/${(i % 65535) + 1}`,
  blocklist: (i) => `from 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`,
  combined: (i) => `udp/${(i % 60000) + 1} from 10.${(i >> 8) & 255}.${i & 255}.0/24`,
};
console.log(`${'shape'.padEnd(10)} ${'rules'.padStart(8)} ${'compile ms'.padStart(11)} ${'x prev'.padStart(7)} ${'size x'.padStart(7)}`);
for (const shape of shapes) {
  if (!SHAPES[shape]) throw new Error(`unknown shape ${shape}; known: ${Object.keys(SHAPES).join(', ')}`);
  let prev = { n: 0, ms: 0 };
  for (const n of sizes) {
    const policy = makePolicy({ deny: Array.from({ length: n }, (_, i) => SHAPES[shape](i)) });
    const t0 = performance.now();
    compilePolicy(policy, undefined, { ...DEFAULT_CAPACITY, rules: 1 << 20 });
    const ms = performance.now() - t0;
    const r = prev.n ? `${(ms / prev.ms).toFixed(1)}` : '-';
    console.log(`${shape.padEnd(10)} ${String(n).padStart(8)} ${ms.toFixed(0).padStart(11)} ${r.padStart(7)} ${(prev.n ? (n / prev.n).toFixed(1) : '-').padStart(7)}`);
    prev = { n, ms };
  }
}
