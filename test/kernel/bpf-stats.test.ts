// SPDX-License-Identifier: Apache-2.0
// BPF run statistics: turned on by a BPF_ENABLE_STATS descriptor (or the sysctl on old kernels),
// counted by the kernel per program, and off again once released.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FilterDatapath } from '../../src/filter/datapath.js';
import { BPF_STATS_SYSCTL, enableRunStats, progInfoByFd, type BpfProgram } from '../../src/loader/index.js';
import { buildPacket } from '../../src/filter/packet.js';
import { bpfStatsHolders, describeKernel } from '../helpers/kernel.js';

describeKernel('bpf run statistics', () => {
  let d: FilterDatapath;
  let prog: BpfProgram;
  const packet = buildPacket({ family: 4, proto: 17, src: 0x0a000001n, dst: 0x0a000002n, sport: 1000, dport: 53 });
  const runs = (): bigint => progInfoByFd(prog.fd)!.runCount;
  /** nobody else (another test run, an agent, the sysctl) keeps statistics on */
  const offElsewhere = (): boolean => readFileSync(BPF_STATS_SYSCTL, 'utf8').trim() === '0' && bpfStatsHolders().length === 0;

  beforeAll(() => {
    d = FilterDatapath.load('lo');
    d.apply({ rules: [], default: 'allow' });
    prog = d.program('xdp');
  });
  afterAll(() => d?.close());

  it('BPF_ENABLE_STATS: runs and run time are counted while the descriptor is held, and it is released on close', () => {
    const s = enableRunStats();
    expect(s.via).toBe('bpf_enable_stats');
    expect(bpfStatsHolders()).toContain(process.pid);
    const before = progInfoByFd(prog.fd)!;
    expect(before.name).toBe('filter_xdp');
    prog.testRun({ data: packet, repeat: 1000 });
    const after = progInfoByFd(prog.fd)!;
    expect(after.runCount - before.runCount).toBe(1000n);
    expect(after.runTimeNs).toBeGreaterThan(before.runTimeNs);
    s.close();
    s.close(); // twice is harmless
    expect(bpfStatsHolders()).not.toContain(process.pid);
    if (offElsewhere()) {
      const frozen = runs();
      prog.testRun({ data: packet, repeat: 1000 });
      expect(runs()).toBe(frozen);
    } else console.warn('bpf-stats: another process keeps statistics on; not checking that the counters stand still');
  });

  it('the sysctl fallback sets kernel.bpf_stats_enabled and writes the previous value back', () => {
    const prev = readFileSync(BPF_STATS_SYSCTL, 'utf8').trim();
    const s = enableRunStats({ via: 'sysctl' });
    expect(s.via).toBe(prev === '1' ? 'already on' : 'sysctl');
    expect(readFileSync(BPF_STATS_SYSCTL, 'utf8').trim()).toBe('1');
    const r0 = runs();
    prog.testRun({ data: packet, repeat: 10 });
    expect(runs() - r0).toBe(10n);
    s.close();
    expect(readFileSync(BPF_STATS_SYSCTL, 'utf8').trim()).toBe(prev);
  });
});
