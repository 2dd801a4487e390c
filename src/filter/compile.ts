// SPDX-License-Identifier: Apache-2.0
// Policy -> the exact entries of the filter's tables (one generation; the writer adds the gen).
// The kernel does a bounded number of lookups per packet, so everything that depends on the number
// of rules happens here. Rules are split by the addresses they name (none, source, destination,
// both); within a group, addresses and ports are reduced to classes and every combination some rule
// matches gets its winner precomputed. Across groups the kernel compares ranks: the precedence order
// of policy.ts (most specific, then deny, then earlier) as one number. Pure: unit-testable.
import { EbpfnetError } from '../errors.js';
import { Batch } from '../loader/batch.js';
import * as F from '../gen/filter.js';
import { beats, type Policy } from './policy.js';
import { PROTO_NUMBERS, familyBits, familyMatch, ruleFamily, type Cidr, type Family, type Rule } from './rules.js';

export interface CompiledPolicy {
  flags: number;
  defaultAction: number;
  /** the protocols some rule names, by flt_protos index without the generation ((family == 6) *
   * 256 + proto); every other index holds UNNAMED_PROTO */
  protos: Array<[number, F.FltProtoVal]>;
  /** every port some rule names, with its value's index (1-based) into portVals */
  ports: PortTable;
  /** the distinct port values; identical values share an index */
  portVals: F.FltPortVal[];
  /** prefixes and their classes (the LPM tries) */
  src: AddressEntry[];
  dst: AddressEntry[];
  /** encoded as the kernel takes them, with generation 0 in every key (the writer puts in its
   * own): as pairs of key and verdict objects, 100,000 decisions were ~15 MB of a compile */
  decisions: Batch<F.FltRuleKey, F.FltVerdict>;
  /** IPv4 classes as a DIR-16-8-8 table, or null when the policy has no IPv4 address rule or does
   * not fit the capacity (then the kernel uses the tries, and flags lacks FLT_F_DIR4) */
  dir: DirTable | null;
  /** kernel rule id of each policy rule (its counter slot) */
  ids: number[];
}

export interface AddressEntry {
  family: Family;
  addr: bigint;
  prefix: number;
  /** the class and, for an address-only group, its winner for this class (else rule FLT_NO_RULE) */
  value: F.FltClass;
}

/**
 * The DIR-16-8-8 table of one generation, before placement: an entry is 0 (no prefix), a class
 * (1 up), or FLT_DIR_CHUNK | n for chunks[n]. The writer turns classes and chunk numbers into the
 * kernel's indexes.
 */
export interface DirTable {
  /** first level per side (0 source, 1 destination): 65,536 entries for the top 16 address bits */
  l1: [Uint32Array, Uint32Array];
  /** 256-entry chunks for bits 8-15 or 0-7, numbered across both sides */
  chunks: Uint32Array[];
  /** the side each chunk belongs to */
  chunkSide: number[];
  /** whether a side holds any prefix (an unused side's first level is all zero) */
  used: [boolean, boolean];
}

export interface PortKey {
  port: number;
  proto: number;
  family: Family;
}

/**
 * The port table as columns of typed arrays, one row per port: a policy of 60,000 port rules has
 * 120,000 rows (both families), which as an array and two objects each took ~15 MB.
 */
export class PortTable {
  length = 0;
  // small at first: arrays of 64 bytes or less live on V8's heap, larger ones cost a native
  // allocation each (four per compile, on every one-rule change)
  port = new Uint16Array(8);
  proto = new Uint8Array(8);
  family = new Uint8Array(8);
  /** index (1-based) into portVals */
  value = new Uint32Array(8);

  push(k: PortKey, value: number): void {
    if (this.length === this.port.length) {
      const grow = <T extends Uint8Array | Uint16Array | Uint32Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.port = grow(this.port);
      this.proto = grow(this.proto);
      this.family = grow(this.family);
      this.value = grow(this.value);
    }
    const i = this.length++;
    this.port[i] = k.port;
    this.proto[i] = k.proto;
    this.family[i] = k.family;
    this.value[i] = value;
  }

