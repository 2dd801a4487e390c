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
import * as F from '../gen/filter.js';
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
  /** passed by connection tracking (ConnTrack.ingress) */
  ct?: 'established' | 'related' | 'outOfWindow';
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
function l4(b: Uint8Array, off: number, p: ParsedFrame): ParsedFrame & { l4?: number } {
  if (off > MAX_HEADER_OFFSET) return tooDeep(`L4 header at byte ${off}, past ${MAX_HEADER_OFFSET}`);
  if (off > b.length) return malformed('the IP headers claim more than the frame holds');
  const ported = p.proto === PROTO_NUMBERS.tcp || p.proto === PROTO_NUMBERS.udp || p.proto === PROTO_NUMBERS.sctp;
  if (ported) {
    if (off + 4 > b.length) return malformed('too short for the ports');
    return { ...p, dport: u16(b, off + 2), l4: off };
  }
  if (p.family === 6 ? p.proto === PROTO_NUMBERS.icmpv6 : p.proto === PROTO_NUMBERS.icmpv4) {
    if (off + 1 > b.length) return malformed('too short for the ICMP type');
    return p.family === 6 ? { ...p, dport: b[off], nd: b[off] >= 133 && b[off] <= 137, l4: off } : { ...p, dport: b[off], l4: off };
  }
  return p;
}

