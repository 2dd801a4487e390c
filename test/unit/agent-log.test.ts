// SPDX-License-Identifier: Apache-2.0
// The agent's logging without root: the agent library and its API log through the logger they are
// given (and print nothing themselves), secrets never reach a record, the line formats, and the
// config file's errors name the file, the line, the path and the text at fault.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/agent/config.js';
import type { FilterBackend, LinkSource } from '../../src/agent/filter.js';
import { createLogger, formatLine } from '../../src/agent/log.js';
import { buildApi } from '../../src/api/app.js';
import { fakeKernel } from '../helpers/agent-fakes.js';

const TOKEN = 'log-token-0123456789abcdef';

interface LogRecord {
  level: string;
  msg: string;
  [k: string]: unknown;
}

/** A JSON logger whose lines land in `lines`. */
function captured(level: 'info' | 'debug' = 'info') {
  const lines: string[] = [];
  const logger = createLogger({ level, format: 'json', write: (l) => void lines.push(l) });
  return { logger, lines, records: (): LogRecord[] => lines.map((l) => JSON.parse(l) as LogRecord) };
}

/** Every way library code could print by itself, spied on. */
function spyOnOutput() {
  const spies = [
    vi.spyOn(process.stdout, 'write'),
    vi.spyOn(process.stderr, 'write'),
    ...(['log', 'info', 'warn', 'error', 'debug'] as const).map((m) => vi.spyOn(console, m)),
  ];
  return { calls: () => spies.reduce((n, s) => n + s.mock.calls.length, 0), restore: () => spies.forEach((s) => s.mockRestore()) };
}

