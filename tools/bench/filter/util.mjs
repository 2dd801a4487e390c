// SPDX-License-Identifier: Apache-2.0
// @ts-check
// Small pieces both halves of the filter benchmark use: commands, medians, number formats, pinning.
import { execFileSync, spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..', '..', '..');

/** An expected failure: printed as one line, no stack. */
export class BenchError extends Error {}

/** Imports a compiled module from dist/. */
export const dist = (/** @type {string} */ p) => import(pathToFileURL(join(root, 'dist', p)).href);

/**
 * Runs a command and returns its stdout; a failure carries the command's own stderr.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ input?: string, ns?: string }} [o] ns: a network namespace to run it in (nsenter, which
 *   unlike `ip netns exec` does not remount /sys)
 */
export function sh(cmd, args, o = {}) {
  const [c, a] = o.ns ? ['nsenter', [`--net=/run/netns/${o.ns}`, cmd, ...args]] : [cmd, args];
  try {
    return execFileSync(c, a, { input: o.input, maxBuffer: 1 << 28, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
  } catch (e) {
    const err = /** @type {{ stderr?: Buffer, message: string }} */ (e);
    throw new BenchError(`${cmd} ${a.slice(o.ns ? 2 : 0).join(' ').slice(0, 120)}: ${err.stderr?.toString().trim() || err.message}`);
  }
}

export const has = (/** @type {string} */ cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

export function median(/** @type {number[]} */ xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The q-quantile (0..1) by linear interpolation between the closest ranks. */
export function quantile(/** @type {number[]} */ xs, /** @type {number} */ q) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const at = (s.length - 1) * q;
  const lo = Math.floor(at);
  return lo + 1 < s.length ? s[lo] + (s[lo + 1] - s[lo]) * (at - lo) : s[lo];
}

export const fmt = (/** @type {number} */ n) => Math.round(n).toLocaleString('en-US');
/** Truncated, not rounded: 2.004 must not print as 2.00 next to a goal of <= 2.00 it missed. */
export const ratio = (/** @type {number} */ r, up = false) => ((up ? Math.ceil(r * 100) : Math.floor(r * 100)) / 100).toFixed(2);
export const rate = (/** @type {number} */ pps) => (pps >= 1e6 ? `${(pps / 1e6).toFixed(2)} M/s` : pps >= 1e3 ? `${(pps / 1e3).toFixed(1)} k/s` : `${Math.round(pps)} /s`);

/** Yields to the event loop, so a Ctrl-C is seen between long synchronous kernel calls. */
export const tick = () => new Promise((r) => setImmediate(r));

/**
 * Sets the CPU mask of the calling thread only (pid 0 in sched_setaffinity): test runs then stay on
 * one CPU, and child processes started later inherit whatever mask is set when they start.
 * @param {number[]} list CPUs to allow
 */
export async function pinThisThread(list) {
  const { default: koffi } = await import('koffi');
  const setAffinity = koffi.load('libc.so.6').func('int sched_setaffinity(int pid, size_t size, const void *mask)');
  const mask = Buffer.alloc(128); // cpu_set_t: 1024 bits
  for (const cpu of list) mask[cpu >> 3] |= 1 << (cpu & 7);
  if (setAffinity(0, mask.length, mask) !== 0) {
    const errno = Object.entries(constants.errno).find(([, v]) => v === koffi.errno())?.[0] ?? `errno ${koffi.errno()}`;
    throw new BenchError(`pin to CPUs ${list.join(',')}: sched_setaffinity failed (${errno})`);
  }
}

/**
 * A clock of the calling thread's own CPU time in ns (CLOCK_THREAD_CPUTIME_ID): unlike wall time it
 * stands still while another process has the CPU, and unlike BPF_PROG_TEST_RUN's duration (whole
 * ns per repeat, truncated) it has the resolution a net figure of a few ns needs.
 * @returns {Promise<() => bigint>}
 */
export async function threadCpuClock() {
  const { default: koffi } = await import('koffi');
  const clockGettime = koffi.load('libc.so.6').func('int clock_gettime(int clk, void *ts)');
  const ts = Buffer.alloc(16); // struct timespec on 64-bit Linux
  const CLOCK_THREAD_CPUTIME_ID = 3;
  return () => {
    if (clockGettime(CLOCK_THREAD_CPUTIME_ID, ts) !== 0) throw new BenchError('clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed');
    return ts.readBigInt64LE(0) * 1_000_000_000n + ts.readBigInt64LE(8);
  };
}
