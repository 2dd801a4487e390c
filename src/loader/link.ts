// SPDX-License-Identifier: Apache-2.0
// Link: one attachment of a program to a hook. Closing an unpinned link detaches it; closing a
// pinned one only drops our reference, and the pin keeps it attached until unpinned.
import { rmSync } from 'node:fs';
import { kernelError } from '../errors.js';
import { libbpf } from '../libbpf/index.js';
import { check, closeFd } from './fd.js';
import { track, untrack, type Closable } from './guard.js';

export type XdpMode = 'native' | 'generic';

/** An attachment of a program to a hook; close() detaches it unless it is pinned. */
export class Link implements Closable {
  /** what it is attached to, for messages: `xdp on eth0`, `tracepoint syscalls/sys_enter_mkdir` */
  readonly target: string;
  private fdv: number;
  /** a libbpf `struct bpf_link *` when libbpf made the link (tracepoints, cgroups) */
  private ptr: unknown;
  private pinnedAt: string | null = null;

  /** @internal links come from the attach methods of BpfProgram and from openPinnedLink() */
  constructor(target: string, fd: number, ptr: unknown = null) {
    this.target = target;
    this.fdv = fd;
    this.ptr = ptr;
    track(this);
  }

  get fd(): number {
    return this.fdv;
  }

  get pinned(): string | null {
    return this.pinnedAt;
  }

  get closed(): boolean {
    return this.fdv < 0;
  }

  /** Keeps the attachment after this process exits, until `unpin()` or `rm` of the path. */
  pin(path: string): void {
    check(`pin link ${this.target} at ${path}`, libbpf().bpf_obj_pin(this.fdv, path));
    this.pinnedAt = path;
  }

  /** Removes the pin: the link then lives only as long as this object. */
  unpin(): void {
    if (this.pinnedAt) rmSync(this.pinnedAt, { force: true });
    this.pinnedAt = null;
  }

  /** Detach now, even if pinned (the pin is removed too). */
  detach(): void {
    if (this.fdv < 0) return;
    this.unpin();
    const rc = libbpf().bpf_link_detach(this.fdv);
    // EINVAL/EOPNOTSUPP: a link type without explicit detach; closing the last fd detaches it.
    if (rc < 0 && rc !== -22 && rc !== -95) throw kernelError(`detach ${this.target}`, -rc);
    this.close();
  }

  /** Drops this reference: detaches an unpinned link, leaves a pinned one attached. */
  close(): void {
    if (this.fdv < 0) return;
    const b = libbpf();
    if (this.ptr) {
      if (this.pinnedAt) b.bpf_link__disconnect(this.ptr as never);
      const rc = b.bpf_link__destroy(this.ptr as never);
      this.ptr = null;
      this.fdv = -1;
      untrack(this);
      if (rc < 0) throw kernelError(`detach ${this.target}`, -rc);
      return;
    }
    closeFd(this.fdv);
    this.fdv = -1;
    untrack(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** An XDP attachment: the interface and the mode (native or generic) it got. */
export class XdpLink extends Link {
  readonly ifname: string;
  readonly ifindex: number;
  readonly mode: XdpMode;
  /** @internal made by BpfProgram.attachXdp() */
  constructor(ifname: string, ifindex: number, mode: XdpMode, fd: number) {
    super(`xdp on ${ifname}`, fd);
    this.ifname = ifname;
    this.ifindex = ifindex;
    this.mode = mode;
  }
}

/** struct bpf_link_info, the fields we read (include/uapi/linux/bpf.h). */
export interface LinkInfo {
  type: number;
  id: number;
  progId: number;
  /** cgroup links: the cgroup's id (its inode number in cgroup v2) and the attach type */
  cgroupId?: bigint;
  attachType?: number;
  /** XDP and TCX links: the interface, 0 once it is gone (the kernel detached the link) */
  ifindex?: number;
}

/** enum bpf_link_type, the ones we read */
export const LINK_TYPE = { CGROUP: 3, XDP: 6, TCX: 11 } as const;

export function linkInfo(fd: number): LinkInfo {
  const buf = Buffer.alloc(64);
  const len = [buf.length];
  check('read link info', libbpf().bpf_obj_get_info_by_fd(fd, buf, len));
  const info: LinkInfo = { type: buf.readUInt32LE(0), id: buf.readUInt32LE(4), progId: buf.readUInt32LE(8) };
  // the union starts at offset 16 (8-byte aligned)
  if (info.type === LINK_TYPE.CGROUP) {
    info.cgroupId = buf.readBigUInt64LE(16);
    info.attachType = buf.readUInt32LE(24);
  }
  if (info.type === LINK_TYPE.XDP || info.type === LINK_TYPE.TCX) info.ifindex = buf.readUInt32LE(16);
  return info;
}

/** Opens a link pinned in bpffs (to detach or inspect it from another process). */
export function openPinnedLink(path: string, target = path): Link {
  const fd = libbpf().bpf_obj_get(path);
  if (fd < 0) throw kernelError(`open pinned link ${path}`, -fd, -fd === 2 ? 'nothing is pinned there' : undefined);
  const l = new Link(target, fd);
  (l as unknown as { pinnedAt: string }).pinnedAt = path;
  return l;
}
