// SPDX-License-Identifier: Apache-2.0
// The kernel half of the filter: one loaded filter object per interface, its tables written from a
// compiled policy into the inactive generation and switched in with one update, its counters read
// back, and its pins. Policy logic lives in rules.ts, policy.ts and compile.ts.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { EbpfnetError, type VerifierStats } from '../errors.js';
import * as F from '../gen/filter.js';
import { BpfMap, BpfObject, BpfProgram, BpfTable, Link, ObjectSpec, hostPath, ifindex as ifindexOf, netnsCookie, objectPath, openPinnedLink, openPinnedMap, openPinnedTable, withDir, type MapFill, type XdpMode } from '../loader/index.js';
import type { Closable } from '../loader/guard.js';
import type { Codec } from '../loader/layout.js';
import { track, untrack } from '../loader/guard.js';
import { FILTER_STATS, type FilterCounters, type RuleCount } from './stats.js';
import { CT_MIN, CT_TABLE_STATS, ctTableReading, parseCtMax, type CtTableStat, type CtTableView } from './ct-table.js';
import { compilePolicy, DEFAULT_CAPACITY, PORT_ELEMS, PORT_SLOT, UNNAMED_PROTO, type CompiledPolicy, type DirTable } from './compile.js';
import type { Policy } from './policy.js';
import { filterSite, findLocal, listPins, recordKey, removePin, type FilterSite, type PinnedFilter } from './pins.js';
import { RecordWriter, readRecord, type RecordIdentity } from './record.js';
import { formatRule, parseRule } from './rules.js';

export type Hook = 'xdp' | 'tc';

/** What pin() did. */
export interface PinResult {
  /** the pin directory, as the host sees it */
  dir: string;
  /** a filter whose interface is gone held this interface's index: its pins were removed first */
  replacedGone: string | null;
}

export type { FilterCounters, RuleCount, RuleCounters } from './stats.js';

const zero = (): F.FltCount => ({ packets: 0n, bytes: 0n });

export type { MapFill } from '../loader/index.js';

interface Tables {
  flt_cfg: BpfTable<F.FltCfg>;
  flt_protos: BpfTable<F.FltProtoVal>;
  flt_pidx: BpfTable<F.FltPidx>;
  flt_pval: BpfTable<F.FltPortVal>;
  flt_dir: BpfTable<number>;
  flt_chunks: BpfMap<number, number>;
  flt_classes: BpfMap<number, F.FltClass>;
  flt_src: BpfMap<F.FltLpmKey, F.FltClass>;
  flt_dst: BpfMap<F.FltLpmKey, F.FltClass>;
  flt_rules: BpfMap<F.FltRuleKey, F.FltVerdict>;
  flt_counters: BpfMap<number, F.FltCount>;
  flt_stats: BpfMap<number, F.FltCount>;
}

const MAPS = [F.FLT_CHUNKS, F.FLT_CLASSES, F.FLT_SRC, F.FLT_DST, F.FLT_RULES, F.FLT_COUNTERS, F.FLT_STATS] as const;
const TABLES = [F.FLT_CFG, F.FLT_PROTOS, F.FLT_PIDX, F.FLT_PVAL, F.FLT_DIR] as const;

/** The tables of a loaded object, or of a pinned filter (tables pinned under their variable names). */
function openTables(map: (m: (typeof MAPS)[number]) => BpfMap<unknown, unknown>, table: (t: (typeof TABLES)[number]) => BpfTable<unknown>): Tables {
  return Object.fromEntries([...MAPS.map((m) => [m.name, map(m)]), ...TABLES.map((t) => [t.variable, table(t)])]) as unknown as Tables;
}

/**
 * DIR sizes for a rule capacity: chunks per generation (both sides) and classes per side and
 * generation. A policy that needs more falls back to the tries, so these bound memory, not rules.
 */
function dirSizes(maxRules: number): { chunks: number; classes: number } {
  return { chunks: Math.max(F.FLT_DIR_MIN_CHUNKS, maxRules / 64), classes: maxRules };
}

/** byte offsets of flt_cfg's fields */
const cfgOffset = (name: string): number => F.FltCfg.fields.find((f) => f.name === name)!.offset;
const CFG_GEN = cfgOffset('gen');
const CFG_FLAGS = cfgOffset('flags');
const CFG_DEFAULT = cfgOffset('default_action');


function addrBytes(e: { family: number; addr: bigint }): Uint8Array {
  const addr = new Uint8Array(16);
  const bytes = e.family === 4 ? 4 : 16;
  for (let i = 0; i < bytes; i++) addr[i] = Number((e.addr >> BigInt((bytes - 1 - i) * 8)) & 0xffn);
  return addr;
}

const lpmKey = (gen: number, e: { family: number; addr: bigint; prefix: number }): F.FltLpmKey => ({ prefixlen: 64 + e.prefix, gen, family: e.family, addr: addrBytes(e) });

/**
 * A map key's identity, kept per entry of each generation (Written): the key's bytes as a latin1
 * string, one flat 20- or 28-character string (fields joined as text made longer strings, JSON
 * text three times longer ropes), and back to the key for a delete.
 */
const keyText = <K>(codec: Codec<K>, k: K, scratch: Buffer): string => codec.encode(k, scratch, 0).toString('latin1', 0, scratch.length);
const keyFromText = <K>(codec: Codec<K>, s: string): K => codec.decode(Buffer.from(s, 'latin1'), 0);

