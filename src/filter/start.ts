// SPDX-License-Identifier: Apache-2.0
// Starting a filter on an interface, as one step: load (sized for the policy), apply, attach, and
// pin when asked; when any part fails, nothing of it is left (program, link, pins). `ebpfnet
// filter` and the agent both start filters through here, so they size and roll back alike.
import { EbpfnetError } from '../errors.js';
import { detachXdp, ifindex, xdpAttachment, type XdpMode } from '../loader/index.js';
import { CT_DEFAULT_MAX, CT_MIN } from './ct-table.js';
import { FilterDatapath, type Hook, type PinResult } from './datapath.js';
import type { Policy } from './policy.js';

export interface StartOptions {
  hook: Hook;
  mode: XdpMode | 'auto';
  /** pin it, so it outlives this process */
  pin: boolean;
  /** rules to leave counter slots for beyond the policy's (the agent's maxRules / 2: room to grow
   * without a reload); the filter holds at least the policy's */
  room?: number;
  /** XDP: detach another program attached there first (`filter --replace`) */
  replace?: boolean;
  /** track connections: replies to what the host opened pass (a tc egress program records it) */
  stateful?: boolean;
  /** the connection table's size in flows (default CT_DEFAULT_MAX); a stateless filter's table is
   * the smallest, since nothing writes it */
  ctMax?: number;
  /** state may be switched on later (the agent's filter.stateful, PUT /v1/filter): size the table as if stateful */
  switchable?: boolean;
}

export interface StartedFilter {
  datapath: FilterDatapath;
  /** where it was pinned; null when not asked to pin */
  pinned: PinResult | null;
}

/** Loads, applies, attaches and (opts.pin) pins a filter on `ifname`; all or nothing. */
export function startFilter(ifname: string, policy: Policy, opts: StartOptions): StartedFilter {
  try {
    ifindex(ifname);
  } catch (e) {
    throw new EbpfnetError('EBPFNET_NOT_FOUND', `filter ${ifname}`, 'no such interface', { hint: 'list interfaces with: ip link', cause: e });
  }
  if (opts.hook === 'xdp' && opts.replace && xdpAttachment(ifname)) detachXdp(ifname);
  // nothing writes a stateless filter's table unless state may be switched on later (the agent,
  // which also adopts pinned filters)
  const ctMax = opts.stateful || opts.switchable || opts.pin ? (opts.ctMax ?? CT_DEFAULT_MAX) : CT_MIN;
  const d = FilterDatapath.load(ifname, { maxRules: FilterDatapath.capacityFor(Math.max(policy.rules.length, opts.room ?? 0)), ctMax });
  let pinning = false;
  try {
    d.apply(policy);
    d.attach({ hook: opts.hook, mode: opts.mode, stateful: opts.stateful });
    if (!opts.pin) return { datapath: d, pinned: null };
    pinning = true;
    return { datapath: d, pinned: d.pin() };
  } catch (e) {
    // a pin that failed part way leaves some pins: remove them, except after EXISTS (the pins
    // there are someone else's) and PRIVATE_MOUNTS (nothing was pinned)
    const notOurs = e instanceof EbpfnetError && (e.code === 'EBPFNET_EXISTS' || e.code === 'EBPFNET_PRIVATE_MOUNTS');
    if (pinning && !notOurs) FilterDatapath.unload(ifname);
    d.close();
    throw e;
  }
}

/** Undoes a startFilter of this process: unpins what it pinned, detaches, closes. */
export function undoStart(s: StartedFilter): void {
  if (s.pinned) FilterDatapath.unload(s.datapath.ifname);
  s.datapath.close();
}
