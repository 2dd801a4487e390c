// SPDX-License-Identifier: Apache-2.0
// Connection tracking on a real veth pair: the filter on the host's end (XDP or tc ingress) with
// filter_egress on its tc egress (a TCX link), a default deny allowing only tcp/22. The host's own
// ping and HTTP fetch to the peer work with state on and fail without it; the peer's unsolicited
// ping and connection to the host are still dropped.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { FilterDatapath } from '../../src/filter/datapath.js';
import { makePolicy } from '../../src/filter/policy.js';
import * as F from '../../src/gen/filter.js';
import { libbpf, LinkCreateOpts, sizeof } from '../../src/libbpf/index.js';
import { ifindex, Link } from '../../src/loader/index.js';
import { ATTACH } from '../../src/loader/kinds.js';
import { describeKernel, ok } from '../helpers/kernel.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

/** filter_egress on tc egress through a TCX link (the loader attaches tc ingress only so far). */
function attachEgress(fd: number, ifname: string): Link {
  const opts = { sz: sizeof(LinkCreateOpts), flags: 0, iter_info: null, iter_info_len: 0, target_btf_id: 0, u: [0n, 0n, 0n, 0n] };
  const link = libbpf().bpf_link_create(fd, ifindex(ifname), ATTACH.TCX_EGRESS, opts);
  if (link < 0) throw new Error(`attach filter_egress to tc egress of ${ifname}: errno ${-link}`);
  return new Link(`tc egress on ${ifname}`, link);
}

/** An HTTP server answering "hello" in a namespace, on a port. */
function server(ns: string, ip: string, port: number): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', `require('http').createServer((q, s) => s.end('hello')).listen(${port}, '${ip}', () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
}
const up = (p: ChildProcess): Promise<void> => new Promise((res) => p.stdout!.once('data', () => res()));
/** curl from this process's namespace (or `ns`): the body, or null when it did not get one. */
function fetch(url: string, ns?: string): string | null {
  const argv = ['curl', '-s', '-m', '2', url];
  const r = ns ? spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8' }) : spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : null;
}

for (const hook of ['xdp', 'tc'] as const) {
  describeKernel(`connection tracking on a veth pair (${hook} ingress, tc egress)`, () => {
    let pair: VethPair;
    let d: FilterDatapath | null = null;
    let egress: Link | null = null;
    const servers: ChildProcess[] = [];
    beforeEach(() => {
      pair = makeVethPair();
    });
    afterEach(() => {
      for (const s of servers.splice(0)) s.kill();
      egress?.close();
      egress = null;
      d?.close();
      d = null;
      pair?.cleanup();
    });

    it('--default deny --allow tcp/22: the host pings and fetches from the peer with state on (not without); the peer reaches nothing but tcp/22', async () => {
      const peerWeb = server(pair.ns, pair.peerIp, 8080);
      servers.push(peerWeb);
      await up(peerWeb);
      const hostWeb = spawn(process.execPath, ['-e', `require('http').createServer((q, s) => s.end('hello')).listen(8081, '${pair.hostIp}', () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
      servers.push(hostWeb);
      await up(hostWeb);
      expect(fetch(`http://${pair.peerIp}:8080/`)).toBe('hello');

      d = FilterDatapath.load(pair.host);
      d.apply(makePolicy({ default: 'deny', allow: ['tcp/22'] }));
      d.attach({ hook, mode: 'auto' });
      const ct = d.conntrack();
      egress = attachEgress(ct.egress.fd, pair.host);
      const ping = (): boolean => ok('ping', ['-c', '1', '-W', '1', pair.peerIp], undefined, 10_000);

      // stateless: the replies are dropped
      expect(ping()).toBe(false);
      expect(fetch(`http://${pair.peerIp}:8080/`)).toBe(null);
      expect([...ct.flows.keys()]).toEqual([]);

      ct.cfg.set(0, { ...ct.cfg.get(0), stateful: 1, now: 0n });
      const before = d.counters();
      expect(ping()).toBe(true);
      expect(fetch(`http://${pair.peerIp}:8080/`)).toBe('hello');
      const after = d.counters();
      // the echo reply, the SYN-ACK and the rest of the reply came through state
      expect(after.established.packets - before.established.packets).toBeGreaterThanOrEqual(3n);
      expect(after.defaultDrop.packets - before.defaultDrop.packets).toBe(0n);
      // the ping, and the fetch closed with FINs both ways (the peer's may still be on its way)
      const states = (): number[] => ct.flows.entries().map(([, v]) => v.state).sort();
      for (let i = 0; i < 40 && !states().includes(F.FLT_CT_TIME_WAIT); i++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      expect(states()).toEqual([F.FLT_CT_TIME_WAIT, F.FLT_CT_ICMP].sort());

      // unsolicited from the peer: still dropped
      expect(ok('ping', ['-c', '1', '-W', '1', pair.hostIp], pair.ns, 10_000)).toBe(false);
      expect(fetch(`http://${pair.hostIp}:8081/`, pair.ns)).toBe(null);
    }, 60_000);
  });
}
