// SPDX-License-Identifier: Apache-2.0
// BpfTable<T>: a global array of a BPF object (maps/ "tables"), mapped into this process. The
// program indexes it directly; user space reads and writes entries in place through the mapping,
// without a system call per entry. libbpf makes each such .bss section an mmapable one-element
// array map, so a pinned table can be mapped again by another process.
import { rmSync } from 'node:fs';
import { EbpfnetError, errnoName, kernelError } from '../errors.js';
import { address, errno, libbpf, view } from '../libbpf/index.js';
import { check, closeFd } from './fd.js';
import { track, untrack, type Closable } from './guard.js';
import type { TableLayout } from './layout.js';
import { mapInfoByFd } from './map.js';
import { pageSize } from './system.js';

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_FIXED = 0x10;
const MAP_FAILED = 0xffffffffffffffffn;

export class BpfTable<T> implements Closable {
  readonly name: string;
  /** the table's bytes, shared with the kernel */
  readonly mem: Buffer;
  private readonly words: Int32Array;
  private readonly ptr: unknown;
  private readonly len: number;
  private fd_: number;
  private pinnedAt: string | null = null;

  /**
   * @internal tables come from BpfObject.table() and openPinnedTable()
   * @param fd the table's map descriptor; `owned` tables close it on close() (one that belongs to a
   *   BpfObject is closed by the object).
   * @param over libbpf's own mapping of the table (its initial image, which libbpf keeps until the
   *   object closes and then unmaps): the table is mapped over it, as libbpf's skeletons do, so its
   *   pages are resident once, not twice (4.5 MB for the filter's tables).
   */
  constructor(fd: number, readonly layout: TableLayout<T>, private readonly owned: boolean, private readonly over: unknown = null) {
    this.name = layout.name;
    const info = mapInfoByFd(fd);
    const size = layout.entries * layout.entry.size;
    if (info.maxEntries !== 1 || info.valueSize !== size) {
      throw new EbpfnetError('EBPFNET_KERNEL', `open table ${layout.name}`, `layout says ${size} bytes but the kernel map holds ${info.maxEntries} x ${info.valueSize}`, {
        hint: 'the object and maps/ disagree: rebuild (npm run build)',
      });
    }
    const page = pageSize();
    this.len = Math.ceil(size / page) * page;
    const b = libbpf();
    this.ptr = b.mmap(over, this.len, PROT_READ | PROT_WRITE, MAP_SHARED | (over ? MAP_FIXED : 0), fd, 0);
    if (address(this.ptr) === MAP_FAILED) {
      const e = errno();
      throw kernelError(`map table ${layout.name}`, e, errnoName(e) === 'EPERM' ? 'the map is not mmapable (BPF_F_MMAPABLE): rebuild the object' : undefined);
    }
    const ab = view(this.ptr, this.len);
    this.mem = Buffer.from(ab, 0, size);
    this.words = new Int32Array(ab, 0, this.len >> 2);
    this.fd_ = fd;
    track(this);
  }

  /** the table's map descriptor (to hand to another object: ObjectSpec.reuseMap) */
  get fd(): number {
    return this.fd_;
  }

  get(i: number): T {
    return this.layout.entry.decode(this.mem, i * this.layout.entry.size);
  }

  set(i: number, v: T): void {
    this.layout.entry.encode(v, this.mem, i * this.layout.entry.size);
  }

  /**
   * One aligned 4-byte store at a byte offset, sequentially consistent: every write before it is
   * visible to the kernel before this one is (a generation flip).
   */
  storeU32(byteOffset: number, v: number): void {
    if (byteOffset & 3) throw new EbpfnetError('EBPFNET_USAGE', `store into table ${this.name}`, `offset ${byteOffset} is not 4-byte aligned`);
    Atomics.store(this.words, byteOffset >> 2, v | 0);
  }

  pin(path: string): void {
    check(`pin table ${this.name} at ${path}`, libbpf().bpf_obj_pin(this.fd_, path));
    this.pinnedAt = path;
  }

  close(): void {
    if (this.fd_ < 0) return;
    if (!this.over) libbpf().munmap(this.ptr as never, this.len);
    if (this.owned) closeFd(this.fd_);
    this.fd_ = -1;
    untrack(this);
  }

  unpin(): void {
    if (this.pinnedAt) rmSync(this.pinnedAt, { force: true });
    this.pinnedAt = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Opens and maps a table pinned in bpffs. */
export function openPinnedTable<T>(path: string, layout: TableLayout<T>): BpfTable<T> {
  const fd = libbpf().bpf_obj_get(path);
  if (fd < 0) throw kernelError(`open pinned table ${path}`, -fd, errnoName(-fd) === 'ENOENT' ? 'nothing is pinned there' : undefined);
  try {
    return new BpfTable(fd, layout, true);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}
