// SPDX-License-Identifier: Apache-2.0
// The filter's Prometheus series: every rule of a policy up to ALL_RULES_UP_TO rules; above it only
// the rules that counted a packet, and always the non-rule rows (default, malformed, ...).
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { FilterCounters } from '../../src/filter/datapath.js';
import { ALL_RULES_UP_TO, registerFilterMetrics } from '../../src/metrics/filter.js';

const zero = { packets: 0n, bytes: 0n };
/** as FilterDatapath.counters answers: above `countedOnlyAbove` rules, only those that counted */
function counters(n: number, hit: Record<number, number>, opts: { countedOnlyAbove?: number } = {}): FilterCounters {
  const all = Array.from({ length: n }, (_, i) => ({ rule: `deny udp/${i + 1}`, action: 'deny' as const, id: i, packets: BigInt(hit[i] ?? 0), bytes: BigInt((hit[i] ?? 0) * 60) }));
  return {
    rules: n > (opts.countedOnlyAbove ?? Infinity) ? all.filter((r) => r.packets > 0n) : all,
    total: n,
    defaultPass: { packets: 5n, bytes: 300n },
    defaultDrop: zero,
    malformed: zero,
    nonIp: zero,
    ndPass: zero,
    fragments: zero,
    audit: zero,
    arpDrop: zero,
  };
}

/** Prometheus text -> `name{labels}` -> value */
function parseMetricsText(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

async function scrape(n: number, hit: Record<number, number>): Promise<Map<string, number>> {
  const registry = new Registry();
  registerFilterMetrics(registry, () => [{ ifname: 'eth9', counters: (o) => counters(n, hit, o) }]);
  return parseMetricsText(await registry.metrics());
}

describe('filter metrics', () => {
  it(`a policy of ${ALL_RULES_UP_TO} rules: a series per rule, zero or not, and the fixed rows`, async () => {
    const m = await scrape(ALL_RULES_UP_TO, { 3: 2 });
    const rules = [...m.keys()].filter((k) => k.startsWith('ebpfnet_filter_packets_total') && k.includes('udp/'));
    expect(rules.length).toBe(ALL_RULES_UP_TO);
    expect(m.get('ebpfnet_filter_packets_total{interface="eth9",rule="udp/4",action="deny"}')).toBe(2);
    expect(m.get('ebpfnet_filter_packets_total{interface="eth9",rule="udp/5",action="deny"}')).toBe(0);
    expect(m.get('ebpfnet_filter_bytes_total{interface="eth9",rule="udp/4",action="deny"}')).toBe(120);
    expect(m.get('ebpfnet_filter_packets_total{interface="eth9",rule="default",action="allow"}')).toBe(5);
  });

  it('a larger policy: only the rules that counted a packet, and every fixed row', async () => {
    const m = await scrape(ALL_RULES_UP_TO + 1, { 0: 1, 9999: 7, 10000: 3 });
    const series = (name: string) => [...m.keys()].filter((k) => k.startsWith(`${name}{`));
    expect(series('ebpfnet_filter_packets_total').filter((k) => k.includes('udp/')).sort()).toEqual(
      ['udp/1', 'udp/10000', 'udp/10001'].map((r) => `ebpfnet_filter_packets_total{interface="eth9",rule="${r}",action="deny"}`).sort(),
    );
    expect(m.get('ebpfnet_filter_bytes_total{interface="eth9",rule="udp/10001",action="deny"}')).toBe(180);
    for (const [rule, action] of [['default', 'allow'], ['default', 'deny'], ['malformed', 'deny'], ['non-ip', 'allow'], ['neighbour-discovery', 'allow'], ['arp', 'deny']]) {
      expect(m.has(`ebpfnet_filter_packets_total{interface="eth9",rule="${rule}",action="${action}"}`), rule).toBe(true);
      expect(m.has(`ebpfnet_filter_bytes_total{interface="eth9",rule="${rule}",action="${action}"}`), rule).toBe(true);
    }
  });

  it('a `deny arp` rule and the arp row are one series, their counts added', async () => {
    const c = counters(2, { 1: 4 });
    c.rules[1] = { ...c.rules[1], rule: 'deny arp' };
    c.arpDrop = { packets: 3n, bytes: 180n };
    const registry = new Registry();
    registerFilterMetrics(registry, () => [{ ifname: 'eth9', counters: () => c }]);
    const text = await registry.metrics();
    const lines = text.split('\n').filter((l) => l.startsWith('ebpfnet_filter_packets_total{interface="eth9",rule="arp",action="deny"}'));
    expect(lines).toEqual(['ebpfnet_filter_packets_total{interface="eth9",rule="arp",action="deny"} 7']);
  });
});
