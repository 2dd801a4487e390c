// SPDX-License-Identifier: Apache-2.0
// The differential fuzzer's runner: random policies and frames (fuzz-cases.ts) through the real
// filter programs (XDP and tc) with BPF_PROG_TEST_RUN, each verdict against the byte-level model
// (model.ts), and after every policy's batch the per-rule counters and statistics against what the
// model says each frame counts. A disagreement becomes a reproducer: seed, policy as rule strings,
// frame hex; replay() runs one again. Used by tools/fuzz/filter.mjs and the kernel test suite.
import { FLT_F_DIR4 } from '../gen/filter.js';
import { XDP, XDP_ACTION_NAMES } from '../loader/index.js';
import { FilterDatapath, type FilterCounters, type Hook } from './datapath.js';
import { randomFrame, randomPolicy, Rng, type FrameKind } from './fuzz-cases.js';
import { decideFrame, type FrameOutcome, type Stat } from './model.js';
import type { Policy } from './policy.js';
import { formatRule, parseRule } from './rules.js';
import { STAT_NAMES } from './stats.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
/**
 * The skb test harness refuses (EINVAL) a frame whose ethertype says IPv4 or IPv6 but that is
 * shorter than Ethernet + that IP header; XDP's harness takes anything from an Ethernet header up.
 */
export function tcHarnessTakes(frame: Buffer): boolean {
  const type = frame.readUInt16BE(12);
  return !((type === 0x0800 && frame.length < 14 + 20) || (type === 0x86dd && frame.length < 14 + 40));
}

export const STATS: readonly Stat[] = STAT_NAMES;

export interface ReproPolicy {
  rules: string[];
  default: 'allow' | 'deny';
  audit: boolean;
}

export interface Reproducer {
  what: 'verdict' | 'aborted' | 'counters';
  seed: number;
  policyIndex: number;
  packetIndex: number;
  hook: Hook;
  policy: ReproPolicy;
  /** the frame, hex */
  packet: string;
  kernel: string;
  model: string;
}

export interface FuzzOptions {
  seed: number;
  packets: number;
  policies: number;
  /** called as each disagreement is found (the CLI prints it at once) */
  onDisagreement?: (r: Reproducer) => void;
  /** stop collecting after this many (default 20) */
  maxDisagreements?: number;
}

export interface FuzzReport {
  seed: number;
  policies: number;
  packets: number;
  /** program runs (a frame runs through XDP and, when the harness takes it, tc) */
  runs: number;
  verdicts: { allow: number; deny: number };
  /** frames decided by a rule, and how many distinct (policy, rule) pairs decided one */
  ruleDecided: number;
  rulesHit: number;
  stats: Record<Stat, number>;
  kinds: Record<FrameKind, number>;
  /** policies naming IPv4 prefixes, and their IPv4 frames, by where the kernel found the classes:
   * the DIR-16-8-8 table, or the LPM tries when the policy overflowed it */
  ipv4Classes: Record<'dir' | 'trie', { policies: number; frames: number }>;
  disagreements: Reproducer[];
}

export const reproPolicy = (p: Policy): ReproPolicy => ({ rules: p.rules.map(formatRule), default: p.default, audit: !!p.audit });

export function policyOf(r: ReproPolicy): Policy {
  return { rules: r.rules.map((t) => parseRule(t.startsWith('deny ') ? 'deny' : 'allow', t.replace(/^(allow|deny) /, ''))), default: r.default, audit: r.audit };
}

const describeOutcome = (o: FrameOutcome): string =>
  `${o.action} (${o.rule !== null ? `rule ${o.rule}` : o.decision.reason}${o.parsed.why ? `: ${o.parsed.why}` : ''}; counts ${[...(o.rule !== null ? [`rule ${o.rule}`] : []), ...o.stats].join(', ')})`;

