// SPDX-License-Identifier: Apache-2.0
// Services -> exact map entries, and the order to write them in so that a connect() never sees a
// half-written service. The rule: everything a change needs is written where nothing live points
// yet (a new slot table revision, new backend ids, the next generation of lb_svc), then ONE map
// update switches to it (the service entry, or lb_meta.gen for a whole `lb apply`), and only then
// is the old state deleted. Pure: the kernel half (balancer.ts) reads the maps into a LiveState and
// executes the Plan step by step.
import {
  LB_BACKENDS,
  LB_META,
  LB_META_KEY,
  LB_PROTO_TCP,
  LB_PROTO_UDP,
  LB_SLOTS,
  LB_STATE_ACTIVE,
  LB_STATE_DRAINING,
  LB_SVC,
  type LbBackend,
  type LbMeta,
  type LbSlotKey,
  type LbSvc,
  type LbSvcKey,
} from '../gen/lb.js';
import { EbpfnetError } from '../errors.js';
import { hostPort, isMapped4 } from './addr.js';
import { Batch } from '../loader/batch.js';
import { type BackendSpec, type BackendState, type Proto, type ServiceAddr, type ServiceSpec } from './model.js';
import { slotTable } from './slots.js';

export const PROTO_NUMBER: Record<Proto, number> = { tcp: LB_PROTO_TCP, udp: LB_PROTO_UDP };
export const STATE_NUMBER: Record<BackendState, number> = { active: LB_STATE_ACTIVE, draining: LB_STATE_DRAINING };

export const protoName = (n: number): Proto | `proto ${number}` => (n === LB_PROTO_TCP ? 'tcp' : n === LB_PROTO_UDP ? 'udp' : `proto ${n}`);
export const stateName = (n: number): BackendState | `state ${number}` => (n === LB_STATE_ACTIVE ? 'active' : n === LB_STATE_DRAINING ? 'draining' : `state ${n}`);

export function svcKey(s: ServiceAddr, gen: number): LbSvcKey {
  return { addr: s.ip.bytes, port: s.port, proto: PROTO_NUMBER[s.proto], gen };
}

/** The key's service as people write it, `10.96.0.10:80/tcp`: also its identity across generations. */
export const keyName = (k: LbSvcKey): string => `${hostPort(k.addr, k.port)}/${protoName(k.proto)}`;

/**
 * An IPv4 service's place in name order as one number: address, port, then tcp before udp (49
 * bits: exact in a double). It orders as the numeric collator orders the dotted names; null for IPv6.
 */
export function v4Order(k: LbSvcKey): number | null {
  const a = k.addr;
  if (!isMapped4(a)) return null;
  return ((((a[12] * 256 + a[13]) * 256 + a[14]) * 256 + a[15]) * 65536 + k.port) * 2 + (k.proto === LB_PROTO_TCP ? 0 : 1);
}

const slotId = (svcId: number, rev: number): string => `${svcId}/${rev}`;

export interface LiveBackend {
  id: number;
  value: LbBackend;
}

/** One service as the maps hold it. */
export interface LiveService {
  key: LbSvcKey;
  value: LbSvc;
  /** every member, in slot-table order (draining ones too) */
  members: LiveBackend[];
  /** backend id in each selection slot */
  selection?: number[];
  /** its slot table or a backend is incomplete (a change cut short): never "unchanged" */
  broken?: boolean;
}

/** Everything in the maps, joined: what is live, and what a crash left behind. */
export interface LiveState {
  gen: number;
  nextSvc: number;
  nextBackend: number;
  services: LiveService[];
  /** entries of the other generation: a half-built `lb apply` that never flipped */
  stale: LbSvcKey[];
  /** slot-table entries and backends no live service refers to */
  orphanSlots: LbSlotKey[];
  orphanBackends: number[];
  /** live services whose slot table or backends are incomplete (named for `lb list`) */
  broken: string[];
}

