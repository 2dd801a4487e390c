// SPDX-License-Identifier: Apache-2.0
// Kernel enum values we name in messages and tables (include/uapi/linux/bpf.h).

export const PROG_TYPE_NAMES: Record<number, string> = {
  1: 'socket_filter', 2: 'kprobe', 3: 'sched_cls', 4: 'sched_act', 5: 'tracepoint', 6: 'xdp', 7: 'perf_event',
  8: 'cgroup_skb', 9: 'cgroup_sock', 13: 'sock_ops', 17: 'raw_tracepoint', 18: 'cgroup_sock_addr', 26: 'tracing',
  29: 'lsm', 31: 'syscall', 32: 'netfilter',
};

export const progTypeName = (t: number): string => PROG_TYPE_NAMES[t] ?? `type ${t}`;

/** prog types by the names maps/ uses for programs */
export const PROG_TYPE_BY_KIND = { xdp: 6, tc: 3, tracepoint: 5, cgroup_sock_addr: 18, syscall: 31, tracing: 26, lsm: 29 } as const;

export const MAP_TYPE_BY_KIND = {
  hash: 1, array: 2, percpu_hash: 5, percpu_array: 6, lru_hash: 9, lru_percpu_hash: 10, lpm_trie: 11, ringbuf: 27,
} as const;

export const ATTACH = {
  CGROUP_INET4_CONNECT: 10,
  CGROUP_INET6_CONNECT: 11,
  CGROUP_UDP4_SENDMSG: 14,
  CGROUP_UDP6_SENDMSG: 15,
  CGROUP_UDP4_RECVMSG: 19,
  CGROUP_UDP6_RECVMSG: 20,
  CGROUP_INET4_GETPEERNAME: 29,
  CGROUP_INET6_GETPEERNAME: 30,
  XDP: 37,
  TCX_INGRESS: 46,
  TCX_EGRESS: 47,
} as const;

export const XDP_FLAGS = { UPDATE_IF_NOEXIST: 1, SKB_MODE: 2, DRV_MODE: 4, HW_MODE: 8, REPLACE: 16 } as const;

/** XDP return codes */
export const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;
export const XDP_ACTION_NAMES = ['XDP_ABORTED', 'XDP_DROP', 'XDP_PASS', 'XDP_TX', 'XDP_REDIRECT'];

/** BTF kinds */
export const BTF_KIND = { INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, TYPEDEF: 8, FUNC: 12, VAR: 14, DATASEC: 15 } as const;
