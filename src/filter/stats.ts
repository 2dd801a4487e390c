// SPDX-License-Identifier: Apache-2.0
// The filter's statistics (what decided a packet when no rule did, and what it saw): the one list
// of their names, flt_stats slots and metric rows, read by the counters, the metrics, the model
// and the fuzzers. Pure.
import type { FilterCounters } from './datapath.js';
import * as F from '../gen/filter.js';

export const FILTER_STATS = [
  { name: 'defaultPass', slot: F.FLT_STAT_DEFAULT_PASS, row: { rule: 'default', action: 'allow' } },
  { name: 'defaultDrop', slot: F.FLT_STAT_DEFAULT_DROP, row: { rule: 'default', action: 'deny' } },
  { name: 'malformed', slot: F.FLT_STAT_MALFORMED, row: { rule: 'malformed', action: 'deny' } },
  /** deeper than the parser follows: more VLAN tags or IPv6 extension headers, headers past its reach */
  { name: 'tooDeep', slot: F.FLT_STAT_TOO_DEEP, row: { rule: 'too-deep', action: 'deny' } },
  { name: 'nonIp', slot: F.FLT_STAT_NON_IP, row: { rule: 'non-ip', action: 'allow' } },
  /** non-IP frames a default deny drops */
  { name: 'nonIpDrop', slot: F.FLT_STAT_NON_IP_DROP, row: { rule: 'non-ip', action: 'deny' } },
  { name: 'ndPass', slot: F.FLT_STAT_ND_PASS, row: { rule: 'neighbour-discovery', action: 'allow' } },
  { name: 'arpDrop', slot: F.FLT_STAT_ARP_DROP, row: { rule: 'arp', action: 'deny' } },
  /** packets of a tracked connection (state on): passed whatever the rules say, unless a deny rule decides */
  { name: 'established', slot: F.FLT_STAT_ESTABLISHED, row: { rule: 'established', action: 'allow' } },
  /** ICMP errors about a tracked connection (state on): fragmentation needed, unreachable, time exceeded */
  { name: 'related', slot: F.FLT_STAT_RELATED, row: { rule: 'related', action: 'allow' } },
  /** non-first fragments, whatever decided them (also counted where they were decided) */
  { name: 'fragments', slot: F.FLT_STAT_FRAGMENT, row: null },
  /** drops audit mode let through (also counted where they were decided) */
  { name: 'audit', slot: F.FLT_STAT_AUDIT, row: null },
] as const;

export type Stat = (typeof FILTER_STATS)[number]['name'];
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
): { rules: RuleCountView[]; default: { pass: CountView; drop: CountView } } & Record<'malformed' | 'tooDeep' | 'nonIp' | 'nonIpDrop' | 'neighbourDiscovery' | 'fragments' | 'audit' | 'arpDrop', CountView> {
  return {
    rules: c.rules.map((r, i) => {
      const { id, match } = ruleOf(r.rule, i);
      return { id, action: r.action, match, packets: Number(r.packets), bytes: Number(r.bytes) };
    }),
    default: { pass: countView(c.defaultPass), drop: countView(c.defaultDrop) },
    malformed: countView(c.malformed),
    tooDeep: countView(c.tooDeep),
    nonIp: countView(c.nonIp),
    nonIpDrop: countView(c.nonIpDrop),
    neighbourDiscovery: countView(c.ndPass),
    fragments: countView(c.fragments),
    audit: countView(c.audit),
    arpDrop: countView(c.arpDrop),
  };
}
