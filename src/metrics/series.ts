// SPDX-License-Identifier: Apache-2.0
// A metric for label sets in the tens of thousands (the filter's per-rule counters with 10,000
// rules), registered in the same prom-client registry as every other metric. prom-client's Counter
// hashes the labels of every value it is given and the registry escapes and joins them again at
// every scrape: two thirds of a 10,000-rule scrape. Here each series' `name{labels}` is rendered
// once and kept while the series exists, and handed to the registry as the value's metricName
// (the field prom-client itself uses for a histogram's _bucket lines), so a scrape formats only
// the numbers. Prometheus text format only: in OpenMetrics, prom-client would append _total after
// the labels.
import type { Metric, Registry } from 'prom-client';

export interface SeriesSpec<L extends string> {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  labelNames: readonly L[];
  /** the series now: label values in labelNames' order, and the value */
  collect(): Array<{ labels: string[]; value: number }> | Promise<Array<{ labels: string[]; value: number }>>;
}

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

export function registerSeries<L extends string>(registry: Registry, spec: SeriesSpec<L>): void {
  let rendered = new Map<string, string>();
  const metric = {
    name: spec.name,
    help: spec.help,
    type: spec.type,
    aggregator: 'sum',
    labelNames: spec.labelNames,
    async get() {
      const rows = await spec.collect();
      const next = new Map<string, string>();
      const values = rows.map((r) => {
        const key = r.labels.join('\0');
        let metricName = next.get(key) ?? rendered.get(key);
        if (metricName === undefined) metricName = `${spec.name}{${spec.labelNames.map((l, i) => `${l}="${escapeLabel(r.labels[i])}"`).join(',')}}`;
        next.set(key, metricName);
        return { metricName, labels: {}, value: r.value };
      });
      // series that went away (a removed rule) are forgotten
      rendered = next;
      return { name: spec.name, help: spec.help, type: spec.type, aggregator: 'sum', values };
    },
    reset() {},
  };
  registry.registerMetric(metric as unknown as Metric);
}
