// SPDX-License-Identifier: Apache-2.0
// Cgroup ids to names, and container ids to cgroups. The kernel puts a cgroup v2 id in every event
// (the inode number of the cgroup's directory); its path is found here by walking the cgroup v2
// mount, once, and again only when an id is not known yet. Container runtimes name the cgroup of a
// container after its id, so `--container ID` is a match on those names. The name rules are pure
// (unit-tested); the walk reads the filesystem.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EbpfnetError } from '../errors.js';

export interface CgroupDir {
  /** relative to the cgroup v2 mount, with a leading / (the root is `/`), as /proc/PID/cgroup shows it */
  path: string;
  id: number;
}

/** Every cgroup under `root` (a cgroup v2 mount), the root included. Cgroups that vanish meanwhile are skipped. */
export function walkCgroups(root: string): CgroupDir[] {
  const out: CgroupDir[] = [];
  const visit = (rel: string): void => {
    const full = rel === '/' ? root : join(root, rel);
    let ino: number;
    try {
      ino = statSync(full).ino;
    } catch {
      return;
    }
    out.push({ path: rel, id: ino });
    let subs;
    try {
      subs = readdirSync(full, { withFileTypes: true });
    } catch {
      return;
    }
    for (const d of subs) if (d.isDirectory()) visit(rel === '/' ? `/${d.name}` : `${rel}/${d.name}`);
  };
  visit('/');
  return out;
}

/** How long an id nobody could resolve waits before the next walk for it: a removed cgroup stays unknown. */
const RETRY_MS = 1000;
const MAX_CACHED = 65536;

/**
 * Cgroup id -> path, cached. A miss walks the tree again (a cgroup made since the last walk), at most
 * once a second for an id that stays unknown, so a burst of events from a removed cgroup costs one
 * walk, not one per event.
 */
export class CgroupNames {
  private readonly byId = new Map<number, string>();
  private readonly missed = new Map<number, number>();

  constructor(
    /** the cgroup v2 mount; null when there is none (every name is then null) */
    readonly root: string | null,
    private readonly walk: (root: string) => CgroupDir[] = walkCgroups,
    private readonly now: () => number = Date.now,
  ) {}

  name(id: number): string | null {
    const hit = this.byId.get(id);
    if (hit !== undefined) return hit;
    if (this.root === null) return null;
    const t = this.now();
    const last = this.missed.get(id);
    if (last !== undefined && t - last < RETRY_MS) return null;
    if (this.byId.size > MAX_CACHED) this.byId.clear();
    for (const d of this.walk(this.root)) this.byId.set(d.id, d.path);
    const found = this.byId.get(id);
    if (found !== undefined) {
      this.missed.delete(id);
      return found;
    }
    if (this.missed.size > MAX_CACHED) this.missed.clear();
    this.missed.set(id, t);
    return null;
  }
}

/**
 * The container id a cgroup's directory name carries, as the runtimes name them: systemd scopes
 * (`docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`) and the
 * cgroupfs driver's bare `<id>` (`/docker/<id>`, `/kubepods/.../<id>`). Ids are 64 hex digits.
 */
export function containerIdOf(name: string): string | null {
  const m = /^(?:docker|cri-containerd|crio|libpod)-([0-9a-f]{64})\.scope$/.exec(name) ?? /^([0-9a-f]{64})$/.exec(name);
  return m ? m[1] : null;
}

/** The shortest accepted prefix, like docker's: 12 hex digits. */
export const CONTAINER_ID_MIN = 12;

/** Checks a --container argument: 12 to 64 hex digits. Returns it in lower case. */
export function parseContainerId(s: string): string {
  const t = s.trim().toLowerCase();
  if (!/^[0-9a-f]+$/.test(t) || t.length < CONTAINER_ID_MIN || t.length > 64) {
    throw new EbpfnetError('EBPFNET_USAGE', 'trace', `--container '${s}' is not a container id`, {
      hint: `give the id or a unique prefix of at least ${CONTAINER_ID_MIN} hex digits, as docker ps or crictl ps show it`,
    });
  }
  return t;
}

/**
 * The cgroup of the container whose id starts with `prefix`, among `dirs`. When one container has
 * several cgroups carrying its id, the outermost is taken (it holds the others). No match and
 * several containers matching are errors naming what to do.
 */
export function findContainer(dirs: readonly CgroupDir[], prefix: string): CgroupDir & { container: string } {
  const byContainer = new Map<string, CgroupDir[]>();
  for (const d of dirs) {
    const id = containerIdOf(d.path.slice(d.path.lastIndexOf('/') + 1));
    if (id === null || !id.startsWith(prefix)) continue;
    const list = byContainer.get(id) ?? [];
    list.push(d);
    byContainer.set(id, list);
  }
  if (byContainer.size === 0) {
    throw new EbpfnetError('EBPFNET_NOT_FOUND', 'trace', `no container cgroup matches '${prefix}'`, {
      hint: 'give a running container id (docker ps --no-trunc, crictl ps); cgroups named docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, libpod-<id>.scope or <id> are searched',
    });
  }
  if (byContainer.size > 1) {
    const ids = [...byContainer.keys()].sort();
    throw new EbpfnetError('EBPFNET_USAGE', 'trace', `--container ${prefix} matches ${ids.length} containers: ${ids.map((i) => i.slice(0, 16)).join(', ')}`, {
      hint: 'give more digits of the id',
    });
  }
  const [[container, list]] = [...byContainer];
  const outer = [...list].sort((a, b) => a.path.split('/').length - b.path.split('/').length || a.path.localeCompare(b.path))[0];
  return { ...outer, container };
}
