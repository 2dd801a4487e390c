// SPDX-License-Identifier: Apache-2.0
// Crafts Ethernet frames for BPF_PROG_TEST_RUN (`filter explain`, the tests, the fuzzer), and parses
// the explain syntax: "tcp 10.0.0.1:5555 -> 10.0.0.2:22", "icmp fd00::1 -> fd00::2 type echo-reply". Pure.
import { EbpfnetError } from '../errors.js';
import type { PacketInfo } from './policy.js';
import { ICMP_TYPES, PROTO_NUMBERS, parseCidr, type Family } from './rules.js';

export interface PacketSpec {
  family: Family;
  /** IP protocol number */
  proto: number;
  src: bigint;
  dst: bigint;
  sport?: number;
  dport?: number;
  /** VLAN ids, outermost first (the outer one is tagged 802.1ad when there are two) */
  vlans?: number[];
  /** IPv6 extension headers before the payload: 0 hop-by-hop, 43 routing, 44 fragment, 60 dest-opts */
  ext?: number[];
  /** fragment offset in 8-byte units (IPv4 flags field, or the IPv6 fragment header) */
  fragOffset?: number;
  moreFragments?: boolean;
  icmpType?: number;
  /** ICMP code (default 0) */
  icmpCode?: number;
  /** the ICMP echo identifier (default 1) */
  icmpId?: number;
  /** TCP flags byte (default SYN, 0x02) */
  tcpFlags?: number;
  /** TCP sequence and acknowledgement numbers (default 1 and 0), window (default 65535) */
  seq?: number;
  ack?: number;
  window?: number;
  /** TCP option bytes, padded with end-of-list to a multiple of 4 (at most 40) */
  tcpOptions?: number[];
  /** for an ICMP error: the packet it quotes (its IP header and `quote` bytes of its L4 header,
   * default 8 as routers send), in place of the payload */
  inner?: PacketSpec;
  quote?: number;
  payload?: number;
}

/** TCP flag bits for PacketSpec.tcpFlags */
export const TCP = { fin: 0x01, syn: 0x02, rst: 0x04, psh: 0x08, ack: 0x10 } as const;

/** The same flow's packet the other way: addresses and ports swapped. */
export const reverse = (spec: PacketSpec, more: Partial<PacketSpec> = {}): PacketSpec => ({ ...spec, src: spec.dst, dst: spec.src, sport: spec.dport, dport: spec.sport, ...more });

/** The IP packet a spec makes (no Ethernet header, no VLAN tags), cut to its IP header plus `quote` bytes of L4. */
function quoted(inner: PacketSpec, quote: number): number[] {
  const b = buildPacket({ ...inner, vlans: [] }).subarray(14);
  const ipLen = inner.family === 4 ? (b[0] & 0xf) * 4 : 40;
  return [...b.subarray(0, Math.min(b.length, ipLen + quote))];
}

const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const u32 = (n: number): number[] => [...u16(Math.floor(n / 65536) & 0xffff), ...u16(n & 0xffff)];
const addrBytes = (family: Family, a: bigint): number[] => {
  const n = family === 4 ? 4 : 16;
  return Array.from({ length: n }, (_, i) => Number((a >> BigInt((n - 1 - i) * 8)) & 0xffn));
};

function l4(spec: PacketSpec): number[] {
  const pay = spec.inner ? quoted(spec.inner, spec.quote ?? 8) : Array(spec.payload ?? 8).fill(0xab);
  switch (spec.proto) {
    case 6: {
      // TCP: ports, seq, ack, data offset (5 plus the options), flags (SYN), window
      const opts = [...(spec.tcpOptions ?? [])];
      while (opts.length % 4) opts.push(0);
      return [
        ...u16(spec.sport ?? 40000), ...u16(spec.dport ?? 80), ...u32(spec.seq ?? 1), ...u32(spec.ack ?? 0),
        (5 + opts.length / 4) << 4, spec.tcpFlags ?? TCP.syn, ...u16(spec.window ?? 0xffff), 0, 0, 0, 0, ...opts, ...pay,
      ];
    }
    case 17: // UDP
      return [...u16(spec.sport ?? 40000), ...u16(spec.dport ?? 53), ...u16(8 + pay.length), 0, 0, ...pay];
    case 132: // SCTP common header
      return [...u16(spec.sport ?? 40000), ...u16(spec.dport ?? 80), 0, 0, 0, 0, 0, 0, 0, 0, ...pay];
    case 1:
    case 58:
      // type, code, checksum, then the echo identifier and sequence (or an error's unused word)
      return [spec.icmpType ?? (spec.proto === 1 ? 8 : 128), spec.icmpCode ?? 0, 0, 0, ...u16(spec.icmpId ?? 1), 0, 1, ...pay];
    default:
      return pay;
  }
}

