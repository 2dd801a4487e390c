#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The runtime benchmark: our TypeScript loader against libbpf from C, side by side in one run.
//   map:  update+lookup pairs on st_rules (ops/s, one op per update and one per lookup);
//         goal: TypeScript >= 0.50 of C, where C is the floor the bpf() syscall sets.
//   ring: events drained from st_events (events/s), filled by BPF_PROG_TEST_RUN beforehand so that
//         only the consumer is timed; goal: TypeScript >= 0.25 of C and >= 1,000,000 events/s.
//         Both sides read each record in place (C through libbpf's callback, TypeScript through
//         RingBuffer.consumeRaw).
//   ring, decoded: TypeScript decoding every record into an object with the generated codec
//         (RingBuffer.consume), against the same C figure; goal: >= 0.25 of C.
//   tracer JSON: the tracer's own output path, `ebpfnet trace mkdir -o json`'s: the trace object
//         attached, its ring filled by real mkdir calls from a shell started once (untimed), then
//         drained in the CLI's poll slices through the tracer's reader, summary and JSON renderer
//         into a file on tmpfs (timed); goal: >= 1,000,000 events/s.
// Both sides do the same work (same keys and cookies, same fills, every record read and its seq
// summed) and warm up once, untimed. The C program (bench.c) stays up and takes commands, so each
// repetition alternates the two sides slice by slice (a tenth of the map pairs, or one fill of the
// ring) and flips which goes first: on a shared machine throughput swings by a third within
// seconds, and fine interleaving puts the same swings on both sides. The table shows medians over
// the repetitions. A lost event, a short drain or a lookup returning the wrong cookie fails the
// run: a fast wrong answer is no result.
// Both sides run on one CPU (the last, unless --cpu says otherwise): on a virtual machine a syscall
// can cost half again as much on one vCPU as on another, which would otherwise decide the map
// ratio more than either side's code does.
//   node tools/bench/runtime/run.mjs [--json] [--reps N] [--cpu N | --no-pin]
// EBPFNET_BENCH_QUICK=1: a smoke run (2 repetitions) that proves the harness, not the figures.
// Needs root, a built object (node tools/build-bpf.mjs), dist/ (npx tsc -p .) and a C compiler
// with libbpf-dev for the C half, which is built into build/bench/ when bench.c changes.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { constants, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const OBJECT = join(root, 'build', 'bpf', 'selftest.bpf.o');
const C_SRC = join(here, 'bench.c');
const C_BIN = join(root, 'build', 'bench', 'runtime-c');
/** bench.c includes the generated layout header, so a layout change must rebuild it too */
const C_DEPS = [C_SRC, join(root, 'bpf', 'include', 'gen', 'selftest.maps.h')];

/** update+lookup pairs per repetition, and the slices they are split into */
const K = 100_000;
const SLICES = 10;
/** events per fill: 32 bytes each in the ring (8-byte header + 24), 3.2 MB of its 4 MiB */
const R = 100_000;
/** fill/drain rounds per repetition */
const ROUNDS = 10;

const GOALS = { mapRatio: 0.5, ringRatio: 0.25, ringRate: 1_000_000, decodedRatio: 0.25, tracerJsonRate: 1_000_000 };
const QUICK = process.env.EBPFNET_BENCH_QUICK === '1';
/** mkdir calls per fill of the tracer's ring, and the fills per repetition */
const TRACE_CALLS = 50_000;
const TRACE_FILLS = 2;
/** the tracer's ring: 32 MiB, twice a fill (344 bytes a record), room for the machine's own mkdirs */
const TRACE_RING = 1 << 25;
const LOOP_SRC = join(here, '..', 'trace', 'mkdir-loop.c');
const LOOP_BIN = join(root, 'build', 'bench', 'trace-mkdir-loop');

class BenchError extends Error {}

/** Must match bench_key() in bench.c: 7919 is odd, so the keys visit all 1024 slots of st_rules. */
const benchKey = (/** @type {number} */ i) => (0x0a000000 | (Math.imul(i, 7919) & 1023)) >>> 0;