/**
 * One live service from its entry, its slot table (slot -> backend id, undefined where an entry is
 * missing) and the backends, `broken` when the table or a backend is incomplete. `used` collects the
 * backend ids it refers to.
 */
export function joinService(
  key: LbSvcKey,
  value: LbSvc,
  table: ArrayLike<number | undefined>,
  backends: ReadonlyMap<number, LbBackend>,
  used?: Set<number>,
): LiveService {
  const selection: number[] = [];
  const members: LiveBackend[] = [];
  let broken = false;
  if (value.backend_id) {
    // the only backend, named in the service entry: no slot table
    const bv = backends.get(value.backend_id);
    if (bv) {
      used?.add(value.backend_id);
      members.push({ id: value.backend_id, value: bv });
      if (value.slots) selection.push(value.backend_id);
    } else broken = true;
    return { key, value, members, selection, broken };
  }
  for (let i = 0; i < value.slots; i++) {
    const b = table[i];
    if (b === undefined) broken = true;
    else selection.push(b);
  }
  for (let i = value.members_at; i < value.members_at + value.backends; i++) {
    const b = table[i];
    const bv = b === undefined ? undefined : backends.get(b);
    if (b === undefined || !bv) {
      broken = true;
      continue;
    }
    used?.add(b);
    members.push({ id: b, value: bv });
  }
  return { key, value, members, selection, broken };
}

/** Joins full dumps of the maps into a LiveState. */
export function joinState(meta: LbMeta, svcs: Array<[LbSvcKey, LbSvc]>, slots: Array<[LbSlotKey, number]>, backends: Array<[number, LbBackend]>): LiveState {
  const bIndex = new Map(backends);
  // slot -> backend id per table, as an array: a Map per service was most of a 10,000-service
  // listing's garbage
  const tables = new Map<string, number[]>();
  for (const [k, v] of slots) {
    const id = slotId(k.svc_id, k.rev);
    let t = tables.get(id);
    if (!t) tables.set(id, (t = []));
    t[k.slot] = v;
  }
  const out: LiveState = { gen: meta.gen, nextSvc: meta.next_svc, nextBackend: meta.next_backend, services: [], stale: [], orphanSlots: [], orphanBackends: [], broken: [] };
  const usedTables = new Set<string>();
  const usedBackends = new Set<number>();
  for (const [key, value] of svcs) {
    if (key.gen !== meta.gen) {
      out.stale.push(key);
      continue;
    }
    const id = slotId(value.svc_id, value.rev);
    if (!value.backend_id) usedTables.add(id);
    const service = joinService(key, value, tables.get(id) ?? [], bIndex, usedBackends);
    if (service.broken) out.broken.push(keyName(key));
    out.services.push(service);
  }
  for (const [k] of slots) if (!usedTables.has(slotId(k.svc_id, k.rev))) out.orphanSlots.push(k);
  for (const [id] of backends) if (!usedBackends.has(id)) out.orphanBackends.push(id);
  // Tables of the stale generation are orphans too: nothing live reads them.
  return out;
}

/** Allocates ids from the counters in lb_meta; the plan records where they end. */
export class IdSource {
  constructor(
    public nextSvc: number,
    public nextBackend: number,
  ) {}
  private static bump(n: number, what: string): number {
    // ids are never reused (an affinity or reverse entry may still name an old one); 2^32 of them
    // is more than a machine will ever create between two attaches
    if (n >= 0xffffffff) throw new EbpfnetError('EBPFNET_MAP_FULL', `allocate a ${what} id`, 'all 2^32 ids were used', { hint: 'detach and attach the balancer again' });
    return n + 1;
  }
  svc(): number {
    const id = Math.max(this.nextSvc, 1);
    this.nextSvc = IdSource.bump(id, 'service');
    return id;
  }
  backend(): number {
    const id = Math.max(this.nextBackend, 1);
    this.nextBackend = IdSource.bump(id, 'backend');
    return id;
  }
}