/** One frame through one hook: 'allow', 'deny', or what else came back. null: the harness refused it. */
export function runHook(d: FilterDatapath, hook: Hook, frame: Buffer): 'allow' | 'deny' | string | null {
  if (hook === 'tc' && !tcHarnessTakes(frame)) return null;
  const rv = d.program(hook).testRun({ data: frame }).retval;
  if (hook === 'xdp') return rv === XDP.PASS ? 'allow' : rv === XDP.DROP ? 'deny' : (XDP_ACTION_NAMES[rv] ?? `retval ${rv}`);
  return rv === TC_ACT_OK ? 'allow' : rv === TC_ACT_SHOT ? 'deny' : `tc retval ${rv}`;
}

/** Counter totals keyed by rule index (into the policy) and statistic. */
interface Tally {
  rules: Array<{ packets: bigint; bytes: bigint }>;
  stats: Record<Stat, { packets: bigint; bytes: bigint }>;
}

const emptyTally = (n: number): Tally => ({
  rules: Array.from({ length: n }, () => ({ packets: 0n, bytes: 0n })),
  stats: Object.fromEntries(STATS.map((s) => [s, { packets: 0n, bytes: 0n }])) as Tally['stats'],
});

function tallyOf(c: FilterCounters): Tally {
  return { rules: c.rules.map((r) => ({ packets: r.packets, bytes: r.bytes })), stats: Object.fromEntries(STATS.map((s) => [s, { ...c[s] }])) as Tally['stats'] };
}

function addOutcome(t: Tally, o: FrameOutcome, bytes: number, times: number): void {
  const n = BigInt(times);
  const b = BigInt(bytes) * n;
  const add = (x: { packets: bigint; bytes: bigint }): void => {
    x.packets += n;
    x.bytes += b;
  };
  if (o.rule !== null) add(t.rules[o.rule]);
  for (const s of o.stats) add(t.stats[s]);
}

/** The differences between what moved (after - before) and what the model expected, as text. */
function tallyDiff(before: Tally, after: Tally, expected: Tally): string[] {
  const out: string[] = [];
  const cmp = (name: string, b: { packets: bigint; bytes: bigint }, a: { packets: bigint; bytes: bigint }, e: { packets: bigint; bytes: bigint }): void => {
    const p = a.packets - b.packets;
    const by = a.bytes - b.bytes;
    if (p !== e.packets || by !== e.bytes) out.push(`${name}: kernel ${p} packets/${by} bytes, model ${e.packets}/${e.bytes}`);
  };
  expected.rules.forEach((e, i) => cmp(`rule ${i}`, before.rules[i], after.rules[i], e));
  for (const s of STATS) cmp(s, before.stats[s], after.stats[s], expected.stats[s]);
  return out;
}

/** Runs one frame through every hook and checks each verdict; returns the runs made and the problems. */
function check(d: FilterDatapath, frame: Buffer, o: FrameOutcome): { runs: number; problems: Array<{ hook: Hook; what: Reproducer['what']; kernel: string }> } {
  const problems: Array<{ hook: Hook; what: Reproducer['what']; kernel: string }> = [];
  let runs = 0;
  for (const hook of ['xdp', 'tc'] as const) {
    const v = runHook(d, hook, frame);
    if (v === null) continue;
    runs++;
    if (v !== 'allow' && v !== 'deny') problems.push({ hook, what: 'aborted', kernel: v });
    else if (v !== o.action) problems.push({ hook, what: 'verdict', kernel: v });
  }
  return { runs, problems };
}

