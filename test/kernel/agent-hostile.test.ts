// SPDX-License-Identifier: Apache-2.0
// The agent under hostile clients (issue 8, item 3): a real agent process on 127.0.0.1 filtering a
// veth, and clients on real sockets sending what no well-behaved client would. Every answer must be
// a 4xx with a JSON {code, message} (never a 5xx, never a hang), a slow client must be cut off
// without holding up anyone else, and afterwards the policy the agent serves, its state file, its
// audit log and every entry of the filter's maps in the kernel must be exactly as before.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ERROR_CODES, type ErrorCode } from '../../src/errors.js';
import { StateStore } from '../../src/agent/store.js';
import { startAgent, type RunningAgent } from '../helpers/agent.js';
import { runCli } from '../helpers/cli.js';
import { filterFingerprint } from '../helpers/filter-maps.js';
import { describeKernel, ok } from '../helpers/kernel.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';
import { httpRequest, rawRequest, type RawOutcome } from '../helpers/raw-http.js';
// mulberry32, shared with the fault scripts: the same hostile corpus on every run
import { prng } from '../../tools/lib/harness.mjs';


interface Case {
  group: string;
  what: string;
  req: Buffer;
  /** the statuses that are right for this request */
  want: number[];
  /** what its message must say, where that is the point of the case */
  msg?: RegExp;
}

