// SPDX-License-Identifier: Apache-2.0
// Where pinned filters live, keyed by network namespace and interface index, and finding them.
//
//   /sys/fs/bpf/ebpfnet/filter/<netns inode>/<ifindex>/{flt_* maps and tables, link}
//   /run/ebpfnet/filter/<netns inode>/<ifindex>.{0,1}.json   (record.ts: rules, counter slots, the
//                                                             interface's name, the netns cookie)
//
// An interface name says nothing across namespaces (every container has an eth0), so a command
// acts on the filters of its own network namespace unless asked for all of them. Older releases
// pinned by name only (/sys/fs/bpf/ebpfnet/filter/<ifname>/); such pins are moved into this layout
// by the first command that runs in their namespace (rename(2) within the bpffs keeps every object).
import { existsSync, readdirSync, renameSync, rmSync, type Dirent } from 'node:fs';
import { dirname, join } from 'node:path';
import { LINK_TYPE, hostPath, ifname as nameOf, linkInfo, lookupIfindex, netnsCookie, netnsInode, netnsName, openPinnedLink, pinSite, pruneEmptyDirs, tcxIngressProgIds, withDir, xdpAttachment, type PinSite } from '../loader/index.js';
import { RecordWriter, STATE_ROOT, readRecord, removeRecord, type RecordIdentity } from './record.js';

/** A pinned filter, as found in bpffs. */
export interface PinnedFilter {
  /** inode of its network namespace; null for a pin of the old layout, whose namespace is unknown */
  netns: number | null;
  /** its interface's index in that namespace (0: unknown, an old-layout pin whose link is gone) */
  ifindex: number;
  /** the interface's name now (in this namespace), else as recorded */
  ifname: string;
  /** its pin directory, as this process reaches it */
  dir: string;
  /** its pin directory as the host sees it (for messages) */
  shownDir: string;
  /** the record's key (under the record root), null for an old-layout pin */
  key: string | null;
  /** in the caller's network namespace */
  local: boolean;
  /** its interface is gone (the kernel detached the filter): it filters nothing */
  gone: boolean;
  /** the `ip netns` name of its namespace, when /run/netns has one */
  nsName: string | null;
}

/** Where this process finds pinned filters and their records. */
export interface FilterSite {
  site: PinSite;
  /** /sys/fs/bpf/ebpfnet/filter as reached from here */
  pins: string;
  /** /run/ebpfnet/filter as reached from here */
  records: string;
  /** this process's network namespace */
  netns: number;
}

/** Where pinned filters are from here (see pinSite: null when nothing can be pinned anywhere). */
export function filterSite(op: string, opts: { create?: boolean } = {}): FilterSite | null {
  const site = pinSite(op, opts);
  return site && { site, pins: join(site.root, 'ebpfnet', 'filter'), records: site.prefix + STATE_ROOT, netns: netnsInode() };
}

export const recordKey = (netns: number, ifindex: number): string => `${netns}/${ifindex}`;

const isNumber = (s: string): boolean => /^[1-9][0-9]*$/.test(s);

function identity(key: string, records: string): RecordIdentity {
  try {
    const body = readRecord(key, records);
    return body ? (JSON.parse(body) as RecordIdentity) : {};
  } catch {
    return {};
  }
}

/** The ifindex a pinned link is attached to (0: its interface is gone), null when it has no link. */
function linkIfindex(dir: string): { ifindex: number; progId: number; xdp: boolean } | null {
  if (!existsSync(join(dir, 'link'))) return null;
  const l = openPinnedLink(join(dir, 'link'));
  try {
    const info = linkInfo(l.fd);
    return { ifindex: info.ifindex ?? 0, progId: info.progId, xdp: info.type === LINK_TYPE.XDP };
  } finally {
    l.close();
  }
}

/** A pin directory of the old layout holds pins itself; a namespace directory only directories. */
const oldLayout = (dir: string): boolean => entries(dir, true).some((e) => !e.isDirectory());

