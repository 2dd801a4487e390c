// SPDX-License-Identifier: Apache-2.0
// The stateful filter as a user starts it: `ebpfnet filter --default deny --allow tcp/22 --pin` on
// the target of two namespaces. The target's own ping, HTTP fetch and DNS-style UDP query to the
// source work (their replies pass as established), the source's unsolicited connection to the
// target is still dropped, `--stateless` drops the replies too, and unload removes the egress link.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { PIN_ROOT } from '../../src/loader/index.js';
import { runCli } from '../helpers/cli.js';
import { describeKernel, ok, sh } from '../helpers/kernel.js';
import { makeTwoHosts, type TwoHosts } from '../helpers/netns.js';

/** A server in a namespace: HTTP "hello" on TCP, and a UDP echo, on `port`. */
function servers(ns: string, ip: string, port: number): ChildProcess {
  const js = `const d=require('dgram').createSocket('udp4');d.on('message',(m,r)=>d.send(m,r.port,r.address));d.bind(${port},'${ip}');require('http').createServer((q,s)=>s.end('hello')).listen(${port},'${ip}',()=>console.log('up'))`;
  return spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', js], { stdio: ['ignore', 'pipe', 'inherit'] });
}
const up = (p: ChildProcess): Promise<void> => new Promise((res) => p.stdout!.once('data', () => res()));
const curl = (ns: string, url: string): string | null => {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'curl', '-s', '-m', '2', url], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : null;
};
/** one UDP datagram to ip:port from `ns` and its echo back: true when the echo came */
const udpEcho = (ns: string, ip: string, port: number): boolean => {
  const js = `const d=require('dgram').createSocket('udp4');const t=setTimeout(()=>process.exit(1),1500);d.on('message',()=>{clearTimeout(t);process.exit(0)});d.send('q',${port},'${ip}')`;
  return spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', js], { timeout: 5000 }).status === 0;
};
/** the id of the tc egress link a stateful filter pinned beside its own (pins are the host's) */
const egressLinkId = (h: TwoHosts): number | null => {
  const inode = statSync(`/run/netns/${h.target}`).ino;
  const ifindex = JSON.parse(sh('ip', ['-j', 'link', 'show', h.targetIf], { ns: h.target }))[0].ifindex as number;
  const pin = `${PIN_ROOT}/filter/${inode}/${ifindex}/egress`;
  if (!existsSync(pin)) return null;
  return (JSON.parse(sh('bpftool', ['-j', 'link', 'show', 'pinned', pin])) as { id: number }).id;
};
const linkExists = (id: number): boolean => spawnSync('bpftool', ['link', 'show', 'id', String(id)]).status === 0;

