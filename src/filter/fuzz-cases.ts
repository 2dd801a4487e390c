// SPDX-License-Identifier: Apache-2.0
// What the differential fuzzer feeds the filter: random policies and frames from a seeded generator,
// so a seed reproduces a whole run. Frames are aimed at the policy's own ports and prefixes (so rules
// match, not only miss), then varied: VLAN stacks (deeper than the parser walks too), IPv4 options, IPv6 extension-header chains (too
// long ones too), first and non-first fragments, truncation at every header boundary, flipped header
// bytes and plain random bytes. Pure: no kernel here (the runner is fuzz.ts).
import type { Policy } from './policy.js';
import { familyMatch, formatRule, parseRule, ruleFamily, type Action, type Cidr, type Family, type Rule } from './rules.js';
import { EXT_HEADERS, ETH_P, NH_AH, NH_FRAGMENT, type TcpWindows } from './model.js';
import { buildPacket, reverse, type PacketSpec } from './packet.js';

/** A small fast PRNG (32-bit state mixing, splitmix-style); the same seed gives the same stream. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x9e3779b9) >>> 0;
    let z = this.s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }
  /** 0 <= n < max */
  int(max: number): number {
    return Math.floor((this.next() / 2 ** 32) * max);
  }
  /** lo <= n <= hi */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() / 2 ** 32 < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  bits(n: number): bigint {
    let v = 0n;
    for (let i = 0; i < n; i += 32) v = (v << 32n) | BigInt(this.next());
    return v & ((1n << BigInt(n)) - 1n);
  }
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };
const mask = (f: Family, prefix: number): bigint => (prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << BigInt(BITS[f] - prefix));

/** A random address inside (or, with `outside`, just outside) a prefix. */
export function addressIn(rng: Rng, c: Cidr, outside = false): bigint {
  const bits = BITS[c.family];
  let a = (c.addr & mask(c.family, c.prefix)) | (rng.bits(bits) & ~mask(c.family, c.prefix) & ((1n << BigInt(bits)) - 1n));
  if (outside && c.prefix > 0) a ^= 1n << BigInt(bits - c.prefix); // flip the last prefix bit
  return a;
}

const formatAddr = (f: Family, a: bigint): string =>
  f === 4
    ? [24n, 16n, 8n, 0n].map((s) => String((a >> s) & 0xffn)).join('.')
    : Array.from({ length: 8 }, (_, i) => ((a >> BigInt(112 - i * 16)) & 0xffffn).toString(16)).join(':');

export interface FuzzPolicy {
  policy: Policy;
  /** the rules as the CLI takes them: "deny tcp/22 from 10.0.0.0/8" */
  texts: string[];
  /** addresses and ports the frames aim at (the policy's own, and a few others) */
  anchors: { 4: bigint[]; 6: bigint[]; ports: number[] };
  /** how many rules at the end are filler that overflows the IPv4 DIR table's chunk pool */
  fillers: number;
}

/** IPv4 prefix lengths at and either side of the DIR-16-8-8 table's level boundaries */
const DIR_BOUNDARIES = [8, 16, 17, 24, 25, 32];

/**
 * IPv4 prefixes in the DIR table: a chain nested in one anchor (a subset of /8 ⊃ /16 ⊃ /17 ⊃ /24 ⊃
 * /25 ⊃ /32), each on a random side with a random action and protocol.
 */
function nestedV4(rng: Rng, anchor: bigint): string[] {
  const out: string[] = [];
  for (const p of DIR_BOUNDARIES) {
    if (!rng.chance(0.7)) continue;
    const cidr = `${formatAddr(4, anchor & mask(4, p))}/${p}`;
    const side = rng.pick([' from ', ' to ', ' from ', ' to ']);
    const match = rng.pick(['', '', 'tcp', 'udp', 'icmp', 'tcp/22', 'udp/53']);
    out.push(`${rng.chance(0.5) ? 'deny' : 'allow'} ${match}${side}${cidr}`);
  }
  return out;
}

/**
 * Rules enough to overflow the IPv4 DIR chunk pool (FLT_DIR_MIN_CHUNKS, 128 per generation in a
 * default-sized filter), so the generation falls back to the LPM tries: each names a /25-/32
 * source and destination in /16s of their own (two chunks each), inside an anchor's /8 so they nest
 * under the policy's shorter prefixes.
 */
