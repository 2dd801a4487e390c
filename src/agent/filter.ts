// SPDX-License-Identifier: Apache-2.0
// The agent's packet filter (AgentFilter, beside AgentLb and AgentTrace): its desired policy, the
// interfaces it runs on (globs followed as interfaces come and go), every change to them, and how it
// reaches the datapath. The kernel backend drives FilterDatapath through its public methods (filters
// start through filter/start.ts, as the CLI's do); unit tests hand the agent an in-memory backend
// instead, so the agent and the API are tested without root.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EbpfnetError } from '../errors.js';
import { FilterDatapath, type FilterCounters, type Hook, type MapFill } from '../filter/datapath.js';
import { checkPattern, isWildcard, resolveInterfaces, type IfaceFact, type Resolved } from '../filter/ifaces.js';
import { filterSite, migrateOldPins } from '../filter/pins.js';
import type { Policy } from '../filter/policy.js';
import { formatMatch, parseRule, type Action, type Rule } from '../filter/rules.js';
import { startFilter } from '../filter/start.js';
import { ctMaxNote, type CtTableView } from '../filter/ct-table.js';
import { countersView } from '../filter/stats.js';
import { flowViews, pageFlows, type FlowPage, type FlowView } from '../filter/conntrack.js';
import type { FltCtCfg, FltCtKey, FltCtVal } from '../gen/filter.js';
import { interfaceExists, linkInfo, netInterfaces, openPinnedLink, progInfo, watchInterfaces, type ProgInfo } from '../loader/index.js';
import type { BpfSource } from '../metrics/bpf.js';
import type { FilterSource } from '../metrics/filter.js';
import { DEFAULT_MAX_RULES, sectionHash, type AttachMode, type FilterConfig } from './config.js';
import type { Logger } from './log.js';
import { checkIfMatch, type Caller } from './revision.js';

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
  /** the connection table's size (filter.ctMax); absent: the default */
  ctMax?: number;
  /** connection tracking as set (config filter.stateful, the API); absent: on under default deny */
  stateful?: boolean;
}

export interface FilterView extends Omit<FilterSpec, 'maxRules' | 'stateful'> {
  revision: number;
  /** connections are tracked (replies to what the host opened pass): as set, else default deny */
  stateful: boolean;
}

/** A whole-policy write: what PUT /v1/filter carries. */
export interface FilterChange {
  interfaces?: string[];
  rules: Array<{ action: Action; match: string }>;
  default?: Action;
  audit?: boolean;
  /** omitted: unchanged; null: back to the default (on under default deny) */
  stateful?: boolean | null;
}

/** Whether a spec's filters track connections: as set, else under a default deny (as the CLI). */
export const statefulOf = (s: { default: Action; stateful?: boolean }): boolean => s.stateful ?? s.default === 'deny';

/** The filter's part of the agent's state file. */
export interface FilterState {
  revision: number;
  nextId: number;
  /** fingerprint of the config file's filter section this state started from */
  configHash: string | null;
  spec: FilterSpec;
}

/** How the filter reaches the agent's state file and audit log (AgentLb is handed the same). */
export interface FilterStore {
  /** into the state file: only the parts given; resolves once on disk */
  save(op: string, part: { filter?: FilterState; filterOn?: string[] }): Promise<void>;
  audit(caller: Caller, op: string, what: string, revision: number): void;
}

export const emptyFilterState = (): FilterState => ({ revision: 0, nextId: 1, configHash: null, spec: { interfaces: [], rules: [], default: 'allow', audit: false, hook: 'xdp', mode: 'auto', maxRules: DEFAULT_MAX_RULES } });

const toPolicy = (s: FilterSpec): Policy => ({ rules: s.rules.map((r) => parseRule(r.action, r.match)), default: s.default, audit: s.audit });

/** A spec with connection tracking set to `on` (undefined: the default, so the key goes). */
function withStateful(spec: FilterSpec, on: boolean | undefined): FilterSpec {
  const { stateful: _, ...rest } = spec;
  return on === undefined ? rest : { ...rest, stateful: on };
}

