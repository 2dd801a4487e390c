// SPDX-License-Identifier: Apache-2.0
// The agent's balancer end to end: an agent configured with a balancer on a test cgroup, services
// changed over HTTP, and a client process in that cgroup connecting to the VIP. Backends answer
// with their names from a network namespace (fixtures/lb-servers.mjs); a plain server on the VIP
// itself shows what a connection reaches when nothing translates it. The agent is killed with
// SIGKILL: the balancer keeps translating, and the next agent adopts it with its counters.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensureCgroup2, packageDir } from '../../src/loader/index.js';
import { CliProcess, runCli } from '../helpers/cli.js';
import { describeKernel, sh } from '../helpers/kernel.js';
import { startLbServers, stopLbServers } from '../helpers/lb-servers.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const FIXTURES = join(packageDir(), 'test', 'kernel', 'fixtures');
const PIN_ROOT = `/sys/fs/bpf/ebpfnet-test-agent-${process.pid}`;
const ENV = { ...process.env, EBPFNET_LB_PIN_DIR: `${PIN_ROOT}/lb` };

const cgroupPrograms = (cg: string): string[] =>
  (JSON.parse(sh('bpftool', ['-j', 'cgroup', 'show', cg]).trim() || '[]') as Array<{ name: string }>).map((p) => p.name).sort();

