// SPDX-License-Identifier: Apache-2.0
// What is attached to an interface's XDP hook, and removing it (for --replace and unload).
import { kernelError } from '../errors.js';
import { libbpf, sizeof, XdpQueryOpts } from '../libbpf/index.js';
import { closeFd } from './fd.js';
import { ATTACH, XDP_FLAGS } from './kinds.js';
import { progInfo } from './stats.js';
import { ifindex as ifindexOf } from './system.js';

export interface XdpAttachment {
  id: number;
  name: string;
  mode: 'native' | 'generic' | 'offload';
}

const XDP_ATTACHED = { 1: 'native', 2: 'generic', 3: 'offload' } as const;

/** A program's name (bpf_prog_info.name) for messages; `id N` when it cannot be read. */
export const progName = (id: number): string => progInfo(id)?.name || `id ${id}`;

export function xdpAttachment(ifname: string): XdpAttachment | null {
  const opts = { sz: sizeof(XdpQueryOpts), prog_id: 0, drv_prog_id: 0, hw_prog_id: 0, skb_prog_id: 0, attach_mode: 0 };
  const rc = libbpf().bpf_xdp_query(ifindexOf(ifname), 0, opts);
  if (rc < 0) throw kernelError(`query XDP on ${ifname}`, -rc);
  if (!opts.prog_id) return null;
  const mode = XDP_ATTACHED[opts.attach_mode as 1 | 2 | 3] ?? 'native';
  return { id: opts.prog_id, name: progName(opts.prog_id), mode };
}

/** Removes whatever XDP program is on the interface, whether attached through a link or not. */
export function detachXdp(ifname: string): void {
  const ifindex = ifindexOf(ifname);
  const b = libbpf();
  const on = xdpAttachment(ifname);
  if (!on) return;
  // A link owns its attachment: find it among all links and detach it. Links of every network
  // namespace are listed and an ifindex is only unique within one, so the link must also run the
  // program attached here (else another namespace's link on the same ifindex would go instead).
  const next = [0];
  let id = 0;
  while (b.bpf_link_get_next_id(id, next) === 0) {
    id = next[0];
    const fd = b.bpf_link_get_fd_by_id(id);
    if (fd < 0) continue;
    try {
      const info = Buffer.alloc(64);
      const len = [info.length];
      // struct bpf_link_info: type (6 = XDP) at 0, prog_id at 8, the union (xdp.ifindex) at 16
      if (b.bpf_obj_get_info_by_fd(fd, info, len) === 0 && info.readUInt32LE(0) === 6 && info.readUInt32LE(8) === on.id && info.readUInt32LE(16) === ifindex) {
        const rc = b.bpf_link_detach(fd);
        if (rc < 0) throw kernelError(`detach the XDP link on ${ifname}`, -rc);
        return;
      }
    } finally {
      closeFd(fd);
    }
  }
  for (const flags of [XDP_FLAGS.DRV_MODE, XDP_FLAGS.SKB_MODE]) {
    const rc = b.bpf_xdp_detach(ifindex, flags, null);
    if (rc < 0 && rc !== -22) throw kernelError(`detach XDP from ${ifname}`, -rc);
  }
}

/** Ids of the programs on an interface's TCX ingress hook (of this network namespace). */
export const tcxIngressProgIds = (ifindex: number): number[] => tcxProgIds(ifindex, 'ingress');

/** Ids of the programs on an interface's TCX ingress or egress hook (of this network namespace). */
export function tcxProgIds(ifindex: number, direction: 'ingress' | 'egress'): number[] {
  const ids = Buffer.alloc(64 * 4);
  const cnt = [64];
  const rc = libbpf().bpf_prog_query(ifindex, direction === 'egress' ? ATTACH.TCX_EGRESS : ATTACH.TCX_INGRESS, 0, [0], ids, cnt);
  // EINVAL: a kernel older than TCX (6.6) knows no such attach type, so nothing can be there
  if (rc === -22) return [];
  // ENOSPC: more than 64 programs there; the first 64 were copied, and that is plenty to look at
  if (rc < 0 && rc !== -28) throw kernelError(`query tc ${direction} programs on ifindex ${ifindex}`, -rc);
  return Array.from({ length: Math.min(cnt[0], 64) }, (_, i) => ids.readUInt32LE(i * 4));
}
