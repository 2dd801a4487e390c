// SPDX-License-Identifier: Apache-2.0
// The folders ebpfnet makes for itself: pins under /sys/fs/bpf/ebpfnet, records and locks under
// /run/ebpfnet. Whatever removes the last thing in one removes the folder too, so an unload leaves
// nothing behind; and whatever puts the first thing in one goes through withDir.
//
// Why withDir: another ebpfnet process can be starting at the very moment this one prunes. It has
// made the folder (mkdir -p) and is about to create its first entry there when our rmdir, which
// only ever removes an empty folder, takes the folder away: its create fails with ENOENT. withDir
// makes the folder again and retries, so a prune never costs a concurrent start anything.
import { mkdirSync, rmdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { EbpfnetError } from '../errors.js';
import { PIN_ROOT, RUN_ROOT } from './system.js';

/** How often a create is retried after the folder vanished under it (each retry needs a racing prune). */
const RETRIES = 8;

const isEnoent = (e: unknown): boolean => (e as NodeJS.ErrnoException)?.code === 'ENOENT' || (e instanceof EbpfnetError && e.errno === 'ENOENT');

/**
 * Makes `dir` (and its parents) and runs `create`, which makes the first entry in it; when the
 * folder was pruned in between (ENOENT), makes it again and retries.
 */
export function withDir<T>(dir: string, create: () => T, mode?: number): T {
  for (let i = 0; ; i++) {
    try {
      // inside the retry: node's mkdir -p fails with ENOENT too when a parent it made is pruned
      mkdirSync(dir, { recursive: true, mode });
      return create();
    } catch (e) {
      // (the folder may be back already, made by the pruner's own next start: retry anyway)
      if (i < RETRIES && isEnoent(e)) continue;
      throw e;
    }
  }
}

/** PIN_ROOT or RUN_ROOT that `dir` lies in, as this process reaches it (directly or by /proc/1/root). */
function rootOf(dir: string): string | null {
  for (const root of [PIN_ROOT, RUN_ROOT]) {
    for (const reached of [root, `/proc/1/root${root}`]) if (dir === reached || dir.startsWith(`${reached}/`)) return reached;
  }
  return null;
}

/**
 * Removes `dir` when it is empty, then each parent while it is empty, up to `upTo` (default:
 * ebpfnet's own folder that holds `dir`, PIN_ROOT or RUN_ROOT; a folder outside those, such as a
 * record root or pin directory a caller chose, is not ours to remove unless `upTo` names it).
 * Stops at the first folder that is not empty: rmdir never removes content.
 */
export function pruneEmptyDirs(dir: string, upTo = rootOf(dir)): void {
  if (upTo === null || (dir !== upTo && !dir.startsWith(`${upTo}/`))) return;
  for (let d = dir; ; d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch (e) {
      // gone already (a concurrent prune): its parent may still be empty
      if (!isEnoent(e)) return;
    }
    if (d === upTo) return;
  }
}
