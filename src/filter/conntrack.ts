// SPDX-License-Identifier: Apache-2.0
// The stateful filter's flows as people read them (`ebpfnet filter conntrack`, like conntrack -L):
// addresses in the host's view, the state, and how long until the flow expires, from the kernel's
// flt_ct entries, its flt_ct_cfg timeouts and the clock the program reads. Pure.
import { EbpfnetError } from '../errors.js';
import * as F from '../gen/filter.js';
import { ctStateOf, ctTimeoutSeconds, ctWindowsOf, type CtFlow, type CtKey, type CtState } from './model.js';
import { ipv6Text } from '../loader/ip.js';

export interface FlowView {
  family: 4 | 6;
  proto: string;
  /** this host's address and port (for ICMP echo: the echo identifier) */
  local: string;
  remote: string;
  state: CtState | 'unknown';
  /** who opened it: this host, or the far side (a connection an allow rule let in) */
  openedBy: 'local' | 'remote';
  /** the side that did not open it has answered */
  replied: boolean;
  lastSeenSecondsAgo: number;
  expiresInSeconds: number;
}

const PROTO_NAMES: Record<number, string> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmpv6' };

function endpoint(family: 4 | 6, addr: Uint8Array, port: number, proto: number): string {
  // the key holds IPv4 in its first 4 bytes (not mapped), IPv6 in all 16
  const a = family === 4 ? addr.subarray(0, 4).join('.') : ipv6Text(addr.subarray(0, 16));
  if (proto === 1 || proto === 58) return port ? `${a} id ${port}` : a;
  return family === 6 ? `[${a}]:${port}` : `${a}:${port}`;
}

/**
 * The live flows of a table, most recently seen first. `now`: the tracker's clock in ns
 * (CLOCK_MONOTONIC, which the program reads at tick resolution; flt_ct_cfg.now when set, in tests).
 * Expired entries are left out: the program treats them as absent.
 */
export function flowViews(entries: Array<[F.FltCtKey, F.FltCtVal]>, cfg: F.FltCtCfg, now: bigint): FlowView[] {
  const clock = cfg.now ? cfg.now : now;
  const out: Array<FlowView & { seen: bigint }> = [];
  for (const [k, v] of entries) {
    const family = k.family === F.FLT_FAMILY_V6 ? 6 : 4;
    const state = ctStateOf(v.state);
    const replied = (v.flags & F.FLT_CT_F_REPLIED) !== 0;
    const age = clock > v.last_seen ? Number(clock - v.last_seen) / 1e9 : 0;
    const ttl = state ? ctTimeoutSeconds(state, replied, cfg) - age : 0;
    if (state && ttl <= 0) continue;
    out.push({
      family,
      proto: PROTO_NAMES[k.proto] ?? String(k.proto),
      local: endpoint(family, k.laddr, k.lport, k.proto),
      remote: endpoint(family, k.raddr, k.rport, k.proto),
      state: state ?? 'unknown',
      openedBy: v.flags & F.FLT_CT_F_ORIG_REMOTE ? 'remote' : 'local',
      replied,
      lastSeenSecondsAgo: Math.round(age * 10) / 10,
      expiresInSeconds: Math.max(0, Math.round(ttl)),
      seen: v.last_seen,
    });
  }
  return out.sort((a, b) => (a.seen > b.seen ? -1 : a.seen < b.seen ? 1 : 0)).map(({ seen: _, ...f }) => f);
}

const bytesOf = (v: bigint, family: 4 | 6): Uint8Array => {
  const out = new Uint8Array(16);
  const n = family === 4 ? 4 : 16;
  for (let i = 0; i < n; i++) out[i] = Number((v >> BigInt((n - 1 - i) * 8)) & 0xffn);
  return out;
};

/** A page of a table's flows: the `limit` most recently seen after skipping `offset`; `total`: all live flows. */
export interface FlowPage {
  limit?: number;
  offset?: number;
}
/**
 * One page bound (`limit` from 1, `offset` from 0) as typed by a user, up to the largest table: the
 * CLI's --limit/--offset and the API's ?limit=&offset= share it. `name` is how the caller spells it.
 */
export function parsePageNumber(name: string, v: string | undefined, min: 0 | 1): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!/^\d+$/.test(v) || x < min || x > F.FLT_CT_SIZE_MAX) {
    throw new EbpfnetError('EBPFNET_USAGE', `parse ${name}`, `'${v}' is not a whole number from ${min} to ${F.FLT_CT_SIZE_MAX}`, { hint: 'page with a limit of 1 or more and an offset of 0 or more' });
  }
  return x;
}
export function pageFlows(flows: FlowView[], page: FlowPage = {}): { total: number; flows: FlowView[] } {
  const from = page.offset ?? 0;
  return { total: flows.length, flows: page.limit === undefined && !from ? flows : flows.slice(from, page.limit === undefined ? undefined : from + page.limit) };
}

/** The kernel's flt_ct key of a model key (IPv4 in the first 4 bytes). */
export function ctKernelKey(k: CtKey): F.FltCtKey {
  return { laddr: bytesOf(k.laddr, k.family), raddr: bytesOf(k.raddr, k.family), lport: k.lport, rport: k.rport, proto: k.proto, family: k.family === 6 ? F.FLT_FAMILY_V6 : F.FLT_FAMILY_V4 };
}

/** A kernel flt_ct value as the model's flow; null for a state this release does not know. */
export function ctFlowOf(v: F.FltCtVal): CtFlow | null {
  const state = ctStateOf(v.state);
  if (!state) return null;
  const f = (bit: number): boolean => (v.flags & bit) !== 0;
  return { state, origRemote: f(F.FLT_CT_F_ORIG_REMOTE), replied: f(F.FLT_CT_F_REPLIED), finLocal: f(F.FLT_CT_F_FIN_LOCAL), finRemote: f(F.FLT_CT_F_FIN_REMOTE), lastSeen: v.last_seen, tcp: ctWindowsOf(v) };
}

/** `tcp 10.0.0.2:40000 <-> 10.0.0.1:443, established, opened by this host`: one flow in a sentence. */
export const flowText = (f: FlowView): string => `${f.proto} ${f.local} <-> ${f.remote}, ${f.state.replace('_', ' ')}, opened by ${f.openedBy === 'local' ? 'this host' : 'the far side'}`;