function dirOverflow(rng: Rng, anchors: bigint[]): string[] {
  const used = new Set(anchors.map((a) => Number(a >> 16n)));
  const host = (): string => {
    let top: number;
    do top = (Number(rng.pick(anchors) >> 24n) << 8) | rng.int(256);
    while (used.has(top));
    used.add(top);
    const p = rng.range(25, 32);
    return `${formatAddr(4, ((BigInt(top) << 16n) | rng.bits(16)) & mask(4, p))}/${p}`;
  };
  return Array.from({ length: rng.range(34, 40) }, () => `${rng.chance(0.5) ? 'deny' : 'allow'} ${rng.pick(['', '', 'tcp', 'udp/53'])} from ${host()} to ${host()}`);
}

/** A random policy: ports, ranges, v4 and v6 prefixes that nest and overlap, both actions and defaults. */
export function randomPolicy(rng: Rng): FuzzPolicy {
  const anchors = {
    4: Array.from({ length: 3 }, () => rng.bits(32)),
    6: Array.from({ length: 3 }, () => rng.bits(128)),
    ports: [22, 53, 80, 443, 1, 65535, ...Array.from({ length: 3 }, () => rng.range(1, 65535))],
  };
  const prefixLen = (f: Family): number => (rng.chance(0.6) ? rng.pick(f === 4 ? [0, ...DIR_BOUNDARIES] : [0, 16, 32, 48, 64, 128]) : rng.range(0, BITS[f]));
  const cidr = (f: Family): string => {
    const p = prefixLen(f);
    return `${formatAddr(f, rng.pick(anchors[f]) & mask(f, p))}/${p}`;
  };
  const n = rng.chance(0.1) ? rng.range(13, 40) : rng.range(1, 12);
  const texts: string[] = [];
  const rules: Rule[] = [];
  /** adds a rule given as text, unless the policy has it already (the same rule twice is one rule, as makePolicy does) */
  const add = (text: string): boolean => {
    const r = parseRule(text.startsWith('deny ') ? 'deny' : 'allow', text.replace(/^(allow|deny) /, '').trim());
    const canonical = formatRule(r);
    if (texts.includes(canonical)) return false;
    texts.push(canonical);
    rules.push(r);
    return true;
  };
  if (rng.chance(0.3)) nestedV4(rng, rng.pick(anchors[4])).forEach(add);
  const core = rules.length + n;
  while (rules.length < core) {
    const action: Action = rng.chance(0.5) ? 'deny' : 'allow';
    const proto = rng.pick(['tcp', 'udp', 'sctp', 'icmp', 'icmpv4', 'icmpv6', 'arp', '', '', 'tcp', 'udp'] as const);
    const family: Family = proto === 'icmpv4' ? 4 : proto === 'icmpv6' ? 6 : rng.chance(0.5) ? 4 : 6;
    let m = proto as string;
    if ((proto === 'tcp' || proto === 'udp' || proto === 'sctp') && rng.chance(0.75)) {
      const p = rng.pick(anchors.ports);
      const hi = rng.chance(0.5) ? p : Math.min(65535, p + rng.pick([1, 2, 7, 100, 1000, 65535]));
      m += hi === p ? `/${p}` : `/${p}-${hi}`;
    } else if ((proto === 'icmpv4' || proto === 'icmpv6') && rng.chance(0.6)) {
      // types: echo, the errors, neighbour discovery, any; sometimes a range
      const t = rng.pick(proto === 'icmpv4' ? [0, 8, 3, 11, rng.int(256)] : [128, 129, 1, 2, 133, 135, 136, rng.int(256)]);
      const hi = rng.chance(0.6) ? t : Math.min(255, t + rng.pick([1, 4, 255]));
      m += hi === t ? `/${t}` : `/${t}-${hi}`;
    }
    if (proto !== 'arp') {
      const sides = proto === '' ? rng.pick([1, 2, 3]) : rng.pick([0, 0, 1, 2, 3]);
      if (sides & 1) m += ` from ${cidr(family)}`;
      if (sides & 2) m += ` to ${cidr(family)}`;
    }
    add(`${action} ${m}`);
  }
  // about a third of the policies do not fit the DIR table: their IPv4 classes come from the tries
  const before = rules.length;
  if (rng.chance(0.3)) dirOverflow(rng, anchors[4]).forEach(add);
  const policy: Policy = { rules, default: rng.chance(0.5) ? 'deny' : 'allow', audit: rng.chance(0.2) };
  return { policy, texts, anchors, fillers: rules.length - before };
}

/** A frame under construction; `bounds` are the offsets where headers start and end. */
interface Frame {
  bytes: number[];
  bounds: number[];
}

const be16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const addrBytes = (f: Family, a: bigint): number[] => {
  const n = f === 4 ? 4 : 16;
  return Array.from({ length: n }, (_, i) => Number((a >> BigInt((n - 1 - i) * 8)) & 0xffn));
};

