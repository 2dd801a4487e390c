// SPDX-License-Identifier: GPL-2.0
/* The packet filter. One decision function serves two entry points: XDP (filter_xdp) and tc ingress
 * (filter_tc), so the same compiled policy runs where XDP is unavailable or slower.
 *
 * Per packet: parse (VLAN tags, IPv4 or IPv6 with extension headers, ports or ICMP types of first
 * fragments),
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
#define IPPROTO_ICMP_ 1
#define IPPROTO_ICMPV6_ 58
/* IPv6 extension headers (vmlinux.h has the IPPROTO enum but not these IPv6-only values) */
#define NH_HOPOPTS 0
#define NH_ROUTING 43
#define NH_FRAGMENT 44
#define NH_AH 51
#define NH_DSTOPTS 60
#define NH_MH 135
#define IS_EXT_HDR(n) ((n) == NH_HOPOPTS || (n) == NH_ROUTING || (n) == NH_DSTOPTS || (n) == NH_FRAGMENT || (n) == NH_AH || (n) == NH_MH)

/* P_TOO_DEEP: well-formed as far as read, but deeper than the bounded parse follows (more VLAN tags
 * or IPv6 extension headers than it walks, headers past FLT_MAX_HEADER_OFFSET): dropped like a
 * malformed frame, since passing what the parser did not read could let it past the rules, but
 * counted apart so an operator can tell collateral from a broken or hostile frame. */
enum parse_result { P_IP, P_NON_IP, P_ARP, P_MALFORMED, P_TOO_DEEP };

/* What the decision needs from the headers. Only scalars and a packet pointer, so the compiler keeps
 * it in registers: the addresses are read from the IP header (l3) only when an address rule exists. */
struct pkt {
	void *l3;	/* the IPv4 or IPv6 header, bounds-checked for its fixed part */
	__u32 v6;	/* IPv6 rather than IPv4 */
	__u32 proto;
	__u32 has_port;	/* a first fragment (or whole packet) of TCP/UDP/SCTP, ICMPv4 or ICMPv6 */
	__u32 nonfirst;	/* a non-first fragment: only address and protocol rules apply */
	__u32 is_nd;	/* ICMPv6 neighbour discovery or router solicitation/advertisement */
	__u32 dport;	/* host order; the ICMP type for ICMPv4 and ICMPv6 (rules name types as ports) */
	__u16 ethertype;	/* of a non-IP frame, after the VLAN tags (network order) */
};

/* Reads the destination port (or the ICMP type) at l4: 0 when it fits, -1 when the L4 header is
 * truncated or l4 itself lies past the end (the headers before it claim more than the packet
 * holds). v6 is a constant at each call site, so each family tests only its own ICMP. */
static __always_inline int parse_l4(__u8 *l4, void *data_end, struct pkt *p, __u32 v6)
{
	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP || p->proto == IPPROTO_SCTP) {
		/* all three carry source then destination port in their first four bytes */
		if ((void *)(l4 + 4) > data_end)
			return -1;
		p->dport = bpf_ntohs(*(__be16 *)(l4 + 2));
		p->has_port = 1;
	} else if (v6 ? p->proto == IPPROTO_ICMPV6_ : p->proto == IPPROTO_ICMP_) {
		/* each family's own ICMP only: protocol 58 over IPv4 (or 1 over IPv6) is just another
		 * protocol, without types or neighbour discovery */
		if ((void *)(l4 + 1) > data_end)
			return -1;
		p->dport = l4[0];
		p->has_port = 1;
		if (v6)
			p->is_nd = l4[0] >= 133 && l4[0] <= 137;
	} else if ((void *)l4 > data_end) {
		/* the two branches above imply this check; only port-less protocols need it */
		return -1;
	}
	return 0;
}

/* Each VLAN tag count would leave off a different constant, and the verifier would then walk
 * everything after the tags once per count (three times the instructions at eight tags). So for a
 * tagged frame off starts as 14 plus a value the verifier cannot know (zero, read from a map,
 * always 0) and is kept to its low bits (a no-op at run time: it never reaches OFF_MASK): every tag
 * count then reaches the IP parsing with the same state, and the verifier walks that copy once. */
#define OFF_MASK 0x3f
_Static_assert(sizeof(struct ethhdr) + 4 * FLT_MAX_VLAN_TAGS < OFF_MASK, "the VLAN tags fit under OFF_MASK");