/**
 * A policy and the state switch, in the order that keeps connections up: tracking goes on before
 * a policy that may deny their replies, and off only after the new policy is in.
 */
function applyWithState(h: FilterHandle, policy: Policy, stateful: boolean): void {
  if (stateful && !h.stateful) h.setStateful(true);
  h.apply(policy);
  if (!stateful && h.stateful) h.setStateful(false);
}

/** how soon an interface whose filter failed to attach is tried again (on the next event or change) */
const RETRY_MS = 30_000;

/** The patterns that named interface `i` (for messages). */
const matchedBy = (resolved: Resolved[], i: string): string => resolved.filter((r) => r.names.includes(i)).map((r) => r.pattern).join(', ');

export interface FilterHandle {
  readonly ifname: string;
  /** the hook and mode it runs in, e.g. `xdp native` */
  readonly attachment: string;
  apply(policy: Policy): void;
  counters(opts?: { countedOnlyAbove?: number }): FilterCounters;
  /** the attached program's run count and time (null: none attached) */
  programInfo(): ProgInfo | null;
  mapFill(): MapFill[];
  /** the connection table's size and numbers; null (or absent) when stateless */
  ctTable?(): CtTableView | null;
  /** the connection table's size in flows; null (or absent) when stateless */
  ctMax?(): number | null;
  /** connections are tracked on this interface now */
  readonly stateful: boolean;
  /** turns tracking on or off in place; a failure leaves it as it was */
  setStateful(on: boolean): void;
  /** the tracked flows and the tracker's settings; null when stateless */
  flows(): { entries: Array<[FltCtKey, FltCtVal]>; cfg: FltCtCfg } | null;
  /** drops this process's references; the pinned filter stays */
  close(): void;
}

/** The interfaces there are, and news of changes to them (for globs and `all`). */
export interface LinkSource {
  /** every interface: a listing (for globs and `all`) */
  list(): IfaceFact[];
  /** whether one is there: a cheap check for plain names */
  exists(name: string): boolean;
  /** calls onChange after interfaces or their addresses changed */
  watch(onChange: () => void, onError: (e: Error) => void): { close(): void };
}

export interface FilterBackend {
  /** where interface patterns are resolved; without one, only plain names work (and nothing is watched) */
  readonly links?: LinkSource;
  /** a filter for this interface is pinned (left by an earlier agent or `filter --pin`) */
  pinned(ifname: string): boolean;
  adopt(ifname: string): FilterHandle;
  /** load, apply, attach and pin, or leave nothing behind */
  create(ifname: string, policy: Policy, opts: { hook: Hook; mode: AttachMode; maxRules: number; ctMax?: number; stateful: boolean }): FilterHandle;
  unload(ifname: string): void;
  /** moves pins of an older layout into today's (lines saying so); before the first pinned() */
  migrate?(): string[];
}

/** The id of the program a filter runs: through its own link, or the pinned one (adopted). */
function programId(d: FilterDatapath): number | null {
  const own = d.attached;
  if (own && !own.closed) return linkInfo(own.fd).progId;
  const pin = d.pinDir && join(d.pinDir, 'link');
  if (!pin || !existsSync(pin)) return null;
  const l = openPinnedLink(pin, `filter on ${d.ifname}`);
  try {
    return linkInfo(l.fd).progId;
  } finally {
    l.close();
  }
}

function wrap(d: FilterDatapath): FilterHandle {
  // the program behind a link never changes while the link exists: look it up once
  let progId: number | null = null;
  return {
    ifname: d.ifname,
    get attachment() {
      return d.hook === 'tc' ? 'tc ingress' : `xdp ${d.mode}`;
    },
    apply: (p) => void d.apply(p),
    counters: (opts) => d.counters(opts),
    programInfo() {
      progId ??= programId(d);
      return progId === null ? null : progInfo(progId);
    },
    mapFill: () => d.mapFill(),
    ctTable: () => d.ctTable(),
    ctMax: () => d.ctMax,
    get stateful() {
      return d.stateful;
    },
    setStateful: (on) => d.setStateful(on),
    flows: () => d.flows(),
    close: () => d.close(),
  };
}

