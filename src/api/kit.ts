// SPDX-License-Identifier: Apache-2.0
// What buildApi() hands the route modules (lb-routes.ts, trace-routes.ts): the agent and the
// helpers every route shares, so each module adds routes without reaching into app.ts.
import type { FastifyRequest, FastifySchema } from 'fastify';
import type { Agent, Caller } from '../agent/agent.js';
import type { errorSchema } from './schemas.js';

export interface RouteKit {
  agent: Agent;
  /** a route schema with the summary the OpenAPI document shows */
  doc(summary: string, s?: FastifySchema): FastifySchema;
  /** who is asking (for the audit log), and the revision they based the change on */
  caller(req: FastifyRequest): Caller;
  /** the error answers a write can give */
  errors: Record<400 | 401 | 404 | 409 | 412 | 413 | 415, typeof errorSchema>;
}
