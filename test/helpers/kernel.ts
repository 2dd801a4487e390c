// SPDX-License-Identifier: Apache-2.0
// What kernel tests need, and the rule for when they cannot have it: skipped with the reason printed,
// except under EBPFNET_REQUIRE_KERNEL=1 (CI), where a missing requirement is a failure.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { describe } from 'vitest';

export const REQUIRE = process.env.EBPFNET_REQUIRE_KERNEL === '1';
export const isRoot = (): boolean => process.getuid?.() === 0;

/**
 * `describe` for tests that load programs into the real kernel. Without root the block is skipped
 * with a printed reason; with EBPFNET_REQUIRE_KERNEL=1 it runs anyway and fails loudly.
 */
export function describeKernel(name: string, fn: () => void): void {
  const why = isRoot() ? null : 'kernel tests need root (run: sudo npm test)';
  if (why && !REQUIRE) {
    console.warn(`SKIP ${name}: ${why}`);
    describe.skip(name, fn);
    return;
  }
  describe(name, () => {
    if (why) throw new Error(`${name}: ${why}; EBPFNET_REQUIRE_KERNEL=1 turns this skip into a failure`);
    fn();
  });
}

export function sh(cmd: string, args: string[], opts: { ns?: string; input?: string; timeout?: number } = {}): string {
  const full = opts.ns ? ['ip', ['netns', 'exec', opts.ns, cmd, ...args]] as const : [cmd, args] as const;
  return execFileSync(full[0], full[1] as string[], { encoding: 'utf8', input: opts.input, timeout: opts.timeout ?? 20_000, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Exit status of a command, for traffic that is expected to fail. */
export function status(cmd: string, args: string[], ns?: string, timeout = 10_000): number {
  const r = ns ? spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { timeout }) : spawnSync(cmd, args, { timeout });
  return r.status ?? -1;
}

/** true when the command exits 0 */
export const ok = (cmd: string, args: string[], ns?: string, timeout?: number): boolean => status(cmd, args, ns, timeout) === 0;

/**
 * ids of the BPF programs loaded on the machine (bpftool), to check nothing was left behind;
 * `names` keeps only programs of those names, so other processes' programs do not count.
 */
export function bpfProgIds(names?: string[]): number[] {
  const out = JSON.parse(sh('bpftool', ['-j', 'prog', 'show'])) as Array<{ id: number; name?: string }>;
  return out.filter((p) => !names || names.includes(p.name ?? '')).map((p) => p.id);
}

/**
 * ids of the BPF programs process `pid` holds through program or link descriptors (their fdinfo
 * names the program): what that process made, told apart from other processes' programs of the
 * same names on a shared machine.
 */
export function heldPrograms(pid: number): number[] {
  const ids: number[] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return ids; // gone
  }
  for (const fd of fds) {
    try {
      if (!/^anon_inode:bpf[-_](prog|link)/.test(readlinkSync(`/proc/${pid}/fd/${fd}`))) continue;
      const m = /^prog_id:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (m) ids.push(Number(m[1]));
    } catch {
      /* closed meanwhile */
    }
  }
  return ids;
}

export function xdpOn(ifname: string, ns?: string): boolean {
  const out = ns ? sh('ip', ['-n', ns, '-d', 'link', 'show', 'dev', ifname]) : sh('ip', ['-d', 'link', 'show', 'dev', ifname]);
  return /\bxdp(generic|drv|offload)?\b|prog\/xdp/.test(out);
}

/**
 * Pids of the processes holding BPF run statistics on through a BPF_ENABLE_STATS descriptor (the
 * statistics are one switch for the whole machine, and other test runs may hold it too).
 */
export function bpfStatsHolders(): number[] {
  const pids: number[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or a kernel thread
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:bpf-stats') {
          pids.push(Number(pid));
          break;
        }
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return pids;
}
