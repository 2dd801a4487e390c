// SPDX-License-Identifier: Apache-2.0
// The kernel as the filter's oracle (issue 19), short run (the long one is tools/fuzz/oracle.mjs):
// seeded, mutating frames from a source namespace to a target namespace, with no filter and under
// `ebpfnet filter --deny tcp/22 --deny icmp` and `--default deny --allow tcp/80`, each with
// --hook xdp and --hook tc. What the target's stack delivers to its raw sockets or answers under a
// policy that denies it is a bypass; the project's model plays no part (it shared the parser's
// blind spot for stacked VLAN tags). EBPFNET_ORACLE_SEED reproduces a run.
import { afterEach, expect, it } from 'vitest';
import { formatReport, runOracle } from '../../tools/fuzz/oracle/run.mjs';
import { describeKernel } from '../helpers/kernel.js';
import { makeTwoHosts, type TwoHosts } from '../helpers/netns.js';

const CASES = 4000;

/** categories the stack delivers most of at baseline (the rest it drops, which is itself a finding) */
const DELIVERING: Record<string, number> = {
  'plain ipv4': 0.95,
  'plain ipv6': 0.95,
  'vlan VID 0, 1 tag': 0.85,
  'vlan VID 0, 2 tags': 0.85,
  'vlan VID 0, 3 tags': 0.85,
  'vlan VID 0, 4-6 tags': 0.85,
  'vlan VID 0, 4-6 tags, 802.1ad outer': 0.85,
  'ipv4 options': 0.3,
  'ipv4 fragments': 0.4,
  'ipv6 extension headers': 0.4,
  'ipv6 extension headers, past 1024 bytes': 0.85,
  'ipv6 fragments': 0.2,
  'icmp types': 0.85,
  'icmpv6 types': 0.85,
  encapsulation: 0.85,
};

describeKernel('filter: the kernel as oracle (frames through a veth, with and without the filter)', () => {
  let h: TwoHosts | undefined;
  afterEach(() => {
    h?.cleanup();
    h = undefined;
  });

  it(`${CASES} cases per round, 2 policies x 2 hooks: nothing a policy denies reaches a socket or is answered`, async () => {
    const seed = Number(process.env.EBPFNET_ORACLE_SEED ?? Date.now() % 2 ** 31);
    console.log(`filter-oracle: seed ${seed} (EBPFNET_ORACLE_SEED=${seed} reproduces it; node tools/fuzz/oracle.mjs --seed ${seed} --cases ${CASES})`);
    h = makeTwoHosts();
    const rep = await runOracle({ hosts: h, seed, cases: CASES });
    const lines = formatReport(rep);
    console.log(lines.join('\n'));

    expect(rep.rounds.map((r) => r.name)).toEqual(['baseline', 'deny-ssh-icmp xdp', 'deny-ssh-icmp tc', 'default-deny-http xdp', 'default-deny-http tc']);
    expect(rep.framesFiltered).toBeGreaterThanOrEqual(10_000);
    // a frame the veth dropped would hide what the stack does with it
    for (const r of rep.rounds) expect(r.lost, r.name).toBe(0);

    // the sender works: with no filter the stack delivered what a host takes
    const c = rep.categories;
    for (const [k, share] of Object.entries(DELIVERING)) {
      expect(c[k]?.cases ?? 0, `${k}: cases`).toBeGreaterThan(10);
      expect(c[k].delivered[0] / c[k].cases, `${k}: delivered at baseline`).toBeGreaterThanOrEqual(share);
    }
    expect(rep.rounds[0].arpReplies).toBeGreaterThan(0);
    // and each filter was there: it dropped plain traffic it denies
    for (let r = 1; r < rep.rounds.length; r++) {
      for (const k of ['plain ipv4', 'plain ipv6']) expect(c[k].delivered[r], `${rep.rounds[r].name}: ${k}`).toBeLessThan(c[k].delivered[0] * 0.8);
    }

    const found = lines.slice(lines.findIndex((l) => l.startsWith('bypasses')));
    expect(rep.bypasses.length, `bypasses (seed ${seed}):\n${found.join('\n')}`).toBe(0);
  }, 120_000);
});
