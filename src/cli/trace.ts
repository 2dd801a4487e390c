// SPDX-License-Identifier: Apache-2.0
// `ebpfnet trace <syscall>`: one line (or one JSON object) per call, anywhere on the machine, until
// Ctrl-C, SIGTERM or --duration; then a summary. Status lines go to stderr so stdout holds only
// the table or JSON Lines; in JSON mode the summary goes to stderr as well.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { EbpfnetError } from '../errors.js';
import { onShutdown } from '../loader/guard.js';
import { requireRoot } from '../loader/system.js';
import { newRegistry, parseListen, serveMetrics, type MetricsServer } from '../metrics/server.js';
import { traceMetrics, type TraceMetrics } from '../metrics/trace.js';
import { tableHeader, wallClockOffsetUs, type TableOptions } from '../trace/event.js';
import { DEFAULT_BUFFER_SIZE, nameMatcher, parseTraceOptions, type RawTraceOptions, type TracePlan } from '../trace/options.js';
import { RecordReader, Renderer } from '../trace/render.js';
import { TraceSummary } from '../trace/summary.js';
import { TRACEPOINT_CATEGORY, syscallName, traceTargets } from '../trace/syscalls.js';
import { Tracer, targetCgroup } from '../trace/tracer.js';
import { CgroupNames } from '../trace/cgroups.js';
import { ensureCgroup2 } from '../loader/pinfs.js';
import { wantsJson, withOutputOption, type OutputOptions } from './output.js';

/** How often the ring is read. Events wait at most this long; the ring absorbs the bursts between. */
const POLL_MS = 10;
/**
 * Records per slice before yielding to the event loop (signals, metrics scrapes). The slice also
 * decides how often the kernel sees the space we freed: the consumer position is stored after each.
 */
export const MAX_PER_TICK = 4096;

const EXAMPLES = `
Examples:
  sudo ebpfnet trace mkdir                  every mkdir and mkdirat on the machine
  sudo ebpfnet trace mkdir -x -T            only failed calls, with timestamps
  sudo ebpfnet trace mkdir -p 1234 -d 10    one process, for ten seconds
  sudo ebpfnet trace mkdir -u nobody        one user (uid or name)
  sudo ebpfnet trace mkdir --cgroup system.slice/docker.service
  sudo ebpfnet trace mkdir --container 3f4e8a9c1b2d   one container (id or a 12+ digit prefix)
  sudo ebpfnet trace mkdir -o json | jq -r 'select(.result != "0") | .path'

JSON Lines follow the schema in src/trace/event.schema.json; every line carries "v": 1.
Ctrl-C (or SIGTERM, or the end of -d) detaches and prints a summary: events seen, events lost,
top commands (to stdout after the table, to stderr with -o json).`;

const mib = (n: number): string => (n % (1 << 20) === 0 ? `${n / (1 << 20)}M` : n % 1024 === 0 ? `${n / 1024}K` : String(n));

