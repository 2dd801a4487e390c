// SPDX-License-Identifier: Apache-2.0
// The socket load balancer end to end, through the CLI a user runs. The test makes two network
// namespaces joined by a veth pair: the clients' (which this process enters, so the CLI and every
// client run there) and the backends' "node", with backend servers that answer with their names and
// a "plain" server on the VIP itself (what a connection reaches when nothing translates it); and a
// cgroup for the clients. A foreign cgroup program (selftest's
// st_connect4) shares the cgroup the whole time, to prove detach removes only ours.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import * as ST from '../../src/gen/selftest.js';
import { ObjectSpec, XDP, ensureCgroup2, objectPath, packageDir, type BpfObject, type Link } from '../../src/loader/index.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { describeKernel, sh } from '../helpers/kernel.js';
import { startLbServers, stopLbServers } from '../helpers/lb-servers.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const FIXTURES = join(packageDir(), 'test', 'kernel', 'fixtures');
const PIN_ROOT = `/sys/fs/bpf/ebpfnet-test-${process.pid}`;
const PIN_DIR = `${PIN_ROOT}/lb`;
const ENV = { ...process.env, EBPFNET_LB_PIN_DIR: PIN_DIR };
/** the foreign program refuses connect() to this port (discard) from the cgroup */
const FOREIGN_PORT = 9;

/** ids and names of the loaded programs among `ids` (other test files load lb_* programs of their
 * own at the same time, so a leak check looks for the ids this file's balancer had) */
const stillLoaded = (ids: number[]): string[] =>
  (JSON.parse(sh('bpftool', ['-j', 'prog', 'show'])) as Array<{ id: number; name?: string }>).filter((p) => ids.includes(p.id)).map((p) => `${p.id}:${p.name}`);

/** ids of the lb_* programs attached to a cgroup (bpftool) */
const ourPrograms = (cg: string): number[] =>
  (JSON.parse(sh('bpftool', ['-j', 'cgroup', 'show', cg]) || '[]') as Array<{ id: number; name: string }>).filter((p) => p.name.startsWith('lb_')).map((p) => p.id);

/** names of the programs attached to a cgroup (bpftool) */
const cgroupPrograms = (cg: string): string[] =>
  (JSON.parse(sh('bpftool', ['-j', 'cgroup', 'show', cg]) || '[]') as Array<{ name: string }>).map((p) => p.name).sort();

