// SPDX-License-Identifier: GPL-2.0
/* Bench-only programs for the connection-tracking rows of the filter benchmark (ct.mjs):
 *   rotate_xdp   rewrites the packet's IPv4 source to the next of N remote addresses (a fixed
 *                permutation, so consecutive packets hit unrelated flows, as a busy host's do), then
 *                tail-calls rot_next[0] (filter_xdp, or pass_xdp for the harness). Under
 *                BPF_PROG_TEST_RUN the same frame is run again and again: without this, a table of
 *                1,000,000 flows would be measured on one flow that always sits in the cache.
 *   kfunc_xdp    the kernel's conntrack through bpf_xdp_ct_lookup / bpf_ct_release for the packet's
 *                flow (in the network namespace kf_netns, an id of the caller's): the other table
 *                issue 15 allows.
 *   own_xdp      the same parse and one lookup in an LRU hash keyed like flt_ct (the filter's own).
 *   counter_xdp, hash_xdp, coarse_xdp   one per-CPU counter bump (what the filter's per-rule
 *                counter costs), one hash lookup of a 40-byte key, one coarse clock read: the parts a
 *                filter that counts and tracks cannot avoid, against the floor that does neither.
 * Every program passes what it finds and drops what it does not, so a wrong setup shows as a
 * wrong verdict. */
#include "common.h"
/* the filter's types (struct flt_ct_key, flt_ct_val), not its maps */
#define EBPFNET_GEN_TYPES_ONLY
#include "gen/filter.maps.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rot_next SEC(".maps");

/* [0]: N (low 32 bits) and the first address, host order (high 32); [1]: the position */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} rot_cfg SEC(".maps");

/* a prime that divides no power of ten: i -> i * P mod N visits every flow once per N packets */
#define ROT_STEP 999983ULL

SEC("xdp")
int rotate_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__u32 k0 = 0, k1 = 1, n;
	__u64 *cfg, *pos, i;

	if ((void *)(ip + 1) > data_end)
		return XDP_ABORTED;
	cfg = bpf_map_lookup_elem(&rot_cfg, &k0);
	pos = bpf_map_lookup_elem(&rot_cfg, &k1);
	if (!cfg || !pos)
		return XDP_ABORTED;
	n = (__u32)*cfg;
	if (!n)
		return XDP_ABORTED;
	i = *pos + 1;
	if (i >= n)
		i = 0;
	*pos = i;
	ip->saddr = bpf_htonl((__u32)(*cfg >> 32) + (__u32)((i * ROT_STEP) % n));
	bpf_tail_call(ctx, &rot_next, 0);
	return XDP_ABORTED;
}

struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *bpf_tuple, __u32 tuple__sz,
				  struct bpf_ct_opts *opts, __u32 opts__sz) __ksym;
void bpf_ct_release(struct nf_conn *ct) __ksym;

/* the network namespace to look in: its id in the caller's namespace (ip netns set) */
const volatile __s32 kf_netns = -1;

/* The IPv4 TCP or UDP header of a plain frame; NULL for anything else. */
static __always_inline struct iphdr *ports4(void *data, void *data_end, __be16 **ports)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5)
		return NULL;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return NULL;
	*ports = (void *)(ip + 1);
	if ((void *)(*ports + 2) > data_end)
		return NULL;
	return ip;
}

SEC("xdp")
int kfunc_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_ct_opts opts = { .netns_id = kf_netns };
	struct bpf_sock_tuple t = {};
	struct nf_conn *ct;
	__be16 *ports;
	struct iphdr *ip = ports4(data, data_end, &ports);

	if (!ip)
		return XDP_ABORTED;
	t.ipv4.saddr = ip->saddr;
	t.ipv4.daddr = ip->daddr;
	t.ipv4.sport = ports[0];
	t.ipv4.dport = ports[1];
	opts.l4proto = ip->protocol;
	ct = bpf_xdp_ct_lookup(ctx, &t, sizeof(t.ipv4), &opts, sizeof(opts));
	if (!ct)
		return XDP_DROP;
	bpf_ct_release(ct);
	return XDP_PASS;
}

/* own_ct and one_hash are keyed and valued as the filter's flt_ct (its generated types) */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flt_ct_key);
	__type(value, struct flt_ct_val);
} own_ct SEC(".maps");

SEC("xdp")
int own_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct flt_ct_key k = {};
	__be16 *ports;
	struct iphdr *ip = ports4(data, data_end, &ports);

	if (!ip)
		return XDP_ABORTED;
	__builtin_memcpy(k.laddr, &ip->daddr, 4);
	__builtin_memcpy(k.raddr, &ip->saddr, 4);
	k.lport = ports[1];
	k.rport = ports[0];
	k.proto = ip->protocol;
	k.family = 4;
	return bpf_map_lookup_elem(&own_ct, &k) ? XDP_PASS : XDP_DROP;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} one_counter SEC(".maps");

SEC("xdp")
int counter_xdp(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&one_counter, &zero);

	if (!n)
		return XDP_DROP;
	*n += 1;
	return XDP_PASS;
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flt_ct_key);
	__type(value, struct flt_ct_val);
} one_hash SEC(".maps");

SEC("xdp")
int hash_xdp(struct xdp_md *ctx)
{
	struct flt_ct_key k = {};

	/* the all-zero key, which the bench inserts */
	return bpf_map_lookup_elem(&one_hash, &k) ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int coarse_xdp(struct xdp_md *ctx)
{
	return bpf_ktime_get_coarse_ns() ? XDP_PASS : XDP_DROP;
}