function push(fr: Frame, part: number[]): void {
  fr.bytes.push(...part);
  fr.bounds.push(fr.bytes.length);
}

function l4Header(rng: Rng, proto: number, dport: number, family: Family, aimedType?: number): number[] {
  const pay = Array.from({ length: rng.pick([0, 0, 4, 16, 64]) }, () => rng.int(256));
  const sport = rng.range(1, 65535);
  switch (proto) {
    case 6:
      return [...be16(sport), ...be16(dport), 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0, ...pay];
    case 17:
      return [...be16(sport), ...be16(dport), ...be16(8 + pay.length), 0, 0, ...pay];
    case 132:
      return [...be16(sport), ...be16(dport), 0, 0, 0, 0, 0, 0, 0, 0, ...pay];
    case 1:
    case 58: {
      const any = proto === 58 || family === 6 ? rng.pick([128, 129, 133, 134, 135, 136, 137, 1, 2, rng.int(256)]) : rng.pick([0, 8, 3, 11, rng.int(256)]);
      const type = aimedType !== undefined && rng.chance(0.7) ? aimedType : any;
      return [type, 0, 0, 0, 0, 1, 0, 1, ...pay];
    }
    default:
      return pay;
  }
}

type FragKind = 'none' | 'first' | 'nonfirst';

/** One aimed frame: at a rule of the policy most of the time, at its anchors otherwise. */
function aimedFrame(rng: Rng, fp: FuzzPolicy): Frame {
  // most frames aim at the policy's own rules rather than at the DIR overflow filler
  const all = fp.fillers && rng.chance(0.7) ? fp.policy.rules.slice(0, -fp.fillers) : fp.policy.rules;
  const rules = all.filter((r) => r.proto !== 'arp');
  const r = rules.length && rng.chance(0.8) ? rng.pick(rules) : null;
  const fam = r ? ruleFamily(r) : 0;
  const family: Family = fam === 4 || fam === 6 ? fam : rng.chance(0.5) ? 4 : 6;
  // the rule as this family sees it: icmp is ICMPv4 in IPv4 and ICMPv6 echo in IPv6
  const fm = r ? familyMatch(r, family) : null;
  let proto = fm?.proto !== undefined && rng.chance(0.85) ? fm.proto : rng.pick([6, 17, 132, 1, 58, 6, 17, rng.int(256)]);
  if (rng.chance(0.02)) proto = rng.pick([...EXT_HEADERS]); // a protocol number that is an extension header
  let dport = rng.pick(fp.anchors.ports);
  const ports = fm?.ports;
  if (ports) dport = rng.pick([ports[0], ports[1], ports[0] - 1, ports[1] + 1, rng.range(ports[0], ports[1])]);
  dport = Math.max(0, Math.min(65535, dport));
  const addr = (c: Cidr | undefined): bigint => {
    if (c && c.family === family && rng.chance(0.85)) return addressIn(rng, c, rng.chance(0.15));
    const other = fp.policy.rules.map((x) => (rng.chance(0.5) ? x.src : x.dst)).filter((x): x is Cidr => !!x && x.family === family);
    if (other.length && rng.chance(0.6)) return addressIn(rng, rng.pick(other));
    return rng.chance(0.5) ? rng.pick(fp.anchors[family]) : rng.bits(BITS[family]);
  };
  const src = addr(r?.src);
  const dst = addr(r?.dst);
  const frag: FragKind = rng.pick(['none', 'none', 'none', 'none', 'first', 'nonfirst']);
  const fr: Frame = { bytes: [0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1], bounds: [12] };
  // tag stacks up to and past FLT_MAX_VLAN_TAGS, VID 0 (priority tags, which the kernel strips
  // and delivers) as often as not
  const tags = rng.chance(0.1) ? rng.range(3, 10) : rng.pick([0, 0, 0, 0, 1, 1, 2, 2]);
  for (let i = 0; i < tags; i++) push(fr, [...be16(rng.pick([ETH_P.vlan, ETH_P.qinq])), ...be16((rng.int(8) << 13) | (rng.chance(0.5) ? 0 : rng.int(4096)))]);
  const type = ports && ports[0] <= 255 ? Math.min(255, dport) : undefined;
  const l4 = l4Header(rng, proto, dport, family, type);
  if (family === 4) {
    const opts = rng.chance(0.15) ? rng.range(1, 10) : 0;
    const fragOff = frag === 'nonfirst' ? rng.range(1, 0x1fff) : 0;
    const flags = (frag === 'first' ? 0x2000 : frag === 'nonfirst' && rng.chance(0.5) ? 0x2000 : 0) | fragOff;
    const hdr = [0x45 + opts, 0, ...be16(20 + opts * 4 + l4.length), 0, 1, ...be16(flags), 64, proto, 0, 0, ...addrBytes(4, src), ...addrBytes(4, dst)];
    push(fr, be16(ETH_P.ip));
    push(fr, hdr);
    if (opts) push(fr, Array.from({ length: opts * 4 }, () => 1)); // NOP options
  } else {
    const chain: number[] = Array.from({ length: rng.pick([0, 0, 0, 1, 2, 3, 7, 8, 9]) }, () => rng.pick([0, 43, 60, 51, 135, 60]));
    if (frag !== 'none') chain.splice(rng.int(chain.length + 1), 0, NH_FRAGMENT);
    const exts: number[][] = chain.map((h, i) => {
      const next = i + 1 < chain.length ? chain[i + 1] : proto;
      if (h === NH_FRAGMENT) {
        const off = frag === 'nonfirst' ? rng.range(1, 0x1fff) : 0;
        return [next, 0, ...be16((off << 3) | (frag === 'first' || rng.chance(0.5) ? 1 : 0)), 0, 0, 0, rng.int(256)];
      }
      const len = rng.chance(0.03) ? 255 : rng.pick([0, 0, 0, 1, 2]);
      const size = h === NH_AH ? (len + 2) * 4 : (len + 1) * 8;
      return [next, len, ...Array.from({ length: size - 2 }, () => (h === NH_AH ? rng.int(256) : 0))];
    });
    const plen = exts.reduce((a, e) => a + e.length, 0) + l4.length;
    push(fr, be16(ETH_P.ipv6));
    push(fr, [0x60, 0, 0, 0, ...be16(plen), chain.length ? chain[0] : proto, 64, ...addrBytes(6, src), ...addrBytes(6, dst)]);
    for (const e of exts) push(fr, e);
  }
  if (proto === 6 || proto === 17 || proto === 132) {
    fr.bytes.push(...l4.slice(0, 2));
    fr.bounds.push(fr.bytes.length, fr.bytes.length + 1, fr.bytes.length + 2);
    push(fr, l4.slice(2));
  } else if (l4.length) {
    fr.bytes.push(l4[0]);
    fr.bounds.push(fr.bytes.length);
    push(fr, l4.slice(1));
  }
  return fr;
}

