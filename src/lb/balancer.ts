// SPDX-License-Identifier: Apache-2.0
// The kernel half of the balancer: load bpf/lb.bpf.o, attach its eight sock_addr programs to a
// cgroup through bpf_links, pin maps and links under /sys/fs/bpf/ebpfnet/lb, and later open those
// pins to change the running balancer. Every change is planned by plan.ts (pure) and executed here
// in the plan's order, under a lock, so a connect() never meets a half-written service.
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { EbpfnetError, isEbpfnetError } from '../errors.js';
import * as G from '../gen/lb.js';
import {
  BpfMap,
  ObjectSpec,
  cgroup2DirState,
  ensureBpffs,
  ensureCgroup2,
  findCgroup2,
  inBpffs,
  linkInfo,
  netnsCookie,
  objectPath,
  openPinnedLink,
  openPinnedMap,
  progInfo,
  reachPin,
  pruneEmptyDirs,
  requireRoot,
  withDir,
  track,
  untrack,
  type Closable,
  type Link,
  type MapFill,
  type MapLayout,
  type MountResult,
  type ProgInfo,
} from '../loader/index.js';
import { withLock } from './lock.js';
import { removeNames } from './names.js';
import type { ServiceAddr, ServiceSpec } from './model.js';
import { IdSource, applyNeeds, applyParts, joinService, joinState, keyName, planApply, planDelete, planOps, planSteps, planUpsert, preOps, svcKey, v4Order, type LiveService, type LiveState, type Op, type Plan, type Summary } from './plan.js';
import { explain, newNameCache, serviceView, type Explanation, type ServiceView } from './view.js';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/ebpfnet/lb';

/** service names in order, numbers by value (10.96.0.9 before 10.96.0.10) */
const BY_NAME = new Intl.Collator('en', { numeric: true });

/**
 * Where the balancer's pins live, as this process reaches them (the host's bpffs, also from a
 * mount namespace of its own: see reachPin); EBPFNET_LB_PIN_DIR moves them (tests and benchmarks
 * do). `create`: pins are about to be made (bpffs is mounted when missing).
 */
export const lbPinDir = (op = 'lb', opts: { create?: boolean } = {}, dir = lbPinSetting()): string => reachPin(dir, op, opts);

/** The balancer's pin directory as the host names it (for help texts: asks the kernel nothing). */
export const lbPinSetting = (): string => process.env.EBPFNET_LB_PIN_DIR || DEFAULT_PIN_DIR;

const mapPin = (dir: string, name: string): string => join(dir, 'maps', name);
const linkPin = (dir: string, name: string): string => join(dir, 'links', name);

const usage = (op: string, detail: string, hint?: string): EbpfnetError => new EbpfnetError('EBPFNET_USAGE', op, detail, { hint });

interface LbMaps {
  svc: BpfMap<G.LbSvcKey, G.LbSvc>;
  slots: BpfMap<G.LbSlotKey, number>;
  backends: BpfMap<number, G.LbBackend>;
  affinity: BpfMap<G.LbAffKey, G.LbAffVal>;
  revnat: BpfMap<G.LbRevKey, G.LbRevVal>;
  svcStats: BpfMap<number, G.LbSvcStats>;
  beStats: BpfMap<number, G.LbBeStats>;
  meta: BpfMap<number, G.LbMeta>;
}