export const kernelFilters: FilterBackend = {
  links: { list: netInterfaces, exists: interfaceExists, watch: (onChange, onError) => watchInterfaces(onChange, { onError }) },
  pinned: (ifname) => FilterDatapath.pinnedHere(ifname),
  adopt: (ifname) => wrap(FilterDatapath.adopt(ifname)),
  create: (ifname, policy, opts) => wrap(startFilter(ifname, policy, { hook: opts.hook, mode: opts.mode, pin: true, room: opts.maxRules / 2, ctMax: opts.ctMax, stateful: opts.stateful, switchable: true }).datapath),
  unload: (ifname) => void FilterDatapath.unload(ifname),
  migrate() {
    try {
      const fs = filterSite('agent');
      return fs ? migrateOldPins(fs) : [];
    } catch (e) {
      // the host's pins out of reach (ip netns exec): a filter's pin() refuses with the reason
      if (e instanceof EbpfnetError && e.code === 'EBPFNET_PRIVATE_MOUNTS') return [];
      throw e;
    }
  },
};

export class AgentFilter {
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

  private constructor(
    private st: FilterState,
    /** the interfaces it runs on, as last resolved (globs and `all` among them): what `--cleanup`
     * removes and what a restarted agent unloads when no longer wanted */
    private on: string[],
    private readonly filters: FilterBackend,
    private readonly store: FilterStore,
    private readonly log: Logger,
  ) {}

  /**
   * The filter the saved state describes, with the config file's section winning where it changed
   * since that state was written, made real in the kernel: pinned filters are adopted (their
   * counters continue), missing ones are loaded, attached and pinned. `changed`: the state moved on
   * (the config changed), to be written. `notes`: what the operator should hear of (old-layout pins
   * moved). Until startDone(), abandonStart() unloads what this start loaded.
   */
  static open(
    saved: { filter: FilterState; filterOn?: string[] } | undefined,
    config: FilterConfig | null | undefined,
    backend: FilterBackend,
    store: FilterStore,
    log: Logger,
  ): { filter: AgentFilter; changed: boolean; notes: string[] } {
    const f = new AgentFilter(saved?.filter ?? emptyFilterState(), saved?.filterOn ?? [], backend, store, log);
    const cfHash = config && sectionHash(config);
    // withIds parses the config's rules (checked once already by the config reader) for their ids;
    // the kernel's policy is made of the same parse, not a third one
    let policy: Policy | undefined;
    if (config && cfHash !== f.st.configHash) {
      const { spec, nextId, rules } = f.withIds(config, f.st.spec, f.st.nextId);
      f.st = { revision: f.st.revision + 1, nextId, configHash: cfHash!, spec: withStateful({ ...spec, hook: config.hook, mode: config.mode, maxRules: config.maxRules, ctMax: config.ctMax }, config.stateful) };
      policy = { rules, default: spec.default, audit: spec.audit };
    }
    f.createdByStart = [];
    try {
      const notes = backend.migrate?.() ?? [];
      for (const note of notes) log.info(note);
      // a name the saved state had may have gone while no agent ran; one the config just added must be there
      f.reconcile(f.st.spec, policy ?? toPolicy(f.st.spec), undefined, undefined, new Set(saved?.filter.spec.interfaces));
      f.forgetStale(f.on);
      f.on = f.attachedInterfaces();
      return { filter: f, changed: policy !== undefined, notes };
    } catch (e) {
      f.abandonStart();
      throw e;
    }
  }

  /** The start went through: from now on the filters it loaded are the agent's to keep. */
  startDone(): void {
    this.createdByStart = null;
    this.watchInterfaces();
  }

  /** The start failed: what it loaded goes again (adopted filters stay as they were), and this closes. */
  abandonStart(): void {
    this.close();
    for (const i of this.createdByStart ?? []) {
      try {
        this.filters.unload(i);
      } catch (u) {
        this.log.warn({ interface: i, err: u }, `filter: could not unload ${i} after the failed start: ${(u as Error).message}`);
      }
    }
    this.createdByStart = null;
  }

