// SPDX-License-Identifier: Apache-2.0
// The agent's tracer end to end: a real agent with `trace: {enabled: true}`, its event stream read
// over HTTP on 127.0.0.1 (a random port) while child processes with known pids call mkdir. A stream
// filtered by pid sees its child's call and nobody else's; an unfiltered one sees both; a bad filter
// is a 400 before any stream starts; stopping the agent ends the streams and detaches the tracer.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { StateStore } from '../../src/agent/store.js';
import * as G from '../../src/gen/trace.js';
import { CliProcess } from '../helpers/cli.js';
import { describeKernel, heldPrograms, sh } from '../helpers/kernel.js';
import { makeNetns, type Netns } from '../helpers/netns.js';
import { SseReader, until } from '../helpers/sse.js';

/** `sh` that waits for a line on stdin, then becomes `mkdir PATH` (same pid, comm `mkdir`). */
class MkdirChild {
  readonly proc: ChildProcess;
  constructor(readonly path: string) {
    this.proc = spawn('sh', ['-c', 'read go; exec mkdir "$0"', path], { stdio: ['pipe', 'ignore', 'inherit'] });
  }
  get pid(): number {
    return this.proc.pid!;
  }
  async go(): Promise<void> {
    const exited = new Promise<number | null>((r) => this.proc.on('exit', (c) => r(c)));
    this.proc.stdin!.end('go\n');
    expect(await exited).toBe(0);
  }
}

const ours = new Set<string>(G.LAYOUT.programs.map((p) => p.name));
const tracePrograms = (): string[] =>
  (JSON.parse(sh('bpftool', ['-j', 'prog', 'show'])) as Array<{ id: number; name?: string }>).filter((p) => ours.has(p.name ?? '')).map((p) => `${p.id}`);

describeKernel('agent: the tracer as an event stream', () => {
  let dir: string;
  let agent: CliProcess | null = null;
  let ns: Netns | null = null;

  beforeAll(() => {
    // the agent and its API on a loopback of the test's own
    ns = makeNetns();
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-agent-trace-'));
    writeFileSync(join(dir, 'config.yaml'), 'trace:\n  enabled: true\n');
  });
  afterAll(async () => {
    await agent?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    ns?.cleanup();
  });

  it('a pid filter keeps only its child\'s mkdir; the unfiltered stream sees both; a bad filter is a 400', async () => {
    agent = new CliProcess(['agent', '--config', join(dir, 'config.yaml'), '--state-dir', join(dir, 'state'), '--listen', '127.0.0.1:0']);
    const url = (await agent.waitFor(/api: (http:\/\/127\.0\.0\.1:\d+)\/v1/))[1];
    await agent.waitFor(/"msg":"ready"/);
    expect(agent.stdout).toContain('"msg":"trace: mkdir, mkdirat"');
    // the agent's own programs, by the descriptors it holds (other processes may trace too)
    const loaded = tracePrograms().filter((id) => heldPrograms(agent!.child.pid!).includes(Number(id)));
    expect(loaded.length).toBeGreaterThan(0);

    const auth = { authorization: `Bearer ${readFileSync(join(dir, 'state', 'token'), 'utf8').trim()}` };
    const bad = await fetch(`${url}/v1/trace/events?pid=abc`, { headers: auth });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ code: 'EBPFNET_USAGE', message: "validate querystring: pid 'abc' is not a process id; give a positive integer, e.g. pid=1234" });

    const a = new MkdirChild(join(dir, 'made-by-a'));
    const b = new MkdirChild(join(dir, 'made-by-b'));
    const ac = new AbortController();
    const filtered = new SseReader(await fetch(`${url}/v1/trace/events?pid=${a.pid}`, { signal: ac.signal, headers: auth }));
    const all = new SseReader(await fetch(`${url}/v1/trace/events?name=mkdir`, { signal: ac.signal, headers: auth }));
    expect(filtered.res.status).toBe(200);
    expect(all.res.status).toBe(200);
    await a.go();
    await b.go();
    expect(existsSync(a.path) && existsSync(b.path)).toBe(true);

    const mine = (s: SseReader) => s.events().filter((e) => e.path === a.path || e.path === b.path);
    await until('both calls on the unfiltered stream', () => mine(all).length === 2);
    await until("a's call on the filtered stream", () => mine(filtered).length === 1);
    expect(mine(all).map((e) => [e.pid, e.path, e.comm, e.result])).toEqual([
      [a.pid, a.path, 'mkdir', '0'],
      [b.pid, b.path, 'mkdir', '0'],
    ]);
    // nothing but a's pid, ever, on the filtered stream
    expect(new Set(filtered.events().map((e) => e.pid))).toEqual(new Set([a.pid]));
    expect(filtered.events()[0]).toMatchObject({ v: 1, syscall: expect.stringMatching(/^mkdir(at)?$/), pid: a.pid, tid: a.pid, path: a.path, mode: '0777', ret: 0 });

    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/^ebpfnet_trace_streams 2$/m);
    const counted = [...metrics.matchAll(/^ebpfnet_trace_events_total\{syscall="mkdir(?:at)?",result="0"\} (\d+)$/gm)].reduce((x, m) => x + Number(m[1]), 0);
    expect(counted).toBeGreaterThanOrEqual(2);
    expect(metrics).toMatch(/^ebpfnet_trace_events_lost_total \d+$/m);
    // the tracer's programs in the BPF metrics: its exit program ran for those calls at least
    const runs = /^ebpfnet_bpf_program_runs_total\{datapath="trace",program="tr_exit",target="syscalls"\} (\d+)$/m.exec(metrics);
    expect(Number(runs?.[1]), metrics).toBeGreaterThanOrEqual(2);

    // stopping the agent ends both streams and detaches the tracer
    expect(await agent.stop('SIGTERM')).toBe(0);
    await Promise.all([filtered.done, all.done]);
    expect(JSON.stringify(StateStore.load(join(dir, 'state')))).not.toContain('trace');
    const left = tracePrograms();
    expect(loaded.filter((id) => left.includes(id))).toEqual([]);
  });
});
