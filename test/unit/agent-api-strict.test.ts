// SPDX-License-Identifier: Apache-2.0
// The HTTP API refuses what it used to take leniently (issue 19): a policy beyond the filter's
// maxRules, a malformed or weak If-Match, a charset other than UTF-8, the names __proto__ and
// constructor, a request line without an HTTP version. And it closes a connection whose client is
// still sending in stages, so that client reads its 413. In-memory kernel, filter and balancer;
// inject() where it reaches the behaviour, real sockets on 127.0.0.1 where it needs the wire.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/agent/config.js';
import { buildApi } from '../../src/api/app.js';
import { LINGER_MS } from '../../src/api/linger.js';
import { EbpfnetError } from '../../src/errors.js';
import { fakeBalancer, fakeKernel } from '../helpers/agent-fakes.js';
import { httpRequest, rawRequest } from '../helpers/raw-http.js';

const TOKEN = 'test-token-0123456789abcdef';
const auth = { authorization: `Bearer ${TOKEN}` };
const json = { ...auth, 'content-type': 'application/json' };
const SVC = '10.96.0.10:80/tcp';
const ID = encodeURIComponent(SVC);
const config = (extra = ''): string => `filter:\n  interfaces: [eth9]\n  rules: ["deny tcp/22"]\n${extra}lb:\n  cgroup: test.slice\n  services:\n    - service: ${SVC}\n      backends: ["10.244.1.5:8080"]\n`;
const rules = (n: number) => Array.from({ length: n }, (_, i) => ({ action: 'deny', match: `tcp/${(i % 65535) + 1}${i >= 65535 ? ' from 10.0.0.0/8' : ''}` }));

