// SPDX-License-Identifier: Apache-2.0
// ObjectSpec: a BPF ELF object opened but not loaded. Reading it is deterministic and needs no
// privilege: programs, maps, BTF. Configure it (const volatile globals, map sizes, pinned maps to
// reuse), then load() it into the kernel and get a BpfObject with live programs and maps.
import { existsSync } from 'node:fs';
import { EbpfnetError, VerifierError, errnoName, kernelError, parseVerifierStats, type VerifierStats } from '../errors.js';
import { libbpf, libbpfMark, libbpfMessagesSince, view } from '../libbpf/index.js';
import { BtfSpec } from './btf.js';
import { checkPtr } from './fd.js';
import { track, untrack, type Closable } from './guard.js';
import { progTypeName } from './kinds.js';
import type { Codec, MapLayout, ProgramLayout, TableLayout } from './layout.js';
import { BpfMap } from './map.js';
import { BpfProgram } from './program.js';
import { BpfTable } from './table.js';

export interface ProgramSpec {
  name: string;
  section: string;
  type: number;
  typeName: string;
  /** BPF instructions in the ELF, before the verifier */
  insns: number;
}

export interface MapSpec {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  keyTypeId: number;
  valueTypeId: number;
}

/** BPF_LOG_LEVEL1 (the full trace) and BPF_LOG_STATS (just the counts). */
const LOG_FULL = 1;
const LOG_STATS = 4;

export interface LoadOptions {
  /** load only these programs (the verifier harness loads one at a time) */
  only?: string[];
  /** bytes of verifier log per program for the full log after a rejection; grown on ENOSPC */
  logSize?: number;
}

type Step = (spec: ObjectSpec) => void;

/** A BPF ELF object opened, not loaded: inspect and configure it, then load() it. */
export class ObjectSpec implements Closable {
  readonly path: string;
  private obj: unknown;
  /** configuration steps, replayed on a fresh open when a failed load is retried for its log */
  private readonly steps: Step[] = [];

  private constructor(path: string, obj: unknown) {
    this.path = path;
    this.obj = obj;
    track(this);
  }

  /** Opens a compiled object (`clang -g -target bpf`); no privilege needed until load(). */
  static open(path: string): ObjectSpec {
    if (!existsSync(path)) {
      throw new EbpfnetError('EBPFNET_NOT_FOUND', `open ${path}`, 'no such BPF object', { hint: 'build it: npm run build' });
    }
    const mark = libbpfMark();
    const obj = libbpf().bpf_object__open_file(path, null);
    return new ObjectSpec(path, checkPtr(`open ${path}`, obj, mark));
  }

  private get handle(): unknown {
    if (!this.obj) throw new EbpfnetError('EBPFNET_USAGE', `use ${this.path}`, 'the object was closed or already loaded');
    return this.obj;
  }

  get name(): string {
    return libbpf().bpf_object__name(this.handle as never);
  }

  private programPtrs(): unknown[] {
    const b = libbpf();
    const out = [];
    for (let p = b.bpf_object__next_program(this.handle as never, null); p; p = b.bpf_object__next_program(this.handle as never, p)) out.push(p);
    return out;
  }

  private mapPtrs(): unknown[] {
    const b = libbpf();
    const out = [];
    for (let m = b.bpf_object__next_map(this.handle as never, null); m; m = b.bpf_object__next_map(this.handle as never, m)) out.push(m);
    return out;
  }

  /** The programs in the object, as the ELF declares them. */
  programs(): ProgramSpec[] {
    const b = libbpf();
    return this.programPtrs().map((p) => {
      const type = b.bpf_program__type(p as never);
      return {
        name: b.bpf_program__name(p as never),
        section: b.bpf_program__section_name(p as never),
        type,
        typeName: progTypeName(type),
        insns: Number(b.bpf_program__insn_cnt(p as never)),
      };
    });
  }

  /** The maps in the object, as the ELF declares them (before any setMaxEntries). */
  maps(): MapSpec[] {
    const b = libbpf();
    return this.mapPtrs().map((m) => ({
      name: b.bpf_map__name(m as never),
      type: b.bpf_map__type(m as never),
      keySize: b.bpf_map__key_size(m as never),
      valueSize: b.bpf_map__value_size(m as never),
      maxEntries: b.bpf_map__max_entries(m as never),
      keyTypeId: b.bpf_map__btf_key_type_id(m as never),
      valueTypeId: b.bpf_map__btf_value_type_id(m as never),
    }));
  }

  /** @internal the object's BTF, for the drift test and the verifier harness */
  btf(): BtfSpec {
    const p = libbpf().bpf_object__btf(this.handle as never);
    if (!p) throw new EbpfnetError('EBPFNET_KERNEL', `read BTF of ${this.path}`, 'the object has no BTF', { hint: 'build it with clang -g' });
    return new BtfSpec(p);
  }

  private mapPtr(name: string): unknown {
    const b = libbpf();
    const m = this.mapPtrs().find((x) => b.bpf_map__name(x as never) === name);
    if (!m) throw new EbpfnetError('EBPFNET_NOT_FOUND', `find map ${name} in ${this.path}`, 'no such map', { hint: 'rebuild the object (npm run build)' });
    return m;
  }

