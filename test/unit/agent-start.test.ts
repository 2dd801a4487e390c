// SPDX-License-Identifier: Apache-2.0
// A start that fails changes nothing in the kernel: the filters and the balancer that start loaded
// are unloaded again, the pinned ones it adopted stay as they were. In-memory kernel and balancer.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/agent/config.js';
import { EbpfnetError } from '../../src/errors.js';
import { fakeBalancer, fakeKernel } from '../helpers/agent-fakes.js';

describe('agent: a failed start', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-agent-start-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('a missing interface after one that worked: the one it loaded is unloaded, the error is the interface\'s', () => {
    const kernel = fakeKernel();
    const open = () => Agent.open({ stateDir: dir, config: parseConfig('filter:\n  interfaces: [eth9, nosuch0]\n  rules: ["deny icmp"]\n'), filters: kernel.backend, balancer: fakeBalancer().backend });
    expect(open).toThrow('filter nosuch0: no such interface');
    expect([...kernel.pinned.keys()]).toEqual([]);
    expect(kernel.applied).toEqual(['eth9']);
  });

  it('a filter it adopted stays pinned with the policy it had', () => {
    const kernel = fakeKernel();
    const before = { rules: [], default: 'allow' as const, audit: false };
    kernel.pinned.set('eth8', before);
    const open = () => Agent.open({ stateDir: dir, config: parseConfig('filter:\n  interfaces: [eth8, eth9, nosuch0]\n  rules: ["deny icmp"]\n'), filters: kernel.backend, balancer: fakeBalancer().backend });
    expect(open).toThrow(EbpfnetError);
    expect([...kernel.pinned.keys()]).toEqual(['eth8']);
  });

  it('the balancer failing after the filters were loaded: the filters go too', () => {
    const kernel = fakeKernel();
    const lb = fakeBalancer();
    lb.fail.next = new EbpfnetError('EBPFNET_MAP_FULL', 'update map lb_svc', 'the map is full');
    const open = () => Agent.open({ stateDir: dir, config: parseConfig('filter:\n  interfaces: [eth9]\n  rules: ["deny icmp"]\nlb:\n  services:\n    - service: 10.96.0.10:80/tcp\n      backends: ["10.244.1.5:8080"]\n'), filters: kernel.backend, balancer: lb.backend });
    expect(open).toThrow('the map is full');
    expect([...kernel.pinned.keys()]).toEqual([]);
    // the balancer this start attached is detached again
    expect(lb.attached).toBeNull();
  });

  it('a balancer that was already attached stays attached when the start fails', () => {
    const lb = fakeBalancer();
    lb.backend.ensure(null).close();
    lb.fail.next = new EbpfnetError('EBPFNET_MAP_FULL', 'update map lb_svc', 'the map is full');
    const open = () => Agent.open({ stateDir: dir, config: parseConfig('lb:\n  services:\n    - service: 10.96.0.10:80/tcp\n      backends: ["10.244.1.5:8080"]\n'), filters: fakeKernel().backend, balancer: lb.backend });
    expect(open).toThrow('the map is full');
    expect(lb.attached).toBe('/sys/fs/cgroup');
  });
});
