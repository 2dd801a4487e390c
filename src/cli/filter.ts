// SPDX-License-Identifier: Apache-2.0
// `ebpfnet filter`, `filter set`, `filter explain`, `status`, `unload`: the packet filter's faces.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { EbpfnetError, isEbpfnetError } from '../errors.js';
import { tunnelReport } from '../filter/coverage.js';
import { FilterDatapath, type FilterCounters, type Hook } from '../filter/datapath.js';
import { startFilter, undoStart, type StartedFilter } from '../filter/start.js';
import { ctFlowOf, ctKernelKey, flowViews, pageFlows, parsePageNumber, type FlowView } from '../filter/conntrack.js';
import { CT_DEFAULT_MAX, CT_MIN, ctTableLine, parseCtMax, type CtTableView } from '../filter/ct-table.js';
import { decided, explainLines, type Explained, type StateFinding } from '../filter/explain.js';
import { ConnTrack, ctIngressKey, ctKeyText } from '../filter/model.js';
import { describeResolved, isWildcard, resolveInterfaces, splitPatterns, type Resolved } from '../filter/ifaces.js';
import { filterSite, findLocal, listPins, migrateOldPins, removePin, type FilterSite, type PinnedFilter } from '../filter/pins.js';
import { sshLockout } from '../filter/lockout.js';
import { FILTER_STATS, countersView } from '../filter/stats.js';
import { buildPacket, packetInfo, parsePacket } from '../filter/packet.js';
import { evaluate, makePolicy, parsePolicyText, type Policy } from '../filter/policy.js';
import { formatRule, type Rule } from '../filter/rules.js';
import * as F from '../gen/filter.js';
import { Balancer, lbPinSetting } from '../lb/index.js';
import { defaultRouteInterface, ensurePinSite, interfaceNames, netInterfaces, onShutdown, requireRoot, xdpAttachment, type XdpMode } from '../loader/index.js';
import { registerFilterMetrics, filterRows } from '../metrics/filter.js';
import { newRegistry, serveMetrics, parseListen } from '../metrics/server.js';
import { AgentClient, conntrackThroughAgent, filterThroughAgent, refuseLocalFlags, statusThroughAgent, withAgentOptions, type AgentOptions } from './agent-client.js';
import { serviceJson } from './lb.js';
import { printJson, wantsJson, withOutputOption, type OutputOptions } from './output.js';
import { handleError, table } from './present.js';

