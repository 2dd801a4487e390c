// SPDX-License-Identifier: Apache-2.0
// koffi declarations of the libbpf (and the few libc) functions ebpfnet calls, and nothing else.
// libbpf >= 1.0 returns -errno from int functions and NULL + errno from pointer functions.
import koffi, { type LibraryHandle, type TypeObject } from 'koffi';
import { EbpfnetError } from '../errors.js';

export const LIBBPF_SONAME = 'libbpf.so.1';

// Opaque handles: JavaScript only passes them back to libbpf. koffi 3 hands pointers out as BigInt
// addresses (NULL as null) and does not check their C type, so a handle of one kind passed where
// libbpf wants another is not caught here.
koffi.opaque('bpf_object');
koffi.opaque('bpf_program');
koffi.opaque('bpf_map');
koffi.opaque('bpf_link');
koffi.opaque('btf');

export const TestRunOpts = koffi.struct('bpf_test_run_opts', {
  sz: 'size_t',
  data_in: 'void *',
  data_out: 'void *',
  data_size_in: 'uint32_t',
  data_size_out: 'uint32_t',
  ctx_in: 'void *',
  ctx_out: 'void *',
  ctx_size_in: 'uint32_t',
  ctx_size_out: 'uint32_t',
  retval: 'uint32_t',
  repeat: 'int',
  duration: 'uint32_t',
  flags: 'uint32_t',
  cpu: 'uint32_t',
  batch_size: 'uint32_t',
});

export const LinkCreateOpts = koffi.struct('bpf_link_create_opts', {
  sz: 'size_t',
  flags: 'uint32_t',
  iter_info: 'void *',
  iter_info_len: 'uint32_t',
  target_btf_id: 'uint32_t',
  // union { perf_event, kprobe_multi, tracing }: we only ever zero it
  u: koffi.array('uint64_t', 4),
});

export const XdpQueryOpts = koffi.struct('bpf_xdp_query_opts', {
  sz: 'size_t',
  prog_id: 'uint32_t',
  drv_prog_id: 'uint32_t',
  hw_prog_id: 'uint32_t',
  skb_prog_id: 'uint32_t',
  attach_mode: 'uint8_t',
});

export const MapBatchOpts = koffi.struct('bpf_map_batch_opts', {
  sz: 'size_t',
  elem_flags: 'uint64_t',
  flags: 'uint64_t',
});

/** struct btf_type: name_off, info (vlen 0-15, kind 24-28, kind_flag 31), size or type */
export const BtfType = koffi.struct('btf_type', { name_off: 'uint32_t', info: 'uint32_t', size_or_type: 'uint32_t' });

export const PrintFn = koffi.proto('int libbpf_print_fn_t(int level, const char *fmt, void *args)');

