#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The Kubernetes benchmark (issue 17): a real `ebpfnet agent` with a kubeconfig pointing at the
// project's list/watch server (test/helpers/kube-apiserver.ts, in this process), through the real
// @kubernetes/client-node, with its balancer on a cgroup of the bench's own:
//   full sync      10,000 Services with 100,000 endpoints (10 per Service, one EndpointSlice each):
//                  from the agent's process start until it logs that the sync is in the maps (then
//                  checked: every VIP in the balancer, a connect through the probe Service), and
//                  the agent's peak RSS (VmHWM). Against, in the same run, each a fresh process:
//                  a bare client-node informer listing the same objects (the harness: the server's
//                  and the library's cost, which the goal is judged net of), and `nft -f` of what
//                  kube-proxy's nftables mode writes for the same Services (a service-ips verdict
//                  map -> one chain per Service with numgen random mod N -> one chain per endpoint
//                  with its dnat), in a network namespace of the bench's own.
//   event->effect  the server emits one EndpointSlice change (the probe Service's one endpoint moves
//                  between two addresses) until a connect from the cgroup reaches the new endpoint;
//                  the client (probe.c) connects in a loop and is told which address to wait for.
//   churn          1,000 EndpointSlice updates a second to other Services while the client measures
//                  connect latency to the probe Service; then every changed Service is compared
//                  with the server's final state; the agent's CPU (utime+stime) and RSS.
// Connects go from a process in the bench's cgroup, inside a client namespace, to backends in a
// server namespace joined to it by a veth pair (10.250.0.2-11; one probe.c server answers for all
// of them with the address reached). Everything the bench makes (namespaces, cgroup, pins under
// /sys/fs/bpf/ebpfnet-k8s-bench-PID, the agent's state dir, nft tables inside its namespace) is
// removed at the end, on an error, and on Ctrl-C.
//   node tools/bench/kubernetes/run.mjs [--services N] [--changes N] [--churn-s S] [--rounds N]
// EBPFNET_BENCH_QUICK=1: a smoke run (1,000 Services, 100 changes, 5 s of churn, 2 rounds) that
// proves the harness, not the figures. Needs root, dist/ (npx tsc -p .), build/bpf/lb.bpf.o, a C
// compiler, nft and nsenter. Exits 1 when a goal is missed.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const C_SRC = join(here, 'probe.c');
const C_BIN = join(root, 'build', 'bench', 'k8s-probe');
const CLI = join(root, 'dist', 'cli', 'main.js');
const BARE = join(here, 'bare-informer.mjs');
const QUICK = process.env.EBPFNET_BENCH_QUICK === '1';
const NODE = 'bench-node';
const PORT = 80;
const TARGET = 8080;
const PER_SVC = 10;
/** pause between the churn's connects (us); 0, back to back as the lb bench: pacing them (500 us) measured a worse p99 here, each call waking on a busy core */
const GAP_US = 0;

/** The goals (issue 17). */
const GOALS = { syncMs: 1000, rssMb: 150, eventP99Ms: 10, churnP99: 1.1 };

/** What kube-proxy itself says, printed beside the figures (and in the README). */
const CITES = [
  ['"NFTables mode for kube-proxy", kubernetes.io blog, 2025-02-28', 'https://kubernetes.io/blog/2025/02/28/nftables-kube-proxy/', "its graphs at 5,000 / 10,000 / 30,000 Services are first-packet (data-plane) latency: at 5k and 10k nftables' p50 is about iptables' p01, at 30k nftables' worst case beats iptables' best by a few us. For sync time it gives no figure (\"Unfortunately I don't have cool graphs for this part\"): an iptables-mode update stays O(n) in all Services even with the 1.26 partial syncs, an nftables-mode update is O(n) in what changed"],
  ['kube-proxy nftables PR scale job (kubernetes/kubernetes#124272, 2024-04-11, gce-100-performance)', 'https://github.com/kubernetes/kubernetes/pull/124272', 'NetworkProgrammingLatency p50 1,519.8 ms, p90 2,282.2 ms, p99 6,815.1 ms (nftables WIP; its iptables runs there use a 10 s sync period)'],
  ['KEP-3866 nftables kube-proxy backend', 'https://github.com/kubernetes/enhancements/blob/master/keps/sig-network/3866-nftables-proxy/README.md', 'the ruleset this bench writes for nft -f: the service-ips verdict map, per-service chains with numgen random mod N, per-endpoint dnat chains'],
  ['kube-proxy sync periods', 'https://kubernetes.io/docs/reference/networking/virtual-ips/#minimize-iptables-restore', 'minSyncPeriod (--iptables-min-sync-period) default 1 s: changes within it are batched into one sync; since 1.27 only changed Services are restored'],
  ['in-cluster network programming latency SLI/SLO (sig-scalability, WIP)', 'https://github.com/kubernetes/community/blob/master/sig-scalability/slos/slos.md', 'p99 per cluster-day <= 30 s (definition: sig-scalability/slos/network_programming_latency.md)'],
];