  /** What the agent's state file holds for the filter. */
  get saved(): { filter: FilterState; filterOn: string[] } {
    return { filter: this.st, filterOn: this.on };
  }

  /** Drops this process's references; the pinned filters stay (that is the point). */
  close(): void {
    this.closed = true;
    this.watch?.close();
    this.watch = null;
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    for (const h of this.handles.values()) h.close();
    this.handles.clear();
  }

  /** `agent --cleanup`: detach and unpin the filters a saved state names; one line each. */
  static cleanup(saved: { filter: FilterState; filterOn?: string[] } | undefined, filters: FilterBackend = kernelFilters): string[] {
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
    return removed;
  }

  /** The filter's programs and maps, for the BPF metrics at scrape time. */
  bpfSources(): BpfSource[] {
    return [...this.handles.values()].map((h) => ({
      datapath: 'filter',
      target: h.ifname,
      programs: () => {
        const p = h.programInfo();
        return p ? [p] : [];
      },
      maps: () => h.mapFill(),
    }));
  }

  view(): FilterView {
    const { maxRules: _, ctMax: _ct, stateful: __, ...spec } = this.st.spec;
    return { revision: this.st.revision, ...spec, interfaces: [...spec.interfaces], rules: spec.rules.map((r) => ({ ...r })), stateful: statefulOf(this.st.spec) };
  }

  /**
   * The flows each stateful interface tracks (GET /v1/filter/conntrack), as `filter conntrack`
   * lists them; `only`: one interface, which must be filtered; `page`: a window of each table's
   * flows, most recent first (a busy table holds 262,144 by default: too many for one answer).
   */
  conntrack(only?: string, page: FlowPage = {}): { interfaces: Array<{ interface: string; stateful: boolean; table: CtTableView | null; total: number; flows: FlowView[] }> } {
    if (only !== undefined && !this.handles.has(only)) {
      throw new EbpfnetError('EBPFNET_NOT_FOUND', `list the flows of ${only}`, 'the agent does not filter that interface', { hint: 'GET /v1/filter/stats lists the interfaces it filters' });
    }
    // the clock the program reads (CLOCK_MONOTONIC), once for every table
    const now = process.hrtime.bigint();
    const out = [...this.handles.values()].filter((h) => only === undefined || h.ifname === only).map((h) => {
      const f = h.flows();
      return { interface: h.ifname, stateful: f !== null, table: h.ctTable?.() ?? null, ...pageFlows(f ? flowViews(f.entries, f.cfg, now) : [], page) };
    });
    return { interfaces: out };
  }

  get revision(): number {
    return this.st.revision;
  }

  /** The interfaces the filter runs on now (wildcards resolved), in attach order. */
  attachedInterfaces(): string[] {
    return [...this.handles.keys()];
  }

  /** What each interface pattern named at the last resolution, and where attaching failed. */
  targets(): { resolved: Resolved[]; failed: Array<{ interface: string; reason: string }> } {
    return { resolved: this.resolved.map((r) => ({ pattern: r.pattern, names: [...r.names] })), failed: [...this.failedOn].map(([i, f]) => ({ interface: i, reason: f.reason })) };
  }

