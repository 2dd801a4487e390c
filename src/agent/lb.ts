// SPDX-License-Identifier: Apache-2.0
// The agent's balancer: the services it should translate (desired state, in the agent's state file
// beside the filter's), and the pinned balancer that carries them out. Like the filter, the balancer
// is pinned, so a crash or `kill -9` of the agent leaves connections translated; the next agent
// adopts the pins (counters and affinity kept) and re-applies its services, which changes nothing
// when they are already there.
import { existsSync, readdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { EbpfnetError } from '../errors.js';
import { Balancer, attachBalancer, detachBalancer, lbPinDir } from '../lb/balancer.js';
import { writeNames } from '../lb/names.js';
import { parseServiceEntry, parseServiceList, serviceEntry, type ServiceEntry } from '../lb/file.js';
import { originName, type K8sServiceSpec } from '../k8s/translate.js';
import { parseBackend, parseServiceAddr, type BackendState, type ServiceAddr, type ServiceSpec } from '../lb/model.js';
import type { ServiceView } from '../lb/view.js';
import type { MapFill, ProgInfo } from '../loader/index.js';
import { ensureCgroup2 } from '../loader/pinfs.js';
import type { BpfSource } from '../metrics/bpf.js';
import { sectionHash, type LbConfig } from './config.js';
import { checkIfMatch, type Caller } from './revision.js';

/** The running balancer, as the agent drives it. */
export interface LbHandle {
  /** the cgroup it is attached to (absolute) */
  readonly cgroup: string;
  /** the given services become the whole set, in one switch */
  apply(specs: ServiceSpec[]): void;
  upsert(spec: ServiceSpec): void;
  remove(addr: ServiceAddr): void;
  /** every live service with its counters */
  list(): ServiceView[];
  view(addr: ServiceAddr): ServiceView | undefined;
  /** the attached programs' run counts and times */
  programs(): ProgInfo[];
  mapFill(): MapFill[];
  /** drops this process's references; the pinned balancer stays */
  close(): void;
  /** ensure() loaded and attached it (no balancer was there): a failed start detaches it again */
  readonly attachedNow?: boolean;
  /** where it is pinned (the kernel's balancer only): Kubernetes' names are published beside it for `lb list` */
  readonly pinDir?: string;
}

export interface LbBackend {
  /**
   * The balancer attached to `cgroup` (null: the cgroup v2 root): the pinned one adopted when it is
   * there, moved when it is attached elsewhere, else loaded, attached and pinned.
   */
  ensure(cgroup: string | null): LbHandle;
  /** detaches and unpins; false when nothing was attached */
  unload(): boolean;
}

const linksPinned = (dir: string): boolean => {
  try {
    return readdirSync(join(dir, 'links')).length > 0;
  } catch {
    return false;
  }
};

const wrap = (b: Balancer, cgroup: string, attachedNow = false): LbHandle => ({
  cgroup,
  pinDir: b.pinDir,
  attachedNow,
  apply: (specs) => void b.apply(specs),
  upsert: (spec) => void b.upsert(spec),
  remove: (addr) => void b.remove(addr),
  list: () => b.list().services,
  view: (addr) => b.view(addr),
  programs: () => b.programs(),
  mapFill: () => b.mapFill(),
  close: () => b.close(),
});

export const kernelLb: LbBackend = {
  ensure(cgroup) {
    const dir = lbPinDir();
    const root = ensureCgroup2().path;
    const want = cgroup === null ? root : isAbsolute(cgroup) ? resolve(cgroup) : resolve(root, cgroup);
    const linksPinnedBefore = linksPinned(dir);
    if (linksPinnedBefore) {
      const b = Balancer.open({ op: 'agent lb' });
      const at = b.status().cgroup;
      if (at === want) return wrap(b, want);
      // attached somewhere else (the config changed): move it; the services are applied again
      b.close();
      detachBalancer();
    }
    const r = attachBalancer({ cgroup: want });
    // (moved from another cgroup: not undone by a failed start, the old place is gone already)
    return wrap(Balancer.open({ op: 'agent lb' }), r.cgroup, !linksPinnedBefore);
  },
  unload: () => existsSync(lbPinDir()) && detachBalancer().attached,
};

/** The balancer's part of the agent's state file. */
export interface LbState {
  revision: number;
  /** fingerprint of the config file's lb section this state started from */
  configHash: string | null;
  cgroup: string | null;
  services: ServiceEntry[];
}

/** How the balancer section reaches the agent's state store and audit log. */
export interface LbStore {
  /** resolves once `s` (or a later version) is on disk */
  save(s: LbState): Promise<void>;
  audit(caller: Caller, op: string, what: string, revision: number): void;
}

export interface LbBackendView {
  address: string;
  weight: number;
  state: string;
  /** selection slots it holds, and its chance for a new connection */
  slots: number;
  share: number;
  connections: number;
}

export interface LbServiceView {
  /** the service itself: `10.96.0.10:80/tcp`, URL-encoded in /v1/lb/services/:id */
  id: string;
  /** a Kubernetes service's `namespace/name:port` (absent for a typed one) */
  name?: string;
  kubernetes?: { namespace: string; service: string; portName: string; vipKind: string };
  /** a typed service whose VIP Kubernetes holds: kept in the desired state, not in the kernel */
  shadowedBy?: string;
  proto: string;
  affinity: number;
  slots: number;
  connections: number;
  rejects: number;
  backends: LbBackendView[];
}

export interface LbView {
  revision: number;
  cgroup: string | null;
  services: LbServiceView[];
}

const NOT_CONFIGURED = (op: string): EbpfnetError =>
  new EbpfnetError('EBPFNET_NOT_FOUND', op, 'the agent runs no balancer', { hint: 'add an lb section (cgroup, services) to the agent config and restart it' });

const specsOf = (entries: ServiceEntry[]): ServiceSpec[] => parseServiceList(entries, 'read agent state', 'lb.services');

const configHash = (c: LbConfig): string => sectionHash({ cgroup: c.cgroup, services: c.services.map(serviceEntry) });

const describe = (s: ServiceSpec): string =>
  `${s.name} -> ${s.backends.map((b) => `${b.name}${b.weight !== 1 ? `,weight=${b.weight}` : ''}${b.state !== 'active' ? `,state=${b.state}` : ''}`).join(' ') || 'no backends'}${s.affinity ? `; affinity ${s.affinity}s` : ''}`;

/** The first few names and how many more: one audit line per change, not 10,000 names in it. */
const AUDIT_NAMES = 5;
const named = (names: string[]): string =>
  names.length ? `${names.slice(0, AUDIT_NAMES).join(', ')}${names.length > AUDIT_NAMES ? ` and ${names.length - AUDIT_NAMES} more` : ''}` : 'none';

/** `10.96.0.10:80/tcp` (or without /tcp) from a URL's :id; bad syntax is a 400. */
const serviceId = (id: string, op: string): ServiceAddr => parseServiceAddr(id, op);

export class AgentLb {
  private handle: LbHandle | null = null;

  private constructor(
    private state: LbState | null,
    private readonly store: LbStore,
    private readonly backend: LbBackend,
  ) {}

  /**
   * The saved state, unless the config's lb section changed since it was written; then the kernel is
   * made to match. `changed` says the state must be saved.
   */
  static open(saved: LbState | undefined, config: LbConfig | null, backend: LbBackend, store: LbStore, opts: { kubernetes?: boolean } = {}): { lb: AgentLb; changed: boolean } {
    let state = saved ?? null;
    let changed = false;
    if (config && configHash(config) !== state?.configHash) {
      state = { revision: (state?.revision ?? 0) + 1, configHash: configHash(config), cgroup: config.cgroup, services: config.services.map(serviceEntry) };
      changed = true;
    }
    // Kubernetes needs a balancer: without an lb section it runs on the cgroup v2 root, with no typed services
    if (!state && opts.kubernetes) {
      state = { revision: 1, configHash: null, cgroup: null, services: [] };
      changed = true;
    }
    const lb = new AgentLb(state, store, backend);
    lb.k8sOn = opts.kubernetes === true;
    if (state) {
      lb.handle = backend.ensure(state.cgroup);
      try {
        const typed = specsOf(state.services);
        // With Kubernetes, what is pinned beyond the typed services is Kubernetes' from the last run:
        // it stays as it is until the first full sync replaces it (the API server may be away).
        lb.handle.apply(lb.k8sOn ? [...typed, ...lb.pinnedOthers(typed)] : typed);
      } catch (e) {
        lb.abandonStart();
        throw e;
      }
    }
    return { lb, changed };
  }

  /** The agent's start failed: a balancer this start attached is detached again; this closes. */
  abandonStart(): void {
    const fresh = this.handle?.attachedNow === true;
    this.close();
    if (fresh) this.backend.unload();
  }

  /** What the agent's state file holds for the balancer (undefined: no balancer). */
  get saved(): LbState | undefined {
    return this.state ?? undefined;
  }

  get configured(): boolean {
    return this.state !== null;
  }

  get revision(): number {
    return this.state?.revision ?? 0;
  }

  /** The desired services with what the kernel counted for them: the typed ones, then Kubernetes'. */
  view(): LbView {
    const st = this.need('list services');
    const live = new Map(this.handle!.list().map((v) => [v.service, v]));
    const typed = st.services.map((e) => this.typedView(e, live.get(e.service)));
    const k8s = [...this.k8s.values()].map((s) => k8sView(s, live.get(s.name)));
    return { revision: st.revision, cgroup: this.handle!.cgroup, services: [...typed, ...k8s] };
  }

  service(id: string): LbServiceView {
    const op = `get service ${id}`;
    const st = this.need(op);
    const addr = serviceId(id, op);
    const e = st.services.find((s) => s.service === addr.name);
    const k = this.k8s.get(addr.name);
    if (k && !e) return k8sView(k, this.handle!.view(addr));
    if (!e) throw notFound(op, addr.name);
    return this.typedView(e, k ? undefined : this.handle!.view(addr));
  }

  // ---- Kubernetes' services (src/agent/kubernetes.ts drives these) ----

  private k8sOn = false;
  /** VIP name -> the Kubernetes spec holding it */
  private readonly k8s = new Map<string, K8sServiceSpec>();
  /** `namespace/name` of a Service -> the VIP names it holds */
  private readonly k8sOf = new Map<string, string[]>();
  /** VIP name -> a Kubernetes claim refused because another Service held it: it takes the VIP when that one lets go */
  private readonly pending = new Map<string, { key: string; spec: K8sServiceSpec }>();
  /** VIP name -> why a claim on it was refused (now) */
  private readonly conflictsNow = new Map<string, string>();
  /** every conflict refused or shadowed since start (the metric's counter) */
  conflictsTotal = 0;

  /** Conflicts as they stand: a VIP claimed twice, and by whom. */
  conflicts(): Array<{ service: string; reason: string }> {
    return [...this.conflictsNow].map(([service, reason]) => ({ service, reason }));
  }

  /** Kubernetes' `namespace/name:port` for a VIP it holds (metrics and `lb list` name it so). */
  kubernetesOrigin(service: string): K8sServiceSpec['origin'] | undefined {
    return this.k8s.get(service)?.origin;
  }

  get kubernetesServices(): number {
    return this.k8s.size;
  }

  /**
   * The first full sync (and only it): every Kubernetes Service's specs become Kubernetes' whole
   * share, switched in with the typed services in one apply, which also drops whatever the last
   * run left pinned that no longer exists.
   */
  replaceKubernetes(all: ReadonlyMap<string, readonly K8sServiceSpec[]>): void {
    this.need('sync kubernetes services');
    this.k8s.clear();
    this.k8sOf.clear();
    this.pending.clear();
    this.conflictsNow.clear();
    for (const key of [...all.keys()].sort()) {
      const held: string[] = [];
      for (const s of all.get(key)!) if (this.claim(key, s)) held.push(s.name);
      if (held.length) this.k8sOf.set(key, held);
    }
    this.handle!.apply(this.effective(specsOf(this.state!.services)));
    this.publishNames();
  }

  /**
   * One Kubernetes Service changed (null: gone): its VIPs are upserted, each in the balancer's
   * atomic per-service switch, and the ones it no longer has are deleted (a typed service Kubernetes
   * shadowed comes back).
   */
  updateKubernetes(key: string, specs: readonly K8sServiceSpec[] | null): void {
    this.need('sync kubernetes service');
    const old = this.k8sOf.get(key) ?? [];
    const held: string[] = [];
    // this Service's refused claims are made again below (or dropped with it)
    for (const [name, p] of this.pending) if (p.key === key) this.pending.delete(name);
    for (const s of specs ?? []) {
      if (!this.claim(key, s)) continue;
      this.handle!.upsert(s);
      held.push(s.name);
    }
    for (const name of old) {
      if (held.includes(name)) continue;
      this.k8s.delete(name);
      this.conflictsNow.delete(name);
      const waiting = this.pending.get(name);
      if (waiting) {
        // the Service whose claim was refused takes the VIP now
        this.pending.delete(name);
        this.k8s.set(name, waiting.spec);
        this.k8sOf.set(waiting.key, [...(this.k8sOf.get(waiting.key) ?? []), name]);
        this.handle!.upsert(waiting.spec);
        continue;
      }
      const typed = this.state!.services.find((e) => e.service === name);
      const addr = parseServiceAddr(name, 'sync kubernetes service');
      if (typed) this.handle!.upsert(parseServiceEntry(typed, 'sync kubernetes service', 'lb.services'));
      else if (this.handle!.view(addr)) this.handle!.remove(addr);
    }
    if (held.length) this.k8sOf.set(key, held);
    else this.k8sOf.delete(key);
    this.publishNames();
  }

  private namesTimer: NodeJS.Timeout | null = null;

  /**
   * Kubernetes' names beside the pins (src/lb/names.ts), for `lb list` without the agent. Written
   * at most every 100 ms: a burst of EndpointSlice changes costs one write, not one each.
   */
  private publishNames(): void {
    const dir = this.handle?.pinDir;
    if (!dir || this.namesTimer) return;
    this.namesTimer = setTimeout(() => {
      this.namesTimer = null;
      const names: Record<string, string> = {};
      for (const [vip, spec] of this.k8s) names[vip] = originName(spec.origin);
      try {
        writeNames(dir, names);
      } catch {
        // only `lb list` without --agent misses the names; the agent's API still has them
      }
    }, 100);
    this.namesTimer.unref();
  }

  /** Takes the VIP for `key` unless another Kubernetes Service holds it; a typed one is shadowed (counted). */
  private claim(key: string, s: K8sServiceSpec): boolean {
    const holder = this.k8s.get(s.name);
    if (holder && `${holder.origin.namespace}/${holder.origin.service}` !== key) {
      this.conflict(s.name, `${originName(s.origin)} also claims ${s.name}, held by ${originName(holder.origin)}: refused until that one lets it go`);
      this.pending.set(s.name, { key, spec: s });
      return false;
    }
    if (!holder && this.state!.services.some((e) => e.service === s.name)) {
      this.conflict(s.name, `typed service ${s.name} is shadowed by Kubernetes service ${originName(s.origin)} (it comes back when Kubernetes lets the VIP go)`);
    } else if (!holder || this.conflictsNow.get(s.name)?.includes(' also claims ')) {
      this.conflictsNow.delete(s.name);
    }
    this.k8s.set(s.name, s);
    return true;
  }

  private conflict(name: string, reason: string): void {
    if (this.conflictsNow.get(name) !== reason) this.conflictsTotal++;
    this.conflictsNow.set(name, reason);
  }

  /** A typed write naming a VIP Kubernetes holds: refused (409), counted. */
  private refuseKubernetesVip(op: string, names: string[]): void {
    const taken = names.filter((n) => this.k8s.has(n));
    if (!taken.length) return;
    this.conflictsTotal++;
    const o = this.k8s.get(taken[0])!.origin;
    throw new EbpfnetError('EBPFNET_EXISTS', op, `${taken[0]} belongs to Kubernetes service ${originName(o)}${taken.length > 1 ? ` (and ${taken.length - 1} more VIPs in this change)` : ''}; Kubernetes' entry stays`, {
      hint: 'choose another VIP, or change the Service in Kubernetes',
    });
  }

  /** The kernel's whole set: the typed services Kubernetes does not shadow, and Kubernetes'. */
  private effective(typed: ServiceSpec[]): ServiceSpec[] {
    return [...typed.filter((s) => !this.k8s.has(s.name)), ...this.k8s.values()];
  }

  /** Pinned services that are not typed ones (Kubernetes' from the last run), as specs again. */
  private pinnedOthers(typed: ServiceSpec[]): ServiceSpec[] {
    const names = new Set(typed.map((s) => s.name));
    const out: ServiceSpec[] = [];
    for (const v of this.handle!.list()) {
      if (names.has(v.service)) continue;
      try {
        const a = parseServiceAddr(v.service, 'adopt pinned service');
        const backends = v.backends.map((b) => ({ ...parseBackend(b.backend, 'adopt pinned service'), weight: b.weight, state: b.state as BackendState }));
        out.push({ ...a, affinity: v.affinity, backends });
      } catch {
        /* an entry we cannot read back is left to the first sync's apply */
      }
    }
    return out;
  }

  private typedView(e: ServiceEntry, live: ServiceView | undefined): LbServiceView {
    const k = this.k8s.get(e.service);
    const v = serviceView(e, k ? undefined : live);
    return k ? { ...v, shadowedBy: originName(k.origin) } : v;
  }

  /**
   * PUT /v1/lb/services: the body's services become the whole set, in one switch. Like every write
   * here, the kernel has the change when this returns a promise; it resolves once the change is on
   * disk too, with the view right after the change (its revision is the change's).
   */
  async setAll(services: unknown, caller: Caller): Promise<LbView> {
    const op = 'change the services';
    this.check(op, caller);
    const specs = parseServiceList(services, 'parse services');
    this.refuseKubernetesVip(op, specs.map((x) => x.name));
    this.handle!.apply(this.effective(specs));
    const durable = this.commit(specs.map(serviceEntry), caller, 'PUT /v1/lb/services', `${specs.length} service${specs.length === 1 ? '' : 's'}: ${named(specs.map((s) => s.name))}`);
    return this.after(durable, () => this.view());
  }

  /** PUT /v1/lb/services/:id: creates the service or replaces its backends, weights, states and affinity. */
  async put(id: string, body: { affinity?: unknown; backends?: unknown }, caller: Caller): Promise<{ created: boolean; revision: number; service: LbServiceView }> {
    const op = `change service ${id}`;
    const st = this.check(op, caller);
    const spec = parseServiceEntry({ ...body, service: id }, `parse service ${id}`, 'body');
    this.refuseKubernetesVip(op, [spec.name]);
    const created = !st.services.some((s) => s.service === spec.name);
    this.handle!.upsert(spec);
    const entry = serviceEntry(spec);
    const services = created ? [...st.services, entry] : st.services.map((s) => (s.service === spec.name ? entry : s));
    const durable = this.commit(services, caller, `PUT /v1/lb/services/${spec.name}`, `${created ? 'add' : 'replace'} ${describe(spec)}`);
    return this.after(durable, () => ({ created, revision: this.revision, service: this.service(spec.name) }));
  }

  /** DELETE /v1/lb/services/:id */
  async remove(id: string, caller: Caller): Promise<LbView> {
    const op = `delete service ${id}`;
    const st = this.check(op, caller);
    const addr = serviceId(id, op);
    if (!st.services.some((s) => s.service === addr.name)) {
      if (this.k8s.has(addr.name)) this.refuseKubernetesVip(op, [addr.name]);
      throw notFound(op, addr.name);
    }
    // the kernel may have lost it (someone ran `lb del`): the desired state still drops it; a
    // shadowed one is not in the kernel (Kubernetes' entry is)
    if (!this.k8s.has(addr.name) && this.handle!.view(addr)) this.handle!.remove(addr);
    else if (this.conflictsNow.get(addr.name)?.startsWith('typed ')) this.conflictsNow.delete(addr.name);
    const durable = this.commit(st.services.filter((s) => s.service !== addr.name), caller, `DELETE /v1/lb/services/${addr.name}`, `delete ${addr.name}`);
    return this.after(durable, () => this.view());
  }

  /** DELETE /v1/lb/services: no service is translated any more; the balancer stays attached. */
  async removeAll(caller: Caller): Promise<LbView> {
    this.check('delete the services', caller);
    // Kubernetes' services stay: they are not the API's to delete
    this.handle!.apply(this.effective([]));
    const n = this.state!.services.length;
    const durable = this.commit([], caller, 'DELETE /v1/lb/services', `delete all ${n} services`);
    return this.after(durable, () => this.view());
  }

  /** What the metrics face reads at scrape time. */
  sources(): ServiceView[] {
    return this.handle ? this.handle.list() : [];
  }

  /** The balancer's programs and maps for the BPF metrics (none when it runs no balancer). */
  bpfSources(): BpfSource[] {
    const h = this.handle;
    return h ? [{ datapath: 'lb', target: h.cgroup, programs: () => h.programs(), maps: () => h.mapFill() }] : [];
  }

  close(): void {
    if (this.namesTimer) clearTimeout(this.namesTimer);
    this.namesTimer = null;
    this.handle?.close();
    this.handle = null;
  }

  /** `agent --cleanup`: detach and unpin the balancer a saved state names. */
  static cleanup(saved: LbState | undefined, backend: LbBackend = kernelLb): string[] {
    return saved && backend.unload() ? ['balancer'] : [];
  }

  private need(op: string): LbState {
    if (!this.state || !this.handle) throw NOT_CONFIGURED(op);
    return this.state;
  }

  private check(op: string, caller: Caller): LbState {
    const st = this.need(op);
    checkIfMatch(caller.ifMatch, st.revision, op, 'GET /v1/lb/services again and redo the change on what it returns');
    return st;
  }

  /**
   * After the kernel took the change: the audit line, then the state store (which syncs both).
   * The new state is in memory on return, so the next request sees it.
   */
  private commit(services: ServiceEntry[], caller: Caller, op: string, what: string): Promise<void> {
    const st = this.state!;
    this.state = { ...st, revision: st.revision + 1, services };
    this.store.audit(caller, op, what, this.state.revision);
    return this.store.save(this.state);
  }

  /** The view as of the change (taken now, before later changes), once the change is durable. */
  private async after<T>(durable: Promise<void>, view: () => T): Promise<T> {
    let v: T;
    try {
      v = view();
    } catch (e) {
      durable.catch(() => {}); // the caller hears of the view's failure; the save goes on
      throw e;
    }
    await durable;
    return v;
  }
}

const notFound = (op: string, name: string): EbpfnetError =>
  new EbpfnetError('EBPFNET_NOT_FOUND', op, `no service ${name}`, { hint: 'GET /v1/lb/services lists them' });

const n = (x: bigint | undefined): number => Number(x ?? 0n);

function k8sView(s: K8sServiceSpec, live: ServiceView | undefined): LbServiceView {
  const v = serviceView(serviceEntry(s), live);
  const o = s.origin;
  return { ...v, name: originName(o), kubernetes: { namespace: o.namespace, service: o.service, portName: o.portName, vipKind: s.vipKind } };
}

function serviceView(e: ServiceEntry, live: ServiceView | undefined): LbServiceView {
  const byAddr = new Map(live?.backends.map((b) => [b.backend, b]));
  return {
    id: e.service,
    proto: e.service.slice(e.service.lastIndexOf('/') + 1),
    affinity: e.affinity,
    slots: live?.slots ?? 0,
    connections: n(live?.conns),
    rejects: n(live?.rejects),
    backends: e.backends.map((b) => {
      const l = byAddr.get(b.address);
      return { address: b.address, weight: b.weight, state: b.state, slots: l?.slots ?? 0, share: l?.share ?? 0, connections: n(l?.conns) };
    }),
  };
}
