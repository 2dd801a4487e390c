// SPDX-License-Identifier: Apache-2.0
// ebpfnet's folders (loader/dirs.ts) on a real filesystem: pruning removes only empty folders and
// only ours, and two processes that fill and prune one folder at once never lose a create to the
// other's prune when the create goes through withDir (without it, they do: the race is real).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pruneEmptyDirs, withDir } from '../../src/loader/dirs.js';
import { packageDir } from '../../src/loader/paths.js';

describe('ebpfnet folders', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'ebpfnet-dirs-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('prune removes the empty folders up to the one named, and stops at one that holds something', () => {
    mkdirSync(join(root, 'e', 'a', 'b', 'c'), { recursive: true });
    writeFileSync(join(root, 'e', 'keep'), '');
    pruneEmptyDirs(join(root, 'e', 'a', 'b', 'c'), join(root, 'e'));
    expect(readdirSync(join(root, 'e'))).toEqual(['keep']);
    // an already-gone leaf: its parents are still pruned
    mkdirSync(join(root, 'e', 'x'));
    pruneEmptyDirs(join(root, 'e', 'x', 'gone'), join(root, 'e'));
    expect(readdirSync(join(root, 'e'))).toEqual(['keep']);
  });

  it('prune leaves a folder outside ebpfnet\'s own alone unless told how far to go', () => {
    mkdirSync(join(root, 'mine'));
    pruneEmptyDirs(join(root, 'mine'));
    expect(existsSync(join(root, 'mine'))).toBe(true);
    // a path that only looks like it is inside: not under upTo
    pruneEmptyDirs(join(root, 'mine'), join(root, 'mi'));
    expect(existsSync(join(root, 'mine'))).toBe(true);
  });

  it('withDir makes the folder, and a create that fails for another reason is not retried', () => {
    expect(withDir(join(root, 'a', 'b'), () => 7)).toBe(7);
    expect(existsSync(join(root, 'a', 'b'))).toBe(true);
    let calls = 0;
    expect(() =>
      withDir(join(root, 'a'), () => {
        calls++;
        throw Object.assign(new Error('no'), { code: 'EACCES' });
      }),
    ).toThrow('no');
    expect(calls).toBe(1);
  });

  const churn = (me: string, n: number, plain: boolean): Promise<{ enoent: number }> =>
    new Promise((resolve, reject) => {
      const args = [join(packageDir(), 'test', 'helpers', 'dir-churn.mjs'), join(packageDir(), 'dist'), root, me, String(n), ...(plain ? ['plain'] : [])];
      const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (b: Buffer) => (out += b));
      p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as { enoent: number }) : reject(new Error(`dir-churn exited ${code}`))));
    });

  it('two processes filling and pruning one folder: no create is lost through withDir, and nothing is left', async () => {
    const [a, b] = await Promise.all([churn('a', 5000, false), churn('b', 5000, false)]);
    expect([a.enoent, b.enoent]).toEqual([0, 0]);
    expect(readdirSync(root)).toEqual([]);
  }, 60_000);

  it('the same with a plain mkdir -p loses creates to the other\'s prune (what withDir is for)', async () => {
    const [a, b] = await Promise.all([churn('a', 10000, true), churn('b', 10000, true)]);
    expect(a.enoent + b.enoent).toBeGreaterThan(0);
  }, 60_000);
});