describeKernel('agent: the balancer over HTTP (cgroup, netns backends)', () => {
  let pair: VethPair;
  let cg: string;
  let dir: string;
  let vip: string;
  let servers: ChildProcess | null = null;
  const agents: CliProcess[] = [];

  /** N connections from a process in the test cgroup: { names: {name: count}, errors } */
  const connect = (n: number): { names: Record<string, number>; errors: Record<string, number> } => {
    const cmd = `echo $$ > ${cg}/cgroup.procs && exec ${process.execPath} ${join(FIXTURES, 'lb-client.mjs')} tcp ${vip} 80 ${n}`;
    const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const { names, errors } = JSON.parse(r.stdout.trim().split('\n').pop()!) as { names: Record<string, number>; errors: Record<string, number> };
    return { names, errors };
  };

  const start = async (): Promise<{ url: string; auth: Record<string, string>; proc: CliProcess }> => {
    const proc = new CliProcess(['agent', '--config', join(dir, 'config.yaml'), '--state-dir', join(dir, 'state'), '--listen', '127.0.0.1:0'], { env: ENV });
    agents.push(proc);
    const m = await proc.waitFor(/api: (http:\/\/[\d.]+:\d+)\/v1/);
    await proc.waitFor(/"msg":"ready"/);
    const token = readFileSync(join(dir, 'state', 'token'), 'utf8').trim();
    return { url: m[1], auth: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, proc };
  };

  beforeAll(async () => {
    pair = makeVethPair();
    const subnet = pair.peerIp.replace(/\.\d+$/, '');
    vip = `${subnet}.100`;
    sh('ip', ['-n', pair.ns, 'addr', 'add', `${subnet}.3/24`, 'dev', pair.peer]);
    sh('ip', ['-n', pair.ns, 'addr', 'add', `${vip}/24`, 'dev', pair.peer]);
    const specs = [
      { name: 'a', host: pair.peerIp, port: 8080, proto: 'tcp' },
      { name: 'b', host: `${subnet}.3`, port: 8080, proto: 'tcp' },
      { name: 'plain', host: vip, port: 80, proto: 'tcp' },
    ];
    servers = await startLbServers(pair.ns, specs);
    cg = join(ensureCgroup2().path, `ebpfnet-agent-lb-test-${process.pid}`);
    mkdirSync(cg);
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-agent-lb-'));
    writeFileSync(join(dir, 'config.yaml'), `lb:\n  cgroup: ${cg}\n  services: []\n`);
  });

  afterAll(async () => {
    for (const a of agents) await a.stop('SIGKILL');
    if (dir) runCli(['agent', '--cleanup', '--state-dir', join(dir, 'state')], { env: ENV });
    if (existsSync(`${PIN_ROOT}/lb`)) runCli(['lb', 'detach'], { env: ENV });
    stopLbServers(servers);
    pair?.cleanup();
    if (cg && existsSync(cg)) rmdirSync(cg);
    rmSync(PIN_ROOT, { recursive: true, force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('PUT a service and a client in the cgroup reaches its backend; kill -9 keeps it; a new agent adopts it; DELETE stops translating', async () => {
    const a = await start();
    expect(a.proc.stdout).toContain(`lb: ${cg}: 0 services`);
    expect(cgroupPrograms(cg)).toContain('lb_connect4');
    // nothing translates yet: the plain server on the VIP answers
    expect(connect(3)).toEqual({ names: { plain: 3 }, errors: {} });

    const id = encodeURIComponent(`${vip}:80/tcp`);
    const etag = (await fetch(`${a.url}/v1/lb/services`)).headers.get('etag')!;
    const put = await fetch(`${a.url}/v1/lb/services/${id}`, { method: 'PUT', headers: { ...a.auth, 'if-match': etag }, body: JSON.stringify({ backends: [`${pair.peerIp}:8080`] }) });
    expect(put.status, await put.clone().text()).toBe(201);
    expect(connect(10)).toEqual({ names: { a: 10 }, errors: {} });
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    expect(metrics).toContain(`ebpfnet_lb_connections_total{service="${vip}:80/tcp",backend="${pair.peerIp}:8080"} 10`);
    // the balancer's programs and maps in the BPF metrics: the kernel counted the connects' runs
    const runs = /^ebpfnet_bpf_program_runs_total\{datapath="lb",program="lb_connect4",target="[^"]+"\} (\d+)$/m.exec(metrics);
    expect(Number(runs?.[1]), metrics).toBeGreaterThanOrEqual(10);
    expect(Number(/^ebpfnet_bpf_map_entries\{datapath="lb",map="lb_svc",target="[^"]+"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);

    // weights and states over HTTP: a draining, b active with weight 3
    const sub = pair.peerIp.replace(/\.\d+$/, '');
    const change = await fetch(`${a.url}/v1/lb/services/${id}`, { method: 'PUT', headers: a.auth, body: JSON.stringify({ backends: [`${pair.peerIp}:8080,state=draining`, { address: `${sub}.3:8080`, weight: 3 }] }) });
    expect(change.status, await change.clone().text()).toBe(200);
    expect(connect(10)).toEqual({ names: { b: 10 }, errors: {} });

    a.proc.child.kill('SIGKILL');
    await a.proc.stop();
    // the agent is gone; the pinned balancer is not
    expect(connect(4)).toEqual({ names: { b: 4 }, errors: {} });

    const b = await start();
    expect(b.proc.stdout).toContain(`lb: ${cg}: 1 service`);
    const view = (await (await fetch(`${b.url}/v1/lb/services/${id}`)).json()) as { connections: number; backends: Array<{ address: string; state: string; weight: number; connections: number }> };
    // the counters continued across the kill: 10 to a, then 10 + 4 to b
    expect(view.backends).toEqual([
      expect.objectContaining({ address: `${pair.peerIp}:8080`, state: 'draining', weight: 1, connections: 10 }),
      expect.objectContaining({ address: `${sub}.3:8080`, state: 'active', weight: 3, connections: 14 }),
    ]);
    expect(view.connections).toBe(24);

    const del = await fetch(`${b.url}/v1/lb/services/${id}`, { method: 'DELETE', headers: { authorization: b.auth.authorization } });
    expect(del.status, await del.clone().text()).toBe(200);
    expect(connect(3)).toEqual({ names: { plain: 3 }, errors: {} });
    const gone = await fetch(`${b.url}/v1/lb/services/${id}`);
    expect(gone.status).toBe(404);

    expect(await b.proc.stop('SIGTERM')).toBe(0);
    const c = runCli(['agent', '--cleanup', '--state-dir', join(dir, 'state')], { env: ENV });
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toContain('balancer: detached and unpinned');
    expect(cgroupPrograms(cg).filter((p) => p.startsWith('lb_'))).toEqual([]);
    expect(existsSync(`${PIN_ROOT}/lb`)).toBe(false);
  });
});