function parseArgs(/** @type {string[]} */ argv) {
  /** @type {{ json: boolean, reps: number, cpu: number | null }} */
  const out = { json: false, reps: QUICK ? 2 : 5, cpu: cpus().length - 1 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--json') out.json = true;
    else if (argv[i] === '--reps') out.reps = Number(argv[++i]);
    else if (argv[i] === '--cpu') out.cpu = Number(argv[++i]);
    else if (argv[i] === '--no-pin') out.cpu = null;
    else throw new BenchError(`usage: unknown option ${argv[i]}; options: --json, --reps N, --cpu N, --no-pin`);
  }
  if (!Number.isInteger(out.reps) || out.reps < 1) throw new BenchError('usage: --reps wants a positive integer');
  if (out.cpu !== null && !(Number.isInteger(out.cpu) && out.cpu >= 0)) throw new BenchError('usage: --cpu wants a CPU number');
  return out;
}

/**
 * Pins the calling thread, and only it, to `cpu`: the timed loops of both sides then share one CPU
 * (the C program is spawned from this thread and inherits its mask), while V8's collector and
 * compiler threads stay free to run elsewhere, as in any node process. Pinning the whole process
 * (taskset) instead put the collector on the same CPU and halved the TypeScript ring rate here.
 */
async function pinThisThread(/** @type {number} */ cpu) {
  const { default: koffi } = await import('koffi');
  const setAffinity = koffi.load('libc.so.6').func('int sched_setaffinity(int pid, size_t size, const void *mask)');
  const mask = Buffer.alloc(128); // cpu_set_t: 1024 bits
  if (cpu >= mask.length * 8) throw new BenchError(`pin to CPU ${cpu}: there is no such CPU here`);
  mask[cpu >> 3] |= 1 << (cpu & 7);
  // pid 0 is the calling thread, not the whole process
  if (setAffinity(0, mask.length, mask) !== 0) {
    const errno = Object.entries(constants.errno).find(([, v]) => v === koffi.errno())?.[0] ?? `errno ${koffi.errno()}`;
    throw new BenchError(`pin to CPU ${cpu}: sched_setaffinity failed (${errno}); choose another with --cpu N, or pass --no-pin`);
  }
}

const mtime = (/** @type {string} */ p) => statSync(p).mtimeMs;

