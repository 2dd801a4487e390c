// SPDX-License-Identifier: Apache-2.0
// The agent owns what is running: the desired state (persisted in the state directory and
// re-applied at start), the datapaths that carry it out, and every change to them. Faces (the HTTP
// API, metrics, the CLI) call these methods and present the results; they hold no kernel object.
//
// Datapaths are pinned, so the agent process is not what keeps traffic filtered: a crash or a
// `kill -9` leaves the filter attached, and the next agent adopts the pins (counters included).
import { EbpfnetError } from '../errors.js';
import type { Hook } from '../filter/datapath.js';
import type { Policy } from '../filter/policy.js';
import { checkPattern, isWildcard, resolveInterfaces, type IfaceFact, type Resolved } from '../filter/ifaces.js';
import { formatMatch, parseRule, type Action, type Rule } from '../filter/rules.js';
import { countersView } from '../filter/stats.js';
import type { RunStats } from '../loader/index.js';
import type { BpfSource } from '../metrics/bpf.js';
import type { FilterSource } from '../metrics/filter.js';
import { DEFAULT_MAX_RULES, sectionHash, type AgentConfig, type AttachMode } from './config.js';
import { kernelFilters, type FilterBackend, type FilterHandle } from './filter.js';
import { AgentLb, kernelLb, type LbBackend, type LbState } from './lb.js';
import { checkIfMatch, type Caller } from './revision.js';

export type { Caller } from './revision.js';
import { AuditLog, StateStore, auditPath, ensureDir, removeStaleTemps, statePath } from './store.js';
import { silentLogger, type Logger } from './log.js';
import { AgentTrace, kernelTracer, type TraceBackend } from './trace.js';

export interface RuleView {
  id: number;
  action: Action;
  match: string;
}

export interface FilterSpec {
  interfaces: string[];
  rules: RuleView[];
  default: Action;
  audit: boolean;
  hook: Hook;
  mode: AttachMode;
  maxRules: number;
}

export interface FilterView extends Omit<FilterSpec, 'maxRules'> {
  revision: number;
}

/** A whole-policy write: what PUT /v1/filter carries. */
export interface FilterChange {
  interfaces?: string[];
  rules: Array<{ action: Action; match: string }>;
  default?: Action;
  audit?: boolean;
}

interface DesiredState {
  version: 1;
  filter: {
    revision: number;
    nextId: number;
    /** fingerprint of the config file's filter section this state started from */
    configHash: string | null;
    spec: FilterSpec;
  };
  /** the balancer, when the agent runs one (src/agent/lb.ts) */
  lb?: LbState;
  /**
   * The interfaces the filter runs on, as last resolved from spec.interfaces (globs and `all`
   * among them): what `--cleanup` removes and what a restarted agent unloads when no longer wanted.
   * Absent in states written before globs.
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

const emptySpec = (): FilterSpec => ({ interfaces: [], rules: [], default: 'allow', audit: false, hook: 'xdp', mode: 'auto', maxRules: DEFAULT_MAX_RULES });

const toPolicy = (s: FilterSpec): Policy => ({ rules: s.rules.map((r) => parseRule(r.action, r.match)), default: s.default, audit: s.audit });

/** how soon an interface whose filter failed to attach is tried again (on the next event or change) */
const RETRY_MS = 30_000;

/** The patterns that named interface `i` (for messages). */
const matchedBy = (resolved: Resolved[], i: string): string => resolved.filter((r) => r.names.includes(i)).map((r) => r.pattern).join(', ');

export { etag } from './revision.js';

export class Agent {
  readonly stateDir: string;
  /** what open() did that the operator should hear of (old-layout pins it moved) */
  readonly startNotes: string[] = [];
  /** the logger given to open(), or a silent one */
  readonly log: Logger;
  private readonly filters: FilterBackend;
  private readonly auditSink: (line: string) => void;
  private state: DesiredState;
  private store: StateStore<DesiredState> | null = null;
  private readonly auditLog: AuditLog;
  /** audit lines of changes not yet handed to the store, which journals them with the change */
  private auditNotes: string[] = [];
  private handles = new Map<string, FilterHandle>();
  /** what each interface pattern resolved to last (for the start line and status) */
  private resolved: Resolved[] = [];
  /** interfaces a wildcard matched whose filter failed to attach (another XDP program there),
   * why, and when: tried again at most every RETRY_MS (a failure can itself make link events) */
  private failedOn = new Map<string, { reason: string; at: number }>();
  /** filters loaded (not adopted) by the start under way: a start that fails unloads them again */
  private createdByStart: string[] | null = null;
  private watch: { close(): void } | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private stats: RunStats | null = null;
  private statsState: RunStatsState = { on: false, detail: 'off' };
  /** the balancer's services (GET/PUT/DELETE /v1/lb/services) */
  lb!: AgentLb;
  /** the tracer and its event streams (GET /v1/trace/events) */
  trace!: AgentTrace;