class BenchError extends Error {}

function parseArgs(/** @type {string[]} */ argv) {
  const out = QUICK ? { services: 1000, changes: 100, churnS: 5, rounds: 2, rate: 1000, only: '' } : { services: 10000, changes: 1000, churnS: 60, rounds: 3, rate: 1000, only: '' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => Number(argv[++i]);
    if (a === '--services') out.services = num();
    else if (a === '--changes') out.changes = num();
    else if (a === '--churn-s') out.churnS = num();
    else if (a === '--rounds') out.rounds = num();
    else if (a === '--rate') out.rate = num();
    else if (a === '--only') out.only = argv[++i];
    else throw new BenchError(`usage: unknown option ${a}; options: --services N, --changes N, --churn-s S, --rounds N, --rate N, --only sync`);
  }
  if (!Number.isInteger(out.services) || out.services < 2 || out.services > 60000) throw new BenchError('usage: --services wants 2 to 60000');
  for (const k of /** @type {const} */ (['changes', 'rounds', 'rate'])) if (!Number.isInteger(out[k]) || out[k] < 1) throw new BenchError(`usage: --${k} wants a positive integer`);
  if (out.only && out.only !== 'sync') throw new BenchError('usage: --only takes sync (the full-sync rows alone)');
  if (!(out.churnS > 0)) throw new BenchError('usage: --churn-s wants a positive number of seconds');
  return out;
}

