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
 * Entry paths other than the syscalls (issue 18). An IORING_OP_MKDIRAT runs in an io_uring worker
 * thread and never reaches the syscall tracepoints: io_uring's own tracepoints follow it from
 * submission (where the submitter and the path are known) to completion (where the result is), so
 * it is reported with its result (EEXIST included: that fails before any LSM hook). Tracepoints
 * rather than fentry/fexit on io_mkdirat: they are a stable interface, and trampoline programs may
 * be refused where tracepoints load (they are on our CI machines). lsm/path_mkdir sees every mkdir the
 * kernel checks, whatever the entry path, but runs before the directory is made (and not at all when
 * the name exists), so it cannot give the result: it reports only the mkdirs nothing else follows,
 * with TR_F_NO_RESULT.
 *
 * Filters (pid, uid, cgroup, failed only) are const volatile: the verifier sees them as constants and
 * drops the checks that are off, and a filtered-out call costs user space nothing. */
#include "common.h"
#include "gen/trace.maps.h"

char LICENSE[] SEC("license") = "GPL";

/* how deep below --cgroup a task may sit and still match; systemd and Kubernetes stay well within */
#define TR_MAX_CGROUP_DEPTH 32

/* task->flags bits (include/linux/sched.h; unchanged since io_uring workers became PF_IO_WORKER
 * threads in 5.12). Not in BTF: they are #defines. */
#define PF_IO_WORKER 0x00000010
#define PF_KTHREAD 0x00200000

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
static __always_inline struct tr_args *claim(__u32 tid)
{
	struct tr_args *a;
	__u64 was;

	a = slot_of(tid);
	if (!a)
		return NULL;
	/* Claim the slot. A thread is in one syscall at a time, so finding itself as the owner can only
	 * be a claim whose exit was never seen; it takes the slot back. */
	was = __sync_val_compare_and_swap(&a->owner, 0, (__u64)tid);
	if (was && was != tid) {
		struct tr_counters *c = counters();

		if (c)
			__sync_fetch_and_add(&c->untracked, 1);
		return NULL;
	}
	return a;
}

static __always_inline int on_enter(__u32 syscall, __s32 dirfd, __u64 path, __u32 mode)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tr_args *a;

	if (!wanted(pid_tgid))
		return 0;
	a = claim((__u32)pid_tgid);
	if (!a)
		return 0;
	a->syscall = syscall;
	a->path = path;
	a->mode = mode;
	a->dirfd = dirfd;
	a->via = TR_VIA_SYSCALL;
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

/* The caller's pid in its own pid namespace: the number at the deepest level of its thread group
 * leader's struct pid (level 0 is the initial namespace, what bpf_get_current_pid_tgid gives). */
static __always_inline __u32 ns_pid(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct pid *p = BPF_CORE_READ(t, group_leader, thread_pid);
	unsigned int level = BPF_CORE_READ(p, level);
	struct upid u;

	if (!p || bpf_probe_read_kernel(&u, sizeof(u), (void *)p + bpf_core_field_offset(struct pid, numbers) + (__u64)(level & 0xff) * bpf_core_type_size(struct upid)))
		return 0;
	return u.nr;
}

/* The fields every event has, whichever program emits it. */
static __always_inline void fill_common(struct tr_event *e, __u64 pid_tgid, __u32 via)
{
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ns_pid = ns_pid();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->via = via;
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

static __always_inline struct tr_event *reserve(void)
{
	struct tr_event *e = bpf_ringbuf_reserve(&tr_events, sizeof(*e), 0);

	if (!e) {
		struct tr_counters *c = counters();

		if (c)
			__sync_fetch_and_add(&c->lost, 1);
	}
	return e;
}

/* Turns the calling thread's slot into an event with the call's result, and frees the slot. */
static __always_inline int on_exit(long ret)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct tr_args *a;
	struct tr_event *e;
	const char *path;
	long n;

	a = slot_of(tid);
	if (!a || a->owner != tid)
		return 0; /* filtered out at entry, or the call began before we attached */
	if (tr_config.failed_only && ret >= 0)
		goto done;
	e = reserve();
	if (!e)
		goto done;
	fill_common(e, pid_tgid, a->via);
	e->ts_ns = now;
	e->latency_ns = now - a->start_ns;
	e->ret = ret;
	e->mode = a->mode;
	e->dirfd = a->dirfd;
	e->syscall = a->syscall;
	e->flags = 0;
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

/* Attached by user space to sys_exit_<name> of every traced syscall; the section name only
 * documents the first one. */
SEC("tracepoint/syscalls/sys_exit_mkdir")
int tr_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret);
}

/* An IORING_OP_MKDIRAT submitted. io_init_req has run its prep by now: the request's command area
 * (io_kiocb_to_cmd) holds the dirfd, the mode and the kernel's copy of the path, which is freed
 * before the op completes, so the event is filled in here and kept in tr_uring until then. */
