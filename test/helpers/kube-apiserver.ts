// SPDX-License-Identifier: Apache-2.0
// A list/watch server of our own, speaking the Kubernetes API's protocol as @kubernetes/client-node
// needs it (no kube-apiserver can be installed on the test machines): Services, EndpointSlices and
// Nodes; lists with resourceVersion, paged with limit/continue; watches from a resourceVersion as
// streamed JSON lines (ADDED/MODIFIED/DELETED, BOOKMARK when asked for); an ERROR event with a 410
// Status when the asked version is older than the history kept; bearer-token auth. Tests change
// objects through it (each change bumps the one resourceVersion counter, as etcd's revision),
// compact its history, cut its watches, and take it away and back on the same port.
//
// Where it differs from kube-apiserver (tests must not depend on these): bookmarks are sent only
// when bookmark() is called or every bookmarkMs; label selectors are refused (400); a field
// selector may only name metadata.name or metadata.namespace; a continue token holds its whole
// snapshot in memory; a watch from a version newer than the current one starts from now.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type Resource = 'services' | 'endpointslices' | 'nodes';

interface Kind {
  kind: string;
  apiVersion: string;
  namespaced: boolean;
}

const KINDS: Record<Resource, Kind> = {
  services: { kind: 'Service', apiVersion: 'v1', namespaced: true },
  endpointslices: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', namespaced: true },
  nodes: { kind: 'Node', apiVersion: 'v1', namespaced: false },
};

/** An API object as tests write it: metadata.name (and namespace) at least. */
export interface KubeObject {
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface Change {
  rv: number;
  resource: Resource;
  type: EventType;
  object: KubeObject;
}

interface Watcher {
  resource: Resource;
  match: (o: KubeObject) => boolean;
  res: ServerResponse;
  bookmarks: boolean;
}

export interface KubeApiServerOptions {
  token?: string;
  /** changes kept for watches from an older version (default 10,000); older ones get a 410 */
  retain?: number;
  /** send a BOOKMARK to watches that asked for them this often (default: only on bookmark()) */
  bookmarkMs?: number;
}

const keyOf = (o: { metadata: { name: string; namespace?: string } }): string => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;

const status = (code: number, reason: string, message: string): Record<string, unknown> => ({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });

/** `/api/v1/services`, `/api/v1/namespaces/NS/services[/NAME]`, `/apis/discovery.k8s.io/v1/...`, `/api/v1/nodes[/NAME]` */
function route(path: string): { resource: Resource; namespace?: string; name?: string } | null {
  const m = /^\/(?:api\/v1|apis\/discovery\.k8s\.io\/v1)(?:\/namespaces\/([^/]+))?\/(services|endpointslices|nodes)(?:\/([^/]+))?\/?$/.exec(path);
  if (!m) return null;
  const resource = m[2] as Resource;
  const group = path.startsWith('/apis/') ? 'discovery.k8s.io/v1' : 'v1';
  if (KINDS[resource].apiVersion !== group) return null;
  if (m[1] && !KINDS[resource].namespaced) return null;
  return { resource, namespace: m[1] ? decodeURIComponent(m[1]) : undefined, name: m[3] ? decodeURIComponent(m[3]) : undefined };
}

export class KubeApiServer {
  readonly token: string;
  /** what was asked of it, for tests that check how the client behaved: `list services`, `watch nodes` ... */
  readonly requests: string[] = [];
  private rv = 1;
  private readonly objects: Record<Resource, Map<string, KubeObject>> = { services: new Map(), endpointslices: new Map(), nodes: new Map() };
  private history: Change[] = [];
  /** the oldest version a watch may start from (everything after it is in history) */
  private oldest = 1;
  private readonly retain: number;
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Socket>();
  private readonly continues = new Map<string, { rv: number; items: KubeObject[] }>();
  private server: Server | null = null;
  private bookmarkTimer: NodeJS.Timeout | null = null;
  private port = 0;

  private readonly opts: KubeApiServerOptions;

  private constructor(opts: KubeApiServerOptions) {
    this.opts = opts;
    this.token = opts.token ?? randomBytes(16).toString('hex');
    this.retain = opts.retain ?? 10_000;
  }