export function registerTrace(program: Command): void {
  const trace = program
    .command('trace')
    .summary('print every call of a path syscall (mkdir) on the machine')
    .description('trace a path syscall machine-wide through its syscalls/sys_enter_* and sys_exit_* tracepoints, io_uring and the LSM hook: who called it (pid, pid in its namespace, cgroup), with what path and mode, what it returned and how long it took')
    .argument('<syscall>', `what to trace: ${traceTargets().join(', ')} (mkdir means both mkdir and mkdirat)`)
    .option('-p, --pid <pid>', 'only this process (filtered in the kernel)')
    .option('-u, --uid <uid>', 'only this user, by uid or name (filtered in the kernel)')
    .option('-n, --name <name>', 'only commands whose name contains NAME')
    .option('-x, --failed', 'only calls that failed')
    .option('--cgroup <path>', 'only processes in this cgroup v2 directory or below it (filtered in the kernel); absolute or relative to the cgroup v2 mount')
    .option('--container <id>', 'only this container: its id or a unique prefix of 12+ hex digits, found in the cgroup names docker, containerd, cri-o and podman give')
    .option('-d, --duration <seconds>', 'stop after this many seconds')
    .option('-T, --timestamp', 'add a TIME column (local time) to the table')
    .option('-b, --buffer-size <size>', 'ring buffer size, a power of two', mib(DEFAULT_BUFFER_SIZE))
    .option('--metrics <[addr:]port>', 'serve Prometheus metrics at http://ADDR:PORT/metrics while tracing')
    .addHelpText('after', EXAMPLES)
    // Mistakes commander catches itself (an unknown option, a missing value) read like ours: one line.
    .showHelpAfterError(false)
    .configureOutput({
      outputError: (str, write) => write(`ebpfnet: trace: ${str.replace(/^error: /, '').trim()}; see ebpfnet trace --help\n`),
    })
    .action(async (target: string, opts: Omit<RawTraceOptions, 'output'> & OutputOptions & { metrics?: string }) => {
      await runTrace(target, { ...opts, output: wantsJson(opts) ? 'json' : 'table' });
    });
  // `table`, its name before -o json|text was shared by every command, still works
  withOutputOption(trace, { synonyms: { table: 'text' }, json: 'JSON Lines, one object per call' });
}

/**
 * -p takes a process: it must exist, and be a process rather than one of its threads (the kernel
 * filter compares the thread group id, so a thread id would match nothing).
 */
function checkProcess(pid: number): void {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    throw new EbpfnetError('EBPFNET_NOT_FOUND', 'trace', `no process with pid ${pid}`, { hint: 'give the pid of a running process (see ps -e)' });
  }
  const tgid = Number(/^Tgid:\s*(\d+)/m.exec(status)?.[1] ?? pid);
  if (tgid !== pid) {
    throw new EbpfnetError('EBPFNET_USAGE', 'trace', `${pid} is a thread of process ${tgid}, and --pid takes a process`, { hint: `trace the whole process: -p ${tgid}` });
  }
}

function describeFilters(p: TracePlan, cgroup: string | null): string {
  const f: string[] = [];
  if (p.pid !== null) f.push(`pid ${p.pid}`);
  if (p.uid !== null) f.push(`uid ${p.uid}`);
  if (cgroup !== null) f.push(`cgroup ${cgroup}`);
  if (p.name !== null) f.push(`command name containing '${p.name}'`);
  if (p.failedOnly) f.push('failed calls only');
  return f.length ? ` (${f.join(', ')})` : '';
}

