// SPDX-License-Identifier: Apache-2.0
// Counters and gauges whose samples are computed at scrape time from a snapshot of the kernel, with
// no label set stored in between: a prom-client metric that is reset and incremented per scrape
// keeps one entry (a label object and a hash string) per label set it ever saw, ~300 bytes each, so
// 100,000 filter rules or 10,000 services were tens of megabytes held between scrapes.
import { Counter, Gauge, type MetricValue, type Registry } from 'prom-client';

/** A sample, optionally with its labels already as text (`labelText`: see server.ts). */
export type ComputedSample<T extends string> = MetricValue<T> & { labelText?: string };

export type Samples<T extends string> = () => Array<ComputedSample<T>> | Promise<Array<ComputedSample<T>>>;

interface Config<T extends string> {
  name: string;
  help: string;
  labelNames?: readonly T[];
}

/** A prom-client metric whose get() answers this scrape's samples (its own name, help and type;
 * nothing increments it). */
function computed<T extends string, M extends Counter<T> | Gauge<T>>(metric: M, samples: Samples<T>): void {
  const own = metric.get.bind(metric);
  metric.get = async () => ({ ...(await own()), values: await samples() });
}

export const computedCounter = <T extends string>(registry: Registry, cfg: Config<T>, samples: Samples<T>): void => computed(new Counter<T>({ ...cfg, registers: [registry] }), samples);
export const computedGauge = <T extends string>(registry: Registry, cfg: Config<T>, samples: Samples<T>): void => computed(new Gauge<T>({ ...cfg, registers: [registry] }), samples);
