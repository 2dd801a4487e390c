// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The kernel oracle's judge: what the target's stack delivered (raw sockets, per protocol) or
// answered (frames captured on the source's end), read from those bytes alone, and whether a
// policy denies it. Nothing here looks at the frame that was sent, except to name the case a
// delivery came from (its tag), for the report.

/**
 * What the stack delivered or answered, as the policies see it: the family, the IP protocol, and
 * the destination port (TCP, UDP, SCTP) or ICMP type when the bytes hold them.
 * @typedef {{ v: 4 | 6, proto: number, port?: number, type?: number }} Class
 */

/**
 * A policy as the CLI takes it, and which deliveries it denies (judged from the kernel's bytes).
 * @typedef {{ name: string, args: string[], denies: (c: Class) => boolean }} Policy
 */

const nd = (/** @type {Class} */ c) => c.v === 6 && c.proto === 58 && c.type !== undefined && c.type >= 133 && c.type <= 137;

/** @type {Record<string, Policy>} */
export const POLICIES = {
  'deny-ssh-icmp': {
    name: 'deny-ssh-icmp',
    args: ['--deny', 'tcp/22', '--deny', 'icmp'],
    // `icmp` covers ICMPv4 of every type and ICMPv6 echo requests
    denies: (c) => (c.proto === 6 && c.port === 22) || (c.v === 4 && c.proto === 1) || (c.v === 6 && c.proto === 58 && c.type === 128),
  },
  'default-deny-http': {
    name: 'default-deny-http',
    args: ['--default', 'deny', '--allow', 'tcp/80'],
    // under default deny only TCP to 80 is allowed, and neighbour discovery (ARP is not IP)
    denies: (c) => !((c.proto === 6 && c.port === 80) || nd(c)),
  },
};

const IPPROTO_NAMES = /** @type {Record<number, string>} */ ({ 1: 'icmp', 4: 'ipip', 6: 'tcp', 17: 'udp', 41: 'ipv6', 47: 'gre', 58: 'icmpv6', 59: 'none', 132: 'sctp' });
export function describeClass(/** @type {Class} */ c) {
  const p = IPPROTO_NAMES[c.proto] ?? `proto ${c.proto}`;
  return `ipv${c.v} ${p}${c.port !== undefined ? `/${c.port}` : ''}${c.type !== undefined ? ` type ${c.type}` : ''}`;
}

/** the class of an upper-layer message `p` of protocol `proto` */
function classOf(/** @type {4 | 6} */ v, /** @type {number} */ proto, /** @type {Buffer} */ p) {
  /** @type {Class} */
  const c = { v, proto };
  if ((proto === 6 || proto === 17 || proto === 132) && p.length >= 4) c.port = p.readUInt16BE(2);
  if ((proto === 1 || proto === 58) && p.length >= 1) c.type = p[0];
  return c;
}

/**
 * Where the generator put the tag in an upper-layer message of protocol `proto` (see frames.mjs);
 * for tunnels, in the packet inside. Candidates, most likely first; the caller checks them.
 * @returns {number[]}
 */
export function tagsIn(/** @type {number} */ proto, /** @type {Buffer} */ p) {
  const at = (/** @type {number} */ o) => (p.length >= o + 4 ? [p.readUInt32BE(o)] : []);
  switch (proto) {
    case 6:
    case 132:
      return at(4);
    case 1:
    case 58:
      return icmpTag(proto === 1 ? 4 : 6, p);
    case 17: {
      // VXLAN (port 4789): its header, then the Ethernet frame whose packet holds the tag
      if (p.length >= 38 && p.readUInt16BE(2) === 4789) {
        const type = p.readUInt16BE(28);
        const ip = type === 0x0800 ? v4(p.subarray(30)) : type === 0x86dd ? v6(p.subarray(30)) : null;
        return ip ? tagsIn(ip.proto, ip.payload) : [];
      }
      return at(8);
    }
    case 47: {
      if (p.length < 4) return [];
      const flags = p.readUInt16BE(0);
      return flags & 0x2000 ? at(flags & 0x8000 ? 8 : 4) : [];
    }
    case 4: {
      const ip = v4(p);
      return ip ? tagsIn(ip.proto, ip.payload) : [];
    }
    case 41: {
      const ip = v6(p);
      return ip ? tagsIn(ip.proto, ip.payload) : [];
    }
    default:
      return at(0);
  }
}

