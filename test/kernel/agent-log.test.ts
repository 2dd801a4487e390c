// SPDX-License-Identifier: Apache-2.0
// The real `ebpfnet agent` as a daemon's user sees its log: stdout a pipe, so one JSON object per
// line with its level and message (lifecycle at info, changes as audit records, requests at debug),
// the API token never in it, and journald's form when asked; a config error is one line on stderr.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { cleanupAgentTest } from '../helpers/agent.js';
import { CliProcess, runCli } from '../helpers/cli.js';
import { describeKernel, ok, xdpOn } from '../helpers/kernel.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const TOKEN = 'agent-log-token-0123456789abcdef';

describeKernel('ebpfnet agent: its log', () => {
  let v: VethPair;
  let dir: string;
  const agents: CliProcess[] = [];

  beforeEach(() => {
    v = makeVethPair();
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-agent-log-'));
  });
  afterEach(() => cleanupAgentTest(agents, dir, v));

  const start = async (config: string, args: string[] = []): Promise<{ url: string; proc: CliProcess }> => {
    writeFileSync(join(dir, 'config.yaml'), config);
    const proc = new CliProcess(['agent', '--config', join(dir, 'config.yaml'), '--state-dir', join(dir, 'state'), '--listen', '127.0.0.1:0', ...args]);
    agents.push(proc);
    const m = await proc.waitFor(/api: (http:\/\/127\.0\.0\.1:\d+)\/v1/);
    await proc.waitFor(/"msg":"ready"|^<6>ready$/m);
    return { url: m[1], proc };
  };
  const ping = (count: number): boolean => ok('ping', ['-c', String(count), '-i', '0.2', '-W', '1', v.hostIp], v.ns, 15_000);

  it('stdout a pipe: JSON lines with level and msg, the change as an audit record, requests at debug, no token', async () => {
    const a = await start(`api:\n  token: "${TOKEN}"\nlog:\n  level: debug\nfilter:\n  interfaces: [${v.host}]\n  rules: []\n`);
    expect(ping(1)).toBe(true);
    const put = await fetch(`${a.url}/v1/filter`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ rules: [{ action: 'deny', match: 'icmp' }] }),
    });
    expect(put.status, await put.clone().text()).toBe(200);
    expect(ping(2)).toBe(false);
    const wrong = await fetch(`${a.url}/v1/filter/rules/1`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}x` } });
    expect(wrong.status).toBe(401);
    await a.proc.waitFor(/"msg":"DELETE \/v1\/filter\/rules\/1 401"/);
    expect(await a.proc.stop('SIGTERM')).toBe(0);

    const lines = a.proc.stdout.split('\n').filter(Boolean);
    const records = lines.map((l) => JSON.parse(l) as { level: string; msg: string; time: string; audit?: { op: string; what: string } });
    for (const r of records) {
      expect(['debug', 'info', 'warn', 'error', 'fatal']).toContain(r.level);
      expect(typeof r.msg).toBe('string');
      expect(Number.isNaN(Date.parse(r.time))).toBe(false);
    }
    const infos = records.filter((r) => r.level === 'info').map((r) => r.msg);
    expect(infos).toContain(`filter: ${v.host}: 0 rules; default allow; connection state off`);
    expect(infos).toContain('ready');
    expect(infos.at(-1)).toBe('stopped; the pinned datapaths keep running (ebpfnet agent --cleanup removes them)');
    expect(records.find((r) => r.audit?.op === 'PUT /v1/filter')).toMatchObject({ level: 'info', audit: { what: `1 rules on ${v.host}; default allow` } });
    expect(records.filter((r) => r.level === 'debug').map((r) => r.msg)).toEqual(['PUT /v1/filter 200', 'DELETE /v1/filter/rules/1 401']);
    expect(`${a.proc.stdout}${a.proc.stderr}`).not.toContain(TOKEN);
    expect(a.proc.stderr).toBe('');
  });

  it('--log-format journal: <N> priorities and no timestamps; at info no request lines', async () => {
    const a = await start('filter:\n  rules: []\n', ['--log-format', 'journal']);
    expect((await fetch(`${a.url}/v1/filter`)).status).toBe(200);
    expect(await a.proc.stop('SIGTERM')).toBe(0);
    const lines = a.proc.stdout.split('\n').filter(Boolean);
    for (const l of lines) expect(l).toMatch(/^<[2-7]>\S/);
    expect(lines).toContain('<6>ready');
    expect(lines).toContain('<6>filter: no interfaces');
    expect(lines.some((l) => /\d\d:\d\d:\d\d/.test(l))).toBe(false);
    expect(a.proc.stdout).not.toContain('GET /v1/filter');
  });

  it('a bad rule in the config: one line on stderr naming file:line and the path, exit 2, nothing attached', () => {
    const cfg = join(dir, 'bad.yaml');
    writeFileSync(cfg, `filter:\n  interfaces: [${v.host}]\n  rules:\n    - deny icmp\n    - deny tcp/99999\n`);
    const r = runCli(['agent', '--config', cfg, '--state-dir', join(dir, 'state'), '--listen', '127.0.0.1:0']);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`ebpfnet: read config ${cfg}:5: filter.rules[1]: 'deny tcp/99999': port 99999 is out of range; ports are 1-65535\n`);
    expect(r.stdout).toBe('');
    expect(ping(1)).toBe(true);
    expect(() => readFileSync(join(dir, 'state', 'token'))).toThrow();
  });

  it('a start that fails after the log is up: an error record with its code on stdout, the one line on stderr, nothing attached', () => {
    const cfg = join(dir, 'gone.yaml');
    writeFileSync(cfg, `filter:\n  interfaces: [${v.host}, ebnone${process.pid % 10000}]\n  rules: ["deny icmp"]\n`);
    const r = runCli(['agent', '--config', cfg, '--state-dir', join(dir, 'state'), '--listen', '127.0.0.1:0']);
    expect(r.status).toBe(1);
    const want = `filter ebnone${process.pid % 10000}: no such interface; list interfaces with: ip link`;
    expect(r.stderr).toBe(`ebpfnet: ${want}\n`);
    const records = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: string; code?: string; msg: string });
    expect(records.at(-1)).toMatchObject({ level: 'error', code: 'EBPFNET_NOT_FOUND', msg: `start failed: ${want}` });
    expect(ping(1)).toBe(true);
    expect(xdpOn(v.host)).toBe(false);
  });
});
