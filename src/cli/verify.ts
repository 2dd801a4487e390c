// SPDX-License-Identifier: Apache-2.0
// `ebpfnet verify`: load every program of every object, alone, and hold it to the committed baseline.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { bpfObjectDir, packageDir } from '../loader/paths.js';
import { requireRoot } from '../loader/system.js';
import { baselineKey, compareWithBaseline, makeBaseline, readBaseline, verifyDir } from '../loader/verify.js';
import { printJson, wantsJson, withOutputOption, type OutputOptions } from './output.js';
import { table } from './present.js';

export const baselineDir = (): string => join(packageDir(), 'bpf', 'baseline');

export function registerVerify(program: Command): void {
  withOutputOption(
    program.command('verify').description('load every BPF program into the kernel one at a time and compare the verifier cost with the baseline'),
  )
    .option('--dir <dir>', 'folder of *.bpf.o objects', bpfObjectDir())
    .option('--update-baseline', `write this kernel's numbers as the new baseline (bpf/baseline/${baselineKey()}.json)`)
    .action((opts: OutputOptions & { dir: string; updateBaseline?: boolean }) => {
      const json = wantsJson(opts);
      requireRoot('verify');
      const rows = verifyDir(opts.dir);
      const baseline = readBaseline(baselineDir());
      const regressions = compareWithBaseline(rows, baseline);
      const base = (o: string, p: string): number | null => baseline?.[`${o}/${p}`]?.insns ?? null;
      if (json) {
        printJson({ kernel: baselineKey(), rows: rows.map((r) => ({ ...r, baselineInsns: base(r.object, r.program) })), regressions });
      } else {
        process.stdout.write(
          `${table(
            ['object', 'program', 'type', 'verdict', 'insns', 'baseline', 'states', 'stack'],
            rows.map((r) => [r.object, r.program, r.type, r.verdict, r.insns, base(r.object, r.program), r.states, r.stackDepth]),
          )}\n`,
        );
        for (const r of rows.filter((x) => x.detail)) process.stdout.write(`\n${r.object}/${r.program}: ${r.verdict}\n${r.detail}\n`);
        if (!baseline) process.stdout.write(`\nno baseline for kernel ${baselineKey()}; record one with: ebpfnet verify --update-baseline\n`);
        for (const g of regressions) process.stdout.write(`\nREGRESSION ${g.program}: ${g.problem}\n`);
      }
      if (!rows.length) {
        process.stderr.write(`ebpfnet: verify: no BPF objects in ${opts.dir}; build them: npm run build\n`);
        process.exitCode = 1;
        return;
      }
      if (opts.updateBaseline && rows.every((r) => r.verdict === 'ok' || r.verdict === 'refused')) {
        mkdirSync(baselineDir(), { recursive: true });
        const file = join(baselineDir(), `${baselineKey()}.json`);
        writeFileSync(file, `${JSON.stringify(makeBaseline(rows), null, 2)}\n`);
        // under -o json stdout holds the one document
        (json ? process.stderr : process.stdout).write(`wrote ${file}\n`);
        return;
      }
      process.exitCode = regressions.length ? 1 : 0;
    });
}
