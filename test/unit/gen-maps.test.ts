// SPDX-License-Identifier: Apache-2.0
// The layout generator: committed output is fresh, and layouts C and TypeScript could disagree on
// are refused.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain JavaScript tool without declarations
import { generate } from '../../tools/gen-maps.mjs';
import { packageDir } from '../../src/loader/paths.js';

function genFrom(layout: unknown): Map<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'ebpfnet-maps-'));
  try {
    writeFileSync(join(dir, 'x.json'), JSON.stringify(layout));
    return generate(dir);
  } finally {
    rmSync(dir, { recursive: true });
  }
}

const struct = (fields: Array<[string, string]>) => ({ fields: fields.map(([name, type]) => ({ name, type })) });

describe('gen-maps', () => {
  it('the committed generated files are what maps/ produces (run npm run gen)', () => {
    for (const [rel, text] of generate() as Map<string, string>) {
      expect(readFileSync(join(packageDir(), rel), 'utf8'), rel).toBe(text);
    }
  });

  it('emits a table as a global array in its own .bss section, and its TypeScript layout', () => {
    const out = genFrom({ structs: { v: struct([['a', 'u32'], ['b', 'u32']]) }, tables: { tbl: { entry: 'v', entries: 1024 }, words: { entry: 'u32', entries: 16 } } });
    const h = out.get(join('bpf', 'include', 'gen', 'x.maps.h'))!;
    const ts = out.get(join('src', 'gen', 'x.ts'))!;
    expect(h).toContain('#define TBL_ENTRIES 1024');
    expect(h).toContain('struct v tbl[TBL_ENTRIES] SEC(".bss.tbl");');
    expect(h).toContain('__u32 words[WORDS_ENTRIES] SEC(".bss.words");');
    expect(ts).toMatch(/export const TBL = \{\n  name: '\.bss\.tbl',\n  variable: 'tbl',\n  entries: 1024,\n  entry: V,\n\} as const satisfies TableLayout;/);
    expect(ts).toContain('tables: [TBL, WORDS]');
  });

  it.each([
    [{ tables: { much_too_long: { entry: 'u32', entries: 1 } } }, /at most 10 characters/],
    [{ tables: { t: { entry: 'u32', entries: 0 } } }, /entries must be a positive integer/],
    [{ tables: { t: { entry: 'u64', entries: 1 << 20 } } }, /more than the 4 MiB/],
    [{ maps: { t: { type: 'array', key: 'u32', value: 'u32', max_entries: 1 } }, tables: { t: { entry: 'u32', entries: 1 } } }, /name of a map/],
  ])('refuses a bad table %#', (layout, msg) => {
    expect(() => genFrom(layout)).toThrow(msg);
  });

  it('emits the same struct for C and TypeScript, with a size assertion and DO-NOT-EDIT headers', () => {
    const out = genFrom({ structs: { k: struct([['a', 'u32'], ['port', 'be16'], ['pad', 'u16']]) }, maps: { m: { type: 'hash', key: 'k', value: 'u64', max_entries: 8 } } });
    const h = out.get(join('bpf', 'include', 'gen', 'x.maps.h'))!;
    const ts = out.get(join('src', 'gen', 'x.ts'))!;
    expect(h).toContain('DO NOT EDIT');
    expect(h).toMatch(/struct k \{\n\t__u32 a;\n\t__be16 port;\n\t__u16 pad;\n\};/);
    expect(h).toContain('_Static_assert(sizeof(struct k) == 8');
    expect(h).toContain('__uint(max_entries, M_MAX_ENTRIES)');
    expect(ts).toContain('DO NOT EDIT');
    expect(ts).toContain('b.writeUInt16BE(v.port, o + 4)');
    expect(ts).not.toMatch(/pad: number/);
  });

  it('EBPFNET_GEN_TYPES_ONLY takes the structs and constants without the maps, tables and rodata', () => {
    const out = genFrom({ consts: { X_ONE: 1 }, structs: { k: struct([['a', 'u32'], ['b', 'u32']]) }, maps: { m: { type: 'hash', key: 'k', value: 'u64', max_entries: 8 } }, tables: { t: { entry: 'k', entries: 4 } } });
    const dir = mkdtempSync(join(tmpdir(), 'ebpfnet-maps-'));
    try {
      writeFileSync(join(dir, 'x.maps.h'), out.get(join('bpf', 'include', 'gen', 'x.maps.h'))!);
      // a program using a constant after the include: it must expand in both modes
      writeFileSync(join(dir, 'use.c'), '#include "x.maps.h"\nint one = X_ONE;\n');
      // the preprocessor alone: what a program that includes the header this way compiles
      const pre = (...d: string[]): string => execFileSync('clang', ['-E', '-P', '-x', 'c', ...d, join(dir, 'use.c')]).toString();
      const types = pre('-DEBPFNET_GEN_TYPES_ONLY');
      expect(types).toMatch(/struct k \{/);
      expect(types).toContain('int one = 1;');
      expect(types).not.toContain('SEC(');
      const full = pre();
      expect(full).toContain('} m SEC(".maps");');
      expect(full).toContain('t[4] SEC(".bss.t");');
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it.each([
    ['implicit padding inside a struct', { structs: { k: struct([['a', 'u8'], ['b', 'u32']]) } }, /not 4-aligned; add explicit padding/],
    ['implicit tail padding', { structs: { k: struct([['a', 'u64'], ['b', 'u32']]) } }, /not a multiple of 8; add explicit tail padding/],
    ['an unknown field type', { structs: { k: struct([['a', 'bool']]) } }, /unknown type 'bool'/],
    ['a map name over 15 characters', { maps: { a_very_long_map_name: { type: 'array', key: 'u32', value: 'u32', max_entries: 1 } } }, /longer than 15/],
    ['an LPM trie without no_prealloc', { maps: { t: { type: 'lpm_trie', key: 'u64', value: 'u32', max_entries: 4 } } }, /needs flags \["no_prealloc"\]/],
    ['a ring buffer size that is not a power of two', { maps: { r: { type: 'ringbuf', max_entries: 5000 } } }, /power of two/],
    ['an unknown map type', { maps: { r: { type: 'queue', key: 'u32', value: 'u32', max_entries: 4 } } }, /unknown type 'queue'/],
    ['a lower-case constant', { consts: { drop: 1 } }, /UPPER_CASE/],
  ])('refuses %s', (_what, layout, msg) => {
    expect(() => genFrom(layout)).toThrow(msg);
  });
});
