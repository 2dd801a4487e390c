// SPDX-License-Identifier: Apache-2.0
// In-memory stand-ins for the balancer and the tracer, for the agent's tests without root: the
// agent and its API run for real, only the kernel is pretended.
import type { FilterBackend, FilterHandle } from '../../src/agent/filter.js';
import type { LbBackend, LbHandle } from '../../src/agent/lb.js';
import type { TraceBackend, TraceSource } from '../../src/agent/trace.js';
import { EbpfnetError } from '../../src/errors.js';
import * as F from '../../src/gen/filter.js';
import * as L from '../../src/gen/lb.js';
import * as T from '../../src/gen/trace.js';
import type { FilterCounters } from '../../src/filter/datapath.js';
import type { Policy } from '../../src/filter/policy.js';
import { STAT_NAMES, type Stat } from '../../src/filter/stats.js';
import { formatRule } from '../../src/filter/rules.js';
import type { ServiceSpec } from '../../src/lb/model.js';
import type { ServiceView } from '../../src/lb/view.js';
import { SYSCALLS } from '../../src/trace/syscalls.js';
import { traceRecord, type RecordOverrides } from './trace-records.js';

const z = () => ({ packets: 0n, bytes: 0n });

/** Pretends to be the kernel: remembers the policy per interface and counts 1 packet per rule. */
/** `failApply`: the next apply fails, with this error (true: an EIO) */
/** `failStateful`: the next switch of connection tracking fails (an EBUSY, as a taken tc hook) */
export function fakeKernel(opts: { failApply?: () => boolean | Error; failStateful?: () => boolean } = {}) {
  const pinned = new Map<string, Policy | null>();
  const applied: string[] = [];
  /** interfaces whose "kernel" filter tracks connections (kept across adoption, as pins do) */
  const stateful = new Set<string>();
  const handle = (ifname: string): FilterHandle => ({
    ifname,
    attachment: 'xdp native',
    get stateful() {
      return stateful.has(ifname);
    },
    setStateful(on) {
      if (opts.failStateful?.()) throw new EbpfnetError('EBPFNET_BUSY', `attach filter_egress to tc egress of ${ifname}`, 'EBUSY');
      if (on) stateful.add(ifname);
      else stateful.delete(ifname);
    },
    flows: () => (stateful.has(ifname) ? { entries: [], cfg: { stateful: 1, now: 0n, tcp_syn_sent: 0, tcp_established: 0, tcp_closing: 0, tcp_time_wait: 0, udp_single: 0, udp_stream: 0, icmp: 0 } } : null),
    apply(p) {
      const fail = opts.failApply?.();
      if (fail) throw fail instanceof Error ? fail : new EbpfnetError('EBPFNET_KERNEL', `update map flt_rules on ${ifname}`, 'EIO');
      pinned.set(ifname, p);
      applied.push(ifname);
    },
    counters(): FilterCounters {
      const p = pinned.get(ifname);
      return {
        rules: (p?.rules ?? []).map((r, i) => ({ rule: formatRule(r), action: r.action, id: i, packets: 1n, bytes: 100n })),
        total: p?.rules.length ?? 0,
        ...(Object.fromEntries(STAT_NAMES.map((s) => [s, z()])) as Record<Stat, F.FltCount>),
      };
    },
    programInfo: () => ({ id: 7, name: F.PROG_FILTER_XDP.name, runCount: 40n, runTimeNs: 1_000n }),
    mapFill: () => [{ map: F.FLT_RULES.name, entries: pinned.get(ifname)?.rules.length ?? 0, maxEntries: 1024 }],
    close() {},
  });
  const backend: FilterBackend = {
    pinned: (i) => pinned.has(i),
    adopt: (i) => handle(i),
    create(i, p, o) {
      if (i === 'nosuch0') throw new EbpfnetError('EBPFNET_NOT_FOUND', `filter ${i}`, 'no such interface');
      const h = handle(i);
      h.setStateful(o.stateful);
      h.apply(p);
      return h;
    },
    unload: (i) => {
      pinned.delete(i);
      stateful.delete(i);
    },
  };
  return { backend, pinned, applied, stateful };
}

