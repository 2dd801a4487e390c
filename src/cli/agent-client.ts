// SPDX-License-Identifier: Apache-2.0
// `--agent URL`: the CLI's filter and lb commands acting through a running agent instead of
// loading programs themselves. Input is still parsed here first (the same grammar, so a typo is
// exit 2 before any request); the agent's answer, good or bad, is printed as one line, and an
// error from the agent keeps its code, so the exit status is the one the same error has locally.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { FilterView } from '../agent/agent.js';
import type { LbServiceView, LbView } from '../agent/lb.js';
import { DEFAULT_STATE_DIR, tokenPath } from '../agent/store.js';
import { isLoopback } from '../agent/token.js';
import { ERROR_CODES, EbpfnetError, type ErrorCode } from '../errors.js';
import type { FlowView } from '../filter/conntrack.js';
import { sshLockout } from '../filter/lockout.js';
import type { Policy } from '../filter/policy.js';
import { formatMatch } from '../filter/rules.js';
import { serviceEntry } from '../lb/file.js';
import type { ServiceSpec } from '../lb/model.js';
import type { ServiceView } from '../lb/view.js';
import { printJson } from './output.js';
import { table } from './present.js';

export interface AgentOptions {
  agent?: string;
  token?: string;
  tokenFile?: string;
}

/** Adds --agent, --token and --token-file to a command. */
export function withAgentOptions(c: Command): Command {
  return c
    .option('--agent <url>', 'act through a running ebpfnet agent (e.g. http://127.0.0.1:9900) instead of loading programs here')
    .option('--token <token>', "the agent's bearer token (default: $EBPFNET_TOKEN, else the token file)")
    .option('--token-file <file>', `read the agent's token from this file (default: ${tokenPath(DEFAULT_STATE_DIR)})`);
}

/** A running agent, and the token its writes need. */
export class AgentClient {
  readonly base: URL;
  private readonly token: string | null;

