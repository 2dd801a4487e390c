// SPDX-License-Identifier: Apache-2.0
// Counters and gauges whose samples are computed at scrape time from a snapshot of the kernel, with
// no label set stored in between: a prom-client metric that is reset and incremented per scrape
// keeps one entry (a label object and a hash string) per label set it ever saw, ~300 bytes each, so
// 100,000 filter rules or 10,000 services were tens of megabytes held between scrapes.
import { Counter, Gauge, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';

export type Samples<T extends string> = () => Array<MetricValue<T>> | Promise<Array<MetricValue<T>>>;

interface Config<T extends string> {
  name: string;
  help: string;
  labelNames?: readonly T[];
}

class ComputedCounter<T extends string> extends Counter<T> {
  constructor(
    cfg: Config<T>,
    registry: Registry,
    private readonly samples: Samples<T>,
  ) {
    super({ ...cfg, registers: [registry] });
  }

  /** the Counter's own name, help and type (nothing increments it), with this scrape's samples */
  override async get(): Promise<MetricObjectWithValues<MetricValue<T>>> {
    return { ...(await super.get()), values: await this.samples() };
  }
}

class ComputedGauge<T extends string> extends Gauge<T> {
  constructor(
    cfg: Config<T>,
    registry: Registry,
    private readonly samples: Samples<T>,
  ) {
    super({ ...cfg, registers: [registry] });
  }

  override async get(): Promise<MetricObjectWithValues<MetricValue<T>>> {
    return { ...(await super.get()), values: await this.samples() };
  }
}

export const computedCounter = <T extends string>(registry: Registry, cfg: Config<T>, samples: Samples<T>): void => void new ComputedCounter(cfg, registry, samples);
export const computedGauge = <T extends string>(registry: Registry, cfg: Config<T>, samples: Samples<T>): void => void new ComputedGauge(cfg, registry, samples);
