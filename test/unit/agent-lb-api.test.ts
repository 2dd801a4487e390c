// SPDX-License-Identifier: Apache-2.0
// /v1/lb/services through inject(): no port, no root. An in-memory balancer stands in for the
// kernel, so these tests pin down the config section, validation (the lb command's own grammar),
// auth, revisions, 404s, persistence across a restart, the audit log and the metrics.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/agent/config.js';
import { StateStore } from '../../src/agent/store.js';
import { journalRecords } from '../helpers/agent.js';
import { buildApi } from '../../src/api/app.js';
import { registerAgentLbTraceMetrics } from '../../src/cli/agent.js';
import { EbpfnetError } from '../../src/errors.js';
import { packageDir } from '../../src/loader/paths.js';
import { registerBpfMetrics } from '../../src/metrics/bpf.js';
import { fakeBalancer } from '../helpers/agent-fakes.js';

const TOKEN = 'test-token-0123456789abcdef';
const auth = { authorization: `Bearer ${TOKEN}` };
const CONFIG = `lb:
  cgroup: test.slice
  services:
    - service: 10.96.0.10:80/tcp
      backends: ["10.244.1.5:8080", "10.244.2.7:8080,weight=2"]
`;
const ID = encodeURIComponent('10.96.0.10:80/tcp');
const noop = { filters: { pinned: () => false, adopt: () => { throw new Error('no filter'); }, create: () => { throw new Error('no filter'); }, unload: () => {} } };

