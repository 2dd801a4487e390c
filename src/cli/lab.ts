// SPDX-License-Identifier: Apache-2.0
// `ebpfnet lab up|down|status|exec|demo`: the two-host lab (source, target) in network namespaces,
// and the scripted demo that runs the whole story on it with a verdict per step.
import { spawnSync } from 'node:child_process';
import type { Command } from 'commander';
import { EbpfnetError } from '../errors.js';
import { onShutdown } from '../loader/guard.js';
import { requireRoot } from '../loader/system.js';
import { Demo, type DemoSink, type StepResult } from '../lab/demo.js';
import { printJson, wantsJson, withOutputOption, type OutputOptions } from './output.js';
import { LAB, down, execArgv, labDir, readState, sshConfigPath, status, up, type Host } from '../lab/topology.js';

const out = (s: string): void => void process.stdout.write(`${s}\n`);

const EXAMPLES = `
Examples:
  sudo ebpfnet lab demo                          the whole story, a verdict per step; cleans up after itself
  sudo ebpfnet lab up                            build the two hosts and leave them running
  sudo ebpfnet lab exec source -- ping -c 1 ${LAB.ip.target}
  sudo ebpfnet lab exec source -- ssh -F ${labDir()}/ssh_config target
  sudo ebpfnet lab exec target -- ebpfnet filter --iface ${LAB.ifname} --deny tcp/22 --deny icmp
  sudo ebpfnet lab down                          remove everything up made (also after a crash)`;

function hostOf(v: string): Host {
  if (v === 'source' || v === 'target') return v;
  throw new EbpfnetError('EBPFNET_USAGE', 'lab exec', `'${v}' is not a lab host`, { hint: 'use source or target' });
}

function printUp(): void {
  const st = readState();
  out(`lab: up: ${LAB.netns.source} (${LAB.ip.source}) <-> ${LAB.netns.target} (${LAB.ip.target}) over a veth pair (${LAB.ifname} in both)`);
  for (const p of st?.pids ?? []) out(`lab: ${p.name} running on the target (pid ${p.pid})`);
  out(`lab: target serves ssh on ${LAB.ip.target}:${LAB.sshPort}, http on :${LAB.httpPort}, backends ${LAB.backends.map((b) => `${b.name} :${b.port}`).join(', ')}`);
  out(`lab: commands from \`ebpfnet lab exec\` run in the cgroup ${st?.cgroup ?? '?'}; state in ${labDir()}`);
  out(`try: ebpfnet lab exec source -- ssh -F ${sshConfigPath()} target`);
}

async function runDemo(opts: { json?: boolean }): Promise<void> {
  requireRoot('lab demo');
  // A lab someone left up is theirs: refuse rather than take it down at the end.
  if (readState() || Object.values(LAB.netns).some((n) => spawnSync('test', ['-e', `/run/netns/${n}`]).status === 0)) {
    throw new EbpfnetError('EBPFNET_EXISTS', 'lab demo', 'a lab is already up', { hint: 'the demo builds and removes its own; take the other down first: ebpfnet lab down' });
  }
  const sink: DemoSink = opts.json
    ? {
        section: () => undefined,
        line: () => undefined,
        verdict: (r: StepResult) => out(JSON.stringify({ step: r.step, verdict: r.ok ? 'PASS' : 'FAIL', ...(r.why ? { why: r.why } : {}), transcript: r.transcript })),
      }
    : {
        section: (t) => out(`\n== ${t}`),
        line: (l) => out(l),
        verdict: (r) => out(r.ok ? `[PASS] ${r.step}` : `[FAIL] ${r.step}: ${r.why}`),
      };
  const demo = new Demo(sink);
  let tornDown = false;
  // Ctrl-C: stop the children, take the lab down, and end with status 1 (the story did not finish)
  onShutdown(async () => {
    demo.interrupt();
    if (!tornDown) {
      tornDown = true;
      await demo.teardown();
    }
    throw new EbpfnetError('EBPFNET_BUSY', 'lab demo', 'interrupted; the lab was taken down');
  });
  let held = false;
  try {
    held = await demo.run_();
  } finally {
    if (!tornDown) {
      tornDown = true;
      held = (await demo.teardown()) && held;
    }
  }
  const failed = demo.results.filter((r) => !r.ok);
  const summary = `${demo.results.length - failed.length} of ${demo.results.length} steps passed`;
  if (opts.json) out(JSON.stringify({ result: held ? 'PASS' : 'FAIL', passed: demo.results.length - failed.length, failed: failed.length }));
  else out(held ? `\nlab demo: PASS: ${summary}` : `\nlab demo: FAIL: ${summary}; failed: ${failed.map((r) => r.step).join('; ')}`);
  if (!held) process.exitCode = 1;
}

