// SPDX-License-Identifier: Apache-2.0
// A fingerprint of everything a pinned filter holds in the kernel: every entry of every map (per-CPU
// counters summed), read straight from the pins. Two equal fingerprints mean the kernel filters and
// counts exactly the same way; tests take one before hostile input and one after.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as F from '../../src/gen/filter.js';
import { openPinnedMap } from '../../src/loader/index.js';

/**
 * The pin directory of the filter on `ifname` in network namespace `ns` (default: the test's own),
 * in the layout by namespace inode and ifindex: /sys/fs/bpf/ebpfnet/filter/<netns>/<ifindex>.
 */
export function filterPinDir(ifname: string, ns?: string): string {
  const netns = statSync(ns ? `/run/netns/${ns}` : '/proc/self/ns/net').ino;
  const link = execFileSync('ip', [...(ns ? ['-n', ns] : []), '-o', 'link', 'show', 'dev', ifname], { encoding: 'utf8' });
  return join('/sys/fs/bpf/ebpfnet/filter', String(netns), link.slice(0, link.indexOf(':')));
}

const text = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? Buffer.from(x).toString('hex') : x));

/** map name -> sha256 of its sorted entries, plus the list of pin files. */
export function filterFingerprint(ifname: string): Record<string, string> {
  const dir = filterPinDir(ifname);
  const pins = readdirSync(dir).sort();
  const out: Record<string, string> = { pins: pins.join(',') };
  for (const layout of F.LAYOUT.maps) {
    // what the filter pins (the list above is part of the fingerprint): the connection table is
    // not pinned yet (issue 15)
    if (!pins.includes(layout.name)) continue;
    const m = openPinnedMap(join(dir, layout.name), layout as never);
    try {
      const rows = m.entries().map(([k, v]) => `${text(k)}=${text(v)}`).sort();
      out[layout.name] = `${rows.length}:${createHash('sha256').update(rows.join('\n')).digest('hex').slice(0, 16)}`;
    } finally {
      m.close();
    }
  }
  return out;
}
