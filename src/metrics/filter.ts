// SPDX-License-Identifier: Apache-2.0
// ebpfnet_filter_packets_total / _bytes_total{interface, rule, action}: read from the kernel's
// per-CPU counters at scrape time (summed over CPUs), so the numbers are exactly the kernel's.
import { Counter, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { FilterCounters } from '../filter/datapath.js';

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

type Label = 'interface' | 'rule' | 'action';
type Row = { ifname: string; rule: string; action: string; packets: bigint; bytes: bigint };

/** What one scrape exports: every row of small policies; of large ones, the rules with packets. */
export function exportedRows(sources: FilterSource[]): Row[] {
  const rows: Row[] = [];
  for (const s of sources) {
    const c = s.counters();
    const all = c.rules.length <= ALL_RULES_UP_TO;
    // filterRows lists the rules first, then the fixed rows (default, malformed, ...)
    filterRows(c).forEach((r, i) => {
      if (all || i >= c.rules.length || r.packets > 0n) rows.push({ ifname: s.ifname, ...r });
    });
  }
  return rows;
}

/**
 * A counter whose samples are computed at scrape time from `rows`: no label set is stored between
 * scrapes (a prom-client Counter keeps one entry per label set it was ever incremented with).
 */
class RowCounter extends Counter<Label> {
  constructor(
    metric: { name: string; help: string },
    registry: Registry,
    private readonly read: () => Row[],
    private readonly field: 'packets' | 'bytes',
  ) {
    super({ ...metric, labelNames: ['interface', 'rule', 'action'], registers: [registry] });
  }

  /** the Counter's own name, help and type (it holds no values: nothing increments it), with the rows */
  override async get(): Promise<MetricObjectWithValues<MetricValue<Label>>> {
    const values = this.read().map((r) => ({ labels: { interface: r.ifname, rule: r.rule, action: r.action }, value: Number(r[this.field]) }));
    return { ...(await super.get()), values };
  }
}

export function registerFilterMetrics(registry: Registry, sources: () => FilterSource[]): void {
  // One read of the kernel per scrape serves both metrics: packets reads, bytes reuses it.
  let rows: Row[] = [];
  new RowCounter(
    { name: 'ebpfnet_filter_packets_total', help: 'Packets the filter decided, per interface, rule and action (audit mode: what would have been dropped).' },
    registry,
    () => (rows = exportedRows(sources())),
    'packets',
  );
  new RowCounter(
    { name: 'ebpfnet_filter_bytes_total', help: 'Bytes of the packets the filter decided, per interface, rule and action.' },
    registry,
    () => {
      const r = rows;
      rows = [];
      return r;
    },
    'bytes',
  );
}
