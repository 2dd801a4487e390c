// SPDX-License-Identifier: Apache-2.0
// GET /v1/trace/events: the agent's tracer as a Server-Sent Events stream, one `data:` line per
// event in the JSON form of `ebpfnet trace -o json` (src/trace/event.schema.json).
//
// The query is checked before the stream starts (a bad filter is a 400 JSON error, like any other
// request). Streams never wait for each other: an event is written to each stream's socket, and a
// stream whose unsent bytes pass STREAM_BUFFER (its client reads too slowly) skips events instead of
// buffering them; it is told how many with an `event: dropped` message once it catches up. So a
// stalled client costs at most STREAM_BUFFER of memory, and at most MAX_STREAMS are open at once.
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifySchema } from 'fastify';
import type { StreamQuery } from '../agent/trace.js';
import { EbpfnetError } from '../errors.js';
import type { RouteKit } from './kit.js';

export const MAX_STREAMS = 64;
/** unsent bytes a stream may hold before its events are dropped */
export const STREAM_BUFFER = 1 << 20;
/** a comment line this often keeps proxies from closing an idle stream, and finds dead clients */
const HEARTBEAT_MS = 15_000;

const query = {
  type: 'object',
  additionalProperties: false,
  properties: {
    syscall: { type: 'string', description: 'mkdir (mkdir and mkdirat) or one syscall; default: what the agent traces' },
    pid: { type: 'string', description: 'only this process' },
    uid: { type: 'string', description: 'only this user: a uid or a user name' },
    name: { type: 'string', description: 'only commands whose name contains this' },
    failed: { type: 'string', enum: ['true', 'false', '1', '0'], description: 'only calls that failed' },
    cgroup: { type: 'string', description: 'refused: the agent filters a cgroup in the kernel for every stream (trace.cgroup in its config)' },
  },
} as const;

export function registerTraceRoutes(app: FastifyInstance, k: RouteKit): void {
  const trace = k.agent.trace;
  const open = new Set<ServerResponse>();
  // A stream never ends by itself: close them all, or the server waits for them forever.
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
  });

  app.get<{ Querystring: StreamQuery }>(
    '/v1/trace/events',
    {
      // every user's calls, paths included: not for whoever can reach the port
      config: { secret: true },
      // a HEAD would subscribe a stream that has no body to send
      exposeHeadRoute: false,
      schema: k.doc('tracer events as a Server-Sent Events stream (text/event-stream), filtered by the query', {
        querystring: query,
        produces: 'text/event-stream',
        response: { 200: { type: 'string', description: 'data: one JSON event per message (the schema of ebpfnet trace -o json); event: dropped, data: {"dropped": N} when this stream fell behind' }, 400: k.errors[400], 404: k.errors[404] },
      } as FastifySchema),
    },
    async (req, reply) => {
      const filter = trace.streamFilter(req.query);
      if (open.size >= MAX_STREAMS) throw new EbpfnetError('EBPFNET_BUSY', 'trace events', `${MAX_STREAMS} streams are open already`, { hint: 'close one, or try again later' });
      reply.hijack();
      const res = reply.raw;
      let skipped = 0;
      let seq = 0;
      const unsubscribe = trace.subscribe(filter, (json) => {
        if (res.writableLength > STREAM_BUFFER) {
          skipped++;
          return false;
        }
        if (skipped) {
          res.write(`event: dropped\ndata: {"dropped":${skipped}}\n\n`);
          skipped = 0;
        }
        res.write(`id: ${++seq}\ndata: ${json}\n\n`);
        return true;
      });
      const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
      heartbeat.unref();
      open.add(res);
      const done = (): void => {
        clearInterval(heartbeat);
        unsubscribe();
        open.delete(res);
      };
      res.on('close', done);
      res.on('error', done);
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      // the first bytes: a client that has them knows its stream is subscribed
      res.write(`: tracing ${trace.syscalls.join(', ')}\n\n`);
    },
  );
}
