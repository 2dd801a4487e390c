// SPDX-License-Identifier: Apache-2.0
// GET /v1/kubernetes/status: the service proxy's sync (state, lag, counts, errors, conflicts), as
// `ebpfnet kubernetes status` shows it.
import type { FastifyInstance } from 'fastify';
import { EbpfnetError } from '../errors.js';
import type { RouteKit } from './kit.js';

const statusSchema = {
  type: 'object',
  required: ['state', 'everSynced', 'server', 'node', 'errors', 'counts', 'vips', 'conflicts', 'conflictsTotal'],
  properties: {
    state: { type: 'string', enum: ['starting', 'synced', 'retrying'], description: 'starting: no full sync yet; synced; retrying: the API server is away or failing, the datapath keeps its last state' },
    everSynced: { type: 'boolean' },
    server: { type: 'string' },
    source: { type: 'string', description: 'where the kubeconfig came from' },
    node: { type: 'object', properties: { name: { type: 'string' }, found: { type: 'boolean' }, addresses: { type: 'array', items: { type: 'string' } } } },
    syncedAt: { type: ['string', 'null'] },
    lastContact: { type: ['string', 'null'] },
    lagSeconds: { type: ['number', 'null'], description: 'seconds since the API server was last heard from (a list, an event or a bookmark)' },
    disconnectedSince: { type: ['string', 'null'] },
    errors: { type: 'integer' },
    lastError: { type: ['object', 'null'], properties: { time: { type: 'string' }, resource: { type: 'string' }, message: { type: 'string' } } },
    restarts: { type: 'integer' },
    lists: { type: 'integer' },
    bookmarks: { type: 'integer' },
    counts: {
      type: 'object',
      properties: { services: { type: 'integer' }, endpointSlices: { type: 'integer' }, skipped: { type: 'integer' }, refusedPorts: { type: 'integer' }, truncatedPorts: { type: 'integer' } },
    },
    lastApplyMs: { type: ['number', 'null'], description: 'the last change, from its event to the balancer' },
    vips: { type: 'integer', description: 'VIPs Kubernetes holds in the balancer' },
    conflicts: { type: 'array', items: { type: 'object', properties: { service: { type: 'string' }, reason: { type: 'string' } } } },
    conflictsTotal: { type: 'integer' },
    refused: { type: 'array', items: { type: 'object', properties: { port: { type: 'string' }, reason: { type: 'string' } } } },
    applyErrors: { type: 'integer' },
  },
} as const;

export function registerKubernetesRoutes(app: FastifyInstance, k: RouteKit): void {
  app.get('/v1/kubernetes/status', { schema: k.doc("the Kubernetes sync: state, lag, counts, errors and conflicts", { response: { 200: statusSchema, 404: k.errors[404] } }) }, async () => {
    const kube = k.agent.kubernetes;
    if (!kube) {
      throw new EbpfnetError('EBPFNET_NOT_FOUND', 'kubernetes status', 'the agent runs no Kubernetes sync', { hint: 'start it with --kubeconfig PATH or --node-name NAME, or a kubernetes: section in its config' });
    }
    return kube.status();
  });
}