/** Remembers the services per name; `conns` sets what the "kernel" counted per backend. */
export function fakeBalancer() {
  const services = new Map<string, ServiceSpec>();
  const conns = new Map<string, number>();
  let attached: string | null = null;
  const calls: string[] = [];
  /** the next change fails with this, as a full map would */
  const fail: { next: Error | null } = { next: null };
  const failing = (): void => {
    const e = fail.next;
    fail.next = null;
    if (e) throw e;
  };
  const view = (s: ServiceSpec): ServiceView => {
    const active = s.backends.filter((b) => b.state === 'active');
    const slots = active.reduce((a, b) => a + b.weight, 0);
    const backends = s.backends.map((b, i) => {
      const w = b.state === 'active' ? b.weight : 0;
      return { id: i + 1, backend: b.name, weight: b.weight, state: b.state, slots: w, share: slots ? w / slots : 0, conns: BigInt(conns.get(`${s.name} ${b.name}`) ?? 0) };
    });
    return { service: s.name, proto: s.proto, id: 1, rev: 1, affinity: s.affinity, slots, backends, conns: backends.reduce((a, b) => a + b.conns, 0n), rejects: 0n, affinityHits: 0n, misses: 0n };
  };
  const handle = (cgroup: string): LbHandle => ({
    cgroup,
    apply(specs) {
      failing();
      calls.push(`apply ${specs.length}`);
      services.clear();
      for (const s of specs) services.set(s.name, s);
    },
    upsert(spec) {
      failing();
      calls.push(`upsert ${spec.name}`);
      services.set(spec.name, spec);
    },
    remove(addr) {
      calls.push(`remove ${addr.name}`);
      if (!services.delete(addr.name)) throw new EbpfnetError('EBPFNET_NOT_FOUND', 'lb del', `no service ${addr.name}`);
    },
    list: () => [...services.values()].map(view),
    view: (addr) => {
      const s = services.get(addr.name);
      return s && view(s);
    },
    programs: () => [{ id: 8, name: L.PROG_LB_CONNECT4.name, runCount: 5n, runTimeNs: 2_000n }],
    mapFill: () => [{ map: L.LB_SVC.name, entries: services.size, maxEntries: L.LB_SVC.maxEntries }],
    close() {},
  });
  const backend: LbBackend = {
    ensure(cgroup) {
      if (cgroup === 'nosuch') throw new EbpfnetError('EBPFNET_NOT_FOUND', 'lb attach', 'no cgroup at /sys/fs/cgroup/nosuch');
      const at = cgroup === null ? '/sys/fs/cgroup' : cgroup.startsWith('/') ? cgroup : `/sys/fs/cgroup/${cgroup}`;
      if (attached !== at) services.clear();
      const attachedNow = attached === null;
      attached = at;
      return { ...handle(at), attachedNow };
    },
    unload() {
      const was = attached !== null;
      attached = null;
      services.clear();
      return was;
    },
  };
  return { backend, services, conns, calls, fail, get attached() { return attached; } };
}

/** A tracer whose ring holds what the test pushes; poll() hands it over like the real one. */
export function fakeTracer() {
  const ring: Buffer[] = [];
  let lost = 0n;
  let opened = 0;
  let closed = 0;
  const backend: TraceBackend = {
    open(plan) {
      opened++;
      const source: TraceSource = {
        syscalls: plan.syscalls.map((s) => s.name),
        poll(onRecord, max) {
          let n = 0;
          for (; n < max && ring.length; n++) onRecord(ring.shift()!, 0);
          return n;
        },
        lostCounts: () => ({ lost, untracked: 0n }),
        programs: () => [{ id: 9, name: T.PROG_TR_EXIT.name, runCount: 3n, runTimeNs: 500n }],
        mapFill: () => [{ map: T.TR_INFLIGHT.name, entries: T.TR_INFLIGHT.maxEntries, maxEntries: T.TR_INFLIGHT.maxEntries }],
        close: () => void closed++,
      };
      return source;
    },
  };
  return {
    backend,
    /** one mkdir (or whatever `over` says) as the kernel would write it */
    push(over: RecordOverrides = {}) {
      ring.push(T.TrEvent.encode(traceRecord(over, BigInt(Math.round(Number(process.hrtime.bigint()))))));
    },
    lose(n: bigint) {
      lost += n;
    },
    get opened() { return opened; },
    get closed() { return closed; },
    syscallId: (name: string) => SYSCALLS.find((s) => s.name === name)!.id,
  };
}
