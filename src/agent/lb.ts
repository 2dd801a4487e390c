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
import { parseServiceEntry, parseServiceList, serviceEntry, type ServiceEntry } from '../lb/file.js';
import { parseServiceAddr, type ServiceAddr, type ServiceSpec } from '../lb/model.js';
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
  static open(saved: LbState | undefined, config: LbConfig | null, backend: LbBackend, store: LbStore): { lb: AgentLb; changed: boolean } {
    let state = saved ?? null;
    let changed = false;
    if (config && configHash(config) !== state?.configHash) {
      state = { revision: (state?.revision ?? 0) + 1, configHash: configHash(config), cgroup: config.cgroup, services: config.services.map(serviceEntry) };
      changed = true;
    }
    const lb = new AgentLb(state, store, backend);
    if (state) {
      lb.handle = backend.ensure(state.cgroup);
      try {
        lb.handle.apply(specsOf(state.services));
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

  /** The desired services with what the kernel counted for them. */
  view(): LbView {
    const st = this.need('list services');
    const live = new Map(this.handle!.list().map((v) => [v.service, v]));
    return { revision: st.revision, cgroup: this.handle!.cgroup, services: st.services.map((e) => serviceView(e, live.get(e.service))) };
  }

  service(id: string): LbServiceView {
    const op = `get service ${id}`;
    const st = this.need(op);
    const addr = serviceId(id, op);
    const e = st.services.find((s) => s.service === addr.name);
    if (!e) throw notFound(op, addr.name);
    return serviceView(e, this.handle!.view(addr));
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
    this.handle!.apply(specs);
    const durable = this.commit(specs.map(serviceEntry), caller, 'PUT /v1/lb/services', `${specs.length} service${specs.length === 1 ? '' : 's'}: ${named(specs.map((s) => s.name))}`);
    return this.after(durable, () => this.view());
  }

  /** PUT /v1/lb/services/:id: creates the service or replaces its backends, weights, states and affinity. */
  async put(id: string, body: { affinity?: unknown; backends?: unknown }, caller: Caller): Promise<{ created: boolean; revision: number; service: LbServiceView }> {
    const op = `change service ${id}`;
    const st = this.check(op, caller);
    const spec = parseServiceEntry({ ...body, service: id }, `parse service ${id}`, 'body');
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
    if (!st.services.some((s) => s.service === addr.name)) throw notFound(op, addr.name);
    // the kernel may have lost it (someone ran `lb del`): the desired state still drops it
    if (this.handle!.view(addr)) this.handle!.remove(addr);
    const durable = this.commit(st.services.filter((s) => s.service !== addr.name), caller, `DELETE /v1/lb/services/${addr.name}`, `delete ${addr.name}`);
    return this.after(durable, () => this.view());
  }

  /** DELETE /v1/lb/services: no service is translated any more; the balancer stays attached. */
  async removeAll(caller: Caller): Promise<LbView> {
    this.check('delete the services', caller);
    this.handle!.apply([]);
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