/**
 * flt_pidx of one generation as the writer last wrote it: element e's four indexes at 4e..4e+3
 * of `idx` (131,072 elements, 2 MB), and the elements that are not all zero.
 */
interface PortShadow {
  idx: Uint32Array;
  used: number[];
}

/** What one generation holds, so the next write to it deletes exactly what is stale. */
interface Written {
  /** flt_pidx of the generation: element e's four indexes at 4e..4e+3 (131,072 elements, 2 MB;
   * null after an adoption: unknown, so every element is rewritten) */
  portIdx: PortShadow | null;
  /** flt_protos indexes (without the generation) holding a named protocol; null: unknown, so
   * all 512 are written */
  protos: number[] | null;
  /** keys of the hashed tables, each as its bytes in a latin1 string: 100,000 decisions held as
   * key objects in a Map took ~17 MB per generation, as strings in a Set ~6 MB */
  src: Set<string>;
  dst: Set<string>;
  rules: Set<string>;
}

/** A loaded filter for one interface: tables, counters, and (once attached) its link. */
export class FilterDatapath implements Closable {
  readonly ifname: string;
  private obj: BpfObject | null;
  private readonly t: Tables;
  private link: Link | null = null;
  /** connection tracking (stateful): the flows and their switch, and the tc egress link that
   * records what the host sends; null when stateless (or adopted from pins without them) */
  private ct: { cfg: BpfTable<F.FltCtCfg>; flows: BpfMap<F.FltCtKey, F.FltCtVal>; stats: BpfMap<number, bigint> | null; egress: Link | null } | null = null;
  /** connections are tracked: replies to what the host opened pass (see bpf/filter.bpf.c) */
  stateful = false;
  private written: [Written | null, Written | null] = [null, null];
  /** what each first-level DIR half (generation * 2 + side) holds, as compiled: known zero, a table,
   * or unknown (after adopt); an unchanged half is not rewritten */
  private dirL1: Array<Uint32Array | 'zero' | null> = [null, null, null, null];
  /** a port shadow no generation uses any more, reused by the next write */
  private spare: PortShadow | null = null;
  /**
   * The policy in force, compactly: each rule's text (`deny udp/53`) and counter slot, in policy
   * order. Slots are kept across policy changes so unchanged rules keep counting. Rule objects
   * are made again when asked for (currentPolicy): 100,000 of them would stay in memory otherwise.
   */
  private rules: { texts: string[]; slots: Int32Array; default: Policy['default']; audit: boolean } | null = null;
  /** counter slots from this one up have never been used since the object was loaded (all zero
   * there: no reset needed); null for an adopted filter, whose history is unknown */
  private zeroFrom: number | null = null;
  /** the record in /run naming each counter slot's rule (written while the filter is pinned) */
  private record: RecordWriter | null = null;
  /** its pin directory (pinned by this object, or adopted from there): then its record is kept up to date */
  private pinnedAt: string | null = null;
  hook: Hook = 'xdp';
  mode: XdpMode | 'tc' = 'native';

  private constructor(ifname: string, obj: BpfObject | null, t: Tables) {
    this.ifname = ifname;
    this.obj = obj;
    this.t = t;
    track(this);
  }

  /**
   * Loads a fresh filter object (nothing attached yet). `maxRules` sizes the per-rule counters
   * (per-CPU memory: 16 bytes x CPUs x slots), so it is chosen at load, not fixed in maps/.
   * `ctMax` sizes the connection table (flt_ct, preallocated: 120 bytes a flow), default
   * CT_DEFAULT_MAX; a loaded table keeps its size (a pinned one too, whatever asks later).
   */
  static load(ifname: string, opts: { maxRules?: number; ctMax?: number } = {}): FilterDatapath {
    const spec = ObjectSpec.open(objectPath(F.LAYOUT.object));
    const maxRules = opts.maxRules ?? F.FLT_COUNTERS.maxEntries;
    if (maxRules !== F.FLT_COUNTERS.maxEntries) spec.setMaxEntries(F.FLT_COUNTERS.name, maxRules);
    if (opts.ctMax !== undefined && parseCtMax(opts.ctMax, 'ctMax') !== F.FLT_CT.maxEntries) spec.setMaxEntries(F.FLT_CT.name, opts.ctMax);
    const dir = dirSizes(maxRules);
    if (dir.chunks * 2 * 256 !== F.FLT_CHUNKS.maxEntries) spec.setMaxEntries(F.FLT_CHUNKS.name, dir.chunks * 2 * 256);
    if (dir.classes * 4 !== F.FLT_CLASSES.maxEntries) spec.setMaxEntries(F.FLT_CLASSES.name, dir.classes * 4);
    const obj = spec.load();
    const t = openTables(
      (m) => obj.map(m as never),
      (x) => obj.table(x as never),
    );
    const d = new FilterDatapath(ifname, obj, t);
    d.zeroFrom = 0;
    // A fresh object's tables are empty: nothing to scan or rewrite.
    const empty = (): Written => ({ portIdx: { idx: new Uint32Array(PORT_ELEMS * 4), used: [] }, protos: null, src: new Set(), dst: new Set(), rules: new Set() });
    d.written = [empty(), empty()];
    return d;
  }

  /** Counter slots for a policy of n rules: room to grow, at least the default. */
  static capacityFor(n: number): number {
    let c = F.FLT_COUNTERS.maxEntries;
    while (c < n * 2) c *= 2;
    return c;
  }

