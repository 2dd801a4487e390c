// SPDX-License-Identifier: Apache-2.0
// Property tests of the rule grammar (src/filter/rules.ts) and the packet text of `filter explain`
// (src/filter/packet.ts): every valid rule prints back to text that parses to the same rule, any
// string parses or is refused with one clean usage error, and a packet built from explain text
// parses (model.ts) into exactly what the model is told it is.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseFrame } from '../../src/filter/model.js';
import { buildPacket, packetInfo, parsePacket, type PacketSpec } from '../../src/filter/packet.js';
import { makePolicy } from '../../src/filter/policy.js';
import { formatAddress, formatMatch, formatRule, parseCidr, parseMatch, parseRule, PROTOS, type Match } from '../../src/filter/rules.js';
import { grammarish, ipv4, ipv6, parsedOrClean, RUNS } from '../helpers/props.js';

const port = fc.integer({ min: 1, max: 65535 });
const cidr4 = fc.tuple(ipv4, fc.integer({ min: 0, max: 32 }), fc.boolean()).map(([a, p, bare]) => (bare ? a.text : `${a.text}/${p}`));
const cidr6 = fc.tuple(ipv6, fc.integer({ min: 0, max: 128 }), fc.boolean()).map(([a, p, bare]) => (bare ? a.text : `${a.text}/${p}`));

/** Rule text that is valid by construction, in any spacing and case. */
const validRule = fc
  .record({
    proto: fc.constantFrom('tcp', 'udp', 'sctp', 'icmp', 'icmpv6', 'arp', ''),
    ports: fc.option(fc.tuple(port, port).map(([a, b]) => (a === b ? `${a}` : `${Math.min(a, b)}-${Math.max(a, b)}`)), { nil: undefined }),
    v6: fc.boolean(),
    src: fc.boolean(),
    dst: fc.boolean(),
    c4: fc.tuple(cidr4, cidr4),
    c6: fc.tuple(cidr6, cidr6),
    upper: fc.boolean(),
    sp: fc.constantFrom(' ', '  ', '\t', ' \t '),
  })
  .filter((r) => r.proto !== '' || r.src || r.dst)
  .map((r) => {
    const v6 = r.proto === 'icmpv6' ? true : r.proto === 'icmp' ? false : r.v6;
    const parts: string[] = [];
    if (r.proto) parts.push(['tcp', 'udp', 'sctp'].includes(r.proto) && r.ports ? `${r.proto}/${r.ports}` : r.proto);
    if (r.proto !== 'arp') {
      if (r.src || !r.proto) parts.push('from', (v6 ? r.c6 : r.c4)[0]);
      if (r.dst) parts.push('to', (v6 ? r.c6 : r.c4)[1]);
    }
    const text = parts.join(r.sp);
    return r.upper ? text.toUpperCase() : text;
  });

const TOKENS = [...PROTOS, 'from', 'to', 'tcp/22', 'udp/53-54', '10.0.0.0/8', '::/0', 'fd00::1', '0.0.0.0/33', '::ffff:1.2.3.4', '/', '-', '1-65535'];

describe('rule grammar properties', () => {
  it('valid rules: parse -> format -> parse gives an equal rule, and the format is a fixed point', () => {
    fc.assert(
      fc.property(validRule, fc.constantFrom('allow', 'deny') as fc.Arbitrary<'allow' | 'deny'>, (text, action) => {
        const r = parseRule(action, text);
        const again = parseRule(action, formatMatch(r));
        expect(again).toEqual(r);
        expect(formatRule(again)).toBe(formatRule(r));
      }),
      { numRuns: RUNS.cheap },
    );
  });

  it('any string: a rule that round-trips, or one clean usage error', () => {
    fc.assert(
      fc.property(grammarish(TOKENS), (text) => {
        const m = parsedOrClean(() => parseMatch(text));
        if (m) expect(parseMatch(formatMatch(m))).toEqual(m);
      }),
      { numRuns: RUNS.cheap },
    );
  });

  it('addresses: every way of writing an IPv6 or IPv4 address means the same value, and prints canonically', () => {
    fc.assert(
      fc.property(fc.oneof(ipv4.map((a) => ({ ...a, f: 4 as const })), ipv6.map((a) => ({ ...a, f: 6 as const }))), (a) => {
        const c = parseCidr(a.text);
        expect(c).toEqual({ family: a.f, addr: a.value, prefix: a.f === 4 ? 32 : 128 });
        expect(parseCidr(formatAddress(c.family, c.addr))).toEqual(c);
      }),
      { numRuns: RUNS.cheap },
    );
  });

  it('a policy is all or nothing: one bad rule among good ones is refused as a whole', () => {
    fc.assert(
      fc.property(fc.array(validRule, { maxLength: 5 }), grammarish(TOKENS), (good, maybe) => {
        const p = parsedOrClean(() => makePolicy({ deny: [...good, maybe] }));
        const bad = parsedOrClean(() => parseMatch(maybe)) === null;
        expect(p === null).toBe(bad);
      }),
      { numRuns: RUNS.cheap / 4 },
    );
  });
});

const PROTO_OF: Record<string, number> = { tcp: 6, udp: 17, sctp: 132, icmp: 1, icmpv6: 58 };

describe('explain packet text properties', () => {
  const endpoint = (a: { text: string }, v6: boolean, p: number | null): string => (p === null ? a.text : v6 ? `[${a.text}]:${p}` : `${a.text}:${p}`);
  const validPacket = fc
    .record({ proto: fc.constantFrom('tcp', 'udp', 'sctp', 'icmp', 'icmpv6'), v6: fc.boolean(), a4: fc.tuple(ipv4, ipv4), a6: fc.tuple(ipv6, ipv6), sport: fc.option(port), dport: fc.option(port) })
    .map((r) => {
      const v6 = r.proto === 'icmpv6' ? true : r.proto === 'icmp' ? false : r.v6;
      const [s, d] = v6 ? r.a6 : r.a4;
      const ported = !r.proto.startsWith('icmp');
      return { text: `${r.proto} ${endpoint(s, v6, ported ? r.sport : null)} -> ${endpoint(d, v6, ported ? r.dport : null)}`, src: s.value, dst: d.value, proto: PROTO_OF[r.proto] };
    });

  it('valid text parses to its addresses, and the frame built from it reads back as the model is told', () => {
    fc.assert(
      fc.property(validPacket, fc.record({ vlans: fc.array(fc.nat(4095), { maxLength: 2 }), ext: fc.array(fc.constantFrom(0, 43, 60), { maxLength: 8 }) }), (p, more) => {
        const spec: PacketSpec = parsePacket(p.text);
        expect([spec.src, spec.dst, spec.proto]).toEqual([p.src, p.dst, p.proto]);
        const full: PacketSpec = { ...spec, vlans: more.vlans, ext: spec.family === 6 ? more.ext : [] };
        const { why, ...seen } = parseFrame(buildPacket(full));
        expect(why).toBeUndefined();
        const want = packetInfo(full);
        expect({ ...seen, nd: !!seen.nd }).toEqual({ ...want, nd: !!want.nd });
      }),
      { numRuns: RUNS.cheap },
    );
  });

  it('any string: a packet, or one clean usage error', () => {
    fc.assert(
      fc.property(grammarish(['tcp', 'udp', 'icmp', 'icmpv6', '->', '10.0.0.1:22', '[fd00::1]:53', 'fd00::1', '1.2.3.4', ':', '[', ']', '99999']), (text) => {
        parsedOrClean(() => parsePacket(text));
      }),
      { numRuns: RUNS.cheap },
    );
  });
});
