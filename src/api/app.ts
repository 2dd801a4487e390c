// SPDX-License-Identifier: Apache-2.0
// The agent's HTTP face: JSON under /v1, Prometheus at /metrics, health at /healthz and /readyz.
// It validates and presents; every change is a call to the Agent, which owns the kernel side.
// buildApi() opens no port, so tests drive it with inject().
import { timingSafeEqual } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifySchema, type RouteOptions } from 'fastify';
import type { Registry } from 'prom-client';
import type { Agent, Caller } from '../agent/agent.js';
import { EbpfnetError, ERROR_CODES, isEbpfnetError, type ErrorCode } from '../errors.js';
import { apiMetrics } from '../metrics/api.js';
import { badName } from '../agent/json.js';
import type { Logger } from '../agent/log.js';
import type { RouteKit } from './kit.js';
import { registerKubernetesRoutes } from './kubernetes-routes.js';
import { registerLbRoutes } from './lb-routes.js';
import { lingerOn, type Linger } from './linger.js';
import { openApiDocument } from './openapi.js';
import { registerTraceRoutes } from './trace-routes.js';
import { errorSchema } from './schemas.js';
import { RULE_BODY_LIMIT, registerFilterRoutes } from './filter-routes.js';

export interface ApiOptions {
  agent: Agent;
  registry: Registry;
  token: string;
  /** largest request body in bytes */
  bodyLimit?: number;
  /** require the token for reads too (the agent sets it when listening beyond loopback) */
  authReads?: boolean;
  /** fastify's logger (default: the agent's, silent unless the agent was given one) */
  logger?: Logger;
}

/**
 * One line per request, at debug: a busy agent at info logs its lifecycle and changes, not every
 * scrape. Fastify's default is two lines per request at info.
 */
class RequestLog extends LogController {
  override incomingRequest(): void {}
  override requestCompleted(error: Error | null | undefined, req: FastifyRequest, reply: FastifyReply): void {
    if (error) reply.log.warn({ req, res: reply, err: error, responseTime: reply.elapsedTime }, `${req.method} ${req.url}: ${error.message}`);
    else reply.log.debug({ req, res: reply, responseTime: reply.elapsedTime }, `${req.method} ${req.url} ${reply.statusCode}`);
  }
}

export const DEFAULT_BODY_LIMIT = 1 << 20;


interface ErrorBody {
  code: ErrorCode | string;
  message: string;
}

/**
 * A client gets this long to send its headers, and its whole request: a slow (or malicious) client
 * is answered 408 and cut off instead of holding a connection open forever. Node checks the
 * deadlines every CHECK_INTERVAL_MS.
 */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 15_000;
const CHECK_INTERVAL_MS = 1000;

/**
 * Requests node's HTTP parser refuses before fastify sees them (broken HTTP, headers beyond 16 KiB,
 * a timeout) still get the API's {code, message} body, then the connection is closed (lingering:
 * the client may still be sending).
 */
function clientError(err: NodeJS.ErrnoException, socket: Socket, linger: Linger): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [code, message]: [ErrorCode, string] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? ['EBPFNET_TIMEOUT', `read request: not complete within ${HEADERS_TIMEOUT_MS / 1000} s (headers) or ${REQUEST_TIMEOUT_MS / 1000} s (all of it); send the whole request at once`]
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? ['EBPFNET_HEADERS_TOO_LARGE', 'read request: the request line and headers exceed 16 KiB; send a shorter URL and fewer headers']
        : ['EBPFNET_USAGE', `read request: not valid HTTP/1.1 (${(err.code ?? 'parse error').toLowerCase()}); send a well-formed request`];
  const status = ERROR_CODES[code].http;
  const started = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
  if (socket.writable && !started) {
    const body = JSON.stringify({ code, message });
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  }
  linger.close(socket);
}

/** Names no body may hold: JavaScript code that copies such an object would change its prototype. */
const REFUSED_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor']);

/** Characters an error line must not carry from a body: controls, line and paragraph breaks, bidi overrides. */
const UNSHOWABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * A JSON request body: UTF-8 only (RFC 8259 section 8.1; any other charset is a 415, not text
 * read as something it is not), valid JSON, no name twice in one object (see json.ts), and no
 * name in REFUSED_NAMES. Each refusal says what it refused.
 */