describeKernel('the agent under hostile clients (real sockets)', () => {
  let v: VethPair;
  let dir: string;
  let a: RunningAgent;
  const outcomes = new Map<string, number>();
  let sent = 0;

  beforeAll(async () => {
    v = makeVethPair();
    // no IPv6 on the link: neighbour discovery would move the counters this test compares
    execFileSync('sysctl', ['-qw', `net.ipv6.conf.${v.host}.disable_ipv6=1`]);
    execFileSync('nsenter', [`--net=/run/netns/${v.ns}`, 'sysctl', '-qw', `net.ipv6.conf.${v.peer}.disable_ipv6=1`]);
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-hostile-'));
    writeFileSync(join(dir, 'config.yaml'), `filter:\n  interfaces: [${v.host}]\n  rules: ["deny icmp", "deny tcp/22", "allow tcp/22 from 10.0.0.0/8"]\n  default: allow\n`);
    a = await startAgent(join(dir, 'config.yaml'), join(dir, 'state'));
  }, 60_000);
  afterAll(async () => {
    await a?.proc.stop('SIGKILL');
    runCli(['agent', '--cleanup', '--state-dir', join(dir, 'state')]);
    runCli(['unload', '--iface', v.host]);
    v.cleanup();
    rmSync(dir, { recursive: true, force: true });
    const rows = [...outcomes].sort(([x], [y]) => x.localeCompare(y));
    console.log(`hostile requests: ${sent} sent\n${rows.map(([k, n]) => `  ${k.padEnd(40)} ${n}`).join('\n')}`);
  });

  const count = (group: string, r: RawOutcome): void => {
    sent++;
    const k = `${group}: ${r.hung ? 'HUNG' : r.status ? String(r.status) : `closed, no answer${r.error ? ` (${r.error})` : ''}`}`;
    outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  };

  /** What is wrong with an answer, or null: a wanted 4xx whose body is exactly {code: string, message: string}. */
  const problem = (c: { what: string; want: number[]; msg?: RegExp }, r: RawOutcome): string | null => {
    const label = `${c.what}: ${r.hung ? 'no answer (hung)' : `${r.status}${r.error ? ` (${r.error})` : ''} ${r.body.slice(0, 160)}`}`;
    if (r.hung || !c.want.includes(r.status)) return `${label} (want ${c.want.join(' or ')})`;
    if (!/^application\/json/.test(r.headers['content-type'] ?? '')) return `${label}: content-type ${r.headers['content-type']}`;
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(r.body) as Record<string, unknown>;
    } catch {
      return `${label}: not JSON`;
    }
    const keys = Object.keys(body).sort().join(',');
    if (keys !== 'code,message' || typeof body.code !== 'string' || typeof body.message !== 'string' || !body.message) return `${label}: not {code, message}`;
    if (c.msg && !c.msg.test(body.message)) return `${label}: the message does not match ${c.msg}`;
    // the status is the one the error table gives the code (README, src/errors.ts)
    const row = ERROR_CODES[body.code as ErrorCode] as { http: number } | undefined;
    if (row?.http !== r.status) return `${label}: code ${body.code} is HTTP ${row?.http ?? 'nothing'} in the table`;
    return null;
  };
  const problems: string[] = [];
  const check = (c: { what: string; want: number[] }, r: RawOutcome): void => {
    const p = problem(c, r);
    if (p) problems.push(p);
  };

  const snapshot = async (): Promise<Record<string, unknown>> => {
    const g = await fetch(`${a.url}/v1/filter`);
    const st = await fetch(`${a.url}/v1/filter/stats`);
    return {
      filter: await g.text(),
      etag: g.headers.get('etag'),
      stats: await st.text(),
      // the desired state on disk (snapshot and journal), as the next agent would read it
      state: JSON.stringify(StateStore.load(join(dir, 'state'))),
      auditBytes: statSync(join(dir, 'state', 'audit.log'), { throwIfNoEntry: false })?.size ?? 0,
      kernel: filterFingerprint(v.host),
    };
  };

  function corpus(token: string, etag: string): Case[] {
    const rnd = prng(0x8e8);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
    const auth = { authorization: `Bearer ${token}` };
    const json = { ...auth, 'content-type': 'application/json' };
    const cases: Case[] = [];
    const add = (group: string, what: string, req: Buffer, want: number[]): void => void cases.push({ group, what, req, want });
    const put = (group: string, what: string, body: string | Buffer, want = [400], headers: Record<string, string> = json): void => add(group, what, httpRequest('PUT', '/v1/filter', headers, body), want);
    const valid = JSON.stringify({ rules: [{ action: 'deny', match: 'tcp/23' }, { action: 'deny', match: 'udp/53 from 10.1.0.0/16' }], default: 'allow' });

    // tokens: checked before the body is read, whatever the body is
    for (const [what, h] of [
      ['no token', {}],
      ['wrong token', { authorization: 'Bearer not-the-token-at-all-0000000000000' }],
      ['token with a byte more', { authorization: `Bearer ${token}x` }],
      ['token prefix', { authorization: `Bearer ${token.slice(0, -1)}` }],
      ['basic auth', { authorization: `Basic ${Buffer.from(`root:${token}`).toString('base64')}` }],
      ['empty bearer', { authorization: 'Bearer ' }],
      ['two tokens', { authorization: `Bearer ${token} ${token}` }],
    ] as Array<[string, Record<string, string>]>) {
      put('401 token', `PUT, ${what}`, valid, [401], { ...h, 'content-type': 'application/json' });
      add('401 token', `POST, ${what}`, httpRequest('POST', '/v1/filter/rules', { ...h, 'content-type': 'application/json' }, '{"action":"deny","match":"tcp/1"}'), [401]);
      add('401 token', `DELETE, ${what}`, httpRequest('DELETE', '/v1/filter/rules/1', h), [401]);
    }

    // content types: only JSON is spoken
    for (const ct of ['text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/octet-stream', 'application/jsonx', 'json', '*/*']) {
      put('415 content type', ct, ct === 'application/x-www-form-urlencoded' ? 'rules=deny+tcp/23' : valid, [415], { ...auth, 'content-type': ct });
      add('415 content type', `POST ${ct}`, httpRequest('POST', '/v1/filter/rules', { ...auth, 'content-type': ct }, '{"action":"deny","match":"tcp/1"}'), [415]);
    }
    put('415 content type', 'no content type', valid, [415], auth);
    for (const cs of ['utf-16', 'UTF-16LE', '"iso-8859-1"']) put('415 content type', `charset=${cs}`, valid, [415], { ...auth, 'content-type': `application/json; charset=${cs}` });

    // sizes: the limit holds whether the length is declared, a lie, or chunked
    const huge = JSON.stringify({ rules: Array.from({ length: 40_000 }, (_, i) => ({ action: 'deny', match: `tcp/${(i % 65535) + 1}` })) });
    put('413 size', `${huge.length} bytes`, huge, [413]);
    add('413 size', 'declared 1 TB, sends 2 bytes', httpRequest('PUT', '/v1/filter', { ...json, 'content-length': String(1e12) }, '{}'), [413]);
    const chunk = Buffer.from(huge).subarray(0, 1 << 21);
    add('413 size', 'chunked 2 MiB', Buffer.concat([httpRequest('PUT', '/v1/filter', { ...json, 'transfer-encoding': 'chunked' }), Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n0\r\n\r\n')]), [413]);
    add('413 size', 'one rule of 5 KB', httpRequest('POST', '/v1/filter/rules', json, JSON.stringify({ action: 'deny', match: `tcp/1 ${'x'.repeat(5000)}` })), [413]);
    // more rules than the loaded filter holds (maxRules 16,384), in a body within the limit: was a 507 from the kernel
    put('413 size', '20,000 rules', JSON.stringify({ rules: Array.from({ length: 20_000 }, (_, i) => ({ action: 'deny', match: `tcp/${i + 1}` })) }), [413]);

    // truncated JSON, cut everywhere, the length header telling the truth about the cut
    for (let cut = 1; cut < valid.length; cut += 3) put('400 truncated', `first ${cut} bytes`, valid.slice(0, cut));
    put('400 truncated', 'empty body', '');

    // deep nesting
    const deep = (n: number, open: string, close: string, inner = '1'): string => `${open.repeat(n)}${inner}${close.repeat(n)}`;
    put('400 nesting', '100k arrays', deep(100_000, '[', ']'));
    put('400 nesting', '50k arrays as rules', `{"rules":${deep(50_000, '[', ']')}}`);
    put('400 nesting', '20k objects', deep(20_000, '{"rules":', '}', '[]'));
    put('400 nesting', 'deep in an unknown key', `{"rules":[],"x":${deep(30_000, '{"a":', '}')}}`);
    put('400 nesting', 'deep in a rule', `{"rules":[{"action":"deny","match":"tcp/1","x":${deep(30_000, '[', ']')}}]}`);
    put('400 nesting', 'deep with __proto__', `{"rules":[],"y":${deep(10_000, '{"__proto__":', '}', '{}')}}`);

    // unicode and bytes that are not text
    for (const m of ['🔥', 'tcp/２２', 'tсp/22', 'tcp/22\u0000', 'tcp/22\u202e', '\u200btcp/22', 'udp/53 from ①.0.0.0/8', 'tcp/22'.repeat(40)]) {
      put('400 unicode', `match ${JSON.stringify(m)}`, JSON.stringify({ rules: [{ action: 'deny', match: m }] }));
    }
    put('400 unicode', 'lone surrogate', '{"rules":[{"action":"deny","match":"tcp/\\ud800"}]}');
    put('400 unicode', 'invalid UTF-8', Buffer.concat([Buffer.from('{"rules":[{"action":"deny","match":"tcp/'), Buffer.from([0xff, 0xfe, 0xc0, 0x80]), Buffer.from('"}]}')]));
    put('400 unicode', 'unicode key', '{"rulés":[]}');
    put('400 unicode', 'escaped key that is not rules', '{"rule\\u0073x":[]}');
    put('400 unicode', 'UTF-16 body', Buffer.from(valid, 'utf16le'));

    // duplicate keys: JSON parsers disagree on which one wins, so the agent takes neither
    put('400 duplicate key', 'rules twice', '{"rules":[],"rules":[{"action":"deny","match":"tcp/1"}]}');
    put('400 duplicate key', 'rules twice, once escaped', '{"rules":[],"rule\\u0073":[{"action":"deny","match":"tcp/1"}]}');
    put('400 duplicate key', 'default twice', `{"rules":[{"action":"deny","match":"icmp"},{"action":"deny","match":"tcp/22"},{"action":"allow","match":"tcp/22 from 10.0.0.0/8"}],"default":"allow","default":"deny"}`);
    add('400 duplicate key', 'action twice in POST', httpRequest('POST', '/v1/filter/rules', json, '{"action":"allow","action":"deny","match":"tcp/99"}'), [400]);
    put('400 duplicate key', 'match twice in a rule', '{"rules":[{"action":"deny","match":"tcp/1","match":"tcp/2"}]}');

    // prototype poisoning
    put('400 poisoning', '__proto__', '{"rules":[],"__proto__":{"default":"deny"}}');
    put('400 poisoning', 'constructor.prototype', '{"rules":[],"constructor":{"prototype":{"default":"deny"}}}');

    // well-formed JSON the schema or the rule grammar refuses
    for (const b of [
      'null', '1', '"rules"', '[]', 'true', '{}', '{"rules":null}', '{"rules":{}}', '{"rules":"deny tcp/22"}',
      '{"rules":[{"action":"DENY","match":"tcp/22"}]}', '{"rules":[{"action":"deny"}]}', '{"rules":[{"action":"deny","match":""}]}',
      '{"rules":[{"action":"deny","match":22}]}', '{"rules":[{"action":"deny","match":"tcp/70000"}]}', '{"rules":[{"action":"deny","match":"tcp/0"}]}',
      '{"rules":[{"action":"deny","match":"from 10.0.0.0/33"}]}', '{"rules":[{"action":"deny","match":"from ::/129"}]}', '{"rules":[{"action":"deny","match":"tcp/22-21"}]}',
      '{"rules":[],"default":"drop"}', '{"rules":[],"audit":"yes"}', '{"rules":[],"interfaces":"eth0"}', '{"rules":[],"interfaces":["eth0;rm -rf /"]}',
      '{"rules":[],"interfaces":["a-name-far-too-long-for-linux"]}', '{"rules":[],"hook":"tc"}', '{"rules":[],"revision":1}',
      '{"rules":[1e400]}', '{"rules":[{"action":"deny","match":"tcp/22","id":1}]}',
    ]) {
      put('400 schema', b.slice(0, 60), b);
    }
    // a policy the kernel side refuses: the interface does not exist; nothing may change anywhere
    put('404 no interface', 'unknown interface', JSON.stringify({ interfaces: [`nosuch${process.pid % 1000}`], rules: [] }), [404]);
    put('404 no interface', 'unknown interface beside ours, new rules', JSON.stringify({ interfaces: [v.host, `nosuch${process.pid % 1000}`], rules: [{ action: 'deny', match: 'udp/9' }] }), [404]);

    // generated bodies: random JSON with a poison in each (an unknown key, a wrong type or a bad rule)
    const str = (): string => pick(['', 'deny', 'allow', 'tcp/22', 'icmp', 'from 10.0.0.0/8', '🔥', 'x'.repeat(Math.floor(rnd() * 300)), String(rnd())]);
    const value = (d: number): unknown => {
      const k = Math.floor(rnd() * (d > 3 ? 4 : 7));
      if (k === 0) return null;
      if (k === 1) return rnd() < 0.5;
      if (k === 2) return pick([0, -1, 1.5, 1e308, 2 ** 53, -0]);
      if (k === 3) return str();
      if (k === 4) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(d + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 4) }, () => [pick(['rules', 'action', 'match', 'default', 'audit', 'interfaces', 'x', '']), value(d + 1)]));
    };
    for (let i = 0; i < 300; i++) {
      const body: Record<string, unknown> = {};
      for (const k of ['rules', 'default', 'audit', 'interfaces']) if (rnd() < 0.5) body[k] = value(1);
      const poison = i % 3;
      if (poison === 0) body[`k${Math.floor(rnd() * 1e6)}`] = value(1);
      else if (poison === 1) body.rules = pick([null, 7, 'deny tcp/22', {}, true]);
      else body.rules = [...(Array.isArray(body.rules) ? body.rules : []), { action: pick(['drop', 'DENY', '', 'reject']), match: str() }];
      put('400 generated', `generated #${i}`, JSON.stringify(body));
    }
    for (let i = 0; i < 150; i++) {
      const bytes = Buffer.from(Array.from({ length: 1 + Math.floor(rnd() * 2000) }, () => Math.floor(rnd() * 256)));
      put('400 random bytes', `random bytes #${i}`, bytes);
    }

    // methods and paths
    for (const [m, p] of [['PATCH', '/v1/filter'], ['POST', '/v1/filter'], ['DELETE', '/v1/filter'], ['PUT', '/v1/filter/rules'], ['GET', '/v1/filter/rules'], ['PATCH', '/v1/filter/rules/1'], ['PUT', '/v1/filter/rules/1'], ['POST', '/metrics'], ['DELETE', '/healthz'], ['PUT', '/v1/openapi.json'], ['OPTIONS', '/v1/filter'], ['GET', '/v2/filter'], ['GET', '/v1/filter/../../etc/passwd']]) {
      add('404 method or path', `${m} ${p}`, httpRequest(m, p, json, m === 'GET' || m === 'OPTIONS' ? undefined : valid), m === 'OPTIONS' ? [400, 404, 405] : [404, 405]);
    }
    for (const id of ['abc', '-1', '1e3', '99999999999', '1.5', '%00', '0x10']) add('400/404 rule id', `DELETE /v1/filter/rules/${id}`, httpRequest('DELETE', `/v1/filter/rules/${id}`, auth), [400, 404]);
    add('404 rule id', 'DELETE an id that is not there', httpRequest('DELETE', '/v1/filter/rules/424242', auth), [404]);
    add('409 exists', 'POST a rule already there', httpRequest('POST', '/v1/filter/rules', json, '{"action":"deny","match":"icmp"}'), [409]);
    put('412 stale', 'If-Match of another revision', valid, [412], { ...json, 'if-match': '"999999"' });
    put('412 stale', 'If-Match of the current revision, weak', valid, [412], { ...json, 'if-match': `W/${etag}` });
    for (const im of ['W/"zz", *', `*, ${etag}`, 'garbage', etag.replace(/"/g, ''), `${etag} ${etag}`]) put('400 If-Match', `If-Match: ${im}`, valid, [400], { ...json, 'if-match': im });
    add('412 stale', 'POST with If-Match of another revision', httpRequest('POST', '/v1/filter/rules', { ...json, 'if-match': '"0"' }, '{"action":"deny","match":"tcp/99"}'), [412]);

    // HTTP itself broken
    const raw = (what: string, s: string, want = [400]): void => add('400 broken HTTP', what, Buffer.from(s, 'latin1'), want);
    raw('garbage request line', 'HELLO\r\n\r\n');
    raw('no HTTP version', 'GET /v1/filter\r\n\r\n');
    raw('PUT without an HTTP version', `PUT /v1/filter\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: ${valid.length}\r\n\r\n${valid}`);
    raw('HTTP/2.0 in HTTP/1 syntax', 'GET /v1/filter HTTP/2.0\r\nhost: x\r\n\r\n');
    raw('HTTP/1.1 without Host', 'GET /v1/filter HTTP/1.1\r\nconnection: close\r\n\r\n');
    // the cases whose message is their point
    const says = (what: string, msg: RegExp): void => void (cases.find((c) => c.what === what)!.msg = msg);
    says('20,000 rules', /^set the filter policy: 20000 rules are more than the filter holds \(maxRules 16384\); .*raise filter\.maxRules/);
    says('__proto__', /^parse body: the name "__proto__" is refused/);
    says('constructor.prototype', /^parse body: the name "constructor" is refused/);
    says('charset=utf-16', /^read body: charset "utf-16" is not UTF-8/);
    says('If-Match: W/"zz", *', /^read If-Match: /);
    says('no HTTP version', /no HTTP version/);
    says('PUT without an HTTP version', /no HTTP version/);
    raw('unknown method', 'FROB /v1/filter HTTP/1.1\r\nhost: x\r\n\r\n');
    raw('HTTP/9.9', 'GET /v1/filter HTTP/9.9\r\nhost: x\r\n\r\n', [400, 505]);
    raw('space in a header name', 'GET /v1/filter HTTP/1.1\r\nhost: x\r\nbad header: 1\r\n\r\n');
    raw('NUL in a header value', 'GET /v1/filter HTTP/1.1\r\nhost: x\r\nx-a: a\u0000b\r\n\r\n');
    raw('Content-Length and chunked', `PUT /v1/filter HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`);
    raw('two Content-Lengths', `PUT /v1/filter HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}`);
    raw('bad chunk size', `PUT /v1/filter HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`);
    raw('bad escape in the path', 'GET /v1/filter/rules/%zz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', [400, 404]);
    raw('a 40 KB path', `GET /v1/filter?${'a'.repeat(40_000)} HTTP/1.1\r\nhost: x\r\n\r\n`, [414, 431]);
    raw('a 40 KB header', `GET /v1/filter HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(40_000)}\r\n\r\n`, [431]);
    return cases;
  }

  it('answers every hostile request with a 4xx JSON error, cuts slow clients off, and changes nothing', async () => {
    expect(ok('ping', ['-c', '2', '-i', '0.2', '-W', '1', v.hostIp], v.ns, 10_000)).toBe(false); // the deny icmp counter is not zero
    const before = await snapshot();

    const cases = corpus(a.token, before.etag as string);
    // four at a time: hostile clients arrive together
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      const rs = await Promise.all(batch.map((c) => rawRequest(a.port, [c.req], { timeoutMs: 10_000 })));
      batch.forEach((c, j) => {
        count(c.group, rs[j]);
        check(c, rs[j]);
      });
    }

    // slow clients, while a well-behaved client keeps asking and must keep getting answers
    const head = `PUT /v1/filter HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${a.token}\r\ncontent-type: application/json\r\n`;
    const slow: Array<[string, Promise<RawOutcome>]> = [
      ['headers a line a second', rawRequest(a.port, [head, ...Array.from({ length: 60 }, (_, i) => `x-slow-${i}: 1\r\n`)], { gapMs: 1000, timeoutMs: 45_000 })],
      ['body a byte every 0.5 s', rawRequest(a.port, [`${head}content-length: 200\r\n\r\n`, ...'{"rules":[{"action":"deny","match":"tcp/1"}]}'.padEnd(200).split('')], { gapMs: 500, timeoutMs: 45_000 })],
      ['connects, says nothing', rawRequest(a.port, [], { timeoutMs: 45_000 })],
      ['Content-Length larger than the body', rawRequest(a.port, [`${head}content-length: 100\r\n\r\n{"rules":[]}`], { timeoutMs: 45_000 })],
      ...Array.from({ length: 40 }, (_, i): [string, Promise<RawOutcome>] => [`idle socket #${i}`, rawRequest(a.port, ['GET /v1/filter HTTP/1.1\r\n'], { timeoutMs: 45_000 })]),
    ];
    const good: number[] = [];
    const goodStatus = new Map<number, number>();
    let settled = false;
    const all = Promise.all(slow.map(([, p]) => p)).finally(() => (settled = true));
    while (!settled) {
      const t0 = performance.now();
      const r = await fetch(`${a.url}/v1/filter`, { signal: AbortSignal.timeout(5000) }).catch(() => null);
      good.push(performance.now() - t0);
      goodStatus.set(r?.status ?? 0, (goodStatus.get(r?.status ?? 0) ?? 0) + 1);
      await new Promise((res) => setTimeout(res, 250));
    }
    const slowResults = await all;
    for (const [i, [what]] of slow.entries()) {
      const r = slowResults[i];
      count('slow client', r);
      // cut off in time: a 408 with a JSON body, or the connection closed without a word
      if (r.hung) problems.push(`${what}: still open after ${r.ms.toFixed(0)} ms`);
      else if (r.status) check({ what, want: [400, 408] }, r);
      else if (!r.closed) problems.push(`${what}: neither answered nor closed`);
    }
    const worst = Math.max(...good);
    console.log(`slow clients: ${slow.length} cut off after ${Math.min(...slowResults.map((r) => r.ms)).toFixed(0)}-${Math.max(...slowResults.map((r) => r.ms)).toFixed(0)} ms; meanwhile ${good.length} requests of a well-behaved client: ${[...goodStatus].map(([s, n]) => `${n}x ${s}`).join(', ')}, worst ${worst.toFixed(0)} ms`);
    expect(problems).toEqual([]);
    expect([...goodStatus.keys()]).toEqual([200]);
    expect(good.length).toBeGreaterThan(10);
    expect(worst).toBeLessThan(2000);

    // nothing changed: what the agent serves, what it wrote, what the kernel holds
    const after = await snapshot();
    expect(after).toEqual(before);
    expect(ok('ping', ['-c', '1', '-W', '1', v.hostIp], v.ns, 10_000)).toBe(false);
    expect((await fetch(`${a.url}/healthz`)).status).toBe(200);
  }, 180_000);
});
