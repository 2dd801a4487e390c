// SPDX-License-Identifier: Apache-2.0
// Addresses as the balancer's maps hold them: 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d),
// so one service map serves connect4 and connect6 (a dual-stack socket dialling ::ffff:VIP finds the
// IPv4 service). People see IPv4 dotted and IPv6 in RFC 5952 form.
import { ipv6Bytes, ipv6Text } from '../loader/ip.js';

export type Family = 4 | 6;

export interface Ip {
  family: Family;
  /** 16 bytes, network order; IPv4 mapped */
  bytes: Uint8Array;
  /** canonical text: dotted IPv4, compressed lower-case IPv6 */
  text: string;
}

const MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

export function isMapped4(b: Uint8Array): boolean {
  for (let i = 0; i < 12; i++) if (b[i] !== MAPPED_PREFIX[i]) return false;
  return true;
}

// IPv4 addresses' 16 bytes are views of shared slabs: a Uint8Array of its own costs 233 bytes of V8
// heap, a view 105, and the slab lies outside the heap the young-generation collector copies (a
// 10,000-service file holds 20,000 addresses). A slab lives while any of its views does: at most
// SLAB bytes held for one long-lived address.
const SLAB = 16 * 1024;
let slab = new Uint8Array(SLAB);
let slabUsed = 0;

function addrBytes(): Uint8Array {
  if (slabUsed === SLAB) {
    slab = new Uint8Array(SLAB);
    slabUsed = 0;
  }
  const b = slab.subarray(slabUsed, slabUsed + 16);
  slabUsed += 16;
  return b;
}

/**
 * Dotted IPv4 in its one canonical form (what node's isIPv4 accepts: four decimal octets of at most
 * 255, no leading zeros) as IPv4-mapped bytes, or null. Read character by character: `lb apply`
 * parses every VIP and backend of a file, and in a fresh process this runs before V8 optimizes
 * anything, so split/map/Number per octet was a good part of parsing 10,000 services.
 */
function v4Bytes(s: string): Uint8Array | null {
  const n = s.length;
  if (n < 7 || n > 15) return null;
  let addr = 0;
  let octets = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : 46; // the end closes the last octet like a '.'
    if (c === 46) {
      if (digits === 0 || octets === 4) return null;
      addr = addr * 256 + value;
      octets++;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && value === 0) return null; // a leading zero
      value = value * 10 + (c - 48);
      if (++digits > 3 || value > 255) return null;
    } else return null;
  }
  if (octets !== 4) return null;
  const b = addrBytes();
  b[10] = 0xff;
  b[11] = 0xff;
  b[12] = addr >>> 24;
  b[13] = (addr >>> 16) & 0xff;
  b[14] = (addr >>> 8) & 0xff;
  b[15] = addr & 0xff;
  return b;
}

/** The 16 bytes as people write them. */
export function ipText(b: Uint8Array): string {
  if (isMapped4(b)) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return ipv6Text(b);
}

/** An address, or null when `s` is not one. IPv4-mapped IPv6 is IPv4 (that is what it reaches). */
export function parseIp(s: string): Ip | null {
  const v4 = v4Bytes(s);
  // canonical already: the text is the input
  if (v4) return { family: 4, bytes: v4, text: s };
  const bytes = ipv6Bytes(s);
  if (bytes) {
    return { family: isMapped4(bytes) ? 4 : 6, bytes, text: ipText(bytes) };
  }
  return null;
}

/** `10.0.0.1:80` or `[fd00::1]:80` */
export const hostPort = (ip: Ip | Uint8Array, port: number): string => {
  const text = ip instanceof Uint8Array ? ipText(ip) : ip.text;
  const v6 = ip instanceof Uint8Array ? !isMapped4(ip) : ip.family === 6;
  // join, not a template: a flat string (a template makes a rope), and the agent keeps one per backend
  return v6 ? ['[', text, ']:', port].join('') : [text, port].join(':');
};

export const familyOf = (b: Uint8Array): Family => (isMapped4(b) ? 4 : 6);
