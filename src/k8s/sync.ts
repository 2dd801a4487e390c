// SPDX-License-Identifier: Apache-2.0
// The watch half of the Kubernetes service proxy: @kubernetes/client-node's ListWatch informers for
// Services, EndpointSlices and this node, and what the library leaves to its user:
// - an informer whose list or watch failed (a cut connection, the server away, a 5xx) calls its
//   error callback and stops for good: it is started again here, with exponential backoff and
//   jitter; start() keeps the last resourceVersion, so a short outage costs one watch, and a
//   compacted history (410) one relist, after which the informer reports every difference;
// - after a watch that ended with no event the library waits 1 s doubling to 30 s before watching
//   again, so a quiet resource could go unwatched for half a minute: its delay is capped here;
// - bookmarks are asked for (the library's informers do not), so a quiet watch still hears the
//   current resourceVersion and a re-watch after a timeout starts from it, not from a compacted one.
// Changes are coalesced per Service: a Service, or one of its slices, changed -> that Service alone
// is translated again (translate.ts) and handed on. Nothing happens to the datapath when the API
// server is away: what was programmed stays.
import { CoreV1Api, DiscoveryV1Api, ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject, type V1EndpointSlice, type V1Node, type V1Service } from '@kubernetes/client-node';
import { parseIp, type Ip } from '../lb/addr.js';
import { SERVICE_NAME_LABEL, translateService, type NodeContext, type Translation } from './translate.js';

/** `namespace/name` of a Service */
export type ServiceKey = string;

export interface SyncSink {
  /** the first full view (everything listed once): every Service's translation */
  synced(all: Map<ServiceKey, Translation>): void;
  /** one Service changed; null: it is gone (or, for a slice change, it has no Service) */
  changed(key: ServiceKey, t: Translation | null): void;
}

export type SyncState = 'starting' | 'synced' | 'retrying';

export interface SyncStatus {
  /** starting: no full sync yet; synced: every watch is up; retrying: a list or watch failed, the datapath keeps its last state */
  state: SyncState;
  /** a full sync has happened since the agent started */
  everSynced: boolean;
  server: string;
  node: { name: string; found: boolean; addresses: string[] };
  /** when the first full sync finished, and when the API server was last heard from (a list, an event or a bookmark) */
  syncedAt: string | null;
  lastContact: string | null;
  /** seconds since lastContact */
  lagSeconds: number | null;
  /** since when the sync has been failing (retrying) */
  disconnectedSince: string | null;
  errors: number;
  lastError: { time: string; resource: string; message: string } | null;
  /** informer restarts after an error, lists (the first ones and relists after a 410), bookmarks */
  restarts: number;
  lists: number;
  bookmarks: number;
  /** what it sees */
  counts: { services: number; endpointSlices: number; skipped: number; refusedPorts: number; truncatedPorts: number };
  /** the last change's time from its event to the balancer (ms) */
  lastApplyMs: number | null;
}

export interface SyncOptions {
  nodeName: string;
  server: string;
  /** restart backoff: first delay and the ceiling (ms); each delay is drawn from [d/2, d] */
  backoffMs?: { base: number; max: number };
  /** the longest the library may wait before watching again after a watch that ended quietly */
  rewatchCapMs?: number;
  /** how long a watch asks the server to run (seconds), drawn from [t, 2t] as client-go does */
  watchTimeoutSeconds?: number;
  /** reports what the sync does (errors, restarts, the first sync) */
  log?: (level: 'info' | 'warn' | 'error', msg: string) => void;
  random?: () => number;
}

type Resource = 'services' | 'endpointslices' | 'nodes';

/** One list call, paged: lists of 10,000 objects arrive in pages of 500, as client-go asks. */
const PAGE = 500;

async function pagedList<T extends KubernetesObject>(page: (cont?: string) => Promise<KubernetesListObject<T>>): Promise<KubernetesListObject<T>> {
  const first = await page();
  let cont = first.metadata?._continue;
  while (cont) {
    const next = await page(cont);
    first.items.push(...next.items);
    cont = next.metadata?._continue;
  }
  if (first.metadata) first.metadata._continue = undefined;
  return first;
}

