// SPDX-License-Identifier: Apache-2.0
// The agent owns what is running: the desired state (persisted in the state directory and
// re-applied at start), the datapaths that carry it out (the filter, the balancer, the tracer: one
// section each, AgentFilter, AgentLb, AgentTrace), and every change to them. Faces (the HTTP API,
// metrics, the CLI) call these sections' methods and present the results; they hold no kernel object.
//
// Datapaths are pinned, so the agent process is not what keeps traffic filtered: a crash or a
// `kill -9` leaves the filter attached, and the next agent adopts the pins (counters included).
import { EbpfnetError } from '../errors.js';
import type { RunStats } from '../loader/index.js';
import type { BpfSource } from '../metrics/bpf.js';
import type { AgentConfig } from './config.js';
import { AgentFilter, emptyFilterState, kernelFilters, type FilterBackend, type FilterState } from './filter.js';
import { AgentKubernetes } from './kubernetes.js';
import { AgentLb, kernelLb, type LbBackend, type LbState } from './lb.js';
import type { Caller } from './revision.js';
import { AuditLog, StateStore, auditPath, ensureDir, removeStaleTemps, statePath } from './store.js';
import { silentLogger, type Logger } from './log.js';
import { AgentTrace, kernelTracer, type TraceBackend } from './trace.js';

export type { Caller } from './revision.js';
export type { FilterChange, FilterSpec, FilterView, RuleView } from './filter.js';

interface DesiredState {
  version: 1;
  filter: FilterState;
  /** the balancer, when the agent runs one (src/agent/lb.ts) */
  lb?: LbState;
  /**
   * The interfaces the filter runs on, as last resolved from filter.spec.interfaces (globs and
   * `all` among them). Absent in states written before globs.
   */
  filterOn?: string[];
}

export interface AgentOptions {
  stateDir: string;
  config?: AgentConfig | null;
  filters?: FilterBackend;
  balancer?: LbBackend;
  tracer?: TraceBackend;
  /** where audit lines go besides audit.log and the logger */
  auditSink?: (line: string) => void;
  /**
   * Where the agent says what it does (start notes and audit records at info, an interface it
   * could not filter at warn, failures at error); fastify's too when buildApi is given none.
   * Without one the agent logs nothing: library code never prints.
   */
  logger?: Logger;
  /** turns BPF run statistics on for the agent's lifetime (the CLI passes enableRunStats) */
  runStats?: () => RunStats;
}

/** Whether the kernel counts program runs for us, how, or why not. */
export interface RunStatsState {
  on: boolean;
  detail: string;
}

export { etag } from './revision.js';

export class Agent {
  readonly stateDir: string;
  /** what open() did that the operator should hear of (old-layout pins it moved) */
  readonly startNotes: string[] = [];
  /** the logger given to open(), or a silent one */
  readonly log: Logger;
  private readonly auditSink: (line: string) => void;
  private state: DesiredState;
  private store: StateStore<DesiredState> | null = null;
  private readonly auditLog: AuditLog;
  /** audit lines of changes not yet handed to the store, which journals them with the change */
  private auditNotes: string[] = [];
  private closed = false;
  private stats: RunStats | null = null;
  private statsState: RunStatsState = { on: false, detail: 'off' };
  /** the packet filter: its policy and interfaces (GET/PUT /v1/filter, /v1/filter/rules) */
  filter!: AgentFilter;
  /** the balancer's services (GET/PUT/DELETE /v1/lb/services) */
  lb!: AgentLb;
  /** the tracer and its event streams (GET /v1/trace/events) */
  trace!: AgentTrace;
  /** the node's service proxy, when configured (GET /v1/kubernetes/status) */
  kubernetes: AgentKubernetes | null = null;

  private constructor(opts: AgentOptions, state: DesiredState) {
    this.stateDir = opts.stateDir;
    this.auditSink = opts.auditSink ?? (() => {});
    this.log = opts.logger ?? silentLogger();
    this.state = state;
    this.auditLog = new AuditLog(auditPath(opts.stateDir));
  }
 
