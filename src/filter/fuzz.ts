// SPDX-License-Identifier: Apache-2.0
// The differential fuzzer's runner: random policies and frames (fuzz-cases.ts) through the real
// filter programs (XDP and tc) with BPF_PROG_TEST_RUN, each verdict against the byte-level model
// (model.ts), and after every policy's batch the per-rule counters and statistics against what the
// model says each frame counts. A disagreement becomes a reproducer: seed, policy as rule strings,
// frame hex; replay() runs one again. Used by tools/fuzz/filter.mjs and the kernel test suite.
import { FLT_F_DIR4 } from '../gen/filter.js';
import { XDP, XDP_ACTION_NAMES } from '../loader/index.js';
import { FilterDatapath, type FilterCounters, type Hook } from './datapath.js';
import { CtWorld, randomCtPolicy, randomFrame, randomPolicy, Rng, type CtStepKind, type FrameKind } from './fuzz-cases.js';
import { ConnTrack, ctKeyText, ctTcpFlags, ctWindowsOf, decideFrame, type CtState, type FrameOutcome, type Stat } from './model.js';
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
  `${o.action} (${o.rule !== null ? `rule ${o.rule}` : (o.ct ?? o.decision.reason)}${o.parsed.why ? `: ${o.parsed.why}` : ''}; counts ${[...(o.rule !== null ? [`rule ${o.rule}`] : []), ...o.stats].join(', ')})`;

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

// ---- The state fuzzer: worlds of packet sequences in both directions (CtWorld) through the real
// programs (filter_egress for what the host sends, filter_xdp or filter_tc, picked per packet, for
// what it receives) and the model's ConnTrack, on the test clock. Each packet's verdict, each policy
// segment's counters, and after each segment the whole flow table (state, flags, last seen) are
// compared.

export interface CtFuzzOptions {
  seed: number;
  packets: number;
  /** packets (and clock steps) per world: a fresh table, clock and timeouts each */
  perWorld?: number;
  onDisagreement?: (r: CtReproducer) => void;
  maxDisagreements?: number;
}

export interface CtReproducer {
  what: 'verdict' | 'aborted' | 'counters' | 'table' | 'egress';
  seed: number;
  world: number;
  step: number;
  hook: Hook | 'egress' | null;
  policy: ReproPolicy;
  /** the frame, hex */
  packet: string;
  kernel: string;
  model: string;
}

export interface CtFuzzReport {
  seed: number;
  worlds: number;
  /** frames through a program: inbound (xdp or tc) plus outbound (egress) */
  packets: number;
  inbound: number;
  outbound: number;
  verdicts: { allow: number; deny: number };
  /** inbound frames passed by state, and by an allow rule that opened a flow */
  established: number;
  related: number;
  /** inbound TCP segments of a tracked flow dropped as out of its window */
  outOfWindow: number;
  /** inbound RSTs of a tracked flow: in window (passed, the flow closed) and out of it (dropped, the flow kept) */
  resets: { inWindow: number; outOfWindow: number };
  steps: Record<CtStepKind, number>;
  /** flows in the model's table at each comparison, summed, by state */
  states: Record<CtState, number>;
  aborted: number;
  disagreements: CtReproducer[];
}

const T0 = 1_000_000_000_000n;
const TIMEOUT_FIELDS = ['tcp_syn_sent', 'tcp_established', 'tcp_closing', 'tcp_time_wait', 'udp_single', 'udp_stream', 'icmp'] as const;

