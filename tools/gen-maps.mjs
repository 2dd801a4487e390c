#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// Turns every maps/<datapath>.json into the two files that must agree byte for byte:
//   bpf/include/gen/<datapath>.maps.h   structs, constants and map definitions for the kernel side
//   src/gen/<datapath>.ts               typed codecs, sizes and name constants for TypeScript
// maps/ is the only place a layout is written by hand. `--check` regenerates in memory and
// fails when a committed file differs (CI runs it), so a stale generated file cannot land.
import { readFileSync, writeFileSync, readdirSync, mkdirSync, existsSync } from 'node:fs';
import { join, dirname, basename } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** scalar types: size, C spelling, TS spelling, how to read and write it */
const SCALARS = {
  u8: { size: 1, c: '__u8', ts: 'number', rd: 'readUInt8', wr: 'writeUInt8', dv: 'Uint8', le: true },
  u16: { size: 2, c: '__u16', ts: 'number', rd: 'readUInt16LE', wr: 'writeUInt16LE', dv: 'Uint16', le: true },
  u32: { size: 4, c: '__u32', ts: 'number', rd: 'readUInt32LE', wr: 'writeUInt32LE', dv: 'Uint32', le: true },
  u64: { size: 8, c: '__u64', ts: 'bigint', rd: 'readBigUInt64LE', wr: 'writeBigUInt64LE', dv: 'BigUint64', le: true },
  s8: { size: 1, c: '__s8', ts: 'number', rd: 'readInt8', wr: 'writeInt8', dv: 'Int8', le: true },
  s16: { size: 2, c: '__s16', ts: 'number', rd: 'readInt16LE', wr: 'writeInt16LE', dv: 'Int16', le: true },
  s32: { size: 4, c: '__s32', ts: 'number', rd: 'readInt32LE', wr: 'writeInt32LE', dv: 'Int32', le: true },
  s64: { size: 8, c: '__s64', ts: 'bigint', rd: 'readBigInt64LE', wr: 'writeBigInt64LE', dv: 'BigInt64', le: true },
  // network byte order: TypeScript sees the natural number, the bytes are big-endian
  be16: { size: 2, c: '__be16', ts: 'number', rd: 'readUInt16BE', wr: 'writeUInt16BE', dv: 'Uint16', le: false },
  be32: { size: 4, c: '__be32', ts: 'number', rd: 'readUInt32BE', wr: 'writeUInt32BE', dv: 'Uint32', le: false },
};

/** map types we support: kernel constant, whether key/value are required */
const MAP_TYPES = {
  hash: 'BPF_MAP_TYPE_HASH',
  array: 'BPF_MAP_TYPE_ARRAY',
  percpu_hash: 'BPF_MAP_TYPE_PERCPU_HASH',
  percpu_array: 'BPF_MAP_TYPE_PERCPU_ARRAY',
  lru_hash: 'BPF_MAP_TYPE_LRU_HASH',
  lru_percpu_hash: 'BPF_MAP_TYPE_LRU_PERCPU_HASH',
  lpm_trie: 'BPF_MAP_TYPE_LPM_TRIE',
  ringbuf: 'BPF_MAP_TYPE_RINGBUF',
};
const MAP_FLAGS = { no_prealloc: 'BPF_F_NO_PREALLOC', rdonly_prog: 'BPF_F_RDONLY_PROG' };
const PROG_TYPES = ['xdp', 'tc', 'tracepoint', 'cgroup_sock_addr', 'syscall', 'tracing', 'lsm'];

/**
 * @param {string} msg
 * @returns {never}
 */
function fail(msg) {
  throw new Error(`gen-maps: ${msg}`);
}

/** "u8[16]" -> { scalar: 'u8', count: 16 } */
function parseType(/** @type {string} */ t, /** @type {string} */ where) {
  const m = /^([a-z0-9]+)(?:\[(\d+)\])?$/.exec(t);
  if (!m || !(m[1] in SCALARS)) fail(`${where}: unknown type '${t}' (use ${Object.keys(SCALARS).join(', ')}, optionally [N])`);
  const count = m[2] === undefined ? 0 : Number(m[2]);
  if (m[2] !== undefined && count < 1) fail(`${where}: array length must be at least 1`);
  return { scalar: /** @type {keyof SCALARS} */ (m[1]), count };
}

