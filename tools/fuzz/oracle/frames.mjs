// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The kernel oracle's frame generator: seeded, deterministic, mutating. Written from the RFCs and
// the wire, not from the filter's parser or model (src/filter/), so it does not share their blind
// spots. A case is one or more frames (the fragments of a datagram) with one tag: a 32-bit value
// (round << 24 | case index) stamped where a delivery or an answer carries it back (TCP seq and ack,
// the first four bytes of a UDP payload, bytes 4-7 of an ICMP or ICMPv6 message, a GRE key, an SCTP
// verification tag), so the judge can map what the kernel did to the case that made it do so.
//
// Every random choice is drawn when the case is made; build(tag, ipId) only lays the bytes out.
import { prng } from '../../lib/harness.mjs';

/** IP protocols the generator puts on the wire (outer or last header); the target opens a raw socket for each. */
export const PROTOS4 = [1, 4, 6, 17, 41, 47, 132, 253];
export const PROTOS6 = [4, 6, 17, 41, 47, 58, 59, 132, 253];
/** the target's TCP listeners and UDP sockets */
export const TCP_PORTS = [22, 23, 80, 443];
export const UDP_PORTS = [53, 161];


/** @typedef {() => number} Rng */
const int = (/** @type {Rng} */ r, /** @type {number} */ n) => Math.floor(r() * n);
/** @template T @param {Rng} r @param {readonly T[]} xs @returns {T} */
const pick = (r, xs) => xs[int(r, xs.length)];
/** @template T @param {Rng} r @param {ReadonlyArray<readonly [number, T]>} xs @returns {T} */
function weighted(r, xs) {
  let x = r() * xs.reduce((s, [w]) => s + w, 0);
  for (const [w, v] of xs) if ((x -= w) < 0) return v;
  return xs[xs.length - 1][1];
}

// ---- bytes -------------------------------------------------------------------------------------

const cat = (/** @type {Buffer[]} */ ...b) => Buffer.concat(b);
const u8 = (/** @type {number[]} */ ...v) => Buffer.from(v.map((x) => x & 0xff));
const u16 = (/** @type {number} */ v) => u8(v >> 8, v);
const u32 = (/** @type {number} */ v) => u8(v >>> 24, v >>> 16, v >>> 8, v);