interface PolicyOpts {
  deny: string[];
  allow: string[];
  default?: string;
  audit?: boolean;
  policy?: string;
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

function withPolicyOptions(c: Command): Command {
  return c
    .option(
      '--deny <rule>',
      'drop what the rule matches: [PROTO[/PORTS]] [from CIDR] [to CIDR] (repeatable); PROTO tcp, udp, sctp, arp, icmp (ping in both families: all ICMPv4 and ICMPv6 echo), icmpv4[/TYPE] or icmpv6[/TYPE] (all of ICMPv6, neighbour discovery too)',
      collect,
      [],
    )
    .option('--allow <rule>', 'pass what the rule matches (repeatable)', collect, [])
    .option('--default <action>', 'what happens to a packet no rule matches: allow or deny')
    .option('--policy <file>', 'read rules from a file: one "deny RULE" or "allow RULE" per line, "default deny", # comments')
    .option('--audit', 'count what would be dropped, drop nothing');
}

/** The policy from flags and an optional file; a malformed rule is a usage error (exit 2). */
export function policyFrom(o: PolicyOpts): Policy {
  let file: { rules: Rule[]; default?: string } = { rules: [] };
  if (o.policy) {
    let text: string;
    try {
      text = readFileSync(o.policy, 'utf8');
    } catch (e) {
      throw new EbpfnetError('EBPFNET_USAGE', `read policy ${o.policy}`, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message);
    }
    file = parsePolicyText(text, o.policy);
  }
  // --default on the command line wins over the file's
  const def = o.default ?? file.default;
  if (!o.deny.length && !o.allow.length && !file.rules.length && def !== 'deny') {
    throw new EbpfnetError('EBPFNET_USAGE', 'filter', 'no rules given', { hint: 'for example: ebpfnet filter --deny tcp/22 --deny icmp' });
  }
  return makePolicy({ deny: o.deny, allow: o.allow, more: file.rules, default: def, audit: o.audit });
}

/** The policy in one line; a long one is summarised (the full list is in --dry-run and status). */
const describe = (p: Policy): string => {
  const shown = p.rules.slice(0, 8).map(formatRule).join(', ');
  const rules = p.rules.length > 8 ? `${p.rules.length} rules (${shown}, ...)` : shown || 'no rules';
  return `${rules}; default ${p.default}${p.audit ? ' (audit: nothing is dropped)' : ''}`;
};

const plural = (x: bigint, one: string, many: string): string => `${n(x)} ${x === 1n ? one : many}`;

function hookOf(v: string | undefined): Hook {
  if (v === undefined || v === 'xdp' || v === 'tc') return v ?? 'xdp';
  throw new EbpfnetError('EBPFNET_USAGE', 'parse --hook', `'${v}' is not xdp or tc`);
}

function modeOf(v: string | undefined): XdpMode | 'auto' {
  if (v === undefined || v === 'native' || v === 'generic' || v === 'auto') return v ?? 'auto';
  throw new EbpfnetError('EBPFNET_USAGE', 'parse --mode', `'${v}' is not native, generic or auto`);
}

const n = (x: bigint): string => x.toLocaleString('en-US');

function dropSummary(ifname: string, c: FilterCounters): string {
  const denies = c.rules.filter((r) => r.action === 'deny');
  // every statistic with a deny row is a drop (default, malformed, too deep, non-IP, ARP)
  const statDrops = FILTER_STATS.filter((s) => s.row?.action === 'deny');
  const dropped = denies.reduce((a, r) => a + r.packets, 0n) + statDrops.reduce((a, s) => a + c[s.name].packets, 0n);
  const parts = denies.map((r) => `${r.rule.replace(/^deny /, '')} ${n(r.packets)}`);
  for (const s of statDrops) if (s.name !== 'arpDrop' && c[s.name].packets) parts.push(`${s.row!.rule} ${n(c[s.name].packets)}`);
  const audit = c.audit.packets ? `, ${n(c.audit.packets)} only audited` : '';
  return `${ifname}: dropped ${n(dropped)}${parts.length ? ` (${parts.join(', ')})` : ''}${audit}`;
}

/** One row per rule and default; with many rules only those that matched something are listed. */
function totals(ds: FilterDatapath[]): string {
  const rows: Array<Array<string>> = [];
  let quiet = 0;
  for (const d of ds) {
    const all = filterRows(d.counters());
    const many = all.length > 40;
    for (const r of all) {
      const special = r.rule !== 'default' && FILTER_STATS.some((s) => s.row?.rule === r.rule);
      if (r.packets === 0n && (special || (many && r.rule !== 'default'))) {
        if (!special) quiet++;
        continue;
      }
      rows.push([d.ifname, `${r.action} ${r.rule}`, plural(r.packets, 'packet', 'packets'), plural(r.bytes, 'byte', 'bytes')]);
    }
  }
  return table(['interface', 'rule', 'packets', 'bytes'], rows) + (quiet ? `\n(${quiet} rules matched nothing)` : '');
}

/**
 * --iface values (repeated, comma-separated, globs, `all`) as interface names, or the default
 * route's interface. A name that is not there, or a glob naming nothing, is bad usage (exit 2).
 */
function interfacesOf(values: string[]): { names: string[]; resolved: Resolved[] } {
  const patterns = splitPatterns(values);
  if (!patterns.length) {
    const def = defaultRouteInterface();
    if (!def) throw new EbpfnetError('EBPFNET_USAGE', 'filter', 'this machine has no default route to pick an interface from', { hint: 'name one with --iface' });
    return { names: [def], resolved: [{ pattern: def, names: [def] }] };
  }
  // plain names need only the names; wildcards need kinds and addresses too (one netlink dump)
  const here = patterns.some(isWildcard) ? netInterfaces() : interfaceNames().map((name) => ({ name, kind: null, addressed: false }));
  return resolveInterfaces(patterns, here, { op: 'filter', missing: 'error', emptyIsError: true });
}

/**
 * Where this network namespace's pinned filters are, after moving old-layout pins of its interfaces
 * into the layout by namespace and index (said here, once: a moved pin is not old any more).
 */
function openSite(op: string): FilterSite | null {
  const fs = filterSite(op);
  if (fs) for (const note of migrateOldPins(fs)) process.stdout.write(`${note}\n`);
  return fs;
}

/**
 * A filter pinned on this interface of this namespace. A foreground filter under ip netns exec
 * cannot see the host's pins; it does not need them (an XDP program there is refused anyway).
 */
function pinnedHere(ifname: string, pin?: boolean): boolean {
  try {
    const fs = openSite(`filter ${ifname}`);
    const p = fs && findLocal(fs, ifname);
    return !!p && !p.gone;
  } catch (e) {
    if (!pin && isEbpfnetError(e) && e.code === 'EBPFNET_PRIVATE_MOUNTS') return false;
    throw e;
  }
}

/** `network namespace 4026532173 (ip netns blue), this one`: a namespace for status and unload. */
function nsLabel(p: PinnedFilter): string {
  if (p.netns === null) return `network namespace unknown (pinned by an older ebpfnet at ${p.shownDir}; run ebpfnet status in its namespace to move it)`;
  return `network namespace ${p.netns}${p.nsName ? ` (ip netns ${p.nsName})` : ''}${p.local ? ', this one' : ''}`;
}

/** `ncv0`, or `ncv0 in blue` for a filter of another namespace. */
const pinName = (p: PinnedFilter): string => (p.local ? p.ifname : `${p.ifname} in ${p.nsName ?? (p.netns === null ? 'an unknown namespace' : `netns ${p.netns}`)}`);

/** One pinned filter as `status -o json` shows it; counters are the API's shape (countersView). */
function filterJson(p: PinnedFilter, d: FilterDatapath | null, error: string | null): Record<string, unknown> {
  const head = { interface: p.ifname, ifindex: p.ifindex, gone: p.gone, pinDir: p.shownDir };
  if (!d) return { ...head, hook: null, mode: null, defaultAction: null, auditMode: null, ...(error ? { error } : {}) };
  const policy = d.currentPolicy;
  const c = d.counters();
  return {
    ...head,
    hook: d.hook,
    mode: d.hook === 'tc' ? null : d.mode,
    defaultAction: policy?.default ?? null,
    auditMode: policy?.audit ?? null,
    // null when stateless
    connectionTable: d.ctTable(),
    stateful: d.stateful,
    // the counter slot is the rule's id (`#id` in --dry-run)
    ...countersView(c, (text, i) => ({ id: c.rules[i].id, match: text.replace(/^(allow|deny) /, '') })),
  };
}

/** The pinned balancer, or null when none is attached; a broken one is shown by its error. */
function balancerState(): { text: string; json: Record<string, unknown> } | null {
  let b: Balancer;
  try {
    b = Balancer.open({ op: 'status' });
  } catch (e) {
    if (isEbpfnetError(e) && e.code === 'EBPFNET_NOT_FOUND') return null;
    if (!isEbpfnetError(e)) throw e;
    return { text: `balancer: ${e.message}`, json: { pinDir: lbPinSetting(), error: e.message } };
  }
  try {
    const st = b.status();
    const { services, broken } = b.list();
    const text = `balancer: attached to ${st.cgroup ?? 'a cgroup that no longer exists'}: ${plural(BigInt(services.length), 'service', 'services')}, ${st.programs.length} programs, pinned at ${st.pinDir} (ebpfnet lb list shows them)`;
    return { text, json: { ...st, services: services.map(serviceJson), broken } };
  } finally {
    b.close();
  }
}

type ConntrackDoc = { interfaces: Array<{ interface: string; stateful: boolean; table?: CtTableView | null; total: number; flows: FlowView[] }> };
type ConntrackOpts = OutputOptions & AgentOptions & { iface?: string; limit?: string; offset?: string };

/** `filter conntrack`: the flows the stateful filters of this network namespace track, like conntrack -L. */
async function conntrack(o: ConntrackOpts): Promise<void> {
  // like conntrack -L, every flow unless --limit says otherwise (the API pages by default)
  const page = { limit: parsePageNumber('--limit', o.limit, 1), offset: parsePageNumber('--offset', o.offset, 0) };
  if (o.agent) return showConntrack(await conntrackThroughAgent(new AgentClient({ ...o, agent: o.agent }), { iface: o.iface, limit: page.limit ?? F.FLT_CT_SIZE_MAX, offset: page.offset }), wantsJson(o), 'the agent filters no interface');
  requireRoot('filter conntrack');
  const fs = openSite('filter conntrack');
  const pins = (fs ? listPins(fs) : []).filter((p) => p.local && !p.gone && (!o.iface || p.ifname === o.iface));
  if (o.iface && !pins.length) throw new EbpfnetError('EBPFNET_NOT_FOUND', `filter conntrack --iface ${o.iface}`, 'no pinned filter there in this network namespace', { hint: 'ebpfnet status lists them' });
  // the clock the program reads (CLOCK_MONOTONIC at tick resolution), read once for every table
  const now = process.hrtime.bigint();
  const out: ConntrackDoc['interfaces'] = [];
  for (const p of pins) {
    const d = FilterDatapath.adoptPin(fs!, p);
    try {
      const f = d.flows();
      out.push({ interface: p.ifname, stateful: f !== null, table: d.ctTable(), ...pageFlows(f ? flowViews(f.entries, f.cfg, now) : [], page) });
    } finally {
      d.close();
    }
  }
  showConntrack({ interfaces: out }, wantsJson(o), 'no pinned filters in this network namespace');
}

function showConntrack(doc: ConntrackDoc, json: boolean, none: string): void {
  if (json) return printJson(doc);
  if (!doc.interfaces.length) return void process.stdout.write(`${none}\n`);
  for (const i of doc.interfaces) {
    if (!i.stateful) {
      process.stdout.write(`${i.interface}: stateless (no connection state: --stateless, filter.stateful false, or a default of allow)\n`);
      continue;
    }
    const shown = i.flows.length < i.total ? ` (showing ${i.flows.length}: --limit, --offset)` : '';
    process.stdout.write(`${i.interface}: ${i.total} flow${i.total === 1 ? '' : 's'}${shown}\n`);
    if (i.table) process.stdout.write(`${i.interface}: table: ${ctTableLine(i.table)}\n`);
    if (i.flows.length) process.stdout.write(`${table(['proto', 'local', 'remote', 'state', 'opened by', 'seen', 'expires in'], i.flows.map((f) => [f.proto, f.local, f.remote, f.state, f.openedBy, `${f.lastSeenSecondsAgo}s ago`, `${f.expiresInSeconds}s`]))}\n`);
  }
}

function status(o: { allNamespaces?: boolean; json: boolean }): void {
  const say = (l: string): void => void (o.json || process.stdout.write(`${l}\n`));
  const fs = openSite('status');
  const all = fs ? listPins(fs, { allNamespaces: true }) : [];
  const shown = o.allNamespaces ? all : all.filter((p) => p.local);
  if (!shown.length) say(`no pinned filters ${o.allNamespaces ? 'on this machine' : 'in this network namespace'}`);
  let ns: string | null = null;
  const namespaces: Array<{ netns: number | null; name: string | null; current: boolean; filters: unknown[] }> = [];
  for (const p of shown) {
    const label = nsLabel(p);
    if (label !== ns) {
      say(`${(ns = label)}:`);
      namespaces.push({ netns: p.netns, name: p.nsName, current: p.local, filters: [] });
    }
    const filters = namespaces[namespaces.length - 1].filters;
    if (p.gone) {
      say(`${p.ifname}: its interface is gone (ifindex ${p.ifindex}); the filter runs nowhere. Remove it with: ebpfnet unload --iface ${p.ifname}${p.local ? '' : ' --all-namespaces'}`);
      filters.push(filterJson(p, null, null));
      continue;
    }
    let d: FilterDatapath;
    try {
      d = FilterDatapath.adoptPin(fs!, p);
    } catch (e) {
      // one pin this build cannot open (e.g. another version's tables): say so, show the others
      handleError(e);
      filters.push(filterJson(p, null, (e as Error).message));
      continue;
    }
    try {
      if (o.json) filters.push(filterJson(p, d, null));
      else {
        say(`${p.ifname}: ${d.hook === 'tc' ? 'tc ingress' : `xdp ${d.mode}`}: ${d.currentPolicy ? describe(d.currentPolicy) : 'policy unknown'}; connection state ${d.stateful ? 'on' : 'off'}`);
        say(totals([d]));
        const t = d.ctTable();
        if (t) say(`${p.ifname}: connection table: ${ctTableLine(t)}`);
      }
    } finally {
      d.close();
    }
  }
  const others = all.length - shown.length;
  if (others) say(`(${plural(BigInt(others), 'more pinned filter', 'more pinned filters')} in other network namespaces: ebpfnet status --all-namespaces)`);
  const lb = balancerState();
  if (lb) say(lb.text);
  const tunnels = tunnelReport();
  for (const l of tunnels) say(l);
  if (o.json) printJson({ scope: o.allNamespaces ? 'allNamespaces' : 'thisNamespace', namespaces, otherNamespaceFilters: others, balancer: lb?.json ?? null, tunnels });
}

function unload(o: { iface?: string; all?: boolean; allNamespaces?: boolean }): void {
  const fs = openSite('unload');
  const scope = o.allNamespaces ? 'on this machine' : 'in this network namespace';
  const all = fs ? listPins(fs, { allNamespaces: o.allNamespaces }) : [];
  let targets: PinnedFilter[];
  if (o.iface) {
    const name = o.iface;
    targets = o.allNamespaces ? all.filter((p) => p.ifname === name) : [fs && findLocal(fs, name)].filter((p): p is PinnedFilter => !!p);
    if (!targets.length) {
      throw new EbpfnetError('EBPFNET_NOT_FOUND', `unload ${name}`, `no pinned filter on ${name} ${scope}`, { hint: `pinned filters ${scope}: ${all.map(pinName).join(', ') || 'none'}` });
    }
  } else {
    targets = all;
    // several filters are several security controls: removing them all must be asked for
    if (targets.length > 1 && !o.all) {
      throw new EbpfnetError('EBPFNET_USAGE', 'unload', `${targets.length} filters are pinned ${scope} (${targets.map(pinName).join(', ')}); nothing was removed`, { hint: 'name one with --iface, or remove them all with --all' });
    }
  }
  for (const p of targets) {
    removePin(fs!, p);
    process.stdout.write(`${p.ifname}: ${p.gone ? 'pins removed (its interface was gone)' : 'filter detached and unpinned'}${p.local ? '' : ` (${nsLabel(p)})`}\n`);
  }
  if (!targets.length) process.stdout.write(`no pinned filters ${scope}\n`);
}

async function runFilter(o: PolicyOpts & { iface: string[]; mode?: string; hook?: string; metrics?: string; pin?: boolean; force?: boolean; replace?: boolean; dryRun?: boolean; stateless?: boolean; ctMax?: string; interval: string }): Promise<void> {
  const policy = policyFrom(o);
  // a default deny the host can live with: its own connections' replies pass (bpf/filter.bpf.c)
  const stateful = policy.default === 'deny' && !o.stateless;
  const ctMax = o.ctMax === undefined ? undefined : parseCtMax(o.ctMax);
  if (ctMax !== undefined && !stateful) throw new EbpfnetError('EBPFNET_USAGE', 'filter', `--ct-max sizes the connection table, and this filter tracks no connections (${o.stateless ? '--stateless' : 'state is on only under --default deny'})`, { hint: o.stateless ? 'drop --ct-max or --stateless' : 'add --default deny, or drop --ct-max' });
  const hook = hookOf(o.hook);
  const mode = modeOf(o.mode);
  if (o.metrics) parseListen(o.metrics);
  const interval = Number(o.interval);
  if (!Number.isFinite(interval) || interval <= 0) throw new EbpfnetError('EBPFNET_USAGE', 'parse --interval', `'${o.interval}' is not a positive number of seconds`);
  const { names: ifnames, resolved } = interfacesOf(o.iface);
  if (!o.dryRun) requireRoot('filter');

  const lock = o.force ? null : sshLockout(policy, ifnames);
  if (lock) {
    throw new EbpfnetError('EBPFNET_USAGE', 'filter', `this policy would drop your own SSH session on ${lock.ifname} (${lock.packet} matches '${lock.rule}')`, {
      hint: 'allow it first (e.g. --allow "tcp/22 from <your address>") or add --force',
    });
  }

  if (o.dryRun) return dryRun(policy, ifnames[0]);

  // --pin: refuse before loading anything where a pin would not outlive this command
  if (o.pin) {
    const site = ensurePinSite('filter --pin');
    if (site.prefix) process.stdout.write(`note: this command runs in a mount namespace of its own (ip netns exec); pinning in the host's bpffs through ${site.root}\n`);
  }
  for (const i of ifnames) {
    if (pinnedHere(i, o.pin)) throw new EbpfnetError('EBPFNET_EXISTS', `filter ${i}`, 'a pinned ebpfnet filter is already there', { hint: `change it with: ebpfnet filter set --iface ${i} ..., or remove it: ebpfnet unload --iface ${i}` });
    if (hook === 'xdp') {
      const other = xdpAttachment(i);
      if (other && !o.replace) {
        throw new EbpfnetError('EBPFNET_EXISTS', `filter ${i}`, `XDP program '${other.name}' (id ${other.id}) is already attached there in ${other.mode} mode`, { hint: 'add --replace to replace it, or use --hook tc' });
      }
    }
  }
  const started: StartedFilter[] = [];
  try {
    for (const i of ifnames) started.push(startFilter(i, policy, { hook, mode, pin: !!o.pin, replace: o.replace, stateful, ctMax }));
  } catch (e) {
    // all interfaces or none: the ones already started go again
    for (const st of started) undoStart(st);
    throw e;
  }
  const ds = started.map((st) => st.datapath);
  if (resolved.some((r) => isWildcard(r.pattern))) process.stdout.write(`interfaces: ${describeResolved(resolved)}\n`);
  for (const d of ds) process.stdout.write(`${d.ifname}: ${hook === 'tc' ? 'tc ingress (tcx)' : `xdp ${d.mode}`}: ${describe(policy)}\n`);
  if (stateful) {
    process.stdout.write('connection state: on: replies to connections this host opens (and ICMP errors about them) pass; a deny rule still drops them; --stateless turns it off\n');
    process.stdout.write(`connection table: ${(ctMax ?? CT_DEFAULT_MAX).toLocaleString('en-US')} flows per interface${ctMax === undefined ? ' (the default; --ct-max sets it)' : ''}; when full, the least recently used flow makes room (counted as an eviction)\n`);
  }
  else if (policy.default === 'deny') process.stdout.write('connection state: off (--stateless): replies to connections this host opens are dropped unless a rule allows them\n');
  if (policy.default === 'deny') {
    const arp = policy.rules.some((r) => r.proto === 'arp' && r.action === 'deny');
    const nd = policy.rules.some((r) => r.proto === 'icmpv6');
    if (!arp || !nd) process.stdout.write(`note: ${[!arp && 'ARP', !nd && 'IPv6 neighbour discovery'].filter(Boolean).join(' and ')} still pass under --default deny (add --deny arp / --deny icmpv6 to drop them)\n`);
    process.stdout.write('note: under --default deny, non-IP frames other than ARP, LLDP, 802.1X and 802.3 (LLC) frames are dropped (counted as non-ip deny)\n');
  }
  if (o.pin) {
    for (const { datapath: d, pinned: r } of started) {
      if (!r) continue;
      if (r.replacedGone) process.stdout.write(`${d.ifname}: removed the pins of a filter whose interface (${r.replacedGone}) is gone and whose index this one has now\n`);
      process.stdout.write(`${d.ifname}: pinned at ${r.dir}; it stays after this command. See it with: ebpfnet status; remove it with: ebpfnet unload --iface ${d.ifname}\n`);
      d.close();
    }
    return;
  }

  const registry = newRegistry();
  registerFilterMetrics(registry, () => ds.map((d) => ({ ifname: d.ifname, counters: (opts) => d.counters(opts), ctTable: () => d.ctTable(), stateful: () => d.stateful })));
  const server = o.metrics ? await serveMetrics(registry, o.metrics) : null;
  if (server) process.stdout.write(`metrics: ${server.url}\n`);
  const tty = process.stdout.isTTY;
  process.stdout.write(`filtering; ${tty ? 'Ctrl-C' : 'SIGINT or SIGTERM'} stops it and detaches\n`);
  const tick = setInterval(() => {
    const line = ds.map((d) => dropSummary(d.ifname, d.counters())).join('  ');
    process.stdout.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
  }, (tty ? Math.min(interval, 1) : interval) * 1000);
  await new Promise<void>((resolve) => {
    onShutdown(async () => {
      clearInterval(tick);
      if (tty) process.stdout.write('\n');
      process.stdout.write(`totals:\n${totals(ds)}\n`);
      await server?.close();
      for (const d of ds) {
        d.close();
        process.stdout.write(`${d.ifname}: detached\n`);
      }
      resolve();
    });
  });
}

/** `filter --agent URL ...`: the same policy options, sent to the agent. */
async function filterAgent(o: PolicyOpts & AgentOptions & { iface: string[]; add?: boolean; force?: boolean }): Promise<void> {
  const policy = policyFrom(o);
  refuseLocalFlags('filter', o, { pin: '--pin', metrics: '--metrics', dryRun: '--dry-run', replace: '--replace', stateless: '--stateless', ctMax: '--ct-max' });
  await filterThroughAgent(new AgentClient({ ...o, agent: o.agent! }), policy, { iface: splitPatterns(o.iface), add: o.add, force: o.force, defaultGiven: o.default !== undefined });
}

function dryRun(policy: Policy, ifname: string): void {
  const d = FilterDatapath.load(ifname, { maxRules: FilterDatapath.capacityFor(policy.rules.length) });
  try {
    const c = d.apply(policy);
    const stats = [...d.verifierStats()];
    const out: string[] = [`policy: ${describe(policy)}`, `flags: 0x${c.flags.toString(16)}`, 'protocols named:'];
    for (const [i, v] of c.protos) if (v.named) out.push(`  ${i >= 256 ? 'ipv6' : 'ipv4'} proto ${i % 256}: no-port verdict ${v.rule === F.FLT_NO_RULE ? 'default' : `rule #${v.rule}`} ${v.action === F.FLT_DENY ? 'deny' : 'allow'}`);
    out.push(`ports: ${c.ports.length} entries`);
    for (const [k, v] of [...c.ports.rows(0, 20)].map(([key, vi]) => [key, c.portVals[vi - 1]] as const)) out.push(`  ipv${k.family} proto ${k.proto} port ${k.port}: ${v.rule === F.FLT_NO_RULE ? 'default' : `rule #${v.rule}`} ${v.action === F.FLT_DENY ? 'deny' : 'allow'}${v.pc_s || v.pc_d || v.pc_sd ? ` (address-group classes ${v.pc_s}/${v.pc_d}/${v.pc_sd})` : ''}`);
    if (c.ports.length > 20) out.push(`  ... ${c.ports.length - 20} more`);
    out.push(`source prefixes: ${c.src.length}, destination prefixes: ${c.dst.length}, decisions: ${c.decisions.length}`);
    out.push('rules:', ...policy.rules.map((r, i) => `  #${c.ids[i]} ${formatRule(r)}`));
    out.push(`verifier: ${stats.map(([p, s]) => `${p} ok (${s?.insns ?? '?'} instructions processed)`).join(', ')}`);
    out.push('dry run: nothing attached');
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    d.close();
  }
}

/** The pinned filter's policy and, when it tracks the packet's flow, that live flow. */
function pinnedView(ifname: string, frame: Buffer): { policy: Policy; live: { cfg: F.FltCtCfg; key: F.FltCtKey; val: F.FltCtVal; view: FlowView } | null } {
  const pinned = FilterDatapath.adopt(ifname);
  try {
    const policy = pinned.currentPolicy;
    if (!policy) throw new EbpfnetError('EBPFNET_NOT_FOUND', `explain on ${ifname}`, 'the pinned filter has no recorded policy');
    const cfg = pinned.ctSettings();
    const k = cfg && ctIngressKey(frame);
    if (!cfg || !k) return { policy, live: null };
    const key = ctKernelKey(k);
    const val = pinned.flow(key);
    // an expired entry is absent to the programs (flowViews leaves it out)
    const view = val && flowViews([[key, val]], cfg, process.hrtime.bigint())[0];
    return { policy, live: val && view ? { cfg, key, val, view } : null };
  } finally {
    pinned.close();
  }
}

function explain(packetText: string, o: PolicyOpts & OutputOptions & { iface?: string }): void {
  const json = wantsJson(o);
  const spec = parsePacket(packetText);
  const frame = buildPacket(spec);
  let policy: Policy;
  // the connection state of the pinned filter, when the policy is its own
  let live: ReturnType<typeof pinnedView>['live'] = null;
  if (!o.deny.length && !o.allow.length && !o.policy && o.iface) {
    ({ policy, live } = pinnedView(o.iface, frame));
  } else {
    policy = policyFrom(o);
  }
  requireRoot('filter explain');
  // A private copy of the program, so explaining never moves a live filter's counters or flows.
  const d = FilterDatapath.load(o.iface ?? 'lo', { maxRules: FilterDatapath.capacityFor(policy.rules.length), ctMax: CT_MIN });
  try {
    d.apply(policy);
    const before = d.counters();
    const prog = d.program('xdp');
    const r = prog.testRun({ data: frame });
    const after = d.counters();
    const moved = after.rules.find((x, i) => x.packets !== before.rules[i].packets);
    const model = evaluate(policy, packetInfo(spec));
    const verdict = r.retval === 1 ? 'DROP' : 'PASS';
    const by = moved ? `rule '${moved.rule}'` : after.defaultDrop.packets > before.defaultDrop.packets || after.defaultPass.packets > before.defaultPass.packets ? `the default (${policy.default})` : after.ndPass.packets > before.ndPass.packets ? 'the neighbour-discovery exception' : 'no rule';
    const modelBy = model.rule === null ? (model.reason === 'default' ? `the default (${policy.default})` : model.reason === 'nd' ? 'the neighbour-discovery exception' : model.reason) : `rule '${formatRule(policy.rules[model.rule])}'`;
    let agree = ((model.action === 'deny') === (verdict === 'DROP' && !policy.audit) || (policy.audit && verdict === 'PASS')) && by === modelBy;
    let state: StateFinding | null = null;
    let modelState = '';
    if (live) {
      // the same packet with the tracked flow, through the private copy and through the model
      const ct = d.conntrack();
      ct.cfg.set(0, { ...live.cfg, stateful: 1 });
      ct.flows.update(live.key, live.val);
      // a packet text names no sequence numbers: explain the segment the far side would send
      // next on that connection (in its window), not an arbitrary one the tracker would call junk
      const inFlow = spec.proto === 6 && live.val.tcp ? buildPacket({ ...spec, seq: live.val.r_end, ack: live.val.l_end }) : frame;
      const c0 = d.counters();
      const rv = prog.testRun({ data: inFlow }).retval;
      const c1 = d.counters();
      const kernelAs = c1.established.packets > c0.established.packets ? 'established' : c1.related.packets > c0.related.packets ? 'related' : null;
      const m = new ConnTrack();
      m.now = live.cfg.now || process.hrtime.bigint();
      m.timeouts = live.cfg;
      const k = ctIngressKey(frame)!;
      const flow = ctFlowOf(live.val);
      if (flow) m.flows.set(ctKeyText(live.key), { key: k, flow });
      const out = m.ingress(policy, inFlow);
      const denied = out.rule !== null && policy.rules[out.rule].action === 'deny';
      state = { flow: live.view, as: kernelAs, why: kernelAs ? null : denied ? 'deny-rule' : 'not-part' };
      // state passes it, or the verdict is the rules' alone
      const stateOk = (out.ct ?? null) === kernelAs && (kernelAs ? rv !== 1 : rv === r.retval);
      if (!stateOk) modelState = out.ct ? `passes as ${out.ct}` : 'does not pass it by state';
      agree &&= stateOk;
    }
    const e: Explained = { packet: packetText.trim(), rules: { verdict, by }, audit: !!policy.audit, state };
    const final = decided(e);
    if (json) {
      const stateJson = state && { flow: state.flow, as: state.as, why: state.why, withoutState: state.as ? { verdict, by } : null };
      printJson({ packet: e.packet, verdict: final.verdict, by: final.by, rule: moved && !state?.as ? moved.rule : null, ruleId: moved && !state?.as ? moved.id : null, auditMode: policy.audit, state: stateJson, model: { action: state?.as ? 'allow' : model.action, by: state?.as ? final.by : modelBy, agrees: agree } });
    } else {
      process.stdout.write(`${explainLines(e).join('\n')}\n`);
      if (model.rule !== null && policy.rules[model.rule].proto === 'icmp' && spec.family === 6) process.stdout.write('icmp matches ICMPv6 echo (request and reply) and all of ICMPv4; icmpv6 names all of ICMPv6\n');
      process.stdout.write(agree ? 'the reference model agrees\n' : `the reference model says ${modelState || `${model.action} by ${modelBy}`}: please report this\n`);
    }
    if (!agree) process.exitCode = 1;
  } finally {
    d.close();
  }
}

export function registerFilter(program: Command): void {
  const filter = withPolicyOptions(
    program
      .command('filter')
      .description('drop packets at the driver with XDP (or tc): ebpfnet filter --deny tcp/22 --deny icmp')
      .option('--iface <names>', "interfaces to filter: a name, a list (eth0,eth1), a glob ('veth*') or all (every interface with an address but lo); repeatable; default: the default route's", collect, [])
      .option('--mode <mode>', 'XDP mode: native, generic or auto', 'auto')
      .option('--hook <hook>', 'xdp, or tc for a tc ingress (TCX) hook', 'xdp')
      .option('--metrics <[addr:]port>', 'serve Prometheus metrics at http://ADDR:PORT/metrics')
      .option('--pin', 'leave the filter attached after the command exits')
      .option('--replace', 'replace an XDP program already on the interface')
      .option('--stateless', 'under --default deny, do not track connections (replies to connections this host opens are then dropped too)')
      .option('--ct-max <flows>', `the connection table's size per interface (${F.FLT_CT_SIZE_MIN}-${F.FLT_CT_SIZE_MAX}, default ${CT_DEFAULT_MAX}: 120 bytes a flow, preallocated); when full, the least recently used flow is evicted`)
      .option('--force', 'apply even if it would cut off your SSH session')
      .option('--dry-run', 'print the compiled map entries and the verifier verdict; attach nothing')
      .option('--interval <seconds>', 'how often to print drop counts when not on a terminal', '5')
      .option('--add', 'with --agent: add the rules to the agent\'s policy instead of replacing it')
      // options after `filter set` / `filter explain` belong to them, not to `filter`
      .enablePositionalOptions(),
  );
  withAgentOptions(filter).action((o) => {
    if (o.agent) return filterAgent(o);
    if (o.add) throw new EbpfnetError('EBPFNET_USAGE', 'filter', '--add needs --agent', { hint: 'a filter started here has no policy to add to; change a pinned one with: ebpfnet filter set' });
    return runFilter(o);
  });

  withPolicyOptions(filter.command('set').description("replace the rules of a pinned filter in place (one switch, no reload)").requiredOption('--iface <name>', 'the pinned filter\'s interface')).action(
    (o: PolicyOpts & { iface: string }) => {
      const policy = policyFrom(o);
      requireRoot('filter set');
      openSite('filter set');
      const d = FilterDatapath.adopt(o.iface);
      try {
        d.apply(policy);
        process.stdout.write(`${o.iface}: ${describe(policy)}\n`);
      } finally {
        d.close();
      }
    },
  );

  withOutputOption(
    withPolicyOptions(
      filter
        .command('explain <packet>')
        .description('run a crafted packet through the filter program and name the rule that decides it: "tcp 10.0.0.1:5555 -> 10.0.0.2:22" (a SYN; a reply: add "flags ack")')
        .option('--iface <name>', 'use the policy of the pinned filter on this interface, and its connection state: a packet of a flow it tracks passes as established (or related)'),
    ),
  ).action((packet: string, o: PolicyOpts & OutputOptions & { iface?: string }) => explain(packet, o));

  withOutputOption(
    withAgentOptions(
      filter
        .command('conntrack')
        .description('list the connections the stateful filters of this network namespace track (like conntrack -L; --agent: the agent\'s)')
        .option('--iface <name>', 'only the filter on this interface')
        .option('--limit <n>', 'at most this many flows per interface, most recently seen first (default: all)')
        .option('--offset <n>', 'skip this many flows first (the next page: --offset plus --limit)'),
    ),
  ).action((o: ConntrackOpts) => conntrack(o));

  withOutputOption(
    withAgentOptions(
      program
        .command('status')
        .description('list the pinned filters of this network namespace with their counters, and the pinned balancer (--all-namespaces: filters of every namespace; --agent: the agent\'s filter counters)')
        .option('--all-namespaces', 'pinned filters of every network namespace'),
    ),
  ).action(async (o: AgentOptions & OutputOptions & { allNamespaces?: boolean }) => {
    const json = wantsJson(o);
    if (o.agent) return statusThroughAgent(new AgentClient({ ...o, agent: o.agent }), { json });
    requireRoot('status');
    status({ allNamespaces: o.allNamespaces, json });
  });

  program
    .command('unload')
    .description('detach and remove the pinned filters of this network namespace')
    .option('--iface <name>', 'only the filter on this interface')
    .option('--all', 'every pinned filter in scope (needed when there is more than one)')
    .option('--all-namespaces', 'act on the pinned filters of every network namespace, not only this one\'s')
    .action((o: { iface?: string; all?: boolean; allNamespaces?: boolean }) => {
      requireRoot('unload');
      unload(o);
    });
}
