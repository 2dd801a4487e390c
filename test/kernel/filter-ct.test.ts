// SPDX-License-Identifier: Apache-2.0
// Connection tracking in the filter's programs under BPF_PROG_TEST_RUN: what the host sends goes
// through filter_egress (tc egress), what it receives through filter_xdp or filter_tc, with the
// test clock (flt_ct_cfg.now) so expiry is exact. Each case is a sequence, run once per ingress
// hook on a table of its own (a packet changes state, so it cannot run through both hooks).
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { FilterDatapath, type Hook } from '../../src/filter/datapath.js';
import { runHook } from '../../src/filter/fuzz.js';
import { buildPacket, parsePacket, reverse, TCP, type PacketSpec } from '../../src/filter/packet.js';
import { makePolicy, type Policy } from '../../src/filter/policy.js';
import { ConnTrack } from '../../src/filter/model.js';
import type { Stat } from '../../src/filter/stats.js';
import * as F from '../../src/gen/filter.js';
import { describeKernel } from '../helpers/kernel.js';

const S = 1_000_000_000n;
/** the statistics a case names (the rest are checked by the fuzzer) */
const SHOWN: Stat[] = ['established', 'related', 'outOfWindow', 'defaultDrop', 'defaultPass'];
const T0 = 1_000n * S;

