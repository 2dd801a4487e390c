#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The balancer under churn (issue 8, item 5). This process joins a test cgroup the balancer is
// attached to, and connects to a VIP in a loop from --clients concurrent loops while it adds,
// drains, re-activates and removes backends (and now and then every one of them) through the lb
// datapath (dist/lb: Balancer.upsert / remove) every --interval ms, for --seconds.
//
// The backends are TCP servers in a network namespace of their own, each answering its name; the
// VIP itself has a server too ("plain"): what a connection reaches when nothing translates it. A
// removed backend's server keeps running, so a connection sent there shows up instead of failing.
//
// Ordering is exact: updates run in this thread and return before any later connect() starts, so
// every connection belongs to one epoch (the updates returned before it began). For a connection of
// epoch E the rule is: it reaches a backend that is active in E; it fails (ECONNREFUSED) only when E
// has no active backend; it reaches the plain VIP only when E has no service at all. Anything else
// is counted as misrouted: to a removed backend, to a draining one, untranslated, or failed.
//
//   node tools/churn/lb-churn.mjs [--seconds 60] [--interval 20] [--clients 4] [--seed 1] [--json]
// Needs root and a build. Exit 0 when nothing was misrouted, 1 otherwise, 2 when it could not run.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Harness, HarnessError, options, prng, root, run, sh, sleep } from '../lib/harness.mjs';

const o = options({ seconds: 60, interval: 20, clients: 4, seed: 1, json: false });
const h = new Harness();
const rnd = prng(Number(o.seed));
const dist = (/** @type {string} */ p) => import(pathToFileURL(join(root, 'dist', p)).href);

/** Servers in the namespace: `NAME=IP:PORT ...`, each answers its name and a newline, then closes. */
const SERVERS = `
import { createServer } from 'node:net';
let up = 0;
const all = process.argv.slice(1);
for (const a of all) {
  const [name, hp] = a.split('=');
  const i = hp.lastIndexOf(':');
  createServer((s) => { s.on('error', () => {}); s.end(name + '\\n'); }).listen(Number(hp.slice(i + 1)), hp.slice(0, i), () => { if (++up === all.length) process.stdout.write('listening\\n'); });
}
`;

/** One connection: the name of what answered, or the error code. */
function dial(/** @type {string} */ host, /** @type {number} */ port) {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let buf = '';
    const t = setTimeout(() => {
      s.destroy();
      resolve('TIMEOUT');
    }, 3000);
    s.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) {
        clearTimeout(t);
        s.destroy();
        resolve(buf.slice(0, i));
      }
    });
    s.on('error', (/** @type {NodeJS.ErrnoException} */ e) => {
      clearTimeout(t);
      resolve(e.code ?? 'ERROR');
    });
  });
}

