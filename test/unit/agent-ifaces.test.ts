// SPDX-License-Identifier: Apache-2.0
// The agent's interface patterns without root: an in-memory kernel and interface list, the agent's
// own resolution and following of interfaces that come and go.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it, describe } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/agent/config.js';
import type { FilterBackend, LinkSource } from '../../src/agent/filter.js';
import type { IfaceFact } from '../../src/filter/ifaces.js';
import { formatRule } from '../../src/filter/rules.js';
import { Registry } from 'prom-client';
import { buildApi } from '../../src/api/app.js';
import { fakeKernel } from '../helpers/agent-fakes.js';

const TOKEN = 'test-token-0123456789abcdef';

/** An interface list the test edits, and the watch callback the agent registered. */
function fakeLinks(initial: string[]) {
  let here: IfaceFact[] = initial.map((name) => ({ name, kind: null, addressed: name !== 'lo' }));
  const watchers: Array<() => void> = [];
  const links: LinkSource = {
    list: () => here.map((f) => ({ ...f })),
    exists: (n) => here.some((f) => f.name === n),
    watch(onChange) {
      watchers.push(onChange);
      return { close: () => void watchers.splice(watchers.indexOf(onChange), 1) };
    },
  };
  return {
    links,
    watchers,
    add: (name: string) => void (here = [...here, { name, kind: null, addressed: true }]),
    remove: (name: string) => void (here = here.filter((f) => f.name !== name)),
    /** what the kernel's netlink event would trigger */
    event: () => watchers.forEach((w) => w()),
  };
}