/** The trace benchmark's mkdir loop, which fills the tracer's ring here. */
function buildLoop() {
  if (existsSync(LOOP_BIN) && mtime(LOOP_SRC) <= mtime(LOOP_BIN)) return;
  mkdirSync(dirname(LOOP_BIN), { recursive: true });
  try {
    execFileSync('cc', ['-O2', '-Wall', LOOP_SRC, '-o', `${LOOP_BIN}.tmp`], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = /** @type {{ stderr?: Buffer, message: string }} */ (e);
    throw new BenchError(`build the mkdir loop: ${err.stderr?.toString().trim() || err.message}; it needs a C compiler (apt-get install gcc)`);
  }
  renameSync(`${LOOP_BIN}.tmp`, LOOP_BIN);
}

/**
 * The tracer's JSON output path, as `ebpfnet trace mkdir -o json > FILE` runs it: every record
 * selected in place, counted in the summary, rendered to JSON and written out once per slice of
 * the CLI's MAX_PER_TICK records, as the CLI's poll loop does. Returns drain(), which fills the ring
 * with TRACE_CALLS real mkdir calls (untimed) and times the drain, and close(), which detaches and
 * removes what it made.
 * The mkdir loop runs under one shell started before anything is timed, never forked from this
 * process per fill: a fork marks every page of this process copy-on-write, and the renderer's
 * output buffer then took one page fault per 4 KiB it wrote (3,700 faults per drain of 50,000
 * events, 2-3 µs an event here), a cost `ebpfnet trace`, which forks nothing, never pays.
 */
async function startTracerJson() {
  /** @type {any} */
  let T;
  try {
    T = {
      ...(await import('../../../dist/trace/tracer.js')),
      ...(await import('../../../dist/trace/render.js')),
      ...(await import('../../../dist/trace/summary.js')),
      ...(await import('../../../dist/trace/syscalls.js')),
      ...(await import('../../../dist/trace/event.js')),
      ...(await import('../../../dist/gen/trace.js')),
      ...(await import('../../../dist/cli/trace.js')),
    };
  } catch (e) {
    throw new BenchError(`load the tracer: ${/** @type {Error} */ (e).message}; build it: npx tsc -p .`);
  }
  const dir = mkdtempSync('/dev/shm/ebpfnet-bench-runtime-');
  const sinkPath = join(dir, 'trace.json');
  // O_APPEND: after each drain's truncate the next one writes from the start again
  const sink = openSync(sinkPath, 'a');
  // one line per fill on stdin (the call count), the loop's one JSON line back; exits at EOF
  const filler = spawn('sh', ['-c', 'while read n; do "$0" "$n" "$1" || exit 1; done', LOOP_BIN, join(dir, 'd')], { stdio: ['pipe', 'pipe', 'pipe'] });
  let fillerErr = '';
  filler.stderr.on('data', (d) => (fillerErr += d));
  filler.stdin.on('error', () => {});
  /** @type {{ resolve: () => void, reject: (e: Error) => void }[]} */
  const waiting = [];
  createInterface({ input: filler.stdout }).on('line', () => waiting.shift()?.resolve());
  filler.on('close', (code) => {
    for (const w of waiting.splice(0)) w.reject(new BenchError(`tracer JSON: the mkdir loop: ${fillerErr.trim() || `exited with status ${code}`}`));
  });
  const fill = () =>
    new Promise((resolve, reject) => {
      waiting.push({ resolve: () => resolve(undefined), reject });
      filler.stdin.write(`${TRACE_CALLS}\n`);
    });
  /** @type {any} */
  let tracer = null;
  const close = () => {
    filler.removeAllListeners('close');
    filler.stdin.end();
    tracer?.close();
    closeSync(sink);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    tracer = T.Tracer.open({ syscalls: T.resolveSyscalls('mkdir'), pid: null, uid: null, failedOnly: false, cgroupId: null, bufferSize: TRACE_RING });
  } catch (e) {
    close();
    throw e;
  }
  const reader = new T.RecordReader();
  const renderer = new T.Renderer('json', { timestamps: false }, T.wallClockOffsetUs());
  const summary = new T.TraceSummary();
  const onRecord = (/** @type {Buffer} */ b, /** @type {number} */ off) => {
    const r = reader.select(b, off);
    summary.add(r.comm(), T.syscallName(r.syscall()), r.ret());
    renderer.record(r);
  };
  return {
    /** fills before timing: enough to write the whole ring once, whose pages a fresh VM backs lazily */
    warmFills: Math.ceil(TRACE_RING / (TRACE_CALLS * (8 + T.TrEvent.size))) + 1,
    async drain() {
      await fill();
      let events = 0;
      const t0 = process.hrtime.bigint();
      for (;;) {
        const n = tracer.poll(onRecord, T.MAX_PER_TICK);
        if (renderer.pending) writeSync(sink, renderer.take());
        events += n;
        if (n < T.MAX_PER_TICK) break;
      }
      const ns = Number(process.hrtime.bigint() - t0);
      const lost = tracer.lostCounts().lost;
      if (lost) throw new BenchError(`tracer JSON: the trace program lost ${lost} events (ring full)`);
      if (events < TRACE_CALLS) throw new BenchError(`tracer JSON: drained ${events} events, the loop made ${TRACE_CALLS} mkdir calls`);
      ftruncateSync(sink, 0);
      return { events, ns };
    },
    close,
  };
}

/** Compiles bench.c when the binary is missing or older than its sources. */
function buildC() {
  if (existsSync(C_BIN) && C_DEPS.every((d) => mtime(d) <= mtime(C_BIN))) return;
  mkdirSync(dirname(C_BIN), { recursive: true });
  const tmp = `${C_BIN}.tmp`;
  try {
    execFileSync('cc', ['-O2', '-Wall', '-I', join(root, 'bpf', 'include'), C_SRC, '-lbpf', '-o', tmp], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = /** @type {{ stderr?: Buffer, message: string }} */ (e);
    throw new BenchError(`build the C reference: ${err.stderr?.toString().trim() || err.message}; it needs a C compiler and libbpf-dev (apt-get install gcc libbpf-dev)`);
  }
  // renamed into place so an interrupted build never leaves a half-written binary that looks fresh
  renameSync(tmp, C_BIN);
}

/**
 * @typedef {{ ops: number, ns: number, cookieSum: bigint }} MapSlice
 * @typedef {{ events: number, ns: number, seqSum: bigint, lost: bigint }} RingRound
 * @typedef {{ map(start: number, n: number): Promise<MapSlice> | MapSlice, ring(): Promise<RingRound> | RingRound, close(): void }} Side
 */

/** The C program, kept running; each command gets one JSON line back. @returns {Side} */
function startC() {
  const child = spawn(C_BIN, [OBJECT, String(R)], { stdio: ['pipe', 'pipe', 'pipe'] });
  /** @type {{ resolve: (line: string) => void, reject: (e: Error) => void }[]} */
  const waiting = [];
  let stderr = '';
  /** @type {Error | null} */
  let dead = null;
  child.stderr.on('data', (d) => (stderr += d));
  createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()?.resolve(line));
  const fail = (/** @type {string} */ why) => {
    dead = new BenchError(`C reference: ${stderr.trim() || why}`);
    for (const w of waiting.splice(0)) w.reject(dead);
  };
  child.on('error', (e) => fail(e.message));
  // a write to a program that died fails with EPIPE; its death is reported below, with its stderr
  child.stdin.on('error', () => {});
  // stderr may still be arriving when the exit is reported; 'close' waits for the pipes
  child.on('close', (code) => fail(`exited with status ${code}`));
  const ask = (/** @type {string} */ cmd) =>
    new Promise((resolve, reject) => {
      if (dead) return reject(dead);
      waiting.push({ resolve, reject });
      child.stdin.write(`${cmd}\n`);
    }).then((line) => JSON.parse(/** @type {string} */ (line)));
  return {
    async map(start, n) {
      const j = await ask(`map ${start} ${n}`);
      return { ops: j.ops, ns: j.ns, cookieSum: BigInt(j.cookieSum) };
    },
    async ring() {
      const j = await ask('ring');
      return { events: j.events, ns: j.ns, seqSum: BigInt(j.seqSum), lost: BigInt(j.lost) };
    },
    close() {
      child.removeAllListeners('close');
      child.stdin.end();
    },
  };
}

/** The TypeScript half: one loaded object, as a long-running agent keeps it. @returns {Promise<Side>} */
async function startTs() {
  /** @type {typeof import('../../../dist/loader/index.js')} */
  let L;
  /** @type {typeof import('../../../dist/gen/selftest.js')} */
  let G;
  try {
    L = await import('../../../dist/loader/index.js');
    G = await import('../../../dist/gen/selftest.js');
  } catch (e) {
    throw new BenchError(`load the TypeScript runtime: ${/** @type {Error} */ (e).message}; build it: npx tsc -p .`);
  }
  const spec = L.ObjectSpec.open(OBJECT);
  // knobs this benchmark does not name stay zero (off), as bench.c leaves them
  const zero = G.RODATA.codec.decode(Buffer.alloc(G.RODATA.codec.size));
  spec.setConst(G.RODATA.name, G.RODATA.codec, { ...zero, default_action: L.XDP.PASS, emit_events: 1 });
  const obj = spec.load();
  const rules = obj.map(G.ST_RULES);
  const counters = obj.map(G.ST_COUNTERS);
  const prog = obj.program(G.PROG_ST_XDP);
  const rb = new L.RingBuffer(obj.map(G.ST_EVENTS), G.StEvent, { lost: () => counters.lookup(0)?.lost ?? 0n });
  // the same 64 zero bytes as bench.c: no rule matches, every run takes the default path
  const pkt = Buffer.alloc(64);
  // one key and one value object reused, as the C side reuses its structs
  const key = { word: 0 };
  const rule = { action: L.XDP.PASS, cookie: 0n };
  // Both callbacks sum seq into a typed-array cell, as bench.c sums it into a uint64 field of a
  // struct: a closure variable holding the sum (past 2^31 a double, or a BigInt) is boxed again on
  // every store, a heap allocation per record that cost more than the ring read itself (measured
  // 15-30 ns of 20-40 ns per record here), and that is the harness's callback, not the consumer.
  /** decoded: u64 wrap-around, exactly C's uint64_t sum */
  const seqSum = new BigUint64Array(1);
  const onEvent = (/** @type {{ seq: bigint }} */ e) => {
    seqSum[0] += e.seq;
  };
  // In place, as the C consumer reads its records: seq as two 32-bit halves, no object per event
  // (a double: exact, as the sum stays far below 2^53).
  const seqNum = new Float64Array(1);
  const words = rb.words;
  const onRaw = (/** @type {Buffer} */ _b, /** @type {number} */ off) => {
    const w = off >>> 2;
    seqNum[0] += words[w] + words[w + 1] * 4294967296;
  };
  return {
    map(start, n) {
      let cookieSum = 0n;
      const t0 = process.hrtime.bigint();
      for (let i = start; i < start + n; i++) {
        key.word = benchKey(i);
        rule.cookie = BigInt(i);
        rules.update(key, rule);
        const got = rules.lookup(key);
        if (!got) throw new BenchError(`TypeScript map: key ${key.word.toString(16)} missing right after its update`);
        cookieSum += got.cookie;
      }
      const ns = Number(process.hrtime.bigint() - t0);
      return { ops: 2 * n, ns, cookieSum };
    },
    ring() {
      if (rb.pending() !== 0) throw new BenchError(`TypeScript ring: ${rb.pending()} bytes left over before a fill`);
      prog.testRun({ data: pkt, repeat: R });
      seqNum[0] = 0;
      const t0 = process.hrtime.bigint();
      // bounded by what this fill produced: the drain is timed, nothing else
      const events = rb.consumeRaw(onRaw, R);
      const ns = Number(process.hrtime.bigint() - t0);
      return { events, ns, seqSum: BigInt(seqNum[0]), lost: rb.stats().lost };
    },
    /** the same drain with every record decoded into an object by the generated codec */
    ringDecoded() {
      prog.testRun({ data: pkt, repeat: R });
      seqSum[0] = 0n;
      const t0 = process.hrtime.bigint();
      const events = rb.consume(onEvent, R);
      const ns = Number(process.hrtime.bigint() - t0);
      return { events, ns, seqSum: seqSum[0], lost: rb.stats().lost };
    },
    close() {
      rb.close();
      obj.close();
    },
  };
}

/** Each side must have done the work it claims, or its rate means nothing. */
function checkMap(/** @type {string} */ side, /** @type {MapSlice} */ m, /** @type {number} */ start, /** @type {number} */ n) {
  // each lookup returns the cookie its update just wrote: i for pair i
  const want = (BigInt(start + n) * BigInt(start + n - 1) - BigInt(start) * BigInt(start - 1)) / 2n;
  if (m.cookieSum !== want) throw new BenchError(`${side} map: lookups returned cookies summing to ${m.cookieSum}, expected ${want}`);
}

function checkRing(/** @type {string} */ side, /** @type {RingRound} */ r) {
  if (r.lost !== 0n) throw new BenchError(`${side} ring: the program lost ${r.lost} events (ring full)`);
  if (r.events !== R) throw new BenchError(`${side} ring: drained ${r.events} events, the program produced ${R}`);
  // seq is the per-CPU packet count after the increment, so every record carries one >= 1; the
  // exact sum depends on which CPUs the test runs landed on and cannot be predicted
  if (r.seqSum < BigInt(R)) throw new BenchError(`${side} ring: seq sum ${r.seqSum} is below ${R}: records were not read`);
}

const median = (/** @type {number[]} */ xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * One repetition of both measurements, C and TypeScript alternating slice by slice.
 * @param {Record<'c' | 'ts', Side>} sides
 */
async function repetition(sides, /** @type {number} */ rep) {
  const names = /** @type {const} */ ({ c: 'C', ts: 'TypeScript' });
  const total = { c: { mapNs: 0, ringNs: 0 }, ts: { mapNs: 0, ringNs: 0 } };
  const per = K / SLICES;
  for (let s = 0; s < SLICES; s++) {
    for (const side of (rep + s) % 2 ? /** @type {const} */ (['ts', 'c']) : /** @type {const} */ (['c', 'ts'])) {
      const m = await sides[side].map(s * per, per);
      checkMap(names[side], m, s * per, per);
      total[side].mapNs += m.ns;
    }
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of (rep + round) % 2 ? /** @type {const} */ (['ts', 'c']) : /** @type {const} */ (['c', 'ts'])) {
      const r = await sides[side].ring();
      checkRing(names[side], r);
      total[side].ringNs += r.ns;
    }
  }
  const rate = (/** @type {{ mapNs: number, ringNs: number }} */ t) => ({ map: (2 * K * 1e9) / t.mapNs, ring: (R * ROUNDS * 1e9) / t.ringNs });
  return { c: rate(total.c), ts: rate(total.ts) };
}

const fmt = (/** @type {number} */ n) => Math.round(n).toLocaleString('en-US');

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new BenchError('check privileges: run as root (loading BPF needs CAP_BPF and CAP_NET_ADMIN)');
  if (!existsSync(OBJECT)) throw new BenchError(`find the BPF object: no ${OBJECT}; build it: node tools/build-bpf.mjs`);
  buildC();
  buildLoop();
  if (args.cpu !== null) await pinThisThread(args.cpu);

  /** @type {{ c: { map: number[], ring: number[] }, ts: { map: number[], ring: number[] } }} */
  const runs = { c: { map: [], ring: [] }, ts: { map: [], ring: [] } };
  /** @type {Partial<Record<'c' | 'ts', Side>>} */
  const open = {};
  /** TypeScript events/s with each record decoded into an object (no C counterpart) */
  /** @type {number[]} */
  const decoded = [];
  /** the tracer's JSON output, events/s */
  /** @type {number[]} */
  const tracerJson = [];
  /** @type {{ warmFills: number, drain(): Promise<{ events: number, ns: number }>, close(): void } | null} */
  let tj = null;
  try {
    open.c = startC();
    open.ts = await startTs();
    const sides = /** @type {Record<'c' | 'ts', Side>} */ (open);
    // warm-up, untimed, the same work on both sides: the JIT compiles the hot paths, the hash map
    // fills, the ring's pages are faulted in
    for (const side of /** @type {const} */ (['c', 'ts'])) {
      const name = side === 'c' ? 'C' : 'TypeScript';
      checkMap(name, await sides[side].map(0, K), 0, K);
      checkRing(name, await sides[side].ring());
    }
    for (let rep = 0; rep < args.reps; rep++) {
      const r = await repetition(sides, rep);
      for (const side of /** @type {const} */ (['c', 'ts'])) {
        runs[side].map.push(r[side].map);
        runs[side].ring.push(r[side].ring);
      }
      const ts = /** @type {any} */ (sides.ts);
      let ns = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const d = ts.ringDecoded();
        checkRing('TypeScript (decoded)', d);
        ns += d.ns;
      }
      decoded.push((R * ROUNDS * 1e9) / ns);
    }
    tj = await startTracerJson();
    // warm-up, untimed: the renderer's caches, the JIT and every page of the ring
    for (let f = 0; f < tj.warmFills; f++) await tj.drain();
    for (let rep = 0; rep < args.reps; rep++) {
      let events = 0;
      let ns = 0;
      for (let f = 0; f < TRACE_FILLS; f++) {
        const d = await tj.drain();
        events += d.events;
        ns += d.ns;
      }
      tracerJson.push((events * 1e9) / ns);
    }
  } finally {
    open.c?.close();
    open.ts?.close();
    tj?.close();
  }

  const m = {
    c: { map: median(runs.c.map), ring: median(runs.c.ring) },
    ts: { map: median(runs.ts.map), ring: median(runs.ts.ring) },
  };
  const dec = median(decoded);
  const tjRate = median(tracerJson);
  const ratio = { map: m.ts.map / m.c.map, ring: m.ts.ring / m.c.ring, decoded: dec / m.c.ring };
  const ok = {
    map: ratio.map >= GOALS.mapRatio,
    ring: ratio.ring >= GOALS.ringRatio,
    ringRate: m.ts.ring >= GOALS.ringRate,
    decoded: ratio.decoded >= GOALS.decodedRatio,
    tracerJson: tjRate >= GOALS.tracerJsonRate,
  };
  const missed = [];
  if (!ok.map) missed.push(`map update+lookup: TypeScript runs at ${ratio.map.toFixed(3)} of C, the goal is >= ${GOALS.mapRatio.toFixed(2)}`);
  if (!ok.ring) missed.push(`ring buffer: TypeScript runs at ${ratio.ring.toFixed(3)} of C, the goal is >= ${GOALS.ringRatio.toFixed(2)}`);
  if (!ok.ringRate) missed.push(`ring buffer: TypeScript drains ${fmt(m.ts.ring)} events/s, the goal is >= ${fmt(GOALS.ringRate)}`);
  if (!ok.decoded) missed.push(`ring buffer, decoded to objects: TypeScript runs at ${ratio.decoded.toFixed(3)} of C, the goal is >= ${GOALS.decodedRatio.toFixed(2)}`);
  if (!ok.tracerJson) missed.push(`tracer JSON output: ${fmt(tjRate)} events/s, the goal is >= ${fmt(GOALS.tracerJsonRate)}`);

  if (args.json) {
    const params = { pairs: K, slices: SLICES, eventsPerRound: R, rounds: ROUNDS, reps: args.reps, cpu: args.cpu };
    console.log(JSON.stringify({ quick: QUICK, params: { ...params, traceCalls: TRACE_CALLS, traceFills: TRACE_FILLS }, runs, decodedRuns: decoded, tracerJsonRuns: tracerJson, median: m, decoded: dec, tracerJson: tjRate, ratio, goals: GOALS, ok: { ...ok, all: missed.length === 0 }, missed }));
  } else {
    const mark = (/** @type {boolean} */ good) => (good ? 'ok' : 'MISSED');
    // truncated, not rounded: 0.498 must not print as 0.50 next to MISSED
    const two = (/** @type {number} */ r) => (Math.floor(r * 100) / 100).toFixed(2);
    const cols = (/** @type {string} */ a, /** @type {string} */ b, /** @type {string} */ c, /** @type {string} */ d, /** @type {string} */ e) =>
      `${a.padEnd(46)}${b.padStart(14)}${c.padStart(16)}${d.padStart(9)}   ${e}`;
    if (QUICK) console.log('EBPFNET_BENCH_QUICK=1: a smoke run (few repetitions); its figures prove the harness, not the speed');
    console.log(cols(`runtime benchmark (median of ${args.reps}, interleaved)`, 'C (libbpf)', 'TypeScript', 'ratio', 'goal'));
    console.log(cols('map update+lookup ops/s', fmt(m.c.map), fmt(m.ts.map), two(ratio.map), `>= ${GOALS.mapRatio.toFixed(2)}  ${mark(ok.map)}`));
    console.log(
      cols('ring buffer events/s', fmt(m.c.ring), fmt(m.ts.ring), two(ratio.ring), `>= ${GOALS.ringRatio.toFixed(2)}  ${mark(ok.ring)}`) +
        `   (>= ${fmt(GOALS.ringRate)}/s ${mark(ok.ringRate)})`,
    );
    console.log(cols('ring buffer events/s, decoded to objects', fmt(m.c.ring), fmt(dec), ratio.decoded.toFixed(3), `>= ${GOALS.decodedRatio.toFixed(2)}  ${mark(ok.decoded)}`));
    console.log(cols('tracer JSON output events/s (-o json to a file)', '-', fmt(tjRate), '-', `>= ${fmt(GOALS.tracerJsonRate)}/s  ${mark(ok.tracerJson)}`));
    console.log(
      `(decoded: RingBuffer.consume, an object per record, against C's in-place drain; tracer JSON: the trace object on the mkdir tracepoints, ${TRACE_FILLS} fills of ${fmt(TRACE_CALLS)} real mkdir calls per repetition, from one long-lived shell, the ring written over once before timing, drained in the CLI's poll slices through the tracer's reader, summary and JSON renderer into a file on tmpfs; both ring rows sum seq into a typed-array cell, as C into a uint64 field)`,
    );
    const where = args.cpu === null ? 'not pinned' : `pinned to CPU ${args.cpu}`;
    console.log(`(${fmt(K)} update+lookup pairs and ${ROUNDS} fills of ${fmt(R)} events per repetition; no events lost; ${where})`);
    for (const line of missed) console.error(`runtime benchmark: goal missed: ${line}`);
  }
  if (missed.length) process.exitCode = 1;
}

main().catch((e) => {
  // expected failures print one line; anything else keeps its stack for whoever debugs it
  const expected = e instanceof BenchError || String(e?.code).startsWith('EBPFNET_');
  console.error(expected ? `runtime benchmark: ${e.message}` : e);
  process.exitCode = 1;
});
