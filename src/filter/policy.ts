// SPDX-License-Identifier: Apache-2.0
// A filter policy and its meaning. evaluate() is the reference model of what the kernel program
// decides, written from the rules directly (a scan with the precedence order), independent of the
// compiled tables: explain, the lock-out check and the differential tests use it.
import { EbpfnetError } from '../errors.js';
import { PROTO_NUMBERS, familyBits, formatRule, parseRule, ruleFamily, specificity, type Action, type Cidr, type Family, type Rule } from './rules.js';

export interface Policy {
  rules: Rule[];
  default: Action;
  /** count what would be dropped, drop nothing */
  audit?: boolean;
}

export function makePolicy(spec: { deny?: string[]; allow?: string[]; default?: string; audit?: boolean }): Policy {
  const def = spec.default ?? 'allow';
  if (def !== 'allow' && def !== 'deny') throw new EbpfnetError('EBPFNET_USAGE', 'parse --default', `'${def}' is not allow or deny`);
  const rules = [...(spec.deny ?? []).map((t) => parseRule('deny', t)), ...(spec.allow ?? []).map((t) => parseRule('allow', t))];
  return { rules: dedupe(rules), default: def, audit: spec.audit ?? false };
}

/** The same rule twice is one rule. */
function dedupe(rules: Rule[]): Rule[] {
  const seen = new Set<string>();
  return rules.filter((r) => {
    const k = formatRule(r);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** What a packet looks like to the filter after parsing. */
export interface PacketInfo {
  kind: 'ip' | 'arp' | 'non_ip' | 'malformed';
  family?: Family;
  proto?: number;
  /** destination port, for a TCP/UDP/SCTP packet that is not a non-first fragment */
  dport?: number;
  nonfirst?: boolean;
  src?: bigint;
  dst?: bigint;
  /** ICMPv6 types 133-137 */
  nd?: boolean;
}

export interface Decision {
  action: Action;
  /** index into policy.rules, or null for the default, neighbour discovery and the rest */
  rule: number | null;
  reason: 'rule' | 'default' | 'nd' | 'non_ip' | 'arp' | 'malformed' | 'audit';
}

export const cidrContains = (c: Cidr, family: Family, addr: bigint): boolean => {
  if (c.family !== family) return false;
  const shift = BigInt(familyBits(family) - c.prefix);
  return addr >> shift === c.addr >> shift;
};

export function ruleMatches(r: Rule, p: PacketInfo): boolean {
  if (p.kind !== 'ip' || !p.family) return false;
  if (r.proto === 'arp') return false;
  const fam = ruleFamily(r);
  if (fam && fam !== p.family) return false;
  if (r.proto && PROTO_NUMBERS[r.proto] !== p.proto) return false;
  if (r.ports && (p.dport === undefined || p.dport < r.ports[0] || p.dport > r.ports[1])) return false;
  if (r.src && !cidrContains(r.src, p.family, p.src!)) return false;
  if (r.dst && !cidrContains(r.dst, p.family, p.dst!)) return false;
  return true;
}

/** true when rule a beats rule b (indexes into rules) */
export function beats(rules: readonly Rule[], a: number, b: number): boolean {
  const sa = specificity(rules[a]);
  const sb = specificity(rules[b]);
  if (sa !== sb) return sa > sb;
  if (rules[a].action !== rules[b].action) return rules[a].action === 'deny';
  return a < b;
}

export function evaluate(policy: Policy, p: PacketInfo): Decision {
  const audited = (d: Decision): Decision => (policy.audit && d.action === 'deny' ? { ...d, action: 'allow', reason: d.reason === 'rule' ? 'rule' : d.reason } : d);
  if (p.kind === 'non_ip') return { action: 'allow', rule: null, reason: 'non_ip' };
  if (p.kind === 'malformed') return audited({ action: 'deny', rule: null, reason: 'malformed' });
  if (p.kind === 'arp') {
    const deny = policy.rules.some((r) => r.proto === 'arp' && r.action === 'deny');
    return deny ? audited({ action: 'deny', rule: null, reason: 'arp' }) : { action: 'allow', rule: null, reason: 'non_ip' };
  }
  let best: number | null = null;
  policy.rules.forEach((r, i) => {
    if (ruleMatches(r, p) && (best === null || beats(policy.rules, i, best))) best = i;
  });
  if (best !== null) return audited({ action: policy.rules[best].action, rule: best, reason: 'rule' });
  if (p.nd) return { action: 'allow', rule: null, reason: 'nd' };
  return audited({ action: policy.default, rule: null, reason: 'default' });
}