function arpFrame(rng: Rng): Frame {
  const fr: Frame = { bytes: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1], bounds: [12] };
  for (let i = rng.pick([0, 0, 1, 2]); i > 0; i--) push(fr, [...be16(ETH_P.vlan), ...be16(rng.int(4096))]);
  push(fr, be16(ETH_P.arp));
  push(fr, [0, 1, 8, 0, 6, 4, 0, 1, ...Array.from({ length: 20 }, () => rng.int(256))]);
  return fr;
}

export type FrameKind = 'aimed' | 'truncated' | 'mutated' | 'random' | 'arp' | 'non_ip';

/** Frames the XDP test harness accepts: at least an Ethernet header, at most a page's room. */
export const MIN_FRAME = 14;
export const MAX_FRAME = 3000;

/** One random frame for a policy, and what kind of frame it was made as. */
export function randomFrame(rng: Rng, fp: FuzzPolicy): { kind: FrameKind; frame: Buffer } {
  const roll = rng.int(100);
  let kind: FrameKind;
  let bytes: number[];
  if (roll < 4) {
    kind = 'random';
    bytes = Array.from({ length: rng.range(MIN_FRAME, 200) }, () => rng.int(256));
    // random bytes behind a real ethertype reach the IP parsers
    if (rng.chance(0.7)) bytes.splice(12, 2, ...be16(rng.pick([ETH_P.ip, ETH_P.ipv6, ETH_P.vlan, ETH_P.qinq])));
  } else if (roll < 8) {
    kind = 'arp';
    bytes = arpFrame(rng).bytes;
  } else if (roll < 10) {
    kind = 'non_ip';
    // LLDP, 802.1X and a length field pass a default deny; MPLS, PPPoE, old QinQ and the rest do not
    bytes = [0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, ...be16(rng.pick([0x88cc, 0x888e, 0x0100, 0x05ff, 0x0600, 0x8847, 0x8864, 0x9100, 0x0842, rng.int(65536)])), ...Array.from({ length: 46 }, () => rng.int(256))];
  } else {
    const fr = roll < 14 ? arpFrame(rng) : aimedFrame(rng, fp);
    bytes = fr.bytes;
    kind = 'aimed';
    if (rng.chance(0.15)) {
      // cut at a header boundary, or a byte either side of one
      kind = 'truncated';
      const at = rng.pick(fr.bounds) + rng.pick([0, 0, 0, -1, 1, -2]);
      bytes = bytes.slice(0, Math.max(0, at));
    } else if (rng.chance(0.1)) {
      kind = 'mutated';
      for (let i = rng.range(1, 3); i > 0; i--) bytes[rng.range(12, Math.min(bytes.length - 1, 80))] = rng.int(256);
    }
  }
  while (bytes.length < MIN_FRAME) bytes.push(0); // shorter frames are refused by the test harness itself
  return { kind, frame: Buffer.from(bytes.slice(0, MAX_FRAME)) };
}

