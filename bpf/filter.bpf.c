// SPDX-License-Identifier: GPL-2.0
/* The packet filter. One decision function serves two entry points: XDP (filter_xdp) and tc ingress
 * (filter_tc), so the same compiled policy runs where XDP is unavailable or slower. A third program,
 * filter_egress (tc egress), only records the connections the host opens (it never drops).
 *
 * Per packet: parse (VLAN tags, IPv4 or IPv6 with extension headers, ports or ICMP types of first
 * fragments),
 * then a bounded number of map lookups whatever the number of rules: the active generation, the
 * protocol table, the destination port, and only when the policy has address rules, the source and
 * destination prefix classes (LPM tries) and one decision lookup per address group present (at most
 * three). User space compiles the rules into these tables (src/filter/compile.ts); no loop here ever
 * walks the rules.
 *
 * Connection tracking (flt_ct_cfg[0].stateful; off, the filter is the stateless one bit for bit).
 * Flows are keyed in the host's view (local/remote address and port, protocol, family; ICMP echo by
 * its identifier as the local port) in flt_ct, an LRU hash of the program's own: no netfilter needed.
 * An ingress packet (first fragment or whole, of TCP, UDP or ICMP) is decided in this order:
 *   1. the policy's winning rule, when it is an explicit deny: dropped (or audited) even if tracked;
 *   2. a live tracked flow (TCP, UDP, ICMP echo request or reply): passes, counted "established";
 *   3. an ICMP/ICMPv6 error (destination unreachable incl. fragmentation needed, packet too big,
 *      time exceeded) whose embedded header is a packet of a live tracked flow: passes, "related";
 *   4. an allow rule: passes, counted on the rule, and a new connection (TCP SYN without ACK, RST,
 *      FIN; any UDP datagram; an echo request) starts a flow, so inbound connections it accepts are
 *      tracked too;
 *   5. neighbour discovery, then the default, as without state.
 * A TCP SYN without ACK, RST or FIN never passes as established: it is a new connection (rules).
 * TCP states: SYN_SENT (opened, the other side silent), then only a SYN+ACK or a RST from that side
 * counts as the flow; the SYN+ACK makes it ESTABLISHED; a FIN makes it CLOSING, FINs from both sides
 * TIME_WAIT; a RST (passed) deletes the flow, so late packets of a reset connection fall to the rules.
 * Any packet counted as the flow refreshes it; an ICMP error does not. A flow expires when the time
 * since its last packet reaches its state's timeout (flt_ct_cfg, 0 = netfilter's default); an
 * expired flow is absent. UDP: udp_single until the other side sent one, then udp_stream.
 * TCP windows (tcp_in_window, tcp_update; the README's connection state says it for users): an
 * inbound segment of a live flow outside what the host has seen (sequence past r_maxend or a
 * window behind r_end, ack ahead of l_end or a window behind it) is dropped, counted
 * FLT_STAT_OUT_OF_WINDOW, and changes nothing (an out-of-window RST does not close the flow).
 * A TCP ACK the host sends for a flow the table lacks is picked up mid-stream (ct_tcp_pickup).
 * Not followed: non-first fragments (decided by the rules), IPv6 extension headers inside an
 * ICMPv6 error. */
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
	__u32 l3off, l4off;	/* where the IP and (with has_port) L4 headers start, for the tracker */
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
_Static_assert(FLT_MAX_HEADER_OFFSET + 60 < 0x7ff, "an L4 offset fits under the tracker's mask (ct_query)");
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
		p->l3off = off;
		p->proto = ip->protocol;
		if (ip->frag_off & bpf_htons(0x1fff)) {
			p->nonfirst = 1;
			/* a header shorter than its ihl says is malformed in a non-first fragment too
			 * (for the others parse_l4's bounds check covers it) */
			return (void *)ip + ip->ihl * 4 > data_end ? P_MALFORMED : P_IP;
		}
		p->l4off = off + ip->ihl * 4;
		return parse_l4((__u8 *)ip + ip->ihl * 4, data_end, p, 0) ? P_MALFORMED : P_IP;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		__u8 next;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return P_MALFORMED;
		p->l3 = ip6;
		p->l3off = off;
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
		p->l4off = off;
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

/* ---- connection tracking (see the top of the file for the precedence) ---- */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define NS_PER_S 1000000000ULL

/* What a packet is to the tracker. */
enum ct_kind { CT_NONE, CT_TCP, CT_UDP, CT_ECHO_REQ, CT_ECHO_REPLY, CT_ICMP_ERR };

