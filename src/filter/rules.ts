// SPDX-License-Identifier: Apache-2.0
// The rule grammar, shared by the CLI, policy files and the HTTP API:
//   [PROTO[/PORTS]] [from CIDR] [to CIDR]      PROTO: tcp udp sctp icmp icmpv4 icmpv6 arp
// PORTS is a destination port or a range (8000-8100), for icmpv4 and icmpv6 an ICMP type, a range
// of types or a type's name (icmpv6/echo-request); CIDR is IPv4 or IPv6. `icmp` is ping in both
// families: all of ICMPv4 and ICMPv6 echo (request and reply), never the ICMPv6 that IPv6 needs to
// work (neighbour discovery, packet too big, ...). Pure: no kernel here.
import { isIP } from 'node:net';
import { EbpfnetError } from '../errors.js';
import { ipv6Bytes, ipv6Text } from '../loader/ip.js';

export type Action = 'allow' | 'deny';
export type Proto = 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv4' | 'icmpv6' | 'arp';
export type Family = 4 | 6;

export const PROTOS: readonly Proto[] = ['tcp', 'udp', 'sctp', 'icmp', 'icmpv4', 'icmpv6', 'arp'];
/** IP protocol numbers of the protocols that are one protocol (icmp spans two; arp is an ethertype) */
export const PROTO_NUMBERS: Record<Exclude<Proto, 'arp' | 'icmp'>, number> = { tcp: 6, udp: 17, sctp: 132, icmpv4: 1, icmpv6: 58 };
const WITH_PORTS = new Set<Proto>(['tcp', 'udp', 'sctp']);
const WITH_TYPES = new Set<Proto>(['icmpv4', 'icmpv6']);
/** what `icmp` matches of ICMPv6: echo request and echo reply */
export const ICMPV6_ECHO: readonly [number, number] = [128, 129];

/** ICMP type names (as nftables spells them), per protocol */
export const ICMP_TYPES: Record<'icmpv4' | 'icmpv6', Readonly<Record<string, number>>> = {
  icmpv4: {
    'echo-reply': 0, 'destination-unreachable': 3, 'source-quench': 4, redirect: 5, 'echo-request': 8, 'router-advertisement': 9,
    'router-solicitation': 10, 'time-exceeded': 11, 'parameter-problem': 12, 'timestamp-request': 13, 'timestamp-reply': 14,
  },
  icmpv6: {
    'destination-unreachable': 1, 'packet-too-big': 2, 'time-exceeded': 3, 'parameter-problem': 4, 'echo-request': 128, 'echo-reply': 129,
    'mld-listener-query': 130, 'mld-listener-report': 131, 'mld-listener-done': 132, 'nd-router-solicit': 133, 'nd-router-advert': 134,
    'nd-neighbor-solicit': 135, 'nd-neighbor-advert': 136, 'nd-redirect': 137, 'mld2-listener-report': 143,
  },
};

/** What a match means in one family: the IP protocol and port (or ICMP type) range it names, or
 * null when it cannot match that family. `icmp` is ICMPv4 in IPv4 and ICMPv6 echo in IPv6. */
export function familyMatch(m: Match, family: Family): { proto?: number; ports?: readonly [number, number] } | null {
  if (!m.proto) return {};
  switch (m.proto) {
    case 'arp':
      return null;
    case 'icmp':
      return family === 4 ? { proto: PROTO_NUMBERS.icmpv4 } : { proto: PROTO_NUMBERS.icmpv6, ports: ICMPV6_ECHO };
    case 'icmpv4':
    case 'icmpv6':
      if ((m.proto === 'icmpv4') !== (family === 4)) return null;
      return { proto: PROTO_NUMBERS[m.proto], ports: m.ports };
    default:
      return { proto: PROTO_NUMBERS[m.proto], ports: m.ports };
  }
}

export interface Cidr {
  family: Family;
  /** the address with host bits cleared, as a big-endian integer (32 or 128 bits) */
  addr: bigint;
  prefix: number;
}

export interface Match {
  proto?: Proto;
  ports?: readonly [number, number];
  src?: Cidr;
  dst?: Cidr;
}

export interface Rule extends Match {
  action: Action;
}

const usage = (input: string, detail: string, hint?: string): EbpfnetError =>
  new EbpfnetError('EBPFNET_USAGE', `parse rule '${input}'`, detail, { hint });

export const familyBits = (f: Family): number => (f === 4 ? 32 : 128);

