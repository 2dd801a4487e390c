#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// Crash and restart (issue 8, item 4). The agent filters the host end of a veth (in a namespace of
// the script's own, see Harness.veth); a client streams writes (PUT a whole policy, POST one rule)
// one at a time; at a random moment the agent is killed with SIGKILL, then started again on the
// same state directory; --cycles times.
//
// The rule checked, precisely: a write is *acknowledged* when its 2xx answer arrived, and *in
// flight* when it was sent and no answer came (the connection broke: the agent may have applied it
// or not). The client never has more than one write in flight. Then, both while no agent runs and
// after the restart, the policy in force must be exactly the last acknowledged one or exactly the
// in-flight one, never a mix nor an older one. The desired state on disk (the snapshot state.json
// plus its journal state.journal, read with the agent's own StateStore.load) is checked the same
// way while no agent runs, and the restarted agent must put exactly that policy in force; after the
// restart its GET /v1/filter, its state on disk and the datapath's own record name it too.
//
// "In force" is measured with packets, not read from the agent: every policy denies udp/9 and a set
// of marker ports (udp/P, one fresh P per write); after each kill and each restart a probe sends
// packets from the namespace to every marker the last acknowledged and the in-flight policy name
// (plus one never used) and a port counts as denied exactly when none of its packets arrive.
// Besides: a flood to udp/9 runs all the time and a receiver listens on it, so one packet through
// means the filter was absent; a watcher polls the interface's XDP program every 50 ms and it must
// stay the same program (adopted, never reloaded); after every restart the state file parses, the
// pins are the same files, the state directory holds no leftovers, and the count of BPF programs and maps that
// belong to this filter (pinned, attached, or held by the agent's descriptors) is what it was.
//
//   node tools/crash/agent-kill.mjs [--cycles 50] [--seed 1] [--min-ms 50] [--max-ms 1500]
// Needs root and a build. Prints one line per cycle and a summary; exit 0 when no violation, 1
// otherwise, 2 when it could not run. Removes everything it made on every way out.
import dgram from 'node:dgram';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { dropConnections, Harness, HarnessError, options, parseMetrics, prng, request, root, run, sh, sleep } from '../lib/harness.mjs';

/** The agent's own reader of its desired state: the snapshot, then the journal's acknowledged lines. */
const { StateStore } = await import(pathToFileURL(join(root, 'dist', 'agent', 'store.js')).href);
/** the filter policy the state directory holds, as marker ports */
const storedPorts = (/** @type {string} */ dir) => portsOf(StateStore.load(dir).filter.spec.rules);
/** The filter datapath's reader of its record in /run (which rule counts in which slot). */
const { readRecord } = await import(pathToFileURL(join(root, 'dist', 'filter', 'record.js')).href);
/** Where a pinned filter of this network namespace is (pins and record, by namespace and ifindex). */
const { filterSite, findLocal } = await import(pathToFileURL(join(root, 'dist', 'filter', 'pins.js')).href);

const o = options({ cycles: 50, seed: 1, 'min-ms': 50, 'max-ms': 1500 });
const h = new Harness();
const rnd = prng(Number(o.seed));
/** what an agent's state directory may hold */
const STATE_FILES = ['audit.log', 'state.journal', 'state.json', 'token'];

/** The namespace's side: udp/9 every millisecond, and `PORT,PORT,... N` lines: N packets to each. */
const SENDER = `
import dgram from 'node:dgram';
import readline from 'node:readline';
const [dst] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
const b = Buffer.alloc(32);
setInterval(() => s.send(b, 9, dst), 1);
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  const [ports, n] = l.split(' ');
  for (let i = 0; i < Number(n); i++) for (const p of ports.split(',')) s.send(b, Number(p), dst);
  process.stdout.write('sent\\n');
});
`;

/** @typedef {Set<number>} Policy the denied udp ports besides 9 */
const key = (/** @type {Policy} */ p) => [...p].sort((a, b) => a - b).join(',') || '(none)';
const rulesOf = (/** @type {Policy} */ p) => [{ action: 'deny', match: 'udp/9' }, ...[...p].map((x) => ({ action: 'deny', match: `udp/${x}` }))];
/** a policy as the agent shows it: {action, match}[] -> the marker ports; anything else is reported */
function portsOf(/** @type {Array<{ action: string, match: string }>} */ rules) {
  /** @type {Policy} */
  const p = new Set();
  let nine = false;
  for (const r of rules) {
    const m = /^udp\/(\d+)$/.exec(r.match);
    if (r.action !== 'deny' || !m) throw new Error(`unexpected rule ${r.action} ${r.match}`);
    if (m[1] === '9') nine = true;
    else p.add(Number(m[1]));
  }
  if (!nine) throw new Error('udp/9 is missing');
  return p;
}
const same = (/** @type {Policy} */ a, /** @type {Policy | null} */ b) => !!b && a.size === b.size && [...a].every((x) => b.has(x));

