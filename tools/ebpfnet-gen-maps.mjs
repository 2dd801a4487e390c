#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The map generator for programs of a library user's own (the `ebpfnet-gen-maps` bin): their
// maps/<x>.json becomes the C header their bpf/<x>.bpf.c includes and the TypeScript codecs their
// loader imports, typed, with the layout types taken from the 'ebpfnet' package. The same
// generator as the project's own layouts (tools/gen-maps.mjs), so one file format and one set of rules.
import { relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { run } from './gen-maps.mjs';

const USAGE = 'usage: ebpfnet-gen-maps [--maps maps] [--c-out bpf/gen] [--ts-out src/gen] [--import ebpfnet] [--check]';

function options() {
  return parseArgs({
    options: {
      maps: { type: 'string', default: 'maps' },
      'c-out': { type: 'string', default: 'bpf/gen' },
      'ts-out': { type: 'string', default: 'src/gen' },
      import: { type: 'string', default: 'ebpfnet' },
      check: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  }).values;
}
let v;
try {
  v = options();
} catch (e) {
  console.error(`ebpfnet-gen-maps: ${/** @type {Error} */ (e).message.split('\n')[0].replace(/\.$/, '').toLowerCase()}; ${USAGE}`);
  process.exit(2);
}
if (v.help) {
  console.log(`${USAGE}
Writes <c-out>/<x>.maps.h and <ts-out>/<x>.ts for every <maps>/<x>.json; --check only compares.`);
  process.exit(0);
}
const cwd = process.cwd();
const rel = (/** @type {string} */ p) => relative(cwd, resolve(cwd, p)) || '.';
const args = `--maps ${rel(v.maps)} --c-out ${rel(v['c-out'])} --ts-out ${rel(v['ts-out'])}`;
process.exit(
  run(
    { mapsDir: resolve(cwd, v.maps), base: cwd, check: v.check, regen: `ebpfnet-gen-maps ${args}` },
    { cDir: rel(v['c-out']), tsDir: rel(v['ts-out']), importFrom: v.import, by: `ebpfnet-gen-maps`, mapsName: rel(v.maps) },
  ),
);