/**
 * An ICMP message's tag: bytes 4-7, checked against the copy in bytes 8-11 where the generator
 * puts one (all but errors, which quote a packet there, neighbour discovery, and timestamp replies,
 * which put times there).
 */
function icmpTag(/** @type {4 | 6} */ v, /** @type {Buffer} */ p) {
  if (p.length < 8) return [];
  const t = p[0];
  const unchecked = v === 4 ? [3, 4, 5, 11, 12, 14].includes(t) : (t >= 1 && t <= 4) || (t >= 133 && t <= 137);
  if (unchecked) return [p.readUInt32BE(4)];
  return p.length >= 12 && p.readUInt32BE(8) === p.readUInt32BE(4) ? [p.readUInt32BE(4)] : [];
}

/** an IPv4 packet's protocol, identification and payload (as far as the bytes go) */
function v4(/** @type {Buffer} */ b) {
  if (b.length < 20 || b[0] >> 4 !== 4) return null;
  const ihl = (b[0] & 15) * 4;
  return { proto: b[9], id: b.readUInt16BE(4), payload: b.subarray(Math.min(ihl, b.length)), fragOff: b.readUInt16BE(6) & 0x1fff };
}

const EXT = new Set([0, 43, 44, 60, 51, 135]);
/** an IPv6 packet's upper-layer protocol and payload, its extension headers walked (null when they run past the bytes) */
function v6(/** @type {Buffer} */ b) {
  if (b.length < 40 || b[0] >> 4 !== 6) return null;
  let nh = b[6];
  let o = 40;
  let nonFirst = false;
  while (EXT.has(nh) && !nonFirst) {
    if (b.length < o + 8) return null;
    if (nh === 44) {
      nonFirst = (b.readUInt16BE(o + 2) & 0xfff8) !== 0;
      nh = b[o];
      o += 8;
    } else {
      const len = nh === 51 ? (b[o + 1] + 2) * 4 : (b[o + 1] + 1) * 8;
      nh = b[o];
      o += len;
    }
  }
  if (o > b.length) return null;
  return { proto: nh, payload: b.subarray(o), nonFirst };
}

const hex = (/** @type {string} */ s) => Buffer.from(s, 'hex');

/**
 * One event from the target: a delivery (a raw socket got a packet) or an answer (the target sent
 * something to the source), with the class the policies judge and the tags it may carry.
 * @typedef {{ what: 'delivered' | 'answered', kind: string, cls: Class | null, tags: number[], sport?: number, ipId?: number, late?: boolean, bytes: string }} Event
 *   sport, ipId: the source port and IPv4 identification, to find the case when no tag survived;
 *   late: an answer the stack sends seconds after the frame (a reassembly timeout)
 */

/**
 * A line from `oracle recv`. Every IPv4 delivery counts, whatever its source (a mutated frame may
 * carry another); IPv6 ones from link-local or unspecified sources do not: those are the source
 * namespace's own router solicitations and multicast listener reports (the generator sends from a
 * global address).
 * @returns {Event | null}
 */
export function parseDelivery(/** @type {string} */ line) {
  const f = line.split(' ');
  if (f[0] === 'R4') {
    const ip = v4(hex(f[2] ?? ''));
    if (!ip) return null;
    const proto = Number(f[1]);
    return { what: 'delivered', kind: 'raw', cls: classOf(4, proto, ip.payload), tags: tagsIn(proto, ip.payload), sport: sportOf(proto, ip.payload), ipId: ip.id, bytes: f[2] };
  }
  if (f[0] === 'R6') {
    if (/^fe[89ab]/i.test(f[2]) || f[2] === '::') return null;
    const proto = Number(f[1]);
    const p = hex(f[3] ?? '');
    return { what: 'delivered', kind: 'raw', cls: classOf(6, proto, p), tags: tagsIn(proto, p), sport: sportOf(proto, p), bytes: f[3] };
  }
  // U (datagrams on the UDP sockets) and A (accepted connections) duplicate what the raw sockets see
  return null;
}