  private apply(step: Step): this {
    step(this);
    this.steps.push(step);
    return this;
  }

  /**
   * Writes a `const volatile` global before load, so the verifier sees it as a constant (and prunes
   * the branches it disables). The variable is found by name in the object's .rodata BTF.
   */
  setConst<T>(name: string, codec: Codec<T>, value: T): this {
    return this.apply((spec) => {
      const b = libbpf();
      const v = spec.btf().sectionVars('.rodata').find((x) => x.name === name);
      if (!v) throw new EbpfnetError('EBPFNET_NOT_FOUND', `set ${name} in ${spec.path}`, 'no such const volatile variable in .rodata');
      if (v.size !== codec.size) throw new EbpfnetError('EBPFNET_KERNEL', `set ${name}`, `the object has ${v.size} bytes, the layout ${codec.size}`);
      const rodata = spec.mapPtrs().find((m) => b.bpf_map__name(m as never).endsWith('.rodata'));
      const size = [0];
      const ptr = b.bpf_map__initial_value(rodata as never, size);
      if (!ptr) throw new EbpfnetError('EBPFNET_KERNEL', `set ${name}`, 'libbpf has no .rodata image for the object');
      codec.encode(value, Buffer.from(view(ptr, size[0])), v.offset);
    });
  }

  /** Sizes a map at load time instead of the size compiled into the object. */
  setMaxEntries(name: string, n: number): this {
    return this.apply((spec) => {
      const rc = libbpf().bpf_map__set_max_entries(spec.mapPtr(name) as never, n);
      if (rc < 0) throw kernelError(`resize map ${name}`, -rc);
    });
  }

  /** Use an existing map (say, a pinned one) instead of creating it: state survives a reload. */
  reuseMap(name: string, fd: number): this {
    return this.apply((spec) => {
      const rc = libbpf().bpf_map__reuse_fd(spec.mapPtr(name) as never, fd);
      if (rc < 0) throw kernelError(`reuse map ${name}`, -rc, 'the pinned map does not match the object (type, key, value or size)');
    });
  }

  /** Loads the object into the kernel. The spec is consumed: it becomes the returned BpfObject. */
  load(opts: LoadOptions = {}): BpfObject {
    const b = libbpf();
    for (let attempt = 1; ; attempt++) {
      const progs = this.programPtrs();
      const names = progs.map((p) => b.bpf_program__name(p as never));
      for (const n of opts.only ?? []) {
        if (!names.includes(n)) throw new EbpfnetError('EBPFNET_NOT_FOUND', `load ${this.path}`, `no program named ${n}`, { hint: `programs: ${names.join(', ')}` });
      }
      const logs: Buffer[] = [];
      progs.forEach((p, i) => {
        if (opts.only) b.bpf_program__set_autoload(p as never, opts.only.includes(names[i]));
        logs[i] = Buffer.alloc(64 * 1024);
        b.bpf_program__set_log_buf(p as never, logs[i], logs[i].length);
        b.bpf_program__set_log_level(p as never, LOG_STATS);
      });
      const mark = libbpfMark();
      const rc = b.bpf_object__load(this.handle as never);
      if (rc === -11 && attempt < 4) {
        // EAGAIN: a signal interrupted the verifier (a profiler, a child exiting). The object
        // cannot be loaded twice, so open it again with the same configuration and retry.
        const fresh = ObjectSpec.open(this.path);
        for (const step of this.steps) step(fresh);
        b.bpf_object__close(this.obj as never);
        this.obj = fresh.obj;
        fresh.obj = null;
        untrack(fresh);
        continue;
      }
      if (rc < 0) {
        const said = libbpfMessagesSince(mark);
        this.close();
        throw this.loadError(-rc, said, opts);
      }
      const stats = new Map<string, VerifierStats | null>();
      progs.forEach((_, i) => stats.set(names[i], parseVerifierStats(cstr(logs[i]))));
      const obj = this.obj;
      this.obj = null;
      untrack(this);
      return new BpfObject(this.path, obj, stats);
    }
  }

