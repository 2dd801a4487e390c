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
// services and to change one. Like for like: iptables and nftables cannot work without conntrack,
// so the ebpfnet and direct rows run in a client namespace where conntrack is on too (one nft `ct
// state` rule, no translation); the same two also run where it is off, as extra rows judged
// against each other. Programming is a command against a command, process start included on both
// sides: `ebpfnet lb apply FILE` in a fresh node process against `nft -f FILE` of the same set. The client is a small C program (tools/bench/lb/connect.c, built
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
// EBPFNET_BENCH_QUICK=1: a smoke run (3 rounds of 50 ms, sizes 100 and 1,000, 10,000 for ebpfnet
// alone, fewer programming runs) that proves the harness, not the figures.
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

/**
 * The goals (issues 5 and 16): connect through ebpfnet at most 1.05x a direct connect at every N
 * (which also makes it flat from 100 to 100,000), like for like; `ebpfnet lb apply` of 10,000
 * services faster than `nft -f` of the same set, both as commands.
 */
const GOALS = { vsDirect: 1.05, vsIptables: 4, vsNft: 1.0, applyVsNft: 1.0, changeMs: 1 };
const PORT = 80;
const BACKEND_PORTS = [8080, 8081];
const QUICK = process.env.EBPFNET_BENCH_QUICK === '1';
/** changes per path and N for the change-one time (median) */
const CHANGES = QUICK ? 5 : 21;
/** timed programming runs of all N services, from empty (median) */
const PROGRAM_RUNS = QUICK ? 3 : 5;
/** the set the command-against-command programming comparison uses */
const APPLY_N = 10000;

class BenchError extends Error {}