  /**
   * Reads the desired state, lets the config file win where it changed since that state was
   * written, and makes the kernel match it, section by section. A start that fails changes
   * nothing in the kernel: what it loaded is unloaded again.
   */
  static open(opts: AgentOptions): Agent {
    ensureDir(opts.stateDir);
    // a writer killed between writing a snapshot's temporary file and renaming it leaves the file
    removeStaleTemps(opts.stateDir);
    const { state: saved, notes } = StateStore.replay<DesiredState>(opts.stateDir);
    if (saved && saved.version !== 1) throw new EbpfnetError('EBPFNET_USAGE', `read ${statePath(opts.stateDir)}`, `state version ${String(saved.version)} is not 1`, { hint: 'this agent is older than the one that wrote it' });
    const state: DesiredState = saved ?? { version: 1, filter: emptyFilterState() };
    const agent = new Agent(opts, state);
    // audit lines of acknowledged changes that a power cut took from the log (see store.ts)
    agent.auditLog.recover(notes);
    agent.startRunStats(opts.runStats);
    try {
      const f = AgentFilter.open(saved ?? undefined, opts.config?.filter, opts.filters ?? kernelFilters, {
        save: (op, part) => agent.saveSection(op, part),
        audit: (caller, op, what, revision) => agent.audit(caller, op, what, revision),
      }, agent.log);
      agent.filter = f.filter;
      agent.startNotes.push(...f.notes);
      Object.assign(state, f.filter.saved);
      const k8s = opts.config?.kubernetes ?? null;
      const lb = AgentLb.open(
        state.lb,
        opts.config?.lb ?? null,
        opts.balancer ?? kernelLb,
        {
          save: (s) => agent.saveSection('save the balancer', { lb: s }),
          audit: (caller, op, what, revision) => agent.audit(caller, op, what, revision),
        },
        { kubernetes: k8s !== null },
      );
      agent.lb = lb.lb;
      if (lb.changed) state.lb = lb.lb.saved;
      agent.kubernetes = AgentKubernetes.open(k8s, agent.lb, agent.log);
      agent.trace = AgentTrace.open(opts.config?.trace ?? null, opts.tracer ?? kernelTracer);
      // a fresh snapshot of what is running (filter and balancer), and an empty journal after it
      agent.store = StateStore.open(opts.stateDir, agent.state, () => agent.auditLog.fds);
    } catch (e) {
      agent.filter?.abandonStart();
      agent.lb?.abandonStart();
      agent.close();
      throw e;
    }
    agent.filter.startDone();
    return agent;
  }

  /**
   * Ready once the desired state is in the kernel (open() only returns then) and, with Kubernetes,
   * once its first full sync is in it too. A sync that fails later leaves the agent ready: the
   * datapath serves its last state, and `kubernetes status` says the sync is retrying.
   */
  get ready(): boolean {
    return !this.closed && (this.kubernetes?.ready ?? true);
  }

  /** Why not ready, for /readyz. */
  get notReadyReason(): string {
    if (this.closed) return 'the agent is stopping';
    return this.kubernetes && !this.kubernetes.ready ? this.kubernetes.notReadyReason() : 'see its log';
  }

  /** Every program the agent runs and every map it owns, for the BPF metrics at scrape time. */
  bpfSources(): BpfSource[] {
    return [...(this.filter?.bpfSources() ?? []), ...(this.lb?.bpfSources() ?? []), ...(this.trace?.bpfSources() ?? [])];
  }

  get runStats(): RunStatsState {
    return { ...this.statsState };
  }

  /** Drops this process's references; every pinned datapath stays (that is the point). */
  close(): void {
    this.closed = true;
    // run statistics go back to how they were before the agent started
    this.stats?.close();
    this.stats = null;
    this.statsState = { on: false, detail: 'off (the agent stopped)' };
    this.kubernetes?.close();
    this.kubernetes = null;
    this.filter?.close();
    this.lb?.close();
    this.trace?.close();
    this.store?.close();
    this.store = null;
    this.auditLog.close();
  }

  /** `agent --cleanup`: detaches and unpins everything the desired state names, then forgets it. */
  static cleanup(stateDir: string, filters: FilterBackend = kernelFilters, balancer: LbBackend = kernelLb): string[] {
    const saved = StateStore.load<DesiredState>(stateDir);
    const removed = [...AgentFilter.cleanup(saved ?? undefined, filters), ...AgentLb.cleanup(saved?.lb, balancer)];
    if (saved) {
      // keep the revision counter so clients' old ETags stay stale; the policy itself is gone
      const empty: DesiredState = { version: 1, filter: { ...emptyFilterState(), revision: saved.filter.revision + 1, nextId: saved.filter.nextId } };
      StateStore.open(stateDir, empty).close();
    }
    return removed;
  }

  // ---- internals ----

  /** Without them the agent still works; the metrics just say the run counters stand still. */
  private startRunStats(enable?: () => RunStats): void {
    if (!enable) return;
    try {
      this.stats = enable();
      this.statsState = { on: true, detail: `on (${this.stats.via})` };
    } catch (e) {
      this.statsState = { on: false, detail: `off: ${(e as Error).message}` };
    }
  }

  /**
   * A section changed (already in the kernel): into the state now, the promise resolves once it
   * is on disk. Only the sections that changed go to the journal (a balancer change leaves the
   * filter's out).
   */
  private saveSection(op: string, part: Partial<Omit<DesiredState, 'version'>>): Promise<void> {
    this.state = { ...this.state, ...part };
    if (!this.store) return Promise.reject(new EbpfnetError('EBPFNET_BUSY', op, 'the agent is stopping'));
    return this.store.save(part, this.auditNotes.splice(0));
  }

  private audit(caller: Caller, op: string, what: string, revision: number): void {
    const record = { time: new Date().toISOString(), who: caller.who, op, what, revision };
    const line = JSON.stringify(record);
    this.auditNotes.push(line);
    try {
      this.auditLog.append(line);
    } catch (e) {
      this.log.error({ err: e }, `write audit log: ${(e as Error).message}`);
    }
    this.log.info({ audit: record }, `audit: ${op}: ${what}`);
    this.auditSink(line);
  }
}
