// SPDX-License-Identifier: Apache-2.0
// The root of the command tree, and which module registers each command. A run loads only the
// module of the command it names (`ebpfnet lb apply` never loads fastify, prom-client or the
// tracer), so a short command does not pay for compiling the others; program.ts builds the whole
// tree (help, an unknown command, the tests), and a unit test holds the two to the same commands.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { packageDir } from '../loader/paths.js';

type Register = (program: Command) => void;

/**
 * Every command, in the order `ebpfnet --help` lists them, grouped by the module that registers
 * them (filter.ts also registers status and unload), and the aliases a run may name them by.
 */
export const COMMANDS: ReadonlyArray<readonly [names: readonly string[], load: () => Promise<Register>, aliases?: readonly string[]]> = [
  [['doctor'], async () => (await import('./doctor.js')).registerDoctor],
  [['filter', 'status', 'unload'], async () => (await import('./filter.js')).registerFilter],
  [['verify'], async () => (await import('./verify.js')).registerVerify],
  [['lb'], async () => (await import('./lb.js')).registerLb],
  [['trace'], async () => (await import('./trace.js')).registerTrace],
  [['agent'], async () => (await import('./agent.js')).registerAgent],
  [['kubernetes'], async () => (await import('./kubernetes.js')).registerKubernetes, ['k8s']],
  [['lab'], async () => (await import('./lab.js')).registerLab],
];

/** `ebpfnet` itself: its description, version and parsing settings, with no command yet. */
export function baseProgram(): Command {
  const { version } = JSON.parse(readFileSync(join(packageDir(), 'package.json'), 'utf8')) as { version: string };
  return new Command('ebpfnet')
    .description('Linux networking and observability on eBPF: packet filter, mkdir tracer, socket load balancer')
    .version(version)
    .exitOverride()
    .enablePositionalOptions()
    .showHelpAfterError('(run ebpfnet --help for usage)');
}

/**
 * The tree a run needs: only the named command when argv names one first (`ebpfnet lb ...`);
 * anything else (no command, an option first, a name that is no command) gets the whole tree, so
 * help and the unknown-command message list every command.
 */
export async function programFor(argv: readonly string[]): Promise<Command> {
  const entry = COMMANDS.find(([names, , aliases]) => names.includes(argv[2]) || !!aliases?.includes(argv[2]));
  if (!entry) return (await import('./program.js')).buildProgram();
  const program = baseProgram();
  (await entry[1]())(program);
  return program;
}
