// SPDX-License-Identifier: Apache-2.0
// The agent's connection state (issue 15) through inject(), with the in-memory kernel: the config
// key filter.stateful and its default, PUT /v1/filter's stateful, where it shows (the view, stats,
// /metrics), GET /v1/filter/conntrack, and a failed switch leaving the previous state.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig, sectionHash } from '../../src/agent/config.js';
import { buildApi } from '../../src/api/app.js';
import { registerFilterMetrics } from '../../src/metrics/filter.js';
import { fakeKernel } from '../helpers/agent-fakes.js';

const TOKEN = 'test-token-0123456789abcdef';
const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

describe('filter.stateful in the config', () => {
  it('is on exactly when the default is deny unless given; a bad value is one line', () => {
    expect(parseConfig('filter:\n  default: deny\n').filter!.stateful).toBeUndefined();
    expect(parseConfig('filter:\n  default: deny\n  stateful: false\n').filter!.stateful).toBe(false);
    expect(parseConfig('filter:\n  stateful: true\n').filter!.stateful).toBe(true);
    expect(() => parseConfig('filter:\n  default: deny\n  stateful: yes\n', 'a.yaml')).toThrow(
      /^read config a\.yaml:3: filter\.stateful: 'yes' is not true or false; leave it out to track connections exactly when filter\.default is deny$/,
    );
    // a file without the key keeps the fingerprint it had before the key existed
    expect(sectionHash(parseConfig('filter:\n  interfaces: [eth0]\n').filter)).toBe(sectionHash({ interfaces: ['eth0'], rules: [], default: 'allow', audit: false, hook: 'xdp', mode: 'auto', maxRules: 16384 }));
  });
});