describe('agent balancer API (inject)', () => {
  let dir: string;
  let app: FastifyInstance;
  let agent: Agent;
  let lb: ReturnType<typeof fakeBalancer>;
  let audit: string[];
  let registry: Registry;

  const start = async (config: string | null = CONFIG): Promise<void> => {
    audit = [];
    agent = Agent.open({ stateDir: dir, config: config === null ? null : parseConfig(config), ...noop, balancer: lb.backend, auditSink: (l) => audit.push(l) });
    registry = new Registry();
    registerAgentLbTraceMetrics(registry, agent);
    app = await buildApi({ agent, registry, token: TOKEN });
  };
  const stop = async (): Promise<void> => {
    await app.close();
    agent.close();
  };
  const list = async () => (await app.inject('/v1/lb/services')).json() as { revision: number; cgroup: string; services: Array<{ id: string; backends: Array<Record<string, unknown>> }> };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-agent-lb-'));
    lb = fakeBalancer();
    await start();
  });
  afterEach(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the config section is applied at start: GET shows services, backends, weights, states, counters and an ETag', async () => {
    expect(lb.attached).toBe('/sys/fs/cgroup/test.slice');
    lb.conns.set('10.96.0.10:80/tcp 10.244.2.7:8080', 5);
    const r = await app.inject('/v1/lb/services');
    expect(r.statusCode).toBe(200);
    expect(r.headers.etag).toBe('"1"');
    expect(r.json()).toEqual({
      revision: 1,
      cgroup: '/sys/fs/cgroup/test.slice',
      services: [
        {
          id: '10.96.0.10:80/tcp',
          proto: 'tcp',
          affinity: 0,
          slots: 3,
          connections: 5,
          rejects: 0,
          backends: [
            { address: '10.244.1.5:8080', weight: 1, state: 'active', slots: 1, share: 1 / 3, connections: 0 },
            { address: '10.244.2.7:8080', weight: 2, state: 'active', slots: 2, share: 2 / 3, connections: 5 },
          ],
        },
      ],
    });
    const one = await app.inject(`/v1/lb/services/${ID}`);
    expect(one.statusCode).toBe(200);
    expect(one.json().id).toBe('10.96.0.10:80/tcp');
    const m = await registry.metrics();
    expect(m).toContain('ebpfnet_lb_connections_total{service="10.96.0.10:80/tcp",backend="10.244.2.7:8080"} 5');
    expect(m).toContain('ebpfnet_lb_backends{service="10.96.0.10:80/tcp",state="active"} 2');
    // the balancer's programs and maps are among the agent's BPF sources
    const bpf = new Registry();
    registerBpfMetrics(bpf, () => agent.bpfSources(), () => true);
    const b = await bpf.metrics();
    expect(b).toContain('ebpfnet_bpf_program_runs_total{datapath="lb",program="lb_connect4",target="/sys/fs/cgroup/test.slice"} 5');
    expect(b).toContain('ebpfnet_bpf_map_entries{datapath="lb",map="lb_svc",target="/sys/fs/cgroup/test.slice"} 1');
  });

  it('PUT /:id creates (201, Location) then replaces (200) a service; the state survives a restart', async () => {
    const v6 = encodeURIComponent('[fd00::10]:53/udp');
    const c = await app.inject({ method: 'PUT', url: `/v1/lb/services/${v6}`, headers: { ...auth, 'if-match': '"1"' }, payload: { backends: ['[fd00::5]:53', { address: '[FD00::6]:53', weight: 3, state: 'draining' }], affinity: 600 } });
    expect(c.statusCode, c.body).toBe(201);
    expect(c.headers.location).toBe(`/v1/lb/services/${v6}`);
    expect(c.headers.etag).toBe('"2"');
    // canonical addresses: the lb grammar's, not what was typed
    expect(c.json()).toMatchObject({ id: '[fd00::10]:53/udp', proto: 'udp', affinity: 600, backends: [{ address: '[fd00::5]:53', weight: 1, state: 'active' }, { address: '[fd00::6]:53', weight: 3, state: 'draining' }] });
    expect(lb.services.get('[fd00::10]:53/udp')!.backends.map((b) => `${b.name} ${b.weight} ${b.state}`)).toEqual(['[fd00::5]:53 1 active', '[fd00::6]:53 3 draining']);

    const r = await app.inject({ method: 'PUT', url: `/v1/lb/services/${ID}`, headers: auth, payload: { backends: ['10.244.1.5:8080,state=draining', '10.244.3.9:8080'] } });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json().backends.map((b: { address: string; state: string }) => `${b.address} ${b.state}`)).toEqual(['10.244.1.5:8080 draining', '10.244.3.9:8080 active']);
    expect(lb.calls).toEqual(['apply 1', 'upsert [fd00::10]:53/udp', 'upsert 10.96.0.10:80/tcp']);
    expect(audit.map((l) => JSON.parse(l) as { op: string; what: string; revision: number })).toEqual([
      expect.objectContaining({ op: 'PUT /v1/lb/services/[fd00::10]:53/udp', what: 'add [fd00::10]:53/udp -> [fd00::5]:53 [fd00::6]:53,weight=3,state=draining; affinity 600s', revision: 2 }),
      expect.objectContaining({ op: 'PUT /v1/lb/services/10.96.0.10:80/tcp', what: 'replace 10.96.0.10:80/tcp -> 10.244.1.5:8080,state=draining 10.244.3.9:8080', revision: 3 }),
    ]);
    expect(readFileSync(join(dir, 'audit.log'), 'utf8').trim().split('\n')).toEqual(audit);

    // answered only once on disk: the journal after the start-up snapshot holds both changes
    expect(StateStore.load<{ lb: { revision: number; services: unknown[] } }>(dir)!.lb).toMatchObject({ revision: 3, services: [expect.anything(), expect.anything()] });
    expect(journalRecords(dir)).toHaveLength(2);
    // each record holds the balancer's section only: the filter's stays in the snapshot
    const records = journalRecords(dir);
    expect(records.map((l) => Object.keys((JSON.parse(l) as { sections: object }).sections))).toEqual([['lb'], ['lb']]);

    // a restart with the same config: the state on disk wins (the config did not change since)
    await stop();
    lb.calls.length = 0;
    await start();
    expect(lb.calls).toEqual(['apply 2']);
    const after = await list();
    expect(after.revision).toBe(3);
    expect(after.services.map((s) => s.id)).toEqual(['10.96.0.10:80/tcp', '[fd00::10]:53/udp']);
  });

  it('a changed config section wins over the saved state at start', async () => {
    await app.inject({ method: 'PUT', url: `/v1/lb/services/${ID}`, headers: auth, payload: { backends: [] } });
    await stop();
    await start(CONFIG.replace('10.244.1.5:8080', '10.244.1.6:8080'));
    const v = await list();
    expect(v.revision).toBe(3);
    expect(v.services[0].backends.map((b) => b.address)).toEqual(['10.244.1.6:8080', '10.244.2.7:8080']);
  });

  it('PUT /v1/lb/services replaces the whole set; DELETE one and DELETE all', async () => {
    const body = { services: [{ service: '10.96.0.20:53/udp', backends: ['10.244.1.5:5353'] }, { service: '10.96.0.21:80/tcp', affinity: 60, backends: [{ address: '10.244.1.5:80' }] }] };
    const p = await app.inject({ method: 'PUT', url: '/v1/lb/services', headers: auth, payload: body });
    expect(p.statusCode, p.body).toBe(200);
    expect(p.json().services.map((s: { id: string }) => s.id)).toEqual(['10.96.0.20:53/udp', '10.96.0.21:80/tcp']);
    expect([...lb.services.keys()]).toEqual(['10.96.0.20:53/udp', '10.96.0.21:80/tcp']);
    const d = await app.inject({ method: 'DELETE', url: `/v1/lb/services/${encodeURIComponent('10.96.0.21:80/tcp')}`, headers: auth });
    expect(d.statusCode, d.body).toBe(200);
    expect(d.json().services.map((s: { id: string }) => s.id)).toEqual(['10.96.0.20:53/udp']);
    expect([...lb.services.keys()]).toEqual(['10.96.0.20:53/udp']);
    const all = await app.inject({ method: 'DELETE', url: '/v1/lb/services', headers: { ...auth, 'if-match': d.headers.etag as string } });
    expect(all.statusCode, all.body).toBe(200);
    expect(all.json()).toMatchObject({ revision: 4, services: [] });
    expect(lb.services.size).toBe(0);
  });

  it('the audit line of a large PUT names the first services and counts the rest', async () => {
    const services = Array.from({ length: 12 }, (_, i) => ({ service: `10.96.1.${i}:80/tcp`, backends: [`10.244.1.${i}:8080`] }));
    const p = await app.inject({ method: 'PUT', url: '/v1/lb/services', headers: auth, payload: { services } });
    expect(p.statusCode, p.body).toBe(200);
    expect(audit.map((l) => (JSON.parse(l) as { what: string }).what)).toEqual(['12 services: 10.96.1.0:80/tcp, 10.96.1.1:80/tcp, 10.96.1.2:80/tcp, 10.96.1.3:80/tcp, 10.96.1.4:80/tcp and 7 more']);
  });

  it('404 for an unknown id, 400 for one that is not VIP:PORT/PROTO; nothing changes', async () => {
    const unknown = encodeURIComponent('10.96.0.77:80/tcp');
    for (const method of ['GET', 'DELETE'] as const) {
      const r = await app.inject({ method, url: `/v1/lb/services/${unknown}`, headers: auth });
      expect(r.statusCode, method).toBe(404);
      expect(r.json()).toEqual({ code: 'EBPFNET_NOT_FOUND', message: `${method === 'GET' ? 'get' : 'delete'} service 10.96.0.77:80/tcp: no service 10.96.0.77:80/tcp; GET /v1/lb/services lists them` });
    }
    const bad = await app.inject(`/v1/lb/services/${encodeURIComponent('10.96.0.300:80/tcp')}`);
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toMatch(/'10\.96\.0\.300' is not an IP address/);
    expect((await list()).revision).toBe(1);
    expect(audit).toEqual([]);
  });

  it('validation: unknown fields, wrong types and bad addresses are 400 {code, message} from the lb grammar; nothing changes', async () => {
    const one: Array<[unknown, RegExp]> = [
      [{ backends: [], extra: 1 }, /^validate body: must NOT have additional properties$/],
      [{ backends: [{ address: '10.244.1.5:8080', wieght: 2 }] }, /^validate body: backends\/0 must NOT have additional properties$/],
      [{ backends: [{ address: '10.244.1.5:8080', weight: '2' }] }, /^validate body: backends\/0\/weight must be integer$/],
      [{ backends: [3] }, /^validate body: backends\/0 must be string,object$/],
      [{ backends: '10.244.1.5:8080' }, /backends must be array/],
      [{}, /must have required property 'backends'/],
      [{ backends: [], affinity: -1 }, /affinity must be >= 0/],
      [{ backends: ['10.244.1.5'] }, /^parse service 10\.96\.0\.10:80\/tcp: body\.backends\[0\]: backend '10\.244\.1\.5' has no port; write IP:PORT, e\.g\. 10\.244\.1\.5:8080$/],
      [{ backends: ['10.244.1.5:8080,weight=0'] }, /weight '0' is not a number from 1 to 65535/],
      [{ backends: ['10.244.1.5:8080,state=gone'] }, /unknown state 'gone'/],
      [{ backends: ['10.244.1.5:8080', '10.244.1.5:8080'] }, /backend 10\.244\.1\.5:8080 is listed twice/],
      [{ backends: ['[fd00::5]:8080'] }, /backend \[fd00::5\]:8080 is IPv6 but the service is IPv4/],
      ['{"backends": [', /^parse body: not valid JSON/],
    ];
    for (const [body, msg] of one) {
      const r = await app.inject({ method: 'PUT', url: `/v1/lb/services/${ID}`, headers: { ...auth, 'content-type': 'application/json' }, payload: typeof body === 'string' ? body : JSON.stringify(body) });
      expect(r.statusCode, JSON.stringify(body)).toBe(400);
      expect(r.json().code).toBe('EBPFNET_USAGE');
      expect(r.json().message, JSON.stringify(body)).toMatch(msg);
    }
    const all: Array<[unknown, RegExp]> = [
      [{ services: [{ service: '10.96.0.1:80/sctp', backends: [] }] }, /^parse services: services\[0\]: service '10\.96\.0\.1:80\/sctp': unknown protocol 'sctp'/],
      [{ services: [{ service: '10.96.0.1:80/TCP', backends: [] }, { service: '10.96.0.1:80/tcp', backends: [] }] }, /services\[1\]: 10\.96\.0\.1:80\/tcp is already defined at services\[0\]/],
      [{ services: [{ backends: [] }] }, /must have required property 'service'/],
      [{ services: {} }, /services must be array/],
    ];
    for (const [body, msg] of all) {
      const r = await app.inject({ method: 'PUT', url: '/v1/lb/services', headers: auth, payload: body as object });
      expect(r.statusCode, JSON.stringify(body)).toBe(400);
      expect(r.json().message, JSON.stringify(body)).toMatch(msg);
    }
    expect((await list()).revision).toBe(1);
    expect(lb.calls).toEqual(['apply 1']);
    expect(audit).toEqual([]);
  });

  it('writes need the token (401) and a current If-Match (412); reads do not need a token on loopback', async () => {
    for (const [method, url] of [['PUT', `/v1/lb/services/${ID}`], ['DELETE', `/v1/lb/services/${ID}`], ['PUT', '/v1/lb/services'], ['DELETE', '/v1/lb/services']] as const) {
      const r = await app.inject({ method, url, payload: method === 'PUT' ? { backends: [], services: [] } : undefined });
      expect(r.statusCode, `${method} ${url}`).toBe(401);
      expect(r.json().code).toBe('EBPFNET_UNAUTHORIZED');
    }
    const stale = await app.inject({ method: 'PUT', url: `/v1/lb/services/${ID}`, headers: { ...auth, 'if-match': '"0"' }, payload: { backends: [] } });
    expect(stale.statusCode).toBe(412);
    expect(stale.json()).toEqual({ code: 'EBPFNET_STALE', message: `change service 10.96.0.10:80/tcp: If-Match "0" is not the current revision "1"; GET /v1/lb/services again and redo the change on what it returns` });
    const staleDel = await app.inject({ method: 'DELETE', url: '/v1/lb/services', headers: { ...auth, 'if-match': '"7"' } });
    expect(staleDel.statusCode).toBe(412);
    expect(lb.services.size).toBe(1);
    expect((await list()).revision).toBe(1);
  });

  it('a kernel failure is reported and leaves the desired state and the revision as they were', async () => {
    lb.fail.next = new EbpfnetError('EBPFNET_MAP_FULL', 'lb add', 'too many slots: 2000 needed, room for 1024');
    const r = await app.inject({ method: 'PUT', url: `/v1/lb/services/${encodeURIComponent('10.96.0.30:80/tcp')}`, headers: auth, payload: { backends: ['10.244.1.5:80'] } });
    expect(r.statusCode).toBe(507);
    expect(r.json().code).toBe('EBPFNET_MAP_FULL');
    expect((await list()).services.map((s) => s.id)).toEqual(['10.96.0.10:80/tcp']);
    expect((await list()).revision).toBe(1);
    expect(audit).toEqual([]);
  });

  it('without an lb section the balancer endpoints say so (404) and nothing is attached', async () => {
    await stop();
    rmSync(join(dir, 'state.json'));
    lb = fakeBalancer();
    await start(null);
    expect(lb.attached).toBeNull();
    const r = await app.inject('/v1/lb/services');
    expect(r.statusCode).toBe(404);
    expect(r.json()).toEqual({ code: 'EBPFNET_NOT_FOUND', message: 'list services: the agent runs no balancer; add an lb section (cgroup, services) to the agent config and restart it' });
    expect((await app.inject({ method: 'PUT', url: `/v1/lb/services/${ID}`, headers: auth, payload: { backends: [] } })).statusCode).toBe(404);
  });

  it('--cleanup detaches the balancer the state names', async () => {
    await stop();
    expect(Agent.cleanup(dir, noop.filters, lb.backend)).toEqual(['balancer']);
    expect(lb.attached).toBeNull();
    expect(StateStore.load<{ lb?: unknown }>(dir)?.lb).toBeUndefined();
    await start(null);
  });

  it("the README's config example is a valid config", () => {
    const readme = readFileSync(join(packageDir(), 'README.md'), 'utf8');
    const block = /The config file \(YAML[^\n]*\n\n((?: {4}.*\n)+)/.exec(readme)![1].replace(/^ {4}/gm, '');
    // the example elides its token
    const c = parseConfig(block.replace('token: "..."', 'token: "0123456789abcdef"'), 'README.md');
    expect(c.lb!.services.map((x) => x.backends.map((b) => `${b.name} ${b.weight} ${b.state}`))).toEqual([['10.244.1.5:8080 1 active', '10.244.2.7:8080 2 active', '10.244.3.9:8080 1 draining']]);
    expect(c.trace).toMatchObject({ enabled: true, plan: { uid: 1000 } });
  });

  it('config errors in the lb section are one line naming where', () => {
    const cases: Array<[string, RegExp]> = [
      ['lb:\n  cgroups: x\n', /^read config config:2: lb: unknown key 'cgroups'; known keys: cgroup, services$/],
      ['lb:\n  services:\n    - service: 10.96.0.1:80/tcp\n      backends: ["10.0.0.1"]\n', /^read config config:4: lb\.services\[0\]\.backends\[0\]: backend '10\.0\.0\.1' has no port/],
      ['lb:\n  services: 3\n', /lb\.services: expected a list/],
      ['lb:\n  cgroup: ""\n', /lb\.cgroup: '' is not a cgroup v2 directory/],
    ];
    for (const [text, msg] of cases) expect(() => parseConfig(text), text).toThrow(msg);
  });

  it('the OpenAPI document lists the balancer routes with their schemas', async () => {
    const doc = (await app.inject('/v1/openapi.json')).json() as { paths: Record<string, Record<string, { requestBody?: unknown; security?: unknown; parameters?: Array<{ name: string }> }>> };
    expect(Object.keys(doc.paths['/v1/lb/services']).sort()).toEqual(['delete', 'get', 'put']);
    expect(Object.keys(doc.paths['/v1/lb/services/{id}']).sort()).toEqual(['delete', 'get', 'put']);
    expect(doc.paths['/v1/lb/services/{id}'].put.requestBody).toBeDefined();
    expect(doc.paths['/v1/lb/services/{id}'].put.security).toEqual([{ bearer: [] }]);
    expect(doc.paths['/v1/lb/services/{id}'].get.parameters!.map((p) => p.name)).toEqual(['id']);
  });
});