const keyOf = (o: KubernetesObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
const sliceService = (s: V1EndpointSlice): ServiceKey | null => {
  const name = s.metadata?.labels?.[SERVICE_NAME_LABEL];
  return name ? `${s.metadata?.namespace ?? ''}/${name}` : null;
};

/** The node's addresses a socket on it may dial with a nodePort: its InternalIP and ExternalIP ones. */
export function nodeContext(nodeName: string, node: V1Node | undefined): NodeContext {
  const addresses: Ip[] = [];
  for (const a of node?.status?.addresses ?? []) {
    if (a.type !== 'InternalIP' && a.type !== 'ExternalIP') continue;
    const ip = parseIp(a.address);
    if (ip && !addresses.some((x) => x.text === ip.text)) addresses.push(ip);
  }
  const zone = node?.metadata?.labels?.['topology.kubernetes.io/zone'];
  return { nodeName, nodeAddresses: addresses, ...(zone ? { zone } : {}) };
}

const sameContext = (a: NodeContext, b: NodeContext): boolean => a.zone === b.zone && a.nodeAddresses.map((x) => x.text).join() === b.nodeAddresses.map((x) => x.text).join();

export class KubeSync {
  private readonly informers: Record<Resource, ListWatch<KubernetesObject>>;
  private readonly listed = new Set<Resource>();
  private readonly failing = new Map<Resource, string>();
  private readonly retry = new Map<Resource, { timer: NodeJS.Timeout | null; delay: number }>();
  /** slices by their Service, and the Service each slice was filed under (a label can change) */
  private readonly slicesOf = new Map<ServiceKey, Map<string, V1EndpointSlice>>();
  private readonly sliceOwner = new Map<string, ServiceKey>();
  private readonly dirty = new Set<ServiceKey>();
  /** when the oldest unflushed change arrived */
  private dirtySince: number | null = null;
  private flushScheduled = false;
  private node: NodeContext;
  private nodeFound = false;
  private translations = new Map<ServiceKey, Translation>();
  private stopped = true;
  private st = {
    syncedAt: null as number | null,
    lastContact: null as number | null,
    disconnectedSince: null as number | null,
    errors: 0,
    lastError: null as SyncStatus['lastError'],
    restarts: 0,
    lists: 0,
    bookmarks: 0,
    lastApplyMs: null as number | null,
  };
  private readonly backoff: { base: number; max: number };
  private readonly random: () => number;
  private readonly log: NonNullable<SyncOptions['log']>;

  constructor(
    kc: KubeConfig,
    private readonly opts: SyncOptions,
    private readonly sink: SyncSink,
  ) {
    this.backoff = opts.backoffMs ?? { base: 500, max: 30_000 };
    this.random = opts.random ?? Math.random;
    this.log = opts.log ?? (() => {});
    this.node = nodeContext(opts.nodeName, undefined);
    const core = kc.makeApiClient(CoreV1Api);
    const disc = kc.makeApiClient(DiscoveryV1Api);
    const watch = new BookmarkWatch(kc, opts.watchTimeoutSeconds ?? 300, this.random, (r, b) => this.contact(r, b));
    const cap = opts.rewatchCapMs ?? 1000;
    const delayFn = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.min(ms, cap) * (0.5 + this.random() / 2)));
    const field = `metadata.name=${opts.nodeName}`;
    const make = (resource: Resource, path: string, list: (cont?: string) => Promise<KubernetesListObject<KubernetesObject>>, fieldSelector?: string): ListWatch<KubernetesObject> => {
      const lw = new ListWatch<KubernetesObject>(path, watch, () => this.listed1(resource, pagedList(list)), false, undefined, fieldSelector, { delayFn });
      lw.on('error', (e: unknown) => this.failed(resource, e));
      return lw;
    };
    this.informers = {
      services: make('services', '/api/v1/services', (c) => core.listServiceForAllNamespaces({ limit: PAGE, _continue: c }) as Promise<KubernetesListObject<KubernetesObject>>),
      endpointslices: make('endpointslices', '/apis/discovery.k8s.io/v1/endpointslices', (c) => disc.listEndpointSliceForAllNamespaces({ limit: PAGE, _continue: c }) as Promise<KubernetesListObject<KubernetesObject>>),
      nodes: make('nodes', '/api/v1/nodes', (c) => core.listNode({ fieldSelector: field, limit: PAGE, _continue: c }) as Promise<KubernetesListObject<KubernetesObject>>, field),
    };
    const svc = this.informers.services;
    svc.on('add', (o) => this.touch(keyOf(o)));
    svc.on('update', (o) => this.touch(keyOf(o)));
    svc.on('delete', (o) => this.touch(keyOf(o)));
    const sl = this.informers.endpointslices;
    sl.on('add', (o) => this.slice(o as V1EndpointSlice, false));
    sl.on('update', (o) => this.slice(o as V1EndpointSlice, false));
    sl.on('delete', (o) => this.slice(o as V1EndpointSlice, true));
    const nodes = this.informers.nodes;
    const nodeChanged = (): void => this.nodeChanged();
    nodes.on('add', nodeChanged);
    nodes.on('update', nodeChanged);
    nodes.on('delete', nodeChanged);
  }

  /** Starts listing and watching; never throws: failures are retried and reported in status(). */
  start(): void {
    this.stopped = false;
    for (const r of Object.keys(this.informers) as Resource[]) this.startOne(r);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const r of this.retry.values()) if (r.timer) clearTimeout(r.timer);
    this.retry.clear();
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
  }

  get everSynced(): boolean {
    return this.st.syncedAt !== null;
  }

  status(now = Date.now()): SyncStatus {
    const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());
    let skipped = 0;
    let refused = 0;
    let truncated = 0;
    for (const t of this.translations.values()) {
      if (t.skipped) skipped++;
      refused += t.refused.length;
      truncated += t.truncated.length;
    }
    const state: SyncState = this.failing.size ? 'retrying' : this.everSynced ? 'synced' : 'starting';
    return {
      state,
      everSynced: this.everSynced,
      server: this.opts.server,
      node: { name: this.opts.nodeName, found: this.nodeFound, addresses: this.node.nodeAddresses.map((a) => a.text) },
      syncedAt: iso(this.st.syncedAt),
      lastContact: iso(this.st.lastContact),
      lagSeconds: this.st.lastContact === null ? null : Math.max(0, (now - this.st.lastContact) / 1000),
      disconnectedSince: this.failing.size ? iso(this.st.disconnectedSince) : null,
      errors: this.st.errors,
      lastError: this.st.lastError,
      restarts: this.st.restarts,
      lists: this.st.lists,
      bookmarks: this.st.bookmarks,
      counts: { services: this.informers.services.list().length, endpointSlices: this.informers.endpointslices.list().length, skipped, refusedPorts: refused, truncatedPorts: truncated },
      lastApplyMs: this.st.lastApplyMs,
    };
  }

  /** The last translation of every Service (for status and tests). */
  translationsNow(): ReadonlyMap<ServiceKey, Translation> {
    return this.translations;
  }

  // ---- informer plumbing ----

  private startOne(r: Resource): void {
    if (this.stopped) return;
    this.informers[r].start().catch((e: unknown) => this.failed(r, e));
  }

  /** A list came back: wraps the informer's list function (the informer applies it right after). */
  private async listed1<T>(r: Resource, p: Promise<T>): Promise<T> {
    const list = await p;
    this.st.lists++;
    this.contact(r);
    // after the informer has put the list into its cache and called back for each difference
    setImmediate(() => {
      this.listed.add(r);
      this.maybeSynced();
    });
    return list;
  }

  private contact(r: Resource, bookmark = false): void {
    this.st.lastContact = Date.now();
    if (bookmark) this.st.bookmarks++;
    if (this.failing.delete(r)) {
      const rt = this.retry.get(r);
      if (rt) rt.delay = 0;
      if (!this.failing.size) {
        this.log('info', `kubernetes: ${r}: connected again to ${this.opts.server}`);
        this.st.disconnectedSince = null;
      }
    }
  }

  private failed(r: Resource, e: unknown): void {
    if (this.stopped) return;
    const message = describeError(e);
    this.st.errors++;
    this.st.lastError = { time: new Date().toISOString(), resource: r, message };
    if (!this.failing.size) this.st.disconnectedSince = Date.now();
    this.failing.set(r, message);
    const rt = this.retry.get(r) ?? { timer: null, delay: 0 };
    if (rt.timer) return;
    rt.delay = rt.delay ? Math.min(rt.delay * 2, this.backoff.max) : this.backoff.base;
    const wait = Math.round(rt.delay * (0.5 + this.random() / 2));
    this.log('warn', `kubernetes: ${r}: ${message}; the datapath keeps its last state; retrying in ${(wait / 1000).toFixed(1)} s`);
    rt.timer = setTimeout(() => {
      rt.timer = null;
      this.st.restarts++;
      this.startOne(r);
    }, wait);
    this.retry.set(r, rt);
  }

  // ---- what changed ----

  private touch(key: ServiceKey): void {
    this.dirty.add(key);
    this.dirtySince ??= Date.now();
    this.schedule();
  }

  private slice(s: V1EndpointSlice, gone: boolean): void {
    const k = keyOf(s);
    const before = this.sliceOwner.get(k);
    const now = gone ? null : sliceService(s);
    if (before && before !== now) {
      this.slicesOf.get(before)?.delete(k);
      if (this.slicesOf.get(before)?.size === 0) this.slicesOf.delete(before);
      this.sliceOwner.delete(k);
      this.touch(before);
    }
    if (now) {
      let m = this.slicesOf.get(now);
      if (!m) this.slicesOf.set(now, (m = new Map()));
      m.set(k, s);
      this.sliceOwner.set(k, now);
      this.touch(now);
    }
  }

  private nodeChanged(): void {
    const n = this.informers.nodes.get(this.opts.nodeName) as V1Node | undefined;
    this.nodeFound = n !== undefined;
    const next = nodeContext(this.opts.nodeName, n);
    if (sameContext(next, this.node)) return;
    this.node = next;
    // node addresses name NodePort VIPs; the zone decides hints: every Service may change
    for (const o of this.informers.services.list()) this.dirty.add(keyOf(o));
    for (const k of this.translations.keys()) this.dirty.add(k);
    this.dirtySince ??= Date.now();
    this.schedule();
  }

  private schedule(): void {
    if (this.flushScheduled || !this.everSynced) return;
    this.flushScheduled = true;
    // a burst (a relist's differences, a Deployment's rollout) is one pass, each Service once
    setImmediate(() => this.flush());
  }

  private translate(key: ServiceKey): Translation | null {
    const slash = key.indexOf('/');
    const svc = this.informers.services.get(key.slice(slash + 1), key.slice(0, slash)) as V1Service | undefined;
    if (!svc) return null;
    return translateService(svc, [...(this.slicesOf.get(key)?.values() ?? [])], this.node);
  }

  private maybeSynced(): void {
    if (this.everSynced || this.listed.size < 3 || this.stopped) return;
    this.nodeFound = this.informers.nodes.get(this.opts.nodeName) !== undefined;
    if (!this.nodeFound) this.log('warn', `kubernetes: no node named ${this.opts.nodeName} in the API: NodePort services get no node address (set --node-name to the node's name)`);
    this.node = nodeContext(this.opts.nodeName, this.informers.nodes.get(this.opts.nodeName) as V1Node | undefined);
    const all = new Map<ServiceKey, Translation>();
    for (const o of this.informers.services.list()) {
      const k = keyOf(o);
      all.set(k, this.translate(k)!);
    }
    this.dirty.clear();
    this.dirtySince = null;
    this.translations = all;
    const t0 = Date.now();
    this.sink.synced(all);
    this.st.syncedAt = Date.now();
    this.st.lastApplyMs = this.st.syncedAt - t0;
    this.log('info', `kubernetes: synced from ${this.opts.server}: ${all.size} services, ${this.informers.endpointslices.list().length} endpoint slices, node ${this.opts.nodeName}${this.nodeFound ? ` (${this.node.nodeAddresses.map((a) => a.text).join(', ') || 'no addresses'})` : ' (not found)'}`);
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.stopped) return;
    const keys = [...this.dirty];
    const since = this.dirtySince;
    this.dirty.clear();
    this.dirtySince = null;
    for (const k of keys) {
      const t = this.translate(k);
      const before = this.translations.get(k);
      if (t) this.translations.set(k, t);
      else this.translations.delete(k);
      // a Service whose specs did not move (a status change, a bookmark's relist) costs no kernel write
      if (before && t && sameSpecs(before, t)) continue;
      if (!before && !t) continue;
      this.sink.changed(k, t);
    }
    if (since !== null) this.st.lastApplyMs = Date.now() - since;
  }
}

