#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The load-balancer benchmark: connect()+close() to the LAST of N services, through
//   ebpfnet   the socket balancer (cgroup connect4 + hash maps), services written by Balancer.apply
//   iptables  kube-proxy's layout: OUTPUT -> KUBE-SERVICES (one rule per service, walked in order)
//             -> KUBE-SVC-* -> KUBE-SEP-* DNAT, loaded with iptables-restore
//   nftables  one verdict map (VIP . port : backend . port) and a dnat in an OUTPUT nat chain
//   direct    the backend itself, untranslated: the floor every path pays
// for N = 100, 1,000, 10,000 (and 100,000 for ebpfnet alone), plus the time to program all N
// services and to change one. The client is a small C program (tools/bench/lb/connect.c, built
// into build/bench/) that reports per-call latencies; Node's own overhead would swamp the
// differences. Paths are measured in interleaved rounds (shuffled each round) and the table shows
// medians, because these shared machines are noisy.
//
// Everything lives in what the bench makes: a server namespace (backends on 10.250.x.2) and one
// client namespace per path joined to it by a veth pair, so iptables and nftables rules, the VIP
// route (10.96.0.0/15) and conntrack stay out of the host's namespace; a cgroup for the ebpfnet
// client; and a balancer pinned under its own directory. All of it is removed at the end, on an
// error, and on Ctrl-C.
//   node tools/bench/lb/run.mjs [--json] [--rounds N] [--ms MS] [--sizes 100,1000,10000] [--big 100000]
// Needs root, dist/ (npx tsc -p .), build/bpf/lb.bpf.o (node tools/build-bpf.mjs), a C compiler,
// iptables and nft (installed with apt-get when missing). Exits 1 when a goal is missed.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const C_SRC = join(here, 'connect.c');
const C_BIN = join(root, 'build', 'bench', 'lb-connect');
const CLI = join(root, 'dist', 'cli', 'main.js');

/** The issue's goals. */
const GOALS = { flat: 1.15, vsIptables: 4, vsNft: 1.0, programMs: 50, changeMs: 1 };
const PORT = 80;
const BACKEND_PORTS = [8080, 8081];
/** changes per path and N for the change-one time (median) */
const CHANGES = 21;
/** timed `apply` runs of all N services, from empty (median) */
const PROGRAM_RUNS = 5;

class BenchError extends Error {}

function parseArgs(/** @type {string[]} */ argv) {
  const out = { json: false, rounds: 15, ms: 100, sizes: [100, 1000, 10000], big: [100000] };
  const list = (/** @type {string | undefined} */ s) => (s ?? '').split(',').filter(Boolean).map(Number);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') out.json = true;
    else if (a === '--rounds') out.rounds = Number(argv[++i]);
    else if (a === '--ms') out.ms = Number(argv[++i]);
    else if (a === '--sizes') out.sizes = list(argv[++i]);
    else if (a === '--big') out.big = list(argv[++i]);
    else throw new BenchError(`usage: unknown option ${a}; options: --json, --rounds N, --ms MS, --sizes A,B,C, --big N`);
  }
  if (!Number.isInteger(out.rounds) || out.rounds < 1) throw new BenchError('usage: --rounds wants a positive integer');
  if (!(out.ms >= 50)) throw new BenchError('usage: --ms wants at least 50');
  for (const n of [...out.sizes, ...out.big]) if (!Number.isInteger(n) || n < 1 || n > 131072) throw new BenchError(`usage: ${n} services: use 1 to 131072`);
  return out;
}

