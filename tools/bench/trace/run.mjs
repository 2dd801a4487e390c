#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The trace benchmark: what tracing mkdir costs the traced program. A small C program
// (mkdir-loop.c, built into build/bench/) makes N mkdir+rmdir pairs on tmpfs and times them itself,
// pinned to one CPU with taskset (the last, or --cpu N) so every run's workload is the same loop on
// the same CPU,
//   untraced,
//   under `ebpfnet trace mkdir -o json > FILE`, and
//   under bpftrace running the equivalent script (the same tracepoints, per-thread state at entry,
//   one printf per call at exit) > FILE,
// both tracers writing to the same sink: a new file in the same tmpfs directory, read afterwards to
// count the lines each wrote for the workload's own calls (and bpftrace's lost-event reports).
// Interleaved: every traced run between two untraced ones, the tracers taking turns, REPS runs each
// (7 by default: these machines are shared and their speed drifts). The table shows the median
// µs per pair and the best run of each, and per tracer the median of its paired ratios: each traced
// run against the mean of the untraced runs just before and after it.
// Each traced run starts its tracer afresh, waits until its tracepoints are attached, and stops it
// with SIGINT after the burst, so every run reports its own lost events.
// Goals (issue 4): ebpfnet <= 1.3x untraced, cheaper than bpftrace, and no event lost for a burst
// of 200,000 at the default ring buffer size. Exit 1 when one is missed.
//   node tools/bench/trace/run.mjs [--json] [--reps N] [--pairs N] [--cpu N]
// EBPFNET_BENCH_QUICK=1: a smoke run (2 reps of 20,000 pairs) that proves the harness, not the figures.
// Needs root, dist/ (npx tsc -p .), build/bpf/trace.bpf.o (node tools/build-bpf.mjs), a C compiler,
// bpftool, and bpftrace (apt-get install bpftrace; `npm run bench` installs it).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync, statfsSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const CLI = join(root, 'dist', 'cli', 'main.js');
const OBJECT = join(root, 'build', 'bpf', 'trace.bpf.o');
const LOOP_SRC = join(here, 'mkdir-loop.c');
const LOOP_BIN = join(root, 'build', 'bench', 'trace-mkdir-loop');
const TMPFS_MAGIC = 0x01021994;

const GOALS = { maxRatio: 1.3, lost: 0 };
const QUICK = process.env.EBPFNET_BENCH_QUICK === '1';
/** pause between a tracer being attached and the burst */
const SETTLE_MS = 500;

class BenchError extends Error {}

function parseArgs(/** @type {string[]} */ argv) {
  const out = { json: false, reps: QUICK ? 2 : 7, pairs: QUICK ? 20_000 : 200_000, cpu: cpus().length - 1 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--json') out.json = true;
    else if (argv[i] === '--reps') out.reps = Number(argv[++i]);
    else if (argv[i] === '--pairs') out.pairs = Number(argv[++i]);
    else if (argv[i] === '--cpu') out.cpu = Number(argv[++i]);
    else throw new BenchError(`usage: unknown option ${argv[i]}; options: --json, --reps N, --pairs N, --cpu N`);
  }
  if (!Number.isInteger(out.reps) || out.reps < 1) throw new BenchError('usage: --reps wants a positive integer');
  if (!Number.isInteger(out.pairs) || out.pairs < 1) throw new BenchError('usage: --pairs wants a positive integer');
  if (!Number.isInteger(out.cpu) || out.cpu < 0 || out.cpu >= cpus().length) throw new BenchError(`usage: --cpu wants a CPU number from 0 to ${cpus().length - 1}`);
  return out;
}

