#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// Compiles bpf/*.bpf.c into CO-RE objects under build/bpf/ with `clang -O2 -g -target bpf`.
// vmlinux.h comes from this kernel's BTF (bpftool) or, on a host without BTF or bpftool, from the
// committed fallback. An object is rebuilt only when a hash of its inputs changes.
//   --src DIR --out DIR      another source folder (test fixtures)
//   --fallback-vmlinux       build against the committed fallback (CI checks it still compiles)
//   --update-fallback        refresh the committed fallback from this kernel
//   --force                  rebuild everything
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, renameSync } from 'node:fs';
import { dirname, join, basename, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (/** @type {string} */ name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const srcDir = resolve(opt('--src') ?? join(root, 'bpf'));
const outDir = resolve(opt('--out') ?? join(root, 'build', 'bpf'));
const arch = { x64: 'x86', arm64: 'arm64' }[process.arch];
const fallback = join(root, 'bpf', 'include', 'fallback', `vmlinux-${process.arch}.h.gz`);
const BTF = '/sys/kernel/btf/vmlinux';

function die(/** @type {string} */ msg) {
  console.error(`build-bpf: ${msg}`);
  process.exit(1);
}

const has = (/** @type {string} */ cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

function findClang() {
  for (const c of [process.env.CLANG, 'clang', 'clang-19', 'clang-16', 'clang-14'])
    if (c && has(c)) return c;
  die('clang not found; install it with: apt-get install clang llvm (or run tools/bootstrap.sh)');
}

/** vmlinux.h for this build: from the running kernel's BTF when we can, else the committed copy. */
function vmlinuxHeader(/** @type {boolean} */ forceFallback) {
  const dir = join(root, 'build', forceFallback ? 'include-fallback' : 'include');
  const out = join(dir, 'vmlinux.h');
  mkdirSync(dir, { recursive: true });
  if (!forceFallback && existsSync(BTF) && has('bpftool')) {
    const text = execFileSync('bpftool', ['btf', 'dump', 'file', BTF, 'format', 'c'], { maxBuffer: 1 << 30 });
    if (!existsSync(out) || !readFileSync(out).equals(text)) writeFileSync(out, text);
    return { dir, origin: `${BTF} (bpftool)` };
  }
  if (!existsSync(fallback)) die(`no BTF at ${BTF} (or no bpftool) and no committed fallback for ${process.arch}`);
  const text = gunzipSync(readFileSync(fallback));
  if (!existsSync(out) || !readFileSync(out).equals(text)) writeFileSync(out, text);
  return { dir, origin: `${fallback} (committed fallback)` };
}

function headersUnder(/** @type {string} */ dir) {
  /** @type {string[]} */
  const out = [];
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...headersUnder(p));
    else if (e.name.endsWith('.h')) out.push(p);
  }
  return out.sort();
}

if (args.includes('--update-fallback')) {
  if (!existsSync(BTF)) die(`no BTF at ${BTF}`);
  const text = execFileSync('bpftool', ['btf', 'dump', 'file', BTF, 'format', 'c'], { maxBuffer: 1 << 30 });
  mkdirSync(dirname(fallback), { recursive: true });
  writeFileSync(fallback, gzipSync(text, { level: 9 }));
  console.log(`build-bpf: wrote ${fallback}`);
  process.exit(0);
}

const clang = findClang();
const clangVersion = execFileSync(clang, ['--version']).toString().split('\n')[0];
const vm = vmlinuxHeader(args.includes('--fallback-vmlinux'));
const includeDirs = [join(root, 'bpf', 'include'), vm.dir];
if (srcDir !== join(root, 'bpf')) includeDirs.unshift(srcDir);
const cflags = ['-O2', '-g', '-target', 'bpf', `-D__TARGET_ARCH_${arch}`, '-Wall', '-Werror', ...includeDirs.flatMap((d) => ['-I', d])];
const headers = [...headersUnder(join(root, 'bpf', 'include')), join(vm.dir, 'vmlinux.h')];
const headerHash = createHash('sha256');
for (const h of headers) headerHash.update(h).update(readFileSync(h));
const strip = ['llvm-strip', 'llvm-strip-19', 'llvm-strip-16', 'llvm-strip-14'].find(has);

mkdirSync(outDir, { recursive: true });
const sources = readdirSync(srcDir).filter((f) => f.endsWith('.bpf.c')).sort();
if (!sources.length) die(`no *.bpf.c in ${srcDir}`);
let built = 0;
for (const src of sources) {
  const obj = join(outDir, basename(src, '.c') + '.o');
  const stamp = `${obj}.hash`;
  const text = readFileSync(join(srcDir, src));
  const h = createHash('sha256').update(clangVersion).update(cflags.join(' ')).update(headerHash.copy().digest()).update(text).digest('hex');
  if (!args.includes('--force') && existsSync(obj) && existsSync(stamp) && readFileSync(stamp, 'utf8') === h) continue;
  const tmp = `${obj}.tmp`;
  const r = spawnSync(clang, [...cflags, '-c', join(srcDir, src), '-o', tmp], { stdio: 'inherit' });
  if (r.status !== 0) die(`clang failed on ${src}`);
  // DWARF is only for humans; the loader needs .BTF and .BTF.ext, which --strip-debug keeps.
  if (strip) execFileSync(strip, ['--strip-debug', tmp]);
  renameSync(tmp, obj);
  writeFileSync(stamp, h);
  built++;
}
console.log(`build-bpf: ${built} of ${sources.length} objects rebuilt in ${outDir} (vmlinux.h from ${vm.origin})`);
