// SPDX-License-Identifier: Apache-2.0
// A real `ebpfnet agent` process for kernel tests: started from a config on 127.0.0.1 with a port
// the kernel picks, read back from its stdout, with the token it generated in its state directory.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliProcess } from './cli.js';

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
    await proc.waitFor(/^ready$/m);
    return { url: m[1], port: Number(m[2]), token: readFileSync(join(stateDir, 'token'), 'utf8').trim(), proc };
  } catch (e) {
    await proc.stop('SIGKILL');
    throw e;
  }
}