  /**
   * The most rules a policy may have: filter.maxRules of the config, the counter slots every
   * filter the agent loads has at least (startFilter's room). The API's schema says it, and a
   * policy beyond it is refused (413) before anything is parsed or touched.
   */
  get maxRules(): number {
    return this.st.spec.maxRules;
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
  async set(change: FilterChange, caller: Caller): Promise<FilterView> {
    this.checkRevision(caller);
    // duplicates only make the policy smaller: the count as sent is enough, and costs no parse
    if (change.rules.length > this.maxRules) throw this.tooManyRules('set the filter policy', change.rules.length);
    const durable = this.replacePolicy(change, caller);
    const view = this.view();
    await durable;
    return view;
  }

  /** setFilter's change, in a frame of its own: an awaiting async frame would keep the parsed rules. */
  private replacePolicy(change: FilterChange, caller: Caller): Promise<void> {
    const cur = this.st.spec;
    const { spec: next, nextId, rules } = this.withIds(
      { interfaces: change.interfaces ?? cur.interfaces, rules: change.rules, default: change.default ?? cur.default, audit: change.audit ?? cur.audit },
      cur,
      this.st.nextId,
    );
    const spec = change.stateful === undefined ? next : withStateful(next, change.stateful ?? undefined);
    const what = `${spec.rules.length} rules on ${spec.interfaces.join(',') || 'no interface'}; default ${spec.default}${spec.audit ? '; audit' : ''}${statefulOf(spec) ? '; stateful' : ''}`;
    return this.commit(spec, nextId, caller, 'PUT /v1/filter', what, { rules, default: spec.default, audit: spec.audit });
  }

  async addRule(rule: { action: Action; match: string }, caller: Caller): Promise<RuleView> {
    this.checkRevision(caller);
    const cur = this.st.spec;
    const r = parseRule(rule.action, rule.match);
    const text = formatMatch(r);
    if (cur.rules.some((x) => x.action === r.action && x.match === text)) {
      throw new EbpfnetError('EBPFNET_EXISTS', 'add filter rule', `'${r.action} ${text}' is already in the policy`);
    }
    if (cur.rules.length >= this.maxRules) throw this.tooManyRules('add filter rule', cur.rules.length + 1);
    const added: RuleView = { id: this.st.nextId, action: r.action, match: text };
    await this.commit({ ...cur, rules: [...cur.rules, added] }, added.id + 1, caller, 'POST /v1/filter/rules', `add #${added.id} ${added.action} ${added.match}`);
    return { ...added };
  }

  async deleteRule(id: number, caller: Caller): Promise<FilterView> {
    this.checkRevision(caller);
    const cur = this.st.spec;
    const gone = cur.rules.find((r) => r.id === id);
    if (!gone) throw new EbpfnetError('EBPFNET_NOT_FOUND', `delete filter rule ${id}`, 'no rule with that id', { hint: 'GET /v1/filter lists the rules and their ids' });
    const durable = this.commit({ ...cur, rules: cur.rules.filter((r) => r.id !== id) }, this.st.nextId, caller, `DELETE /v1/filter/rules/${id}`, `delete #${id} ${gone.action} ${gone.match}`);
    const view = this.view();
    await durable;
    return view;
  }

  /** Counters per interface and rule, read from the kernel now. */
  stats(): { revision: number; interfaces: Array<Record<string, unknown>> } {
    const spec = this.st.spec.rules;
    let ids: Map<string, number> | null = null;
    /** the spec's rule for a counter row: the same position when the rule is the same (always, but
     * for a pinned filter another process changed), else by text */
    const ruleOf = (text: string, i: number): { id: number | null; match: string } => {
      const r = spec[i];
      if (r && text.length === r.action.length + 1 + r.match.length && text.startsWith(r.action) && text.endsWith(r.match)) return r;
      ids ??= new Map(spec.map((x) => [`${x.action} ${x.match}`, x.id]));
      return { id: ids.get(text) ?? null, match: text.replace(/^(allow|deny) /, '') };
    };
    const interfaces = [...this.handles.values()].map((h) => ({ interface: h.ifname, attachment: h.attachment, stateful: h.stateful, ...countersView(h.counters(), ruleOf) }));
    return { revision: this.st.revision, interfaces };
  }

  /** What the metrics face reads at scrape time. */
  sources(): FilterSource[] {
    return [...this.handles.values()].map((h) => ({ ifname: h.ifname, counters: (opts) => h.counters(opts), ctTable: () => h.ctTable?.() ?? null, stateful: () => h.stateful }));
  }


  private checkRevision(caller: Caller): void {
    checkIfMatch(caller.ifMatch, this.st.revision, 'change the filter', 'GET /v1/filter again and redo the change on what it returns');
  }

  /**
   * Canonical rules with stable ids: a rule keeps its id while its text stays in the policy, a new
   * one takes the next id. Parsing is the one rule grammar; the same rule twice is one rule. The
   * parsed rules come back too (`rules`, in the spec's order), so the kernel's policy needs no
   * second parse.
   */
  withIds(want: { interfaces: string[]; rules: Array<{ action: Action; match: string }>; default: Action; audit: boolean }, prev: FilterSpec, nextId: number): { spec: FilterSpec; nextId: number; rules: Rule[] } {
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
    const before = this.st.spec;
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
    const prev = this.st;
    this.st = { revision: prev.revision + 1, nextId, configHash: prev.configHash, spec };
    this.on = this.attachedInterfaces();
    this.store.audit(caller, op, what, this.st.revision);
    this.watchInterfaces();
    return this.store.save(op, { filter: this.st, filterOn: this.on });
  }

  /**
   * Makes the kernel match `spec`. Interfaces without a filter come first, so a change naming an
   * interface that cannot take one (gone, a typo) fails before any running filter is touched.
   * Wildcards in spec.interfaces are resolved against the interfaces there now; a plain name in
   * `mayBeGone` that is not there is passed over (see resolve()).
   * `touched` collects the interfaces whose policy changed; `only`, when given, limits the
   * re-applying of running filters to those interfaces.
   */
  private reconcile(spec: FilterSpec, policy: Policy, touched: Set<string> = new Set(), only?: Set<string>, mayBeGone = new Set(this.st.spec.interfaces)): void {
    const { names, resolved } = this.resolve(spec.interfaces, mayBeGone);
    const named = new Set(spec.interfaces);
    for (const i of names) {
      if (this.handles.has(i)) continue;
      // a name the policy spells out must take the filter; one only a wildcard matched may fail
      // (another XDP program there) without holding up the rest
      if (named.has(i)) this.attachFilter(i, spec, policy, touched);
      else this.tryAttach(i, spec, policy, touched, resolved);
    }
    const stateful = statefulOf(spec);
    for (const i of names) {
      if (touched.has(i) || (only && !only.has(i)) || !this.handles.has(i)) continue;
      touched.add(i);
      applyWithState(this.handles.get(i)!, policy, stateful);
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
      applyWithState(a, policy, statefulOf(spec));
      // a pinned table keeps its size (its flows are the connections that must not drop)
      const have = a.ctMax?.() ?? null;
      const note = spec.ctMax !== undefined && have !== null ? ctMaxNote(i, spec.ctMax, have) : null;
      if (note) this.log.warn({ interface: i, ctMax: spec.ctMax, pinnedCtMax: have }, `filter: ${note}`);
    } else {
      this.handles.set(i, this.filters.create(i, policy, { hook: spec.hook, mode: spec.mode, maxRules: spec.maxRules, ctMax: spec.ctMax, stateful: statefulOf(spec) }));
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
    if (this.watch || this.closed || !links || !this.st.spec.interfaces.length) return;
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
    const spec = this.st.spec;
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
      this.store.audit(who, 'interface gone', `filter on ${i} dropped`, this.st.revision);
      changed = true;
    }
    for (const i of [...this.failedOn.keys()]) if (!exists.has(i)) this.failedOn.delete(i);
    let policy: Policy | null = null;
    for (const i of want.names) {
      // checked before the parse: a 100,000-rule policy is parsed only when an interface needs it
      if (this.handles.has(i) || !this.retryDue(i)) continue;
      policy ??= toPolicy(spec);
      if (!this.tryAttach(i, spec, policy, new Set(), want.resolved)) continue;
      this.store.audit(who, 'interface added', `filter on ${i} (matches ${matchedBy(want.resolved, i)})`, this.st.revision);
      changed = true;
    }
    this.resolved = want.resolved.map((r) => ({ pattern: r.pattern, names: r.names.filter((n) => this.handles.has(n)) }));
    if (!changed) return;
    this.on = this.attachedInterfaces();
    // a save the agent's close overtook is not an error: the next start reconciles filterOn anyway
    this.store.save('follow interfaces', { filterOn: this.on }).catch((e: Error) => this.closed || this.log.error({ err: e }, `save the filtered interfaces: ${e.message}`));
  }
}