function parseAddress(text: string): { family: Family; addr: bigint } | null {
  const v = isIP(text);
  if (v === 4) {
    // in Numbers, one BigInt at the end: 100,000-rule policies are parsed several times over
    return { family: 4, addr: BigInt(text.split('.').reduce((a, o) => a * 256 + Number(o), 0)) };
  }
  const b = v === 6 ? ipv6Bytes(text) : null;
  if (b) return { family: 6, addr: b.reduce((a, x) => (a << 8n) | BigInt(x), 0n) };
  return null;
}

export function parseCidr(text: string, input = text): Cidr {
  const [a, p, extra] = text.split('/');
  const parsed = parseAddress(a);
  if (!parsed || extra !== undefined) throw usage(input, `'${text}' is not an IPv4 or IPv6 address or prefix`, 'for example 10.0.0.0/8 or 2001:db8::/32');
  const bits = familyBits(parsed.family);
  let prefix = bits;
  if (p !== undefined) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > bits) throw usage(input, `prefix length /${p} is out of range for IPv${parsed.family}`, `use /0 to /${bits}`);
    prefix = Number(p);
  }
  if (parsed.family === 4) {
    const a = Number(parsed.addr);
    return { family: 4, addr: prefix === 32 ? parsed.addr : BigInt(a - (a % 2 ** (32 - prefix))), prefix };
  }
  const mask = prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << BigInt(bits - prefix);
  return { family: parsed.family, addr: parsed.addr & mask, prefix };
}

export function formatAddress(family: Family, addr: bigint): string {
  if (family === 4) {
    const a = Number(addr);
    return `${Math.floor(a / 2 ** 24)}.${Math.floor(a / 2 ** 16) % 256}.${Math.floor(a / 256) % 256}.${a % 256}`;
  }
  return ipv6Text(Uint8Array.from({ length: 16 }, (_, i) => Number((addr >> BigInt(120 - i * 8)) & 0xffn)));
}

export const formatCidr = (c: Cidr): string => `${formatAddress(c.family, c.addr)}/${c.prefix}`;

function parseTypes(proto: 'icmpv4' | 'icmpv6', text: string, input: string): [number, number] {
  const names = ICMP_TYPES[proto];
  const one = (t: string): number => {
    if (/^\d{1,3}$/.test(t) && Number(t) <= 255) return Number(t);
    const n = names[t];
    if (n === undefined) throw usage(input, `'${t}' is not an ${proto} type`, `use a number 0-255 or one of ${Object.keys(names).join(', ')}`);
    return n;
  };
  // a range is two numbers; a name may hold dashes itself (echo-request)
  const range = /^(\d+)-(\d+)$/.exec(text);
  const [lo, hi] = range ? [one(range[1]), one(range[2])] : [one(text), one(text)];
  if (lo > hi) throw usage(input, `the range ${lo}-${hi} is backwards`, `write it as ${hi}-${lo}`);
  return [lo, hi];
}

function parsePorts(text: string, input: string): [number, number] {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m) throw usage(input, `'${text}' is not a port or a port range`, 'for example 22 or 8000-8100');
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  for (const p of [lo, hi]) if (p < 1 || p > 65535) throw usage(input, `port ${p} is out of range`, 'ports are 1-65535');
  if (lo > hi) throw usage(input, `the range ${lo}-${hi} is backwards`, `write it as ${hi}-${lo}`);
  return [lo, hi];
}

