// SPDX-License-Identifier: Apache-2.0
// A run of the CLI, once main.ts has checked the Node version: expected errors print one line and
// set the exit code (2 for usage, 1 otherwise).
import { onMount } from '../loader/system.js';
import { programFor } from './base.js';
import { handleError } from './present.js';

export async function launch(argv: string[]): Promise<void> {
  // whatever a command mounts on its way (bpffs, tracefs, cgroup v2) is said once, on stderr
  onMount((m) => process.stderr.write(`mounted ${m.what} at ${m.path}\n`));

  // `ebpfnet ... | head` closes the pipe early: that ends the command quietly, like any Unix tool.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });

  try {
    await (await programFor(argv)).parseAsync(argv);
  } catch (e) {
    handleError(e);
  }
}
