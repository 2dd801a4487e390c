// SPDX-License-Identifier: Apache-2.0
// @ts-check
// What the fault scripts (tools/crash, tools/soak, tools/churn) share: a veth between namespaces of
// their own, a real `ebpfnet agent` process, a keep-alive HTTP client, a seeded random source, and
// one place that remembers everything they made so every exit path removes it.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { enterNetns } from './netns.mjs';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(root, 'dist', 'cli', 'main.js');

/** An expected failure: printed as one line, no stack, exit 2. */
export class HarnessError extends Error {}

/** Runs a command (in network namespace `ns` through nsenter, which keeps the host's bpffs). */
export function sh(/** @type {string} */ cmd, /** @type {string[]} */ args, /** @type {{ ns?: string, quiet?: boolean }} */ o = {}) {
  const [c, a] = o.ns ? ['nsenter', [`--net=/run/netns/${o.ns}`, cmd, ...args]] : [cmd, args];
  try {
    return execFileSync(c, a, { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    if (o.quiet) return '';
    const err = /** @type {{ stderr?: string, message: string }} */ (e);
    throw new HarnessError(`${cmd} ${args.join(' ').slice(0, 120)}: ${err.stderr?.trim() || err.message}`);
  }
}

/** mulberry32: a run is repeatable from its seed. */
export function prng(/** @type {number} */ seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `--name value` and `--flag` from argv, with defaults; an unknown option is an error. */
export function options(/** @type {Record<string, string | number | boolean>} */ defaults, argv = process.argv.slice(2)) {
  /** @type {Record<string, string | number | boolean>} */
  const o = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (!argv[i].startsWith('--') || !(k in defaults)) throw new HarnessError(`unknown option ${argv[i]}; known: ${Object.keys(defaults).map((d) => `--${d}`).join(' ')}`);
    if (typeof defaults[k] === 'boolean') o[k] = true;
    else {
      const v = argv[++i];
      if (v === undefined) throw new HarnessError(`--${k} needs a value`);
      o[k] = typeof defaults[k] === 'number' ? Number(v) : v;
      if (typeof defaults[k] === 'number' && !Number.isFinite(o[k])) throw new HarnessError(`--${k} ${v} is not a number`);
    }
  }
  return o;
}

export const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Everything a script made, undone in reverse order on every way out (the end, an error, Ctrl-C).
 */
export class Harness {
  /** @type {Array<() => void>} */
  undo = [];
  /** @type {Set<import('node:child_process').ChildProcess>} */
  children = new Set();
  id = `${process.pid % 100000}`;

  constructor() {
    const bail = () => {
      this.cleanup();
      process.exit(130);
    };
    process.once('SIGINT', bail);
    process.once('SIGTERM', bail);
  }

  /** Runs `fn` on cleanup (last registered, first run). */
  later(/** @type {() => void} */ fn) {
    this.undo.push(fn);
  }

  cleanup() {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    while (this.undo.length) {
      try {
        this.undo.pop()?.();
      } catch (e) {
        process.stderr.write(`cleanup: ${/** @type {Error} */ (e).message}\n`);
      }
    }
  }

  tempDir(/** @type {string} */ tag) {
    const d = mkdtempSync(join(tmpdir(), `ebpfnet-${tag}-`));
    this.later(() => rmSync(d, { recursive: true, force: true }));
    return d;
  }

  /**
   * Two namespaces and a veth pair between them: `host` sits in `hostNs`, which this process enters
   * at once (tools/lib/netns.mjs), so the agent it starts filters `host` and everything it binds or
   * sends stays out of the root namespace; `peer` sits in `ns`. IPv4 only: no neighbour discovery
   * besides the script's traffic.
   */
  veth(/** @type {string} */ tag) {
    const ns = `ebn-${tag}${this.id}`;
    const hostNs = `ebn-${tag}h${this.id}`;
    const host = `e${tag.slice(0, 3)}h${this.id}`;
    const peer = `e${tag.slice(0, 3)}p${this.id}`;
    const subnet = `10.196.${(process.pid % 250) + 1}`;
    const v = { ns, hostNs, host, peer, hostIp: `${subnet}.1`, peerIp: `${subnet}.2` };
    for (const n of [hostNs, ns]) {
      sh('ip', ['netns', 'add', n]);
      this.later(() => sh('ip', ['netns', 'del', n], { quiet: true }));
    }
    sh('ip', ['link', 'add', host, 'netns', hostNs, 'type', 'veth', 'peer', 'name', peer, 'netns', ns]);
    for (const [n, dev, a] of [[hostNs, host, v.hostIp], [ns, peer, v.peerIp]]) {
      sh('sysctl', ['-qw', `net.ipv6.conf.${dev}.disable_ipv6=1`], { ns: n });
      sh('ip', ['addr', 'add', `${a}/24`, 'dev', dev], { ns: n });
      sh('ip', ['link', 'set', dev, 'up'], { ns: n });
      sh('ip', ['link', 'set', 'lo', 'up'], { ns: n });
    }
    // cleanups run last first: this process leaves hostNs before the namespaces go
    this.later(enterNetns(hostNs));
    return v;
  }

  /**
   * A balancer's place of this script's own: a cgroup v2 (`cgroupRoot` is the hierarchy's root) and
   * a pin directory where nothing else looks, both removed on cleanup; bpffs and cgroup v2 are
   * mounted when they are not. Cleanups registered after this one (detaching the balancer) run first.
   */
  async lbSandbox(/** @type {string} */ tag) {
    const { ensureBpffs, ensureCgroup2 } = await import(pathToFileURL(join(root, 'dist', 'loader', 'pinfs.js')).href);
    ensureBpffs();
    const cgroupRoot = ensureCgroup2().path;
    const cgroup = join(cgroupRoot, `ebpfnet-${tag}-${this.id}`);
    mkdirSync(cgroup);
    this.later(() => rmdirSync(cgroup));
    const pinRoot = `/sys/fs/bpf/ebpfnet-${tag}-${this.id}`;
    this.later(() => rmSync(pinRoot, { recursive: true, force: true }));
    return { cgroupRoot, cgroup, pinDir: join(pinRoot, 'lb') };
  }

  /** `node -e SCRIPT ARGS` inside network namespace `ns`, stdio piped. */
  nodeIn(/** @type {string} */ ns, /** @type {string} */ script, /** @type {string[]} */ args = []) {
    const c = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, '--input-type=module', '-e', script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.children.add(c);
    return c;
  }

  /** Removes what an agent with this state directory runs (on cleanup too). */
  agentCleanupOnExit(/** @type {string} */ stateDir, /** @type {string[]} */ ifaces) {
    this.later(() => {
      sh(process.execPath, [CLI, 'agent', '--cleanup', '--state-dir', stateDir], { quiet: true });
      for (const i of ifaces) sh(process.execPath, [CLI, 'unload', '--iface', i], { quiet: true });
    });
  }

  /**
   * Starts `ebpfnet agent` and waits for `ready`. `listen` defaults to a port the kernel picks.
   * @returns {Promise<{ proc: import('node:child_process').ChildProcess, pid: number, url: string, port: number, token: string, out: () => string }>}
   */
  async agent(/** @type {{ config: string, stateDir: string, listen?: string, timeoutMs?: number }} */ o) {
    const proc = spawn(process.execPath, [CLI, 'agent', '--config', o.config, '--state-dir', o.stateDir, '--listen', o.listen ?? '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(proc);
    let out = '';
    let err = '';
    // keep both pipes drained: the audit lines alone would fill one in seconds
    proc.stdout?.on('data', (d) => {
      if (out.length < 1 << 16) out += d;
    });
    proc.stderr?.on('data', (d) => {
      if (err.length < 1 << 16) err += d;
    });
    const t0 = Date.now();
    for (;;) {
      const m = /api: (http:\/\/[\d.]+:(\d+))\/v1/.exec(out);
      if (m && /^ready$|"msg":"ready"/m.test(out)) {
        const token = readFileSync(join(o.stateDir, 'token'), 'utf8').trim();
        return { proc, pid: /** @type {number} */ (proc.pid), url: m[1], port: Number(m[2]), token, out: () => out };
      }
      if (proc.exitCode !== null || proc.signalCode !== null || Date.now() - t0 > (o.timeoutMs ?? 60_000)) {
        proc.kill('SIGKILL');
        throw new HarnessError(`agent did not start (${proc.exitCode ?? proc.signalCode ?? 'timed out'}): ${err.trim() || out.trim()}`);
      }
      await sleep(20);
    }
  }
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });

/**
 * One HTTP request; never throws: a refused or cut connection is status 0 with the error's code.
 * @returns {Promise<{ status: number, body: string, ms: number, error?: string }>}
 */
export function request(/** @type {string} */ url, /** @type {string} */ method, /** @type {string | null} */ body = null, /** @type {Record<string, string>} */ headers = {}, timeoutMs = 30_000) {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = http.request(url, { method, agent: keepAlive, timeout: timeoutMs, headers: body === null ? headers : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b, ms: performance.now() - t0 }));
      res.on('error', (e) => resolve({ status: 0, body: b, ms: performance.now() - t0, error: /** @type {NodeJS.ErrnoException} */ (e).code ?? e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, body: '', ms: performance.now() - t0, error: /** @type {NodeJS.ErrnoException} */ (e).code ?? e.message }));
    req.end(body ?? undefined);
  });
}

/** Drops the keep-alive sockets (after an agent died, so no request rides a dead one). */
export const dropConnections = () => keepAlive.destroy();

/** Prometheus text -> Map of `name{labels}` -> value. */
export function parseMetrics(/** @type {string} */ text) {
  /** @type {Map<string, number>} */
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

/** Resident memory (kB) and open descriptors of a process, from /proc. */
export function processUse(/** @type {number} */ pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  return { rssKb, fds };
}

/** Runs `main`, prints an expected failure as one line, always cleans up; exit 0 / 1 (verdict) / 2. */
export function run(/** @type {Harness} */ h, /** @type {string} */ name, /** @type {() => Promise<boolean>} */ main) {
  main()
    .then((ok) => {
      h.cleanup();
      process.exit(ok ? 0 : 1);
    })
    .catch((e) => {
      h.cleanup();
      console.error(`${name}: ${e instanceof HarnessError ? e.message : e.stack}`);
      process.exit(2);
    });
}
