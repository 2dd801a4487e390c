// SPDX-License-Identifier: Apache-2.0
// Prometheus metrics of the socket load balancer, registered on a registry the caller owns (never
// prom-client's global one). Values are read at scrape time from a snapshot function, so this file
// makes no kernel calls: the command or the agent passes `() => balancer.list().services`.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ServiceView } from '../lb/view.js';

export type LbSnapshot = () => ServiceView[] | Promise<ServiceView[]>;

export const LB_METRIC_NAMES = {
  connections: 'ebpfnet_lb_connections_total',
  rejects: 'ebpfnet_lb_rejects_total',
  affinity: 'ebpfnet_lb_affinity_reuses_total',
  services: 'ebpfnet_lb_services',
  backends: 'ebpfnet_lb_backends',
} as const;

/**
 * Registers the balancer's metrics. One snapshot serves every metric of a scrape: prom-client calls
 * each metric's collect() in turn, and they share the first one's read.
 */
export function registerLbMetrics(registry: Registry, snapshot: LbSnapshot): void {
  let pending: Promise<ServiceView[]> | null = null;
  const read = (): Promise<ServiceView[]> => {
    if (!pending) {
      pending = Promise.resolve(snapshot()).finally(() => {
        // forget it once this scrape's collectors have run
        setImmediate(() => (pending = null));
      });
    }
    return pending;
  };
  const n = (x: bigint): number => Number(x);

  new Counter({
    name: LB_METRIC_NAMES.connections,
    help: 'connections (and unconnected UDP datagrams) translated to a backend, by service and backend',
    labelNames: ['service', 'backend'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of await read()) for (const b of s.backends) this.inc({ service: s.service, backend: b.backend }, n(b.conns));
    },
  });
  new Counter({
    name: LB_METRIC_NAMES.rejects,
    help: 'connect() and sendmsg() calls refused with ECONNREFUSED because the service had no active backend',
    labelNames: ['service'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of await read()) this.inc({ service: s.service }, n(s.rejects));
    },
  });
  new Counter({
    name: LB_METRIC_NAMES.affinity,
    help: 'connections that went to the backend their network namespace used before (session affinity)',
    labelNames: ['service'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of await read()) if (s.affinity) this.inc({ service: s.service }, n(s.affinityHits));
    },
  });
  new Gauge({
    name: LB_METRIC_NAMES.services,
    help: 'services the balancer translates',
    registers: [registry],
    async collect() {
      this.set((await read()).length);
    },
  });
  new Gauge({
    name: LB_METRIC_NAMES.backends,
    help: 'backends per service and state (active: takes new connections; draining: keeps existing ones only)',
    labelNames: ['service', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of await read()) {
        const by = { active: 0, draining: 0 } as Record<string, number>;
        for (const b of s.backends) by[b.state] = (by[b.state] ?? 0) + 1;
        for (const [state, count] of Object.entries(by)) this.set({ service: s.service, state }, count);
      }
    },
  });
}
