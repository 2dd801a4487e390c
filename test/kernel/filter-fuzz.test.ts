// SPDX-License-Identifier: Apache-2.0
// The differential fuzzer, short run (the long one is tools/fuzz/filter.mjs): seeded random policies
// and frames through filter_xdp and filter_tc with BPF_PROG_TEST_RUN, every verdict and every counter
// against the byte-level model. Then the frames on which kernel and model once disagreed, each with
// the verdict and counter the README documents.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FilterDatapath } from '../../src/filter/datapath.js';
import { replay, reproPolicy, runCtFuzz, runFuzz, runHook, STATS } from '../../src/filter/fuzz.js';
import { decideFrame, type Stat } from '../../src/filter/model.js';
import { buildPacket, parsePacket, type PacketSpec } from '../../src/filter/packet.js';
import { makePolicy, type Policy } from '../../src/filter/policy.js';
import { describeKernel } from '../helpers/kernel.js';

describeKernel('filter differential fuzzer (BPF_PROG_TEST_RUN against the model)', () => {
  it('20,000 seeded frames over 40 policies: no disagreement, and every kind of decision seen', () => {
    const r = runFuzz({ seed: 20260806, packets: 20_000, policies: 40 });
    const repro = r.disagreements.map((d) => `node tools/fuzz/filter.mjs --replay '${JSON.stringify(d)}'`).join('\n');
    expect(r.disagreements, repro).toEqual([]);
    expect(r.packets).toBe(20_000);
    expect(r.policies).toBe(40);
    // a fuzzer that checks nothing must fail: both verdicts, rules deciding, every statistic moving
    expect(r.verdicts.allow).toBeGreaterThan(1000);
    expect(r.verdicts.deny).toBeGreaterThan(1000);
    expect(r.ruleDecided).toBeGreaterThan(2000);
    expect(r.rulesHit).toBeGreaterThan(100);
    // state is off here: nothing may pass as tracked; every other statistic moves
    for (const s of STATS) {
      if (s === 'established' || s === 'related' || s === 'outOfWindow') expect(r.stats[s], s).toBe(0);
      else expect(r.stats[s], s).toBeGreaterThan(0);
    }
    for (const [k, n] of Object.entries(r.kinds)) expect(n, k).toBeGreaterThan(0);
    // IPv4 classes through both kernel paths: the DIR table, and the tries when a policy overflows it
    expect(r.ipv4Classes.dir.policies).toBeGreaterThan(5);
    expect(r.ipv4Classes.trie.policies).toBeGreaterThan(5);
    expect(r.ipv4Classes.dir.frames).toBeGreaterThan(1000);
    expect(r.ipv4Classes.trie.frames).toBeGreaterThan(1000);
    // most frames ran through both hooks (the skb harness refuses only IP frames shorter than their header)
    expect(r.runs).toBeGreaterThan(r.packets * 1.9);
  }, 120_000);
});

describeKernel('filter connection tracking, differential (sequences through filter_egress and filter_xdp/filter_tc against the model)', () => {
  it('100,000 packets in both directions over a few hundred worlds (handshakes, resets, out-of-window junk, ICMP errors, timeouts): no disagreement in verdicts, counters or the flow table with its TCP windows; none aborted', () => {
    const r = runCtFuzz({ seed: 20261207, packets: 100_000 });
    expect(r.disagreements, r.disagreements.map((d) => JSON.stringify(d)).join('\n')).toEqual([]);
    expect(r.aborted).toBe(0);
    expect(r.packets).toBe(100_000);
    // a fuzzer that checks nothing must fail: both directions, both verdicts, state deciding, every
    // kind of step and every state reached
    expect(r.inbound).toBeGreaterThan(40_000);
    expect(r.outbound).toBeGreaterThan(30_000);
    expect(r.verdicts.allow).toBeGreaterThan(10_000);
    expect(r.verdicts.deny).toBeGreaterThan(10_000);
    expect(r.established).toBeGreaterThan(2_000);
    expect(r.related).toBeGreaterThan(200);
    // TCP windows: junk out of window dropped, resets both in window (closing) and blind (ignored)
    expect(r.outOfWindow).toBeGreaterThan(300);
    expect(r.resets.inWindow).toBeGreaterThan(100);
    expect(r.resets.outOfWindow).toBeGreaterThan(50);
    for (const [k, n] of Object.entries(r.steps)) expect(n, k).toBeGreaterThan(0);
    for (const [k, n] of Object.entries(r.states)) expect(n, k).toBeGreaterThan(0);
    expect(r.worlds).toBeGreaterThan(100);
  }, 120_000);
});

