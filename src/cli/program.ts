// SPDX-License-Identifier: Apache-2.0
// The whole command tree. Each command lives in its own file and registers itself here; base.ts
// names the same commands for runs that load only the one they use.
import type { Command } from 'commander';
import { baseProgram } from './base.js';
import { registerAgent } from './agent.js';
import { registerDoctor } from './doctor.js';
import { registerFilter } from './filter.js';
import { registerKubernetes } from './kubernetes.js';
import { registerLab } from './lab.js';
import { registerLb } from './lb.js';
import { registerTrace } from './trace.js';
import { registerVerify } from './verify.js';

export function buildProgram(): Command {
  const program = baseProgram();
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
