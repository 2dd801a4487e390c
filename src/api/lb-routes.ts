// SPDX-License-Identifier: Apache-2.0
// /v1/lb/services: the balancer's services over HTTP. The schemas check shape only (the file form
// of `lb apply`); addresses, ports, weights and states go through the lb command's own parser
// (src/lb/model.ts), so the API, the config file and the CLI share one grammar.
import type { FastifyInstance } from 'fastify';
import type { LbView } from '../agent/lb.js';
import { etag } from '../agent/revision.js';
import * as G from '../gen/lb.js';
import { MAX_AFFINITY_SECONDS, MAX_WEIGHT, STATES } from '../lb/model.js';
import type { RouteKit } from './kit.js';

const backendItem = {
  // a string (`10.244.1.5:8080,weight=2`) or an object: each keyword applies to its own type
  type: ['string', 'object'],
  minLength: 1,
  maxLength: 128,
  additionalProperties: false,
  required: ['address'],
  properties: {
    address: { type: 'string', minLength: 1, maxLength: 64, description: 'IP:PORT, IPv6 in brackets' },
    weight: { type: 'integer', minimum: 1, maximum: MAX_WEIGHT },
    state: { type: 'string', enum: [...STATES] },
  },
  description: '"IP:PORT[,weight=N][,state=active|draining]" or {address, weight, state}',
} as const;

const serviceFields = {
  affinity: { type: 'integer', minimum: 0, maximum: MAX_AFFINITY_SECONDS, description: 'seconds a client network namespace keeps its backend; 0 (default) is off' },
  backends: { type: 'array', maxItems: G.LB_MAX_BACKENDS_PER_SVC, items: backendItem, description: 'none: the service refuses connections (ECONNREFUSED)' },
} as const;

/** PUT /v1/lb/services/:id */
export const serviceBody = { type: 'object', additionalProperties: false, required: ['backends'], properties: serviceFields } as const;

/** PUT /v1/lb/services: the whole set, as `lb apply` reads it */
export const servicesBody = {
  type: 'object',
  additionalProperties: false,
  required: ['services'],
  properties: {
    services: {
      type: 'array',
      maxItems: G.LB_SVC.maxEntries / 2,
      items: { type: 'object', additionalProperties: false, required: ['service'], properties: { service: { type: 'string', minLength: 1, maxLength: 64, description: 'VIP:PORT/PROTO' }, ...serviceFields } },
    },
  },
} as const;

const serviceView = {
  type: 'object',
  required: ['id', 'proto', 'affinity', 'slots', 'connections', 'rejects', 'backends'],
  properties: {
    id: { type: 'string', description: 'the service, VIP:PORT/PROTO; URL-encode it in /v1/lb/services/{id}' },
    name: { type: 'string', description: "a Kubernetes service's namespace/name:port (absent for a typed service)" },
    kubernetes: {
      type: 'object',
      description: 'where a Kubernetes service comes from (absent for a typed service); it cannot be changed through this API',
      properties: { namespace: { type: 'string' }, service: { type: 'string' }, portName: { type: 'string' }, vipKind: { type: 'string', enum: ['clusterIP', 'externalIP', 'loadBalancer', 'nodePort'] } },
    },
    shadowedBy: { type: 'string', description: 'a typed service whose VIP Kubernetes holds: kept in the desired state, not translated until Kubernetes lets the VIP go' },
    proto: { type: 'string', enum: ['tcp', 'udp'] },
    affinity: { type: 'integer' },
    slots: { type: 'integer', description: 'selection slots: active backends by weight' },
    connections: { type: 'integer', description: 'connections (and unconnected datagrams) translated' },
    rejects: { type: 'integer', description: 'connects refused because no backend was active' },
    backends: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          address: { type: 'string' },
          weight: { type: 'integer' },
          state: { type: 'string' },
          slots: { type: 'integer' },
          share: { type: 'number', description: 'its chance for a new connection' },
          connections: { type: 'integer' },
        },
      },
    },
  },
} as const;

const lbView = {
  type: 'object',
  required: ['revision', 'cgroup', 'services'],
  properties: {
    revision: { type: 'integer', description: 'also the ETag; send it back in If-Match' },
    cgroup: { type: 'string', description: 'the cgroup whose connections are translated' },
    services: { type: 'array', items: serviceView },
  },
} as const;

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64, description: 'VIP:PORT/PROTO, URL-encoded' } } } as const;

type ServiceBody = { affinity?: number; backends: unknown[] };

export function registerLbRoutes(app: FastifyInstance, k: RouteKit): void {
  const lb = k.agent.lb;
  // a write's ETag is the revision its change made (a later change may land while it is saved)
  const tagged = <T>(reply: { header(k: string, v: string): unknown }, v: T, revision = lb.revision): T => {
    reply.header('etag', etag(revision));
    return v;
  };
  const taggedView = (reply: { header(k: string, v: string): unknown }, v: LbView): LbView => tagged(reply, v, v.revision);
  app.get('/v1/lb/services', { schema: k.doc('the balancer: its services, backends, weights, states and counters', { response: { 200: lbView, 404: k.errors[404] } }) }, async (_req, reply) =>
    tagged(reply, lb.view()),
  );
  app.put<{ Body: { services: unknown[] } }>(
    '/v1/lb/services',
    { schema: k.doc('replace the whole set of services, switched in at once', { body: servicesBody, response: { 200: lbView, ...k.errors } }) },
    async (req, reply) => taggedView(reply, await lb.setAll(req.body.services, k.caller(req))),
  );
  app.delete('/v1/lb/services', { schema: k.doc('delete every service (the balancer stays attached)', { response: { 200: lbView, ...k.errors } }) }, async (req, reply) =>
    taggedView(reply, await lb.removeAll(k.caller(req))),
  );
  app.get<{ Params: { id: string } }>(
    '/v1/lb/services/:id',
    { schema: k.doc('one service', { params: idParams, response: { 200: serviceView, 400: k.errors[400], 404: k.errors[404] } }) },
    async (req, reply) => tagged(reply, lb.service(req.params.id)),
  );
  app.put<{ Params: { id: string }; Body: ServiceBody }>(
    '/v1/lb/services/:id',
    { schema: k.doc('create a service, or replace its backends, weights, states and affinity', { params: idParams, body: serviceBody, response: { 200: serviceView, 201: serviceView, ...k.errors } }) },
    async (req, reply) => {
      const r = await lb.put(req.params.id, req.body, k.caller(req));
      if (r.created) reply.code(201).header('location', `/v1/lb/services/${encodeURIComponent(r.service.id)}`);
      return tagged(reply, r.service, r.revision);
    },
  );
  app.delete<{ Params: { id: string } }>(
    '/v1/lb/services/:id',
    { schema: k.doc('delete one service: connections to its VIP are no longer translated', { params: idParams, response: { 200: lbView, ...k.errors } }) },
    async (req, reply) => taggedView(reply, await lb.remove(req.params.id, k.caller(req))),
  );
}
