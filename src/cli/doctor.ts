// SPDX-License-Identifier: Apache-2.0
// `ebpfnet doctor`: one screen saying whether this machine can run each datapath and how to fix it.
import type { Command } from 'commander';
import { tunnelReport } from '../filter/coverage.js';
import { probeMachine, type Check } from '../loader/features.js';
import { isRoot } from '../loader/system.js';
import { lsmLoadRefusal } from '../trace/tracer.js';
import { printJson, wantsJson, withOutputOption, type OutputOptions } from './output.js';
import { table } from './present.js';

const MARK = { ok: 'ok', fixed: 'fixed', missing: 'MISSING', optional: '-' } as const;

export function registerDoctor(program: Command): void {
  withOutputOption(
    program.command('doctor').description('check that this machine can run each datapath, mount what is missing, and say how to fix the rest'),
  ).action((opts: OutputOptions) => {
    const json = wantsJson(opts);
    const r = probeMachine();
    refineLsmCheck(r.checks);
    // a warning, not a failure: the machine can run the filter, it just does not cover them yet
    const tunnels = tunnelReport();
    if (json) {
      printJson({ ...r, tunnels });
    } else {
      const out: string[] = [];
      out.push(table(['check', 'status', 'detail'], r.checks.map((c) => [c.name, MARK[c.status], c.fix ? `${c.detail}; fix: ${c.fix}` : c.detail])));
      out.push('');
      for (const d of r.datapaths) out.push(`${d.datapath.padEnd(7)} ${d.ready ? 'ready' : `NOT READY: needs ${d.needs.join(', ')}`}`);
      if (tunnels.length) out.push('', ...tunnels);
      out.push('', r.ok ? 'this machine can run every ebpfnet datapath' : 'fix what is marked MISSING, then run ebpfnet doctor again');
      process.stdout.write(`${out.join('\n')}\n`);
    }
    process.exitCode = r.ok ? 0 : 1;
  });
}

/**
 * BPF LSM can be active and lsm programs still refused (this is a tracer's question, so it is asked
 * here and not in the loader's probes): as root, load the tracer's lsm program and say what it got.
 */
function refineLsmCheck(checks: Check[]): void {
  const c = checks.find((x) => x.name === 'BPF LSM');
  if (!c || c.status !== 'ok' || !isRoot()) return;
  const refusal = lsmLoadRefusal();
  if (refusal === null) {
    c.detail = c.detail.replace(', where the kernel lets lsm programs load', ' (its lsm program loads)');
    return;
  }
  c.status = 'optional';
  c.detail = `active, but this kernel refuses lsm programs as root (${refusal}: a lockdown or security-module policy on bpf()): trace cannot see mkdirs made by kernel threads`;
}