describe('agent: interface globs and all', () => {
  let dir: string;
  let agent: Agent | null = null;
  let audit: string[];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-ifaces-'));
    audit = [];
    creates = [];
  });
  afterEach(() => {
    agent?.close();
    agent = null;
    rmSync(dir, { recursive: true, force: true });
  });
  /** every create the agent asked of the kernel, by interface */
  let creates: string[] = [];
  const open = (kernel: ReturnType<typeof fakeKernel>, l: ReturnType<typeof fakeLinks>, config?: string): Agent => {
    const filters: FilterBackend = {
      ...kernel.backend,
      links: l.links,
      create: (i, p, o) => {
        creates.push(i);
        return kernel.backend.create(i, p, o);
      },
    };
    agent = Agent.open({ stateDir: dir, config: config ? parseConfig(config) : null, filters, auditSink: (line) => audit.push(line) });
    return agent;
  };

  it('a glob covers what matches at start and what appears later; what disappears is dropped', () => {
    const kernel = fakeKernel();
    const l = fakeLinks(['lo', 'eth0', 'veth1']);
    const a = open(kernel, l, "filter:\n  interfaces: ['veth*', 'nos*']\n  rules: ['deny tcp/22']\n");
    expect(a.filter.attachedInterfaces()).toEqual(['veth1']);
    expect(a.filter.targets().resolved).toEqual([{ pattern: 'veth*', names: ['veth1'] }, { pattern: 'nos*', names: [] }]);
    expect(l.watchers).toHaveLength(1);

    l.add('veth2');
    l.add('eth5');
    l.event();
    expect(a.filter.attachedInterfaces()).toEqual(['veth1', 'veth2']);
    expect(kernel.pinned.get('veth2')!.rules.map(formatRule)).toEqual(['deny tcp/22']);
    expect(kernel.pinned.has('eth5')).toBe(false);
    expect(audit.some((x) => JSON.parse(x).op === 'interface added' && JSON.parse(x).what === 'filter on veth2 (matches veth*)')).toBe(true);
    expect(a.filter.stats().interfaces.map((i) => i.interface)).toEqual(['veth1', 'veth2']);

    // an interface whose filter cannot attach: the agent says so and keeps the others, and does not
    // try again on every event (a failed attempt can itself make link events)
    l.add('nosuch0');
    l.event();
    expect(a.filter.attachedInterfaces()).toEqual(['veth1', 'veth2']);
    expect(a.filter.targets().failed).toEqual([{ interface: 'nosuch0', reason: 'filter nosuch0: no such interface' }]);
    const tries = creates.filter((i) => i === 'nosuch0').length;
    l.event();
    expect(creates.filter((i) => i === 'nosuch0').length).toBe(tries);

    l.remove('veth1');
    l.event();
    expect(a.filter.attachedInterfaces()).toEqual(['veth2']);
    expect(kernel.pinned.has('veth1')).toBe(false);
    expect(a.filter.targets().resolved[0]).toEqual({ pattern: 'veth*', names: ['veth2'] });
  });

  it('PUT /v1/filter takes globs and all too; a malformed pattern is a 400 that changes nothing', async () => {
    const kernel = fakeKernel();
    const l = fakeLinks(['lo', 'eth0', 'veth1']);
    const a = open(kernel, l, "filter:\n  interfaces: [eth0]\n  rules: ['deny tcp/22']\n");
    const app = await buildApi({ agent: a, registry: new Registry(), token: TOKEN, bodyLimit: 64 * 1024 });
    try {
      const put = (interfaces: string[]) =>
        app.inject({ method: 'PUT', url: '/v1/filter', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, payload: JSON.stringify({ interfaces, rules: [{ action: 'deny', match: 'icmp' }] }) });
      const ok = await put(['veth*']);
      expect(ok.statusCode, ok.body).toBe(200);
      expect(a.filter.attachedInterfaces()).toEqual(['veth1']);
      l.add('veth2');
      l.event();
      expect(a.filter.attachedInterfaces()).toEqual(['veth1', 'veth2']);
      const rev = a.filter.view().revision;
      for (const bad of [['veth['], ['eth0 eth1'], ['a'.repeat(16)]]) {
        const r = await put(bad);
        expect(r.statusCode, `${bad}: ${r.body}`).toBe(400);
        expect(r.json().message).toMatch(/interfaces|is not an interface name|must match pattern|glob/);
      }
      expect(a.filter.view().revision).toBe(rev);
      expect(a.filter.attachedInterfaces()).toEqual(['veth1', 'veth2']);
    } finally {
      await app.close();
    }
  });

  it('all: every addressed interface but lo; a restarted agent unpins what it no longer wants; cleanup removes what it attached', async () => {
    const kernel = fakeKernel();
    const l = fakeLinks(['lo', 'eth0', 'veth1']);
    open(kernel, l, 'filter:\n  interfaces: [all]\n  rules: []\n  default: allow\n');
    expect(agent!.filter.attachedInterfaces()).toEqual(['eth0', 'veth1']);
    l.add('veth3');
    l.event();
    expect(agent!.filter.attachedInterfaces()).toEqual(['eth0', 'veth1', 'veth3']);
    await new Promise((r) => setTimeout(r, 20));
    agent!.close();
    agent = null;
    // veth3 went away while no agent ran: its pins are the agent's to remove
    l.remove('veth3');
    expect(kernel.pinned.has('veth3')).toBe(true);
    open(kernel, l);
    expect(agent!.filter.attachedInterfaces()).toEqual(['eth0', 'veth1']);
    expect(kernel.pinned.has('veth3')).toBe(false);
    agent!.close();
    agent = null;
    expect(Agent.cleanup(dir, kernel.backend).sort()).toEqual(['filter on eth0', 'filter on veth1']);
    expect([...kernel.pinned.keys()]).toEqual([]);
  });

  it('an interface only a wildcard matched may fail at start or on a change without holding up the rest; a plain name may not', async () => {
    const kernel = fakeKernel();
    const l = fakeLinks(['lo', 'eth0', 'nosuch0']);
    const a = open(kernel, l, 'filter:\n  interfaces: [all]\n  rules: []\n');
    expect(a.filter.attachedInterfaces()).toEqual(['eth0']);
    expect(a.filter.targets()).toEqual({ resolved: [{ pattern: 'all', names: ['eth0'] }], failed: [{ interface: 'nosuch0', reason: 'filter nosuch0: no such interface' }] });
    await a.filter.set({ rules: [{ action: 'deny', match: 'icmp' }] }, { who: 'test' });
    expect(kernel.pinned.get('eth0')!.rules.map(formatRule)).toEqual(['deny icmp']);
    expect(creates.filter((i) => i === 'nosuch0')).toHaveLength(1);
    await expect(a.filter.set({ interfaces: ['all', 'nosuch0'], rules: [] }, { who: 'test' })).rejects.toThrow(/no such interface/);
    expect(a.filter.view().interfaces).toEqual(['all']);
  });

  it('a plain name that went away is passed over, not an error, until it comes back', async () => {
    const kernel = fakeKernel();
    const l = fakeLinks(['lo', 'eth0', 'eth1']);
    const a = open(kernel, l, 'filter:\n  interfaces: [eth0, eth1]\n  rules: []\n');
    l.remove('eth1');
    l.event();
    expect(a.filter.attachedInterfaces()).toEqual(['eth0']);
    // a policy change still works, on what is there
    await a.filter.set({ rules: [{ action: 'deny', match: 'udp/53' }] }, { who: 'test' });
    expect(kernel.pinned.get('eth0')!.rules.map(formatRule)).toEqual(['deny udp/53']);
    l.add('eth1');
    l.event();
    expect(a.filter.attachedInterfaces()).toEqual(['eth0', 'eth1']);
    expect(kernel.pinned.get('eth1')!.rules.map(formatRule)).toEqual(['deny udp/53']);
    // a name the policy never had must be there
    await expect(a.filter.set({ interfaces: ['eth0', 'nosuch0'], rules: [] }, { who: 'test' })).rejects.toThrow(/no such interface/);
  });
});
