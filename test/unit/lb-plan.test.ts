// SPDX-License-Identifier: Apache-2.0
// Services -> exact map entries, and the order they are written in. The atomicity tests replay a
// plan's operations one map entry at a time against a model of pick() in bpf/lb.bpf.c and check,
// after every single entry, that each service resolves to its complete old or complete new table:
// never a mix, never a hole.
import { describe, expect, it } from 'vitest';
import { LB_MAX_SLOTS, LB_STATE_ACTIVE, LB_STATE_DRAINING, type LbBackend, type LbMeta, type LbSlotKey, type LbSvc, type LbSvcKey } from '../../src/gen/lb.js';
import { hostPort } from '../../src/lb/addr.js';
import { makeService, serviceName, type ServiceSpec } from '../../src/lb/model.js';
import { IdSource, applyNeeds, applyParts, joinState, keyName, planApply, planDelete, planOps, planUpsert, preOps, svcKey, type Op, type Plan } from '../../src/lb/plan.js';
import { apportion, slotTable } from '../../src/lb/slots.js';
import { Batch } from '../../src/loader/batch.js';
import { LB_SLOTS } from '../../src/gen/lb.js';

describe('lb slot tables', () => {
  it('repeats each active backend by its weight, reduced by the common divisor', () => {
    expect(apportion([1, 2])).toEqual([1, 2]);
    expect(apportion([2, 4, 6])).toEqual([1, 2, 3]);
    expect(apportion([5])).toEqual([1]);
    expect(apportion([])).toEqual([]);
  });

  it('fits large weights into LB_MAX_SLOTS, every backend keeping a slot, shares within one slot', () => {
    const w = [65535, 1, 30000, 7];
    const a = apportion(w);
    expect(a.reduce((x, y) => x + y, 0)).toBe(LB_MAX_SLOTS);
    expect(Math.min(...a)).toBeGreaterThanOrEqual(1);
    const total = w.reduce((x, y) => x + y, 0);
    a.forEach((n, i) => expect(Math.abs(n - (w[i] * LB_MAX_SLOTS) / total)).toBeLessThanOrEqual(1.5));
  });

  it('gives draining backends no slot, and a service without active backends an empty table', () => {
    const s = makeService('10.96.0.10:80/tcp', ['10.0.0.1:80', '10.0.0.2:80,weight=2', '10.0.0.3:80,state=draining']);
    expect(slotTable(s.backends)).toEqual([0, 1, 1]);
    expect(slotTable(makeService('10.96.0.10:80/tcp', ['10.0.0.3:80,state=draining']).backends)).toEqual([]);
  });
});

describe('lb batches', () => {
  it('encode on push, grow, append, and decode to the same entries', () => {
    const a = new Batch(LB_SLOTS, 1);
    const key = { svc_id: 1, rev: 2, slot: 0 };
    for (let i = 0; i < 5; i++) {
      key.slot = i; // the scratch object is reused: push() must have encoded it already
      a.push(key, 100 + i);
    }
    const b = new Batch(LB_SLOTS);
    b.push({ svc_id: 9, rev: 1, slot: 7 }, 7);
    a.append(b);
    expect(a.length).toBe(6);
    expect(a.keys.length).toBe(6 * 12);
    expect(a.values.readUInt32LE(5 * 4)).toBe(7);
    expect(a.entries().map(([k, v]) => `${k.svc_id}/${k.rev}/${k.slot}=${v}`)).toEqual(['1/2/0=100', '1/2/1=101', '1/2/2=102', '1/2/3=103', '1/2/4=104', '9/1/7=7']);
  });
});

const fresh = (): IdSource => new IdSource(1, 1);
const emptyState = (gen = 0) => ({ gen, nextSvc: 1, nextBackend: 1, services: [], stale: [], orphanSlots: [], orphanBackends: [], broken: [] });