export function registerLab(program: Command): void {
  const lab = program
    .command('lab')
    .summary('the two-host lab (source, target) in network namespaces, and the demo that runs on it')
    .description(
      `two hosts in network namespaces, ${LAB.netns.source} (${LAB.ip.source}) and ${LAB.netns.target} (${LAB.ip.target}), joined by a veth pair; the target runs sshd and an HTTP server. The same topology as the Vagrant lab in vagrant/, on one machine`,
    )
    .addHelpText('after', EXAMPLES)
    .enablePositionalOptions()
    .showHelpAfterError(false)
    .configureOutput({ outputError: (str, write) => write(`ebpfnet: lab: ${str.replace(/^error: /, '').trim()}; see ebpfnet lab --help\n`) });

  lab
    .command('up')
    .description('build the lab and leave it running')
    .action(async () => {
      requireRoot('lab up');
      await up();
      printUp();
    });

  lab
    .command('down')
    .description('remove everything lab up (or a crashed demo) made: processes, namespaces, cgroup, pins, state')
    .action(() => {
      requireRoot('lab down');
      const r = down();
      for (const x of r.removed) out(`lab: removed ${x}`);
      if (!r.removed.length && !r.errors.length) out('lab: nothing to remove');
      if (r.errors.length) throw new EbpfnetError('EBPFNET_KERNEL', 'lab down', r.errors.join('; '), { hint: 'run ebpfnet lab down again; ip netns list shows what is left' });
    });

  withOutputOption(lab.command('status').description('is the lab up, and what of it is running')).action((o: OutputOptions) => {
    const json = wantsJson(o);
    const s = status();
    const anything = Object.values(s.netns).some(Boolean) || s.processes.length || s.cgroup || s.balancer || s.stateDir;
    // partly up is a failure in either format; entirely down is not
    if (anything && !s.up) process.exitCode = 1;
    if (json) return printJson(s);
    if (s.up) printUp();
    else out(anything ? 'lab: partly up (a crash or an interrupted command); remove it with: ebpfnet lab down' : 'lab: down');
    if (!anything) return;
    for (const [n, there] of Object.entries(s.netns)) out(`  network namespace ${n}: ${there ? 'present' : 'missing'}`);
    for (const p of s.processes) out(`  ${p.name} (pid ${p.pid}): ${p.running ? 'running' : 'not running'}`);
    if (s.balancer) out('  balancer: attached (from lab demo, or lb attach with EBPFNET_LB_PIN_DIR)');
  });

  lab
    .command('exec')
    .description('run a command inside a lab host (its network namespace, and the lab\'s cgroup)')
    .argument('<host>', 'source or target')
    .argument('<command...>', 'the command and its arguments, after --')
    .passThroughOptions()
    .action((host: string, argv: string[]) => {
      const h = hostOf(host);
      requireRoot('lab exec');
      const { cmd, args } = execArgv(h, argv);
      const r = spawnSync(cmd, args, { stdio: 'inherit' });
      if (r.error) throw new EbpfnetError('EBPFNET_KERNEL', `lab exec ${h}`, r.error.message);
      // the command's own status, as a shell would report it
      process.exitCode = r.status ?? 128 + (r.signal === 'SIGINT' ? 2 : r.signal === 'SIGTERM' ? 15 : 9);
    });

  withOutputOption(
    lab
      .command('demo')
      .description('the whole lab story with a verdict per step: baseline, filter, drop counters and Prometheus scrape, traffic resumes, the mkdir tracer, a load-balanced VIP; exits 0 only when every step held, and cleans up'),
    { json: 'one JSON object per step, then a summary object' },
  ).action((o: OutputOptions) => runDemo({ json: wantsJson(o) }));
}
