// SPDX-License-Identifier: Apache-2.0
// HTTP/1.1 over a bare TCP socket, for tests that must send what a well-behaved client never would:
// broken request lines, lying Content-Lengths, bodies trickled a byte at a time. Every request
// answers with what the server did (a status, or that it closed the connection, or nothing at all).
import { connect } from 'node:net';

export interface RawOutcome {
  /** 0 when no status line arrived */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** the server closed the connection (with or without an answer) */
  closed: boolean;
  /** nothing at all within the time limit: the server hangs on this client */
  hung: boolean;
  /** the socket's error, e.g. EPIPE: the server reset the connection while this client wrote */
  error?: string;
  ms: number;
}

export interface RawOptions {
  /** pause between the parts, in ms (a slow client) */
  gapMs?: number;
  /** give up after this long and report `hung` */
  timeoutMs?: number;
  /**
   * read nothing until every part is written, as clients that send the whole request first do
   * (Python's http.client, fetch with a body): a server that resets the connection while such a
   * client still writes loses its answer to that client
   */
  readAfterWrite?: boolean;
}

/** Splits `buf` into a response's status, headers and body once the body is complete. */
function parseResponse(buf: Buffer, ended: boolean): Omit<RawOutcome, 'closed' | 'hung' | 'ms'> | null {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) return null;
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = buf.subarray(end + 4);
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (body.length < n) return null;
    body = body.subarray(0, n);
  } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const nl = body.indexOf('\r\n', at);
      if (nl < 0) return null;
      const size = parseInt(body.subarray(at, nl).toString('latin1'), 16);
      if (size === 0) break;
      if (body.length < nl + 2 + size) return null;
      parts.push(body.subarray(nl + 2, nl + 2 + size));
      at = nl + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  } else if (!ended && Number(m[1]) !== 204 && Number(m[1]) !== 304) return null;
  return { status: Number(m[1]), headers, body: body.toString('utf8') };
}

/** Sends `parts` (waiting `gapMs` between them) to 127.0.0.1:port and collects one answer. */
export function rawRequest(port: number, parts: Array<string | Buffer>, o: RawOptions = {}): Promise<RawOutcome> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    if (o.readAfterWrite) sock.pause();
    let buf = Buffer.alloc(0);
    let done = false;
    let error: string | undefined;
    const timers: NodeJS.Timeout[] = [];
    const finish = (closed: boolean, hung: boolean): void => {
      if (done) return;
      done = true;
      for (const t of timers) clearTimeout(t);
      const r = parseResponse(buf, true);
      sock.destroy();
      resolve({ status: r?.status ?? 0, headers: r?.headers ?? {}, body: r?.body ?? '', closed, hung: hung && !r, ...(error ? { error } : {}), ms: performance.now() - t0 });
    };
    timers.push(setTimeout(() => finish(false, true), o.timeoutMs ?? 5000));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (parseResponse(buf, false)) finish(false, false);
    });
    sock.on('end', () => finish(true, false));
    sock.on('close', () => finish(true, false));
    // a reset after the answer was read is normal when the server closes with unread input
    sock.on('error', (e: NodeJS.ErrnoException) => {
      error ??= e.code ?? e.message;
      finish(true, false);
    });
    sock.on('connect', () => {
      if (!parts.length) sock.resume();
      parts.forEach((p, i) =>
        timers.push(
          setTimeout(() => {
            if (!done && !sock.destroyed) sock.write(p, () => i === parts.length - 1 && sock.resume());
          }, i * (o.gapMs ?? 0)),
        ),
      );
    });
  });
}

/** A complete request with Connection: close, Host and Content-Length filled in. */
export function httpRequest(method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Buffer {
  const b = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body);
  const h: Record<string, string> = { host: '127.0.0.1', connection: 'close', ...headers };
  if (body !== undefined && h['content-length'] === undefined && h['transfer-encoding'] === undefined) h['content-length'] = String(b.length);
  const head = `${method} ${path} HTTP/1.1\r\n${Object.entries(h)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), b]);
}