for (const hook of ['xdp', 'tc'] as const satisfies readonly Hook[]) {
  describeKernel(`filter connection tracking, ingress through ${hook} (BPF_PROG_TEST_RUN)`, () => {
    let d: FilterDatapath;
    let ct: ReturnType<FilterDatapath['conntrack']>;
    let now = T0;
    /** the reference model, fed the same packets, policy, clock and timeouts */
    let model = new ConnTrack();
    let policy: Policy = makePolicy({});
    beforeAll(() => {
      d = FilterDatapath.load(`ct${hook}`);
      ct = d.conntrack();
    });
    afterAll(() => d?.close());

    const cfg = (patch: Partial<F.FltCtCfg>): void => {
      const c = { ...ct.cfg.get(0), ...patch };
      ct.cfg.set(0, c);
      model.now = c.now;
      model.stateful = c.stateful === 1;
      model.timeouts = { tcp_syn_sent: c.tcp_syn_sent, tcp_established: c.tcp_established, tcp_closing: c.tcp_closing, tcp_time_wait: c.tcp_time_wait, udp_single: c.udp_single, udp_stream: c.udp_stream, icmp: c.icmp };
    };
    beforeEach(() => {
      for (const k of [...ct.flows.keys()]) ct.flows.delete(k);
      model = new ConnTrack();
      now = T0;
      cfg({ stateful: 1, now, tcp_syn_sent: 0, tcp_established: 0, tcp_closing: 0, tcp_time_wait: 0, udp_single: 0, udp_stream: 0, icmp: 0 });
    });
    const later = (seconds: number): void => {
      now += BigInt(seconds) * S;
      cfg({ now });
    };

    // the host is 10.0.0.2 / fd00::2; the far side 10.0.0.1 / fd00::1
    const P = (text: string, more: Partial<PacketSpec> = {}): PacketSpec => ({ ...parsePacket(text), ...more });
    const out = (spec: PacketSpec): void => {
      expect(ct.egress.testRun({ data: buildPacket(spec) }).retval, 'egress never drops').toBe(0);
      model.egress(buildPacket(spec));
    };
    /** An inbound packet's verdict, and the one statistic or rule it moved. */
    function inbound(spec: PacketSpec): { verdict: string | null; counted: string } {
      const before = d.counters();
      const verdict = runHook(d, hook, buildPacket(spec));
      const o = model.ingress(policy, buildPacket(spec));
      expect(o.action, 'the model agrees').toBe(verdict);
      const after = d.counters();
      const moved = [
        ...after.rules.filter((r, i) => r.packets !== before.rules[i].packets).map((r) => r.rule),
        ...SHOWN.filter((s) => after[s].packets !== before[s].packets),
      ];
      const modelCounted = [...(o.rule !== null ? [after.rules[o.rule].rule] : []), ...o.stats.filter((x) => SHOWN.includes(x))];
      expect(modelCounted.join(','), 'the model counts it alike').toBe(moved.join(','));
      return { verdict, counted: moved.join(',') };
    }
    const apply = (p: Policy): void => {
      d.apply(p);
      policy = p;
    };
    const strict = (): void => apply(makePolicy({ default: 'deny', allow: ['tcp/22'] }));

    it('the host opens a TCP connection: the SYN-ACK and the rest pass as established under a default deny; unsolicited inbound does not', () => {
      strict();
      const syn = P('tcp 10.0.0.2:40000 -> 10.0.0.1:8080');
      const reply = reverse(syn);
      // before the host's SYN the same SYN-ACK is unsolicited
      expect(inbound({ ...reply, tcpFlags: TCP.syn | TCP.ack })).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      out(syn);
      expect(inbound({ ...reply, tcpFlags: TCP.syn | TCP.ack })).toEqual({ verdict: 'allow', counted: 'established' });
      out({ ...syn, tcpFlags: TCP.ack });
      expect(inbound({ ...reply, tcpFlags: TCP.ack | TCP.psh })).toEqual({ verdict: 'allow', counted: 'established' });
      const [[, v]] = [...ct.flows.entries()];
      expect(v.state).toBe(F.FLT_CT_ESTABLISHED);
      // another port of the far side, another local port, a new inbound SYN: none of them is the flow
      expect(inbound({ ...reply, sport: 8081, tcpFlags: TCP.ack })).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      expect(inbound({ ...reply, dport: 40001, tcpFlags: TCP.ack })).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      expect(inbound({ ...reply, tcpFlags: TCP.syn })).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      expect(inbound(P('tcp 10.0.0.1:5555 -> 10.0.0.2:22'))).toEqual({ verdict: 'allow', counted: 'allow tcp/22' });
    });

    it('in SYN_SENT only a SYN-ACK or a RST from the far side is the flow (a bare ACK guessed at the port is not)', () => {
      strict();
      const syn = P('tcp 10.0.0.2:40000 -> 10.0.0.1:8080');
      out(syn);
      expect(inbound(reverse(syn, { tcpFlags: TCP.ack }))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      // connection refused: the RST reaches the socket, and the flow is gone
      expect(inbound(reverse(syn, { tcpFlags: TCP.rst | TCP.ack }))).toEqual({ verdict: 'allow', counted: 'established' });
      expect([...ct.flows.keys()]).toEqual([]);
      expect(inbound(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
    });

    it('a reset connection: the RST passes, its late packets do not (RST from either side)', () => {
      strict();
      for (const side of ['remote', 'local'] as const) {
        const syn = P('tcp 10.0.0.2:40000 -> 10.0.0.1:8080');
        out(syn);
        expect(inbound(reverse(syn, { tcpFlags: TCP.syn | TCP.ack })).verdict).toBe('allow');
        if (side === 'remote') expect(inbound(reverse(syn, { tcpFlags: TCP.rst }))).toEqual({ verdict: 'allow', counted: 'established' });
        else out({ ...syn, tcpFlags: TCP.rst | TCP.ack });
        expect(inbound(reverse(syn, { tcpFlags: TCP.ack })), side).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      }
    });

    it('FINs close: CLOSING then TIME_WAIT, passing until their 120 s run out', () => {
      strict();
      const syn = P('tcp 10.0.0.2:40000 -> 10.0.0.1:8080');
      out(syn);
      inbound(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }));
      out({ ...syn, tcpFlags: TCP.fin | TCP.ack });
      expect(ct.flows.entries()[0][1].state).toBe(F.FLT_CT_CLOSING);
      expect(inbound(reverse(syn, { tcpFlags: TCP.fin | TCP.ack })).verdict).toBe('allow');
      expect(ct.flows.entries()[0][1].state).toBe(F.FLT_CT_TIME_WAIT);
      later(119);
      expect(inbound(reverse(syn, { tcpFlags: TCP.ack })).verdict).toBe('allow');
      later(120);
      expect(inbound(reverse(syn, { tcpFlags: TCP.ack }))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
    });

    it('an expired flow does not pass: TCP after 5 days idle, UDP after 30 s one way or 120 s both ways, ping after 30 s; timeouts are configurable', () => {
      apply(makePolicy({ default: 'deny' }));
      const syn = P('tcp 10.0.0.2:40000 -> 10.0.0.1:443');
      out(syn);
      inbound(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }));
      later(5 * 86400 - 1);
      expect(inbound(reverse(syn, { tcpFlags: TCP.ack })).verdict).toBe('allow');
      later(5 * 86400);
      expect(inbound(reverse(syn, { tcpFlags: TCP.ack }))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });

      const q = P('udp 10.0.0.2:5353 -> 10.0.0.1:53');
      out(q);
      later(29);
      expect(inbound(reverse(q)).verdict).toBe('allow'); // now seen both ways: 120 s
      later(119);
      expect(inbound(reverse(q)).verdict).toBe('allow');
      later(120);
      expect(inbound(reverse(q))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      out(q);
      later(30);
      expect(inbound(reverse(q))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });

      cfg({ icmp: 5 });
      const ping = P('icmp 10.0.0.2 -> 10.0.0.1', { icmpId: 77 });
      out(ping);
      later(4);
      expect(inbound(reverse(ping, { icmpType: 0 }))).toEqual({ verdict: 'allow', counted: 'established' });
      expect(inbound(reverse(ping, { icmpType: 0, icmpId: 78 }))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      later(5);
      expect(inbound(reverse(ping, { icmpType: 0 }))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
    });

    it('ICMP errors: fragmentation needed / packet too big quoting a tracked flow pass as related, quoting another do not', () => {
      apply(makePolicy({ default: 'deny' }));
      for (const [fam, local, remote, router, type] of [
        [4, '10.0.0.2', '10.0.0.1', '192.0.2.1', 3],
        [6, '[fd00::2]', '[fd00::1]', '[2001:db8::1]', 2],
      ] as const) {
        const syn = P(`tcp ${local}:40000 -> ${remote}:443`);
        out(syn);
        inbound(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }));
        const bare = (a: string): string => a.replace(/[[\]]/g, '');
        const err = (inner: PacketSpec): PacketSpec => P(`icmp ${bare(router)} -> ${bare(local)}`, { icmpType: type, icmpCode: fam === 4 ? 4 : 0, inner });
        expect(inbound(err({ ...syn, tcpFlags: TCP.ack })), `${fam} tracked`).toEqual({ verdict: 'allow', counted: 'related' });
        expect(inbound(err({ ...syn, sport: 40001 })), `${fam} untracked`).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
        // a UDP flow and a ping too, with the whole quoted header (time exceeded)
        const q = P(`udp ${local}:5353 -> ${remote}:53`);
        out(q);
        expect(inbound({ ...err(q), icmpType: fam === 4 ? 11 : 3, quote: 64 }), `${fam} udp`).toEqual({ verdict: 'allow', counted: 'related' });
        const ping = P(`icmp ${bare(local)} -> ${bare(remote)}`, { icmpId: 9 });
        out(ping);
        expect(inbound(err(ping)), `${fam} ping`).toEqual({ verdict: 'allow', counted: 'related' });
        expect(inbound(err({ ...ping, icmpId: 10 })), `${fam} other ping`).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      }
    });

    it('an explicit deny beats state: replies from a denied network drop, counted on the rule; allow rules and the default do not', () => {
      apply(makePolicy({ default: 'deny', deny: ['from 10.0.0.0/24'], allow: ['tcp/8080'] }));
      const syn = P('tcp 10.0.0.2:40000 -> 10.0.0.1:8080');
      out(syn);
      expect(inbound(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }))).toEqual({ verdict: 'deny', counted: 'deny from 10.0.0.0/24' });
      const other = P('tcp 10.0.0.2:40000 -> 10.9.0.1:8080');
      out(other);
      expect(inbound(reverse(other, { tcpFlags: TCP.syn | TCP.ack }))).toEqual({ verdict: 'allow', counted: 'established' });
    });

    it('an inbound connection an allow rule accepted stays tracked: it keeps passing when the allow goes, until a deny names it', () => {
      apply(makePolicy({ default: 'deny', allow: ['tcp/22'] }));
      const syn = P('tcp 10.0.0.1:50000 -> 10.0.0.2:22');
      expect(inbound(syn)).toEqual({ verdict: 'allow', counted: 'allow tcp/22' });
      out(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }));
      expect(inbound({ ...syn, tcpFlags: TCP.ack })).toEqual({ verdict: 'allow', counted: 'established' });
      apply(makePolicy({ default: 'deny' }));
      expect(inbound({ ...syn, tcpFlags: TCP.ack | TCP.psh })).toEqual({ verdict: 'allow', counted: 'established' });
      // a new connection to the same port is judged by the policy now in force
      expect(inbound({ ...syn, sport: 50001 })).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      apply(makePolicy({ default: 'deny', deny: ['tcp/22'] }));
      expect(inbound({ ...syn, tcpFlags: TCP.ack })).toEqual({ verdict: 'deny', counted: 'deny tcp/22' });
      // the default allow passes without tracking: only allow rules start flows
      apply(makePolicy({}));
      expect(inbound({ ...syn, sport: 50002 })).toEqual({ verdict: 'allow', counted: 'defaultPass' });
      expect([...ct.flows.keys()].filter((k) => k.lport === 22 && k.rport === 50002)).toEqual([]);
    });

    it('IPv6 and VLAN-tagged frames: the same flow whatever the tags', () => {
      strict();
      const syn = P('tcp [fd00::2]:40000 -> [fd00::1]:8080');
      out(syn);
      expect(inbound(reverse(syn, { tcpFlags: TCP.syn | TCP.ack, vlans: [100] }))).toEqual({ verdict: 'allow', counted: 'established' });
      expect(inbound(reverse(syn, { tcpFlags: TCP.ack, vlans: [100, 200], ext: [0, 60] }))).toEqual({ verdict: 'allow', counted: 'established' });
      const ping = P('icmp fd00::2 -> fd00::1', { icmpId: 5, vlans: [7] });
      out(ping);
      expect(inbound(reverse(ping, { icmpType: 129, vlans: [] }))).toEqual({ verdict: 'allow', counted: 'established' });
      const v4 = P('udp 10.0.0.2:5353 -> 10.0.0.1:53', { vlans: [42] });
      out(v4);
      expect(inbound(reverse(v4))).toEqual({ verdict: 'allow', counted: 'established' });
      const [k] = [...ct.flows.keys()].filter((x) => x.family === F.FLT_FAMILY_V6 && x.proto === 6);
      // the key in the host's view
      expect(Buffer.from(k.laddr).toString('hex')).toBe('fd000000000000000000000000000002');
      expect([k.lport, k.rport, k.proto]).toEqual([40000, 8080, 6]);
    });

    /** A handshake the host opens, with real numbers: the host's ISN 1000, the far side's 5000, windows and SYN options as given. */
    function handshake(opts: { hostWs?: number; peerWs?: number; hostWin?: number; peerWin?: number } = {}): { syn: PacketSpec; host: () => number; peer: () => number } {
      const syn = P('tcp 10.0.0.2:40000 -> 10.0.0.1:8080', { seq: 1000, payload: 0, window: opts.hostWin ?? 64240, tcpOptions: opts.hostWs === undefined ? [2, 4, 5, 0xb4] : [2, 4, 5, 0xb4, 4, 2, 1, 3, 3, opts.hostWs] });
      out(syn);
      expect(inbound(reverse(syn, { tcpFlags: TCP.syn | TCP.ack, seq: 5000, ack: 1001, window: opts.peerWin ?? 65160, tcpOptions: opts.peerWs === undefined ? [] : [1, 3, 3, opts.peerWs] })).verdict).toBe('allow');
      out({ ...syn, tcpFlags: TCP.ack, seq: 1001, ack: 5001, tcpOptions: [] });
      return { syn, host: () => 1001, peer: () => 5001 };
    }
    const outOfWindow = { verdict: 'deny', counted: 'outOfWindow' };
    const established = { verdict: 'allow', counted: 'established' };

    it('TCP windows: a far side segment with a sequence past what the host let it send, or an ack of what the host never sent, is dropped as out of window, whatever the rules say', () => {
      apply(makePolicy({ default: 'allow' }));
      const { syn } = handshake();
      const data = (more: Partial<PacketSpec>): PacketSpec => reverse(syn, { tcpFlags: TCP.ack | TCP.psh, seq: 5001, ack: 1001, payload: 100, tcpOptions: [], ...more });
      expect(inbound(data({}))).toEqual(established);
      // the host advertised 64240 bytes from 5001 (its ACK): 5001 + 64240 is the edge
      expect(inbound(data({ seq: 5001 + 64240 }))).toEqual(established);
      expect(inbound(data({ seq: 5001 + 64241 }))).toEqual(outOfWindow);
      expect(inbound(data({ seq: 0x80000000 }))).toEqual(outOfWindow);
      // an ack ahead of what the host sent (1001), or more than a window behind it
      expect(inbound(data({ ack: 1002 }))).toEqual(outOfWindow);
      expect(inbound(data({ ack: (1001 - 66001) >>> 0 }))).toEqual(outOfWindow);
      expect(inbound(data({ ack: (1001 - 66000) >>> 0 }))).toEqual(established);
      // a retransmission of what already came is in window
      expect(inbound(data({ seq: 5001 }))).toEqual(established);
      const [[, v]] = [...ct.flows.entries()];
      // the far side's end: the furthest segment that passed (the one that started at the edge)
      expect([v.l_end, v.r_end, v.state]).toEqual([1001, 5001 + 64240 + 100, F.FLT_CT_ESTABLISHED]);
    });

    it('a blind RST (right ports, sequence out of window) is dropped and the connection stays; the far side\'s real RST closes it, and its late packets drop', () => {
      strict();
      const { syn } = handshake();
      expect(inbound(reverse(syn, { tcpFlags: TCP.rst, seq: 5001 + 200000, payload: 0 }))).toEqual(outOfWindow);
      expect(inbound(reverse(syn, { tcpFlags: TCP.rst | TCP.ack, seq: 5001, ack: 999999, payload: 0 }))).toEqual(outOfWindow);
      expect(ct.flows.entries().length).toBe(1);
      expect(inbound(reverse(syn, { tcpFlags: TCP.ack, seq: 5001, ack: 1001, payload: 10 }))).toEqual(established);
      expect(inbound(reverse(syn, { tcpFlags: TCP.rst, seq: 5011, payload: 0 }))).toEqual(established);
      expect(ct.flows.entries().length).toBe(0);
      expect(inbound(reverse(syn, { tcpFlags: TCP.ack, seq: 5011, ack: 1001, payload: 10 }))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
    });

    it('window scaling: with the scale option on both SYNs the host\'s window is scaled (a segment 1 MB ahead passes); with it on one only, it is not', () => {
      strict();
      const far = (syn: PacketSpec): PacketSpec => reverse(syn, { tcpFlags: TCP.ack, seq: 5001 + 1_000_000, ack: 1001, payload: 100, tcpOptions: [], window: 502 });
      const scaled = handshake({ hostWs: 7, peerWs: 7 });
      // the host's last ACK advertised 64240 << 7 bytes
      expect(inbound(far(scaled.syn))).toEqual(established);
      const [[, v]] = [...ct.flows.entries()];
      expect([v.l_wscale, v.r_wscale, v.tcp & (F.FLT_CT_T_L_WS | F.FLT_CT_T_R_WS)]).toEqual([7, 7, F.FLT_CT_T_L_WS | F.FLT_CT_T_R_WS]);
      out({ ...scaled.syn, tcpFlags: TCP.rst, seq: 1001 });
      const oneSided = handshake({ hostWs: 7 });
      expect(inbound(far(oneSided.syn))).toEqual(outOfWindow);
    });

    it('mid-stream pickup: an ACK the host sends for a connection the table does not hold starts an established flow (scales taken as the largest); the far side\'s replies pass', () => {
      strict();
      const ack = P('tcp 10.0.0.2:40000 -> 10.0.0.1:8080', { tcpFlags: TCP.ack | TCP.psh, seq: 70000, ack: 900000, window: 501, payload: 50 });
      // a far side's packet before it: the rules (a bare ACK is no new connection)
      expect(inbound(reverse(ack, { tcpFlags: TCP.ack, seq: 900000, ack: 70000 }))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      out(ack);
      const [[, v]] = [...ct.flows.entries()];
      expect([v.state, v.tcp & F.FLT_CT_T_PICKUP, v.l_end]).toEqual([F.FLT_CT_ESTABLISHED, F.FLT_CT_T_PICKUP, 70050]);
      expect(inbound(reverse(ack, { tcpFlags: TCP.ack, seq: 900000, ack: 70050, payload: 1000 }))).toEqual(established);
      // its ack may not run ahead of what the host sent even so
      expect(inbound(reverse(ack, { tcpFlags: TCP.ack, seq: 901000, ack: 70051, payload: 0 }))).toEqual(outOfWindow);
    });

    it('state off: the egress program records nothing and replies are judged by the rules alone', () => {
      strict();
      cfg({ stateful: 0 });
      const syn = P('tcp 10.0.0.2:40000 -> 10.0.0.1:8080');
      out(syn);
      expect([...ct.flows.keys()]).toEqual([]);
      expect(inbound(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      // a flow already in the table does not count either while state is off
      cfg({ stateful: 1 });
      out(syn);
      cfg({ stateful: 0 });
      expect(inbound(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }))).toEqual({ verdict: 'deny', counted: 'defaultDrop' });
      expect(inbound(P('tcp 10.0.0.1:1 -> 10.0.0.2:22'))).toEqual({ verdict: 'allow', counted: 'allow tcp/22' });
      expect([...ct.flows.keys()].length).toBe(1);
    });
  });
}
