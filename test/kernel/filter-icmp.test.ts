// SPDX-License-Identifier: Apache-2.0
// `--deny icmp` blocks ping in both families and leaves IPv6 working: real ping, ping -6 and TCP
// over IPv6 from `source` to `target`, with the neighbour caches of both emptied first, so the
// connection has to resolve its neighbour through the filter (neighbour discovery is ICMPv6).
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { CliProcess, runCli } from '../helpers/cli.js';
import { describeKernel, ok, sh } from '../helpers/kernel.js';
import { makeTwoHosts, type TwoHosts } from '../helpers/netns.js';

/** A TCP server on the target's IPv6 address that answers with its port. */
function server(ns: string, port: number): ChildProcess {
  const js = `require('net').createServer((s) => s.end(String(${port}))).listen(${port}, '::'); console.log('up')`;
  return spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', js], { stdio: ['ignore', 'pipe', 'inherit'] });
}

function connect6(h: TwoHosts, port: number): string {
  const js = `const s=require('net').connect(${port},'${h.targetIp6}');s.setTimeout(3000,()=>{console.log('TIMEOUT');process.exit()});s.on('data',d=>{console.log('OK '+d);process.exit()});s.on('error',e=>{console.log(e.code);process.exit()})`;
  return sh('ip', ['netns', 'exec', h.source, process.execPath, '-e', js]).trim();
}

/** Waits until no address in either namespace is still tentative (the link-local ones do DAD). */
async function ipv6Ready(h: TwoHosts): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ([h.source, h.target].every((ns) => !sh('ip', ['-n', ns, '-6', 'addr', 'show', 'tentative']).trim())) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('IPv6 addresses still tentative after 5 s');
}

const flushNeighbours = (h: TwoHosts): void => {
  for (const ns of [h.source, h.target]) sh('ip', ['-n', ns, 'neigh', 'flush', 'all']);
};
/** the source's neighbour entry for the target's IPv6 address (empty when there is none) */
const neighbour6 = (h: TwoHosts): string => sh('ip', ['-n', h.source, '-6', 'neigh', 'show', h.targetIp6]).trim();

describeKernel('--deny icmp: ping blocked in IPv4 and IPv6, IPv6 still works', () => {
  let h: TwoHosts;
  let srv: ChildProcess;
  beforeEach(async () => {
    h = makeTwoHosts();
    srv = server(h.target, 8080);
    await new Promise((r) => srv.stdout!.once('data', r));
    await ipv6Ready(h);
  });
  afterEach(() => {
    srv?.kill('SIGKILL');
    h?.cleanup();
  });

  for (const hook of ['xdp', 'tc']) {
    it(`--hook ${hook}: ping and ping -6 fail, TCP over IPv6 connects from a cold neighbour cache`, async () => {
      const ping = (...args: string[]): boolean => ok('ping', [...args, '-c', '1', '-W', '1'], h.source, 10_000);
      expect(ping(h.targetIp)).toBe(true);
      expect(ping('-6', h.targetIp6)).toBe(true);
      const f = new CliProcess(['filter', '--iface', h.targetIf, '--hook', hook, '--deny', 'icmp', '--interval', '1'], { ns: h.target });
      try {
        await f.waitFor(/filtering/);
        expect(ping(h.targetIp)).toBe(false);
        expect(ping('-6', h.targetIp6)).toBe(false);
        flushNeighbours(h);
        expect(neighbour6(h)).not.toMatch(/REACHABLE|STALE|DELAY/);
        // the connect must solicit the target's address, and the target must solicit the source's
        // to answer: both neighbour discoveries cross the filter
        expect(connect6(h, 8080)).toBe('OK 8080');
        expect(neighbour6(h)).toMatch(/lladdr/);
        // packet too big (ICMPv6 type 2) is not ping: a rule for it is icmpv6/packet-too-big
        const explain = runCli(['filter', 'explain', `icmp ${h.sourceIp6} -> ${h.targetIp6} type packet-too-big`, '--deny', 'icmp']);
        expect(explain.stdout, explain.stderr).toMatch(/: PASS by the default \(allow\)/);
        const echo = runCli(['filter', 'explain', `icmp ${h.sourceIp6} -> ${h.targetIp6}`, '--deny', 'icmp']);
        expect(echo.stdout, echo.stderr).toMatch(/: DROP by rule 'deny icmp'/);
        expect(echo.stdout).toContain('icmp matches ICMPv6 echo');
      } finally {
        expect(await f.stop('SIGTERM')).toBe(0);
      }
      // the totals count the two pings dropped
      expect(f.stdout).toMatch(/deny icmp\s+2 packets/);
      expect(ping('-6', h.targetIp6)).toBe(true);
    });
  }
});