/** A directory's entries; none when it went away meanwhile (another command removed it). */
function entries(dir: string, types: true): Dirent[];
function entries(dir: string): string[];
function entries(dir: string, types?: true): Array<string | Dirent> {
  try {
    return types ? readdirSync(dir, { withFileTypes: true }) : readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** Whether the pinned link at `dir` is attached to interface `name` (index `here`) of this namespace. */
function runsHere(dir: string, name: string, here: number): boolean {
  const link = linkIfindex(dir);
  if (!link || link.ifindex !== here) return false;
  // indexes repeat across namespaces (every fresh one numbers from 1): the program must run here
  return link.xdp ? xdpAttachment(name)?.id === link.progId : tcxIngressProgIds(here).includes(link.progId);
}

/**
 * Moves old-layout pins (by interface name) of this network namespace into the layout by namespace
 * and ifindex. A pin is this namespace's when an interface of that name here has the index its link
 * is attached to and, for XDP, runs its program (program ids are unique on the machine). Returns
 * one line per pin moved.
 */
export function migrateOldPins(fs: FilterSite): string[] {
  if (!existsSync(fs.pins)) return [];
  const notes: string[] = [];
  const cookie = netnsCookie();
  for (const name of entries(fs.pins)) {
    const old = join(fs.pins, name);
    const here = lookupIfindex(name);
    const to = join(fs.pins, String(fs.netns), String(here));
    try {
      // another namespace's, or removed or moved by another command meanwhile: left alone
      if (!here || !oldLayout(old) || existsSync(to) || !runsHere(old, name, here)) continue;
      withDir(join(fs.pins, String(fs.netns)), () => renameSync(old, to));
    } catch {
      continue;
    }
    const body = readRecord(name, fs.records);
    if (body !== null) {
      const w = new RecordWriter(recordKey(fs.netns, here), fs.records);
      try {
        w.write([JSON.stringify({ ...(JSON.parse(body) as object), ifname: name, netnsCookie: cookie?.toString() })]);
      } finally {
        w.close();
      }
      removeRecord(name, fs.records);
    }
    notes.push(`${name}: moved its pins from ${hostPath(fs.site, old)} to ${hostPath(fs.site, to)} (pins are kept by network namespace and interface index now)`);
  }
  return notes;
}

/** Every pinned filter this process can see; `allNamespaces`: not only its own namespace's. */
export function listPins(fs: FilterSite, opts: { allNamespaces?: boolean } = {}): PinnedFilter[] {
  if (!existsSync(fs.pins)) return [];
  const out: PinnedFilter[] = [];
  const cookie = netnsCookie()?.toString();
  const names = new Map<number, string | null>();
  const nsName = (ino: number): string | null => {
    if (!names.has(ino)) names.set(ino, netnsName(ino, fs.site.prefix));
    return names.get(ino)!;
  };
  for (const top of entries(fs.pins)) {
    const topDir = join(fs.pins, top);
    if (oldLayout(topDir)) {
      if (!opts.allNamespaces) continue;
      let link: { ifindex: number } | null = null;
      try {
        link = linkIfindex(topDir);
      } catch {
        /* removed meanwhile, or a link this build cannot open */
      }
      out.push({ netns: null, ifindex: link?.ifindex ?? 0, ifname: top, dir: topDir, shownDir: hostPath(fs.site, topDir), key: null, local: false, gone: !link?.ifindex, nsName: null });
      continue;
    }
    if (!isNumber(top)) continue;
    const netns = Number(top);
    for (const idx of entries(topDir).filter(isNumber).sort((a, b) => Number(a) - Number(b))) {
      const dir = join(topDir, idx);
      const ifindex = Number(idx);
      const key = recordKey(netns, ifindex);
      const rec = identity(key, fs.records);
      // an inode is reused once its namespace is gone; the cookie never is
      const local = netns === fs.netns && (!rec.netnsCookie || !cookie || rec.netnsCookie === cookie);
      if (!local && !opts.allNamespaces) continue;
      let link: { ifindex: number } | null = null;
      try {
        link = linkIfindex(dir);
      } catch {
        /* a link pin this build cannot open: status says so when it adopts the filter */
        link = { ifindex };
      }
      const gone = !link || link.ifindex === 0;
      const now = local && !gone ? nameOf(ifindex) : null;
      out.push({ netns, ifindex, ifname: now ?? rec.ifname ?? `ifindex ${ifindex}`, dir, shownDir: hostPath(fs.site, dir), key, local, gone, nsName: nsName(netns) });
    }
  }
  return out;
}

/**
 * The pinned filter of interface `name` in this network namespace: the one on its ifindex, else
 * one whose interface is gone and was recorded under that name. null when there is none.
 */
export function findLocal(fs: FilterSite, name: string): PinnedFilter | null {
  const pins = listPins(fs);
  const idx = lookupIfindex(name);
  return pins.find((p) => idx && p.ifindex === idx && !p.gone) ?? pins.find((p) => p.gone && p.ifname === name) ?? null;
}

/** Detaches a pinned filter and removes its pins and record (and folders left empty). */
export function removePin(fs: FilterSite, p: PinnedFilter): void {
  // the ingress link, and the tc egress one of a stateful filter
  for (const [name, what] of [['link', 'filter'], ['egress', 'connection tracking']] as const) {
    if (!existsSync(join(p.dir, name))) continue;
    const l = openPinnedLink(join(p.dir, name), `${what} on ${p.ifname}`);
    if (p.gone) l.unpin();
    else l.detach();
    l.close();
  }
  rmSync(p.dir, { recursive: true, force: true });
  // the last filter gone: no empty ebpfnet folders stay behind in bpffs or /run (removeRecord's too)
  pruneEmptyDirs(dirname(p.dir));
  removeRecord(p.key ?? p.ifname, fs.records);
}