static __always_inline __u64 ct_now(struct flt_ct_cfg *cc)
{
	/* cc->now is the tests' clock (maps/filter.json); production leaves it 0. The coarse clock
	 * (CLOCK_MONOTONIC at tick resolution) reads no clock source: timeouts are in seconds, and the
	 * precise one cost more than the rest of the tracker on these VMs. */
	return cc->now ? cc->now : bpf_ktime_get_coarse_ns();
}

static __always_inline __u64 ct_timeout(struct flt_ct_cfg *cc, struct flt_ct_val *v)
{
	__u32 s;

	switch (v->state) {
	case FLT_CT_SYN_SENT:
		s = cc->tcp_syn_sent ?: FLT_CT_TCP_SYN_SENT_S;
		break;
	case FLT_CT_ESTABLISHED:
		s = cc->tcp_established ?: FLT_CT_TCP_ESTABLISHED_S;
		break;
	case FLT_CT_CLOSING:
		s = cc->tcp_closing ?: FLT_CT_TCP_CLOSING_S;
		break;
	case FLT_CT_TIME_WAIT:
		s = cc->tcp_time_wait ?: FLT_CT_TCP_TIME_WAIT_S;
		break;
	case FLT_CT_UDP:
		s = v->flags & FLT_CT_F_REPLIED ? (cc->udp_stream ?: FLT_CT_UDP_STREAM_S) : (cc->udp_single ?: FLT_CT_UDP_SINGLE_S);
		break;
	default:
		s = cc->icmp ?: FLT_CT_ICMP_S;
		break;
	}
	return (__u64)s * NS_PER_S;
}

/* Signed: another CPU may have stamped the flow a little after this one read the clock. */
static __always_inline int ct_live(struct flt_ct_cfg *cc, struct flt_ct_val *v, __u64 now)
{
	return (__s64)(now - v->last_seen) < (__s64)ct_timeout(cc, v);
}

/* The addresses of the IP header at l3 into k, source as local when src_local. 0, or -1 when the
 * header is not in the packet. */
static __always_inline int ct_addrs(struct flt_ct_key *k, void *l3, void *data_end, __u32 v6, int src_local)
{
	if (v6) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		__builtin_memcpy(src_local ? k->laddr : k->raddr, &ip6->saddr, 16);
		__builtin_memcpy(src_local ? k->raddr : k->laddr, &ip6->daddr, 16);
		k->family = FLT_FAMILY_V6;
	} else {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > data_end)
			return -1;
		__builtin_memcpy(src_local ? k->laddr : k->raddr, &ip->saddr, 4);
		__builtin_memcpy(src_local ? k->raddr : k->laddr, &ip->daddr, 4);
		k->family = FLT_FAMILY_V4;
	}
	return 0;
}

/* The flow fields of the L4 header at l4 (protocol proto, family v6) into k, oriented as
 * ct_addrs; the TCP flags into *tflags. The kind, CT_NONE when the packet is nothing the tracker
 * follows (another protocol or ICMP type, a header too short for what it needs: TCP's 20 fixed
 * bytes with a data offset of at least 5, 6 bytes of ICMP for the echo identifier, 8 of an ICMP
 * error). */
static __always_inline enum ct_kind ct_l4(struct flt_ct_key *k, __u8 *l4, void *data_end, __u32 proto, __u32 v6, int src_local, __u8 *tflags)
{
	k->proto = proto;
	if (proto == IPPROTO_TCP) {
		if ((void *)(l4 + 20) > data_end || (l4[12] >> 4) < 5)
			return CT_NONE;
		k->lport = *(__be16 *)(src_local ? l4 : l4 + 2);
		k->rport = *(__be16 *)(src_local ? l4 + 2 : l4);
		*tflags = l4[13];
		return CT_TCP;
	}
	if (proto == IPPROTO_UDP) {
		if ((void *)(l4 + 4) > data_end)
			return CT_NONE;
		k->lport = *(__be16 *)(src_local ? l4 : l4 + 2);
		k->rport = *(__be16 *)(src_local ? l4 + 2 : l4);
		return CT_UDP;
	}
	if (v6 ? proto != IPPROTO_ICMPV6_ : proto != IPPROTO_ICMP_)
		return CT_NONE;
	if ((void *)(l4 + 8) > data_end) {
		/* an echo needs its identifier (bytes 4-5) */
		if ((void *)(l4 + 6) > data_end || (l4[0] != (v6 ? 128 : 8) && l4[0] != (v6 ? 129 : 0)))
			return CT_NONE;
	}
	if (l4[0] == (v6 ? 128 : 8) || l4[0] == (v6 ? 129 : 0)) {
		k->lport = *(__be16 *)(l4 + 4);
		k->rport = 0;
		return l4[0] == (v6 ? 128 : 8) ? CT_ECHO_REQ : CT_ECHO_REPLY;
	}
	if (v6 ? l4[0] >= 1 && l4[0] <= 3 : l4[0] == 3 || l4[0] == 11)
		return CT_ICMP_ERR;
	return CT_NONE;
}

