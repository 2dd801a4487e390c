// SPDX-License-Identifier: Apache-2.0
// A filter policy and its meaning. evaluate() is the reference model of what the kernel program
// decides, written from the rules directly (a scan with the precedence order), independent of the
// compiled tables: explain, the lock-out check and the differential tests use it.
import { EbpfnetError } from '../errors.js';
import * as F from '../gen/filter.js';
import { familyBits, familyMatch, formatRule, parseRule, parseRuleLine, specificity, type Action, type Cidr, type Family, type Rule } from './rules.js';

export interface Policy {
  rules: Rule[];
  default: Action;
  /** count what would be dropped, drop nothing */
  audit?: boolean;
}

export function makePolicy(spec: { deny?: string[]; allow?: string[]; default?: string; audit?: boolean; more?: Rule[] }): Policy {
  const def = spec.default ?? 'allow';
  if (def !== 'allow' && def !== 'deny') throw new EbpfnetError('EBPFNET_USAGE', 'parse --default', `'${def}' is not allow or deny`);
  // denies first, then allows, each in the order given (flags, then `more`: a file's): among equals the first counts
  const more = spec.more ?? [];
  const rules = [
    ...(spec.deny ?? []).map((t) => parseRule('deny', t)),
    ...more.filter((r) => r.action === 'deny'),
    ...(spec.allow ?? []).map((t) => parseRule('allow', t)),
    ...more.filter((r) => r.action === 'allow'),
  ];
  return { rules: dedupe(rules), default: def, audit: spec.audit ?? false };
}

/**
 * A policy file: one `deny RULE` or `allow RULE` per line (parseRuleLine), `default allow|deny`,
 * `#` comments and blank lines. `file` names it in errors, with the line number.
 */
export function parsePolicyText(text: string, file: string): { rules: Rule[]; default?: string } {
  const rules: Rule[] = [];
  let def: string | undefined;
  text.split('\n').forEach((raw, n) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const at = `policy ${file} line ${n + 1}`;
    const d = /^default(?:\s+(.*))?$/.exec(line);
    if (d) def ??= d[1] ?? '';
    else if (/^(deny|allow)(\s|$)/.test(line)) rules.push(parseRuleLine(line, at));
    else throw new EbpfnetError('EBPFNET_USAGE', `read policy ${file}`, `line ${n + 1}: '${line.split(/\s+/)[0]}' is not deny, allow or default`);
  });
  return { rules, default: def };
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
  /** too_deep: more VLAN tags or IPv6 extension headers than the filter walks, or headers past
   * the bytes it reads; dropped like malformed, counted apart */
  kind: 'ip' | 'arp' | 'non_ip' | 'malformed' | 'too_deep';
  /** a non-IP frame's ethertype (after any VLAN tags) */
  ethertype?: number;
  family?: Family;
  proto?: number;
  /** destination port of a TCP/UDP/SCTP packet, or the type of an ICMPv4 or ICMPv6 one (in its
   * own family), when it is not a non-first fragment */
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
  reason: 'rule' | 'default' | 'nd' | 'non_ip' | 'arp' | 'malformed' | 'too_deep' | 'audit';
}

export const cidrContains = (c: Cidr, family: Family, addr: bigint): boolean => {
  if (c.family !== family) return false;
  const shift = BigInt(familyBits(family) - c.prefix);
  return addr >> shift === c.addr >> shift;
};

/** The non-IP frames a default deny still passes: LLDP, 802.1X and 802.3 frames with a length
 * field (LLC, STP), which no kernel delivers as IP. */
export const nonIpNeeded = (ethertype: number): boolean => ethertype === F.FLT_ETH_LLDP || ethertype === F.FLT_ETH_PAE || ethertype < F.FLT_ETH_802_3_MIN;

export function ruleMatches(r: Rule, p: PacketInfo): boolean {
  if (p.kind !== 'ip' || !p.family) return false;
  const fm = familyMatch(r, p.family);
  if (!fm) return false;
  if (fm.proto !== undefined && fm.proto !== p.proto) return false;
  if (fm.ports && (p.dport === undefined || p.dport < fm.ports[0] || p.dport > fm.ports[1])) return false;
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
  if (p.kind === 'non_ip') {
    // a default deny drops the frames some module could turn into IP (all but those a host needs)
    const drop = policy.default === 'deny' && !nonIpNeeded(p.ethertype ?? 0);
    return drop ? audited({ action: 'deny', rule: null, reason: 'non_ip' }) : { action: 'allow', rule: null, reason: 'non_ip' };
  }
  if (p.kind === 'malformed') return audited({ action: 'deny', rule: null, reason: 'malformed' });
  if (p.kind === 'too_deep') return audited({ action: 'deny', rule: null, reason: 'too_deep' });
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
