// SPDX-License-Identifier: GPL-2.0
/* Socket-level service load balancing, the way Cilium replaces kube-proxy: a process in the attached
 * cgroup connects (or sends a datagram) to a service VIP:port and the socket hook rewrites the
 * destination to a backend before any packet exists. No packet is rewritten afterwards, so the cost
 * is a few hash lookups per connect(), whatever the number of services.
 *
 * Maps (maps/lb.json): lb_meta.gen names the live generation; lb_svc[VIP,port,proto,gen] names a slot
 * table (svc_id, rev) and its size; lb_slots[svc_id,rev,i] holds backend ids, each active backend
 * repeated in proportion to its weight, so a weighted random choice is one random index and one
 * lookup. A service with a single backend names it in lb_svc itself and has no table. User space never edits a live slot table: it writes rev+1, switches the lb_svc entry with
 * one update, then deletes rev. A hook that read the old entry just before the switch may find its
 * slot already deleted; it reads the service again, and then sees the new table.
 *
 * Every address is 16 bytes, IPv4 as ::ffff:a.b.c.d, so connect4 and connect6 to an IPv4-mapped VIP
 * find the same service, and the reverse entries written by sendmsg4 on a dual-stack socket match
 * what recvmsg6 sees. */
#include "common.h"
#include "gen/lb.maps.h"

char LICENSE[] SEC("license") = "GPL";

#define ECONNREFUSED 111
#define NSEC_PER_SEC 1000000000ULL

/* What a hook does with the address it was given. */
enum verdict {
	PASS,		/* not a service: leave the address alone */
	XLATED,		/* rewritten to a backend */
	REFUSE,		/* a service without an active backend: fail the call */
};

struct addr16 {
	__u32 w[4]; /* network byte order words, as in bpf_sock_addr.user_ip6 */
};

static __always_inline void set_mapped4(struct addr16 *a, __u32 ip4)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0x0000ffff);
	a->w[3] = ip4;
}

