// SPDX-License-Identifier: Apache-2.0
// Durable files in the agent's state directory. A write goes to a temporary file, is fsynced, then
// renamed over the old one and the directory fsynced: after a crash or a power cut a reader finds
// the old file or the new one, never half of one.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { EbpfnetError } from '../errors.js';

export const DEFAULT_STATE_DIR = '/var/lib/ebpfnet';

export function ensureDir(dir: string): void {
  try {
    // 0700: the directory holds the API token
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new EbpfnetError('EBPFNET_PERMISSION', `create state directory ${dir}`, (e as Error).message, { hint: 'choose another with --state-dir', cause: e });
  }
}

export function writeAtomic(file: string, data: string, mode = 0o600): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  // the rename itself is durable only once the directory entry is on disk
  const dfd = openSync(dirname(file), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Removes the temporary files of writers that died between writing and renaming (a `kill -9` in
 * that window leaves `NAME.tmp-PID`); a live process's file is left alone. Returns what went.
 */
export function removeStaleTemps(dir: string): string[] {
  const gone: string[] = [];
  for (const f of readdirSync(dir)) {
    const m = /\.tmp-(\d+)$/.exec(f);
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    rmSync(join(dir, f), { force: true });
    gone.push(f);
  }
  return gone;
}

export function readJson<T>(file: string): T | null {
  if (!existsSync(file)) return null;
  const text = readFileSync(file, 'utf8');
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new EbpfnetError('EBPFNET_USAGE', `read ${file}`, `not valid JSON: ${(e as Error).message}`, { hint: 'fix or remove the file; the agent rewrites it on the next change' });
  }
}

export const statePath = (dir: string): string => join(dir, 'state.json');
export const tokenPath = (dir: string): string => join(dir, 'token');
export const auditPath = (dir: string): string => join(dir, 'audit.log');