function parseJsonBody(contentType: string, text: string): unknown {
  for (const param of contentType.split(';').slice(1)) {
    const m = /^\s*charset\s*=\s*(.*?)\s*$/i.exec(param);
    if (!m) continue;
    const charset = m[1].replace(/^"(.*)"$/, '$1');
    if (charset.toLowerCase() !== 'utf-8') {
      throw new EbpfnetError('EBPFNET_MEDIA_TYPE', 'read body', `charset ${JSON.stringify(charset.slice(0, 40))} is not UTF-8`, { hint: 'send the JSON as UTF-8 (Content-Type: application/json or application/json; charset=utf-8)' });
    }
  }
  if (text === '') throw new EbpfnetError('EBPFNET_USAGE', 'parse body', 'the body is empty', { hint: 'send a JSON object' });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const why = (e as Error).message.replace(UNSHOWABLE, '?').slice(0, 160);
    throw new EbpfnetError('EBPFNET_USAGE', 'parse body', `not valid JSON (${why.charAt(0).toLowerCase()}${why.slice(1)})`);
  }
  const bad = badName(text, REFUSED_NAMES);
  if (bad?.why === 'twice') throw new EbpfnetError('EBPFNET_USAGE', 'parse body', `the name ${JSON.stringify(bad.name.slice(0, 64))} appears twice in one object`, { hint: 'send each name once' });
  if (bad) {
    throw new EbpfnetError('EBPFNET_USAGE', 'parse body', `the name ${JSON.stringify(bad.name)} is refused anywhere in a body (JavaScript code that copies such an object could change the prototype of every object)`, {
      hint: 'no field of this API has that name: leave it out',
    });
  }
  return value;
}

/**
 * The request line of HTTP/1.0 or 1.1, with a Host in 1.1, or a 400 message. Node's parser takes
 * a request line without a version as HTTP/0.9 and lets 2.0 or 0.9 in the HTTP/1 syntax through.
 */
function badRequestLine(req: FastifyRequest): string | null {
  const { httpVersionMajor: major, httpVersionMinor: minor } = req.raw;
  if (major === 0 && minor === 9) return 'read request: the request line has no HTTP version (HTTP/0.9 is not spoken); send METHOD PATH HTTP/1.1';
  if (major !== 1 || minor > 1) return `read request: HTTP/${major}.${minor} is not spoken here; send HTTP/1.1`;
  if (minor === 1 && req.headers.host === undefined) return 'read request: an HTTP/1.1 request without a Host header; send Host (RFC 9112 section 3.2)';
  return null;
}

/** A route schema with the summary the OpenAPI document shows (fastify itself ignores it). */
const doc = (summary: string, s: FastifySchema = {}): FastifySchema => ({ ...s, summary }) as FastifySchema;

const send = (reply: FastifyReply, status: number, body: ErrorBody): FastifyReply => reply.code(status).type('application/json; charset=utf-8').send(body);
/** An error answer whose status is its code's (src/errors.ts). */
const sendError = (reply: FastifyReply, code: ErrorCode, message: string): FastifyReply => send(reply, ERROR_CODES[code].http, { code, message });