/* ---- the table's own numbers (flt_ct_stats): inserts, expiries, resets, misses ----
 * The LRU hash evicts without telling the program, so evictions are not counted here: every flow
 * leaves the table by expiry, reset, eviction (or a delete from user space, which ebpfnet never
 * does), so user space reads them as inserts - expiries - resets - entries (src/filter/ct-table.ts).
 * That holds only if each count here matches one key entering or leaving: an insert is counted
 * when the key was not there, a removal when this CPU's delete removed it. */
static __always_inline void ct_count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&flt_ct_stats, &slot);

	if (c)
		(*c)++;
}

/* Removes flow k, counted in slot (FLT_CTS_EXPIRIES or FLT_CTS_RESETS) if it was still there. */
static __always_inline void ct_forget(struct flt_ct_key *k, __u32 slot)
{
	if (!bpf_map_delete_elem(&flt_ct, k))
		ct_count(slot);
}

/* Writes flow nv for k. A new key is an insert. A key already there (a SYN again on the same
 * ports, a retransmitted SYN an allow rule passed) is overwritten in place: updating it through
 * the map would take a free element again, and in a full LRU table that evicts another flow. An
 * expired flow overwritten so is an expiry and an insert. */
static __always_inline void ct_insert(struct flt_ct_key *k, struct flt_ct_val *nv)
{
	struct flt_ct_val *old;

	if (!bpf_map_update_elem(&flt_ct, k, nv, BPF_NOEXIST)) {
		ct_count(FLT_CTS_INSERTS);
		return;
	}
	old = bpf_map_lookup_elem(&flt_ct, k);
	if (!old) {
		/* gone meanwhile (another CPU's delete, an eviction) */
		if (!bpf_map_update_elem(&flt_ct, k, nv, BPF_NOEXIST))
			ct_count(FLT_CTS_INSERTS);
		return;
	}
	if (!ct_live(&flt_ct_cfg[0], old, nv->last_seen)) {
		ct_count(FLT_CTS_EXPIRIES);
		ct_count(FLT_CTS_INSERTS);
	}
	__builtin_memcpy(old, nv, sizeof(*nv));
}

/* A live flow for k, or NULL; an expired one is deleted on the way (it is absent either way). */
static __always_inline struct flt_ct_val *ct_find(struct flt_ct_cfg *cc, struct flt_ct_key *k, __u64 now)
{
	struct flt_ct_val *v = bpf_map_lookup_elem(&flt_ct, k);

	if (v && !ct_live(cc, v, now)) {
		ct_forget(k, FLT_CTS_EXPIRIES);
		return NULL;
	}
	return v;
}

static __always_inline void ct_start(struct flt_ct_key *k, __u8 state, __u8 flags, __u64 now)
{
	struct flt_ct_val v = { .last_seen = now, .state = state, .flags = flags };

	ct_insert(k, &v);
}

/* A TCP SYN that opens a connection: no ACK, RST or FIN with it. */
static __always_inline int tcp_opens(__u32 f)
{
	return (f & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) == TCP_SYN;
}

/* The tracker runs in global functions, one per context type, each verified once: it reads the
 * packet again from the offsets the parser found (struct pkt). Inlined into filter(), it was walked
 * again on every path out of the parser and through the rules (three to ten times the
 * instructions of the whole program). */
struct ct_q {
	struct flt_ct_key k;	/* the packet's flow; for an ICMP error, the embedded packet's */
	__u32 kind;		/* enum ct_kind */
	__u32 tflags;		/* TCP flags */
	/* TCP: sequence, acknowledgement, raw window, payload length, the SYN's window scale option
	 * (CT_NO_WSCALE when absent) */
	__u32 seq, ack, win, len, wscale;
};

#define CT_NO_WSCALE 0xff

/* TCP sequence arithmetic, modulo 2^32 */
#define SEQ_AFTER(a, b) ((__s32)((__u32)(a) - (__u32)(b)) > 0)