describeKernel('the stateful filter from the command line', () => {
  let h: TwoHosts;
  const procs: ChildProcess[] = [];
  beforeEach(async () => {
    h = makeTwoHosts();
    const s = servers(h.source, h.sourceIp, 8080);
    procs.push(s);
    await up(s);
    const t = servers(h.target, h.targetIp, 8080);
    procs.push(t);
    await up(t);
  });
  afterEach(() => {
    for (const p of procs.splice(0)) p.kill();
    runCli(['unload', '--all'], { ns: h.target });
    h?.cleanup();
  });

  it('--default deny --allow tcp/22: the target still pings, fetches and queries the source; the source reaches nothing but tcp/22', () => {
    const r = runCli(['filter', '--iface', h.targetIf, '--default', 'deny', '--allow', 'tcp/22', '--pin'], { ns: h.target });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('connection state: on: replies to connections this host opens');
    expect(ok('ping', ['-c', '1', '-W', '1', h.sourceIp], h.target)).toBe(true);
    expect(curl(h.target, `http://${h.sourceIp}:8080/`)).toBe('hello');
    expect(udpEcho(h.target, h.sourceIp, 8080)).toBe(true);
    // unsolicited, from the other side: dropped
    expect(ok('ping', ['-c', '1', '-W', '1', h.targetIp], h.source)).toBe(false);
    expect(curl(h.source, `http://${h.targetIp}:8080/`)).toBeNull();
    expect(udpEcho(h.source, h.targetIp, 8080)).toBe(false);
    const st = JSON.parse(runCli(['status', '-o', 'json'], { ns: h.target }).stdout) as { filters: Array<{ counters: { established: { packets: number } } }> };
    expect(JSON.stringify(st)).toMatch(/"established":\{"packets":[1-9]/);
    // the flows, as conntrack -L lists them: the host's own ping, HTTP and UDP, none of the refused ones
    const ct = runCli(['filter', 'conntrack', '-o', 'json'], { ns: h.target });
    expect(ct.status, ct.stderr).toBe(0);
    const flows = (JSON.parse(ct.stdout) as { interfaces: Array<{ interface: string; stateful: boolean; flows: Array<{ proto: string; remote: string; state: string; openedBy: string; expiresInSeconds: number }> }> }).interfaces;
    expect(flows.map((i) => [i.interface, i.stateful])).toEqual([[h.targetIf, true]]);
    const seen = flows[0].flows.map((f) => `${f.proto} ${f.remote.replace(/ id \d+$/, '')} ${f.openedBy}`).sort();
    expect(seen).toEqual([`icmp ${h.sourceIp} local`, `tcp ${h.sourceIp}:8080 local`, `udp ${h.sourceIp}:8080 local`]);
    expect(flows[0].flows.every((f) => f.expiresInSeconds > 0)).toBe(true);
    expect(flows[0].flows.find((f) => f.proto === 'udp')!.state).toBe('udp');
    const text = runCli(['filter', 'conntrack'], { ns: h.target }).stdout;
    expect(text).toMatch(new RegExp(`^${h.targetIf}: 3 flows$`, 'm'));
    expect(text).toMatch(/^proto\s+local\s+remote\s+state\s+opened by\s+seen\s+expires in$/m);
    // a page: the second-newest flow alone, with the total beside it
    const page = JSON.parse(runCli(['filter', 'conntrack', '--limit', '1', '--offset', '1', '-o', 'json'], { ns: h.target }).stdout) as { interfaces: Array<{ total: number; flows: Array<{ remote: string }> }> };
    expect(page.interfaces[0].total).toBe(3);
    expect(page.interfaces[0].flows.map((f) => f.remote)).toEqual([(JSON.parse(ct.stdout) as { interfaces: Array<{ flows: Array<{ remote: string }> }> }).interfaces[0].flows[1].remote]);
    expect(runCli(['filter', 'conntrack', '--limit', '1'], { ns: h.target }).stdout).toMatch(new RegExp(`^${h.targetIf}: 3 flows \\(showing 1: --limit, --offset\\)$`, 'm'));
    const badPage = runCli(['filter', 'conntrack', '--limit', '0'], { ns: h.target });
    expect(badPage.status).not.toBe(0);
    expect(badPage.stderr).toContain("'0' is not a whole number from 1 to");
    const egress = egressLinkId(h);
    expect(egress).not.toBeNull();
    expect(linkExists(egress!)).toBe(true);
    const u = runCli(['unload', '--iface', h.targetIf], { ns: h.target });
    expect(u.status, u.stderr).toBe(0);
    // the egress link went with the filter; with no filter the source reaches the target again
    expect(linkExists(egress!)).toBe(false);
    expect(curl(h.source, `http://${h.targetIp}:8080/`)).toBe('hello');
  });

  it('--stateless: the replies are dropped too', () => {
    const r = runCli(['filter', '--iface', h.targetIf, '--default', 'deny', '--allow', 'tcp/22', '--stateless', '--pin'], { ns: h.target });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('connection state: off (--stateless)');
    expect(runCli(['filter', 'conntrack'], { ns: h.target }).stdout).toContain(`${h.targetIf}: stateless`);
    expect(ok('ping', ['-c', '1', '-W', '1', h.sourceIp], h.target)).toBe(false);
    expect(curl(h.target, `http://${h.sourceIp}:8080/`)).toBeNull();
    expect(egressLinkId(h)).toBeNull();
  });

  it('a connection an allow rule accepted keeps passing after filter set removes the rule; a new one does not', async () => {
    // an echo server on the target, and a client on the source that holds one TCP connection
    const echo = spawn('ip', ['netns', 'exec', h.target, process.execPath, '-e', `require('net').createServer((c) => c.pipe(c)).listen(9090, '${h.targetIp}', () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(echo);
    await up(echo);
    const r = runCli(['filter', '--iface', h.targetIf, '--default', 'deny', '--allow', 'tcp/9090', '--pin'], { ns: h.target });
    expect(r.status, r.stderr).toBe(0);
    const client = spawn('ip', ['netns', 'exec', h.source, process.execPath, '-e', `
      const c = require('net').connect(9090, '${h.targetIp}');
      c.on('data', (d) => console.log('got ' + d));
      c.on('error', (e) => console.log('error ' + e.code));
      process.stdin.on('data', (l) => c.write(String(l).trim()));`], { stdio: ['pipe', 'pipe', 'inherit'] });
    procs.push(client);
    const lines: string[] = [];
    client.stdout!.on('data', (b: Buffer) => lines.push(...String(b).split('\n').filter(Boolean)));
    const say = async (w: string): Promise<boolean> => {
      client.stdin!.write(`${w}\n`);
      for (let i = 0; i < 40 && !lines.includes(`got ${w}`); i++) await new Promise((res) => setTimeout(res, 50));
      return lines.includes(`got ${w}`);
    };
    expect(await say('one')).toBe(true);
    // the rule that let the connection in goes, in another process (the flows are the pinned maps')
    const set = runCli(['filter', 'set', '--iface', h.targetIf, '--default', 'deny', '--allow', 'tcp/22'], { ns: h.target });
    expect(set.status, set.stderr).toBe(0);
    expect(await say('two')).toBe(true);
    // a new connection to the same port is no longer allowed
    expect(curl(h.source, `http://${h.targetIp}:9090/`)).toBeNull();
    // and a deny naming it ends the old one too
    const deny = runCli(['filter', 'set', '--iface', h.targetIf, '--default', 'deny', '--deny', 'tcp/9090'], { ns: h.target });
    expect(deny.status, deny.stderr).toBe(0);
    expect(await say('three')).toBe(false);
  });
});
