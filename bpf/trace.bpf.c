// SPDX-License-Identifier: GPL-2.0
/* The syscall tracer behind `ebpfnet trace`. For each traced path syscall, a sys_enter program keeps
 * what the call was asked to do in the calling thread's slot of tr_inflight, and the one sys_exit
 * program, attached to the exit tracepoint of every traced syscall, turns it into a tr_event on the
 * ring buffer.
 *
 * tr_inflight is an array indexed by thread id modulo its size rather than a hash keyed by thread
 * id: a slot costs an inlined lookup and a compare-and-swap, where a hash costs an update, a lookup
 * and a delete, each taking a bucket lock, on every call. A slot belongs to one thread from entry to
 * exit (its `owner`); a thread whose slot is held by another thread inside a traced syscall at that
 * moment is not traced, and counted (`untracked`), never mixed up with the other.
 *
 * Adding a syscall (rmdir, unlink, unlinkat) is: a TR_SYS_* constant and an entry program in
 * maps/trace.json, three lines below saying where its arguments are, and one row in
 * src/trace/syscalls.ts. The exit side and user space are shared.
 *
 * Filters (pid, uid, cgroup, failed only) are const volatile: the verifier sees them as constants and
 * drops the checks that are off, and a filtered-out call costs user space nothing. */
#include "common.h"
#include "gen/trace.maps.h"

char LICENSE[] SEC("license") = "GPL";

/* how deep below --cgroup a task may sit and still match; systemd and Kubernetes stay well within */
#define TR_MAX_CGROUP_DEPTH 32

/* slot_of() masks a thread id into tr_inflight */
_Static_assert((TR_INFLIGHT_MAX_ENTRIES & (TR_INFLIGHT_MAX_ENTRIES - 1)) == 0, "tr_inflight's size must be a power of two");

static __always_inline struct tr_counters *counters(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&tr_counters, &zero);
}

static __always_inline struct tr_args *slot_of(__u32 tid)
{
	__u32 i = tid & (TR_INFLIGHT_MAX_ENTRIES - 1);

	return bpf_map_lookup_elem(&tr_inflight, &i);
}

/* The task's cgroup is the target or below it. The ancestor walk stops at the task's own depth (the
 * helper returns 0 past it), so the loop only costs what the task's nesting costs. */
static __always_inline bool in_target_cgroup(void)
{
	__u64 target = tr_config.target_cgroup;

	if (bpf_get_current_cgroup_id() == target)
		return true;
	for (int level = 0; level < TR_MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);

		if (!id)
			return false;
		if (id == target)
			return true;
	}
	return false;
}

static __always_inline bool wanted(__u64 pid_tgid)
{
	if (tr_config.target_tgid && (__u32)(pid_tgid >> 32) != tr_config.target_tgid)
		return false;
	if (tr_config.filter_uid && (__u32)bpf_get_current_uid_gid() != tr_config.target_uid)
		return false;
	if (tr_config.target_cgroup && !in_target_cgroup())
		return false;
	return true;
}

/* Shared by every entry program. Callers read their arguments from ctx->args[] with constant
 * indices (the verifier refuses a ctx access through a computed offset) and pass the values. */
static __always_inline int on_enter(__u32 syscall, __s32 dirfd, __u64 path, __u32 mode)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct tr_args *a;
	__u64 was;

	if (!wanted(pid_tgid))
		return 0;
	a = slot_of(tid);
	if (!a)
		return 0;
	/* Claim the slot. A thread is in one syscall at a time, so finding itself as the owner can only
	 * be a claim whose exit was never seen; it takes the slot back. */
	was = __sync_val_compare_and_swap(&a->owner, 0, (__u64)tid);
	if (was && was != tid) {
		struct tr_counters *c = counters();

		if (c)
			__sync_fetch_and_add(&c->untracked, 1);
		return 0;
	}
	a->syscall = syscall;
	a->path = path;
	a->mode = mode;
	a->dirfd = dirfd;
	/* last, so the latency covers the syscall and not our own bookkeeping */
	a->start_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_mkdir")
int tr_in_mkdir(struct trace_event_raw_sys_enter *ctx)
{
	/* mkdir(const char *pathname, umode_t mode): relative paths are relative to the cwd */
	return on_enter(TR_SYS_MKDIR, TR_AT_FDCWD, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_mkdirat")
int tr_in_mkdirat(struct trace_event_raw_sys_enter *ctx)
{
	/* mkdirat(int dfd, const char *pathname, umode_t mode); dfd is an int carried in an unsigned
	 * long, so the cast keeps AT_FDCWD negative */
	return on_enter(TR_SYS_MKDIRAT, (__s32)ctx->args[0], ctx->args[1], ctx->args[2]);
}

/* Attached by user space to sys_exit_<name> of every syscall it traces; the section name only
 * documents the first one. */
SEC("tracepoint/syscalls/sys_exit_mkdir")
int tr_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct tr_args *a;
	struct tr_event *e;
	struct tr_counters *c;
	const char *path;
	long ret = ctx->ret;
	long n;

	a = slot_of(tid);
	if (!a || a->owner != tid)
		return 0; /* filtered out at entry, or the call began before we attached */
	if (tr_config.failed_only && ret >= 0)
		goto done;
	e = bpf_ringbuf_reserve(&tr_events, sizeof(*e), 0);
	if (!e) {
		c = counters();
		if (c)
			__sync_fetch_and_add(&c->lost, 1);
		goto done;
	}
	e->ts_ns = now;
	e->latency_ns = now - a->start_ns;
	e->pid = pid_tgid >> 32;
	e->tid = tid;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ret = ret;
	e->mode = a->mode;
	e->dirfd = a->dirfd;
	e->syscall = a->syscall;
	e->flags = 0;
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* Read at exit rather than entry: the kernel has copied the path by now, so its page is
	 * resident and the read cannot miss on a page fault (tracepoint programs cannot sleep). */
	path = (const char *)a->path;
	n = bpf_probe_read_user_str(e->path, sizeof(e->path), path);
	if (n < 0) {
		e->path[0] = 0;
		e->flags |= TR_F_FAULT;
	} else if (n == sizeof(e->path)) {
		/* filled the buffer: truncated unless the path is exactly TR_PATH_MAX - 1 bytes long */
		char next = 0;

		if (bpf_probe_read_user(&next, 1, path + TR_PATH_MAX - 1) || next)
			e->flags |= TR_F_TRUNCATED;
	}
	if (e->dirfd != TR_AT_FDCWD && e->path[0] != '/')
		e->flags |= TR_F_DIRFD;
	/* No wake-up: the reader polls, which spares every traced call an IPI (DESIGN.md §2). */
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
done:
	/* An atomic exchange, so the slot is handed back only after everything above has read it. */
	__sync_lock_test_and_set(&a->owner, 0);
	return 0;
}
