// SPDX-License-Identifier: Apache-2.0
// Prometheus metrics of the agent's Kubernetes sync, read from its status at scrape time.
import type { Registry } from 'prom-client';
import type { KubernetesStatus } from '../agent/kubernetes.js';
import { computedCounter, computedGauge } from './computed.js';

export const K8S_METRIC_NAMES = {
  synced: 'ebpfnet_kubernetes_synced',
  connected: 'ebpfnet_kubernetes_connected',
  lastSync: 'ebpfnet_kubernetes_last_contact_timestamp_seconds',
  errors: 'ebpfnet_kubernetes_sync_errors_total',
  restarts: 'ebpfnet_kubernetes_watch_restarts_total',
  lists: 'ebpfnet_kubernetes_lists_total',
  objects: 'ebpfnet_kubernetes_objects',
  vips: 'ebpfnet_kubernetes_vips',
  refused: 'ebpfnet_kubernetes_refused_ports',
  conflicts: 'ebpfnet_kubernetes_conflicts_total',
  applyErrors: 'ebpfnet_kubernetes_apply_errors_total',
} as const;

export function registerKubernetesMetrics(registry: Registry, source: { status(): KubernetesStatus }): void {
  const one = (v: number) => [{ labels: {}, value: v }];
  computedGauge(registry, { name: K8S_METRIC_NAMES.synced, help: '1 once the first full sync from the Kubernetes API is in the balancer' }, () => one(source.status().everSynced ? 1 : 0));
  computedGauge(registry, { name: K8S_METRIC_NAMES.connected, help: '1 while every list and watch is up; 0 while retrying (the datapath keeps its last state)' }, () => one(source.status().state === 'synced' ? 1 : 0));
  computedGauge(registry, { name: K8S_METRIC_NAMES.lastSync, help: 'when the API server was last heard from (a list, an event or a bookmark), Unix seconds' }, () => {
    const t = source.status().lastContact;
    return one(t ? Date.parse(t) / 1000 : 0);
  });
  computedCounter(registry, { name: K8S_METRIC_NAMES.errors, help: 'lists and watches that failed (each is retried with backoff)' }, () => one(source.status().errors));
  computedCounter(registry, { name: K8S_METRIC_NAMES.restarts, help: 'informers started again after an error' }, () => one(source.status().restarts));
  computedCounter(registry, { name: K8S_METRIC_NAMES.lists, help: 'full lists (the first ones, and relists after a 410 Gone)' }, () => one(source.status().lists));
  computedGauge(registry, { name: K8S_METRIC_NAMES.objects, help: 'objects the sync sees, by kind', labelNames: ['kind'] }, () => {
    const c = source.status().counts;
    return [
      { labels: { kind: 'service' }, value: c.services },
      { labels: { kind: 'endpointslice' }, value: c.endpointSlices },
      { labels: { kind: 'skipped_service' }, value: c.skipped },
    ];
  });
  computedGauge(registry, { name: K8S_METRIC_NAMES.vips, help: 'VIPs (VIP:port/proto) Kubernetes holds in the balancer' }, () => one(source.status().vips));
  computedGauge(registry, { name: K8S_METRIC_NAMES.refused, help: 'Service ports not balanced (SCTP, bad addresses) or truncated, as they stand' }, () => {
    const c = source.status().counts;
    return one(c.refusedPorts + c.truncatedPorts);
  });
  computedCounter(registry, { name: K8S_METRIC_NAMES.conflicts, help: 'VIP claims refused: a typed service on a Kubernetes VIP, two Kubernetes Services on one VIP' }, () => one(source.status().conflictsTotal));
  computedCounter(registry, { name: K8S_METRIC_NAMES.applyErrors, help: 'writes of Kubernetes services to the balancer that failed' }, () => one(source.status().applyErrors));
}