const has = (/** @type {string} */ cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

function ensureTools(/** @type {(s: string) => void} */ say) {
  const missing = [['nft', 'nftables'], ['nsenter', 'util-linux'], ['cc', 'gcc']].filter(([cmd]) => !has(cmd));
  if (!missing.length) return;
  const pkgs = missing.map(([, p]) => p);
  say(`installing ${pkgs.join(', ')} with apt-get`);
  try {
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch (e) {
    throw new BenchError(`install ${pkgs.join(', ')}: ${String(/** @type {{ stderr?: Buffer }} */ (e).stderr ?? e).trim().split('\n').pop()}`);
  }
}

function buildC() {
  if (existsSync(C_BIN) && statSync(C_SRC).mtimeMs <= statSync(C_BIN).mtimeMs) return;
  mkdirSync(dirname(C_BIN), { recursive: true });
  try {
    execFileSync('cc', ['-O2', '-Wall', '-Werror', C_SRC, '-o', `${C_BIN}.tmp`], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = /** @type {{ stderr?: Buffer, message: string }} */ (e);
    throw new BenchError(`build the client: ${err.stderr?.toString().trim() || err.message}; it needs a C compiler (apt-get install gcc)`);
  }
  renameSync(`${C_BIN}.tmp`, C_BIN);
}

const ip4 = (/** @type {number} */ n) => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
/** Service i's ClusterIP: 10.96.0.1 on, inside 10.96.0.0/15 */
const vip = (/** @type {number} */ i) => ip4(0x0a600000 + i + 1);
/** pod addresses of the Services nothing connects to (10.128.0.0/9: never reached, never routed) */
const podIp = (/** @type {number} */ n) => ip4(0x0a800000 + n);
/** the backends in the server namespace */
const backend = (/** @type {number} */ k) => `10.250.0.${2 + k}`;

const sorted = (/** @type {number[]} */ xs) => [...xs].sort((a, b) => a - b);
const pct = (/** @type {number[]} */ xs, /** @type {number} */ p) => {
  const s = sorted(xs);
  return s.length ? s[Math.min(s.length - 1, Math.floor((s.length - 1) * p))] : NaN;
};
const median = (/** @type {number[]} */ xs) => pct(xs, 0.5);
const spread = (/** @type {number[]} */ xs, d = 0) => (xs.length > 1 ? ` (min ${Math.min(...xs).toFixed(d)}, max ${Math.max(...xs).toFixed(d)}, n=${xs.length})` : '');
const n$ = (/** @type {number} */ n) => n.toLocaleString('en');
const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

function run(/** @type {string[]} */ argv, /** @type {{ input?: string, env?: NodeJS.ProcessEnv }} */ opts = {}) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', input: opts.input, env: opts.env ?? process.env, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new BenchError(`${argv.join(' ').slice(0, 120)}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').slice(-3).join(' ')}`);
  return r.stdout;
}
const inNs = (/** @type {string} */ ns, /** @type {string[]} */ argv) => ['nsenter', `--net=/run/netns/${ns}`, ...argv];

/** A child's stdout as lines, with a wait for the first line matching a pattern. */
function lines(/** @type {import('node:child_process').ChildProcess} */ child, /** @type {string} */ what) {
  /** @type {string[]} */
  const got = [];
  /** @type {Array<{ re: RegExp, resolve: (m: { line: string, at: number }) => void }>} */
  let waiting = [];
  let exited = false;
  /** @type {string[]} */
  const errTail = [];
  child.stderr?.on('data', (d) => {
    errTail.push(String(d));
    if (errTail.length > 20) errTail.shift();
  });
  createInterface({ input: /** @type {import('node:stream').Readable} */ (child.stdout) }).on('line', (line) => {
    const at = nowMs();
    got.push(line);
    if (got.length > 200) got.shift();
    waiting = waiting.filter((w) => (w.re.test(line) ? (w.resolve({ line, at }), false) : true));
  });
  child.on('exit', () => (exited = true));
  return {
    got,
    /** @returns {Promise<{ line: string, at: number }>} */
    waitFor(/** @type {RegExp} */ re, ms = 60_000) {
      return new Promise((resolve, reject) => {
        /** @type {{ re: RegExp, resolve: (m: { line: string, at: number }) => void }} */
        const w = {
          re,
          resolve: (m) => {
            clearTimeout(t);
            child.off('exit', onExit);
            resolve(m);
          },
        };
        const fail = (/** @type {string} */ why) => {
          waiting = waiting.filter((x) => x !== w);
          clearTimeout(t);
          child.off('exit', onExit);
          reject(new BenchError(`${what}: ${why}; last output: ${got.slice(-5).join(' | ')} ${errTail.join('').slice(-800)}`));
        };
        // a line still in the pipe is read before the exit's verdict
        const onExit = () => setTimeout(() => waiting.includes(w) && fail(`exited (${child.exitCode ?? child.signalCode}) before ${re}`), 100);
        const t = setTimeout(() => fail(`no ${re} within ${ms} ms${exited ? ' (it exited)' : ''}`), ms);
        const hit = got.find((l) => re.test(l));
        if (hit) return w.resolve({ line: hit, at: nowMs() });
        waiting.push(w);
        child.once('exit', onExit);
      });
    },
  };
}

const vmHwmKb = (/** @type {number} */ pid) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
const vmRssKb = (/** @type {number} */ pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
/** utime+stime of a process, in seconds */
function cpuS(/** @type {number} */ pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  const hz = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
  return (Number(rest[11]) + Number(rest[12])) / hz;
}

/** The Services and slices of the bench: Service 0 is the probe one, its endpoints real backends. */
function service(/** @type {number} */ i) {
  return { metadata: { name: `svc-${i}`, namespace: 'bench' }, spec: { type: 'ClusterIP', clusterIP: vip(i), clusterIPs: [vip(i)], ports: [{ name: 'http', port: PORT, protocol: 'TCP', targetPort: TARGET }] } };
}
function slice(/** @type {number} */ i, /** @type {string[]} */ addrs) {
  return {
    metadata: { name: `svc-${i}-a`, namespace: 'bench', labels: { 'kubernetes.io/service-name': `svc-${i}` } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: TARGET, protocol: 'TCP' }],
    endpoints: addrs.map((a) => ({ addresses: [a], conditions: { ready: true, serving: true, terminating: false }, nodeName: NODE })),
  };
}
const initialAddrs = (/** @type {number} */ i) => (i === 0 ? Array.from({ length: PER_SVC }, (_, k) => backend(k)) : Array.from({ length: PER_SVC }, (_, k) => podIp(i * PER_SVC + k)));

/** What kube-proxy's nftables mode writes for the same Services (ClusterIPs, TCP), for nft -f. */
function kubeProxyNft(/** @type {number} */ n) {
  const id = (/** @type {number} */ i) => `svc-${i}`;
  const out = ['table ip kube-proxy {', '  chain mark-for-masquerade {', '    meta mark set meta mark or 0x4000', '  }', '  map service-ips {', '    type ipv4_addr . inet_proto . inet_service : verdict', '    comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"', '  }', '  chain services {', '    ip daddr . meta l4proto . th dport vmap @service-ips', '  }', '  chain nat-output {', '    type nat hook output priority -100; policy accept;', '    jump services', '  }'];
  const elems = [];
  for (let i = 0; i < n; i++) {
    const addrs = initialAddrs(i);
    const svc = `service-${id(i)}-bench/svc-${i}/tcp/http`;
    const eps = addrs.map((a) => `endpoint-${id(i)}-bench/svc-${i}/tcp/http__${a}/${TARGET}`);
    out.push(`  chain ${svc} {`, `    ip daddr ${vip(i)} tcp dport ${PORT} ip saddr != 10.0.0.0/8 jump mark-for-masquerade`, `    numgen random mod ${eps.length} vmap { ${eps.map((e, k) => `${k} : goto ${e}`).join(', ')} }`, '  }');
    addrs.forEach((a, k) => out.push(`  chain ${eps[k]} {`, `    ip saddr ${a} jump mark-for-masquerade`, `    meta l4proto tcp dnat to ${a}:${TARGET}`, '  }'));
    elems.push(`${vip(i)} . tcp . ${PORT} : goto ${svc}`);
  }
  out.push('}', `add element ip kube-proxy service-ips { ${elems.join(',\n  ')} }`, '');
  return out.join('\n');
}

class Lab {
  constructor(/** @type {(s: string) => void} */ say) {
    this.say = say;
    this.tag = `k8b${process.pid % 100000}`;
    this.server = `${this.tag}-s`;
    this.client = `${this.tag}-c`;
    this.nftNs = `${this.tag}-n`;
    /** @type {string[]} */
    this.namespaces = [];
    /** @type {import('node:child_process').ChildProcess[]} */
    this.procs = [];
    this.cgroup = '';
    this.dir = mkdtempSync(join(tmpdir(), 'ebpfnet-k8s-bench-'));
    this.pinRoot = `/sys/fs/bpf/ebpfnet-k8s-bench-${process.pid}`;
    this.env = { ...process.env, EBPFNET_LB_PIN_DIR: `${this.pinRoot}/lb` };
    /** @type {any} */
    this.api = null;
  }

  ns(/** @type {string} */ name) {
    run(['ip', 'netns', 'add', name]);
    this.namespaces.push(name);
    run(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  }

  async up() {
    this.ns(this.server);
    this.ns(this.client);
    this.ns(this.nftNs);
    const a = `${this.tag}c`;
    const b = `${this.tag}s`;
    run(['ip', '-n', this.client, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', this.server]);
    run(['ip', '-n', this.client, 'addr', 'add', '10.250.0.1/24', 'dev', a]);
    run(['ip', '-n', this.client, 'link', 'set', a, 'up']);
    for (let k = 0; k < PER_SVC; k++) run(['ip', '-n', this.server, 'addr', 'add', `${backend(k)}/24`, 'dev', b]);
    run(['ip', '-n', this.server, 'link', 'set', b, 'up']);
    const s = spawn('nsenter', [`--net=/run/netns/${this.server}`, C_BIN, 'serve', String(TARGET)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.push(s);
    await lines(s, 'the backend server').waitFor(/ready/, 10_000);
    const L = await import('../../../dist/loader/index.js').catch((e) => {
      throw new BenchError(`load ebpfnet: ${e.message}; build it: npx tsc -p .`);
    });
    L.ensureBpffs();
    this.cgroup = join(L.ensureCgroup2().path, `ebpfnet-k8s-bench-${process.pid}`);
    mkdirSync(this.cgroup);
    const { KubeApiServer } = await import('../../../test/helpers/kube-apiserver.ts');
    // the history must hold a whole churn for a re-watch; a 410 would be a relist, not a loss
    this.api = await KubeApiServer.start({ retain: 200_000 });
    this.kubeconfig = this.api.writeKubeconfig(join(this.dir, 'kubeconfig'));
    writeFileSync(join(this.dir, 'config.yaml'), `lb:\n  cgroup: ${this.cgroup}\nkubernetes:\n  kubeconfig: ${this.kubeconfig}\n  nodeName: ${NODE}\n`);
    this.api.apply('nodes', { metadata: { name: NODE }, status: { addresses: [{ type: 'InternalIP', address: '10.250.0.1' }] } });
  }

  /** Starts the agent; resolves when it logs that the first full sync is in the kernel. */
  async agent() {
    const t0 = nowMs();
    const child = spawn(process.execPath, [CLI, 'agent', '--config', join(this.dir, 'config.yaml'), '--state-dir', join(this.dir, 'state'), '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
    this.procs.push(child);
    const out = lines(child, 'the agent');
    const synced = await out.waitFor(/kubernetes: synced from/, 120_000);
    const url = /api: (http:\/\/[\d.]+:\d+)\/v1/.exec(out.got.join('\n'))?.[1] ?? (await out.waitFor(/api: http/, 10_000)).line.match(/(http:\/\/[\d.]+:\d+)/)?.[1];
    return { child, url: /** @type {string} */ (url), ms: synced.at - t0, pid: /** @type {number} */ (child.pid) };
  }

  async stopAgent(/** @type {import('node:child_process').ChildProcess} */ child) {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([gone, sleep(10_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    // from empty for the next start: what a node sees the first time
    spawnSync(process.execPath, [CLI, 'agent', '--cleanup', '--state-dir', join(this.dir, 'state')], { env: this.env, encoding: 'utf8' });
    if (existsSync(`${this.pinRoot}/lb`)) spawnSync(process.execPath, [CLI, 'lb', 'detach'], { env: this.env });
  }

  /** The harness alone: a bare informer process listing the same objects. */
  async bare() {
    const t0 = nowMs();
    const child = spawn(process.execPath, [BARE, this.kubeconfig], { stdio: ['ignore', 'pipe', 'pipe'], cwd: root });
    this.procs.push(child);
    const m = await lines(child, 'the bare informer').waitFor(/^\{/, 120_000);
    return { ms: m.at - t0, ...JSON.parse(m.line) };
  }

  /** `nft -f` of kube-proxy's ruleset, a fresh process, in the bench's own namespace, from empty. */
  nft(/** @type {string} */ file) {
    run(inNs(this.nftNs, ['nft', 'flush', 'ruleset']));
    const t0 = nowMs();
    run(inNs(this.nftNs, ['nft', '-f', file]));
    return nowMs() - t0;
  }

  /** A long-running client in the cgroup and the client namespace. */
  spawnClient(/** @type {string[]} */ args) {
    const cmd = `echo $$ > ${this.cgroup}/cgroup.procs && exec nsenter --net=/run/netns/${this.client} ${C_BIN} ${args.join(' ')}`;
    const c = spawn('sh', ['-c', cmd], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.procs.push(c);
    return c;
  }

  /** connect + reply + close for ms, gapUs apart (0: back to back) */
  async connects(/** @type {string} */ host, /** @type {number} */ ms, gapUs = 0) {
    const c = this.spawnClient(['connect', host, String(PORT), String(Math.round(ms)), String(gapUs)]);
    const m = await lines(c, 'the connect client').waitFor(/^\{/, ms + 30_000);
    return /** @type {{ n: number, p50_ns: number, p99_ns: number, errors: number }} */ (JSON.parse(m.line));
  }

  async down() {
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await sleep(100);
    spawnSync(process.execPath, [CLI, 'agent', '--cleanup', '--state-dir', join(this.dir, 'state')], { env: this.env });
    if (existsSync(`${this.pinRoot}/lb`)) spawnSync(process.execPath, [CLI, 'lb', 'detach'], { env: this.env });
    rmSync(this.pinRoot, { recursive: true, force: true });
    await this.api?.stop();
    if (this.cgroup && existsSync(this.cgroup)) {
      try {
        rmdirSync(this.cgroup);
      } catch (e) {
        this.say(`cleanup: rmdir ${this.cgroup}: ${/** @type {Error} */ (e).message}`);
      }
    }
    for (const ns of this.namespaces) if (ns === this.nftNs) spawnSync('nsenter', [`--net=/run/netns/${ns}`, 'nft', 'flush', 'ruleset']);
    for (const ns of this.namespaces.splice(0).reverse()) spawnSync('ip', ['netns', 'del', ns]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const say = (/** @type {string} */ s) => process.stderr.write(`${s}\n`);
  if (process.getuid?.() !== 0) throw new BenchError('the benchmark needs root (namespaces, cgroups, BPF): run it as root (or with sudo)');
  if (!existsSync(join(root, 'build', 'bpf', 'lb.bpf.o'))) throw new BenchError('build/bpf/lb.bpf.o is missing: node tools/build-bpf.mjs');
  if (!existsSync(CLI)) throw new BenchError(`${CLI} is missing: npx tsc -p .`);
  ensureTools(say);
  buildC();
  const lab = new Lab(say);
  let downed = false;
  const cleanup = async () => {
    if (downed) return;
    downed = true;
    await lab.down();
  };
  for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) process.on(sig, () => void cleanup().finally(() => process.exit(130)));
  const N = opts.services;
  const R = {
    sync: /** @type {number[]} */ ([]),
    rssKb: /** @type {number[]} */ ([]),
    bare: /** @type {number[]} */ ([]),
    bareRssKb: /** @type {number[]} */ ([]),
    nft: /** @type {number[]} */ ([]),
    applyMs: /** @type {number[]} */ ([]),
    event: /** @type {number[]} */ ([]),
    eventErrors: 0,
    idle: /** @type {any} */ (null),
    churn: /** @type {any} */ (null),
    churnApplied: 0,
    churnServices: 0,
    churnWrong: /** @type {string[]} */ ([]),
    churnCpuS: 0,
    churnRssKb: 0,
    churnHwmKb: 0,
  };
  try {
    await measureAll(lab, opts, R, say);
  } finally {
    await cleanup();
  }
  report(opts, R);
}

async function measureAll(/** @type {Lab} */ lab, /** @type {ReturnType<typeof parseArgs>} */ opts, /** @type {any} */ R, /** @type {(s: string) => void} */ say) {
  const N = opts.services;
  {
    await lab.up();
    say(`${n$(N)} Services, ${n$(N * PER_SVC)} endpoints: writing them into the list/watch server`);
    for (let i = 0; i < N; i++) {
      lab.api.apply('services', service(i));
      lab.api.apply('endpointslices', slice(i, initialAddrs(i)));
    }
    const nftFile = join(lab.dir, 'kube-proxy.nft');
    writeFileSync(nftFile, kubeProxyNft(N));

    // ---- full sync: agent, bare informer and nft -f take turns, each a fresh process ----
    say(`full sync: ${opts.rounds} rounds of agent start, bare informer, nft -f`);
    /** @type {{ child: import('node:child_process').ChildProcess, url: string, pid: number } | null} */
    let agent = null;
    for (let r = 0; r < opts.rounds; r++) {
      const order = r % 2 ? ['nft', 'bare', 'agent'] : ['agent', 'bare', 'nft'];
      for (const side of order) {
        if (side === 'nft') {
          // nft -f of 100k endpoint chains takes minutes here: once is enough when it is that slow
          if (R.nft.length && Math.min(...R.nft) > 30_000) continue;
          R.nft.push(lab.nft(nftFile));
          say(`  nft -f: ${R.nft.at(-1).toFixed(0)} ms`);
        }
        else if (side === 'bare') {
          const b = await lab.bare();
          if (b.services !== N || b.endpointSlices !== N) throw new BenchError(`bare informer listed ${b.services} services and ${b.endpointSlices} slices, not ${N}`);
          R.bare.push(b.ms);
          R.bareRssKb.push(b.rssKb);
          say(`  bare informer: ${b.ms.toFixed(0)} ms, peak RSS ${(b.rssKb / 1024).toFixed(0)} MB`);
        } else {
          if (agent) await lab.stopAgent(agent.child);
          const a = await lab.agent();
          R.sync.push(a.ms);
          R.rssKb.push(vmHwmKb(a.pid));
          const st = /** @type {any} */ (await (await fetch(`${a.url}/v1/kubernetes/status`)).json());
          if (st.vips !== N) throw new BenchError(`after the sync the balancer holds ${st.vips} Kubernetes VIPs, not ${N}`);
          R.applyMs.push(st.lastApplyMs);
          say(`  agent: ${a.ms.toFixed(0)} ms (maps written in ${st.lastApplyMs} ms), peak RSS ${(R.rssKb.at(-1) / 1024).toFixed(0)} MB`);
          agent = a;
        }
      }
    }
    if (!agent) throw new BenchError('no agent ran');
    const { pid, url } = agent;
    // the datapath holds them: the probe Service answers from one of its 10 backends
    const first = await lab.connects(vip(0), 200);
    if (first.errors || !first.n) throw new BenchError(`connects to the probe Service ${vip(0)} after the sync: ${first.errors} errors in ${first.n + first.errors}`);

    if (opts.only === 'sync') return R;
    // ---- event to effect ----
    say(`event to effect: ${opts.changes} EndpointSlice changes of the probe Service at ${n$(N)} Services`);
    const watcher = lab.spawnClient(['watch', vip(0), String(PORT)]);
    const wl = lines(watcher, 'the watching client');
    for (let k = 0; k < opts.changes; k++) {
      const want = backend(k % 2);
      const go = wl.waitFor(/^go$/, 10_000);
      wl.got.length = 0;
      watcher.stdin?.write(`${want}\n`);
      await go;
      const seen = wl.waitFor(/^seen /, 10_000);
      const t0 = process.hrtime.bigint();
      lab.api.apply('endpointslices', slice(0, [want]));
      const m = (await seen).line.split(' ');
      R.event.push(Number(BigInt(m[1]) - t0) / 1e6);
      R.eventErrors += Number(m[3]);
      wl.got.length = 0;
    }
    watcher.stdin?.end();

    // ---- churn ----
    const D = opts.churnS * 1000;
    const idleMs = Math.min(D, QUICK ? D : 20_000);
    say(`churn: connect latency idle for ${idleMs / 1000} s, then ${opts.rate}/s EndpointSlice updates for ${opts.churnS} s`);
    R.idle = await lab.connects(vip(0), idleMs, GAP_US);
    /** @type {Map<number, string[]>} */
    const expected = new Map();
    let gen = 1;
    const cpu0 = cpuS(pid);
    const during = lab.connects(vip(0), D, GAP_US);
    const t0 = nowMs();
    while (nowMs() - t0 < D) {
      const due = Math.floor(((nowMs() - t0) / 1000) * opts.rate) - R.churnApplied;
      for (let k = 0; k < due; k++) {
        const i = 1 + Math.floor(Math.random() * (N - 1));
        // one endpoint moves: a pod replaced, as a rollout does
        const addrs = [...(expected.get(i) ?? initialAddrs(i))];
        addrs[gen % PER_SVC] = podIp(N * PER_SVC + gen++);
        expected.set(i, addrs);
        lab.api.apply('endpointslices', slice(i, addrs));
        R.churnApplied++;
      }
      await sleep(5);
    }
    R.churn = await during;
    R.churnServices = expected.size;
    // every change made it: the balancer's view of every churned Service is the server's last
    const deadline = nowMs() + 15_000;
    for (;;) {
      const view = /** @type {any} */ (await (await fetch(`${url}/v1/lb/services`)).json());
      const byId = new Map(view.services.map((/** @type {any} */ s) => [s.id, s.backends.map((/** @type {any} */ b) => b.address).sort().join(',')]));
      R.churnWrong = [];
      for (const [i, addrs] of expected) {
        const want = addrs.map((a) => `${a}:${TARGET}`).sort().join(',');
        if (byId.get(`${vip(i)}:${PORT}/tcp`) !== want) R.churnWrong.push(`svc-${i}`);
      }
      if (!R.churnWrong.length || nowMs() > deadline) break;
      await sleep(200);
    }
    R.churnCpuS = cpuS(pid) - cpu0;
    R.churnRssKb = vmRssKb(pid);
    R.churnHwmKb = vmHwmKb(pid);
  }
  return R;
}

function report(/** @type {ReturnType<typeof parseArgs>} */ opts, /** @type {any} */ R) {
  const N = opts.services;

  // ---- goals ----
  /** @type {Array<{ goal: string, value: string, ok: boolean | null }>} */
  const goals = [];
  const syncMs = median(R.sync);
  const bareMs = median(R.bare);
  const netMs = syncMs - bareMs;
  const rssMb = Math.max(...R.rssKb) / 1024;
  const nftMs = median(R.nft);
  goals.push({ goal: `full sync of ${n$(N)} Services, net of the harness (agent - bare informer) <= ${GOALS.syncMs} ms`, value: `${netMs.toFixed(0)} ms`, ok: netMs <= GOALS.syncMs });
  goals.push({ goal: `  full sync from the agent's process start, harness included (no goal)`, value: `${syncMs.toFixed(0)} ms`, ok: null });
  goals.push({ goal: `agent peak RSS (VmHWM) after the full sync <= ${GOALS.rssMb} MB`, value: `${rssMb.toFixed(0)} MB`, ok: rssMb <= GOALS.rssMb });
  goals.push({ goal: `  agent full sync / nft -f of kube-proxy's ruleset, both fresh processes (no goal)`, value: `${(syncMs / nftMs).toFixed(3)}x`, ok: null });
  const p50 = median(R.event);
  const p99 = pct(R.event, 0.99);
  const eventGoal = `event to effect p99 at ${n$(N)} Services <= ${GOALS.eventP99Ms} ms`;
  if (R.event.length) goals.push({ goal: `${eventGoal} (${n$(R.event.length)} changes)`, value: `${p99.toFixed(2)} ms`, ok: p99 <= GOALS.eventP99Ms });
  else goals.push({ goal: `${eventGoal} (--only sync)`, value: 'not measured', ok: null });
  const lost = R.churnWrong.length;
  if (R.churn) {
    goals.push({ goal: `churn: no change lost (${n$(R.churnApplied)} updates to ${n$(R.churnServices)} Services, final state compared)`, value: `${lost} wrong`, ok: lost === 0 });
    const ratio = R.churn.p99_ns / R.idle.p99_ns;
    goals.push({ goal: `churn: connect p99 during churn / idle <= ${GOALS.churnP99}`, value: `${ratio.toFixed(3)}x`, ok: ratio <= GOALS.churnP99 && R.churn.errors === 0 });
  } else goals.push({ goal: 'churn: no change lost, connect p99 <= 1.1x idle (--only sync)', value: 'not measured', ok: null });
  goals.push({ goal: 'External NodePort path (requests/s vs nftables DNAT >= 1.2x)', value: 'not measured', ok: null });
  const ok = goals.every((g) => g.ok !== false);

  const out = [];
  if (QUICK) out.push('EBPFNET_BENCH_QUICK=1: a smoke run (fewer Services, changes and seconds); its figures prove the harness, not the speed');
  out.push(`${n$(N)} Services (ClusterIP, one TCP port), ${n$(N * PER_SVC)} endpoints (${PER_SVC} per Service, one EndpointSlice each), list/watch server: test/helpers/kube-apiserver.ts in the bench's process`);
  out.push('');
  out.push(`full sync (median of ${opts.rounds}, each a fresh process, taking turns):`);
  out.push(`  ebpfnet agent   ${syncMs.toFixed(0).padStart(7)} ms${spread(R.sync)}  process start -> "kubernetes: synced" (maps written), peak RSS ${rssMb.toFixed(0)} MB${spread(R.rssKb.map((x) => x / 1024))}`);
  out.push(`  bare informer   ${bareMs.toFixed(0).padStart(7)} ms${spread(R.bare)}  harness: client-node informers listing the same objects, nothing else; peak RSS ${(Math.max(...R.bareRssKb) / 1024).toFixed(0)} MB`);
  out.push(`  agent - harness ${netMs.toFixed(0).padStart(7)} ms  (of the agent's time, writing the maps: ${median(R.applyMs).toFixed(0)} ms, its own status.lastApplyMs)`);
  out.push(`  nft -f          ${nftMs.toFixed(0).padStart(7)} ms${spread(R.nft)}  kube-proxy's nftables ruleset for the same Services (${n$(N)} service chains, ${n$(N * PER_SVC)} endpoint chains, service-ips verdict map), in a namespace of the bench's`);
  if (R.event.length) {
  out.push('');
  out.push(`event to effect (server emits one EndpointSlice change -> a connect from the cgroup reaches the new endpoint), ${n$(R.event.length)} changes:`);
  out.push(`  p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${Math.max(...R.event).toFixed(2)} ms (failed connects while switching: ${R.eventErrors})`);
  out.push('');
  out.push(`churn: ${n$(R.churnApplied)} EndpointSlice updates in ${opts.churnS} s (${(R.churnApplied / opts.churnS).toFixed(0)}/s) to ${n$(R.churnServices)} Services:`);
  out.push(`  connect to the probe Service${GAP_US ? `, paced ${GAP_US} us apart` : ', back to back'}: idle p50 ${(R.idle.p50_ns / 1000).toFixed(1)} us p99 ${(R.idle.p99_ns / 1000).toFixed(1)} us (${n$(R.idle.n)} calls); during churn p50 ${(R.churn.p50_ns / 1000).toFixed(1)} us p99 ${(R.churn.p99_ns / 1000).toFixed(1)} us (${n$(R.churn.n)} calls, ${R.churn.errors} errors)`);
  out.push(`  agent CPU ${R.churnCpuS.toFixed(2)} s in ${opts.churnS} s (${((100 * R.churnCpuS) / opts.churnS).toFixed(0)}% of one core), RSS ${(R.churnRssKb / 1024).toFixed(0)} MB, peak ${(R.churnHwmKb / 1024).toFixed(0)} MB; Services not matching the server after the churn: ${lost}${lost ? ` (${R.churnWrong.slice(0, 5).join(', ')}...)` : ''}`);
  }
  out.push('');
  out.push('External NodePort path: not measured: the packet path is not in this build');
  out.push('');
  out.push("kube-proxy's own figures and targets (cited, not measured here):");
  for (const [what, u, fig] of CITES) out.push(`  ${what}\n    ${u}\n    ${fig}`);
  out.push('');
  out.push('goals (issue 17):');
  const gw = Math.max(...goals.map((g) => g.goal.length));
  for (const g of goals) out.push(`  ${g.goal.padEnd(gw)}  ${g.value.padStart(12)}  ${g.ok === null ? '' : g.ok ? 'ok' : 'MISSED'}`);
  out.push('');
  out.push(ok ? 'every goal met' : 'a goal was missed');
  process.stdout.write(`${out.join('\n')}\n`);
  process.exitCode = ok ? 0 : 1;
}

main().catch((e) => {
  process.stderr.write(`kubernetes bench: ${e instanceof BenchError ? e.message : e.stack}\n`);
  process.exitCode = 1;
});
