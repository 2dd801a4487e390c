#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// Soak (issue 8, item 6): the agent filters a veth under continuous traffic while 16 API writers
// replace the policy and a Prometheus scrape runs every second, for --minutes (default 10). Every
// --sample seconds it reads the agent's resident memory and open descriptors from /proc. At the end:
// a compact table of the curves and the verdicts
//   memory flat   every 30 s row's mean RSS within 10% of the first minute after warm-up
//   fds flat      the same for open file descriptors
//   no errors     every write and every scrape answered 2xx
//   monotonic     counters of rules present in every policy, and the API request counters, never
//                 went down between two scrapes; the always-denied flow's counter grew
//
//   node tools/soak/agent-soak.mjs [--minutes 10] [--writers 16] [--pace 50] [--sample 5] [--warmup 60]
//   node tools/soak/agent-soak.mjs --big [--rules 100000] [--shape mixed|combined] [--format json|yaml]
//                                   [--services 10000]
//                                              rules at start (from the config file), then the
//                                              services through PUT /v1/lb/services: the agent's
//                                              RSS after each step (goal < 200 MB at every one)
// --pace is each writer's pause between two writes, in ms (the box is shared; 0 is flat out).
// Needs root and a build (npx tsc -p .; node tools/build-bpf.mjs). Exit 0 when every verdict holds,
// 1 when one fails, 2 when it could not run. Removes everything it made on every way out.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Harness, HarnessError, options, parseMetrics, processUse, prng, request, run, sleep } from '../lib/harness.mjs';

const o = options({ minutes: 10, writers: 16, pace: 50, sample: 5, warmup: 60, row: 30, seed: 1, big: false, rules: 100_000, shape: 'mixed', format: 'json', services: 10_000 });
const h = new Harness();

/** The traffic: UDP to port 9 (denied by every policy) and to port 10 (allowed), about 1,000 packets/s each. */
const SENDER = `
import dgram from 'node:dgram';
const [dst] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
const payload = Buffer.alloc(64);
setInterval(() => { s.send(payload, 9, dst); s.send(payload, 10, dst); }, 1);
`;

const ALWAYS = [
  { action: 'deny', match: 'udp/9' },
  { action: 'deny', match: 'icmp' },
];

function policy(/** @type {() => number} */ rnd) {
  const rules = [...ALWAYS];
  const n = Math.floor(rnd() * 24);
  for (let i = 0; i < n; i++) {
    const k = Math.floor(rnd() * 3);
    const x = Math.floor(rnd() * 250);
    if (k === 0) rules.push({ action: 'deny', match: `tcp/${1000 + Math.floor(rnd() * 5000)}` });
    else if (k === 1) rules.push({ action: 'deny', match: `udp/${2000 + Math.floor(rnd() * 500)} from 10.${x}.${Math.floor(rnd() * 250)}.0/24` });
    else rules.push({ action: 'allow', match: `tcp/443 from 192.168.${x}.0/24` });
  }
  return JSON.stringify({ rules });
}

const mb = (/** @type {number} */ kb) => (kb / 1024).toFixed(1);
const mean = (/** @type {number[]} */ xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const pct = (/** @type {number[]} */ xs, /** @type {number} */ p) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))] : NaN);

