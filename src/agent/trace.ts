// SPDX-License-Identifier: Apache-2.0
// The agent's tracer: when the config turns it on, one tracer runs for the agent's whole life with
// the config's kernel filters, its ring buffer read every 10 ms. Each event is counted (for
// /metrics) and handed to every subscriber (the API's event streams) whose own filters it passes.
// A subscriber that cannot keep up says so by returning false; those events are counted as
// dropped, and never queue here. Tracepoint links are not pinned: when the agent dies, the kernel
// detaches them.
import { EbpfnetError } from '../errors.js';
import type { MapFill, ProgInfo } from '../loader/index.js';
import type { BpfSource } from '../metrics/bpf.js';
import { decodeEvent, jsonLine, wallClockOffsetUs, type TraceEvent } from '../trace/event.js';
import { nameMatcher, traceSettings, type TracePlan } from '../trace/options.js';
import { RecordReader } from '../trace/render.js';
import type { LostCounts } from '../trace/summary.js';
import { TRACEPOINT_CATEGORY, syscallName } from '../trace/syscalls.js';
import { Tracer, targetCgroup } from '../trace/tracer.js';
import { CgroupNames } from '../trace/cgroups.js';
import { findCgroup2 } from '../loader/system.js';
import type { TraceConfig } from './config.js';

/** The running tracer, as the agent reads it. */
export interface TraceSource {
  /** the syscalls it traces (the kernel may lack some it was asked for) */
  readonly syscalls: string[];
  /** hands up to `max` waiting records (tr_event at `offset` of `b`); never blocks */
  poll(onRecord: (b: Buffer, offset: number) => void, max: number): number;
  lostCounts(): LostCounts;
  /** the attached programs' run counts and times */
  programs(): ProgInfo[];
  mapFill(): MapFill[];
  close(): void;
}

export interface TraceBackend {
  open(plan: TracePlan): TraceSource;
}

export const kernelTracer: TraceBackend = {
  open(plan) {
    const cg = targetCgroup(plan);
    const t = Tracer.open({ syscalls: plan.syscalls, pid: plan.pid, uid: plan.uid, failedOnly: plan.failedOnly, cgroupId: cg?.id ?? null, bufferSize: plan.bufferSize });
    return {
      syscalls: t.coverage.traced.map((s) => s.name),
      poll: (f, max) => t.poll(f, max),
      lostCounts: () => t.lostCounts(),
      programs: () => t.programs(),
      mapFill: () => t.mapFill(),
      close: () => t.close(),
    };
  },
};

/** What one stream asked for on top of the agent's own filters; all of it checked in user space. */
export interface StreamFilter {
  syscalls: Set<string>;
  pid: number | null;
  uid: number | null;
  name: string | null;
  failedOnly: boolean;
}

/** The stream's query parameters, as strings. */
export interface StreamQuery {
  syscall?: string;
  pid?: string;
  uid?: string;
  name?: string;
  failed?: string;
  cgroup?: string;
}

/** Delivers one event's JSON line; false: the subscriber could not take it (counted as dropped). */
export type Subscriber = (json: string, e: TraceEvent) => boolean;

/** How often the ring is read, and how much at most before yielding to the event loop. */
const POLL_MS = 10;
const MAX_PER_TICK = 4096;

interface Subscription {
  filter: StreamFilter;
  matches: (e: TraceEvent) => boolean;
  deliver: Subscriber;
}

const off = (op: string): EbpfnetError =>
  new EbpfnetError('EBPFNET_NOT_FOUND', op, 'the tracer is off', { hint: 'turn it on in the agent config (trace: {enabled: true}) and restart the agent' });

export class AgentTrace {
  private source: TraceSource | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly subs = new Set<Subscription>();
  private readonly observers: Array<(syscall: string, result: string) => void> = [];
  private readonly reader = new RecordReader();
  private readonly wallOffsetUs = wallClockOffsetUs();
  /** made at the first event: finding the cgroup v2 mount is not free, and most agents' tracers are off */
  private cgroups: CgroupNames | null = null;
  private dropped = 0;
  private delivered = 0;
  /** the config's `name`: like `trace -n`, the one filter the kernel does not apply */
  private readonly named: (comm: string) => boolean;

  private constructor(readonly plan: TracePlan | null) {
    this.named = nameMatcher(plan?.name ?? null);
  }