async function main() {
  if (process.getuid?.() !== 0) throw new HarnessError('needs root');
  const { attachBalancer, detachBalancer, Balancer, makeService } = await dist('lb/index.js');

  const v = h.veth('churn');
  const subnet = v.peerIp.replace(/\.\d+$/, '');
  const vip = `${subnet}.100`;
  const pool = Array.from({ length: 8 }, (_, i) => ({ name: `b${i + 3}`, ip: `${subnet}.${i + 3}` }));
  for (const ip of [...pool.map((b) => b.ip), vip]) sh('ip', ['addr', 'add', `${ip}/24`, 'dev', v.peer], { ns: v.ns });
  const servers = h.nodeIn(v.ns, SERVERS, [...pool.map((b) => `${b.name}=${b.ip}:8080`), `plain=${vip}:80`]);
  await new Promise((res, rej) => {
    servers.stdout?.once('data', res);
    servers.once('exit', (c) => rej(new HarnessError(`the backend servers exited (${c})`)));
  });

  // the balancer on a cgroup of our own, pinned where nothing else looks
  const { cgroupRoot: cgRoot, cgroup: cg, pinDir } = await h.lbSandbox('churn');
  h.later(() => detachBalancer({ pinDir }));
  attachBalancer({ cgroup: cg, pinDir });
  // the ids of what it attached, for a caller checking they are gone afterwards (--json)
  const programs = /** @type {Array<{ id: number }>} */ (JSON.parse(sh('bpftool', ['-j', 'cgroup', 'show', cg]) || '[]')).map((p) => p.id);
  const lb = Balancer.open({ pinDir });
  h.later(() => lb.close());
  // from here on this process's connect() calls go through the balancer
  writeFileSync(join(cg, 'cgroup.procs'), String(process.pid));
  h.later(() => writeFileSync(join(cgRoot, 'cgroup.procs'), String(process.pid)));

  /** @type {Map<string, 'active' | 'draining'>} backend name -> state; absent ones are not in it */
  const live = new Map();
  /** what each epoch allowed: the active backends, the draining ones, whether the service existed */
  /** @type {Array<{ active: Set<string>, draining: Set<string>, exists: boolean }>} */
  const epochs = [{ active: new Set(), draining: new Set(), exists: false }];
  const kinds = { add: 0, drain: 0, undrain: 0, remove: 0, empty: 0 };
  /** @type {number[]} */
  const updateMs = [];
  let exists = false;
  const apply = () => {
    const t0 = performance.now();
    const backends = pool.filter((b) => live.has(b.name)).map((b) => `${b.ip}:8080${live.get(b.name) === 'draining' ? ',state=draining' : ''}`);
    if (backends.length) {
      lb.upsert(makeService(`${vip}:80/tcp`, backends));
      exists = true;
    } else if (exists) {
      lb.remove(makeService(`${vip}:80/tcp`, [`${pool[0].ip}:8080`]));
      exists = false;
    }
    updateMs.push(performance.now() - t0);
    const names = (/** @type {string} */ s) => new Set(pool.filter((b) => live.get(b.name) === s).map((b) => b.name));
    epochs.push({ active: names('active'), draining: names('draining'), exists });
  };

  const update = () => {
    const r = rnd();
    const absent = pool.filter((b) => !live.has(b.name));
    const active = pool.filter((b) => live.get(b.name) === 'active');
    const draining = pool.filter((b) => live.get(b.name) === 'draining');
    const one = (/** @type {Array<{ name: string }>} */ xs) => xs[Math.floor(rnd() * xs.length)].name;
    if (r < 0.04 && live.size) {
      live.clear();
      kinds.empty++;
    } else if ((r < 0.35 || live.size < 2) && absent.length) {
      live.set(one(absent), 'active');
      kinds.add++;
    } else if (r < 0.55 && active.length) {
      live.set(one(active), 'draining');
      kinds.drain++;
    } else if (r < 0.7 && draining.length) {
      live.set(one(draining), 'active');
      kinds.undrain++;
    } else if (live.size) {
      live.delete(one([...active, ...draining]));
      kinds.remove++;
    } else return;
    apply();
  };

  // the clients: each connection is tallied under the epoch it started in
  /** @type {Array<Map<string, number>>} */
  const seen = [];
  const end = performance.now() + Number(o.seconds) * 1000;
  let running = true;
  // the first service before the first client: a connect() runs on the tick after net.connect()
  live.set(pool[0].name, 'active');
  live.set(pool[1].name, 'active');
  apply();
  const clients = Array.from({ length: Number(o.clients) }, async () => {
    while (running) {
      const e = epochs.length - 1;
      const got = await dial(vip, 80);
      const m = seen[e] ?? (seen[e] = new Map());
      m.set(got, (m.get(got) ?? 0) + 1);
    }
  });
  while (performance.now() < end) {
    await sleep(Number(o.interval));
    update();
  }
  running = false;
  await Promise.all(clients);

  const out = { updates: epochs.length - 1, kinds, connections: 0, ok: 0, refusedNoBackend: 0, plainNoService: 0, toRemoved: 0, toDraining: 0, untranslated: 0, failed: 0, epochsWithoutBackend: 0 };
  /** @type {string[]} */
  const examples = [];
  seen.forEach((m, e) => {
    const ep = epochs[e];
    if (!ep.active.size) out.epochsWithoutBackend++;
    for (const [got, n] of m) {
      out.connections += n;
      let bad = '';
      if (ep.active.has(got)) out.ok += n;
      else if (got === 'plain') {
        if (!ep.exists) out.plainNoService += n;
        else ((out.untranslated += n), (bad = 'untranslated'));
      } else if (pool.some((b) => b.name === got)) {
        if (ep.draining.has(got)) ((out.toDraining += n), (bad = 'to a draining backend'));
        else ((out.toRemoved += n), (bad = 'to a removed backend'));
      } else if (!ep.active.size && got === 'ECONNREFUSED') out.refusedNoBackend += n;
      else ((out.failed += n), (bad = `failed: ${got}`));
      if (bad && examples.length < 10) examples.push(`epoch ${e} (active ${[...ep.active].join(',') || 'none'}; draining ${[...ep.draining].join(',') || 'none'}): ${n} ${bad} (${got})`);
    }
  });
  const misrouted = out.toRemoved + out.toDraining + out.untranslated + out.failed;
  const ms = [...updateMs].sort((a, b) => a - b);
  if (o.json) console.log(JSON.stringify({ ...out, misrouted, programs }));
  else {
    console.log(`lb-churn: ${out.updates} updates in ${o.seconds} s (add ${kinds.add}, drain ${kinds.drain}, re-activate ${kinds.undrain}, remove ${kinds.remove}, remove all ${kinds.empty}); update p50 ${ms[ms.length >> 1].toFixed(2)} ms, worst ${ms[ms.length - 1].toFixed(2)} ms`);
    console.log(`lb-churn: ${out.connections} connections from ${o.clients} clients: ${out.ok} to an active backend, ${out.refusedNoBackend} refused while no backend was active, ${out.plainNoService} to the plain VIP while there was no service (${out.epochsWithoutBackend} epochs without a backend)`);
    console.log(`lb-churn: misrouted ${misrouted}: to a removed backend ${out.toRemoved}, to a draining backend ${out.toDraining}, untranslated ${out.untranslated}, failed ${out.failed}`);
  }
  for (const x of examples) console.log(`  ${x}`);
  return misrouted === 0;
}

run(h, 'lb-churn', main);