  /** Opens the filter pinned on an interface of this network namespace (policy changes, explain). */
  static adopt(ifname: string): FilterDatapath {
    const op = `open the filter on ${ifname}`;
    const fs = filterSite(op);
    const p = fs && findLocal(fs, ifname);
    if (!fs || !p || p.gone) throw new EbpfnetError('EBPFNET_NOT_FOUND', op, p?.gone ? 'its interface is gone' : 'no pinned filter there in this network namespace', { hint: 'start one with: ebpfnet filter --pin ...' });
    return FilterDatapath.adoptPin(fs, p);
  }

  /** Opens a pinned filter found by listPins (of any network namespace: its maps are the machine's). */
  static adoptPin(fs: FilterSite, p: PinnedFilter): FilterDatapath {
    const dir = p.dir;
    const t = openTables(
      (m) => openPinnedMap(join(dir, m.name), m as never),
      (x) => openPinnedTable(join(dir, x.variable), x as never),
    );
    const d = new FilterDatapath(p.ifname, null, t);
    d.pinnedAt = dir;
    if (p.key) d.record = new RecordWriter(p.key, fs.records);
    const state = readState(p.key ?? p.ifname, fs.records);
    if (state) {
      const texts = state.rules.map((r) => formatRule(parseRule(r.action, r.match)));
      d.rules = { texts, slots: Int32Array.from(texts, (t) => state.ids[t]), default: state.default, audit: state.audit };
      d.hook = state.hook;
      d.mode = state.mode;
      d.stateful = state.stateful === true;
    }
    // the flows outlive every command that changes the policy: they are the pinned maps'
    if (d.stateful && existsSync(join(dir, F.FLT_CT.name))) {
      const stats = join(dir, F.FLT_CT_STATS.name);
      d.ct = { cfg: openPinnedTable(join(dir, F.FLT_CT_CFG.variable), F.FLT_CT_CFG), flows: openPinnedMap(join(dir, F.FLT_CT.name), F.FLT_CT), stats: existsSync(stats) ? openPinnedMap(stats, F.FLT_CT_STATS) : null, egress: null };
    }
    return d;
  }

  /** The loaded program of a hook, for test runs (explain, tests, benchmarks); null when adopted. */
  program(hook: Hook): BpfProgram {
    if (!this.obj) throw new EbpfnetError('EBPFNET_USAGE', `run the filter of ${this.ifname}`, 'an adopted filter has no program of its own here');
    return this.obj.program(hook === 'tc' ? F.PROG_FILTER_TC : F.PROG_FILTER_XDP);
  }

  /**
   * Connection tracking of a loaded object: its switch, clock and timeouts (flt_ct_cfg), the flows
   * (flt_ct) and the tc egress program that records what the host sends. For tests and benchmarks
   * until the filter's own wiring (pins, attach) takes them up; the object owns them (closed with it).
   */
  conntrack(): { cfg: BpfTable<F.FltCtCfg>; flows: BpfMap<F.FltCtKey, F.FltCtVal>; stats: BpfMap<number, bigint>; egress: BpfProgram; table: () => CtTableView } {
    if (!this.obj) throw new EbpfnetError('EBPFNET_USAGE', `track connections of the filter of ${this.ifname}`, 'an adopted filter has no program of its own here');
    const flows = this.obj.map(F.FLT_CT);
    const stats = this.obj.map(F.FLT_CT_STATS);
    return { cfg: this.obj.table(F.FLT_CT_CFG), flows, stats, egress: this.obj.program(F.PROG_FILTER_EGRESS), table: () => tableOf(flows, stats) };
  }

  /** The tracker's switch, test clock and timeouts (flt_ct_cfg); null when the filter is stateless. */
  ctSettings(): F.FltCtCfg | null {
    return this.ct?.cfg.get(0) ?? null;
  }

  /** The connection table's size (flt_ct's max entries); null when the filter is stateless. */
  get ctMax(): number | null {
    return this.ct ? this.ct.flows.capacity : null;
  }

  /**
   * The connection table's size, fill and events, evictions derived (ct-table.ts); null when the
   * filter is stateless. Counting the entries walks the table in batches (~90 ms for 262,144).
   */
  ctTable(): CtTableView | null {
    return this.ct && this.stateful ? tableOf(this.ct.flows, this.ct.stats) : null;
  }

  /**
   * The tracked flow a packet belongs to, looked up as the programs do (the flow in the host's
   * view: local, remote); null when stateless or no such flow is in the table.
   */
  flow(key: F.FltCtKey): F.FltCtVal | null {
    return this.ct?.flows.lookup(key) ?? null;
  }

  /** The tracked flows and the tracker's settings; null when the filter is stateless. */
  flows(): { entries: Array<[F.FltCtKey, F.FltCtVal]>; cfg: F.FltCtCfg } | null {
    if (!this.ct || !this.stateful) return null;
    return { entries: this.ct.flows.entries(), cfg: this.ct.cfg.get(0) };
  }

  /** What the verifier reported when this filter was loaded. */
  verifierStats(): ReadonlyMap<string, VerifierStats | null> {
    return this.obj?.verifierStats ?? new Map();
  }

  get attached(): Link | null {
    return this.link;
  }

  get currentPolicy(): Policy | null {
    const r = this.rules;
    return r && { rules: r.texts.map((t) => parseRule(t.startsWith('deny ') ? 'deny' : 'allow', t.slice(t.indexOf(' ') + 1))), default: r.default, audit: r.audit };
  }