describe('lb compile to entries', () => {
  it('a new weighted service: backends, selection slots, then the member list, then the switch', () => {
    const spec = makeService('10.96.0.10:80/tcp', ['10.0.0.1:8080', '10.0.0.2:8080,weight=2', '10.0.0.3:8080,state=draining'], 30);
    const p = planUpsert(undefined, spec, 0, fresh());
    // addresses as plain byte arrays: decoded ones are Buffers, parsed ones Uint8Arrays
    const addr = (s: string): number[] => [...makeService(`${s}:1/tcp`, []).ip.bytes];
    expect(p.writeBackends.entries().map(([id, v]) => [id, { ...v, addr: [...v.addr] }])).toEqual([
      [1, { addr: addr('10.0.0.1'), port: 8080, state: LB_STATE_ACTIVE, weight: 1, svc_id: 1 }],
      [2, { addr: addr('10.0.0.2'), port: 8080, state: LB_STATE_ACTIVE, weight: 2, svc_id: 1 }],
      [3, { addr: addr('10.0.0.3'), port: 8080, state: LB_STATE_DRAINING, weight: 1, svc_id: 1 }],
    ]);
    expect(p.writeSlots.entries()).toEqual([
      [{ svc_id: 1, rev: 1, slot: 0 }, 1],
      [{ svc_id: 1, rev: 1, slot: 1 }, 2],
      [{ svc_id: 1, rev: 1, slot: 2 }, 2],
      [{ svc_id: 1, rev: 1, slot: 3 }, 1],
      [{ svc_id: 1, rev: 1, slot: 4 }, 2],
      [{ svc_id: 1, rev: 1, slot: 5 }, 3],
    ]);
    expect(p.switch).toEqual({
      kind: 'service',
      key: { addr: makeService('10.96.0.10:1/tcp', []).ip.bytes, port: 80, proto: 6, gen: 0 },
      value: { svc_id: 1, rev: 1, slots: 3, backends: 3, affinity_timeout: 30, members_at: 3, backend_id: 0 },
    });
    expect(p.ids).toEqual({ nextSvc: 2, nextBackend: 4 });
    expect(p.summary.added).toEqual(['10.96.0.10:80/tcp']);
  });

  it('equal weights, all active: the selection slots are the member list, written once', () => {
    const p = planUpsert(undefined, makeService('[fd00::10]:53/udp', ['[fd00::1]:53', '[fd00::2]:53']), 1, fresh());
    expect(p.writeSlots.entries().map(([k, v]) => [k.slot, v])).toEqual([
      [0, 1],
      [1, 2],
    ]);
    expect(p.switch).toMatchObject({ kind: 'service', key: { port: 53, proto: 17, gen: 1 }, value: { slots: 2, backends: 2, members_at: 0 } });
  });

  it('a single backend is named in the service entry: no slot table at all', () => {
    const p = planUpsert(undefined, makeService('10.96.0.10:80/tcp', ['10.0.0.1:80']), 0, fresh());
    expect(p.writeSlots.length).toBe(0);
    expect(p.writeBackends.length).toBe(1);
    expect(p.switch).toMatchObject({ value: { slots: 1, backends: 1, backend_id: 1 } });
    const d = planUpsert(undefined, makeService('10.96.0.10:80/tcp', ['10.0.0.1:80,state=draining']), 0, fresh());
    expect(d.switch).toMatchObject({ value: { slots: 0, backends: 1, backend_id: 1 } });
  });

  it('an empty service is a service with no slots (connect() is refused)', () => {
    const p = planUpsert(undefined, makeService('10.96.0.99:80/tcp', []), 0, fresh());
    expect(p.writeSlots.entries()).toEqual([]);
    expect(p.switch).toMatchObject({ value: { slots: 0, backends: 0 } });
  });

  it('planOps runs ids, backends, slots, the one switch, then the clean-up', () => {
    const p = planUpsert(undefined, makeService('10.96.0.10:80/tcp', ['10.0.0.1:80', '10.0.0.2:80']), 0, fresh());
    const ops = planOps(p, { gen: 0, next_svc: 1, next_backend: 1 });
    expect(ops.before.map((o) => `${o.op} ${'map' in o ? o.map : ''}`)).toEqual(['update meta', 'update backends', 'update slots']);
    expect(ops.switch).toMatchObject({ op: 'update', map: 'svc' });
    expect(ops.after).toEqual([]);
  });
});

// ---- a model of the maps and of pick() in bpf/lb.bpf.c ----

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sk = (k: LbSvcKey): string => `${hex(k.addr)}/${k.port}/${k.proto}/${k.gen}`;
const lk = (k: LbSlotKey): string => `${k.svc_id}/${k.rev}/${k.slot}`;

class Maps {
  svc = new Map<string, [LbSvcKey, LbSvc]>();
  slots = new Map<string, [LbSlotKey, number]>();
  backends = new Map<number, LbBackend>();
  meta: LbMeta = { gen: 0, next_svc: 1, next_backend: 1 };