  constructor(o: AgentOptions & { agent: string }) {
    let url: URL;
    try {
      url = new URL(o.agent);
    } catch {
      throw new EbpfnetError('EBPFNET_USAGE', 'parse --agent', `'${o.agent}' is not a URL`, { hint: 'for example --agent http://127.0.0.1:9900' });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EbpfnetError('EBPFNET_USAGE', 'parse --agent', `'${o.agent}' is not an http:// or https:// URL`, { hint: 'for example --agent http://127.0.0.1:9900' });
    this.base = url;
    this.token = o.token ?? process.env.EBPFNET_TOKEN ?? readToken(o.tokenFile);
  }

  /** The agent runs on this machine: its interfaces are ours (the SSH lockout check means something). */
  get local(): boolean {
    return isLoopback(this.base.hostname.replace(/^\[|\]$/g, ''));
  }

  /** One request; an error answer becomes the agent's own EbpfnetError. */
  async call<T>(method: string, path: string, body?: unknown, ifMatch?: string): Promise<{ body: T; etag: string | null; status: number }> {
    const url = new URL(path.replace(/^\//, ''), this.base.href.endsWith('/') ? this.base : `${this.base.href}/`);
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (ifMatch) headers['if-match'] = ifMatch;
    const where = `agent ${this.base.host}`;
    let res: Response;
    try {
      res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
    } catch (e) {
      const c = (e as { cause?: { code?: string; message?: string } }).cause;
      const cause = c?.code ?? c?.message ?? (e as Error).message;
      throw new EbpfnetError('EBPFNET_NOT_FOUND', where, `cannot reach ${this.base.origin} (${cause})`, { hint: 'is the agent running there? start it with: sudo ebpfnet agent', cause: e });
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      throw new EbpfnetError('EBPFNET_KERNEL', where, `${method} ${url.pathname} answered ${res.status} with something that is not JSON`, { hint: `is ${this.base.origin} an ebpfnet agent?` });
    }
    if (!res.ok) {
      const e = parsed as { code?: string; message?: string } | null;
      const code = e?.code && e.code in ERROR_CODES ? (e.code as ErrorCode) : codeFor(res.status);
      const hint = res.status === 401 && !this.token ? 'pass --token, set EBPFNET_TOKEN, or --token-file (the token is in the agent\'s state directory)' : undefined;
      throw new EbpfnetError(code, where, e?.message ?? `${method} ${url.pathname}: HTTP ${res.status}`, { hint });
    }
    return { body: parsed as T, etag: res.headers.get('etag'), status: res.status };
  }
}

function readToken(file: string | undefined): string | null {
  const path = file ?? tokenPath(DEFAULT_STATE_DIR);
  try {
    return readFileSync(path, 'utf8').trim() || null;
  } catch (e) {
    // the default file may simply not be there (or not readable): reads work without a token
    if (file === undefined) return null;
    throw new EbpfnetError('EBPFNET_USAGE', 'read --token-file', `${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { hint: 'the token is the file `token` in the agent\'s state directory (readable by root)' });
  }
}

/** A status without an ebpfnet error code (a proxy in the way): the code of the same status. */
function codeFor(status: number): ErrorCode {
  const hit = (Object.keys(ERROR_CODES) as ErrorCode[]).find((c) => ERROR_CODES[c].http === status);
  return hit ?? (status < 500 ? 'EBPFNET_USAGE' : 'EBPFNET_KERNEL');
}

const say = (s: string): void => void process.stdout.write(`${s}\n`);

// ---- the filter through the agent ----

/** Flags that load programs here mean nothing through an agent: say so rather than ignore them. */
export function refuseLocalFlags(cmd: string, o: object, flags: Record<string, string>): void {
  const set = o as Record<string, unknown>;
  const given = Object.keys(flags).find((k) => set[k] !== undefined && set[k] !== false);
  if (given) throw new EbpfnetError('EBPFNET_USAGE', cmd, `${flags[given]} does not go with --agent`, { hint: 'the agent loads and attaches the datapaths itself' });
}

const rulesOf = (p: Policy): Array<{ action: 'allow' | 'deny'; match: string }> => p.rules.map((r) => ({ action: r.action, match: formatMatch(r) }));

/**
 * `filter --agent URL`: the policy replaces the agent's (on --iface, or on the interfaces it filters
 * now), based on the revision just read, so a concurrent change is a 412 rather than lost. With
 * --add the rules are added one by one instead.
 */
export async function filterThroughAgent(c: AgentClient, policy: Policy, o: { iface: string[]; add?: boolean; force?: boolean; defaultGiven: boolean }): Promise<void> {
  if (o.add) {
    if (o.defaultGiven || policy.audit || o.iface.length) throw new EbpfnetError('EBPFNET_USAGE', 'filter --add', '--add takes rules only', { hint: 'to change the default, audit or interfaces, replace the policy (leave out --add)' });
    for (const r of rulesOf(policy)) {
      const { body } = await c.call<{ id: number; action: string; match: string }>('POST', '/v1/filter/rules', r);
      say(`agent: added rule #${body.id}: ${body.action} ${body.match}`);
    }
    return;
  }
  const cur = await c.call<FilterView>('GET', '/v1/filter');
  const ifnames = o.iface.length ? o.iface : cur.body.interfaces;
  const lock = o.force || !c.local ? null : sshLockout(policy, ifnames);
  if (lock) {
    throw new EbpfnetError('EBPFNET_USAGE', 'filter', `this policy would drop your own SSH session on ${lock.ifname} (${lock.packet} matches '${lock.rule}')`, {
      hint: 'allow it first (e.g. --allow "tcp/22 from <your address>") or add --force',
    });
  }
  const body = { ...(o.iface.length ? { interfaces: o.iface } : {}), rules: rulesOf(policy), default: policy.default, audit: policy.audit };
  const { body: v } = await c.call<FilterView>('PUT', '/v1/filter', body, cur.etag ?? undefined);
  say(`agent: filter revision ${v.revision} on ${v.interfaces.join(', ') || 'no interface'}: ${v.rules.map((r) => `#${r.id} ${r.action} ${r.match}`).join(', ') || 'no rules'}; default ${v.default}${v.audit ? ' (audit: nothing is dropped)' : ''}; connection state ${v.stateful ? 'on' : 'off'}`);
}

interface StatsView {
  revision: number;
  interfaces: Array<{ interface: string; attachment: string; stateful?: boolean; rules: Array<{ id: number | null; action: string; match: string; packets: number; bytes: number }>; default: { pass: { packets: number; bytes: number }; drop: { packets: number; bytes: number } } }>;
}

/** `status --agent URL`: the agent's filter counters per interface and rule. */
export async function statusThroughAgent(c: AgentClient, o: { json?: boolean } = {}): Promise<void> {
  const { body } = await c.call<StatsView>('GET', '/v1/filter/stats');
  // the API's document as it is, with where it came from
  if (o.json) return printJson({ agent: c.base.origin, ...body });
  if (!body.interfaces.length) {
    say(`agent: revision ${body.revision}: no interfaces filtered`);
    return;
  }
  const rows: string[][] = [];
  for (const i of body.interfaces) {
    for (const r of i.rules) rows.push([i.interface, r.id === null ? '-' : `#${r.id}`, `${r.action} ${r.match}`, String(r.packets), String(r.bytes)]);
    rows.push([i.interface, '-', 'allow default', String(i.default.pass.packets), String(i.default.pass.bytes)]);
    rows.push([i.interface, '-', 'deny default', String(i.default.drop.packets), String(i.default.drop.bytes)]);
  }
  const state = (i: StatsView['interfaces'][number]): string => (i.stateful === undefined ? '' : i.stateful ? ', stateful' : ', stateless');
  say(`agent: revision ${body.revision}: ${body.interfaces.map((i) => `${i.interface} (${i.attachment}${state(i)})`).join(', ')}`);
  say(table(['interface', 'id', 'rule', 'packets', 'bytes'], rows));
}

/** `filter conntrack --agent URL`: the agent's flows, the document `filter conntrack -o json` prints. */
export async function conntrackThroughAgent(c: AgentClient, o: { iface?: string; limit?: number; offset?: number }): Promise<{ interfaces: Array<{ interface: string; stateful: boolean; total: number; flows: FlowView[] }> }> {
  const q = new URLSearchParams();
  if (o.iface) q.set('interface', o.iface);
  if (o.limit !== undefined) q.set('limit', String(o.limit));
  if (o.offset) q.set('offset', String(o.offset));
  const qs = q.size ? `?${q}` : '';
  return (await c.call<{ interfaces: Array<{ interface: string; stateful: boolean; total: number; flows: FlowView[] }> }>('GET', `/v1/filter/conntrack${qs}`)).body;
}

// ---- the balancer through the agent ----

/** The API's service as `lb list` shows a local one. */
export const serviceViewOf = (s: LbServiceView): ServiceView => ({
  service: s.id,
  proto: s.proto,
  id: 0,
  rev: 0,
  affinity: s.affinity,
  slots: s.slots,
  conns: BigInt(s.connections),
  rejects: BigInt(s.rejects),
  affinityHits: 0n,
  misses: 0n,
  backends: s.backends.map((b, i) => ({ id: i + 1, backend: b.address, weight: b.weight, state: b.state, slots: b.slots, share: b.share, conns: BigInt(b.connections) })),
});

const serviceUrl = (name: string): string => `/v1/lb/services/${encodeURIComponent(name)}`;

export const lbThroughAgent = {
  list: (c: AgentClient): Promise<LbView> => c.call<LbView>('GET', '/v1/lb/services').then((r) => r.body),
  /** creates or replaces; `created` tells which */
  async add(c: AgentClient, spec: ServiceSpec): Promise<{ created: boolean; view: ServiceView }> {
    const { affinity, backends } = serviceEntry(spec);
    const r = await c.call<LbServiceView>('PUT', serviceUrl(spec.name), { affinity, backends });
    return { created: r.status === 201, view: serviceViewOf(r.body) };
  },
  del: (c: AgentClient, name: string): Promise<unknown> => c.call('DELETE', serviceUrl(name)),
  apply: (c: AgentClient, specs: ServiceSpec[]): Promise<LbView> => c.call<LbView>('PUT', '/v1/lb/services', { services: specs.map(serviceEntry) }).then((r) => r.body),
};
