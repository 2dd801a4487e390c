// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The kernel oracle (issue 19): the same seeded frames sent from a source namespace to a target
// namespace, once with no filter and once under each policy and hook (`ebpfnet filter` run by the
// real CLI in the target). The target's stack is the oracle: whatever it delivers to a socket (raw
// sockets per protocol record every packet that reaches the IP layer's upper protocols) or answers
// (SYN-ACK, RST, echo reply, ICMP error, captured on the source's end) under a policy that denies it
// is a bypass. Used by tools/fuzz/oracle.mjs (long runs) and test/kernel/filter-oracle.test.ts.
//
// The frames come from an address on the link that no namespace owns (the target has a permanent
// neighbour entry for it, pointing at the source's MAC): the target answers to the source's MAC
// and the source's stack, which does not own the address and does not forward, drops the answers
// silently after the capture saw them. From the source's own address its stack would answer each
// SYN-ACK with a RST, traffic to port 22 that no case sent.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { generator, PROTOS4, PROTOS6, sportOf, TCP_PORTS, UDP_PORTS } from './frames.mjs';
import { describeClass, JUDGED, parseAnswer, parseDelivery, POLICIES } from './judge.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const CLI = join(root, 'dist', 'cli', 'main.js');

/** A failure to run (not a bypass): one line, exit 2 from the script. */
export class OracleError extends Error {}

/**
 * @typedef {{ source: string, target: string, targetIf: string, sourceIp: string, targetIp: string, sourceIp6: string, targetIp6: string }} Hosts
 *   the two namespaces (test/helpers/netns.ts makeTwoHosts() makes them)
 * @typedef {{ name: string, policy: string | null, hook: string | null }} Round
 * @typedef {{ round: number, index: number | null, category: string, intent: string, event: string, cls: string, frame?: string, bytes: string }} Bypass
 */