async function soak() {
  const v = h.veth('soak');
  const dir = h.tempDir('soak');
  const stateDir = join(dir, 'state');
  h.agentCleanupOnExit(stateDir, [v.host]);
  writeFileSync(join(dir, 'config.yaml'), `filter:\n  interfaces: [${v.host}]\n  rules: [${ALWAYS.map((r) => `"${r.action} ${r.match}"`).join(', ')}]\n  default: allow\n`);
  const a = await h.agent({ config: join(dir, 'config.yaml'), stateDir });
  const auth = { authorization: `Bearer ${a.token}` };
  h.nodeIn(v.ns, SENDER, [v.hostIp]);
  console.log(`soak: agent pid ${a.pid} on ${v.host}; ${o.writers} writers (pause ${o.pace} ms), a scrape every 1 s, ${o.minutes} min, samples every ${o.sample} s, warm-up ${o.warmup} s`);

  const t0 = performance.now();
  const end = t0 + Number(o.minutes) * 60_000;
  const elapsed = () => (performance.now() - t0) / 1000;
  let writes = 0;
  /** @type {Map<string, number>} */
  const errors = new Map();
  const error = (/** @type {string} */ k) => errors.set(k, (errors.get(k) ?? 0) + 1);
  /** @type {number[]} */
  const writeMs = [];

  const writers = Array.from({ length: Number(o.writers) }, async (_, w) => {
    const rnd = prng(Number(o.seed) * 1000 + w);
    while (performance.now() < end) {
      const r = await request(`${a.url}/v1/filter`, 'PUT', policy(rnd), auth);
      writes++;
      if (writeMs.length < 1_000_000) writeMs.push(r.ms);
      if (r.status !== 200) error(`PUT ${r.status || r.error} ${r.body.slice(0, 100)}`);
      if (Number(o.pace)) await sleep(Number(o.pace));
    }
  });

  const rule = (/** @type {string} */ m, /** @type {string} */ act) => `ebpfnet_filter_packets_total{interface="${v.host}",rule="${m}",action="${act}"}`;
  const watched = ALWAYS.map((r) => rule(r.match, r.action));
  /** @type {Map<string, number> | null} */
  let prev = null;
  let scrapes = 0;
  /** @type {string[]} */
  const nonMonotonic = [];
  /** @type {number[]} */
  const scrapeMs = [];
  let firstDrops = NaN;
  let lastDrops = NaN;
  const scraper = (async () => {
    while (performance.now() < end) {
      const next = performance.now() + 1000;
      const r = await request(`${a.url}/metrics`, 'GET');
      scrapes++;
      scrapeMs.push(r.ms);
      if (r.status !== 200) error(`GET /metrics ${r.status || r.error}`);
      else {
        const m = parseMetrics(r.body);
        for (const k of [...watched, ...[...m.keys()].filter((x) => x.startsWith('ebpfnet_api_requests_total'))]) {
          const now = m.get(k);
          if (now === undefined) {
            if (watched.includes(k)) nonMonotonic.push(`${k} missing at ${elapsed().toFixed(0)} s`);
            continue;
          }
          const before = prev?.get(k);
          if (before !== undefined && now < before) nonMonotonic.push(`${k}: ${before} -> ${now} at ${elapsed().toFixed(0)} s`);
        }
        const drops = m.get(watched[0]) ?? NaN;
        if (Number.isNaN(firstDrops)) firstDrops = drops;
        lastDrops = drops;
        prev = m;
      }
      await sleep(Math.max(0, next - performance.now()));
    }
  })();

  /** @type {Array<{ t: number, rssKb: number, fds: number, writes: number, errors: number }>} */
  const samples = [];
  const sampler = (async () => {
    while (performance.now() < end) {
      const u = processUse(a.pid);
      samples.push({ t: elapsed(), ...u, writes, errors: [...errors.values()].reduce((x, y) => x + y, 0) });
      await sleep(Number(o.sample) * 1000);
    }
  })();
  await Promise.all([...writers, scraper, sampler]);
  samples.push({ t: elapsed(), ...processUse(a.pid), writes, errors: [...errors.values()].reduce((x, y) => x + y, 0) });

  // the curves: one row per --row seconds
  console.log(`\n${'t (s)'.padStart(6)} ${'RSS MB min/mean/max'.padStart(20)} ${'fds'.padStart(8)} ${'writes/s'.padStart(9)} ${'errors'.padStart(7)}`);
  /** @type {Array<{ from: number, rss: number, fds: number }>} */
  const rows = [];
  for (let from = 0; from < samples[samples.length - 1].t; from += Number(o.row)) {
    const s = samples.filter((x) => x.t >= from && x.t < from + Number(o.row));
    if (!s.length) continue;
    const rss = s.map((x) => x.rssKb);
    const fds = s.map((x) => x.fds);
    const wr = (s[s.length - 1].writes - s[0].writes) / Math.max(1, s[s.length - 1].t - s[0].t);
    rows.push({ from, rss: mean(rss), fds: mean(fds) });
    console.log(`${String(from).padStart(6)} ${`${mb(Math.min(...rss))}/${mb(mean(rss))}/${mb(Math.max(...rss))}`.padStart(20)} ${`${Math.min(...fds)}-${Math.max(...fds)}`.padStart(8)} ${wr.toFixed(0).padStart(9)} ${String(s[s.length - 1].errors).padStart(7)}`);
  }

  const after = rows.filter((r) => r.from >= Number(o.warmup));
  const base = after.filter((r) => r.from < Number(o.warmup) + 60);
  const flat = (/** @type {'rss' | 'fds'} */ k) => {
    if (!base.length) return { ok: false, worst: NaN };
    const b = mean(base.map((r) => r[k]));
    const worst = Math.max(...after.map((r) => Math.abs(r[k] / b - 1)));
    return { ok: worst <= 0.1, worst, b };
  };
  const rss = flat('rss');
  const fds = flat('fds');
  const errorCount = [...errors.values()].reduce((x, y) => x + y, 0);
  const grew = lastDrops > firstDrops;
  console.log(`\nwrites: ${writes} PUTs (${(writes / elapsed()).toFixed(0)}/s), round trip p50 ${pct(writeMs, 50).toFixed(1)} ms, p99 ${pct(writeMs, 99).toFixed(1)} ms; scrapes: ${scrapes}, p50 ${pct(scrapeMs, 50).toFixed(1)} ms, worst ${Math.max(...scrapeMs).toFixed(1)} ms; udp/9 drops counted: ${lastDrops - firstDrops}`);
  for (const [k, n] of errors) console.log(`  error x${n}: ${k}`);
  for (const k of nonMonotonic.slice(0, 10)) console.log(`  not monotonic: ${k}`);
  const verdicts = [
    ['memory flat (RSS within 10% after warm-up)', rss.ok, `baseline ${mb(rss.b ?? NaN)} MB, worst row ${(rss.worst * 100).toFixed(1)}% off`],
    ['fds flat (within 10% after warm-up)', fds.ok, `baseline ${(fds.b ?? NaN).toFixed(0)}, worst row ${(fds.worst * 100).toFixed(1)}% off`],
    ['no error responses', errorCount === 0, `${errorCount} of ${writes + scrapes}`],
    ['counters monotonic, drops counted', nonMonotonic.length === 0 && grew, `${nonMonotonic.length} decreases in ${scrapes} scrapes`],
  ];
  for (const [what, ok, detail] of verdicts) console.log(`${ok ? 'PASS' : 'FAIL'}  ${String(what).padEnd(44)} ${detail}`);
  return verdicts.every((x) => x[1]);
}