const isPad = (/** @type {string} */ n) => /^_?pad\d*$/.test(n);

/** Lay out a struct, rejecting implicit padding: every byte of a map key must be written by us. */
function layoutStruct(/** @type {string} */ name, /** @type {any} */ def) {
  if (!/^[a-z][a-z0-9_]*$/.test(name)) fail(`struct name '${name}' must be snake_case`);
  const fields = [];
  let off = 0;
  let maxAlign = 1;
  for (const f of def.fields ?? fail(`struct ${name}: missing fields`)) {
    const { scalar, count } = parseType(f.type, `${name}.${f.name}`);
    const s = SCALARS[scalar];
    if (off % s.size !== 0) fail(`struct ${name}: field ${f.name} at offset ${off} is not ${s.size}-aligned; add explicit padding`);
    maxAlign = Math.max(maxAlign, s.size);
    fields.push({ name: f.name, scalar, count, offset: off, size: s.size * Math.max(count, 1), doc: f.doc, pad: isPad(f.name) });
    off += s.size * Math.max(count, 1);
  }
  if (off % maxAlign !== 0) fail(`struct ${name}: size ${off} is not a multiple of ${maxAlign}; add explicit tail padding`);
  return { name, size: off, align: maxAlign, fields, doc: def.doc };
}

const pascal = (/** @type {string} */ s) => s.split('_').map((w) => w[0].toUpperCase() + w.slice(1)).join('');
const upper = (/** @type {string} */ s) => s.toUpperCase();

function load(/** @type {string} */ file) {
  const stem = basename(file, '.json');
  const j = JSON.parse(readFileSync(file, 'utf8'));
  const structs = new Map();
  for (const [n, d] of Object.entries(j.structs ?? {})) structs.set(n, layoutStruct(n, d));
  const typeRef = (/** @type {string} */ t, /** @type {string} */ where) => {
    if (structs.has(t)) return { kind: 'struct', struct: structs.get(t) };
    const { scalar, count } = parseType(t, where);
    if (count) fail(`${where}: use a struct for array keys or values`);
    return { kind: 'scalar', scalar, size: SCALARS[scalar].size };
  };
  const maps = [];
  for (const [n, d] of Object.entries(j.maps ?? {})) {
    if (n.length > 15) fail(`map name '${n}' is longer than 15 characters (the kernel truncates it)`);
    if (!(d.type in MAP_TYPES)) fail(`map ${n}: unknown type '${d.type}'`);
    if (!Number.isInteger(d.max_entries) || d.max_entries < 1) fail(`map ${n}: max_entries must be a positive integer`);
    const m = { name: n, type: d.type, maxEntries: d.max_entries, flags: d.flags ?? [], doc: d.doc, key: null, value: null, record: null };
    for (const fl of m.flags) if (!(fl in MAP_FLAGS)) fail(`map ${n}: unknown flag '${fl}'`);
    if (d.type === 'ringbuf') {
      if (d.max_entries & (d.max_entries - 1) || d.max_entries < 4096) fail(`map ${n}: a ring buffer size must be a power of two >= 4096`);
      if (d.record) m.record = typeRef(d.record, `${n}.record`);
    } else {
      m.key = typeRef(d.key ?? fail(`map ${n}: missing key`), `${n}.key`);
      m.value = typeRef(d.value ?? fail(`map ${n}: missing value`), `${n}.value`);
      if (d.type === 'lpm_trie' && !m.flags.includes('no_prealloc')) fail(`map ${n}: an lpm_trie needs flags ["no_prealloc"]`);
    }
    maps.push(m);
  }
  const programs = [];
  for (const [n, d] of Object.entries(j.programs ?? {})) {
    if (n.length > 15) fail(`program name '${n}' is longer than 15 characters`);
    if (!PROG_TYPES.includes(d.type)) fail(`program ${n}: unknown type '${d.type}'`);
    programs.push({ name: n, type: d.type, doc: d.doc });
  }
  const consts = Object.entries(j.consts ?? {}).map(([n, v]) => {
    if (!/^[A-Z][A-Z0-9_]*$/.test(n) || !Number.isInteger(v)) fail(`const ${n}: names are UPPER_CASE and values integers`);
    return { name: n, value: /** @type {number} */ (v) };
  });
  // consts and map constants share the TypeScript namespace (FLT_STATS the map vs a const)
  for (const c of consts) if (maps.some((m) => upper(m.name) === c.name)) fail(`const ${c.name} has the name of map ${c.name.toLowerCase()}'s constant; rename it`);
  // Tables: global arrays the program indexes directly (no helper call, no key on the stack),
  // each in its own .bss section, so libbpf makes it a one-element, mmapable array map named
  // ".bss.<name>" that user space writes in place.
  const tables = [];
  for (const [n, d] of Object.entries(j.tables ?? {})) {
    if (!/^[a-z][a-z0-9_]*$/.test(n) || n.length > 10) fail(`table ${n}: names are snake_case and at most 10 characters (".bss." + name is the 15-character map name)`);
    if (!Number.isInteger(d.entries) || d.entries < 1) fail(`table ${n}: entries must be a positive integer`);
    const entry = typeRef(d.entry ?? fail(`table ${n}: missing entry`), `${n}.entry`);
    const size = (entry.kind === 'struct' ? entry.struct.size : entry.size) * d.entries;
    // the kernel refuses an array value above KMALLOC_MAX_SIZE
    if (size > 4 << 20) fail(`table ${n}: ${size} bytes is more than the 4 MiB one map value may hold`);
    if (maps.some((m) => m.name === n) || consts.some((c) => c.name === upper(n))) fail(`table ${n} has the name of a map or const; rename it`);
    tables.push({ name: n, entries: d.entries, entry, size, doc: d.doc });
  }
  let rodata = null;
  if (j.rodata) {
    rodata = structs.get(j.rodata) ?? fail(`rodata: unknown struct '${j.rodata}'`);
  }
  return { stem, doc: j.doc, structs: [...structs.values()], maps, programs, consts, rodata, tables };
}

