#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The Kubernetes bench's harness row: @kubernetes/client-node's informers for Services and
// EndpointSlices, listed in pages of 500 as the agent lists them, and nothing else (no translation,
// no maps). What it costs is what the fake API server and the library cost, which the agent pays
// too; the bench judges the agent's full sync net of it.
//   node tools/bench/kubernetes/bare-informer.mjs KUBECONFIG
// Prints one line when both lists are in the informers' caches: {"services":N,"endpointSlices":M,"rssKb":..}
import { readFileSync } from 'node:fs';
import { CoreV1Api, DiscoveryV1Api, KubeConfig, ListWatch, Watch } from '@kubernetes/client-node';

const kc = new KubeConfig();
kc.loadFromFile(process.argv[2]);
const core = kc.makeApiClient(CoreV1Api);
const disc = kc.makeApiClient(DiscoveryV1Api);
const watch = new Watch(kc);

/** @param {(cont?: string) => Promise<any>} page */
async function paged(page) {
  const first = await page();
  let cont = first.metadata?._continue;
  while (cont) {
    const next = await page(cont);
    first.items.push(...next.items);
    cont = next.metadata?._continue;
  }
  return first;
}

const svc = new ListWatch('/api/v1/services', watch, () => paged((c) => core.listServiceForAllNamespaces({ limit: 500, _continue: c })), false);
const sl = new ListWatch('/apis/discovery.k8s.io/v1/endpointslices', watch, () => paged((c) => disc.listEndpointSliceForAllNamespaces({ limit: 500, _continue: c })), false);
await Promise.all([svc.start(), sl.start()]);
const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
process.stdout.write(`${JSON.stringify({ services: svc.list().length, endpointSlices: sl.list().length, rssKb: hwm ? Number(hwm[1]) : null })}\n`);
process.exit(0);