  /** What a connect() to `s` would see: the backends of its selection slots, or why not. */
  resolve(s: ServiceSpec): string {
    const v = this.svc.get(sk(svcKey(s, this.meta.gen)))?.[1];
    if (!v) return 'none';
    if (v.slots === 0) return 'refuse';
    if (v.backend_id) {
      const b = this.backends.get(v.backend_id);
      return b ? hostPort(b.addr, b.port) : 'HOLE at the only backend';
    }
    const out: string[] = [];
    for (let i = 0; i < v.slots; i++) {
      const id = this.slots.get(lk({ svc_id: v.svc_id, rev: v.rev, slot: i }))?.[1];
      const b = id === undefined ? undefined : this.backends.get(id);
      if (!b) return `HOLE at slot ${i}`;
      out.push(hostPort(b.addr, b.port));
    }
    return out.join(' ');
  }

  /** Runs ops one entry at a time, calling `check` after each. */
  replay(ops: Op[], check: () => void): void {
    for (const op of ops) {
      if (op.op === 'forget-affinity') continue;
      if (op.op === 'update') {
        for (const [k, v] of op.batch.entries() as Array<[unknown, unknown]>) {
          if (op.map === 'svc') this.svc.set(sk(k as LbSvcKey), [k as LbSvcKey, v as LbSvc]);
          else if (op.map === 'slots') this.slots.set(lk(k as LbSlotKey), [k as LbSlotKey, v as number]);
          else if (op.map === 'backends') this.backends.set(k as number, v as LbBackend);
          else this.meta = v as LbMeta;
          check();
        }
      } else {
        for (const k of op.keys as unknown[]) {
          if (op.map === 'svc') this.svc.delete(sk(k as LbSvcKey));
          else if (op.map === 'slots') this.slots.delete(lk(k as LbSlotKey));
          else if (op.map === 'backends') this.backends.delete(k as number);
          check();
        }
      }
    }
  }

  run(p: Plan, check: () => void = () => {}): void {
    const ops = planOps(p, this.meta);
    this.replay([...ops.before, ...(ops.switch ? [ops.switch] : []), ...ops.after], check);
  }

  state() {
    return joinState(this.meta, [...this.svc.values()], [...this.slots.values()], [...this.backends.entries()]);
  }

  ids(): IdSource {
    return new IdSource(this.meta.next_svc, this.meta.next_backend);
  }
}

/** What resolve() must give for a spec: its selection table in order, or refuse / none. */
function expected(s: ServiceSpec | undefined): string {
  if (!s) return 'none';
  const t = slotTable(s.backends);
  if (!t.length) return 'refuse';
  return t.map((i) => hostPort(s.backends[i].ip, s.backends[i].port)).join(' ');
}

/** Replays the plan; after every entry, each service is entirely its old self or its new self. */
function atomicReplay(m: Maps, before: ServiceSpec[], after: ServiceSpec[], plan: Plan): { checks: number; sawNew: boolean } {
  const names = new Set([...before, ...after].map(serviceName));
  const find = (list: ServiceSpec[], n: string): ServiceSpec | undefined => list.find((s) => serviceName(s) === n);
  const out = { checks: 0, sawNew: false };
  m.run(plan, () => {
    for (const n of names) {
      const got = m.resolve(find(after, n) ?? find(before, n)!);
      const old = expected(find(before, n));
      const neu = expected(find(after, n));
      out.checks++;
      if (got !== old && got !== neu) throw new Error(`${n} resolved to '${got}', neither old '${old}' nor new '${neu}'`);
      if (got === neu && neu !== old) out.sawNew = true;
    }
  });
  for (const s of after) expect(m.resolve(s)).toBe(expected(s));
  return out;
}

const svcA = (backends: string[], affinity = 0): ServiceSpec => makeService('10.96.0.10:80/tcp', backends, affinity);
const svcB = (backends: string[]): ServiceSpec => makeService('[fd00::53]:53/udp', backends);
const svcC = (backends: string[]): ServiceSpec => makeService('10.96.0.11:443/tcp', backends);

