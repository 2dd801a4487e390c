#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// Entry point: expected errors print one line and set the exit code (2 for usage, 1 otherwise).
import { handleError } from './present.js';
import { buildProgram } from './program.js';

buildProgram()
  .parseAsync(process.argv)
  .catch(handleError);
