// SPDX-License-Identifier: Apache-2.0
// The filter program under BPF_PROG_TEST_RUN with crafted packets, for every rule kind. Each
// verdict is checked twice: against the expectation written here, and against the reference model.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FilterDatapath } from '../../src/filter/datapath.js';
import { buildPacket, packetInfo, parsePacket, type PacketSpec } from '../../src/filter/packet.js';
import { evaluate, makePolicy, type Policy } from '../../src/filter/policy.js';
import { formatMatch } from '../../src/filter/rules.js';
import { XDP } from '../../src/loader/index.js';
import * as F from '../../src/gen/filter.js';
import { describeKernel } from '../helpers/kernel.js';

type Prog = { testRun(x: { data: Buffer }): { retval: number } };

describeKernel('filter program (BPF_PROG_TEST_RUN)', () => {
  let d: FilterDatapath;
  let xdp: Prog;
  let tc: Prog;
  beforeAll(() => {
    d = FilterDatapath.load('lo');
    xdp = d.program('xdp');
    tc = d.program('tc');
  });
  afterAll(() => d?.close());

  /** program runs so far (xdp and tc), for exact counter checks */
  let runs = 0;

  /** XDP verdict as allow/deny, checked against tc's verdict and the model. */
  function run(policy: Policy, spec: PacketSpec | Buffer, model = true): 'allow' | 'deny' {
    const data = Buffer.isBuffer(spec) ? spec : buildPacket(spec);
    const x = xdp.testRun({ data }).retval;
    runs++;
    expect([XDP.DROP, XDP.PASS]).toContain(x);
    const verdict = x === XDP.DROP ? 'deny' : 'allow';
    // The kernel's skb test harness refuses frames shorter than Ethernet + IP + a little (EINVAL).
    let t: number | null = null;
    try {
      t = tc.testRun({ data }).retval;
    } catch (e) {
      if (data.length >= 54) throw e;
    }
    if (t !== null) {
      expect(t === 2 ? 'deny' : 'allow', 'tc agrees with xdp').toBe(verdict);
      runs++;
    }
    if (model && !Buffer.isBuffer(spec)) expect(verdict, 'kernel agrees with the model').toBe(evaluate(policy, packetInfo(spec)).action);
    return verdict;
  }
  const P = (text: string, more: Partial<PacketSpec> = {}): PacketSpec => ({ ...parsePacket(text), ...more });

  it('the headline policy: tcp/22 and icmp dropped, the rest passes, counters exact', () => {
    const p = makePolicy({ deny: ['tcp/22', 'icmp'] });
    d.apply(p);
    const before = d.counters();
    expect(run(p, P('tcp 10.0.0.1:5555 -> 10.0.0.2:22'))).toBe('deny');
    expect(run(p, P('tcp 10.0.0.1:5555 -> 10.0.0.2:80'))).toBe('allow');
    expect(run(p, P('icmp 10.0.0.1 -> 10.0.0.2'))).toBe('deny');
    expect(run(p, P('udp 10.0.0.1:5555 -> 10.0.0.2:22'))).toBe('allow');
    expect(run(p, P('tcp [fd00::1]:5555 -> [fd00::2]:22'))).toBe('deny');
    // icmp is ping in IPv6 too (echo request and reply), but never what IPv6 needs to work
    expect(run(p, P('icmp fd00::1 -> fd00::2'))).toBe('deny');
    expect(run(p, P('icmpv6 fd00::1 -> fd00::2 type echo-reply'))).toBe('deny');
    for (const t of ['packet-too-big', 'destination-unreachable', 'time-exceeded', 'nd-neighbor-solicit', 'nd-neighbor-advert', 'nd-router-advert']) {
      expect(run(p, P(`icmpv6 fd00::1 -> fd00::2 type ${t}`)), t).toBe('allow');
    }
    const after = d.counters();
    // each packet ran twice: xdp and tc
    expect(after.rules.map((r) => r.packets - before.rules.find((b) => b.id === r.id)!.packets)).toEqual([4n, 6n]);
  });

  it('ICMP types are matched per family: icmpv4/TYPE, icmpv6/TYPE and ranges, a type beating its protocol', () => {
    const p = makePolicy({ deny: ['icmp', 'icmpv6/1-4'], allow: ['icmpv6/echo-request', 'icmpv4/0'] });
    d.apply(p);
    expect(run(p, P('icmp 10.0.0.1 -> 10.0.0.2'))).toBe('deny');
    expect(run(p, P('icmp 10.0.0.1 -> 10.0.0.2 type echo-reply'))).toBe('allow');
    expect(run(p, P('icmp fd00::1 -> fd00::2'))).toBe('allow');
    expect(run(p, P('icmp fd00::1 -> fd00::2 type 129'))).toBe('deny');
    expect(run(p, P('icmp fd00::1 -> fd00::2 type 2'))).toBe('deny');
    expect(run(p, P('icmp fd00::1 -> fd00::2 type 135'))).toBe('allow');
    // ICMPv6's protocol number over IPv4 (and ICMPv4's over IPv6) carries no types: the default
    expect(run(p, { ...P('icmp 10.0.0.1 -> 10.0.0.2'), proto: 58, icmpType: 128 })).toBe('allow');
    expect(run(p, { ...P('icmp fd00::1 -> fd00::2'), proto: 1, icmpType: 8 })).toBe('allow');
  });

  it('a large policy\'s counters (the batched read of every used slot) count exactly what hit each rule', () => {
    // 300 rules: over the per-rule lookup threshold, so counters() sums the per-CPU slots in batches
    const p = makePolicy({ deny: Array.from({ length: 300 }, (_, i) => `udp/${7000 + i}`) });
    d.apply(p);
    const before = new Map(d.counters().rules.map((r) => [r.rule, r]));
    for (const [port, times] of [[7000, 1], [7001, 3], [7150, 2], [7299, 5]]) {
      for (let k = 0; k < times; k++) expect(run(p, P(`udp 10.0.0.1:5555 -> 10.0.0.2:${port}`))).toBe('deny');
    }
    const after = d.counters().rules;
    expect(after.length).toBe(300);
    const grew = Object.fromEntries(after.map((r) => [r.rule, r.packets - before.get(r.rule)!.packets]).filter(([, n]) => n !== 0n));
    // each packet ran twice: xdp and tc
    expect(grew).toEqual({ 'deny udp/7000': 2n, 'deny udp/7001': 6n, 'deny udp/7150': 4n, 'deny udp/7299': 10n });
    for (const r of after) expect(r.bytes > 0n, r.rule).toBe(r.packets > 0n);
  });

  it('port ranges, CIDRs both ways, and precedence', () => {
    const p = makePolicy({
      deny: ['tcp/8000-8100', 'udp/53 from 10.0.0.0/8', 'from 203.0.113.0/24', 'tcp/443 to 2001:db8::/32'],
      allow: ['tcp/8050 from 10.1.0.0/16', 'from 203.0.113.7'],
    });
    d.apply(p);
    expect(run(p, P('tcp 1.1.1.1:1 -> 2.2.2.2:8000'))).toBe('deny');
    expect(run(p, P('tcp 1.1.1.1:1 -> 2.2.2.2:8100'))).toBe('deny');
    expect(run(p, P('tcp 1.1.1.1:1 -> 2.2.2.2:8101'))).toBe('allow');
    expect(run(p, P('tcp 10.1.2.3:1 -> 2.2.2.2:8050'))).toBe('allow');
    expect(run(p, P('tcp 10.2.2.3:1 -> 2.2.2.2:8050'))).toBe('deny');
    expect(run(p, P('udp 10.9.9.9:1 -> 2.2.2.2:53'))).toBe('deny');
    expect(run(p, P('udp 11.9.9.9:1 -> 2.2.2.2:53'))).toBe('allow');
    expect(run(p, P('tcp 203.0.113.9:1 -> 2.2.2.2:80'))).toBe('deny');
    expect(run(p, P('tcp 203.0.113.7:1 -> 2.2.2.2:80'))).toBe('allow');
    expect(run(p, P('tcp [fd00::1]:1 -> [2001:db8:1::1]:443'))).toBe('deny');
    expect(run(p, P('tcp [fd00::1]:1 -> [2001:db9::1]:443'))).toBe('allow');
  });

  it('VLAN tags (802.1Q and 802.1ad) and IPv6 extension-header chains', () => {
    const p = makePolicy({ deny: ['tcp/22'] });
    d.apply(p);
    expect(run(p, P('tcp 10.0.0.1:1 -> 10.0.0.2:22', { vlans: [100] }))).toBe('deny');
    expect(run(p, P('tcp 10.0.0.1:1 -> 10.0.0.2:22', { vlans: [100, 200] }))).toBe('deny');
    expect(run(p, P('tcp 10.0.0.1:1 -> 10.0.0.2:80', { vlans: [100, 200] }))).toBe('allow');
    expect(run(p, P('tcp [fd00::1]:1 -> [fd00::2]:22', { ext: [0, 60, 43] }))).toBe('deny');
    expect(run(p, P('tcp [fd00::1]:1 -> [fd00::2]:80', { ext: [0, 60, 43] }))).toBe('allow');
  });

  it('stacked VLAN tags, VID 0 (which the kernel strips and delivers) or not, are parsed to the inner packet; deeper stacks drop as too deep', () => {
    for (const policy of [makePolicy({ deny: ['tcp/22', 'icmp'] }), makePolicy({ default: 'deny', allow: ['tcp/80'] })]) {
      d.apply(policy);
      for (const n of [3, 5, F.FLT_MAX_VLAN_TAGS]) {
        for (const vid of [0, 7]) {
          const vlans = Array(n).fill(vid);
          expect(run(policy, P('tcp 10.0.0.1:1 -> 10.0.0.2:22', { vlans })), `${n} tags`).toBe('deny');
          expect(run(policy, P('icmp 10.0.0.1 -> 10.0.0.2', { vlans })), `${n} tags`).toBe('deny');
          expect(run(policy, P('tcp [fd00::1]:1 -> [fd00::2]:22', { vlans })), `${n} tags`).toBe('deny');
          expect(run(policy, P('tcp 10.0.0.1:1 -> 10.0.0.2:80', { vlans })), `${n} tags`).toBe('allow');
        }
      }
      const before = d.counters().tooDeep.packets;
      const runs0 = runs;
      for (const n of [F.FLT_MAX_VLAN_TAGS + 1, 12]) {
        expect(run(policy, P('tcp 10.0.0.1:1 -> 10.0.0.2:80', { vlans: Array(n).fill(0) }), false)).toBe('deny');
        expect(run(policy, P('tcp [fd00::1]:1 -> [fd00::2]:80', { vlans: Array(n).fill(0) }), false)).toBe('deny');
      }
      expect(d.counters().tooDeep.packets - before).toBe(BigInt(runs - runs0));
    }
  });

  it('a default deny drops non-IP frames (MPLS, PPPoE, old QinQ, unknown) but passes ARP, LLDP, 802.1X and LLC; a default allow passes them all', () => {
    const frame = (type: number): Buffer => {
      const b = Buffer.alloc(60, 0xab);
      b.writeUInt16BE(type, 12);
      return b;
    };
    const deny = makePolicy({ default: 'deny', allow: ['tcp/22'] });
    d.apply(deny);
    const before = d.counters();
    const drop = [0x8847, 0x8864, 0x9100, 0x88e5, 0x1234];
    const pass = [0x0806, 0x88cc, 0x888e, 0x0026];
    for (const t of drop) expect(run(deny, frame(t)), t.toString(16)).toBe('deny');
    for (const t of pass) expect(run(deny, frame(t)), t.toString(16)).toBe('allow');
    const after = d.counters();
    expect(after.nonIpDrop.packets - before.nonIpDrop.packets).toBe(BigInt(drop.length * 2));
    expect(after.nonIp.packets - before.nonIp.packets).toBe(BigInt(pass.length * 2));
    const allow = makePolicy({ deny: ['tcp/22'] });
    d.apply(allow);
    for (const t of drop) expect(run(allow, frame(t)), t.toString(16)).toBe('allow');
  });

  it('non-first fragments match protocol and address rules only; first fragments match ports', () => {
    const p = makePolicy({ deny: ['tcp/22', 'udp'] });
    d.apply(p);
    expect(run(p, P('tcp 10.0.0.1:1 -> 10.0.0.2:22', { moreFragments: true }))).toBe('deny');
    expect(run(p, P('tcp 10.0.0.1:1 -> 10.0.0.2:22', { fragOffset: 3 }))).toBe('allow');
    expect(run(p, P('udp 10.0.0.1:1 -> 10.0.0.2:53', { fragOffset: 3 }))).toBe('deny');
    expect(run(p, P('tcp [fd00::1]:1 -> [fd00::2]:22', { fragOffset: 3 }))).toBe('allow');
    expect(run(p, P('tcp [fd00::1]:1 -> [fd00::2]:22', { moreFragments: true }))).toBe('deny');
  });

  it('truncated and malformed headers are dropped and counted; non-IP and ARP pass', () => {
    const p = makePolicy({ deny: ['tcp/22'], default: 'allow' });
    d.apply(p);
    const before = d.counters().malformed.packets;
    const runs0 = runs;
    const full = buildPacket(P('tcp 10.0.0.1:1 -> 10.0.0.2:80'));
    for (const len of [14 + 5, 14 + 10, 14 + 20 + 2]) expect(run(p, full.subarray(0, len))).toBe('deny');
    const badIhl = Buffer.from(full);
    badIhl[14] = 0x44;
    expect(run(p, badIhl)).toBe('deny');
    expect(d.counters().malformed.packets - before).toBe(BigInt(runs - runs0));
    expect(runs - runs0).toBeGreaterThanOrEqual(4);
    // more extension headers than the parser walks is not malformed but too deep: counted apart
    const deep0 = d.counters();
    const runs1 = runs;
    const v6 = buildPacket(P('tcp [fd00::1]:1 -> [fd00::2]:80', { ext: Array(F.FLT_MAX_EXT_HDRS + 1).fill(60) }));
    expect(run(p, v6)).toBe('deny');
    const deep1 = d.counters();
    expect(deep1.tooDeep.packets - deep0.tooDeep.packets).toBe(BigInt(runs - runs1));
    expect(deep1.malformed.packets).toBe(deep0.malformed.packets);
    const arp = Buffer.alloc(42);
    arp.writeUInt16BE(0x0806, 12);
    expect(run(p, arp)).toBe('allow');
    expect(run(makePolicy({ deny: ['arp'] }), arp)).toBe('allow'); // still the old policy: not applied
    d.apply(makePolicy({ deny: ['arp'] }));
    expect(run(p, arp)).toBe('deny');
  });

  it('default deny still passes neighbour discovery, unless icmpv6 is named', () => {
    const p = makePolicy({ default: 'deny', allow: ['tcp/22'] });
    d.apply(p);
    expect(run(p, P('tcp 10.0.0.1:1 -> 10.0.0.2:22'))).toBe('allow');
    expect(run(p, P('tcp 10.0.0.1:1 -> 10.0.0.2:23'))).toBe('deny');
    expect(run(p, P('icmpv6 fd00::1 -> fd00::2', { icmpType: 135 }))).toBe('allow');
    expect(run(p, P('icmpv6 fd00::1 -> fd00::2', { icmpType: 128 }))).toBe('deny');
    const q = makePolicy({ default: 'deny', deny: ['icmpv6'] });
    d.apply(q);
    expect(run(q, P('icmpv6 fd00::1 -> fd00::2', { icmpType: 135 }))).toBe('deny');
  });

  it('audit mode passes everything and still counts what it would drop', () => {
    const p = makePolicy({ deny: ['tcp/22'], audit: true });
    d.apply(p);
    const before = d.counters();
    expect(run(p, P('tcp 10.0.0.1:1 -> 10.0.0.2:22'))).toBe('allow');
    const after = d.counters();
    expect(after.rules[0].packets - before.rules[0].packets).toBe(2n);
    expect(after.audit.packets - before.audit.packets).toBe(2n);
  });

  it('a rule change takes effect on the next packet, and unchanged rules keep their counters', () => {
    const p1 = makePolicy({ deny: ['icmp'] });
    d.apply(p1);
    run(p1, P('icmp 10.0.0.1 -> 10.0.0.2'));
    const icmpBefore = d.counters().rules.find((r) => r.rule === 'deny icmp')!.packets;
    expect(run(p1, P('tcp 10.0.0.1:1 -> 10.0.0.2:22'))).toBe('allow');
    const p2 = makePolicy({ deny: ['icmp', 'tcp/22'] });
    d.apply(p2);
    expect(run(p2, P('tcp 10.0.0.1:1 -> 10.0.0.2:22'))).toBe('deny');
    expect(d.counters().rules.find((r) => r.rule === 'deny icmp')!.packets).toBe(icmpBefore);
    expect(d.counters().rules.find((r) => r.rule === 'deny tcp/22')!.packets).toBe(2n);
  });

  it('a large policy reads its counters in one batch: the last rule counts too', () => {
    // more than 64 rules: counters() reads the slots in use with one batch lookup
    const p = makePolicy({ deny: Array.from({ length: 300 }, (_, i) => `udp/${i + 1}`) });
    d.apply(p);
    const before = d.counters().rules.find((r) => r.rule === 'deny udp/300')!.packets;
    expect(run(p, P('udp 10.0.0.1:1 -> 10.0.0.2:300'))).toBe('deny');
    const after = d.counters();
    expect(after.rules).toHaveLength(300);
    expect(after.rules.find((r) => r.rule === 'deny udp/300')!.packets - before).toBe(2n);
    expect(after.rules.find((r) => r.rule === 'deny udp/299')!.packets).toBe(0n);
  });

  // Nested IPv4 prefixes at the DIR table's level boundaries (/16: first level; /17-/24: a chunk
  // for bits 8-15; /25-/32: a chunk for bits 0-7), alternating deny and allow so each level's
  // answer shows in the verdict.
  const nested = makePolicy({
    deny: ['from 10.0.0.0/8', 'from 10.1.128.0/17', 'from 10.1.128.128/25', 'tcp/22 to 172.16.0.0/12', 'to 198.51.100.0/24'],
    allow: ['from 10.1.0.0/16', 'from 10.1.128.0/24', 'from 10.1.128.200', 'tcp/22 to 172.16.5.0/30', 'udp/53 from 10.1.128.201 to 198.51.100.7'],
  });
  const probes: Array<[string, 'allow' | 'deny']> = [
    ['tcp 9.255.255.255:1 -> 192.0.2.1:80', 'allow'],
    ['tcp 10.0.0.0:1 -> 192.0.2.1:80', 'deny'], // /8
    ['tcp 10.255.255.255:1 -> 192.0.2.1:80', 'deny'],
    ['tcp 10.1.0.0:1 -> 192.0.2.1:80', 'allow'], // /16
    ['tcp 10.1.127.255:1 -> 192.0.2.1:80', 'allow'],
    ['tcp 10.1.129.0:1 -> 192.0.2.1:80', 'deny'], // /17
    ['tcp 10.1.255.255:1 -> 192.0.2.1:80', 'deny'],
    ['tcp 10.1.128.0:1 -> 192.0.2.1:80', 'allow'], // /24
    ['tcp 10.1.128.127:1 -> 192.0.2.1:80', 'allow'],
    ['tcp 10.1.128.128:1 -> 192.0.2.1:80', 'deny'], // /25
    ['tcp 10.1.128.199:1 -> 192.0.2.1:80', 'deny'],
    ['tcp 10.1.128.200:1 -> 192.0.2.1:80', 'allow'], // /32
    ['tcp 10.1.128.201:1 -> 192.0.2.1:80', 'deny'],
    ['tcp 10.1.128.255:1 -> 192.0.2.1:80', 'deny'],
    ['tcp 11.0.0.0:1 -> 192.0.2.1:80', 'allow'],
    ['tcp 192.0.2.9:1 -> 172.16.5.3:22', 'allow'], // destination /30 inside /12
    ['tcp 192.0.2.9:1 -> 172.16.5.4:22', 'deny'],
    ['tcp 192.0.2.9:1 -> 172.31.255.255:22', 'deny'],
    ['tcp 192.0.2.9:1 -> 172.32.0.0:22', 'allow'],
    ['tcp 192.0.2.9:1 -> 172.16.5.3:23', 'allow'],
    ['udp 10.1.128.201:1 -> 198.51.100.7:53', 'allow'], // both sides: source /32 and destination /32
    ['udp 10.1.128.201:1 -> 198.51.100.8:53', 'deny'],
    ['udp 10.1.128.202:1 -> 198.51.100.7:53', 'deny'],
    ['tcp 10.1.128.201:1 -> 198.51.100.7:53', 'deny'],
  ];

  it('IPv4 classes from the DIR table: /8, /16, /17, /24, /25 and /32 boundaries, nested prefixes, both sides', () => {
    const c = d.apply(nested);
    expect(c.flags & F.FLT_F_DIR4, 'this policy uses the DIR table').toBeTruthy();
    for (const [text, want] of probes) expect(run(nested, P(text)), text).toBe(want);
    // the /32 rule counts exactly the packets it decided (each ran through xdp and tc)
    const before = d.counters().rules.find((r) => r.rule === 'allow from 10.1.128.200/32')!.packets;
    run(nested, P('tcp 10.1.128.200:9 -> 192.0.2.1:443'));
    expect(d.counters().rules.find((r) => r.rule === 'allow from 10.1.128.200/32')!.packets - before).toBe(2n);
  });

  it('falls back to the LPM tries when the DIR chunks run out, and returns to the DIR table', () => {
    // 70 host prefixes in 70 different /16s need 140 chunks, more than the 128 a default-sized
    // filter has per generation; nested prefixes still decide the same way through the tries
    const many = makePolicy({
      deny: [...Array.from({ length: 70 }, (_, i) => `from 10.${i + 100}.1.1`), ...nested.rules.filter((r) => r.action === 'deny').map((r) => formatMatch(r))],
      allow: nested.rules.filter((r) => r.action === 'allow').map((r) => formatMatch(r)),
    });
    const c = d.apply(many);
    expect(c.flags & F.FLT_F_DIR4, 'this policy does not fit the DIR pool').toBe(0);
    expect(run(many, P('tcp 10.169.1.1:1 -> 192.0.2.1:80'))).toBe('deny');
    expect(run(many, P('tcp 10.169.1.2:1 -> 192.0.2.1:80'))).toBe('deny'); // inside 10/8
    for (const [text, want] of probes) expect(run(many, P(text)), text).toBe(want);
    const back = d.apply(nested);
    expect(back.flags & F.FLT_F_DIR4).toBeTruthy();
    for (const [text, want] of probes) expect(run(nested, P(text)), text).toBe(want);
  });

  it('IPv6 prefixes go through the tries beside an IPv4 DIR generation', () => {
    const p = makePolicy({ deny: ['from 10.0.0.0/8', 'from 2001:db8::/32', 'tcp/22 to fd00::/8'], allow: ['from 2001:db8:1::/48'] });
    const c = d.apply(p);
    expect(c.flags & F.FLT_F_DIR4).toBeTruthy();
    expect(run(p, P('tcp [2001:db8:2::1]:1 -> [fe80::1]:80'))).toBe('deny');
    expect(run(p, P('tcp [2001:db8:1::1]:1 -> [fe80::1]:80'))).toBe('allow');
    expect(run(p, P('tcp [2001:db9::1]:1 -> [fd00::5]:22'))).toBe('deny');
    expect(run(p, P('tcp [2001:db9::1]:1 -> [fe00::5]:22'))).toBe('allow');
    expect(run(p, P('tcp 10.9.9.9:1 -> 192.0.2.1:80'))).toBe('deny');
    expect(run(p, P('tcp 11.9.9.9:1 -> 192.0.2.1:80'))).toBe('allow');
  });
});
