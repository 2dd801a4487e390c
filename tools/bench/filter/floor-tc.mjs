#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// The tc floor contender of the veth part (veth.mjs), run inside the receiver namespace: attaches
// floor_tc (floor.bpf.c) to IFACE's tcx ingress, prints "attached", and on SIGINT prints
// "dropped N" (its per-CPU counter, summed) and detaches.
//   node floor-tc.mjs IFACE
import { join } from 'node:path';
import { dist, root } from './util.mjs';

const L = await dist('loader/index.js');
const obj = L.ObjectSpec.open(join(root, 'build', 'bench', 'floor.bpf.o')).load();
const link = obj.program('floor_tc').attachTcx(process.argv[2]);
const drops = obj.map({ name: 'floor_drops', type: 'percpu_array', maxEntries: 1, key: L.scalar.u32, value: L.scalar.u64, record: null });
console.log('attached');
// the loader's exit guard owns SIGINT: its shutdown hooks run, then it closes what is still open
L.onShutdown(() => {
  console.log(`dropped ${drops.lookup(0) ?? 0n}`);
  link.close();
  obj.close();
});
setInterval(() => {}, 1 << 30);