// ---- Sequences for connection tracking: a host (10.0.0.2, fd00::2) and a few far sides, flows
// opened both ways, continued with every kind of TCP flags in both directions, ICMP errors quoting
// them (or something else), junk beside them (a port or address off, a TCP header cut short), TCP
// segments out of (or just at the edge of) the window, blind and real resets, SYN options with and
// without a window scale (and broken ones), the clock jumping across the timeouts, and now and then
// a new policy underneath.

const CT_LOCAL = { 4: 0x0a000002n, 6: 0xfd000000000000000000000000000002n } as const;
const CT_REMOTES = {
  4: [0x0a000001n, 0x0a000003n, 0xc000020an, 0xc6336407n],
  6: [0xfd000000000000000000000000000001n, 0xfd000000000000000000000000000003n, 0x20010db8000000000000000000000010n],
} as const;
const CT_RULES = [
  'allow tcp/22', 'allow tcp/80', 'allow udp/53', 'allow icmp', 'allow udp', 'allow from 198.51.100.0/24', 'allow tcp/8080 from fd00::/64',
  'deny from 192.0.2.0/24', 'deny tcp/8080', 'deny from fd00::3', 'deny icmp', 'deny tcp/22 from 10.0.0.3', 'deny udp/53 to fd00::2',
  'allow icmpv6/packet-too-big', 'deny icmpv4/destination-unreachable from 198.51.100.0/24',
];

/** A policy for the state fuzzer: mostly a default deny, allow and deny rules over its addresses and ports. */
export function randomCtPolicy(rng: Rng): Policy {
  const rules: Rule[] = [];
  const seen = new Set<string>();
  for (let n = rng.range(0, 6); n > 0; n--) {
    const t = rng.pick(CT_RULES);
    if (seen.has(t)) continue;
    seen.add(t);
    rules.push(parseRule(t.startsWith('deny ') ? 'deny' : 'allow', t.replace(/^(allow|deny) /, '')));
  }
  return { rules, default: rng.chance(0.75) ? 'deny' : 'allow', audit: rng.chance(0.1) };
}

/** A flow as the host sends it: source local. */
type CtFlowSpec = PacketSpec;

export type CtStepKind = 'open_out' | 'open_in' | 'continue' | 'icmp_error' | 'junk' | 'window' | 'truncated' | 'clock' | 'policy';
export interface CtStep {
  kind: CtStepKind;
  /** out: the host sends it (egress); in: it arrives (ingress) */
  dir?: 'in' | 'out';
  frame?: Buffer;
  /** clock: seconds forward */
  seconds?: number;
  policy?: Policy;
}

// weighted towards a handshake and data (SYN+ACK, ACK, PSH+ACK), then closing, resets and nonsense
const TCP_FLAG_MIXES = [0x12, 0x12, 0x12, 0x10, 0x10, 0x10, 0x18, 0x18, 0x11, 0x11, 0x04, 0x14, 0x02, 0x01, 0x00, 0x19, 0x03, 0x06];
const CLOCK_JUMPS = [0, 1, 4, 5, 6, 29, 30, 31, 119, 120, 121, 600, 3600, 432000, 432001];
const RAW_WINDOWS = [0, 1, 502, 1024, 29200, 65535];
const PAYLOADS = [0, 0, 8, 100, 1400];

/** One side of a TCP flow as the world plays it: its next sequence number, its raw window, its SYN's window scale option. */
interface TcpSide {
  next: number;
  win: number;
  ws: number | null;
}

