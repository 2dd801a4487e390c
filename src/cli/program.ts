// SPDX-License-Identifier: Apache-2.0
// The command tree. Each command lives in its own file and registers itself here.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { packageDir } from '../loader/paths.js';
import { registerAgent } from './agent.js';
import { registerDoctor } from './doctor.js';
import { registerFilter } from './filter.js';
import { registerKubernetes } from './kubernetes.js';
import { registerLab } from './lab.js';
import { registerLb } from './lb.js';
import { registerTrace } from './trace.js';
import { registerVerify } from './verify.js';

export function buildProgram(): Command {
  const { version } = JSON.parse(readFileSync(join(packageDir(), 'package.json'), 'utf8')) as { version: string };
  const program = new Command('ebpfnet')
    .description('Linux networking and observability on eBPF: packet filter, mkdir tracer, socket load balancer')
    .version(version)
    .exitOverride()
    .enablePositionalOptions()
    .showHelpAfterError('(run ebpfnet --help for usage)');
  registerDoctor(program);
  registerFilter(program);
  registerVerify(program);
  registerLb(program);
  registerTrace(program);
  registerAgent(program);
  registerKubernetes(program);
  registerLab(program);
  return program;
}