export type Switch =
  | { kind: 'service'; key: LbSvcKey; value: LbSvc }
  | { kind: 'delete'; key: LbSvcKey }
  | { kind: 'generation'; gen: number };

export interface Summary {
  added: string[];
  changed: string[];
  removed: string[];
  unchanged: string[];
}

export interface Plan {
  /** id counters to persist first, so a crash half-way never hands out an id twice */
  ids: { nextSvc: number; nextBackend: number } | null;
  /** leftovers of a crashed `lb apply` in the generation about to be built */
  clearStale: LbSvcKey[];
  /** before the switch: entries nothing live refers to yet (encoded as they are planned) */
  writeBackends: Batch<number, LbBackend>;
  writeSlots: Batch<LbSlotKey, number>;
  writeServices: Batch<LbSvcKey, LbSvc>;
  /** the one update that makes it live; null when nothing changes */
  switch: Switch | null;
  /** after the switch */
  updateBackends: Batch<number, LbBackend>;
  deleteServices: LbSvcKey[];
  deleteSlots: LbSlotKey[];
  /** backends to delete, with their counters */
  deleteBackends: number[];
  /** services gone: their counters and affinity entries */
  deleteServiceIds: number[];
  summary: Summary;
}

const emptyPlan = (capacity = 8): Plan => ({
  ids: null,
  clearStale: [],
  writeBackends: new Batch(LB_BACKENDS, capacity),
  writeSlots: new Batch(LB_SLOTS, capacity),
  writeServices: new Batch(LB_SVC, capacity),
  switch: null,
  updateBackends: new Batch(LB_BACKENDS),
  deleteServices: [],
  deleteSlots: [],
  deleteBackends: [],
  deleteServiceIds: [],
  summary: { added: [], changed: [], removed: [], unchanged: [] },
});

const backendValue = (b: BackendSpec, svcId: number): LbBackend => ({ addr: b.ip.bytes, port: b.port, state: STATE_NUMBER[b.state], weight: b.weight, svc_id: svcId });
/** Scratch entries: Batch.push() encodes at once, so one object per kind serves every push. */
const SLOT_KEY: LbSlotKey = { svc_id: 0, rev: 0, slot: 0 };
const BACKEND: LbBackend = { addr: new Uint8Array(16), port: 0, state: 0, weight: 0, svc_id: 0 };
function pushBackend(to: Batch<number, LbBackend>, id: number, b: BackendSpec, svcId: number): void {
  BACKEND.addr = b.ip.bytes;
  BACKEND.port = b.port;
  BACKEND.state = STATE_NUMBER[b.state];
  BACKEND.weight = b.weight;
  BACKEND.svc_id = svcId;
  to.push(id, BACKEND);
}
function pushSlot(to: Batch<LbSlotKey, number>, svcId: number, rev: number, slot: number, id: number): void {
  SLOT_KEY.svc_id = svcId;
  SLOT_KEY.rev = rev;
  SLOT_KEY.slot = slot;
  to.push(SLOT_KEY, id);
}
const liveName = (b: LbBackend): string => hostPort(b.addr, b.port);

/** Entries in a service's slot table: the selection slots and the member list (they may overlap). */
export const tableSize = (v: LbSvc): number => (v.backend_id ? 0 : Math.max(v.slots, v.members_at + v.backends));

/** Every key of a service's slot table. */
function tableKeys(v: LbSvc, out: LbSlotKey[] = []): LbSlotKey[] {
  const n = tableSize(v);
  for (let i = 0; i < n; i++) out.push({ svc_id: v.svc_id, rev: v.rev, slot: i });
  return out;
}

/** Does the live service already look exactly like the spec (same members in the same order)? */
function membersEqual(live: LiveService, spec: ServiceSpec): boolean {
  // an incomplete table is never kept: writing the service again is how it is repaired
  if (live.broken || live.members.length !== spec.backends.length) return false;
  for (let i = 0; i < spec.backends.length; i++) {
    const b = spec.backends[i];
    const m = live.members[i].value;
    if (m.port !== b.port || m.weight !== b.weight || m.state !== STATE_NUMBER[b.state] || liveName(m) !== b.name) return false;
  }
  return true;
}

