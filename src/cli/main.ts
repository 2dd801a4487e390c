#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// Entry point. Static imports are all compiled before any module runs, so this file imports only
// node:module: the compile cache goes on first, then the Node check (node-guard.js stops an
// unsupported Node with one line), then the command.
import * as nodeModule from 'node:module';

// V8's compiled code of ebpfnet and its dependencies, kept between runs (Node >= 22.1; in
// NODE_COMPILE_CACHE or the temporary directory, and off with NODE_DISABLE_COMPILE_CACHE=1): most of
// a short command's start-up is compiling JavaScript.
nodeModule.enableCompileCache?.();
await import('./node-guard.js');
const { launch } = await import('./launch.js');
await launch(process.argv);