const has = (/** @type {string} */ cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

/** Compiles mkdir-loop.c when the binary is missing or older than its source. */
function buildLoop() {
  if (existsSync(LOOP_BIN) && statSync(LOOP_SRC).mtimeMs <= statSync(LOOP_BIN).mtimeMs) return;
  mkdirSync(dirname(LOOP_BIN), { recursive: true });
  const tmp = `${LOOP_BIN}.tmp`;
  try {
    execFileSync('cc', ['-O2', '-Wall', LOOP_SRC, '-o', tmp], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = /** @type {{ stderr?: Buffer, message: string }} */ (e);
    throw new BenchError(`build the workload: ${err.stderr?.toString().trim() || err.message}; it needs a C compiler (apt-get install gcc)`);
  }
  // renamed into place so an interrupted build never leaves a half-written binary that looks fresh
  renameSync(tmp, LOOP_BIN);
}

/**
 * A directory on tmpfs for the workload: under /dev/shm when that is tmpfs, else a tmpfs mounted
 * for this run. Returns it and how to remove it.
 */
function tmpfsDir() {
  if (existsSync('/dev/shm') && statfsSync('/dev/shm').type === TMPFS_MAGIC) {
    const dir = mkdtempSync('/dev/shm/ebpfnet-bench-trace-');
    return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }
  const dir = mkdtempSync(join(tmpdir(), 'ebpfnet-bench-trace-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1g', 'tmpfs', dir]);
  return {
    dir,
    cleanup: () => {
      spawnSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The mkdir syscalls this kernel has tracepoints for (arm64 has no mkdir, only mkdirat), found the
 * way `ebpfnet trace` finds them, so both tracers hook the same set.
 */
async function mkdirSyscalls() {
  /** @type {typeof import('../../../dist/trace/tracer.js')} */
  let T;
  /** @type {typeof import('../../../dist/trace/syscalls.js')} */
  let S;
  /** @type {typeof import('../../../dist/loader/system.js')} */
  let L;
  try {
    T = await import('../../../dist/trace/tracer.js');
    S = await import('../../../dist/trace/syscalls.js');
    L = await import('../../../dist/loader/system.js');
  } catch (e) {
    throw new BenchError(`load ebpfnet: ${/** @type {Error} */ (e).message}; build it: npx tsc -p .`);
  }
  const names = T.coverage(S.resolveSyscalls('mkdir'), L.ensureTracefs().path).traced.map((s) => s.name);
  if (!names.length) throw new BenchError('find the mkdir tracepoints: this kernel has none (CONFIG_FTRACE_SYSCALLS)');
  return names;
}

/**
 * The bpftrace side of the comparison: the same hooks and the same per-call work as ebpfnet (state
 * per thread at entry; pid, tid, uid, comm, path, mode, result and latency printed at exit).
 */
function bpftraceScript(/** @type {string[]} */ syscalls) {
  const enter = syscalls
    .map((s) => `tracepoint:syscalls:sys_enter_${s} { @start[tid] = nsecs; @path[tid] = args->pathname; @mode[tid] = args->mode; }`)
    .join('\n');
  const exits = syscalls.map((s) => `tracepoint:syscalls:sys_exit_${s}`).join(', ');
  return `${enter}
${exits} /@start[tid]/ {
  printf("%d %d %d %s %s %o %d %d\\n", pid, tid, uid, comm, str(@path[tid]), @mode[tid], args->ret, nsecs - @start[tid]);
  delete(@start[tid]); delete(@path[tid]); delete(@mode[tid]);
}
`;
}

/** How many tracepoint links a process holds (bpftool perf): a tracer is ready when it has all. */
function perfLinks(/** @type {number} */ pid) {
  const all = JSON.parse(execFileSync('bpftool', ['-j', 'perf'], { encoding: 'utf8' }));
  return all.filter((/** @type {{ pid: number }} */ p) => p.pid === pid).length;
}

/** the CPU the workload is pinned to (set once from --cpu) */
let loopCpu = 0;

/** @param {number} pairs @param {string} path */
function runLoop(pairs, path) {
  let out;
  try {
    out = execFileSync('taskset', ['-c', String(loopCpu), LOOP_BIN, String(pairs), path], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 }).toString();
  } catch (e) {
    const err = /** @type {{ stderr?: Buffer, message: string }} */ (e);
    throw new BenchError(`workload: ${err.stderr?.toString().trim() || err.message}`);
  }
  const j = JSON.parse(out);
  if (j.pairs !== pairs) throw new BenchError(`workload: made ${j.pairs} pairs, asked for ${pairs}`);
  return { nsPerPair: j.ns / pairs, pid: /** @type {number} */ (j.pid) };
}

/**
 * Starts a tracer, waits until `ready()` says so, runs the burst, stops the tracer with SIGINT and
 * waits for it to finish draining.
 * @param {string} what
 * @param {string} cmd
 * @param {string[]} args
 * @param {number} outFd where its stdout goes
 * @param {(p: import('node:child_process').ChildProcess, stderr: () => string) => boolean} ready
 * @param {() => { nsPerPair: number, pid: number }} burst
 */
async function traced(what, cmd, args, outFd, ready, burst) {
  const p = spawn(cmd, args, { stdio: ['ignore', outFd, 'pipe'] });
  let stderr = '';
  p.stderr?.on('data', (d) => (stderr += d));
  /** @type {Promise<number | null>} */
  const exited = new Promise((r) => p.on('exit', (code, sig) => r(code ?? (sig ? 128 : null))));
  try {
    const t0 = Date.now();
    while (!ready(p, () => stderr)) {
      if (p.exitCode !== null) throw new BenchError(`${what}: exited ${p.exitCode} before it was ready: ${stderr.trim()}`);
      if (Date.now() - t0 > 60_000) throw new BenchError(`${what}: not ready after 60 s: ${stderr.trim()}`);
      await sleep(50);
    }
    // Both tracers get the same moment to settle after attaching (start-up work, first JIT tiers):
    // the figure is what tracing costs a running system, not what starting a tracer costs.
    await sleep(SETTLE_MS);
    const r = burst();
    p.kill('SIGINT');
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    const code = await exited;
    clearTimeout(timer);
    if (code !== 0) throw new BenchError(`${what}: exited ${code} after SIGINT: ${stderr.trim()}`);
    return { ...r, stderr };
  } finally {
    if (p.exitCode === null) p.kill('SIGKILL');
  }
}

/** Lines in `text` that begin with `prefix` or contain `infix` (one line per event). */
function countLines(/** @type {string} */ text, /** @type {(line: string) => boolean} */ ofWorkload) {
  let n = 0;
  for (const line of text.split('\n')) if (ofWorkload(line)) n++;
  return n;
}

async function runEbpfnet(/** @type {number} */ pairs, /** @type {string} */ path, /** @type {string} */ outFile) {
  const fd = openSync(outFile, 'w');
  try {
    const r = await traced('ebpfnet trace', process.execPath, [CLI, 'trace', 'mkdir', '-o', 'json'], fd, (_p, err) => /^tracing /m.test(err()), () => runLoop(pairs, path));
    const m = /^summary: (\d+) events seen, (\d+) lost/m.exec(r.stderr);
    if (!m) throw new BenchError(`ebpfnet trace: no summary on stderr: ${r.stderr.trim()}`);
    // what reached the sink for the workload's own calls, counted as bpftrace's are
    const needle = `"pid":${r.pid},`;
    const written = countLines(readFileSync(outFile, 'utf8'), (l) => l.includes(needle));
    return { nsPerPair: r.nsPerPair, seen: Number(m[1]), lost: Number(m[2]), written };
  } finally {
    closeSync(fd);
    rmSync(outFile, { force: true });
  }
}

async function runBpftrace(/** @type {number} */ pairs, /** @type {string} */ path, /** @type {string[]} */ syscalls, /** @type {string} */ outFile) {
  const fd = openSync(outFile, 'w');
  try {
    const want = syscalls.length * 2;
    const r = await traced('bpftrace', 'bpftrace', ['-e', bpftraceScript(syscalls)], fd, (p) => !!p.pid && perfLinks(p.pid) === want, () => runLoop(pairs, path));
    const text = readFileSync(outFile, 'utf8');
    let lost = 0;
    for (const m of text.matchAll(/^Lost (\d+) events/gm)) lost += Number(m[1]);
    // lines printed for the workload's own calls (the machine makes others)
    const prefix = `${r.pid} `;
    const written = countLines(text, (l) => l.startsWith(prefix));
    return { nsPerPair: r.nsPerPair, seen: written, lost, written };
  } finally {
    closeSync(fd);
    rmSync(outFile, { force: true });
  }
}

const median = (/** @type {number[]} */ xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (/** @type {number} */ n) => Math.round(n).toLocaleString('en-US');

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new BenchError('check privileges: run as root (tracing needs CAP_BPF and CAP_PERFMON)');
  if (!existsSync(CLI)) throw new BenchError(`find the CLI: no ${CLI}; build it: npx tsc -p .`);
  if (!existsSync(OBJECT)) throw new BenchError(`find the BPF object: no ${OBJECT}; build it: node tools/build-bpf.mjs`);
  if (!has('bpftool')) throw new BenchError('find bpftool: not installed; apt-get install bpftool');
  if (!has('bpftrace')) throw new BenchError('find bpftrace: not installed; apt-get install bpftrace (npm run bench installs it)');
  if (!has('taskset')) throw new BenchError('find taskset: not installed; apt-get install util-linux');
  loopCpu = args.cpu;
  buildLoop();
  const syscalls = await mkdirSyscalls();
  const work = tmpfsDir();
  const onSignal = () => {
    work.cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  /** @typedef {{ nsPerPair: number, seen?: number, lost?: number, written?: number, ratio?: number }} Run */
  /** @type {Record<'untraced' | 'ebpfnet' | 'bpftrace', Run[]>} */
  const runs = { untraced: [], ebpfnet: [], bpftrace: [] };
  const path = join(work.dir, 'd');
  try {
    runLoop(Math.min(args.pairs, 20_000), path); // warm-up: dentry and inode caches, the binary paged in
    // Every traced run sits between two untraced ones and is compared with their mean: on a shared
    // machine whose speed drifts from minute to minute, a ratio to the runs beside it holds still
    // where one to a global median would not. The two tracers take turns going first.
    const untraced = () => {
      const r = { nsPerPair: runLoop(args.pairs, path).nsPerPair };
      runs.untraced.push(r);
      return r.nsPerPair;
    };
    let before = untraced();
    for (let rep = 0; rep < args.reps; rep++) {
      /** @type {Array<'ebpfnet' | 'bpftrace'>} */
      const order = rep % 2 ? ['bpftrace', 'ebpfnet'] : ['ebpfnet', 'bpftrace'];
      for (const mode of order) {
        const r = mode === 'ebpfnet' ? await runEbpfnet(args.pairs, path, join(work.dir, 'ebpfnet.out')) : await runBpftrace(args.pairs, path, syscalls, join(work.dir, 'bpftrace.out'));
        const after = untraced();
        runs[mode].push({ ...r, ratio: r.nsPerPair / ((before + after) / 2) });
        before = after;
      }
    }
  } finally {
    work.cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  const us = {
    untraced: median(runs.untraced.map((r) => r.nsPerPair)) / 1000,
    ebpfnet: median(runs.ebpfnet.map((r) => r.nsPerPair)) / 1000,
    bpftrace: median(runs.bpftrace.map((r) => r.nsPerPair)) / 1000,
  };
  const best = {
    untraced: Math.min(...runs.untraced.map((r) => r.nsPerPair)) / 1000,
    ebpfnet: Math.min(...runs.ebpfnet.map((r) => r.nsPerPair)) / 1000,
    bpftrace: Math.min(...runs.bpftrace.map((r) => r.nsPerPair)) / 1000,
  };
  // the median of the paired ratios (each traced run against the untraced runs beside it)
  const ratio = { ebpfnet: median(runs.ebpfnet.map((r) => r.ratio ?? NaN)), bpftrace: median(runs.bpftrace.map((r) => r.ratio ?? NaN)) };
  const worstLost = (/** @type {Run[]} */ rs) => Math.max(...rs.map((r) => r.lost ?? 0));
  const fewestWritten = (/** @type {Run[]} */ rs) => Math.min(...rs.map((r) => r.written ?? 0));
  const lost = { ebpfnet: worstLost(runs.ebpfnet), bpftrace: worstLost(runs.bpftrace) };
  // lines in the sink for the workload's own mkdir calls, the fewest of any run
  const written = { ebpfnet: fewestWritten(runs.ebpfnet), bpftrace: fewestWritten(runs.bpftrace) };
  const ok = {
    ratio: ratio.ebpfnet <= GOALS.maxRatio,
    fasterThanBpftrace: ratio.ebpfnet < ratio.bpftrace,
    // every run: none lost, and every one of the workload's calls written to the sink
    noneLost: lost.ebpfnet === GOALS.lost && written.ebpfnet >= args.pairs,
  };
  const missed = [];
  if (!ok.ratio) missed.push(`ebpfnet makes the pair ${ratio.ebpfnet.toFixed(3)}x slower, the goal is <= ${GOALS.maxRatio.toFixed(2)}x`);
  if (!ok.fasterThanBpftrace) missed.push(`ebpfnet (${ratio.ebpfnet.toFixed(3)}x) is not cheaper than bpftrace (${ratio.bpftrace.toFixed(3)}x)`);
  if (!ok.noneLost) missed.push(`ebpfnet lost up to ${fmt(lost.ebpfnet)} events in a run and wrote at least ${fmt(written.ebpfnet)} of the workload's ${fmt(args.pairs)}; the goal is none lost`);

  if (args.json) {
    console.log(JSON.stringify({ quick: QUICK, params: { pairs: args.pairs, reps: args.reps, cpu: args.cpu, syscalls }, runs, medianUsPerPair: us, bestUsPerPair: best, ratio, lost, written, goals: GOALS, ok: { ...ok, all: missed.length === 0 }, missed }));
  } else {
    const mark = (/** @type {boolean} */ good) => (good ? 'ok' : 'MISSED');
    const row = (/** @type {string} */ label, /** @type {string} */ u, /** @type {string} */ b, /** @type {string} */ r, /** @type {string} */ l) =>
      `${label.padEnd(44)}${u.padStart(8)}${b.padStart(8)}${r.padStart(8)}   ${l}`;
    const f2 = (/** @type {number} */ x) => x.toFixed(2);
    if (QUICK) console.log('EBPFNET_BENCH_QUICK=1: a smoke run (few, short runs); its figures prove the harness, not the speed');
    console.log(`trace benchmark: ${fmt(args.pairs)} mkdir+rmdir pairs on tmpfs from one loop pinned to CPU ${args.cpu} (taskset), ${args.reps} runs per tracer between ${runs.untraced.length} untraced ones (tracing ${syscalls.join(', ')})`);
    console.log('both tracers write to the same sink: a file of their own in the same tmpfs directory');
    console.log(row('', 'us/pair', 'best', 'ratio', 'workload events written (fewest) / lost (worst run)'));
    console.log(row('untraced', f2(us.untraced), f2(best.untraced), '1.00', '-'));
    console.log(row('ebpfnet trace mkdir -o json > FILE', f2(us.ebpfnet), f2(best.ebpfnet), ratio.ebpfnet.toFixed(3), `${fmt(written.ebpfnet)} of ${fmt(args.pairs)} / ${fmt(lost.ebpfnet)} lost`));
    console.log(row('bpftrace, same tracepoints and fields > FILE', f2(us.bpftrace), f2(best.bpftrace), ratio.bpftrace.toFixed(3), `${fmt(written.bpftrace)} of ${fmt(args.pairs)} / ${fmt(lost.bpftrace)} lost`));
    console.log(`(ratio: median over runs of a traced run / the mean of the untraced runs before and after it; tracing adds ${(us.ebpfnet - us.untraced).toFixed(2)} us per pair with ebpfnet, ${(us.bpftrace - us.untraced).toFixed(2)} us with bpftrace; default ring buffer; each traced run starts its tracer afresh)`);
    console.log('goals (issues 4 and 16):');
    console.log(`  ebpfnet ratio <= ${GOALS.maxRatio.toFixed(2)}x untraced                     ${ratio.ebpfnet.toFixed(3).padStart(8)}x  ${mark(ok.ratio)}`);
    console.log(`  ebpfnet ratio < bpftrace ratio (${ratio.bpftrace.toFixed(3)}x)              ${ratio.ebpfnet.toFixed(3).padStart(8)}x  ${mark(ok.fasterThanBpftrace)}`);
    console.log(`  ebpfnet: none lost, every workload call written  ${`${fmt(lost.ebpfnet)} lost`.padStart(9)}  ${mark(ok.noneLost)}`);
    console.log(missed.length ? 'a goal was missed' : 'every goal met');
    for (const line of missed) console.error(`trace benchmark: goal missed: ${line}`);
  }
  if (missed.length) process.exitCode = 1;
}

main().catch((e) => {
  // expected failures print one line; anything else keeps its stack for whoever debugs it
  const expected = e instanceof BenchError || String(e?.code).startsWith('EBPFNET_');
  console.error(expected ? `trace benchmark: ${e.message}` : e);
  process.exitCode = 1;
});
