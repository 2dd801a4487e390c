// SPDX-License-Identifier: GPL-2.0
/* The runtime's own test object. It exercises each thing src/loader must handle: a hash map driving a
 * verdict, per-CPU counters, a ring buffer with a lost-event count, a tracepoint, and const volatile
 * configuration. Users never run it; the kernel tests and tools/bench/runtime do. */
#include "common.h"
#include "gen/selftest.maps.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline struct st_counters *counters(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&st_counters, &zero);
}

SEC("xdp")
int st_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct st_counters *c = counters();
	struct st_key key = {};
	struct st_rule *rule;
	__u32 action = st_config.default_action;
	__u64 cookie = 0;

	if (!c)
		return XDP_ABORTED;
	if (data + sizeof(key) <= data_end) {
		__builtin_memcpy(&key, data, sizeof(key));
		rule = bpf_map_lookup_elem(&st_rules, &key);
		if (rule) {
			action = rule->action;
			cookie = rule->cookie;
		}
	}
	c->packets++;
	c->bytes += data_end - data;

	/* The branch is pruned by the verifier when emit_events is 0 at load time. */
	if (st_config.emit_events) {
		struct st_event *e = bpf_ringbuf_reserve(&st_events, sizeof(*e), 0);

		if (!e) {
			c->lost++;
		} else {
			e->seq = c->packets;
			e->cookie = cookie;
			e->len = data_end - data;
			e->cpu = bpf_get_smp_processor_id();
			/* No wake-up per event: the reader polls, which spares the producer an IPI. */
			bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
		}
	}
	return action;
}

SEC("tracepoint/syscalls/sys_enter_getpgid")
int st_getpgid(void *ctx)
{
	struct st_counters *c;

	if ((bpf_get_current_pid_tgid() >> 32) != st_config.target_tgid)
		return 0;
	c = counters();
	if (c)
		c->calls++;
	return 0;
}

SEC("cgroup/connect4")
int st_connect4(struct bpf_sock_addr *ctx)
{
	/* user_port holds the port in network byte order; returning 0 fails connect() with EPERM. */
	if (st_config.deny_port && ctx->user_port == bpf_htons(st_config.deny_port))
		return 0;
	return 1;
}