/** SYN options: Linux's usual sets, a bare scale, none, and broken ones (the walk must stop where the kernel's does). */
function synOptions(rng: Rng, ws: number | null): number[] {
  const w = ws ?? 7;
  const ts = [rng.int(256), rng.int(256), 3, 3, 0, 0, 0, 0];
  const sets: number[][] = ws === null
    ? [[], [2, 4, 5, 0xb4], [2, 4, 5, 0xb4, 4, 2, 8, 10, ...ts]]
    : [
        [2, 4, 5, 0xb4, 4, 2, 8, 10, ...ts, 1, 3, 3, w],
        [2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, w],
        [3, 3, w],
        [1, 1, 1, 3, 3, w],
        // an end-of-list before it, a length under 2 before it, a scale cut by the data offset
        [0, 3, 3, w],
        [5, 1, 3, 3, w],
        [8, 0, 3, 3, w],
        [1, 1, 3, 3],
        [1, 1, 1, 1, 1, 1, 1, 3, 3],
        // a timestamp whose bytes look like a scale, then the real one
        [8, 10, 3, 3, 9, 3, 3, 3, 3, 3, 1, 1, 3, 3, w],
        // a length that jumps past the options
        [30, 3, 3, w],
      ];
  return rng.pick(sets);
}

/** One world of the state fuzzer: the flows opened so far and the next step. Pure. */
export class CtWorld {
  readonly flows: CtFlowSpec[] = [];
  /** for a TCP flow, who opened it and how far a well-behaved exchange has got (scripted steps) */
  private readonly script = new Map<CtFlowSpec, { opener: 'in' | 'out'; phase: number }>();
  /** TCP flows' sequence numbers, windows and scales, per direction */
  private readonly sides = new Map<CtFlowSpec, { out: TcpSide; in: TcpSide }>();
  /**
   * peek: the model's windows of a flow (given its outbound frame), so junk can aim at the edges;
   * undefined when it tracks no such flow.
   */
  constructor(
    private readonly rng: Rng,
    private readonly peek: (outbound: Buffer) => TcpWindows | undefined = () => undefined,
  ) {}

  /** A TCP segment of f one way with that side's sequence, the other's as ack, the side's window; the side moves on. */
  private seg(f: CtFlowSpec, dir: 'in' | 'out', tcpFlags: number): PacketSpec {
    const rng = this.rng;
    const sd = this.sides.get(f);
    const base = dir === 'out' ? f : reverse(f);
    if (!sd) return { ...base, tcpFlags };
    const me = sd[dir];
    const other = sd[dir === 'out' ? 'in' : 'out'];
    const payload = tcpFlags & 0x02 ? 0 : rng.pick(PAYLOADS);
    const spec: PacketSpec = {
      ...base,
      tcpFlags,
      seq: me.next,
      ack: tcpFlags & 0x10 ? other.next : rng.chance(0.5) ? 0 : rng.next(),
      window: rng.chance(0.8) ? me.win : rng.pick(RAW_WINDOWS),
      payload,
      tcpOptions: tcpFlags & 0x02 ? synOptions(rng, me.ws) : rng.chance(0.1) ? [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2] : [],
    };
    if (!(tcpFlags & 0x04)) me.next = (me.next + payload + (tcpFlags & 0x02 ? 1 : 0) + (tcpFlags & 0x01 ? 1 : 0)) >>> 0;
    return spec;
  }

  /** The next packet of a well-behaved TCP exchange: SYN+ACK, ACK, data both ways, FINs, the last ACK. */
  private scripted(f: CtFlowSpec): { dir: 'in' | 'out'; spec: PacketSpec } {
    const sc = this.script.get(f)!;
    const other = sc.opener === 'in' ? 'out' : 'in';
    const closer = this.rng.chance(0.5) ? sc.opener : other;
    const step = (dir: 'in' | 'out', tcpFlags: number): { dir: 'in' | 'out'; spec: PacketSpec } => ({ dir, spec: this.wrap(this.seg(f, dir, tcpFlags)) });
    const at = sc.phase++;
    if (at === 0) return step(other, 0x12);
    if (at === 1) return step(sc.opener, 0x10);
    if (at < 6 || this.rng.chance(0.6)) return step(this.rng.chance(0.5) ? sc.opener : other, 0x18);
    if (at < 9) return step(closer, 0x11);
    sc.phase = this.rng.chance(0.3) ? 0 : at;
    return step(closer, 0x10);
  }

  private wrap(spec: PacketSpec): PacketSpec {
    const rng = this.rng;
    const vlans = rng.chance(0.2) ? Array.from({ length: rng.range(1, 2) }, () => rng.int(4096)) : [];
    const ext = spec.family === 6 && rng.chance(0.1) ? [rng.pick([0, 60])] : [];
    return { ...spec, vlans, ext };
  }