/* The headers after Ethernet and any VLAN tags, which end at off. */
static __always_inline enum parse_result parse_l3(void *data, void *data_end, struct pkt *p, __u64 off, __be16 proto)
{
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end)
			return P_MALFORMED;
		if (ip->ihl < 5 || ip->version != 4)
			return P_MALFORMED;
		p->l3 = ip;
		p->proto = ip->protocol;
		if (ip->frag_off & bpf_htons(0x1fff)) {
			p->nonfirst = 1;
			/* a header shorter than its ihl says is malformed in a non-first fragment too
			 * (for the others parse_l4's bounds check covers it) */
			return (void *)ip + ip->ihl * 4 > data_end ? P_MALFORMED : P_IP;
		}
		return parse_l4((__u8 *)ip + ip->ihl * 4, data_end, p, 0) ? P_MALFORMED : P_IP;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		__u8 next;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return P_MALFORMED;
		p->l3 = ip6;
		p->v6 = 1;
		next = ip6->nexthdr;
		off += sizeof(*ip6);
		/* Walk extension headers; a chain longer than FLT_MAX_EXT_HDRS is treated as malformed. */
#pragma unroll
		for (int i = 0; i < FLT_MAX_EXT_HDRS; i++) {
			__u8 *h;

			if (!IS_EXT_HDR(next))
				break;
			if (off > FLT_MAX_HEADER_OFFSET)
				return P_TOO_DEEP;
			h = data + off;
			if ((void *)(h + 8) > data_end)
				return P_MALFORMED;
			if (next == NH_FRAGMENT) {
				/* offset is the top 13 bits of bytes 2-3; non-zero means a non-first fragment,
				 * whose rest is payload, not headers: its next header is the protocol and the
				 * walk ends here (before the chain-too-long check) */
				if ((((__u16)h[2] << 8) | h[3]) & 0xfff8) {
					p->nonfirst = 1;
					p->proto = h[0];
					return P_IP;
				}
				off += 8;
			} else if (next == NH_AH) {
				off += ((__u64)h[1] + 2) * 4;
			} else {
				off += ((__u64)h[1] + 1) * 8;
			}
			next = h[0];
		}
		if (IS_EXT_HDR(next))
			return P_TOO_DEEP;
		p->proto = next;
		if (off > FLT_MAX_HEADER_OFFSET)
			return P_TOO_DEEP;
		return parse_l4(data + off, data_end, p, 1) ? P_MALFORMED : P_IP;
	}
	p->ethertype = proto;
	return proto == bpf_htons(ETH_P_ARP) ? P_ARP : P_NON_IP;
}

