// SPDX-License-Identifier: Apache-2.0
// Where the compiled BPF objects are: build/bpf/ beside dist/ in a checkout and in the npm package.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function bpfObjectDir(): string {
  return process.env.EBPFNET_BPF_DIR ?? join(packageRoot, 'build', 'bpf');
}

/** build/bpf/<stem>.bpf.o for a layout's object name (`filter`, `selftest`). */
export function objectPath(stem: string): string {
  return join(bpfObjectDir(), `${stem}.bpf.o`);
}

export const packageDir = (): string => packageRoot;
export const builtObjects = (): boolean => existsSync(bpfObjectDir());
