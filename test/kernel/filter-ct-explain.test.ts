// SPDX-License-Identifier: Apache-2.0
// The connection table from the command line (issue 15): `filter --ct-max` sizes it (and refuses a
// bad size in one line), `filter conntrack` and `status` show its numbers, and `filter explain
// --iface` says "PASS as established" for a reply of a real connection the target holds open to
// the source, with what the rules alone would say; without a tracked flow it says what it always did.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { describeKernel } from '../helpers/kernel.js';
import { makeTwoHosts, type TwoHosts } from '../helpers/netns.js';

const up = (p: ChildProcess): Promise<void> => new Promise((res) => p.stdout!.once('data', () => res()));

describeKernel('the connection table and explain from the command line', () => {
  let h: TwoHosts;
  const procs: ChildProcess[] = [];
  beforeEach(async () => {
    h = makeTwoHosts();
    // an echo server on the source
    const echo = spawn('ip', ['netns', 'exec', h.source, process.execPath, '-e', `require('net').createServer((c) => c.pipe(c)).listen(9090, '${h.sourceIp}', () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(echo);
    await up(echo);
  });
  afterEach(() => {
    for (const p of procs.splice(0)) p.kill();
    runCli(['unload', '--all'], { ns: h.target });
    h?.cleanup();
  });

  it('--ct-max out of range, or without state: one line, exit 2, nothing attached', () => {
    for (const args of [['--ct-max', '10'], ['--ct-max', 'many'], ['--ct-max', '1000', '--stateless']]) {
      const r = runCli(['filter', '--iface', h.targetIf, '--default', 'deny', '--allow', 'tcp/22', '--pin', ...args], { ns: h.target });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n').length, r.stderr).toBeLessThanOrEqual(2);
      expect(r.stderr).toMatch(/--ct-max/);
    }
    expect(runCli(['status'], { ns: h.target }).stdout).toContain('no pinned filters');
  });

  it('a held-open connection: conntrack and status show the table of --ct-max; explain says a reply passes as established', async () => {
    const r = runCli(['filter', '--iface', h.targetIf, '--default', 'deny', '--allow', 'tcp/22', '--pin', '--ct-max', '128'], { ns: h.target });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('connection table: 128 flows per interface');
    // the target opens a connection to the source and keeps it
    const client = spawn('ip', ['netns', 'exec', h.target, process.execPath, '-e', `
      const c = require('net').connect(9090, '${h.sourceIp}', () => c.write('hi'));
      c.on('data', (d) => console.log('port ' + c.localPort));`], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(client);
    const port = await new Promise<number>((res) => client.stdout!.once('data', (b: Buffer) => res(Number(/port (\d+)/.exec(String(b))![1]))));

    const ct = JSON.parse(runCli(['filter', 'conntrack', '-o', 'json'], { ns: h.target }).stdout) as { interfaces: Array<{ table: { maxEntries: number; entries: number; inserts: number; evictions: number }; flows: Array<{ proto: string; local: string; remote: string; state: string }> }> };
    const mine = ct.interfaces[0];
    expect(mine.flows).toContainEqual(expect.objectContaining({ proto: 'tcp', local: `${h.targetIp}:${port}`, remote: `${h.sourceIp}:9090`, state: 'established' }));
    expect(mine.table.maxEntries).toBe(128);
    expect(mine.table.entries).toBeGreaterThanOrEqual(1);
    expect(mine.table.inserts).toBeGreaterThanOrEqual(1);
    expect(mine.table.evictions).toBe(0);
    expect(runCli(['filter', 'conntrack'], { ns: h.target }).stdout).toMatch(new RegExp(`^${h.targetIf}: table: \\d+ of 128 entries`, 'm'));
    const st = runCli(['status'], { ns: h.target });
    expect(st.stdout).toMatch(new RegExp(`^${h.targetIf}: connection table: \\d+ of 128 entries \\([\\d.]+%\\); \\d+ inserts, 0 expiries, 0 resets, 0 evictions, 0 misses$`, 'm'));
    const sj = JSON.parse(runCli(['status', '-o', 'json'], { ns: h.target }).stdout) as { namespaces: Array<{ filters: Array<{ connectionTable: { maxEntries: number } | null }> }> };
    expect(sj.namespaces[0].filters[0].connectionTable!.maxEntries).toBe(128);

    // the source's reply on that connection
    const reply = `tcp ${h.sourceIp}:9090 -> ${h.targetIp}:${port} flags ack`;
    const e = runCli(['filter', 'explain', '--iface', h.targetIf, reply], { ns: h.target });
    expect(e.status, e.stderr + e.stdout).toBe(0);
    expect(e.stdout.split('\n')).toEqual([
      `${reply}: PASS as established (the tracked flow tcp ${h.targetIp}:${port} <-> ${h.sourceIp}:9090, established, opened by this host)`,
      'without that flow: DROP by the default (deny)',
      'the reference model agrees',
      '',
    ]);
    const ej = JSON.parse(runCli(['filter', 'explain', '--iface', h.targetIf, reply, '-o', 'json'], { ns: h.target }).stdout) as { verdict: string; by: string; state: { as: string; withoutState: { verdict: string } }; model: { agrees: boolean } };
    expect([ej.verdict, ej.by, ej.state.as, ej.state.withoutState.verdict, ej.model.agrees]).toEqual(['PASS', 'connection state (established)', 'established', 'DROP', true]);
    // the same ports as a SYN: a new connection, which the rules refuse
    const syn = runCli(['filter', 'explain', '--iface', h.targetIf, `tcp ${h.sourceIp}:9090 -> ${h.targetIp}:${port}`], { ns: h.target });
    expect(syn.stdout).toContain(`: DROP by the default (deny)\nthe flow tcp ${h.targetIp}:${port} <-> ${h.sourceIp}:9090, established, opened by this host is tracked, but this packet does not count as part of it`);
    // another port: no flow, the answer of a stateless explain
    const other = `tcp ${h.sourceIp}:9091 -> ${h.targetIp}:${port} flags ack`;
    expect(runCli(['filter', 'explain', '--iface', h.targetIf, other], { ns: h.target }).stdout).toBe(`${other}: DROP by the default (deny)\nthe reference model agrees\n`);
    // a deny rule naming the source wins over the flow
    expect(runCli(['filter', 'set', '--iface', h.targetIf, '--default', 'deny', '--allow', 'tcp/22', '--deny', `from ${h.sourceIp}`], { ns: h.target }).status).toBe(0);
    const denied = runCli(['filter', 'explain', '--iface', h.targetIf, reply], { ns: h.target });
    expect(denied.stdout).toContain(`${reply}: DROP by rule 'deny from ${h.sourceIp}/32'\na deny rule decides before connection state`);
    expect(denied.status).toBe(0);
    // explaining moved nothing in the live table: still no misses
    expect(runCli(['status'], { ns: h.target }).stdout).toMatch(/0 evictions, 0 misses$/m);
  });
});