  private constructor(opts: AgentOptions, state: DesiredState) {
    this.stateDir = opts.stateDir;
    this.filters = opts.filters ?? kernelFilters;
    this.auditSink = opts.auditSink ?? (() => {});
    this.log = opts.logger ?? silentLogger();
    this.state = state;
    this.auditLog = new AuditLog(auditPath(opts.stateDir));
  }

  /**
   * Reads the desired state, lets the config file win where it changed since that state was
   * written, and makes the kernel match it: pinned filters are adopted (their counters continue),
   * missing ones are loaded, attached and pinned.
   */
  static open(opts: AgentOptions): Agent {
    ensureDir(opts.stateDir);
    // a writer killed between writing a snapshot's temporary file and renaming it leaves the file
    removeStaleTemps(opts.stateDir);
    const { state: saved, notes } = StateStore.replay<DesiredState>(opts.stateDir);
    if (saved && saved.version !== 1) throw new EbpfnetError('EBPFNET_USAGE', `read ${statePath(opts.stateDir)}`, `state version ${String(saved.version)} is not 1`, { hint: 'this agent is older than the one that wrote it' });
    const state: DesiredState = saved ?? { version: 1, filter: { revision: 0, nextId: 1, configHash: null, spec: emptySpec() } };
    const agent = new Agent(opts, state);
    // audit lines of acknowledged changes that a power cut took from the log (see store.ts)
    agent.auditLog.recover(notes);
    agent.startRunStats(opts.runStats);
    const cf = opts.config?.filter;
    const cfHash = cf && sectionHash(cf);
    // withIds parses the config's rules (checked once already by the config reader) for their ids;
    // the kernel's policy is made of the same parse, not a third one
    let policy: Policy | undefined;
    if (cf && cfHash !== state.filter.configHash) {
      const { spec, nextId, rules } = agent.withIds(cf, state.filter.spec, state.filter.nextId);
      state.filter = { revision: state.filter.revision + 1, nextId, configHash: cfHash!, spec: { ...spec, hook: cf.hook, mode: cf.mode, maxRules: cf.maxRules } };
      policy = { rules, default: spec.default, audit: spec.audit };
    }
    agent.createdByStart = [];
    try {
      agent.startNotes.push(...(agent.filters.migrate?.() ?? []));
      for (const note of agent.startNotes) agent.log.info(note);
      // a name the saved state had may have gone while no agent ran; one the config just added must be there
      agent.reconcile(state.filter.spec, policy ?? toPolicy(state.filter.spec), undefined, undefined, new Set(saved?.filter.spec.interfaces));
      agent.forgetStale(state.filterOn ?? []);
      state.filterOn = agent.attachedInterfaces();
      const lb = AgentLb.open(state.lb, opts.config?.lb ?? null, opts.balancer ?? kernelLb, {
        save: (s) => agent.saveSection({ lb: s }),
        audit: (caller, op, what, revision) => agent.audit(caller, op, what, revision),
      });
      agent.lb = lb.lb;
      if (lb.changed) state.lb = lb.lb.saved;
      agent.trace = AgentTrace.open(opts.config?.trace ?? null, opts.tracer ?? kernelTracer);
      // a fresh snapshot of what is running (filter and balancer), and an empty journal after it
      agent.store = StateStore.open(opts.stateDir, agent.state, () => agent.auditLog.fds);
      agent.watchInterfaces();
    } catch (e) {
      agent.close();
      // what this start loaded goes again (adopted filters stay as they were): a start that fails
      // changes nothing in the kernel
      for (const i of agent.createdByStart) {
        try {
          agent.filters.unload(i);
        } catch (u) {
          agent.log.warn({ interface: i, err: u }, `filter: could not unload ${i} after the failed start: ${(u as Error).message}`);
        }
      }
      throw e;
    }
    agent.createdByStart = null;
    return agent;
  }

