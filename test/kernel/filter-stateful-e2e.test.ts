// SPDX-License-Identifier: Apache-2.0
// The stateful filter end to end, with real tools: `ebpfnet filter --default deny --allow tcp/22`
// (state on by default) on the target of namespaces the test made. nmap from the source sees an
// unsolicited port filtered (and tcp/22 open); the target resolves a name through dnsmasq in the
// source (the reverse query is dropped); curl and ping from the target work, the source's ping does
// not; PMTU discovery works through a router (its "fragmentation needed" passes as related, and is
// dropped without state); 20 MB each way of a target-opened connection arrive intact with no
// out-of-window drop; a connection the target reset stops passing: a late ACK of it (nping from the
// source, sequence numbers sniffed in the source) is a default drop, the same ACK before the reset
// passes as established.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { describeKernel, ok, sh } from '../helpers/kernel.js';
import { makeTwoHosts, type TwoHosts } from '../helpers/netns.js';

const procs: ChildProcess[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'ebn-e2e-'));
afterAll(() => {
  for (const p of procs.splice(0)) p.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

/** a long-running command in a namespace; resolves once `ready()` says it serves */
async function start(ns: string, argv: string[], ready: () => boolean): Promise<ChildProcess> {
  const p = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(p);
  let err = '';
  p.stderr!.on('data', (b: Buffer) => (err += b));
  for (let i = 0; i < 100; i++) {
    if (p.exitCode !== null) throw new Error(`${argv[0]} exited ${p.exitCode}: ${err}`);
    if (ready()) return p;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${argv[0]} did not come up: ${err}`);
}
/** node -e JS in a namespace, up once it printed a line */
async function nodeServer(ns: string, js: string): Promise<ChildProcess> {
  let out = '';
  const p = await start(ns, [process.execPath, '-e', js], () => true);
  p.stdout!.on('data', (b: Buffer) => (out += b));
  for (let i = 0; i < 100 && !out; i++) await new Promise((r) => setTimeout(r, 50));
  if (!out) throw new Error(`server in ${ns} did not come up`);
  return p;
}
const run = (ns: string, argv: string[], timeout = 15_000) => spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', timeout, maxBuffer: 64 << 20 });

type Counters = Record<string, { packets: number } | undefined> & { default: { drop: { packets: number } } };
/** the target's filter counters through the CLI (status -o json) */
function counters(ns: string): Counters {
  const r = runCli(['status', '-o', 'json'], { ns });
  expect(r.status, r.stderr).toBe(0);
  const st = JSON.parse(r.stdout) as { namespaces: Array<{ current: boolean; filters: Counters[] }> };
  const here = st.namespaces.filter((x) => x.current).flatMap((x) => x.filters);
  expect(here).toHaveLength(1);
  return here[0];
}
/** a counter's packets; 'default' is the default deny's drops */
const n = (c: Counters, k: string): number => (k === 'default' ? c.default.drop.packets : c[k]?.packets ?? 0);

/** nmap -oG: port -> state ("open", "filtered", "closed") */
function nmap(ns: string, ip: string, ports: number[]): Record<number, string> {
  const r = run(ns, ['nmap', '-Pn', '-n', '-sS', '-p', ports.join(','), '--max-retries', '1', '--host-timeout', '15s', '-oG', '-', ip], 30_000);
  expect(r.status, r.stderr).toBe(0);
  const line = r.stdout.split('\n').find((l) => l.startsWith('Host:') && l.includes('Ports:'));
  expect(line, r.stdout).toBeDefined();
  const out: Record<number, string> = {};
  for (const m of line!.split('Ports:')[1].matchAll(/(\d+)\/(\w+)\/tcp/g)) out[Number(m[1])] = m[2];
  return out;
}

const filterOn = (h: { target: string; targetIf: string }, extra: string[] = []): void => {
  const r = runCli(['filter', '--iface', h.targetIf, '--default', 'deny', '--allow', 'tcp/22', ...extra, '--pin'], { ns: h.target });
  expect(r.status, r.stderr).toBe(0);
};

describeKernel('the stateful filter end to end (nmap, dnsmasq, curl, ping, PMTU, bulk TCP)', () => {
  let h: TwoHosts;
  const mine: ChildProcess[] = [];
  beforeEach(() => {
    h = makeTwoHosts();
  });
  afterEach(() => {
    for (const p of procs.splice(0)) p.kill('SIGKILL');
    mine.length = 0;
    runCli(['unload', '--all'], { ns: h.target });
    h?.cleanup();
  });

  it('nmap from the source: an unsolicited port is filtered, the allowed tcp/22 with a listener open', async () => {
    const js = `const n=require('net');for(const p of [22,8080])n.createServer((c)=>c.end()).listen(p,'${h.targetIp}');setTimeout(()=>console.log('up'),100)`;
    await nodeServer(h.target, js);
    // without the filter both are open: the scan can tell
    expect(nmap(h.source, h.targetIp, [22, 8080])).toEqual({ 22: 'open', 8080: 'open' });
    filterOn(h);
    expect(nmap(h.source, h.targetIp, [22, 8080])).toEqual({ 22: 'open', 8080: 'filtered' });
    expect(n(counters(h.target), 'default')).toBeGreaterThan(0);
  }, 40_000);

  it('DNS over UDP: the target resolves through dnsmasq in the source; the source\'s query to a resolver on the target is dropped', async () => {
    const dnsmasq = (ns: string, ip: string, answer: string) =>
      start(ns, ['dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--address=/example.test/${answer}`, `--listen-address=${ip}`, '--bind-interfaces', '--port=53', `--pid-file=${join(tmp, `${ns}.pid`)}`, '--user=root'], () => true);
    const dig = (ns: string, server: string): string => run(ns, ['dig', `@${server}`, 'example.test', '+short', '+time=1', '+tries=1']).stdout.trim();
    await dnsmasq(h.source, h.sourceIp, '192.0.2.53');
    await dnsmasq(h.target, h.targetIp, '192.0.2.54');
    for (let i = 0; i < 40 && dig(h.target, h.sourceIp) !== '192.0.2.53'; i++) await new Promise((r) => setTimeout(r, 50));
    // the control works before the filter
    expect(dig(h.source, h.targetIp)).toBe('192.0.2.54');
    filterOn(h);
    expect(dig(h.target, h.sourceIp)).toBe('192.0.2.53');
    expect(dig(h.source, h.targetIp)).not.toBe('192.0.2.54');
    expect(n(counters(h.target), 'established')).toBeGreaterThan(0);
  }, 30_000);

  it('curl and ping from the target work; the source\'s unsolicited ping is dropped', async () => {
    await nodeServer(h.source, `require('http').createServer((q,s)=>s.end('hello')).listen(8080,'${h.sourceIp}',()=>console.log('up'))`);
    filterOn(h);
    const c = run(h.target, ['curl', '-s', '-m', '3', `http://${h.sourceIp}:8080/`]);
    expect(c.stdout).toBe('hello');
    expect(ok('ping', ['-c', '2', '-i', '0.2', '-W', '1', h.sourceIp], h.target)).toBe(true);
    expect(ok('ping', ['-c', '1', '-W', '1', h.targetIp], h.source)).toBe(false);
    // and not because ping cannot work here: without the filter it does
    expect(runCli(['unload', '--iface', h.targetIf], { ns: h.target }).status).toBe(0);
    expect(ok('ping', ['-c', '1', '-W', '1', h.targetIp], h.source)).toBe(true);
  }, 30_000);

  it('20 MB each way over a connection the target opened arrive intact, with no out-of-window drop', async () => {
    const size = 20 << 20;
    const up = randomBytes(size);
    const upFile = join(tmp, 'up.bin');
    writeFileSync(upFile, up);
    // the source serves 20 MB (its sha256 in a header) on GET, and answers a POST with the body's sha256
    const js = `const c=require('crypto'),b=c.randomBytes(${size}),sum=c.createHash('sha256').update(b).digest('hex');
      require('http').createServer((q,s)=>{if(q.method==='GET'){s.setHeader('x-sum',sum);s.end(b);return}
      const h=c.createHash('sha256');q.on('data',(d)=>h.update(d));q.on('end',()=>s.end(h.digest('hex')))}).listen(8080,'${h.sourceIp}',()=>console.log('up'))`;
    await nodeServer(h.source, js);
    filterOn(h);
    const before = counters(h.target);
    const down = run(h.target, ['sh', '-c', `curl -s -m 20 -D - -o ${join(tmp, 'down.bin')} http://${h.sourceIp}:8080/ && sha256sum ${join(tmp, 'down.bin')}`], 30_000);
    expect(down.status, down.stderr).toBe(0);
    const sent = /x-sum: ([0-9a-f]{64})/i.exec(down.stdout)?.[1];
    expect(sent).toBeDefined();
    expect(down.stdout).toMatch(new RegExp(`^${sent} `, 'm'));
    const post = run(h.target, ['curl', '-s', '-m', '20', '--data-binary', `@${upFile}`, '-H', 'content-type: application/octet-stream', `http://${h.sourceIp}:8080/`], 30_000);
    expect(post.status, post.stderr).toBe(0);
    expect(post.stdout).toBe(createHash('sha256').update(up).digest('hex'));
    const after = counters(h.target);
    expect(n(after, 'outOfWindow') - n(before, 'outOfWindow')).toBe(0);
    // the replies came through state (thousands of segments each way)
    expect(n(after, 'established') - n(before, 'established')).toBeGreaterThan(1000);
  }, 60_000);

  it('a reset connection\'s late packets are dropped (the same ACK passes while it is established)', async () => {
    // the source's own IPv6 chatter (MLD reports of a fresh interface) would be default drops too
    sh('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1'], { ns: h.source });
    await nodeServer(h.source, `require('net').createServer((c)=>{c.on('error',()=>{});c.on('data',(d)=>c.write(d))}).listen(8080,'${h.sourceIp}',()=>console.log('up'))`);
    // the target's segments to the source, one line each: "sport seq ack payload-length flags"
    const sniff = `import socket,struct
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(3))
src,dst=socket.inet_aton('${h.targetIp}'),socket.inet_aton('${h.sourceIp}')
print('up',flush=True)
while True:
  f=s.recv(65535)
  if f[12:14]!=b'\\x08\\x00' or f[23]!=6 or f[26:30]!=src or f[30:34]!=dst: continue
  ihl=(f[14]&15)*4;t=14+ihl;tot=struct.unpack('!H',f[16:18])[0]
  sp,dp,seq,ack,off=struct.unpack('!HHIIB',f[t:t+13])
  print(sp,seq,ack,tot-ihl-(off>>4)*4,f[t+13],flush=True)`;
    let seen = '';
    const sniffer = await start(h.source, ['/usr/bin/python3', '-u', '-c', sniff], () => true);
    sniffer.stdout!.on('data', (b: Buffer) => (seen += b));
    for (let i = 0; i < 100 && !seen.includes('up'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(seen).toContain('up');
    filterOn(h);
    // the target opens the connection, exchanges a few bytes, prints its port, and resets on a line of stdin
    const client = spawn('ip', ['netns', 'exec', h.target, process.execPath, '-e', `const s=require('net').connect(8080,'${h.sourceIp}',()=>s.write('hi'));s.on('error',()=>{});
      s.once('data',(d)=>{console.log(s.localPort,String(d));process.stdin.once('data',()=>{s.resetAndDestroy();setTimeout(()=>process.exit(0),300)})})`], { stdio: ['pipe', 'pipe', 'pipe'] });
    procs.push(client);
    let out = '';
    client.stdout!.on('data', (b: Buffer) => (out += b));
    for (let i = 0; i < 100 && !out.includes('\n'); i++) await new Promise((r) => setTimeout(r, 50));
    const [port, echoed] = out.trim().split(' ');
    expect(echoed, out).toBe('hi');
    // the target's last segment (the ACK of the echo, maybe delayed) gives both sides' next sequence
    await new Promise((r) => setTimeout(r, 300));
    const last = seen.trim().split('\n').filter((l) => l.startsWith(`${port} `)).at(-1);
    expect(last, seen).toBeDefined();
    const [, seq, ack, len] = last!.split(' ').map(Number);
    const late = (): void => {
      const r = run(h.source, ['nping', '--tcp', '-p', port, '-g', '8080', '--flags', 'ACK', '--seq', String(ack), '--ack', String((seq + len) >>> 0), '-c', '3', '--delay', '50ms', h.targetIp]);
      expect(r.status, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toMatch(/Raw packets sent: 3/);
    };
    // control: while established, the ACK passes as the flow
    let before = counters(h.target);
    late();
    let after = counters(h.target);
    expect(n(after, 'established') - n(before, 'established')).toBeGreaterThanOrEqual(3);
    expect(n(after, 'default') - n(before, 'default')).toBe(0);
    // the target resets; its RST leaves through the egress hook and deletes the flow
    const sent = seen.length;
    client.stdin!.write('reset\n');
    for (let i = 0; i < 60 && client.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
    expect(client.exitCode).toBe(0);
    expect(seen.slice(sent).split('\n').some((l) => l.startsWith(`${port} `) && (Number(l.split(' ')[4]) & 0x04) !== 0), seen.slice(sent)).toBe(true);
    // the very same ACK, now late: the default deny drops it
    before = counters(h.target);
    late();
    after = counters(h.target);
    expect(n(after, 'default') - n(before, 'default')).toBeGreaterThanOrEqual(3);
    expect(n(after, 'established') - n(before, 'established')).toBe(0);
  }, 30_000);
});

/** target -- router -- source, the router's link to the source with mtu 1280 */
interface Routed {
  target: string;
  router: string;
  source: string;
  targetIf: string;
  targetIp: string;
  routerIp: string;
  sourceIp: string;
  cleanup(): void;
}
let rseq = 0;
function makeRouted(): Routed {
  const id = `${process.pid % 10000}r${++rseq}`;
  const k = (process.pid + rseq * 17) % 250;
  const r: Routed = {
    target: `ebn-t${id}`,
    router: `ebn-r${id}`,
    source: `ebn-s${id}`,
    targetIf: `ebt${id}`,
    targetIp: `10.196.${k}.2`,
    routerIp: `10.196.${k}.1`,
    sourceIp: `10.195.${k}.2`,
    cleanup() {
      for (const ns of [r.target, r.router, r.source]) spawnSync('ip', ['netns', 'del', ns]);
    },
  };
  const ip = (...a: string[]): void => void sh('ip', a);
  try {
    for (const ns of [r.target, r.router, r.source]) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    ip('link', 'add', r.targetIf, 'netns', r.target, 'type', 'veth', 'peer', 'name', `ebrt${id}`, 'netns', r.router);
    ip('link', 'add', `ebs${id}`, 'netns', r.source, 'type', 'veth', 'peer', 'name', `ebrs${id}`, 'netns', r.router);
    ip('-n', r.target, 'addr', 'add', `${r.targetIp}/24`, 'dev', r.targetIf);
    ip('-n', r.router, 'addr', 'add', `${r.routerIp}/24`, 'dev', `ebrt${id}`);
    ip('-n', r.router, 'addr', 'add', `10.195.${k}.1/24`, 'dev', `ebrs${id}`);
    ip('-n', r.source, 'addr', 'add', `${r.sourceIp}/24`, 'dev', `ebs${id}`);
    // the narrow hop: the router's end only, so the source still advertises an MSS of 1460
    ip('-n', r.router, 'link', 'set', `ebrs${id}`, 'mtu', '1280');
    for (const [ns, ifn] of [[r.target, r.targetIf], [r.router, `ebrt${id}`], [r.router, `ebrs${id}`], [r.source, `ebs${id}`]]) ip('-n', ns, 'link', 'set', ifn, 'up');
    ip('-n', r.target, 'route', 'add', 'default', 'via', r.routerIp);
    ip('-n', r.source, 'route', 'add', 'default', 'via', `10.195.${k}.1`);
    // forwarding in the router's namespace only
    sh('sysctl', ['-qw', 'net.ipv4.ip_forward=1'], { ns: r.router });
  } catch (e) {
    r.cleanup();
    throw e;
  }
  return r;
}

describeKernel('PMTU discovery through the stateful filter (target -- router -- source, mtu 1280)', () => {
  let r: Routed;
  beforeEach(async () => {
    r = makeRouted();
    // the source answers a POST with the number of bytes it got
    await nodeServer(r.source, `require('http').createServer((q,s)=>{let n=0;q.on('data',(d)=>n+=d.length);q.on('end',()=>s.end(String(n)))}).listen(8080,'${r.sourceIp}',()=>console.log('up'))`);
    writeFileSync(join(tmp, 'pmtu.bin'), randomBytes(4 << 20));
  });
  afterEach(() => {
    for (const p of procs.splice(0)) p.kill('SIGKILL');
    runCli(['unload', '--all'], { ns: r.target });
    r?.cleanup();
  });
  const post = (timeout: number) => run(r.target, ['curl', '-s', '-m', String(timeout), '--data-binary', `@${join(tmp, 'pmtu.bin')}`, '-H', 'content-type: application/octet-stream', `http://${r.sourceIp}:8080/`], 20_000);

  it('the router\'s "fragmentation needed" passes as related and the 4 MB upload completes', () => {
    filterOn(r);
    const p = post(10);
    expect(p.status, p.stderr).toBe(0);
    expect(p.stdout).toBe(String(4 << 20));
    expect(n(counters(r.target), 'related')).toBeGreaterThan(0);
    // the target learned the path's MTU from it
    expect(sh('ip', ['route', 'get', r.sourceIp], { ns: r.target })).toMatch(/mtu 1280/);
  }, 30_000);

  it('control: without state (replies allowed by a rule) the ICMP is dropped and the upload stalls', () => {
    // TCP from the source passes by rule, so only the router's ICMP is left to the default deny
    filterOn(r, ['--stateless', '--allow', `tcp from ${r.sourceIp}/32`]);
    const before = n(counters(r.target), 'default');
    const p = post(3);
    expect(p.status).not.toBe(0);
    expect(n(counters(r.target), 'related')).toBe(0);
    expect(n(counters(r.target), 'default') - before).toBeGreaterThan(0);
    expect(sh('ip', ['route', 'get', r.sourceIp], { ns: r.target })).not.toMatch(/mtu 1280/);
  }, 30_000);
});