  key(i: number): PortKey {
    return { port: this.port[i], proto: this.proto[i], family: this.family[i] as Family };
  }

  /** [key, value index] of rows from..to-1 */
  *rows(from = 0, to = this.length): IterableIterator<[PortKey, number]> {
    for (let i = from; i < Math.min(to, this.length); i++) yield [this.key(i), this.value[i]];
  }
}

/** A protocol's port segments in a group that names none of its ports. */
const NO_SEGMENTS = { n: 0, lo: new Int32Array(0), hi: new Int32Array(0), cls: new Int32Array(0) } as const;

/** flt_pidx's protocol slots: ICMPv4 and ICMPv6 types share one, told apart by the family */
export const PORT_SLOT: Record<number, number> = { 6: 0, 17: 1, 132: 2, 1: 3, 58: 3 };
/** flt_pidx elements of one generation: 2 families x FLT_PORT_SLOTS x 16,384 */
export const PORT_ELEMS = 2 * F.FLT_PORT_SLOTS * 16384;

/** A rule as one family sees it (familyMatch): its IP protocol and port or ICMP type range. */
interface Ported {
  proto?: number;
  ports?: readonly [number, number];
}

export interface Capacity {
  /** distinct port values one generation may use */
  ports: number;
  prefixes: number;
  decisions: number;
  /** counter slots (rule ids must be below it) */
  rules: number;
  /** DIR chunks one generation may use (both sides) */
  chunks: number;
  /** DIR classes per side and generation (class numbers must be below it) */
  classes: number;
}

/** Each table holds two generations, so one generation gets half. */
export const DEFAULT_CAPACITY: Capacity = {
  ports: F.FLT_PORT_VALS - 1,
  prefixes: F.FLT_SRC.maxEntries / 2,
  decisions: F.FLT_RULES.maxEntries / 2,
  rules: F.FLT_COUNTERS.maxEntries,
  chunks: F.FLT_CHUNKS.maxEntries / 256 / 2,
  classes: F.FLT_CLASSES.maxEntries / 4,
};

const NONE: F.FltVerdict = { rule: F.FLT_NO_RULE, action: F.FLT_ALLOW, rank: 0 };
/** The protocol table's entry for a protocol no rule names: its packets get the default verdict. */
export const UNNAMED_PROTO: Readonly<F.FltProtoVal> = { named: 0, rule: NONE.rule, action: NONE.action, rank: NONE.rank };
/** protocols whose rules may name ports (or, for ICMP, types) */
const PORTED = new Set([PROTO_NUMBERS.tcp, PROTO_NUMBERS.udp, PROTO_NUMBERS.sctp, PROTO_NUMBERS.icmpv4, PROTO_NUMBERS.icmpv6]);

const tooBig = (what: string, n: number, max: number): EbpfnetError =>
  new EbpfnetError('EBPFNET_MAP_FULL', 'compile policy', `the policy needs ${n} ${what} entries, more than the ${max} one generation holds`, {
    hint: 'merge rules into wider ranges or prefixes, or split the policy across interfaces',
  });

interface AddressClasses {
  /** class i + 1 -> its prefix */
  prefixes: Cidr[];
  /** class i + 1 -> rules whose prefix on this side contains the class prefix */
  chains: number[][];
}

const maskTo = (addr: bigint, family: Family, len: number): bigint => {
  const shift = BigInt(familyBits(family) - len);
  return (addr >> shift) << shift;
};

