// SPDX-License-Identifier: Apache-2.0
// A real `ebpfnet agent` process for kernel tests: started from a config on 127.0.0.1 with a port
// the kernel picks, read back from its stdout, with the token it generated in its state directory.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CliProcess, runCli } from './cli.js';
import type { VethPair } from './netns.js';

export interface RunningAgent {
  url: string;
  port: number;
  token: string;
  proc: CliProcess;
}

export async function startAgent(config: string, stateDir: string): Promise<RunningAgent> {
  const proc = new CliProcess(['agent', '--config', config, '--state-dir', stateDir, '--listen', '127.0.0.1:0']);
  try {
    const m = await proc.waitFor(/api: (http:\/\/[\d.]+:(\d+))\/v1/);
    await proc.waitFor(/"msg":"ready"/);
    return { url: m[1], port: Number(m[2]), token: readFileSync(join(stateDir, 'token'), 'utf8').trim(), proc };
  } catch (e) {
    await proc.stop('SIGKILL');
    throw e;
  }
}

/** The journal's records as lines: after its header, up to the zeros it is filled with ahead of its end. */
export function journalRecords(stateDir: string): string[] {
  const lines = readFileSync(join(stateDir, 'state.journal'), 'utf8').split('\n').slice(1);
  const end = lines.findIndex((l) => l.charCodeAt(0) === 0);
  return (end < 0 ? lines : lines.slice(0, end)).filter(Boolean);
}

/**
 * After a test of agents filtering `v.host`: kill them, let the product remove what they pinned
 * (`agent --cleanup`, then `unload` for a filter a failed test left), then the pair and `dir`.
 */
export function cleanupAgentTest(agents: CliProcess[], dir: string, v: VethPair): void {
  for (const a of agents) a.child.kill('SIGKILL');
  agents.length = 0;
  runCli(['agent', '--cleanup', '--state-dir', join(dir, 'state')]);
  runCli(['unload', '--iface', v.host]);
  v.cleanup();
  rmSync(dir, { recursive: true, force: true });
}