  /** Ready once the desired state is in the kernel (open() only returns then). */
  get ready(): boolean {
    return !this.closed;
  }

  // ---- the filter ----

  filter(): FilterView {
    const { maxRules: _, ...spec } = this.state.filter.spec;
    return { revision: this.state.filter.revision, ...spec, interfaces: [...spec.interfaces], rules: spec.rules.map((r) => ({ ...r })) };
  }

  get filterRevision(): number {
    return this.state.filter.revision;
  }

  /** The interfaces the filter runs on now (wildcards resolved), in attach order. */
  attachedInterfaces(): string[] {
    return [...this.handles.keys()];
  }

  /** What each interface pattern named at the last resolution, and where attaching failed. */
  filterTargets(): { resolved: Resolved[]; failed: Array<{ interface: string; reason: string }> } {
    return { resolved: this.resolved.map((r) => ({ pattern: r.pattern, names: [...r.names] })), failed: [...this.failedOn].map(([i, f]) => ({ interface: i, reason: f.reason })) };
  }

  /**
   * The most rules a policy may have: filter.maxRules of the config, the counter slots every
   * filter the agent loads has at least (kernelFilters.create). The API's schema says it, and a
   * policy beyond it is refused (413) before anything is parsed or touched.
   */
  get maxRules(): number {
    return this.state.filter.spec.maxRules;
  }

  /** EBPFNET_TOO_LARGE for a policy of `n` rules, beyond maxRules. */
  tooManyRules(op: string, n: number): EbpfnetError {
    const max = this.maxRules;
    return new EbpfnetError('EBPFNET_TOO_LARGE', op, `${n} rules are more than the filter holds (maxRules ${max})`, {
      hint: `send at most ${max}, or raise filter.maxRules in the agent's config (a filter already pinned keeps the size it was loaded with until \`ebpfnet agent --cleanup\`)`,
    });
  }

  /**
   * Replaces the whole policy (and the interface set, when given) in one step per interface. The
   * kernel has it when this returns a promise; the promise resolves once it is on disk too.
   */
  async setFilter(change: FilterChange, caller: Caller): Promise<FilterView> {
    this.checkRevision(caller);
    // duplicates only make the policy smaller: the count as sent is enough, and costs no parse
    if (change.rules.length > this.maxRules) throw this.tooManyRules('set the filter policy', change.rules.length);
    const durable = this.replacePolicy(change, caller);
    const view = this.filter();
    await durable;
    return view;
  }

  /** setFilter's change, in a frame of its own: an awaiting async frame would keep the parsed rules. */
  private replacePolicy(change: FilterChange, caller: Caller): Promise<void> {
    const cur = this.state.filter.spec;
    const { spec, nextId, rules } = this.withIds(
      { interfaces: change.interfaces ?? cur.interfaces, rules: change.rules, default: change.default ?? cur.default, audit: change.audit ?? cur.audit },
      cur,
      this.state.filter.nextId,
    );
    const what = `${spec.rules.length} rules on ${spec.interfaces.join(',') || 'no interface'}; default ${spec.default}${spec.audit ? '; audit' : ''}`;
    return this.commit({ ...cur, ...spec }, nextId, caller, 'PUT /v1/filter', what, { rules, default: spec.default, audit: spec.audit });
  }