/* All ones when a == b, else 0; all ones when a < b (both under 2^31), else 0. Without branches,
 * and hidden from the compiler (which would turn the masks back into branches): see tcp_wscale. */
static __always_inline __u32 m_eq(__u32 a, __u32 b)
{
	__u32 d = a ^ b, t = d | -d;

	/* hidden, or the compiler sees "d != 0" (and then a 0 or -1) and branches on it */
	asm volatile("" : "+r"(t));
	t = (t >> 31) - 1;
	asm volatile("" : "+r"(t));
	return t;
}

static __always_inline __u32 m_lt(__u32 a, __u32 b)
{
	__u32 t = a - b;

	asm volatile("" : "+r"(t));
	t = -(t >> 31);
	asm volatile("" : "+r"(t));
	return t;
}

/* A SYN's TCP options, copied from the packet for tcp_wscale_walk (2 bytes of room past the 40). */
struct tcp_opts {
	__u8 b[42];
};

/* The window scale option among the n option bytes of o, capped at FLT_CT_WS_MAX as RFC 7323
 * says, or CT_NO_WSCALE. Walked in order from the first byte: end-of-list (kind 0) stops, NOP (1)
 * takes a byte, any other kind takes its length byte's count, and stops the walk when that byte is
 * past n or under 2; the first kind 3 of length 3 whose value byte is within n is the scale.
 * Arithmetic on masks, without branches: a walk that branches at each option start is a path per
 * option layout for the verifier (a million instructions); this is one straight path. A global
 * function, verified once whatever the number of bytes its callers copied. */
__noinline __u32 tcp_wscale_walk(struct tcp_opts *o, __u32 n)
{
	__u32 i, at = 0, ws = 0, have = 0;

	if (!o)
		return CT_NO_WSCALE;
#pragma clang loop unroll(disable)
	for (i = 0; i < 40; i++) {
		__u32 kind = o->b[i], len = o->b[i + 1];
		__u32 live = m_eq(i, at) & m_lt(i, n), nop = m_eq(kind, 1);
		__u32 stop = m_eq(kind, 0) | (~nop & (m_lt(len, 2) | ~m_lt(i + 1, n)));
		__u32 hit = live & ~have & m_eq(kind, 3) & m_eq(len, 3) & m_lt(i + 2, n);
		__u32 next = i + ((1 & nop) | (len & ~nop));

		ws = (ws & ~hit) | (o->b[i + 2] & hit);
		have |= hit;
		at = (at & ~live) | (next & live);
		at = (at & ~(live & stop)) | (0xff & live & stop);
	}
	if (!have)
		return CT_NO_WSCALE;
	return ws > FLT_CT_WS_MAX ? FLT_CT_WS_MAX : ws;
}

/* The window scale option of a SYN's TCP header at l4 (its data offset checked by ct_l4): the
 * option bytes up to the data offset or the packet's end, walked by tcp_wscale_walk. */
static __always_inline __u32 tcp_wscale(__u8 *l4, void *data_end)
{
	struct tcp_opts o = {};
	__u32 n = (l4[12] >> 4) * 4 - 20, i;

	for (i = 0; i < 40; i++) {
		if (i >= n || (void *)(l4 + 21 + i) > data_end)
			break;
		o.b[i] = l4[20 + i];
	}
	return tcp_wscale_walk(&o, i);
}

/* TCP windows (the tracker's simplified form of netfilter's): see the README's connection state.
 * The sequence space one TCP segment takes: its payload, plus one each for SYN and FIN. */
static __always_inline __u32 tcp_end(struct ct_q *q)
{
	return q->seq + q->len + !!(q->tflags & TCP_SYN) + !!(q->tflags & TCP_FIN);
}

/* The window a segment from one side advertises, in bytes: a SYN's is never scaled; the rest are
 * scaled by the sender's SYN option when both SYNs carried one (RFC 7323). */
static __always_inline __u32 tcp_window(struct flt_ct_val *v, struct ct_q *q, __u32 remote)
{
	if ((q->tflags & TCP_SYN) || (v->tcp & (FLT_CT_T_L_WS | FLT_CT_T_R_WS)) != (FLT_CT_T_L_WS | FLT_CT_T_R_WS))
		return q->win;
	return q->win << ((remote ? v->r_wscale : v->l_wscale) & 15);
}