  /** Stable counter slots: a rule keeps its slot while it exists; new rules take free slots. */
  private assignIds(texts: string[]): { ids: number[]; fresh: number[] } {
    const present = new Set(texts);
    const keep = new Map<string, number>();
    this.rules?.texts.forEach((t, i) => present.has(t) && keep.set(t, this.rules!.slots[i]));
    const used = new Set(keep.values());
    const fresh: number[] = [];
    let next = 0;
    const ids = texts.map((t) => {
      const old = keep.get(t);
      if (old !== undefined) return old;
      while (used.has(next)) next++;
      used.add(next);
      keep.set(t, next);
      fresh.push(next);
      return next;
    });
    return { ids, fresh };
  }

  /**
   * Makes `policy` the one in force: compile, write the inactive generation, reset the counters of
   * newly assigned slots, then flip the active generation in one update. On any error before the
   * flip the old policy stays in force, untouched.
   */
  apply(policy: Policy): CompiledPolicy {
    const texts = policy.rules.map(formatRule);
    const { ids, fresh } = this.assignIds(texts);
    const compiled = compilePolicy(policy, ids, { ...DEFAULT_CAPACITY, rules: this.t.flt_counters.capacity, ...this.dirCapacity() });
    const g = (this.t.flt_cfg.get(0).gen & 1) ^ 1;
    this.writeGeneration(g, compiled);
    for (const id of fresh) if (this.zeroFrom === null || id < this.zeroFrom) this.t.flt_counters.update(id, zero());
    if (this.zeroFrom !== null) this.zeroFrom = Math.max(this.zeroFrom, ids.reduce((a, b) => Math.max(a, b + 1), 0));
    // The inactive generation's flags and default first: the active one's bytes do not change.
    this.t.flt_cfg.storeU32(CFG_FLAGS + 4 * g, compiled.flags);
    this.t.flt_cfg.storeU32(CFG_DEFAULT + 4 * g, compiled.defaultAction);
    // The switch: one aligned store, after every write above; the program reads gen first.
    this.t.flt_cfg.storeU32(CFG_GEN, g);
    this.rules = { texts, slots: Int32Array.from(ids), default: policy.default, audit: !!policy.audit };
    if (this.pinnedAt) this.writeRecord();
    return compiled;
  }

  /** DIR capacity of the loaded tables (an adopted filter was sized by whoever loaded it). */
  private dirCapacity(): { chunks: number; classes: number } {
    return { chunks: this.t.flt_chunks.capacity / 2 / 256, classes: this.t.flt_classes.capacity / 4 };
  }

  /** The DIR table of generation g: first level in place, chunks and classes as kernel indexes. */
  private writeDir(g: number, dir: DirTable | null, c: CompiledPolicy): void {
    const { chunks: perGen, classes } = this.dirCapacity();
    const CHUNK = F.FLT_DIR_CHUNK;
    // class n of side s -> its flt_classes index; chunk n -> its place in this generation's half
    const place = (e: number, side: number): number => (e & CHUNK ? (CHUNK | (g * perGen + (e & ~CHUNK))) >>> 0 : e ? (g * 2 + side) * classes + e : 0);
    const mem = this.t.flt_dir.mem;
    for (const side of [0, 1]) {
      // The first level is 256 KiB per side: an empty side that is known to be zero is left alone,
      // so policies without IPv4 prefixes on a side pay nothing for it.
      const half = g * 2 + side;
      const l1 = dir?.l1[side];
      const empty = !l1 || !dir!.used[side];
      if (empty ? this.dirL1[half] === 'zero' : this.dirL1[half] instanceof Uint32Array && Buffer.from(l1!.buffer).equals(Buffer.from(this.dirL1[half].buffer))) continue;
      const out = new Uint32Array(mem.buffer, mem.byteOffset + half * 65536 * 4, 65536);
      if (empty) {
        out.fill(0);
      } else {
        const chunkBase = g * perGen, classBase = half * classes;
        for (let i = 0; i < 65536; i++) {
          const e = l1[i];
          out[i] = e & CHUNK ? (CHUNK | (chunkBase + (e & ~CHUNK))) >>> 0 : e ? classBase + e : 0;
        }
      }
      this.dirL1[half] = empty ? 'zero' : l1!;
    }
    if (!dir) return;
    const entries: Array<[number, number]> = [];
    dir.chunks.forEach((chunk, n) => {
      const side = dir.chunkSide[n];
      chunk.forEach((e, i) => entries.push([(g * perGen + n) * 256 + i, place(e, side)]));
    });
    this.t.flt_chunks.updateBatch(entries);
    const cls: Array<[number, F.FltClass]> = [];
    for (const [side, list] of [c.src, c.dst].entries()) for (const e of list) if (e.family === 4) cls.push([(g * 2 + side) * classes + e.value.cls, e.value]);
    this.t.flt_classes.updateBatch(cls);
  }

  private scanGeneration(g: number): Written {
    // Unknown content (an adopted filter): port indexes count as all-set so every element is
    // rewritten; hashed tables are read back.
    const w: Written = { portIdx: null, protos: null, src: new Set(), dst: new Set(), rules: new Set() };
    for (const name of ['flt_src', 'flt_dst', 'flt_rules'] as const) {
      const m = this.t[name] as BpfMap<{ gen: number }, unknown>;
      const scratch = Buffer.alloc(m.layout.key!.size);
      const set = w[name === 'flt_src' ? 'src' : name === 'flt_dst' ? 'dst' : 'rules'];
      for (const k of m.keys()) if (k.gen === g) set.add(keyText(m.layout.key!, k, scratch));
    }
    return w;
  }

