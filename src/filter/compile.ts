// SPDX-License-Identifier: Apache-2.0
// Policy -> the exact entries of the filter's tables (one generation; the writer adds the gen).
// The kernel does a fixed number of lookups per packet, so everything that depends on the number of
// rules happens here: addresses and ports are reduced to classes, and for every combination of
// classes that some rule matches, the winning rule is precomputed with the precedence order of
// policy.ts (most specific, then deny, then earlier). Pure: no kernel, unit-testable.
import { EbpfnetError } from '../errors.js';
import * as F from '../gen/filter.js';
import { beats, type Policy } from './policy.js';
import { PROTO_NUMBERS, familyBits, ruleFamily, type Cidr, type Family, type Rule } from './rules.js';

export interface CompiledPolicy {
  flags: number;
  defaultAction: number;
  /** flt_protos index without the generation: (family == 6) * 256 + proto */
  protos: Array<[number, F.FltProtoVal]>;
  ports: Array<[Omit<F.FltPortKey, 'gen'>, F.FltPortVal]>;
  src: Array<{ family: Family; addr: bigint; prefix: number; cls: number }>;
  dst: Array<{ family: Family; addr: bigint; prefix: number; cls: number }>;
  decisions: Array<[Omit<F.FltRuleKey, 'gen'>, F.FltVerdict]>;
  /** kernel rule id of each policy rule (its counter slot) */
  ids: number[];
}

export interface Capacity {
  /** entries one generation may use in each table */
  ports: number;
  prefixes: number;
  decisions: number;
  /** counter slots (rule ids must be below it) */
  rules: number;
}

/** Each table holds two generations, so one generation gets half. */
export const DEFAULT_CAPACITY: Capacity = {
  ports: F.FLT_PORTS.maxEntries / 2,
  prefixes: F.FLT_SRC.maxEntries / 2,
  decisions: F.FLT_RULES.maxEntries / 2,
  rules: F.FLT_COUNTERS.maxEntries,
};

const NONE: F.FltVerdict = { rule: F.FLT_NO_RULE, action: F.FLT_ALLOW };
const PORTED = new Set([PROTO_NUMBERS.tcp, PROTO_NUMBERS.udp, PROTO_NUMBERS.sctp]);

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
  const byKey = new Map<string, { cidr: Cidr; rules: number[] }>();
  for (const i of idx) {
    const c = rules[i][side];
    if (!c) continue;
    const k = `${c.prefix}/${c.addr}`;
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
      const anc = byKey.get(`${len}/${maskTo(cidr.addr, family, len)}`);
      if (anc) chain.push(...anc.rules);
    }
    prefixes.push(cidr);
    chains.push(chain);
  }
  return { prefixes, chains };
}

interface PortClasses {
  /** class c (1-based) -> rules whose range covers the class's ports */
  members: Array<Set<number>>;
  /** [lo, hi, class] segments with a class */
  segments: Array<[number, number, number]>;
}

/** Cuts 1-65535 into segments covered by the same set of port rules; each distinct set is a class. */
function portClasses(rules: readonly Rule[], idx: number[]): PortClasses {
  const events = new Map<number, { add: number[]; del: number[] }>();
  const ev = (p: number) => events.get(p) ?? (events.set(p, { add: [], del: [] }), events.get(p)!);
  for (const i of idx) {
    const [lo, hi] = rules[i].ports!;
    ev(lo).add.push(i);
    ev(hi + 1).del.push(i);
  }
  const points = [...events.keys()].sort((a, b) => a - b);
  const active = new Set<number>();
  const classOf = new Map<string, number>();
  const members: Array<Set<number>> = [new Set()];
  const segments: Array<[number, number, number]> = [];
  for (let j = 0; j < points.length; j++) {
    const e = events.get(points[j])!;
    for (const i of e.del) active.delete(i);
    for (const i of e.add) active.add(i);
    if (!active.size || j + 1 >= points.length) continue;
    const key = [...active].sort((a, b) => a - b).join(',');
    let c = classOf.get(key);
    if (c === undefined) {
      c = members.length;
      classOf.set(key, c);
      members.push(new Set(active));
    }
    segments.push([points[j], points[j + 1] - 1, c]);
  }
  return { members, segments };
}

