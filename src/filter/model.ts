// SPDX-License-Identifier: Apache-2.0
// The byte-level reference model of the filter: an Ethernet frame -> the verdict and the one counter
// (rule or statistic) the kernel program must bump for it. Written from the documented semantics
// (README "The packet filter", issue 3), not from bpf/filter.bpf.c, so the differential fuzzer
// compares two independent readings of the same rules. The policy part is evaluate() of policy.ts.
//
// Parsing, as documented:
// - Ethernet, then up to FLT_MAX_VLAN_TAGS VLAN tags (802.1Q 0x8100 or 802.1ad 0x88a8, in any order,
//   any VID). A frame still tagged after them is too deep: dropped and counted as such (the kernel
//   strips VID-0 tags without limit and delivers what is inside as IP).
// - A non-IP frame passes, except under a default deny, where only ARP (unless denied), LLDP,
//   802.1X and 802.3 length-field frames do; the rest are dropped and counted as nonIpDrop.
// - IPv4: 20 bytes, version 4, ihl >= 5, and the ihl * 4 bytes it claims present. A fragment offset
//   other than 0 makes a non-first fragment: no ports, nothing past the IP header is read.
// - IPv6: 40 bytes, version 6, then the extension headers (hop-by-hop 0, routing 43, fragment 44,
//   AH 51, destination options 60, mobility 135), at most FLT_MAX_EXT_HDRS of them (more is too
//   deep); each must be present in full. A fragment header with a non-zero offset ends the walk: what follows it is
//   payload, and its next-header field is the packet's protocol.
// - First fragments and whole packets: the L4 header the decision needs must be there: the two
//   ports of TCP, UDP and SCTP (4 bytes), the type of ICMPv4 in IPv4 and of ICMPv6 in IPv6 (1 byte).
//   Headers must start within the first MAX_HEADER_OFFSET bytes of the frame (the kernel program's
//   bounded parse); one starting later is too deep.
// Anything short of that is malformed: dropped (passed in audit mode) and counted as malformed;
// too deep is dropped the same way and counted as tooDeep.
import { FLT_MAX_EXT_HDRS, FLT_MAX_HEADER_OFFSET, FLT_MAX_VLAN_TAGS } from '../gen/filter.js';
import { evaluate, nonIpNeeded, type Decision, type PacketInfo, type Policy } from './policy.js';
import { PROTO_NUMBERS, type Action } from './rules.js';
import type { Stat } from './stats.js';

/** No header may start later than this many bytes into the frame (documented in the README). */
export const MAX_HEADER_OFFSET = FLT_MAX_HEADER_OFFSET;

export const ETH_P = { ip: 0x0800, ipv6: 0x86dd, arp: 0x0806, vlan: 0x8100, qinq: 0x88a8 } as const;
/** IPv6 extension headers the filter walks through */
export const EXT_HEADERS: ReadonlySet<number> = new Set([0, 43, 44, 51, 60, 135]);
export const NH_FRAGMENT = 44;
export const NH_AH = 51;

export type { Stat } from './stats.js';

export interface ParsedFrame extends PacketInfo {
  /** for a malformed frame: which check failed */
  why?: string;
}

export interface FrameOutcome {
  action: Action;
  decision: Decision;
  parsed: ParsedFrame;
  /** what the kernel counts for this frame: at most one rule, and statistics */
  rule: number | null;
  stats: Stat[];
}

const malformed = (why: string): ParsedFrame => ({ kind: 'malformed', why });
const tooDeep = (why: string): ParsedFrame => ({ kind: 'too_deep', why });
const u16 = (b: Uint8Array, o: number): number => (b[o] << 8) | b[o + 1];
const bigAt = (b: Uint8Array, o: number, n: number): bigint => {
  let v = 0n;
  for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(b[o + i]);
  return v;
};

/** The L4 fields a decision needs, for a whole packet or a first fragment whose L4 starts at off. */
function l4(b: Uint8Array, off: number, p: ParsedFrame): ParsedFrame {
  if (off > MAX_HEADER_OFFSET) return tooDeep(`L4 header at byte ${off}, past ${MAX_HEADER_OFFSET}`);
  if (off > b.length) return malformed('the IP headers claim more than the frame holds');
  const ported = p.proto === PROTO_NUMBERS.tcp || p.proto === PROTO_NUMBERS.udp || p.proto === PROTO_NUMBERS.sctp;
  if (ported) {
    if (off + 4 > b.length) return malformed('too short for the ports');
    return { ...p, dport: u16(b, off + 2) };
  }
  if (p.family === 6 ? p.proto === PROTO_NUMBERS.icmpv6 : p.proto === PROTO_NUMBERS.icmpv4) {
    if (off + 1 > b.length) return malformed('too short for the ICMP type');
    return p.family === 6 ? { ...p, dport: b[off], nd: b[off] >= 133 && b[off] <= 137 } : { ...p, dport: b[off] };
  }
  return p;
}