function pinnedNames(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** The pin directory must be in a bpffs, or pinning fails with a confusing EPERM. */
function checkPinDir(dir: string, op: string): void {
  if (!inBpffs(dir)) throw usage(op, `${dir} is not in a bpf filesystem`, 'pins live under /sys/fs/bpf; unset EBPFNET_LB_PIN_DIR or point it there');
}

/**
 * A cgroup v2 directory: absolute (on any cgroup2 mount: the kernel says which filesystem a path is
 * on), or relative to the mount the balancer uses.
 */
function resolveCgroup(path: string | undefined, root: string, op: string): string {
  const full = path === undefined ? root : path.startsWith('/') ? resolve(path) : resolve(root, path);
  const state = cgroup2DirState(full);
  if (state === 'missing') {
    throw new EbpfnetError('EBPFNET_NOT_FOUND', op, `no cgroup at ${full}`, { hint: `create it (mkdir ${full}) or choose one under ${root}` });
  }
  if (state === 'other') {
    throw usage(op, `${full} is not a cgroup v2 directory`, `give a cgroup under a cgroup2 mount such as ${root}, or a path relative to it`);
  }
  return full;
}

/** The cgroup v2 directory with this id (its inode number), searched breadth first. */
export function cgroupPathById(id: bigint): string | null {
  const root = findCgroup2();
  if (!root) return null;
  const queue = [root];
  for (let seen = 0; queue.length && seen < 200_000; seen++) {
    const dir = queue.shift()!;
    try {
      if (statSync(dir, { bigint: true }).ino === id) return dir;
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) queue.push(join(dir, e.name));
    } catch {
      /* a cgroup removed while we walk */
    }
  }
  return null;
}

export interface ProgramStatus {
  program: string;
  progId: number;
  linkId: number;
}

export interface BalancerStatus {
  pinDir: string;
  cgroup: string | null;
  programs: ProgramStatus[];
}

/**
 * What the pinned links say: which programs, attached where. `where` false: the cgroup's path is
 * not looked for (a walk of the cgroup tree, for every scrape of the programs' counters).
 */
function readStatus(dir: string, where = true): BalancerStatus {
  const programs: ProgramStatus[] = [];
  let cgroupId: bigint | undefined;
  for (const name of pinnedNames(join(dir, 'links'))) {
    const l = openPinnedLink(linkPin(dir, name), name);
    try {
      const info = linkInfo(l.fd);
      programs.push({ program: name, progId: info.progId, linkId: info.id });
      cgroupId ??= info.cgroupId;
    } finally {
      l.close();
    }
  }
  return { pinDir: dir, cgroup: cgroupId === undefined || !where ? null : cgroupPathById(cgroupId), programs };
}

export interface AttachOptions {
  /** cgroup v2 directory, absolute or relative to the mount; default: the root */
  cgroup?: string;
  pinDir?: string;
}

export interface AttachResult {
  cgroup: string;
  pinDir: string;
  programs: string[];
  /** what had to be mounted first */
  mounted: MountResult[];
  /** maps already pinned (from an earlier attach) were kept, with their services */
  reusedMaps: string[];
}