describeKernel('filter: frames the fuzzer found the kernel wrong on', () => {
  let d: FilterDatapath;
  beforeAll(() => {
    d = FilterDatapath.load('fuzzreg');
  });
  afterAll(() => d?.close());

  const P = (text: string, more: Partial<PacketSpec> = {}): Buffer => buildPacket({ ...parsePacket(text), ...more });
  const patch = (b: Buffer, at: number, v: number): Buffer => {
    const c = Buffer.from(b);
    c[at] = v;
    return c;
  };

  /** Both hooks and the model give `want`, and exactly `stat` (or the rule) counts the frame. */
  function expectFrame(policy: Policy, frame: Buffer, want: 'allow' | 'deny', counted: Stat | number): void {
    d.apply(policy);
    const o = decideFrame(policy, frame);
    expect(o.action, `model: ${o.parsed.why ?? o.decision.reason}`).toBe(want);
    const before = d.counters();
    expect(runHook(d, 'xdp', frame), 'xdp').toBe(want);
    expect(runHook(d, 'tc', frame), 'tc').toBe(want);
    const after = d.counters();
    if (typeof counted === 'number') {
      expect(o.rule).toBe(counted);
      expect(after.rules[counted].packets - before.rules[counted].packets).toBe(2n);
    } else {
      expect(o.stats).toContain(counted);
      expect(after[counted].packets - before[counted].packets).toBe(2n);
    }
    expect(replay({ policy: reproPolicy(policy), packet: frame.toString('hex') }).agree).toBe(true);
  }

  it('a stack of VID-0 tags (the kernel strips them and delivers the inner packet) is judged by what it carries; a deeper one is too deep', () => {
    const deny = makePolicy({ deny: ['tcp/22', 'icmp'] });
    const strict = makePolicy({ default: 'deny', allow: ['tcp/80'] });
    for (const vlans of [[0, 0, 0], [0, 0, 0, 0, 0]]) {
      expectFrame(deny, P('tcp 10.0.0.1:1 -> 10.0.0.2:22', { vlans }), 'deny', 0);
      expectFrame(deny, P('icmp 10.0.0.1 -> 10.0.0.2', { vlans }), 'deny', 1);
      expectFrame(deny, P('tcp [fd00::1]:1 -> [fd00::2]:22', { vlans }), 'deny', 0);
      expectFrame(strict, P('tcp 10.0.0.1:1 -> 10.0.0.2:22', { vlans }), 'deny', 'defaultDrop');
      expectFrame(strict, P('tcp 10.0.0.1:1 -> 10.0.0.2:80', { vlans }), 'allow', 0);
    }
    expectFrame(deny, P('tcp 10.0.0.1:1 -> 10.0.0.2:80', { vlans: Array(9).fill(0) }), 'deny', 'tooDeep');
  });

  it('ping over IPv6 is icmp: --deny icmp drops ICMPv6 echo, not packet too big', () => {
    const p = makePolicy({ deny: ['icmp'] });
    expectFrame(p, P('icmp fd00::1 -> fd00::2'), 'deny', 0);
    expectFrame(p, P('icmp fd00::1 -> fd00::2 type packet-too-big'), 'allow', 'defaultPass');
    expectFrame(p, P('icmp fd00::1 -> fd00::2 type nd-neighbor-solicit'), 'allow', 'ndPass');
  });

  it('IPv4 protocol 58 is not neighbour discovery: default deny drops it', () => {
    expectFrame(makePolicy({ default: 'deny', allow: ['tcp/22'] }), P('icmp 10.0.0.1 -> 10.0.0.2', { proto: 58, icmpType: 135 }), 'deny', 'defaultDrop');
  });

  it('an IPv4 header shorter than its ihl is malformed, for ICMP and for a non-first fragment', () => {
    const p = makePolicy({ deny: ['tcp/22'] });
    expectFrame(p, patch(P('icmp 10.0.0.1 -> 10.0.0.2', { payload: 0 }), 14, 0x4f), 'deny', 'malformed');
    expectFrame(p, patch(P('tcp 10.0.0.1:1 -> 10.0.0.2:80', { fragOffset: 3, payload: 0 }), 14, 0x4f), 'deny', 'malformed');
  });

  it("an IPv6 non-first fragment's payload is not walked as headers: its protocol is the fragment's next header", () => {
    // a fragment header saying 60 (destination options), then payload bytes 0x3c: read as headers
    // they claimed 488 bytes each and the frame was dropped as malformed
    const frag = P('udp [fd00::1]:1 -> [fd00::2]:53', { proto: 60, fragOffset: 100, payload: 72 }).fill(0x3c, 14 + 40 + 8);
    expectFrame(makePolicy({ deny: ['udp'] }), frag, 'allow', 'defaultPass');
    expectFrame(makePolicy({ deny: ['from fd00::1'] }), frag, 'deny', 0);
    expectFrame(makePolicy({ deny: ['udp'] }), P('udp [fd00::1]:1 -> [fd00::2]:53', { fragOffset: 100 }), 'deny', 0);
  });

  it('an IPv6 extension header longer than the packet is malformed whatever the protocol', () => {
    // destination options claiming 32 bytes where 8 are left, before protocol 59 (no next header)
    const f = patch(P('udp [fd00::1]:1 -> [fd00::2]:53', { proto: 59, ext: [60], payload: 0 }), 14 + 40 + 1, 3);
    expectFrame(makePolicy({ deny: ['tcp/22'] }), f, 'deny', 'malformed');
  });

  it('an IPv6 ethertype with another IP version is malformed', () => {
    expectFrame(makePolicy({ deny: ['tcp/22'] }), patch(P('tcp [fd00::1]:1 -> [fd00::2]:80'), 14, 0x40), 'deny', 'malformed');
  });

  it('audit mode passes a malformed frame and counts it as malformed', () => {
    expectFrame(makePolicy({ deny: ['tcp/22'], audit: true }), patch(P('tcp [fd00::1]:1 -> [fd00::2]:80'), 14, 0x40), 'allow', 'malformed');
  });
});
