// SPDX-License-Identifier: Apache-2.0
// Addresses as the balancer's maps hold them: 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d),
// so one service map serves connect4 and connect6 (a dual-stack socket dialling ::ffff:VIP finds the
// IPv4 service). People see IPv4 dotted and IPv6 in RFC 5952 form.
import { isIPv4 } from 'node:net';
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
  return MAPPED_PREFIX.every((x, i) => b[i] === x);
}

function v4Bytes(s: string): Uint8Array {
  const b = new Uint8Array(16);
  b.set(MAPPED_PREFIX);
  s.split('.').forEach((p, i) => (b[12 + i] = Number(p)));
  return b;
}

/** The 16 bytes as people write them. */
export function ipText(b: Uint8Array): string {
  if (isMapped4(b)) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return ipv6Text(b);
}

/** An address, or null when `s` is not one. IPv4-mapped IPv6 is IPv4 (that is what it reaches). */
export function parseIp(s: string): Ip | null {
  if (isIPv4(s)) {
    const bytes = v4Bytes(s);
    return { family: 4, bytes, text: ipText(bytes) };
  }
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
