// SPDX-License-Identifier: Apache-2.0
// Prometheus metrics of the socket load balancer, registered on a registry the caller owns (never
// prom-client's global one). Values are read at scrape time from a snapshot function, so this file
// makes no kernel calls: the command or the agent passes `() => balancer.list().services`.
import type { Registry } from 'prom-client';
import type { ServiceView } from '../lb/view.js';
import { computedCounter, computedGauge, type ComputedSample } from './computed.js';
import { escapeLabel } from './server.js';

export type LbSnapshot = () => ServiceView[] | Promise<ServiceView[]>;

/** A Kubernetes service's name for a VIP (undefined: a typed service, which gets no such labels). */
export type LbOrigin = (service: string) => { namespace: string; service: string; portName: string } | undefined;

/**
 * Labels a Kubernetes-owned VIP carries beside `service` (the VIP, as for every service):
 * `namespace`, `kubernetes_service` and `port_name`. `service` keeps meaning the VIP so that typed
 * and Kubernetes services share one label set and existing queries stay valid.
 */
const originLabels = (origin: LbOrigin | undefined, service: string): Record<string, string> => {
  const o = origin?.(service);
  return o ? { namespace: o.namespace, kubernetes_service: o.service, port_name: o.portName } : {};
};

type OriginLabel = 'namespace' | 'kubernetes_service' | 'port_name';

/** The origin labels as text after the ones before them (`,namespace="…",…`), '' for a typed service. */
const originText = (o: Record<string, string>): string => {
  let t = '';
  for (const k in o) t += `,${k}="${escapeLabel(o[k])}"`;
  return t;
};

export const LB_METRIC_NAMES = {
  connections: 'ebpfnet_lb_connections_total',
  rejects: 'ebpfnet_lb_rejects_total',
  affinity: 'ebpfnet_lb_affinity_reuses_total',
  services: 'ebpfnet_lb_services',
  backends: 'ebpfnet_lb_backends',
} as const;

/** One scrape's service, with its `service` label in the text format, written once for all its samples. */
interface Row {
  s: ServiceView;
  /** `service="…"`, escaped once per service */
  label: string;
  /** a Kubernetes service's origin labels, and as text (appended after the row's own labels) */
  o: Record<string, string>;
  otext: string;
}

/**
 * Registers the balancer's metrics. One snapshot serves every metric of a scrape: prom-client calls
 * each metric's collect() in turn, and they share the first one's read. Every sample also carries
 * its labels as text (`labelText`, see server.ts): 10,000 services are some 40,000 samples a
 * scrape, and formatting each one's label object was most of a scrape's time.
 */
export function registerLbMetrics(registry: Registry, snapshot: LbSnapshot, origin?: LbOrigin): void {
  let pending: Promise<Row[]> | null = null;
  const read = (): Promise<Row[]> => {
    if (!pending) {
      pending = Promise.resolve(snapshot())
        .then((services) =>
          services.map((s) => {
            const o = originLabels(origin, s.service);
            return { s, label: `service="${escapeLabel(s.service)}"`, o, otext: originText(o) };
          }),
        )
        .finally(() => {
          // forget it once this scrape's collectors have run
          setImmediate(() => (pending = null));
        });
    }
    return pending;
  };
  const n = (x: bigint): number => Number(x);
  // computed at scrape time: nothing per service or backend is kept between scrapes
  computedCounter(
    registry,
    { name: LB_METRIC_NAMES.connections, help: 'connections (and unconnected UDP datagrams) translated to a backend, by service and backend', labelNames: ['service', 'backend', 'namespace', 'kubernetes_service', 'port_name'] },
    async () => {
      const out: Array<ComputedSample<'service' | 'backend' | OriginLabel>> = [];
      for (const { s, label, o, otext } of await read()) {
        for (const b of s.backends) out.push({ labels: { service: s.service, backend: b.backend, ...o }, labelText: `${label},backend="${escapeLabel(b.backend)}"${otext}`, value: n(b.conns) });
      }
      return out;
    },
  );
  computedCounter(
    registry,
    { name: LB_METRIC_NAMES.rejects, help: 'connect() and sendmsg() calls refused with ECONNREFUSED because the service had no active backend', labelNames: ['service', 'namespace', 'kubernetes_service', 'port_name'] },
    async () => (await read()).map(({ s, label, o, otext }) => ({ labels: { service: s.service, ...o }, labelText: label + otext, value: n(s.rejects) })),
  );
  computedCounter(
    registry,
    { name: LB_METRIC_NAMES.affinity, help: 'connections that went to the backend their network namespace used before (session affinity)', labelNames: ['service', 'namespace', 'kubernetes_service', 'port_name'] },
    async () => (await read()).filter(({ s }) => s.affinity).map(({ s, label, o, otext }) => ({ labels: { service: s.service, ...o }, labelText: label + otext, value: n(s.affinityHits) })),
  );
  computedGauge(registry, { name: LB_METRIC_NAMES.services, help: 'services the balancer translates' }, async () => [{ labels: {}, value: (await read()).length }]);
  computedGauge(
    registry,
    { name: LB_METRIC_NAMES.backends, help: 'backends per service and state (active: takes new connections; draining: keeps existing ones only)', labelNames: ['service', 'state', 'namespace', 'kubernetes_service', 'port_name'] },
    async () => {
      const out: Array<ComputedSample<'service' | 'state' | OriginLabel>> = [];
      for (const { s, label, o, otext } of await read()) {
        const by: Record<string, number> = { active: 0, draining: 0 };
        for (const b of s.backends) by[b.state] = (by[b.state] ?? 0) + 1;
        for (const state in by) out.push({ labels: { service: s.service, state, ...o }, labelText: `${label},state="${escapeLabel(state)}"${otext}`, value: by[state] });
      }
      return out;
    },
  );
}