static __always_inline int is_mapped4(const struct addr16 *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void count_svc(__u32 svc_id, int conn, int reject, int affinity, int miss)
{
	struct lb_svc_stats *s = bpf_map_lookup_elem(&lb_svc_stats, &svc_id);

	if (!s) {
		/* First use on this machine: create it. Another CPU may win the race (EEXIST); then
		 * its entry is there to count in. Per-CPU values need no atomics. */
		struct lb_svc_stats init = { .conns = conn, .rejects = reject, .affinity = affinity, .misses = miss };

		if (!bpf_map_update_elem(&lb_svc_stats, &svc_id, &init, BPF_NOEXIST))
			return;
		s = bpf_map_lookup_elem(&lb_svc_stats, &svc_id);
		if (!s)
			return;
	}
	s->conns += conn;
	s->rejects += reject;
	s->affinity += affinity;
	s->misses += miss;
}

static __always_inline void count_backend(__u32 id)
{
	struct lb_be_stats *s = bpf_map_lookup_elem(&lb_be_stats, &id);

	if (!s) {
		struct lb_be_stats init = { .conns = 1 };

		if (!bpf_map_update_elem(&lb_be_stats, &id, &init, BPF_NOEXIST))
			return;
		s = bpf_map_lookup_elem(&lb_be_stats, &id);
		if (!s)
			return;
	}
	s->conns++;
}

/* The backend a session-affinity entry names, if it is still valid: within the timeout, still a
 * member of this service and still active (a draining backend takes no new connections, even from
 * a namespace that used it before). */
static __always_inline struct lb_backend *affinity_backend(struct lb_aff_val *a, __u32 svc_id, __u64 timeout_ns, __u64 now,
							   __u32 *id)
{
	struct lb_backend *be;

	if (now - a->last_used > timeout_ns)
		return NULL;
	*id = a->backend_id;
	be = bpf_map_lookup_elem(&lb_backends, id);
	if (!be || be->svc_id != svc_id || be->state != LB_STATE_ACTIVE)
		return NULL;
	return be;
}

/* A random selection slot's backend id (or the service's only backend, which needs no table);
 * 0 when the slot is gone: a concurrent change deleted the table we were reading. */
static __always_inline __u32 draw(struct lb_slot_key *sk, __u32 nslots, __u32 only)
{
	__u32 *idp;

	if (only)
		return only;
	sk->slot = bpf_get_prandom_u32() % nslots;
	idp = bpf_map_lookup_elem(&lb_slots, sk);
	return idp ? *idp : 0;
}

/* Looks the service up and picks a backend: its address and port go to *dst. */
static __always_inline enum verdict pick(struct bpf_sock_addr *ctx, struct addr16 *dst, __be16 *port, __u8 proto)
{
	struct lb_svc_key key = {};
	__u32 zero = LB_META_KEY;
	__u32 svc_id = 0;
	int i;

	__builtin_memcpy(key.addr, dst, sizeof(key.addr));
	key.port = *port;
	key.proto = proto;

	/* Two rounds: the second only after a concurrent change (generation flip or slot table switch)
	 * made the first one's entries vanish under us. */
	for (i = 0; i < 2; i++) {
		struct lb_meta *meta = bpf_map_lookup_elem(&lb_meta, &zero);
		struct lb_backend *be = NULL;
		struct lb_slot_key sk = {};
		struct lb_svc *svc;
		__u32 nslots, timeout, only, id = 0;
		__u64 now = 0;
		int sticky = 0;

		if (!meta)
			return PASS;
		key.gen = meta->gen;
		svc = bpf_map_lookup_elem(&lb_svc, &key);
		if (!svc) {
			/* Not a service, unless `lb apply` flipped the generation (and deleted the old
			 * one) since we read it: then look again in the new one. */
			if (i == 0 && meta->gen != key.gen)
				continue;
			return PASS;
		}
		/* Read the entry once: user space replaces it, never edits it in place. */
		svc_id = svc->svc_id;
		sk.svc_id = svc_id;
		sk.rev = svc->rev;
		nslots = svc->slots;
		timeout = svc->affinity_timeout;
		only = svc->backend_id;
		if (nslots == 0 || nslots > LB_MAX_SLOTS) {
			count_svc(svc_id, 0, 1, 0, 0);
			return REFUSE;
		}

		if (timeout) {
			struct lb_aff_key ak = { .netns_cookie = bpf_get_netns_cookie(ctx), .svc_id = svc_id };
			struct lb_aff_val *a = bpf_map_lookup_elem(&lb_affinity, &ak);

			now = bpf_ktime_get_ns();
			if (a) {
				be = affinity_backend(a, svc_id, timeout * NSEC_PER_SEC, now, &id);
				if (be) {
					a->last_used = now;
					sticky = 1;
				}
			}
			if (!be) {
				id = draw(&sk, nslots, only);
				be = id ? bpf_map_lookup_elem(&lb_backends, &id) : NULL;
				if (!be)
					continue;
				struct lb_aff_val nv = { .backend_id = id, .last_used = now };

				bpf_map_update_elem(&lb_affinity, &ak, &nv, BPF_ANY);
			}
		} else {
			id = draw(&sk, nslots, only);
			be = id ? bpf_map_lookup_elem(&lb_backends, &id) : NULL;
			if (!be)
				continue;
		}

		/* Reverse entry first, so a reply can never arrive before it: recvmsg and getpeername
		 * on this socket show the VIP instead of the backend. */
		struct lb_rev_key rk = { .cookie = bpf_get_socket_cookie(ctx), .port = be->port };
		struct lb_rev_val rv = { .port = *port };

		__builtin_memcpy(rk.addr, be->addr, sizeof(rk.addr));
		__builtin_memcpy(rv.addr, dst, sizeof(rv.addr));
		bpf_map_update_elem(&lb_revnat, &rk, &rv, BPF_ANY);

		__builtin_memcpy(dst, be->addr, sizeof(*dst));
		*port = be->port;
		count_svc(svc_id, 1, 0, sticky, 0);
		count_backend(id);
		return XLATED;
	}
	/* Only reached when a slot or backend was missing twice in a row: the maps are inconsistent
	 * (a writer died half-way). Refusing is better than sending the connection to a VIP that
	 * nothing answers. */
	if (svc_id)
		count_svc(svc_id, 0, 1, 0, 1);
	return REFUSE;
}

/* connect() and sendmsg() fail with ECONNREFUSED, as they would against a closed port, instead of
 * the EPERM a bare `return 0` gives. bpf_set_retval() exists for these hooks since 5.18; on older
 * kernels the call is compiled out at load time (CO-RE) and the caller sees EPERM. */
static __always_inline int refuse(void)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_set_retval))
		bpf_set_retval(-ECONNREFUSED);
	return 0;
}