const has = (/** @type {string} */ cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** iptables and nft from Debian packages, when they are missing. */
function ensureTools(/** @type {(s: string) => void} */ say) {
  const missing = [
    ['iptables-restore', 'iptables'],
    ['nft', 'nftables'],
    ['nsenter', 'util-linux'],
    ['cc', 'gcc'],
  ].filter(([cmd]) => !has(cmd));
  if (!missing.length) return;
  const pkgs = missing.map(([, p]) => p);
  say(`installing ${pkgs.join(', ')} with apt-get`);
  try {
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch (e) {
    throw new BenchError(`install ${pkgs.join(', ')}: ${String(/** @type {{ stderr?: Buffer }} */ (e).stderr ?? e).trim().split('\n').pop()}`);
  }
}

const mtime = (/** @type {string} */ p) => statSync(p).mtimeMs;

function buildC() {
  if (existsSync(C_BIN) && mtime(C_SRC) <= mtime(C_BIN)) return;
  mkdirSync(dirname(C_BIN), { recursive: true });
  const tmp = `${C_BIN}.tmp`;
  try {
    execFileSync('cc', ['-O2', '-Wall', '-Werror', C_SRC, '-o', tmp], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = /** @type {{ stderr?: Buffer, message: string }} */ (e);
    throw new BenchError(`build the client: ${err.stderr?.toString().trim() || err.message}; it needs a C compiler (apt-get install gcc)`);
  }
  renameSync(tmp, C_BIN);
}

/** 10.96.0.1, 10.96.0.2, ... for service i (0-based): inside 10.96.0.0/15. */
const vip = (/** @type {number} */ i) => {
  const n = 0x0a600000 + i + 1;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
};

const median = (/** @type {number[]} */ xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

function shuffle(/** @type {any[]} */ xs) {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

/** Runs argv in a network namespace without ip-netns-exec's mount namespace (nsenter only setns). */
const inNs = (/** @type {string} */ ns, /** @type {string[]} */ argv) => ['nsenter', `--net=/run/netns/${ns}`, ...argv];

function run(/** @type {string[]} */ argv, /** @type {{ input?: string }} */ opts = {}) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', input: opts.input, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new BenchError(`${argv.join(' ').slice(0, 120)}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').slice(-3).join(' ')}`);
  return r.stdout;
}

/** Wall time of one command, in ms. */
function timed(/** @type {string[]} */ argv) {
  const t0 = process.hrtime.bigint();
  run(argv);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/**
 * The world the bench makes, and how to take it all down again. Every (path, N) pair gets a place
 * of its own that stays programmed for the whole run: iptables and nftables a client namespace
 * each, ebpfnet a cgroup (and a balancer pinned apart) each. So the latency rounds can visit every
 * pair in a shuffled order, and machine noise lands on all of them alike.
 */
class Lab {
  constructor(/** @type {(s: string) => void} */ say) {
    this.say = say;
    this.tag = `lbb${process.pid % 100000}`;
    this.server = `${this.tag}-s`;
    /** @type {string[]} */
    this.namespaces = [];
    /** @type {import('node:child_process').ChildProcess[]} */
    this.servers = [];
    /** @type {string[]} */
    this.cgroups = [];
    this.pinRoot = `/sys/fs/bpf/ebpfnet-lb-bench-${process.pid}`;
    /** @type {Map<number, { cgroup: string, pinDir: string, balancer: any }>} */
    this.balancers = new Map();
    /** @type {any} */
    this.lb = null;
    /** @type {string} */
    this.cgroupRoot = '';
    this.subnets = 0;
  }

  /** A client namespace joined to the server namespace; returns it and its backend address. */
  client(/** @type {string} */ name) {
    const j = this.subnets++;
    const ns = `${this.tag}-${name}`;
    run(['ip', 'netns', 'add', ns]);
    this.namespaces.push(ns);
    run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    const a = `${this.tag}c${j}`;
    const b = `${this.tag}s${j}`;
    run(['ip', '-n', ns, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', this.server]);
    run(['ip', '-n', ns, 'addr', 'add', `10.250.${j}.1/24`, 'dev', a]);
    run(['ip', '-n', ns, 'link', 'set', a, 'up']);
    run(['ip', '-n', this.server, 'addr', 'add', `10.250.${j}.2/24`, 'dev', b]);
    run(['ip', '-n', this.server, 'link', 'set', b, 'up']);
    // The VIPs route towards the backends, as a cluster's service CIDR does; only in this namespace.
    run(['ip', '-n', ns, 'route', 'add', '10.96.0.0/15', 'dev', a]);
    return { ns, backend: `10.250.${j}.2` };
  }

  async up() {
    run(['ip', 'netns', 'add', this.server]);
    this.namespaces.push(this.server);
    run(['ip', '-n', this.server, 'link', 'set', 'lo', 'up']);
    for (const port of BACKEND_PORTS) {
      const s = spawn('nsenter', [`--net=/run/netns/${this.server}`, C_BIN, 'serve', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
      this.servers.push(s);
      await new Promise((resolve, reject) => {
        let out = '';
        s.stdout?.on('data', (d) => {
          out += d;
          if (out.includes('ready')) resolve(null);
        });
        s.on('exit', (code) => reject(new BenchError(`backend server on port ${port} exited (${code})`)));
      });
    }
    this.lb = await import('../../../dist/lb/index.js').catch((e) => {
      throw new BenchError(`load ebpfnet: ${e.message}; build it: npx tsc -p .`);
    });
    const L = await import('../../../dist/loader/index.js');
    L.ensureBpffs();
    this.cgroupRoot = L.ensureCgroup2().path;
  }

  /** A balancer of its own for N services, on a cgroup of its own. */
  balancer(/** @type {number} */ n) {
    const cgroup = join(this.cgroupRoot, `ebpfnet-lb-bench-${process.pid}-${n}`);
    mkdirSync(cgroup);
    this.cgroups.push(cgroup);
    const pinDir = join(this.pinRoot, String(n));
    this.lb.attachBalancer({ cgroup, pinDir });
    const b = { cgroup, pinDir, balancer: this.lb.Balancer.open({ pinDir }) };
    this.balancers.set(n, b);
    return b;
  }

  /** connect()+close() to host:port from a namespace, optionally from inside a cgroup. */
  measure(/** @type {string} */ ns, /** @type {string} */ host, /** @type {number} */ port, /** @type {string | null} */ cgroup, /** @type {number} */ ms) {
    const argv = inNs(ns, [C_BIN, 'connect', host, String(port), String(ms), '1000000', '100']);
    const cmd = `${cgroup ? `echo $$ > ${cgroup}/cgroup.procs && ` : ''}exec ${argv.join(' ')}`;
    const r = JSON.parse(run(['sh', '-c', cmd]));
    if (r.errors) throw new BenchError(`connect to ${host}:${port} from ${ns}: ${r.errors} errors (${r.error}); the path does not translate`);
    return { p50: r.p50_ns / 1000, p99: r.p99_ns / 1000, n: r.n };
  }

  down() {
    for (const s of this.servers) if (s.exitCode === null) s.kill('SIGKILL');
    for (const b of this.balancers.values()) {
      try {
        b.balancer.close();
        this.lb.detachBalancer({ pinDir: b.pinDir });
      } catch (e) {
        this.say(`cleanup: detach ${b.pinDir}: ${/** @type {Error} */ (e).message}`);
      }
    }
    this.balancers.clear();
    rmSync(this.pinRoot, { recursive: true, force: true });
    for (const cg of this.cgroups.splice(0)) {
      try {
        if (existsSync(cg)) rmdirSync(cg);
      } catch (e) {
        this.say(`cleanup: rmdir ${cg}: ${/** @type {Error} */ (e).message}`);
      }
    }
    // Rules first (explicitly, though they die with their namespace), then the namespaces.
    for (const ns of this.namespaces) {
      if (ns === this.server) continue;
      spawnSync('nsenter', [`--net=/run/netns/${ns}`, 'iptables', '-t', 'nat', '-F']);
      spawnSync('nsenter', [`--net=/run/netns/${ns}`, 'iptables', '-t', 'nat', '-X']);
      spawnSync('nsenter', [`--net=/run/netns/${ns}`, 'nft', 'flush', 'ruleset']);
    }
    for (const ns of this.namespaces.splice(0).reverse()) spawnSync('ip', ['netns', 'del', ns]);
  }
}

/** kube-proxy's iptables layout for N services, each with one endpoint. */
function iptablesRules(/** @type {number} */ n, /** @type {string} */ backend) {
  const id = (/** @type {number} */ i) => i.toString(16).toUpperCase().padStart(8, '0');
  const chains = [':KUBE-SERVICES - [0:0]'];
  const rules = ['-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'];
  for (let i = 0; i < n; i++) {
    chains.push(`:KUBE-SVC-${id(i)} - [0:0]`, `:KUBE-SEP-${id(i)} - [0:0]`);
    rules.push(
      `-A KUBE-SERVICES -d ${vip(i)}/32 -p tcp -m comment --comment "bench/svc-${i}:http cluster IP" -m tcp --dport ${PORT} -j KUBE-SVC-${id(i)}`,
      `-A KUBE-SVC-${id(i)} -m comment --comment "bench/svc-${i}:http -> ${backend}:${BACKEND_PORTS[0]}" -j KUBE-SEP-${id(i)}`,
      `-A KUBE-SEP-${id(i)} -p tcp -m comment --comment "bench/svc-${i}:http" -m tcp -j DNAT --to-destination ${backend}:${BACKEND_PORTS[0]}`,
    );
  }
  return { all: ['*nat', ...chains, ...rules, 'COMMIT', ''].join('\n'), sep: (/** @type {number} */ i, /** @type {number} */ port) => ['*nat', `:KUBE-SEP-${id(i)} - [0:0]`, `-A KUBE-SEP-${id(i)} -p tcp -m comment --comment "bench/svc-${i}:http" -m tcp -j DNAT --to-destination ${backend}:${port}`, 'COMMIT', ''].join('\n') };
}

function nftRules(/** @type {number} */ n, /** @type {string} */ backend) {
  const els = [];
  for (let i = 0; i < n; i++) els.push(`${vip(i)} . ${PORT} : ${backend} . ${BACKEND_PORTS[0]}`);
  return [
    'flush ruleset',
    'table ip lbbench {',
    '  map svc {',
    '    type ipv4_addr . inet_service : ipv4_addr . inet_service',
    `    elements = { ${els.join(',\n      ')} }`,
    '  }',
    '  chain out {',
    '    type nat hook output priority -100; policy accept;',
    '    dnat ip to ip daddr . tcp dport map @svc',
    '  }',
    '}',
    '',
  ].join('\n');
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const say = (/** @type {string} */ s) => process.stderr.write(`${s}\n`);
  if (process.getuid?.() !== 0) throw new BenchError('the benchmark needs root (namespaces, netfilter, BPF): run it as root (or with sudo)');
  if (!existsSync(join(root, 'build', 'bpf', 'lb.bpf.o'))) throw new BenchError('build/bpf/lb.bpf.o is missing: node tools/build-bpf.mjs');
  ensureTools(say);
  buildC();
  const files = join(tmpdir(), `ebpfnet-lb-bench-${process.pid}`);
  mkdirSync(files, { recursive: true });
  const lab = new Lab(say);
  const cleanup = () => {
    lab.down();
    rmSync(files, { recursive: true, force: true });
  };
  for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
    process.on(sig, () => {
      say(`${sig}: cleaning up`);
      cleanup();
      process.exit(130);
    });
  }
  /** @type {Array<{ n: number, path: string, p50: number, p99: number, calls: number, programMs: number | null, changeMs: number | null }>} */
  const rows = [];
  /** @type {number | null} */
  let cliApplyMs = null;
  try {
    await lab.up();
    const { makeService } = lab.lb;
    const ebpfNs = lab.client('e');
    const eb = ebpfNs.backend;
    const specsFor = (/** @type {number} */ n, /** @type {number} */ port = BACKEND_PORTS[0]) =>
      Array.from({ length: n }, (_, i) => makeService(`${vip(i)}:${PORT}/tcp`, [`${eb}:${i === n - 1 ? port : BACKEND_PORTS[0]}`]));
    /** @type {Array<{ n: number, path: string, programMs: number | null, changeMs: number | null, measure: () => { p50: number, p99: number, n: number } }>} */
    const combos = [{ n: 0, path: 'direct', programMs: null, changeMs: null, measure: () => lab.measure(ebpfNs.ns, eb, BACKEND_PORTS[0], null, opts.ms) }];
    let warmed = false;

    for (const n of [...opts.sizes, ...opts.big]) {
      const ebpfOnly = !opts.sizes.includes(n);
      say(`N=${n}: programming${ebpfOnly ? ' (ebpfnet only)' : ''}`);
      const last = vip(n - 1);
      const { balancer: bal, cgroup } = lab.balancer(n);
      if (!warmed) {
        // Warm the balancer's code paths once, as a running agent's are; the timed runs come after.
        const warm = specsFor(Math.max(...opts.sizes, ...opts.big, 1000));
        bal.apply(warm);
        bal.apply([]);
        warmed = true;
      }
      // ebpfnet: all N services from empty, three times (median); then one service changed 21 times
      const specs = specsFor(n);
      const prog = [];
      for (let k = 0; k < PROGRAM_RUNS; k++) {
        bal.apply([]);
        const t0 = process.hrtime.bigint();
        bal.apply(specs);
        prog.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      const other = specsFor(n, BACKEND_PORTS[1])[n - 1];
      const chg = [];
      for (let k = 0; k < CHANGES; k++) {
        const t0 = process.hrtime.bigint();
        bal.upsert(k % 2 ? specs[n - 1] : other);
        chg.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      bal.upsert(specs[n - 1]);
      if (n === 10000 && !opts.json) {
        // For scale: the same set through the CLI in a fresh process (Node start-up and all).
        const file = join(files, 'services.json');
        writeFileSync(file, JSON.stringify({ services: specs.map((_s, i) => ({ service: `${vip(i)}:${PORT}/tcp`, backends: [`${eb}:${BACKEND_PORTS[0]}`] })) }));
        bal.apply([]);
        const env = { ...process.env, EBPFNET_LB_PIN_DIR: lab.balancers.get(n)?.pinDir };
        const t0 = process.hrtime.bigint();
        const r = spawnSync(process.execPath, [CLI, 'lb', 'apply', file], { encoding: 'utf8', env });
        cliApplyMs = Number(process.hrtime.bigint() - t0) / 1e6;
        if (r.status !== 0) throw new BenchError(`ebpfnet lb apply: ${r.stderr.trim()}`);
      }
      combos.push({ n, path: 'ebpfnet', programMs: median(prog), changeMs: median(chg), measure: () => lab.measure(ebpfNs.ns, last, PORT, cgroup, opts.ms) });
      if (ebpfOnly) continue;

      const ipt = lab.client(`i${n}`);
      const rules = iptablesRules(n, ipt.backend);
      const all = join(files, `ipt-${n}`);
      writeFileSync(all, rules.all);
      const iptProgram = timed(inNs(ipt.ns, ['iptables-restore', all]));
      const iptChg = [];
      for (let k = 0; k < CHANGES; k++) {
        const f = join(files, 'ipt-one');
        writeFileSync(f, rules.sep(n - 1, BACKEND_PORTS[(k + 1) % 2]));
        // kube-proxy's partial sync: only the changed chain, without flushing the rest
        iptChg.push(timed(inNs(ipt.ns, ['iptables-restore', '--noflush', f])));
      }
      run(inNs(ipt.ns, ['iptables-restore', all]));
      combos.push({ n, path: 'iptables', programMs: iptProgram, changeMs: median(iptChg), measure: () => lab.measure(ipt.ns, last, PORT, null, opts.ms) });

      const nft = lab.client(`n${n}`);
      const nf = join(files, `nft-${n}`);
      writeFileSync(nf, nftRules(n, nft.backend));
      const nftProgram = timed(inNs(nft.ns, ['nft', '-f', nf]));
      const nftChg = [];
      for (let k = 0; k < CHANGES; k++) {
        const f = join(files, 'nft-one');
        const port = BACKEND_PORTS[(k + 1) % 2];
        writeFileSync(f, `delete element ip lbbench svc { ${last} . ${PORT} }\nadd element ip lbbench svc { ${last} . ${PORT} : ${nft.backend} . ${port} }\n`);
        nftChg.push(timed(inNs(nft.ns, ['nft', '-f', f])));
      }
      run(inNs(nft.ns, ['nft', '-f', nf]));
      combos.push({ n, path: 'nftables', programMs: nftProgram, changeMs: median(nftChg), measure: () => lab.measure(nft.ns, last, PORT, null, opts.ms) });
    }

    say(`measuring ${combos.length} paths: ${opts.rounds} rounds, each visiting every path in a new random order for ${opts.ms} ms`);
    /** @type {Array<Array<{ p50: number, p99: number, n: number }>>} */
    const got = combos.map(() => []);
    for (let r = 0; r < opts.rounds; r++) for (const i of shuffle(combos.map((_, k) => k))) got[i].push(combos[i].measure());
    combos.forEach((c, i) => {
      rows.push({
        n: c.n,
        path: c.path,
        p50: median(got[i].map((x) => x.p50)),
        p99: median(got[i].map((x) => x.p99)),
        calls: got[i].reduce((a, x) => a + x.n, 0),
        programMs: c.programMs,
        changeMs: c.changeMs,
      });
    });
  } finally {
    cleanup();
  }

  // ---- goals ----
  const get = (/** @type {number} */ n, /** @type {string} */ path) => rows.find((r) => r.n === n && r.path === path);
  /** @type {Array<{ goal: string, value: string, ok: boolean }>} */
  const goals = [];
  const e100 = get(100, 'ebpfnet');
  const e10k = get(10000, 'ebpfnet');
  const i10k = get(10000, 'iptables');
  if (e100 && e10k) {
    const r = e10k.p50 / e100.p50;
    goals.push({ goal: `ebpfnet p50 at 10,000 / at 100 <= ${GOALS.flat}`, value: r.toFixed(2), ok: r <= GOALS.flat });
  }
  if (e10k && i10k) {
    const r = i10k.p50 / e10k.p50;
    goals.push({ goal: `iptables p50 / ebpfnet p50 at 10,000 >= ${GOALS.vsIptables}`, value: r.toFixed(2), ok: r >= GOALS.vsIptables });
  }
  for (const n of opts.sizes) {
    const e = get(n, 'ebpfnet');
    const f = get(n, 'nftables');
    if (!e || !f) continue;
    const r = e.p50 / f.p50;
    goals.push({ goal: `ebpfnet p50 / nftables map p50 at ${n.toLocaleString('en')} <= ${GOALS.vsNft.toFixed(2)}`, value: r.toFixed(2), ok: r <= GOALS.vsNft });
  }
  if (e10k?.programMs != null) goals.push({ goal: `program 10,000 services <= ${GOALS.programMs} ms`, value: `${e10k.programMs.toFixed(1)} ms`, ok: e10k.programMs <= GOALS.programMs });
  if (e10k?.changeMs != null) goals.push({ goal: `change one service (of 10,000) <= ${GOALS.changeMs} ms`, value: `${e10k.changeMs.toFixed(3)} ms`, ok: e10k.changeMs <= GOALS.changeMs });
  const ok = goals.every((g) => g.ok);

  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ rows, goals, ok }, null, 2)}\n`);
  } else {
    const fmt = (/** @type {number | null} */ x, /** @type {number} */ d) => (x === null || Number.isNaN(x) ? '-' : x.toFixed(d));
    const head = ['N', 'path', 'p50 us', 'p99 us', 'p50 vs ebpfnet', 'calls', 'program ms', 'change-one ms'];
    const body = rows.map((r) => {
      const e = get(r.n, 'ebpfnet');
      return [r.n ? r.n.toLocaleString('en') : '-', r.path, fmt(r.p50, 1), fmt(r.p99, 1), e ? `${(r.p50 / e.p50).toFixed(2)}x` : '-', String(r.calls), fmt(r.programMs, 1), fmt(r.changeMs, 3)];
    });
    const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
    const line = (/** @type {string[]} */ c) => c.map((x, i) => (i < 2 ? x.padEnd(w[i]) : x.padStart(w[i]))).join('  ');
    const out = [];
    out.push(`connect()+close() to the last of N services (direct: to the backend itself, nothing translated)`);
    out.push(`p50/p99: medians over ${opts.rounds} rounds; each round visits every row in a new random order for ${opts.ms} ms (client: build/bench/lb-connect, C)`);
    out.push('');
    out.push(line(head));
    for (const b of body) out.push(line(b));
    out.push('');
    out.push(`program: ebpfnet = Balancer.apply() of all N from empty, in a warm process (median of ${PROGRAM_RUNS}); iptables = iptables-restore; nftables = nft -f`);
    out.push('change one: ebpfnet = Balancer.upsert(); iptables = iptables-restore --noflush of one KUBE-SEP chain; nftables = delete+add element (median of 21)');
    if (cliApplyMs !== null) out.push(`for scale: \`ebpfnet lb apply\` of the 10,000 services in a fresh process (Node start-up included): ${cliApplyMs.toFixed(0)} ms`);
    out.push('');
    out.push('goals (issue 5):');
    const gw = Math.max(...goals.map((g) => g.goal.length));
    for (const g of goals) out.push(`  ${g.goal.padEnd(gw)}  ${g.value.padStart(10)}  ${g.ok ? 'ok' : 'MISSED'}`);
    out.push('');
    out.push(ok ? 'every goal met' : 'a goal was missed');
    process.stdout.write(`${out.join('\n')}\n`);
  }
  process.exitCode = ok ? 0 : 1;
}

main().catch((e) => {
  process.stderr.write(`lb bench: ${e instanceof BenchError ? e.message : e.stack}\n`);
  process.exitCode = 1;
});