static __always_inline enum parse_result parse(void *data, void *data_end, struct pkt *p, __u32 zero)
{
	struct ethhdr *eth = data;
	__u64 off;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return P_MALFORMED;
	proto = eth->h_proto;
	/* untagged, the common case: its own copy of the IP parsing, with the headers at constant
	 * offsets (a few instructions a packet cheaper than through the variable offset below) */
	if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
		return parse_l3(data, data_end, p, sizeof(*eth), proto);
	/* VLAN tags, 802.1Q or 802.1ad in any order and with any VID. The kernel strips priority tags
	 * (VID 0) itself, as many as there are, and delivers what is inside to IP even with no VLAN
	 * device; a non-zero VID goes to its VLAN device (or is dropped). Either way the inner packet
	 * is what the rules judge, so the parser walks the tags and refuses a stack deeper than it
	 * walks: such a frame never reaches the stack unjudged. */
	off = sizeof(*eth) + (__u64)zero;
#pragma unroll
	for (int i = 0; i < FLT_MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		off &= OFF_MASK;
		__be16 *tag = data + off;
		if ((void *)(tag + 2) > data_end)
			return P_MALFORMED;
		proto = tag[1];
		off += 4;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return P_TOO_DEEP;
	return parse_l3(data, data_end, p, off & OFF_MASK, proto);
}

/* The non-IP frames a default deny still passes: ones no kernel delivers as IP, which a host needs
 * (LLDP, 802.1X, 802.3 frames with a length field: LLC, STP). Anything else (MPLS, PPPoE, MACsec,
 * an unknown type) may be decapsulated into IP by some module, so under a default deny it drops. */
static __always_inline int non_ip_needed(__be16 ethertype)
{
	return ethertype == bpf_htons(FLT_ETH_LLDP) || ethertype == bpf_htons(FLT_ETH_PAE) || bpf_ntohs(ethertype) < FLT_ETH_802_3_MIN;
}

static __always_inline void count(void *map, __u32 idx, __u64 bytes)
{
	struct flt_count *c = bpf_map_lookup_elem(map, &idx);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* An IPv4 address's class from the DIR-16-8-8 table: the top 16 bits index flt_dir, whose entry is
 * the class or a chunk for the next 8 bits, whose entry is the class or a chunk for the last 8.
 * Array reads only (the JIT inlines them), so the cost does not depend on the number of prefixes. */
static __always_inline struct flt_class *dir_class(__u32 gen, __u32 side, __be32 addr)
{
	__u32 a = bpf_ntohl(addr);
	__u32 e = flt_dir[(((gen << 1) | side) << 16) | (a >> 16)], i;
	__u32 *ce;

	if (e & FLT_DIR_CHUNK) {
		i = ((e & ~FLT_DIR_CHUNK) << 8) | ((a >> 8) & 0xff);
		ce = bpf_map_lookup_elem(&flt_chunks, &i);
		if (!ce)
			return NULL;
		e = *ce;
		if (e & FLT_DIR_CHUNK) {
			i = ((e & ~FLT_DIR_CHUNK) << 8) | (a & 0xff);
			ce = bpf_map_lookup_elem(&flt_chunks, &i);
			if (!ce)
				return NULL;
			e = *ce;
		}
	}
	if (!e)
		return NULL;
	return bpf_map_lookup_elem(&flt_classes, &e);
}

/* An address's class from the LPM trie (IPv6, or IPv4 when the generation does not use the DIR
 * table): the longest prefix some rule names. */
static __always_inline struct flt_class *trie_class(void *trie, __u32 gen, __u32 v6, void *addr)
{
	struct flt_lpm_key k = {
		.prefixlen = 64 + (v6 ? 128 : 32),
		.gen = bpf_htonl(gen),
		.family = v6 ? FLT_FAMILY_V6 : FLT_FAMILY_V4,
	};

	__builtin_memcpy(k.addr, addr, v6 ? 16 : 4);
	return bpf_map_lookup_elem(trie, &k);
}

/* The winner so far; a candidate replaces it if its rank is higher. */
struct winner {
	__u32 rule, action, rank;
};

static __always_inline void take(struct winner *w, __u32 rule, __u32 action, __u32 rank)
{
	if (rank > w->rank) {
		w->rule = rule;
		w->action = action;
		w->rank = rank;
	}
}

/* One address group's winner: the decision hash, keyed by the group's classes, port class and
 * protocol (or FLT_PROTO_ANY when the group names the protocol nowhere). */
static __always_inline void group_winner(__u32 gen, __u32 v6, __u32 group, __u32 src, __u32 dst, __u32 pclass, __u32 proto,
					 struct winner *w)
{
	struct flt_rule_key rk = {
		.gen = gen, .src = src, .dst = dst, .pclass = pclass, .proto = proto,
		.family = v6 ? FLT_FAMILY_V6 : FLT_FAMILY_V4, .group = group,
	};
	struct flt_verdict *v = bpf_map_lookup_elem(&flt_rules, &rk);

	if (v)
		take(w, v->rule, v->action, v->rank);
}

/* Rules naming addresses, by group, given the packet's source and destination classes: each
 * group's winner is one lookup (none when the group names only addresses: its winner rides in the
 * class), and the highest rank among the groups decides. No table holds address classes times port
 * classes of another group, so the tables grow with the rules, not with their product. */
static __always_inline void address_groups(struct flt_class *scv, struct flt_class *dcv, __u32 gen, __u32 flags, __u32 v6,
					   __u32 proto, __u32 named, struct flt_port_val *pval, struct winner *w)
{
	__u32 sc = scv ? scv->cls : 0, dc = dcv ? dcv->cls : 0;

	if (scv && (flags & (v6 ? FLT_F_S6 : FLT_F_S4))) {
		if (flags & (v6 ? FLT_F_SA6 : FLT_F_SA4))
			take(w, scv->rule, scv->action, scv->rank);
		else
			group_winner(gen, v6, FLT_G_S, sc, 0, pval ? pval->pc_s : 0, named & FLT_N_S ? proto : FLT_PROTO_ANY, w);
	}
	if (dcv && (flags & (v6 ? FLT_F_D6 : FLT_F_D4))) {
		if (flags & (v6 ? FLT_F_DA6 : FLT_F_DA4))
			take(w, dcv->rule, dcv->action, dcv->rank);
		else
			group_winner(gen, v6, FLT_G_D, 0, dc, pval ? pval->pc_d : 0, named & FLT_N_D ? proto : FLT_PROTO_ANY, w);
	}
	if (sc && dc && (flags & (v6 ? FLT_F_SD6 : FLT_F_SD4)))
		group_winner(gen, v6, FLT_G_SD, sc, dc, pval ? pval->pc_sd : 0, named & FLT_N_SD ? proto : FLT_PROTO_ANY, w);
}

/* The packet's source and destination classes (those some group needs), then the groups. The
 * addresses are read from the IP header here, only when some rule names an address. */
static __always_inline void address_rules(struct pkt *p, void *data_end, __u32 gen, __u32 flags, __u32 named,
					  struct flt_port_val *pval, struct winner *w)
{
	struct flt_class *scv = NULL, *dcv = NULL;
	__u32 v6 = p->v6;
	__u32 want_s = flags & (v6 ? FLT_F_S6 | FLT_F_SD6 : FLT_F_S4 | FLT_F_SD4);
	__u32 want_d = flags & (v6 ? FLT_F_D6 | FLT_F_SD6 : FLT_F_D4 | FLT_F_SD4);

	if (v6) {
		struct ipv6hdr *ip6 = p->l3;

		if ((void *)(ip6 + 1) > data_end)
			return;
		if (want_s)
			scv = trie_class(&flt_src, gen, 1, &ip6->saddr);
		if (want_d)
			dcv = trie_class(&flt_dst, gen, 1, &ip6->daddr);
	} else {
		struct iphdr *ip = p->l3;

		if ((void *)(ip + 1) > data_end)
			return;
		if (flags & FLT_F_DIR4) {
			if (want_s)
				scv = dir_class(gen, 0, ip->saddr);
			if (want_d)
				dcv = dir_class(gen, 1, ip->daddr);
		} else {
			if (want_s)
				scv = trie_class(&flt_src, gen, 0, &ip->saddr);
			if (want_d)
				dcv = trie_class(&flt_dst, gen, 0, &ip->daddr);
		}
	}
	address_groups(scv, dcv, gen, flags, v6, p->proto, named, pval, w);
}

/* FLT_ALLOW or FLT_DENY for this packet, counting it against the rule (or statistic) that decided. */
static __always_inline __u32 filter(void *data, void *data_end, __u64 bytes)
{
	struct pkt p = { .l3 = data };
	struct flt_cfg *cfg = &flt_cfg[0];
	struct flt_proto_val *pv;
	struct flt_port_val *pval = NULL;
	__u32 gen, flags, rule, action;

	/* Read gen once: everything below uses this generation's tables, whatever user space flips. */
	gen = cfg->gen & 1;
	flags = cfg->flags[gen];

	switch (parse(data, data_end, &p, cfg->zero)) {
	case P_NON_IP:
		if ((flags & FLT_F_NON_IP_DENY) && !non_ip_needed(p.ethertype)) {
			count(&flt_stats, FLT_STAT_NON_IP_DROP, bytes);
			return flags & FLT_F_AUDIT ? FLT_ALLOW : FLT_DENY;
		}
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
	case P_TOO_DEEP:
		count(&flt_stats, FLT_STAT_TOO_DEEP, bytes);
		return flags & FLT_F_AUDIT ? FLT_ALLOW : FLT_DENY;
	default:
		break;
	}
	if (p.nonfirst)
		count(&flt_stats, FLT_STAT_FRAGMENT, bytes);

	/* Rules naming no address: their winner sits in the protocol table, or per port. Direct
	 * array reads: the tables are globals, indexed without a helper call. */
	pv = &flt_protos[((gen << 9) | (p.v6 << 8) | p.proto) & (FLT_PROTOS_ENTRIES - 1)];
	rule = pv->rule;
	action = pv->action;
	if (pv->named && p.has_port) {
		__u32 slot = p.proto == IPPROTO_TCP ? 0 : p.proto == IPPROTO_UDP ? 1 : p.proto == IPPROTO_SCTP ? 2 : 3;
		__u32 pi = (((gen * 2 + p.v6) * FLT_PORT_SLOTS + slot) << 14) | (p.dport >> 2);

		if (pi < FLT_PIDX_ENTRIES) {
			__u32 vi = flt_pidx[pi].idx[p.dport & 3];

			if (vi) {
				pval = &flt_pval[((gen << 16) | vi) & (FLT_PVAL_ENTRIES - 1)];
				rule = pval->rule;
				action = pval->action;
			}
		}
	}
	if (flags & (p.v6 ? FLT_F_S6 | FLT_F_D6 | FLT_F_SD6 : FLT_F_S4 | FLT_F_D4 | FLT_F_SD4)) {
		struct winner w = { rule, action, pval ? pval->rank : pv->rank };

		address_rules(&p, data_end, gen, flags, pv->named, pval, &w);
		rule = w.rule;
		action = w.action;
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