/** Loads the balancer, attaches it to a cgroup and pins it: it runs on after this process exits. */
export function attachBalancer(opts: AttachOptions = {}): AttachResult {
  const op = 'lb attach';
  requireRoot(op);
  // the pins first: where they would vanish with this command (ip netns exec), nothing is attached
  const mounted = [ensureBpffs(op), ensureCgroup2()].filter((m) => m.mounted);
  const root = ensureCgroup2().path;
  const cgroup = resolveCgroup(opts.cgroup, root, op);
  const dir = lbPinDir(op, { create: true }, opts.pinDir);
  checkPinDir(dir, op);
  return withLock(dir, op, () => {
    if (pinnedNames(join(dir, 'links')).length) {
      const st = readStatus(dir);
      throw new EbpfnetError('EBPFNET_EXISTS', op, `the balancer is already attached${st.cgroup ? ` to ${st.cgroup}` : ''} (pinned at ${dir})`, {
        hint: 'detach it first: ebpfnet lb detach',
      });
    }
    // maps/ first through withDir: a concurrent unload may prune the folders above it meanwhile
    withDir(join(dir, 'maps'), () => mkdirSync(join(dir, 'links'), { recursive: true }));
    const spec = ObjectSpec.open(objectPath(G.LAYOUT.object));
    const reused: Array<BpfMap<unknown, unknown>> = [];
    try {
      for (const m of G.LAYOUT.maps) {
        const p = mapPin(dir, m.name);
        if (!existsSync(p)) continue;
        const pm = openPinnedMap(p, m as MapLayout);
        reused.push(pm);
        spec.reuseMap(m.name, pm.fd);
      }
    } catch (e) {
      spec.close();
      for (const m of reused) m.close();
      throw e;
    }
    const obj = spec.load();
    const links: Link[] = [];
    const pinnedMaps: string[] = [];
    try {
      const meta = obj.map(G.LB_META);
      const m = meta.lookup(G.LB_META_KEY);
      if (!m || !m.next_svc) meta.update(G.LB_META_KEY, { gen: 0, next_svc: 1, next_backend: 1 });
      for (const layout of G.LAYOUT.maps) {
        const p = mapPin(dir, layout.name);
        if (existsSync(p)) continue;
        obj.map(layout as MapLayout).pin(p);
        pinnedMaps.push(p);
      }
      for (const p of G.LAYOUT.programs) {
        const l = obj.program(p).attachCgroup(cgroup);
        links.push(l);
        l.pin(linkPin(dir, p.name));
      }
    } catch (e) {
      // Leave nothing half-attached: our links go, and so do the pins this call made.
      for (const l of links.reverse()) {
        try {
          l.detach();
        } catch {
          /* reported by the original error */
        }
      }
      for (const p of pinnedMaps) rmSync(p, { force: true });
      throw e;
    } finally {
      for (const l of links) l.close(); // pinned: only our reference goes
      obj.close();
      for (const m of reused) m.close();
    }
    return { cgroup, pinDir: dir, programs: G.LAYOUT.programs.map((p) => p.name), mounted, reusedMaps: reused.map((m) => m.name) };
  });
}

export interface DetachResult {
  pinDir: string;
  /** false when nothing was attached */
  attached: boolean;
  cgroup: string | null;
  programs: string[];
  maps: string[];
}

/** Detaches our links (only ours: other programs on the cgroup stay) and removes our pins. */
export function detachBalancer(opts: { pinDir?: string } = {}): DetachResult {
  const op = 'lb detach';
  requireRoot(op);
  const dir = lbPinDir(op, {}, opts.pinDir);
  const res: DetachResult = { pinDir: dir, attached: false, cgroup: null, programs: [], maps: [] };
  if (!existsSync(dir)) return res;
  return withLock(dir, op, () => {
    const st = readStatus(dir);
    res.cgroup = st.cgroup;
    for (const name of pinnedNames(join(dir, 'links'))) {
      openPinnedLink(linkPin(dir, name), `${name} on ${st.cgroup ?? 'its cgroup'}`).detach();
      res.programs.push(name);
    }
    for (const name of pinnedNames(join(dir, 'maps'))) {
      rmSync(mapPin(dir, name), { force: true });
      res.maps.push(name);
    }
    res.attached = res.programs.length > 0;
    removeNames(dir);
    // not empty: something that is not ours lives there, and stays; else up to /sys/fs/bpf/ebpfnet
    pruneEmptyDirs(join(dir, 'links'), dir);
    pruneEmptyDirs(join(dir, 'maps'), dir);
    pruneEmptyDirs(dirname(dir));
    return res;
  });
}

export interface ChangeResult {
  summary: Summary;
  /** what was done, in order */
  steps: string[];
}

/** The running balancer, through its pinned maps. */
export class Balancer implements Closable {
  readonly pinDir: string;
  private maps: LbMaps | null;
  /** names of the services and backends listed before (see NameCache), pruned to the live ones */
  private names = newNameCache();

  private constructor(pinDir: string, maps: LbMaps) {
    this.pinDir = pinDir;
    this.maps = maps;
    track(this);
  }