/* Whether a segment from the far side fits what the host has seen: its sequence no further than
 * the host let it send (r_maxend) and its end no older than a window behind what the far side
 * sent before; its ack (with ACK set) not ahead of what the host sent, and, once the far side's
 * sequence is known, no more than its largest window (or FLT_CT_MAXACKWIN) behind. A side whose
 * sequence is not known yet is not checked. */
__noinline int tcp_in_window(struct flt_ct_val *v, struct ct_q *q)
{
	__u32 maxack;

	if (!v || !q)
		return 1;
	if (v->tcp & FLT_CT_T_R_KNOWN) {
		if (SEQ_AFTER(q->seq, v->r_maxend) || !SEQ_AFTER(tcp_end(q), v->r_end - v->l_maxwin - 1))
			return 0;
	}
	if ((q->tflags & TCP_ACK) && (v->tcp & FLT_CT_T_L_KNOWN)) {
		if (SEQ_AFTER(q->ack, v->l_end))
			return 0;
		maxack = v->r_maxwin > FLT_CT_MAXACKWIN ? v->r_maxwin : FLT_CT_MAXACKWIN;
		if ((v->tcp & FLT_CT_T_R_KNOWN) && !SEQ_AFTER(q->ack, v->l_end - maxack - 1))
			return 0;
	}
	return 1;
}

/* A segment counted as the flow, from the local side (remote == 0) or the far side: the sender's
 * end, largest window and (on its first segment) SYN option; with the local side's ACK, how far
 * the far side may now send. Global functions, both: verified once, not once per caller. */
__noinline int tcp_update(struct flt_ct_val *v, struct ct_q *q, __u32 remote)
{
	__u32 end, win, known = remote ? FLT_CT_T_R_KNOWN : FLT_CT_T_L_KNOWN;

	if (!v || !q)
		return 0;
	end = tcp_end(q);
	win = tcp_window(v, q, remote);
	if (!win)
		win = 1;
	if (!(v->tcp & known)) {
		v->tcp |= known;
		if ((q->tflags & TCP_SYN) && q->wscale != CT_NO_WSCALE) {
			v->tcp |= remote ? FLT_CT_T_R_WS : FLT_CT_T_L_WS;
			if (remote)
				v->r_wscale = q->wscale;
			else
				v->l_wscale = q->wscale;
		}
		if (remote) {
			v->r_end = end;
			v->r_maxwin = win;
			v->r_maxend = end + v->l_maxwin;
		} else {
			v->l_end = end;
			v->l_maxwin = win;
		}
	} else if (remote) {
		if (SEQ_AFTER(end, v->r_end))
			v->r_end = end;
		if (win > v->r_maxwin)
			v->r_maxwin = win;
	} else {
		if (SEQ_AFTER(end, v->l_end))
			v->l_end = end;
		if (win > v->l_maxwin)
			v->l_maxwin = win;
	}
	if (!remote && (q->tflags & TCP_ACK) && (v->tcp & FLT_CT_T_R_KNOWN) && SEQ_AFTER(q->ack + win, v->r_maxend))
		v->r_maxend = q->ack + win;
	return 0;
}

/* A new TCP flow from an opening SYN: SYN_SENT, the opener's side known. */
static __always_inline void ct_tcp_start(struct ct_q *q, __u32 remote, __u64 now)
{
	struct flt_ct_val v = { .last_seen = now, .state = FLT_CT_SYN_SENT, .flags = remote ? FLT_CT_F_ORIG_REMOTE : 0 };

	tcp_update(&v, q, remote);
	ct_insert(&q->k, &v);
}

/* Mid-stream pickup: the host sends an ACK of a connection the table does not hold (lost to the
 * LRU or a timeout, or opened before the filter): ESTABLISHED, the local side known from this
 * segment, the far side's learnt from its first segment (only "not ahead" checks its ack until
 * then), and window scales unknown, so both taken as FLT_CT_WS_MAX (liberal: a real connection
 * never falls outside). */
static __always_inline void ct_tcp_pickup(struct ct_q *q, __u64 now)
{
	struct flt_ct_val v = {
		.last_seen = now, .state = FLT_CT_ESTABLISHED,
		.tcp = FLT_CT_T_PICKUP | FLT_CT_T_L_WS | FLT_CT_T_R_WS, .l_wscale = FLT_CT_WS_MAX, .r_wscale = FLT_CT_WS_MAX,
	};

	tcp_update(&v, q, 0);
	ct_insert(&q->k, &v);
}

