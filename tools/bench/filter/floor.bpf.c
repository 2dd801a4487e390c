// SPDX-License-Identifier: GPL-2.0
/* The floor for the filter benchmark: what someone would write by hand for "--deny tcp/22
 * --deny icmp" -- the two checks hard-coded, no maps, no counters. ebpfnet's filter_xdp is
 * measured against it under BPF_PROG_TEST_RUN (tools/bench/filter/run.mjs). It parses the
 * same way a careful hand-written filter would (bounds checks, IPv4 options via ihl, plain
 * IPv6 without extension headers) and passes anything it does not understand. */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

SEC("xdp")
int floor_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *tcp;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		if (ip->protocol == IPPROTO_ICMP)
			return XDP_DROP;
		if (ip->protocol != IPPROTO_TCP)
			return XDP_PASS;
		/* a non-first fragment has no TCP header to look at */
		if (ip->frag_off & bpf_htons(0x1fff))
			return XDP_PASS;
		tcp = (void *)ip + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		if (ip6->nexthdr != IPPROTO_TCP)
			return XDP_PASS;
		tcp = (void *)(ip6 + 1);
	} else {
		return XDP_PASS;
	}
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;
	return tcp->dest == bpf_htons(22) ? XDP_DROP : XDP_PASS;
}

/* The floor of the veth part (run.mjs part b) at the tc hook: "--deny udp/9" hard-coded, each drop
 * counted per CPU as every contender counts its drops. What no BPF program at that hook can beat;
 * its row against nftables shows what the hook itself costs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} floor_drops SEC(".maps");

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

SEC("tc")
int floor_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp;
	__u32 zero = 0;
	__u64 *n;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	if (ip->frag_off & bpf_htons(0x1fff))
		return TC_ACT_OK;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(9))
		return TC_ACT_OK;
	n = bpf_map_lookup_elem(&floor_drops, &zero);
	if (n)
		*n += 1;
	return TC_ACT_SHOT;
}
