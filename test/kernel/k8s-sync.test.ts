// SPDX-License-Identifier: Apache-2.0
// The agent as a node's Kubernetes service proxy, end to end: a real `ebpfnet agent` with a
// kubeconfig pointing at the test's list/watch server (test/helpers/kube-apiserver.ts), through the
// real @kubernetes/client-node, and real connects from a process in the balancer's cgroup to
// backends in a network namespace (fixtures/lb-servers.mjs answer with their names). Plain servers
// on the VIPs themselves show what a connect reaches when nothing translates it. The tests run in
// order on one agent and one API server, as a cluster's life goes: Services come, endpoints
// terminate, the API server goes away and its history is compacted, the agent is killed, and it
// starts while the API server is unreachable.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { packageDir } from '../../src/loader/index.js';
import { CliProcess, runCli } from '../helpers/cli.js';
import { namesPath } from '../../src/lb/names.js';
import { describeKernel, sh } from '../helpers/kernel.js';
import { connectFrom, k8sService, k8sSlice, makeK8sNode, only, READY, removeK8sNode, startK8sAgent, type Cond, type K8sNode, type Seen } from '../helpers/k8s.js';
import { KubeApiServer, type KubeObject } from '../helpers/kube-apiserver.js';
import { startLbServers, stopLbServers } from '../helpers/lb-servers.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const FIXTURES = join(packageDir(), 'test', 'kernel', 'fixtures');
const NODE = 'node-a';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const service = k8sService;
const slice = (svc: string, name: string, eps: Array<[string, Cond]>): KubeObject => k8sSlice(svc, name, eps, { node: NODE });