  /** A flow, and which side opens it: out, the host; in, the far side. */
  private newFlow(): { flow: CtFlowSpec; dir: 'in' | 'out' } {
    const rng = this.rng;
    const family = rng.chance(0.6) ? 4 : 6;
    const proto = rng.pick([6, 6, 6, 17, 17, family === 4 ? 1 : 58]);
    const remote = rng.pick(CT_REMOTES[family]);
    const out = rng.chance(0.6);
    // few ports, so flows collide, reuse ports and meet rules
    const eph = out ? rng.range(40000, 40005) : rng.range(50000, 50003);
    const svc = rng.pick(proto === 17 ? [53, 123, 5353] : [22, 80, 443, 8080]);
    const [sport, dport] = out ? [eph, svc] : [svc, eph];
    return { flow: { family, proto, src: CT_LOCAL[family], dst: remote, sport, dport, icmpId: rng.range(1, 4), payload: rng.pick([0, 8, 100]) }, dir: out ? 'out' : 'in' };
  }

  /** The flow's packet one way, with flags or type fitting the protocol (or not). */
  private packet(f: CtFlowSpec, dir: 'in' | 'out', opening = false): PacketSpec {
    const rng = this.rng;
    const base = dir === 'out' ? f : reverse(f);
    if (f.proto === 6) {
      const tcpFlags = opening ? 0x02 : rng.pick(TCP_FLAG_MIXES);
      // mostly the side's own sequence; now and then anything
      if (opening || rng.chance(0.8)) return this.wrap(this.seg(f, dir, tcpFlags));
      return this.wrap({ ...base, tcpFlags, seq: rng.next(), ack: rng.next(), window: rng.pick(RAW_WINDOWS) });
    }
    if (f.proto === 17) return this.wrap(base);
    const echo = f.family === 4 ? [8, 0] : [128, 129];
    return this.wrap({ ...base, icmpType: opening ? echo[0] : rng.chance(0.9) ? rng.pick(echo) : rng.pick([13, 14, 130, 3]) });
  }

  /**
   * A far side's segment at or past the window's edges (from the model's own numbers when it tracks
   * the flow), a blind or real RST, an ack ahead or far behind; now and then the host sending
   * something out of its own order (which moves its end).
   */
  private windowJunk(f: CtFlowSpec): CtStep {
    const rng = this.rng;
    const w = this.peek(buildPacket({ ...f, tcpFlags: 0x10 }));
    const sd = this.sides.get(f);
    if (rng.chance(0.1)) {
      const spec = this.seg(f, 'out', rng.pick([0x10, 0x18, 0x11]));
      return { kind: 'window', dir: 'out', frame: buildPacket(this.wrap({ ...spec, seq: rng.chance(0.5) ? rng.next() : ((spec.seq ?? 0) + rng.pick([1, 1000, 100000])) >>> 0 })) };
    }
    const seg = this.seg(f, 'in', rng.pick([0x10, 0x18, 0x10, 0x04, 0x14, 0x11]));
    // in window but for the one number each case moves: where the model has the far side and the host
    const base = w && w.bits & 2 ? { ...seg, seq: w.rEnd, ack: w.bits & 1 ? w.lEnd : seg.ack } : seg;
    const len = base.payload ?? 0;
    const near = (n: number): number => (n + rng.pick([-2, -1, 0, 0, 1, 2])) >>> 0;
    const maxack = w ? Math.max(w.rMaxwin, 66000) : 66000;
    let spec: PacketSpec;
    switch (rng.int(9)) {
      case 0:
        spec = { ...base, seq: rng.next() };
        break;
      case 1:
        spec = { ...base, seq: near(w ? w.rMaxend : (base.seq ?? 0) + 65535) };
        break;
      case 2:
        // the end at the lower edge
        spec = { ...base, seq: near(w ? w.rEnd - w.lMaxwin - len : (base.seq ?? 0) - 65536) };
        break;
      case 3:
        spec = { ...base, tcpFlags: (base.tcpFlags ?? 0) | 0x10, ack: ((w ? w.lEnd : (sd?.out.next ?? 0)) + rng.pick([0, 1, 2, 1000, 2 ** 31])) >>> 0 };
        break;
      case 4:
        spec = { ...base, tcpFlags: (base.tcpFlags ?? 0) | 0x10, ack: near((w ? w.lEnd : (sd?.out.next ?? 0)) - maxack) };
        break;
      case 5:
        // a blind reset: the right ports, a guessed sequence
        spec = { ...base, tcpFlags: rng.pick([0x04, 0x14]), seq: rng.next(), ack: rng.next() };
        break;
      case 6:
        // a real one, from where the far side is
        spec = { ...base, tcpFlags: 0x04, seq: w ? w.rEnd : (base.seq ?? 0), payload: 0 };
        break;
      case 7:
        // a retransmission from a little back
        spec = { ...base, seq: ((base.seq ?? 0) - rng.pick([1, 100, 1400, 70000])) >>> 0 };
        break;
      default:
        // the window scaled or not: a segment a scaled window would take and an unscaled one would not
        spec = { ...base, seq: ((w ? w.rEnd : (base.seq ?? 0)) + rng.pick([65535, 65536, 100000, 1 << 20, 1 << 24])) >>> 0 };
    }
    return { kind: 'window', dir: 'in', frame: buildPacket(this.wrap(spec)) };
  }