describe('the API refuses what it used to take (issue 19)', () => {
  let dir: string;
  let app: FastifyInstance;
  let agent: Agent;
  let kernel: ReturnType<typeof fakeKernel>;
  let audit: string[];
  let failNext: Error | null;

  const start = async (cfg = config(), bodyLimit?: number): Promise<void> => {
    audit = [];
    agent = Agent.open({ stateDir: dir, config: parseConfig(cfg), filters: kernel.backend, balancer: fakeBalancer().backend, auditSink: (l) => audit.push(l) });
    app = await buildApi({ agent, registry: new Registry(), token: TOKEN, ...(bodyLimit ? { bodyLimit } : {}) });
  };
  const stop = async (): Promise<void> => {
    await app.close();
    agent.close();
  };
  /** what a refused request must leave as it was */
  const state = async () => ({ filter: (await app.inject('/v1/filter')).body, lb: (await app.inject('/v1/lb/services')).body, audit: [...audit] });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-api-strict-'));
    failNext = null;
    kernel = fakeKernel({ failApply: () => failNext });
    await start();
  });
  afterEach(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a policy beyond maxRules is a 413 that names the limit and filter.maxRules; the schema and OpenAPI say the same limit', async () => {
    const before = await state();
    // 20,000 rules: was a 507 from the kernel (its counter map holds 16,384); 720 KB, inside the body limit
    const r = await app.inject({ method: 'PUT', url: '/v1/filter', headers: json, payload: JSON.stringify({ rules: rules(20_000) }) });
    expect(r.statusCode, r.body).toBe(413);
    expect(r.json()).toEqual({
      code: 'EBPFNET_TOO_LARGE',
      message: "set the filter policy: 20000 rules are more than the filter holds (maxRules 16384); send at most 16384, or raise filter.maxRules in the agent's config (a filter already pinned keeps the size it was loaded with until `ebpfnet agent --cleanup`)",
    });
    expect(await state()).toEqual(before);
    expect(kernel.applied).toEqual(['eth9']);
    // exactly the limit is taken
    const full = await app.inject({ method: 'PUT', url: '/v1/filter', headers: json, payload: JSON.stringify({ rules: rules(16_384) }) });
    expect(full.statusCode, full.body.slice(0, 200)).toBe(200);
    expect(full.json().rules).toHaveLength(16_384);
    expect(agent.filter.maxRules).toBe(16384);
    const doc = (await app.inject('/v1/openapi.json')).json();
    const body = doc.paths['/v1/filter'].put.requestBody.content['application/json'].schema;
    expect(body.properties.rules.maxItems).toBe(16384);
    expect(doc.paths['/v1/filter'].put.responses['413']).toBeDefined();
  });

  it('the limit follows filter.maxRules: schema, PUT and POST; a config with more rules than that is refused; a full kernel map is still a 507', async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
    await start(config('  maxRules: 3\n'));
    expect((await app.inject('/v1/openapi.json')).json().paths['/v1/filter'].put.requestBody.content['application/json'].schema.properties.rules.maxItems).toBe(3);
    const four = await app.inject({ method: 'PUT', url: '/v1/filter', headers: json, payload: JSON.stringify({ rules: rules(4) }) });
    expect(four.statusCode).toBe(413);
    expect(four.json().message).toMatch(/^set the filter policy: 4 rules are more than the filter holds \(maxRules 3\); send at most 3, or raise filter\.maxRules/);
    expect((await app.inject({ method: 'PUT', url: '/v1/filter', headers: json, payload: JSON.stringify({ rules: rules(3) }) })).statusCode).toBe(200);
    const before = await state();
    const post = await app.inject({ method: 'POST', url: '/v1/filter/rules', headers: json, payload: { action: 'deny', match: 'udp/53' } });
    expect(post.statusCode).toBe(413);
    expect(post.json()).toEqual({ code: 'EBPFNET_TOO_LARGE', message: expect.stringMatching(/^add filter rule: 4 rules are more than the filter holds \(maxRules 3\); .*filter\.maxRules/) });
    expect(await state()).toEqual(before);
    expect(() => parseConfig('filter:\n  rules: ["deny tcp/1", "deny tcp/2"]\n  maxRules: 1\n', 'c.yaml')).toThrow(/^read config c\.yaml: filter\.rules has 2 rules, more than filter\.maxRules \(1\); raise filter\.maxRules$/);
    // the genuine case: the kernel's map has no room (a pinned filter loaded smaller, say)
    failNext = new EbpfnetError('EBPFNET_MAP_FULL', 'update map flt_rules on eth9', 'the map is full (1024 entries)');
    const full = await app.inject({ method: 'PUT', url: '/v1/filter', headers: json, payload: JSON.stringify({ rules: rules(2) }) });
    expect(full.statusCode).toBe(507);
    expect(full.json().code).toBe('EBPFNET_MAP_FULL');
  });

  /** every write that takes If-Match, filter and balancer alike; each succeeds on its own */
  const writes = (): Array<[string, string, unknown]> => [
    ['PUT', '/v1/filter', { rules: [{ action: 'deny', match: 'tcp/22' }, { action: 'deny', match: 'tcp/23' }] }],
    ['POST', '/v1/filter/rules', { action: 'deny', match: 'tcp/24' }],
    ['DELETE', '/v1/filter/rules/1', undefined],
    ['PUT', '/v1/lb/services', { services: [{ service: SVC, backends: ['10.244.1.6:8080'] }] }],
    ['DELETE', '/v1/lb/services', undefined],
    ['PUT', `/v1/lb/services/${ID}`, { backends: ['10.244.1.7:8080'] }],
    ['DELETE', `/v1/lb/services/${ID}`, undefined],
  ];
  const write = (method: string, url: string, payload: unknown, ifMatch: string) =>
    app.inject({ method: method as 'PUT', url, headers: { ...(payload === undefined ? auth : json), 'if-match': ifMatch }, ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }) });
  const etagOf = async (url: string): Promise<string> => (await app.inject(url.startsWith('/v1/lb') ? '/v1/lb/services' : '/v1/filter')).headers.etag as string;

  it('a malformed If-Match is a 400 on every write route, and changes nothing', async () => {
    for (const [method, url, payload] of writes()) {
      const cur = await etagOf(url);
      for (const bad of ['W/"zz", *', `*, ${cur}`, `${cur}, *`, 'garbage', cur.replace(/"/g, ''), `${cur.slice(0, -1)}`, `"a b"`, 'W/', ',', `${cur} ${cur}`, `${cur};`]) {
        const before = await state();
        const r = await write(method, url, payload, bad);
        expect(r.statusCode, `${method} ${url} If-Match: ${bad}: ${r.body}`).toBe(400);
        expect(r.json()).toEqual({ code: 'EBPFNET_USAGE', message: expect.stringMatching(/^read If-Match: '.*' (names|is|has) .*; send the ETag a GET answered/) });
        expect(await state()).toEqual(before);
      }
    }
  });

  it('If-Match compares strongly: a weak tag never matches (412); the current tag, * alone, or a list holding it goes through', async () => {
    for (const [method, url, payload] of writes()) {
      const cur = await etagOf(url);
      const before = await state();
      const weak = await write(method, url, payload, `W/${cur}`);
      expect(weak.statusCode, `${method} ${url}: ${weak.body}`).toBe(412);
      expect(weak.json()).toEqual({ code: 'EBPFNET_STALE', message: expect.stringContaining(`(W/${cur} is a weak tag, and If-Match never matches a weak tag: send ${cur})`) });
      expect(await state()).toEqual(before);
    }
    // each form that names the current revision, one per route (each write moves the revision on)
    const forms = (cur: string): string[] => [cur, '*', `"0", ${cur}`, `"a,b", W/"zz",${cur}`, ` ${cur} `, `, ${cur},`, ' * ', `W/"1", ${cur}`];
    for (const [i, [method, url, payload]] of writes().entries()) {
      const tag = forms(await etagOf(url))[i];
      const r = await write(method, url, payload, tag);
      expect(r.statusCode, `${method} ${url} If-Match: ${tag}: ${r.body}`).toBeLessThan(300);
    }
  });

  it('a charset other than UTF-8 is a 415 on every body, with its code; UTF-8 in any spelling is taken', async () => {
    const bodies: Array<[string, string, unknown]> = [
      ['PUT', '/v1/filter', { rules: [{ action: 'deny', match: 'tcp/23' }] }],
      ['POST', '/v1/filter/rules', { action: 'deny', match: 'tcp/24' }],
      ['PUT', '/v1/lb/services', { services: [] }],
      ['PUT', `/v1/lb/services/${ID}`, { backends: [] }],
    ];
    const before = await state();
    for (const [method, url, payload] of bodies) {
      for (const [ct, shown] of [['application/json; charset=utf-16', 'utf-16'], ['application/json;charset=UTF-16LE', 'UTF-16LE'], ['application/json; charset="utf-16"', 'utf-16'], ['application/json; charset=iso-8859-1', 'iso-8859-1'], ['application/json; charset=utf-8; charset=utf-16', 'utf-16']]) {
        const r = await app.inject({ method: method as 'PUT', url, headers: { ...auth, 'content-type': ct }, payload: JSON.stringify(payload) });
        expect(r.statusCode, `${method} ${url} ${ct}: ${r.body}`).toBe(415);
        expect(r.json()).toEqual({ code: 'EBPFNET_MEDIA_TYPE', message: `read body: charset "${shown}" is not UTF-8; send the JSON as UTF-8 (Content-Type: application/json or application/json; charset=utf-8)` });
      }
      const plain = await app.inject({ method: method as 'PUT', url, headers: { ...auth, 'content-type': 'text/plain' }, payload: JSON.stringify(payload) });
      expect(plain.statusCode).toBe(415);
      expect(plain.json()).toEqual({ code: 'EBPFNET_MEDIA_TYPE', message: expect.stringMatching(/^read body of .*: Content-Type "text\/plain" is not JSON; send Content-Type: application\/json$/) });
    }
    expect(await state()).toEqual(before);
    for (const ct of ['application/json', 'application/json; charset=utf-8', 'application/json; charset=UTF-8', 'application/json; charset="utf-8"', 'Application/JSON ;  Charset=Utf-8']) {
      const r = await app.inject({ method: 'PUT', url: '/v1/filter', headers: { ...auth, 'content-type': ct }, payload: '{"rules":[{"action":"deny","match":"tcp/25"}]}' });
      expect(r.statusCode, `${ct}: ${r.body}`).toBe(200);
    }
  });

  it('__proto__ and constructor are refused by name, wherever they are, as valid JSON that they are', async () => {
    const before = await state();
    const cases: Array<[string, string, string]> = [
      ['/v1/filter', '{"rules":[],"__proto__":{"default":"deny"}}', '__proto__'],
      ['/v1/filter', '{"rules":[],"constructor":{"prototype":{"default":"deny"}}}', 'constructor'],
      ['/v1/filter', '{"rules":[{"action":"deny","match":"tcp/1","__proto__":{}}]}', '__proto__'],
      ['/v1/filter', '{"rules":[],"__pro\\u0074o__":{}}', '__proto__'],
      ['/v1/filter', '{"rules":[],"constructor":1}', 'constructor'],
      [`/v1/lb/services/${ID}`, '{"backends":[{"address":"10.244.1.5:8080","__proto__":{"weight":9}}]}', '__proto__'],
    ];
    for (const [url, body, name] of cases) {
      const r = await app.inject({ method: 'PUT', url, headers: json, payload: body });
      expect(r.statusCode, body).toBe(400);
      expect(r.json()).toEqual({
        code: 'EBPFNET_USAGE',
        message: `parse body: the name "${name}" is refused anywhere in a body (JavaScript code that copies such an object could change the prototype of every object); no field of this API has that name: leave it out`,
      });
    }
    // JSON that is not valid says so, and why
    const broken = await app.inject({ method: 'PUT', url: '/v1/filter', headers: json, payload: '{"rules": [' });
    expect(broken.json()).toEqual({ code: 'EBPFNET_USAGE', message: expect.stringMatching(/^parse body: not valid JSON \(.*(end|unterminated|expected).*\)$/i) });
    expect(await state()).toEqual(before);
  });

  describe('on the wire (127.0.0.1)', () => {
    let port: number;
    beforeEach(async () => {
      await app.listen({ host: '127.0.0.1', port: 0 });
      port = (app.server.address() as { port: number }).port;
    });
    const raw = (s: string, o = {}) => rawRequest(port, [Buffer.from(s, 'latin1')], { timeoutMs: 5000, ...o });
    const jsonError = (r: { status: number; headers: Record<string, string>; body: string }) => ({ status: r.status, type: r.headers['content-type'], body: r.body ? (JSON.parse(r.body) as unknown) : null });

    it('a request line without an HTTP version, or of another version than 1.0 and 1.1, is a 400; so is HTTP/1.1 without Host', async () => {
      const before = await state();
      const version = { code: 'EBPFNET_USAGE', message: 'read request: the request line has no HTTP version (HTTP/0.9 is not spoken); send METHOD PATH HTTP/1.1' };
      expect(jsonError(await raw('GET /v1/filter\r\n\r\n'))).toEqual({ status: 400, type: 'application/json; charset=utf-8', body: version });
      expect(jsonError(await raw('GET /v1/filter\r\nhost: x\r\n\r\n'))).toEqual({ status: 400, type: 'application/json; charset=utf-8', body: version });
      // a write without a version is not carried out
      const put = await raw(`PUT /v1/filter\r\nauthorization: Bearer ${TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"rules":[]}`);
      expect(jsonError(put)).toEqual({ status: 400, type: 'application/json; charset=utf-8', body: version });
      // (node's parser refuses 1.2, 3.0 and 9.9 itself: a 400 through clientError)
      for (const v of ['2.0', '0.9']) {
        expect(jsonError(await raw(`GET /v1/filter HTTP/${v}\r\nhost: x\r\n\r\n`)), v).toEqual({ status: 400, type: 'application/json; charset=utf-8', body: { code: 'EBPFNET_USAGE', message: v === '0.9' ? version.message : `read request: HTTP/${v} is not spoken here; send HTTP/1.1` } });
      }
      expect(jsonError(await raw('GET /v1/filter HTTP/1.1\r\nconnection: close\r\n\r\n'))).toEqual({
        status: 400,
        type: 'application/json; charset=utf-8',
        body: { code: 'EBPFNET_USAGE', message: 'read request: an HTTP/1.1 request without a Host header; send Host (RFC 9112 section 3.2)' },
      });
      expect(await state()).toEqual(before);
      // HTTP/1.0 needs no Host
      expect((await raw('GET /v1/filter HTTP/1.0\r\n\r\n')).status).toBe(200);
      expect((await raw('GET /v1/filter HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')).status).toBe(200);
    });

    it('a client that sends all of an oversized body before it reads gets its 413 (the server half-closes and reads the rest)', async () => {
      const big = JSON.stringify({ rules: rules(40_000) });
      expect(big.length).toBeGreaterThan(1 << 20);
      const head = (h: Record<string, string>) => httpRequest('PUT', '/v1/filter', { ...json, ...h });
      // the server answers as soon as it has the headers; the body comes 200 ms later
      const cases: Array<[string, Buffer[]]> = [
        ['declared length', [head({ 'content-length': String(big.length) }), Buffer.from(big)]],
        ['chunked', [head({ 'transfer-encoding': 'chunked' }), Buffer.from(`${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`)]],
      ];
      for (const [what, parts] of cases) {
        const r = await rawRequest(port, parts, { gapMs: 200, readAfterWrite: true, timeoutMs: 5000 });
        expect({ what, status: r.status, error: r.error }).toEqual({ what, status: 413, error: undefined });
        expect(JSON.parse(r.body)).toEqual({ code: 'EBPFNET_TOO_LARGE', message: expect.stringMatching(/^read body of PUT \/v1\/filter: larger than the limit of 1048576 bytes; .*raise api\.bodyLimit/) });
      }
    });

    it('nothing sent after a 413 is read as a request; a lingering connection ends when its client closes, and at once when the server stops', async () => {
      const before = await state();
      // a whole second request after the oversized body, on the same connection: never carried out
      const second = httpRequest('PUT', '/v1/filter', json, '{"rules":[]}');
      const big = Buffer.alloc((1 << 20) + 10, 0x20);
      const r = await rawRequest(port, [Buffer.concat([httpRequest('PUT', '/v1/filter', { ...json, 'content-length': String(big.length) }), big, second])], { readAfterWrite: true, timeoutMs: 5000 });
      expect(r.status).toBe(413);
      expect(await state()).toEqual(before);
      // the client closed: so does the server, well before LINGER_MS
      const t0 = performance.now();
      while ((await new Promise<number>((res) => app.server.getConnections((_e, n) => res(n)))) > 0) await new Promise((res) => setTimeout(res, 20));
      expect(performance.now() - t0).toBeLessThan(LINGER_MS / 2);
      // a client that got its 413 but keeps the connection open does not hold up the server's stop
      const { connect } = await import('node:net');
      const s = connect({ host: '127.0.0.1', port });
      await new Promise((res) => s.on('connect', res));
      s.on('error', () => {});
      const answered = new Promise((res) => s.once('data', res));
      s.write(httpRequest('PUT', '/v1/filter', { ...json, 'content-length': String(1e9) }, ''));
      await answered;
      const t1 = performance.now();
      await app.close();
      expect(performance.now() - t1).toBeLessThan(LINGER_MS / 2);
      s.destroy();
    });
  });
});
