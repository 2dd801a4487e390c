// SPDX-License-Identifier: Apache-2.0
// The library's API reference builds, and builds clean: TypeDoc (typedoc.json: treatWarningsAsErrors)
// fails when a public signature of src/lib.ts names a type the package does not export, or a doc
// comment links to nothing. Nothing is written (--emit none).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { packageDir } from '../../src/loader/paths.js';

it('npm run docs: the reference of the public surface has no dangling types or links', () => {
  const r = spawnSync(process.execPath, [join(packageDir(), 'node_modules', 'typedoc', 'bin', 'typedoc'), '--emit', 'none'], {
    cwd: packageDir(),
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, NO_COLOR: '1' },
  });
  expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
  expect(`${r.stdout}${r.stderr}`).not.toMatch(/\[warning\]|\[error\]/);
}, 120_000);