const inNs = (/** @type {string} */ ns, /** @type {string[]} */ argv) => ['nsenter', [`--net=/run/netns/${ns}`, ...argv]];
function sh(/** @type {string} */ cmd, /** @type {string[]} */ args, /** @type {string | undefined} */ ns) {
  const [c, a] = ns ? inNs(ns, [cmd, ...args]) : [cmd, args];
  try {
    return execFileSync(/** @type {string} */ (c), /** @type {string[]} */ (a), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = /** @type {{ stderr?: string, message: string }} */ (e);
    throw new OracleError(`${cmd} ${args.join(' ').slice(0, 100)}: ${err.stderr?.trim() || err.message}`);
  }
}

/** compiles oracle.c into `dir` */
function buildHelper(/** @type {string} */ dir) {
  const bin = join(dir, 'oracle');
  try {
    execFileSync('cc', ['-O2', '-Wall', '-o', bin, join(here, 'oracle.c')], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = /** @type {{ stderr?: Buffer, message: string }} */ (e);
    throw new OracleError(`build oracle.c: ${err.stderr?.toString().trim() || err.message}; it needs a C compiler (apt-get install gcc)`);
  }
  return bin;
}

/** A long-running helper in a namespace whose stdout lines go to `onLine`. */
function helper(/** @type {string} */ ns, /** @type {string[]} */ argv, /** @type {(l: string) => void} */ onLine) {
  const [c, a] = inNs(ns, argv);
  const child = spawn(/** @type {string} */ (c), /** @type {string[]} */ (a), { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const rl = createInterface({ input: child.stdout });
  /** @type {(v?: unknown) => void} */
  let ready = () => {};
  const isReady = new Promise((res) => (ready = res));
  /** @type {Array<(v?: unknown) => void>} */
  const marks = [];
  rl.on('line', (l) => (l === 'ready' ? ready() : l === 'mark' ? marks.shift()?.() : onLine(l)));
  const closed = new Promise((res) => rl.on('close', res));
  const exited = new Promise((res) => child.on('exit', res));
  child.on('exit', () => ready());
  return {
    child,
    async ready() {
      await isReady;
      if (child.exitCode !== null) throw new OracleError(`oracle ${argv[1]}: exited ${child.exitCode}: ${stderr.trim()}`);
    },
    /** resolves once every event the helper's sockets held is read */
    mark() {
      const p = new Promise((res) => marks.push(res));
      child.stdin.write('m\n');
      return p;
    },
    /** closes its stdin, which ends it, and waits until its last line is read */
    async stop() {
      child.stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await Promise.all([exited, closed]);
      clearTimeout(t);
    },
  };
}

/**
 * Frames the source's veth could not hand to the target (its peer's queue full): such a drop would
 * hide what the frame did. (The target's rx_dropped is no such count: it also counts the frames
 * its stack has no handler for, which are findings.)
 */
function txDropped(/** @type {string} */ ns, /** @type {string} */ ifname) {
  return JSON.parse(sh('ip', ['-s', '-j', 'link', 'show', 'dev', ifname], ns))[0].stats64.tx.dropped;
}

const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

/** `ebpfnet filter` in the target, as a user runs it: started, waited for, stopped with SIGTERM */
async function startFilter(/** @type {Hosts} */ h, /** @type {string[]} */ args) {
  const [c, a] = inNs(h.target, [process.execPath, CLI, 'filter', '--iface', h.targetIf, '--interval', '3600', ...args]);
  const child = spawn(/** @type {string} */ (c), /** @type {string[]} */ (a), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((res) => child.on('exit', (code) => res(code)));
  const t0 = Date.now();
  while (!/filtering/.test(out)) {
    if (child.exitCode !== null || Date.now() - t0 > 20_000) {
      child.kill('SIGKILL');
      throw new OracleError(`ebpfnet filter ${args.join(' ')}: ${child.exitCode !== null ? `exited ${child.exitCode}` : 'did not start in 20 s'}: ${(err || out).trim()}`);
    }
    await sleep(20);
  }
  return {
    child,
    async stop() {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(t);
      const attached = /\bxdp/.test(sh('ip', ['-d', 'link', 'show', 'dev', h.targetIf], h.target)) || sh('bpftool', ['net', 'show', 'dev', h.targetIf], h.target).includes('filter_');
      if (code !== 0 || !out.includes(`${h.targetIf}: detached`) || attached) {
        throw new OracleError(`ebpfnet filter ${args.join(' ')}: SIGTERM left ${attached ? 'a program attached' : `exit ${code}`}: ${(err || out).trim().slice(-300)}`);
      }
    },
  };
}

/**
 * The run's counts, per category (the generator's kind of case) and per round.
 * @typedef {{ cases: number, frames: number, delivered: number[], answered: number[], bypasses: number[], reached: Record<string, number>, silent: number }} CategoryCounts
 *   delivered/answered/bypasses: cases, per round (round 0 is the baseline); reached: at
 *   baseline, how many cases had each outcome (what the stack did with them); silent: cases the
 *   stack neither delivered nor answered at baseline
 * @typedef {{ seed: number, cases: number, rounds: Array<Round & { frames: number, lost: number, events: number, unattributed: number, arpReplies: number, neighbourAdverts: number }>, categories: Record<string, CategoryCounts>, bypasses: Bypass[], framesFiltered: number, seconds: number }} Report
 */

/**
 * Runs the oracle. `policies`: names from POLICIES; `hooks`: xdp, tc. Frames per round: the cases'
 * frames (a fragmented case sends several).
 * `explain`: case indexes whose every event is logged (what the stack did with them, round by round).
 * @param {{ hosts: Hosts, seed: number, cases: number, policies?: string[], hooks?: string[], burst?: number, gapUs?: number, settleMs?: number, explain?: number[], log?: (s: string) => void }} o
 * @returns {Promise<Report>}
 */
export async function runOracle(o) {
  const t0 = performance.now();
  const h = o.hosts;
  const log = o.log ?? (() => {});
  const policies = (o.policies ?? Object.keys(POLICIES)).map((n) => {
    const p = POLICIES[n];
    if (!p) throw new OracleError(`oracle: no policy named '${n}'; policies: ${Object.keys(POLICIES).join(', ')}`);
    return p;
  });
  const hooks = o.hooks ?? ['xdp', 'tc'];
  if (o.cases >= 1 << 24) throw new OracleError('oracle: at most 16,777,215 cases (the tag holds the index in 24 bits)');
  /** @type {Round[]} */
  const rounds = [{ name: 'baseline', policy: null, hook: null }];
  for (const p of policies) for (const k of hooks) rounds.push({ name: `${p.name} ${k}`, policy: p.name, hook: k });
  if (rounds.length > 255) throw new OracleError('oracle: too many rounds');

  const srcIf = sh('ip', ['-o', 'link', 'show', 'type', 'veth'], h.source).split(':')[1].trim().split('@')[0];
  const mac = (/** @type {string} */ ns, /** @type {string} */ i) => JSON.parse(sh('ip', ['-j', 'link', 'show', 'dev', i], ns))[0].address;
  // the sender's address: on the link, owned by no one (see the header)
  const phantom4 = h.sourceIp.replace(/\.\d+$/, '.77');
  const phantom6 = h.sourceIp6.replace(/::[0-9a-f]+$/, '::77');
  const env = { srcMac: mac(h.source, srcIf), dstMac: mac(h.target, h.targetIf), src4: phantom4, dst4: h.targetIp, src6: phantom6, dst6: h.targetIp6 };
  for (const a of [phantom4, phantom6]) sh('ip', ['neigh', 'replace', a, 'lladdr', env.srcMac, 'dev', h.targetIf, 'nud', 'permanent'], h.target);
  // answers are the second witness: no rate limits on ICMP errors, stateless SYN-ACKs (no request
  // sockets retransmitting into later rounds), fragments given up on quickly
  for (const kv of ['net.ipv4.tcp_syncookies=2', 'net.ipv4.icmp_ratelimit=0', 'net.ipv4.icmp_msgs_per_sec=1000000', 'net.ipv4.icmp_msgs_burst=1000000', 'net.ipv6.icmp.ratelimit=0', 'net.ipv4.ipfrag_time=2', 'net.ipv6.ip6frag_time=2', 'net.ipv4.tcp_synack_retries=0']) {
    sh('sysctl', ['-qw', kv], h.target);
  }

  const gen = generator(o.seed, env);
  const cases = Array.from({ length: o.cases }, (_, i) => gen.makeCase(i));
  const ipId = (/** @type {number} */ r, /** @type {number} */ i) => (r * o.cases + i) & 0xffff;
  const sport = new Map(); // (round, sport) -> index: a TCP or UDP event without a readable tag

  /** @type {Record<string, CategoryCounts>} */
  const categories = {};
  for (const c of cases) {
    const k = (categories[c.category] ??= { cases: 0, frames: 0, delivered: rounds.map(() => 0), answered: rounds.map(() => 0), bypasses: rounds.map(() => 0), reached: {}, silent: 0 });
    k.cases++;
  }
  // per round and case: a bit for delivered, one for answered, one for bypassed (counted once)
  const seen = rounds.map(() => new Uint8Array(o.cases));
  const unattributed = rounds.map(() => 0);
  const eventCount = rounds.map(() => 0);
  /** @type {Bypass[]} */
  const bypasses = [];
  /** @type {Map<number, Set<string>>} what the stack did with each case at baseline */
  const reached = new Map();
  let current = 0;

  /**
   * The round and case an event came from. An event belongs to the round it arrived in (the
   * helpers' marks fence the rounds), except a reassembly timeout, which comes ipfrag_time later:
   * that one takes the round from its tag. So a tag a mutation garbled can misname the case, never
   * the policy it is judged by. The tag is checked against the port where there is one.
   */
  function attribute(/** @type {import('./judge.mjs').Event} */ e) {
    const ok = (/** @type {number} */ r) => (e.late ? r <= current && r >= current - 2 : r === current);
    for (const t of e.tags) {
      const r = t >>> 24;
      const i = t & 0xffffff;
      if (ok(r) && i < o.cases && (e.sport === undefined || !sport.has(`${r}:${e.sport}`) || sport.get(`${r}:${e.sport}`) === i)) return { r, i };
    }
    // no tag (a truncated header, a tunnel's payload): the port or the IPv4 identification
    // (ipId() numbers the cases of all rounds in turn). Not when a tag is there but names no case:
    // a mutated frame's other fields would name some other case too
    if (e.late || e.tags.length) return null;
    const r = current;
    if (e.sport !== undefined && sport.has(`${r}:${e.sport}`)) return { r, i: /** @type {number} */ (sport.get(`${r}:${e.sport}`)) };
    if (e.ipId !== undefined && o.cases < 0x10000) {
      const i = (e.ipId - ((r * o.cases) & 0xffff) + 0x10000) & 0xffff;
      if (i < o.cases) return { r, i };
    }
    return null;
  }

  const arpReplies = rounds.map(() => 0);
  const neighbourAdverts = rounds.map(() => 0);
  function onEvent(/** @type {import('./judge.mjs').Event | null} */ e) {
    if (!e) return;
    // ARP replies and neighbour advertisements carry no tag: counted per round, always allowed
    if (e.kind === 'arp') arpReplies[current]++;
    if (e.kind === 'neighbour advertisement') neighbourAdverts[current]++;
    if (!JUDGED(e) || e.kind === 'neighbour advertisement') return;
    const at = attribute(e);
    const r = at?.r ?? current;
    eventCount[r]++;
    const c = at ? cases[at.i] : null;
    if (!at) unattributed[r]++;
    if (at && o.explain?.includes(at.i)) log(`oracle: case ${at.i} (${c?.category}: ${c?.intent}), ${rounds[r].name}: ${e.what === 'delivered' ? 'delivered' : e.kind} ${e.cls ? describeClass(e.cls) : ''}`);
    const bit = e.what === 'delivered' ? 1 : 2;
    if (c && at && !(seen[r][at.i] & bit)) {
      seen[r][at.i] |= bit;
      categories[c.category][e.what][r]++;
    }
    if (r === 0 && c && at && e.cls) {
      let s = reached.get(at.i);
      if (!s) reached.set(at.i, (s = new Set()));
      s.add(`${e.what === 'delivered' ? 'delivered' : e.kind}: ${describeClass(e.cls)}`);
    }
    const round = rounds[r];
    // a late answer without its tag may be of an earlier round, under another policy: not judged
    if (!at && e.late) return;
    if (!round.policy || !e.cls || !POLICIES[round.policy].denies(e.cls)) return;
    if (c && at) {
      if (seen[r][at.i] & 4) return;
      seen[r][at.i] |= 4;
      categories[c.category].bypasses[r]++;
    }
    if (bypasses.length < 10_000) {
      bypasses.push({ round: r, index: at?.i ?? null, category: c?.category ?? '(unattributed)', intent: c?.intent ?? '?', event: e.what === 'delivered' ? 'delivered' : e.kind, cls: describeClass(e.cls), bytes: e.bytes.slice(0, 400) });
    }
  }

  const dir = mkdtempSync(join(tmpdir(), 'ebpfnet-oracle-'));
  /** @type {Array<{ stop(): Promise<void> }>} */
  const running = [];
  try {
    const bin = buildHelper(dir);
    const recv = helper(h.target, [bin, 'recv', TCP_PORTS.join(','), UDP_PORTS.join(','), PROTOS4.join(','), PROTOS6.join(',')], (l) => onEvent(parseDelivery(l)));
    running.push(recv);
    const cap = helper(h.source, [bin, 'cap', srcIf], (l) => onEvent(parseAnswer(l)));
    running.push(cap);
    await Promise.all([recv.ready(), cap.ready()]);

    const out = [];
    for (let r = 0; r < rounds.length; r++) {
      const round = rounds[r];
      // the frames of this round: the same cases, tagged with the round
      const parts = [];
      let frames = 0;
      for (let i = 0; i < cases.length; i++) {
        const c = cases[i];
        sport.set(`${r}:${sportOf(i, r)}`, i);
        for (const f of c.build(((r << 24) | i) >>> 0, ipId(r, i), r)) {
          if (f.length > 1514 || f.length < 14) continue;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(f.length);
          parts.push(len, f);
          frames++;
          if (r === 0) categories[c.category].frames++;
        }
      }
      current = r;
      const filter = round.policy ? await startFilter(h, [...POLICIES[round.policy].args, '--hook', /** @type {string} */ (round.hook)]) : null;
      if (filter) running.push(filter);
      const before = txDropped(h.source, srcIf);
      const sent = await send(h.source, bin, srcIf, Buffer.concat(parts), o.burst ?? 16, o.gapUs ?? 50);
      await sleep(o.settleMs ?? 300);
      await Promise.all([recv.mark(), cap.mark()]);
      const lost = txDropped(h.source, srcIf) - before;
      if (filter) {
        await filter.stop();
        running.splice(running.indexOf(filter), 1);
      }
      if (sent.errors) throw new OracleError(`oracle: ${round.name}: ${sent.errors} frames could not be sent: ${sent.stderr.trim().split('\n')[0]}`);
      out.push({ ...round, frames: sent.sent, lost });
      log(`oracle: round ${round.name}: ${sent.sent} frames${lost ? `, ${lost} dropped by the veth queue` : ''}`);
    }
    // fragments the target gave up on answer after ipfrag_time (2 s)
    await sleep(2500);
    await Promise.all([recv.mark(), cap.mark()]);
    await cap.stop();
    await recv.stop();
    running.length = 0;

    for (const [i, s] of reached) for (const what of s) categories[cases[i].category].reached[what] = (categories[cases[i].category].reached[what] ?? 0) + 1;
    for (let i = 0; i < cases.length; i++) if (!(seen[0][i] & 3)) categories[cases[i].category].silent++;
    for (const b of bypasses) if (b.index !== null) b.frame = cases[b.index].build(((b.round << 24) | b.index) >>> 0, ipId(b.round, b.index), b.round).map((f) => f.toString('hex')).join(' ');
    const rs = out.map((x, r) => ({ ...x, events: eventCount[r], unattributed: unattributed[r], arpReplies: arpReplies[r], neighbourAdverts: neighbourAdverts[r] }));
    return { seed: o.seed, cases: o.cases, rounds: rs, categories, bypasses, framesFiltered: rs.filter((x) => x.policy).reduce((s, x) => s + x.frames, 0), seconds: (performance.now() - t0) / 1000 };
  } finally {
    for (const p of running.reverse()) await p.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

/** the sender: the frames on stdin, paced in bursts */
function send(/** @type {string} */ ns, /** @type {string} */ bin, /** @type {string} */ ifname, /** @type {Buffer} */ frames, /** @type {number} */ burst, /** @type {number} */ gapUs) {
  return new Promise((res, rej) => {
    const [c, a] = inNs(ns, [bin, 'send', ifname, String(burst), String(gapUs)]);
    const child = spawn(/** @type {string} */ (c), /** @type {string[]} */ (a), { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', rej);
    child.on('exit', (code) => {
      const m = out.match(/sent (\d+) (\d+)/);
      if (code !== 0 || !m) return rej(new OracleError(`oracle send: exit ${code}: ${err.trim()}`));
      res({ sent: Number(m[1]), errors: Number(m[2]), stderr: err });
    });
    child.stdin.end(frames);
  });
}

/**
 * The report as lines: per category the cases and frames, per round what was delivered, answered
 * and bypassed; what the stack did with each category at baseline; the bypasses grouped.
 */
export function formatReport(/** @type {Report} */ rep) {
  const lines = [];
  const names = rep.rounds.map((r) => r.name);
  lines.push(`oracle: seed ${rep.seed}, ${rep.cases} cases, ${rep.rounds.map((r) => `${r.name} ${r.frames} frames`).join(', ')}; ${rep.framesFiltered} frames through a filter (${rep.seconds.toFixed(1)} s)`);
  lines.push(`per category: cases (frames): delivered/answered/bypassed cases per round [${names.join(' | ')}]`);
  for (const [k, c] of Object.entries(rep.categories).sort()) {
    lines.push(`  ${k}: ${c.cases} (${c.frames}): ${names.map((_, r) => `${c.delivered[r]}/${c.answered[r]}/${c.bypasses[r]}`).join(' | ')}`);
  }
  lines.push(`per round: arp replies, neighbour advertisements, frames the source's veth dropped, events not mapped to a case`);
  for (const r of rep.rounds) lines.push(`  ${r.name}: ${r.arpReplies}, ${r.neighbourAdverts}, ${r.lost}, ${r.unattributed} of ${r.events}`);
  lines.push('what the stack did at baseline (cases per outcome):');
  for (const [k, c] of Object.entries(rep.categories).sort()) {
    const top = Object.entries(c.reached).sort((a, b) => b[1] - a[1]);
    lines.push(`  ${k}: ${c.silent} of ${c.cases} dropped unanswered${top.length ? `; ${top.slice(0, 6).map(([w, n]) => `${w} ${n}`).join('; ')}` : ''}`);
  }
  // bypasses per round and category: the cases, and what the stack did with them
  /** @type {Map<string, { cases: Set<number | null>, what: Set<string> }>} */
  const groups = new Map();
  for (const b of rep.bypasses) {
    const key = `${rep.rounds[b.round].name}: ${b.category}`;
    const g = groups.get(key) ?? { cases: new Set(), what: new Set() };
    groups.set(key, g);
    g.cases.add(b.index);
    g.what.add(b.event === 'delivered' ? b.cls : `${b.event} (${b.cls})`);
  }
  if (groups.size) lines.push('bypasses (round: category: cases: what the stack delivered or answered):');
  for (const [k, g] of [...groups].sort()) lines.push(`  ${k}: ${g.cases.size}: ${[...g.what].sort().join(', ')}`);
  lines.push(`oracle: seed ${rep.seed}: ${rep.bypasses.length} bypasses`);
  return lines;
}