function declare(lib: LibraryHandle, libc: LibraryHandle) {
  const f = (sig: string) => lib.func(sig);
  const c = (sig: string) => libc.func(sig);
  return {
    libbpf_major_version: f('uint32_t libbpf_major_version(void)'),
    libbpf_minor_version: f('uint32_t libbpf_minor_version(void)'),
    libbpf_version_string: f('const char *libbpf_version_string(void)'),
    libbpf_set_print: f('void *libbpf_set_print(libbpf_print_fn_t *fn)'),
    libbpf_num_possible_cpus: f('int libbpf_num_possible_cpus(void)'),
    libbpf_probe_bpf_prog_type: f('int libbpf_probe_bpf_prog_type(int prog_type, void *opts)'),
    libbpf_probe_bpf_map_type: f('int libbpf_probe_bpf_map_type(int map_type, void *opts)'),

    bpf_object__open_file: f('bpf_object *bpf_object__open_file(const char *path, void *opts)'),
    bpf_object__load: f('int bpf_object__load(bpf_object *obj)'),
    bpf_object__close: f('void bpf_object__close(bpf_object *obj)'),
    bpf_object__name: f('const char *bpf_object__name(bpf_object *obj)'),
    bpf_object__next_program: f('bpf_program *bpf_object__next_program(bpf_object *obj, bpf_program *prev)'),
    bpf_object__next_map: f('bpf_map *bpf_object__next_map(bpf_object *obj, bpf_map *prev)'),
    bpf_object__btf: f('btf *bpf_object__btf(bpf_object *obj)'),

    bpf_program__name: f('const char *bpf_program__name(bpf_program *p)'),
    bpf_program__section_name: f('const char *bpf_program__section_name(bpf_program *p)'),
    bpf_program__type: f('int bpf_program__type(bpf_program *p)'),
    bpf_program__expected_attach_type: f('int bpf_program__expected_attach_type(bpf_program *p)'),
    bpf_program__fd: f('int bpf_program__fd(bpf_program *p)'),
    bpf_program__insn_cnt: f('size_t bpf_program__insn_cnt(bpf_program *p)'),
    bpf_program__set_autoload: f('int bpf_program__set_autoload(bpf_program *p, bool autoload)'),
    bpf_program__set_log_level: f('int bpf_program__set_log_level(bpf_program *p, uint32_t level)'),
    bpf_program__set_log_buf: f('int bpf_program__set_log_buf(bpf_program *p, void *buf, size_t size)'),
    bpf_program__attach_tracepoint: f('bpf_link *bpf_program__attach_tracepoint(bpf_program *p, const char *cat, const char *name)'),
    bpf_program__attach_cgroup: f('bpf_link *bpf_program__attach_cgroup(bpf_program *p, int cgroup_fd)'),
    bpf_program__attach: f('bpf_link *bpf_program__attach(bpf_program *p)'),

    bpf_link__fd: f('int bpf_link__fd(bpf_link *l)'),
    bpf_link__pin: f('int bpf_link__pin(bpf_link *l, const char *path)'),
    bpf_link__disconnect: f('void bpf_link__disconnect(bpf_link *l)'),
    bpf_link__destroy: f('int bpf_link__destroy(bpf_link *l)'),
    bpf_link_create: f('int bpf_link_create(int prog_fd, int target_fd, int attach_type, bpf_link_create_opts *opts)'),
    bpf_link_detach: f('int bpf_link_detach(int link_fd)'),

    bpf_map__name: f('const char *bpf_map__name(bpf_map *m)'),
    bpf_map__fd: f('int bpf_map__fd(bpf_map *m)'),
    bpf_map__type: f('int bpf_map__type(bpf_map *m)'),
    bpf_map__key_size: f('uint32_t bpf_map__key_size(bpf_map *m)'),
    bpf_map__value_size: f('uint32_t bpf_map__value_size(bpf_map *m)'),
    bpf_map__max_entries: f('uint32_t bpf_map__max_entries(bpf_map *m)'),
    bpf_map__set_max_entries: f('int bpf_map__set_max_entries(bpf_map *m, uint32_t n)'),
    bpf_map__btf_key_type_id: f('uint32_t bpf_map__btf_key_type_id(bpf_map *m)'),
    bpf_map__btf_value_type_id: f('uint32_t bpf_map__btf_value_type_id(bpf_map *m)'),
    bpf_map__initial_value: f('void *bpf_map__initial_value(bpf_map *m, _Out_ size_t *psize)'),
    bpf_map__set_initial_value: f('int bpf_map__set_initial_value(bpf_map *m, const void *data, size_t size)'),
    bpf_map__reuse_fd: f('int bpf_map__reuse_fd(bpf_map *m, int fd)'),

    bpf_map_update_elem: f('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
    bpf_map_lookup_elem: f('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
    bpf_map_lookup_elem_flags: f('int bpf_map_lookup_elem_flags(int fd, const void *key, void *value, uint64_t flags)'),
    bpf_map_delete_elem: f('int bpf_map_delete_elem(int fd, const void *key)'),
    // The same three with key and value as raw addresses: a Buffer argument costs koffi 3 about
    // twice what a Number does (~70 against ~35 ns a call here), so BpfMap passes the fixed
    // addresses of its own scratch buffers instead.
    bpf_map_update_elem_at: lib.func('bpf_map_update_elem', 'int', ['int', 'uintptr_t', 'uintptr_t', 'uint64_t']),
    bpf_map_lookup_elem_at: lib.func('bpf_map_lookup_elem', 'int', ['int', 'uintptr_t', 'uintptr_t']),
    bpf_map_delete_elem_at: lib.func('bpf_map_delete_elem', 'int', ['int', 'uintptr_t']),
    bpf_map_get_next_key: f('int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
    bpf_map_lookup_batch: f('int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32_t *count, bpf_map_batch_opts *opts)'),
    bpf_map_update_batch: f('int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, bpf_map_batch_opts *opts)'),
    bpf_map_delete_batch: f('int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32_t *count, bpf_map_batch_opts *opts)'),

    bpf_obj_pin: f('int bpf_obj_pin(int fd, const char *path)'),
    bpf_obj_get: f('int bpf_obj_get(const char *path)'),
    bpf_obj_get_info_by_fd: f('int bpf_obj_get_info_by_fd(int fd, void *info, _Inout_ uint32_t *len)'),
    bpf_prog_get_fd_by_id: f('int bpf_prog_get_fd_by_id(uint32_t id)'),
    bpf_link_get_fd_by_id: f('int bpf_link_get_fd_by_id(uint32_t id)'),
    bpf_link_get_next_id: f('int bpf_link_get_next_id(uint32_t start, _Out_ uint32_t *next)'),
    bpf_map_get_fd_by_id: f('int bpf_map_get_fd_by_id(uint32_t id)'),
    bpf_prog_get_next_id: f('int bpf_prog_get_next_id(uint32_t start, _Out_ uint32_t *next)'),
    bpf_prog_test_run_opts: f('int bpf_prog_test_run_opts(int fd, _Inout_ bpf_test_run_opts *opts)'),
    bpf_enable_stats: f('int bpf_enable_stats(int type)'),
    // target is an ifindex for the TCX attach types (the same field of union bpf_attr)
    bpf_prog_query: f('int bpf_prog_query(int target, int type, uint32_t query_flags, _Out_ uint32_t *attach_flags, void *prog_ids, _Inout_ uint32_t *prog_cnt)'),

    bpf_xdp_attach: f('int bpf_xdp_attach(int ifindex, int prog_fd, uint32_t flags, void *opts)'),
    bpf_xdp_detach: f('int bpf_xdp_detach(int ifindex, uint32_t flags, void *opts)'),
    bpf_xdp_query: f('int bpf_xdp_query(int ifindex, int flags, _Inout_ bpf_xdp_query_opts *opts)'),

    btf__find_by_name_kind: f('int btf__find_by_name_kind(btf *btf, const char *name, uint32_t kind)'),
    btf__load_vmlinux_btf: f('btf *btf__load_vmlinux_btf()'),
    btf__free: f('void btf__free(btf *btf)'),
    btf__type_by_id: f('const btf_type *btf__type_by_id(btf *btf, uint32_t id)'),
    btf__name_by_offset: f('const char *btf__name_by_offset(btf *btf, uint32_t off)'),
    btf__resolve_size: f('int64_t btf__resolve_size(btf *btf, uint32_t id)'),
    btf__resolve_type: f('int btf__resolve_type(btf *btf, uint32_t id)'),
    btf__type_cnt: f('uint32_t btf__type_cnt(btf *btf)'),

    // libc
    close: c('int close(int fd)'),
    mmap: c('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)'),
    munmap: c('int munmap(void *addr, size_t len)'),
    vsnprintf: c('int vsnprintf(void *buf, size_t n, const char *fmt, void *ap)'),
    if_nametoindex: c('uint32_t if_nametoindex(const char *name)'),
    if_indextoname: c('void *if_indextoname(uint32_t ifindex, void *ifname)'),
    getpgid: c('int getpgid(int pid)'),
    sysconf: c('long sysconf(int name)'),
    mallopt: c('int mallopt(int param, int value)'),
    malloc_trim: c('int malloc_trim(size_t pad)'),
    socket: c('int socket(int domain, int type, int protocol)'),
    getsockopt: c('int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)'),
  };
}

export type Libbpf = ReturnType<typeof declare>;

let bindings: Libbpf | null = null;

/** The bindings, loaded on first use; a clear error when libbpf is missing or older than 1.0. */
export function libbpf(): Libbpf {
  if (bindings) return bindings;
  let lib: LibraryHandle;
  try {
    lib = koffi.load(LIBBPF_SONAME);
  } catch (e) {
    throw new EbpfnetError('EBPFNET_LIBBPF', 'load libbpf', `${LIBBPF_SONAME} was not found`, {
      hint: 'install it: apt-get install libbpf1 (Debian/Ubuntu) or dnf install libbpf',
      cause: e,
    });
  }
  const libc = koffi.load('libc.so.6');
  let b: Libbpf;
  try {
    b = declare(lib, libc);
  } catch (e) {
    throw new EbpfnetError('EBPFNET_LIBBPF', 'load libbpf', `${LIBBPF_SONAME} lacks a function ebpfnet needs (${(e as Error).message})`, {
      hint: 'ebpfnet needs libbpf 1.0 or newer',
      cause: e,
    });
  }
  const major = b.libbpf_major_version();
  if (major < 1) {
    throw new EbpfnetError('EBPFNET_LIBBPF', 'load libbpf', `libbpf ${b.libbpf_version_string()} is older than 1.0`, {
      hint: 'upgrade libbpf (Ubuntu 22.04+ and Debian 12 ship 1.x)',
    });
  }
  bindings = b;
  quietLibbpf(b);
  return b;
}

/** The calling thread's errno, for the pointer-returning functions. */
export const errno = (): number => koffi.errno();

/** A pointer that is NULL. */
export const isNull = (p: unknown): boolean => p === null || p === undefined;

export const sizeof = (t: TypeObject): number => koffi.sizeof(t);

/** Native memory as an ArrayBuffer without copying (used to read the ring buffer in place). */
export const view = (ptr: unknown, len: number): ArrayBuffer => koffi.view(ptr, len);

export const decodeStruct = <T>(ptr: unknown, type: TypeObject): T => koffi.decode(ptr, type) as T;
export const decodeAt = <T>(ptr: unknown, offset: number, type: TypeObject | string, len?: number): T =>
  (len === undefined ? koffi.decode(ptr, offset, type) : koffi.decode(ptr, offset, type, len)) as T;
export const address = (ptr: unknown): bigint => koffi.address(ptr);

// libbpf prints warnings to stderr by default. We keep its recent messages so errors can quote
// them, and print nothing: library code never writes to the terminal.
const recent: { n: number; text: string }[] = [];
let said = 0;
let printCb: unknown = null;
function quietLibbpf(b: Libbpf): void {
  if (process.arch !== 'x64') {
    // va_list is passed by value on some ABIs; formatting it through vsnprintf is only safe on x86-64.
    return;
  }
  const buf = Buffer.alloc(1024);
  printCb = koffi.register((_level: number, fmt: string, ap: unknown) => {
    const n = b.vsnprintf(buf, buf.length, fmt, ap);
    recent.push({ n: ++said, text: buf.toString('utf8', 0, Math.max(0, Math.min(n, buf.length - 1))).trimEnd() });
    if (recent.length > 64) recent.shift();
    return 0;
  }, koffi.pointer(PrintFn));
  b.libbpf_set_print(printCb as never);
}

/** A mark to pass to libbpfMessagesSince(). */
export const libbpfMark = (): number => said;

/** What libbpf said after `mark` (warnings, relocation failures), oldest first. */
export function libbpfMessagesSince(mark: number): string[] {
  return recent.filter((m) => m.n > mark).map((m) => m.text);
}
