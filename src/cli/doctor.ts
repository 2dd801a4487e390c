// SPDX-License-Identifier: Apache-2.0
// `ebpfnet doctor`: one screen saying whether this machine can run each datapath and how to fix it.
import type { Command } from 'commander';
import { tunnelReport } from '../filter/coverage.js';
import { probeMachine } from '../loader/features.js';
import { printJson, wantsJson, withOutputOption, type OutputOptions } from './output.js';
import { table } from './present.js';

const MARK = { ok: 'ok', fixed: 'fixed', missing: 'MISSING', optional: '-' } as const;

export function registerDoctor(program: Command): void {
  withOutputOption(
    program.command('doctor').description('check that this machine can run each datapath, mount what is missing, and say how to fix the rest'),
  ).action((opts: OutputOptions) => {
    const json = wantsJson(opts);
    const r = probeMachine();
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