export function compilePolicy(policy: Policy, ids: number[] = policy.rules.map((_, i) => i), cap: Capacity = DEFAULT_CAPACITY): CompiledPolicy {
  const rules = policy.rules;
  for (const id of ids) if (id >= cap.rules) throw tooBig('counter', id + 1, cap.rules);
  let flags = policy.audit ? F.FLT_F_AUDIT : 0;
  if (rules.some((r) => r.proto === 'arp' && r.action === 'deny')) flags |= F.FLT_F_ARP_DENY;
  const out: CompiledPolicy = {
    flags,
    defaultAction: policy.default === 'deny' ? F.FLT_DENY : F.FLT_ALLOW,
    protos: [],
    ports: [],
    src: [],
    dst: [],
    decisions: [],
    ids,
  };
  const verdict = (i: number | null): F.FltVerdict => (i === null ? NONE : { rule: ids[i], action: rules[i].action === 'deny' ? F.FLT_DENY : F.FLT_ALLOW });
  const better = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : beats(rules, a, b) ? a : b);

  for (const family of [4, 6] as const) {
    const R = rules.map((_, i) => i).filter((i) => rules[i].proto !== 'arp' && (ruleFamily(rules[i]) === 0 || ruleFamily(rules[i]) === family));
    const named = new Set(R.filter((i) => rules[i].proto).map((i) => PROTO_NUMBERS[rules[i].proto as keyof typeof PROTO_NUMBERS]));
    // Port classes per protocol that has port rules.
    const pcs = new Map<number, PortClasses>();
    for (const pn of named) {
      if (!PORTED.has(pn)) continue;
      const pr = R.filter((i) => rules[i].ports && PROTO_NUMBERS[rules[i].proto as keyof typeof PROTO_NUMBERS] === pn);
      if (pr.length) pcs.set(pn, portClasses(rules, pr));
    }
    /** does rule i match protocol key pk (a protocol number or ANY) and port class pc? */
    const matches = (i: number, pk: number, pc: number): boolean => {
      const r = rules[i];
      if (pk === F.FLT_PROTO_ANY) return !r.proto;
      if (r.proto && PROTO_NUMBERS[r.proto as keyof typeof PROTO_NUMBERS] !== pk) return false;
      if (r.ports) return pc !== 0 && !!pcs.get(pk)?.members[pc]?.has(i);
      return true;
    };
    const bestOf = (list: readonly number[], pk: number, pc: number): number | null => {
      let b: number | null = null;
      for (const i of list) if (matches(i, pk, pc)) b = better(b, i);
      return b;
    };
    const keys: Array<[number, number]> = [];
    for (const pk of [...named, F.FLT_PROTO_ANY]) {
      keys.push([pk, 0]);
      const pc = pcs.get(pk);
      if (pc) for (let c = 1; c < pc.members.length; c++) keys.push([pk, c]);
    }
    const G00 = R.filter((i) => !rules[i].src && !rules[i].dst);
    const best00 = new Map<string, number | null>(keys.map(([pk, pc]) => [`${pk}:${pc}`, bestOf(G00, pk, pc)]));
    const fb = family === 6 ? 256 : 0;

    // The protocol table: all 256 protocols, so an unnamed one finds its default verdict too.
    for (let p = 0; p < 256; p++) {
      const v = verdict(named.has(p) ? best00.get(`${p}:0`)! : null);
      out.protos.push([fb + p, { named: named.has(p) ? 1 : 0, rule: v.rule, action: v.action }]);
    }
    for (const [pn, pc] of pcs) {
      for (const [lo, hi, c] of pc.segments) {
        const v = verdict(best00.get(`${pn}:${c}`)!);
        for (let port = lo; port <= hi; port++) out.ports.push([{ port, proto: pn, family }, { pclass: c, rule: v.rule, action: v.action }]);
      }
    }

    const hasSrc = R.some((i) => rules[i].src);
    const hasDst = R.some((i) => rules[i].dst);
    if (!hasSrc && !hasDst) continue;
    flags |= family === 4 ? (hasSrc ? F.FLT_F_SRC4 : 0) | (hasDst ? F.FLT_F_DST4 : 0) : (hasSrc ? F.FLT_F_SRC6 : 0) | (hasDst ? F.FLT_F_DST6 : 0);
    const S = addressClasses(rules, R, 'src', family);
    const D = addressClasses(rules, R, 'dst', family);
    S.prefixes.forEach((c, k) => out.src.push({ family, addr: c.addr, prefix: c.prefix, cls: k + 1 }));
    D.prefixes.forEach((c, k) => out.dst.push({ family, addr: c.addr, prefix: c.prefix, cls: k + 1 }));
    const total = (S.prefixes.length + 1) * (D.prefixes.length + 1) * keys.length;
    if (out.decisions.length + total > cap.decisions * 4) throw tooBig('decision', total, cap.decisions);

    const contains = (outer: Cidr, inner: Cidr): boolean => outer.prefix <= inner.prefix && maskTo(inner.addr, family, outer.prefix) === outer.addr;
    for (let sc = 0; sc <= S.prefixes.length; sc++) {
      const chainS = sc ? S.chains[sc - 1] : [];
      const Gs0 = chainS.filter((i) => !rules[i].dst);
      const withDst = chainS.filter((i) => rules[i].dst);
      for (let dc = 0; dc <= D.prefixes.length; dc++) {
        const chainD = dc ? D.chains[dc - 1] : [];
        const G0d = chainD.filter((i) => !rules[i].src);
        const Gsd = dc ? withDst.filter((i) => contains(rules[i].dst!, D.prefixes[dc - 1])) : [];
        for (const [pk, pc] of keys) {
          let b: number | null = best00.get(`${pk}:${pc}`) ?? null;
          if (Gs0.length) b = better(b, bestOf(Gs0, pk, pc));
          if (G0d.length) b = better(b, bestOf(G0d, pk, pc));
          if (Gsd.length) b = better(b, bestOf(Gsd, pk, pc));
          if (b === null) continue;
          out.decisions.push([{ src: sc, dst: dc, pclass: pc, proto: pk, family }, verdict(b)]);
        }
      }
    }
  }
  out.flags = flags;
  if (out.ports.length > cap.ports) throw tooBig('port', out.ports.length, cap.ports);
  if (Math.max(out.src.length, out.dst.length) > cap.prefixes) throw tooBig('prefix', Math.max(out.src.length, out.dst.length), cap.prefixes);
  if (out.decisions.length > cap.decisions) throw tooBig('decision', out.decisions.length, cap.decisions);
  return out;
}
