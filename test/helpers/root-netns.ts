// SPDX-License-Identifier: Apache-2.0
// What a test file did to the machine's own (root) network namespace, read from `ip -o` lines
// (`ip -o monitor link address` while it ran, `ip -o link/addr show` before and after). Tests make
// their interfaces and addresses only in namespaces of their own (test/helpers/netns.ts); the guard
// (root-netns-guard.ts) fails a file whose own names or addresses show up in the root namespace.
// Other processes on a shared machine change the root namespace too, so a change counts only
// when it is recognisably this process's: an interface named with the suite's prefix and this
// process's id, or an address of the suite's ranges on an interface outside the suite's names.
import { execFileSync } from 'node:child_process';

export interface RootNetChange {
  ifname: string;
  /** the address (with prefix length) for an address line */
  addr?: string;
  line: string;
}

/** An `ip -o` line of `monitor link address`, `link show` or `addr show`, or null. */
export function parseIpLine(line: string): RootNetChange | null {
  const m = /^(?:Deleted )?\d+: ([^\s:@]+)(?:@\S+)?:?\s+(.*)$/.exec(line.trim());
  if (!m) return null;
  const addr = /^inet6? (\S+)/.exec(m[2])?.[1];
  return { ifname: m[1], ...(addr ? { addr } : {}), line: line.trim() };
}

/**
 * the suite's interface names, ending in the making process's id (pid % 10^4 or 10^5): `eb` and
 * letters (test/helpers), or `e`, three letters of a tag and `h` or `p` (tools/lib/harness.mjs)
 */
const SUITE_NAME = /^e(?:b[a-z]*|[a-z]{3}[hp])(\d+)/;
/** the suite's address ranges (test/helpers/netns.ts, the lab, the filter and balancer tests) */
const SUITE_ADDR = /^(10\.19[6-9]\.|192\.168\.56\.|fd00:19[6-9]:|fd00:96:)/;

/** The ids a process of pid `pid` puts in the names it makes. */
export const nameTags = (pid: number): number[] => [pid % 10000, pid % 100000];

/** The changes among `lines` that are this process's (see the file's head). */
export function oursInRoot(lines: string[], tags: number[]): RootNetChange[] {
  const out: RootNetChange[] = [];
  for (const l of lines) {
    const c = parseIpLine(l);
    if (!c) continue;
    const named = SUITE_NAME.exec(c.ifname);
    if (named ? tags.includes(Number(named[1])) : !!c.addr && SUITE_ADDR.test(c.addr)) out.push(c);
  }
  return out;
}

/**
 * `ip -o link show` and `ip -o addr show` in the network namespace `nsPath` names (a path nsenter
 * opens, such as /proc/PID/fd/FD of a descriptor held on it), whatever this thread's is now.
 */
export function ipSnapshot(nsPath: string): string[] {
  const ip = (what: string): string[] => execFileSync('nsenter', [`--net=${nsPath}`, 'ip', '-o', what, 'show'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  return [...ip('link'), ...ip('addr')];
}