function ipv4(b: Uint8Array, off: number): ParsedFrame & { l4?: number } {
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

function ipv6(b: Uint8Array, off: number): ParsedFrame & { l4?: number } {
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
  const { l4: _l4, l3: _l3, ...parsed } = parseFrameL4(frame);
  return parsed;
}

/** parseFrame, with where the IP (l3) and L4 headers start when the filter reads them (the tracker reads them again). */
function parseFrameL4(frame: Uint8Array): ParsedFrame & { l4?: number; l3?: number } {
  if (frame.length < 14) return malformed('shorter than an Ethernet header');
  let type = u16(frame, 12);
  let off = 14;
  for (let tags = 0; type === ETH_P.vlan || type === ETH_P.qinq; tags++) {
    if (tags === FLT_MAX_VLAN_TAGS) return tooDeep(`more than ${FLT_MAX_VLAN_TAGS} VLAN tags`);
    if (off + 4 > frame.length) return malformed('VLAN tag truncated');
    type = u16(frame, off + 2);
    off += 4;
  }
  if (type === ETH_P.ip) return { ...ipv4(frame, off), l3: off };
  if (type === ETH_P.ipv6) return { ...ipv6(frame, off), l3: off };
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

// ---- Connection tracking (state on), as documented at the top of bpf/filter.bpf.c and in the
// README: flows in the host's view; an explicit deny first, then a live flow ("established"), an
// ICMP error quoting a live flow ("related"), an allow rule (which opens a flow for a new
// connection), the rest as without state. Timeouts as netfilter's (maps/filter.json FLT_CT_*_S).

export type CtState = 'syn_sent' | 'established' | 'closing' | 'time_wait' | 'udp' | 'icmp';
/** the kernel's FLT_CT_* number of each state */
export const CT_STATE_NUMBER: Record<CtState, number> = {
  syn_sent: F.FLT_CT_SYN_SENT,
  established: F.FLT_CT_ESTABLISHED,
  closing: F.FLT_CT_CLOSING,
  time_wait: F.FLT_CT_TIME_WAIT,
  udp: F.FLT_CT_UDP,
  icmp: F.FLT_CT_ICMP,
};

export interface CtFlow {
  state: CtState;
  /** opened by the far side (an inbound connection an allow rule passed) */
  origRemote: boolean;
  /** the side that did not open it has sent something counted as the flow */
  replied: boolean;
  finLocal: boolean;
  finRemote: boolean;
  /** ns, on the tracker's clock */
  lastSeen: bigint;
  /** TCP windows (as bpf/filter.bpf.c's tcp_in_window and tcp_update): 0 for UDP and ICMP */
  tcp: TcpWindows;
}

/** A TCP flow's sequence tracking, field for field the kernel's flt_ct_val (maps/filter.json). */
export interface TcpWindows {
  lEnd: number;
  rEnd: number;
  rMaxend: number;
  lMaxwin: number;
  rMaxwin: number;
  lWscale: number;
  rWscale: number;
  /** FLT_CT_T_* */
  bits: number;
}
const noWindows = (): TcpWindows => ({ lEnd: 0, rEnd: 0, rMaxend: 0, lMaxwin: 0, rMaxwin: 0, lWscale: 0, rWscale: 0, bits: 0 });

/** Timeouts in seconds; 0 or absent: the default. */
export type CtTimeouts = Partial<Record<'tcp_syn_sent' | 'tcp_established' | 'tcp_closing' | 'tcp_time_wait' | 'udp_single' | 'udp_stream' | 'icmp', number>>;

export const CT_DEFAULT_TIMEOUTS: Required<CtTimeouts> = {
  tcp_syn_sent: F.FLT_CT_TCP_SYN_SENT_S,
  tcp_established: F.FLT_CT_TCP_ESTABLISHED_S,
  tcp_closing: F.FLT_CT_TCP_CLOSING_S,
  tcp_time_wait: F.FLT_CT_TCP_TIME_WAIT_S,
  udp_single: F.FLT_CT_UDP_SINGLE_S,
  udp_stream: F.FLT_CT_UDP_STREAM_S,
  icmp: F.FLT_CT_ICMP_S,
};

/** Seconds a flow in `state` lives without a packet (`replied`: a UDP flow both ways), with `timeouts` over the defaults. */
export function ctTimeoutSeconds(state: CtState, replied: boolean, timeouts: CtTimeouts = {}): number {
  const t = (name: keyof CtTimeouts): number => timeouts[name] || CT_DEFAULT_TIMEOUTS[name];
  return state === 'syn_sent' ? t('tcp_syn_sent')
    : state === 'established' ? t('tcp_established')
    : state === 'closing' ? t('tcp_closing')
    : state === 'time_wait' ? t('tcp_time_wait')
    : state === 'udp' ? (replied ? t('udp_stream') : t('udp_single'))
    : t('icmp');
}

/** The state of a kernel FLT_CT_* number (undefined for one this release does not know). */
export const ctStateOf = (n: number): CtState | undefined => (Object.keys(CT_STATE_NUMBER) as CtState[]).find((k) => CT_STATE_NUMBER[k] === n);

/** A flow key in the host's view (local first); `laddr`/`raddr` as big integers. */
export interface CtKey {
  family: 4 | 6;
  proto: number;
  laddr: bigint;
  raddr: bigint;
  /** the ICMP echo identifier for ICMP, remote port 0 */
  lport: number;
  rport: number;
}

const keyText = (k: CtKey): string => `${k.family}/${k.proto}/${k.laddr}/${k.lport}/${k.raddr}/${k.rport}`;

type CtKind = 'tcp' | 'udp' | 'echo_request' | 'echo_reply' | 'icmp_error';
interface CtPacket {
  kind: CtKind;
  key: CtKey;
  /** TCP flags */
  flags: number;
  /** TCP: sequence, acknowledgement, raw window, payload length, the SYN's window scale option */
  seg?: TcpSegment;
}
interface TcpSegment {
  seq: number;
  ack: number;
  win: number;
  len: number;
  /** null: no window scale option (or not a SYN) */
  wscale: number | null;
}
const u32 = (b: Uint8Array, o: number): number => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
/** TCP sequence arithmetic, modulo 2^32 */
const seqAfter = (a: number, b: number): boolean => ((a - b) | 0) > 0;
const add32 = (a: number, b: number): number => (a + b) >>> 0;

/**
 * The window scale option of a SYN's TCP header at l4: the option bytes up to the data offset or
 * the frame's end, walked from the first (end-of-list stops, NOP takes a byte, another kind its
 * length, which stops the walk when past them or under 2); the first kind 3 of length 3 whose value
 * is within them, capped at FLT_CT_WS_MAX; null when none.
 */
function tcpWscale(b: Uint8Array, l4: number): number | null {
  const n = Math.min((b[l4 + 12] >> 4) * 4 - 20, 40, Math.max(0, b.length - l4 - 20));
  const o = (i: number): number => b[l4 + 20 + i];
  for (let i = 0; i < n; ) {
    if (o(i) === 0) return null;
    if (o(i) === 1) {
      i++;
      continue;
    }
    if (i + 1 >= n || o(i + 1) < 2) return null;
    if (o(i) === 3 && o(i + 1) === 3) return i + 2 < n ? Math.min(o(i + 2), F.FLT_CT_WS_MAX) : null;
    i += o(i + 1);
  }
  return null;
}

const T_FIN = 0x01;
const T_SYN = 0x02;
const T_RST = 0x04;
const T_ACK = 0x10;
/** a TCP SYN that opens a connection: no ACK, RST or FIN with it */
const opens = (f: number): boolean => (f & (T_SYN | T_ACK | T_RST | T_FIN)) === T_SYN;

const echoTypes = (family: 4 | 6): { request: number; reply: number } => (family === 4 ? { request: 8, reply: 0 } : { request: 128, reply: 129 });
/** destination unreachable (fragmentation needed too) and time exceeded; ICMPv6 packet too big too */
const isError = (family: 4 | 6, type: number): boolean => (family === 4 ? type === 3 || type === 11 : type >= 1 && type <= 3);

/**
 * The flow fields of the L4 header at `l4` of protocol `proto`, local = source when srcLocal: TCP
 * needs its 20 fixed bytes and a data offset of at least 5, UDP its ports, an ICMP echo its identifier (6 bytes), an ICMP error
 * its 8-byte header. null: nothing the tracker follows.
 */
function flowOf(b: Uint8Array, l4: number, family: 4 | 6, proto: number, src: bigint, dst: bigint, srcLocal: boolean): CtPacket | null {
  const addrs = srcLocal ? { laddr: src, raddr: dst } : { laddr: dst, raddr: src };
  const ports = (): { lport: number; rport: number } => (srcLocal ? { lport: u16(b, l4), rport: u16(b, l4 + 2) } : { lport: u16(b, l4 + 2), rport: u16(b, l4) });
  if (proto === PROTO_NUMBERS.tcp) return l4 + 20 <= b.length && b[l4 + 12] >> 4 >= 5 ? { kind: 'tcp', key: { family, proto, ...addrs, ...ports() }, flags: b[l4 + 13] } : null;
  if (proto === PROTO_NUMBERS.udp) return l4 + 4 <= b.length ? { kind: 'udp', key: { family, proto, ...addrs, ...ports() }, flags: 0 } : null;
  if (proto !== (family === 4 ? PROTO_NUMBERS.icmpv4 : PROTO_NUMBERS.icmpv6) || l4 + 1 > b.length) return null;
  const type = b[l4];
  const echo = echoTypes(family);
  if (type === echo.request || type === echo.reply) {
    if (l4 + 6 > b.length) return null;
    return { kind: type === echo.request ? 'echo_request' : 'echo_reply', key: { family, proto, ...addrs, lport: u16(b, l4 + 4), rport: 0 }, flags: 0 };
  }
  if (l4 + 8 <= b.length && isError(family, type)) return { kind: 'icmp_error', key: { family, proto, ...addrs, lport: 0, rport: 0 }, flags: 0 };
  return null;
}

/**
 * The flow of the packet an ICMP error quotes (one the host sent: its source is local), or null.
 * The quoted packet is of the error's family, a first fragment or whole, and for IPv6 with its
 * L4 header right after the fixed one; of a quoted TCP header only the ports are needed.
 */
function quotedFlow(b: Uint8Array, icmp: number, family: 4 | 6): CtKey | null {
  const at = icmp + 8;
  let proto: number, l4: number, src: bigint, dst: bigint;
  if (family === 6) {
    if (at + 40 > b.length || b[at] >> 4 !== 6) return null;
    proto = b[at + 6];
    l4 = at + 40;
    src = bigAt(b, at + 8, 16);
    dst = bigAt(b, at + 24, 16);
  } else {
    if (at + 20 > b.length || b[at] >> 4 !== 4 || (b[at] & 0xf) < 5 || (u16(b, at + 6) & 0x1fff) !== 0) return null;
    proto = b[at + 9];
    l4 = at + (b[at] & 0xf) * 4;
    src = bigAt(b, at + 12, 4);
    dst = bigAt(b, at + 16, 4);
  }
  if (proto === PROTO_NUMBERS.tcp && l4 + 4 <= b.length) return { family, proto, laddr: src, raddr: dst, lport: u16(b, l4), rport: u16(b, l4 + 2) };
  const f = flowOf(b, l4, family, proto, src, dst, true);
  return f && f.kind !== 'icmp_error' ? f.key : null;
}

/** The tracker's reading of a frame: null unless an IP first fragment or whole packet it follows. */
function ctPacket(frame: Uint8Array, srcLocal: boolean): CtPacket | null {
  const parsed = parseFrameL4(frame);
  if (parsed.kind !== 'ip' || parsed.nonfirst || parsed.dport === undefined || parsed.l4 === undefined) return null;
  const family = parsed.family!;
  const f = flowOf(frame, parsed.l4, family, parsed.proto!, parsed.src!, parsed.dst!, srcLocal);
  if (f?.kind === 'tcp') {
    // the payload: egress from the whole frame (the kernel's skb->len), ingress from the IP
    // header's length (a received frame may be padded)
    const l4 = parsed.l4;
    const hdr = (frame[l4 + 12] >> 4) * 4;
    const l3 = parsed.l3!;
    const n = srcLocal ? frame.length - l4 - hdr : family === 4 ? u16(frame, l3 + 2) - (l4 - l3) - hdr : u16(frame, l3 + 4) + 40 - (l4 - l3) - hdr;
    f.seg = { seq: u32(frame, l4 + 4), ack: u32(frame, l4 + 8), win: u16(frame, l4 + 14), len: Math.max(0, n), wscale: f.flags & T_SYN ? tcpWscale(frame, l4) : null };
  }
  if (f?.kind !== 'icmp_error') return f;
  const q = quotedFlow(frame, parsed.l4, family);
  return q ? { kind: 'icmp_error', key: q, flags: 0 } : null;
}

// ---- TCP windows, as bpf/filter.bpf.c (tcp_in_window, tcp_update) and the README say.

const segEnd = (p: CtPacket): number => add32(p.seg!.seq, p.seg!.len + (p.flags & T_SYN ? 1 : 0) + (p.flags & T_FIN ? 1 : 0));
/** the window a segment advertises: a SYN's never scaled, the rest by the sender's SYN option when both SYNs had one */
function segWindow(w: TcpWindows, p: CtPacket, remote: boolean): number {
  const both = F.FLT_CT_T_L_WS | F.FLT_CT_T_R_WS;
  if (p.flags & T_SYN || (w.bits & both) !== both) return p.seg!.win;
  return (p.seg!.win << ((remote ? w.rWscale : w.lWscale) & 15)) >>> 0;
}

/** Whether a far side's segment fits: its sequence within what the host let it send, its ack not ahead of (nor too far behind) what the host sent. */
function tcpInWindow(w: TcpWindows, p: CtPacket): boolean {
  const s = p.seg!;
  if (w.bits & F.FLT_CT_T_R_KNOWN) {
    if (seqAfter(s.seq, w.rMaxend) || !seqAfter(segEnd(p), (w.rEnd - w.lMaxwin - 1) >>> 0)) return false;
  }
  if (p.flags & T_ACK && w.bits & F.FLT_CT_T_L_KNOWN) {
    if (seqAfter(s.ack, w.lEnd)) return false;
    const maxack = Math.max(w.rMaxwin, F.FLT_CT_MAXACKWIN);
    if (w.bits & F.FLT_CT_T_R_KNOWN && !seqAfter(s.ack, (w.lEnd - maxack - 1) >>> 0)) return false;
  }
  return true;
}

/** A segment counted as the flow: the sender's end, largest window, SYN option; the local side's ACK moves how far the far side may send. */
function tcpUpdate(w: TcpWindows, p: CtPacket, remote: boolean): void {
  const s = p.seg!;
  const end = segEnd(p);
  const win = segWindow(w, p, remote) || 1;
  const known = remote ? F.FLT_CT_T_R_KNOWN : F.FLT_CT_T_L_KNOWN;
  if (!(w.bits & known)) {
    w.bits |= known;
    if (p.flags & T_SYN && s.wscale !== null) {
      w.bits |= remote ? F.FLT_CT_T_R_WS : F.FLT_CT_T_L_WS;
      if (remote) w.rWscale = s.wscale;
      else w.lWscale = s.wscale;
    }
    if (remote) {
      w.rEnd = end;
      w.rMaxwin = win;
      w.rMaxend = add32(end, w.lMaxwin);
    } else {
      w.lEnd = end;
      w.lMaxwin = win;
    }
  } else if (remote) {
    if (seqAfter(end, w.rEnd)) w.rEnd = end;
    if (win > w.rMaxwin) w.rMaxwin = win;
  } else {
    if (seqAfter(end, w.lEnd)) w.lEnd = end;
    if (win > w.lMaxwin) w.lMaxwin = win;
  }
  if (!remote && p.flags & T_ACK && w.bits & F.FLT_CT_T_R_KNOWN && seqAfter(add32(s.ack, win), w.rMaxend)) w.rMaxend = add32(s.ack, win);
}

/** The TCP flags of a frame the tracker would read as TCP, else null (the fuzzer's report). */
export function ctTcpFlags(frame: Uint8Array): number | null {
  const p = ctPacket(frame, false);
  return p?.kind === 'tcp' ? p.flags : null;
}

/** The reference model of the connection tracker: its table, clock and timeouts. */
export class ConnTrack {
  readonly flows = new Map<string, { key: CtKey; flow: CtFlow }>();
  /** ns; the kernel's flt_ct_cfg.now in tests */
  now = 0n;
  timeouts: CtTimeouts = {};
  stateful = true;

  private timeoutNs(f: CtFlow): bigint {
    return BigInt(ctTimeoutSeconds(f.state, f.replied, this.timeouts)) * 1_000_000_000n;
  }

  /** A live flow; an expired one is forgotten (it is absent either way). */
  private find(k: CtKey): CtFlow | undefined {
    const e = this.flows.get(keyText(k));
    if (!e) return undefined;
    if (this.now - e.flow.lastSeen >= this.timeoutNs(e.flow)) {
      this.flows.delete(keyText(k));
      return undefined;
    }
    return e.flow;
  }

  private start(k: CtKey, state: CtState, origRemote: boolean): CtFlow {
    const flow: CtFlow = { state, origRemote, replied: false, finLocal: false, finRemote: false, lastSeen: this.now, tcp: noWindows() };
    this.flows.set(keyText(k), { key: k, flow });
    return flow;
  }

  /** A packet of flow f from the far side (remote) or the host: whether it counts as the flow ('window': a far side's segment out of window), and its effect. */
  private advance(k: CtKey, f: CtFlow, p: CtPacket, remote: boolean): boolean | 'window' {
    const answering = remote !== f.origRemote;
    if (p.kind === 'tcp') {
      const tcpState = f.state === 'syn_sent' || f.state === 'established' || f.state === 'closing' || f.state === 'time_wait';
      if (opens(p.flags) || !tcpState) return false;
      // before the answer only a SYN+ACK or a RST from the answering side is the flow
      if (f.state === 'syn_sent' && answering && !(p.flags & T_RST) && (p.flags & (T_SYN | T_ACK)) !== (T_SYN | T_ACK)) return false;
      if (remote && !tcpInWindow(f.tcp, p)) return 'window';
      if (p.flags & T_RST) {
        this.flows.delete(keyText(k));
        return true;
      }
      tcpUpdate(f.tcp, p, remote);
      if (p.flags & T_FIN) {
        if (remote) f.finRemote = true;
        else f.finLocal = true;
        f.state = f.finLocal && f.finRemote ? 'time_wait' : 'closing';
      } else if (f.state === 'syn_sent' && answering) {
        f.state = 'established';
      }
    } else if (p.kind === 'udp' ? f.state !== 'udp' : f.state !== 'icmp') {
      return false;
    }
    if (answering) f.replied = true;
    f.lastSeen = this.now;
    return true;
  }

  /** A frame the host sends (tc egress): it never drops; it opens, refreshes or advances a flow. */
  egress(frame: Uint8Array): void {
    if (!this.stateful) return;
    const p = ctPacket(frame, true);
    if (!p || p.kind === 'icmp_error') return;
    if (p.kind === 'tcp' && opens(p.flags)) {
      tcpUpdate(this.start(p.key, 'syn_sent', false).tcp, p, false);
      return;
    }
    const f = this.find(p.key);
    if (f) this.advance(p.key, f, p, false);
    else if (p.kind === 'udp') this.start(p.key, 'udp', false);
    else if (p.kind === 'echo_request') this.start(p.key, 'icmp', false);
    else if (p.kind === 'tcp' && (p.flags & (T_SYN | T_ACK | T_RST | T_FIN)) === T_ACK) {
      // mid-stream pickup: established, window scales unknown so taken as the largest
      const nf = this.start(p.key, 'established', false);
      nf.tcp = { ...nf.tcp, bits: F.FLT_CT_T_PICKUP | F.FLT_CT_T_L_WS | F.FLT_CT_T_R_WS, lWscale: F.FLT_CT_WS_MAX, rWscale: F.FLT_CT_WS_MAX };
      tcpUpdate(nf.tcp, p, false);
    }
  }

  /** A frame the host receives, under `policy`: the verdict and what the kernel counts. */
  ingress(policy: Policy, frame: Uint8Array): FrameOutcome {
    const o = decideFrame(policy, frame);
    if (!this.stateful) return o;
    // an explicit deny decides first
    if (o.rule !== null && policy.rules[o.rule].action === 'deny') return o;
    const p = ctPacket(frame, false);
    if (!p) return o;
    const pass = (ct: 'established' | 'related'): FrameOutcome => ({ ...o, action: 'allow', rule: null, stats: [ct], ct });
    // an opening SYN is never a flow's packet (the table is not even read for it)
    if (p.kind === 'tcp' && opens(p.flags)) {
      if (o.rule !== null) tcpUpdate(this.start(p.key, 'syn_sent', true).tcp, p, true);
      return o;
    }
    const f = this.find(p.key);
    if (p.kind === 'icmp_error') return f ? pass('related') : o;
    const a = f ? this.advance(p.key, f, p, true) : false;
    if (a === true) return pass('established');
    // out of a tracked connection's window: dropped whatever the rules say (audit passes it)
    if (a === 'window') return { ...o, action: policy.audit ? 'allow' : 'deny', rule: null, stats: policy.audit ? ['outOfWindow', 'audit'] : ['outOfWindow'], ct: 'outOfWindow' };
    if (o.rule !== null) {
      // an allow rule passed it: a new connection is tracked from here
      if (p.kind === 'udp' && !f) this.start(p.key, 'udp', true);
      else if (p.kind === 'echo_request' && !f) this.start(p.key, 'icmp', true);
    }
    return o;
  }

  /** A live TCP flow's windows, given a frame of it the host would send (the fuzzer aims junk at their edges). */
  windowsOf(outbound: Uint8Array): TcpWindows | undefined {
    const p = ctPacket(outbound, true);
    const e = p && this.flows.get(keyText(p.key));
    return e && e.flow.tcp.bits ? { ...e.flow.tcp } : undefined;
  }

  /** The table as the kernel's flt_ct would hold it: key text -> state number, flags, last seen. */
  snapshot(): Map<string, { state: number; flags: number; lastSeen: bigint; tcp: TcpWindows }> {
    const out = new Map<string, { state: number; flags: number; lastSeen: bigint; tcp: TcpWindows }>();
    for (const [t, { flow: f }] of this.flows) {
      const flags = (f.origRemote ? F.FLT_CT_F_ORIG_REMOTE : 0) | (f.replied ? F.FLT_CT_F_REPLIED : 0) | (f.finLocal ? F.FLT_CT_F_FIN_LOCAL : 0) | (f.finRemote ? F.FLT_CT_F_FIN_REMOTE : 0);
      out.set(t, { state: CT_STATE_NUMBER[f.state], flags, lastSeen: f.lastSeen, tcp: { ...f.tcp } });
    }
    return out;
  }
}

/** A kernel flow's TCP windows as the model holds them (for comparing tables; the same key order as noWindows). */
export function ctWindowsOf(v: F.FltCtVal): TcpWindows {
  return { lEnd: v.l_end, rEnd: v.r_end, rMaxend: v.r_maxend, lMaxwin: v.l_maxwin, rMaxwin: v.r_maxwin, lWscale: v.l_wscale, rWscale: v.r_wscale, bits: v.tcp };
}

/** The model's key text of a kernel flt_ct key (for comparing tables). */
export function ctKeyText(k: { laddr: Uint8Array; raddr: Uint8Array; lport: number; rport: number; proto: number; family: number }): string {
  const n = k.family === F.FLT_FAMILY_V6 ? 16 : 4;
  return keyText({ family: k.family === F.FLT_FAMILY_V6 ? 6 : 4, proto: k.proto, laddr: bigAt(k.laddr, 0, n), raddr: bigAt(k.raddr, 0, n), lport: k.lport, rport: k.rport });
}

/** The flow an inbound frame is looked up as (an ICMP error: the flow it quotes), in the host's view; null when the tracker follows none. */
export function ctIngressKey(frame: Uint8Array): CtKey | null {
  return ctPacket(frame, false)?.key ?? null;
}
