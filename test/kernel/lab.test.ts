// SPDX-License-Identifier: Apache-2.0
// The lab as a user runs it: `ebpfnet lab up|status|exec|down` through the CLI, and `ebpfnet lab demo
// --json`, whose steps are asserted one by one. Both must leave nothing behind: no namespace, no
// process, no XDP or cgroup program, no pin, no cgroup, no state dir. Other ebpfnet runs on the same
// machine load programs of the same names, so the program check follows the ones the lab made, by
// id: those held by processes inside the lab's namespaces, and those attached to the lab's cgroup.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import * as F from '../../src/gen/filter.js';
import * as LB from '../../src/gen/lb.js';
import * as TR from '../../src/gen/trace.js';
import { packageDir } from '../../src/loader/paths.js';
import { findCgroup2 } from '../../src/loader/system.js';
import { CLI, runCli } from '../helpers/cli.js';
import { describeKernel, heldPrograms, sh } from '../helpers/kernel.js';

const NETNS = ['ebpfnet-source', 'ebpfnet-target'];
const STATE_DIR = '/run/ebpfnet/lab';
const PIN_ROOT = '/sys/fs/bpf/ebpfnet/lab';
/** programs the demo loads: the filter's, the tracer's and the balancer's */
const DEMO_PROGS = [F.LAYOUT, TR.LAYOUT, LB.LAYOUT].flatMap((l) => l.programs.map((p) => p.name as string));

const netnsList = (): string[] => sh('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
const cgroupDir = (): string | null => (findCgroup2() ? join(findCgroup2()!, 'ebpfnet-lab') : null);
/** pids of processes started from the lab's state dir (its sshd, by its config path) */
const labProcesses = (): number[] =>
  readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return sh('cat', [`/proc/${d}/cmdline`]).includes(STATE_DIR) || sh('cat', [`/proc/${d}/cmdline`]).includes('dist/lab/http.js\0serve');
      } catch {
        return false;
      }
    })
    .map(Number);

/**
 * Pids of the processes in the lab's network namespaces as they are now (by the namespaces'
 * inodes: read fresh each time, since the kernel hands a freed inode to the next namespace made).
 */
function inLabNamespaces(): number[] {
  const inodes = new Set<number>();
  for (const n of NETNS) {
    try {
      inodes.add(statSync(`/run/netns/${n}`).ino);
    } catch {
      /* not there (yet, or any more) */
    }
  }
  if (inodes.size === 0) return [];
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => {
      try {
        return inodes.has(statSync(`/proc/${pid}/ns/net`).ino);
      } catch {
        return false; // gone
      }
    });
}

/**
 * Adds to `made` the programs the lab has now, id -> name: those held by a process in a lab
 * namespace (the demo's filter and tracer) and those attached to the lab's cgroup (the balancer).
 */
function noteLabPrograms(made: Map<number, string>): void {
  const held = new Set(inLabNamespaces().flatMap(heldPrograms));
  const cg = cgroupDir();
  if (cg && existsSync(cg)) {
    let shown = '[]';
    try {
      shown = sh('bpftool', ['-j', 'cgroup', 'show', cg]).trim() || '[]';
    } catch (e) {
      // the demo's lab down removed the cgroup between the two looks: nothing attached to it now
      if (existsSync(cg)) throw e;
    }
    for (const p of JSON.parse(shown) as Array<{ id: number }>) held.add(p.id);
  }
  if (held.size === 0) return;
  for (const p of JSON.parse(sh('bpftool', ['-j', 'prog', 'show'])) as Array<{ id: number; name?: string }>) if (held.has(p.id)) made.set(p.id, p.name ?? '');
}

/** ids among `ids` still loaded, as id:name */
const stillLoaded = (ids: Iterable<number>): string[] => {
  const want = new Set(ids);
  return (JSON.parse(sh('bpftool', ['-j', 'prog', 'show'])) as Array<{ id: number; name?: string }>).filter((p) => want.has(p.id)).map((p) => `${p.id}:${p.name}`);
};

function expectNothingLeft(made: Map<number, string>): void {
  expect(netnsList().filter((n) => NETNS.includes(n))).toEqual([]);
  expect(existsSync(STATE_DIR)).toBe(false);
  expect(existsSync(PIN_ROOT)).toBe(false);
  expect(existsSync(cgroupDir() ?? '/nonexistent')).toBe(false);
  expect(labProcesses()).toEqual([]);
  expect(stillLoaded(made.keys())).toEqual([]);
}

