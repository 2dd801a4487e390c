// SPDX-License-Identifier: Apache-2.0
// GET /v1/trace/events without root: an in-memory ring stands in for the tracer, and the agent's
// API listens on 127.0.0.1 (a random port), because a Server-Sent Events stream is only a stream
// over a real connection. Checked: the query is validated before the stream starts, each stream
// gets the events its filters pass, a stalled client drops events instead of holding up the others
// or growing memory, every event is accounted for, and a client that leaves is unsubscribed.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/agent/config.js';
import { buildApi } from '../../src/api/app.js';
import { STREAM_BUFFER } from '../../src/api/trace-routes.js';
import { registerAgentLbTraceMetrics } from '../../src/cli/agent.js';
import { registerBpfMetrics } from '../../src/metrics/bpf.js';
import { fakeTracer } from '../helpers/agent-fakes.js';
import { SseReader, until } from '../helpers/sse.js';

const TOKEN = 'test-token-0123456789abcdef';
const auth = { authorization: `Bearer ${TOKEN}` };

describe('agent tracer stream (SSE over 127.0.0.1)', () => {
  let dir: string;
  let app: FastifyInstance;
  let agent: Agent;
  let tracer: ReturnType<typeof fakeTracer>;
  let registry: Registry;
  let base: string;
  const aborts: AbortController[] = [];
  const sockets: Socket[] = [];

  const start = async (config: string): Promise<void> => {
    agent = Agent.open({ stateDir: dir, config: parseConfig(config), tracer: tracer.backend });
    registry = new Registry();
    registerAgentLbTraceMetrics(registry, agent);
    app = await buildApi({ agent, registry, token: TOKEN });
    base = await app.listen({ host: '127.0.0.1', port: 0 });
  };
  const stream = async (query = ''): Promise<SseReader> => {
    const ac = new AbortController();
    aborts.push(ac);
    const res = await fetch(`${base}/v1/trace/events${query}`, { signal: ac.signal, headers: auth });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    return new SseReader(res);
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-agent-trace-'));
    tracer = fakeTracer();
  });
  afterEach(async () => {
    for (const a of aborts.splice(0)) a.abort();
    for (const s of sockets.splice(0)) s.destroy();
    await app?.close();
    agent?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a bad filter is a 400 JSON error before any stream starts; nothing is subscribed', async () => {
    await start('trace:\n  enabled: true\n');
    const cases: Array<[string, RegExp]> = [
      ['?pid=abc', /^validate querystring: pid 'abc' is not a process id; give a positive integer, e\.g\. pid=1234$/],
      ['?pid=0', /pid 0 is out of range/],
      ['?uid=no-such-user-xyz', /uid: no user named 'no-such-user-xyz'/],
      ['?syscall=rmdir', /unknown syscall 'rmdir'/],
      ['?failed=maybe', /failed must be equal to one of the allowed values/],
      ['?name=a/b', /name 'a\/b' cannot be a command name/],
      ['?cgroup=system.slice', /cgroup: a cgroup is filtered in the kernel, for all streams at once; set trace\.cgroup in the agent config/],
      ['?duration=5', /must NOT have additional properties/],
      ['?pid=1&pid=2', /pid must be string/],
    ];
    for (const [q, msg] of cases) {
      const r = await fetch(`${base}/v1/trace/events${q}`, { headers: auth });
      expect(r.status, q).toBe(400);
      expect(r.headers.get('content-type'), q).toMatch(/^application\/json/);
      const body = (await r.json()) as { code: string; message: string };
      expect(body.code).toBe('EBPFNET_USAGE');
      expect(body.message, q).toMatch(msg);
    }
    expect(agent.trace.streams().clients).toBe(0);
  });

  it("the stream shows every user's calls: it needs the token even on loopback, and the OpenAPI document says so", async () => {
    await start('trace:\n  enabled: true\n');
    for (const headers of [{}, { authorization: 'Bearer wrong' }]) {
      const r = await fetch(`${base}/v1/trace/events`, { headers });
      expect(r.status).toBe(401);
      expect(((await r.json()) as { message: string }).message).toMatch(/^authorize GET \/v1\/trace\/events: /);
    }
    expect(agent.trace.streams().clients).toBe(0);
    const doc = (await (await fetch(`${base}/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, { security?: unknown; responses: Record<string, { content: Record<string, unknown> }> }>> };
    const get = doc.paths['/v1/trace/events'].get;
    expect(get.security).toEqual([{ bearer: [] }]);
    expect(Object.keys(get.responses['200'].content)).toEqual(['text/event-stream']);
    expect(Object.keys(get.responses)).toContain('401');
    // reads of the other routes stay open on loopback
    expect((await fetch(`${base}/v1/filter`)).status).toBe(200);
  });

  it('with the tracer off the stream is a 404 that says how to turn it on; no tracer was loaded', async () => {
    await start('trace:\n  enabled: false\n');
    const r = await fetch(`${base}/v1/trace/events`, { headers: auth });
    expect(r.status).toBe(404);
    expect(await r.json()).toEqual({ code: 'EBPFNET_NOT_FOUND', message: 'trace events: the tracer is off; turn it on in the agent config (trace: {enabled: true}) and restart the agent' });
    expect(tracer.opened).toBe(0);
  });

  it('concurrent streams each get what their filters pass; metrics count every event; a client that leaves is unsubscribed', async () => {
    await start('trace:\n  enabled: true\n');
    const mine = await stream('?pid=100');
    const failed = await stream('?failed=true&syscall=mkdirat');
    const all = await stream();
    await until('three subscribers', () => agent.trace.streams().clients === 3);
    tracer.push({ pid: 100, tid: 100, pathText: '/tmp/a' });
    tracer.push({ pid: 200, tid: 201, pathText: '/tmp/b', commText: 'other' });
    tracer.push({ pid: 200, tid: 201, pathText: 'c', syscall: tracer.syscallId('mkdirat'), ret: -17, dirfd: 3, flags: 0 });
    await until('all three events on the unfiltered stream', () => all.events().length === 3);
    await until('one event on the pid stream', () => mine.events().length === 1);
    await until('one on the failed stream', () => failed.events().length === 1);
    expect(mine.events()[0]).toMatchObject({ v: 1, syscall: 'mkdir', pid: 100, tid: 100, comm: 'mkdir', path: '/tmp/a', result: '0', mode: '0755' });
    expect(failed.events()[0]).toMatchObject({ syscall: 'mkdirat', pid: 200, path: 'c', ret: -17, result: 'EEXIST' });
    expect(all.events().map((e) => e.path)).toEqual(['/tmp/a', '/tmp/b', 'c']);
    tracer.lose(5n);
    const m = await registry.metrics();
    expect(m).toContain('ebpfnet_trace_events_total{syscall="mkdir",result="0"} 2');
    expect(m).toContain('ebpfnet_trace_events_total{syscall="mkdirat",result="EEXIST"} 1');
    expect(m).toContain('ebpfnet_trace_events_lost_total 5');
    expect(m).toContain('ebpfnet_trace_streams 3');
    // the tracer's programs and maps are among the agent's BPF sources
    const bpf = new Registry();
    registerBpfMetrics(bpf, () => agent.bpfSources(), () => true);
    const b = await bpf.metrics();
    expect(b).toContain('ebpfnet_bpf_program_runs_total{datapath="trace",program="tr_exit",target="syscalls"} 3');
    expect(b).toContain('ebpfnet_bpf_map_max_entries{datapath="trace",map="tr_inflight",target="syscalls"} 16384');

    aborts[0].abort();
    await until('the pid stream to be unsubscribed', () => agent.trace.streams().clients === 2);
    tracer.push({ pid: 100, pathText: '/tmp/d' });
    await until('the fourth event', () => all.events().length === 4);
    expect(mine.events()).toHaveLength(1);
  });

  it('a stalled client drops (and is told how many) instead of holding up the others or growing without bound', async () => {
    await start('trace:\n  enabled: true\n');
    // a client that sends its request and then reads nothing
    const slow = connect({ host: '127.0.0.1', port: Number(new URL(base).port) });
    sockets.push(slow);
    await new Promise<void>((r) => slow.once('connect', () => r()));
    slow.write(`GET /v1/trace/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
    slow.pause();
    const fast = await stream();
    await until('two subscribers', () => agent.trace.streams().clients === 2);

    // far more than the stalled client's socket buffers and STREAM_BUFFER hold together, at a pace
    // the fast client (in this same process) keeps up with
    const N = 40_000;
    const ROUND = 500;
    const path = `/tmp/${'p'.repeat(200)}`;
    for (let i = 0; i < N; i += ROUND) {
      for (let j = i; j < i + ROUND; j++) tracer.push({ pid: 1000 + (j % 1000), pathText: path });
      await until(`event ${i + ROUND} on the fast stream`, () => fast.received === i + ROUND);
    }
    expect(fast.messages.filter((x) => x.event === 'dropped')).toEqual([]);
    const { dropped, delivered } = agent.trace.streams();
    expect(dropped).toBeGreaterThan(0);
    expect(delivered + dropped).toBe(2 * N);
    const m = await registry.metrics();
    expect(m).toContain(`ebpfnet_trace_stream_dropped_total ${dropped}`);
    // what the stalled stream was sent is bounded by the buffer (plus what the sockets held)
    const sentToSlow = delivered - N;
    expect(sentToSlow * 300).toBeLessThan(STREAM_BUFFER + 16 * 1024 * 1024);

    // it reads again: it gets what was queued, then learns how many it missed
    const raw = new SseReader(new Response(''));
    slow.on('data', (d: Buffer) => raw.feed(d.toString('utf8')));
    slow.resume();
    await until('the queued events', () => raw.received === sentToSlow, 30_000);
    tracer.push({ pid: 7, pathText: '/tmp/last' });
    await until('the last event', () => raw.events().some((e) => e.path === '/tmp/last'));
    const note = raw.messages.find((x) => x.event === 'dropped');
    expect(note).toBeDefined();
    expect(JSON.parse(note!.data)).toEqual({ dropped });
    expect(raw.received + dropped).toBe(N + 1);
  });

  it('closing the agent ends open streams cleanly', async () => {
    await start('trace:\n  enabled: true\n');
    const s = await stream();
    await app.close();
    await s.done;
    expect(agent.trace.streams().clients).toBe(0);
    agent.close();
    expect(tracer.closed).toBe(1);
  });

  it('config errors in the trace section are one line naming the key', () => {
    const cases: Array<[string, RegExp]> = [
      ['trace:\n  pid: abc\n', /^read config config:2: trace\.pid: 'abc' is not a process id; give a positive integer, e\.g\. pid=1234$/],
      ['trace:\n  enabled: true\n  pid: abc\n', /^read config config:3: trace\.pid: 'abc' is not a process id/],
      ['trace:\n  syscall: rmdir\n', /^read config config:2: trace\.syscall: unknown syscall 'rmdir'/],
      ['trace:\n  cgroup: a\n  container: b\n', /^read config config:2: trace: cgroup and container both name a cgroup/],
      ['trace:\n  bufferSize: 3M\n', /^read config config:2: trace\.bufferSize: 3M is not a power of two/],
      ['trace:\n  output: json\n', /^read config config:2: trace: unknown key 'output'/],
      ['trace:\n  enabled: yes please\n', /trace\.enabled: yes please is not true or false/],
      ['trace:\n  syscall: rmdir\n', /unknown syscall 'rmdir'/],
    ];
    for (const [text, msg] of cases) expect(() => parseConfig(text), text).toThrow(msg);
    expect(parseConfig('trace:\n  pid: 42\n  failed: true\n  syscall: mkdirat\n').trace).toMatchObject({ enabled: true, plan: { pid: 42, failedOnly: true, syscalls: [{ name: 'mkdirat' }] } });
  });
});
