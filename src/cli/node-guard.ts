// SPDX-License-Identifier: Apache-2.0
// Imported first by main.ts: ES modules evaluate in import order, so an unsupported Node stops here
// with one line instead of failing somewhere inside a dependency.
import { nodeProblem } from './node-check.js';

const problem = nodeProblem();
if (problem) {
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}