/** Distinct prefixes on one side, and for each the rules of every prefix containing it. */
function addressClasses(rules: readonly Rule[], idx: number[], side: 'src' | 'dst', family: Family): AddressClasses {
  // IPv4 prefixes keyed by a number (prefix length and address), IPv6 ones by text
  const keyOf = (len: number, addr: bigint): number | string => (family === 4 ? len * 2 ** 32 + Number(addr) : `${len}/${addr}`);
  const byKey = new Map<number | string, { cidr: Cidr; rules: number[] }>();
  for (const i of idx) {
    const c = rules[i][side];
    if (!c) continue;
    const k = keyOf(c.prefix, c.addr);
    const e = byKey.get(k);
    if (e) e.rules.push(i);
    else byKey.set(k, { cidr: c, rules: [i] });
  }
  const lens = [...new Set([...byKey.values()].map((e) => e.cidr.prefix))].sort((a, b) => a - b);
  const prefixes: Cidr[] = [];
  const chains: number[][] = [];
  for (const { cidr } of byKey.values()) {
    const chain: number[] = [];
    for (const len of lens) {
      if (len > cidr.prefix) break;
      const anc = byKey.get(len === cidr.prefix ? keyOf(len, cidr.addr) : keyOf(len, maskTo(cidr.addr, family, len)));
      if (anc) chain.push(...anc.rules);
    }
    prefixes.push(cidr);
    // a copy of its own length: an array grown by push keeps room for 17, and a policy of 65,536
    // prefixes holds one chain per prefix through the whole compile (~10 MB of spare room)
    chains.push(chain.slice());
  }
  return { prefixes, chains };
}

/**
 * A group's port classes for one protocol, flat (a policy of 60,000 port rules has 60,000 classes:
 * an array or object each would be megabytes of short-lived objects).
 */
interface PortClasses {
  /** classes + 1 (class 0 is "no port rule") */
  count: number;
  /** class c's rules, ascending: list[start[c]] .. list[start[c + 1] - 1] */
  start: Int32Array;
  list: Int32Array;
  /** segments k = 0..n-1: ports lo[k]..hi[k] are in class cls[k] (ascending, disjoint) */
  seg: { n: number; lo: Int32Array; hi: Int32Array; cls: Int32Array };
}

const membersOf = (pc: PortClasses, c: number): Int32Array => pc.list.subarray(pc.start[c], pc.start[c + 1]);

/** Cuts 1-65535 into segments covered by the same set of port rules; each distinct set is a class. */
function portClasses(rules: readonly Ported[], idx: number[]): PortClasses {
  // events as numbers, sorted numerically: port * 2^21 + (1 = add, 0 = remove) * 2^20 + rule
  const ADD = 2 ** 20;
  const PORT = 2 ** 21;
  const ev = new Float64Array(idx.length * 2);
  idx.forEach((i, k) => {
    const [lo, hi] = rules[i].ports!;
    ev[2 * k] = lo * PORT + ADD + i;
    ev[2 * k + 1] = (hi + 1) * PORT + i;
  });
  ev.sort();
  const active = new Set<number>();
  /** a set of rules -> its class: one rule by its number, more by their list as text */
  const classOf = new Map<number | string, number>();
  const start: number[] = [0, 0];
  const list: number[] = [];
  const lo: number[] = [];
  const hi: number[] = [];
  const cls: number[] = [];
  for (let j = 0; j < ev.length; ) {
    const point = Math.floor(ev[j] / PORT);
    for (; j < ev.length && Math.floor(ev[j] / PORT) === point; j++) {
      const i = ev[j] % ADD;
      if (ev[j] % PORT >= ADD) active.add(i);
      else active.delete(i);
    }
    if (!active.size || j >= ev.length) continue;
    const sorted = active.size === 1 ? [...active] : [...active].sort((a, b) => a - b);
    const key = sorted.length === 1 ? sorted[0] : sorted.join(',');
    let c = classOf.get(key);
    if (c === undefined) {
      c = start.length - 1;
      classOf.set(key, c);
      for (const i of sorted) list.push(i);
      start.push(list.length);
    }
    lo.push(point);
    hi.push(Math.floor(ev[j] / PORT) - 1);
    cls.push(c);
  }
  return { count: start.length - 1, start: Int32Array.from(start), list: Int32Array.from(list), seg: { n: lo.length, lo: Int32Array.from(lo), hi: Int32Array.from(hi), cls: Int32Array.from(cls) } };
}

