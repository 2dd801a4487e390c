// SPDX-License-Identifier: Apache-2.0
// The names of a pinned balancer's services (`namespace/name:port` for Kubernetes' services), for
// `lb list` run without the agent. The maps hold addresses only and bpffs holds no regular files,
// so the writer of those services (the agent) publishes the names in /run beside the balancer's
// lock: the agent's own table is the source, this file its copy, rewritten whole (write, rename)
// after each change and removed with the balancer. A reader shows a name only for a service that
// is in the maps, so a name left from a crashed agent can only name what that agent pinned.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { withDir } from '../loader/dirs.js';
import { LOCK_DIR, runFile } from './lock.js';

export const namesPath = (pinDir: string): string => runFile(pinDir, 'names.json');

/** Service name (`VIP:PORT/PROTO`) -> its name; empty when none were published. */
export const readNames = (pinDir: string): Record<string, string> => readNamesFile(namesPath(pinDir));

/** What a names file holds; empty when it is missing or not what writeNamesFile writes. */
export function readNamesFile(path: string): Record<string, string> {
  try {
    const j = JSON.parse(readFileSync(path, 'utf8')) as { names?: unknown };
    const n = j.names;
    if (!n || typeof n !== 'object') return {};
    return Object.fromEntries(Object.entries(n as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch {
    return {};
  }
}

export const writeNames = (pinDir: string, names: Record<string, string>): void => withDir(LOCK_DIR, () => writeNamesFile(namesPath(pinDir), names));

/** Whole or not at all: a reader never sees half a file. */
export function writeNamesFile(path: string, names: Record<string, string>): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ pid: process.pid, names })}\n`, { mode: 0o644 });
  renameSync(tmp, path);
}

export function removeNames(pinDir: string): void {
  rmSync(namesPath(pinDir), { force: true });
}
