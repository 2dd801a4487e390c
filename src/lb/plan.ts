// SPDX-License-Identifier: Apache-2.0
// Services -> exact map entries, and the order to write them in so that a connect() never sees a
// half-written service. The rule: everything a change needs is written where nothing live points
// yet (a new slot table revision, new backend ids, the next generation of lb_svc), then ONE map
// update switches to it (the service entry, or lb_meta.gen for a whole `lb apply`), and only then
// is the old state deleted. Pure: the kernel half (balancer.ts) reads the maps into a LiveState and
// executes the Plan step by step.
import { LB_PROTO_TCP, LB_PROTO_UDP, LB_STATE_ACTIVE, LB_STATE_DRAINING, type LbBackend, type LbMeta, type LbSlotKey, type LbSvc, type LbSvcKey } from '../gen/lb.js';
import { ipText, parseIp } from './addr.js';
import { backendName, serviceName, type BackendSpec, type BackendState, type Proto, type ServiceAddr, type ServiceSpec } from './model.js';
import { slotTable } from './slots.js';

export const PROTO_NUMBER: Record<Proto, number> = { tcp: LB_PROTO_TCP, udp: LB_PROTO_UDP };
export const STATE_NUMBER: Record<BackendState, number> = { active: LB_STATE_ACTIVE, draining: LB_STATE_DRAINING };

export const protoName = (n: number): Proto | `proto ${number}` => (n === LB_PROTO_TCP ? 'tcp' : n === LB_PROTO_UDP ? 'udp' : `proto ${n}`);
export const stateName = (n: number): BackendState | `state ${number}` => (n === LB_STATE_ACTIVE ? 'active' : n === LB_STATE_DRAINING ? 'draining' : `state ${n}`);

export function svcKey(s: ServiceAddr, gen: number): LbSvcKey {
  return { addr: s.ip.bytes, port: s.port, proto: PROTO_NUMBER[s.proto], gen };
}

/** The key's service as people write it, `10.96.0.10:80/tcp`. */
export function keyName(k: LbSvcKey): string {
  const ip = parseIp(ipText(k.addr))!;
  return serviceName({ ip, port: k.port, proto: protoName(k.proto) as Proto });
}

/** Identity of a service across generations: the key without its generation. */
export const keyId = (k: LbSvcKey): string => `${Buffer.from(k.addr).toString('hex')}/${k.port}/${k.proto}`;
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
  /** backend id in each selection slot; only read when listing or explaining */
  selection?: number[];
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