export function runCtFuzz(opts: CtFuzzOptions): CtFuzzReport {
  const max = opts.maxDisagreements ?? 20;
  const perWorld = opts.perWorld ?? 500;
  const rng = new Rng(opts.seed);
  const report: CtFuzzReport = {
    seed: opts.seed,
    worlds: 0,
    packets: 0,
    inbound: 0,
    outbound: 0,
    verdicts: { allow: 0, deny: 0 },
    established: 0,
    related: 0,
    outOfWindow: 0,
    resets: { inWindow: 0, outOfWindow: 0 },
    steps: { open_out: 0, open_in: 0, continue: 0, icmp_error: 0, junk: 0, window: 0, truncated: 0, clock: 0, policy: 0 },
    states: { syn_sent: 0, established: 0, closing: 0, time_wait: 0, udp: 0, icmp: 0 },
    aborted: 0,
    disagreements: [],
  };
  const found = (r: CtReproducer): void => {
    if (report.disagreements.length >= max) return;
    report.disagreements.push(r);
    opts.onDisagreement?.(r);
  };
  const d = FilterDatapath.load('ctfuzz');
  const ct = d.conntrack();
  try {
    for (let w = 0; report.packets < opts.packets; w++) {
      report.worlds++;
      for (const k of [...ct.flows.keys()]) ct.flows.delete(k);
      const model = new ConnTrack();
      model.now = T0;
      // netfilter's defaults half the time, else short ones the clock jumps cross
      const timeouts = Object.fromEntries(TIMEOUT_FIELDS.map((f) => [f, rng.chance(0.5) ? 0 : rng.pick([1, 5, 30, 120])])) as Record<(typeof TIMEOUT_FIELDS)[number], number>;
      model.timeouts = timeouts;
      ct.cfg.set(0, { stateful: 1, now: T0, ...timeouts });
      const world = new CtWorld(rng, (frame) => model.windowsOf(frame));
      let policy = randomCtPolicy(rng);
      d.apply(policy);
      let before = tallyOf(d.counters());
      let expected = emptyTally(policy.rules.length);
      let lastFrame = '';
      const endSegment = (step: number): void => {
        const diff = tallyDiff(before, tallyOf(d.counters()), expected);
        if (diff.length) found({ what: 'counters', seed: opts.seed, world: w, step, hook: null, policy: reproPolicy(policy), packet: lastFrame, kernel: diff.join('; '), model: 'the segment as a whole' });
        const want = model.snapshot();
        const got = new Map(ct.flows.entries().map(([k, v]) => [ctKeyText(k), { state: v.state, flags: v.flags, lastSeen: v.last_seen, tcp: ctWindowsOf(v) }]));
        const diffs: string[] = [];
        for (const [k, v] of want) {
          const g = got.get(k);
          if (!g || g.state !== v.state || g.flags !== v.flags || g.lastSeen !== v.lastSeen || JSON.stringify(g.tcp) !== JSON.stringify(v.tcp)) diffs.push(`${k}: kernel ${g ? JSON.stringify({ ...g, lastSeen: String(g.lastSeen) }) : 'absent'}, model ${JSON.stringify({ ...v, lastSeen: String(v.lastSeen) })}`);
        }
        for (const k of got.keys()) if (!want.has(k)) diffs.push(`${k}: kernel has it, model does not`);
        if (diffs.length) found({ what: 'table', seed: opts.seed, world: w, step, hook: null, policy: reproPolicy(policy), packet: lastFrame, kernel: diffs.slice(0, 5).join('; '), model: `${want.size} flows` });
        for (const { flow } of model.flows.values()) report.states[flow.state]++;
      };
      for (let s = 0; s < perWorld && report.packets < opts.packets; s++) {
        const step = world.next();
        report.steps[step.kind]++;
        if (step.kind === 'clock') {
          model.now += BigInt(step.seconds!) * 1_000_000_000n;
          ct.cfg.set(0, { ...ct.cfg.get(0), now: model.now });
          continue;
        }
        if (step.kind === 'policy') {
          endSegment(s);
          policy = step.policy!;
          d.apply(policy);
          before = tallyOf(d.counters());
          expected = emptyTally(policy.rules.length);
          continue;
        }
        const frame = step.frame!;
        const hex = frame.toString('hex');
        if (!tcHarnessTakes(frame) && (step.dir === 'out' || rng.chance(0.5))) continue;
        lastFrame = hex;
        const repro = (what: CtReproducer['what'], hook: CtReproducer['hook'], kernel: string, m: string): void =>
          found({ what, seed: opts.seed, world: w, step: s, hook, policy: reproPolicy(policy), packet: hex, kernel, model: m });
        report.packets++;
        if (step.dir === 'out') {
          report.outbound++;
          model.egress(frame);
          const rv = ct.egress.testRun({ data: frame }).retval;
          if (rv !== TC_ACT_OK) repro('egress', 'egress', `tc retval ${rv}`, 'TC_ACT_OK: egress never drops');
          continue;
        }
        report.inbound++;
        const hook: Hook = !tcHarnessTakes(frame) || rng.chance(0.5) ? 'xdp' : 'tc';
        const o = model.ingress(policy, frame);
        report.verdicts[o.action]++;
        if (o.ct) report[o.ct]++;
        if (o.ct && o.ct !== 'related' && (ctTcpFlags(frame) ?? 0) & 0x04) report.resets[o.ct === 'established' ? 'inWindow' : 'outOfWindow']++;
        addOutcome(expected, o, frame.length, 1);
        const v = runHook(d, hook, frame);
        if (v !== 'allow' && v !== 'deny') {
          report.aborted++;
          repro('aborted', hook, String(v), describeOutcome(o));
        } else if (v !== o.action) {
          repro('verdict', hook, v, describeOutcome(o));
        }
      }
      endSegment(perWorld);
    }
  } finally {
    d.close();
  }
  return report;
}
