// SPDX-License-Identifier: Apache-2.0
// Prometheus exposition for foreground commands (`filter --metrics`, `trace --metrics`): each
// command gets its own registry (never prom-client's global one) and a tiny HTTP server serving
// GET /metrics. The agent serves the same registries through its fastify API instead.
import { createServer, type Server } from 'node:http';
import { Registry } from 'prom-client';
import { EbpfnetError } from '../errors.js';

export const newRegistry = (): Registry => new Registry();

/** `9100`, `:9100`, `127.0.0.1:9100` or `[::1]:9100`; the host defaults to 127.0.0.1. */
export function parseListen(s: string, what = '--metrics'): { host: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[^:[\]]*):)?(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new EbpfnetError('EBPFNET_USAGE', `parse ${what}`, `'${s}' is not [ADDR:]PORT`, { hint: 'for example 9100 or 127.0.0.1:9100' });
  }
  const host = m[1] ? m[1].replace(/^\[|\]$/g, '') : '127.0.0.1';
  return { host, port };
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

export async function serveMetrics(registry: Registry, listen: string): Promise<MetricsServer> {
  const { host, port } = parseListen(listen);
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    registry
      .metrics()
      .then((body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body))
      .catch((e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new EbpfnetError(e.code === 'EADDRINUSE' ? 'EBPFNET_BUSY' : 'EBPFNET_USAGE', `serve metrics on ${listen}`, e.code === 'EADDRINUSE' ? 'the address is in use' : e.message, {
          hint: 'choose another port with --metrics',
          cause: e,
        }),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const shown = typeof addr === 'object' && addr ? `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` : listen;
  return {
    url: `http://${shown}/metrics`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