/** Joins full dumps of the maps into a LiveState. */
export function joinState(meta: LbMeta, svcs: Array<[LbSvcKey, LbSvc]>, slots: Array<[LbSlotKey, number]>, backends: Array<[number, LbBackend]>): LiveState {
  const bIndex = new Map(backends);
  const tables = new Map<string, Map<number, number>>();
  for (const [k, v] of slots) {
    const id = slotId(k.svc_id, k.rev);
    let t = tables.get(id);
    if (!t) tables.set(id, (t = new Map()));
    t.set(k.slot, v);
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
    usedTables.add(id);
    const t = tables.get(id) ?? new Map<number, number>();
    const selection: number[] = [];
    const members: LiveBackend[] = [];
    let broken = false;
    for (let i = 0; i < value.slots; i++) {
      const b = t.get(i);
      if (b === undefined) broken = true;
      else selection.push(b);
    }
    for (let i = value.slots; i < value.slots + value.backends; i++) {
      const b = t.get(i);
      const bv = b === undefined ? undefined : bIndex.get(b);
      if (b === undefined || !bv) {
        broken = true;
        continue;
      }
      usedBackends.add(b);
      members.push({ id: b, value: bv });
    }
    if (broken) out.broken.push(keyName(key));
    out.services.push({ key, value, members, selection });
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
    if (n >= 0xffffffff) throw new RangeError(`allocate ${what} id: the id space is exhausted; detach and attach the balancer again`);
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
  /** before the switch: entries nothing live refers to yet */
  writeBackends: Array<[number, LbBackend]>;
  writeSlots: Array<[LbSlotKey, number]>;
  writeServices: Array<[LbSvcKey, LbSvc]>;
  /** the one update that makes it live; null when nothing changes */
  switch: Switch | null;
  /** after the switch */
  updateBackends: Array<[number, LbBackend]>;
  deleteServices: LbSvcKey[];
  deleteSlots: LbSlotKey[];
  /** backends to delete, with their counters */
  deleteBackends: number[];
  /** services gone: their counters and affinity entries */
  deleteServiceIds: number[];
  summary: Summary;
}

const emptyPlan = (): Plan => ({
  ids: null,
  clearStale: [],
  writeBackends: [],
  writeSlots: [],
  writeServices: [],
  switch: null,
  updateBackends: [],
  deleteServices: [],
  deleteSlots: [],
  deleteBackends: [],
  deleteServiceIds: [],
  summary: { added: [], changed: [], removed: [], unchanged: [] },
});

const backendValue = (b: BackendSpec, svcId: number): LbBackend => ({ addr: b.ip.bytes, port: b.port, state: STATE_NUMBER[b.state], weight: b.weight, svc_id: svcId });
const liveName = (b: LbBackend): string => backendName({ ip: parseIp(ipText(b.addr))!, port: b.port });

function tableKeys(v: LbSvc): LbSlotKey[] {
  const out: LbSlotKey[] = [];
  for (let i = 0; i < v.slots + v.backends; i++) out.push({ svc_id: v.svc_id, rev: v.rev, slot: i });
  return out;
}

/** Does the live service already look exactly like the spec (same members in the same order)? */
function membersEqual(live: LiveService, spec: ServiceSpec): boolean {
  if (live.members.length !== spec.backends.length) return false;
  return spec.backends.every((b, i) => {
    const m = live.members[i].value;
    return liveName(m) === backendName(b) && m.weight === b.weight && m.state === STATE_NUMBER[b.state];
  });
}

interface ServiceSteps {
  value: LbSvc;
  writeBackends: Array<[number, LbBackend]>;
  writeSlots: Array<[LbSlotKey, number]>;
  updateBackends: Array<[number, LbBackend]>;
  deleteSlots: LbSlotKey[];
  deleteBackends: number[];
  status: 'added' | 'changed' | 'unchanged';
}

/** What one service needs: new ids and a new slot revision where something changed. */
function stepsFor(live: LiveService | undefined, spec: ServiceSpec, ids: IdSource): ServiceSteps {
  const out: ServiceSteps = { value: null as unknown as LbSvc, writeBackends: [], writeSlots: [], updateBackends: [], deleteSlots: [], deleteBackends: [], status: live ? 'changed' : 'added' };
  if (live && membersEqual(live, spec)) {
    out.value = { ...live.value, affinity_timeout: spec.affinity };
    out.status = live.value.affinity_timeout === spec.affinity ? 'unchanged' : 'changed';
    return out;
  }
  const svcId = live ? live.value.svc_id : ids.svc();
  // A backend keeps its id (and its counters) while its address stays in the service.
  const byName = new Map((live?.members ?? []).map((m) => [liveName(m.value), m]));
  const memberIds = spec.backends.map((b) => {
    const v = backendValue(b, svcId);
    const old = byName.get(backendName(b));
    if (!old) {
      const id = ids.backend();
      out.writeBackends.push([id, v]);
      return id;
    }
    byName.delete(backendName(b));
    if (old.value.weight !== v.weight || old.value.state !== v.state) out.updateBackends.push([old.id, v]);
    return old.id;
  });
  for (const gone of byName.values()) out.deleteBackends.push(gone.id);
  const selection = slotTable(spec.backends).map((i) => memberIds[i]);
  // rev 0 is never used, so a zeroed entry can never look like a live table
  const rev = live ? (live.value.rev + 1) >>> 0 || 1 : 1;
  const value: LbSvc = { svc_id: svcId, rev, slots: selection.length, backends: memberIds.length, affinity_timeout: spec.affinity };
  selection.forEach((b, i) => out.writeSlots.push([{ svc_id: svcId, rev, slot: i }, b]));
  memberIds.forEach((b, i) => out.writeSlots.push([{ svc_id: svcId, rev, slot: selection.length + i }, b]));
  if (live) out.deleteSlots.push(...tableKeys(live.value));
  out.value = value;
  return out;
}

/** `lb add`: create or replace one service in the live generation. */
export function planUpsert(live: LiveService | undefined, spec: ServiceSpec, gen: number, ids: IdSource): Plan {
  const p = emptyPlan();
  const before = { s: ids.nextSvc, b: ids.nextBackend };
  const st = stepsFor(live, spec, ids);
  p.summary[st.status].push(serviceName(spec));
  if (st.status === 'unchanged') return p;
  if (ids.nextSvc !== before.s || ids.nextBackend !== before.b) p.ids = { nextSvc: ids.nextSvc, nextBackend: ids.nextBackend };
  p.writeBackends = st.writeBackends;
  p.writeSlots = st.writeSlots;
  p.switch = { kind: 'service', key: svcKey(spec, gen), value: st.value };
  p.updateBackends = st.updateBackends;
  p.deleteSlots = st.deleteSlots;
  p.deleteBackends = st.deleteBackends;
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

/**
 * `lb apply`: the specs become the whole set in one step. The next generation of lb_svc is built
 * beside the live one (unchanged services copied, changed ones pointing at new slot revisions), then
 * lb_meta.gen flips, then the old generation and everything only it used are deleted.
 */
export function planApply(state: LiveState, specs: ServiceSpec[], ids: IdSource): Plan {
  const p = emptyPlan();
  const before = { s: ids.nextSvc, b: ids.nextBackend };
  const next = state.gen ? 0 : 1;
  const live = new Map(state.services.map((s) => [keyId(s.key), s]));
  const wanted = new Set<string>();
  let changes = 0;
  for (const spec of specs) {
    const key = svcKey(spec, next);
    const id = keyId(key);
    if (wanted.has(id)) throw new RangeError(`plan apply: service ${serviceName(spec)} is listed twice`);
    wanted.add(id);
    const st = stepsFor(live.get(id), spec, ids);
    p.summary[st.status].push(serviceName(spec));
    if (st.status !== 'unchanged') changes++;
    p.writeBackends.push(...st.writeBackends);
    p.writeSlots.push(...st.writeSlots);
    p.writeServices.push([key, st.value]);
    p.updateBackends.push(...st.updateBackends);
    p.deleteSlots.push(...st.deleteSlots);
    p.deleteBackends.push(...st.deleteBackends);
  }
  for (const [id, s] of live) {
    if (wanted.has(id)) continue;
    changes++;
    p.summary.removed.push(keyName(s.key));
    p.deleteSlots.push(...tableKeys(s.value));
    p.deleteBackends.push(...s.members.map((m) => m.id));
    p.deleteServiceIds.push(s.value.svc_id);
  }
  const garbage = state.stale.length + state.orphanSlots.length + state.orphanBackends.length;
  if (!changes && !garbage) {
    // Nothing to do: do not churn the maps (and the generation) for an identical file.
    return { ...emptyPlan(), summary: p.summary };
  }
  if (ids.nextSvc !== before.s || ids.nextBackend !== before.b) p.ids = { nextSvc: ids.nextSvc, nextBackend: ids.nextBackend };
  p.clearStale = state.stale;
  p.switch = { kind: 'generation', gen: next };
  p.deleteServices = state.services.map((s) => s.key);
  p.deleteSlots.push(...state.orphanSlots);
  p.deleteBackends.push(...state.orphanBackends);
  return p;
}

/** The order the kernel half executes a plan in, for tests and for `--dry-run`-style output. */
export function planSteps(p: Plan): string[] {
  const out: string[] = [];
  if (p.ids) out.push(`reserve ids (next service ${p.ids.nextSvc}, next backend ${p.ids.nextBackend})`);
  if (p.clearStale.length) out.push(`delete ${p.clearStale.length} stale service entries`);
  if (p.writeBackends.length) out.push(`write ${p.writeBackends.length} backends`);
  if (p.writeSlots.length) out.push(`write ${p.writeSlots.length} slots`);
  if (p.writeServices.length) out.push(`write ${p.writeServices.length} services (next generation)`);
  if (p.switch?.kind === 'service') out.push(`switch service ${keyName(p.switch.key)} to rev ${p.switch.value.rev}`);
  if (p.switch?.kind === 'delete') out.push(`switch: delete service ${keyName(p.switch.key)}`);
  if (p.switch?.kind === 'generation') out.push(`switch generation to ${p.switch.gen}`);
  if (p.updateBackends.length) out.push(`update ${p.updateBackends.length} backends`);
  if (p.deleteServices.length) out.push(`delete ${p.deleteServices.length} old-generation services`);
  if (p.deleteSlots.length) out.push(`delete ${p.deleteSlots.length} slots`);
  if (p.deleteBackends.length) out.push(`delete ${p.deleteBackends.length} backends`);
  if (p.deleteServiceIds.length) out.push(`forget ${p.deleteServiceIds.length} services' counters and affinity`);
  return out;
}