const specText = (t: Translation): string => JSON.stringify(t.specs.map((s) => [s.name, s.affinity, s.origin, s.backends.map((b) => [b.name, b.weight, b.state])]));
const sameSpecs = (a: Translation, b: Translation): boolean => specText(a) === specText(b);

/** An error of the client as one line: the HTTP status and reason, or the network error's code. */
export function describeError(e: unknown): string {
  const x = e as { code?: unknown; statusCode?: number; message?: string; cause?: { code?: string; message?: string }; body?: unknown };
  const status = typeof x?.code === 'number' ? x.code : x?.statusCode;
  if (status) {
    let reason = '';
    try {
      const b = typeof x.body === 'string' ? (JSON.parse(x.body) as { message?: string }) : (x.body as { message?: string } | undefined);
      reason = b?.message ?? '';
    } catch {
      /* not JSON */
    }
    return `HTTP ${status}${reason ? ` (${reason})` : status === 401 ? ' (unauthorized: the kubeconfig token is not accepted)' : status === 403 ? ' (forbidden: the ClusterRole lacks list/watch)' : ''}`;
  }
  const cause = x?.cause?.code ?? x?.cause?.message;
  const msg = x?.message ?? String(e);
  return cause && !msg.includes(cause) ? `${msg} (${cause})` : msg;
}