  private writeGeneration(g: number, c: CompiledPolicy): void {
    const old = this.written[g] ?? this.scanGeneration(g);
    // flt_pidx of this generation as the policy wants it, in the buffer the previous write replaced
    // (cleared where it was used), or a new one
    const shadow = this.spare ?? { idx: new Uint32Array(PORT_ELEMS * 4), used: [] };
    this.spare = null;
    for (const e of shadow.used) shadow.idx.fill(0, e * 4, e * 4 + 4);
    shadow.used = [];
    const idx = shadow.idx;
    const P = c.ports;
    for (let j = 0; j < P.length; j++) {
      const e = ((P.family[j] === 6 ? 1 : 0) * F.FLT_PORT_SLOTS + PORT_SLOT[P.proto[j]]) * 16384 + (P.port[j] >> 2);
      const o = e * 4 + (P.port[j] & 3);
      if (!(idx[e * 4] | idx[e * 4 + 1] | idx[e * 4 + 2] | idx[e * 4 + 3])) shadow.used.push(e);
      idx[o] = P.value[j];
    }
    const now: Written = { portIdx: shadow, protos: c.protos.map(([i]) => i), src: new Set(), dst: new Set(), rules: new Set() };
    // IPv4 prefixes go to the tries only when the DIR table does not hold them
    const inTrie = (e: { family: number }): boolean => e.family === 6 || !c.dir;
    const src = c.src.filter(inTrie).map((e): [F.FltLpmKey, F.FltClass] => [lpmKey(g, e), e.value]);
    const dst = c.dst.filter(inTrie).map((e): [F.FltLpmKey, F.FltClass] => [lpmKey(g, e), e.value]);
    // the compiled decisions are encoded already: a copy of the keys with this generation in each,
    // and each key's text taken from its bytes
    const D = c.decisions;
    const KS = F.FltRuleKey.size;
    const rkeys = Buffer.from(D.keys);
    const rvals = D.values;
    for (let i = 0; i < D.length; i++) {
      rkeys.writeUInt32LE(g, i * KS);
      now.rules.add(rkeys.toString('latin1', i * KS, (i + 1) * KS));
    }
    const lpmScratch = Buffer.alloc(F.FltLpmKey.size);
    for (const [k] of src) now.src.add(keyText(F.FltLpmKey, k, lpmScratch));
    for (const [k] of dst) now.dst.add(keyText(F.FltLpmKey, k, lpmScratch));
    // Stale entries first, so the new ones always fit.
    const stale = <K>(codec: Codec<K>, o: Set<string>, n: Set<string>): K[] => {
      const out: K[] = [];
      for (const s of o) if (!n.has(s)) out.push(keyFromText(codec, s));
      return out;
    };
    this.t.flt_src.deleteBatch(stale(F.FltLpmKey, old.src, now.src));
    this.t.flt_dst.deleteBatch(stale(F.FltLpmKey, old.dst, now.dst));
    this.t.flt_rules.deleteBatch(stale(F.FltRuleKey, old.rules, now.rules));
    // The tables are written in place (mapped memory). Protocols named before and not now go back
    // to the unnamed entry (all of them when the table's content is unknown).
    const named = new Set(now.protos);
    for (const i of old.protos ?? Array.from({ length: 512 }, (_, k) => k)) if (!named.has(i)) this.t.flt_protos.set(g * 512 + i, UNNAMED_PROTO);
    for (const [i, v] of c.protos) this.t.flt_protos.set(g * 512 + i, v);
    // Values before the indexes that point at them.
    c.portVals.forEach((v, i) => this.t.flt_pval.set(g * F.FLT_PORT_VALS + i + 1, v));
    // Only elements that held or now hold an index can differ (all of them after an adoption).
    const b = old.portIdx?.idx;
    const visit = (e: number): void => {
      const o = e * 4;
      if (!b || idx[o] !== b[o] || idx[o + 1] !== b[o + 1] || idx[o + 2] !== b[o + 2] || idx[o + 3] !== b[o + 3]) this.t.flt_pidx.set(g * PORT_ELEMS + e, { idx: [idx[o], idx[o + 1], idx[o + 2], idx[o + 3]] });
    };
    if (old.portIdx) for (const e of new Set([...old.portIdx.used, ...shadow.used])) visit(e);
    else for (let e = 0; e < PORT_ELEMS; e++) visit(e);
    this.writeDir(g, c.dir, c);
    this.t.flt_src.updateBatch(src);
    this.t.flt_dst.updateBatch(dst);
    this.t.flt_rules.updateBatchEncoded(rkeys, rvals, D.length);
    this.written[g] = now;
    if (old.portIdx) this.spare = old.portIdx;
  }

  attach(opts: { hook?: Hook; mode?: XdpMode | 'auto'; stateful?: boolean } = {}): Link {
    if (!this.obj) throw new EbpfnetError('EBPFNET_USAGE', `attach the filter to ${this.ifname}`, 'an adopted filter is already attached');
    // state first: the tc egress program records what the host sends from before the first reply
    // can reach the ingress program (nothing is dropped meanwhile: no ingress program yet)
    if (opts.stateful) this.trackConnections();
    try {
      return this.attachIngress(opts);
    } catch (e) {
      this.ct?.egress?.close();
      if (this.ct) this.ct.egress = null;
      throw e;
    }
  }

