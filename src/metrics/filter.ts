// SPDX-License-Identifier: Apache-2.0
// ebpfnet_filter_packets_total / _bytes_total{interface, rule, action}: read from the kernel's
// per-CPU counters at scrape time (summed over CPUs), so the numbers are exactly the kernel's.
// A stateful filter's connection table (ct-table.ts): ebpfnet_filter_ct_entries and
// _ct_max_entries{interface}, and ebpfnet_filter_ct_<event>_total{interface} for its inserts,
// expiries, resets, misses and evictions.
import type { Registry } from 'prom-client';
import type { FilterCounters } from '../filter/datapath.js';
import { CT_TABLE_STATS, type CtTableView } from '../filter/ct-table.js';
import { FILTER_STATS } from '../filter/stats.js';
import { computedCounter, computedGauge } from './computed.js';

export interface FilterSource {
  ifname: string;
  counters(opts?: { countedOnlyAbove?: number }): FilterCounters;
  /** the connection table's reading; absent or null: a stateless filter (no series) */
  ctTable?(): CtTableView | null;
  /** connections are tracked there now (ebpfnet_filter_stateful); absent: not said */
  stateful?: () => boolean;
}

/** The connection table's metrics: the events the kernel counts, and the evictions derived from them. */
export const CT_METRICS = [
  ...CT_TABLE_STATS.map((s) => ({ key: s.name, name: `ebpfnet_filter_ct_${s.name}_total`, help: s.help })),
  {
    key: 'evictions' as const,
    name: 'ebpfnet_filter_ct_evictions_total',
    help: 'Live flows the connection table pushed out (least recently used first) to take a new one because it was full; their next packets are judged by the rules (see misses). Raise --ct-max (filter.ctMax) if it grows.',
  },
];

/** The rows one interface contributes: each rule, the default policy, and what never reached a rule. */
export function filterRows(c: Omit<FilterCounters, 'total'>): Array<{ rule: string; action: string; packets: bigint; bytes: bigint }> {
  return [
    ...c.rules.map((r) => ({ rule: r.rule.replace(/^(allow|deny) /, ''), action: r.action, packets: r.packets, bytes: r.bytes })),
    ...FILTER_STATS.flatMap((s) => (s.row ? [{ ...s.row, ...c[s.name] }] : [])),
  ];
}

/**
 * Policies up to this many rules export a series for every rule; above it only rules that have
 * counted a packet do (each appears with its first packet), so a 100,000-rule blocklist that
 * mostly never matches does not become 200,000 series per scrape (Prometheus: keep cardinality
 * bounded). The non-rule rows (default, malformed, ...) are always exported.
 */
export const ALL_RULES_UP_TO = 10_000;

type Labels = { interface: string; rule: string; action: string };
/** One exported series pair: its labels (one object, shared by the packets and bytes samples) and values. */
type Row = { labels: Labels; packets: number; bytes: number };

/**
 * What one scrape exports: every row of small policies; of large ones, the rules with packets.
 * Made with as little as possible per rule (one label object, numbers, a slice for the rule's
 * text): 10,000 rules are 20,000 samples a scrape, and their garbage was most of its time.
 */
export function exportedRows(sources: FilterSource[]): Row[] {
  const rows: Row[] = [];
  for (const s of sources) {
    const c = s.counters({ countedOnlyAbove: ALL_RULES_UP_TO });
    const all = c.total <= ALL_RULES_UP_TO;
    // The fixed rows (default, malformed, ...). A rule whose labels equal a fixed row's (`deny arp`
    // and the arp row) shares its series: the counts add up.
    const fixed = filterRows({ ...c, rules: [] }).map((r): Row => ({ labels: { interface: s.ifname, rule: r.rule, action: r.action }, packets: Number(r.packets), bytes: Number(r.bytes) }));
    const twins = new Map(fixed.map((r) => [`${r.labels.rule} ${r.labels.action}`, r]));
    for (const r of c.rules) {
      if (!all && r.packets === 0n) continue;
      const rule = r.rule.slice(r.rule.indexOf(' ') + 1);
      const twin = twins.size && twins.get(`${rule} ${r.action}`);
      if (twin) {
        twin.packets += Number(r.packets);
        twin.bytes += Number(r.bytes);
      } else rows.push({ labels: { interface: s.ifname, rule, action: r.action }, packets: Number(r.packets), bytes: Number(r.bytes) });
    }
    rows.push(...fixed);
  }
  return rows;
}

/**
 * The connection tables' metrics. One reading per scrape (a count of the table's entries, ~90 ms
 * at 262,144) serves them all. Evictions are derived (ct-table.ts) and could read a little lower
 * in a busy moment than in the last scrape: kept at the highest seen, so the counter never falls.
 */
function registerCtMetrics(registry: Registry, sources: () => FilterSource[]): void {
  let tables: Array<{ ifname: string; t: CtTableView }> = [];
  const highest = new Map<string, number>();
  const labelNames = ['interface'] as const;
  computedGauge(registry, { name: 'ebpfnet_filter_ct_entries', help: 'Flows in the connection table (expired ones too, until a packet or an eviction removes them).', labelNames }, () => {
    tables = sources().flatMap((s) => {
      const t = s.ctTable?.();
      if (!t) return [];
      const ev = Math.max(t.evictions, highest.get(s.ifname) ?? 0);
      highest.set(s.ifname, ev);
      return [{ ifname: s.ifname, t: { ...t, evictions: ev } }];
    });
    return tables.map(({ ifname, t }) => ({ labels: { interface: ifname }, value: t.entries }));
  });
  computedGauge(registry, { name: 'ebpfnet_filter_ct_max_entries', help: 'The most flows the connection table holds (--ct-max, filter.ctMax).', labelNames }, () =>
    tables.map(({ ifname, t }) => ({ labels: { interface: ifname }, value: t.maxEntries })),
  );
  for (const m of CT_METRICS) computedCounter(registry, { name: m.name, help: m.help, labelNames }, () => tables.map(({ ifname, t }) => ({ labels: { interface: ifname }, value: t[m.key] })));
}

export function registerFilterMetrics(registry: Registry, sources: () => FilterSource[]): void {
  registerCtMetrics(registry, sources);
  const labelNames = ['interface', 'rule', 'action'] as const;
  // One read of the kernel per scrape serves both metrics: packets reads, bytes reuses it.
  let rows: Row[] = [];
  computedCounter(
    registry,
    { name: 'ebpfnet_filter_packets_total', help: 'Packets the filter decided, per interface, rule and action (audit mode: what would have been dropped).', labelNames },
    () => (rows = exportedRows(sources())).map((r) => ({ labels: r.labels, value: r.packets })),
  );
  computedCounter(registry, { name: 'ebpfnet_filter_bytes_total', help: 'Bytes of the packets the filter decided, per interface, rule and action.', labelNames }, () => {
    const r = rows;
    rows = [];
    return r.map((x) => ({ labels: x.labels, value: x.bytes }));
  });
  computedGauge(registry, { name: 'ebpfnet_filter_stateful', help: 'Whether the filter on the interface tracks connections (1) or not (0).', labelNames: ['interface'] as const }, () =>
    sources().flatMap((s) => (s.stateful ? [{ labels: { interface: s.ifname }, value: s.stateful() ? 1 : 0 }] : [])),
  );
}
