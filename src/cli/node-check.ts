// SPDX-License-Identifier: Apache-2.0
// Which Node.js ebpfnet runs on. package.json's `engines.node` is the one statement of it: the CLI
// refuses an older Node with one line before anything else loads, and tools/bootstrap.sh asks the
// same question (`node dist/cli/node-guard.js`) to decide whether a checkout needs its project-local
// Node (tools/node/).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageDir } from '../loader/paths.js';

type Version = [number, number, number];

const parse = (v: string): Version | null => {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
};

const cmp = (a: Version, b: Version): number => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/**
 * Whether `version` satisfies `range`, for the forms engines fields use: `>=A.B.C`, `^A.B.C`,
 * joined by `||`. Anything else in the range is a mistake in package.json, so it throws.
 */
export function satisfies(version: string, range: string): boolean {
  const v = parse(version);
  if (!v) throw new Error(`node version: cannot read "${version}"`);
  return range.split('||').some((alt) => {
    const m = /^\s*(>=|\^)\s*(\d+\.\d+\.\d+)\s*$/.exec(alt);
    if (!m) throw new Error(`package.json engines.node: cannot read "${alt.trim()}" (use >=A.B.C or ^A.B.C, joined by ||)`);
    const floor = parse(m[2]) as Version;
    if (cmp(v, floor) < 0) return false;
    return m[1] === '>=' || v[0] === floor[0];
  });
}

export function enginesRange(): string {
  const pkg = JSON.parse(readFileSync(join(packageDir(), 'package.json'), 'utf8')) as { engines?: { node?: string } };
  if (!pkg.engines?.node) throw new Error('package.json has no engines.node');
  return pkg.engines.node;
}

/** One line saying what is wrong with this Node and how to get a good one, or null when it is fine. */
export function nodeProblem(version: string = process.versions.node, range: string = enginesRange()): string | null {
  if (satisfies(version, range)) return null;
  return (
    `ebpfnet needs Node.js ${range.replace(/\s*\|\|\s*/g, ' or ')} (this is ${version}, which is not supported): ` +
    'in a checkout, run npm run setup (it installs a project-local Node for npm scripts and npx, leaving the system one alone); ' +
    'elsewhere install Node.js 22 or 24'
  );
}

