// SPDX-License-Identifier: Apache-2.0
// The balancer as people read it (`lb list`, `lb explain`, metrics): services with their backends,
// weights, states, the share of the slot table each backend really has, and counters. Computed from
// the maps' contents, never from what was asked for, so it shows what connect() will do.
import type { LbAffVal, LbBeStats, LbSvcStats } from '../gen/lb.js';
import { hostPort } from './addr.js';
import { keyName, protoName, stateName, type LiveService } from './plan.js';

export interface BackendView {
  id: number;
  /** `10.244.1.5:8080` */
  backend: string;
  weight: number;
  state: string;
  /** selection slots holding this backend */
  slots: number;
  /** its chance for a new connection: slots / all slots */
  share: number;
  conns: bigint;
}

export interface ServiceView {
  /** `10.96.0.10:80/tcp` */
  service: string;
  proto: string;
  id: number;
  rev: number;
  /** seconds; 0 is off */
  affinity: number;
  slots: number;
  backends: BackendView[];
  conns: bigint;
  rejects: bigint;
  affinityHits: bigint;
  misses: bigint;
}

const NO_SVC_STATS: LbSvcStats = { conns: 0n, rejects: 0n, affinity: 0n, misses: 0n };

/**
 * Names by id, kept by whoever lists the same balancer again and again (the agent's scrapes): a
 * service id stands for one VIP:PORT/PROTO and a backend id for one address for their whole life
 * (ids are never reused), so a name once made serves every later listing.
 */
export interface NameCache {
  services: Map<number, string>;
  backends: Map<number, string>;
}

export const newNameCache = (): NameCache => ({ services: new Map(), backends: new Map() });

function cached(m: Map<number, string> | undefined, id: number, make: () => string): string {
  if (!m) return make();
  let n = m.get(id);
  if (n === undefined) m.set(id, (n = make()));
  return n;
}

export function serviceView(s: LiveService, svcStats: ReadonlyMap<number, LbSvcStats>, beStats: ReadonlyMap<number, LbBeStats>, names?: NameCache): ServiceView {
  const perBackend = new Map<number, number>();
  for (const id of s.selection ?? []) perBackend.set(id, (perBackend.get(id) ?? 0) + 1);
  const total = s.value.slots;
  const st = svcStats.get(s.value.svc_id) ?? NO_SVC_STATS;
  return {
    service: cached(names?.services, s.value.svc_id, () => keyName(s.key)),
    proto: protoName(s.key.proto),
    id: s.value.svc_id,
    rev: s.value.rev,
    affinity: s.value.affinity_timeout,
    slots: total,
    backends: s.members.map((m) => {
      const slots = perBackend.get(m.id) ?? 0;
      const v = m.value;
      return { id: m.id, backend: cached(names?.backends, m.id, () => hostPort(v.addr, v.port)), weight: v.weight, state: stateName(v.state), slots, share: total ? slots / total : 0, conns: beStats.get(m.id)?.conns ?? 0n };
    }),
    conns: st.conns,
    rejects: st.rejects,
    affinityHits: st.affinity,
    misses: st.misses,
  };
}

/** This caller's affinity entry for the service, and the monotonic clock it is compared with. */
export interface AffinityProbe {
  netnsCookie: bigint;
  entry: LbAffVal | undefined;
  /** CLOCK_MONOTONIC ns, the clock of bpf_ktime_get_ns() */
  now: bigint;
}

export interface Explanation {
  service: string;
  /** refuse: connect() fails with ECONNREFUSED; affinity: the pinned backend; random: a draw from the slots */
  outcome: 'refuse' | 'affinity' | 'random';
  /** the backend when the outcome is certain */
  backend: string | null;
  /** every backend that can be chosen, with its chance */
  candidates: Array<{ backend: string; chance: number }>;
  /** why, in order, one sentence each */
  reasons: string[];
}

const pct = (x: number): string => `${(Math.round(x * 1000) / 10).toString()}%`;
const secs = (ns: bigint): string => `${Number(ns / 1_000_000n) / 1000}s`;

/** What a new connection to the service gets, following the same steps as pick() in bpf/lb.bpf.c. */
export function explain(v: ServiceView, probe?: AffinityProbe): Explanation {
  const reasons: string[] = [];
  const draining = v.backends.filter((b) => b.state !== 'active');
  const out: Explanation = { service: v.service, outcome: 'random', backend: null, candidates: [], reasons };
  if (v.slots === 0) {
    out.outcome = 'refuse';
    reasons.push(
      v.backends.length === 0
        ? 'the service has no backends'
        : `the service has no active backend (${draining.length} draining: ${draining.map((b) => b.backend).join(', ')})`,
    );
    reasons.push('connect() and sendto() fail at once with ECONNREFUSED');
    return out;
  }
  if (v.affinity) {
    const e = probe?.entry;
    const timeoutNs = BigInt(v.affinity) * 1_000_000_000n;
    if (!probe) {
      reasons.push(`session affinity is on (${v.affinity}s), but this caller's network namespace is unknown`);
    } else if (!e) {
      reasons.push(`session affinity is on (${v.affinity}s); this network namespace (cookie ${probe.netnsCookie}) has no backend yet`);
    } else {
      const age = probe.now - e.last_used;
      const b = v.backends.find((x) => x.id === e.backend_id);
      if (age > timeoutNs) reasons.push(`session affinity is on (${v.affinity}s); this network namespace's backend expired ${secs(age - timeoutNs)} ago`);
      else if (!b) reasons.push(`session affinity is on (${v.affinity}s); this network namespace's backend is no longer in the service`);
      else if (b.state !== 'active') reasons.push(`session affinity is on (${v.affinity}s); this network namespace's backend ${b.backend} is ${b.state}: no new connections`);
      else {
        out.outcome = 'affinity';
        out.backend = b.backend;
        out.candidates = [{ backend: b.backend, chance: 1 }];
        reasons.push(`session affinity (${v.affinity}s): this network namespace (cookie ${probe.netnsCookie}) used ${b.backend} ${secs(age)} ago`);
        return out;
      }
    }
  }
  out.candidates = v.backends.filter((b) => b.slots > 0).map((b) => ({ backend: b.backend, chance: b.share }));
  if (out.candidates.length === 1) out.backend = out.candidates[0].backend;
  reasons.push(
    `a random slot of ${v.slots}: ${out.candidates.map((c) => `${c.backend} ${pct(c.chance)}`).join(', ')}`,
  );
  const weights = v.backends.filter((b) => b.state === 'active');
  if (weights.some((b) => b.weight !== weights[0].weight)) reasons.push(`slots follow the weights ${weights.map((b) => `${b.backend}=${b.weight}`).join(', ')}`);
  if (draining.length) reasons.push(`draining, no new connections: ${draining.map((b) => b.backend).join(', ')}`);
  return out;
}