describe('the agent\'s connection state (inject)', () => {
  let dir: string;
  let app: FastifyInstance;
  let agent: Agent;
  let kernel: ReturnType<typeof fakeKernel>;
  let failSwitch = false;

  const start = async (config: string): Promise<void> => {
    agent = Agent.open({ stateDir: dir, config: parseConfig(config), filters: kernel.backend });
    const registry = new Registry();
    registerFilterMetrics(registry, () => agent.filter.sources());
    app = await buildApi({ agent, registry, token: TOKEN });
  };
  const stop = async (): Promise<void> => {
    await app.close();
    agent.close();
  };
  const put = (body: unknown) => app.inject({ method: 'PUT', url: '/v1/filter', headers: auth, payload: JSON.stringify(body) });
  const view = async (): Promise<{ stateful: boolean; default: string; revision: number }> => (await app.inject('/v1/filter')).json();

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-agent-ct-'));
    failSwitch = false;
    kernel = fakeKernel({ failStateful: () => failSwitch });
  });
  afterEach(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('default deny is stateful; PUT turns it off, null back to the default; it shows in the view, stats and /metrics', async () => {
    await start('filter:\n  interfaces: [eth9]\n  rules: ["allow tcp/22"]\n  default: deny\n');
    expect((await view()).stateful).toBe(true);
    expect(kernel.stateful.has('eth9')).toBe(true);
    const stats = (await app.inject('/v1/filter/stats')).json() as { interfaces: Array<{ interface: string; stateful: boolean }> };
    expect(stats.interfaces.map((i) => [i.interface, i.stateful])).toEqual([['eth9', true]]);
    expect((await app.inject('/metrics')).body).toMatch(/^ebpfnet_filter_stateful\{interface="eth9"\} 1$/m);

    const off = await put({ rules: [{ action: 'allow', match: 'tcp/22' }], stateful: false });
    expect(off.statusCode, off.body).toBe(200);
    expect(off.json().stateful).toBe(false);
    expect(kernel.stateful.has('eth9')).toBe(false);
    expect((await app.inject('/metrics')).body).toMatch(/^ebpfnet_filter_stateful\{interface="eth9"\} 0$/m);
    // left out: unchanged, even when the default changes
    expect((await put({ rules: [], default: 'allow' })).json().stateful).toBe(false);
    expect((await put({ rules: [], default: 'deny' })).json().stateful).toBe(false);
    // null: the default again (on under deny)
    expect((await put({ rules: [], stateful: null })).json().stateful).toBe(true);
    expect(kernel.stateful.has('eth9')).toBe(true);
    // the default follows the default action
    expect((await put({ rules: [], default: 'allow' })).json().stateful).toBe(false);
    expect(kernel.stateful.has('eth9')).toBe(false);

    for (const bad of ['yes', 1, {}]) {
      const r = await put({ rules: [], stateful: bad });
      expect(r.statusCode).toBe(400);
      expect(r.json().code).toBe('EBPFNET_USAGE');
    }
  });

  it('GET /v1/filter/conntrack lists each interface; a named interface the agent does not filter is 404', async () => {
    await start('filter:\n  interfaces: [eth9, eth8]\n  default: deny\n');
    const r = await app.inject('/v1/filter/conntrack');
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toEqual({ interfaces: [{ interface: 'eth9', stateful: true, table: null, total: 0, flows: [] }, { interface: 'eth8', stateful: true, table: null, total: 0, flows: [] }] });
    expect((await app.inject('/v1/filter/conntrack?interface=eth8&limit=5&offset=5')).json()).toEqual({ interfaces: [{ interface: 'eth8', stateful: true, table: null, total: 0, flows: [] }] });
    // a page is 1 to the largest table's flows; anything else is refused
    for (const q of ['limit=0', 'limit=16777217', 'offset=-1', 'offset=16777217', 'limit=ten']) expect((await app.inject(`/v1/filter/conntrack?${q}`)).statusCode, q).toBe(400);
    // the same words as the CLI's --limit (one parser): which bound, and its range
    expect((await app.inject('/v1/filter/conntrack?limit=0')).json()).toMatchObject({ message: expect.stringMatching(/^parse limit: '0' is not a whole number from 1 to \d+/) });
    const none = await app.inject('/v1/filter/conntrack?interface=eth7');
    expect(none.statusCode).toBe(404);
    expect(none.json()).toEqual({ code: 'EBPFNET_NOT_FOUND', message: 'list the flows of eth7: the agent does not filter that interface; GET /v1/filter/stats lists the interfaces it filters' });
    expect((await app.inject('/v1/filter/conntrack?iface=eth8')).statusCode).toBe(400);
    const doc = (await app.inject('/v1/openapi.json')).json() as { paths: Record<string, { get?: { parameters?: Array<{ name: string }> } }> };
    expect(doc.paths['/v1/filter/conntrack'].get!.parameters!.map((p) => p.name)).toEqual(['interface', 'limit', 'offset']);
  });

  it('a switch that fails leaves the previous state and policy; the setting survives a restart', async () => {
    await start('filter:\n  interfaces: [eth9]\n  rules: ["deny udp/53"]\n');
    const before = await view();
    expect(before.stateful).toBe(false);
    failSwitch = true;
    const r = await put({ rules: [{ action: 'allow', match: 'tcp/22' }], default: 'deny' });
    expect(r.statusCode).toBe(503);
    expect(r.json()).toEqual({ code: 'EBPFNET_BUSY', message: 'attach filter_egress to tc egress of eth9: EBUSY' });
    failSwitch = false;
    expect(await view()).toEqual(before);
    expect(kernel.stateful.has('eth9')).toBe(false);
    expect(kernel.pinned.get('eth9')!.default).toBe('allow');

    expect((await put({ rules: [], default: 'deny', stateful: false })).statusCode).toBe(200);
    await stop();
    // the same config file: the saved state, stateful: false included, is what runs
    await start('filter:\n  interfaces: [eth9]\n  rules: ["deny udp/53"]\n');
    expect((await view()).stateful).toBe(false);
    expect(kernel.stateful.has('eth9')).toBe(false);
  });
});
