// SPDX-License-Identifier: Apache-2.0
// The connection tracker's reference model (model.ts ConnTrack) on its own: the documented
// precedence, TCP states and timeouts, without a kernel (the kernel is held to it in
// test/kernel/filter-ct.test.ts and the state fuzzer).
import { describe, expect, it } from 'vitest';
import { ConnTrack } from '../../src/filter/model.js';
import { buildPacket, parsePacket, reverse, TCP, type PacketSpec } from '../../src/filter/packet.js';
import { makePolicy } from '../../src/filter/policy.js';

const P = (text: string, more: Partial<PacketSpec> = {}): PacketSpec => ({ ...parsePacket(text), ...more });
const S = 1_000_000_000n;

describe('connection tracking model', () => {
  const strict = makePolicy({ default: 'deny', allow: ['tcp/22'] });
  const syn = P('tcp 10.0.0.2:40000 -> 10.0.0.1:8080');

  it('a connection the host opened: the SYN-ACK passes as established, an unanswered port does not', () => {
    const m = new ConnTrack();
    expect(m.ingress(strict, buildPacket(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }))).action).toBe('deny');
    m.egress(buildPacket(syn));
    expect(m.ingress(strict, buildPacket(reverse(syn, { tcpFlags: TCP.ack }))).action).toBe('deny'); // not an answer to a SYN
    const o = m.ingress(strict, buildPacket(reverse(syn, { tcpFlags: TCP.syn | TCP.ack })));
    expect([o.action, o.ct, o.stats]).toEqual(['allow', 'established', ['established']]);
    expect([...m.flows.values()][0].flow.state).toBe('established');
  });

  it('a RST ends the flow; FINs both ways are time-wait, gone after 120 s', () => {
    const m = new ConnTrack();
    m.egress(buildPacket(syn));
    m.ingress(strict, buildPacket(reverse(syn, { tcpFlags: TCP.syn | TCP.ack })));
    expect(m.ingress(strict, buildPacket(reverse(syn, { tcpFlags: TCP.rst }))).ct).toBe('established');
    expect(m.flows.size).toBe(0);
    m.egress(buildPacket(syn));
    m.ingress(strict, buildPacket(reverse(syn, { tcpFlags: TCP.syn | TCP.ack })));
    m.egress(buildPacket({ ...syn, tcpFlags: TCP.fin | TCP.ack }));
    m.ingress(strict, buildPacket(reverse(syn, { tcpFlags: TCP.fin | TCP.ack })));
    expect([...m.flows.values()][0].flow.state).toBe('time_wait');
    m.now += 120n * S;
    expect(m.ingress(strict, buildPacket(reverse(syn, { tcpFlags: TCP.ack }))).action).toBe('deny');
  });

  it('a deny rule beats state; an ICMP error quoting a flow is related; state off is the stateless verdict', () => {
    const m = new ConnTrack();
    m.egress(buildPacket(syn));
    expect(m.ingress(makePolicy({ default: 'deny', deny: ['from 10.0.0.1'] }), buildPacket(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }))).rule).toBe(0);
    const err = P('icmp 192.0.2.1 -> 10.0.0.2', { icmpType: 3, icmpCode: 4, inner: syn });
    expect(m.ingress(strict, buildPacket(err)).ct).toBe('related');
    expect(m.ingress(strict, buildPacket({ ...err, inner: { ...syn, sport: 1 } })).action).toBe('deny');
    m.stateful = false;
    expect(m.ingress(strict, buildPacket(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }))).action).toBe('deny');
  });

  it('UDP: 30 s one way, 120 s once answered; configurable', () => {
    const m = new ConnTrack();
    const q = P('udp 10.0.0.2:5353 -> 10.0.0.1:53');
    const deny = makePolicy({ default: 'deny' });
    m.egress(buildPacket(q));
    m.now += 30n * S;
    expect(m.ingress(deny, buildPacket(reverse(q))).action).toBe('deny');
    m.egress(buildPacket(q));
    expect(m.ingress(deny, buildPacket(reverse(q))).action).toBe('allow');
    m.now += 119n * S;
    expect(m.ingress(deny, buildPacket(reverse(q))).action).toBe('allow');
    m.timeouts = { udp_stream: 10 };
    m.now += 10n * S;
    expect(m.ingress(deny, buildPacket(reverse(q))).action).toBe('deny');
  });
});
