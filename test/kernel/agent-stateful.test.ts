// SPDX-License-Identifier: Apache-2.0
// The agent's stateful filter (issue 15) on the host end of a veth pair, the "target" (this
// process and the agent run in its namespace), with servers on the far end, the "source". Under
// `default: deny` with `allow tcp/22`, a TCP connection the target opened keeps passing across a
// policy change over HTTP, a `kill -9` of the agent and its restart (the flow is still in the
// pinned table); a filter pinned by `ebpfnet filter --pin` is adopted with its flows; a stateless
// pinned filter is switched to stateful by the agent, and back off over the API.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { FilterDatapath } from '../../src/filter/datapath.js';
import { makePolicy } from '../../src/filter/policy.js';
import { startFilter } from '../../src/filter/start.js';
import * as F from '../../src/gen/filter.js';
import { ifindex, openPinnedMap, openPinnedTable, tcxProgIds } from '../../src/loader/index.js';
import { cleanupAgentTest, startAgent, type RunningAgent } from '../helpers/agent.js';
import { CliProcess, runCli } from '../helpers/cli.js';
import { filterPinDir } from '../helpers/filter-maps.js';
import { describeKernel, ok } from '../helpers/kernel.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

interface Flow {
  proto: string;
  local: string;
  remote: string;
  state: string;
  openedBy: string;
}
interface Conntrack {
  interfaces: Array<{ interface: string; stateful: boolean; flows: Flow[] }>;
}

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One TCP connection from this process (the target) to an echo server: `say` sends a word and
 * tells whether its echo came back within 2 s. */
async function echoClient(ip: string, port: number): Promise<{ say(w: string): Promise<boolean>; sock: Socket }> {
  const sock = connect(port, ip);
  let got = '';
  sock.on('data', (d: Buffer) => (got += String(d)));
  sock.on('error', () => {});
  await new Promise<void>((res, rej) => {
    sock.once('connect', () => res());
    sock.once('error', rej);
  });
  return {
    sock,
    async say(w: string): Promise<boolean> {
      sock.write(`${w}\n`);
      for (let i = 0; i < 40 && !got.includes(w); i++) await wait(50);
      return got.includes(w);
    },
  };
}