/**
 * Adds what one service needs: new entries to `pre` (written before the switch), in-place updates
 * and deletions to `post` (after it), and what happens to it to post's summary; returns its lb_svc
 * value. Entries are encoded as they are pushed: `lb apply` runs this for every service, and
 * allocating little per service is what keeps programming 10,000 of them in tens of milliseconds.
 */
function addService(pre: Plan, post: Plan, live: LiveService | undefined, spec: ServiceSpec, ids: IdSource): LbSvc {
  if (live && membersEqual(live, spec)) {
    if (live.value.affinity_timeout === spec.affinity) {
      post.summary.unchanged.push(spec.name);
      return live.value;
    }
    post.summary.changed.push(spec.name);
    return { ...live.value, affinity_timeout: spec.affinity };
  }
  const svcId = live ? live.value.svc_id : ids.svc();
  const n = spec.backends.length;
  const memberIds = new Array<number>(n);
  if (!live) {
    for (let i = 0; i < n; i++) {
      const id = ids.backend();
      memberIds[i] = id;
      pushBackend(pre.writeBackends, id, spec.backends[i], svcId);
    }
  } else {
    // A backend keeps its id (and its counters) while its address stays in the service.
    const byName = new Map(live.members.map((m) => [liveName(m.value), m]));
    for (let i = 0; i < n; i++) {
      const b = spec.backends[i];
      const old = byName.get(b.name);
      if (!old) {
        const id = ids.backend();
        memberIds[i] = id;
        pushBackend(pre.writeBackends, id, b, svcId);
        continue;
      }
      byName.delete(b.name);
      memberIds[i] = old.id;
      if (old.value.weight !== b.weight || old.value.state !== STATE_NUMBER[b.state]) post.updateBackends.push(old.id, backendValue(b, svcId));
    }
    for (const gone of byName.values()) post.deleteBackends.push(gone.id);
    tableKeys(live.value, post.deleteSlots);
  }
  // rev 0 is never used, so a zeroed entry can never look like a live table
  const rev = live ? (live.value.rev + 1) >>> 0 || 1 : 1;
  (live ? post.summary.changed : post.summary.added).push(spec.name);
  if (n === 1) {
    // One backend: the service entry names it, and there is no table to write (or to look up).
    const slots = spec.backends[0].state === 'active' ? 1 : 0;
    return { svc_id: svcId, rev, slots, backends: 1, affinity_timeout: spec.affinity, members_at: 0, backend_id: memberIds[0] };
  }
  const table = slotTable(spec.backends);
  // Equal weights, all active: the selection slots are the member list, written once.
  let shared = table.length === n;
  for (let i = 0; shared && i < n; i++) shared = table[i] === i;
  const membersAt = shared ? 0 : table.length;
  for (let i = 0; i < table.length; i++) pushSlot(pre.writeSlots, svcId, rev, i, memberIds[table[i]]);
  if (!shared) for (let i = 0; i < n; i++) pushSlot(pre.writeSlots, svcId, rev, membersAt + i, memberIds[i]);
  return { svc_id: svcId, rev, slots: table.length, backends: n, affinity_timeout: spec.affinity, members_at: membersAt, backend_id: 0 };
}

/** `lb add`: create or replace one service in the live generation. */
export function planUpsert(live: LiveService | undefined, spec: ServiceSpec, gen: number, ids: IdSource): Plan {
  const p = emptyPlan();
  const before = { s: ids.nextSvc, b: ids.nextBackend };
  const value = addService(p, p, live, spec, ids);
  if (p.summary.unchanged.length) return p;
  if (ids.nextSvc !== before.s || ids.nextBackend !== before.b) p.ids = { nextSvc: ids.nextSvc, nextBackend: ids.nextBackend };
  // Backend fields that change in place (weight, state) are written once the new table is live.
  p.switch = { kind: 'service', key: svcKey(spec, gen), value };
  return p;
}