/**
 * Where generated files go and what they say about themselves. The project's own defaults; the
 * `ebpfnet-gen-maps` bin (tools/ebpfnet-gen-maps.mjs) writes a library user's layouts into their
 * folders, with TypeScript that imports the layout types from the package ('ebpfnet').
 * @typedef {{ cDir: string, tsDir: string, importFrom: string, by: string, mapsName: string }} GenOptions
 */
/** @type {GenOptions} */
export const PROJECT = { cDir: join('bpf', 'include', 'gen'), tsDir: join('src', 'gen'), importFrom: '../loader/layout.js', by: 'tools/gen-maps.mjs', mapsName: 'maps' };

function cHeader(/** @type {ReturnType<typeof load>} */ L, /** @type {GenOptions} */ g) {
  const o = [];
  // a doc string must not end the C comment it is written into
  for (const s of L.structs) {
    if (s.doc) s.doc = s.doc.replaceAll('*/', '* /');
    for (const f of s.fields) if (f.doc) f.doc = f.doc.replaceAll('*/', '* /');
  }
  for (const m of [...L.maps, ...L.tables]) if (m.doc) m.doc = m.doc.replaceAll('*/', '* /');
  o.push('/* SPDX-License-Identifier: GPL-2.0 */');
  o.push(`/* DO NOT EDIT: generated by ${g.by} from ${g.mapsName}/${L.stem}.json. */`);
  o.push(`#ifndef EBPFNET_GEN_${upper(L.stem)}_MAPS_H`, `#define EBPFNET_GEN_${upper(L.stem)}_MAPS_H`, '');
  for (const c of L.consts) o.push(`#define ${c.name} ${c.value}`);
  if (L.consts.length) o.push('');
  for (const s of L.structs) {
    if (s.doc) o.push(`/* ${s.doc} */`);
    o.push(`struct ${s.name} {`);
    for (const f of s.fields) {
      const arr = f.count ? `[${f.count}]` : '';
      o.push(`\t${SCALARS[f.scalar].c} ${f.name}${arr};${f.doc ? ` /* ${f.doc} */` : ''}`);
    }
    o.push('};');
    o.push(`_Static_assert(sizeof(struct ${s.name}) == ${s.size}, "struct ${s.name} layout drifted from maps/${L.stem}.json");`, '');
  }
  const cType = (/** @type {any} */ r) => (r.kind === 'struct' ? `struct ${r.struct.name}` : SCALARS[r.scalar].c);
  // a program that keys its own maps like these (a benchmark's) takes the types without the maps
  o.push('#ifndef EBPFNET_GEN_TYPES_ONLY', '');
  for (const m of L.maps) {
    o.push(`#define ${upper(m.name)}_MAX_ENTRIES ${m.maxEntries}`);
    if (m.doc) o.push(`/* ${m.doc} */`);
    o.push('struct {');
    o.push(`\t__uint(type, ${MAP_TYPES[m.type]});`);
    o.push(`\t__uint(max_entries, ${upper(m.name)}_MAX_ENTRIES);`);
    if (m.key) o.push(`\t__type(key, ${cType(m.key)});`, `\t__type(value, ${cType(m.value)});`);
    if (m.flags.length) o.push(`\t__uint(map_flags, ${m.flags.map((f) => MAP_FLAGS[f]).join(' | ')});`);
    o.push(`} ${m.name} SEC(".maps");`, '');
  }
  for (const t of L.tables) {
    o.push(`#define ${upper(t.name)}_ENTRIES ${t.entries}`);
    if (t.doc) o.push(`/* ${t.doc} */`);
    o.push(`${cType(t.entry)} ${t.name}[${upper(t.name)}_ENTRIES] SEC(".bss.${t.name}");`, '');
  }
  if (L.rodata) {
    o.push('/* Load-time configuration: written by user space before load, so the verifier sees constants. */');
    o.push(`const volatile struct ${L.rodata.name} ${L.rodata.name} = {};`, '');
  }
  o.push('#endif /* EBPFNET_GEN_TYPES_ONLY */', '', '#endif', '');
  return o.join('\n');
}

