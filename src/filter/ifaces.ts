// SPDX-License-Identifier: Apache-2.0
// Which interfaces a filter runs on, from what the user wrote (`eth0`, `eth0,eth1`, `'veth*'`,
// `all`) and the interfaces there are, and which tunnel devices no filter covers. Pure: the
// interface list comes from the caller (src/loader/netdev.ts lists the kernel's).
import { EbpfnetError } from '../errors.js';

/** What resolution needs to know about one interface. */
export interface IfaceFact {
  name: string;
  /** IFLA_INFO_KIND (`vxlan`, `veth`, `wireguard`); null for a device without one (lo, most NICs) */
  kind: string | null;
  /** holds an IPv4 or IPv6 address beyond link scope (an fe80:: address alone does not count) */
  addressed: boolean;
}

/** The interfaces one pattern named, in the order they are attached. */
export interface Resolved {
  pattern: string;
  names: string[];
}

export const ALL = 'all';

/**
 * Link kinds that decapsulate: their inner packets arrive on the tunnel device, not on the
 * underlay interface whose filter saw only the outer (UDP/GRE/IP-in-IP) packet.
 */
export const TUNNEL_KINDS: ReadonlySet<string> = new Set([
  'vxlan', 'geneve', 'gre', 'gretap', 'ip6gre', 'ip6gretap', 'erspan', 'ip6erspan', 'ipip', 'ip6tnl', 'sit',
  'vti', 'vti6', 'wireguard', 'bareudp', 'gtp', 'amt', 'xfrm',
]);

export const isTunnel = (f: IfaceFact): boolean => f.kind !== null && TUNNEL_KINDS.has(f.kind);

const GLOB = /[*?[]/;

/** `all`, or a shell-style glob: names that may match interfaces that appear later. */
export const isWildcard = (p: string): boolean => p === ALL || GLOB.test(p);

/** Repeated `--iface` values and comma-separated lists as one list of patterns, duplicates gone. */
export function splitPatterns(values: readonly string[]): string[] {
  return [...new Set(values.flatMap((v) => v.split(',')).map((p) => p.trim()).filter(Boolean))];
}

/**
 * A glob as a regular expression: `*` any run, `?` one character, `[abc]` / `[a-z]` / `[!a]` a
 * class (as the shell's). Interface names have no `/`, so no path rules apply.
 */
function globRegex(p: string, op: string): RegExp {
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const ch = p[i];
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else if (ch === '[') {
      const end = p.indexOf(']', i + 2);
      if (end < 0) throw new EbpfnetError('EBPFNET_USAGE', op, `'${p}' has a '[' without its ']'`, { hint: "quote globs so the shell leaves them alone: --iface 'veth*'" });
      let body = p.slice(i + 1, end);
      const negate = body[0] === '!' || body[0] === '^';
      if (negate) body = body.slice(1);
      re += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = end;
    } else re += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** An interface name, glob or `all` that can be matched: the same check for the CLI and the config. */
export function checkPattern(p: string, op: string): void {
  // IFNAMSIZ: a name is at most 15 bytes; a glob may be longer only by its wildcards' syntax
  if (!/^[\w.@:*?[\]!^-]{1,64}$/.test(p) || (!isWildcard(p) && p.length > 15)) {
    throw new EbpfnetError('EBPFNET_USAGE', op, `'${p}' is not an interface name, a glob or 'all'`, { hint: "for example --iface eth0, --iface eth0,eth1, --iface 'veth*' or --iface all" });
  }
  if (isWildcard(p) && p !== ALL) globRegex(p, op);
}

/** Whether `name` is one of the interfaces `pattern` stands for (`all`: every addressed one but lo). */
export function matches(pattern: string, f: IfaceFact, op = 'match interfaces'): boolean {
  if (pattern === ALL) return f.addressed && f.name !== 'lo';
  if (!isWildcard(pattern)) return f.name === pattern;
  return globRegex(pattern, op).test(f.name);
}

export type Missing = 'error' | 'keep' | 'skip';

export interface ResolveOptions {
  /** the operation errors name (`filter`, `agent`) */
  op: string;
  /**
   * A literal name that is not there: 'error' (the CLI: one line, exit 2), 'keep' (passed on, so
   * whoever attaches reports it as before), 'skip' (it went away; a later listing may bring it back).
   */
  missing: Missing | ((name: string) => Missing);
  /** a glob or `all` that names nothing now is an error (the CLI), or waits for interfaces (the agent) */
  emptyIsError: boolean;
}

/**
 * The interfaces the patterns name, each once, in the patterns' order (within a wildcard, in the
 * list's order), and what each pattern resolved to.
 */
export function resolveInterfaces(patterns: readonly string[], ifaces: readonly IfaceFact[], o: ResolveOptions): { names: string[]; resolved: Resolved[] } {
  const here = (): string => ifaces.map((f) => f.name).join(', ') || 'none';
  const missing = (p: string): Missing => (typeof o.missing === 'function' ? o.missing(p) : o.missing);
  const seen = new Set<string>();
  const names: string[] = [];
  const resolved: Resolved[] = [];
  for (const p of patterns) {
    checkPattern(p, o.op);
    let hit: string[];
    if (isWildcard(p)) {
      hit = ifaces.filter((f) => matches(p, f, o.op)).map((f) => f.name);
      if (!hit.length && o.emptyIsError) {
        const what = p === ALL ? "'all' names no interface: none but lo has an address" : `'${p}' matches no interface`;
        throw new EbpfnetError('EBPFNET_USAGE', o.op, `${what}; interfaces here: ${here()}`, { hint: 'nothing was attached' });
      }
    } else if (ifaces.some((f) => f.name === p) || missing(p) === 'keep') {
      hit = [p];
    } else if (missing(p) === 'skip') {
      hit = [];
    } else {
      throw new EbpfnetError('EBPFNET_USAGE', o.op, `no interface named ${p}; interfaces here: ${here()}`);
    }
    resolved.push({ pattern: p, names: hit });
    for (const n of hit) {
      if (seen.has(n)) continue;
      seen.add(n);
      names.push(n);
    }
  }
  return { names, resolved };
}

/** `veth* -> veth1, veth2; eth0` for wildcards, `eth0, eth1` for plain names. */
export const describeResolved = (r: readonly Resolved[]): string =>
  r.map((x) => (isWildcard(x.pattern) ? `${x.pattern} -> ${x.names.join(', ') || 'none yet'}` : x.pattern)).join(r.some((x) => isWildcard(x.pattern)) ? '; ' : ', ');

/**
 * One line per tunnel device without an ebpfnet filter: why it matters and how to cover it.
 * `filtered` holds the interfaces that run one (attached now, by anyone).
 */
export function tunnelWarnings(ifaces: readonly IfaceFact[], filtered: ReadonlySet<string>): string[] {
  return ifaces
    .filter((f) => isTunnel(f) && !filtered.has(f.name))
    .map(
      (f) =>
        `warning: tunnel ${f.name} (${f.kind}) has no ebpfnet filter: packets decapsulated there are not filtered, ` +
        `whatever the underlay's filter says; cover it with --iface ${f.name}${f.addressed ? ' (or --iface all)' : ''}`,
    );
}