  /**
   * Turns connection tracking on or off in place (the agent's filter.stateful), the policy
   * untouched. On: filter_egress is attached to tc egress (an adopted filter's loaded alone, on the
   * pinned flt_ct and flt_ct_cfg, so the ingress program and the recorder share one table) and
   * pinned beside the filter, then the switch is set. Off: the switch first (replies stop passing
   * as established), then egress is detached and the flows are forgotten (switched on again, a
   * stale entry must not pass). A failure leaves the filter as it was.
   */
  setStateful(on: boolean): void {
    if (on === this.stateful) return;
    if (on) this.startTracking();
    else this.stopTracking();
    if (this.pinnedAt) this.writeRecord();
  }

  private startTracking(): void {
    const op = `track connections on ${this.ifname}`;
    const dir = this.pinnedAt;
    let ct = this.ct;
    let opened = false;
    if (!ct && this.obj) {
      const own = this.conntrack();
      ct = { cfg: own.cfg, flows: own.flows, stats: own.stats, egress: null };
    } else if (!ct) {
      if (!dir || !existsSync(join(dir, F.FLT_CT.name)) || !existsSync(join(dir, F.FLT_CT_CFG.variable))) {
        throw new EbpfnetError('EBPFNET_NOT_SUPPORTED', op, 'this filter was pinned without connection-tracking maps (by an older ebpfnet)', { hint: `load it again: ebpfnet unload --iface ${this.ifname}, then start it (the agent: agent --cleanup, then start the agent)` });
      }
      const flows = openPinnedMap(join(dir, F.FLT_CT.name), F.FLT_CT);
      try {
        const stats = join(dir, F.FLT_CT_STATS.name);
        ct = { cfg: openPinnedTable(join(dir, F.FLT_CT_CFG.variable), F.FLT_CT_CFG), flows, stats: existsSync(stats) ? openPinnedMap(stats, F.FLT_CT_STATS) : null, egress: null };
      } catch (e) {
        flows.close();
        throw e;
      }
      opened = true;
    }
    const c = ct!;
    if (c.flows.capacity <= CT_MIN) {
      if (opened) {
        c.flows.close();
        c.cfg.close();
        c.stats?.close();
      }
      // a filter started stateless from the CLI got the smallest table: tracking in it would evict all the time
      throw new EbpfnetError('EBPFNET_NOT_SUPPORTED', op, `its connection table holds only ${c.flows.capacity} flows (the filter was started stateless)`, { hint: `load it again stateful: ebpfnet unload --iface ${this.ifname}, then start it with --default deny (or from the agent)` });
    }
    let link: Link | null = null;
    try {
      link = this.obj ? this.obj.program(F.PROG_FILTER_EGRESS).attachTcx(this.ifname, 'egress') : attachEgressAlone(this.ifname, c);
      if (dir) link.pin(join(dir, 'egress'));
      c.cfg.set(0, { ...c.cfg.get(0), stateful: 1 });
    } catch (e) {
      // an attached egress program goes again (its pin with it); the switch was not set
      try {
        link?.detach();
      } finally {
        if (opened) {
          c.flows.close();
          c.cfg.close();
          c.stats?.close();
        }
      }
      throw e;
    }
    c.egress = link;
    this.ct = c;
    this.stateful = true;
  }

  private stopTracking(): void {
    const dir = this.pinnedAt;
    const ct = this.ct;
    if (!ct) {
      // stateful by the record, but its maps are not there to switch: nothing runs to stop
      this.stateful = false;
      return;
    }
    ct.cfg.set(0, { ...ct.cfg.get(0), stateful: 0 });
    try {
      if (ct.egress) ct.egress.detach();
      else if (dir && existsSync(join(dir, 'egress'))) openPinnedLink(join(dir, 'egress'), `connection tracking on ${this.ifname}`).detach();
    } catch (e) {
      ct.cfg.set(0, { ...ct.cfg.get(0), stateful: 1 });
      throw e;
    }
    ct.egress = null;
    ct.flows.clear();
    // the table's numbers start again with it: evictions are derived from them (inserts - expiries -
    // resets - entries), which holds only while no one but the programs removes flows
    for (const st of CT_TABLE_STATS) ct.stats?.update(st.slot, 0n);
    this.stateful = false;
  }

  /** Turns state on and attaches filter_egress to tc egress. */
  private trackConnections(): void {
    const { cfg, flows, stats, egress } = this.conntrack();
    cfg.set(0, { ...cfg.get(0), stateful: 1 });
    this.ct = { cfg, flows, stats, egress: egress.attachTcx(this.ifname, 'egress') };
    this.stateful = true;
  }

  private attachIngress(opts: { hook?: Hook; mode?: XdpMode | 'auto' }): Link {
    const obj = this.obj!;
    this.hook = opts.hook ?? 'xdp';
    if (this.hook === 'tc') {
      const l = obj.program(F.PROG_FILTER_TC).attachTcx(this.ifname);
      this.mode = 'tc';
      this.link = l;
      return l;
    }
    const l = obj.program(F.PROG_FILTER_XDP).attachXdp(this.ifname, { mode: opts.mode ?? 'auto' });
    this.mode = l.mode;
    this.link = l;
    return l;
  }