/** Parses one rule's match (everything but the action). */
export function parseMatch(input: string): Match {
  const words = input.trim().split(/\s+/).filter(Boolean);
  const m: Match = {};
  let i = 0;
  // keywords, like protocols, in any case: 'FROM 10.0.0.0/8' is 'from 10.0.0.0/8'
  if (words[i] && !['from', 'to'].includes(words[i].toLowerCase())) {
    const [proto, ports, extra] = words[i].toLowerCase().split('/');
    // the constant from PROTOS, not the split's copy: a policy of 100,000 rules holds one 'udp'
    const known = PROTOS.find((x) => x === proto);
    if (!known) throw usage(input, `unknown protocol '${proto}'`, `use ${PROTOS.join(', ')}`);
    m.proto = known;
    if (extra !== undefined) throw usage(input, `'${words[i]}' has more than one /`);
    if (ports !== undefined) {
      if (m.proto === 'icmp') throw usage(input, 'icmp takes no types', 'icmp is ping in IPv4 and IPv6; name types with icmpv4/TYPE or icmpv6/TYPE, e.g. icmpv6/echo-request');
      if (WITH_TYPES.has(m.proto)) m.ports = parseTypes(m.proto as 'icmpv4' | 'icmpv6', ports, input);
      else if (!WITH_PORTS.has(m.proto)) throw usage(input, `${m.proto} has no ports`, 'only tcp, udp and sctp rules take /PORTS (icmpv4 and icmpv6 take /TYPE)');
      else m.ports = parsePorts(ports, input);
    }
    i++;
  }
  while (i < words.length) {
    const kw = words[i].toLowerCase();
    if (kw !== 'from' && kw !== 'to') throw usage(input, `unexpected '${words[i]}'`, 'a rule is [PROTO[/PORTS]] [from CIDR] [to CIDR]');
    const key = kw === 'from' ? 'src' : 'dst';
    if (m[key]) throw usage(input, `'${kw}' given twice`);
    if (words[i + 1] === undefined) throw usage(input, `'${kw}' needs an address`, 'for example from 10.0.0.0/8');
    m[key] = parseCidr(words[i + 1], input);
    i += 2;
  }
  if (!m.proto && !m.src && !m.dst) throw usage(input, 'an empty rule matches nothing', 'name a protocol, an address or both, e.g. tcp/22 or from 10.0.0.0/8');
  if (m.proto === 'arp' && (m.src || m.dst)) throw usage(input, 'arp rules take no addresses', "'arp' alone drops or allows all ARP");
  const fam = ruleFamily(m);
  if (fam === null) throw usage(input, 'mixes IPv4 and IPv6', 'from and to must be the same family, and icmpv4 is IPv4 while icmpv6 is IPv6');
  return m;
}

/** 4 or 6 when the rule can only match one family, 0 when it matches both, null when it can match none. */
export function ruleFamily(m: Match): Family | 0 | null {
  let fam: Family | 0 = 0;
  for (const f of [m.src?.family, m.dst?.family, m.proto === 'icmpv4' ? 4 : m.proto === 'icmpv6' ? 6 : undefined]) {
    if (f === undefined) continue;
    if (fam && f !== fam) return null;
    fam = f as Family;
  }
  return fam;
}

export function parseRule(action: Action, input: string): Rule {
  // the literal, not the caller's string: 100,000 rules parsed from JSON held 100,000 copies of "deny"
  return { action: action === 'deny' ? 'deny' : action === 'allow' ? 'allow' : action, ...parseMatch(input) };
}

/**
 * One policy line, `deny RULE` or `allow RULE`: the form of the agent's filter.rules and of the
 * lines of a --policy file (policy.ts parsePolicyText). The rule comes back parsed.
 */
export function parseRuleLine(line: string, where = 'rule'): Rule {
  const m = /^\s*(deny|allow)\s+(.+)$/.exec(line);
  if (!m) throw new EbpfnetError('EBPFNET_USAGE', `parse ${where}`, `not 'deny RULE' or 'allow RULE'`, { hint: 'for example: deny tcp/22' });
  return parseRule(m[1] as Action, m[2]);
}

/**
 * The canonical text of a match: parse(format(m)) equals m. Made by join, never by templates: join
 * makes a flat string, where a template of 13 characters or more makes a rope (two or three heap
 * objects instead of one), and large policies keep one of these per rule.
 */
export function formatMatch(m: Match): string {
  const words: string[] = [];
  if (m.proto) words.push(m.ports ? [m.proto, m.ports[0] === m.ports[1] ? m.ports[0] : `${m.ports[0]}-${m.ports[1]}`].join('/') : m.proto);
  if (m.src) words.push('from', formatCidr(m.src));
  if (m.dst) words.push('to', formatCidr(m.dst));
  return words.join(' ');
}

/** (join, not a template: a flat string, as in formatMatch) */
export const formatRule = (r: Rule): string => [r.action, formatMatch(r)].join(' ');

/**
 * How few packets a rule can match, in fixed bits: 8 for a protocol, 16 for an exact port (less for
 * a range: 16 - log2 of its width), 8 for an exact ICMP type (8 - log2 of a range's width), and the
 * prefix lengths of its addresses. `icmp` counts as a protocol (8) in both families. The most
 * specific rule wins; on a tie deny wins; then the earlier rule.
 */
export function specificity(m: Match): number {
  let s = 0;
  if (m.proto) s += 8;
  if (m.ports) s += (WITH_TYPES.has(m.proto!) ? 8 : 16) - Math.log2(m.ports[1] - m.ports[0] + 1);
  if (m.src) s += m.src.prefix;
  if (m.dst) s += m.dst.prefix;
  return s;
}