/** `lb del`: the service entry goes first (new connections see no service), then its tables. */
export function planDelete(live: LiveService): Plan {
  const p = emptyPlan();
  p.switch = { kind: 'delete', key: live.key };
  p.deleteSlots = tableKeys(live.value);
  p.deleteBackends = live.members.map((m) => m.id);
  p.deleteServiceIds = [live.value.svc_id];
  p.summary.removed.push(keyName(live.key));
  return p;
}

/** Does the spec leave the live service exactly as it is? */
const unchanged = (live: LiveService | undefined, spec: ServiceSpec): boolean =>
  !!live && live.value.affinity_timeout === spec.affinity && membersEqual(live, spec);

/** Services per part of an `lb apply`: small enough that a part's entries die young in V8's heap. */
export const APPLY_CHUNK = 4096;

/**
 * `lb apply`: the specs become the whole set in one step. The next generation of lb_svc is built
 * beside the live one (unchanged services copied, changed ones pointing at new slot revisions), then
 * lb_meta.gen flips, then the old generation and everything only it used are deleted.
 *
 * In parts: each yielded plan holds the pre-switch writes (and id reservation) for up to `chunk`
 * services, and may be executed and dropped before the next is made, so 100,000 services never
 * exist as map entries in memory all at once. The returned plan holds the switch and the clean-up.
 * planApply() joins the parts into one plan.
 */
export function* applyParts(state: LiveState, specs: ServiceSpec[], ids: IdSource, chunk = APPLY_CHUNK): Generator<Plan, Plan, void> {
  const next = state.gen ? 0 : 1;
  const live = new Map<string, LiveService>();
  for (const s of state.services) live.set(keyName(s.key), s);
  const wanted = new Set<string>();
  let changes = 0;
  for (const spec of specs) {
    if (wanted.has(spec.name)) throw new EbpfnetError('EBPFNET_USAGE', 'lb apply', `service ${spec.name} is listed twice`);
    wanted.add(spec.name);
    if (!unchanged(live.get(spec.name), spec)) changes++;
  }
  const post = emptyPlan();
  for (const [name, s] of live) {
    if (wanted.has(name)) continue;
    changes++;
    post.summary.removed.push(name);
    tableKeys(s.value, post.deleteSlots);
    for (const m of s.members) post.deleteBackends.push(m.id);
    post.deleteServiceIds.push(s.value.svc_id);
  }
  const garbage = state.stale.length + state.orphanSlots.length + state.orphanBackends.length;
  if (!changes && !garbage) {
    // Nothing to do: do not churn the maps (and the generation) for an identical file.
    for (const spec of specs) post.summary.unchanged.push(spec.name);
    return { ...emptyPlan(), summary: post.summary };
  }
  let pre = emptyPlan(Math.min(chunk, specs.length) || 8);
  pre.clearStale = state.stale;
  let reserved = { s: ids.nextSvc, b: ids.nextBackend };
  const flush = (): Plan => {
    const out = pre;
    if (ids.nextSvc !== reserved.s || ids.nextBackend !== reserved.b) out.ids = { nextSvc: ids.nextSvc, nextBackend: ids.nextBackend };
    reserved = { s: ids.nextSvc, b: ids.nextBackend };
    pre = emptyPlan(Math.min(chunk, specs.length) || 8);
    return out;
  };
  for (let i = 0; i < specs.length; i++) {
    const spec = specs[i];
    const value = addService(pre, post, live.get(spec.name), spec, ids);
    pre.writeServices.push(svcKey(spec, next), value);
    if (pre.writeServices.length >= chunk) yield flush();
  }
  if (pre.writeServices.length || pre.clearStale.length) yield flush();
  post.ids = { nextSvc: ids.nextSvc, nextBackend: ids.nextBackend };
  post.switch = { kind: 'generation', gen: next };
  post.deleteServices = state.services.map((s) => s.key);
  for (const k of state.orphanSlots) post.deleteSlots.push(k);
  for (const b of state.orphanBackends) post.deleteBackends.push(b);
  return post;
}

