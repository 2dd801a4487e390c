// SPDX-License-Identifier: Apache-2.0
// The balancer under churn, short (issue 8, item 5): tools/churn/lb-churn.mjs for a few seconds.
// Clients in a cgroup connect to a VIP in a loop while backends are added, drained, re-activated
// and removed through the lb datapath; a connection that starts after an update returned must reach
// a backend active in that update, and may fail only while no backend was active. The longer run
// is the same script with --seconds.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { packageDir, progInfo } from '../../src/loader/index.js';
import { describeKernel } from '../helpers/kernel.js';

describeKernel('lb: connections under backend churn', () => {
  it('no new connection reaches a removed or draining backend; connects fail only while no backend is active', () => {
    const r = spawnSync(process.execPath, [join(packageDir(), 'tools', 'churn', 'lb-churn.mjs'), '--seconds', '6', '--interval', '15', '--seed', String(process.pid), '--json'], { encoding: 'utf8', timeout: 120_000 });
    const line = r.stdout.trim().split('\n')[0];
    console.log(`lb-churn --seconds 6: ${line}${r.stderr ? `\n${r.stderr}` : ''}`);
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    const s = JSON.parse(line) as Record<string, number> & { kinds: Record<string, number>; programs: number[] };
    expect(s.misrouted).toBe(0);
    expect(s.toRemoved + s.toDraining + s.untranslated + s.failed).toBe(0);
    // the churn really happened, and the traffic saw every kind of moment
    expect(s.updates).toBeGreaterThan(100);
    for (const k of ['add', 'drain', 'undrain', 'remove', 'empty']) expect(s.kinds[k], k).toBeGreaterThan(0);
    expect(s.ok).toBeGreaterThan(1000);
    expect(s.refusedNoBackend + s.plainNoService).toBeGreaterThan(0);
    expect(s.connections).toBe(s.ok + s.refusedNoBackend + s.plainNoService);
    // nothing left behind: the programs it attached (by id: other runs load lb_* too) are gone, its pins too
    expect(s.programs.length).toBeGreaterThanOrEqual(8);
    expect(s.programs.filter((id) => progInfo(id) !== null)).toEqual([]);
    expect(existsSync(`/sys/fs/bpf/ebpfnet-churn-${r.pid! % 100000}`)).toBe(false);
  }, 150_000);
});