export async function buildApi(o: ApiOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: (o.logger ?? o.agent.log) as FastifyBaseLogger,
    logController: new RequestLog(),
    // a request's own child logger (its reqId) only when its lines are shown: none at info
    childLoggerFactory: (logger, bindings, opts) => ((logger as Logger).isLevelEnabled('debug') ? logger.child(bindings, opts) : logger),
    bodyLimit: o.bodyLimit ?? DEFAULT_BODY_LIMIT,
    // A request that does not fit the schema is refused, never silently repaired: no coercion of
    // types, no dropping of unknown keys, no defaults filled in.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false, allowUnionTypes: true } },
    return503OnClosing: true,
    requestTimeout: REQUEST_TIMEOUT_MS,
    // no Host in HTTP/1.1 is refused by the onRequest hook, with the API's JSON body (node's own
    // 400 has none)
    http: { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: CHECK_INTERVAL_MS, requireHostHeader: false },
    clientErrorHandler: (err, socket) => clientError(err, socket, linger),
    frameworkErrors: (err, req, reply) => send(reply, 400, { code: 'EBPFNET_USAGE', message: `route ${req.method} ${req.url.split('?')[0].slice(0, 200)}: ${err.message.replace(/^'.*' is/, 'the path is')}` }),
  });
  const linger = lingerOn(app.server);
  app.addHook('preClose', (done) => {
    linger.stop();
    done();
  });
  // Bodies are JSON and nothing else: text/plain (fastify parses it by default) is a 415 like
  // every other type; see parseJsonBody for what JSON is taken.
  app.removeContentTypeParser('text/plain');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    let value: unknown;
    try {
      value = parseJsonBody(req.headers['content-type'] ?? '', body as string);
    } catch (e) {
      return done(e as Error, undefined);
    }
    done(null, value);
  });
  const routes: RouteOptions[] = [];
  app.addHook('onRoute', (r) => void routes.push(r as RouteOptions));

  const metrics = apiMetrics(o.registry);
  // Hooks in callback style: an async hook costs each request a promise and a microtask turn.
  app.addHook('onResponse', (req, reply, done) => {
    metrics.observe(req.method, req.routeOptions.url, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  const expected = Buffer.from(o.token);
  const authorized = (req: FastifyRequest): boolean => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const got = Buffer.from(m[1]);
    return got.length === expected.length && timingSafeEqual(got, expected);
  };
  // Before the body is read: an unauthorized client cannot make the agent parse anything.
  app.addHook('onRequest', (req, reply, done) => {
    const broken = badRequestLine(req);
    if (broken) {
      // nothing of such a request is read, and the connection ends with the answer
      reply.header('connection', 'close');
      sendError(reply, 'EBPFNET_USAGE', broken);
      return;
    }
    const write = req.method !== 'GET' && req.method !== 'HEAD';
    const open = req.url === '/healthz' || req.url === '/readyz';
    // a route marked secret (the tracer's events: every user's calls) needs the token to be read too
    const secret = (req.routeOptions.config as { secret?: boolean } | undefined)?.secret === true;
    if ((write || secret || (o.authReads && !open)) && !authorized(req)) {
      reply.header('www-authenticate', 'Bearer realm="ebpfnet"');
      // a reply sent from a callback hook ends the request there; done() is not called
      sendError(
        reply,
        'EBPFNET_UNAUTHORIZED',
        `authorize ${req.method} ${req.url.split('?')[0]}: ${req.headers.authorization ? 'the bearer token is wrong' : 'a bearer token is needed'}; send Authorization: Bearer <token> (the token is in the state directory, mode 0600)`,
      );
      return;
    }
    done();
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (isEbpfnetError(err)) return sendError(reply, err.code, err.message);
    // the schema's maxItems of the rules is the agent's maxRules: the agent's own answer for it
    const v = err.validation?.[0];
    if (v?.keyword === 'maxItems' && v.instancePath === '/rules' && req.routeOptions.url === '/v1/filter') {
      const e = o.agent.filter.tooManyRules('set the filter policy', (req.body as { rules: unknown[] }).rules.length);
      return sendError(reply, e.code, e.message);
    }
    if (err.validation) return send(reply, 400, { code: 'EBPFNET_USAGE', message: `validate ${err.validationContext ?? 'request'}: ${err.message.replace(/^(body|params|querystring)\/?/, '').trim() || err.message}` });
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const limit = req.routeOptions.bodyLimit ?? o.bodyLimit ?? DEFAULT_BODY_LIMIT;
      const raise = limit === RULE_BODY_LIMIT ? 'one rule is never that large' : 'send fewer rules per request, or raise api.bodyLimit in the agent\'s config';
      return sendError(reply, 'EBPFNET_TOO_LARGE', `read body of ${req.method} ${req.routeOptions.url ?? req.url}: larger than the limit of ${limit} bytes; ${raise}`);
    }
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return sendError(reply, 'EBPFNET_MEDIA_TYPE', `read body of ${req.method} ${req.routeOptions.url ?? req.url}: Content-Type ${JSON.stringify(String(req.headers['content-type'] ?? 'none').slice(0, 60))} is not JSON; send Content-Type: application/json`);
    }
    const status = err.statusCode ?? 500;
    // a status of the table keeps its code; any other client error is bad input (400), as the table says
    const known = (Object.keys(ERROR_CODES) as ErrorCode[]).find((c) => ERROR_CODES[c].http === status);
    if (status >= 400 && status < 500) return sendError(reply, known ?? 'EBPFNET_USAGE', `${req.method.toLowerCase()} ${req.url.split('?')[0]}: ${err.message.charAt(0).toLowerCase()}${err.message.slice(1)}`);
    req.log.error({ err, req }, `${req.method} ${req.url}: internal error: ${err.message}`);
    return send(reply, 500, { code: 'EBPFNET_KERNEL', message: `${req.method.toLowerCase()} ${req.url.split('?')[0]}: internal error: ${err.message}` });
  });
  app.setNotFoundHandler((req, reply) => send(reply, 404, { code: 'EBPFNET_NOT_FOUND', message: `route ${req.method} ${req.url.split('?')[0]}: no such route; GET /v1/openapi.json lists them` }));

  const caller = (req: FastifyRequest): Caller => ({ who: `token@${req.ip}${req.headers['user-agent'] ? ` (${String(req.headers['user-agent']).slice(0, 64)})` : ''}`, ifMatch: req.headers['if-match'] });
  const errors = { 400: errorSchema, 401: errorSchema, 404: errorSchema, 409: errorSchema, 412: errorSchema, 413: errorSchema, 415: errorSchema } as const;

  app.get('/healthz', { schema: doc('the process answers') }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: doc('the desired state is in the kernel (with Kubernetes: its first full sync too)') }, async (_req, reply) =>
    o.agent.ready ? { status: 'ready', ...(o.agent.kubernetes ? { kubernetes: o.agent.kubernetes.status().state } : {}) } : send(reply, 503, { code: 'EBPFNET_BUSY', message: `readyz: the agent is not ready: ${o.agent.notReadyReason}` }),
  );
  app.get('/metrics', { schema: doc('Prometheus metrics (text exposition format)') }, async (_req, reply) => {
    const body = await o.registry.metrics();
    return reply.type(o.registry.contentType).send(body);
  });

  const kit: RouteKit = { agent: o.agent, doc, caller, errors };
  registerFilterRoutes(app, kit);
  registerLbRoutes(app, kit);
  registerTraceRoutes(app, kit);
  registerKubernetesRoutes(app, kit);

  app.get('/v1/openapi.json', { schema: doc('this document') }, async () => openApiDocument(routes));
  await app.ready();
  return app;
}
