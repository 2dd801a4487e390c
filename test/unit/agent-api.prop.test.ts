// SPDX-License-Identifier: Apache-2.0
// Property test of the API's bodies (src/api/schemas.ts through the fastify app, with inject()):
// random writes with random JSON, broken JSON, odd content types and stale revisions get a 2xx or a
// 4xx JSON {code, message}, never a 5xx; a refused write leaves GET /v1/filter, the state on disk and
// the (stand-in) kernel exactly as they were.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { STAT_NAMES, type Stat } from '../../src/filter/stats.js';
import { parseConfig } from '../../src/agent/config.js';
import type { FilterBackend, FilterHandle } from '../../src/agent/filter.js';
import { StateStore } from '../../src/agent/store.js';
import { buildApi } from '../../src/api/app.js';
import { EbpfnetError } from '../../src/errors.js';
import type { Policy } from '../../src/filter/policy.js';
import { formatRule } from '../../src/filter/rules.js';
import { grammarish, RUNS } from '../helpers/props.js';

const TOKEN = 'prop-token-0123456789abcdef';
const nothing = () => ({ packets: 0n, bytes: 0n });

/** The kernel, as far as the API can tell: the policy each interface holds. */
function standInKernel(): { backend: FilterBackend; held: Map<string, string[]> } {
  const held = new Map<string, string[]>();
  const handle = (ifname: string): FilterHandle => ({
    ifname,
    attachment: 'xdp native',
    apply: (p: Policy) => void held.set(ifname, p.rules.map(formatRule)),
    counters: () => ({ rules: [], total: 0, ...(Object.fromEntries(STAT_NAMES.map((s) => [s, nothing()])) as Record<Stat, ReturnType<typeof nothing>>) }),
    programInfo: () => null,
    mapFill: () => [],
    close: () => {},
  });
  const backend: FilterBackend = {
    pinned: (i) => held.has(i),
    adopt: handle,
    create(i, p) {
      // an interface that does not exist: the write must fail whole
      if (i.startsWith('nosuch')) throw new EbpfnetError('EBPFNET_NOT_FOUND', `attach the filter to ${i}`, 'no such interface');
      const h = handle(i);
      h.apply(p);
      return h;
    },
    unload: (i) => void held.delete(i),
  };
  return { backend, held };
}

const RULE_TOKENS = ['tcp/22', 'udp/53', 'icmp', 'from', 'to', '10.0.0.0/8', 'fd00::/8', 'tcp/99999', 'icmp/22', 'arp', 'from 10.0.0.0/33'];
const rule = fc.oneof(
  fc.record({ action: fc.constantFrom('allow', 'deny'), match: fc.oneof(fc.constantFrom('tcp/22', 'icmp', 'udp/53 from 10.0.0.0/8', 'tcp/443 to 2001:db8::/32'), grammarish(RULE_TOKENS)) }),
  fc.dictionary(fc.constantFrom('action', 'match', 'id', 'x'), fc.jsonValue({ maxDepth: 1 })),
);
const filterBody = fc.record(
  {
    rules: fc.oneof(fc.array(rule, { maxLength: 4 }), fc.jsonValue({ maxDepth: 1 })),
    interfaces: fc.oneof(fc.array(fc.constantFrom('eth9', 'eth8', 'nosuch0', 'a'.repeat(16), 'bad name', ''), { maxLength: 3 }), fc.jsonValue({ maxDepth: 1 })),
    default: fc.oneof(fc.constantFrom('allow', 'deny'), fc.jsonValue({ maxDepth: 1 })),
    audit: fc.oneof(fc.boolean(), fc.jsonValue({ maxDepth: 1 })),
    extra: fc.jsonValue({ maxDepth: 1 }),
  },
  { requiredKeys: [] },
);
const payload = fc.oneof(
  filterBody.map((b) => JSON.stringify(b)),
  rule.map((r) => JSON.stringify(r)),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 40 }),
  fc.constantFrom('', '{', '{"rules": [', 'null', '[]', '{"__proto__": {"rules": []}}', '{"rules": [], "constructor": {"prototype": {}}}'),
);
const request = fc.record({
  route: fc.constantFrom('PUT /v1/filter', 'POST /v1/filter/rules', 'DELETE /v1/filter/rules/'),
  id: fc.oneof(fc.nat(20).map(String), fc.constantFrom('0', '-1', '1e3', 'abc', '99999999999', '%00', '')),
  payload,
  type: fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', undefined),
  // current: the ETag GET answered; in a list: after another tag; weak: W/ and the ETag (never matches)
  ifMatch: fc.option(fc.oneof({ arbitrary: fc.constantFrom('current', 'in a list'), weight: 3 }, fc.constantFrom('"0"', '"999"', 'W/"1"', 'weak', '*', 'garbage', '*, "1"')), { nil: undefined }),
  badToken: fc.nat(9).map((n) => n === 0),
});

describe('agent API bodies (property, inject)', () => {
  let dir: string;
  let app: FastifyInstance;
  let agent: Agent;
  let kernel: ReturnType<typeof standInKernel>;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-api-prop-'));
    kernel = standInKernel();
    agent = Agent.open({ stateDir: dir, config: parseConfig('filter:\n  interfaces: [eth9]\n  rules: ["deny tcp/22"]\n'), filters: kernel.backend });
    app = await buildApi({ agent, registry: new Registry(), token: TOKEN, bodyLimit: 64 * 1024 });
  });
  afterAll(async () => {
    await app?.close();
    agent?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('random writes: 2xx or a 4xx {code, message}; a refused one changes nothing', async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const before = await app.inject('/v1/filter');
        // the desired state on disk: the snapshot and its journal, as a restart would read them
        const file = JSON.stringify(StateStore.load(dir));
        const kernelBefore = JSON.stringify([...kernel.held]);
        const [method, url] = r.route.split(' ');
        const headers: Record<string, string> = { authorization: `Bearer ${r.badToken ? 'x' : TOKEN}` };
        if (r.type) headers['content-type'] = r.type;
        const cur = String(before.headers.etag);
        if (r.ifMatch) headers['if-match'] = r.ifMatch === 'current' ? cur : r.ifMatch === 'in a list' ? `"0", ${cur}` : r.ifMatch === 'weak' ? `W/${cur}` : r.ifMatch;
        const res = await app.inject({ method: method as 'PUT', url: url.endsWith('/') ? url + r.id : url, headers, payload: r.payload });
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        expect(res.statusCode, res.body).toBeLessThan(500);
        if (res.statusCode < 400) return;
        const body = res.json() as Record<string, unknown>;
        expect(Object.keys(body).sort()).toEqual(['code', 'message']);
        expect(body.code).toMatch(/^EBPFNET_[A-Z_]+$/);
        expect(body.message).toMatch(/^[^\n]+: [^\n]+$/);
        const after = await app.inject('/v1/filter');
        expect(after.body).toBe(before.body);
        expect(after.headers.etag).toBe(before.headers.etag);
        expect(JSON.stringify(StateStore.load(dir))).toBe(file);
        expect(JSON.stringify([...kernel.held])).toBe(kernelBefore);
      }),
      { numRuns: RUNS.http * 5 },
    );
    // the property saw both outcomes: accepted writes and each kind of refusal
    const seen = [...statuses.keys()];
    expect(seen.some((s) => s >= 200 && s < 300), JSON.stringify([...statuses])).toBe(true);
    for (const s of [400, 401, 404, 412, 415]) expect(seen, JSON.stringify([...statuses])).toContain(s);
  }, 60_000);
});