describe('agent library: logs go to the logger it was given', () => {
  let dir: string;
  let agent: Agent | null = null;
  let output: ReturnType<typeof spyOnOutput>;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-log-'));
  });
  afterEach(() => {
    output?.restore();
    agent?.close();
    agent = null;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A filter on `veth*` over an interface list the test changes. */
  const open = (logger?: ReturnType<typeof captured>['logger']) => {
    const kernel = fakeKernel();
    let here = ['lo', 'veth1'];
    const watchers: Array<() => void> = [];
    const links: LinkSource = {
      list: () => here.map((name) => ({ name, kind: null, addressed: name !== 'lo' })),
      exists: (n) => here.includes(n),
      watch: (onChange) => {
        watchers.push(onChange);
        return { close: () => void watchers.splice(watchers.indexOf(onChange), 1) };
      },
    };
    const filters: FilterBackend = { ...kernel.backend, links };
    agent = Agent.open({ stateDir: dir, config: parseConfig("filter:\n  interfaces: ['veth*', 'nosuch*']\n  rules: ['deny tcp/22']\n"), filters, logger });
    return { agent, add: (n: string) => (here = [...here, n]), event: () => watchers.forEach((w) => w()) };
  };

  it('audit records at info, an interface it cannot filter at warn; nothing on stdout, stderr or the console', async () => {
    const log = captured();
    output = spyOnOutput();
    const a = open(log.logger);
    a.add('veth2');
    a.add('nosuch0');
    a.event();
    await a.agent.filter.set({ rules: [{ action: 'deny', match: 'udp/53' }] }, { who: 'test' });
    const calls = output.calls();
    output.restore();
    expect(calls).toBe(0);
    const recs = log.records();
    expect(recs.find((r) => r.msg === 'audit: interface added: filter on veth2 (matches veth*)')).toMatchObject({ level: 'info', audit: { who: 'agent', op: 'interface added' } });
    expect(recs.find((r) => r.level === 'warn')).toMatchObject({ interface: 'nosuch0', matches: 'nosuch*', msg: 'filter: not on nosuch0 (matches nosuch*): filter nosuch0: no such interface' });
    expect(recs.find((r) => r.msg.startsWith('audit: PUT /v1/filter'))).toMatchObject({ level: 'info', audit: { who: 'test', what: '1 rules on veth*,nosuch*; default allow' } });
    // one JSON object per line, each with its level and message
    for (const l of log.lines) expect(l).toMatch(/^\{"level":"(info|warn)","time":"[^"]+","pid":\d+,.*"msg":".*"\}\n$/);
  });

  it('without a logger the agent says nothing anywhere', async () => {
    output = spyOnOutput();
    const a = open();
    a.add('nosuch0');
    a.event();
    await a.agent.filter.set({ rules: [] }, { who: 'test' });
    const calls = output.calls();
    output.restore();
    expect(calls).toBe(0);
  });

  it('the API logs one debug line per request through the same logger, without the token', async () => {
    const log = captured('debug');
    const a = open(log.logger);
    const app = await buildApi({ agent: a.agent, registry: new Registry(), token: TOKEN });
    output = spyOnOutput();
    try {
      const put = await app.inject({ method: 'PUT', url: '/v1/filter', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, payload: { rules: [{ action: 'deny', match: 'icmp' }] } });
      expect(put.statusCode, put.body).toBe(200);
      const wrong = await app.inject({ method: 'DELETE', url: '/v1/filter/rules/1', headers: { authorization: `Bearer ${TOKEN}x` } });
      expect(wrong.statusCode).toBe(401);
      expect((await app.inject('/healthz')).statusCode).toBe(200);
    } finally {
      await app.close();
    }
    const calls = output.calls();
    output.restore();
    expect(calls).toBe(0);
    const requests = log.records().filter((r) => r.req);
    expect(requests.map((r) => [r.level, r.msg])).toEqual([
      ['debug', 'PUT /v1/filter 200'],
      ['debug', 'DELETE /v1/filter/rules/1 401'],
      ['debug', 'GET /healthz 200'],
    ]);
    expect(requests[0]).toMatchObject({ req: { method: 'PUT', url: '/v1/filter' }, res: { statusCode: 200 } });
    expect(log.lines.join('')).not.toContain(TOKEN);
    // at info the same requests leave no line
    const quiet = captured('info');
    const app2 = await buildApi({ agent: a.agent, registry: new Registry(), token: TOKEN, logger: quiet.logger });
    await app2.inject('/v1/filter');
    await app2.close();
    expect(quiet.lines).toEqual([]);
  });

  it('secrets are redacted should a record carry them', () => {
    const log = captured();
    log.logger.info({ token: TOKEN, api: { token: TOKEN }, req: { headers: { authorization: `Bearer ${TOKEN}` } } }, 'x');
    expect(log.lines.join('')).not.toContain(TOKEN);
    expect(log.records()[0]).toMatchObject({ token: '[redacted]', api: { token: '[redacted]' }, req: { headers: { authorization: '[redacted]' } } });
  });
});

describe('log line formats', () => {
  const line = JSON.stringify({ level: 'warn', time: '2026-01-02T03:04:05.678Z', pid: 7, interface: 'eth0', err: { message: 'no such interface' }, msg: 'filter: not on eth0' });
  it('text: time, level and message, then the fields', () => {
    expect(formatLine(line, 'text')).toBe('03:04:05.678 WARN  filter: not on eth0 interface=eth0 err="no such interface"\n');
  });
  it('journal: the syslog priority journald reads, no time of its own, one line', () => {
    expect(formatLine(line, 'journal')).toBe('<4>filter: not on eth0 interface=eth0 err="no such interface"\n');
    expect(formatLine(JSON.stringify({ level: 'info', msg: 'a\nb' }), 'journal')).toBe('<6>a b\n');
    const journal: string[] = [];
    createLogger({ format: 'journal', write: (l) => void journal.push(l) }).error('boom');
    expect(journal).toEqual(['<3>boom\n']);
  });
});

describe('agent config errors: one line naming the file, the line, the path and the text', () => {
  const F = '/etc/ebpfnet/agent.yaml';
  const error = (text: string): string => {
    try {
      parseConfig(text, F);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error(`no error for ${text}`);
  };
  const cases: Array<[string, string, string]> = [
    ['a bad rule', 'filter:\n  interfaces: [eth0]\n  rules:\n    - deny tcp/22\n    - deny udp/53\n    - allow icmp\n    - deny tcp/99999\n', `read config ${F}:7: filter.rules[3]: 'deny tcp/99999': port 99999 is out of range; ports are 1-65535`],
    ['a rule without its action', 'filter:\n  rules: ["deny tcp/22", "block udp/1"]\n', `read config ${F}:2: filter.rules[1]: 'block udp/1': not 'deny RULE' or 'allow RULE'; for example: deny tcp/22`],
    ['a rule that is not a string', 'filter:\n  rules:\n    - deny tcp/22\n    - 5\n', `read config ${F}:4: filter.rules[1]: 5 is not a string; write 'deny RULE' or 'allow RULE' as strings`],
    ['rules that are not a list', 'filter:\n  rules: deny tcp/22\n', `read config ${F}: filter.rules must be a list of 'deny RULE' or 'allow RULE', not deny tcp/22`],
    ['a bad interface', "filter:\n  interfaces: [eth0, 'bad name!']\n", `read config ${F}:2: filter.interfaces[1]: 'bad name!' is not an interface name, a glob or 'all'; for example --iface eth0, --iface eth0,eth1, --iface 'veth*' or --iface all`],
    ['a wrong filter.default', 'filter:\n  default: maybe\n', `read config ${F}:2: filter.default: 'maybe' is not allow or deny`],
    ['a wrong filter.maxRules', 'filter:\n  maxRules: lots\n', `read config ${F}:2: filter.maxRules: lots is not an integer from 1 to 1048576`],
    ['an unknown filter key', 'filter:\n  rule: []\n', `read config ${F}:2: filter: unknown key 'rule'; known keys: interfaces, rules, default, audit, hook, mode, maxRules, ctMax, stateful`],
    ['a bad backend', 'lb:\n  services:\n    - service: 10.0.0.1:80/tcp\n      backends: [10.1.1.1:99999]\n', `read config ${F}:4: lb.services[0].backends[0]: backend '10.1.1.1:99999': port 99999 is out of range; a port is a number from 1 to 65535`],
    ['an unknown service key', 'lb:\n  services:\n    - vip: 10.0.0.1:80\n', `read config ${F}:3: lb.services[0]: unknown key 'vip'; a service has service, affinity, backends`],
    ['a wrong lb.cgroup', 'lb:\n  cgroup: 5\n', `read config ${F}:2: lb.cgroup: '5' is not a cgroup v2 directory (absolute, or relative to the cgroup v2 mount)`],
    ['a wrong trace option', 'trace:\n  failed: yes\n', `read config ${F}:2: trace.failed: yes is not true or false`],
    ['a bad trace pid', 'trace:\n  pid: abc\n', `read config ${F}:2: trace.pid: 'abc' is not a process id; give a positive integer, e.g. pid=1234`],
    ['a wrong api.listen', 'api:\n  listen: {a: 1}\n', `read config ${F}:2: api.listen: {"a":1} is not [ADDR:]PORT; for example 127.0.0.1:9900`],
    ['a short token, not shown', 'api:\n  token: s3cr3t\n', `read config ${F}:2: api.token: must be a string of at least 16 characters (it is 6 characters)`],
    ['an unknown api key', 'api:\n  tokn: x\n', `read config ${F}:2: api: unknown key 'tokn'; known keys: listen, token, bodyLimit`],
    ['a wrong log level', 'log:\n  level: loud\n', `read config ${F}:2: log.level: 'loud' is not a log level; use one of fatal, error, warn, info, debug, trace, silent`],
    ['a wrong log format', 'log:\n  format: xml\n', `read config ${F}:2: log.format: 'xml' is not a log format; use one of json, text, journal`],
    ['a section that is not a mapping', 'trace: on\n', `read config ${F}: trace is not a mapping (it is on)`],
    ['an unknown section', 'filtre: {}\n', `read config ${F}: top level: unknown key 'filtre'; known keys: api, log, filter, lb, trace, kubernetes`],
    // YAML syntax: position, what the parser says, and the line it is about
    ['a bad indent', 'filter:\n  rules:\n    - deny tcp/22\n   - deny udp/53\n', `read config ${F}:4:1: a block sequence may not be used as an implicit map key: '   - deny udp/53'`],
    ['a key twice', 'filter:\n  rules: [deny tcp/22]\n  rules: [x]\n', `read config ${F}:3:3: map keys must be unique: '  rules: [x]'`],
    ['a tab', 'filter:\n\trules: []\n', `read config ${F}:2:1: tabs are not allowed as indentation: "\\trules: []"`],
    ['an unclosed bracket', 'filter: {interfaces: [eth0\n', `read config ${F}:2:1: flow sequence in block collection must be sufficiently indented and end with a ]: at the end of the file, after line 1 'filter: {interfaces: [eth0'`],
    ['an unknown tag', 'filter:\n  maxRules: !!intt 5\n', `read config ${F}:2:13: unresolved tag: tag:yaml.org,2002:intt: '  maxRules: !!intt 5'`],
    ['JSON with a name twice', '{"filter": {"default": "allow", "default": "deny"}}', `read config ${F}:1:33: map keys must be unique: '{"filter": {"default": "allow", "default": "deny"}}'`],
    ['JSON with a bad rule', '{"filter": {"rules": ["deny tcp/22", "deny tcp/0"]}}', `read config ${F}:1: filter.rules[1]: 'deny tcp/0': port 0 is out of range; ports are 1-65535`],
  ];
  it.each(cases)('%s', (_what, text, want) => {
    const got = error(text);
    expect(got).toBe(want);
    expect(got).not.toContain('\n');
    expect(got).not.toContain('s3cr3t');
  });

  it('a long JSON line shows the stretch around the column', () => {
    const rules = Array.from({ length: 50 }, (_, i) => `"deny tcp/${i + 1}"`).join(', ');
    const got = error(`{"filter": {"rules": [${rules}], "rules": []}}`);
    expect(got).toMatch(/^read config \/etc\/ebpfnet\/agent\.yaml:1:\d+: map keys must be unique: \.\.\.'.*"rules": \[\]\}\}'$/);
    expect(got.length).toBeLessThan(260);
  });
});