/** Upper bounds of the entries an `lb apply` adds before its switch, to refuse a set that cannot fit. */
export function applyNeeds(state: LiveState, specs: ServiceSpec[]): { services: number; slots: number; backends: number } {
  const live = new Map<string, LiveService>();
  for (const s of state.services) live.set(keyName(s.key), s);
  let slots = state.orphanSlots.length;
  let backends = state.orphanBackends.length;
  for (const s of state.services) {
    slots += tableSize(s.value);
    backends += s.members.length;
  }
  for (const spec of specs) {
    if (unchanged(live.get(spec.name), spec)) continue;
    const n = spec.backends.length;
    const t = n === 1 ? 0 : slotTable(spec.backends).length;
    slots += n === 1 ? 0 : t === n ? t : t + n;
    backends += n;
  }
  return { services: specs.length, slots, backends };
}

/** `lb apply` as one plan: the parts of applyParts() joined (for tests, --dry-run and the checks). */
export function planApply(state: LiveState, specs: ServiceSpec[], ids: IdSource): Plan {
  const parts = applyParts(state, specs, ids, Infinity);
  const pre = emptyPlan();
  for (let r = parts.next(); ; r = parts.next()) {
    if (r.done) {
      const post = r.value;
      if (!post.switch) return post;
      return { ...post, ids: pre.ids ? post.ids : null, clearStale: pre.clearStale, writeBackends: pre.writeBackends, writeSlots: pre.writeSlots, writeServices: pre.writeServices };
    }
    const part = r.value;
    if (part.ids) pre.ids = part.ids;
    pre.clearStale.push(...part.clearStale);
    pre.writeBackends.append(part.writeBackends);
    pre.writeSlots.append(part.writeSlots);
    pre.writeServices.append(part.writeServices);
  }
}

/** One map operation of a plan, as the kernel half runs it (a batch of entries or keys). */
export type Op =
  | { op: 'update'; map: 'svc'; batch: Batch<LbSvcKey, LbSvc> }
  | { op: 'update'; map: 'slots'; batch: Batch<LbSlotKey, number> }
  | { op: 'update'; map: 'backends'; batch: Batch<number, LbBackend> }
  | { op: 'update'; map: 'meta'; batch: Batch<number, LbMeta> }
  | { op: 'delete'; map: 'svc'; keys: LbSvcKey[] }
  | { op: 'delete'; map: 'slots'; keys: LbSlotKey[] }
  | { op: 'delete'; map: 'backends' | 'beStats' | 'svcStats'; keys: number[] }
  | { op: 'forget-affinity'; svcIds: number[] };

const one = <K, V>(layout: ConstructorParameters<typeof Batch<K, V>>[0], k: K, v: V): Batch<K, V> => {
  const b = new Batch(layout, 1);
  b.push(k, v);
  return b;
};

export interface OpList {
  /** entries nothing live reads yet (undone if anything here fails) */
  before: Op[];
  /** the single update that makes the change live */
  switch: Op | null;
  /** clean-up of what nothing live reads any more */
  after: Op[];
}

/**
 * The exact sequence of map operations for a plan. The kernel half runs it; the unit tests replay
 * it entry by entry against a model of the datapath to prove no step exposes a half-written service.
 */
