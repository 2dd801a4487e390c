// SPDX-License-Identifier: Apache-2.0
// Tunnel devices of this network namespace that no ebpfnet filter covers, asked of the kernel:
// an interface is covered when the filter's XDP program or its tc program is attached there now,
// by whichever process (a pinned filter, a foreground `ebpfnet filter`, the agent).
import { EbpfnetError } from '../errors.js';
import * as F from '../gen/filter.js';
import { netInterfaces, progName, tcxIngressProgIds, xdpAttachment, type NetInterface } from '../loader/index.js';
import { isTunnel, tunnelWarnings } from './ifaces.js';

/** Whether the filter runs on this interface; null when the kernel would not say (not root). */
function hasFilter(i: NetInterface): boolean | null {
  try {
    if (xdpAttachment(i.name)?.name === F.PROG_FILTER_XDP.name) return true;
    return tcxIngressProgIds(i.ifindex).some((id) => progName(id) === F.PROG_FILTER_TC.name);
  } catch (e) {
    if (e instanceof EbpfnetError && (e.code === 'EBPFNET_PERMISSION' || e.code === 'EBPFNET_NOT_FOUND')) return e.code === 'EBPFNET_NOT_FOUND' ? true : null;
    throw e;
  }
}

/** One warning line per uncovered tunnel device, and a note when some could not be checked. */
export function tunnelReport(): string[] {
  let ifaces: NetInterface[];
  try {
    ifaces = netInterfaces();
  } catch (e) {
    // a report about coverage must not hide the rest of status or doctor
    return [`note: tunnel devices not checked: ${(e as Error).message}`];
  }
  const tunnels = ifaces.filter(isTunnel);
  const filtered = new Set<string>();
  const unknown: string[] = [];
  for (const t of tunnels) {
    const has = hasFilter(t);
    if (has === null) unknown.push(t.name);
    // gone since the listing (NOT_FOUND): nothing to warn about
    if (has !== false) filtered.add(t.name);
  }
  const lines = tunnelWarnings(tunnels, filtered);
  if (unknown.length) lines.push(`note: tunnel devices not checked for an ebpfnet filter (needs root): ${unknown.join(', ')}`);
  return lines;
}