function tsModule(/** @type {ReturnType<typeof load>} */ L, /** @type {GenOptions} */ g) {
  const o = [];
  o.push('// SPDX-License-Identifier: Apache-2.0');
  o.push(`// DO NOT EDIT: generated by ${g.by} from ${g.mapsName}/${L.stem}.json.`);
  o.push(`import type { Codec, MapLayout, ProgramLayout, StructLayout${L.tables.length ? ', TableLayout' : ''} } from '${g.importFrom}';`, '');
  for (const c of L.consts) o.push(`export const ${c.name} = ${c.value};`);
  if (L.consts.length) o.push('');
  for (const s of L.structs) {
    const T = pascal(s.name);
    const tsType = (/** @type {any} */ f) => {
      if (f.count) return f.scalar === 'u8' ? 'Uint8Array' : `${SCALARS[f.scalar].ts}[]`;
      return SCALARS[f.scalar].ts;
    };
    if (s.doc) o.push(`/** ${s.doc} */`);
    o.push(`export interface ${T} {`);
    for (const f of s.fields) if (!f.pad) o.push(`  ${f.name}: ${tsType(f)};${f.doc ? ` // ${f.doc}` : ''}`);
    o.push('}');
    const enc = [];
    const dec = [];
    /** statements before decode's return */
    const pre = [];
    // The same through a DataView: BpfMap keeps one over each scratch buffer, and 64-bit fields
    // go through DataView five times faster than through Buffer's BigInt methods.
    const encV = [];
    const decV = [];
    for (const f of s.fields) {
      const S = SCALARS[f.scalar];
      // one-byte accessors take no endianness argument
      const le = S.le && S.size > 1 ? ', true' : '';
      if (f.pad) {
        for (let i = 0; i < f.size; i++) encV.push(`    d.setUint8(o + ${f.offset + i}, 0);`);
      } else if (f.count && f.scalar === 'u8') {
        encV.push(`    for (let i = 0; i < ${f.count}; i++) d.setUint8(o + ${f.offset} + i, v.${f.name}[i] ?? 0);`);
        decV.push(`      ${f.name}: new Uint8Array(d.buffer.slice(d.byteOffset + o + ${f.offset}, d.byteOffset + o + ${f.offset + f.size})),`);
      } else if (f.count) {
        encV.push(`    for (let i = 0; i < ${f.count}; i++) d.set${S.dv}(o + ${f.offset} + i * ${S.size}, v.${f.name}[i] ?? ${S.ts === 'bigint' ? '0n' : '0'}${le});`);
        decV.push(`      ${f.name}: Array.from({ length: ${f.count} }, (_, i) => d.get${S.dv}(o + ${f.offset} + i * ${S.size}${le})),`);
      } else {
        encV.push(`    d.set${S.dv}(o + ${f.offset}, v.${f.name}${le});`);
        decV.push(`      ${f.name}: d.get${S.dv}(o + ${f.offset}${le}),`);
      }
    }
    for (const f of s.fields) {
      const S = SCALARS[f.scalar];
      if (f.pad) {
        // byte stores beat Buffer.fill for a few bytes: fill crosses into C++ on every call
        if (f.size <= 8) for (let i = 0; i < f.size; i++) enc.push(`    b[o + ${f.offset + i}] = 0;`);
        else enc.push(`    b.fill(0, o + ${f.offset}, o + ${f.offset + f.size});`);
        continue;
      }
      if (f.count && f.scalar === 'u8') {
        // the usual case, exactly `count` bytes, is one copy: no zero fill, no subarray object
        enc.push(`    if (v.${f.name}.length === ${f.count}) b.set(v.${f.name}, o + ${f.offset});`);
        enc.push(`    else {`, `      b.fill(0, o + ${f.offset}, o + ${f.offset + f.size});`, `      b.set(v.${f.name}.subarray(0, ${f.count}), o + ${f.offset});`, '    }');
        // a plain Uint8Array copy (a Buffer's slice would be a Buffer sharing the map's scratch
        // memory), copied through a view: Uint8Array.from(b.subarray()) iterates byte by byte and
        // makes a Buffer on the way, a tenth of a listing of 10,000 services
        pre.push(`    const ${f.name}$ = new Uint8Array(${f.size});`, `    ${f.name}$.set(new Uint8Array(b.buffer, b.byteOffset + o + ${f.offset}, ${f.size}));`);
        dec.push(`      ${f.name}: ${f.name}$,`);
      } else if (f.count) {
        enc.push(`    for (let i = 0; i < ${f.count}; i++) b.${S.wr}(v.${f.name}[i] ?? ${S.ts === 'bigint' ? '0n' : '0'}, o + ${f.offset} + i * ${S.size});`);
        dec.push(`      ${f.name}: Array.from({ length: ${f.count} }, (_, i) => b.${S.rd}(o + ${f.offset} + i * ${S.size})),`);
      } else {
        enc.push(`    b.${S.wr}(v.${f.name}, o + ${f.offset});`);
        dec.push(`      ${f.name}: b.${S.rd}(o + ${f.offset}),`);
      }
    }
    o.push(`export const ${T}: Codec<${T}> & StructLayout = {`);
    o.push(`  name: '${s.name}',`);
    o.push(`  size: ${s.size},`);
    o.push(`  fields: [${s.fields.map((f) => `{ name: '${f.name}', offset: ${f.offset}, size: ${f.size} }`).join(', ')}],`);
    o.push(`  encode(v: ${T}, b: Buffer = Buffer.alloc(${s.size}), o = 0): Buffer {`);
    o.push(...enc, '    return b;', '  },');
    o.push(`  decode(b: Buffer, o = 0): ${T} {`);
    o.push(...pre, '    return {', ...dec, '    };', '  },');
    o.push(`  encodeView(v: ${T}, d: DataView, o = 0): void {`);
    o.push(...encV, '  },');
    o.push(`  decodeView(d: DataView, o = 0): ${T} {`);
    o.push('    return {', ...decV, '    };', '  },');
    o.push('};', '');
  }
  const codecOf = (/** @type {any} */ r) => (r.kind === 'struct' ? pascal(r.struct.name) : `scalar.${r.scalar}`);
  const needsScalar = L.maps.some((m) => (m.key && m.key.kind === 'scalar') || (m.value && m.value.kind === 'scalar')) || L.tables.some((t) => t.entry.kind === 'scalar');
  if (needsScalar) o.splice(3, 0, `import { scalar } from '${g.importFrom}';`);
  for (const m of L.maps) {
    const K = m.key ? codecOf(m.key) : 'null';
    const V = m.value ? codecOf(m.value) : 'null';
    const R = m.record ? codecOf(m.record) : 'null';
    if (m.doc) o.push(`/** ${m.doc} */`);
    o.push(`export const ${upper(m.name)} = {`);
    o.push(`  name: '${m.name}',`, `  type: '${m.type}',`, `  maxEntries: ${m.maxEntries},`);
    o.push(`  key: ${K},`, `  value: ${V},`, `  record: ${R},`);
    o.push(`} as const satisfies MapLayout;`, '');
  }
  for (const t of L.tables) {
    if (t.doc) o.push(`/** ${t.doc} */`);
    o.push(`export const ${upper(t.name)} = {`);
    o.push(`  name: '.bss.${t.name}',`, `  variable: '${t.name}',`, `  entries: ${t.entries},`, `  entry: ${codecOf(t.entry)},`);
    o.push(`} as const satisfies TableLayout;`, '');
  }
  for (const p of L.programs) {
    o.push(`export const PROG_${upper(p.name)} = { name: '${p.name}', type: '${p.type}' } as const satisfies ProgramLayout;`);
  }
  if (L.programs.length) o.push('');
  if (L.rodata) o.push(`/** The \`const volatile\` configuration written before load. */`, `export const RODATA = { name: '${L.rodata.name}', codec: ${pascal(L.rodata.name)} } as const;`, '');
  o.push(`/** Everything this layout declares, for the BTF drift test and the verifier harness. */`);
  o.push(`export const LAYOUT = {`);
  o.push(`  object: '${L.stem}',`);
  o.push(`  maps: [${L.maps.map((m) => upper(m.name)).join(', ')}],`);
  o.push(`  tables: [${L.tables.map((t) => upper(t.name)).join(', ')}],`);
  o.push(`  programs: [${L.programs.map((p) => `PROG_${upper(p.name)}`).join(', ')}],`);
  o.push(`  structs: [${L.structs.map((s) => pascal(s.name)).join(', ')}],`);
  o.push(`  rodata: ${L.rodata ? `'${L.rodata.name}'` : 'null'},`);
  o.push('} as const;', '');
  return o.join('\n');
}

/** Every generated file, by path relative to the output base, for each maps/<stem>.json. */
export function generate(mapsDir = join(root, 'maps'), /** @type {GenOptions} */ g = PROJECT) {
  /** @type {Map<string, string>} */
  const out = new Map();
  const files = existsSync(mapsDir) ? readdirSync(mapsDir).filter((f) => f.endsWith('.json')).sort() : fail(`no folder ${mapsDir}; it holds the layouts (<name>.json)`);
  if (!files.length) fail(`no layouts (*.json) in ${mapsDir}`);
  for (const f of files) {
    const L = load(join(mapsDir, f));
    out.set(join(g.cDir, `${L.stem}.maps.h`), cHeader(L, g));
    out.set(join(g.tsDir, `${L.stem}.ts`), tsModule(L, g));
  }
  return out;
}

/**
 * Writes (or with `check`, compares) the generated files under `base`. Returns the exit status:
 * 0 up to date or written, 1 stale under `check`, 2 a bad layout (the message is printed).
 */
export function run(/** @type {{ mapsDir: string, base: string, check: boolean, regen: string }} */ o, /** @type {GenOptions} */ g = PROJECT) {
  let stale = 0;
  try {
    for (const [rel, text] of generate(o.mapsDir, g)) {
      const p = join(o.base, rel);
      const old = existsSync(p) ? readFileSync(p, 'utf8') : null;
      if (old === text) continue;
      if (o.check) {
        console.error(`gen-maps: ${rel} is stale; run: ${o.regen}`);
        stale++;
      } else {
        mkdirSync(dirname(p), { recursive: true });
        writeFileSync(p, text);
        console.log(`gen-maps: wrote ${rel}`);
      }
    }
  } catch (e) {
    console.error(/** @type {Error} */ (e).message);
    return 2;
  }
  return stale ? 1 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.exit(run({ mapsDir: join(root, 'maps'), base: root, check: process.argv.includes('--check'), regen: 'npm run gen' }));
}