export function planOps(p: Plan, meta: LbMeta): OpList {
  const out: OpList = { before: [], switch: null, after: [] };
  if (!p.switch) return out;
  const ids = p.ids ?? { nextSvc: meta.next_svc, nextBackend: meta.next_backend };
  out.before = preOps(p, meta);
  const s = p.switch;
  if (s.kind === 'service') out.switch = { op: 'update', map: 'svc', batch: one(LB_SVC, s.key, s.value) };
  else if (s.kind === 'delete') out.switch = { op: 'delete', map: 'svc', keys: [s.key] };
  else out.switch = { op: 'update', map: 'meta', batch: one(LB_META, LB_META_KEY, { gen: s.gen, next_svc: ids.nextSvc, next_backend: ids.nextBackend }) };
  if (p.updateBackends.length) out.after.push({ op: 'update', map: 'backends', batch: p.updateBackends });
  if (p.deleteServices.length) out.after.push({ op: 'delete', map: 'svc', keys: p.deleteServices });
  if (p.deleteSlots.length) out.after.push({ op: 'delete', map: 'slots', keys: p.deleteSlots });
  if (p.deleteBackends.length) {
    out.after.push({ op: 'delete', map: 'backends', keys: p.deleteBackends });
    out.after.push({ op: 'delete', map: 'beStats', keys: p.deleteBackends });
  }
  if (p.deleteServiceIds.length) {
    out.after.push({ op: 'delete', map: 'svcStats', keys: p.deleteServiceIds });
    out.after.push({ op: 'forget-affinity', svcIds: p.deleteServiceIds });
  }
  return out;
}

/** The writes before a switch: the id reservation first, then entries nothing live reads yet. */
export function preOps(p: Plan, meta: LbMeta): Op[] {
  const out: Op[] = [];
  if (p.ids) out.push({ op: 'update', map: 'meta', batch: one(LB_META, LB_META_KEY, { gen: meta.gen, next_svc: p.ids.nextSvc, next_backend: p.ids.nextBackend }) });
  if (p.clearStale.length) out.push({ op: 'delete', map: 'svc', keys: p.clearStale });
  if (p.writeBackends.length) out.push({ op: 'update', map: 'backends', batch: p.writeBackends });
  if (p.writeSlots.length) out.push({ op: 'update', map: 'slots', batch: p.writeSlots });
  if (p.writeServices.length) out.push({ op: 'update', map: 'svc', batch: p.writeServices });
  return out;
}

/** The order the kernel half executes a plan in, for tests and for `--dry-run`-style output. */
export function planSteps(p: Plan): string[] {
  const n = (k: number, one: string, many = `${one}s`): string => `${k} ${k === 1 ? one : many}`;
  const out: string[] = [];
  if (p.ids) out.push(`reserve ids (next service ${p.ids.nextSvc}, next backend ${p.ids.nextBackend})`);
  if (p.clearStale.length) out.push(`delete ${n(p.clearStale.length, 'stale service entry', 'stale service entries')}`);
  if (p.writeBackends.length) out.push(`write ${n(p.writeBackends.length, 'backend')}`);
  if (p.writeSlots.length) out.push(`write ${n(p.writeSlots.length, 'slot')}`);
  if (p.writeServices.length) out.push(`write ${n(p.writeServices.length, 'service')} (next generation)`);
  if (p.switch?.kind === 'service') out.push(`switch service ${keyName(p.switch.key)} to rev ${p.switch.value.rev}`);
  if (p.switch?.kind === 'delete') out.push(`switch: delete service ${keyName(p.switch.key)}`);
  if (p.switch?.kind === 'generation') out.push(`switch generation to ${p.switch.gen}`);
  if (p.updateBackends.length) out.push(`update ${n(p.updateBackends.length, 'backend')}`);
  if (p.deleteServices.length) out.push(`delete ${n(p.deleteServices.length, 'old-generation service')}`);
  if (p.deleteSlots.length) out.push(`delete ${n(p.deleteSlots.length, 'slot')}`);
  if (p.deleteBackends.length) out.push(`delete ${n(p.deleteBackends.length, 'backend')}`);
  if (p.deleteServiceIds.length) out.push(`forget the counters and affinity of ${n(p.deleteServiceIds.length, 'service')}`);
  return out;
}