  /** Starts the tracer when the config turns it on; otherwise an AgentTrace that is off. */
  static open(config: TraceConfig | null, backend: TraceBackend = kernelTracer): AgentTrace {
    if (!config?.enabled) return new AgentTrace(null);
    const t = new AgentTrace(config.plan);
    t.source = backend.open(config.plan);
    t.timer = setInterval(() => t.tick(), POLL_MS);
    // the tracer must not keep a stopping agent alive
    t.timer.unref();
    return t;
  }

  get running(): boolean {
    return this.source !== null;
  }

  get syscalls(): string[] {
    return this.source ? [...this.source.syscalls] : [];
  }

  /** Events the kernel could not queue, plus calls it could not track (what `trace` reports as lost). */
  lost(): bigint {
    const l = this.source?.lostCounts();
    return l ? l.lost + l.untracked : 0n;
  }

  /** Open streams, events they were sent, and events dropped because a stream fell behind. */
  streams(): { clients: number; delivered: number; dropped: number } {
    return { clients: this.subs.size, delivered: this.delivered, dropped: this.dropped };
  }

  /** The tracer's programs and maps for the BPF metrics (none while it is off). */
  bpfSources(): BpfSource[] {
    const s = this.source;
    return s ? [{ datapath: 'trace', target: TRACEPOINT_CATEGORY, programs: () => s.programs(), maps: () => s.mapFill() }] : [];
  }

  /** Called with the syscall and result (`0`, `EEXIST`) of every event: what the metrics count. */
  observe(fn: (syscall: string, result: string) => void): void {
    this.observers.push(fn);
  }

  /** Checks a stream's query: the same options as `ebpfnet trace`, one 400 naming the first bad one. */
  streamFilter(q: StreamQuery): StreamFilter {
    const op = 'validate querystring';
    const plan = this.plan;
    if (!plan || !this.source) throw off('trace events');
    if (q.cgroup !== undefined) {
      throw new EbpfnetError('EBPFNET_USAGE', op, 'cgroup: a cgroup is filtered in the kernel, for all streams at once', { hint: 'set trace.cgroup in the agent config; a stream can filter by syscall, pid, uid, name and failed' });
    }
    if (q.failed !== undefined && !['true', 'false', '1', '0'].includes(q.failed)) throw new EbpfnetError('EBPFNET_USAGE', op, `failed '${q.failed}' is not true or false`);
    const p = traceSettings(q.syscall ?? plan.target, { pid: q.pid, uid: q.uid, name: q.name, failed: q.failed === 'true' || q.failed === '1' }, op);
    const traced = this.source.syscalls;
    const syscalls = p.syscalls.map((s) => s.name).filter((s) => traced.includes(s));
    if (!syscalls.length) throw new EbpfnetError('EBPFNET_USAGE', op, `syscall '${q.syscall}' is not traced by this agent`, { hint: `it traces ${traced.join(', ')}` });
    return { syscalls: new Set(syscalls), pid: p.pid, uid: p.uid, name: p.name, failedOnly: p.failedOnly };
  }

  /** Hands every matching event to `deliver` until the returned function is called. */
  subscribe(filter: StreamFilter, deliver: Subscriber): () => void {
    if (!this.source) throw off('trace events');
    const name = nameMatcher(filter.name);
    const sub: Subscription = {
      filter,
      deliver,
      matches: (e) =>
        filter.syscalls.has(e.syscall) && (filter.pid === null || e.pid === filter.pid) && (filter.uid === null || e.uid === filter.uid) && (!filter.failedOnly || (e.ret ?? 0) < 0) && name(e.comm),
    };
    this.subs.add(sub);
    return () => void this.subs.delete(sub);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.subs.clear();
    this.source?.close();
    this.source = null;
  }

  private tick(): void {
    if (!this.source) return;
    const n = this.source.poll((b, o) => this.onRecord(b, o), MAX_PER_TICK);
    // a full slice: more is waiting; read on after letting the event loop breathe
    if (n === MAX_PER_TICK) setImmediate(() => this.tick());
  }

  private onRecord(b: Buffer, o: number): void {
    const r = this.reader.select(b, o);
    if (!this.named(r.comm())) return;
    const syscall = syscallName(r.syscall());
    const result = r.result();
    for (const f of this.observers) f(syscall, result);
    if (!this.subs.size) return;
    // decoded once, and rendered once, for however many streams want it
    const names = (this.cgroups ??= new CgroupNames(findCgroup2()));
    const e = decodeEvent(b, o, this.wallOffsetUs, (id) => names.name(id));
    let json: string | null = null;
    for (const s of this.subs) {
      if (!s.matches(e)) continue;
      json ??= jsonLine(e);
      if (s.deliver(json, e)) this.delivered++;
      else this.dropped++;
    }
  }
}
