// SPDX-License-Identifier: Apache-2.0
// The shipped Grafana dashboard against the code: every PromQL names metrics the code registers
// (so a renamed metric breaks this test, not a user's dashboard), and every metric has a panel.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { packageDir } from '../../src/loader/paths.js';
import { apiMetrics } from '../../src/metrics/api.js';
import { registerBpfMetrics } from '../../src/metrics/bpf.js';
import { registerFilterMetrics } from '../../src/metrics/filter.js';
import { registerLbMetrics } from '../../src/metrics/lb.js';
import { registerTraceStreamMetrics, traceMetrics } from '../../src/metrics/trace.js';

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos?: { h: number; w: number; x: number; y: number };
  targets?: Array<{ expr: string; refId: string }>;
}

const dashboard = JSON.parse(readFileSync(join(packageDir(), 'tools', 'grafana', 'ebpfnet-dashboard.json'), 'utf8')) as {
  title: string;
  uid: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; definition?: string }> };
};

/** Every series name the metrics code registers, with a histogram's _bucket, _sum and _count. */
async function registered(): Promise<Set<string>> {
  const r = new Registry();
  registerFilterMetrics(r, () => []);
  registerLbMetrics(r, () => []);
  traceMetrics(r, [], () => 0);
  registerTraceStreamMetrics(r, () => ({ clients: 0, dropped: 0 }));
  registerBpfMetrics(r, () => [], () => false);
  apiMetrics(r);
  const names = new Set<string>();
  for (const m of await r.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
  }
  return names;
}

const exprs = (): Array<{ panel: string; expr: string }> => [
  ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr }))),
  ...dashboard.templating.list.filter((v) => v.definition).map((v) => ({ panel: `variable ${v.name}`, expr: v.definition! })),
];
const metricsIn = (expr: string): string[] => expr.match(/\bebpfnet_[a-z0-9_]+/g) ?? [];

describe('grafana dashboard', () => {
  it('every PromQL names only metrics the code registers', async () => {
    const known = await registered();
    const all = exprs();
    expect(all.length).toBeGreaterThan(10);
    for (const { panel, expr } of all) {
      const used = metricsIn(expr);
      expect(used.length, `${panel}: ${expr}`).toBeGreaterThan(0);
      for (const m of used) expect(known.has(m), `${panel}: ${m} is not a metric the code registers`).toBe(true);
      // brackets balance: a typo here would show as an empty panel, not an error
      for (const [o, c] of [['(', ')'], ['{', '}'], ['[', ']']]) expect(expr.split(o).length, `${panel}: ${expr}`).toBe(expr.split(c).length);
      // in panels, counters are only ever used through rate(): their raw values restart with the kernel's
      if (panel.startsWith('variable ')) continue;
      for (const m of used.filter((x) => x.endsWith('_total') || /_(bucket|sum|count)$/.test(x))) {
        expect(expr, `${panel}: ${m} outside rate()`).toMatch(new RegExp(`rate\\(${m}[{\\[]`));
      }
    }
  });

  it('every metric the code registers has a panel; panels are well formed', async () => {
    const used = new Set(exprs().flatMap((e) => metricsIn(e.expr)).map((m) => m.replace(/_(bucket|sum|count)$/, '')));
    const known = [...(await registered())].filter((m) => !/_(bucket|sum|count)$/.test(m));
    expect(known.filter((m) => !used.has(m))).toEqual([]);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) {
      expect(p.gridPos, p.title).toBeDefined();
      expect(p.gridPos!.x + p.gridPos!.w, p.title).toBeLessThanOrEqual(24);
      if (p.type !== 'row') expect(p.targets?.length, p.title).toBeGreaterThan(0);
    }
    expect(dashboard.uid).toBe('ebpfnet-agent');
  });
});