async function main() {
  if (process.getuid?.() !== 0) throw new HarnessError('needs root');
  const v = h.veth('kill');
  const dir = h.tempDir('agent-kill');
  const stateDir = join(dir, 'state');
  h.agentCleanupOnExit(stateDir, [v.host]);
  writeFileSync(join(dir, 'config.yaml'), `filter:\n  interfaces: [${v.host}]\n  rules: ["deny udp/9"]\n  default: allow\n`);

  // the sink for udp/9: every packet that arrives passed a filter that should have dropped it
  let leaked = 0;
  const sink = dgram.createSocket('udp4');
  sink.on('message', () => leaked++);
  await new Promise((r) => sink.bind(9, v.hostIp, () => r(null)));
  h.later(() => sink.close());

  let listen = `127.0.0.1:${20000 + Math.floor(rnd() * 40000)}`;
  /** @returns {ReturnType<Harness['agent']>} */
  const startAgent = async () => {
    for (let tries = 0; ; tries++) {
      try {
        return await h.agent({ config: join(dir, 'config.yaml'), stateDir, listen });
      } catch (e) {
        if (tries > 3 || !/address is in use/.test(/** @type {Error} */ (e).message)) throw e;
        listen = `127.0.0.1:${20000 + Math.floor(rnd() * 40000)}`;
      }
    }
  };
  let a = await startAgent();
  const sender = h.nodeIn(v.ns, SENDER, [v.hostIp]);
  /** @type {Array<() => void>} */
  const sentWaiters = [];
  sender.stdout?.setEncoding('utf8').on('data', (d) => {
    for (const _ of String(d).match(/sent/g) ?? []) sentWaiters.shift()?.();
  });

  /** Which of `ports` the kernel denies now: packets from the namespace, a receiver per port here. */
  const denied = async (/** @type {number[]} */ ports) => {
    const socks = await Promise.all(
      ports.map(
        (p) =>
          new Promise((res, rej) => {
            const s = dgram.createSocket('udp4');
            const got = { s, p, n: 0 };
            s.on('message', () => got.n++);
            s.once('error', rej);
            s.bind(p, v.hostIp, () => res(got));
          }),
      ),
    );
    await new Promise((r) => {
      sentWaiters.push(() => r(null));
      sender.stdin?.write(`${ports.join(',')} 3\n`);
    });
    await sleep(300);
    const out = new Set(/** @type {Array<{ s: dgram.Socket, p: number, n: number }>} */ (socks).filter((x) => x.n === 0).map((x) => x.p));
    for (const x of /** @type {Array<{ s: dgram.Socket }>} */ (socks)) x.s.close();
    return out;
  };

  // the watcher: the interface's XDP program, every 50 ms, all run long
  const xdpProg = () => {
    const l = JSON.parse(sh('ip', ['-j', '-d', 'link', 'show', 'dev', v.host]))[0];
    return /** @type {number | null} */ (l?.xdp?.prog?.id ?? l?.xdp?.attached?.[0]?.prog?.id ?? null);
  };
  const prog0 = xdpProg();
  if (!prog0) throw new HarnessError(`no XDP program on ${v.host} after the agent started`);
  let polls = 0;
  /** @type {string[]} */
  const watchLog = [];
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const id = xdpProg();
      polls++;
      if (id !== prog0 && watchLog.length < 20) watchLog.push(`XDP program ${id ?? 'absent'} instead of ${prog0} at poll ${polls}`);
      await sleep(50);
    }
  })();

  // what belongs to this filter in the kernel: pinned maps, the attached program, the agent's fds
  const site = filterSite('crash test');
  const pin = findLocal(site, v.host);
  if (!pin) throw new Error(`no pinned filter on ${v.host} after the agent started`);
  const pinDir = pin.dir;
  const owned = (/** @type {number | null} */ pid) => {
    const pinnedMaps = new Set(
      readdirSync(pinDir)
        .filter((f) => f !== 'link')
        .map((f) => /** @type {number} */ (JSON.parse(sh('bpftool', ['-j', 'map', 'show', 'pinned', join(pinDir, f)])).id)),
    );
    const heldProgs = new Set();
    const heldMaps = new Set();
    if (pid) {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        let target = '';
        try {
          target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          continue;
        }
        if (!target.startsWith('anon_inode:bpf')) continue;
        const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
        const pm = /^prog_id:\s+(\d+)/m.exec(info);
        const mm = /^map_id:\s+(\d+)/m.exec(info);
        if (pm) heldProgs.add(Number(pm[1]));
        if (mm) heldMaps.add(Number(mm[1]));
      }
    }
    /** @type {Array<{ id: number, name?: string, map_ids?: number[] }>} */
    const progs = JSON.parse(sh('bpftool', ['-j', 'prog', 'show']));
    /** @type {Array<{ id: number }>} */
    const maps = JSON.parse(sh('bpftool', ['-j', 'map', 'show']));
    const ours = progs.filter((p) => p.id === xdpProg() || heldProgs.has(p.id) || (p.map_ids ?? []).some((m) => pinnedMaps.has(m)));
    const ourMaps = new Set([...pinnedMaps, ...heldMaps, ...ours.flatMap((p) => p.map_ids ?? [])]);
    return { progs: ours.length, maps: ourMaps.size, allProgs: progs.length, allMaps: maps.length };
  };
  const files = (/** @type {string} */ d) => readdirSync(d).sort().join(',');
  const base = { ...owned(a.pid), pins: files(pinDir), state: files(stateDir) };
  console.log(`agent-kill: ${o.cycles} cycles, seed ${o.seed}, kill ${o['min-ms']}-${o['max-ms']} ms after ready; ${v.host} XDP program ${prog0}; this filter: ${base.progs} programs, ${base.maps} maps (machine: ${base.allProgs} programs, ${base.allMaps} maps)`);

  let nextPort = 20000;
  /** @type {Policy} */
  let acked = new Set();
  /** @type {Policy | null} */
  let inFlight = null;
  let acks = 0;
  let writes = 0;
  /** @type {string[]} */
  const violations = [];
  const violate = (/** @type {number} */ c, /** @type {string} */ s) => {
    violations.push(`cycle ${c}: ${s}`);
    console.log(`  VIOLATION cycle ${c}: ${s}`);
  };
  let lastNine = 0;
  let survived = 0;
  const byOutcome = { acked: 0, inFlight: 0 };

  /** One write at a time until the agent dies. */
  const writeUntilDown = async (/** @type {Awaited<ReturnType<Harness['agent']>>} */ ag, /** @type {{ down: boolean }} */ flag) => {
    const auth = { authorization: `Bearer ${ag.token}` };
    while (!flag.down) {
      const put = rnd() < 0.5 || acked.size > 6;
      const p = nextPort++;
      /** @type {Policy} */
      const want = put ? new Set([p]) : new Set([...acked, p]);
      inFlight = want;
      writes++;
      const r = put
        ? await request(`${ag.url}/v1/filter`, 'PUT', JSON.stringify({ rules: rulesOf(want) }), auth)
        : await request(`${ag.url}/v1/filter/rules`, 'POST', JSON.stringify({ action: 'deny', match: `udp/${p}` }), auth);
      if (r.status === 200 || r.status === 201) {
        acked = want;
        inFlight = null;
        acks++;
      } else if (r.status === 0) {
        // refused: never reached the agent; anything else (reset, hang-up) may have been applied
        if (r.error === 'ECONNREFUSED') inFlight = null;
        return;
      } else {
        inFlight = null;
        throw new HarnessError(`${put ? 'PUT' : 'POST'} answered ${r.status}: ${r.body.slice(0, 200)}`);
      }
    }
  };

  /** The policy in force must be the acknowledged or the in-flight one; returns which. */
  const checkInForce = async (/** @type {number} */ c, /** @type {string} */ when) => {
    const probe = [...new Set([...acked, ...(inFlight ?? []), nextPort + 1000])];
    const d = await denied(probe);
    const isAcked = probe.every((p) => d.has(p) === acked.has(p));
    const isFlight = !!inFlight && probe.every((p) => d.has(p) === /** @type {Policy} */ (inFlight).has(p));
    if (!isAcked && !isFlight) violate(c, `${when}: denied ${key(d)}; acknowledged ${key(acked)}, in flight ${inFlight ? key(inFlight) : 'none'}`);
    return { d, isAcked, isFlight };
  };

  for (let c = 1; c <= Number(o.cycles); c++) {
    const flag = { down: false };
    const w = writeUntilDown(a, flag);
    const wait = Number(o['min-ms']) + rnd() * (Number(o['max-ms']) - Number(o['min-ms']));
    await Promise.race([sleep(wait), w]);
    flag.down = true;
    a.proc.kill('SIGKILL');
    await w;
    await new Promise((r) => (a.proc.exitCode !== null || a.proc.signalCode !== null ? r(null) : a.proc.once('exit', r)));
    dropConnections();

    const down = await checkInForce(c, 'while no agent ran');
    // what a 2xx promised is on disk: the stored policy is the acknowledged or the in-flight one
    /** @type {Policy | null} */
    let stored = null;
    try {
      stored = storedPorts(stateDir);
      if (!same(stored, acked) && !same(stored, inFlight)) violate(c, `state on disk while no agent ran: ${key(stored)}; acknowledged ${key(acked)}, in flight ${inFlight ? key(inFlight) : 'none'}`);
    } catch (e) {
      violate(c, `state on disk while no agent ran: ${/** @type {Error} */ (e).message}`);
    }
    a = await startAgent();
    const up = await checkInForce(c, 'after the restart');
    if (stored && !same(stored, new Set([...up.d].filter((p) => p !== nextPort + 1000)))) violate(c, `the restarted agent put ${key(up.d)} in force, not the stored ${key(stored)}`);
    if (up.isAcked) byOutcome.acked++;
    else if (up.isFlight) byOutcome.inFlight++;
    // the agent, its state file and the datapath's record name the policy the packets showed
    try {
      const view = await request(`${a.url}/v1/filter`, 'GET');
      const served = portsOf(JSON.parse(view.body).rules);
      const file = storedPorts(stateDir);
      const record = portsOf(JSON.parse(readRecord(pin.key, site.records) ?? '{"rules":[]}').rules);
      const inForce = new Set([...up.d].filter((p) => p !== nextPort + 1000));
      if (!same(served, inForce) || !same(file, inForce) || !same(record, inForce)) violate(c, `policy in force ${key(inForce)}, GET /v1/filter ${key(served)}, state file ${key(file)}, datapath record ${key(record)}`);
      // the client carries on from what the agent now holds
      acked = served;
      inFlight = null;
      const m = parseMetrics((await request(`${a.url}/metrics`, 'GET')).body);
      const nine = m.get(`ebpfnet_filter_packets_total{interface="${v.host}",rule="udp/9",action="deny"}`) ?? -1;
      if (nine < lastNine) violate(c, `the udp/9 drop counter went back from ${lastNine} to ${nine}`);
      lastNine = nine;
    } catch (e) {
      violate(c, `after the restart: ${/** @type {Error} */ (e).message}`);
    }
    const now = { ...owned(a.pid), pins: files(pinDir), state: files(stateDir) };
    // the first agent loaded the object and holds its tc program too; agents that adopt hold less
    if (now.progs > base.progs || now.maps > base.maps) violate(c, `this filter holds ${now.progs} programs and ${now.maps} maps, was ${base.progs} and ${base.maps}`);
    if (now.pins !== base.pins) violate(c, `pins ${now.pins}, was ${base.pins}`);
    const stray = now.state.split(',').filter((f) => !STATE_FILES.includes(f));
    if (stray.length) violate(c, `the state directory holds ${stray.join(', ')} besides ${STATE_FILES.join(', ')}`);
    if (leaked) violate(c, `${leaked} udp/9 packets got through`);
    leaked = 0;
    for (const l of watchLog.splice(0)) violate(c, l);
    const cycleOk = !violations.some((x) => x.startsWith(`cycle ${c}:`));
    if (cycleOk) survived++;
    console.log(
      `cycle ${String(c).padStart(3)}: killed after ${wait.toFixed(0).padStart(4)} ms; writes ${String(writes).padStart(5)}, acknowledged ${String(acks).padStart(5)}; in force after restart: ${up.isAcked ? 'last acknowledged' : up.isFlight ? 'the in-flight write' : 'NEITHER'} (${key(up.d).slice(0, 40)}); ${cycleOk ? 'ok' : 'VIOLATION'}`,
    );
  }
  watching = false;
  await watcher;
  const end = owned(a.pid);
  console.log(
    `agent-kill: ${survived}/${o.cycles} cycles survived, ${violations.length} violations; ${writes} writes sent, ${acks} acknowledged; after restart the policy was the last acknowledged ${byOutcome.acked} times, the in-flight write ${byOutcome.inFlight} times; XDP polled ${polls} times, always program ${prog0}; this filter: ${end.progs} programs, ${end.maps} maps (start ${base.progs}, ${base.maps}); machine: ${end.allProgs} programs, ${end.allMaps} maps (start ${base.allProgs}, ${base.allMaps}; other processes load and unload too)`,
  );
  return violations.length === 0;
}

run(h, 'agent-kill', main);