  next(): CtStep {
    const rng = this.rng;
    const r = rng.next() / 2 ** 32;
    const f = this.flows.length ? rng.pick(this.flows) : null;
    if (!f || r < 0.15) {
      const { flow: nf, dir } = this.newFlow();
      if (nf.proto === 6) {
        this.script.set(nf, { opener: dir, phase: 0 });
        const side = (): TcpSide => ({ next: rng.next(), win: rng.pick(RAW_WINDOWS.slice(1)), ws: rng.chance(0.7) ? rng.pick([0, 2, 7, 9, 14, 15, 255]) : null });
        this.sides.set(nf, { out: side(), in: side() });
      }
      this.flows.push(nf);
      if (this.flows.length > 40) {
        const old = this.flows.shift()!;
        this.script.delete(old);
        this.sides.delete(old);
      }
      return { kind: dir === 'out' ? 'open_out' : 'open_in', dir, frame: buildPacket(this.packet(nf, dir, true)) };
    }
    if (r < 0.45 && this.script.has(f)) {
      const { dir, spec } = this.scripted(f);
      return { kind: 'continue', dir, frame: buildPacket(spec) };
    }
    if (r < 0.6) {
      const dir = rng.chance(0.55) ? 'in' : 'out';
      return { kind: 'continue', dir, frame: buildPacket(this.packet(f, dir)) };
    }
    if (r < 0.7) {
      // an error from a router or the far side, quoting what the host sent (or a neighbour of it)
      const quotedSpec = rng.chance(0.7) ? this.packet(f, 'out') : { ...this.packet(f, 'out'), sport: (f.sport ?? 0) + 1, icmpId: (f.icmpId ?? 1) + 7 };
      const types = f.family === 4 ? [3, 3, 11, 5, 12] : [1, 2, 2, 3, 4];
      const router = rng.chance(0.5) ? f.dst : rng.pick(CT_REMOTES[f.family]);
      const spec: PacketSpec = this.wrap({
        family: f.family,
        proto: f.family === 4 ? 1 : 58,
        src: router,
        dst: CT_LOCAL[f.family],
        icmpType: rng.pick(types),
        icmpCode: rng.pick([0, 1, 3, 4]),
        inner: { ...quotedSpec, vlans: [], ext: rng.chance(0.1) && f.family === 6 ? [60] : [] },
        quote: rng.pick([2, 4, 8, 8, 20, 64]),
      });
      return { kind: 'icmp_error', dir: 'in', frame: buildPacket(spec) };
    }
    if (r < 0.8 && f.proto === 6 && rng.chance(0.7)) return this.windowJunk(f);
    if (r < 0.8) {
      // beside the flow: a port or the address off by one, or the other family's ICMP number
      const p = this.packet(f, rng.chance(0.7) ? 'in' : 'out');
      const which = rng.int(4);
      const junk = which === 0 ? { ...p, sport: (p.sport ?? 0) ^ 1 } : which === 1 ? { ...p, dport: (p.dport ?? 0) ^ 1 } : which === 2 ? { ...p, src: p.src ^ 1n } : { ...p, icmpId: (p.icmpId ?? 0) ^ 2, proto: p.proto === 17 ? 6 : p.proto };
      return { kind: 'junk', dir: p.dst === CT_LOCAL[f.family] ? 'in' : 'out', frame: buildPacket(junk) };
    }
    if (r < 0.88) {
      const dir = rng.chance(0.6) ? 'in' : 'out';
      const p = this.packet(f, dir);
      const full = buildPacket(p);
      // cut anywhere from just before the L4 header to the end
      const ipEnd = full.length - (f.proto === 6 ? 20 : 8) - (p.payload ?? 8);
      return { kind: 'truncated', dir, frame: full.subarray(0, rng.range(Math.max(14, ipEnd - 2), full.length)) };
    }
    if (r < 0.985) return { kind: 'clock', seconds: rng.pick(CLOCK_JUMPS) };
    return { kind: 'policy', policy: randomCtPolicy(rng) };
  }
}
