// SPDX-License-Identifier: Apache-2.0
// `ebpfnet filter|status|lb ... --agent URL`: the built CLI, run as a user runs it, against the
// agent's API listening on 127.0.0.1 (a random port) in this process, with in-memory datapaths. No
// root: the CLI loads nothing itself when it has --agent. Checked: what it changes, what it prints,
// and that an error (local or from the agent) is one line with the exit status of its code.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/agent/config.js';
import { buildApi } from '../../src/api/app.js';
import { formatRule } from '../../src/filter/rules.js';
import { fakeBalancer, fakeKernel } from '../helpers/agent-fakes.js';
import { CliProcess } from '../helpers/cli.js';

const TOKEN = 'cli-token-0123456789abcdef';

describe('the CLI through --agent', () => {
  let dir: string;
  let app: FastifyInstance;
  let agent: Agent;
  let url: string;
  let kernel: ReturnType<typeof fakeKernel>;
  let lb: ReturnType<typeof fakeBalancer>;
  let audit: string[];

  /** Runs the CLI without blocking this process (the agent answering it runs here). */
  const cli = async (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ status: number | null; stdout: string; stderr: string }> => {
    const p = new CliProcess(args, { env: { ...process.env, EBPFNET_TOKEN: undefined, ...env } });
    const status = await new Promise<number | null>((r) => p.child.on('exit', (c) => r(c)));
    // the pipes may still hold the last bytes
    await new Promise((r) => setTimeout(r, 20));
    return { status, stdout: p.stdout, stderr: p.stderr };
  };
  const withToken = ['--token-file', ''];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-agent-cli-'));
    writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
    withToken[1] = join(dir, 'token');
    kernel = fakeKernel();
    lb = fakeBalancer();
    audit = [];
    const config = parseConfig('filter:\n  interfaces: [eth9]\n  rules: []\nlb:\n  cgroup: test.slice\n');
    agent = Agent.open({ stateDir: join(dir, 'state'), config, filters: kernel.backend, balancer: lb.backend, auditSink: (l) => audit.push(l) });
    app = await buildApi({ agent, registry: new Registry(), token: TOKEN });
    url = await app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await app?.close();
    agent?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('filter --agent replaces the policy, --add adds rules, status --agent shows the counters', async () => {
    const r = await cli(['filter', '--agent', url, ...withToken, '--deny', 'tcp/22', '--deny', 'ICMP', '--force']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('agent: filter revision 2 on eth9: #1 deny tcp/22, #2 deny icmp; default allow; connection state off\n');
    expect(kernel.pinned.get('eth9')!.rules.map(formatRule)).toEqual(['deny tcp/22', 'deny icmp']);

    const a = await cli(['filter', '--agent', url, '--add', '--allow', 'udp/53'], { EBPFNET_TOKEN: TOKEN });
    expect(a.stderr).toBe('');
    expect(a.stdout).toBe('agent: added rule #3: allow udp/53\n');
    expect(kernel.pinned.get('eth9')!.rules.map(formatRule)).toEqual(['deny tcp/22', 'deny icmp', 'allow udp/53']);

    const s = await cli(['status', '--agent', url]);
    expect(s.status, s.stderr).toBe(0);
    expect(s.stdout).toMatch(/^agent: revision 3: eth9 \(xdp native, stateless\)\ninterface +id +rule +packets +bytes\n/);
    expect(s.stdout).toMatch(/^eth9 +#1 +deny tcp\/22 +1 +100$/m);
    expect(s.stdout).toMatch(/^eth9 +#3 +allow udp\/53 +1 +100$/m);
    expect(audit.map((l) => (JSON.parse(l) as { op: string }).op)).toEqual(['PUT /v1/filter', 'POST /v1/filter/rules']);
  });

  it('lb add, list, del and apply --agent', async () => {
    const add = await cli(['lb', 'add', '10.96.0.10:80/tcp', '--backend', '10.244.1.5:8080', '--backend', '10.244.2.7:8080,weight=3,state=draining', '--agent', url, ...withToken]);
    expect(add.stderr).toBe('');
    expect(add.stdout).toBe('lb: added 10.96.0.10:80/tcp through the agent: 2 backends (1 active, 1 draining), 1 slot\n');
    expect(lb.services.get('10.96.0.10:80/tcp')!.backends.map((b) => `${b.name} ${b.weight} ${b.state}`)).toEqual(['10.244.1.5:8080 1 active', '10.244.2.7:8080 3 draining']);
    const again = await cli(['lb', 'add', '10.96.0.10:80/tcp', '-b', '10.244.1.5:8080', '--agent', url, ...withToken]);
    expect(again.stdout).toMatch(/^lb: updated 10\.96\.0\.10:80\/tcp through the agent: 1 backend \(1 active\)/);

    lb.conns.set('10.96.0.10:80/tcp 10.244.1.5:8080', 7);
    const list = await cli(['lb', 'list', '--agent', url]);
    expect(list.status, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^balancer of the agent at .*, attached to \/sys\/fs\/cgroup\/test\.slice \(revision 3\)\n/);
    expect(list.stdout).toMatch(/^10\.96\.0\.10:80\/tcp +- +- +off +1 +- +7 +0$/m);
    expect(list.stdout).toMatch(/^ {2}10\.244\.1\.5:8080 +1 +active +- +1 +100\.0% +7 +-$/m);
    const json = JSON.parse((await cli(['lb', 'list', '--agent', url, '--json'])).stdout) as { services: Array<{ id: string; connections: number }> };
    expect(json.services).toEqual([expect.objectContaining({ id: '10.96.0.10:80/tcp', connections: 7 })]);

    const file = join(dir, 'services.yaml');
    writeFileSync(file, 'services:\n  - service: 10.96.0.20:53/udp\n    backends: ["10.244.1.5:5353"]\n  - service: "[fd00::10]:80/tcp"\n    backends: ["[fd00::5]:80"]\n');
    const ap = await cli(['lb', 'apply', file, '--agent', url, ...withToken]);
    expect(ap.stderr).toBe('');
    expect(ap.stdout).toBe(`lb: applied ${file} through the agent: 2 services (revision 4)\n`);
    expect([...lb.services.keys()]).toEqual(['10.96.0.20:53/udp', '[fd00::10]:80/tcp']);

    const del = await cli(['lb', 'del', '[fd00::10]:80/tcp', '--agent', url, ...withToken]);
    expect(del.stdout).toBe('lb: deleted [fd00::10]:80/tcp through the agent\n');
    expect([...lb.services.keys()]).toEqual(['10.96.0.20:53/udp']);
  });

  it('errors are one line with the exit status of their code, and change nothing', async () => {
    // a port nobody listens on: taken, then given back
    const probe = createServer();
    const closedPort = await new Promise<number>((r) => probe.listen(0, '127.0.0.1', () => r((probe.address() as AddressInfo).port)));
    await new Promise((r) => probe.close(r));
    const revision = agent.filter.revision;
    const lbRevision = agent.lb.revision;
    const cases: Array<[string[], number, RegExp]> = [
      // checked here, before any request
      [['filter', '--agent', url, ...withToken, '--deny', 'tcp/99999'], 2, /^ebpfnet: parse rule 'tcp\/99999': port 99999 is out of range/],
      [['lb', 'add', '10.96.0.10:80/sctp', '--agent', url, ...withToken], 2, /unknown protocol 'sctp'/],
      [['filter', '--agent', url, ...withToken, '--deny', 'icmp', '--pin'], 2, /^ebpfnet: filter: --pin does not go with --agent/],
      [['filter', '--agent', url, ...withToken, '--add', '--deny', 'icmp', '--default', 'deny'], 2, /^ebpfnet: filter --add: --add takes rules only/],
      [['lb', 'apply', '/nonexistent.yaml', '--agent', url], 2, /cannot read the file/],
      [['filter', '--add', '--deny', 'icmp'], 2, /^ebpfnet: filter: --add needs --agent/],
      [['filter', '--agent', 'not a url', '--deny', 'icmp'], 2, /^ebpfnet: parse --agent: 'not a url' is not a URL/],
      [['filter', '--agent', url, '--token-file', join(dir, 'nope'), '--deny', 'icmp'], 2, /^ebpfnet: read --token-file: .*nope: ENOENT/],
      // answered by the agent
      [['filter', '--agent', url, '--token', 'wrong-token-0123456789', '--deny', 'icmp', '--force'], 1, /^ebpfnet: agent 127\.0\.0\.1:\d+: authorize PUT \/v1\/filter: the bearer token is wrong/],
      [['lb', 'del', '10.96.0.77:80/tcp', '--agent', url, ...withToken], 1, /^ebpfnet: agent 127\.0\.0\.1:\d+: delete service 10\.96\.0\.77:80\/tcp: no service 10\.96\.0\.77:80\/tcp; GET \/v1\/lb\/services lists them\n$/],
      [['filter', '--agent', url, ...withToken, '--iface', 'nosuch0', '--deny', 'icmp', '--force'], 1, /^ebpfnet: agent 127\.0\.0\.1:\d+: filter nosuch0: no such interface/],
      // no agent there
      [['lb', 'list', '--agent', `http://127.0.0.1:${closedPort}`], 1, new RegExp(`^ebpfnet: agent 127\\.0\\.0\\.1:${closedPort}: cannot reach http://127\\.0\\.0\\.1:${closedPort} \\(ECONNREFUSED\\); is the agent running there\\?`)],
    ];
    for (const [args, status, msg] of cases) {
      const r = await cli(args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(status);
      expect(r.stderr.split('\n').filter(Boolean), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(r.stdout).toBe('');
    }
    expect(agent.filter.revision).toBe(revision);
    expect(agent.lb.revision).toBe(lbRevision);
  });
});
