// SPDX-License-Identifier: GPL-2.0
/* The packet filter. One decision function serves two entry points: XDP (filter_xdp) and tc ingress
 * (filter_tc), so the same compiled policy runs where XDP is unavailable or slower.
 *
 * Per packet: parse (VLAN tags, IPv4 or IPv6 with extension headers, ports of first fragments),
 * then a bounded number of map lookups whatever the number of rules: the active generation, the
 * protocol table, the destination port, and only when the policy has address rules, the source and
 * destination prefix classes (LPM tries) and one decision lookup per address group present (at most
 * three). User space compiles the rules into these tables (src/filter/compile.ts); no loop here ever
 * walks the rules. */
#include "common.h"
#include "gen/filter.maps.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_ARP 0x0806
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_ICMPV6_ 58
/* IPv6 extension headers (vmlinux.h has the IPPROTO enum but not these IPv6-only values) */
#define NH_HOPOPTS 0
#define NH_ROUTING 43
#define NH_FRAGMENT 44
#define NH_AH 51
#define NH_DSTOPTS 60
#define NH_MH 135
#define NH_NONE 59
#define IS_EXT_HDR(n) ((n) == NH_HOPOPTS || (n) == NH_ROUTING || (n) == NH_DSTOPTS || (n) == NH_FRAGMENT || (n) == NH_AH || (n) == NH_MH)

enum parse_result { P_IP, P_NON_IP, P_ARP, P_MALFORMED };

struct pkt {
	__u8 family;
	__u8 proto;
	__u8 has_port;	/* a first fragment (or whole packet) of TCP/UDP/SCTP */
	__u8 nonfirst;	/* a non-first fragment: only address and protocol rules apply */
	__u8 is_nd;	/* ICMPv6 neighbour discovery or router solicitation/advertisement */
	__u16 dport;	/* host order */
	__u8 saddr[16];
	__u8 daddr[16];
};

/* Reads the destination port (and for ICMPv6 the type) at offset off: 0 when it fits, -1 when the
 * L4 header is truncated. */
static __always_inline int parse_l4(void *data, void *data_end, __u64 off, struct pkt *p)
{
	__u8 *l4;

	if (off > 1024)
		return -1;
	l4 = data + off;
	/* the headers before it claim more than the packet holds */
	if ((void *)l4 > data_end)
		return -1;
	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP || p->proto == IPPROTO_SCTP) {
		/* all three carry source then destination port in their first four bytes */
		if ((void *)(l4 + 4) > data_end)
			return -1;
		p->dport = ((__u16)l4[2] << 8) | l4[3];
		p->has_port = 1;
	} else if (p->proto == IPPROTO_ICMPV6_ && p->family == FLT_FAMILY_V6) {
		/* neighbour discovery is IPv6's: protocol 58 over IPv4 is just another protocol */
		if ((void *)(l4 + 1) > data_end)
			return -1;
		p->is_nd = l4[0] >= 133 && l4[0] <= 137;
	}
	return 0;
}

static __always_inline enum parse_result parse(void *data, void *data_end, struct pkt *p)
{
	struct ethhdr *eth = data;
	__u64 off = sizeof(*eth);
	__u16 proto;

	if ((void *)(eth + 1) > data_end)
		return P_MALFORMED;
	proto = bpf_ntohs(eth->h_proto);
	/* up to two VLAN tags: 802.1ad outer, 802.1Q inner */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		__be16 *tag = data + off;
		if ((void *)(tag + 2) > data_end)
			return P_MALFORMED;
		proto = bpf_ntohs(tag[1]);
		off += 4;
	}
	if (proto == ETH_P_IP) {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end)
			return P_MALFORMED;
		if (ip->ihl < 5 || ip->version != 4)
			return P_MALFORMED;
		/* an IPv4 header shorter than its ihl says, also in a non-first fragment */
		if ((void *)ip + ip->ihl * 4 > data_end)
			return P_MALFORMED;
		p->family = FLT_FAMILY_V4;
		p->proto = ip->protocol;
		__builtin_memcpy(p->saddr, &ip->saddr, 4);
		__builtin_memcpy(p->daddr, &ip->daddr, 4);
		if (bpf_ntohs(ip->frag_off) & 0x1fff) {
			p->nonfirst = 1;
			return P_IP;
		}
		off += ip->ihl * 4;
		return parse_l4(data, data_end, off, p) ? P_MALFORMED : P_IP;
	}
	if (proto == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = data + off;
		__u8 next;

		if ((void *)(ip6 + 1) > data_end)
			return P_MALFORMED;
		if (ip6->version != 6)
			return P_MALFORMED;
		p->family = FLT_FAMILY_V6;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
		next = ip6->nexthdr;
		off += sizeof(*ip6);
		/* Walk extension headers; a chain longer than FLT_MAX_EXT_HDRS is treated as malformed. */
#pragma unroll
		for (int i = 0; i < FLT_MAX_EXT_HDRS; i++) {
			__u8 *h, nh;

			if (!IS_EXT_HDR(next))
				break;
			if (off > 1024)
				return P_MALFORMED;
			h = data + off;
			if ((void *)(h + 8) > data_end)
				return P_MALFORMED;
			nh = h[0];
			if (next == NH_FRAGMENT) {
				/* offset is the top 13 bits of bytes 2-3; non-zero means a non-first fragment,
				 * whose rest is payload, not headers: its next header is the protocol, and
				 * the walk ends here */
				if ((((__u16)h[2] << 8) | h[3]) & 0xfff8) {
					p->nonfirst = 1;
					p->proto = nh;
					nh = NH_NONE;
				}
				off += 8;
			} else if (next == NH_AH) {
				off += ((__u64)h[1] + 2) * 4;
			} else {
				off += ((__u64)h[1] + 1) * 8;
			}
			next = nh;
		}
		if (p->nonfirst)
			return P_IP;
		if (IS_EXT_HDR(next))
			return P_MALFORMED;
		p->proto = next;
		return parse_l4(data, data_end, off, p) ? P_MALFORMED : P_IP;
	}
	return proto == ETH_P_ARP ? P_ARP : P_NON_IP;
}