/** Is x in the ascending array a? */
function hasSorted(a: Int32Array, x: number): boolean {
  let lo = 0;
  let hi = a.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] === x) return true;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/**
 * IPv4 prefixes of both sides as a DIR-16-8-8 table (longest prefix match by at most three array
 * reads), or null when there is none or it needs more chunks or classes than the capacity allows.
 * Prefixes are laid down shortest first, so a longer one overwrites the part of a shorter one it
 * covers, and a new chunk starts as a copy of the entry it replaces.
 */
export function buildDir(src: readonly AddressEntry[], dst: readonly AddressEntry[], cap: Pick<Capacity, 'chunks' | 'classes'>): DirTable | null {
  const sides = [src, dst].map((es) => es.filter((e) => e.family === 4).sort((a, b) => a.prefix - b.prefix));
  if (!sides[0].length && !sides[1].length) return null;
  const chunks: Uint32Array[] = [];
  const chunkSide: number[] = [];
  const l1: [Uint32Array, Uint32Array] = [new Uint32Array(65536), new Uint32Array(65536)];
  /** the chunk table[i] points to, made from a copy of table[i] when it is a class or empty */
  const chunkAt = (table: Uint32Array, i: number, side: number): Uint32Array | null => {
    const e = table[i];
    if (e & F.FLT_DIR_CHUNK) return chunks[e & ~F.FLT_DIR_CHUNK];
    if (chunks.length >= cap.chunks) return null;
    table[i] = (F.FLT_DIR_CHUNK | chunks.length) >>> 0;
    chunkSide.push(side);
    chunks.push(new Uint32Array(256).fill(e));
    return chunks[chunks.length - 1];
  };
  for (const [side, entries] of sides.entries()) {
    for (const e of entries) {
      const cls = e.value.cls;
      if (cls >= cap.classes) return null;
      const a = Number(e.addr);
      if (e.prefix <= 16) {
        const lo = a >>> 16;
        l1[side].fill(cls, lo, lo + 2 ** (16 - e.prefix));
        continue;
      }
      const c2 = chunkAt(l1[side], a >>> 16, side);
      if (!c2) return null;
      if (e.prefix <= 24) {
        const lo = (a >>> 8) & 0xff;
        c2.fill(cls, lo, lo + 2 ** (24 - e.prefix));
        continue;
      }
      const c3 = chunkAt(c2, (a >>> 8) & 0xff, side);
      if (!c3) return null;
      const lo = a & 0xff;
      c3.fill(cls, lo, lo + 2 ** (32 - e.prefix));
    }
  }
  return { l1, chunks, chunkSide, used: [sides[0].length > 0, sides[1].length > 0] };
}

type Group = 'G' | 'S' | 'D' | 'SD';
const GROUP_ID: Record<Exclude<Group, 'G'>, number> = { S: F.FLT_G_S, D: F.FLT_G_D, SD: F.FLT_G_SD };
const NAMED_BIT: Record<Group, number> = { G: F.FLT_N_G, S: F.FLT_N_S, D: F.FLT_N_D, SD: F.FLT_N_SD };
const groupOf = (r: Rule): Group => (r.src ? (r.dst ? 'SD' : 'S') : r.dst ? 'D' : 'G');