/* A packet of flow v from the local side (remote == 0) or the remote side: 1 when it counts as
 * the flow (and the flow is updated; a RST deletes it), 0 when it does not, -1 for a far side's
 * TCP segment out of window (nothing changes: an out-of-window RST does not close the flow). */
static __always_inline int ct_advance(struct ct_q *q, struct flt_ct_val *v, __u32 remote, __u64 now)
{
	/* the side that did not open the flow */
	__u32 answering = remote ? !(v->flags & FLT_CT_F_ORIG_REMOTE) : !!(v->flags & FLT_CT_F_ORIG_REMOTE);
	__u32 f = q->tflags;

	if (q->kind == CT_TCP) {
		if (tcp_opens(f) || v->state > FLT_CT_TIME_WAIT)
			return 0;
		if (v->state == FLT_CT_SYN_SENT && answering && !(f & TCP_RST) && (f & (TCP_SYN | TCP_ACK)) != (TCP_SYN | TCP_ACK))
			return 0;
		if (remote && !tcp_in_window(v, q))
			return -1;
		if (f & TCP_RST) {
			ct_forget(&q->k, FLT_CTS_RESETS);
			return 1;
		}
		tcp_update(v, q, remote);
		if (f & TCP_FIN) {
			v->flags |= remote ? FLT_CT_F_FIN_REMOTE : FLT_CT_F_FIN_LOCAL;
			v->state = (v->flags & (FLT_CT_F_FIN_REMOTE | FLT_CT_F_FIN_LOCAL)) == (FLT_CT_F_FIN_REMOTE | FLT_CT_F_FIN_LOCAL) ? FLT_CT_TIME_WAIT : FLT_CT_CLOSING;
		} else if (v->state == FLT_CT_SYN_SENT && answering) {
			v->state = FLT_CT_ESTABLISHED;
		}
	} else if (q->kind == CT_UDP ? v->state != FLT_CT_UDP : v->state != FLT_CT_ICMP) {
		return 0;
	}
	if (answering)
		v->flags |= FLT_CT_F_REPLIED;
	v->last_seen = now;
	return 1;
}

/* The flow an ICMP error's embedded header (a packet the host sent) belongs to, into k: 0, or -1
 * when the embedded packet is not one the tracker follows. Only a first fragment or whole packet
 * of the outer family, and for IPv6 with no extension header before its L4. */
static __always_inline int ct_embedded(struct flt_ct_key *k, __u8 *icmp, void *data_end, __u32 v6)
{
	__u8 *in = icmp + 8, *l4, f = 0;
	__u32 proto;
	enum ct_kind kind;

	if (v6) {
		struct ipv6hdr *ip6 = (void *)in;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return -1;
		proto = ip6->nexthdr;
		l4 = in + sizeof(*ip6);
	} else {
		struct iphdr *ip = (void *)in;

		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5 || (ip->frag_off & bpf_htons(0x1fff)))
			return -1;
		proto = ip->protocol;
		l4 = in + ip->ihl * 4;
	}
	if (ct_addrs(k, in, data_end, v6, 1))
		return -1;
	kind = ct_l4(k, l4, data_end, proto, v6, 1, &f);
	/* only the ports are needed of the quoted TCP header (8 bytes are quoted, not the flags) */
	if (kind == CT_NONE && proto == IPPROTO_TCP && (void *)(l4 + 4) <= data_end) {
		k->lport = *(__be16 *)l4;
		k->rport = *(__be16 *)(l4 + 2);
		kind = CT_TCP;
	}
	return kind == CT_NONE || kind == CT_ICMP_ERR ? -1 : 0;
}

/* Packs what the tracker needs of struct pkt besides the offsets into one argument (a global
 * function takes five). */
#define CT_META(p) ((p)->v6 | ((p)->proto & 0xff) << 8)

/* The packet's flow into q, the source as local when src_local (egress). A TCP segment's payload
 * length: on egress from skb_len (the whole skb, a GSO one too, Ethernet header included), on
 * ingress from the IP header's length (a frame may be padded); never below 0. */