  /**
   * Entries against the maximum per map. Hash and LPM maps: the entries of both generations, known
   * from the writes (counted once by walking the keys after an adoption). flt_counters: the rule
   * slots in use. The other arrays always hold all their elements, so entries = max entries.
   */
  mapFill(): MapFill[] {
    const gens = [0, 1].map((g) => (this.written[g] ??= this.scanGeneration(g)));
    const counted: Partial<Record<string, number>> = {
      [F.FLT_SRC.name]: gens[0].src.size + gens[1].src.size,
      [F.FLT_DST.name]: gens[0].dst.size + gens[1].dst.size,
      [F.FLT_RULES.name]: gens[0].rules.size + gens[1].rules.size,
      [F.FLT_COUNTERS.name]: this.rules?.texts.length ?? 0,
    };
    return MAPS.map((m) => ({ map: m.name, entries: counted[m.name] ?? this.t[m.name].capacity, maxEntries: this.t[m.name].capacity }));
  }

  /**
   * The counters now. `countedOnlyAbove`: in a policy of more rules than that, only the rules that
   * have counted a packet are listed (a scrape of a 100,000-rule blocklist that mostly never matches
   * made 100,000 rows to throw away).
   */
  counters(opts: { countedOnlyAbove?: number } = {}): FilterCounters {
    const stat = (i: number): F.FltCount => this.t.flt_stats.lookup(i) ?? zero();
    const texts = this.rules?.texts ?? [];
    const ids = this.rules?.slots ?? new Int32Array(0);
    const counted = texts.length > (opts.countedOnlyAbove ?? Infinity);
    // One batch read of the used slots beats a per-CPU lookup per rule once policies are large.
    const sums = texts.length > 64 ? this.counterSums(ids.reduce((a, b) => Math.max(a, b), 0)) : null;
    const rules: RuleCount[] = [];
    texts.forEach((rule, i) => {
      const id = ids[i];
      const c = sums ? { packets: sums.packets[id], bytes: sums.bytes[id] } : (this.t.flt_counters.lookup(id) ?? zero());
      if (!counted || c.packets > 0n) rules.push({ rule, action: rule.startsWith('deny ') ? 'deny' : 'allow', id, packets: c.packets, bytes: c.bytes });
    });
    const out = { rules, total: texts.length } as FilterCounters;
    for (const s of FILTER_STATS) out[s.name] = stat(s.slot);
    return out;
  }

  /**
   * Counter slots 0..top summed over CPUs, read in batches through one reused buffer into two
   * typed arrays (no object per slot or CPU); slot by slot when the kernel has no batch lookup.
   */
  private counterSums(top: number): { packets: BigUint64Array; bytes: BigUint64Array } {
    const m = this.t.flt_counters;
    const packets = new BigUint64Array(top + 1);
    const bytes = new BigUint64Array(top + 1);
    const perEntry = m.ncpus * 2; // u64s per slot: a {packets, bytes} copy per CPU
    const batched = m.scanBatch((keys, vals, n) => {
      const u64 = new BigUint64Array(vals.buffer, vals.byteOffset, n * perEntry);
      for (let i = 0; i < n; i++) {
        const slot = keys.readUInt32LE(i * 4);
        if (slot > top) return false;
        let p = 0n;
        let b = 0n;
        for (let c = 0; c < m.ncpus; c++) {
          p += u64[i * perEntry + c * 2];
          b += u64[i * perEntry + c * 2 + 1];
        }
        packets[slot] = p;
        bytes[slot] = b;
      }
      return true;
    }, 4096, top + 1);
    if (!batched) {
      for (let slot = 0; slot <= top; slot++) {
        const c = m.lookup(slot) ?? zero();
        packets[slot] = c.packets;
        bytes[slot] = c.bytes;
      }
    }
    return { packets, bytes };
  }

  /** The record in /run: rule texts, their counter slots, the hook, whose filter it is (see record.ts). */
  private writeRecord(): void {
    const p = this.rules;
    if (!p || !this.record) return;
    this.record.write(recordText({ ifname: this.ifname, netnsCookie: netnsCookie()?.toString(), default: p.default, audit: p.audit, hook: this.hook, mode: this.mode, stateful: this.stateful }, p.texts, p.slots));
  }

  /** The pin directory, as this process reaches it; null when not pinned. */
  get pinDir(): string | null {
    return this.pinnedAt;
  }

  /**
   * Pins the maps and the link so the filter outlives this process: in the host's bpffs, under this
   * network namespace and the interface's index. Refuses (PrivateMountsError) where a pin would not
   * outlive the process (a mount namespace of its own, as under ip netns exec).
   */
  pin(): PinResult {
    const op = `pin the filter on ${this.ifname}`;
    const fs = filterSite(op, { create: true })!;
    const ifindex = ifindexOf(this.ifname);
    const dir = join(fs.pins, String(fs.netns), String(ifindex));
    let replacedGone: string | null = null;
    if (existsSync(dir) && readdirSync(dir).length) {
      // (of any namespace: an inode reused after its namespace is gone names another one's folder)
      const there = listPins(fs, { allNamespaces: true }).find((p) => p.dir === dir);
      // an index is reused after its interface is deleted: a filter left on the old one runs nowhere
      if (!there?.gone) throw new EbpfnetError('EBPFNET_EXISTS', op, `${hostPath(fs.site, dir)} is in use`, { hint: `remove it first: ebpfnet unload --iface ${this.ifname}` });
      removePin(fs, there);
      replacedGone = there.ifname;
    }
    // the first pin is the folder's first entry (a concurrent unload may prune the folder until then)
    const [first, ...rest] = MAPS;
    withDir(dir, () => this.t[first.name].pin(join(dir, first.name)));
    for (const m of rest) this.t[m.name].pin(join(dir, m.name));
    for (const x of TABLES) this.t[x.variable].pin(join(dir, x.variable));
    this.link?.pin(join(dir, 'link'));
    // the flows' maps of a stateless filter too: state switched on later (the agent's
    // filter.stateful) records into the table the pinned ingress program reads
    const ct = this.ct ?? (this.obj && this.conntrack());
    if (ct) {
      ct.flows.pin(join(dir, F.FLT_CT.name));
      ct.stats?.pin(join(dir, F.FLT_CT_STATS.name));
      ct.cfg.pin(join(dir, F.FLT_CT_CFG.variable));
    }
    this.ct?.egress?.pin(join(dir, 'egress'));
    this.pinnedAt = dir;
    this.record = new RecordWriter(recordKey(fs.netns, ifindex), fs.records);
    this.writeRecord();
    return { dir: hostPath(fs.site, dir), replacedGone };
  }

