#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// Entry point: expected errors print one line and set the exit code (2 for usage, 1 otherwise).
import './node-guard.js';
import { handleError } from './present.js';
import { buildProgram } from './program.js';
import { onMount } from '../loader/system.js';

// whatever a command mounts on its way (bpffs, tracefs, cgroup v2) is said once, on stderr
onMount((m) => process.stderr.write(`mounted ${m.what} at ${m.path}\n`));

// `ebpfnet ... | head` closes the pipe early: that ends the command quietly, like any Unix tool.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

buildProgram()
  .parseAsync(process.argv)
  .catch(handleError);