describeKernel('the agent\'s stateful filter (veth pair)', () => {
  let v: VethPair;
  let dir: string;
  const agents: CliProcess[] = [];
  const procs: ChildProcess[] = [];
  const socks: Socket[] = [];

  beforeEach(async () => {
    v = makeVethPair();
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-agent-ct-'));
    // on the source: a TCP echo server (9090) and an HTTP server (8080)
    const js = `require('net').createServer((c) => c.pipe(c)).listen(9090, '${v.peerIp}');require('http').createServer((q, s) => s.end('from source')).listen(8080, '${v.peerIp}', () => console.log('up'))`;
    const s = spawn('ip', ['netns', 'exec', v.ns, process.execPath, '-e', js], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(s);
    await new Promise<void>((res) => s.stdout!.once('data', () => res()));
  });
  afterEach(() => {
    for (const s of socks.splice(0)) s.destroy();
    for (const p of procs.splice(0)) p.kill();
    cleanupAgentTest(agents, dir, v);
  });

  const config = (extra = ''): string => {
    const f = join(dir, 'config.yaml');
    writeFileSync(f, `filter:\n  interfaces: [${v.host}]\n  rules: ['allow tcp/22']\n  default: deny\n${extra}`);
    return f;
  };
  const start = async (): Promise<RunningAgent> => {
    const a = await startAgent(join(dir, 'config.yaml'), join(dir, 'state'));
    agents.push(a.proc);
    return a;
  };
  const api = async <T>(a: RunningAgent, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const r = await fetch(`${a.url}${path}`, { method, headers: { authorization: `Bearer ${a.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as T };
  };
  const stateMetric = async (a: RunningAgent): Promise<string | undefined> => new RegExp(`^ebpfnet_filter_stateful\\{interface="${v.host}"\\} (\\d)$`, 'm').exec(await (await fetch(`${a.url}/metrics`)).text())?.[1];
  const tcpFlows = async (a: RunningAgent): Promise<string[]> => {
    const r = await api<Conntrack>(a, 'GET', `/v1/filter/conntrack?interface=${v.host}`);
    expect(r.status).toBe(200);
    return r.body.interfaces[0].flows.filter((f) => f.proto === 'tcp').map((f) => `${f.remote} ${f.openedBy} ${f.state}`);
  };
  const fetchSource = (): string | null => {
    const r = spawnSync('curl', ['-s', '-m', '2', `http://${v.peerIp}:8080/`], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout : null;
  };
  /** an unsolicited ping from the source: dropped under the default deny */
  const pingFromSource = (): boolean => ok('ping', ['-c', '1', '-W', '1', v.hostIp], v.ns);

  it('a connection the target opened keeps passing across a policy change, kill -9 and a restart of the agent', async () => {
    config();
    const a = await start();
    expect(a.proc.stdout).toContain('default deny; connection state on');
    const view = await api<{ stateful: boolean }>(a, 'GET', '/v1/filter');
    expect(view.body.stateful).toBe(true);
    expect(await stateMetric(a)).toBe('1');
    const st = runCli(['status', '--agent', a.url]);
    expect(st.stdout).toContain(`${v.host} (xdp native, stateful)`);
    const stJson = JSON.parse(runCli(['status', '--agent', a.url, '-o', 'json']).stdout) as { interfaces: Array<{ interface: string; stateful: boolean }> };
    expect(stJson.interfaces.map((i) => [i.interface, i.stateful])).toEqual([[v.host, true]]);

    const c = await echoClient(v.peerIp, 9090);
    socks.push(c.sock);
    expect(await c.say('one')).toBe(true);
    expect(pingFromSource()).toBe(false);
    expect(await tcpFlows(a)).toEqual([`${v.peerIp}:9090 local established`]);
    const cli = runCli(['filter', 'conntrack', '--agent', a.url]);
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(new RegExp(`^${v.host}: \\d+ flows?$`, 'm'));
    expect(cli.stdout).toMatch(new RegExp(`^tcp\\s+${v.hostIp.replace(/\./g, '\\.')}:\\d+\\s+${v.peerIp.replace(/\./g, '\\.')}:9090\\s+established\\s+local`, 'm'));

    // (a) a policy change through the API: the connection's replies still pass
    const put = await api<{ revision: number; stateful: boolean }>(a, 'PUT', '/v1/filter', { rules: [{ action: 'allow', match: 'tcp/22' }, { action: 'deny', match: 'udp/53' }] });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(put.body.stateful).toBe(true);
    expect(await c.say('two')).toBe(true);

    // (b) kill -9: the pinned datapath keeps passing it, and keeps dropping the rest
    a.proc.child.kill('SIGKILL');
    await a.proc.stop();
    expect(await c.say('three')).toBe(true);
    expect(pingFromSource()).toBe(false);

    // (c) a new agent adopts the pins: the flow is still in the table before any new packet
    const b = await start();
    expect(await tcpFlows(b)).toEqual([`${v.peerIp}:9090 local established`]);
    expect(await c.say('four')).toBe(true);
    expect(await stateMetric(b)).toBe('1');
    expect(pingFromSource()).toBe(false);
    expect(fetchSource()).toBe('from source');
  });

  it('a flow tracked under `ebpfnet filter --pin` keeps passing when the agent adopts that filter', async () => {
    const f = runCli(['filter', '--iface', v.host, '--default', 'deny', '--allow', 'tcp/22', '--pin']);
    expect(f.status, f.stderr).toBe(0);
    const c = await echoClient(v.peerIp, 9090);
    socks.push(c.sock);
    expect(await c.say('one')).toBe(true);
    config();
    const a = await start();
    expect(await tcpFlows(a)).toEqual([`${v.peerIp}:9090 local established`]);
    expect(await c.say('two')).toBe(true);
    expect((await api<{ stateful: boolean }>(a, 'GET', '/v1/filter')).body.stateful).toBe(true);
  });

  it('a stateless pinned filter is switched to stateful when adopted, and off and on again over the API', async () => {
    const f = runCli(['filter', '--iface', v.host, '--default', 'deny', '--allow', 'tcp/22', '--stateless', '--pin']);
    expect(f.status, f.stderr).toBe(0);
    expect(fetchSource()).toBeNull();
    const egress = join(filterPinDir(v.host), 'egress');
    expect(existsSync(egress)).toBe(false);
    config();
    const a = await start();
    // the adopted filter got an egress program of its own on the pinned flows
    expect(existsSync(egress)).toBe(true);
    expect(fetchSource()).toBe('from source');
    expect(runCli(['status', '-o', 'json']).stdout).toMatch(/"stateful": true/);

    // off: the policy stays, the replies are dropped again, egress is gone
    const off = await api<{ stateful: boolean; rules: unknown[] }>(a, 'PUT', '/v1/filter', { rules: [{ action: 'allow', match: 'tcp/22' }], stateful: false });
    expect(off.status, JSON.stringify(off.body)).toBe(200);
    expect(off.body.stateful).toBe(false);
    expect(existsSync(egress)).toBe(false);
    expect(await stateMetric(a)).toBe('0');
    expect(fetchSource()).toBeNull();
    expect((await api<Conntrack>(a, 'GET', '/v1/filter/conntrack')).body.interfaces).toEqual([{ interface: v.host, stateful: false, table: null, total: 0, flows: [] }]);
    // a bad value is refused and changes nothing
    const bad = await api<{ code: string }>(a, 'PUT', '/v1/filter', { rules: [], stateful: 'yes' });
    expect(bad.status).toBe(400);
    expect(fetchSource()).toBeNull();

    // null: back to the default, on under default deny
    const on = await api<{ stateful: boolean }>(a, 'PUT', '/v1/filter', { rules: [{ action: 'allow', match: 'tcp/22' }], stateful: null });
    expect(on.body.stateful).toBe(true);
    expect(existsSync(egress)).toBe(true);
    expect(fetchSource()).toBe('from source');
    expect(pingFromSource()).toBe(false);
  });

  it('a switch of an adopted filter that fails part way leaves it stateless, with no egress program', () => {
    startFilter(v.host, makePolicy({ allow: ['tcp/22'], default: 'deny' }), { hook: 'xdp', mode: 'auto', pin: true, stateful: false }).datapath.close();
    const dir = filterPinDir(v.host);
    const egress = (): number[] => tcxProgIds(ifindex(v.host), 'egress');
    const d = FilterDatapath.adopt(v.host);
    try {
      // something else pinned where the egress link's pin goes: the attach works, its pin does not
      const blocker = openPinnedMap(join(dir, F.FLT_CT.name), F.FLT_CT);
      blocker.pin(join(dir, 'egress'));
      blocker.close();
      expect(() => d.setStateful(true)).toThrow(/pin link/);
      expect(d.stateful).toBe(false);
      expect(egress()).toEqual([]);
      expect(fetchSource()).toBeNull();
      rmSync(join(dir, 'egress'));
      // the egress program loaded alone shares the pinned switch and timeouts: loading it leaves them be
      const cfg = openPinnedTable(join(dir, F.FLT_CT_CFG.variable), F.FLT_CT_CFG);
      try {
        cfg.set(0, { ...cfg.get(0), tcp_established: 4321 });
        d.setStateful(true);
        expect(cfg.get(0)).toMatchObject({ stateful: 1, tcp_established: 4321 });
      } finally {
        cfg.close();
      }
      expect(egress()).toHaveLength(1);
      expect(fetchSource()).toBe('from source');
      d.setStateful(false);
      expect(egress()).toEqual([]);
      expect(existsSync(join(dir, 'egress'))).toBe(false);
      expect(fetchSource()).toBeNull();
    } finally {
      d.close();
    }
  });
});