static __always_inline void ct_query(struct ct_q *q, void *data, void *data_end, __u32 l3off, __u32 l4off, __u32 meta, int src_local,
				     __u32 skb_len)
{
	__u32 v6 = meta & 1, proto = (meta >> 8) & 0xff;
	__u8 f = 0, *l4;

	q->kind = CT_NONE;
	/* no-ops that give the verifier the parser's bounds: L3 after at most FLT_MAX_VLAN_TAGS tags
	 * (under OFF_MASK), L4 within FLT_MAX_HEADER_OFFSET plus an IPv4 header's 60 bytes */
	l3off &= OFF_MASK;
	l4off &= 0x7ff;
	if (ct_addrs(&q->k, data + l3off, data_end, v6, src_local))
		return;
	l4 = data + l4off;
	q->kind = ct_l4(&q->k, l4, data_end, proto, v6, src_local, &f);
	q->tflags = f;
	if (q->kind == CT_TCP) {
		__s32 n;

		if ((void *)(l4 + 20) > data_end)
			return;
		q->seq = bpf_ntohl(*(__be32 *)(l4 + 4));
		q->ack = bpf_ntohl(*(__be32 *)(l4 + 8));
		q->win = bpf_ntohs(*(__be16 *)(l4 + 14));
		n = -(__s32)((l4[12] >> 4) * 4);
		if (src_local) {
			n += skb_len - l4off;
		} else if (v6) {
			struct ipv6hdr *ip6 = data + l3off;

			if ((void *)(ip6 + 1) > data_end)
				return;
			n += bpf_ntohs(ip6->payload_len) + sizeof(*ip6) - (l4off - l3off);
		} else {
			struct iphdr *ip = data + l3off;

			if ((void *)(ip + 1) > data_end)
				return;
			n += bpf_ntohs(ip->tot_len) - (l4off - l3off);
		}
		q->len = n > 0 ? n : 0;
		q->wscale = f & TCP_SYN ? tcp_wscale(l4, data_end) : CT_NO_WSCALE;
	} else if (q->kind == CT_ICMP_ERR) {
		__builtin_memset(&q->k, 0, sizeof(q->k));
		if (ct_embedded(&q->k, l4, data_end, v6))
			q->kind = CT_NONE;
	}
}

enum ct_verdict { CT_UNTRACKED, CT_PASS_ESTABLISHED, CT_PASS_RELATED, CT_OUT_OF_WINDOW };

/* An ingress packet the policy did not deny: part of a live flow, related to one, out of a
 * tracked connection's window, or none of them (then an allow rule's new connection starts a
 * flow: allowed is an allow rule's win). */
static __always_inline int ct_ingress(void *data, void *data_end, __u32 l3off, __u32 l4off, __u32 meta, __u32 allowed)
{
	struct flt_ct_cfg *cc = &flt_ct_cfg[0];
	struct ct_q q = {};
	struct flt_ct_val *v;
	__u64 now;
	int a;

	ct_query(&q, data, data_end, l3off, l4off, meta, 0, 0);
	if (q.kind == CT_NONE)
		return CT_UNTRACKED;
	/* an opening SYN is never a flow's packet: no lookup for it (a SYN flood pays none) */
	if (q.kind == CT_TCP && tcp_opens(q.tflags)) {
		if (allowed)
			ct_tcp_start(&q, 1, ct_now(cc));
		return CT_UNTRACKED;
	}
	now = ct_now(cc);
	v = ct_find(cc, &q.k, now);
	/* a packet that can only belong to a connection, of none the table holds (evicted, expired,
	 * reset, or never seen): judged by the rules below, and counted so a full table is not silent */
	if (!v && (q.kind == CT_TCP || q.kind == CT_ECHO_REPLY))
		ct_count(FLT_CTS_MISSES);
	if (q.kind == CT_ICMP_ERR)
		return v ? CT_PASS_RELATED : CT_UNTRACKED;
	if (v) {
		a = ct_advance(&q, v, 1, now);
		if (a > 0)
			return CT_PASS_ESTABLISHED;
		if (a < 0)
			return CT_OUT_OF_WINDOW;
	}
	if (allowed) {
		if (q.kind == CT_UDP && !v)
			ct_start(&q.k, FLT_CT_UDP, FLT_CT_F_ORIG_REMOTE, now);
		else if (q.kind == CT_ECHO_REQ && !v)
			ct_start(&q.k, FLT_CT_ICMP, FLT_CT_F_ORIG_REMOTE, now);
	}
	return CT_UNTRACKED;
}

__noinline int ct_ingress_xdp(struct xdp_md *ctx, __u32 l3off, __u32 l4off, __u32 meta, __u32 allowed)
{
	if (!ctx)
		return CT_UNTRACKED;
	return ct_ingress((void *)(long)ctx->data, (void *)(long)ctx->data_end, l3off, l4off, meta, allowed);
}

