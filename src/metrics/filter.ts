// SPDX-License-Identifier: Apache-2.0
// ebpfnet_filter_packets_total / _bytes_total{interface, rule, action}: read from the kernel's
// per-CPU counters at scrape time (summed over CPUs), so the numbers are exactly the kernel's.
import type { Registry } from 'prom-client';
import type { FilterCounters } from '../filter/datapath.js';
import { computedCounter } from './computed.js';

export interface FilterSource {
  ifname: string;
  counters(): FilterCounters;
}

/** The rows one interface contributes: each rule, the default policy, and what never reached a rule. */
export function filterRows(c: FilterCounters): Array<{ rule: string; action: string; packets: bigint; bytes: bigint }> {
  return [
    ...c.rules.map((r) => ({ rule: r.rule.replace(/^(allow|deny) /, ''), action: r.action, packets: r.packets, bytes: r.bytes })),
    { rule: 'default', action: 'allow', ...c.defaultPass },
    { rule: 'default', action: 'deny', ...c.defaultDrop },
    { rule: 'malformed', action: 'deny', ...c.malformed },
    { rule: 'non-ip', action: 'allow', ...c.nonIp },
    { rule: 'neighbour-discovery', action: 'allow', ...c.ndPass },
    { rule: 'arp', action: 'deny', ...c.arpDrop },
  ];
}

/**
 * Policies up to this many rules export a series for every rule; above it only rules that have
 * counted a packet do (each appears with its first packet), so a 100,000-rule blocklist that
 * mostly never matches does not become 200,000 series per scrape (Prometheus: keep cardinality
 * bounded). The non-rule rows (default, malformed, ...) are always exported.
 */
export const ALL_RULES_UP_TO = 10_000;

type Row = { ifname: string; rule: string; action: string; packets: bigint; bytes: bigint };

/** What one scrape exports: every row of small policies; of large ones, the rules with packets. */
export function exportedRows(sources: FilterSource[]): Row[] {
  const rows: Row[] = [];
  for (const s of sources) {
    const c = s.counters();
    const all = c.rules.length <= ALL_RULES_UP_TO;
    // filterRows lists the rules first, then the fixed rows (default, malformed, ...). A rule whose
    // labels equal a fixed row's (`deny arp` and the arp row) shares its series: the counts add up.
    const out = filterRows(c);
    const fixed = new Map(out.slice(c.rules.length).map((r) => [`${r.rule} ${r.action}`, r]));
    const names = new Set(out.slice(c.rules.length).map((r) => r.rule));
    out.forEach((r, i) => {
      const twin = i < c.rules.length && names.has(r.rule) ? fixed.get(`${r.rule} ${r.action}`) : undefined;
      if (twin) {
        twin.packets += r.packets;
        twin.bytes += r.bytes;
      } else if (all || i >= c.rules.length || r.packets > 0n) rows.push({ ifname: s.ifname, ...r });
    });
  }
  return rows;
}

export function registerFilterMetrics(registry: Registry, sources: () => FilterSource[]): void {
  const labelNames = ['interface', 'rule', 'action'] as const;
  // One read of the kernel per scrape serves both metrics: packets reads, bytes reuses it.
  let rows: Row[] = [];
  const samples = (read: () => Row[], field: 'packets' | 'bytes') => () =>
    read().map((r) => ({ labels: { interface: r.ifname, rule: r.rule, action: r.action }, value: Number(r[field]) }));
  computedCounter(
    registry,
    { name: 'ebpfnet_filter_packets_total', help: 'Packets the filter decided, per interface, rule and action (audit mode: what would have been dropped).', labelNames },
    samples(() => (rows = exportedRows(sources())), 'packets'),
  );
  computedCounter(
    registry,
    { name: 'ebpfnet_filter_bytes_total', help: 'Bytes of the packets the filter decided, per interface, rule and action.', labelNames },
    samples(() => {
      const r = rows;
      rows = [];
      return r;
    }, 'bytes'),
  );
}
