#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The kernel-oracle fuzzer, long run (issue 19; the short one is test/kernel/filter-oracle.test.ts):
// seeded, mutating frames (VLAN stacks, ethertypes, IPv4 options and fragments, IPv6 extension
// header chains and fragments, truncations, ICMP types, tunnels) from a source namespace across a
// veth to a target namespace, once without a filter and once under each policy and hook of
// `ebpfnet filter`. The oracle is the target's own stack, not the project's model: a packet it
// delivers to a socket, or answers, under a policy that denies it is a bypass. Needs root, a build
// (npm run build) and a C compiler. Makes two namespaces of its own and removes them on every exit.
//
//   node tools/fuzz/oracle.mjs [--seed N] [--cases N] [--policy NAME]... [--hook xdp|tc]... [--explain I,J] [--json]
//
// --explain prints every delivery and answer of those cases (indexes a bypass line names), round by round.
//
// Policies: deny-ssh-icmp (--deny tcp/22 --deny icmp), default-deny-http (--default deny --allow
// tcp/80). Exit 0 with no bypass, 1 on a bypass (each printed with its frames in hex), 2 when it
// could not run.
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { formatReport, OracleError, runOracle } from './oracle/run.mjs';
import { POLICIES } from './oracle/judge.mjs';

/** @param {string} msg @returns {never} */
function usage(msg) {
  process.stderr.write(`oracle: ${msg}; usage: node tools/fuzz/oracle.mjs [--seed N] [--cases N] [--policy ${Object.keys(POLICIES).join('|')}]... [--hook xdp|tc]... [--explain I,J] [--json]\n`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({ options: { seed: { type: 'string' }, cases: { type: 'string' }, policy: { type: 'string', multiple: true }, hook: { type: 'string', multiple: true }, explain: { type: 'string' }, json: { type: 'boolean' } } }).values;
} catch (e) {
  usage(/** @type {Error} */ (e).message);
}
/** @param {string | undefined} v @param {number} dflt @param {string} name @param {number} max */
const num = (v, dflt, name, max) => {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) usage(`--${name} '${v}' is not an integer from 1 to ${max}`);
  return Number(v);
};
const seed = num(args.seed ?? process.env.EBPFNET_ORACLE_SEED, Date.now() % 2 ** 31, args.seed === undefined ? 'seed (EBPFNET_ORACLE_SEED)' : 'seed', 2 ** 32 - 1);
const cases = num(args.cases, 50_000, 'cases', 2 ** 24 - 1);
for (const p of args.policy ?? []) if (!POLICIES[p]) usage(`--policy '${p}' is not one of ${Object.keys(POLICIES).join(', ')}`);
for (const k of args.hook ?? []) if (k !== 'xdp' && k !== 'tc') usage(`--hook '${k}' is not xdp or tc`);
if (args.explain !== undefined && !/^\d+(,\d+)*$/.test(args.explain)) usage(`--explain '${args.explain}' is not a list of case indexes (3,17)`);
if (process.getuid?.() !== 0) usage('needs root (it makes namespaces and attaches filters)');

// Two namespaces joined by a veth pair, IPv4 and IPv6: the topology of test/helpers/netns.ts
// makeTwoHosts(), which a script cannot import (TypeScript).
const id = `${process.pid % 100000}`;
const n = process.pid % 250;
const hosts = {
  source: `ebn-os${id}`,
  target: `ebn-ot${id}`,
  targetIf: `ebot${id}`,
  sourceIp: `10.197.${n}.1`,
  targetIp: `10.197.${n}.2`,
  sourceIp6: `fd00:197:${n.toString(16)}::1`,
  targetIp6: `fd00:197:${n.toString(16)}::2`,
};
const ip = (/** @type {string[]} */ a) => execFileSync('ip', a, { stdio: ['ignore', 'ignore', 'pipe'] });
const cleanup = () => {
  for (const ns of [hosts.source, hosts.target]) {
    try {
      ip(['netns', 'del', ns]);
    } catch {
      /* not made, or gone */
    }
  }
};
for (const s of /** @type {const} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
  process.on(s, () => {
    cleanup();
    process.exit(2);
  });
}

let code = 2;
try {
  ip(['netns', 'add', hosts.source]);
  ip(['netns', 'add', hosts.target]);
  ip(['link', 'add', `ebos${id}`, 'netns', hosts.source, 'type', 'veth', 'peer', 'name', hosts.targetIf, 'netns', hosts.target]);
  for (const [ns, ifn, a4, a6] of [
    [hosts.source, `ebos${id}`, hosts.sourceIp, hosts.sourceIp6],
    [hosts.target, hosts.targetIf, hosts.targetIp, hosts.targetIp6],
  ]) {
    ip(['-n', ns, 'addr', 'add', `${a4}/24`, 'dev', ifn]);
    ip(['-n', ns, 'addr', 'add', `${a6}/64`, 'dev', ifn, 'nodad']);
    ip(['-n', ns, 'link', 'set', ifn, 'up']);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  process.stdout.write(`oracle: seed ${seed} (reproduce with --seed ${seed} --cases ${cases})\n`);
  const rep = await runOracle({ hosts, seed, cases, policies: args.policy, hooks: args.hook, explain: args.explain?.split(',').map(Number), log: args.json ? undefined : (s) => process.stdout.write(`${s}\n`) });
  if (args.json) process.stdout.write(`${JSON.stringify(rep)}\n`);
  else {
    for (const b of rep.bypasses.slice(0, 50)) {
      process.stdout.write(`BYPASS ${rep.rounds[b.round].name}: case ${b.index ?? '?'} (${b.category}: ${b.intent}): ${b.event} ${b.cls}\n  frames: ${b.frame ?? '?'}\n`);
      if (b.index !== null) process.stdout.write(`  explain: node tools/fuzz/oracle.mjs --seed ${seed} --cases ${cases} --explain ${b.index}\n`);
    }
    if (rep.bypasses.length > 50) process.stdout.write(`... and ${rep.bypasses.length - 50} more\n`);
    for (const l of formatReport(rep)) process.stdout.write(`${l}\n`);
  }
  code = rep.bypasses.length ? 1 : 0;
} catch (e) {
  // could not run: one line for an expected failure, the stack for a defect; never exit 1
  process.stderr.write(`${e instanceof OracleError ? e.message : /** @type {Error} */ (e).stack}\n`);
} finally {
  cleanup();
}
// not process.exit(): a long --json line to a pipe must be written out first
process.exitCode = code;
