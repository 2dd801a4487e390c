// SPDX-License-Identifier: Apache-2.0
// Which Node ebpfnet accepts: package.json's engines.node, read by the CLI before anything loads and
// by tools/bootstrap.sh to decide on a project-local Node.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { delimiter } from 'node:path';
import { describe, expect, it } from 'vitest';
import { enginesRange, nodeProblem, satisfies } from '../../src/cli/node-check.js';

const range = '^22.19.0 || >=24.0.0';

describe('supported Node', () => {
  it('engines.node names the supported LTS lines, 22 and 24', () => {
    expect(enginesRange()).toBe(range);
    const pkg = JSON.parse(readFileSync('tools/node/package.json', 'utf8')) as { optionalDependencies: Record<string, string> };
    for (const v of Object.values(pkg.optionalDependencies)) expect(satisfies(v, range)).toBe(true);
  });

  it('reads ^ and >= ranges joined by ||', () => {
    expect(satisfies('20.20.2', range)).toBe(false);
    expect(satisfies('22.18.9', range)).toBe(false);
    expect(satisfies('22.19.0', range)).toBe(true);
    expect(satisfies('23.11.0', range)).toBe(false);
    expect(satisfies('24.0.0', range)).toBe(true);
    expect(satisfies('v26.1.0', range)).toBe(true);
    expect(() => satisfies('24.0.0', '~24.1.0')).toThrow(/cannot read "~24.1.0"/);
  });

  it('an old Node gets one line that says what to do', () => {
    expect(nodeProblem('20.20.2', range)).toMatch(/^ebpfnet needs Node.js \^22.19.0 or >=24.0.0 \(this is 20.20.2.*run npm run setup.*install Node.js 22 or 24$/);
    expect(nodeProblem('24.22.3', range)).toBeNull();
    expect(nodeProblem(process.versions.node)).toBeNull(); // the suite itself runs on a supported Node
  });

  it("the CLI on the machine's own Node: refuses it in one line when too old, runs when supported", () => {
    // The system's node, as a user without the project-local one would run `dist/cli/main.js`.
    const path = (process.env.PATH ?? '').split(delimiter).filter((d) => !d.endsWith('/node_modules/.bin')).join(delimiter);
    const sys = spawnSync('sh', ['-c', 'command -v node'], { env: { ...process.env, PATH: path }, encoding: 'utf8' }).stdout.trim();
    expect(sys, 'a node on PATH besides the project-local one').not.toBe('');
    const version = execFileSync(sys, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim();
    const r = spawnSync(sys, ['dist/cli/main.js', '--version'], { encoding: 'utf8' });
    if (satisfies(version, range)) {
      expect(r.status).toBe(0);
      expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    } else {
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toEqual([nodeProblem(version, range)]);
    }
  });
});
