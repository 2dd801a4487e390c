// SPDX-License-Identifier: Apache-2.0
// Backend servers for balancer tests: fixtures/lb-servers.mjs run inside a test namespace (through
// nsenter, which keeps bpffs in view), answering with their names; resolved once they listen.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { packageDir } from '../../src/loader/index.js';

export async function startLbServers(ns: string, specs: unknown): Promise<ChildProcess> {
  const servers = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, join(packageDir(), 'test', 'kernel', 'fixtures', 'lb-servers.mjs'), JSON.stringify(specs)], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      servers.stdout!.on('data', (d: Buffer) => {
        out += d;
        if (out.includes('ready')) resolve();
      });
      servers.on('exit', (code) => reject(new Error(`backend servers exited (${code})`)));
      setTimeout(() => reject(new Error('backend servers did not start')), 15_000);
    });
  } catch (e) {
    servers.kill('SIGTERM');
    throw e;
  }
  return servers;
}

/** Stops what startLbServers started. */
export function stopLbServers(servers: ChildProcess | null): void {
  if (servers && servers.exitCode === null) {
    servers.stdin?.end();
    servers.kill('SIGTERM');
  }
}
