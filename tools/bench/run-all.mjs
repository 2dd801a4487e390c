#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// `npm run bench`: every datapath's benchmark in turn (never in parallel: they share two cores),
// each printing its own ratios against its reference, then one line per benchmark with its verdict.
//   node tools/bench/run-all.mjs [NAME ...]     (names: the folders of tools/bench/)
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const all = readdirSync(here, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(here, d.name, 'run.mjs')))
  .map((d) => d.name)
  .sort();
const wanted = process.argv.slice(2);
for (const w of wanted) {
  if (!all.includes(w)) {
    console.error(`bench: no benchmark named ${w}; there are: ${all.join(', ')}`);
    process.exit(2);
  }
}
const results = [];
for (const name of wanted.length ? wanted : all) {
  console.log(`\n=== ${name}: node tools/bench/${name}/run.mjs`);
  const r = spawnSync(process.execPath, [join(here, name, 'run.mjs')], { stdio: 'inherit' });
  results.push([name, r.status === 0 ? 'all goals met' : r.status === 1 ? 'a goal missed (see above)' : `failed (exit ${r.status ?? r.signal})`]);
}
console.log('\nbenchmarks:');
for (const [name, verdict] of results) console.log(`  ${name.padEnd(10)} ${verdict}`);
process.exitCode = results.every(([, v]) => v === 'all goals met') ? 0 : 1;
