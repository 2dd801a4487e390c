// SPDX-License-Identifier: Apache-2.0
// The filter's statistics (what decided a packet when no rule did, and what it saw): the one list
// of their names, flt_stats slots (from maps/filter.json), metric rows and JSON keys, read by the
// counters, the metrics, the API's schema, status -o json, the model and the fuzzers. Pure.
// `json`: the key in countersView (null: the two defaults, shown together as `default`).
import * as F from '../gen/filter.js';

export const FILTER_STATS = [
  { name: 'defaultPass', json: null, slot: F.FLT_STAT_DEFAULT_PASS, row: { rule: 'default', action: 'allow' } },
  { name: 'defaultDrop', json: null, slot: F.FLT_STAT_DEFAULT_DROP, row: { rule: 'default', action: 'deny' } },
  { name: 'malformed', json: 'malformed', slot: F.FLT_STAT_MALFORMED, row: { rule: 'malformed', action: 'deny' } },
  /** deeper than the parser follows: more VLAN tags or IPv6 extension headers, headers past its reach */
  { name: 'tooDeep', json: 'tooDeep', slot: F.FLT_STAT_TOO_DEEP, row: { rule: 'too-deep', action: 'deny' } },
  { name: 'nonIp', json: 'nonIp', slot: F.FLT_STAT_NON_IP, row: { rule: 'non-ip', action: 'allow' } },
  /** non-IP frames a default deny drops */
  { name: 'nonIpDrop', json: 'nonIpDrop', slot: F.FLT_STAT_NON_IP_DROP, row: { rule: 'non-ip', action: 'deny' } },
  { name: 'ndPass', json: 'neighbourDiscovery', slot: F.FLT_STAT_ND_PASS, row: { rule: 'neighbour-discovery', action: 'allow' } },
  { name: 'arpDrop', json: 'arpDrop', slot: F.FLT_STAT_ARP_DROP, row: { rule: 'arp', action: 'deny' } },
  /** packets of a tracked connection (state on): passed whatever the rules say, unless a deny rule decides */
  { name: 'established', json: 'established', slot: F.FLT_STAT_ESTABLISHED, row: { rule: 'established', action: 'allow' } },
  /** ICMP errors about a tracked connection (state on): fragmentation needed, unreachable, time exceeded */
  { name: 'related', json: 'related', slot: F.FLT_STAT_RELATED, row: { rule: 'related', action: 'allow' } },
  /** TCP segments of a tracked connection outside its window (state on): dropped whatever the rules say, the flow unchanged */
  { name: 'outOfWindow', json: 'outOfWindow', slot: F.FLT_STAT_OUT_OF_WINDOW, row: { rule: 'out-of-window', action: 'deny' } },
  /** non-first fragments, whatever decided them (also counted where they were decided) */
  { name: 'fragments', json: 'fragments', slot: F.FLT_STAT_FRAGMENT, row: null },
  /** drops audit mode let through (also counted where they were decided) */
  { name: 'audit', json: 'audit', slot: F.FLT_STAT_AUDIT, row: null },
] as const;

export type Stat = (typeof FILTER_STATS)[number]['name'];

export interface RuleCount {
  rule: string;
  action: 'allow' | 'deny';
  id: number;
  packets: bigint;
  bytes: bigint;
}

export interface RuleCounters {
  rules: RuleCount[];
  /** rules in the policy (more than `rules` holds when only the counted ones were asked for) */
  total: number;
}
/** The rules' counters and each statistic (FILTER_STATS), as a filter reads them from the kernel */
export type FilterCounters = RuleCounters & Record<Stat, F.FltCount>;
/** the JSON keys of the statistics that are not the default's */
export type StatJsonKey = NonNullable<(typeof FILTER_STATS)[number]['json']>;
export const STAT_JSON_KEYS: readonly StatJsonKey[] = FILTER_STATS.flatMap((s) => (s.json === null ? [] : [s.json]));
export const STAT_NAMES: readonly Stat[] = FILTER_STATS.map((s) => s.name);

/** A packet and byte count as JSON numbers (the kernel's u64 stays exact below 2^53). */
export interface CountView {
  packets: number;
  bytes: number;
}

/** One rule's counters as the API and `status -o json` show them. */
export interface RuleCountView extends CountView {
  id: number | null;
  action: 'allow' | 'deny';
  match: string;
}

const countView = (c: { packets: bigint; bytes: bigint }): CountView => ({ packets: Number(c.packets), bytes: Number(c.bytes) });

/**
 * A filter's counters as JSON: each rule (its id and match from `ruleOf`), the default, and what no
 * rule decided. The one shape of `GET /v1/filter/stats` per interface and of `status -o json`.
 */
export function countersView(
  c: Omit<FilterCounters, 'total'>,
  ruleOf: (text: string, i: number) => { id: number | null; match: string },
): { rules: RuleCountView[]; default: { pass: CountView; drop: CountView } } & Record<StatJsonKey, CountView> {
  const stats = {} as Record<StatJsonKey, CountView>;
  for (const s of FILTER_STATS) if (s.json !== null) stats[s.json] = countView(c[s.name]);
  return {
    rules: c.rules.map((r, i) => {
      const { id, match } = ruleOf(r.rule, i);
      return { id, action: r.action, match, packets: Number(r.packets), bytes: Number(r.bytes) };
    }),
    default: { pass: countView(c.defaultPass), drop: countView(c.defaultDrop) },
    ...stats,
  };
}