const sportOf = (/** @type {number} */ proto, /** @type {Buffer} */ p) => ((proto === 6 || proto === 17) && p.length >= 2 ? p.readUInt16BE(0) : undefined);

/**
 * A frame the source captured from the target: an answer when it shows the target's stack
 * processed one of the frames (a SYN-ACK, a RST, an echo or timestamp reply, an ICMP error, a
 * neighbour advertisement), with the class of the packet it answers. Other frames (the target's
 * multicast listener reports, ARP) come back as kind `other`, unjudged.
 * @returns {Event | null}
 */
export function parseAnswer(/** @type {string} */ line) {
  if (!line.startsWith('C ')) return null;
  const b = hex(line.slice(2));
  if (b.length < 14) return null;
  const type = b.readUInt16BE(12);
  const other = /** @type {Event} */ ({ what: 'answered', kind: type === 0x0806 ? 'arp' : 'other', cls: null, tags: [], bytes: line.slice(2) });
  /** @type {4 | 6} */
  let v;
  let ip;
  if (type === 0x0800) {
    v = 4;
    ip = v4(b.subarray(14));
  } else if (type === 0x86dd) {
    v = 6;
    ip = v6(b.subarray(14));
  } else {
    return other;
  }
  if (!ip) return other;
  const p = ip.payload;
  if (ip.proto === 6 && p.length >= 20) {
    const flags = p[13];
    const seq = p.readUInt32BE(4);
    const ack = p.readUInt32BE(8);
    // the generator sends seq = ack = tag: a SYN-ACK or a RST to a SYN acks tag + 1, a RST to an
    // ACK carries the ack as its sequence number
    const tags = flags & 0x10 ? [(ack - 1) >>> 0, ack] : [seq];
    const kind = (flags & 0x12) === 0x12 ? 'syn-ack' : flags & 0x04 ? 'rst' : 'tcp';
    return { what: 'answered', kind, cls: { v, proto: 6, port: p.readUInt16BE(0) }, tags, sport: p.readUInt16BE(2), bytes: other.bytes };
  }
  const icmpProto = v === 4 ? 1 : 58;
  if (ip.proto !== icmpProto || p.length < 8) return other;
  const t = p[0];
  if ((v === 4 && (t === 0 || t === 14)) || (v === 6 && t === 129)) {
    // an echo (or timestamp) reply answers a request of the same family; id and sequence are echoed
    return { what: 'answered', kind: v === 4 ? (t === 0 ? 'echo reply' : 'timestamp reply') : 'echo reply', cls: { v, proto: icmpProto, type: v === 4 ? (t === 0 ? 8 : 13) : 128 }, tags: icmpTag(v, p), bytes: other.bytes };
  }
  if (v === 6 && t === 136) return { what: 'answered', kind: 'neighbour advertisement', cls: { v, proto: 58, type: 135 }, tags: [], bytes: other.bytes };
  const isError = v === 4 ? t === 3 || t === 11 || t === 12 : t >= 1 && t <= 4;
  if (!isError) return other;
  // an ICMP error quotes the packet it is about: that packet's class is what the stack processed
  const q = p.subarray(8);
  const inner = v === 4 ? v4(q) : v6(q);
  const kind = `icmp error ${t}/${p[1]}`;
  // time exceeded in reassembly comes ipfrag_time after the frame, in a later round
  const late = p[1] === 1 && (v === 4 ? t === 11 : t === 3);
  if (!inner) return { what: 'answered', kind, late, cls: { v, proto: -1 }, tags: [], bytes: other.bytes };
  const nonFirst = v === 4 ? /** @type {{fragOff: number}} */ (inner).fragOff !== 0 : /** @type {{nonFirst: boolean}} */ (inner).nonFirst;
  const cls = nonFirst ? { v, proto: inner.proto } : classOf(v, inner.proto, inner.payload);
  return { what: 'answered', kind, late, cls, tags: nonFirst ? [] : tagsIn(inner.proto, inner.payload), sport: nonFirst ? undefined : sportOf(inner.proto, inner.payload), bytes: other.bytes };
}

/** answers that show the stack processed a frame (others are counted, not judged) */
export const JUDGED = (/** @type {Event} */ e) => e.what === 'delivered' || (e.cls !== null && e.kind !== 'arp' && e.kind !== 'other');