export function runFuzz(opts: FuzzOptions): FuzzReport {
  const max = opts.maxDisagreements ?? 20;
  const rng = new Rng(opts.seed);
  const report: FuzzReport = {
    seed: opts.seed,
    policies: 0,
    packets: 0,
    runs: 0,
    verdicts: { allow: 0, deny: 0 },
    ruleDecided: 0,
    rulesHit: 0,
    stats: Object.fromEntries(STATS.map((s) => [s, 0])) as Record<Stat, number>,
    kinds: { aimed: 0, truncated: 0, mutated: 0, random: 0, arp: 0, non_ip: 0 },
    ipv4Classes: { dir: { policies: 0, frames: 0 }, trie: { policies: 0, frames: 0 } },
    disagreements: [],
  };
  const found = (r: Reproducer): void => {
    if (report.disagreements.length >= max) return;
    report.disagreements.push(r);
    opts.onDisagreement?.(r);
  };
  const d = FilterDatapath.load('fuzz');
  try {
    const perPolicy = Math.ceil(opts.packets / opts.policies);
    for (let pi = 0; pi < opts.policies && report.packets < opts.packets; pi++) {
      const fp = randomPolicy(rng);
      const policy = fp.policy;
      const flags = d.apply(policy).flags;
      report.policies++;
      const v4 = policy.rules.some((r) => r.src?.family === 4 || r.dst?.family === 4) ? report.ipv4Classes[flags & FLT_F_DIR4 ? 'dir' : 'trie'] : null;
      if (v4) v4.policies++;
      const rp = reproPolicy(policy);
      const before = tallyOf(d.counters());
      const expected = emptyTally(policy.rules.length);
      const batch: Array<{ frame: Buffer; o: FrameOutcome; runs: number; index: number }> = [];
      const hit = new Set<number>();
      for (let k = 0; k < perPolicy && report.packets < opts.packets; k++) {
        const { kind, frame } = randomFrame(rng, fp);
        const o = decideFrame(policy, frame);
        const index = report.packets++;
        report.kinds[kind]++;
        report.verdicts[o.action]++;
        if (v4 && o.parsed.kind === 'ip' && o.parsed.family === 4) v4.frames++;
        if (o.rule !== null) {
          report.ruleDecided++;
          hit.add(o.rule);
        }
        for (const s of o.stats) report.stats[s]++;
        const { runs, problems } = check(d, frame, o);
        report.runs += runs;
        addOutcome(expected, o, frame.length, runs);
        batch.push({ frame, o, runs, index });
        for (const p of problems) found({ ...p, seed: opts.seed, policyIndex: pi, packetIndex: index, policy: rp, packet: frame.toString('hex'), model: describeOutcome(o) });
      }
      report.rulesHit += hit.size;
      const after = tallyOf(d.counters());
      const diff = tallyDiff(before, after, expected);
      if (diff.length) {
        // Find the first frame whose counting differs, one at a time, so the reproducer names a packet.
        const guilty = batch.find(({ frame, o }) => {
          const b = tallyOf(d.counters());
          const e = emptyTally(policy.rules.length);
          addOutcome(e, o, frame.length, check(d, frame, o).runs);
          return tallyDiff(b, tallyOf(d.counters()), e).length > 0;
        });
        found({
          what: 'counters',
          seed: opts.seed,
          policyIndex: pi,
          packetIndex: guilty?.index ?? -1,
          hook: 'xdp',
          policy: rp,
          packet: guilty?.frame.toString('hex') ?? '',
          kernel: diff.join('; '),
          model: guilty ? describeOutcome(guilty.o) : 'the batch as a whole',
        });
      }
    }
  } finally {
    d.close();
  }
  return report;
}

export interface ReplayResult {
  model: string;
  kernel: Record<Hook, string | null>;
  counters: string[];
  agree: boolean;
}

/** Runs one reproducer's frame through a fresh filter with its policy: both hooks, counters, model. */
export function replay(r: Pick<Reproducer, 'policy' | 'packet'>): ReplayResult {
  const policy = policyOf(r.policy);
  const frame = Buffer.from(r.packet, 'hex');
  const o = decideFrame(policy, frame);
  const d = FilterDatapath.load('fuzz');
  try {
    d.apply(policy);
    const before = tallyOf(d.counters());
    const kernel = { xdp: runHook(d, 'xdp', frame), tc: runHook(d, 'tc', frame) };
    const e = emptyTally(policy.rules.length);
    addOutcome(e, o, frame.length, (kernel.xdp === null ? 0 : 1) + (kernel.tc === null ? 0 : 1));
    const counters = tallyDiff(before, tallyOf(d.counters()), e);
    const agree = Object.values(kernel).every((v) => v === null || v === o.action) && !counters.length;
    return { model: describeOutcome(o), kernel, counters, agree };
  } finally {
    d.close();
  }
}