  /** Opens the pinned maps of the attached balancer. */
  static open(opts: { pinDir?: string; op?: string } = {}): Balancer {
    const op = opts.op ?? 'lb';
    requireRoot(op);
    const dir = lbPinDir(op, {}, opts.pinDir);
    const missing = G.LAYOUT.maps.filter((m) => !existsSync(mapPin(dir, m.name)));
    if (missing.length || !pinnedNames(join(dir, 'links')).length) {
      throw new EbpfnetError('EBPFNET_NOT_FOUND', op, `the balancer is not attached (nothing pinned at ${dir})`, { hint: 'attach it: ebpfnet lb attach' });
    }
    const opened: Array<BpfMap<unknown, unknown>> = [];
    const open = <K, V>(layout: MapLayout<K, V>): BpfMap<K, V> => {
      const m = openPinnedMap(mapPin(dir, layout.name), layout);
      opened.push(m as BpfMap<unknown, unknown>);
      return m;
    };
    try {
      return new Balancer(dir, {
        svc: open(G.LB_SVC),
        slots: open(G.LB_SLOTS),
        backends: open(G.LB_BACKENDS),
        affinity: open(G.LB_AFFINITY),
        revnat: open(G.LB_REVNAT),
        svcStats: open(G.LB_SVC_STATS),
        beStats: open(G.LB_BE_STATS),
        meta: open(G.LB_META),
      });
    } catch (e) {
      for (const m of opened) m.close();
      if (isEbpfnetError(e) && e.op.startsWith('open map')) {
        throw new EbpfnetError('EBPFNET_KERNEL', op, `the pinned maps at ${dir} do not match this version of ebpfnet (${e.message})`, {
          hint: 'detach and attach again: ebpfnet lb detach && ebpfnet lb attach',
          cause: e,
        });
      }
      throw e;
    }
  }

  private get m(): LbMaps {
    if (!this.maps) throw new EbpfnetError('EBPFNET_CLOSED', 'lb', 'the balancer handle was closed');
    return this.maps;
  }

