// SPDX-License-Identifier: GPL-2.0
/* xdpcount: counts the IPv4 packets arriving on an interface by IP protocol, and reports the packets
 * of one protocol (a const volatile knob, set by the loader before load) through a ring buffer.
 * Every packet is passed on: this program only watches. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "gen/xdpcount.maps.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800 /* a macro in linux/if_ether.h, so not in vmlinux.h */

SEC("xdp")
int xc_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct xc_count *c;
	struct xc_event *e;
	__u32 proto;

	/* one bound check covers both headers; the verifier refuses any read past data_end */
	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	proto = ip->protocol;
	c = bpf_map_lookup_elem(&xc_counts, &proto);
	if (c) {
		c->packets++;
		c->bytes += data_end - data;
	}
	if (proto != xc_config.report_proto)
		return XDP_PASS;
	e = bpf_ringbuf_reserve(&xc_events, sizeof(*e), 0);
	if (!e)
		return XDP_PASS;
	e->saddr = ip->saddr;
	e->daddr = ip->daddr;
	e->len = data_end - data;
	e->proto = proto;
	e->ttl = ip->ttl;
	e->pad[0] = e->pad[1] = 0;
	/* no wake-up per event: the reader polls from a timer, which spares the producer an IPI */
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return XDP_PASS;
}