describeKernel('ebpfnet lab', () => {
  beforeAll(() => {
    // the lab has fixed names: a lab someone left up would make these tests lie
    if (NETNS.some((n) => netnsList().includes(n)) || existsSync(STATE_DIR)) {
      throw new Error('a lab is already up on this machine; take it down first: ebpfnet lab down');
    }
  });

  afterAll(() => {
    // whatever a failed test left
    if (NETNS.some((n) => netnsList().includes(n)) || existsSync(STATE_DIR)) runCli(['lab', 'down']);
  });

  it('up builds two hosts with ssh and http on the target; down removes everything, including what was started in it afterwards', async () => {
    const up = runCli(['lab', 'up']);
    expect(up.status, up.stderr).toBe(0);
    expect(up.stdout).toMatch(/^lab: up: ebpfnet-source \(192\.168\.56\.10\) <-> ebpfnet-target \(192\.168\.56\.11\)/m);
    expect(netnsList()).toEqual(expect.arrayContaining(NETNS));

    const again = runCli(['lab', 'up']);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/^ebpfnet: lab up: the lab is already up .*; take it down first: ebpfnet lab down\n$/);

    const st = JSON.parse(runCli(['lab', 'status', '--json']).stdout) as { up: boolean; processes: Array<{ name: string; running: boolean }> };
    expect(st.up).toBe(true);
    expect(st.processes.map((p) => `${p.name}:${p.running}`).sort()).toEqual(['http:true', 'sshd:true']);

    // the hosts talk over the veth pair only: the addresses are not in the root namespace
    expect(sh('ip', ['-o', 'addr', 'show'])).not.toContain('192.168.56.11/');
    const ssh = runCli(['lab', 'exec', 'source', '--', 'ssh', '-F', `${STATE_DIR}/ssh_config`, 'target', 'echo', 'from-target']);
    expect(ssh.status, ssh.stderr).toBe(0);
    // lab exec hands its own stdio to the command: what the command printed is the CLI's output
    expect(ssh.stdout).toBe('from-target\n');
    const http = runCli(['lab', 'exec', 'source', '--', process.execPath, join(packageDir(), 'dist/lab/http.js'), 'get', 'http://192.168.56.11/']);
    expect(http.status, http.stderr).toBe(0);
    expect(JSON.parse(http.stdout)).toEqual({ bodies: { target: 1 }, errors: {}, last: 'target\n' });
    expect(runCli(['lab', 'exec', 'source', '--', 'ping', '-c', '1', '-W', '1', '192.168.56.11']).status).toBe(0);
    expect(runCli(['lab', 'exec', 'nowhere', '--', 'true']).status).toBe(2);

    // something the lab did not record: a process left in the target, as after a crashed demo
    const stray = spawn(process.execPath, [CLI, 'lab', 'exec', 'target', '--', 'sleep', '600'], { stdio: 'ignore', detached: true });
    // sshd, the HTTP server and the stray (the CLI takes a moment to start on a busy machine)
    const inTarget = (): number => sh('ip', ['netns', 'pids', 'ebpfnet-target']).trim().split('\n').filter(Boolean).length;
    for (const t0 = Date.now(); inTarget() < 3 && Date.now() - t0 < 15_000; ) await new Promise((r) => setTimeout(r, 100));
    expect(inTarget()).toBe(3);
    // the lab itself runs no BPF program: none held in its namespaces, none on its cgroup
    const made = new Map<number, string>();
    noteLabPrograms(made);
    expect([...made.values()]).toEqual([]);

    const down = runCli(['lab', 'down']);
    expect(down.status, down.stderr).toBe(0);
    expect(down.stdout).toContain('lab: removed network namespace ebpfnet-target');
    expect(down.stdout).toMatch(/lab: removed process sshd \(pid \d+\)/);
    await new Promise((r) => setTimeout(r, 100));
    expect(stray.exitCode !== null || stray.signalCode !== null).toBe(true);
    expectNothingLeft(made);
    expect(runCli(['lab', 'down']).stdout).toBe('lab: nothing to remove\n');
    expect(runCli(['lab', 'status']).stdout).toBe('lab: down\n');
  });

  it('demo: every step of the story holds, and the lab is gone afterwards', async () => {
    // a lab the previous test failed to take down would make the demo refuse to start
    if (NETNS.some((n) => netnsList().includes(n)) || existsSync(STATE_DIR)) runCli(['lab', 'down']);
    // the demo runs in the background while the programs it makes are noted, by id, as they appear
    const demo = spawn(process.execPath, [CLI, 'lab', 'demo', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const r = { stdout: '', stderr: '', status: null as number | null };
    demo.stdout.on('data', (d: Buffer) => (r.stdout += d));
    demo.stderr.on('data', (d: Buffer) => (r.stderr += d));
    const exited = new Promise<number | null>((res) => demo.on('exit', (code) => res(code)));
    const made = new Map<number, string>();
    const killer = setTimeout(() => demo.kill('SIGKILL'), 120_000);
    try {
      while (demo.exitCode === null && demo.signalCode === null) {
        noteLabPrograms(made);
        await new Promise((res) => setTimeout(res, 50));
      }
    } finally {
      r.status = await exited;
      clearTimeout(killer);
    }
    expect(r.stdout, r.stderr).not.toBe('');
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { step?: string; verdict?: string; why?: string; transcript?: string[]; result?: string; passed?: number; failed?: number });
    const steps = lines.filter((l) => l.step);
    const failed = steps.filter((s) => s.verdict !== 'PASS').map((s) => `${s.step}: ${s.why}\n${s.transcript?.join('\n')}`);
    expect(failed, r.stderr).toEqual([]);
    expect(steps.map((s) => s.step)).toEqual([
      'set-up: lab up',
      'baseline: ping source -> target works',
      'baseline: ssh source -> target works',
      'baseline: http source -> target works',
      'filter: attached on the target',
      'filtered: ping source -> target fails',
      'filtered: ssh source -> target fails',
      'filtered: http source -> target still works',
      'filtered: drop counters count the SSH and ping packets',
      'filtered: the Prometheus scrape shows the drops',
      'stopped: the filter prints totals, detaches and exits 0',
      'stopped: ping source -> target works again',
      'stopped: ssh source -> target works again',
      'stateful: filter --default deny --allow tcp/22 attached on the target',
      'stateful: the target still fetches a page from the source',
      'stateful: ssh source -> target works (allow tcp/22)',
      'stateful: http source -> target is dropped (default deny)',
      'stateful: the totals count the replies that passed as established',
      'trace: a mkdir on the target appears in the tracer',
      'lb: without the balancer the VIP does not answer',
      'lb: the VIP is answered by both backends',
      'lb: detach removes the balancer',
      'clean-up: lab down removes everything',
    ]);
    expect(lines.at(-1)).toEqual({ result: 'PASS', passed: 23, failed: 0 });
    expect(r.status).toBe(0);

    // what the transcript shows is what happened: the counters, the scrape, the event, the answers
    const t = (name: string): string => steps.find((s) => s.step === name)!.transcript!.join('\n');
    expect(t('filtered: drop counters count the SSH and ping packets')).toMatch(/eth1: dropped \d+ \(tcp\/22 [1-9]\d*, icmp [1-9]\d*\)/);
    expect(t('filtered: the Prometheus scrape shows the drops')).toMatch(/ebpfnet_filter_packets_total\{interface="eth1",rule="icmp",action="deny"\} [1-9]/);
    expect(t('filtered: ssh source -> target fails')).toMatch(/Connection timed out/);
    expect(t('stateful: filter --default deny --allow tcp/22 attached on the target')).toMatch(/connection state: on: replies to connections this host opens/);
    expect(t('stateful: the target still fetches a page from the source')).toMatch(/^target\$ curl http:\/\/192\.168\.56\.10\/\n\s+source$/m);
    expect(t('stateful: http source -> target is dropped (default deny)')).toMatch(/error: timed out/);
    expect(t('stateful: the totals count the replies that passed as established')).toMatch(/^\s+eth1\s+allow established\s+[1-9][\d,]* packets?/m);
    expect(t('trace: a mkdir on the target appears in the tracer')).toMatch(/"comm":"mkdir","path":"\/run\/ebpfnet\/lab\/mkdir-demo-\d+"/);
    expect(t('lb: the VIP is answered by both backends')).toMatch(/^\s+[1-9]\d* backend-a$/m);
    expect(t('lb: the VIP is answered by both backends')).toMatch(/^\s+[1-9]\d* backend-b$/m);
    // the watch saw each datapath's programs while they ran, so the check below follows all of them
    const seen = new Set(made.values());
    for (const layout of [F.LAYOUT, TR.LAYOUT, LB.LAYOUT]) {
      expect(layout.programs.some((p) => seen.has(p.name as string)), `no ${layout.object} program seen during the demo: ${[...made].join(', ')}`).toBe(true);
    }
    expectNothingLeft(made);
  }, 150_000);
});