/**
 * The library's Watch, asking for bookmarks and a server-side timeout, and telling the sync when
 * the server was heard from. The informers get it in place of a plain Watch.
 */
class BookmarkWatch extends Watch {
  constructor(
    kc: KubeConfig,
    private readonly timeoutSeconds: number,
    private readonly random: () => number,
    private readonly heard: (r: Resource, bookmark?: boolean) => void,
  ) {
    super(kc);
  }

  override watch(path: string, query: Record<string, string | number | boolean | undefined>, callback: (phase: string, obj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    const r: Resource = path.endsWith('/endpointslices') ? 'endpointslices' : path.endsWith('/nodes') ? 'nodes' : 'services';
    const q = { ...query, allowWatchBookmarks: true, timeoutSeconds: Math.round(this.timeoutSeconds * (1 + this.random())) };
    let failed = false;
    const p = super.watch(
      path,
      q,
      (phase, obj, w) => {
        this.heard(r, phase === 'BOOKMARK');
        callback(phase, obj, w);
      },
      (err) => {
        failed ||= err !== null && err !== undefined;
        done(err);
      },
    );
    // the watch is up (its 200 came): the server is back, even if nothing changes for a while
    return p.then((c) => {
      if (!failed) this.heard(r);
      return c;
    });
  }
}
