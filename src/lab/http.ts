// SPDX-License-Identifier: Apache-2.0
// The lab's HTTP server and client, a script run inside a lab host (so neither needs curl or a web
// server package on the machine):
//   node dist/lab/http.js serve '[{"host":"192.168.56.11","port":80,"name":"target"}, ...]'
//       answers every request with `NAME\n`; prints `ready` once every socket listens
//   node dist/lab/http.js get URL [COUNT] [TIMEOUT_MS]
//       COUNT requests, one connection each; prints one JSON line {"bodies":{...},"errors":{...}}
//   node dist/lab/http.js fetch URL
//       prints the body as it is (a Prometheus scrape)
import { createServer, request } from 'node:http';
import { fileURLToPath } from 'node:url';

interface Listen {
  host: string;
  port: number;
  name: string;
}

async function serve(listen: Listen[]): Promise<void> {
  await Promise.all(
    listen.map(
      (l) =>
        new Promise<void>((resolve, reject) => {
          const s = createServer((req, res) => {
            res.setHeader('content-type', 'text/plain');
            // one request per connection: each client request goes through connect() again,
            // which is where the balancer chooses a backend
            res.setHeader('connection', 'close');
            res.end(`${l.name}\n`);
            req.resume();
          });
          s.once('error', reject);
          s.listen(l.port, l.host, () => resolve());
        }),
    ),
  );
  process.stdout.write(`ready: ${listen.map((l) => `${l.name} on ${l.host}:${l.port}`).join(', ')}\n`);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
}

function getOnce(url: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

async function get(url: string, count: number, timeoutMs: number): Promise<void> {
  const bodies: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let last = '';
  for (let i = 0; i < count; i++) {
    try {
      last = await getOnce(url, timeoutMs);
      const key = last.split('\n')[0].slice(0, 80);
      bodies[key] = (bodies[key] ?? 0) + 1;
    } catch (e) {
      const key = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      errors[key] = (errors[key] ?? 0) + 1;
    }
  }
  process.stdout.write(`${JSON.stringify({ bodies, errors, last: count === 1 ? last : undefined })}\n`);
  process.exitCode = Object.keys(errors).length ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [mode, a, b, c] = process.argv.slice(2);
  if (mode === 'serve') void serve(JSON.parse(a) as Listen[]).catch((e: Error) => {
    process.stderr.write(`lab http: ${e.message}\n`);
    process.exit(1);
  });
  else if (mode === 'get') void get(a, Number(b ?? 1), Number(c ?? 3000));
  else if (mode === 'fetch') {
    getOnce(a, 5000).then(
      (body) => process.stdout.write(body),
      (e: Error) => {
        process.stderr.write(`lab http: fetch ${a}: ${e.message}\n`);
        process.exitCode = 1;
      },
    );
  }
  else {
    process.stderr.write('lab http: usage: http.js serve JSON | get URL [COUNT] [TIMEOUT_MS] | fetch URL\n');
    process.exitCode = 2;
  }
}