describeKernel('kubernetes: the agent as the service proxy (real client, list/watch server, cgroup, netns backends)', () => {
  let pair: VethPair;
  let node: K8sNode | undefined;
  let cg: string;
  let dir: string;
  let api: KubeApiServer;
  // the CLI's environment (pins under the node's own root) and that root
  let ENV: NodeJS.ProcessEnv;
  let PIN_ROOT: string;
  let ip: { a: string; b: string; c: string; d: string; vip: string; vip2: string };
  let servers: ChildProcess | null = null;
  let agent: { url: string; proc: CliProcess } | null = null;

  const connect = (vip: string, n: number): Promise<Seen> => connectFrom(cg, vip, n);

  /** Polls connects until `ok` holds (the agent applies changes within milliseconds; a restart takes seconds). */
  const until = async (what: string, vip: string, ok: (s: Seen) => boolean, ms = 20_000): Promise<Seen> => {
    const end = Date.now() + ms;
    for (;;) {
      const s = await connect(vip, 6);
      if (ok(s)) return s;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: last saw ${JSON.stringify(s)}\nagent stdout: ${agent?.proc.stdout.slice(-3000)}\nstderr: ${agent?.proc.stderr.slice(-2000)}`);
      await sleep(100);
    }
  };

  const start = async (): Promise<{ url: string; proc: CliProcess }> => (agent = await startK8sAgent(node!));
  const status = async (): Promise<{ state: string; everSynced: boolean; errors: number; lists: number; counts: { services: number; skipped: number }; vips: number }> =>
    (await fetch(`${agent!.url}/v1/kubernetes/status`)).json() as never;
  /** The informers reconnect on their own jittered backoff: the datapath can be right (services and
   * slices back) while the nodes watch still waits for its retry, so "synced" is polled for. */
  const untilSynced = async (ms = 20_000): Promise<Awaited<ReturnType<typeof status>>> => {
    const end = Date.now() + ms;
    let s = await status();
    while (s.state !== 'synced' && Date.now() < end) {
      await sleep(100);
      s = await status();
    }
    return s;
  };

  beforeAll(async () => {
    pair = makeVethPair();
    const subnet = pair.peerIp.replace(/\.\d+$/, '');
    ip = { a: pair.peerIp, b: `${subnet}.3`, c: `${subnet}.4`, d: `${subnet}.5`, vip: `${subnet}.100`, vip2: `${subnet}.101` };
    for (const x of [ip.b, ip.c, ip.d, ip.vip, ip.vip2]) sh('ip', ['-n', pair.ns, 'addr', 'add', `${x}/24`, 'dev', pair.peer]);
    servers = await startLbServers(pair.ns, [
      ...(['a', 'b', 'c', 'd'] as const).map((n) => ({ name: n, host: ip[n], port: 8080, proto: 'tcp' })),
      { name: 'plain', host: ip.vip, port: 80, proto: 'tcp' },
      { name: 'plain2', host: ip.vip2, port: 80, proto: 'tcp' },
    ]);
    node = await makeK8sNode('k8s', NODE, pair.hostIp);
    ({ cg, dir, api, env: ENV, pinRoot: PIN_ROOT } = node);
  });

  afterAll(async () => {
    await removeK8sNode(node);
    stopLbServers(servers);
    pair?.cleanup();
  });

  it('a Service with two ready endpoints spreads over both; its named targetPort is the slice port; headless and ExternalName are ignored; lb list and metrics name it', async () => {
    api.apply('services', service('web', ip.vip));
    api.apply('endpointslices', slice('web', 'web-1', [[ip.a, READY], [ip.b, READY]]));
    api.apply('services', { metadata: { name: 'db', namespace: 'default' }, spec: { clusterIP: 'None', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } });
    api.apply('endpointslices', slice('db', 'db-1', [[ip.c, READY]]));
    api.apply('services', { metadata: { name: 'ext', namespace: 'default' }, spec: { type: 'ExternalName', externalName: 'example.org' } });
    const a = await start();
    // the agent serves its API at once; /readyz turns 200 once the first full sync is in the kernel
    let ready = await fetch(`${a.url}/readyz`);
    for (let i = 0; i < 100 && ready.status !== 200; i++) {
      expect(ready.status).toBe(503);
      await sleep(100);
      ready = await fetch(`${a.url}/readyz`);
    }
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', kubernetes: 'synced' });

    const s = await connect(ip.vip, 40);
    expect(s.errors).toEqual({});
    expect(Object.keys(s.names).sort()).toEqual(['a', 'b']);
    expect(s.names.a + s.names.b).toBe(40);

    const view = (await (await fetch(`${a.url}/v1/lb/services`)).json()) as { services: Array<{ id: string; name?: string; backends: Array<{ address: string; state: string }> }> };
    // db (headless) and ext (ExternalName) made no entry
    expect(view.services.map((x) => [x.id, x.name])).toEqual([[`${ip.vip}:80/tcp`, 'default/web:http']]);
    expect(view.services[0].backends.map((b) => `${b.address} ${b.state}`)).toEqual([`${ip.a}:8080 active`, `${ip.b}:8080 active`]);
    const st = await status();
    expect(st).toMatchObject({ state: 'synced', everSynced: true, counts: { services: 3, skipped: 2 }, vips: 1 });

    const cli = runCli(['kubernetes', 'status', '--agent', a.url, '-o', 'json'], { env: ENV });
    expect(cli.status, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ agent: a.url, state: 'synced', node: { name: NODE, found: true, addresses: [pair.hostIp] }, vips: 1 });
    const text = runCli(['k8s', 'status', '--agent', a.url], { env: ENV });
    expect(text.stdout).toMatch(/kubernetes sync of the agent at .*: synced/);
    expect(text.stdout).toContain('3 services (2 skipped), 2 endpoint slices; 1 VIPs in the balancer');
    const list = runCli(['lb', 'list', '--agent', a.url], { env: ENV });
    expect(list.status, list.stderr).toBe(0);
    expect(list.stdout).toContain(`${ip.vip}:80/tcp (default/web:http)`);
    // without the agent: a separate command reads the pinned maps and the names the agent published beside them
    let local: { services: Array<{ service: string; name?: string }> } = { services: [] };
    for (let i = 0; i < 50 && local.services[0]?.name === undefined; i++, await sleep(50)) {
      const r = runCli(['lb', 'list', '-o', 'json'], { env: ENV });
      expect(r.status, r.stderr).toBe(0);
      local = JSON.parse(r.stdout) as typeof local;
    }
    expect(local.services.map((x) => [x.service, x.name])).toEqual([[`${ip.vip}:80/tcp`, 'default/web:http']]);
    expect(runCli(['lb', 'list'], { env: ENV }).stdout).toContain(`${ip.vip}:80/tcp (default/web:http)`);
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`ebpfnet_lb_connections_total\\{service="${ip.vip}:80/tcp",backend="${ip.a}:8080",namespace="default",kubernetes_service="web",port_name="http"\\} ${s.names.a}`));
    expect(metrics).toContain('ebpfnet_kubernetes_synced 1');
    expect(metrics).toContain('ebpfnet_kubernetes_vips 1');
  });

  it('an endpoint turning terminating gets no new connections; an established one keeps working', async () => {
    const holder = spawn('sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec ${process.execPath} ${join(FIXTURES, 'lb-client.mjs')} hold ${ip.vip} 80 b`], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    holder.stdout!.on('data', (d: Buffer) => (out += d));
    const waitOut = async (re: RegExp): Promise<void> => {
      for (let i = 0; i < 200 && !re.test(out); i++) await sleep(50);
      expect(out).toMatch(re);
    };
    try {
      await waitOut(/holding/);
      // b's pod is shutting down: not ready, still serving, terminating
      api.apply('endpointslices', slice('web', 'web-1', [[ip.a, READY], [ip.b, { ready: false, serving: true, terminating: true }]]));
      await until('b draining', ip.vip, only('a'));
      const s = await connect(ip.vip, 20);
      expect(s).toEqual({ names: { a: 20 }, errors: {} });
      holder.stdin!.write('go\n');
      await waitOut(/"echo"/);
      expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual({ echo: 'b:ping' });
      const view = (await (await fetch(`${agent!.url}/v1/lb/services`)).json()) as { services: Array<{ backends: Array<{ address: string; state: string }> }> };
      expect(view.services[0].backends.map((b) => `${b.address} ${b.state}`)).toEqual([`${ip.a}:8080 active`, `${ip.b}:8080 draining`]);
    } finally {
      holder.kill();
    }
  });

  it('a watch dropped while the history is compacted (410): the relist converges with every change made meanwhile', async () => {
    api.apply('services', service('old', ip.vip2));
    api.apply('endpointslices', slice('old', 'old-1', [[ip.c, READY]]));
    await until('old on c', ip.vip2, only('c'));
    const before = await status();
    // the API server goes away (every watch is cut); meanwhile old is deleted, web gets c and loses
    // b, and the history is compacted: the agent's resourceVersion is gone when the server is back
    await api.stop();
    api.delete('services', 'old');
    api.delete('endpointslices', 'old-1');
    api.apply('endpointslices', slice('web', 'web-1', [[ip.a, READY], [ip.c, READY]]));
    api.compact();
    await sleep(300);
    await api.resume();
    await until('old gone', ip.vip2, only('plain2'));
    await until('web on a and c', ip.vip, (s) => Object.keys(s.errors).length === 0 && !s.names.b && !s.names.plain && (s.names.a ?? 0) + (s.names.c ?? 0) === 6);
    const s = await connect(ip.vip, 30);
    expect(Object.keys(s.names).sort()).toEqual(['a', 'c']);
    const after = await untilSynced();
    expect(after.state).toBe('synced');
    expect(after.errors).toBeGreaterThan(before.errors);
    // a relist happened (the 410), not only a re-watch
    expect(after.lists).toBeGreaterThan(before.lists);
    expect(api.requests.some((r) => r.startsWith('watch') && r.includes('bookmarks'))).toBe(true);
  });

  it('the agent kill -9ed: the datapath keeps working; a Service deleted and a new endpoint added meanwhile are reconciled within seconds of its restart', async () => {
    agent!.proc.child.kill('SIGKILL');
    await agent!.proc.stop();
    // nobody drives the balancer now: it translates as before
    const s = await connect(ip.vip, 20);
    expect(s.errors).toEqual({});
    expect(Object.keys(s.names).sort()).toEqual(['a', 'c']);
    // while it is down: web is deleted; a new Service on vip2 with a new endpoint d
    api.delete('services', 'web');
    api.delete('endpointslices', 'web-1');
    api.apply('services', service('late', ip.vip2));
    api.apply('endpointslices', slice('late', 'late-1', [[ip.d, READY]]));
    const t0 = Date.now();
    await start();
    await until('web gone', ip.vip, only('plain'), 10_000);
    await until('late on d', ip.vip2, only('d'), 10_000);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('the API server unreachable at start: the agent starts with its pinned state, says it waits, and catches up when the server appears', async () => {
    agent!.proc.child.kill('SIGKILL');
    await agent!.proc.stop();
    await api.stop();
    const a = await start();
    // not ready (no sync yet) and it says why; the pinned balancer still translates
    const r = await fetch(`${a.url}/readyz`);
    expect(r.status).toBe(503);
    expect(((await r.json()) as { message: string }).message).toMatch(/waiting for the first full sync from http:\/\/127\.0\.0\.1:\d+/);
    expect(await connect(ip.vip2, 10)).toEqual({ names: { d: 10 }, errors: {} });
    // while away: late's endpoint moves from d to b
    api.apply('endpointslices', slice('late', 'late-1', [[ip.b, READY]]));
    await sleep(1500);
    const st = await status();
    expect(st.state).not.toBe('synced');
    expect(st.everSynced).toBe(false);
    expect(st.errors).toBeGreaterThan(0);
    const text = runCli(['kubernetes', 'status', '--agent', a.url], { env: ENV });
    expect(text.stdout).toMatch(/: retrying since \S+, no full sync yet: the datapath keeps its last state/);
    expect(text.stdout).toMatch(/errors: +[1-9]\d* \(last: .*ECONNREFUSED/);
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    expect(metrics).toContain('ebpfnet_kubernetes_synced 0');
    expect(metrics).toContain('ebpfnet_kubernetes_connected 0');
    await api.resume();
    await until('late on b', ip.vip2, only('b'), 40_000);
    expect((await fetch(`${a.url}/readyz`)).status).toBe(200);
    expect((await untilSynced()).state).toBe('synced');

    expect(await a.proc.stop('SIGTERM')).toBe(0);
    const c = runCli(['agent', '--cleanup', '--state-dir', join(dir, 'state')], { env: ENV });
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toContain('balancer: detached and unpinned');
    expect(existsSync(`${PIN_ROOT}/lb`)).toBe(false);
    expect(existsSync(namesPath(`${PIN_ROOT}/lb`))).toBe(false);
    expect(readFileSync(join(dir, 'config.yaml'), 'utf8')).toContain('kubernetes:');
  });
});
