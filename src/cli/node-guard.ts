// SPDX-License-Identifier: Apache-2.0
// Imported first by main.ts: ES modules evaluate in import order, so an unsupported Node stops here
// with one line instead of failing somewhere inside a dependency. Run on its own
// (`node dist/cli/node-guard.js`, as tools/bootstrap.sh does) it answers whether this Node will do.
import { nodeProblem } from './node-check.js';

const problem = nodeProblem();
if (problem) {
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}