export function buildPacket(spec: PacketSpec): Buffer {
  const out: number[] = [0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
  const vlans = spec.vlans ?? [];
  vlans.forEach((id, i) => out.push(...u16(vlans.length > 1 && i === 0 ? 0x88a8 : 0x8100), ...u16(id & 0xfff)));
  const frag = (spec.fragOffset ?? 0) | 0;
  if (spec.family === 4) {
    const body = l4(spec);
    const total = 20 + body.length;
    const flags = (spec.moreFragments ? 0x2000 : 0) | (frag & 0x1fff);
    out.push(...u16(0x0800), 0x45, 0, ...u16(total), 0, 1, ...u16(flags), 64, spec.proto, 0, 0, ...addrBytes(4, spec.src), ...addrBytes(4, spec.dst), ...body);
  } else {
    const chain = [...(spec.ext ?? [])];
    if ((spec.fragOffset || spec.moreFragments) && !chain.includes(44)) chain.push(44);
    const hdrs: number[] = [];
    chain.forEach((h, i) => {
      const next = i + 1 < chain.length ? chain[i + 1] : spec.proto;
      if (h === 44) hdrs.push(next, 0, ...u16(((frag & 0x1fff) << 3) | (spec.moreFragments ? 1 : 0)), 0, 0, 0, 1);
      else hdrs.push(next, 0, 1, 4, 0, 0, 0, 0); // 8 bytes, PadN option
    });
    const body = [...hdrs, ...l4(spec)];
    out.push(...u16(0x86dd), 0x60, 0, 0, 0, ...u16(body.length), chain.length ? chain[0] : spec.proto, 64, ...addrBytes(6, spec.src), ...addrBytes(6, spec.dst), ...body);
  }
  return Buffer.from(out);
}

/** The PacketInfo the model needs for a well-formed crafted packet. */
export function packetInfo(spec: PacketSpec): PacketInfo {
  const nonfirst = (spec.fragOffset ?? 0) !== 0;
  const ported = spec.proto === 6 || spec.proto === 17 || spec.proto === 132;
  // the ICMP type is the "port" of each family's own ICMP
  const icmp = spec.proto === (spec.family === 4 ? 1 : 58);
  const type = spec.icmpType ?? (spec.proto === 1 ? 8 : 128);
  return {
    kind: 'ip',
    family: spec.family,
    proto: spec.proto,
    dport: nonfirst ? undefined : ported ? (spec.dport ?? (spec.proto === 17 ? 53 : 80)) : icmp ? type : undefined,
    nonfirst,
    src: spec.src,
    dst: spec.dst,
    nd: spec.family === 6 && spec.proto === 58 && !nonfirst && (spec.icmpType ?? 128) >= 133 && (spec.icmpType ?? 128) <= 137,
  };
}

const endpoint = (s: string, input: string): { addr: string; port?: number } => {
  const m = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(s) ?? /^([0-9.]+)(?::(\d+))?$/.exec(s) ?? /^([0-9a-fA-F.]*:[0-9a-fA-F:.]*)$/.exec(s); // bare IPv6, an IPv4 tail too (::ffff:1.2.3.4)
  if (!m) throw new EbpfnetError('EBPFNET_USAGE', `parse packet '${input}'`, `'${s}' is not ADDR[:PORT]`, { hint: 'IPv6 with a port is written [2001:db8::1]:22' });
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && (port < 1 || port > 65535)) throw new EbpfnetError('EBPFNET_USAGE', `parse packet '${input}'`, `port ${port} is out of range`);
  return { addr: m[1], port };
};

/**
 * "tcp 10.0.0.1:5555 -> 10.0.0.2:22", "udp [fd00::1]:5353 -> [fd00::2]:53", "icmp 10.0.0.1 -> 10.0.0.2"
 * (icmp is the addresses' family's ICMP: ICMPv6 between IPv6 addresses), optionally with
 * "type echo-reply" or "type 3" (default: echo request); TCP with "flags ack" or "flags syn,ack"
 * (default: a SYN, a new connection; a reply of a tracked one has ACK).
 */
export function parsePacket(input: string): PacketSpec {
  const bad = (detail: string, hint?: string): EbpfnetError => new EbpfnetError('EBPFNET_USAGE', `parse packet '${input}'`, detail, { hint });
  const m = /^\s*(\w+)\s+(\S+)\s*->\s*(\S+)(?:\s+type\s+(\S+))?(?:\s+flags\s+(\S+))?\s*$/i.exec(input);
  if (!m) throw bad('expected PROTO SRC[:PORT] -> DST[:PORT] [type ICMP-TYPE]', 'for example: tcp 10.0.0.1:5555 -> 10.0.0.2:22');
  const word = m[1].toLowerCase();
  if (word !== 'icmp' && !(word in PROTO_NUMBERS)) throw bad(`unknown protocol '${word}'`, 'use tcp, udp, sctp, icmp, icmpv4 or icmpv6');
  const a = endpoint(m[2], input);
  const b = endpoint(m[3], input);
  const src = parseCidr(a.addr, input);
  const dst = parseCidr(b.addr, input);
  if (src.family !== dst.family) throw bad('source and destination are of different families');
  const proto = word === 'icmp' ? (src.family === 4 ? 'icmpv4' : 'icmpv6') : (word as keyof typeof PROTO_NUMBERS);
  const spec: PacketSpec = { family: src.family, proto: PROTO_NUMBERS[proto], src: src.addr, dst: dst.addr, sport: a.port, dport: b.port };
  if (m[4] !== undefined) {
    if (proto !== 'icmpv4' && proto !== 'icmpv6') throw bad('only ICMP packets take a type');
    const t = m[4].toLowerCase();
    const n = /^\d{1,3}$/.test(t) && Number(t) <= 255 ? Number(t) : ICMP_TYPES[proto][t];
    if (n === undefined) throw bad(`'${m[4]}' is not an ${proto} type`, `use 0-255 or one of ${Object.keys(ICMP_TYPES[proto]).join(', ')}`);
    spec.icmpType = n;
  }
  if (m[5] !== undefined) {
    if (proto !== 'tcp') throw bad('only TCP packets take flags');
    let f = 0;
    for (const w of m[5].toLowerCase().split(/[,+]/)) {
      if (!(w in TCP)) throw bad(`'${w}' is not a TCP flag`, `use ${Object.keys(TCP).join(', ')}, joined by commas: flags syn,ack`);
      f |= TCP[w as keyof typeof TCP];
    }
    spec.tcpFlags = f;
  }
  return spec;
}