describe('lb atomic switch planning', () => {
  it('a service whose slot table lost an entry is broken, and lb add or lb apply of the same spec writes it again', () => {
    const m = new Maps();
    const v = svcA(['10.0.0.1:80', '10.0.0.2:80,weight=2']);
    m.run(planUpsert(undefined, v, 0, m.ids()));
    // a crash took one selection slot
    const first = m.state().services[0].value;
    m.slots.delete(lk({ svc_id: first.svc_id, rev: first.rev, slot: 0 }));
    expect(m.state().broken).toEqual(['10.96.0.10:80/tcp']);
    expect(m.state().services[0].broken).toBe(true);
    const up = planUpsert(m.state().services[0], v, 0, m.ids());
    expect(up.summary).toMatchObject({ changed: ['10.96.0.10:80/tcp'], unchanged: [] });
    m.run(up);
    expect(m.state().broken).toEqual([]);
    expect(m.resolve(v)).toBe(expected(v));
    // the same through apply
    const now = m.state().services[0].value;
    m.slots.delete(lk({ svc_id: now.svc_id, rev: now.rev, slot: 1 }));
    const all = planApply(m.state(), [v], m.ids());
    expect(all.summary).toMatchObject({ changed: ['10.96.0.10:80/tcp'], unchanged: [] });
    m.run(all);
    expect(m.state().broken).toEqual([]);
    expect(m.resolve(v)).toBe(expected(v));
  });

  it('replacing backends writes a new slot revision, switches once, then deletes the old one', () => {
    const m = new Maps();
    const v1 = svcA(['10.0.0.1:80', '10.0.0.2:80']);
    m.run(planUpsert(undefined, v1, 0, m.ids()));
    const live = m.state().services[0];
    const v2 = svcA(['10.0.0.2:80,weight=3', '10.0.0.3:80']);
    const p = planUpsert(live, v2, 0, m.ids());
    // the new table is rev 2; nothing written before the switch touches rev 1 or the live entry
    expect(new Set(p.writeSlots.entries().map(([k]) => k.rev))).toEqual(new Set([2]));
    expect(p.deleteSlots.every((k) => k.rev === 1)).toBe(true);
    expect(p.switch).toMatchObject({ kind: 'service', value: { rev: 2 } });
    // 10.0.0.2 keeps its id (and counters); 10.0.0.1 is deleted after the switch; 10.0.0.3 is new
    expect(p.writeBackends.entries().map(([id]) => id)).toEqual([3]);
    expect(p.updateBackends.entries().map(([id, v]) => [id, v.weight])).toEqual([[2, 3]]);
    expect(p.deleteBackends).toEqual([1]);
    const c = atomicReplay(m, [v1], [v2], p);
    expect(c.checks).toBeGreaterThan(5);
    expect(c.sawNew).toBe(true);
    expect(m.state().orphanSlots).toEqual([]);
    expect(m.state().orphanBackends).toEqual([]);
  });

  it('growing from one backend to three and back is atomic too (inline entry <-> slot table)', () => {
    const m = new Maps();
    const one = svcA(['10.0.0.1:80']);
    m.run(planUpsert(undefined, one, 0, m.ids()));
    expect(m.slots.size).toBe(0);
    const three = svcA(['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80,weight=2']);
    atomicReplay(m, [one], [three], planUpsert(m.state().services[0], three, 0, m.ids()));
    const back = svcA(['10.0.0.3:80']);
    atomicReplay(m, [three], [back], planUpsert(m.state().services[0], back, 0, m.ids()));
    expect([m.slots.size, m.backends.size]).toEqual([0, 1]);
    // 10.0.0.3 kept its id through both changes
    expect(m.state().services[0].value.backend_id).toBe(3);
  });

  it('marking a backend draining takes it out of the selection slots, atomically', () => {
    const m = new Maps();
    const v1 = svcA(['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80']);
    m.run(planUpsert(undefined, v1, 0, m.ids()));
    const v2 = svcA(['10.0.0.1:80', '10.0.0.2:80,state=draining', '10.0.0.3:80']);
    const p = planUpsert(m.state().services[0], v2, 0, m.ids());
    expect(p.writeBackends.entries()).toEqual([]);
    expect(p.updateBackends.entries().map(([id, v]) => [id, v.state])).toEqual([[2, LB_STATE_DRAINING]]);
    atomicReplay(m, [v1], [v2], p);
    expect(m.resolve(v2)).toBe('10.0.0.1:80 10.0.0.3:80');
    expect(m.state().services[0].members.map((x) => x.id)).toEqual([1, 2, 3]);
  });

  it('the same spec again is no change at all; affinity alone keeps the slot table', () => {
    const m = new Maps();
    const v1 = svcA(['10.0.0.1:80']);
    m.run(planUpsert(undefined, v1, 0, m.ids()));
    const same = planUpsert(m.state().services[0], v1, 0, m.ids());
    expect(same.switch).toBeNull();
    expect(same.summary.unchanged).toEqual(['10.96.0.10:80/tcp']);
    const aff = planUpsert(m.state().services[0], svcA(['10.0.0.1:80'], 600), 0, m.ids());
    expect(aff.writeSlots.entries()).toEqual([]);
    expect(aff.switch).toMatchObject({ value: { rev: 1, affinity_timeout: 600 } });
  });

  it('deleting a service removes its entry first: connections stop being translated, then tables go', () => {
    const m = new Maps();
    const v1 = svcA(['10.0.0.1:80', '10.0.0.2:80,weight=2']);
    m.run(planUpsert(undefined, v1, 0, m.ids()));
    const p = planDelete(m.state().services[0]);
    expect(p.switch).toMatchObject({ kind: 'delete' });
    atomicReplay(m, [v1], [], p);
    expect([m.svc.size, m.slots.size, m.backends.size]).toEqual([0, 0, 0]);
    expect(p.deleteServiceIds).toEqual([1]);
  });

  it('lb apply builds the next generation and flips it: every service is old or new at every step', () => {
    const m = new Maps();
    const before = [svcA(['10.0.0.1:80', '10.0.0.2:80']), svcB(['[fd00::1]:53']), svcC(['10.0.1.1:443'])];
    m.run(planApply(m.state(), before, m.ids()));
    expect(m.meta.gen).toBe(1);
    const after = [
      svcA(['10.0.0.2:80', '10.0.0.4:80,weight=2']), // changed
      svcB(['[fd00::1]:53']), // unchanged
      makeService('10.96.0.12:80/tcp', []), // added, empty: refuses
    ]; // svcC removed
    const p = planApply(m.state(), after, m.ids());
    expect(p.summary).toEqual({ added: ['10.96.0.12:80/tcp'], changed: ['10.96.0.10:80/tcp'], removed: ['10.96.0.11:443/tcp'], unchanged: ['[fd00::53]:53/udp'] });
    expect(p.switch).toEqual({ kind: 'generation', gen: 0 });
    expect(p.writeServices.entries().every(([k]) => k.gen === 0)).toBe(true);
    expect(p.deleteServices.every((k) => k.gen === 1)).toBe(true);
    const c = atomicReplay(m, before, after, p);
    expect(c.sawNew).toBe(true);
    const st = m.state();
    expect(st.services.map((s) => keyName(s.key)).sort()).toEqual(['10.96.0.10:80/tcp', '10.96.0.12:80/tcp', '[fd00::53]:53/udp']);
    expect([st.stale, st.orphanSlots, st.orphanBackends]).toEqual([[], [], []]);
    // the unchanged service kept its id and its slot table
    expect(st.services.find((s) => keyName(s.key) === '[fd00::53]:53/udp')!.value).toMatchObject({ svc_id: 2, rev: 1 });
  });

  it('applying the same set twice changes nothing', () => {
    const m = new Maps();
    const set = [svcA(['10.0.0.1:80']), svcB([])];
    m.run(planApply(m.state(), set, m.ids()));
    const again = planApply(m.state(), set, m.ids());
    expect(again.switch).toBeNull();
    expect(again.summary.unchanged).toHaveLength(2);
  });

  it('lb apply sweeps what an interrupted apply left behind', () => {
    const m = new Maps();
    m.run(planApply(m.state(), [svcA(['10.0.0.1:80'])], m.ids()));
    // an apply that wrote its next generation and died before the flip
    const dead = planApply(m.state(), [svcA(['10.0.0.9:80']), svcC(['10.0.1.1:443'])], m.ids());
    const ops = planOps(dead, m.meta);
    m.replay(ops.before, () => {});
    const st = m.state();
    expect(st.stale.length).toBe(2);
    expect(st.orphanBackends.length).toBe(2);
    expect(m.resolve(svcA([]))).toBe('10.0.0.1:80');
    m.run(planApply(st, [svcA(['10.0.0.1:80'])], m.ids()));
    const clean = m.state();
    expect([clean.stale, clean.orphanSlots, clean.orphanBackends]).toEqual([[], [], []]);
    expect(m.svc.size).toBe(1);
  });

  it('ids are never handed out twice, even across an interrupted change', () => {
    const m = new Maps();
    const p1 = planUpsert(undefined, svcA(['10.0.0.1:80']), 0, m.ids());
    const ops = planOps(p1, m.meta);
    m.replay(ops.before.slice(0, 1), () => {}); // only the id reservation landed
    const p2 = planUpsert(undefined, svcA(['10.0.0.1:80']), 0, m.ids());
    expect(p2.switch).toMatchObject({ value: { svc_id: 2 } });
    expect(p2.writeBackends.keyAt(0)).toBe(2);
  });

  it('the model catches a wrong order (clean-up before the switch)', () => {
    const m = new Maps();
    const v1 = svcA(['10.0.0.1:80', '10.0.0.2:80']);
    m.run(planUpsert(undefined, v1, 0, m.ids()));
    const v2 = svcA(['10.0.0.3:80']);
    const ops = planOps(planUpsert(m.state().services[0], v2, 0, m.ids()), m.meta);
    const check = (): void => {
      const got = m.resolve(v2);
      if (got !== expected(v1) && got !== expected(v2)) throw new Error(`half-written: ${got}`);
    };
    expect(() => m.replay([...ops.before, ...ops.after, ops.switch!], check)).toThrow(/half-written: HOLE/);
  });

  it('lb apply in parts (as the balancer runs it) writes what the joined plan writes, and stays atomic', () => {
    const many = (port: number): ServiceSpec[] =>
      Array.from({ length: 10 }, (_, i) => makeService(`10.96.1.${i + 1}:80/tcp`, [`10.0.0.${i + 1}:${port}`, `10.0.1.${i + 1}:${port},weight=2`]));
    const m = new Maps();
    m.run(planApply(m.state(), many(80), m.ids()));
    const before = many(80);
    const after = [...many(81).slice(0, 7), svcA(['10.0.0.9:80'])];
    const whole = planApply(m.state(), after, m.ids());
    const parts = applyParts(m.state(), after, m.ids(), 3);
    const seen: Plan[] = [];
    let r = parts.next();
    for (; !r.done; r = parts.next()) seen.push(r.value);
    const post = r.value;
    expect(seen.map((p) => p.writeServices.length)).toEqual([3, 3, 2]);
    expect(seen.flatMap((p) => p.writeSlots.entries())).toEqual(whole.writeSlots.entries());
    expect(seen.flatMap((p) => p.writeBackends.entries())).toEqual(whole.writeBackends.entries());
    expect(post.ids).toEqual(whole.ids);
    expect(post.summary).toEqual(whole.summary);
    // replay it the way Balancer.apply does: each part's writes, then the switch, then the clean-up
    const check = (): void => {
      for (const s of [...before, ...after]) {
        const n = s.name;
        const got = m.resolve(s);
        const old = expected(before.find((x) => x.name === n));
        const neu = expected(after.find((x) => x.name === n));
        if (got !== old && got !== neu) throw new Error(`${n}: ${got}`);
      }
    };
    for (const part of seen) m.replay(preOps(part, m.meta), check);
    const ops = planOps(post, m.meta);
    m.replay([ops.switch!, ...ops.after], check);
    for (const s of after) expect(m.resolve(s)).toBe(expected(s));
    const st = m.state();
    expect([st.stale, st.orphanSlots, st.orphanBackends]).toEqual([[], [], []]);
    expect(m.meta.next_backend).toBe(whole.ids!.nextBackend);
  });

  it('counts what an apply needs before writing anything', () => {
    const m = new Maps();
    m.run(planApply(m.state(), [svcA(['10.0.0.1:80', '10.0.0.2:80'])], m.ids()));
    // live: 2 slots, 2 backends; new: equal weights (2 slots) and weighted (3 slots + 2 members)
    expect(applyNeeds(m.state(), [svcA(['10.0.0.1:80', '10.0.0.2:80']), svcB(['[fd00::1]:53', '[fd00::2]:53']), svcC(['10.0.1.1:443', '10.0.1.2:443,weight=2'])])).toEqual({
      services: 3,
      slots: 2 + 2 + 5,
      backends: 2 + 2 + 2,
    });
  });

  it('a service listed twice in one apply is refused', () => {
    expect(() => planApply(emptyState(), [svcA([]), svcA(['10.0.0.1:80'])], fresh())).toThrow(/listed twice/);
  });
});
