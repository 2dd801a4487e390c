// SPDX-License-Identifier: Apache-2.0
// @ts-check
// Moving this process into a network namespace, for tests and benchmarks that must keep their
// interfaces, addresses and traffic out of the root namespace but act "on the host" themselves
// (attach XDP in-process, run the agent and talk to its API, receive the datagrams they time).
// setns(2) moves the calling thread only; Node makes sockets, netlink calls and child processes on
// its main thread, so after enterNetns() all of them live in the namespace. Mounts are untouched
// (bpffs and cgroups stay the host's, as under `nsenter --net`); /sys/class/net still shows the
// namespace sysfs was mounted in, so read interfaces through `ip`, not /sys.
import { closeSync, fstatSync, openSync, readlinkSync, statSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import koffi from 'koffi';

const CLONE_NEWNET = 0x40000000;
/** @type {((fd: number, nstype: number) => number) | null} */
let setnsFn = null;
const setns = (/** @type {number} */ fd) => {
  setnsFn ??= /** @type {(fd: number, nstype: number) => number} */ (koffi.load('libc.so.6').func('int setns(int fd, int nstype)'));
  if (setnsFn(fd, CLONE_NEWNET) !== 0) throw new Error('setns(CLONE_NEWNET) failed: entering a network namespace needs root (CAP_SYS_ADMIN)');
};

/** @type {Array<{ ns: string, fd: number }>} namespaces entered and not yet left, innermost last */
const entered = [];
/** @type {number | null} where this process was before its first enterNetns(), held open */
let home = null;

/** The network namespace this process (its main thread) is in now, by inode. */
export const currentNetnsInode = () => statSync('/proc/self/ns/net').ino;
/**
 * The network namespace this process started in (before any enterNetns), by inode: the machine's
 * own for a test or a script run from a shell. (pid 1's may not be readable, e.g. in a container.)
 */
export const startNetnsInode = () => (home === null ? currentNetnsInode() : fstatSync(home).ino);

/**
 * Moves this process into network namespace `ns` (made by `ip netns add`) until the returned
 * function is called. Must run on the process's main thread (vitest: the forks pool), where
 * /proc/self shows the namespace too. Leaving in any order is fine: the process goes back to the
 * innermost namespace still entered, or where it was at first.
 * @param {string} ns
 * @returns {() => void}
 */
export function enterNetns(ns) {
  const [pid, tid] = readlinkSync('/proc/thread-self').split('/task/');
  if (!isMainThread || pid !== tid) throw new Error('enterNetns: setns moves only the calling thread; call it from the main thread (vitest pool: forks)');
  home ??= openSync('/proc/thread-self/ns/net', 'r');
  const fd = openSync(`/run/netns/${ns}`, 'r');
  try {
    setns(fd);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  const entry = { ns, fd };
  entered.push(entry);
  return () => {
    const i = entered.indexOf(entry);
    if (i < 0) return;
    entered.splice(i, 1);
    setns(entered.at(-1)?.fd ?? /** @type {number} */ (home));
    closeSync(fd);
  };
}