  async addRule(rule: { action: Action; match: string }, caller: Caller): Promise<RuleView> {
    this.checkRevision(caller);
    const cur = this.state.filter.spec;
    const r = parseRule(rule.action, rule.match);
    const text = formatMatch(r);
    if (cur.rules.some((x) => x.action === r.action && x.match === text)) {
      throw new EbpfnetError('EBPFNET_EXISTS', 'add filter rule', `'${r.action} ${text}' is already in the policy`);
    }
    if (cur.rules.length >= this.maxRules) throw this.tooManyRules('add filter rule', cur.rules.length + 1);
    const added: RuleView = { id: this.state.filter.nextId, action: r.action, match: text };
    await this.commit({ ...cur, rules: [...cur.rules, added] }, added.id + 1, caller, 'POST /v1/filter/rules', `add #${added.id} ${added.action} ${added.match}`);
    return { ...added };
  }

  async deleteRule(id: number, caller: Caller): Promise<FilterView> {
    this.checkRevision(caller);
    const cur = this.state.filter.spec;
    const gone = cur.rules.find((r) => r.id === id);
    if (!gone) throw new EbpfnetError('EBPFNET_NOT_FOUND', `delete filter rule ${id}`, 'no rule with that id', { hint: 'GET /v1/filter lists the rules and their ids' });
    const durable = this.commit({ ...cur, rules: cur.rules.filter((r) => r.id !== id) }, this.state.filter.nextId, caller, `DELETE /v1/filter/rules/${id}`, `delete #${id} ${gone.action} ${gone.match}`);
    const view = this.filter();
    await durable;
    return view;
  }

  /** Counters per interface and rule, read from the kernel now. */
  filterStats(): { revision: number; interfaces: Array<Record<string, unknown>> } {
    const spec = this.state.filter.spec.rules;
    let ids: Map<string, number> | null = null;
    /** the spec's rule for a counter row: the same position when the rule is the same (always, but
     * for a pinned filter another process changed), else by text */
    const ruleOf = (text: string, i: number): { id: number | null; match: string } => {
      const r = spec[i];
      if (r && text.length === r.action.length + 1 + r.match.length && text.startsWith(r.action) && text.endsWith(r.match)) return r;
      ids ??= new Map(spec.map((x) => [`${x.action} ${x.match}`, x.id]));
      return { id: ids.get(text) ?? null, match: text.replace(/^(allow|deny) /, '') };
    };
    const interfaces = [...this.handles.values()].map((h) => ({ interface: h.ifname, attachment: h.attachment, ...countersView(h.counters(), ruleOf) }));
    return { revision: this.state.filter.revision, interfaces };
  }

  /** What the metrics face reads at scrape time. */
  filterSources(): FilterSource[] {
    return [...this.handles.values()].map((h) => ({ ifname: h.ifname, counters: (opts) => h.counters(opts) }));
  }

  /** Every program the agent runs and every map it owns, for the BPF metrics at scrape time. */
  bpfSources(): BpfSource[] {
    const filters = [...this.handles.values()].map((h) => ({
      datapath: 'filter',
      target: h.ifname,
      programs: () => {
        const p = h.programInfo();
        return p ? [p] : [];
      },
      maps: () => h.mapFill(),
    }));
    return [...filters, ...(this.lb?.bpfSources() ?? []), ...(this.trace?.bpfSources() ?? [])];
  }

  get runStats(): RunStatsState {
    return { ...this.statsState };
  }

  /** Drops this process's references; every pinned datapath stays (that is the point). */
  close(): void {
    this.closed = true;
    this.watch?.close();
    this.watch = null;
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    // run statistics go back to how they were before the agent started
    this.stats?.close();
    this.stats = null;
    this.statsState = { on: false, detail: 'off (the agent stopped)' };
    for (const h of this.handles.values()) h.close();
    this.handles.clear();
    this.lb?.close();
    this.trace?.close();
    this.store?.close();
    this.store = null;
    this.auditLog.close();
  }