describeKernel('lb: socket load balancing through the CLI', () => {
  let pair: VethPair;
  let cg: string;
  let servers: ChildProcess | null = null;
  let foreign: { obj: BpfObject; link: Link } | null = null;
  /** every lb_* program id seen attached to the test cgroup */
  const ours = new Set<number>();
  let net: { vip: string; a: string; b: string; c: string; v6host: string; v6peer: string };

  const lb = (...args: string[]): CliResult => runCli(['lb', ...args], { env: ENV });
  const ok = (...args: string[]): string => {
    const r = lb(...args);
    expect(r.stderr, `lb ${args.join(' ')}`).toBe('');
    expect(r.status, `lb ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  /** Runs a fixture client, in the test's cgroup unless `outside`; returns its JSON line. */
  const client = (args: Array<string | number>, outside = false): Record<string, unknown> => {
    const cmd = `${outside ? '' : `echo $$ > ${cg}/cgroup.procs && `}exec ${process.execPath} ${join(FIXTURES, 'lb-client.mjs')} ${args.join(' ')}`;
    const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  };

  const listJson = (): { services: Array<{ service: string; rejects: number; conns: number; backends: Array<{ backend: string; state: string; conns: number }> }> } =>
    JSON.parse(ok('list', '--json'));

  beforeAll(async () => {
    pair = makeVethPair();
    const subnet = pair.peerIp.replace(/\.\d+$/, '');
    const n = Number(subnet.split('.')[2]);
    net = { vip: `${subnet}.100`, a: pair.peerIp, b: `${subnet}.3`, c: `${subnet}.4`, v6host: `fd00:199:${n}::1`, v6peer: `fd00:199:${n}::2` };
    // Addresses only in what this test made: extra backends and the VIP live in the namespace.
    for (const a of [net.b, net.c, net.vip]) sh('ip', ['-n', pair.ns, 'addr', 'add', `${a}/24`, 'dev', pair.peer]);
    sh('ip', ['addr', 'add', `${net.v6host}/64`, 'dev', pair.host, 'nodad']);
    sh('ip', ['-n', pair.ns, 'addr', 'add', `${net.v6peer}/64`, 'dev', pair.peer, 'nodad']);

    const specs = [
      { name: 'a', host: net.a, port: 8080, proto: 'tcp' },
      { name: 'b', host: net.b, port: 8080, proto: 'tcp' },
      { name: 'c', host: net.c, port: 8080, proto: 'tcp' },
      { name: 'plain', host: net.vip, port: 80, proto: 'tcp' },
      { name: 'a6', host: net.v6peer, port: 8080, proto: 'tcp' },
      { name: 'ua', host: net.a, port: 5353, proto: 'udp' },
      { name: 'ub', host: net.b, port: 5353, proto: 'udp' },
      { name: 'uplain', host: net.vip, port: 53, proto: 'udp' },
      { name: 'u6', host: net.v6peer, port: 5353, proto: 'udp' },
    ];
    servers = await startLbServers(pair.ns, specs);

    cg = join(ensureCgroup2().path, `ebpfnet-lb-test-${process.pid}`);
    mkdirSync(cg);
    // A program that is not ours, on the same cgroup and hook, for the whole test.
    const spec = ObjectSpec.open(objectPath(ST.LAYOUT.object));
    spec.setConst(ST.RODATA.name, ST.RODATA.codec, { default_action: XDP.PASS, emit_events: 0, target_tgid: 0, deny_port: FOREIGN_PORT });
    const obj = spec.load();
    foreign = { obj, link: obj.program(ST.PROG_ST_CONNECT4).attachCgroup(cg) };
  });

  afterAll(() => {
    if (existsSync(PIN_DIR)) lb('detach');
    foreign?.link.close();
    foreign?.obj.close();
    stopLbServers(servers);
    pair?.cleanup();
    if (cg && existsSync(cg)) rmdirSync(cg);
    rmSync(PIN_ROOT, { recursive: true, force: true });
    expect(stillLoaded([...ours])).toEqual([]);
  });

  it('attach loads, attaches and pins eight programs beside the foreign one; a second attach is refused', () => {
    const out = ok('attach', '--cgroup', cg);
    expect(out).toMatch(new RegExp(`^lb: attached 8 programs to ${cg}; pinned at ${PIN_DIR}`));
    expect(cgroupPrograms(cg)).toEqual(
      ['lb_connect4', 'lb_connect6', 'lb_getpeername4', 'lb_getpeername6', 'lb_recvmsg4', 'lb_recvmsg6', 'lb_sendmsg4', 'lb_sendmsg6', 'st_connect4'].sort(),
    );
    const again = lb('attach', '--cgroup', cg);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/^ebpfnet: lb attach: the balancer is already attached to .*; detach it first: ebpfnet lb detach\n$/);
    expect(ok('list')).toMatch(new RegExp(`^balancer attached to ${cg}: 8 programs`));
  });

  it('TCP connections to a VIP spread over three backends by weight (1:2:3, each share within 6 points over 1,200)', () => {
    ok('add', `${net.vip}:80/tcp`, '--backend', `${net.a}:8080`, '--backend', `${net.b}:8080,weight=2`, '--backend', `${net.c}:8080,weight=3`);
    const N = 1200;
    const r = client(['tcp', net.vip, 80, N]) as { names: Record<string, number>; errors: Record<string, number>; peers: string[] };
    expect(r.errors).toEqual({});
    expect(Object.keys(r.names).sort()).toEqual(['a', 'b', 'c']);
    // Expected 200/400/600. One standard deviation of a share is 1.1-1.4 points here, so 6 points
    // are more than 4 of them: a false failure about once in 30,000 runs.
    const tolerance = 0.06;
    expect(Math.abs(r.names.a / N - 1 / 6)).toBeLessThan(tolerance);
    expect(Math.abs(r.names.b / N - 2 / 6)).toBeLessThan(tolerance);
    expect(Math.abs(r.names.c / N - 3 / 6)).toBeLessThan(tolerance);
    // getpeername() on every connected socket says the VIP, not the backend
    expect(r.peers).toEqual([`${net.vip}:80`]);
    // the counters moved by exactly what the client saw
    const s = listJson().services.find((x) => x.service === `${net.vip}:80/tcp`)!;
    expect(s.conns).toBe(N);
    expect(s.backends.map((b) => b.conns)).toEqual([r.names.a, r.names.b, r.names.c]);
    const metrics = ok('metrics');
    expect(metrics).toContain(`ebpfnet_lb_connections_total{service="${net.vip}:80/tcp",backend="${net.b}:8080"} ${r.names.b}`);
    expect(metrics).toContain(`ebpfnet_lb_backends{service="${net.vip}:80/tcp",state="active"} 3`);
  });

  it('-o json (lb list, lb explain, status) carries the counters as numbers; --json is the same', () => {
    const list = JSON.parse(ok('list', '-o', 'json')) as { cgroup: string; programs: unknown[]; services: Array<{ service: string; conns: unknown; backends: Array<{ conns: unknown; weight: unknown; share: unknown }> }> };
    expect(JSON.parse(ok('list', '--json'))).toEqual(list);
    expect(list.cgroup).toBe(cg);
    expect(list.programs).toHaveLength(8);
    const s = list.services.find((x) => x.service === `${net.vip}:80/tcp`)!;
    expect(s.conns).toBe(1200);
    expect(s.backends.map((b) => b.weight)).toEqual([1, 2, 3]);
    expect(s.backends.every((b) => typeof b.conns === 'number' && typeof b.share === 'number')).toBe(true);
    const e = JSON.parse(ok('explain', `${net.vip}:80/tcp`, '-o', 'json')) as { outcome: string; candidates: Array<{ backend: string; chance: number }> };
    expect(e.outcome).toBe('random');
    expect(e.candidates.map((c) => c.chance)).toEqual([1 / 6, 2 / 6, 3 / 6].map((x) => expect.closeTo(x, 5)));
    // status shows the pinned balancer beside the filters, the same services
    const st = runCli(['status', '-o', 'json'], { env: ENV });
    expect(st.status, st.stderr).toBe(0);
    const b = (JSON.parse(st.stdout) as { balancer: { cgroup: string; pinDir: string; services: Array<{ service: string; conns: number }> } }).balancer;
    expect(b.cgroup).toBe(cg);
    expect(b.pinDir).toBe(PIN_DIR);
    expect(b.services.find((x) => x.service === `${net.vip}:80/tcp`)!.conns).toBe(1200);
    expect(runCli(['status'], { env: ENV }).stdout).toContain(`balancer: attached to ${cg}: `);
  });

  it('a process outside the cgroup is not translated: it reaches the VIP itself', () => {
    expect(client(['tcp', net.vip, 80, 20], true)).toMatchObject({ names: { plain: 20 }, errors: {} });
  });

  it('the foreign program on the same cgroup still works beside ours', () => {
    expect(client(['refuse', '127.0.0.1', FOREIGN_PORT, 'tcp'])).toMatchObject({ code: 'EPERM' });
  });

  it('UDP to a VIP: replies come from the VIP, and getpeername returns the VIP', () => {
    ok('add', `${net.vip}:53/udp`, '--backend', `${net.a}:5353`, '--backend', `${net.b}:5353`);
    const r = client(['udp', net.vip, 53, 40]) as { replies: Array<{ name: string; from: string }>; error?: string };
    expect(r.error).toBeUndefined();
    expect(r.replies).toHaveLength(40);
    expect(new Set(r.replies.map((x) => x.from))).toEqual(new Set([`${net.vip}:53`]));
    expect(new Set(r.replies.map((x) => x.name))).toEqual(new Set(['ua', 'ub']));
    const c = client(['udp-connected', net.vip, 53]);
    expect(c).toMatchObject({ peer: `${net.vip}:53`, from: `${net.vip}:53` });
    expect(['ua', 'ub']).toContain(c.name);
    // outside the cgroup the same datagram reaches the plain server on the VIP
    expect(client(['udp', net.vip, 53, 3], true)).toMatchObject({ replies: [{ name: 'uplain' }, { name: 'uplain' }, { name: 'uplain' }] });
  });

  it('a draining backend gets no new connections, and keeps the ones it has', async () => {
    // A client holds a connection to b, then b is marked draining.
    const holder = spawn('sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec ${process.execPath} ${join(FIXTURES, 'lb-client.mjs')} hold ${net.vip} 80 b`], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    holder.stdout!.on('data', (d: Buffer) => (out += d));
    const waitFor = async (re: RegExp): Promise<void> => {
      for (let t = 0; t < 300 && !re.test(out); t++) await new Promise((r) => setTimeout(r, 50));
      expect(out).toMatch(re);
    };
    try {
      await waitFor(/holding/);
      ok('add', `${net.vip}:80/tcp`, '--backend', `${net.a}:8080`, '--backend', `${net.b}:8080,weight=2,state=draining`, '--backend', `${net.c}:8080,weight=3`);
      const r = client(['tcp', net.vip, 80, 200]) as { names: Record<string, number> };
      expect(r.names.b).toBeUndefined();
      expect((r.names.a ?? 0) + (r.names.c ?? 0)).toBe(200);
      holder.stdin!.write('go\n');
      await waitFor(/"echo"/);
      expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual({ echo: 'b:ping' });
      expect(listJson().services.find((x) => x.service === `${net.vip}:80/tcp`)!.backends.map((b) => b.state)).toEqual(['active', 'draining', 'active']);
    } finally {
      holder.kill();
    }
  });

  it('a service without an active backend refuses connect() and sendto() at once with ECONNREFUSED', () => {
    ok('add', '10.96.0.99:80/tcp');
    ok('add', '10.96.0.99:53/udp', '--backend', `${net.a}:5353,state=draining`);
    const t = client(['refuse', '10.96.0.99', 80, 'tcp']) as { code: string; ms: number };
    expect(t.code).toBe('ECONNREFUSED');
    expect(t.ms).toBeLessThan(500);
    const u = client(['refuse', '10.96.0.99', 53, 'udp']) as { code: string; ms: number };
    expect(u.code).toBe('ECONNREFUSED');
    const rejects = listJson().services.filter((x) => x.service.startsWith('10.96.0.99:')).map((x) => x.rejects);
    expect(rejects).toEqual([1, 1]);
    expect(ok('explain', '10.96.0.99:80/tcp')).toMatch(/^10\.96\.0\.99:80\/tcp: a new connection is refused at once \(ECONNREFUSED\)\n  - the service has no backends/);
  });

  it('IPv6 VIPs, and IPv4 VIPs dialled as IPv4-mapped IPv6, are translated too', () => {
    ok('add', '[fd00:96::10]:80/tcp', '--backend', `[${net.v6peer}]:8080`);
    const r = client(['tcp', 'fd00:96::10', 80, 10]) as { names: Record<string, number>; peers: string[] };
    expect(r).toMatchObject({ names: { a6: 10 }, errors: {} });
    expect(r.peers).toEqual(['fd00:96::10:80']);
    // unconnected UDP over IPv6: sendmsg6 translates, recvmsg6 shows the VIP as the source
    ok('add', '[fd00:96::53]:53/udp', '--backend', `[${net.v6peer}]:5353`);
    expect(client(['udp', 'fd00:96::53', 53, 3])).toMatchObject({ replies: [{ name: 'u6', from: 'fd00:96::53:53' }, { name: 'u6' }, { name: 'u6' }] });
    const m = client(['tcp', `::ffff:${net.vip}`, 80, 30]) as { names: Record<string, number>; peers: string[] };
    expect(Object.keys(m.names).every((x) => x === 'a' || x === 'c')).toBe(true);
    expect(m.peers).toEqual([`::ffff:${net.vip}:80`]);
  });

  it('session affinity keeps a network namespace on one backend, and explain says which', () => {
    ok('add', '10.96.0.20:80/tcp', '--backend', `${net.a}:8080`, '--backend', `${net.b}:8080`, '--backend', `${net.c}:8080`, '--affinity', '60');
    const r = client(['tcp', '10.96.0.20', 80, 40]) as { names: Record<string, number> };
    expect(Object.values(r.names)).toEqual([40]);
    const name = Object.keys(r.names)[0];
    const addr = { a: net.a, b: net.b, c: net.c }[name as 'a' | 'b' | 'c'];
    // the test process shares the clients' network namespace, so explain sees the same entry
    expect(ok('explain', '10.96.0.20:80/tcp')).toMatch(new RegExp(`^10\\.96\\.0\\.20:80/tcp: a new connection from this network namespace goes to ${addr}:8080\n  - session affinity \\(60s\\)`));
  });

  it('deleting a service restores plain behaviour', () => {
    ok('del', `${net.vip}:80/tcp`);
    expect(client(['tcp', net.vip, 80, 10])).toMatchObject({ names: { plain: 10 }, errors: {} });
    expect(listJson().services.map((s) => s.service)).not.toContain(`${net.vip}:80/tcp`);
  });

  it('a slot table missing an entry (a change cut short) is listed as broken; adding the service again repairs it', () => {
    const svc = `${net.vip}:8081/tcp`;
    const add = (): string => ok('add', svc, '--backend', `${net.a}:8080`, '--backend', `${net.b}:8080,weight=2`);
    const broken = (): string[] => (JSON.parse(ok('list', '--json')) as { broken: string[] }).broken;
    add();
    const v = (JSON.parse(ok('list', '--json')) as { services: Array<{ service: string; id: number; rev: number }> }).services.find((s) => s.service === svc)!;
    const le = (n: number): string[] => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].map(String);
    // lb_slots key: svc_id, rev, slot (u32 each, little-endian): slot 0 of its table
    sh('bpftool', ['map', 'delete', 'pinned', join(PIN_DIR, 'maps', 'lb_slots'), 'key', ...le(v.id), ...le(v.rev), ...le(0)]);
    expect(broken()).toEqual([svc]);
    expect(ok('list')).toContain(`WARNING ${svc}: its slot table is incomplete`);
    add();
    expect(broken()).toEqual([]);
    ok('del', svc);
  });

  it('apply makes a file the whole set in one switch', () => {
    const file = join(tmpdir(), `ebpfnet-lb-test-${process.pid}.yaml`);
    writeFileSync(
      file,
      `services:\n  - service: ${net.vip}:80/tcp\n    backends:\n      - ${net.c}:8080\n  - service: ${net.vip}:53/udp\n    backends: ["${net.b}:5353"]\n`,
    );
    try {
      expect(ok('apply', file)).toMatch(/^lb: applied .*: 2 services \(1 added, 1 changed, 5 removed\)/);
      expect(listJson().services.map((s) => s.service)).toEqual([`${net.vip}:53/udp`, `${net.vip}:80/tcp`]);
      expect(client(['tcp', net.vip, 80, 10])).toMatchObject({ names: { c: 10 } });
      expect(client(['udp', net.vip, 53, 3])).toMatchObject({ replies: [{ name: 'ub' }, { name: 'ub' }, { name: 'ub' }] });
      expect(ok('apply', file)).toMatch(/\(2 unchanged\)/);
    } finally {
      rmSync(file, { force: true });
    }
  });

  it('bad input is one line, exit 2 (a service that does not exist: 1, NOT_FOUND), and changes nothing', () => {
    const before = ok('list', '--json');
    for (const [status, ...args] of [
      [2, 'add', `${net.vip}:80/sctp`],
      [2, 'add', `${net.vip}:0/tcp`],
      [2, 'add', `${net.vip}:80`],
      [2, 'add', `${net.vip}:80/tcp`, '--backend', net.a],
      [2, 'add', '10.96.0.300:80/tcp'],
      [1, 'del', '10.96.0.77:80/tcp'],
      [1, 'explain', '10.96.0.77:80/tcp'],
    ] as Array<[number, ...string[]]>) {
      const r = lb(...args);
      expect(r.status, args.join(' ')).toBe(status);
      expect(r.stderr.split('\n').filter(Boolean), args.join(' ')).toHaveLength(1);
      expect(r.stdout).toBe('');
    }
    expect(ok('list', '--json')).toBe(before);
  });

  it('detach removes every program and pin of ours and leaves the foreign program attached', () => {
    for (const id of ourPrograms(cg)) ours.add(id);
    expect(ours.size).toBeGreaterThanOrEqual(8);
    expect(ok('detach')).toMatch(new RegExp(`^lb: detached 8 programs from ${cg}; removed 8 pinned maps from ${PIN_DIR}`));
    expect(cgroupPrograms(cg)).toEqual(['st_connect4']);
    expect(stillLoaded([...ours])).toEqual([]);
    expect(existsSync(PIN_DIR)).toBe(false);
    // no longer translated, and the foreign program still refuses its port
    expect(client(['tcp', net.vip, 80, 5])).toMatchObject({ names: { plain: 5 } });
    expect(client(['refuse', '127.0.0.1', FOREIGN_PORT, 'tcp'])).toMatchObject({ code: 'EPERM' });
    const r = lb('list');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/the balancer is not attached/);
  });
});
