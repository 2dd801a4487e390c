// SPDX-License-Identifier: Apache-2.0
// The agent and its HTTP API through inject(): no port, no root. An in-memory filter backend
// stands in for the kernel, so these tests pin down validation, auth, revisions and persistence.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/agent/config.js';
import { loadToken } from '../../src/agent/token.js';
import { buildApi } from '../../src/api/app.js';
import { formatRule } from '../../src/filter/rules.js';
import { registerBpfMetrics } from '../../src/metrics/bpf.js';
import { registerFilterMetrics } from '../../src/metrics/filter.js';
import { fakeKernel } from '../helpers/agent-fakes.js';

const TOKEN = 'test-token-0123456789abcdef';
describe('agent API (inject)', () => {
  let dir: string;
  let app: FastifyInstance;
  let agent: Agent;
  let kernel: ReturnType<typeof fakeKernel>;
  let audit: string[];
  /** the fake run statistics' state: on while the agent holds them */
  let statsHeld: boolean;

  const start = async (config = 'filter:\n  interfaces: [eth9]\n  rules: ["deny tcp/22"]\n'): Promise<void> => {
    audit = [];
    const runStats = () => {
      statsHeld = true;
      return { via: 'bpf_enable_stats' as const, close: () => void (statsHeld = false) };
    };
    agent = Agent.open({ stateDir: dir, config: parseConfig(config), filters: kernel.backend, auditSink: (l) => audit.push(l), runStats });
    const registry = new Registry();
    registerFilterMetrics(registry, () => agent.filter.sources());
    registerBpfMetrics(registry, () => agent.bpfSources(), () => agent.runStats.on);
    app = await buildApi({ agent, registry, token: TOKEN, bodyLimit: 64 * 1024 });
  };
  const auth = { authorization: `Bearer ${TOKEN}` };
  const put = (body: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'PUT', url: '/v1/filter', headers: { ...auth, ...headers }, payload: typeof body === 'string' ? body : JSON.stringify(body), ...(typeof body === 'string' ? {} : {}) });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-agent-'));
    kernel = fakeKernel();
    await start();
  });
  afterEach(async () => {
    await app.close();
    agent.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('GET /v1/filter shows the policy with an ETag; PUT replaces it and bumps the revision', async () => {
    const g = await app.inject('/v1/filter');
    expect(g.statusCode).toBe(200);
    expect(g.json()).toMatchObject({ interfaces: ['eth9'], rules: [{ id: 1, action: 'deny', match: 'tcp/22' }], default: 'allow', audit: false });
    const rev = g.json().revision as number;
    expect(g.headers.etag).toBe(`"${rev}"`);
    const p = await put({ rules: [{ action: 'deny', match: 'tcp/22' }, { action: 'deny', match: 'ICMP' }], default: 'allow' }, { 'content-type': 'application/json', 'if-match': `"${rev}"` });
    expect(p.statusCode, p.body).toBe(200);
    // the same rule keeps its id; the grammar canonicalises what it is given
    expect(p.json().rules).toEqual([{ id: 1, action: 'deny', match: 'tcp/22' }, { id: 2, action: 'deny', match: 'icmp' }]);
    expect(p.json().revision).toBe(rev + 1);
    expect(p.headers.etag).toBe(`"${rev + 1}"`);
    expect(kernel.pinned.get('eth9')!.rules.map(formatRule)).toEqual(['deny tcp/22', 'deny icmp']);
    expect(audit).toHaveLength(1);
    expect(JSON.parse(audit[0])).toMatchObject({ who: expect.stringMatching(/^token@/), op: 'PUT /v1/filter', revision: rev + 1 });
    expect(readFileSync(join(dir, 'audit.log'), 'utf8').trim()).toBe(audit[0]);
  });

  it('a stale If-Match gets 412 and changes nothing', async () => {
    const rev = (await app.inject('/v1/filter')).json().revision as number;
    const r = await put({ rules: [] }, { 'content-type': 'application/json', 'if-match': `"${rev - 1}"` });
    expect(r.statusCode).toBe(412);
    expect(r.json()).toEqual({ code: 'EBPFNET_STALE', message: expect.stringMatching(/^change the filter: If-Match .* is not the current revision/) });
    const a = await app.inject({ method: 'POST', url: '/v1/filter/rules', headers: { ...auth, 'if-match': '"999"' }, payload: { action: 'deny', match: 'udp/53' } });
    expect(a.statusCode).toBe(412);
    expect((await app.inject('/v1/filter')).json().revision).toBe(rev);
    expect(audit).toEqual([]);
  });

  it('writes need the bearer token: 401 without it or with a wrong one; reads do not on loopback', async () => {
    const none = await app.inject({ method: 'PUT', url: '/v1/filter', payload: { rules: [] } });
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(none.json()).toEqual({ code: 'EBPFNET_UNAUTHORIZED', message: expect.stringMatching(/^authorize PUT \/v1\/filter: a bearer token is needed; /) });
    const wrong = await app.inject({ method: 'DELETE', url: '/v1/filter/rules/1', headers: { authorization: 'Bearer nope' } });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().message).toMatch(/the bearer token is wrong/);
    expect((await app.inject('/v1/filter')).json().rules).toHaveLength(1);
  });

  it('validation: unknown fields, wrong types, bad rules and malformed JSON are 400 {code, message} and change nothing', async () => {
    const before = (await app.inject('/v1/filter')).json();
    const cases: Array<[unknown, RegExp]> = [
      [{ rules: [], extra: 1 }, /^validate body: .*must NOT have additional properties/],
      [{ rules: [{ action: 'deny', match: 'tcp/22', id: 3 }] }, /additional properties/],
      [{ rules: 'deny tcp/22' }, /rules must be array/],
      [{ rules: [{ action: 'drop', match: 'tcp/22' }] }, /action must be equal to one of the allowed values/],
      [{ rules: [], audit: 'yes' }, /audit must be boolean/],
      [{ rules: [], default: 1 }, /default must be string/],
      [{ default: 'deny' }, /must have required property 'rules'/],
      [{ rules: [{ action: 'deny', match: 'tcp/99999' }] }, /^parse rule 'tcp\/99999': port 99999 is out of range; ports are 1-65535$/],
      [{ rules: [{ action: 'deny', match: 'icmp/22' }] }, /icmp takes no types/],
      ['{"rules": [', /^parse body: not valid JSON/],
    ];
    for (const [body, msg] of cases) {
      const r = await put(body, { 'content-type': 'application/json' });
      expect(r.statusCode, JSON.stringify(body)).toBe(400);
      expect(r.json().code).toBe('EBPFNET_USAGE');
      expect(r.json().message).toMatch(msg);
    }
    const ruleBad = await app.inject({ method: 'POST', url: '/v1/filter/rules', headers: auth, payload: { action: 'deny', match: 'from 10.0.0.0/33' } });
    expect(ruleBad.statusCode).toBe(400);
    expect(ruleBad.json().message).toMatch(/prefix length \/33 is out of range for IPv4/);
    const idBad = await app.inject({ method: 'DELETE', url: '/v1/filter/rules/abc', headers: auth });
    expect(idBad.statusCode).toBe(400);
    const text = await app.inject({ method: 'PUT', url: '/v1/filter', headers: { ...auth, 'content-type': 'text/plain' }, payload: 'deny tcp/22' });
    expect(text.statusCode).toBe(415);
    expect(Object.keys(text.json()).sort()).toEqual(['code', 'message']);
    // a name twice in one object: parsers disagree on which wins, so neither does
    for (const body of ['{"rules":[],"rules":[{"action":"deny","match":"tcp/1"}]}', '{"rules":[{"action":"deny","match":"tcp/1","m\\u0061tch":"tcp/2"}]}']) {
      const dup = await put(body, { 'content-type': 'application/json' });
      expect(dup.statusCode, body).toBe(400);
      expect(dup.json()).toEqual({ code: 'EBPFNET_USAGE', message: expect.stringMatching(/^parse body: the name "(rules|match)" appears twice in one object; send each name once$/) });
    }
    const distinct = await put('{"rules":[{"action":"deny","match":"tcp/1"},{"action":"deny","match":"tcp/2"}],"audit":false}', { 'content-type': 'application/json', 'if-match': '"0"' });
    expect(distinct.statusCode).toBe(412); // parsed and validated: only the revision stops it
    expect((await app.inject('/v1/filter')).json()).toEqual(before);
    expect(kernel.applied).toEqual(['eth9']);
  });

  it('an oversized body is 413 and changes nothing; a single-rule POST has a smaller limit', async () => {
    const rules = Array.from({ length: 3000 }, (_, i) => ({ action: 'deny', match: `tcp/${i + 1}` }));
    const r = await put({ rules }, { 'content-type': 'application/json' });
    expect(r.statusCode).toBe(413);
    expect(r.json()).toEqual({ code: 'EBPFNET_TOO_LARGE', message: expect.stringMatching(/^read body of PUT \/v1\/filter: larger than the limit of 65536 bytes; .*raise api\.bodyLimit/) });
    const big = await app.inject({ method: 'POST', url: '/v1/filter/rules', headers: auth, payload: { action: 'deny', match: `tcp/22 ${'x'.repeat(5000)}` } });
    expect(big.statusCode).toBe(413);
    expect((await app.inject('/v1/filter')).json().rules).toHaveLength(1);
  });

  it('POST adds a rule with an id, DELETE removes it, 404 and 409 where they belong', async () => {
    const a = await app.inject({ method: 'POST', url: '/v1/filter/rules', headers: auth, payload: { action: 'allow', match: 'tcp/22 from 10.0.0.0/8' } });
    expect(a.statusCode, a.body).toBe(201);
    expect(a.json()).toEqual({ id: 2, action: 'allow', match: 'tcp/22 from 10.0.0.0/8' });
    expect(a.headers.location).toBe('/v1/filter/rules/2');
    const again = await app.inject({ method: 'POST', url: '/v1/filter/rules', headers: auth, payload: { action: 'allow', match: 'tcp/22 from 10.0.0.0/8' } });
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe('EBPFNET_EXISTS');
    const d = await app.inject({ method: 'DELETE', url: '/v1/filter/rules/1', headers: auth });
    expect(d.statusCode).toBe(200);
    expect(d.json().rules).toEqual([{ id: 2, action: 'allow', match: 'tcp/22 from 10.0.0.0/8' }]);
    const missing = await app.inject({ method: 'DELETE', url: '/v1/filter/rules/1', headers: auth });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toEqual({ code: 'EBPFNET_NOT_FOUND', message: 'delete filter rule 1: no rule with that id; GET /v1/filter lists the rules and their ids' });
    const nope = await app.inject('/v1/nothing');
    expect(nope.statusCode).toBe(404);
    expect(nope.json().code).toBe('EBPFNET_NOT_FOUND');
  });

  it('a change the kernel refuses is reported and leaves the previous policy everywhere', async () => {
    let fail = false;
    await app.close();
    agent.close();
    kernel = fakeKernel({ failApply: () => fail });
    await start();
    const before = (await app.inject('/v1/filter')).json();
    fail = true;
    const r = await put({ rules: [{ action: 'deny', match: 'udp/53' }] }, { 'content-type': 'application/json' });
    expect(r.statusCode).toBe(500);
    expect(r.json()).toEqual({ code: 'EBPFNET_KERNEL', message: 'update map flt_rules on eth9: EIO' });
    fail = false;
    expect((await app.inject('/v1/filter')).json()).toEqual(before);
    const ifBad = await put({ interfaces: ['nosuch0'], rules: [] }, { 'content-type': 'application/json' });
    expect(ifBad.statusCode).toBe(404);
    expect(ifBad.json()).toEqual({ code: 'EBPFNET_NOT_FOUND', message: 'filter nosuch0: no such interface' });
    expect((await app.inject('/v1/filter')).json()).toEqual(before);
    expect([...kernel.pinned.keys()]).toEqual(['eth9']);
    // beside a running filter: the missing interface is found before the running one is touched
    const applied = kernel.applied.length;
    const both = await put({ interfaces: ['eth9', 'nosuch0'], rules: [{ action: 'deny', match: 'udp/9' }] }, { 'content-type': 'application/json' });
    expect(both.statusCode).toBe(404);
    expect(kernel.applied.length).toBe(applied);
    expect((await app.inject('/v1/filter')).json()).toEqual(before);
  });

  it('stats and /metrics carry the counters; API requests are counted', async () => {
    const s = await app.inject('/v1/filter/stats');
    expect(s.json().interfaces[0]).toMatchObject({ interface: 'eth9', attachment: 'xdp native', rules: [{ id: 1, action: 'deny', match: 'tcp/22', packets: 1, bytes: 100 }] });
    const m = await app.inject('/metrics');
    expect(m.statusCode).toBe(200);
    expect(m.headers['content-type']).toMatch(/^text\/plain/);
    expect(m.body).toContain('ebpfnet_filter_packets_total{interface="eth9",rule="tcp/22",action="deny"} 1');
    expect(m.body).toMatch(/ebpfnet_api_requests_total\{method="GET",route="\/v1\/filter\/stats",status="200"\} 1/);
    // per-program runs and time (seconds), map fill, and the stats switch the agent holds
    expect(m.body).toContain('ebpfnet_bpf_program_runs_total{datapath="filter",program="filter_xdp",target="eth9"} 40');
    expect(m.body).toContain('ebpfnet_bpf_program_run_seconds_total{datapath="filter",program="filter_xdp",target="eth9"} 0.000001');
    expect(m.body).toContain('ebpfnet_bpf_map_entries{datapath="filter",map="flt_rules",target="eth9"} 1');
    expect(m.body).toContain('ebpfnet_bpf_map_max_entries{datapath="filter",map="flt_rules",target="eth9"} 1024');
    expect(m.body).toContain('ebpfnet_bpf_stats_enabled 1');
    expect(m.body).toMatch(/^ebpfnet_api_request_duration_seconds_count\{method="GET",route="\/v1\/filter\/stats"\} 1$/m);
    const bad = await app.inject('/v1/nothing');
    expect(bad.statusCode).toBe(404);
    const m2 = await app.inject('/metrics');
    expect(m2.body).toContain('ebpfnet_api_requests_total{method="GET",route="unmatched",status="404"} 1');
    expect(m2.body).toMatch(/^ebpfnet_api_requests_total\{method="GET",route="\/metrics",status="200"\} 1$/m);
    expect((await app.inject('/healthz')).json()).toEqual({ status: 'ok' });
    expect((await app.inject('/readyz')).json()).toEqual({ status: 'ready' });
    expect(statsHeld).toBe(true);
    agent.close();
    expect(statsHeld).toBe(false);
    expect((await app.inject('/metrics')).body).toContain('ebpfnet_bpf_stats_enabled 0');
  });

  it('serves an OpenAPI 3.1 document built from the routes it validates with', async () => {
    const d = (await app.inject('/v1/openapi.json')).json();
    expect(d.openapi).toBe('3.1.0');
    expect(Object.keys(d.paths)).toEqual(expect.arrayContaining(['/v1/filter', '/v1/filter/rules', '/v1/filter/rules/{id}', '/v1/filter/stats', '/metrics', '/healthz', '/readyz']));
    expect(d.paths['/v1/filter'].put.requestBody.content['application/json'].schema.additionalProperties).toBe(false);
    expect(d.paths['/v1/filter'].put.security).toEqual([{ bearer: [] }]);
    expect(d.paths['/v1/filter/rules/{id}'].delete.parameters[0]).toMatchObject({ name: 'id', in: 'path' });
    expect(d.paths['/v1/filter'].put.responses['412']).toBeDefined();
  });

  it('state survives a restart: the desired policy is re-applied and ids and revision continue', async () => {
    await put({ rules: [{ action: 'deny', match: 'tcp/22' }, { action: 'deny', match: 'icmp' }] }, { 'content-type': 'application/json' });
    const before = (await app.inject('/v1/filter')).json();
    expect(statSync(join(dir, 'state.json')).mode & 0o777).toBe(0o600);
    await app.close();
    agent.close();
    kernel.pinned.clear(); // as after a reboot: nothing pinned, the state file alone restores it
    // a writer killed between write and rename left its temporary file; a live one's stays
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    writeFileSync(join(dir, `state.json.tmp-${dead}`), '{"half":');
    writeFileSync(join(dir, `state.json.tmp-${process.ppid}`), '{}');
    await start();
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([`state.json.tmp-${process.ppid}`]);
    expect((await app.inject('/v1/filter')).json()).toEqual(before);
    expect(kernel.pinned.get('eth9')!.rules.map(formatRule)).toEqual(['deny tcp/22', 'deny icmp']);
  });

  it('an audit line a power cut took from the log is put back at start from the journal', async () => {
    await put({ rules: [{ action: 'deny', match: 'tcp/1' }] }, { 'content-type': 'application/json' });
    await put({ rules: [{ action: 'deny', match: 'tcp/2' }] }, { 'content-type': 'application/json' });
    await app.close();
    agent.close();
    const log = join(dir, 'audit.log');
    const lines = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    expect(lines).toHaveLength(2);
    // the change reached the journal (synced), its audit line only the page cache: gone
    writeFileSync(log, `${lines[0]}\n`);
    await start();
    expect(readFileSync(log, 'utf8')).toBe(`${lines.join('\n')}\n`);
    expect((await app.inject('/v1/filter')).json().rules).toEqual([{ id: 3, action: 'deny', match: 'tcp/2' }]);
  });

  it('a changed config file wins over the saved state, keeping ids of rules it still names', async () => {
    await put({ rules: [{ action: 'deny', match: 'tcp/22' }, { action: 'deny', match: 'icmp' }] }, { 'content-type': 'application/json' });
    await app.close();
    agent.close();
    await start('filter:\n  interfaces: [eth9]\n  rules: ["deny icmp", "allow udp/53"]\n  default: deny\n');
    expect((await app.inject('/v1/filter')).json()).toMatchObject({ rules: [{ id: 2, action: 'deny', match: 'icmp' }, { id: 3, action: 'allow', match: 'udp/53' }], default: 'deny' });
  });

  it('the token is generated once, mode 0600; --cleanup unloads what the state names', () => {
    const t = loadToken(dir);
    expect(t.token.length).toBeGreaterThanOrEqual(32);
    expect(statSync(join(dir, 'token')).mode & 0o777).toBe(0o600);
    expect(loadToken(dir).token).toBe(t.token);
    expect(loadToken(dir, 'configured-token-123').token).toBe('configured-token-123');
    agent.close();
    expect(Agent.cleanup(dir, kernel.backend)).toEqual(['filter on eth9']);
    expect(kernel.pinned.size).toBe(0);
  });

  it('config errors are one line each', () => {
    expect(() => parseConfig('filter:\n  rules: ["drop tcp/22"]\n')).toThrow(/^read config config:2: filter\.rules\[0\]: 'drop tcp\/22': not 'deny RULE' or 'allow RULE'/);
    expect(() => parseConfig('filtre: {}\n')).toThrow(/unknown key 'filtre'/);
    expect(() => parseConfig('api:\n  token: short\n')).toThrow(/at least 16 characters/);
  });
});