function ipv4(b: Uint8Array, off: number): ParsedFrame {
  if (off + 20 > b.length) return malformed('IPv4 header truncated');
  const version = b[off] >> 4;
  const ihl = b[off] & 0xf;
  if (version !== 4) return malformed(`IPv4 version ${version}`);
  if (ihl < 5) return malformed(`IPv4 ihl ${ihl}`);
  if (off + ihl * 4 > b.length) return malformed('IPv4 header shorter than its ihl');
  const p: ParsedFrame = { kind: 'ip', family: 4, proto: b[off + 9], src: bigAt(b, off + 12, 4), dst: bigAt(b, off + 16, 4), nonfirst: false };
  if ((u16(b, off + 6) & 0x1fff) !== 0) return { ...p, nonfirst: true };
  return l4(b, off + ihl * 4, p);
}

function ipv6(b: Uint8Array, off: number): ParsedFrame {
  if (off + 40 > b.length) return malformed('IPv6 header truncated');
  if (b[off] >> 4 !== 6) return malformed(`IPv6 version ${b[off] >> 4}`);
  const base = { kind: 'ip' as const, family: 6 as const, src: bigAt(b, off + 8, 16), dst: bigAt(b, off + 24, 16), nonfirst: false };
  let next = b[off + 6];
  off += 40;
  for (let n = 0; EXT_HEADERS.has(next); n++) {
    if (n === FLT_MAX_EXT_HDRS) return tooDeep(`more than ${FLT_MAX_EXT_HDRS} extension headers`);
    if (off > MAX_HEADER_OFFSET) return tooDeep(`extension header at byte ${off}, past ${MAX_HEADER_OFFSET}`);
    if (off + 8 > b.length) return malformed('extension header truncated');
    const h = next;
    next = b[off];
    if (h === NH_FRAGMENT) {
      off += 8;
      // 13-bit offset in the top of bytes 2-3: non-zero is a non-first fragment, whose rest is payload
      if (u16(b, off - 6) >> 3 !== 0) return { ...base, proto: next, nonfirst: true };
    } else {
      off += h === NH_AH ? (b[off + 1] + 2) * 4 : (b[off + 1] + 1) * 8;
    }
  }
  return l4(b, off, { ...base, proto: next });
}

/** What the filter sees in a frame. */
export function parseFrame(frame: Uint8Array): ParsedFrame {
  if (frame.length < 14) return malformed('shorter than an Ethernet header');
  let type = u16(frame, 12);
  let off = 14;
  for (let tags = 0; type === ETH_P.vlan || type === ETH_P.qinq; tags++) {
    if (tags === FLT_MAX_VLAN_TAGS) return tooDeep(`more than ${FLT_MAX_VLAN_TAGS} VLAN tags`);
    if (off + 4 > frame.length) return malformed('VLAN tag truncated');
    type = u16(frame, off + 2);
    off += 4;
  }
  if (type === ETH_P.ip) return ipv4(frame, off);
  if (type === ETH_P.ipv6) return ipv6(frame, off);
  return type === ETH_P.arp ? { kind: 'arp' } : { kind: 'non_ip', ethertype: type };
}

/** The verdict for a frame under a policy, and exactly what the kernel counts for it. */
export function decideFrame(policy: Policy, frame: Uint8Array): FrameOutcome {
  const parsed = parseFrame(frame);
  const decision = evaluate(policy, parsed);
  const stats: Stat[] = [];
  let rule: number | null = null;
  // what the policy says before audit mode turns a drop into a pass
  let wouldDrop = false;
  switch (parsed.kind) {
    case 'non_ip':
      // counted as a drop in audit mode too (as a deny arp rule is), never as audited
      stats.push(policy.default === 'deny' && !nonIpNeeded(parsed.ethertype ?? 0) ? 'nonIpDrop' : 'nonIp');
      break;
    case 'arp':
      // a deny arp rule counts in its own statistic (shown as rule "arp"), never in audit
      stats.push(decision.reason === 'arp' ? 'arpDrop' : 'nonIp');
      break;
    case 'malformed':
      stats.push('malformed');
      break;
    case 'too_deep':
      stats.push('tooDeep');
      break;
    case 'ip':
      if (parsed.nonfirst) stats.push('fragments');
      if (decision.rule !== null) {
        rule = decision.rule;
        wouldDrop = policy.rules[rule].action === 'deny';
      } else if (decision.reason === 'nd') {
        stats.push('ndPass');
      } else {
        wouldDrop = policy.default === 'deny';
        stats.push(wouldDrop ? 'defaultDrop' : 'defaultPass');
      }
      if (wouldDrop && policy.audit) stats.push('audit');
      break;
  }
  return { action: decision.action, decision, parsed, rule, stats };
}