function parseArgs(/** @type {string[]} */ argv) {
  const out = QUICK ? { json: false, rounds: 3, ms: 50, sizes: [100, 1000], big: [10000] } : { json: false, rounds: 15, ms: 100, sizes: [100, 1000, 10000], big: [100000] };
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
    /** @type {Map<string, { cgroup: string, pinDir: string, balancer: any }>} */
    this.balancers = new Map();
    /** @type {any} */
    this.lb = null;
    /** @type {string} */
    this.cgroupRoot = '';
    this.subnets = 0;
  }

  /**
   * A client namespace joined to the server namespace; returns it and its backend address. With
   * `conntrack`, one nft rule that matches on ct state turns connection tracking on in it (as a
   * nat table does for iptables and nftables), without translating anything.
   */
  client(/** @type {string} */ name, conntrack = false) {
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
    if (conntrack) run(inNs(ns, ['nft', '-f', '-']), { input: 'table ip lbbench_ct {\n  chain out {\n    type filter hook output priority 0; policy accept;\n    ct state new,established accept\n  }\n}\n' });
    return { ns, dev: a, backend: `10.250.${j}.2` };
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

  /** A balancer of its own for N services (or for `name`), on a cgroup of its own. */
  balancer(/** @type {number} */ n, name = String(n)) {
    const cgroup = join(this.cgroupRoot, `ebpfnet-lb-bench-${process.pid}-${name}`);
    mkdirSync(cgroup);
    this.cgroups.push(cgroup);
    const pinDir = join(this.pinRoot, name);
    this.lb.attachBalancer({ cgroup, pinDir });
    const b = { cgroup, pinDir, balancer: this.lb.Balancer.open({ pinDir }) };
    this.balancers.set(name, b);
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
  if (!existsSync(CLI)) throw new BenchError(`${CLI} is missing: npx tsc -p .`);
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
  /** @typedef {{ n: number, path: string, conntrack: boolean, p50: number, p99: number, calls: number, programMs: number | null, changeMs: number | null }} Row */
  /** @type {Row[]} */
  const rows = [];
  /** `ebpfnet lb apply` and `nft -f` of the same APPLY_N services, each a fresh process, in ms */
  const apply = { n: APPLY_N, runs: PROGRAM_RUNS, cli: /** @type {number[]} */ ([]), nft: /** @type {number[]} */ ([]) };
  try {
    await lab.up();
    const { makeService } = lab.lb;
    // ebpfnet and direct, conntrack on (as iptables and nftables have it) and off; all four reach
    // the same backend address, each namespace through its own veth pair
    const ct = lab.client('e', true);
    const off = lab.client('o');
    const eb = ct.backend;
    run(['ip', '-n', off.ns, 'route', 'add', `${eb}/32`, 'dev', off.dev]);
    const specsFor = (/** @type {number} */ n, /** @type {number} */ port = BACKEND_PORTS[0]) =>
      Array.from({ length: n }, (_, i) => makeService(`${vip(i)}:${PORT}/tcp`, [`${eb}:${i === n - 1 ? port : BACKEND_PORTS[0]}`]));
    /** @type {Array<{ n: number, path: string, conntrack: boolean, programMs: number | null, changeMs: number | null, measure: () => { p50: number, p99: number, n: number } }>} */
    const combos = [
      { n: 0, path: 'direct', conntrack: true, programMs: null, changeMs: null, measure: () => lab.measure(ct.ns, eb, BACKEND_PORTS[0], null, opts.ms) },
      { n: 0, path: 'direct', conntrack: false, programMs: null, changeMs: null, measure: () => lab.measure(off.ns, eb, BACKEND_PORTS[0], null, opts.ms) },
    ];
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
      // ebpfnet in this warm process (the agent's path): all N services from empty, then one
      // service changed CHANGES times; medians
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
      combos.push({ n, path: 'ebpfnet', conntrack: true, programMs: median(prog), changeMs: median(chg), measure: () => lab.measure(ct.ns, last, PORT, cgroup, opts.ms) });
      combos.push({ n, path: 'ebpfnet', conntrack: false, programMs: null, changeMs: null, measure: () => lab.measure(off.ns, last, PORT, cgroup, opts.ms) });
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
      combos.push({ n, path: 'iptables', conntrack: true, programMs: iptProgram, changeMs: median(iptChg), measure: () => lab.measure(ipt.ns, last, PORT, null, opts.ms) });

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
      combos.push({ n, path: 'nftables', conntrack: true, programMs: nftProgram, changeMs: median(nftChg), measure: () => lab.measure(nft.ns, last, PORT, null, opts.ms) });
    }

    // What a user runs, a command against a command: `ebpfnet lb apply FILE` in a fresh node
    // process (start-up, parsing, opening the pins and all) against `nft -f FILE` of the same set,
    // each from an empty state, taking turns; both under the same nsenter into a namespace of the
    // bench's own (the balancer's pins are in a directory of its own under /sys/fs/bpf).
    say(`programming ${APPLY_N.toLocaleString('en')} services: ebpfnet lb apply against nft -f, ${PROGRAM_RUNS} runs each`);
    const ap = lab.balancer(APPLY_N, 'apply');
    const svcFile = join(files, 'services.json');
    writeFileSync(svcFile, JSON.stringify({ services: Array.from({ length: APPLY_N }, (_, i) => ({ service: `${vip(i)}:${PORT}/tcp`, backends: [`${eb}:${BACKEND_PORTS[0]}`] })) }));
    const pns = lab.client('p');
    const nftFile = join(files, 'nft-apply');
    writeFileSync(nftFile, nftRules(APPLY_N, pns.backend));
    const env = { ...process.env, EBPFNET_LB_PIN_DIR: ap.pinDir };
    for (let k = 0; k < PROGRAM_RUNS; k++) {
      for (const side of k % 2 ? ['nft', 'cli'] : ['cli', 'nft']) {
        if (side === 'cli') {
          ap.balancer.apply([]);
          const argv = inNs(pns.ns, [process.execPath, CLI, 'lb', 'apply', svcFile]);
          const t0 = process.hrtime.bigint();
          const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env });
          apply.cli.push(Number(process.hrtime.bigint() - t0) / 1e6);
          if (r.status !== 0) throw new BenchError(`ebpfnet lb apply: ${(r.stderr || r.error?.message || '').trim()}`);
          // from empty: every service added, or the run did not do the work it is timed for
          if (!r.stdout.includes(`(${APPLY_N} added)`)) throw new BenchError(`ebpfnet lb apply: expected ${APPLY_N} services added, it said: ${r.stdout.trim()}`);
        } else {
          run(inNs(pns.ns, ['nft', 'flush', 'ruleset']));
          apply.nft.push(timed(inNs(pns.ns, ['nft', '-f', nftFile])));
        }
      }
    }

    say(`measuring ${combos.length} paths: ${opts.rounds} rounds, each visiting every path in a new random order for ${opts.ms} ms`);
    /** @type {Array<Array<{ p50: number, p99: number, n: number }>>} */
    const got = combos.map(() => []);
    for (let r = 0; r < opts.rounds; r++) for (const i of shuffle(combos.map((_, k) => k))) got[i].push(combos[i].measure());
    combos.forEach((c, i) => {
      rows.push({
        n: c.n,
        path: c.path,
        conntrack: c.conntrack,
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
  const get = (/** @type {number} */ n, /** @type {string} */ path, conntrack = true) => rows.find((r) => r.n === n && r.path === path && r.conntrack === conntrack);
  /** @type {Array<{ goal: string, value: string, ok: boolean | null }>} */
  const goals = [];
  const n$ = (/** @type {number} */ n) => n.toLocaleString('en');
  // like for like, conntrack on: the goal at every N
  for (const ctOn of [true, false]) {
    const d = get(0, 'direct', ctOn);
    for (const n of [...opts.sizes, ...opts.big]) {
      const e = get(n, 'ebpfnet', ctOn);
      if (!e || !d) continue;
      const r = e.p50 / d.p50;
      if (ctOn) goals.push({ goal: `ebpfnet p50 / direct p50 at ${n$(n)} (conntrack on) <= ${GOALS.vsDirect.toFixed(2)}`, value: `${r.toFixed(3)}x`, ok: r <= GOALS.vsDirect });
      else goals.push({ goal: `  conntrack off: ebpfnet p50 / direct p50 at ${n$(n)} (extra row, no goal)`, value: `${r.toFixed(3)}x`, ok: null });
    }
  }
  const e10k = get(10000, 'ebpfnet');
  const i10k = get(10000, 'iptables');
  if (e10k && i10k) {
    const r = i10k.p50 / e10k.p50;
    goals.push({ goal: `iptables p50 / ebpfnet p50 at 10,000 >= ${GOALS.vsIptables}`, value: `${r.toFixed(2)}x`, ok: r >= GOALS.vsIptables });
  }
  for (const n of opts.sizes) {
    const e = get(n, 'ebpfnet');
    const f = get(n, 'nftables');
    if (!e || !f) continue;
    const r = e.p50 / f.p50;
    goals.push({ goal: `ebpfnet p50 / nftables map p50 at ${n$(n)} <= ${GOALS.vsNft.toFixed(2)}`, value: `${r.toFixed(3)}x`, ok: r <= GOALS.vsNft });
  }
  const cliMs = median(apply.cli);
  const nftMs = median(apply.nft);
  if (apply.cli.length && apply.nft.length) {
    const r = cliMs / nftMs;
    goals.push({ goal: `\`ebpfnet lb apply\` / \`nft -f\` of ${n$(APPLY_N)} services, fresh processes, < ${GOALS.applyVsNft.toFixed(2)}`, value: `${r.toFixed(3)}x`, ok: r < GOALS.applyVsNft });
  }
  if (e10k?.changeMs != null) goals.push({ goal: `change one service (of 10,000), warm process <= ${GOALS.changeMs} ms`, value: `${e10k.changeMs.toFixed(3)} ms`, ok: e10k.changeMs <= GOALS.changeMs });
  const ok = goals.every((g) => g.ok !== false);

  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ quick: QUICK, rows, apply: { ...apply, cliMs, nftMs }, goals, ok }, null, 2)}\n`);
  } else {
    const fmt = (/** @type {number | null} */ x, /** @type {number} */ d) => (x === null || Number.isNaN(x) ? '-' : x.toFixed(d));
    const head = ['N', 'path', 'conntrack', 'p50 us', 'p99 us', 'p50 vs direct', 'calls', 'program ms', 'change-one ms'];
    const body = rows.map((r) => {
      const d = get(0, 'direct', r.conntrack);
      return [r.n ? n$(r.n) : '-', r.path, r.conntrack ? 'on' : 'off', fmt(r.p50, 1), fmt(r.p99, 1), d ? `${(r.p50 / d.p50).toFixed(2)}x` : '-', String(r.calls), fmt(r.programMs, 1), fmt(r.changeMs, 3)];
    });
    const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
    const line = (/** @type {string[]} */ c) => c.map((x, i) => (i < 3 ? x.padEnd(w[i]) : x.padStart(w[i]))).join('  ');
    const out = [];
    if (QUICK) out.push('EBPFNET_BENCH_QUICK=1: a smoke run (few rounds and sizes); its figures prove the harness, not the speed');
    out.push(`connect()+close() to the last of N services (direct: to the backend itself, nothing translated)`);
    out.push(`p50/p99: medians over ${opts.rounds} rounds; each round visits every row in a new random order for ${opts.ms} ms (client: build/bench/lb-connect, C)`);
    out.push('conntrack on: iptables and nftables need it; ebpfnet and direct get it from one nft ct rule in their namespace. p50 vs direct: against the direct row of the same conntrack setting');
    out.push('');
    out.push(line(head));
    for (const b of body) out.push(line(b));
    out.push('');
    out.push(`program (table): ebpfnet = Balancer.apply() of all N from empty in a warm process, as the agent does (median of ${PROGRAM_RUNS}); iptables = iptables-restore; nftables = nft -f`);
    out.push(`change one: ebpfnet = Balancer.upsert() (warm process); iptables = iptables-restore --noflush of one KUBE-SEP chain; nftables = delete+add element (median of ${CHANGES})`);
    out.push(`program ${n$(APPLY_N)} services, command against command (fresh process each, start-up included, median of ${PROGRAM_RUNS}): ebpfnet lb apply ${fmt(cliMs, 0)} ms, nft -f ${fmt(nftMs, 0)} ms`);
    out.push('');
    out.push('goals (issues 5 and 16):');
    const gw = Math.max(...goals.map((g) => g.goal.length));
    for (const g of goals) out.push(`  ${g.goal.padEnd(gw)}  ${g.value.padStart(10)}  ${g.ok === null ? '' : g.ok ? 'ok' : 'MISSED'}`);
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
