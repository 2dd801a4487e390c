// SPDX-License-Identifier: Apache-2.0
// The connection table's size and numbers (issue 15): how big flt_ct is (--ct-max, filter.ctMax),
// the events the programs count in flt_ct_stats (maps/filter.json FLT_CTS_*), and the evictions
// derived from them. The one list of those numbers' names, read by `filter conntrack`, `status`,
// the metrics and the agent. Pure.
import { EbpfnetError } from '../errors.js';
import * as F from '../gen/filter.js';

/**
 * The default size: netfilter's own default nf_conntrack_max on a 64-bit host with more than 4 GiB
 * (262,144). The LRU hash preallocates every element: 120 bytes each with its bucket (the kernel's
 * memlock figure for the map: 40-byte key, 16-byte value, the element's list heads), 30 MiB per
 * stateful interface, against netfilter's ~300 bytes per connection allocated as they come; a
 * stateless filter gets the smallest table instead (it never writes it).
 */
export const CT_DEFAULT_MAX = F.FLT_CT.maxEntries;
export const CT_MIN = F.FLT_CT_SIZE_MIN;
export const CT_MAX = F.FLT_CT_SIZE_MAX;

/** The events counted in the kernel (flt_ct_stats slots), in the order they are shown. */
export const CT_TABLE_STATS = [
  { name: 'inserts', slot: F.FLT_CTS_INSERTS, help: 'Flows the connection table took in (a flow not there before).' },
  { name: 'expiries', slot: F.FLT_CTS_EXPIRIES, help: 'Flows found past their timeout and removed (or replaced by a new connection on the same ports).' },
  { name: 'resets', slot: F.FLT_CTS_RESETS, help: 'Flows a TCP RST ended (removed at once).' },
  {
    name: 'misses',
    slot: F.FLT_CTS_MISSES,
    help: 'Inbound packets that can only belong to a connection (TCP other than an opening SYN, ICMP echo replies) for which the table held no live flow: judged by the rules instead (an evicted flow\'s packets are among them).',
  },
] as const;
export type CtTableStat = (typeof CT_TABLE_STATS)[number]['name'];

/** A connection table's size, fill and events: the JSON of `filter conntrack`, `status` and the API. */
export interface CtTableView {
  maxEntries: number;
  entries: number;
  inserts: number;
  expiries: number;
  resets: number;
  /** live flows the LRU pushed out to make room for new ones (the table was full) */
  evictions: number;
  misses: number;
}

/**
 * The view of one reading. Evictions: every flow that entered (inserts) left by expiry, reset or
 * eviction, or is still there, so evictions = inserts - expiries - resets - entries. Exact when the
 * table is quiet; while flows come and go the reading can be off by the ones that moved during
 * it (the caller reads the counters on both sides of the count: ctTableReading), never below 0.
 */
export function ctTableView(maxEntries: number, entries: number, counts: Record<CtTableStat, bigint>): CtTableView {
  const ev = counts.inserts - counts.expiries - counts.resets - BigInt(entries);
  return {
    maxEntries,
    entries,
    inserts: Number(counts.inserts),
    expiries: Number(counts.expiries),
    resets: Number(counts.resets),
    evictions: ev > 0n ? Number(ev) : 0,
    misses: Number(counts.misses),
  };
}

/**
 * Reads counters, the entry count, then the counters again, until both readings of the counters
 * agree (at most `tries`), so a quiet table gives exact evictions; a busy one the last reading.
 */
export function ctTableReading(maxEntries: number, read: () => Record<CtTableStat, bigint>, count: () => number, tries = 3): CtTableView {
  let before = read();
  for (let i = 1; ; i++) {
    const entries = count();
    const after = read();
    if (i >= tries || CT_TABLE_STATS.every((s) => after[s.name] === before[s.name])) return ctTableView(maxEntries, entries, after);
    before = after;
  }
}

const n = (x: number): string => x.toLocaleString('en-US');

/** One line: `1,234 of 262,144 entries (0.5%); 5,000 inserts, 3,700 expiries, 60 resets, 6 evictions, 12 misses`. */
export function ctTableLine(t: CtTableView): string {
  const pct = t.maxEntries ? (100 * t.entries) / t.maxEntries : 0;
  const full = t.evictions ? ' (the table filled: the least recently used flows were evicted; raise --ct-max)' : '';
  return `${n(t.entries)} of ${n(t.maxEntries)} entries (${pct < 10 && pct > 0 ? pct.toFixed(1) : Math.round(pct)}%); ${n(t.inserts)} inserts, ${n(t.expiries)} expiries, ${n(t.resets)} resets, ${n(t.evictions)} evictions, ${n(t.misses)} misses${full}`;
}

/**
 * A table size from `--ct-max` or `filter.ctMax` (a number or its text, `262144` or `262,144` not:
 * digits only), or a one-line usage error naming `what` and the range.
 */
export function parseCtMax(v: unknown, what = '--ct-max'): number {
  const x = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v.trim()) : NaN;
  if (!Number.isSafeInteger(x) || x < CT_MIN || x > CT_MAX) {
    const shown = typeof v === 'string' ? `'${v}'` : String(v);
    throw new EbpfnetError('EBPFNET_USAGE', `parse ${what}`, `${shown} is not a whole number of flows from ${n(CT_MIN)} to ${n(CT_MAX)}`, { hint: `the default is ${n(CT_DEFAULT_MAX)} (netfilter's nf_conntrack_max on a host with more than 4 GiB)` });
  }
  return x;
}

/** What `--ct-max`/`filter.ctMax` asked of a pinned table that keeps its own size (maps cannot be resized); null when they agree. */
export function ctMaxNote(ifname: string, asked: number, pinned: number): string | null {
  if (asked === pinned) return null;
  return `${ifname}: the pinned connection table keeps its ${n(pinned)} entries (asked for ${n(asked)}); a new size takes effect when the filter is loaded again (ebpfnet unload --iface ${ifname}, then start it): its tracked flows would be lost`;
}
