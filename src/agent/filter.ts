// SPDX-License-Identifier: Apache-2.0
// How the agent reaches the filter datapath. The kernel backend drives FilterDatapath through its
// public methods only; unit tests hand the agent an in-memory backend instead, so the agent and the
// API are tested without root.
import { EbpfnetError } from '../errors.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FilterDatapath, type FilterCounters, type Hook, type MapFill } from '../filter/datapath.js';
import { filterSite, migrateOldPins } from '../filter/pins.js';
import type { Policy } from '../filter/policy.js';
import type { IfaceFact } from '../filter/ifaces.js';
import { ifindex, interfaceExists, linkInfo, netInterfaces, openPinnedLink, progInfo, watchInterfaces, type ProgInfo } from '../loader/index.js';
import type { AttachMode } from './config.js';

export interface FilterHandle {
  readonly ifname: string;
  /** the hook and mode it runs in, e.g. `xdp native` */
  readonly attachment: string;
  apply(policy: Policy): void;
  counters(opts?: { countedOnlyAbove?: number }): FilterCounters;
  /** the attached program's run count and time (null: none attached) */
  programInfo(): ProgInfo | null;
  mapFill(): MapFill[];
  /** drops this process's references; the pinned filter stays */
  close(): void;
}

/** The interfaces there are, and news of changes to them (for globs and `all`). */
export interface LinkSource {
  /** every interface: a listing (for globs and `all`) */
  list(): IfaceFact[];
  /** whether one is there: a cheap check for plain names */
  exists(name: string): boolean;
  /** calls onChange after interfaces or their addresses changed */
  watch(onChange: () => void, onError: (e: Error) => void): { close(): void };
}

export interface FilterBackend {
  /** where interface patterns are resolved; without one, only plain names work (and nothing is watched) */
  readonly links?: LinkSource;
  /** a filter for this interface is pinned (left by an earlier agent or `filter --pin`) */
  pinned(ifname: string): boolean;
  adopt(ifname: string): FilterHandle;
  /** load, apply, attach and pin, or leave nothing behind */
  create(ifname: string, policy: Policy, opts: { hook: Hook; mode: AttachMode; maxRules: number }): FilterHandle;
  unload(ifname: string): void;
  /** moves pins of an older layout into today's (lines saying so); before the first pinned() */
  migrate?(): string[];
}

/** The id of the program a filter runs: through its own link, or the pinned one (adopted). */
function programId(d: FilterDatapath): number | null {
  const own = d.attached;
  if (own && !own.closed) return linkInfo(own.fd).progId;
  const pin = d.pinDir && join(d.pinDir, 'link');
  if (!pin || !existsSync(pin)) return null;
  const l = openPinnedLink(pin, `filter on ${d.ifname}`);
  try {
    return linkInfo(l.fd).progId;
  } finally {
    l.close();
  }
}

function wrap(d: FilterDatapath): FilterHandle {
  // the program behind a link never changes while the link exists: look it up once
  let progId: number | null = null;
  return {
    ifname: d.ifname,
    get attachment() {
      return d.hook === 'tc' ? 'tc ingress' : `xdp ${d.mode}`;
    },
    apply: (p) => void d.apply(p),
    counters: (opts) => d.counters(opts),
    programInfo() {
      progId ??= programId(d);
      return progId === null ? null : progInfo(progId);
    },
    mapFill: () => d.mapFill(),
    close: () => d.close(),
  };
}

export const kernelFilters: FilterBackend = {
  links: { list: netInterfaces, exists: interfaceExists, watch: (onChange, onError) => watchInterfaces(onChange, { onError }) },
  pinned: (ifname) => FilterDatapath.pinnedHere(ifname),
  adopt: (ifname) => wrap(FilterDatapath.adopt(ifname)),
  create(ifname, policy, opts) {
    try {
      ifindex(ifname);
    } catch (e) {
      throw new EbpfnetError('EBPFNET_NOT_FOUND', `filter ${ifname}`, 'no such interface', { hint: 'list interfaces with: ip link', cause: e });
    }
    const d = FilterDatapath.load(ifname, { maxRules: FilterDatapath.capacityFor(Math.max(policy.rules.length, opts.maxRules / 2)) });
    try {
      d.apply(policy);
      d.attach({ hook: opts.hook, mode: opts.mode });
      d.pin();
    } catch (e) {
      // an EXISTS from pin() means someone else's pins are there: never remove those; after
      // PRIVATE_MOUNTS nothing was pinned
      if (!(e instanceof EbpfnetError && (e.code === 'EBPFNET_EXISTS' || e.code === 'EBPFNET_PRIVATE_MOUNTS'))) FilterDatapath.unload(ifname);
      d.close();
      throw e;
    }
    return wrap(d);
  },
  unload: (ifname) => void FilterDatapath.unload(ifname),
  migrate() {
    try {
      const fs = filterSite('agent');
      return fs ? migrateOldPins(fs) : [];
    } catch (e) {
      // the host's pins out of reach (ip netns exec): a filter's pin() refuses with the reason
      if (e instanceof EbpfnetError && e.code === 'EBPFNET_PRIVATE_MOUNTS') return [];
      throw e;
    }
  },
};