  static async start(opts: KubeApiServerOptions = {}): Promise<KubeApiServer> {
    const s = new KubeApiServer(opts);
    await s.listen();
    return s;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  get up(): boolean {
    return this.server !== null;
  }

  /** A kubeconfig file for the real client: http, so TLS verification is off (the client wants it said). */
  writeKubeconfig(file: string, token = this.token): string {
    const cfg = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'test', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'test', user: { token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: 'test', namespace: 'default' } }],
      'current-context': 'test',
    };
    writeFileSync(file, JSON.stringify(cfg, null, 2));
    return file;
  }

  // ---- objects ----

  /** Creates or replaces an object (ADDED or MODIFIED): it gets the next resourceVersion. */
  apply(resource: Resource, obj: KubeObject): KubeObject {
    const k = KINDS[resource];
    const key = keyOf(obj);
    const old = this.objects[resource].get(key);
    const rv = ++this.rv;
    const stored: KubeObject = {
      ...structuredClone(obj),
      kind: k.kind,
      apiVersion: k.apiVersion,
      metadata: {
        ...structuredClone(obj.metadata),
        ...(k.namespaced ? { namespace: obj.metadata.namespace ?? 'default' } : {}),
        uid: (old?.metadata.uid as string | undefined) ?? randomBytes(8).toString('hex'),
        resourceVersion: String(rv),
        creationTimestamp: (old?.metadata.creationTimestamp as string | undefined) ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      },
    };
    this.objects[resource].set(keyOf(stored), stored);
    this.record({ rv, resource, type: old ? 'MODIFIED' : 'ADDED', object: stored });
    return stored;
  }

  /** Deletes an object (DELETED, with the next resourceVersion); false when it is not there. */
  delete(resource: Resource, name: string, namespace = KINDS[resource].namespaced ? 'default' : undefined): boolean {
    const key = `${namespace ?? ''}/${name}`;
    const old = this.objects[resource].get(key);
    if (!old) return false;
    this.objects[resource].delete(key);
    const rv = ++this.rv;
    this.record({ rv, resource, type: 'DELETED', object: { ...old, metadata: { ...old.metadata, resourceVersion: String(rv) } } });
    return true;
  }

  get(resource: Resource, name: string, namespace = KINDS[resource].namespaced ? 'default' : undefined): KubeObject | undefined {
    return this.objects[resource].get(`${namespace ?? ''}/${name}`);
  }

  list(resource: Resource): KubeObject[] {
    return [...this.objects[resource].values()];
  }

  /** Forgets the whole history (etcd's compaction): a watch or continue from before now gets 410. */
  compact(): void {
    this.history = [];
    this.oldest = this.rv;
    for (const [t, c] of this.continues) if (c.rv < this.oldest) this.continues.delete(t);
  }

  /** A BOOKMARK now to every watch that asked for them. */
  bookmark(): void {
    for (const w of this.watchers) if (w.bookmarks) this.send(w, 'BOOKMARK', { kind: KINDS[w.resource].kind, apiVersion: KINDS[w.resource].apiVersion, metadata: { resourceVersion: String(this.rv) } });
  }

  /** Cuts every watch connection, as a load balancer or a restarting apiserver would. */
  dropWatches(): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) w.res.socket?.destroy();
    this.watchers.clear();
    return n;
  }

  /** Ends every watch cleanly (the stream ends, as at the apiserver's own watch timeout). */
  endWatches(): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) w.res.end();
    this.watchers.clear();
    return n;
  }

  get watches(): number {
    return this.watchers.size;
  }

  /** Goes away: the port is closed (connects are refused) and every connection is cut. */
  async stop(): Promise<void> {
    if (!this.server) return;
    const s = this.server;
    this.server = null;
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    this.bookmarkTimer = null;
    this.watchers.clear();
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Comes back on the same port, with the same objects and history. */
  async resume(): Promise<void> {
    if (!this.server) await this.listen(this.port);
  }

  // ---- HTTP ----

  private async listen(port = 0): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
    if (this.opts.bookmarkMs) {
      this.bookmarkTimer = setInterval(() => this.bookmark(), this.opts.bookmarkMs);
      this.bookmarkTimer.unref();
    }
  }

  private record(c: Change): void {
    this.history.push(c);
    if (this.history.length > this.retain) {
      const drop = this.history.length - this.retain;
      this.oldest = this.history[drop - 1].rv;
      this.history.splice(0, drop);
    }
    for (const w of this.watchers) if (w.resource === c.resource && w.match(c.object)) this.send(w, c.type, c.object);
  }

  private send(w: Watcher, type: string, object: unknown): void {
    w.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  private json(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const q = url.searchParams;
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      this.requests.push(`unauthorized ${url.pathname}`);
      return this.json(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
    }
    const r = route(url.pathname);
    if (!r) return this.json(res, 404, status(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`));
    if (req.method !== 'GET') return this.json(res, 405, status(405, 'MethodNotAllowed', `${req.method} is not supported here`));
    if (q.get('labelSelector')) return this.json(res, 400, status(400, 'BadRequest', 'label selectors are not supported by this test server'));
    let match: (o: KubeObject) => boolean;
    try {
      match = this.matcher(r.namespace, q.get('fieldSelector'));
    } catch (e) {
      return this.json(res, 400, status(400, 'BadRequest', (e as Error).message));
    }
    if (r.name) {
      const o = this.get(r.resource, r.name, r.namespace);
      this.requests.push(`get ${r.resource}/${r.name}`);
      return o ? this.json(res, 200, o) : this.json(res, 404, status(404, 'NotFound', `${r.resource} "${r.name}" not found`));
    }
    const watch = q.get('watch');
    if (watch === 'true' || watch === '1') return this.watch(r.resource, match, q, req, res);
    this.listResource(r.resource, match, q, res);
  }

  private matcher(namespace: string | undefined, fieldSelector: string | null): (o: KubeObject) => boolean {
    const want: Array<[string, string]> = [];
    for (const part of (fieldSelector ?? '').split(',').filter(Boolean)) {
      const m = /^(metadata\.name|metadata\.namespace)==?(.*)$/.exec(part);
      if (!m) throw new Error(`field selector ${part}: only metadata.name and metadata.namespace are supported here`);
      want.push([m[1].slice('metadata.'.length), m[2]]);
    }
    return (o) => (namespace === undefined || o.metadata.namespace === namespace) && want.every(([k, v]) => o.metadata[k] === v);
  }

  private listResource(resource: Resource, match: (o: KubeObject) => boolean, q: URLSearchParams, res: ServerResponse): void {
    const k = KINDS[resource];
    const limit = Number(q.get('limit') ?? 0);
    const cont = q.get('continue');
    let snap: { rv: number; items: KubeObject[] };
    let offset = 0;
    if (cont) {
      const [token, at] = cont.split(':');
      const c = this.continues.get(token);
      if (!c) return this.json(res, 410, status(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.'));
      snap = c;
      offset = Number(at);
    } else {
      snap = { rv: this.rv, items: [...this.objects[resource].values()].filter(match).sort((a, b) => keyOf(a).localeCompare(keyOf(b))) };
    }
    this.requests.push(`list ${resource}${limit ? ` limit=${limit}` : ''}${cont ? ' continue' : ''}`);
    const items = limit > 0 ? snap.items.slice(offset, offset + limit) : snap.items.slice(offset);
    const metadata: Record<string, unknown> = { resourceVersion: String(snap.rv) };
    if (limit > 0 && offset + limit < snap.items.length) {
      const token = cont ? cont.split(':')[0] : randomBytes(8).toString('hex');
      this.continues.set(token, snap);
      metadata.continue = `${token}:${offset + limit}`;
      metadata.remainingItemCount = snap.items.length - offset - limit;
    }
    this.json(res, 200, { kind: `${k.kind}List`, apiVersion: k.apiVersion, metadata, items });
  }

  private watch(resource: Resource, match: (o: KubeObject) => boolean, q: URLSearchParams, req: IncomingMessage, res: ServerResponse): void {
    const from = q.get('resourceVersion');
    const bookmarks = q.get('allowWatchBookmarks') === 'true' || q.get('allowWatchBookmarks') === '1';
    this.requests.push(`watch ${resource} rv=${from ?? ''}${bookmarks ? ' bookmarks' : ''}`);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    // the client's watch() resolves on the headers: send them before the first event
    res.flushHeaders();
    const w: Watcher = { resource, match, res, bookmarks };
    if (!from || from === '0') {
      // no version: the current state as ADDED events, then what follows
      for (const o of this.objects[resource].values()) if (match(o)) this.send(w, 'ADDED', o);
    } else {
      const n = Number(from);
      if (!Number.isInteger(n) || n < this.oldest) {
        // what kube-apiserver sends: a 200 stream with one ERROR event, then the end
        this.send(w, 'ERROR', status(410, 'Expired', `too old resource version: ${from} (${this.oldest})`));
        res.end();
        return;
      }
      for (const c of this.history) if (c.rv > n && c.resource === resource && match(c.object)) this.send(w, c.type, c.object);
    }
    this.watchers.add(w);
    const timeout = Number(q.get('timeoutSeconds') ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : null;
    const gone = (): void => {
      if (timer) clearTimeout(timer);
      this.watchers.delete(w);
    };
    req.on('close', gone);
    res.on('close', gone);
  }
}
