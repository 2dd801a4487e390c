// SPDX-License-Identifier: Apache-2.0
// `ebpfnet trace mkdir` end to end, as a user runs it: the built CLI traces the real kernel while a
// child process with a known pid (fixtures/trace-child.c, built here with cc) makes mkdir and
// mkdirat calls under a fresh temporary directory. Each test starts its own tracer, waits for its
// ready line, lets the child go, and checks the events it printed; then that nothing it attached
// is left in the kernel. Directories, cgroups and processes made here are removed here.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import * as G from '../../src/gen/trace.js';
import { ensureTracefs } from '../../src/loader/system.js';
import { ensureCgroup2 } from '../../src/loader/pinfs.js';
import { packageDir } from '../../src/loader/paths.js';
import { CliProcess, runCli } from '../helpers/cli.js';
import { validate } from '../helpers/json-schema.js';
import { describeKernel, sh } from '../helpers/kernel.js';
import { makeNetns, type Netns } from '../helpers/netns.js';

const SCHEMA = JSON.parse(readFileSync(join(packageDir(), 'src', 'trace', 'event.schema.json'), 'utf8')) as Record<string, unknown>;
const NOBODY = 65534;
const OUR_PROGRAMS = new Set<string>(G.LAYOUT.programs.map((p) => p.name));

interface Ev {
  v: number;
  time: string;
  syscall: string;
  via: string;
  pid: number;
  ns_pid: number;
  tid: number;
  cgroup_id: number;
  cgroup: string | null;
  uid: number;
  comm: string;
  path: string | null;
  dirfd: number | null;
  mode: string;
  ret: number;
  result: string;
  latency_ns: number;
  truncated: boolean;
}

/** A trace-child waiting on stdin: its pid is known before it makes a single call. */
class Child {
  readonly proc: ChildProcess;
  out = '';
  private readonly exited: Promise<number | null>;
  constructor(cmd: string, args: string[]) {
    this.proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d: Buffer) => (this.out += d));
    this.proc.stderr!.on('data', (d: Buffer) => (this.out += d));
    this.exited = new Promise((r) => this.proc.on('exit', (code) => r(code)));
  }
  get pid(): number {
    return this.proc.pid!;
  }
  /** Lets it make its calls and waits for it to finish. */
  async go(): Promise<string> {
    this.proc.stdin!.end('go\n');
    const code = await this.exited;
    expect(code, this.out).toBe(0);
    return this.out;
  }
  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
  }
}

async function until<T>(what: string, fn: () => T | undefined | false, ms = 10_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The ready line goes to stderr (stdout is JSON Lines only). */
const ready = (cli: CliProcess): Promise<true> =>
  until('the ready line', () => {
    if (cli.child.exitCode !== null) throw new Error(`the tracer exited ${cli.child.exitCode}: ${cli.stderr}`);
    return /^tracing /m.test(cli.stderr) || undefined;
  }, 20_000);

function events(cli: CliProcess): Ev[] {
  return cli.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Ev);
}

/** bpf_perf_event links a process holds: prog id and tracepoint. */
function perfLinks(pid: number): Array<{ prog_id: number; tracepoint: string }> {
  const all = JSON.parse(sh('bpftool', ['-j', 'perf'])) as Array<{ pid: number; prog_id: number; tracepoint?: string }>;
  return all.filter((p) => p.pid === pid).map((p) => ({ prog_id: p.prog_id, tracepoint: p.tracepoint ?? '' }));
}

function progNames(): Map<number, string> {
  const all = JSON.parse(sh('bpftool', ['-j', 'prog', 'show'])) as Array<{ id: number; name?: string }>;
  return new Map(all.map((p) => [p.id, p.name ?? '']));
}

