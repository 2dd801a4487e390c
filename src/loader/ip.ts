// SPDX-License-Identifier: Apache-2.0
// IPv6 text <-> 16 bytes, for every datapath (the filter's rules, the balancer's addresses): node's
// net.isIPv6 says what is an address, this only converts it.
import { isIPv6 } from 'node:net';

/** The 16 bytes (network order) of an IPv6 address, or null when `s` is not one (a zone id, `%eth0`, is not). */
export function ipv6Bytes(s: string): Uint8Array | null {
  if (!isIPv6(s) || s.includes('%')) return null;
  let text = s;
  // an embedded IPv4 tail (::ffff:1.2.3.4) becomes the last two groups
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const q = tail[1].split('.').map(Number);
    text = `${text.slice(0, -tail[1].length)}${((q[0] << 8) | q[1]).toString(16)}:${((q[2] << 8) | q[3]).toString(16)}`;
  }
  const [head, rest] = text.split('::');
  const h = head ? head.split(':') : [];
  const r = rest ? rest.split(':') : [];
  const groups = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - r.length).fill('0'), ...r];
  const b = new Uint8Array(16);
  groups.forEach((g, i) => {
    const w = parseInt(g, 16);
    b[i * 2] = w >> 8;
    b[i * 2 + 1] = w & 0xff;
  });
  return b;
}

/** RFC 5952: lower case, the longest run of two or more zero groups as ::, the first on a tie. */
export function ipv6Text(b: Uint8Array): string {
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
