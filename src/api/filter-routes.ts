// SPDX-License-Identifier: Apache-2.0
// /v1/filter: the packet filter's policy, its rules one by one, and its counters over HTTP. The
// schemas check shape only; rule text goes through the one rule grammar (src/filter/rules.ts), the
// same as the CLI's --deny and --allow and the config file's filter.rules.
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { jsonChunks } from '../agent/json.js';
import { etag } from '../agent/revision.js';
import { PROTOS } from '../filter/rules.js';
import { parsePageNumber } from '../filter/conntrack.js';
import { FLT_CT_SIZE_MAX } from '../gen/filter.js';
import { STAT_JSON_KEYS, type StatJsonKey } from '../filter/stats.js';
import type { RouteKit } from './kit.js';
import { idParams } from './schemas.js';

/**
 * Responses listing more rules than this are streamed in chunks (jsonChunks) instead of going
 * through the route's serializer: same JSON, without the serializer's transient copies.
 */
const STREAM_ABOVE = 1000;

const streamJson = (reply: FastifyReply, v: unknown): FastifyReply => reply.type('application/json; charset=utf-8').send(Readable.from(jsonChunks(v)));
/** one rule is small; a single-rule POST has no business being large */
export const RULE_BODY_LIMIT = 4096;

export const ruleBody = {
  type: 'object',
  additionalProperties: false,
  required: ['action', 'match'],
  properties: {
    action: { type: 'string', enum: ['allow', 'deny'] },
    match: { type: 'string', minLength: 1, maxLength: 256, description: `[PROTO[/PORTS]] [from CIDR] [to CIDR]; PROTO is one of ${PROTOS.join(', ')}` },
  },
} as const;

export const ruleView = {
  type: 'object',
  required: ['id', 'action', 'match'],
  properties: { id: { type: 'integer' }, action: { type: 'string', enum: ['allow', 'deny'] }, match: { type: 'string' } },
} as const;

/** an interface name, a shell-style glob or `all` (checked in full by the filter's checkPattern) */
const ifacePattern = { type: 'string', pattern: '^[A-Za-z0-9_.@:*?\\[\\]!^-]{1,64}$' } as const;

/** PUT /v1/filter, for a filter of `maxRules` rules (AgentFilter.maxRules): the schema says the real limit. */
export const filterBody = (maxRules: number) =>
  ({
    type: 'object',
    additionalProperties: false,
    required: ['rules'],
    properties: {
      interfaces: { type: 'array', maxItems: 64, items: ifacePattern, description: "the interfaces the policy runs on: names, globs ('veth*') or 'all' (globs and all also cover interfaces that appear later); omitted: unchanged" },
      rules: { type: 'array', maxItems: maxRules, items: ruleBody, description: `at most ${maxRules}: filter.maxRules of the agent's config (413 beyond)` },
      default: { type: 'string', enum: ['allow', 'deny'], description: 'omitted: unchanged' },
      audit: { type: 'boolean', description: 'count what would be dropped, drop nothing; omitted: unchanged' },
      stateful: { type: ['boolean', 'null'], description: 'track connections: replies to connections the host opened (and to ones an allow rule let in) pass; null: the default, on when default is deny; omitted: unchanged' },
    },
  }) as const;

export const filterView = {
  type: 'object',
  required: ['revision', 'interfaces', 'rules', 'default', 'audit', 'hook', 'mode', 'stateful'],
  properties: {
    revision: { type: 'integer', description: 'also the ETag; send it back in If-Match' },
    interfaces: { type: 'array', items: { type: 'string' } },
    rules: { type: 'array', items: ruleView },
    default: { type: 'string', enum: ['allow', 'deny'] },
    audit: { type: 'boolean' },
    hook: { type: 'string', enum: ['xdp', 'tc'] },
    mode: { type: 'string', enum: ['native', 'generic', 'auto'] },
    stateful: { type: 'boolean', description: 'connections are tracked (filter.stateful, else on under default deny)' },
  },
} as const;

const count = { type: 'object', properties: { packets: { type: 'integer' }, bytes: { type: 'integer' } } } as const;

export const filterStats = {
  type: 'object',
  properties: {
    revision: { type: 'integer' },
    interfaces: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          interface: { type: 'string' },
          attachment: { type: 'string' },
          stateful: { type: 'boolean', description: 'connections are tracked on this interface now' },
          rules: {
            type: 'array',
            items: { type: 'object', properties: { id: { type: ['integer', 'null'] }, action: { type: 'string' }, match: { type: 'string' }, packets: { type: 'integer' }, bytes: { type: 'integer' } } },
          },
          default: { type: 'object', properties: { pass: count, drop: count } },
          ...(Object.fromEntries(STAT_JSON_KEYS.map((k) => [k, count])) as Record<StatJsonKey, typeof count>),
        },
      },
    },
  },
} as const;

const endpoint = { type: 'string', description: 'address:port ([v6]:port); for ICMP echo: address id N' } as const;

