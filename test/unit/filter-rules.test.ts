// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from 'vitest';
import { EbpfnetError } from '../../src/errors.js';
import { evaluate, makePolicy, type PacketInfo } from '../../src/filter/policy.js';
import { formatMatch, parseCidr, parseMatch, specificity } from '../../src/filter/rules.js';
import { parsePacket, packetInfo } from '../../src/filter/packet.js';
import { sshLockout } from '../../src/filter/lockout.js';

describe('rule grammar', () => {
  it.each([
    ['tcp/22', 'tcp/22'],
    ['icmp', 'icmp'],
    ['udp/53 from 10.0.0.0/8', 'udp/53 from 10.0.0.0/8'],
    ['from 203.0.113.0/24', 'from 203.0.113.0/24'],
    ['tcp/443 to 2001:db8::/32', 'tcp/443 to 2001:db8::/32'],
    ['TCP/8000-8100', 'tcp/8000-8100'],
    ['tcp/80 from 10.1.2.3 to 10.0.0.0/16', 'tcp/80 from 10.1.2.3/32 to 10.0.0.0/16'],
    ['from 10.1.2.3/8', 'from 10.0.0.0/8'],
    ['to ::ffff:10.0.0.1', 'to ::ffff:a00:1/128'],
    ['icmpv6 from fe80::/10', 'icmpv6 from fe80::/10'],
    ['arp', 'arp'],
    ['icmp to 2001:db8::1', 'icmp to 2001:db8::1/128'],
    ['icmpv4', 'icmpv4'],
    ['icmpv4/8', 'icmpv4/8'],
    ['icmpv4/0-8', 'icmpv4/0-8'],
    ['icmpv6/echo-request', 'icmpv6/128'],
    ['ICMPv6/packet-too-big from fe80::/10', 'icmpv6/2 from fe80::/10'],
  ])('parses %s', (input, canonical) => {
    const m = parseMatch(input);
    expect(formatMatch(m)).toBe(canonical);
    expect(parseMatch(formatMatch(m))).toEqual(m);
  });

  it.each([
    ['tcp/99999', /port 99999 is out of range; ports are 1-65535/],
    ['icmp/22', /icmp takes no types/],
    ['udp/echo-request', /'echo-request' is not a port/],
    ['icmpv6/ping', /'ping' is not an icmpv6 type/],
    ['icmpv4/256', /'256' is not an icmpv4 type/],
    ['icmpv6/129-128', /backwards/],
    ['arp/1', /arp has no ports/],
    ['from 10.0.0.0/33', /prefix length \/33 is out of range for IPv4/],
    ['tcp/20-10', /the range 20-10 is backwards/],
    ['foo', /unknown protocol 'foo'/],
    ['tcp/0', /port 0 is out of range/],
    ['from', /'from' needs an address/],
    ['from 10.0.0.300', /is not an IPv4 or IPv6 address/],
    ['tcp/22 from 10.0.0.0/8 to 2001:db8::/32', /mixes IPv4 and IPv6/],
    ['icmpv4 to 2001:db8::1', /mixes IPv4 and IPv6/],
    ['icmpv6 from 10.0.0.0/8', /mixes IPv4 and IPv6/],
    ['tcp/22 sideways', /unexpected 'sideways'/],
    ['', /an empty rule matches nothing/],
    ['arp from 10.0.0.1', /arp rules take no addresses/],
  ])('refuses %s with one clear line', (input, msg) => {
    let err: unknown;
    try {
      parseMatch(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EbpfnetError);
    expect((err as EbpfnetError).code).toBe('EBPFNET_USAGE');
    expect((err as Error).message).toMatch(msg);
    expect((err as Error).message).not.toContain('\n');
  });

  it('IPv6 addresses normalise and print compactly', () => {
    expect(formatMatch(parseMatch('from 2001:0db8:0000:0000:0000:0000:0000:0001'))).toBe('from 2001:db8::1/128');
    expect(parseCidr('::/0').prefix).toBe(0);
  });
});

describe('precedence: the most specific rule wins, deny wins a tie', () => {
  const pkt = (text: string): PacketInfo => packetInfo(parsePacket(text));

  it('specificity counts fixed bits', () => {
    expect(specificity(parseMatch('tcp/22'))).toBe(24);
    expect(specificity(parseMatch('tcp/8000-8255'))).toBe(16);
    expect(specificity(parseMatch('from 10.0.0.0/8'))).toBe(8);
    expect(specificity(parseMatch('tcp from 10.1.2.3'))).toBe(40);
  });

  it('a host rule beats a port rule, a port rule beats a wide prefix', () => {
    const p = makePolicy({ deny: ['tcp/22', 'from 10.0.0.0/8'], allow: ['from 10.1.2.3', 'tcp/22 from 10.0.0.0/8'] });
    expect(evaluate(p, pkt('tcp 10.1.2.3:1000 -> 192.0.2.1:22')).action).toBe('allow');
    expect(evaluate(p, pkt('tcp 10.9.9.9:1000 -> 192.0.2.1:22')).action).toBe('allow');
    expect(evaluate(p, pkt('tcp 10.9.9.9:1000 -> 192.0.2.1:80')).action).toBe('deny');
    expect(evaluate(p, pkt('tcp 11.9.9.9:1000 -> 192.0.2.1:22')).action).toBe('deny');
    expect(evaluate(p, pkt('tcp 11.9.9.9:1000 -> 192.0.2.1:80'))).toEqual({ action: 'allow', rule: null, reason: 'default' });
  });

  it('deny wins a tie', () => {
    const p = makePolicy({ allow: ['tcp/22'], deny: ['tcp/22'] });
    expect(p.rules).toHaveLength(2);
    const d = evaluate(p, pkt('tcp 10.0.0.1:1 -> 10.0.0.2:22'));
    expect(d.action).toBe('deny');
    expect(p.rules[d.rule!].action).toBe('deny');
  });

  it('non-first fragments match address and protocol rules, never port rules', () => {
    const p = makePolicy({ deny: ['tcp/22'], allow: [], default: 'allow' });
    const frag = { ...pkt('tcp 10.0.0.1:1 -> 10.0.0.2:22'), nonfirst: true, dport: undefined };
    expect(evaluate(p, frag).action).toBe('allow');
    const q = makePolicy({ deny: ['tcp'] });
    expect(evaluate(q, frag).action).toBe('deny');
  });

  it('icmp is ping in both families: all of ICMPv4, and ICMPv6 echo only (never what IPv6 needs)', () => {
    const p = makePolicy({ deny: ['icmp'] });
    const v6 = (type: number): PacketInfo => ({ kind: 'ip', family: 6, proto: 58, dport: type, nd: type >= 133 && type <= 137, src: 1n, dst: 2n });
    expect(evaluate(p, pkt('icmp 10.0.0.1 -> 10.0.0.2')).action).toBe('deny');
    expect(evaluate(p, pkt('icmp 10.0.0.1 -> 10.0.0.2 type destination-unreachable')).action).toBe('deny');
    expect(evaluate(p, pkt('icmp fd00::1 -> fd00::2')).action).toBe('deny');
    expect(evaluate(p, v6(129)).action).toBe('deny');
    for (const t of [1, 2, 3, 4, 133, 134, 135, 136, 137, 143]) expect(evaluate(p, v6(t)).action, `ICMPv6 type ${t}`).toBe('allow');
    // exact forms: icmpv4 is IPv4 only, icmpv6 all of ICMPv6 (neighbour discovery too)
    expect(evaluate(makePolicy({ deny: ['icmpv4'] }), v6(128)).action).toBe('allow');
    expect(evaluate(makePolicy({ deny: ['icmpv6'] }), pkt('icmp 10.0.0.1 -> 10.0.0.2')).action).toBe('allow');
    expect(evaluate(makePolicy({ deny: ['icmpv6'] }), v6(135)).action).toBe('deny');
    // a type beats the protocol: allow icmpv6/echo-request (16 bits) wins over deny icmp (8)
    expect(evaluate(makePolicy({ deny: ['icmp'], allow: ['icmpv6/echo-request'] }), v6(128)).action).toBe('allow');
    expect(evaluate(makePolicy({ deny: ['icmp'], allow: ['icmpv6/echo-request'] }), v6(129)).action).toBe('deny');
    expect(specificity(parseMatch('icmpv6/128-129'))).toBe(15);
  });

  it('a default deny drops non-IP frames some module could turn into IP, and passes what a host needs', () => {
    const deny = makePolicy({ default: 'deny' });
    for (const t of [0x88cc, 0x888e, 0x0100, 0x05ff]) expect(evaluate(deny, { kind: 'non_ip', ethertype: t }).action, t.toString(16)).toBe('allow');
    for (const t of [0x0600, 0x8847, 0x8864, 0x88e5, 0x9100, 0x1234]) expect(evaluate(deny, { kind: 'non_ip', ethertype: t }).action, t.toString(16)).toBe('deny');
    expect(evaluate(makePolicy({ deny: ['tcp/22'] }), { kind: 'non_ip', ethertype: 0x8847 }).action).toBe('allow');
    expect(evaluate(makePolicy({ deny: ['tcp/22'] }), { kind: 'too_deep' }).action).toBe('deny');
  });

  it('neighbour discovery passes a default deny unless a rule names icmpv6', () => {
    const nd: PacketInfo = { kind: 'ip', family: 6, proto: 58, nd: true, src: 1n, dst: 2n };
    expect(evaluate(makePolicy({ default: 'deny' }), nd).reason).toBe('nd');
    expect(evaluate(makePolicy({ default: 'deny', deny: ['icmpv6'] }), nd).action).toBe('deny');
  });

  it('ARP passes unless denied explicitly; audit passes everything it would drop', () => {
    expect(evaluate(makePolicy({ default: 'deny' }), { kind: 'arp' }).action).toBe('allow');
    expect(evaluate(makePolicy({ deny: ['arp'] }), { kind: 'arp' }).action).toBe('deny');
    expect(evaluate(makePolicy({ deny: ['tcp/22'], audit: true }), pkt('tcp 10.0.0.1:1 -> 10.0.0.2:22')).action).toBe('allow');
  });

  it('refuses a policy that would cut off the SSH session it is typed in', () => {
    const env = { SSH_CONNECTION: '10.0.2.2 51234 10.0.2.15 22' };
    const ifaces = { eth0: [{ address: '10.0.2.15' }], eth1: [{ address: '192.168.56.10' }] } as never;
    const p = makePolicy({ deny: ['tcp/22'] });
    expect(sshLockout(p, ['eth0'], env, ifaces)).toEqual({ ifname: 'eth0', packet: 'tcp 10.0.2.2:51234 -> 10.0.2.15:22', rule: 'deny tcp/22' });
    expect(sshLockout(p, ['eth1'], env, ifaces)).toBeNull();
    expect(sshLockout(makePolicy({ deny: ['tcp/22'], allow: ['tcp/22 from 10.0.2.2'] }), ['eth0'], env, ifaces)).toBeNull();
    expect(sshLockout(p, ['eth0'], {}, ifaces)).toBeNull();
  });
});