describeKernel('trace mkdir (kernel)', () => {
  let dir: string;
  let child: string;
  let seq = 0;
  const clis: CliProcess[] = [];
  const children: Child[] = [];
  const cgroups: string[] = [];

  let lone: Netns | null = null;

  beforeAll(() => {
    ensureTracefs();
    // the --metrics listeners and their scrapes on a loopback of the test's own
    lone = makeNetns();
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-trace-'));
    // nobody must reach the helper and a directory it may write to
    chmodSync(dir, 0o755);
    child = join(dir, 'trace-child');
    execFileSync('cc', ['-O2', '-Wall', '-o', child, join(packageDir(), 'test', 'kernel', 'fixtures', 'trace-child.c')], { stdio: ['ignore', 'pipe', 'pipe'] });
  });

  afterEach(async () => {
    for (const c of children.splice(0)) c.kill();
    for (const c of clis.splice(0)) await c.stop('SIGKILL');
    for (const cg of cgroups.splice(0).reverse()) {
      // a cgroup can be removed once its last process has been reaped, which may take a moment
      for (let i = 0; i < 50 && existsSync(cg); i++) {
        try {
          rmdirSync(cg);
        } catch {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  });

  afterAll(() => {
    lone?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh directory under the test's temporary directory. */
  const fresh = (mode = 0o755): string => {
    const d = join(dir, `t${++seq}`);
    mkdirSync(d);
    chmodSync(d, mode);
    return d;
  };

  const trace = (args: string[]): CliProcess => {
    const c = new CliProcess(['trace', 'mkdir', ...args]);
    clis.push(c);
    return c;
  };

  const spawnChild = (args: string[], asUser?: number): Child => {
    const c =
      asUser === undefined
        ? new Child(child, args)
        : new Child('setpriv', [`--reuid=${asUser}`, `--regid=${asUser}`, '--clear-groups', child, ...args]);
    children.push(c);
    return c;
  };

  const hasMkdir = (): boolean => existsSync(join(ensureTracefs().path, 'events', 'syscalls', 'sys_enter_mkdir'));

  it('reports each call with pid, comm, path, mode and result, in JSON that follows the schema; nothing stays attached', async () => {
    const d = fresh();
    const cli = trace(['-o', 'json']);
    await ready(cli);
    // it says what it covers: both syscalls here, only mkdirat where the kernel has no mkdir (arm64)
    if (hasMkdir()) expect(cli.stderr).toMatch(/^tracing mkdir, mkdirat; ctrl-c to end$/m);
    else expect(cli.stderr).toMatch(/^not tracing mkdir: this kernel has no syscalls\/sys_enter_mkdir tracepoint.*\n(.*\n)*tracing mkdirat; ctrl-c to end$/m);

    // what the tracer attached: the exit hook on both syscalls, an entry hook on each, and io_uring's
    // submission and completion
    const links = await until('the tracepoint links', () => {
      const l = perfLinks(cli.child.pid!);
      return l.length === (hasMkdir() ? 6 : 4) && l;
    });
    const names = progNames();
    expect(new Set(links.map((l) => names.get(l.prog_id)))).toEqual(new Set([...(hasMkdir() ? ['tr_in_mkdir'] : []), 'tr_in_mkdirat', 'tr_exit', 'tr_uring_in', 'tr_uring_exit']));
    expect(links.map((l) => l.tracepoint).sort()).toEqual([
      'io_uring_complete',
      'io_uring_submit_req',
      ...(hasMkdir() ? ['sys_enter_mkdir', 'sys_enter_mkdirat', 'sys_exit_mkdir', 'sys_exit_mkdirat'] : ['sys_enter_mkdirat', 'sys_exit_mkdirat']),
    ]);

    const c = spawnChild(['mkdir', `${d}/a`, '755', 'mkdir', `${d}/a`, '700', 'mkdirat', d, 'b', '711', 'mkdirat', d, `${d}/c`, '750']);
    const t0 = Date.now();
    const said = await c.go();
    const fd = Number(/^mkdirat 0 0 (\d+)$/m.exec(said)![1]);
    const want = (hasMkdir() ? 4 : 2);
    const mine = await until('the child’s events', () => {
      const e = events(cli).filter((x) => x.pid === c.pid);
      return e.length >= want && e;
    });
    expect(await cli.stop('SIGINT')).toBe(0);

    const expected: Array<Partial<Ev>> = [
      ...(hasMkdir()
        ? [
            { syscall: 'mkdir', path: `${d}/a`, dirfd: null, mode: '0755', ret: 0, result: '0' },
            { syscall: 'mkdir', path: `${d}/a`, dirfd: null, mode: '0700', ret: -17, result: 'EEXIST' },
          ]
        : []),
      { syscall: 'mkdirat', path: 'b', dirfd: fd, mode: '0711', ret: 0, result: '0' },
      // an absolute path ignores the dirfd, so it is not marked as relative to it
      { syscall: 'mkdirat', path: `${d}/c`, dirfd: null, mode: '0750', ret: 0, result: '0' },
    ];
    expect(mine).toHaveLength(expected.length);
    mine.forEach((e, i) => {
      expect(e).toMatchObject({ ...expected[i], v: 1, pid: c.pid, tid: c.pid, uid: 0, comm: 'trace-child', truncated: false });
      expect(e.latency_ns).toBeGreaterThan(0);
      expect(e.latency_ns).toBeLessThan(1e9);
      expect(Math.abs(Date.parse(e.time) - t0)).toBeLessThan(10_000);
    });
    expect(existsSync(`${d}/b`) && existsSync(`${d}/c`)).toBe(true);

    // every line, ours and whatever else ran on the machine, follows the schema
    for (const e of events(cli)) expect(validate(SCHEMA, e), JSON.stringify(e)).toEqual([]);
    // the summary went to stderr, stdout is only JSON Lines
    expect(cli.stderr).toMatch(/^summary: (\d+) events seen, 0 lost in [\d.]+ s/m);
    expect(cli.stderr).toMatch(/^top commands: .*trace-child \d+ \(\d+ failed\)/m);
    const seen = Number(/summary: (\d+) events seen/.exec(cli.stderr)![1]);
    expect(seen).toBe(events(cli).length);

    // after the exit nothing it loaded or attached is left in the kernel
    expect(perfLinks(cli.child.pid!)).toEqual([]);
    const after = progNames();
    for (const l of links) expect(after.has(l.prog_id), `program ${l.prog_id} still loaded`).toBe(false);
  });

  it('-x shows only the failed calls (EEXIST); SIGTERM ends it with a summary and exit 0', async () => {
    const d = fresh();
    const cli = trace(['-o', 'json', '-x']);
    await ready(cli);
    const c = spawnChild(['mkdirat', d, 'a', '755', 'mkdirat', d, 'a', '755', 'mkdirat', d, 'b', '755']);
    await c.go();
    await until('the EEXIST event', () => events(cli).some((e) => e.pid === c.pid));
    // the successful calls were made before the failed one was read: had they been sent, they would be here
    expect(await cli.stop('SIGTERM')).toBe(0);
    const mine = events(cli).filter((e) => e.pid === c.pid);
    expect(mine.map((e) => [e.path, e.result])).toEqual([['a', 'EEXIST']]);
    expect(events(cli).every((e) => e.ret < 0)).toBe(true);
    expect(cli.stderr).toMatch(/^summary: \d+ events seen, 0 lost/m);
  });

  it('-p traces one process and excludes the others, in the kernel', async () => {
    const d = fresh();
    const a = spawnChild(['mkdirat', d, 'from-a', '755']);
    const b = spawnChild(['mkdirat', d, 'from-b', '755']);
    const cli = trace(['-o', 'json', '-p', String(a.pid), '--metrics', `127.0.0.1:${20000 + (process.pid % 20000)}`]);
    await ready(cli);
    const url = /^metrics at (\S+)$/m.exec(cli.stderr)![1];
    await b.go();
    await a.go();
    await until('the event of process a', () => events(cli).some((e) => e.pid === a.pid));
    const text = await (await fetch(url)).text();
    expect(await cli.stop()).toBe(0);
    expect(existsSync(`${d}/from-b`)).toBe(true);
    expect(events(cli).map((e) => [e.pid, e.path])).toEqual([[a.pid, 'from-a']]);
    expect(text).toContain('ebpfnet_trace_events_total{syscall="mkdirat",result="0"} 1');
    expect(text).toContain('ebpfnet_trace_events_lost_total 0');
  });

  it('-u traces one user', async () => {
    const open = fresh(0o777);
    const cli = trace(['-o', 'json', '-u', String(NOBODY)]);
    await ready(cli);
    const root = spawnChild(['mkdirat', open, 'by-root', '755']);
    const nobody = spawnChild(['mkdirat', open, 'by-nobody', '755', 'mkdirat', '/', 'not-allowed', '755'], NOBODY);
    await root.go();
    await nobody.go();
    await until('both events of nobody', () => events(cli).filter((e) => e.pid === nobody.pid).length === 2);
    expect(await cli.stop()).toBe(0);
    expect(existsSync(`${open}/by-root`)).toBe(true);
    expect(events(cli).every((e) => e.uid === NOBODY)).toBe(true);
    expect(events(cli).filter((e) => e.pid === nobody.pid).map((e) => [e.uid, e.path, e.result])).toEqual([
      [NOBODY, 'by-nobody', '0'],
      [NOBODY, 'not-allowed', 'EACCES'],
    ]);
  });

  it('--cgroup traces the processes in a cgroup v2 directory and below it', async () => {
    const d = fresh();
    const root = ensureCgroup2().path;
    const cg = join(root, `ebpfnet-trace-${process.pid}`);
    const inner = join(cg, 'inner');
    mkdirSync(cg);
    cgroups.push(cg);
    mkdirSync(inner);
    cgroups.push(inner);
    // the shell moves itself into the cgroup, then becomes trace-child (same pid)
    const inCg = new Child('sh', ['-c', `echo $$ > ${inner}/cgroup.procs && exec ${child} "$@"`, 'sh', 'mkdirat', d, 'inside', '755']);
    children.push(inCg);
    const outside = spawnChild(['mkdirat', d, 'outside', '755']);
    // the tracer takes the path relative to the cgroup v2 mount, as a user would type it
    const cli = trace(['-o', 'json', '--cgroup', cg.slice(root.length + 1)]);
    await ready(cli);
    await outside.go();
    await inCg.go();
    await until('the event from inside the cgroup', () => events(cli).some((e) => e.pid === inCg.pid));
    expect(await cli.stop()).toBe(0);
    expect(existsSync(`${d}/outside`)).toBe(true);
    expect(events(cli).map((e) => [e.pid, e.path])).toEqual([[inCg.pid, 'inside']]);
    // the event names the cgroup it came from: its id and its path under the cgroup v2 mount
    const [ev] = events(cli);
    expect([ev.cgroup_id, ev.cgroup, ev.via]).toEqual([statSync(inner).ino, inner.slice(root.length), 'syscall']);
  });

  it('a mkdir in a new pid namespace shows the pid the process sees (1) beside its real pid', async () => {
    const d = fresh();
    const cli = trace(['-o', 'json']);
    await ready(cli);
    // unshare forks the child that becomes pid 1 of the new namespace and execs trace-child
    const c = new Child('unshare', ['--pid', '--fork', '--mount-proc', child, 'mkdirat', d, 'in-ns', '755']);
    children.push(c);
    const real = await until('the namespaced child', () => {
      const kids = readFileSync(`/proc/${c.pid}/task/${c.pid}/children`, 'utf8').trim();
      return kids ? Number(kids.split(' ')[0]) : undefined;
    });
    await c.go();
    const ev = await until('the event from the namespace', () => events(cli).find((e) => e.path === 'in-ns'));
    expect(await cli.stop()).toBe(0);
    expect(ev).toMatchObject({ pid: real, ns_pid: 1, tid: real, comm: 'trace-child', via: 'syscall', result: '0' });
    // and outside a namespace both are the same
    expect(events(cli).filter((e) => e.pid === process.pid || e.comm === 'trace-child').every((e) => e.path === 'in-ns' || e.ns_pid === e.pid)).toBe(true);
  });

  it('--container finds the cgroup named after a container id (docker and containerd style) from a 12-digit prefix', async () => {
    const d = fresh();
    const root = ensureCgroup2().path;
    const base = join(root, `ebpfnet-trace-ct-${process.pid}`);
    // ids unique to this run: the pid and the time in hex, padded to 64 digits
    const stem = `${process.pid.toString(16)}${Date.now().toString(16)}`.padEnd(16, '0');
    const docker = `${stem}${'d'.repeat(64 - stem.length)}`;
    const containerd = `${stem.slice(0, 12)}${'c'.repeat(52)}`;
    const dk = join(base, `docker-${docker}.scope`);
    const cd = join(base, `cri-containerd-${containerd}.scope`);
    for (const g of [base, dk, cd]) {
      mkdirSync(g);
      cgroups.push(g);
    }
    const inDocker = new Child('sh', ['-c', `echo $$ > ${dk}/cgroup.procs && exec ${child} "$@"`, 'sh', 'mkdirat', d, 'in-docker', '755']);
    const inContainerd = new Child('sh', ['-c', `echo $$ > ${cd}/cgroup.procs && exec ${child} "$@"`, 'sh', 'mkdirat', d, 'in-containerd', '755']);
    children.push(inDocker, inContainerd);
    // 12 digits match both: refused, naming them
    const amb = runCli(['trace', 'mkdir', '--container', docker.slice(0, 12)]);
    expect(amb.status).toBe(2);
    expect(amb.stderr).toMatch(/^ebpfnet: trace: --container [0-9a-f]{12} matches 2 containers: .*; give more digits of the id\n$/);
    const none = runCli(['trace', 'mkdir', '--container', 'f'.repeat(12)]);
    expect(none.status).not.toBe(0);
    expect(none.stderr).toMatch(/^ebpfnet: trace: no container cgroup matches 'ffffffffffff'; /);
    const cli = trace(['-o', 'json', '--container', docker.slice(0, 17).toUpperCase()]);
    await ready(cli);
    expect(cli.stderr).toContain(`cgroup ${dk}`);
    await inContainerd.go();
    await inDocker.go();
    await until('the event from the docker-style cgroup', () => events(cli).some((e) => e.path === 'in-docker'));
    expect(await cli.stop()).toBe(0);
    expect(existsSync(`${d}/in-containerd`)).toBe(true);
    expect(events(cli).map((e) => [e.pid, e.path, e.cgroup, e.cgroup_id])).toEqual([[inDocker.pid, 'in-docker', dk.slice(root.length), statSync(dk).ino]]);
  });

  it('sees IORING_OP_MKDIRAT (never a syscall tracepoint) via io_uring with its result, and a plain mkdir exactly once', async () => {
    const d = fresh();
    const cli = trace(['-o', 'json']);
    await ready(cli);
    const c = spawnChild(['uring', d, 'by-uring', '750', 'uring', d, 'by-uring', '750', 'mkdirat', d, 'plain', '700', ...(hasMkdir() ? ['mkdir', `${d}/plain-mkdir`, '755'] : [])]);
    const said = await c.go();
    // the ring really did it: the completion said 0, then EEXIST
    expect(said).toMatch(/^uring 0 (\d+)\nuring -17 \1\n/);
    const fd = Number(/^uring 0 (\d+)$/m.exec(said)![1]);
    const want = hasMkdir() ? 4 : 3;
    const mine = await until('the child’s events', () => {
      const e = events(cli).filter((x) => x.pid === c.pid);
      return e.length >= want && e;
    });
    expect(await cli.stop()).toBe(0);
    expect(existsSync(`${d}/by-uring`)).toBe(true);
    expect(mine.map((e) => [e.via, e.syscall, e.path, e.dirfd, e.mode, e.result])).toEqual([
      ['io_uring', 'mkdirat', 'by-uring', fd, '0750', '0'],
      ['io_uring', 'mkdirat', 'by-uring', fd, '0750', 'EEXIST'],
      ['syscall', 'mkdirat', 'plain', expect.any(Number), '0700', '0'],
      ...(hasMkdir() ? [['syscall', 'mkdir', `${d}/plain-mkdir`, null, '0755', '0']] : []),
    ]);
    // the submitter is who the event names, in its namespace as well
    for (const e of mine) expect([e.tid, e.ns_pid, e.comm, e.uid]).toEqual([c.pid, c.pid, 'trace-child', 0]);
    for (const e of events(cli)) expect(validate(SCHEMA, e), JSON.stringify(e)).toEqual([]);
    // what it cannot see here is said, not hidden
    expect(cli.stderr).not.toMatch(/^not seeing mkdirat through io_uring/m);
  });

  it('prints a table with -T, filters by -n, and ends by itself after -d with the summary on stdout', async () => {
    const d = fresh();
    const cli = trace(['-T', '-n', 'trace-chi', '-d', '3']);
    await ready(cli);
    const c = spawnChild(['mkdirat', d, 'tabled', '700']);
    await c.go();
    const code = await new Promise<number | null>((r) => (cli.child.exitCode !== null ? r(cli.child.exitCode) : cli.child.on('exit', r)));
    expect(code).toBe(0);
    const lines = cli.stdout.split('\n');
    expect(lines[0]).toMatch(/^TIME\s+PID\s+TID\s+UID\s+COMM\s+SYSCALL\s+MODE\s+RESULT\s+LAT\(us\) PATH$/);
    const row = lines.find((l) => l.includes(`<fd `) && l.endsWith('/tabled'));
    expect(row, cli.stdout).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} ${c.pid}\\s+${c.pid}\\s+0\\s+trace-child\\s+mkdirat\\s+0700\\s+0\\s+[\\d.]+ <fd \\d+>/tabled$`));
    // -n hides every other command
    expect(lines.slice(1).filter((l) => /^\d\d:/.test(l)).every((l) => l.includes(' trace-child '))).toBe(true);
    expect(cli.stdout).toMatch(/\nsummary: \d+ events seen, 0 lost in [\d.]+ s \(mkdir \d+, mkdirat \d+; \d+ failed\)\n/);
    expect(cli.stdout).toMatch(/\ntop commands: trace-child \d+/);
    expect(perfLinks(cli.child.pid!)).toEqual([]);
  });

  it('counts the events a full ring buffer loses, in the summary and in the metrics', async () => {
    const d = fresh();
    const calls = 20_000;
    const c = spawnChild(['burst', String(calls), `${d}/again`]);
    // a one-page ring holds a dozen records: a burst of 20,000 calls between two polls overflows it
    const cli = trace(['-o', 'json', '-p', String(c.pid), '-b', '4K', '--metrics', `127.0.0.1:${21000 + (process.pid % 20000)}`]);
    await ready(cli);
    const url = /^metrics at (\S+)$/m.exec(cli.stderr)![1];
    await c.go();
    // the child is gone: every loss has happened and been counted in the kernel
    const text = await (await fetch(url)).text();
    expect(await cli.stop()).toBe(0);
    const m = /^summary: (\d+) events seen, (\d+) lost/m.exec(cli.stderr)!;
    const [seen, lost] = [Number(m[1]), Number(m[2])];
    // every call is either printed or counted as lost: none vanishes
    expect(seen).toBe(events(cli).length);
    expect(seen + lost).toBe(calls);
    expect(lost).toBeGreaterThan(0);
    expect(cli.stderr).toMatch(/raise --buffer-size/);
    expect(text).toMatch(new RegExp(`^ebpfnet_trace_events_lost_total ${lost}$`, 'm'));
  });

  it('attaches only what it traces: `trace mkdirat` loads the mkdirat entry program, the exit program and io_uring\'s (IORING_OP_MKDIRAT is a mkdirat), nothing else', async () => {
    const d = fresh();
    const cli = new CliProcess(['trace', 'mkdirat', '-o', 'json']);
    clis.push(cli);
    await ready(cli);
    expect(cli.stderr).toMatch(/^tracing mkdirat; ctrl-c to end$/m);
    const links = perfLinks(cli.child.pid!);
    const names = progNames();
    expect(links.map((l) => [l.tracepoint, names.get(l.prog_id)]).sort()).toEqual([
      ['io_uring_complete', 'tr_uring_exit'],
      ['io_uring_submit_req', 'tr_uring_in'],
      ['sys_enter_mkdirat', 'tr_in_mkdirat'],
      ['sys_exit_mkdirat', 'tr_exit'],
    ]);
    const c = spawnChild([...(hasMkdir() ? ['mkdir', `${d}/by-mkdir`, '755'] : []), 'mkdirat', d, 'by-mkdirat', '755']);
    await c.go();
    await until('the mkdirat event', () => events(cli).some((e) => e.pid === c.pid));
    expect(await cli.stop()).toBe(0);
    expect(events(cli).filter((e) => e.pid === c.pid).map((e) => [e.syscall, e.path])).toEqual([['mkdirat', 'by-mkdirat']]);
    expect(events(cli).every((e) => e.syscall === 'mkdirat')).toBe(true);
  });

  it.each([
    [['mkdirx'], /^ebpfnet: trace: unknown syscall 'mkdirx'; this tracer knows mkdir \(mkdir, mkdirat\)\n$/],
    [['mkdir', '-p', 'abc'], /^ebpfnet: trace: --pid 'abc' is not a process id; .*\n$/],
    [['mkdir', '-d', '-1'], /^ebpfnet: trace: --duration -1 must be more than 0 seconds; .*\n$/],
  ])('bad input %j: one line, exit 2, nothing loaded', (args, msg) => {
    const before = [...progNames().values()].filter((n) => OUR_PROGRAMS.has(n)).length;
    const r = runCli(['trace', ...args]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(msg);
    expect(r.stdout).toBe('');
    expect([...progNames().values()].filter((n) => OUR_PROGRAMS.has(n)).length).toBe(before);
  });

  it('a pid that does not exist is refused before anything is loaded', () => {
    // pid_max is at most 4194304; a free pid below it is found from /proc
    let pid = 4_000_000;
    while (existsSync(`/proc/${pid}`)) pid++;
    const r = runCli(['trace', 'mkdir', '-p', String(pid)]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`ebpfnet: trace: no process with pid ${pid}; give the pid of a running process (see ps -e)\n`);
  });

  it('a thread id is refused with the process it belongs to', () => {
    // node runs helper threads: any task of this process other than the main one is a thread
    const tid = Number(readdirSync(`/proc/${process.pid}/task`).find((t) => Number(t) !== process.pid));
    const r = runCli(['trace', 'mkdir', '-p', String(tid)]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`ebpfnet: trace: ${tid} is a thread of process ${process.pid}, and --pid takes a process; trace the whole process: -p ${process.pid}\n`);
  });
});
