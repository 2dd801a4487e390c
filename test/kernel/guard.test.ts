// SPDX-License-Identifier: Apache-2.0
// The exit guard: a process that attached XDP leaves nothing attached however it ends.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { packageDir } from '../../src/loader/paths.js';
import { describeKernel, xdpOn } from '../helpers/kernel.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const child = join(packageDir(), 'test', 'kernel', 'fixtures', 'guard-child.mjs');

function run(ifname: string, how: string, signal?: NodeJS.Signals): Promise<{ code: number | null; out: string; attachedSeen: boolean }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, ifname, how], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let attachedSeen = false;
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`child did not end: ${out}`));
    }, 20_000);
    p.stdout.on('data', (d: Buffer) => {
      out += d;
      if (!attachedSeen && out.includes('attached')) {
        attachedSeen = xdpOn(ifname);
        if (signal) p.kill(signal);
        else p.stdin.write('go\n');
      }
    });
    p.stderr.on('data', (d: Buffer) => (out += d));
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, out, attachedSeen });
    });
  });
}

describeKernel('exit guard', () => {
  let veth: VethPair | null = null;
  afterEach(() => {
    veth?.cleanup();
    veth = null;
  });

  for (const [how, signal, code] of [
    ['wait', 'SIGINT', 130],
    ['wait', 'SIGTERM', 143],
    ['hook', 'SIGINT', 0],
    ['exit', undefined, 0],
    ['throw', undefined, 1],
    ['reject', undefined, 1],
  ] as const) {
    it(`detaches on ${signal ?? how}${how === 'hook' ? ' after the shutdown hook' : ''}`, async () => {
      veth = makeVethPair();
      const r = await run(veth.host, how, signal);
      expect(r.attachedSeen, r.out).toBe(true);
      expect(r.code, r.out).toBe(code);
      expect(xdpOn(veth.host)).toBe(false);
      if (how === 'hook') expect(r.out).toContain('shutdown hook ran');
      if (how === 'throw') expect(r.out).toContain('boom');
    });
  }
});