  close(): void {
    if (!this.maps) return;
    for (const m of Object.values(this.maps)) (m as BpfMap<unknown, unknown>).close();
    this.maps = null;
    untrack(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  status(): BalancerStatus {
    return readStatus(this.pinDir);
  }

  /** The attached programs' run counts and times (one per pinned link). */
  programs(): ProgInfo[] {
    return readStatus(this.pinDir, false).programs.flatMap((p) => progInfo(p.progId) ?? []);
  }

  /** How full each map is (hash maps are walked: a call per entry). */
  mapFill(): MapFill[] {
    return Object.values(this.m).map((m) => (m as BpfMap<unknown, unknown>).fill());
  }

  private meta(): G.LbMeta {
    return this.m.meta.lookup(G.LB_META_KEY) ?? { gen: 0, next_svc: 1, next_backend: 1 };
  }

  /** Everything in the maps, joined. */
  state(): LiveState {
    const m = this.m;
    return joinState(this.meta(), m.svc.entries(), m.slots.entries(), m.backends.entries());
  }

  /**
   * One live service, read key by key (cheap, whatever the number of services): its whole slot
   * table (at most LB_MAX_SLOTS selection slots and its members), joined as state() joins them, so
   * a table a crash left incomplete shows as broken here too.
   */
  service(addr: ServiceAddr, gen = this.meta().gen): LiveService | undefined {
    const m = this.m;
    const key = svcKey(addr, gen);
    const value = m.svc.lookup(key);
    if (!value) return undefined;
    const table: Array<number | undefined> = [];
    const backends = new Map<number, G.LbBackend>();
    const ids = value.backend_id ? [value.backend_id] : [];
    if (!value.backend_id) {
      const end = Math.max(value.slots, value.members_at + value.backends);
      for (let i = 0; i < end; i++) {
        if (i >= value.slots && i < value.members_at) continue;
        table[i] = m.slots.lookup({ svc_id: value.svc_id, rev: value.rev, slot: i });
      }
      for (let i = value.members_at; i < value.members_at + value.backends; i++) if (table[i] !== undefined) ids.push(table[i]!);
    }
    for (const id of ids) {
      const b = m.backends.lookup(id);
      if (b) backends.set(id, b);
    }
    return joinService(key, value, table, backends);
  }

  /**
   * The live generation's services joined with their slot tables and backends, as state() has
   * them, without the rest of state() (stale entries, orphans): the slot table is read raw and only
   * the live tables are kept, so a 10,000-service listing makes no object or string per slot.
   */
  private liveServices(): { services: LiveService[]; broken: string[] } {
    const m = this.m;
    const gen = this.meta().gen;
    const svcs = m.svc.entries().filter(([k]) => k.gen === gen);
    // svc_id -> the slot-table revision the live entry uses, and that table (slot -> backend id)
    const revs = new Map<number, number>();
    for (const [, v] of svcs) if (!v.backend_id) revs.set(v.svc_id, v.rev);
    const tables = new Map<number, number[]>();
    const ks = G.LbSlotKey.size;
    const read = m.slots.scanBatch((keys, vals, n) => {
      for (let i = 0; i < n; i++) {
        const svcId = keys.readUInt32LE(i * ks);
        if (revs.get(svcId) !== keys.readUInt32LE(i * ks + 4)) continue;
        let t = tables.get(svcId);
        if (!t) tables.set(svcId, (t = []));
        t[keys.readUInt32LE(i * ks + 8)] = vals.readUInt32LE(i * 4);
      }
      return true;
    });
    if (!read) {
      // no batch lookup on this kernel: the slower way, entry by entry
      const st = this.state();
      return { services: st.services, broken: st.broken };
    }
    const backends = new Map(m.backends.entries());
    const services: LiveService[] = [];
    const broken: string[] = [];
    for (const [key, value] of svcs) {
      const s = joinService(key, value, tables.get(value.svc_id) ?? [], backends);
      if (s.broken) broken.push(keyName(key));
      services.push(s);
    }
    return { services, broken };
  }

  /** Every live service with its backends and counters, sorted by name. */
  list(): { services: ServiceView[]; broken: string[] } {
    const st = this.liveServices();
    const svcStats = new Map(this.m.svcStats.entries());
    const beStats = new Map(this.m.beStats.entries());
    // IPv4 first, then IPv6; numbers in order (10.96.0.9 before 10.96.0.10). IPv4 services sort by
    // one number (address, port, then tcp before udp), which is the order the collator gives their
    // dotted names without its cost (10,000 services: 90 ms of compares per listing, every scrape);
    // IPv6 by the collator, one collator for all (localeCompare with options builds one per call).
    const v4: Array<[number, ServiceView]> = [];
    const v6: Array<[string, ServiceView]> = [];
    for (const s of st.services) {
      const v = serviceView(s, svcStats, beStats, this.names);
      const k = v4Order(s.key);
      if (k === null) v6.push([v.service, v]);
      else v4.push([k, v]);
    }
    v4.sort((x, y) => x[0] - y[0]);
    v6.sort((x, y) => BY_NAME.compare(x[0], y[0]));
    const services = new Array<ServiceView>(v4.length + v6.length);
    for (let i = 0; i < v4.length; i++) services[i] = v4[i][1];
    for (let i = 0; i < v6.length; i++) services[v4.length + i] = v6[i][1];
    this.pruneNames(services);
    return { services, broken: st.broken };
  }

  /** Forgets the names of services and backends gone (ids are never reused), once they are most of the cache. */
  private pruneNames(live: ServiceView[]): void {
    let backends = 0;
    for (const v of live) backends += v.backends.length;
    if (this.names.services.size <= 2 * live.length + 64 && this.names.backends.size <= 2 * backends + 64) return;
    const next = newNameCache();
    for (const v of live) {
      next.services.set(v.id, v.service);
      for (const b of v.backends) next.backends.set(b.id, b.backend);
    }
    this.names = next;
  }

  /** Creates the service, or replaces its backends, weights, states and affinity. */
  upsert(spec: ServiceSpec): ChangeResult {
    return withLock(this.pinDir, 'lb add', () => {
      const meta = this.meta();
      const live = this.service(spec, meta.gen);
      const plan = planUpsert(live, spec, meta.gen, new IdSource(meta.next_svc, meta.next_backend));
      return this.execute(plan, meta);
    });
  }

  remove(addr: ServiceAddr): ChangeResult {
    return withLock(this.pinDir, 'lb del', () => {
      const meta = this.meta();
      const live = this.service(addr, meta.gen);
      if (!live) throw new EbpfnetError('EBPFNET_NOT_FOUND', 'lb del', `no service ${addr.name}`, { hint: 'see the services with: ebpfnet lb list' });
      return this.execute(planDelete(live), meta);
    });
  }

  /**
   * The given services become the whole set, in one switch. Executed part by part (applyParts):
   * each part's entries are written and dropped before the next is made, then the generation flips.
   */
  apply(specs: ServiceSpec[]): ChangeResult {
    return withLock(this.pinDir, 'lb apply', () => {
      const state = this.state();
      const meta = this.meta();
      this.checkRoom(applyNeeds(state, specs));
      const parts = applyParts(state, specs, new IdSource(meta.next_svc, meta.next_backend));
      const written = { backends: 0, slots: 0, services: 0 };
      let r = parts.next();
      let post: Plan;
      try {
        for (; !r.done; r = parts.next()) {
          for (const op of preOps(r.value, meta)) this.run(op);
          written.backends += r.value.writeBackends.length;
          written.slots += r.value.writeSlots.length;
          written.services += r.value.writeServices.length;
        }
        post = r.value;
        if (!post.switch) return { summary: post.summary, steps: [] };
        this.run(planOps(post, meta).switch!);
      } catch (e) {
        // The next generation is invisible until the flip; take back its service entries (the
        // tables they named are swept by the next apply as orphans).
        const next = state.gen ? 0 : 1;
        try {
          this.m.svc.deleteBatch(specs.map((s) => svcKey(s, next)));
        } catch {
          /* the original error matters more */
        }
        throw e;
      }
      for (const op of planOps(post, meta).after) this.run(op);
      const steps = [`write ${written.backends} backends, ${written.slots} slots and ${written.services} services (next generation)`, ...planSteps(post).filter((x) => !x.startsWith('reserve'))];
      return { summary: post.summary, steps };
    });
  }

  /** What apply() would do, without doing it. */
  plan(specs: ServiceSpec[]): ChangeResult {
    const meta = this.meta();
    const p = planApply(this.state(), specs, new IdSource(meta.next_svc, meta.next_backend));
    return { summary: p.summary, steps: planSteps(p) };
  }

  /** Refuses up front a set that cannot fit, instead of failing half-way through the writes. */
  private checkRoom(need: { services: number; slots: number; backends: number }): void {
    const full = (what: string, n: number, max: number, hint: string): never => {
      throw new EbpfnetError('EBPFNET_MAP_FULL', 'lb apply', `${what}: ${n} needed, room for ${max}`, { hint });
    };
    const perGen = G.LB_SVC.maxEntries / 2;
    if (need.services > perGen) full('too many services', need.services, perGen, 'split the services over several balancers (cgroups)');
    if (need.slots > G.LB_SLOTS.maxEntries) full('too many slots', need.slots, G.LB_SLOTS.maxEntries, 'use fewer backends or smaller weights');
    if (need.backends > G.LB_BACKENDS.maxEntries) full('too many backends', need.backends, G.LB_BACKENDS.maxEntries, 'use fewer backends');
  }

  /**
   * Runs a plan (planOps decides the order): new entries, the switch, then the clean-up. A failure
   * before the switch removes what this call wrote, so the live state is exactly what it was.
   */
  private execute(p: Plan, meta: G.LbMeta): ChangeResult {
    const ops = planOps(p, meta);
    const steps = planSteps(p);
    if (!ops.switch) return { summary: p.summary, steps };
    const done: Op[] = [];
    try {
      for (const op of ops.before) {
        this.run(op);
        done.push(op);
      }
      this.run(ops.switch);
    } catch (e) {
      for (const op of done.reverse()) if (op.op === 'update' && op.map !== 'meta') this.undo(op);
      throw e;
    }
    // Live now. What follows only removes what nothing reads any more.
    for (const op of ops.after) this.run(op);
    return { summary: p.summary, steps };
  }

  private run(op: Op): void {
    const m = this.m;
    switch (op.op) {
      case 'update': {
        const b = op.batch;
        // A switch is one entry: a plain update, the single write that makes a change live.
        if (op.map === 'svc' && b.length === 1) m.svc.update(op.batch.keyAt(0), op.batch.valueAt(0));
        else if (op.map === 'meta') m.meta.update(op.batch.keyAt(0), op.batch.valueAt(0));
        else m[op.map].updateBatchEncoded(b.keys, b.values, b.length);
        return;
      }
      case 'delete':
        if (op.map === 'svc') m.svc.deleteBatch(op.keys);
        else if (op.map === 'slots') m.slots.deleteBatch(op.keys);
        else m[op.map].deleteBatch(op.keys);
        return;
      case 'forget-affinity': {
        const gone = new Set(op.svcIds);
        m.affinity.deleteBatch(m.affinity.entries().filter(([k]) => gone.has(k.svc_id)).map(([k]) => k));
        return;
      }
    }
  }

  /** Best effort: the original error is what the caller needs to see. */
  private undo(op: Op): void {
    const m = this.m;
    try {
      if (op.op !== 'update') return;
      if (op.map === 'svc') m.svc.deleteBatch(op.batch.keyList());
      else if (op.map === 'slots') m.slots.deleteBatch(op.batch.keyList());
      else if (op.map === 'backends') m.backends.deleteBatch(op.batch.keyList());
    } catch {
      /* the next lb apply sweeps what is left */
    }
  }

  /** What a new connection from this process's network namespace would get. */
  explain(addr: ServiceAddr): Explanation {
    const live = this.service(addr);
    if (!live) throw new EbpfnetError('EBPFNET_NOT_FOUND', 'lb explain', `no service ${addr.name}`, { hint: 'see the services with: ebpfnet lb list' });
    const id = live.value.svc_id;
    const svcStats = new Map<number, G.LbSvcStats>();
    const s = this.m.svcStats.lookup(id);
    if (s) svcStats.set(id, s);
    const beStats = new Map<number, G.LbBeStats>();
    for (const b of live.members) {
      const x = this.m.beStats.lookup(b.id);
      if (x) beStats.set(b.id, x);
    }
    const view = serviceView(live, svcStats, beStats);
    const cookie = live.value.affinity_timeout ? netnsCookie() : null;
    const probe =
      cookie === null ? undefined : { netnsCookie: cookie, entry: this.m.affinity.lookup({ netns_cookie: cookie, svc_id: id }), now: process.hrtime.bigint() };
    return explain(view, probe);
  }

  /** A service's view, or undefined. */
  view(addr: ServiceAddr): ServiceView | undefined {
    const live = this.service(addr);
    if (!live) return undefined;
    const id = live.value.svc_id;
    const s = this.m.svcStats.lookup(id);
    const be = new Map<number, G.LbBeStats>();
    for (const b of live.members) {
      const x = this.m.beStats.lookup(b.id);
      if (x) be.set(b.id, x);
    }
    return serviceView(live, new Map(s ? [[id, s]] : []), be);
  }
}