__noinline int ct_ingress_skb(struct __sk_buff *skb, __u32 l3off, __u32 l4off, __u32 meta, __u32 allowed)
{
	if (!skb)
		return CT_UNTRACKED;
	return ct_ingress((void *)(long)skb->data, (void *)(long)skb->data_end, l3off, l4off, meta, allowed);
}

/* A packet the host sends (skb_len: the skb's length): refreshes or advances its flow, or opens
 * one (a TCP ACK of no flow is picked up mid-stream). */
__noinline int ct_egress_skb(struct __sk_buff *skb, __u32 l3off, __u32 l4off, __u32 meta, __u32 skb_len)
{
	struct flt_ct_cfg *cc = &flt_ct_cfg[0];
	struct ct_q q = {};
	struct flt_ct_val *v;
	__u64 now;

	if (!skb)
		return 0;
	ct_query(&q, (void *)(long)skb->data, (void *)(long)skb->data_end, l3off, l4off, meta, 1, skb_len);
	if (q.kind == CT_NONE || q.kind == CT_ICMP_ERR)
		return 0;
	now = ct_now(cc);
	if (q.kind == CT_TCP && tcp_opens(q.tflags)) {
		/* a new connection, or the same ports again after the old one: starts over */
		ct_tcp_start(&q, 0, now);
		return 0;
	}
	v = ct_find(cc, &q.k, now);
	if (v)
		ct_advance(&q, v, 0, now);
	else if (q.kind == CT_UDP)
		ct_start(&q.k, FLT_CT_UDP, 0, now);
	else if (q.kind == CT_ECHO_REQ)
		ct_start(&q.k, FLT_CT_ICMP, 0, now);
	else if (q.kind == CT_TCP && (q.tflags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) == TCP_ACK)
		ct_tcp_pickup(&q, now);
	return 0;
}

/* FLT_ALLOW or FLT_DENY for this packet, counting it against the rule (or statistic) that decided. */
static __always_inline __u32 filter(void *ctx, int xdp, void *data, void *data_end, __u64 bytes)
{
	struct pkt p = { .l3 = data };
	struct flt_cfg *cfg = &flt_cfg[0];
	struct flt_ct_cfg *ct_cfg = &flt_ct_cfg[0];
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

	/* State (precedence at the top of the file): an explicit deny decides before it */
	if (ct_cfg->stateful && (rule == FLT_NO_RULE || action != FLT_DENY)) {
		int cv = !p.has_port ? CT_UNTRACKED
			 : xdp ? ct_ingress_xdp(ctx, p.l3off, p.l4off, CT_META(&p), rule != FLT_NO_RULE)
			       : ct_ingress_skb(ctx, p.l3off, p.l4off, CT_META(&p), rule != FLT_NO_RULE);

		if (cv == CT_OUT_OF_WINDOW) {
			/* a tracked connection's segment out of its window: dropped whatever the rules say */
			count(&flt_stats, FLT_STAT_OUT_OF_WINDOW, bytes);
			if (flags & FLT_F_AUDIT) {
				count(&flt_stats, FLT_STAT_AUDIT, bytes);
				return FLT_ALLOW;
			}
			return FLT_DENY;
		}
		if (cv != CT_UNTRACKED) {
			count(&flt_stats, cv == CT_PASS_RELATED ? FLT_STAT_RELATED : FLT_STAT_ESTABLISHED, bytes);
			return FLT_ALLOW;
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

	return filter(ctx, 1, data, data_end, data_end - data) == FLT_DENY ? XDP_DROP : XDP_PASS;
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
	return filter(skb, 0, data, data_end, skb->len) == FLT_DENY ? TC_ACT_SHOT : TC_ACT_OK;
}

/* tc egress: records what the host sends (connection tracking); never drops. Attached only with
 * state on, but it checks the switch too, so a stateless filter writes nothing. */
SEC("tc")
int filter_egress(struct __sk_buff *skb)
{
	struct flt_ct_cfg *cc = &flt_ct_cfg[0];
	void *data, *data_end;
	__u32 lin, len;

	if (!cc->stateful)
		return TC_ACT_OK;
	lin = linear_len(skb);
	len = skb->len;
	if (lin < 128 && len > lin)
		bpf_skb_pull_data(skb, len < 128 ? len : 128);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	{
		struct pkt p = { .l3 = data };

		/* what the parser does not read as IP is nothing to the tracker */
		if (parse(data, data_end, &p, flt_cfg[0].zero) == P_IP && p.has_port)
			ct_egress_skb(skb, p.l3off, p.l4off, CT_META(&p), len);
	}
	return TC_ACT_OK;
}