SEC("tracepoint/io_uring/io_uring_submit_req")
int tr_uring_in(struct trace_event_raw_io_uring_submit_req *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct io_kiocb *req = ctx->req;
	struct io_mkdir *m;
	struct tr_event *e;
	const char *name;
	__u64 key;
	long n;

	if (ctx->opcode != IORING_OP_MKDIRAT || !wanted(pid_tgid))
		return 0;
	key = (__u64)req;
	/* tr_event is too big for the stack: the zeroed value goes into the map, then is filled there */
	static const struct tr_event empty;
	if (bpf_map_update_elem(&tr_uring, &key, &empty, BPF_ANY)) {
		struct tr_counters *c = counters();

		if (c)
			__sync_fetch_and_add(&c->untracked, 1);
		return 0;
	}
	e = bpf_map_lookup_elem(&tr_uring, &key);
	if (!e)
		return 0;
	m = (struct io_mkdir *)((void *)req + bpf_core_field_offset(struct io_kiocb, cmd));
	fill_common(e, pid_tgid, TR_VIA_IO_URING);
	e->syscall = TR_SYS_MKDIRAT;
	e->mode = BPF_CORE_READ(m, mode);
	e->dirfd = BPF_CORE_READ(m, dfd);
	name = BPF_CORE_READ(m, filename, name);
	n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), name);
	if (n < 0) {
		e->path[0] = 0;
		e->flags |= TR_F_FAULT;
	} else if (n == sizeof(e->path)) {
		char next = 0;

		if (bpf_probe_read_kernel(&next, 1, name + TR_PATH_MAX - 1) || next)
			e->flags |= TR_F_TRUNCATED;
	}
	if (e->dirfd != TR_AT_FDCWD && e->path[0] != '/')
		e->flags |= TR_F_DIRFD;
	/* last, so the latency covers the op and not our own bookkeeping */
	e->ts_ns = bpf_ktime_get_ns();
	return 0;
}

/* A request completed: if it is one of ours, its event gets the result and goes out. */
SEC("tracepoint/io_uring/io_uring_complete")
int tr_uring_exit(struct trace_event_raw_io_uring_complete *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 key = (__u64)ctx->req;
	struct tr_event *p, *e;

	p = bpf_map_lookup_elem(&tr_uring, &key);
	if (!p)
		return 0;
	if (tr_config.failed_only && ctx->res >= 0)
		goto done;
	e = reserve();
	if (!e)
		goto done;
	__builtin_memcpy(e, p, sizeof(*e));
	e->latency_ns = now - p->ts_ns;
	e->ts_ns = now;
	e->ret = ctx->res;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
done:
	bpf_map_delete_elem(&tr_uring, &key);
	return 0;
}

/* Every mkdir the kernel checks passes here, whatever the entry path. Which ones it reports is
 * decided by task->flags rather than by looking for the thread's tr_inflight slot: a user thread
 * whose slot was taken by another thread has no slot but is already counted as untracked, and a
 * thread filtered out at entry has none either; both would be reported twice or wrongly. A user
 * thread reaches security_path_mkdir only from mkdir/mkdirat, which the tracepoints follow; an
 * io_uring worker (PF_IO_WORKER) runs IORING_OP_MKDIRAT, which tr_uring_in/exit follow when they are
 * attached (tr_config.uring_hooked). What is left (kernel threads, io_uring on a kernel without io_mkdirat to hook) has no
 * exit to wait for: it is reported here, before the mkdir is done, without a result. Returns the
 * verdict of the LSM programs before it: a tracer never denies. */
SEC("lsm/path_mkdir")
int BPF_PROG(tr_lsm_mkdir, const struct path *dir, struct dentry *dentry, umode_t mode, int ret)
{
	struct task_struct *t = bpf_get_current_task_btf();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	unsigned int flags = t->flags;
	const unsigned char *name;
	struct tr_event *e;
	__u32 via;

	if (flags & PF_IO_WORKER) {
		if (tr_config.uring_hooked)
			return ret;
		via = TR_VIA_IO_URING;
	} else if (flags & PF_KTHREAD) {
		via = TR_VIA_KERNEL;
	} else {
		return ret;
	}
	if (tr_config.failed_only || !wanted(pid_tgid))
		return ret;
	e = reserve();
	if (!e)
		return ret;
	fill_common(e, pid_tgid, via);
	e->ts_ns = bpf_ktime_get_ns();
	e->latency_ns = 0;
	e->ret = 0;
	e->mode = mode;
	e->dirfd = TR_AT_FDCWD;
	e->syscall = via == TR_VIA_IO_URING ? TR_SYS_MKDIRAT : TR_SYS_MKDIR;
	e->flags = TR_F_NO_RESULT;
	/* the new directory's name: the hook has no path as a caller passed it */
	name = BPF_CORE_READ(dentry, d_name.name);
	if (bpf_probe_read_kernel_str(e->path, sizeof(e->path), name) < 0) {
		e->path[0] = 0;
		e->flags |= TR_F_FAULT;
	}
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return ret;
}
