#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The filter's differential fuzzer, long run (issue 8 item 1): random policies and frames through the
// real XDP and tc programs with BPF_PROG_TEST_RUN, every verdict and every counter against the
// byte-level reference model (src/filter/model.ts). Needs root and a build (npx tsc -p . and
// node tools/build-bpf.mjs). Loads one filter object, attaches nothing, closes it at the end.
//
//   node tools/fuzz/filter.mjs [--seed N] [--packets N] [--policies N]
//   node tools/fuzz/filter.mjs --replay '<reproducer JSON printed by a run>'
//
// Exit 0 when kernel and model agree on everything, 1 on any disagreement, 2 on bad usage.
import { parseArgs } from 'node:util';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { runFuzz, replay } = await import(join(root, 'dist', 'filter', 'fuzz.js'));

/** @param {string} msg */
function usage(msg) {
  process.stderr.write(`fuzz: ${msg}; usage: node tools/fuzz/filter.mjs [--seed N] [--packets N] [--policies N] | --replay JSON\n`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({ options: { seed: { type: 'string' }, packets: { type: 'string' }, policies: { type: 'string' }, replay: { type: 'string' } } }).values;
} catch (e) {
  usage(/** @type {Error} */ (e).message);
}
/** @param {string | undefined} v @param {number} dflt @param {string} name */
const num = (v, dflt, name) => {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 2 ** 32 - 1) usage(`--${name} '${v}' is not a positive integer`);
  return Number(v);
};

if (args.replay !== undefined) {
  let r;
  try {
    r = JSON.parse(args.replay);
  } catch {
    usage('--replay takes the JSON line a run printed');
  }
  if (!r?.policy?.rules || typeof r.packet !== 'string') usage('--replay: the JSON needs policy {rules, default, audit} and packet (hex)');
  let out;
  try {
    out = replay(r);
  } catch (e) {
    // a policy the grammar refuses, or no root: one line, as the CLI does
    process.stderr.write(`fuzz: replay: ${/** @type {Error} */ (e).message}\n`);
    process.exit(/** @type {any} */ (e).code === 'EBPFNET_USAGE' ? 2 : 1);
  }
  process.stdout.write(`policy: ${r.policy.rules.join('; ')}; default ${r.policy.default}${r.policy.audit ? '; audit' : ''}\n`);
  process.stdout.write(`packet: ${r.packet}\nmodel:  ${out.model}\nxdp:    ${out.kernel.xdp ?? 'refused by the harness'}\ntc:     ${out.kernel.tc ?? 'refused by the harness'}\n`);
  for (const c of out.counters) process.stdout.write(`counter: ${c}\n`);
  process.stdout.write(out.agree ? 'replay: kernel and model agree\n' : 'replay: DISAGREE\n');
  process.exit(out.agree ? 0 : 1);
}

const seed = num(args.seed, Date.now() % 2 ** 31, 'seed');
const packets = num(args.packets, 100_000, 'packets');
const policies = num(args.policies, 200, 'policies');
const t0 = performance.now();
process.stdout.write(`fuzz: seed ${seed}, ${packets} packets over ${policies} policies\n`);
const report = runFuzz({
  seed,
  packets,
  policies,
  onDisagreement: (/** @type {any} */ r) => {
    process.stdout.write(`DISAGREE (${r.what}, ${r.hook}): kernel ${r.kernel}; model ${r.model}\n`);
    process.stdout.write(`  reproduce: node tools/fuzz/filter.mjs --replay '${JSON.stringify(r)}'\n`);
  },
});
const s = ((performance.now() - t0) / 1000).toFixed(1);
const k = report.kinds;
process.stdout.write(`frames: ${k.aimed} aimed, ${k.truncated} truncated, ${k.mutated} mutated, ${k.random} random, ${k.arp} arp, ${k.non_ip} non-ip\n`);
const c = report.ipv4Classes;
process.stdout.write(
  `ipv4 classes: DIR table ${c.dir.policies} policies (${c.dir.frames} IPv4 frames), trie fallback ${c.trie.policies} policies (${c.trie.frames} IPv4 frames)\n`,
);
process.stdout.write(`decided: ${report.ruleDecided} by a rule (${report.rulesHit} rules hit), ${Object.entries(report.stats).map(([n, v]) => `${n} ${v}`).join(', ')}\n`);
process.stdout.write(
  `fuzz: seed ${seed}: ${report.packets} packets fuzzed, ${report.policies} policies, ${report.runs} program runs, ` +
    `${report.verdicts.allow} allow / ${report.verdicts.deny} deny, ${report.disagreements.length} disagreements (${s} s)\n`,
);
process.exit(report.disagreements.length ? 1 : 0);
