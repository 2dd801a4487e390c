// SPDX-License-Identifier: Apache-2.0
// ebpfnet_filter_packets_total / _bytes_total{interface, rule, action}: read from the kernel's
// per-CPU counters at scrape time (summed over CPUs), so the numbers are exactly the kernel's.
import { Counter, type Registry } from 'prom-client';
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

export function registerFilterMetrics(registry: Registry, sources: () => FilterSource[]): void {
  const labelNames = ['interface', 'rule', 'action'] as const;
  let rows: Array<{ ifname: string; rule: string; action: string; packets: bigint; bytes: bigint }> = [];
  // One read of the kernel per scrape serves both metrics.
  const refresh = (): void => {
    rows = sources().flatMap((s) => filterRows(s.counters()).map((r) => ({ ifname: s.ifname, ...r })));
  };
  new Counter({
    name: 'ebpfnet_filter_packets_total',
    help: 'Packets the filter decided, per interface, rule and action (audit mode: what would have been dropped).',
    labelNames,
    registers: [registry],
    collect() {
      refresh();
      this.reset();
      for (const r of rows) this.inc({ interface: r.ifname, rule: r.rule, action: r.action }, Number(r.packets));
    },
  });
  new Counter({
    name: 'ebpfnet_filter_bytes_total',
    help: 'Bytes of the packets the filter decided, per interface, rule and action.',
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const r of rows) this.inc({ interface: r.ifname, rule: r.rule, action: r.action }, Number(r.bytes));
    },
  });
}
