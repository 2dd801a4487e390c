// SPDX-License-Identifier: Apache-2.0
// -o json on the commands that need the kernel: what a script reads from stdout, checked against
// what really happened (a pinned filter inside a test namespace, real pings, a real mkdir).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { CliProcess, runCli } from '../helpers/cli.js';
import { describeKernel, ok, xdpOn } from '../helpers/kernel.js';
import { makeTwoHosts, type TwoHosts } from '../helpers/netns.js';

interface Count {
  packets: number;
  bytes: number;
}
interface StatusJson {
  scope: string;
  namespaces: Array<{
    netns: number;
    name: string | null;
    current: boolean;
    filters: Array<{
      interface: string;
      ifindex: number;
      gone: boolean;
      pinDir: string;
      hook: string;
      mode: string | null;
      defaultAction: string;
      auditMode: boolean;
      rules: Array<{ id: number; action: string; match: string } & Count>;
      default: { pass: Count; drop: Count };
      malformed: Count;
    }>;
  }>;
  otherNamespaceFilters: number;
  balancer: unknown;
  tunnels: string[];
}

// a balancer pinned elsewhere by someone else must not show in these tests' status
const ENV = { ...process.env, EBPFNET_LB_PIN_DIR: `/sys/fs/bpf/ebpfnet-test-output-${process.pid}/lb` };

