// SPDX-License-Identifier: Apache-2.0
// One writer at a time. Two `lb` commands planning from the same maps would hand out the same ids
// and delete each other's tables, so every change runs under a lock file in /run (bpffs holds no
// regular files). A lock whose owner died is taken over; a live owner is waited for, briefly.
import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { EbpfnetError } from '../errors.js';
import { pruneEmptyDirs, withDir } from '../loader/dirs.js';
import { RUN_ROOT, processAlive } from '../loader/system.js';

export const LOCK_DIR = RUN_ROOT;

const sleep = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};


/** The lock for the balancer pinned at `pinDir` (tests pin elsewhere and must not wait on users). */
export const lockPath = (pinDir: string): string => runFile(pinDir, 'lock');

/** `/run/ebpfnet/lb-HASH.SUFFIX`: a regular file that belongs to the balancer pinned at `pinDir`. */
export const runFile = (pinDir: string, suffix: string): string => join(LOCK_DIR, `lb-${createHash('sha256').update(hostSide(pinDir)).digest('hex').slice(0, 16)}.${suffix}`);

/** One balancer, one lock: its pins reached from a private mount namespace (reachPin) are the same. */
const hostSide = (pinDir: string): string => (pinDir.startsWith('/proc/1/root/') ? pinDir.slice('/proc/1/root'.length) : pinDir);

export function withLock<T>(pinDir: string, op: string, fn: () => T, waitMs = 10_000): T {
  const path = lockPath(pinDir);
  const t0 = Date.now();
  for (;;) {
    let fd: number;
    try {
      // through withDir: a releasing owner prunes the folder when its lock was the last thing there
      fd = withDir(LOCK_DIR, () => openSync(path, 'wx', 0o600));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let owner = 0;
      try {
        owner = Number(readFileSync(path, 'utf8').trim());
      } catch {
        continue; // released between our open and read
      }
      // No pid yet: its owner is between open and write, or died there; give it a second.
      const st = statSync(path, { throwIfNoEntry: false });
      if (!st) continue;
      const young = !owner && Date.now() - st.mtimeMs < 1000;
      if (!young && (!owner || !processAlive(owner))) {
        rmSync(path, { force: true });
        continue;
      }
      if (Date.now() - t0 > waitMs)
        throw new EbpfnetError('EBPFNET_BUSY', op, `another ebpfnet process (pid ${owner}) is changing the balancer`, { hint: 'try again when it has finished' });
      sleep(10);
      continue;
    }
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    try {
      return fn();
    } finally {
      rmSync(path, { force: true });
      // the last lock and record gone: no empty /run/ebpfnet stays behind
      pruneEmptyDirs(LOCK_DIR);
    }
  }
}