  /** Detaches the filter pinned on an interface of this network namespace and removes its pins. */
  static unload(ifname: string): boolean {
    const fs = filterSite(`unload the filter on ${ifname}`);
    const p = fs && findLocal(fs, ifname);
    if (!fs || !p) return false;
    removePin(fs, p);
    return true;
  }

  /** Whether a filter is pinned on this interface of this network namespace (and still attached). */
  static pinnedHere(ifname: string, op = `filter ${ifname}`): boolean {
    const fs = filterSite(op);
    const p = fs && findLocal(fs, ifname);
    return !!p && !p.gone;
  }

  close(): void {
    this.link?.close();
    this.link = null;
    this.ct?.egress?.close();
    this.ct?.flows.close();
    this.ct?.stats?.close();
    this.ct?.cfg.close();
    this.ct = null;
    for (const m of MAPS) this.t[m.name].close();
    for (const x of TABLES) this.t[x.variable].close();
    this.obj?.close();
    this.obj = null;
    this.record?.close();
    untrack(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A connection table's reading from its maps (stats null: pinned by a build that did not count). */
function tableOf(flows: BpfMap<F.FltCtKey, F.FltCtVal>, stats: BpfMap<number, bigint> | null): CtTableView {
  const read = (): Record<CtTableStat, bigint> => Object.fromEntries(CT_TABLE_STATS.map((s) => [s.name, stats?.lookup(s.slot) ?? 0n])) as Record<CtTableStat, bigint>;
  return ctTableReading(flows.capacity, read, () => flows.count());
}

/**
 * filter_egress loaded alone, on the flows and switch of a filter pinned by another process, and
 * attached to tc egress of `ifname`. The object is closed again: the link holds the program, the
 * program the two maps (the other maps the object made go with it).
 */
function attachEgressAlone(ifname: string, ct: { cfg: BpfTable<F.FltCtCfg>; flows: BpfMap<F.FltCtKey, F.FltCtVal>; stats: BpfMap<number, bigint> | null }): Link {
  const spec = ObjectSpec.open(objectPath(F.LAYOUT.object));
  try {
    spec.reuseMap(F.FLT_CT.name, ct.flows.fd).reuseMap(F.FLT_CT_CFG.name, ct.cfg.fd);
    // the table's counters too, so what this recorder inserts is counted where status reads it
    if (ct.stats) spec.reuseMap(F.FLT_CT_STATS.name, ct.stats.fd);
  } catch (e) {
    spec.close();
    throw e;
  }
  const obj = spec.load({ only: [F.PROG_FILTER_EGRESS.name] });
  try {
    return obj.program(F.PROG_FILTER_EGRESS).attachTcx(ifname, 'egress');
  } finally {
    obj.close();
  }
}

interface State extends RecordIdentity {
  /** connections tracked (absent in records of older releases: stateless) */
  stateful?: boolean;
  rules: Array<{ action: 'allow' | 'deny'; match: string }>;
  default: 'allow' | 'deny';
  audit: boolean;
  ids: Record<string, number>;
  hook: Hook;
  mode: XdpMode | 'tc';
}

/**
 * A list's JSON items a thousand at a time: a 100,000-rule record is ~8 MB of text, which as one
 * string (and its ids as one object) was the largest allocation of a policy change.
 */
function* thousands(texts: string[], one: (t: string, i: number) => string): Generator<string> {
  for (let i = 0; i < texts.length; i += 1000) yield (i ? ',' : '') + texts.slice(i, i + 1000).map((t, k) => one(t, i + k)).join(',');
}

/**
 * The record's JSON in pieces. A module-level generator: one written inline in writeRecord was a new
 * generator function per write, whose first call set up its prototype and maps (V8), a few
 * microseconds of every one-rule change.
 */
function* recordText(head: Omit<State, 'rules' | 'ids'>, texts: string[], slots: Int32Array): Generator<string> {
  yield `${JSON.stringify(head).slice(0, -1)},"rules":[`;
  yield* thousands(texts, (t) => {
    const sp = t.indexOf(' ');
    return JSON.stringify({ action: t.slice(0, sp), match: t.slice(sp + 1) });
  });
  yield '],"ids":{';
  yield* thousands(texts, (t, i) => `${JSON.stringify(t)}:${slots[i]}`);
  yield '}}\n';
}

function readState(key: string, root: string): State | null {
  const body = readRecord(key, root);
  return body === null ? null : (JSON.parse(body) as State);
}