/** GET /v1/filter/conntrack: the same document as `ebpfnet filter conntrack -o json`. */
export const conntrackView = {
  type: 'object',
  required: ['interfaces'],
  properties: {
    interfaces: {
      type: 'array',
      items: {
        type: 'object',
        required: ['interface', 'stateful', 'total', 'flows'],
        properties: {
          interface: { type: 'string' },
          total: { type: 'integer', description: 'live flows in the table; `flows` is the page of them asked for (limit, offset)' },
          stateful: { type: 'boolean', description: 'false: no connection state here (the list is empty)' },
          table: {
            type: ['object', 'null'],
            description: "the connection table's size and numbers (since the filter was loaded); null when stateless",
            required: ['maxEntries', 'entries', 'inserts', 'expiries', 'resets', 'evictions', 'misses'],
            properties: {
              maxEntries: { type: 'integer', description: 'flows it holds (--ct-max, filter.ctMax)' },
              entries: { type: 'integer', description: 'flows in it now' },
              inserts: { type: 'integer' },
              expiries: { type: 'integer' },
              resets: { type: 'integer' },
              evictions: { type: 'integer', description: 'live flows pushed out because the table was full' },
              misses: { type: 'integer', description: 'packets of a connection the table did not (or no longer) know' },
            },
          },
          flows: {
            type: 'array',
            description: 'live flows, most recently seen first',
            items: {
              type: 'object',
              required: ['family', 'proto', 'local', 'remote', 'state', 'openedBy', 'replied', 'lastSeenSecondsAgo', 'expiresInSeconds'],
              properties: {
                family: { type: 'integer', enum: [4, 6] },
                proto: { type: 'string' },
                local: endpoint,
                remote: endpoint,
                state: { type: 'string' },
                openedBy: { type: 'string', enum: ['local', 'remote'] },
                replied: { type: 'boolean' },
                lastSeenSecondsAgo: { type: 'number' },
                expiresInSeconds: { type: 'integer' },
              },
            },
          },
        },
      },
    },
  },
} as const;

/** Flows per page unless `limit` says otherwise: a full default table is 262,144 flows. */
export const CONNTRACK_PAGE = 1000;
const conntrackQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    interface: { type: 'string', minLength: 1, maxLength: 64, description: 'only this interface' },
    // strings: the API does not coerce query text; the route reads and range-checks them
    limit: { type: 'string', pattern: '^[0-9]{1,8}$', description: `flows per interface, most recently seen first (1 to ${FLT_CT_SIZE_MAX}; default ${CONNTRACK_PAGE})` },
    offset: { type: 'string', pattern: '^[0-9]{1,8}$', description: 'skip this many flows first (the next page: offset + limit; default 0)' },
  },
} as const;

export function registerFilterRoutes(app: FastifyInstance, kit: RouteKit): void {
  app.get('/v1/filter', { schema: kit.doc('the packet filter policy', { response: { 200: filterView } }) }, async (_req, reply) => {
    reply.header('etag', etag(kit.agent.filter.revision));
    const v = kit.agent.filter.view();
    return v.rules.length > STREAM_ABOVE ? streamJson(reply, v) : v;
  });
  app.put<{ Body: { interfaces?: string[]; rules: Array<{ action: 'allow' | 'deny'; match: string }>; default?: 'allow' | 'deny'; audit?: boolean; stateful?: boolean | null } }>(
    '/v1/filter',
    { schema: kit.doc('replace the whole policy, switched in atomically', { body: filterBody(kit.agent.filter.maxRules), response: { 200: filterView, ...kit.errors } }) },
    async (req, reply) => {
      const v = await kit.agent.filter.set(req.body, kit.caller(req));
      reply.header('etag', etag(v.revision));
      return v;
    },
  );
  app.post<{ Body: { action: 'allow' | 'deny'; match: string } }>(
    '/v1/filter/rules',
    { bodyLimit: RULE_BODY_LIMIT, schema: kit.doc('add one rule', { body: ruleBody, response: { 201: ruleView, ...kit.errors } }) },
    async (req, reply) => {
      const r = await kit.agent.filter.addRule(req.body, kit.caller(req));
      reply.header('etag', etag(kit.agent.filter.revision)).header('location', `/v1/filter/rules/${r.id}`).code(201);
      return r;
    },
  );
  app.delete<{ Params: { id: string } }>(
    '/v1/filter/rules/:id',
    { schema: kit.doc('remove one rule by id', { params: idParams, response: { 200: filterView, ...kit.errors } }) },
    async (req, reply) => {
      const v = await kit.agent.filter.deleteRule(Number(req.params.id), kit.caller(req));
      reply.header('etag', etag(v.revision));
      return v;
    },
  );
  app.get<{ Querystring: { interface?: string; limit?: string; offset?: string } }>(
    '/v1/filter/conntrack',
    { schema: kit.doc('the flows each stateful interface tracks, like conntrack -L', { querystring: conntrackQuery, response: { 200: conntrackView, ...kit.errors } }) },
    async (req) => {
      const limit = parsePageNumber('limit', req.query.limit, 1) ?? CONNTRACK_PAGE;
      const offset = parsePageNumber('offset', req.query.offset, 0) ?? 0;
      return kit.agent.filter.conntrack(req.query.interface, { limit, offset });
    },
  );
  app.get('/v1/filter/stats', { schema: kit.doc('counters per interface and rule, read from the kernel now', { response: { 200: filterStats } }) }, async (_req, reply) => {
    const s = kit.agent.filter.stats();
    reply.header('etag', etag(s.revision));
    return s.interfaces.some((i) => (i.rules as unknown[]).length > STREAM_ABOVE) ? streamJson(reply, s) : s;
  });
}