async function runTrace(target: string, raw: RawTraceOptions & { metrics?: string }): Promise<void> {
  // Everything a user can get wrong is checked before anything touches the kernel.
  const plan = parseTraceOptions(target, raw);
  if (raw.metrics !== undefined) {
    try {
      parseListen(raw.metrics);
    } catch (e) {
      throw new EbpfnetError('EBPFNET_USAGE', 'trace', `--metrics '${raw.metrics}' is not [ADDR:]PORT`, { hint: 'for example 9100 or 127.0.0.1:9100', cause: e });
    }
  }
  requireRoot('trace');
  if (plan.pid !== null) checkProcess(plan.pid);
  const cg = targetCgroup(plan);
  const err = process.stderr;
  const out = process.stdout;
  const json = plan.output === 'json';

  const tracer = Tracer.open({ syscalls: plan.syscalls, pid: plan.pid, uid: plan.uid, failedOnly: plan.failedOnly, cgroupId: cg?.id ?? null, bufferSize: plan.bufferSize });
  const names = tracer.coverage.traced.map((s) => s.name);
  let server: MetricsServer | null = null;
  let metrics: TraceMetrics | null = null;
  try {
    if (raw.metrics !== undefined) {
      const registry = newRegistry();
      metrics = traceMetrics(registry, names, () => {
        const l = tracer.lostCounts();
        return l.lost + l.untracked;
      });
      server = await serveMetrics(registry, raw.metrics);
    }
  } catch (e) {
    tracer.close();
    throw e;
  }

  // mounts of tracefs and securityfs are said by the CLI's onMount listener
  for (const u of tracer.paths.unseen) err.write(`not seeing ${u}\n`);
  for (const s of tracer.coverage.missing) {
    err.write(`not tracing ${s.name}: this kernel has no ${TRACEPOINT_CATEGORY}/sys_enter_${s.name} tracepoint (arm64, for one, has no ${s.name} syscall)\n`);
  }
  if (server) err.write(`metrics at ${server.url}\n`);
  // The ready line: tests and scripts wait for it before making calls.
  err.write(`tracing ${names.join(', ')}${describeFilters(plan, cg?.path ?? null)}; ${plan.durationMs === null ? 'ctrl-c to end' : `for ${plan.durationMs / 1000} s`}\n`);

  const tableOpts: TableOptions = { timestamps: plan.timestamps };
  const summary = new TraceSummary();
  const matches = nameMatcher(plan.name);
  const reader = new RecordReader();
  // cgroup ids are named from the cgroup v2 mount (mounted already when --cgroup needed it)
  const cgroups = new CgroupNames(cg?.mounted?.path ?? ensureCgroup2().path);
  const renderer = new Renderer(plan.output, tableOpts, wallClockOffsetUs(), undefined, (id) => cgroups.name(id));
  const started = Date.now();
  let stdoutOpen = true;
  const write = (data: string | Buffer): void => {
    if (!stdoutOpen) return;
    try {
      out.write(data);
    } catch {
      stdoutOpen = false;
    }
  };
  // One write per poll, not per event: a burst of thousands of events is one syscall.
  const flush = (): void => {
    if (!renderer.pending) return;
    write(renderer.take());
    // Files, pipes and terminals are written synchronously on Linux; a socket may keep the bytes
    // queued, and then the renderer must not write over them.
    if (out.writableLength > 0) renderer.release();
  };
  const onRecord = (b: Buffer, offset: number): void => {
    const r = reader.select(b, offset);
    const comm = r.comm();
    if (!matches(comm)) {
      summary.skip();
      return;
    }
    const syscall = syscallName(r.syscall());
    const ret = r.ret();
    summary.add(comm, syscall, ret);
    metrics?.observe(syscall, r.result());
    renderer.record(r);
  };

  if (!json) write(`${tableHeader(tableOpts)}\n`);

  let stopped = false;
  let signalled = false;
  let durationTimer: NodeJS.Timeout | null = null;
  const tick = (): void => {
    if (stopped) return;
    const n = tracer.poll(onRecord, MAX_PER_TICK);
    flush();
    if (n === MAX_PER_TICK) setImmediate(tick);
  };
  const timer = setInterval(tick, POLL_MS);

  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const elapsedMs = Date.now() - started;
      stopped = true;
      clearInterval(timer);
      if (durationTimer) clearTimeout(durationTimer);
      try {
        // Detach first, then drain: every event submitted before the detach is printed.
        tracer.detach();
        while (tracer.poll(onRecord, MAX_PER_TICK) > 0) flush();
        flush();
        const text = summary.format(tracer.lostCounts(), elapsedMs, names);
        // a scraper holding a request open must not keep Ctrl-C from ending the trace
        if (server) await Promise.race([server.close(), new Promise((r) => setTimeout(r, 1000).unref())]);
        if (json || !stdoutOpen) err.write(`${text}\n`);
        else write(`\n${text}\n`);
      } finally {
        tracer.close();
        finish();
      }
    })();
    return stopping;
  };

  const unhook = onShutdown(() => {
    signalled = true;
    return stop();
  });
  // `ebpfnet trace mkdir | head`: when the reader goes away, stop as if interrupted.
  out.on('error', (e: NodeJS.ErrnoException) => {
    stdoutOpen = false;
    if (e.code === 'EPIPE') void stop();
  });
  if (plan.durationMs !== null) durationTimer = setTimeout(() => void stop(), plan.durationMs);

  await done;
  // On a signal the exit guard finishes the process once the hook returns; removing the hook here
  // would make it think nobody handled the signal.
  if (!signalled) unhook();
}
