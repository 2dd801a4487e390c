#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The agent API's benchmark (issue #6), from one run, on a veth pair it makes and removes:
//   (a) rule updates per second through PUT /v1/filter (alternating two small policies), one client
//       and 16 concurrent clients, keep-alive HTTP/1.1 from node:http (no autocannon: the client
//       must be cheaper than the server it measures, and this one is). Goal: >= 2,000/s.
//   (b) PUT round trip p50/p99: the agent answers only after the new generation is switched in,
//       so this bounds the time from an accepted PUT to the rule being in force. Goal: p99 <= 5 ms.
//       (The time to the first packet actually dropped is not measured yet.)
//   (c) GET /metrics with 10,000 rules: median and worst of 20 scrapes. Goal: <= 100 ms.
//   node tools/bench/api/run.mjs
// Needs root and dist/ (npx tsc -p .). Exits 1 when a goal is missed, 2 when it could not run.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const GOALS = { updatesPerSec: 2000, p99Ms: 5, scrapeMs: 100 };
const id = `${process.pid % 10000}`;
const host = `ebbh${id}`;
const peer = `ebbp${id}`;
const ns = `ebn-bench${id}`;
const dir = mkdtempSync(join(tmpdir(), 'ebpfnet-bench-api-'));
/** @type {import('node:child_process').ChildProcess | null} */
let agent = null;

const ip = (/** @type {string[]} */ a) => execFileSync('ip', a, { stdio: ['ignore', 'ignore', 'pipe'] });
function teardown() {
  agent?.kill('SIGKILL');
  try {
    execFileSync(process.execPath, [join(root, 'dist/cli/main.js'), 'agent', '--cleanup', '--state-dir', dir], { stdio: 'ignore' });
  } catch {
    /* nothing to clean */
  }
  for (const a of [['link', 'del', host], ['netns', 'del', ns]]) {
    try {
      ip(a);
    } catch {
      /* already gone */
    }
  }
  rmSync(dir, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  teardown();
  process.exit(2);
});

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });
/** @returns {Promise<{status: number, body: string, ms: number}>} */
function request(/** @type {string} */ url, /** @type {string} */ method, /** @type {string | null} */ body, /** @type {Record<string,string>} */ headers = {}) {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: keepAlive, headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers } : headers }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    });
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}

const pct = (/** @type {number[]} */ xs, /** @type {number} */ p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];

async function main() {
  if (process.getuid?.() !== 0) {
    console.error('bench api: needs root');
    process.exit(2);
  }
  ip(['netns', 'add', ns]);
  ip(['link', 'add', host, 'type', 'veth', 'peer', 'name', peer]);
  ip(['link', 'set', peer, 'netns', ns]);
  ip(['link', 'set', host, 'up']);
  writeFileSync(join(dir, 'config.yaml'), `filter:\n  interfaces: [${host}]\n  rules: []\n`);
  agent = spawn(process.execPath, [...(process.env.BENCH_AGENT_NODE_ARGS?.split(' ').filter(Boolean) ?? []), join(root, 'dist/cli/main.js'), 'agent', '--config', join(dir, 'config.yaml'), '--state-dir', dir, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const url = await new Promise((resolve, reject) => {
    agent?.stdout?.on('data', (d) => {
      out += d;
      const m = /api: (http:\/\/[\d.]+:\d+)\/v1/.exec(out);
      if (m && /^ready$/m.test(out)) resolve(m[1]);
    });
    agent?.on('exit', (c) => reject(new Error(`agent exited ${c}: ${out}`)));
  });
  // the audit lines go to stdout: keep reading so the pipe never fills
  agent.stdout?.resume();
  const token = readFileSync(join(dir, 'token'), 'utf8').trim();
  const auth = { authorization: `Bearer ${token}` };
  const policies = [JSON.stringify({ rules: [{ action: 'deny', match: 'tcp/22' }] }), JSON.stringify({ rules: [{ action: 'deny', match: 'tcp/23' }, { action: 'deny', match: 'icmp' }] })];

  /** @returns {Promise<{rate: number, lat: number[]}>} */
  const updates = async (/** @type {number} */ clients, /** @type {number} */ total) => {
    let n = 0;
    /** @type {number[]} */
    const lat = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (n < total) {
          const i = n++;
          const r = await request(`${url}/v1/filter`, 'PUT', policies[i % 2], auth);
          if (r.status !== 200) throw new Error(`PUT: ${r.status} ${r.body}`);
          lat.push(r.ms);
        }
      }),
    );
    return { rate: total / ((performance.now() - t0) / 1000), lat };
  };
  await updates(1, 200); // warm-up: JIT, keep-alive sockets, map pages
  const one = await updates(1, 3000);
  const many = await updates(16, 6000);

  const big = JSON.stringify({ rules: Array.from({ length: 10_000 }, (_, i) => ({ action: 'deny', match: `udp/${(i % 60000) + 1} from 10.${(i >> 8) & 255}.${i & 255}.0/24` })) });
  const p = await request(`${url}/v1/filter`, 'PUT', big, auth);
  if (p.status !== 200) throw new Error(`PUT 10,000 rules: ${p.status} ${p.body.slice(0, 300)}`);
  /** @type {number[]} */
  const scrapes = [];
  for (let i = 0; i < 21; i++) {
    const r = await request(`${url}/metrics`, 'GET', null);
    if (r.status !== 200) throw new Error(`GET /metrics: ${r.status}`);
    if (i) scrapes.push(r.ms);
  }
  const scrape = pct(scrapes, 50);
  const rows = [
    ['updates/s, 1 client', one.rate.toFixed(0), `>= ${GOALS.updatesPerSec}`, one.rate >= GOALS.updatesPerSec],
    ['updates/s, 16 clients', many.rate.toFixed(0), `>= ${GOALS.updatesPerSec}`, many.rate >= GOALS.updatesPerSec],
    ['PUT round trip p50 (1 client), ms', pct(one.lat, 50).toFixed(2), '', true],
    ['PUT round trip p99 (1 client), ms', pct(one.lat, 99).toFixed(2), `<= ${GOALS.p99Ms}`, pct(one.lat, 99) <= GOALS.p99Ms],
    ['PUT of 10,000 rules, ms', p.ms.toFixed(1), '', true],
    ['GET /metrics, 10,000 rules, median ms', scrape.toFixed(1), `<= ${GOALS.scrapeMs}`, scrape <= GOALS.scrapeMs],
    ['GET /metrics, 10,000 rules, worst ms', Math.max(...scrapes).toFixed(1), '', true],
  ];
  for (const [what, v, goal, ok] of rows) console.log(`${String(what).padEnd(40)} ${String(v).padStart(9)}  ${goal}${goal ? (ok ? '  ok' : '  MISSED') : ''}`);
  return rows.every((r) => r[3]);
}

main()
  .then((ok) => {
    teardown();
    process.exit(ok ? 0 : 1);
  })
  .catch((e) => {
    console.error(`bench api: ${e.message}`);
    teardown();
    process.exit(2);
  });
