// SPDX-License-Identifier: Apache-2.0
// Runs the built CLI (dist/cli/main.js) the way a user does, optionally inside a network namespace.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageDir } from '../../src/loader/paths.js';
import { currentNetnsInode, startNetnsInode } from './netns.js';

export const CLI = join(packageDir(), 'dist', 'cli', 'main.js');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * A command inside network namespace `ns`. nsenter switches only the network namespace: `ip netns
 * exec` also gives the command a private /sys, where the host's bpffs is not (ebpfnet then pins
 * through /proc/1/root or refuses; test/kernel/filter-netns.test.ts covers that).
 */
export const inNetns = (ns: string, argv: string[]): [string, string[]] => ['nsenter', [`--net=/run/netns/${ns}`, ...argv]];

/** Runs `ebpfnet ARGS` to completion. */
export function runCli(args: string[], opts: { ns?: string; timeout?: number; env?: NodeJS.ProcessEnv; input?: string } = {}): CliResult {
  const [cmd, argv] = opts.ns ? inNetns(opts.ns, [process.execPath, CLI, ...args]) : [process.execPath, [CLI, ...args]];
  const r = spawnSync(cmd as string, argv as string[], { encoding: 'utf8', timeout: opts.timeout ?? 30_000, env: opts.env ?? process.env, input: opts.input });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** A long-running `ebpfnet ARGS` (filter, trace) that the test talks to and stops. */
export class CliProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  private exited: Promise<number | null>;

  constructor(args: string[], opts: { ns?: string; env?: NodeJS.ProcessEnv } = {}) {
    // an agent serves its API (and filters what it is told) where it runs: never the namespace the tests started in
    if (args[0] === 'agent' && !opts.ns && currentNetnsInode() === startNetnsInode()) {
      throw new Error('start the agent in a network namespace of the test\'s own: pass { ns }, or make one first (makeVethPair, makeNetns in test/helpers/netns.ts)');
    }
    const [cmd, argv] = opts.ns ? inNetns(opts.ns, [process.execPath, CLI, ...args]) : [process.execPath, [CLI, ...args]];
    this.child = spawn(cmd as string, argv as string[], { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d));
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d));
    this.exited = new Promise((r) => this.child.on('exit', (code) => r(code)));
  }

  /** Resolves when stdout matches, rejects when the process exits first or after `ms`. */
  async waitFor(re: RegExp, ms = 15_000): Promise<RegExpMatchArray> {
    const t0 = Date.now();
    for (;;) {
      const m = this.stdout.match(re);
      if (m) return m;
      if (this.child.exitCode !== null || Date.now() - t0 > ms) {
        throw new Error(`waiting for ${re}: ${this.child.exitCode !== null ? `exited ${this.child.exitCode}` : 'timed out'}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Sends a signal and waits for the exit status. */
  async stop(signal: NodeJS.Signals = 'SIGINT', ms = 15_000): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill(signal);
    const t = setTimeout(() => this.child.kill('SIGKILL'), ms);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }
}

/** Whether user `uid` can read `path` (every directory above it searchable). */
const readableBy = (uid: number, path: string): boolean =>
  spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'test', '-r', path]).status === 0;

/**
 * The CLI, and the Node to run it with, as another user can run them: the checkout's own when that
 * user can read them, else a copy of what is needed (the node executable, package.json, dist, build,
 * node_modules: hard links where the file system allows) in a world-readable temporary directory.
 * A checkout may be private (mode 0700, like /root or what mktemp -d gives), and its project-local
 * Node (tools/node) then sits inside it; a test of "not root" must run as a user who is not root.
 */
export function cliFor(uid: number): { node: string; cli: string; cleanup(): void } {
  const nodeOk = readableBy(uid, process.execPath);
  if (nodeOk && readableBy(uid, CLI)) return { node: process.execPath, cli: CLI, cleanup() {} };
  const dir = mkdtempSync(join(tmpdir(), 'ebpfnet-cli-'));
  chmodSync(dir, 0o755);
  // cp -al: hard links keep each file's own (world-readable) mode; across file systems, a copy
  const link = (from: string, to: string): void => {
    if (spawnSync('cp', ['-al', from, to]).status !== 0) cpSync(from, to, { recursive: true });
  };
  for (const part of ['package.json', 'dist', 'build', 'node_modules']) link(join(packageDir(), part), join(dir, part));
  const node = nodeOk ? process.execPath : join(dir, 'node');
  if (!nodeOk) link(process.execPath, node);
  return { node, cli: join(dir, 'dist', 'cli', 'main.js'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
