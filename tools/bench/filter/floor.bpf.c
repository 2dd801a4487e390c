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