static __always_inline int forward4(struct bpf_sock_addr *ctx)
{
	struct addr16 a;
	__be16 port = ctx->user_port;
	__u8 proto = ctx->protocol;

	if (proto != LB_PROTO_TCP && proto != LB_PROTO_UDP)
		return 1;
	set_mapped4(&a, ctx->user_ip4);
	switch (pick(ctx, &a, &port, proto)) {
	case XLATED:
		/* A v4 service only has v4 backends (user space checks); never write half an address. */
		if (!is_mapped4(&a))
			return refuse();
		ctx->user_ip4 = a.w[3];
		ctx->user_port = port;
		return 1;
	case REFUSE:
		return refuse();
	default:
		return 1;
	}
}

static __always_inline int forward6(struct bpf_sock_addr *ctx)
{
	struct addr16 a;
	__be16 port = ctx->user_port;
	__u8 proto = ctx->protocol;

	if (proto != LB_PROTO_TCP && proto != LB_PROTO_UDP)
		return 1;
	a.w[0] = ctx->user_ip6[0];
	a.w[1] = ctx->user_ip6[1];
	a.w[2] = ctx->user_ip6[2];
	a.w[3] = ctx->user_ip6[3];
	switch (pick(ctx, &a, &port, proto)) {
	case XLATED:
		/* An IPv4-mapped VIP gets an IPv4-mapped backend: the dual-stack socket stays IPv4. */
		ctx->user_ip6[0] = a.w[0];
		ctx->user_ip6[1] = a.w[1];
		ctx->user_ip6[2] = a.w[2];
		ctx->user_ip6[3] = a.w[3];
		ctx->user_port = port;
		return 1;
	case REFUSE:
		return refuse();
	default:
		return 1;
	}
}

/* Replies and getpeername(): the backend this socket was sent to becomes the VIP again. */
static __always_inline int reverse(struct bpf_sock_addr *ctx, struct addr16 *a)
{
	struct lb_rev_key rk = { .cookie = bpf_get_socket_cookie(ctx), .port = ctx->user_port };
	struct lb_rev_val *rv;

	__builtin_memcpy(rk.addr, a, sizeof(rk.addr));
	rv = bpf_map_lookup_elem(&lb_revnat, &rk);
	if (!rv)
		return 0;
	__builtin_memcpy(a, rv->addr, sizeof(*a));
	ctx->user_port = rv->port;
	return 1;
}

static __always_inline int reverse4(struct bpf_sock_addr *ctx)
{
	struct addr16 a;

	set_mapped4(&a, ctx->user_ip4);
	if (reverse(ctx, &a) && is_mapped4(&a))
		ctx->user_ip4 = a.w[3];
	return 1;
}

static __always_inline int reverse6(struct bpf_sock_addr *ctx)
{
	struct addr16 a;

	a.w[0] = ctx->user_ip6[0];
	a.w[1] = ctx->user_ip6[1];
	a.w[2] = ctx->user_ip6[2];
	a.w[3] = ctx->user_ip6[3];
	if (reverse(ctx, &a)) {
		ctx->user_ip6[0] = a.w[0];
		ctx->user_ip6[1] = a.w[1];
		ctx->user_ip6[2] = a.w[2];
		ctx->user_ip6[3] = a.w[3];
	}
	return 1;
}

SEC("cgroup/connect4")
int lb_connect4(struct bpf_sock_addr *ctx)
{
	return forward4(ctx);
}

SEC("cgroup/connect6")
int lb_connect6(struct bpf_sock_addr *ctx)
{
	return forward6(ctx);
}

SEC("cgroup/sendmsg4")
int lb_sendmsg4(struct bpf_sock_addr *ctx)
{
	return forward4(ctx);
}

SEC("cgroup/sendmsg6")
int lb_sendmsg6(struct bpf_sock_addr *ctx)
{
	return forward6(ctx);
}

/* recvmsg and getpeername hooks must return 1: the kernel does not let them fail the call. */
SEC("cgroup/recvmsg4")
int lb_recvmsg4(struct bpf_sock_addr *ctx)
{
	return reverse4(ctx);
}

SEC("cgroup/recvmsg6")
int lb_recvmsg6(struct bpf_sock_addr *ctx)
{
	return reverse6(ctx);
}

SEC("cgroup/getpeername4")
int lb_getpeername4(struct bpf_sock_addr *ctx)
{
	return reverse4(ctx);
}

SEC("cgroup/getpeername6")
int lb_getpeername6(struct bpf_sock_addr *ctx)
{
	return reverse6(ctx);
}