/** the Internet checksum (RFC 1071) over the buffers, folded */
function csum(/** @type {Buffer[]} */ ...bufs) {
  const b = cat(...bufs);
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += (b[i] << 8) | (b[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

const ip4 = (/** @type {string} */ a) => Buffer.from(a.split('.').map(Number));
function ip6(/** @type {string} */ a) {
  const [h, t = ''] = a.split('::');
  const hs = h ? h.split(':') : [];
  const ts = t ? t.split(':') : [];
  const all = a.includes('::') ? [...hs, ...Array(8 - hs.length - ts.length).fill('0'), ...ts] : hs;
  return Buffer.concat(all.map((x) => u16(parseInt(x, 16))));
}
const mac = (/** @type {string} */ m) => Buffer.from(m.split(':').map((x) => parseInt(x, 16)));

/**
 * @typedef {{ srcMac: string, dstMac: string, src4: string, dst4: string, src6: string, dst6: string }} Env
 *   addresses: the target's real ones, and the sender's (see run.mjs for why the source is not
 *   the source namespace's own address)
 */

/** @typedef {{ v: 4 | 6, src: Buffer, dst: Buffer }} Addrs */

/** the pseudo-header sum input for an upper-layer checksum (RFC 793, RFC 8200 8.1) */
const pseudo = (/** @type {Addrs} */ a, /** @type {number} */ proto, /** @type {number} */ len) =>
  a.v === 4 ? cat(a.src, a.dst, u8(0, proto), u16(len)) : cat(a.src, a.dst, u32(len), u8(0, 0, 0, proto));

/**
 * An upper-layer message: its protocol number and bytes, built once the addresses are known.
 * @typedef {{ proto: number, bytes: (a: Addrs, tag: number, extra?: number) => Buffer }} L4
 *   `extra` bytes of payload (0x55) more, inside the checksum: a datagram long enough to fragment
 */

/** @returns {L4} */
function tcp(/** @type {{ sport: number, dport: number, flags: number, opts?: Buffer, payload?: Buffer }} */ o) {
  return {
    proto: 6,
    bytes(a, tag, extra = 0) {
      const opts = o.opts ?? Buffer.alloc(0);
      const h = cat(u16(o.sport), u16(o.dport), u32(tag), u32(tag), u8((5 + opts.length / 4) << 4, o.flags), u16(64240), u16(0), u16(0), opts, o.payload ?? Buffer.alloc(0), Buffer.alloc(extra, 0x55));
      h.writeUInt16BE(csum(pseudo(a, 6, h.length), h), 16);
      return h;
    },
  };
}

/** @returns {L4} */
function udp(/** @type {{ sport: number, dport: number, payload?: Buffer, untagged?: boolean }} */ o) {
  return {
    proto: 17,
    bytes(a, tag, extra = 0) {
      const data = cat(o.untagged ? Buffer.alloc(0) : u32(tag), o.payload ?? Buffer.alloc(0), Buffer.alloc(extra, 0x55));
      const h = cat(u16(o.sport), u16(o.dport), u16(8 + data.length), u16(0), data);
      h.writeUInt16BE(csum(pseudo(a, 17, h.length), h) || 0xffff, 6);
      return h;
    },
  };
}

/**
 * ICMP (v4) or ICMPv6 (v6): type, code, the tag in bytes 4-7, a body. `copy`: the tag again in
 * bytes 8-11 (an echo reply carries it back), which the judge checks: no port vouches for an ICMP
 * tag, and a mutated one may name another case.
 */
function icmp(/** @type {{ type: number, code?: number, body?: Buffer, copy?: boolean }} */ o) {
  return (/** @type {4 | 6} */ v) => /** @type {L4} */ ({
    proto: v === 4 ? 1 : 58,
    bytes(a, tag, extra = 0) {
      const h = cat(u8(o.type, o.code ?? 0, 0, 0), u32(tag), o.copy ? u32(tag) : Buffer.alloc(0), o.body ?? Buffer.alloc(0), Buffer.alloc(extra, 0x55));
      h.writeUInt16BE(v === 4 ? csum(h) : csum(pseudo(a, 58, h.length), h), 2);
      return h;
    },
  });
}

/** SCTP INIT-looking chunk: the tag is the verification tag (no CRC32c: the kernel drops it, after delivery to raw sockets) */
const sctp = (/** @type {number} */ dport) => /** @type {L4} */ ({ proto: 132, bytes: (_a, tag) => cat(u16(5000), u16(dport), u32(tag), u32(0), u8(1, 0), u16(20), u32(tag), u32(65535), u16(1), u16(1), u32(1)) });
const rawProto = (/** @type {number} */ proto) => /** @type {L4} */ ({ proto, bytes: (_a, tag) => cat(u32(tag), Buffer.alloc(12, 0xab)) });

/**
 * An IPv4 header around `payload`.
 * @param {{ src: Buffer, dst: Buffer, proto: number, id: number, ttl?: number, mf?: boolean, off?: number, opts?: Buffer, lenDelta?: number, badSum?: boolean }} o
 */
function ipv4(o, /** @type {Buffer} */ payload) {
  const opts = o.opts ?? Buffer.alloc(0);
  const flags = (o.mf ? 0x2000 : 0) | ((o.off ?? 0) & 0x1fff);
  const h = cat(u8(0x40 | (5 + opts.length / 4), 0), u16(20 + opts.length + payload.length + (o.lenDelta ?? 0)), u16(o.id), u16(flags), u8(o.ttl ?? 64, o.proto), u16(0), o.src, o.dst, opts);
  h.writeUInt16BE(csum(h) ^ (o.badSum ? 0x1111 : 0), 10);
  return cat(h, payload);
}

/** An IPv6 header around `payload` (the extension headers are part of the payload). */
function ipv6(/** @type {{ src: Buffer, dst: Buffer, nh: number, hlim?: number, lenDelta?: number }} */ o, /** @type {Buffer} */ payload) {
  return cat(u32(6 << 28), u16(payload.length + (o.lenDelta ?? 0)), u8(o.nh, o.hlim ?? 64), o.src, o.dst, payload);
}

// ---- IPv6 extension headers ----------------------------------------------------------------------

/** @typedef {{ type: number, size?: number, rt?: number, segLeft?: number, fragOff?: number, fragM?: boolean, optType?: number }} Ext */

/** one extension header (RFC 8200 section 4), `nh` being the header after it */
function extBytes(/** @type {Ext} */ e, /** @type {number} */ nh, /** @type {number} */ fragId) {
  if (e.type === 44) return cat(u8(nh, 0), u16(((e.fragOff ?? 0) << 3) | (e.fragM ? 1 : 0)), u32(fragId));
  if (e.type === 43) {
    // routing: type 0 (deprecated, RFC 5095), 2 (mobile IPv6, one address), 4 (segment routing)
    const addrs = e.rt === 2 ? 1 : Math.max(1, Math.floor((e.size ?? 24) / 16));
    const body = cat(u8(e.rt ?? 0, e.segLeft ?? 0), e.rt === 4 ? u8(addrs - 1, 0, 0, 0) : u32(0), Buffer.alloc(addrs * 16, 0x20));
    return cat(u8(nh, (body.length + 2) / 8 - 1), body);
  }
  // hop-by-hop (0) and destination options (60), `size` bytes: one option of optType, the rest
  // filled with options the receiver skips (type 0x1e: high bits 00), since Linux refuses more than
  // 7 bytes of padding in a row (RFC 8504 5.3) and an option is at most 257 bytes
  const size = Math.max(8, Math.ceil((e.size ?? 8) / 8) * 8);
  const opts = [];
  let left = size - 2;
  if (e.optType !== undefined) {
    opts.push(cat(u8(e.optType, 4), Buffer.alloc(4)));
    left -= 6;
  }
  while (left > 7) {
    const n = Math.min(257, left - (left - 257 === 1 ? 2 : 0));
    opts.push(cat(u8(0x1e, n - 2), Buffer.alloc(n - 2)));
    left -= n;
  }
  if (left === 1) opts.push(u8(0));
  else if (left > 1) opts.push(cat(u8(1, left - 2), Buffer.alloc(left - 2)));
  return cat(u8(nh, size / 8 - 1), ...opts);
}

function chain(/** @type {Ext[]} */ exts, /** @type {number} */ last, /** @type {number} */ fragId) {
  const out = [];
  for (let i = 0; i < exts.length; i++) out.push(extBytes(exts[i], i + 1 < exts.length ? exts[i + 1].type : last, fragId));
  return cat(...out);
}

// ---- cases ---------------------------------------------------------------------------------------

/**
 * What a frame is aimed at, whatever wraps it.
 * @typedef {{ name: string, l4: (v: 4 | 6, index: number, round: number) => L4, v?: 4 | 6 }} Intent
 */

export const sportOf = (/** @type {number} */ index, /** @type {number} */ round) => 1024 + ((index * 7 + round * 13_331) % 64_000);
const SYN = 0x02;
const ACK = 0x10;

/** @type {ReadonlyArray<[number, Intent]>} */
const INTENTS = [
  [14, { name: 'tcp/22 syn', l4: (_v, i, r) => tcp({ sport: sportOf(i, r), dport: 22, flags: SYN }) }],
  [4, { name: 'tcp/22 ack', l4: (_v, i, r) => tcp({ sport: sportOf(i, r), dport: 22, flags: ACK }) }],
  [3, { name: 'tcp/23 syn', l4: (_v, i, r) => tcp({ sport: sportOf(i, r), dport: 23, flags: SYN }) }],
  [3, { name: 'tcp/443 syn', l4: (_v, i, r) => tcp({ sport: sportOf(i, r), dport: 443, flags: SYN }) }],
  [6, { name: 'tcp/80 syn', l4: (_v, i, r) => tcp({ sport: sportOf(i, r), dport: 80, flags: SYN }) }],
  [2, { name: 'tcp/8080 syn', l4: (_v, i, r) => tcp({ sport: sportOf(i, r), dport: 8080, flags: SYN }) }],
  [3, { name: 'udp/53', l4: (_v, i, r) => udp({ sport: sportOf(i, r), dport: 53 }) }],
  [2, { name: 'udp/9999', l4: (_v, i, r) => udp({ sport: sportOf(i, r), dport: 9999 }) }],
  [10, { name: 'icmp echo', l4: (v) => icmp({ type: v === 4 ? 8 : 128, body: Buffer.alloc(16, 0x61), copy: true })(v) }],
  [1, { name: 'sctp/22', l4: () => sctp(22) }],
  [1, { name: 'proto 253', l4: () => rawProto(253) }],
];

/** the ICMP and ICMPv6 types a case of kind `icmp` picks from */
const ICMP4_TYPES = [0, 3, 4, 5, 8, 11, 12, 13, 15, 17, 42, 200];
const ICMP6_TYPES = [1, 2, 3, 4, 128, 129, 130, 133, 134, 135, 136, 137, 143, 160, 200];

/**
 * A case: its category (the report's row), what it aims at, and build(tag, ipId, round): the frames.
 * @typedef {{ category: string, intent: string, v: 4 | 6 | 0, build: (tag: number, ipId: number, round: number) => Buffer[] }} Case
 */

/**
 * The generator. `env` holds the link's addresses; case `index` of `seed` is always the same case.
 * @param {number} seed @param {Env} env
 */
export function generator(seed, env) {
  const A4 = { v: /** @type {const} */ (4), src: ip4(env.src4), dst: ip4(env.dst4) };
  const A6 = { v: /** @type {const} */ (6), src: ip6(env.src6), dst: ip6(env.dst6) };
  const dmac = mac(env.dstMac);
  const smac = mac(env.srcMac);

  /**
   * One IP packet aimed at `intent`, with the knobs a category turns.
   * @param {4 | 6} v @param {L4} l4 @param {number} tag @param {number} ipId
   * @param {{ opts?: Buffer, exts?: Ext[], v4?: Partial<Parameters<typeof ipv4>[0]>, v6?: Partial<Parameters<typeof ipv6>[0]> }} k
   */
  function packet(v, l4, tag, ipId, k = {}) {
    const a = v === 4 ? A4 : A6;
    const body = l4.bytes(a, tag);
    if (v === 4) return ipv4({ src: a.src, dst: a.dst, proto: l4.proto, id: ipId, opts: k.opts, ...k.v4 }, body);
    const exts = k.exts ?? [];
    return ipv6({ src: a.src, dst: a.dst, nh: exts.length ? exts[0].type : l4.proto, ...k.v6 }, cat(chain(exts, l4.proto, tag), body));
  }

  const eth = (/** @type {number} */ type, /** @type {Buffer} */ payload, /** @type {Buffer} */ tags = Buffer.alloc(0)) => cat(dmac, smac, tags, u16(type), payload);
  const etherOf = (/** @type {4 | 6} */ v) => (v === 4 ? 0x0800 : 0x86dd);

  /** a frame carrying `payload` (ethertype `type`) under a VLAN stack of [tpid, tci] pairs, outermost first */
  const tagged = (/** @type {Array<[number, number]>} */ st, /** @type {number} */ type, /** @type {Buffer} */ payload) =>
    cat(dmac, smac, ...st.map(([tpid, tci]) => cat(u16(tpid), u16(tci))), u16(type), payload);

  /** @param {Rng} r @returns {Ext[]} a short, valid-looking chain */
  function someExts(r) {
    const out = /** @type {Ext[]} */ ([]);
    if (r() < 0.4) out.push({ type: 0, size: pick(r, [8, 16]) });
    const n = int(r, 4);
    for (let i = 0; i < n; i++) {
      out.push(
        weighted(r, [
          [4, { type: 60, size: pick(r, [8, 16, 24, 40]) }],
          [2, { type: 43, rt: pick(r, [0, 2, 4]), segLeft: r() < 0.8 ? 0 : 1, size: 16 }],
          [1, { type: 44, fragOff: 0, fragM: false }],
          [1, { type: 0, size: 8 }], // hop-by-hop not first: RFC 8200 says parameter problem
          [1, { type: 60, size: 8, optType: pick(r, [0x05, 0x80, 0xc2, 0x3e]) }],
        ]),
      );
    }
    return out;
  }

  /** random IPv4 options, valid or not, padded to a multiple of 4 */
  function someOpts(/** @type {Rng} */ r) {
    const parts = [];
    const n = 1 + int(r, 3);
    for (let i = 0; i < n; i++) {
      parts.push(
        weighted(r, [
          [3, u8(1)], // NOP
          [2, u8(0x94, 4, 0, 0)], // router alert
          [2, cat(u8(7, 11, 4), Buffer.alloc(8))], // record route
          [1, cat(u8(0x44, 12, 5, 0), Buffer.alloc(8))], // timestamp
          [1, cat(u8(0x83, 7, 4), ip4(env.dst4))], // loose source route
          [1, cat(u8(0x89, 7, 4), ip4(env.dst4))], // strict source route
          [1, u8(0x9e, 2 + int(r, 3))], // unknown option, length maybe past its bytes
          [1, u8(7, 0)], // option length 0: malformed
          [1, u8(0)], // end of list
        ]),
      );
    }
    let o = cat(...parts);
    if (o.length > 40) o = o.subarray(0, 40);
    return cat(o, Buffer.alloc((4 - (o.length % 4)) % 4, 0));
  }

  /** frames of kind `kind`, the intent chosen for it */
  const KINDS = /** @type {const} */ ([
    [8, 'plain'],
    [26, 'vlan'],
    [6, 'ethertype'],
    [6, 'ipv4 options'],
    [8, 'ipv4 fragments'],
    [8, 'ipv6 extension headers'],
    [6, 'ipv6 fragments'],
    [6, 'truncated'],
    [8, 'icmp types'],
    [6, 'encapsulation'],
    [4, 'mutated'],
    [3, 'checksums'],
  ]);

  /** @returns {Case} */
  function makeCase(/** @type {number} */ index) {
    const r = prng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
    const kind = weighted(r, KINDS);
    /** @type {4 | 6} */
    const v = r() < 0.5 ? 4 : 6;
    const intent = weighted(r, INTENTS);
    const l4 = (/** @type {4|6} */ vv, /** @type {number} */ round) => intent.l4(vv, index, round);
    const one = (/** @type {string} */ category, /** @type {(tag: number, ipId: number, round: number) => Buffer} */ f, ver = v, name = intent.name) =>
      /** @type {Case} */ ({ category, intent: name, v: ver, build: (t, id, rd) => [f(t, id, rd)] });

    switch (kind) {
      case 'plain':
        return one(`plain ipv${v}`, (t, id, rd) => eth(etherOf(v), packet(v, l4(v, rd), t, id)));

      case 'vlan': {
        const n = weighted(r, [[2, 1], [2, 2], [3, 3], [2, 4], [1, 5], [1, 6]]);
        const style = weighted(r, [[5, 'vid0'], [2, 'nonzero'], [1, 'mixed'], [1, '9100']]);
        const ad = r() < 0.4;
        /** @type {Array<[number, number]>} */
        const st = [];
        for (let i = 0; i < n; i++) {
          const tpid = style === '9100' && (i === 0 || r() < 0.3) ? 0x9100 : i === 0 && ad ? 0x88a8 : r() < 0.15 ? 0x88a8 : 0x8100;
          const vid = style === 'nonzero' ? 1 + int(r, 4094) : style === 'mixed' ? (r() < 0.5 ? 0 : 1 + int(r, 4094)) : 0;
          st.push([tpid, (int(r, 8) << 13) | (r() < 0.2 ? 0x1000 : 0) | vid]);
        }
        if (style === 'mixed' && st.every(([, tci]) => (tci & 0xfff) === 0)) st[n - 1][1] |= 5;
        const exts = v === 6 && r() < 0.2 ? someExts(r) : undefined;
        // 3 tags and 4 or more apart: tc sees a frame with its outer tag already taken off
        const category =
          style === '9100'
            ? 'vlan 0x9100 tpid'
            : st.some(([, tci]) => (tci & 0xfff) !== 0)
              ? `vlan non-zero VID, ${n <= 2 ? '1-2' : '3-6'} tags`
              : `vlan VID 0, ${n <= 3 ? String(n) : '4-6'} tag${n > 1 ? 's' : ''}${st[0][0] === 0x88a8 ? ', 802.1ad outer' : ''}`;
        return one(category, (t, id, rd) => tagged(st, etherOf(v), packet(v, l4(v, rd), t, id, { exts })));
      }

      case 'ethertype': {
        const which = pick(r, ['arp', 'unknown', 'mpls', '802.3', 'mismatch', 'arp']);
        if (which === 'arp') {
          const op = r() < 0.8 ? 1 : 2;
          return one('ethertype arp', () => eth(0x0806, cat(u16(1), u16(0x0800), u8(6, 4), u16(op), smac, ip4(env.src4), op === 1 ? Buffer.alloc(6) : dmac, ip4(env.dst4))), 4, 'arp');
        }
        if (which === 'unknown') return one('ethertype other', (t, id, rd) => eth(pick(prng(index), [0x88b5, 0x9000, 0x22f0, 0x0801]), packet(v, l4(v, rd), t, id)));
        if (which === 'mpls') return one('ethertype mpls', (t, id, rd) => eth(0x8847, cat(u32((16 << 12) | 0x100 | 64), packet(v, l4(v, rd), t, id))));
        if (which === '802.3') {
          // a length field, LLC/SNAP, then the packet: Linux has no SNAP handler for IP
          return one('ethertype 802.3 length', (t, id, rd) => {
            const p = packet(v, l4(v, rd), t, id);
            return cat(dmac, smac, u16(8 + p.length), u8(0xaa, 0xaa, 0x03, 0, 0, 0), u16(etherOf(v)), p);
          });
        }
        // the other IP version's ethertype
        return one('ethertype ip version mismatch', (t, id, rd) => eth(etherOf(v === 4 ? 6 : 4), packet(v, l4(v, rd), t, id)));
      }

      case 'ipv4 options': {
        const opts = someOpts(r);
        return one('ipv4 options', (t, id, rd) => eth(0x0800, packet(4, l4(4, rd), t, id, { opts })), 4);
      }

      case 'ipv4 fragments': {
        const how = pick(r, ['complete', 'complete', 'reversed', 'first only', 'non-first only', 'overlap', 'tiny first', 'duplicate first']);
        const split = 8 * (1 + int(r, 3)); // first fragment's payload bytes
        const opts = r() < 0.2 ? someOpts(r) : undefined;
        const aimed = how === 'overlap' ? { ...intent, name: 'tcp/80 then 22' } : intent;
        return {
          category: 'ipv4 fragments',
          intent: `${aimed.name} (${how})`,
          v: 4,
          build(t, id, rd) {
            const hdr = (/** @type {number} */ proto, /** @type {number} */ off, /** @type {boolean} */ mf, /** @type {Buffer} */ data) => eth(0x0800, ipv4({ src: A4.src, dst: A4.dst, proto, id, off, mf, opts }, data));
            if (how === 'overlap') {
              // the first fragment says port 80; a second one at offset 0 says 22 (RFC 1858's attack)
              const b80 = tcp({ sport: sportOf(index, rd), dport: 80, flags: SYN }).bytes(A4, t);
              const b22 = tcp({ sport: sportOf(index, rd), dport: 22, flags: SYN }).bytes(A4, t);
              return [hdr(6, 0, true, b80.subarray(0, 16)), hdr(6, 0, true, b22.subarray(0, 16)), hdr(6, 2, false, b22.subarray(16))];
            }
            const m = l4(4, rd);
            const body = m.bytes(A4, t, how === 'tiny first' ? 8 : 24);
            const at = how === 'tiny first' ? 8 : Math.min(split, body.length - 8);
            const f1 = hdr(m.proto, 0, true, body.subarray(0, at));
            const rest = [];
            for (let o = at; o < body.length; o += 16) rest.push(hdr(m.proto, o / 8, o + 16 < body.length, body.subarray(o, o + 16)));
            if (how === 'first only') return [f1];
            if (how === 'non-first only') return rest;
            if (how === 'reversed') return [...rest.reverse(), f1];
            if (how === 'duplicate first') return [f1, f1, ...rest];
            return [f1, ...rest];
          },
        };
      }

      case 'ipv6 extension headers': {
        const how = weighted(r, [[5, 'chain'], [2, '9+ headers'], [2, 'past 1024 bytes']]);
        /** @type {Ext[]} */
        let exts;
        if (how === 'chain') exts = someExts(r);
        else if (how === '9+ headers') exts = Array.from({ length: 9 + int(r, 8) }, () => ({ type: 60, size: 8 }));
        else {
          // few headers, long ones: the upper layer starts beyond the frame's first 1,024 bytes
          const total = 1040 + 8 * int(r, 40);
          exts = [];
          for (let left = total; left > 0; left -= 512) exts.push({ type: 60, size: Math.min(512, left) });
        }
        const cat6 = how === 'chain' ? 'ipv6 extension headers' : `ipv6 extension headers, ${how}`;
        return one(cat6, (t, id, rd) => eth(0x86dd, packet(6, l4(6, rd), t, id, { exts })), 6);
      }

      case 'ipv6 fragments': {
        const how = pick(r, ['complete', 'complete', 'first only', 'non-first only', 'overlap', 'headers split', 'reversed']);
        const pre = r() < 0.3 ? someExts(r).filter((e) => e.type !== 44) : [];
        return {
          category: 'ipv6 fragments',
          intent: `${how === 'overlap' ? 'tcp/80 then 22' : intent.name} (${how})`,
          v: 6,
          build(t, _id, rd) {
            const frag = (/** @type {number} */ nh, /** @type {number} */ off, /** @type {boolean} */ m, /** @type {Buffer} */ data, /** @type {Ext[]} */ before = pre) => {
              const exts = [...before, { type: 44, fragOff: off / 8, fragM: m }];
              return eth(0x86dd, ipv6({ src: A6.src, dst: A6.dst, nh: exts[0].type }, cat(chain(exts, nh, t), data)));
            };
            if (how === 'overlap') {
              const b80 = tcp({ sport: sportOf(index, rd), dport: 80, flags: SYN }).bytes(A6, t);
              const b22 = tcp({ sport: sportOf(index, rd), dport: 22, flags: SYN }).bytes(A6, t);
              return [frag(6, 0, true, b80.subarray(0, 16)), frag(6, 0, true, b22.subarray(0, 16)), frag(6, 16, false, b22.subarray(16))];
            }
            const m = l4(6, rd);
            if (how === 'headers split') {
              // the upper-layer header in the second fragment (RFC 7112 says drop): a destination
              // options header is all the first fragment holds
              const dst = extBytes({ type: 60, size: 16 }, m.proto, t);
              const body = cat(dst, m.bytes(A6, t));
              return [frag(60, 0, true, body.subarray(0, 16)), frag(60, 16, false, body.subarray(16))];
            }
            const body = m.bytes(A6, t, 24);
            const f1 = frag(m.proto, 0, true, body.subarray(0, 24));
            const f2 = frag(m.proto, 24, false, body.subarray(24));
            return how === 'first only' ? [f1] : how === 'non-first only' ? [f2] : how === 'reversed' ? [f2, f1] : [f1, f2];
          },
        };
      }

      case 'truncated': {
        // a packet cut short, or one whose length field claims more than the frame holds
        const base = weighted(r, [[3, 'plain'], [2, 'vlan'], [2, 'exts'], [1, 'opts']]);
        const st = base === 'vlan' ? Array.from({ length: 1 + int(r, 4) }, () => /** @type {[number, number]} */ ([0x8100, 0])) : [];
        const exts = base === 'exts' ? someExts(r) : undefined;
        const opts = base === 'opts' && v === 4 ? someOpts(r) : undefined;
        // lying: the IP length claims more than the frame holds; cut: the frame ends early, and
        // with fixed lengths the IP header agrees (the IP layer takes it, the headers after it are short)
        const how = weighted(r, [[3, 'lying'], [3, 'cut'], [4, 'fixed lengths']]);
        const cut = r();
        const delta = 8 + int(r, 200);
        return one(`truncated, ${how}`, (t, id, rd) => {
          const p = packet(v, l4(v, rd), t, id, { exts, opts, ...(how === 'lying' ? { v4: { lenDelta: delta }, v6: { lenDelta: delta } } : {}) });
          const f = Buffer.from(tagged(st, etherOf(v), p));
          if (how === 'lying') return f;
          const l3 = 14 + st.length * 4;
          const min = l3 + (how === 'cut' ? 0 : v === 4 ? 20 + (opts?.length ?? 0) : 40);
          const g = f.subarray(0, Math.max(min, min + Math.floor(cut * (f.length - min - 1))));
          if (how === 'fixed lengths' && v === 4) {
            g.writeUInt16BE(g.length - l3, l3 + 2);
            g.writeUInt16BE(0, l3 + 10);
            g.writeUInt16BE(csum(g.subarray(l3, l3 + (g[l3] & 15) * 4)), l3 + 10);
          } else if (how === 'fixed lengths') {
            g.writeUInt16BE(g.length - l3 - 40, l3 + 4);
          }
          return g;
        });
      }

      case 'icmp types': {
        const type = pick(r, v === 4 ? ICMP4_TYPES : ICMP6_TYPES);
        const code = r() < 0.8 ? 0 : int(r, 256);
        const nd = v === 6 && type >= 133 && type <= 137;
        const errQuote = (/** @type {number} */ t, /** @type {number} */ id, /** @type {number} */ rd) => (v === 4 ? ipv4({ src: A4.dst, dst: A4.src, proto: 17, id }, udp({ sport: 53, dport: sportOf(index, rd) }).bytes(A4, t)) : ipv6({ src: A6.dst, dst: A6.src, nh: 17 }, udp({ sport: 53, dport: sportOf(index, rd) }).bytes(A6, t)));
        const multicast = nd && type === 135 && r() < 0.5;
        return one(
          v === 4 ? 'icmp types' : nd ? 'icmpv6 neighbour discovery' : 'icmpv6 types',
          (t, id, rd) => {
            // NS/NA carry a target address; errors quote a packet; the rest some bytes
            const quotes = v === 4 ? [3, 4, 11, 12].includes(type) : type >= 1 && type <= 4;
            const body = nd && (type === 135 || type === 136) ? cat(A6.dst, u8(1, 1), smac) : quotes ? errQuote(t, id, rd) : Buffer.alloc(8, 0x61);
            const m = icmp({ type, code, body, copy: !nd && !quotes })(v);
            if (v === 4) return eth(0x0800, packet(4, m, t, id));
            if (!multicast) return eth(0x86dd, packet(6, m, t, id, { v6: { hlim: nd ? 255 : 64 } }));
            // to the target's solicited-node group, as a real solicitation goes
            const sn = cat(Buffer.from('ff020000000000000000000001ff', 'hex'), A6.dst.subarray(13));
            const a = { v: /** @type {const} */ (6), src: A6.src, dst: sn };
            return cat(Buffer.from([0x33, 0x33, 0xff, ...A6.dst.subarray(13)]), smac, u16(0x86dd), ipv6({ src: a.src, dst: sn, nh: 58, hlim: 255 }, m.bytes(a, t)));
          },
          v,
          `${v === 4 ? 'icmp' : 'icmpv6'} type ${type}${code ? ` code ${code}` : ''}`,
        );
      }

      case 'encapsulation': {
        const how = pick(r, ['ipip', 'gre', '6in4', '4in6', '6in6', 'gre6', 'vxlan']);
        const innerV = /** @type {4|6} */ (how === '6in4' || how === '6in6' ? 6 : how === 'vxlan' || how === 'gre' || how === 'gre6' ? v : 4);
        const outerV = /** @type {4|6} */ (how === 'ipip' || how === '6in4' || how === 'gre' ? 4 : how === 'vxlan' ? v : 6);
        return one(
          'encapsulation',
          (t, id, rd) => {
            const inner = packet(innerV, l4(innerV, rd), t, id);
            /** @type {L4} */
            let outer;
            if (how === 'gre' || how === 'gre6') outer = { proto: 47, bytes: () => cat(u16(0x2000), u16(etherOf(innerV)), u32(t), inner) };
            else if (how === 'vxlan') outer = udp({ sport: sportOf(index, rd), dport: 4789, untagged: true, payload: cat(u32(0x08000000), u32(42 << 8), eth(etherOf(innerV), inner)) });
            else outer = { proto: innerV === 4 ? 4 : 41, bytes: () => inner };
            return eth(etherOf(outerV), packet(outerV, outer, t, id));
          },
          outerV,
          `${how}: ${intent.name}`,
        );
      }

      case 'checksums': {
        // a bad upper-layer checksum (the stack still hands IPv4 ones to raw sockets, then drops
        // them) or a bad IPv4 header checksum (dropped before that), or a hop limit of 0 or 1
        const how = weighted(r, [[4, 'upper layer'], [2, 'ipv4 header'], [1, 'ttl 0'], [1, 'ttl 1']]);
        const vv = how === 'upper layer' ? v : 4;
        const at = /** @type {Record<number, number>} */ ({ 6: 16, 17: 6, 1: 2, 58: 2 });
        return one(
          `checksums and ttl, ${how}`,
          (t, id, rd) => {
            const m = l4(vv, rd);
            /** @type {L4} */
            const spoilt = { proto: m.proto, bytes: (a, tg, x) => { const b = Buffer.from(m.bytes(a, tg, x)); if (at[m.proto] !== undefined && b.length > at[m.proto] + 1) b[at[m.proto]] ^= 0x5a; return b; } };
            const v4 = how === 'ipv4 header' ? { badSum: true } : how === 'ttl 0' ? { ttl: 0 } : how === 'ttl 1' ? { ttl: 1 } : {};
            return eth(etherOf(vv), packet(vv, how === 'upper layer' ? spoilt : m, t, id, { v4 }));
          },
          vv,
        );
      }

      default: {
        // mutated: a plain or tagged frame with bytes of its first 64 flipped
        const st = r() < 0.4 ? Array.from({ length: 1 + int(r, 3) }, () => /** @type {[number, number]} */ ([0x8100, 0])) : [];
        const flips = Array.from({ length: 1 + int(r, 3) }, () => [12 + int(r, 60), 1 + int(r, 255)]);
        return one('mutated', (t, id, rd) => {
          const f = Buffer.from(tagged(st, etherOf(v), packet(v, l4(v, rd), t, id)));
          for (const [at, x] of flips) if (at < f.length) f[at] ^= x;
          return f;
        });
      }
    }
  }
  return { makeCase };
}