export function compilePolicy(policy: Policy, ids: number[] = policy.rules.map((_, i) => i), cap: Capacity = DEFAULT_CAPACITY): CompiledPolicy {
  const rules = policy.rules;
  const top = ids.reduce((a, b) => Math.max(a, b), -1);
  if (top >= cap.rules) {
    throw new EbpfnetError('EBPFNET_MAP_FULL', 'compile policy', `${rules.length} rules need counter slot ${top}, but the filter was loaded with ${cap.rules}`, {
      hint: 'load it with a larger maxRules (the CLI sizes it from the policy)',
    });
  }
  let flags = policy.audit ? F.FLT_F_AUDIT : 0;
  if (rules.some((r) => r.proto === 'arp' && r.action === 'deny')) flags |= F.FLT_F_ARP_DENY;
  // a default deny also drops the non-IP frames some module could decapsulate into IP
  if (policy.default === 'deny') flags |= F.FLT_F_NON_IP_DENY;
  const out: CompiledPolicy = {
    flags,
    defaultAction: policy.default === 'deny' ? F.FLT_DENY : F.FLT_ALLOW,
    protos: [],
    ports: new PortTable(),
    portVals: [],
    src: [],
    dst: [],
    decisions: new Batch({ key: F.FltRuleKey, value: F.FltVerdict }),
    dir: null,
    ids,
  };
  // Precedence as one number the kernel can compare across groups: rank N for the rule that beats
  // all others, down to 1; 0 is "no rule".
  const order = rules.map((_, i) => i).sort((a, b) => (beats(rules, a, b) ? -1 : beats(rules, b, a) ? 1 : 0));
  const rank = new Array<number>(rules.length);
  order.forEach((i, pos) => (rank[i] = rules.length - pos));
  const verdicts: Array<F.FltVerdict | undefined> = new Array(rules.length);
  const verdict = (i: number | null): F.FltVerdict =>
    i === null ? NONE : (verdicts[i] ??= { rule: ids[i], action: rules[i].action === 'deny' ? F.FLT_DENY : F.FLT_ALLOW, rank: rank[i] });
  // The kernel's port values, deduplicated as the port table is made: identical values are one
  // index (1-based into portVals), shared by every port (and family) that has it.
  // Looked up by a numeric hash (a text key per port made most of the compile's garbage); the
  // few values whose hash another value already holds go by their text.
  const byHash = new Map<number, number>();
  const byText = new Map<string, number>();
  const portValue = (v: F.FltVerdict, pc_s: number, pc_d: number, pc_sd: number): number => {
    let h = Math.imul(v.rule ^ 0x9e3779b9, 0x85ebca6b) ^ v.rank;
    h = Math.imul(h ^ pc_s, 0xc2b2ae35) ^ Math.imul(pc_d, 0x27d4eb2f) ^ Math.imul(pc_sd, 0x165667b1);
    h = h * 2 + v.action;
    const same = (i: number | undefined): boolean => {
      const x = i === undefined ? undefined : out.portVals[i - 1];
      return !!x && x.rule === v.rule && x.action === v.action && x.rank === v.rank && x.pc_s === pc_s && x.pc_d === pc_d && x.pc_sd === pc_sd;
    };
    const hi = byHash.get(h);
    if (same(hi)) return hi!;
    const text = hi === undefined ? '' : `${v.rule}:${v.action}:${v.rank}:${pc_s}:${pc_d}:${pc_sd}`;
    if (text && byText.has(text)) return byText.get(text)!;
    out.portVals.push({ rule: v.rule, action: v.action, rank: v.rank, pc_s, pc_d, pc_sd });
    const i = out.portVals.length;
    if (text) byText.set(text, i);
    else byHash.set(h, i);
    if (i > cap.ports) throw tooBig('port value', i, cap.ports);
    return i;
  };
  const better = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : rank[a] > rank[b] ? a : b);

  /** the port classes of the previous family, per group and protocol, with the rules they came from */
  const shared = new Map<string, { rules: number[]; pc: PortClasses }>();
  const families = rules.map(ruleFamily);
  for (const family of [4, 6] as const) {
    // each rule as this family sees it (icmp is ICMPv4 here, ICMPv6 echo there); null: not at all
    const E = rules.map((r) => familyMatch(r, family));
    const R = rules.map((_, i) => i).filter((i) => E[i] !== null && (families[i] === 0 || families[i] === family));
    const protoNumber = (i: number): number | undefined => E[i]!.proto;
    const portsOf = (i: number): readonly [number, number] | undefined => E[i]!.ports;
    const byGroup: Record<Group, number[]> = { G: [], S: [], D: [], SD: [] };
    for (const i of R) byGroup[groupOf(rules[i])].push(i);
    const named: Record<Group, Set<number>> = { G: new Set(), S: new Set(), D: new Set(), SD: new Set() };
    for (const g of Object.keys(byGroup) as Group[]) for (const i of byGroup[g]) if (protoNumber(i) !== undefined) named[g].add(protoNumber(i)!);
    // Port classes per group and protocol: a group's classes come only from its own port rules.
    // Rules for both families (no address) give IPv4 and IPv6 the same classes: computed once.
    const pcs: Record<Group, Map<number, PortClasses>> = { G: new Map(), S: new Map(), D: new Map(), SD: new Map() };
    for (const g of Object.keys(byGroup) as Group[]) {
      for (const pn of named[g]) {
        if (!PORTED.has(pn)) continue;
        const pr = byGroup[g].filter((i) => portsOf(i) && protoNumber(i) === pn);
        if (!pr.length) continue;
        const prev = shared.get(`${g}/${pn}`);
        const same = prev && prev.rules.length === pr.length && prev.rules.every((x, k) => x === pr[k]);
        const pc = same ? prev.pc : portClasses(E as Ported[], pr);
        if (!same) shared.set(`${g}/${pn}`, { rules: pr, pc });
        pcs[g].set(pn, pc);
      }
    }
    /** does rule i (of group g) match protocol key pk (a number or ANY) and port class pc of g? */
    const matches = (g: Group, i: number, pk: number, pc: number): boolean => {
      const pn = protoNumber(i);
      if (pk === F.FLT_PROTO_ANY) return pn === undefined;
      if (pn !== undefined && pn !== pk) return false;
      if (portsOf(i)) {
        const classes = pc !== 0 ? pcs[g].get(pk) : undefined;
        return !!classes && pc < classes.count && hasSorted(membersOf(classes, pc), i);
      }
      return true;
    };
    const bestOf = (g: Group, list: readonly number[], pk: number, pc: number): number | null => {
      let b: number | null = null;
      for (const i of list) if (matches(g, i, pk, pc)) b = better(b, i);
      return b;
    };
    /** per group and protocol: port rule -> the port classes it is a member of, ascending */
    const classesOf: Record<Group, Map<number, Map<number, number[]>>> = { G: new Map(), S: new Map(), D: new Map(), SD: new Map() };
    const ruleClasses = (g: Group, pk: number): Map<number, number[]> => {
      let m = classesOf[g].get(pk);
      if (!m) {
        m = new Map();
        const pc = pcs[g].get(pk);
        for (let c = 1; pc && c < pc.count; c++) for (const i of membersOf(pc, c)) (m.get(i) ?? (m.set(i, []), m.get(i)!)).push(c);
        classesOf[g].set(pk, m);
      }
      return m;
    };
    /**
     * The (protocol key, port class) combinations of group g some rule of `list` can match, in
     * the order of the group's keys: port class 0, then only the classes of the list's own port
     * rules, unless a rule without ports matches every class of the protocol. Enumerating every
     * class of the group for every address class would be quadratic in a policy of many rules
     * with a port and an address each.
     */
    const keysFor = (g: Group, list: readonly number[]): Array<[number, number]> => {
      const keys: Array<[number, number]> = [];
      for (const pk of [...named[g], F.FLT_PROTO_ANY]) {
        keys.push([pk, 0]);
        const pc = pcs[g].get(pk);
        if (!pc) continue;
        if (list.some((i) => matches(g, i, pk, 0))) {
          for (let c = 1; c < pc.count; c++) keys.push([pk, c]);
          continue;
        }
        const rc = ruleClasses(g, pk);
        const cs = new Set<number>();
        for (const i of list) for (const c of rc.get(i) ?? []) cs.add(c);
        for (const c of [...cs].sort((a, b) => a - b)) keys.push([pk, c]);
      }
      return keys;
    };
    // The no-address winner for (protocol, port class): the best rule without ports, memoised per
    // protocol, against the few rules of the class. Scanning every rule per class would be
    // quadratic in a policy of many port rules.
    const noPortBest = new Map<number, number | null>();
    const bestG = (pn: number, pc: number): number | null => {
      if (!noPortBest.has(pn)) noPortBest.set(pn, bestOf('G', byGroup.G.filter((i) => !portsOf(i)), pn, 0));
      let b: number | null = noPortBest.get(pn) ?? null;
      const classes = pcs.G.get(pn);
      if (pc && classes) for (let k = classes.start[pc]; k < classes.start[pc + 1]; k++) b = better(b, classes.list[k]);
      return b;
    };
    const fb = family === 6 ? 256 : 0;
    const anyNamed = new Set([...named.G, ...named.S, ...named.D, ...named.SD]);

    // The protocol table: the protocols some rule names (the rest hold UNNAMED_PROTO).
    const masks = new Map<number, number>();
    for (const g of ['G', 'S', 'D', 'SD'] as const) for (const p of named[g]) masks.set(p, (masks.get(p) ?? 0) | NAMED_BIT[g]);
    for (const [p, mask] of [...masks].sort((a, b) => a[0] - b[0])) {
      const v = verdict(named.G.has(p) ? bestG(p, 0) : null);
      out.protos.push([fb + p, { named: mask, rule: v.rule, action: v.action, rank: v.rank }]);
    }
    // The port table: every port some group's rules cover, with the no-address winner and the
    // port's class in each address group.
    for (const pn of anyNamed) {
      if (!PORTED.has(pn)) continue;
      const groups = (['G', 'S', 'D', 'SD'] as const).map((g) => pcs[g].get(pn)?.seg ?? NO_SEGMENTS);
      if (groups.every((segs) => !segs.n)) continue;
      // Sweep the ports covered by some segment in order, one cursor per group, so the cost
      // follows the rules (one port rule: one step), never all 65,535 ports.
      // The segment starts, sorted and distinct, in a typed array: a small policy compiles on every
      // API change, and spreading them into arrays and a set was the costliest line of its compile.
      const all = new Int32Array(groups.reduce((n, segs) => n + segs.n, 0));
      let at = 0;
      for (const segs of groups) {
        all.set(segs.lo.subarray(0, segs.n), at);
        at += segs.n;
      }
      all.sort();
      const starts = all.filter((v, i) => i === 0 || v !== all[i - 1]);
      const ends = new Map<number, number>();
      for (const segs of groups) for (let k = 0; k < segs.n; k++) ends.set(segs.lo[k], Math.max(ends.get(segs.lo[k]) ?? 0, segs.hi[k]));
      const cursor = [0, 0, 0, 0];
      const classAt = (gi: number, port: number): number => {
        const segs = groups[gi];
        while (cursor[gi] < segs.n && segs.hi[cursor[gi]] < port) cursor[gi]++;
        return cursor[gi] < segs.n && segs.lo[cursor[gi]] <= port ? segs.cls[cursor[gi]] : 0;
      };
      const gBest = new Map<number, F.FltVerdict>();
      let next = 0;
      for (const lo of starts) {
        for (let port = Math.max(lo, next); port <= ends.get(lo)!; port++) {
          const cG = classAt(0, port);
          let v = gBest.get(cG);
          if (!v) gBest.set(cG, (v = verdict(named.G.has(pn) ? bestG(pn, cG) : null)));
          out.ports.push({ port, proto: pn, family }, portValue(v, classAt(1, port), classAt(2, port), classAt(3, port)));
          next = port + 1;
        }
      }
    }

    if (!byGroup.S.length && !byGroup.D.length && !byGroup.SD.length) continue;
    if (family === 4) flags |= (byGroup.S.length ? F.FLT_F_S4 : 0) | (byGroup.D.length ? F.FLT_F_D4 : 0) | (byGroup.SD.length ? F.FLT_F_SD4 : 0);
    else flags |= (byGroup.S.length ? F.FLT_F_S6 : 0) | (byGroup.D.length ? F.FLT_F_D6 : 0) | (byGroup.SD.length ? F.FLT_F_SD6 : 0);
    const withAddr = [...byGroup.S, ...byGroup.D, ...byGroup.SD];
    const S = addressClasses(rules, withAddr, 'src', family);
    const D = addressClasses(rules, withAddr, 'dst', family);
    // A group that names no protocol and no port decides by address alone: its winner rides in
    // the address's class entry and the kernel skips the decision lookup.
    const addressOnly = (g: 'S' | 'D'): boolean => byGroup[g].length > 0 && named[g].size === 0 && byGroup[g].every((i) => !portsOf(i));
    const sOnly = addressOnly('S');
    const dOnly = addressOnly('D');
    const inGroup = (g: Group) => (i: number) => groupOf(rules[i]) === g;
    const addEntries = (side: 'src' | 'dst', C: AddressClasses, g: 'S' | 'D', only: boolean): void => {
      C.prefixes.forEach((c, k) => {
        const list = C.chains[k].filter(inGroup(g));
        const v = only && list.length ? verdict(bestOf(g, list, F.FLT_PROTO_ANY, 0)) : NONE;
        out[side].push({ family, addr: c.addr, prefix: c.prefix, value: { cls: k + 1, rule: v.rule, action: v.action, rank: v.rank } });
        if (!only && list.length) emit(g, g === 'S' ? k + 1 : 0, g === 'D' ? k + 1 : 0, list);
      });
    };
    flags |= family === 4 ? (sOnly ? F.FLT_F_SA4 : 0) | (dOnly ? F.FLT_F_DA4 : 0) : (sOnly ? F.FLT_F_SA6 : 0) | (dOnly ? F.FLT_F_DA6 : 0);
    const emit = (g: Exclude<Group, 'G'>, sc: number, dc: number, list: number[]): void => {
      for (const [pk, pc] of keysFor(g, list)) {
        const b = bestOf(g, list, pk, pc);
        if (b !== null) out.decisions.push({ gen: 0, src: sc, dst: dc, pclass: pc, proto: pk, family, group: GROUP_ID[g] }, verdict(b));
      }
      if (out.decisions.length > cap.decisions) throw tooBig('decision', out.decisions.length, cap.decisions);
    };
    addEntries('src', S, 'S', sOnly);
    addEntries('dst', D, 'D', dOnly);
    if (byGroup.SD.length) {
      // Pairs of classes some SD rule covers on both sides; the rest can never match one.
      const srcOf = new Map<number, number[]>();
      const dstOf = new Map<number, number[]>();
      const classesOfRule = (C: AddressClasses, to: Map<number, number[]>): void =>
        C.chains.forEach((chain, k) => chain.filter(inGroup('SD')).forEach((i) => (to.get(i) ?? (to.set(i, []), to.get(i)!)).push(k + 1)));
      classesOfRule(S, srcOf);
      classesOfRule(D, dstOf);
      const pairs = new Set<string>();
      for (const i of byGroup.SD) for (const sc of srcOf.get(i) ?? []) for (const dc of dstOf.get(i) ?? []) pairs.add(`${sc}:${dc}`);
      for (const pair of pairs) {
        const [sc, dc] = pair.split(':').map(Number);
        const dchain = new Set(D.chains[dc - 1]);
        emit('SD', sc, dc, S.chains[sc - 1].filter((i) => groupOf(rules[i]) === 'SD' && dchain.has(i)));
      }
    }
  }
  out.dir = buildDir(out.src, out.dst, cap);
  if (out.dir) flags |= F.FLT_F_DIR4;
  out.flags = flags;
  if (Math.max(out.src.length, out.dst.length) > cap.prefixes) throw tooBig('prefix', Math.max(out.src.length, out.dst.length), cap.prefixes);
  return out;
}
