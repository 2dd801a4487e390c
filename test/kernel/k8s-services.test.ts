// SPDX-License-Identifier: Apache-2.0
// What the agent makes of the kinds of Service a cluster holds, end to end: a real `ebpfnet agent`
// synced from the test's list/watch server through @kubernetes/client-node, and real connects from
// a process in the balancer's cgroup to backends in a network namespace the test made. Each test
// adds its own Services on its own VIPs; one agent serves them all. (The sync's life story, with
// restarts and relists, is test/kernel/k8s-sync.test.ts.)
import { type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { CliProcess } from '../helpers/cli.js';
import { connectFrom, inCgroup, k8sService, k8sSlice, makeK8sNode, only, READY, removeK8sNode, startK8sAgent, type Cond, type K8sNode, type Seen, type SliceOpts } from '../helpers/k8s.js';
import { describeKernel, sh } from '../helpers/kernel.js';
import { KubeApiServer } from '../helpers/kube-apiserver.js';
import { startLbServers, stopLbServers } from '../helpers/lb-servers.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const NODE = 'node-a';
const OTHER = 'node-b';
const TERMINATING: Cond = { ready: false, serving: true, terminating: true };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describeKernel('kubernetes: kinds of Service through the agent (fallback, UDP, dual-stack, internalTrafficPolicy, NodePort)', () => {
  let pair: VethPair;
  let node: K8sNode | undefined;
  let cg: string;
  let api: KubeApiServer;
  let servers: ChildProcess | null = null;
  let agent: { url: string; proc: CliProcess } | null = null;
  let sub: string;
  // the v6 subnet: the host end is ::1, backends ::2 and ::3, VIPs from ::100
  let sub6: string;
  const at = (n: number): string => `${sub}.${n}`;
  const slice = (svc: string, name: string, eps: Array<[string, Cond] | [string, Cond, string]>, opts: Partial<SliceOpts> = {}) => k8sSlice(svc, name, eps, { node: NODE, ...opts });

  const until = async (what: string, vip: string, ok: (s: Seen) => boolean, port = 80, ms = 15_000): Promise<Seen> => {
    const end = Date.now() + ms;
    for (;;) {
      const s = await connectFrom(cg, vip, 6, port);
      if (ok(s)) return s;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: last saw ${JSON.stringify(s)}\nagent stdout: ${agent?.proc.stdout.slice(-3000)}\nstderr: ${agent?.proc.stderr.slice(-2000)}`);
      await sleep(100);
    }
  };

  beforeAll(async () => {
    pair = makeVethPair();
    sub = pair.peerIp.replace(/\.\d+$/, '');
    sub6 = `fd00:ebf:${(process.pid % 60000).toString(16)}:${sub.split('.')[2]}`;
    // backends a..d at .2 (the peer's own address) .. .5; VIPs from .100 carry plain servers, which answer when nothing translates
    for (const n of [3, 4, 5, 100, 101, 102, 103]) sh('ip', ['-n', pair.ns, 'addr', 'add', `${at(n)}/24`, 'dev', pair.peer]);
    // IPv6 on both ends of the veth; nodad: usable at once, no duplicate-address wait
    sh('ip', ['-n', pair.hostNs, '-6', 'addr', 'add', `${sub6}::1/64`, 'dev', pair.host, 'nodad']);
    for (const n of ['2', '3', '100']) sh('ip', ['-n', pair.ns, '-6', 'addr', 'add', `${sub6}::${n}/64`, 'dev', pair.peer, 'nodad']);
    servers = await startLbServers(pair.ns, [
      ...['a', 'b', 'c', 'd'].map((name, i) => ({ name, host: at(i + 2), port: 8080, proto: 'tcp' })),
      { name: 'u', host: at(4), port: 5353, proto: 'udp' },
      { name: 'a6', host: `${sub6}::2`, port: 8080, proto: 'tcp' },
      { name: 'b6', host: `${sub6}::3`, port: 8080, proto: 'tcp' },
      ...[100, 101, 102, 103].map((n) => ({ name: `plain${n}`, host: at(n), port: 80, proto: 'tcp' })),
      { name: 'plain6', host: `${sub6}::100`, port: 80, proto: 'tcp' },
    ]);
    // the node's address is the host end of the veth: in a namespace this test made (the test process runs there)
    node = await makeK8sNode('k8svc', NODE, pair.hostIp);
    ({ cg, api } = node);
    agent = await startK8sAgent(node);
  });

  afterAll(async () => {
    await removeK8sNode(node);
    stopLbServers(servers);
    pair?.cleanup();
  });

  it('a Service whose only endpoint is serving and terminating still gets connections (the fallback); once one is ready, only it gets new ones', async () => {
    const vip = at(100);
    api.apply('services', k8sService('roll', vip));
    api.apply('endpointslices', slice('roll', 'roll-1', [[at(2), TERMINATING]]));
    await until('roll on a (fallback)', vip, only('a'));
    expect(await connectFrom(cg, vip, 10)).toEqual({ names: { a: 10 }, errors: {} });
    // the new pod is ready: the old one gets no new connections (it drains)
    api.apply('endpointslices', slice('roll', 'roll-1', [[at(2), TERMINATING], [at(3), READY]]));
    await until('roll on b', vip, only('b'));
    expect(await connectFrom(cg, vip, 20)).toEqual({ names: { b: 20 }, errors: {} });
    const view = (await (await fetch(`${agent!.url}/v1/lb/services`)).json()) as { services: Array<{ id: string; backends: Array<{ address: string; state: string }> }> };
    const roll = view.services.find((s) => s.id === `${vip}:80/tcp`)!;
    expect(roll.backends.map((b) => `${b.address} ${b.state}`)).toEqual([`${at(3)}:8080 active`, `${at(2)}:8080 draining`]);
  });

  it('UDP: replies to an unconnected socket (sendto, recvfrom) come from the VIP, not the backend', async () => {
    const vip = at(101);
    api.apply('services', k8sService('dns', vip, { ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 }] }));
    api.apply('endpointslices', slice('dns', 'dns-1', [[at(4), READY]], { ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }] }));
    let r: { replies: Array<{ name: string; from: string }>; error?: string } = { replies: [] };
    for (let i = 0; i < 100; i++) {
      r = await inCgroup(cg, ['udp', vip, 53, 4]);
      if (r.replies.length === 4) break;
      await sleep(100);
    }
    expect(r.replies).toEqual(Array.from({ length: 4 }, () => ({ name: 'u', from: `${vip}:53` })));
  });

  it('dual-stack: a Service with an IPv4 and an IPv6 cluster IP reaches the backends of each family', async () => {
    const vip = at(102);
    const vip6 = `${sub6}::100`;
    api.apply('services', k8sService('dual', vip, { clusterIPs: [vip, vip6], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'RequireDualStack' }));
    api.apply('endpointslices', slice('dual', 'dual-v4', [[at(5), READY]]));
    api.apply('endpointslices', slice('dual', 'dual-v6', [[`${sub6}::2`, READY], [`${sub6}::3`, READY]], { addressType: 'IPv6' }));
    await until('dual v4 on d', vip, only('d'));
    await until('dual v6 on a6 and b6', vip6, (s) => Object.keys(s.errors).length === 0 && !s.names.plain6 && (s.names.a6 ?? 0) + (s.names.b6 ?? 0) === 6);
    const s = await connectFrom(cg, vip6, 30);
    expect(s.errors).toEqual({});
    expect(Object.keys(s.names).sort()).toEqual(['a6', 'b6']);
    expect(await connectFrom(cg, vip, 10)).toEqual({ names: { d: 10 }, errors: {} });
  });

  it('internalTrafficPolicy: Local: only endpoints on this node get connections; with none local the connect is refused', async () => {
    const vip = at(103);
    api.apply('services', k8sService('loc', vip, { internalTrafficPolicy: 'Local' }));
    api.apply('endpointslices', slice('loc', 'loc-1', [[at(2), READY, NODE], [at(3), READY, OTHER], [at(4), READY, OTHER]]));
    await until('loc on a', vip, only('a'));
    expect(await connectFrom(cg, vip, 20)).toEqual({ names: { a: 20 }, errors: {} });
    // the local pod goes away: other nodes' endpoints are no fallback
    api.apply('endpointslices', slice('loc', 'loc-1', [[at(3), READY, OTHER], [at(4), READY, OTHER]]));
    let r: { code: string } = { code: '' };
    for (let i = 0; i < 100 && r.code !== 'ECONNREFUSED'; i++) {
      r = await inCgroup(cg, ['refuse', vip, 80, 'tcp']);
      if (r.code !== 'ECONNREFUSED') await sleep(100);
    }
    // not `CONNECTED plain103`: the balancer refused it, nothing reached the VIP's own server
    expect(r.code).toBe('ECONNREFUSED');
  });

  it('NodePort from a socket on this node: the node address and nodePort reach the backends (translated in connect)', async () => {
    api.apply('services', k8sService('np', at(104), { type: 'NodePort', ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'web', nodePort: 30080 }] }));
    api.apply('endpointslices', slice('np', 'np-1', [[at(2), READY], [at(3), READY]]));
    // nothing listens on the node's port 30080: a backend's name is only seen when connect() was translated
    await until('np on a and b', pair.hostIp, (s) => Object.keys(s.errors).length === 0 && (s.names.a ?? 0) + (s.names.b ?? 0) === 6, 30080);
    const s = await connectFrom(cg, pair.hostIp, 30, 30080);
    expect(s.errors).toEqual({});
    expect(Object.keys(s.names).sort()).toEqual(['a', 'b']);
    const view = (await (await fetch(`${agent!.url}/v1/lb/services`)).json()) as { services: Array<{ id: string; name?: string }> };
    expect(view.services.find((x) => x.id === `${pair.hostIp}:30080/tcp`)?.name).toBe('default/np:http');
  });
});