  /** `agent --cleanup`: detaches and unpins everything the desired state names, then forgets it. */
  static cleanup(stateDir: string, filters: FilterBackend = kernelFilters, balancer: LbBackend = kernelLb): string[] {
    const saved = StateStore.load<DesiredState>(stateDir);
    const removed: string[] = [];
    // an older agent's pins are found by today's layout only once moved there
    filters.migrate?.();
    // what it attached to (wildcards resolved), and its plain names for states from before globs
    const named = (saved?.filter.spec.interfaces ?? []).filter((p) => !isWildcard(p));
    for (const i of new Set([...(saved?.filterOn ?? []), ...named])) {
      if (filters.pinned(i)) {
        filters.unload(i);
        removed.push(`filter on ${i}`);
      }
    }
    removed.push(...AgentLb.cleanup(saved?.lb, balancer));
    if (saved) {
      // keep the revision counter so clients' old ETags stay stale; the policy itself is gone
      const empty: DesiredState = { version: 1, filter: { revision: saved.filter.revision + 1, nextId: saved.filter.nextId, configHash: null, spec: emptySpec() } };
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

  private checkRevision(caller: Caller): void {
    checkIfMatch(caller.ifMatch, this.state.filter.revision, 'change the filter', 'GET /v1/filter again and redo the change on what it returns');
  }

  /**
   * Canonical rules with stable ids: a rule keeps its id while its text stays in the policy, a new
   * one takes the next id. Parsing is the one rule grammar; the same rule twice is one rule. The
   * parsed rules come back too (`rules`, in the spec's order), so the kernel's policy needs no
   * second parse.
   */
  private withIds(want: { interfaces: string[]; rules: Array<{ action: Action; match: string }>; default: Action; audit: boolean }, prev: FilterSpec, nextId: number): { spec: FilterSpec; nextId: number; rules: Rule[] } {
    const old = new Map(prev.rules.map((r) => [`${r.action} ${r.match}`, r.id]));
    const seen = new Set<string>();
    const views: RuleView[] = [];
    const rules: Rule[] = [];
    for (const w of want.rules) {
      const r = parseRule(w.action, w.match);
      const text = formatMatch(r);
      const key = `${r.action} ${text}`;
      if (seen.has(key)) continue;
      seen.add(key);
      // the caller's string when it is already canonical: one copy per rule, not two
      views.push({ id: old.get(key) ?? nextId++, action: r.action, match: w.match === text ? w.match : text });
      rules.push(r);
    }
    const ifs = [...new Set(want.interfaces)];
    for (const p of ifs) checkPattern(p, 'set the filter policy');
    return { spec: { ...prev, interfaces: ifs, rules: views, default: want.default, audit: want.audit }, nextId, rules };
  }

  /**
   * Kernel first, then the file: a change that fails leaves both as they were. The change is in
   * the kernel and in memory on return (so the next request sees it); the promise resolves once
   * it is durable.
   */
  private commit(spec: FilterSpec, nextId: number, caller: Caller, op: string, what: string, policy: Policy = toPolicy(spec)): Promise<void> {
    const before = this.state.filter.spec;
    const touched = new Set<string>();
    try {
      this.reconcile(spec, policy, touched);
    } catch (e) {
      try {
        // only the filters that took the new policy go back: the others never changed, and
        // re-applying to them would flip their generation for nothing
        this.reconcile(before, toPolicy(before), new Set(), touched);
      } catch (e2) {
        this.log.error({ err: e2 }, `restore the previous filter after a failed change: ${(e2 as Error).message}`);
      }
      throw e;
    }
    const prev = this.state.filter;
    this.state = { ...this.state, filter: { revision: prev.revision + 1, nextId, configHash: prev.configHash, spec }, filterOn: this.attachedInterfaces() };
    this.audit(caller, op, what);
    this.watchInterfaces();
    return this.save(op, { filter: this.state.filter, filterOn: this.state.filterOn });
  }

  /**
   * Makes the kernel match `spec`. Interfaces without a filter come first, so a change naming an
   * interface that cannot take one (gone, a typo) fails before any running filter is touched.
   * Wildcards in spec.interfaces are resolved against the interfaces there now; a plain name in
   * `mayBeGone` that is not there is passed over (see resolve()).
   * `touched` collects the interfaces whose policy changed; `only`, when given, limits the
   * re-applying of running filters to those interfaces.
   */
  private reconcile(spec: FilterSpec, policy: Policy, touched: Set<string> = new Set(), only?: Set<string>, mayBeGone = new Set(this.state.filter.spec.interfaces)): void {
    const { names, resolved } = this.resolve(spec.interfaces, mayBeGone);
    const named = new Set(spec.interfaces);
    for (const i of names) {
      if (this.handles.has(i)) continue;
      // a name the policy spells out must take the filter; one only a wildcard matched may fail
      // (another XDP program there) without holding up the rest
      if (named.has(i)) this.attachFilter(i, spec, policy, touched);
      else this.tryAttach(i, spec, policy, touched, resolved);
    }
    for (const i of names) {
      if (touched.has(i) || (only && !only.has(i)) || !this.handles.has(i)) continue;
      touched.add(i);
      this.handles.get(i)!.apply(policy);
    }
    const wanted = new Set(names);
    for (const [i, h] of [...this.handles]) {
      if (wanted.has(i)) continue;
      h.close();
      this.handles.delete(i);
      this.filters.unload(i);
    }
    for (const i of [...this.failedOn.keys()]) if (!wanted.has(i)) this.failedOn.delete(i);
    this.resolved = resolved.map((r) => ({ pattern: r.pattern, names: r.names.filter((n) => this.handles.has(n)) }));
  }

  /** A filter with `policy` on `i`: a pinned one adopted (its counters continue), else a new one. */
  private attachFilter(i: string, spec: FilterSpec, policy: Policy, touched: Set<string>): void {
    if (this.filters.pinned(i)) {
      const a = this.filters.adopt(i);
      this.handles.set(i, a);
      touched.add(i);
      a.apply(policy);
    } else {
      this.handles.set(i, this.filters.create(i, policy, { hook: spec.hook, mode: spec.mode, maxRules: spec.maxRules }));
      this.createdByStart?.push(i);
      touched.add(i);
    }
  }

  /**
   * attachFilter for an interface a wildcard matched: a failure is remembered and logged (warn),
   * not thrown, and not tried again within RETRY_MS. True when the filter is there.
   */
  private tryAttach(i: string, spec: FilterSpec, policy: Policy, touched: Set<string>, resolved: Resolved[]): boolean {
    if (!this.retryDue(i)) return false;
    try {
      this.attachFilter(i, spec, policy, touched);
      this.failedOn.delete(i);
      return true;
    } catch (e) {
      this.handles.get(i)?.close();
      this.handles.delete(i);
      this.failedOn.set(i, { reason: (e as Error).message, at: Date.now() });
      this.log.warn({ interface: i, matches: matchedBy(resolved, i), retryInSeconds: RETRY_MS / 1000 }, `filter: not on ${i} (matches ${matchedBy(resolved, i)}): ${(e as Error).message}`);
      return false;
    }
  }

  /** Whether interface `i` may be tried: it never failed, or last failed RETRY_MS ago or more. */
  private retryDue(i: string): boolean {
    const f = this.failedOn.get(i);
    return !f || Date.now() - f.at >= RETRY_MS;
  }

  /**
   * Interface patterns as names. A plain name that is not there fails where its filter is created
   * (a typo, as always), unless it is in `mayBeGone`: the policy named it before and the interface
   * went away since; then it is passed over until it comes back. Wildcards match the interfaces
   * there now (one listing); one matching nothing yet waits for them.
   */
  private resolve(patterns: string[], mayBeGone: ReadonlySet<string> = new Set()): { names: string[]; resolved: Resolved[] } {
    for (const p of patterns) checkPattern(p, 'filter');
    const links = this.filters.links;
    const wild = patterns.some(isWildcard);
    if (!links) {
      if (wild) throw new EbpfnetError('EBPFNET_NOT_SUPPORTED', 'filter', 'interface globs and all need the interface list, which this backend lacks');
      return { names: [...patterns], resolved: patterns.map((p) => ({ pattern: p, names: [p] })) };
    }
    // plain names alone: existence checks only, no listing (a policy change stays a few syscalls)
    const here = wild ? links.list() : [];
    const there = (n: string): boolean => (wild ? here.some((f) => f.name === n) : links.exists(n));
    return resolveInterfaces(patterns, here, { op: 'filter', emptyIsError: false, missing: (n) => (mayBeGone.has(n) && !there(n) ? 'skip' : 'keep') });
  }

  /** Filters an earlier agent attached that the desired state no longer names: unpinned. */
  private forgetStale(before: string[]): void {
    for (const i of before) if (!this.handles.has(i) && this.filters.pinned(i)) this.filters.unload(i);
  }

  /**
   * Starts following interface changes once the filter has interfaces (so a removed interface is
   * dropped and a new one a wildcard matches is filtered), with one look shortly after the start:
   * an interface made before the watch was listening would otherwise wait for the next event.
   */
  private watchInterfaces(): void {
    const links = this.filters.links;
    if (this.watch || this.closed || !links || !this.state.filter.spec.interfaces.length) return;
    this.watch = links.watch(
      () => this.resync(),
      (e) => this.log.warn({ err: e }, `watch interfaces: ${e.message}; new interfaces are not filtered until the agent restarts`),
    );
    this.resyncTimer = setTimeout(() => this.resync(), 1000);
    this.resyncTimer.unref();
  }

  /**
   * Interfaces came or went: a wildcard's new match gets the current policy, a filtered interface
   * that no longer exists is dropped (the kernel detached its program with it; its pins go). An
   * interface that still exists keeps its filter even if a wildcard stopped matching it (`all` on
   * one whose address went away for a moment): only a policy change takes it off.
   */
  private resync(): void {
    this.resyncTimer = null;
    const links = this.filters.links;
    if (this.closed || !links) return;
    const spec = this.state.filter.spec;
    let here: IfaceFact[];
    let want: { names: string[]; resolved: Resolved[] };
    try {
      here = links.list();
      want = resolveInterfaces(spec.interfaces, here, { op: 'filter', missing: 'skip', emptyIsError: false });
    } catch (e) {
      this.log.warn({ err: e }, `list interfaces: ${(e as Error).message}`);
      return;
    }
    const exists = new Set(here.map((f) => f.name));
    const who: Caller = { who: 'agent' };
    let changed = false;
    for (const [i, h] of [...this.handles]) {
      if (exists.has(i)) continue;
      h.close();
      this.handles.delete(i);
      try {
        this.filters.unload(i);
      } catch (e) {
        this.log.warn({ err: e, interface: i }, `remove the pins of vanished ${i}: ${(e as Error).message}`);
      }
      this.audit(who, 'interface gone', `filter on ${i} dropped`);
      changed = true;
    }
    for (const i of [...this.failedOn.keys()]) if (!exists.has(i)) this.failedOn.delete(i);
    let policy: Policy | null = null;
    for (const i of want.names) {
      // checked before the parse: a 100,000-rule policy is parsed only when an interface needs it
      if (this.handles.has(i) || !this.retryDue(i)) continue;
      policy ??= toPolicy(spec);
      if (!this.tryAttach(i, spec, policy, new Set(), want.resolved)) continue;
      this.audit(who, 'interface added', `filter on ${i} (matches ${matchedBy(want.resolved, i)})`);
      changed = true;
    }
    this.resolved = want.resolved.map((r) => ({ pattern: r.pattern, names: r.names.filter((n) => this.handles.has(n)) }));
    if (!changed) return;
    this.state = { ...this.state, filterOn: this.attachedInterfaces() };
    // a save the agent's close overtook is not an error: the next start reconciles filterOn anyway
    this.save('follow interfaces', { filterOn: this.state.filterOn }).catch((e: Error) => this.closed || this.log.error({ err: e }, `save the filtered interfaces: ${e.message}`));
  }

  /**
   * A section other than the filter's changed (the balancer, already in the kernel): into the
   * state now, the promise resolves once it is on disk.
   */
  private saveSection(part: Pick<DesiredState, 'lb'>): Promise<void> {
    this.state = { ...this.state, ...part };
    return this.save('save the balancer', part);
  }

  /** Only the sections that changed go to the journal (a balancer change leaves the filter's out). */
  private save(op: string, sections: Partial<DesiredState>): Promise<void> {
    if (!this.store) return Promise.reject(new EbpfnetError('EBPFNET_BUSY', op, 'the agent is stopping'));
    return this.store.save(sections, this.auditNotes.splice(0));
  }

  private audit(caller: Caller, op: string, what: string, revision = this.state.filter.revision): void {
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