  /**
   * Why a load failed. A verifier rejection is loaded again from a fresh open with the full log
   * (grown until it fits), so the error carries the failing instruction, not just an errno.
   */
  private loadError(errno: number, said: string[], opts: LoadOptions): EbpfnetError {
    const name = errnoName(errno);
    const failed = said.map((l) => /prog '([^']+)': (?:BPF program load failed|failed to load)/.exec(l)?.[1]).find(Boolean);
    if (name === 'EPERM') return kernelError(`load ${this.path}`, errno);
    if (!failed || !(name === 'EACCES' || name === 'EINVAL' || name === 'E2BIG' || name === 'ENOSPC')) {
      const e = kernelError(`load ${this.path}`, errno, said.length ? said[said.length - 1].replace(/^libbpf: /, '') : undefined);
      return e;
    }
    let size = opts.logSize ?? 1 << 20;
    for (let attempt = 0; attempt < 6; attempt++, size *= 4) {
      const spec = ObjectSpec.open(this.path);
      try {
        for (const s of this.steps) s(spec);
        const b = libbpf();
        // a fresh object each attempt: its programs are found by name
        const p = spec.programPtrs().find((x) => b.bpf_program__name(x as never) === failed);
        const log = Buffer.alloc(size);
        for (const q of spec.programPtrs()) b.bpf_program__set_autoload(q as never, b.bpf_program__name(q as never) === failed);
        b.bpf_program__set_log_buf(p as never, log, log.length);
        b.bpf_program__set_log_level(p as never, LOG_FULL | LOG_STATS);
        const rc = b.bpf_object__load(spec.handle as never);
        if (rc === -28 /* ENOSPC: the log did not fit */) continue;
        return new VerifierError(failed, rc < 0 ? -rc : errno, cstr(log));
      } finally {
        spec.close();
      }
    }
    return new VerifierError(failed, errno, `(the verifier log did not fit in ${size / 4} bytes)`);
  }

  /** Releases the object without loading it (load() consumes it instead). */
  close(): void {
    if (this.obj) libbpf().bpf_object__close(this.obj as never);
    this.obj = null;
    untrack(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

const cstr = (b: Buffer): string => {
  const end = b.indexOf(0);
  return b.toString('utf8', 0, end < 0 ? b.length : end);
};

/** A loaded object: its programs and maps live in the kernel until close(). */
export class BpfObject implements Closable {
  private readonly maps = new Map<string, BpfMap<unknown, unknown>>();
  private readonly tables = new Map<string, BpfTable<unknown>>();

  /** @internal made by ObjectSpec.load() */
  constructor(
    readonly path: string,
    private obj: unknown,
    /** the verifier's counts per loaded program (null for programs not loaded) */
    readonly verifierStats: ReadonlyMap<string, VerifierStats | null>,
  ) {
    track(this);
  }

  private get handle(): unknown {
    if (!this.obj) throw new EbpfnetError('EBPFNET_USAGE', `use ${this.path}`, 'the object was closed');
    return this.obj;
  }

  /** A loaded program, by its generated layout constant (`PROG_...`) or name. */
  program(p: ProgramLayout | string): BpfProgram {
    const name = typeof p === 'string' ? p : p.name;
    const b = libbpf();
    for (let x = b.bpf_object__next_program(this.handle as never, null); x; x = b.bpf_object__next_program(this.handle as never, x)) {
      if (b.bpf_program__name(x) === name) return new BpfProgram(x, this.path);
    }
    throw new EbpfnetError('EBPFNET_NOT_FOUND', `find program ${name} in ${this.path}`, 'no such program', { hint: 'rebuild the object (npm run build)' });
  }

  /** The live map with the layout's name; its sizes are checked against the layout. */
  map<K, V>(layout: MapLayout<K, V>): BpfMap<K, V> {
    const cached = this.maps.get(layout.name);
    if (cached) return cached as BpfMap<K, V>;
    const b = libbpf();
    for (let x = b.bpf_object__next_map(this.handle as never, null); x; x = b.bpf_object__next_map(this.handle as never, x)) {
      if (b.bpf_map__name(x) !== layout.name) continue;
      const m = new BpfMap<K, V>(
        b.bpf_map__fd(x),
        layout,
        {
          name: layout.name,
          type: b.bpf_map__type(x),
          keySize: b.bpf_map__key_size(x),
          valueSize: b.bpf_map__value_size(x),
          maxEntries: b.bpf_map__max_entries(x),
        },
        false,
      );
      this.maps.set(layout.name, m as BpfMap<unknown, unknown>);
      return m;
    }
    throw new EbpfnetError('EBPFNET_NOT_FOUND', `find map ${layout.name} in ${this.path}`, 'no such map', { hint: 'rebuild the object (npm run build)' });
  }

  /** The live global table (maps/ "tables"), mapped into this process; its size is checked. */
  table<T>(layout: TableLayout<T>): BpfTable<T> {
    const cached = this.tables.get(layout.name);
    if (cached) return cached as BpfTable<T>;
    const b = libbpf();
    for (let x = b.bpf_object__next_map(this.handle as never, null); x; x = b.bpf_object__next_map(this.handle as never, x)) {
      if (b.bpf_map__name(x) !== layout.name) continue;
      const size = [0];
      const image = b.bpf_map__initial_value(x, size);
      const t = new BpfTable<T>(b.bpf_map__fd(x), layout, false, image && size[0] === layout.entries * layout.entry.size ? image : null);
      this.tables.set(layout.name, t as BpfTable<unknown>);
      return t;
    }
    throw new EbpfnetError('EBPFNET_NOT_FOUND', `find table ${layout.name} in ${this.path}`, 'no such table', { hint: 'rebuild the object (npm run build)' });
  }

  /** Unloads: closes its maps and programs (links made from them are closed separately). */
  close(): void {
    if (!this.obj) return;
    for (const t of this.tables.values()) t.close();
    for (const m of this.maps.values()) m.close();
    libbpf().bpf_object__close(this.obj as never);
    this.obj = null;
    untrack(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