describeKernel('-o json on the commands that print state', () => {
  let h: TwoHosts;
  beforeEach(() => {
    h = makeTwoHosts();
  });
  afterEach(() => {
    runCli(['unload', '--iface', h.targetIf], { ns: h.target });
    h?.cleanup();
  });

  it('status -o json: the pinned filter, its rules and counters as numbers that moved by exactly the pings sent', () => {
    const f = runCli(['filter', '--iface', h.targetIf, '--deny', 'icmp', '--deny', 'tcp/22', '--pin'], { ns: h.target });
    expect(f.status, f.stderr).toBe(0);
    const N = 3;
    expect(ok('ping', ['-c', String(N), '-i', '0.2', '-W', '1', h.targetIp], h.source, 15_000)).toBe(false);
    const r = runCli(['status', '-o', 'json'], { ns: h.target, env: ENV });
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as StatusJson;
    expect(j.scope).toBe('thisNamespace');
    expect(j.balancer).toBeNull();
    expect(j.otherNamespaceFilters).toBeTypeOf('number');
    expect(j.namespaces).toHaveLength(1);
    expect(j.namespaces[0].current).toBe(true);
    expect(j.namespaces[0].name).toBe(h.target);
    expect(j.namespaces[0].netns).toBeTypeOf('number');
    const [flt] = j.namespaces[0].filters;
    expect(flt).toMatchObject({ interface: h.targetIf, gone: false, hook: 'xdp', mode: 'native', defaultAction: 'allow', auditMode: false });
    expect(flt.ifindex).toBeTypeOf('number');
    expect(flt.pinDir).toMatch(new RegExp(`^/sys/fs/bpf/ebpfnet/filter/${j.namespaces[0].netns}/${flt.ifindex}$`));
    expect(flt.rules.map((x) => `${x.action} ${x.match}`)).toEqual(['deny icmp', 'deny tcp/22']);
    const icmp = flt.rules[0];
    expect(icmp.packets).toBe(N);
    // an echo request over IPv4 on Ethernet: 14 + 20 + 8 + ping's 56 bytes of data
    expect(icmp.bytes).toBe(N * 98);
    expect(flt.rules[1]).toMatchObject({ packets: 0, bytes: 0 });
    expect(flt.rules.every((x) => typeof x.id === 'number')).toBe(true);
    expect(flt.default.pass.packets).toBeTypeOf('number');
    expect(flt.malformed).toEqual({ packets: 0, bytes: 0 });
    // --json is the same option; the text stays as it was
    expect(JSON.parse(runCli(['status', '--json'], { ns: h.target, env: ENV }).stdout)).toMatchObject({ namespaces: [{ filters: [{ rules: [{ packets: N }, { packets: 0 }] }] }] });
    expect(runCli(['status'], { ns: h.target, env: ENV }).stdout).toMatch(/deny icmp\s+3 packets\s+294 bytes/);
    // --all-namespaces: the same filter, under its namespace
    const all = JSON.parse(runCli(['status', '-o', 'json', '--all-namespaces'], { ns: h.source, env: ENV }).stdout) as StatusJson;
    expect(all.scope).toBe('allNamespaces');
    const there = all.namespaces.find((n) => n.netns === j.namespaces[0].netns)!;
    expect(there.current).toBe(false);
    expect(there.filters.map((x) => x.interface)).toEqual([h.targetIf]);
  });

  it('status -o json with nothing pinned is a document, not a sentence; a bad format is exit 2 with stdout empty', () => {
    const r = runCli(['status', '-o', 'json'], { ns: h.target, env: ENV });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ namespaces: [], balancer: null, tunnels: [] });
    const bad = runCli(['status', '-o', 'yaml'], { ns: h.target, env: ENV });
    expect(bad.status).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toBe("ebpfnet: parse --output: 'yaml' is not an output format (json, text); use -o json or -o text\n");
    // an error under -o json keeps its one line on stderr, and stdout stays empty
    const e = runCli(['filter', 'explain', 'tcp 10.0.0.1:1 -> 10.0.0.2:22', '--iface', 'nosuch0', '-o', 'json'], { ns: h.target });
    expect(e.status).not.toBe(0);
    expect(e.stdout).toBe('');
    expect(e.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('filter explain -o json names the deciding rule and the verdict', () => {
    const r = runCli(['filter', 'explain', 'tcp 10.0.0.1:5555 -> 10.0.0.2:22', '--deny', 'tcp/22', '--allow', 'tcp/80', '-o', 'json'], { ns: h.target });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ packet: 'tcp 10.0.0.1:5555 -> 10.0.0.2:22', verdict: 'DROP', rule: 'deny tcp/22', ruleId: expect.any(Number), auditMode: false, model: { action: 'deny', agrees: true } });
    const pass = JSON.parse(runCli(['filter', 'explain', 'udp 10.0.0.1:5555 -> 10.0.0.2:53', '--deny', 'tcp/22', '--json'], { ns: h.target }).stdout) as { verdict: string; rule: string | null; by: string };
    expect(pass).toMatchObject({ verdict: 'PASS', rule: null, by: 'the default (allow)' });
    expect(xdpOn(h.targetIf, h.target)).toBe(false);
  });

  it('doctor and verify -o json: one document each, counts as numbers', () => {
    const d = runCli(['doctor', '-o', 'json']);
    expect(d.status, d.stderr).toBe(0);
    const doc = JSON.parse(d.stdout) as { checks: Array<{ name: string; detail: string }> };
    expect(doc).toMatchObject({ ok: true, checks: expect.any(Array), tunnels: expect.any(Array) });
    // doctor and verify agree on whether this kernel loads lsm programs
    const lsmRefused = doc.checks.find((c) => c.name === 'BPF LSM')!.detail.includes('refuses lsm programs');
    const v = runCli(['verify', '-o', 'json'], { timeout: 120_000 });
    expect(v.status, v.stderr).toBe(0);
    const j = JSON.parse(v.stdout) as { kernel: string; rows: Array<{ program: string; type: string; verdict: string; insns: unknown; baselineInsns: unknown }> };
    expect(j.rows.length).toBeGreaterThan(0);
    for (const row of j.rows) {
      if (row.type === 'lsm' && lsmRefused) {
        expect(row.verdict, row.program).toBe('refused');
        continue;
      }
      expect(row.verdict, row.program).toBe('ok');
      expect(row.insns, row.program).toBeTypeOf('number');
    }
    expect(j.rows.some((r) => typeof r.baselineInsns === 'number')).toBe(true);
  });

  it('lab status -o json is one document', () => {
    const r = runCli(['lab', 'status', '--output', 'json']);
    const j = JSON.parse(r.stdout) as { up: boolean; netns: Record<string, boolean>; processes: unknown[] };
    expect(j.up).toBeTypeOf('boolean');
    expect(Object.values(j.netns).every((x) => typeof x === 'boolean')).toBe(true);
  });

  it('trace --json is -o json: JSON Lines, one per call, with numbers as numbers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebpfnet-output-'));
    const t = new CliProcess(['trace', 'mkdir', '--json', '-d', '20', '-n', 'mkdir']);
    try {
      for (let i = 0; i < 50 && !/tracing/.test(t.stderr); i++) await new Promise((r) => setTimeout(r, 100));
      expect(t.stderr).toMatch(/tracing/);
      const target = join(dir, 'made-by-output-test');
      expect(ok('mkdir', [target])).toBe(true);
      const line = await t.waitFor(new RegExp(`^.*made-by-output-test.*$`, 'm'));
      const ev = JSON.parse(line[0]) as { v: number; pid: number; path: string; result: string };
      expect(ev).toMatchObject({ v: 1, path: target, result: '0' });
      expect(ev.pid).toBeTypeOf('number');
    } finally {
      await t.stop('SIGINT');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
