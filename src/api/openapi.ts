// SPDX-License-Identifier: Apache-2.0
// The OpenAPI 3.1 document, built from the routes' own schemas so it cannot drift from what the
// server validates.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RouteOptions } from 'fastify';
import { packageDir } from '../loader/paths.js';
import { errorSchema } from './schemas.js';

interface RouteSchema {
  summary?: string;
  body?: unknown;
  params?: { properties?: Record<string, unknown> };
  querystring?: { properties?: Record<string, unknown> };
  response?: Record<string, unknown>;
  /** the success answers' media type when not JSON (an event stream) */
  produces?: string;
}

export function openApiDocument(routes: RouteOptions[]): Record<string, unknown> {
  const { version } = JSON.parse(readFileSync(join(packageDir(), 'package.json'), 'utf8')) as { version: string };
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    for (const method of [r.method].flat()) {
      if (method === 'HEAD') continue;
      const s = (r.schema ?? {}) as RouteSchema;
      const path = r.url.replace(/:(\w+)/g, '{$1}');
      const write = method !== 'GET';
      const secured = write || (r.config as { secret?: boolean } | undefined)?.secret === true;
      const parameters = [
        ...Object.entries(s.params?.properties ?? {}).map(([name, schema]) => ({ name, in: 'path', required: true, schema })),
        ...Object.entries(s.querystring?.properties ?? {}).map(([name, schema]) => ({ name, in: 'query', required: false, schema })),
        ...(write ? [{ name: 'If-Match', in: 'header', required: false, schema: { type: 'string' }, description: 'the ETag this change is based on (RFC 9110: * alone, or a list of entity tags); a stale one gets 412, and so does a weak tag (W/"7"), which never matches; a malformed value gets 400' }] : []),
      ];
      const responses: Record<string, unknown> = {};
      for (const [code, schema] of Object.entries(s.response ?? { 200: {} })) {
        const ok = Number(code) < 400;
        responses[code] = { description: ok ? 'success' : 'error', content: { [ok ? (s.produces ?? 'application/json') : 'application/json']: { schema } } };
      }
      if (secured) responses['401'] = { description: 'no or wrong bearer token', content: { 'application/json': { schema: errorSchema } } };
      paths[path] = {
        ...paths[path],
        [method.toLowerCase()]: {
          summary: s.summary ?? '',
          ...(parameters.length ? { parameters } : {}),
          ...(s.body ? { requestBody: { required: true, content: { 'application/json': { schema: s.body } } } } : {}),
          responses,
          ...(secured ? { security: [{ bearer: [] }] } : {}),
        },
      };
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: 'ebpfnet agent', version, description: 'Runtime control of the ebpfnet datapaths. Errors are {code, message}; writes need a bearer token.' },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } }, schemas: { Error: errorSchema } },
    paths,
  };
}
