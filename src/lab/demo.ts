// SPDX-License-Identifier: Apache-2.0
// `ebpfnet lab demo`: the classic two-host eBPF lab as one scripted story, each step checked. It
// drives ebpfnet the way a user would: the same CLI, run as child processes inside the target's
// namespace. The transcript shows each command as `host$ command`, what it printed, and a verdict
// line `[PASS] step` or `[FAIL] step: why`; --json prints one object per step instead.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { LAB, cliPath, down, execArgv, execIn, labDir, labLbPinDir, netnsExists, readState, sshConfigPath, up, type Host } from './topology.js';
import { packageDir } from '../loader/paths.js';

export interface StepResult {
  step: string;
  ok: boolean;
  why?: string;
  /** the commands and their output, as in the transcript */
  transcript: string[];
}

export interface DemoSink {
  /** a section heading */
  section(title: string): void;
  /** a transcript line (a command or its output) */
  line(text: string): void;
  /** a step's verdict */
  verdict(r: StepResult): void;
}

const httpJs = (): string => join(packageDir(), 'dist', 'lab', 'http.js');
const T = LAB.ip.target;

/** A long-running ebpfnet command inside the target (the filter, the tracer). */
class Background {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(host: Host, argv: string[], env?: NodeJS.ProcessEnv) {
    const { cmd, args } = execArgv(host, argv);
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d));
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d));
    this.exited = new Promise((r) => this.child.on('exit', (code) => r(code)));
  }

  /** The first match of `re` in stdout (or stderr), or null when the process exits or time runs out. */
  async waitFor(re: RegExp, ms: number, stream: 'stdout' | 'stderr' = 'stdout'): Promise<RegExpMatchArray | null> {
    const t0 = Date.now();
    for (;;) {
      const m = this[stream].match(re);
      if (m) return m;
      if (this.child.exitCode !== null || Date.now() - t0 > ms) return null;
      await sleep(25);
    }
  }

  async stop(ms = 10_000): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGINT');
    const t = setTimeout(() => this.child.kill('SIGKILL'), ms);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Demo {
  readonly results: StepResult[] = [];
  private current: string[] = [];
  private background = new Set<Background>();
  private interrupted = false;

  constructor(private readonly sink: DemoSink) {}

  private show(text: string): void {
    for (const l of text.replace(/\s+$/, '').split('\n')) {
      this.current.push(l);
      this.sink.line(l);
    }
  }

  /** Shows `host$ cmd`, runs it in the lab host, shows its output (at most `maxLines` lines). */
  private run(host: Host, shown: string, argv: string[], timeoutMs = 15_000, maxLines = 6): { status: number | null; out: string } {
    this.show(`${host}$ ${shown}`);
    const r = execIn(host, argv, timeoutMs);
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    if (out) {
      const lines = out.split('\n');
      this.show(lines.slice(0, maxLines).map((l) => `  ${l}`).join('\n') + (lines.length > maxLines ? `\n  ... (${lines.length - maxLines} more lines)` : ''));
    }
    return { status: r.status, out };
  }

  private verdict(step: string, ok: boolean, why?: string): boolean {
    const r: StepResult = { step, ok, transcript: this.current, ...(ok ? {} : { why: why ?? 'failed' }) };
    this.current = [];
    this.results.push(r);
    this.sink.verdict(r);
    return ok;
  }

  private ping(): { status: number | null; out: string } {
    this.show(`source$ ping -c 1 -W 1 ${T}`);
    const r = execIn('source', ['ping', '-c', '1', '-W', '1', T], 10_000);
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    // the reply (when there is one) and the verdict line; the rest of ping's output is noise here
    const shown = out.split('\n').filter((l) => /bytes from|packet loss|ping:/.test(l));
    if (shown.length) this.show(shown.map((l) => `  ${l.trim()}`).join('\n'));
    return { status: r.status, out };
  }

  private ssh(command: string): { status: number | null; out: string } {
    return this.run('source', `ssh -F ${sshConfigPath()} target ${command}`, ['ssh', '-F', sshConfigPath(), 'target', command], 15_000);
  }

  private httpGet(url: string, count = 1, host: Host = 'source'): { status: number | null; bodies: Record<string, number>; errors: Record<string, number>; last?: string } {
    const shown = count === 1 ? `curl ${url}` : `for i in $(seq ${count}); do curl -s ${url}; done | sort | uniq -c`;
    this.show(`${host}$ ${shown}`);
    const r = execIn(host, [process.execPath, httpJs(), 'get', url, String(count), '2000'], 60_000);
    let parsed: { bodies: Record<string, number>; errors: Record<string, number>; last?: string } = { bodies: {}, errors: { [`client failed: ${(r.stderr ?? '').trim() || r.status}`]: 1 } };
    try {
      parsed = JSON.parse((r.stdout ?? '').trim().split('\n').pop() ?? '');
    } catch {
      /* keep the failure above */
    }
    if (count === 1 && parsed.last) this.show(`  ${parsed.last.trim()}`);
    else for (const [body, n] of Object.entries(parsed.bodies)) this.show(`  ${String(n).padStart(6)} ${body}`);
    for (const [e, n] of Object.entries(parsed.errors)) this.show(`  error: ${e}${count > 1 ? ` (${n} times)` : ''}`);
    return { status: r.status, ...parsed };
  }

  /** An ebpfnet command run to completion inside the target. */
  private ebpfnet(args: string[], env?: NodeJS.ProcessEnv, maxLines = 12): { status: number | null; out: string } {
    this.show(`target$ ebpfnet ${args.join(' ')}`);
    const { cmd, args: a } = execArgv('target', [process.execPath, cliPath(), ...args]);
    const r = spawnSync(cmd, a, { encoding: 'utf8', timeout: 30_000, env: env ?? process.env });
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    if (out) {
      const lines = out.split('\n');
      this.show(lines.slice(0, maxLines).map((l) => `  ${l}`).join('\n') + (lines.length > maxLines ? `\n  ... (${lines.length - maxLines} more lines)` : ''));
    }
    return { status: r.status, out };
  }

  private startEbpfnet(args: string[], env?: NodeJS.ProcessEnv): Background {
    this.show(`target$ ebpfnet ${args.join(' ')} &`);
    const b = new Background('target', [process.execPath, cliPath(), ...args], env);
    this.background.add(b);
    return b;
  }

  private async stopEbpfnet(b: Background, what: string): Promise<number | null> {
    this.show(`target$ kill -INT %${what}`);
    const code = await b.stop();
    this.background.delete(b);
    return code;
  }

  /** Stops what the demo started and takes the lab down (Ctrl-C, or the end). */
  async teardown(): Promise<boolean> {
    await Promise.all([...this.background].map((b) => b.stop(3000)));
    this.background.clear();
    this.sink.section('clean-up: lab down');
    this.show('$ ebpfnet lab down');
    const r = down();
    for (const e of r.errors) this.show(`  ${e}`);
    const left = [...Object.values(LAB.netns).filter(netnsExists), readState() ? labDir() : null].filter(Boolean);
    return this.verdict('clean-up: lab down removes everything', r.errors.length === 0 && left.length === 0, r.errors[0] ?? `left behind: ${left.join(', ')}`);
  }

  interrupt(): void {
    this.interrupted = true;
  }

  /** The whole story. Returns true when every step held. The caller owns clean-up on a throw. */
  async run_(): Promise<boolean> {
    const s = this.sink;
    s.section(`set-up: two hosts in network namespaces (${LAB.netns.source} ${LAB.ip.source}, ${LAB.netns.target} ${T}), sshd and an HTTP server on the target`);
    this.show('$ ebpfnet lab up');
    try {
      const r = await up();
      for (const m of r.mounted) this.show(`  mounted ${m}`);
      for (const p of r.state.pids) this.show(`  ${p.name} running in ${LAB.netns.target} (pid ${p.pid})`);
      this.verdict('set-up: lab up', true);
    } catch (e) {
      this.show(`  ${(e as Error).message}`);
      this.verdict('set-up: lab up', false, (e as Error).message);
      return false;
    }
    const steps: Array<() => Promise<void> | void> = [
      () => this.baseline(),
      () => this.filter(),
      () => this.afterFilter(),
      () => this.statefulFilter(),
      () => this.trace(),
      () => this.loadBalancer(),
    ];
    for (const step of steps) {
      if (this.interrupted) break;
      await step();
    }
    return this.results.every((r) => r.ok);
  }

  private baseline(): void {
    this.sink.section('baseline: the source reaches the target');
    const p = this.ping();
    this.verdict('baseline: ping source -> target works', p.status === 0, `ping exited ${p.status}`);
    const ssh = this.ssh(`ip -brief address show dev ${LAB.ifname}`);
    this.verdict('baseline: ssh source -> target works', ssh.status === 0 && ssh.out.includes(T), `ssh exited ${ssh.status}`);
    const h = this.httpGet(`http://${T}/`);
    this.verdict('baseline: http source -> target works', h.status === 0 && h.bodies.target === 1, `no answer from the target's HTTP server`);
  }

  private filterProc: Background | null = null;

  private async filter(): Promise<void> {
    this.sink.section('the filter: drop SSH and ping at the target\'s driver with XDP');
    const f = this.startEbpfnet(['filter', '--iface', LAB.ifname, '--deny', 'tcp/22', '--deny', 'icmp', '--metrics', `${T}:${LAB.metricsPort}`, '--interval', '1']);
    this.filterProc = f;
    const ready = await f.waitFor(/^filtering/m, 20_000);
    this.show(f.stdout.trim().split('\n').map((l) => `  ${l}`).join('\n'));
    if (!ready) {
      if (f.stderr.trim()) this.show(`  ${f.stderr.trim()}`);
      this.verdict('filter: attached on the target', false, `the filter did not start: ${f.stderr.trim() || `exited ${f.child.exitCode}`}`);
      await this.stopEbpfnet(f, 'filter');
      this.filterProc = null;
      return;
    }
    this.verdict('filter: attached on the target', true);

    const p = this.ping();
    this.verdict('filtered: ping source -> target fails', p.status !== 0, 'ping still got an answer');
    const ssh = this.ssh('true');
    this.verdict('filtered: ssh source -> target fails', ssh.status !== 0, 'ssh still connected');
    const h = this.httpGet(`http://${T}/`);
    this.verdict('filtered: http source -> target still works', h.status === 0 && h.bodies.target === 1, 'HTTP failed too: the filter dropped more than it should');

    // the filter prints a line of drop counts every second (--interval 1)
    const seen = f.stdout.length;
    const counts = await (async () => {
      const t0 = Date.now();
      while (Date.now() - t0 < 4000) {
        const lines = f.stdout.slice(seen).split('\n').filter((l) => l.includes('dropped'));
        const last = lines.pop();
        const m = last && /tcp\/22 ([\d,]+).*icmp ([\d,]+)|icmp ([\d,]+).*tcp\/22 ([\d,]+)/.exec(last);
        if (last && m) {
          const tcp = Number((m[1] ?? m[4]).replace(/,/g, ''));
          const icmp = Number((m[2] ?? m[3]).replace(/,/g, ''));
          if (tcp > 0 && icmp > 0) return { line: last, tcp, icmp };
        }
        await sleep(100);
      }
      return null;
    })();
    this.show('(the filter\'s own output, a line a second)');
    this.show(`  ${counts?.line ?? f.stdout.trim().split('\n').pop() ?? ''}`);
    this.verdict('filtered: drop counters count the SSH and ping packets', counts !== null, 'no drop line with tcp/22 and icmp counts above zero');

    const metricsUrl = `http://${T}:${LAB.metricsPort}/metrics`;
    this.show(`source$ curl -s ${metricsUrl} | grep 'ebpfnet_filter_packets_total.*action="deny"'`);
    const scrape = execIn('source', [process.execPath, httpJs(), 'fetch', metricsUrl], 10_000);
    const series = (scrape.stdout ?? '').split('\n').filter((l) => l.startsWith('ebpfnet_filter_packets_total{') && l.includes('action="deny"'));
    this.show(series.map((l) => `  ${l}`).join('\n') || `  ${(scrape.stderr ?? '').trim()}`);
    const value = (rule: string): number => Number(series.find((l) => l.includes(`rule="${rule}"`) || l.includes(`rule="deny ${rule}"`))?.split(' ').pop() ?? 0);
    this.verdict('filtered: the Prometheus scrape shows the drops', value('tcp/22') > 0 && value('icmp') > 0, `ebpfnet_filter_packets_total for tcp/22 and icmp should be above zero: ${series.join('; ') || 'no series'}`);
  }

  private async afterFilter(): Promise<void> {
    const f = this.filterProc;
    if (!f) return;
    this.sink.section('stop the filter: traffic resumes');
    const code = await this.stopEbpfnet(f, 'filter');
    const tail = f.stdout.slice(f.stdout.indexOf('totals:'));
    this.show(tail.includes('totals:') ? tail.trim().split('\n').map((l) => `  ${l}`).join('\n') : `  ${f.stderr.trim()}`);
    const xdp = spawnSync('ip', ['-n', LAB.netns.target, '-d', 'link', 'show', 'dev', LAB.ifname], { encoding: 'utf8' }).stdout ?? '';
    const attached = /prog\/xdp|\bxdp(generic|drv)?\b/.test(xdp);
    this.verdict('stopped: the filter prints totals, detaches and exits 0', code === 0 && tail.includes('totals:') && !attached, attached ? 'an XDP program is still attached' : `exit ${code}`);
    const p = this.ping();
    this.verdict('stopped: ping source -> target works again', p.status === 0, `ping exited ${p.status}`);
    const ssh = this.ssh('echo ssh works again');
    this.verdict('stopped: ssh source -> target works again', ssh.status === 0, `ssh exited ${ssh.status}`);
  }

  /**
   * A default deny the target can live with: only SSH may come in, yet the target's own request to
   * a server on the source gets its answer (the reply passes as established), while the source's
   * request to the target's HTTP server is dropped.
   */
  private async statefulFilter(): Promise<void> {
    const S = LAB.ip.source;
    this.sink.section(`the stateful filter: default deny on the target (only SSH comes in), and the target still fetches a page from the source`);
    const listen = JSON.stringify([{ host: S, port: LAB.httpPort, name: 'source' }]);
    this.show(`source$ node dist/lab/http.js serve '${listen}' &`);
    const server = new Background('source', [process.execPath, httpJs(), 'serve', listen]);
    this.background.add(server);
    const up = await server.waitFor(/^ready/m, 10_000);
    if (!up) {
      this.show(`  ${server.stderr.trim() || `exited ${server.child.exitCode}`}`);
      await server.stop(3000);
      this.background.delete(server);
      this.verdict('stateful: filter --default deny --allow tcp/22 attached on the target', false, `no HTTP server on the source: ${server.stderr.trim() || `exited ${server.child.exitCode}`}`);
      return;
    }
    this.show(`  ${server.stdout.trim()}`);
    const f = this.startEbpfnet(['filter', '--iface', LAB.ifname, '--default', 'deny', '--allow', 'tcp/22', '--interval', '1']);
    const ready = await f.waitFor(/^filtering/m, 20_000);
    this.show(f.stdout.trim().split('\n').filter((l) => !/^\S+: dropped/.test(l)).map((l) => `  ${l}`).join('\n'));
    if (f.stderr.trim()) this.show(`  ${f.stderr.trim()}`);
    const on = !!ready && /^connection state: on/m.test(f.stdout);
    this.verdict('stateful: filter --default deny --allow tcp/22 attached on the target', on, ready ? 'the filter did not say connection state: on' : `the filter did not start: ${f.stderr.trim() || `exited ${f.child.exitCode}`}`);
    if (ready) {
      const own = this.httpGet(`http://${S}/`, 1, 'target');
      this.verdict('stateful: the target still fetches a page from the source', own.status === 0 && own.bodies.source === 1, `no page from the source: ${JSON.stringify(own.errors)}`);
      const ssh = this.ssh('echo ssh is allowed');
      this.verdict('stateful: ssh source -> target works (allow tcp/22)', ssh.status === 0, `ssh exited ${ssh.status}`);
      const h = this.httpGet(`http://${T}/`);
      this.verdict('stateful: http source -> target is dropped (default deny)', h.status !== 0, "the target's HTTP server still answered the source");
    }
    const code = await this.stopEbpfnet(f, 'filter');
    const tail = f.stdout.slice(f.stdout.indexOf('totals:'));
    if (tail.startsWith('totals:')) this.show(tail.trim().split('\n').map((l) => `  ${l}`).join('\n'));
    const est = new RegExp(`^${LAB.ifname}\\s+allow established\\s+([\\d,]+) packets?`, 'm').exec(tail);
    if (ready) this.verdict('stateful: the totals count the replies that passed as established', code === 0 && !!est && Number(est[1].replace(/,/g, '')) > 0, est ? `exit ${code}` : 'no established row in the totals');
    this.show('source$ kill %serve');
    await server.stop(3000);
    this.background.delete(server);
  }

  private async trace(): Promise<void> {
    this.sink.section('the tracer: a mkdir on the target appears');
    const t = this.startEbpfnet(['trace', 'mkdir', '-o', 'json', '-n', 'mkdir']);
    const ready = await t.waitFor(/^tracing /m, 20_000, 'stderr');
    if (!ready) {
      this.show(`  ${t.stderr.trim()}`);
      await this.stopEbpfnet(t, 'trace');
      this.verdict('trace: a mkdir on the target appears in the tracer', false, `the tracer did not start: ${t.stderr.trim() || `exited ${t.child.exitCode}`}`);
      return;
    }
    this.show(`  ${t.stderr.slice(ready.index!).split('\n')[0]}`);
    const dir = join(labDir(), `mkdir-demo-${process.pid}`);
    const ssh = this.ssh(`mkdir ${dir}`);
    const event = await t.waitFor(new RegExp(`^\\{.*"path":${JSON.stringify(dir).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}.*\\}$`, 'm'), 5000);
    const code = await this.stopEbpfnet(t, 'trace');
    if (event) {
      const e = JSON.parse(event[0]) as { pid: number; comm: string; syscall: string; path: string; mode: string; result: string; latency_ns: number };
      this.show('(the tracer\'s output: one JSON object per call)');
      this.show(`  ${event[0]}`);
      this.show(`  = pid ${e.pid} (${e.comm}) ${e.syscall}("${e.path}", ${e.mode}) -> ${e.result}, ${(e.latency_ns / 1000).toFixed(1)} us`);
    }
    this.verdict('trace: a mkdir on the target appears in the tracer', ssh.status === 0 && !!event && code === 0, !event ? `no event for ${dir} (ssh exited ${ssh.status})` : `the tracer exited ${code}`);
  }

  private loadBalancer(): void {
    this.sink.section('the balancer: a service VIP answered by two backends on the target');
    const env = { ...process.env, EBPFNET_LB_PIN_DIR: labLbPinDir() };
    const [vip] = LAB.vip.split('/');
    const url = `http://${vip}/`;
    this.show(`(before: nothing routes ${vip.split(':')[0]}, so a connection to it fails)`);
    const before = this.httpGet(url);
    this.verdict('lb: without the balancer the VIP does not answer', before.status !== 0, 'the VIP answered before any balancer was attached');
    const state = readState();
    const cg = state?.cgroup ?? LAB.cgroupName;
    this.show(`(the balancer acts at connect() in the clients' cgroup: every \`ebpfnet lab exec\` command runs in ${cg})`);
    const a = this.ebpfnet(['lb', 'attach', '--cgroup', cg], env);
    const add = a.status === 0 ? this.ebpfnet(['lb', 'add', LAB.vip, ...LAB.backends.flatMap((b) => ['--backend', `${T}:${b.port}`])], env) : a;
    if (a.status !== 0 || add.status !== 0) {
      this.verdict('lb: the VIP is answered by both backends', false, `lb ${a.status !== 0 ? 'attach' : 'add'} failed: ${add.out.split('\n').pop()}`);
      return;
    }
    const N = 20;
    const r = this.httpGet(url, N);
    const names = LAB.backends.map((b) => b.name);
    const both = names.every((n) => (r.bodies[n] ?? 0) > 0) && Object.keys(r.errors).length === 0 && names.reduce((x, n) => x + (r.bodies[n] ?? 0), 0) === N;
    this.ebpfnet(['lb', 'list'], env);
    // with 20 requests and two equal backends, one backend taking all is a 1-in-500,000 event
    this.verdict('lb: the VIP is answered by both backends', both, `answers: ${JSON.stringify(r.bodies)}, errors: ${JSON.stringify(r.errors)}`);
    const d = this.ebpfnet(['lb', 'detach'], env);
    this.verdict('lb: detach removes the balancer', d.status === 0, `lb detach exited ${d.status}`);
  }
}
