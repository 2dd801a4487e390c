// SPDX-License-Identifier: Apache-2.0
// maps/ against what clang compiled: each map's type, sizes and entries, each struct's size and
// field offsets read back from the object's BTF, each program's type, and the rodata variable.
// A drift between the C side and the TypeScript side fails here instead of corrupting a map.
import { expect, it } from 'vitest';
import { MAP_TYPE_BY_KIND, PROG_TYPE_BY_KIND } from '../../src/loader/kinds.js';
import { ObjectSpec, objectPath } from '../../src/loader/index.js';
import { describeKernel } from '../helpers/kernel.js';
import { layouts } from '../helpers/layouts.js';

describeKernel('maps/ agrees with the compiled objects (BTF)', () => {
  it('finds at least one layout', () => {
    expect(layouts().length).toBeGreaterThan(0);
  });

  for (const L of layouts()) {
    it(`${L.object}: maps, tables, structs, programs and rodata match`, () => {
      const spec = ObjectSpec.open(objectPath(L.object));
      try {
        const btf = spec.btf();
        const maps = new Map(spec.maps().map((m) => [m.name, m]));
        for (const m of L.maps) {
          const k = maps.get(m.name);
          expect(k, `map ${m.name} in the object`).toBeDefined();
          expect(k!.type, `${m.name} type`).toBe(MAP_TYPE_BY_KIND[m.type]);
          expect(k!.maxEntries, `${m.name} max_entries`).toBe(m.maxEntries);
          if (m.type === 'ringbuf') continue;
          expect(k!.keySize, `${m.name} key size`).toBe(m.key!.size);
          expect(k!.valueSize, `${m.name} value size`).toBe(m.value!.size);
          for (const [codec, id] of [
            [m.key, k!.keyTypeId],
            [m.value, k!.valueTypeId],
          ] as const) {
            const s = btf.struct(id);
            const want = codec as unknown as { name?: string; fields?: unknown };
            if (!want.fields) {
              expect(s, `${m.name}: a scalar in maps/ is a scalar in C`).toBeNull();
              continue;
            }
            expect(s, `${m.name}: struct ${want.name}`).not.toBeNull();
            expect({ name: s!.name, size: s!.size, fields: s!.fields }).toEqual({ name: want.name, size: codec!.size, fields: want.fields });
          }
        }
        for (const t of L.tables) {
          // a table is a global array alone in its .bss section: libbpf's one-element map holds it
          const k = maps.get(t.name);
          expect(k, `table ${t.name} in the object`).toBeDefined();
          expect([k!.maxEntries, k!.valueSize], `${t.name}: one value of entries x entry size`).toEqual([1, t.entries * t.entry.size]);
          const v = btf.sectionVars(t.name).find((x) => x.name === t.variable);
          expect(v?.size, `variable ${t.variable}`).toBe(t.entries * t.entry.size);
        }
        const progs = new Map(spec.programs().map((p) => [p.name, p]));
        for (const p of L.programs) {
          expect(progs.get(p.name)?.type, `program ${p.name}`).toBe(PROG_TYPE_BY_KIND[p.type]);
        }
        if (L.rodata) {
          const v = btf.sectionVars('.rodata').find((x) => x.name === L.rodata);
          const s = L.structs.find((x) => x.name === L.rodata)!;
          expect(v?.size, `rodata ${L.rodata}`).toBe(s.size);
          expect(btf.struct(v!.type)!.fields).toEqual(s.fields);
        }
      } finally {
        spec.close();
      }
    });
  }
});
