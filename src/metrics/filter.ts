// SPDX-License-Identifier: Apache-2.0
// ebpfnet_filter_packets_total / _bytes_total{interface, rule, action}: read from the kernel's
// per-CPU counters at scrape time (summed over CPUs), so the numbers are exactly the kernel's.
import type { Registry } from 'prom-client';
import type { FilterCounters } from '../filter/datapath.js';
import { registerSeries } from './series.js';

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

export function registerFilterMetrics(registry: Registry, sources: () => FilterSource[]): void {
  const labelNames = ['interface', 'rule', 'action'] as const;
  let rows: Array<{ labels: string[]; packets: bigint; bytes: bigint }> = [];
  // One read of the kernel per scrape serves both metrics (the registry collects them in turn).
  registerSeries(registry, {
    name: 'ebpfnet_filter_packets_total',
    help: 'Packets the filter decided, per interface, rule and action (audit mode: what would have been dropped).',
    type: 'counter',
    labelNames,
    collect() {
      rows = sources().flatMap((s) => filterRows(s.counters()).map((r) => ({ labels: [s.ifname, r.rule, r.action], packets: r.packets, bytes: r.bytes })));
      return rows.map((r) => ({ labels: r.labels, value: Number(r.packets) }));
    },
  });
  registerSeries(registry, {
    name: 'ebpfnet_filter_bytes_total',
    help: 'Bytes of the packets the filter decided, per interface, rule and action.',
    type: 'counter',
    labelNames,
    collect: () => rows.map((r) => ({ labels: r.labels, value: Number(r.bytes) })),
  });
}