static __always_inline void count(void *map, __u32 idx, __u64 bytes)
{
	struct flt_count *c = bpf_map_lookup_elem(map, &idx);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* An address's class: the longest prefix some rule names (LPM trie). */
static __always_inline struct flt_class *class_of(void *trie, __u32 gen, struct pkt *p, __u8 *addr)
{
	struct flt_lpm_key k = {
		.prefixlen = 64 + (p->family == FLT_FAMILY_V6 ? 128 : 32),
		.gen = bpf_htonl(gen),
		.family = p->family,
	};

	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(trie, &k);
}

/* An address-only group's winner travels with the class: take it if its rank is higher. */
static __always_inline void class_winner(struct flt_class *c, __u32 *rule, __u32 *action, __u32 *rank)
{
	if (c->rank > *rank) {
		*rule = c->rule;
		*action = c->action;
		*rank = c->rank;
	}
}

/* One address group's winner for this key; it replaces the current one if its rank is higher. */
static __always_inline void group_winner(struct flt_rule_key *rk, __u32 *rule, __u32 *action, __u32 *rank)
{
	struct flt_verdict *v = bpf_map_lookup_elem(&flt_rules, rk);

	if (v && v->rank > *rank) {
		*rule = v->rule;
		*action = v->action;
		*rank = v->rank;
	}
}

/* FLT_ALLOW or FLT_DENY for this packet, counting it against the rule (or statistic) that decided. */
static __always_inline __u32 filter(void *data, void *data_end, __u64 bytes)
{
	struct pkt p = {};
	struct flt_cfg *cfg;
	struct flt_proto_val *pv;
	__u32 zero = 0, gen, idx, flags, rule = FLT_NO_RULE, action = FLT_ALLOW, rank = 0;
	__u32 pc_s = 0, pc_d = 0, pc_sd = 0, fs, fd, fsd, v6;

	cfg = bpf_map_lookup_elem(&flt_config, &zero);
	if (!cfg)
		return FLT_ALLOW;
	/* Read gen once: everything below uses this generation's tables, whatever user space flips. */
	gen = cfg->gen & 1;
	flags = cfg->flags[gen];

	switch (parse(data, data_end, &p)) {
	case P_NON_IP:
		count(&flt_stats, FLT_STAT_NON_IP, bytes);
		return FLT_ALLOW;
	case P_ARP:
		if (flags & FLT_F_ARP_DENY) {
			count(&flt_stats, FLT_STAT_ARP_DROP, bytes);
			return flags & FLT_F_AUDIT ? FLT_ALLOW : FLT_DENY;
		}
		count(&flt_stats, FLT_STAT_NON_IP, bytes);
		return FLT_ALLOW;
	case P_MALFORMED:
		/* A header that claims more than the packet holds: the kernel would drop it anyway,
		 * and passing it could let a truncated first fragment slip past port rules. */
		count(&flt_stats, FLT_STAT_MALFORMED, bytes);
		return flags & FLT_F_AUDIT ? FLT_ALLOW : FLT_DENY;
	default:
		break;
	}
	if (p.nonfirst)
		count(&flt_stats, FLT_STAT_FRAGMENT, bytes);

	idx = gen * 512 + (p.family == FLT_FAMILY_V6) * 256 + p.proto;
	pv = bpf_map_lookup_elem(&flt_protos, &idx);
	if (!pv)
		return FLT_ALLOW;
	/* Rules naming no address: their winner sits in the protocol table, or per port. */
	rule = pv->rule;
	action = pv->action;
	rank = pv->rank;
	if (pv->named && p.has_port) {
		/* Two direct array reads instead of hashing (family, proto, port). */
		__u32 slot = p.proto == IPPROTO_TCP ? 0 : p.proto == IPPROTO_UDP ? 1 : 2;
		__u32 pi = (((gen * 2 + (p.family == FLT_FAMILY_V6)) * 3 + slot) << 14) | (p.dport >> 2);
		struct flt_pidx *px = bpf_map_lookup_elem(&flt_portidx, &pi);

		if (px) {
			__u32 vi = px->idx[p.dport & 3];

			if (vi) {
				struct flt_port_val *pval;

				vi += gen * FLT_PORT_VALS;
				pval = bpf_map_lookup_elem(&flt_portval, &vi);
				if (pval) {
					rule = pval->rule;
					action = pval->action;
					rank = pval->rank;
					pc_s = pval->pc_s;
					pc_d = pval->pc_d;
					pc_sd = pval->pc_sd;
				}
			}
		}
	}
	v6 = p.family == FLT_FAMILY_V6;
	fs = v6 ? FLT_F_S6 : FLT_F_S4;
	fd = v6 ? FLT_F_D6 : FLT_F_D4;
	fsd = v6 ? FLT_F_SD6 : FLT_F_SD4;
	if (flags & (fs | fd | fsd)) {
		/* Rules naming addresses, by group: each group's winner is one lookup, and the highest
		 * rank among the groups decides. No table holds address classes times port classes
		 * of another group, so the tables grow with the rules, not with their product. */
		struct flt_class *scv = NULL, *dcv = NULL;
		__u32 sc, dc;

		if (flags & (fs | fsd))
			scv = class_of(&flt_src, gen, &p, p.saddr);
		if (flags & (fd | fsd))
			dcv = class_of(&flt_dst, gen, &p, p.daddr);
		sc = scv ? scv->cls : 0;
		dc = dcv ? dcv->cls : 0;
		struct flt_rule_key rk = { .gen = gen, .family = p.family };

		if (scv && (flags & fs)) {
			if (flags & (v6 ? FLT_F_SA6 : FLT_F_SA4)) {
				class_winner(scv, &rule, &action, &rank);
			} else {
				rk.src = sc;
				rk.dst = 0;
				rk.pclass = pc_s;
				rk.proto = pv->named & FLT_N_S ? p.proto : FLT_PROTO_ANY;
				rk.group = FLT_G_S;
				group_winner(&rk, &rule, &action, &rank);
			}
		}
		if (dcv && (flags & fd)) {
			if (flags & (v6 ? FLT_F_DA6 : FLT_F_DA4)) {
				class_winner(dcv, &rule, &action, &rank);
			} else {
				rk.src = 0;
				rk.dst = dc;
				rk.pclass = pc_d;
				rk.proto = pv->named & FLT_N_D ? p.proto : FLT_PROTO_ANY;
				rk.group = FLT_G_D;
				group_winner(&rk, &rule, &action, &rank);
			}
		}
		if (sc && dc && (flags & fsd)) {
			rk.src = sc;
			rk.dst = dc;
			rk.pclass = pc_sd;
			rk.proto = pv->named & FLT_N_SD ? p.proto : FLT_PROTO_ANY;
			rk.group = FLT_G_SD;
			group_winner(&rk, &rule, &action, &rank);
		}
	}

	if (rule == FLT_NO_RULE) {
		/* Neighbour discovery keeps IPv6 working under --default deny unless a rule names it. */
		if (p.is_nd) {
			count(&flt_stats, FLT_STAT_ND_PASS, bytes);
			return FLT_ALLOW;
		}
		action = cfg->default_action[gen];
		count(&flt_stats, action == FLT_DENY ? FLT_STAT_DEFAULT_DROP : FLT_STAT_DEFAULT_PASS, bytes);
	} else {
		count(&flt_counters, rule, bytes);
	}
	if (action == FLT_DENY && (flags & FLT_F_AUDIT)) {
		count(&flt_stats, FLT_STAT_AUDIT, bytes);
		return FLT_ALLOW;
	}
	return action;
}

SEC("xdp")
int filter_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	return filter(data, data_end, data_end - data) == FLT_DENY ? XDP_DROP : XDP_PASS;
}

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

/* In its own function so each __sk_buff field is read once per function: clang otherwise keeps the
 * CO-RE field offsets in registers, and the verifier only accepts constant-offset ctx loads. */
static __noinline __u32 linear_len(struct __sk_buff *skb)
{
	return skb->data_end - skb->data;
}

SEC("tc")
int filter_tc(struct __sk_buff *skb)
{
	void *data, *data_end;

	/* Direct access sees only the linear part; make sure the headers we parse are in it. */
	__u32 lin = linear_len(skb), len = skb->len;

	if (lin < 128 && len > lin)
		bpf_skb_pull_data(skb, len < 128 ? len : 128);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	return filter(data, data_end, skb->len) == FLT_DENY ? TC_ACT_SHOT : TC_ACT_OK;
}
