// SPDX-License-Identifier: Apache-2.0
// Addresses as the balancer's maps hold them: 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d),
// so one service map serves connect4 and connect6 (a dual-stack socket dialling ::ffff:VIP finds the
// IPv4 service). People see IPv4 dotted and IPv6 in RFC 5952 form.
import { isIPv4, isIPv6 } from 'node:net';

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

function v6Bytes(s: string): Uint8Array {
  let text = s;
  const words: number[] = [];
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes the last two groups.
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const q = tail[1].split('.').map(Number);
    text = `${text.slice(0, -tail[1].length)}${((q[0] << 8) | q[1]).toString(16)}:${((q[2] << 8) | q[3]).toString(16)}`;
  }
  const [head, rest] = text.split('::');
  const h = head ? head.split(':') : [];
  const r = rest === undefined ? [] : rest ? rest.split(':') : [];
  const fill = rest === undefined ? 0 : 8 - h.length - r.length;
  for (const g of h) words.push(parseInt(g, 16));
  for (let i = 0; i < fill; i++) words.push(0);
  for (const g of r) words.push(parseInt(g, 16));
  const b = new Uint8Array(16);
  words.forEach((w, i) => {
    b[i * 2] = w >> 8;
    b[i * 2 + 1] = w & 0xff;
  });
  return b;
}

/** RFC 5952: lower case, the longest run of two or more zero groups as ::, the first on a tie. */
function v6Text(b: Uint8Array): string {
  const w = Array.from({ length: 8 }, (_, i) => (b[i * 2] << 8) | b[i * 2 + 1]);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(w);
  return `${hex(w.slice(0, best))}::${hex(w.slice(best + bestLen))}`;
}

/** The 16 bytes as people write them. */
export function ipText(b: Uint8Array): string {
  if (isMapped4(b)) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return v6Text(b);
}

/** An address, or null when `s` is not one. IPv4-mapped IPv6 is IPv4 (that is what it reaches). */
export function parseIp(s: string): Ip | null {
  if (isIPv4(s)) {
    const bytes = v4Bytes(s);
    return { family: 4, bytes, text: ipText(bytes) };
  }
  if (isIPv6(s) && !s.includes('%')) {
    const bytes = v6Bytes(s);
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