/** 10,000 services of 2 backends each: VIP 10.97.x.y:80/tcp, backends in 10.98/16 and 10.99/16. */
function services(/** @type {number} */ n) {
  return Array.from({ length: n }, (_, i) => {
    const ip = `${(i >> 8) & 255}.${i & 255}`;
    return { service: `10.97.${ip}:80/tcp`, backends: [`10.98.${ip}:8080`, `10.99.${ip}:8080,weight=2`] };
  });
}

/**
 * 100,000 rules at start, through the config file, then 10,000 services through the API: what the
 * agent holds in memory for them, after each step and after each large read. The balancer runs on
 * a cgroup of this script's own (nothing is in it) with its pins in a directory of its own.
 */
async function big() {
  const v = h.veth('big');
  const dir = h.tempDir('soak-big');
  const stateDir = join(dir, 'state');
  const { cgroup: cg, pinDir } = await h.lbSandbox('soak');
  // the agent and its --cleanup (run on every way out, before the sandbox goes) inherit this
  process.env.EBPFNET_LB_PIN_DIR = pinDir;
  h.agentCleanupOnExit(stateDir, [v.host]);
  const n = Number(o.rules);
  // mixed (default): up to 60,000 port rules, the rest a blocklist of /32 sources; combined: every
  // rule a port AND a source (udp/P from 10.a.b.0/24)
  const ports = Math.min(60_000, Math.floor(n * 0.6));
  const rules = Array.from({ length: n }, (_, i) =>
    o.shape === 'combined' ? `deny udp/${(i % 60000) + 1} from 10.${(i >> 8) & 255}.${i & 255}.0/24` : i < ports ? `deny udp/${i + 1}` : `deny from 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`,
  );
  // --format json (default): the config file as JSON, which the agent reads with JSON.parse;
  // yaml: the same as a YAML flow list (the yaml library needs ~150 MB more while it parses it)
  const config = { api: { bodyLimit: 67108864 }, filter: { interfaces: [v.host], maxRules: Math.max(16384, n), rules, default: 'allow' }, lb: { cgroup: cg, services: [] } };
  writeFileSync(
    join(dir, 'config.yaml'),
    o.format === 'yaml'
      ? `api:\n  bodyLimit: 67108864\nfilter:\n  interfaces: [${v.host}]\n  maxRules: ${Math.max(16384, n)}\n  rules: [${rules.map((r) => `"${r}"`).join(', ')}]\n  default: allow\nlb:\n  cgroup: ${cg}\n  services: []\n`
      : JSON.stringify(config),
  );
  const t0 = performance.now();
  const a = await h.agent({ config: join(dir, 'config.yaml'), stateDir, timeoutMs: 600_000 });
  const auth = { authorization: `Bearer ${a.token}` };
  const startS = (performance.now() - t0) / 1000;
  /** @type {number[]} */
  const rss = [];
  const hwm = () => Number(/^VmHWM:\s+(\d+)/m.exec(readFileSync(`/proc/${a.pid}/status`, 'utf8'))?.[1] ?? NaN);
  // the peak of start itself (parse and compile of the whole policy), then the peak counted afresh
  // from ready on (writing 5 to clear_refs resets VmHWM to the current RSS)
  const startPeak = hwm();
  writeFileSync(`/proc/${a.pid}/clear_refs`, '5');
  const use = () => {
    const u = processUse(a.pid);
    rss.push(u.rssKb);
    return `RSS ${mb(u.rssKb)} MB (peak since ready ${mb(hwm())} MB), ${u.fds} fds`;
  };
  const get = async (/** @type {string} */ path, /** @type {(body: string) => boolean} */ ok) => {
    const r = await request(`${a.url}${path}`, 'GET', null, {}, 300_000);
    if (r.status !== 200 || !ok(r.body)) throw new HarnessError(`GET ${path}: ${r.status}, ${r.body.slice(0, 100)}`);
    console.log(`big: GET ${path} (${(r.body.length / 1e6).toFixed(1)} MB) in ${r.ms.toFixed(0)} ms; ${use()}`);
    return r.body;
  };
  console.log(`big: ${n} rules (${o.shape}, ${o.format} config) on ${v.host}: agent ready in ${startS.toFixed(1)} s (start's peak ${mb(startPeak)} MB); ${use()}`);
  await get('/v1/filter', (b) => JSON.parse(b).rules.length === n);
  await get('/metrics', (b) => b.includes('ebpfnet_filter_packets_total'));
  await get('/v1/filter/stats', (b) => JSON.parse(b).interfaces[0].rules.length === n);
  const m = Number(o.services);
  const body = JSON.stringify({ services: services(m) });
  const put = await request(`${a.url}/v1/lb/services`, 'PUT', body, auth, 300_000);
  if (put.status !== 200 || JSON.parse(put.body).services.length !== m) throw new HarnessError(`PUT /v1/lb/services: ${put.status}, ${put.body.slice(0, 200)}`);
  console.log(`big: PUT /v1/lb/services, ${m} services (${(body.length / 1e6).toFixed(1)} MB) in ${put.ms.toFixed(0)} ms; ${use()}`);
  await get('/v1/lb/services', (b) => JSON.parse(b).services.length === m);
  await get('/metrics', (b) => b.includes('ebpfnet_lb_services'));
  await get('/v1/filter/stats', (b) => JSON.parse(b).interfaces[0].rules.length === n);
  const worst = Math.max(...rss);
  const ok = worst < 200 * 1024;
  console.log(`${ok ? 'PASS' : 'FAIL'}  agent RSS with ${n} rules and ${m} services below 200 MB at every step: worst ${mb(worst)} MB, last ${mb(rss[rss.length - 1])} MB; peak within the requests since ready ${mb(hwm())} MB`);
  return ok;
}

run(h, 'soak', async () => {
  if (process.getuid?.() !== 0) throw new HarnessError('needs root');
  return o.big ? big() : soak();
});
