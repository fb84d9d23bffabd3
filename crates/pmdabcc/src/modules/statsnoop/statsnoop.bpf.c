// SPDX-License-Identifier: GPL-2.0
/*
 * statsnoop: every stat-family call that names a path (statfs, stat, lstat, fstatat,
 * statx), from the syscalls:sys_enter_* and sys_exit_* tracepoints (the calls pmdabpf's
 * statsnoop, after bcc's libbpf-tools, traces). The entry keeps the path pointer per
 * thread; the exit sends one record with the result to the ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"
#include "hooks.bpf.h"

#define PATH_LEN 256

enum stat_call { STATFS, NEWSTAT, NEWLSTAT, NEWFSTATAT, STATX };

struct statsnoop_event {
	__u32 pid;	/* thread group */
	__u32 tid;
	__s32 ret;	/* the result, or -1 */
	__s32 err;	/* errno, or 0 */
	__u32 call;	/* enum stat_call */
	char comm[16];
	char path[PATH_LEN];
};
const struct statsnoop_event *unused_event;

struct statsnoop_stats {
	__u64 lost;
};

struct pending {
	const char *path;
	__u32 call;
};

/* Only calls that failed (bcc.conf failed = True). */
const volatile bool failed_only = false;

PENDING_CALL_MAP(pending, struct pending, 10240);

EVENT_MAPS(1 << 20, struct statsnoop_stats);

static __always_inline int enter(const char *path, __u32 call)
{
	struct pending p = { .path = path, .call = call };

	pending_save(&pending, &p);
	return 0;
}

static __always_inline int leave(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct statsnoop_event *e;
	struct pending *p;

	p = pending_find(&pending);
	if (!p)
		return 0;
	if (failed_only && ret >= 0)
		goto out;
	e = RESERVE_OR_COUNT_LOST(events, sizeof(*e), stats);
	if (!e)
		goto out;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->ret = ret >= 0 ? ret : -1;
	e->err = ret >= 0 ? 0 : -ret;
	e->call = p->call;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (bpf_probe_read_user_str(e->path, sizeof(e->path), p->path) < 0)
		e->path[0] = 0;
	bpf_ringbuf_submit(e, ringbuf_lazy_wakeup(&events));
out:
	pending_drop(&pending);
	return 0;
}

SYSCALL_PROGRAMS(statsnoop, statfs, enter((const char *)ctx->args[0], STATFS), leave)
SYSCALL_PROGRAMS(statsnoop, newstat, enter((const char *)ctx->args[0], NEWSTAT), leave)
SYSCALL_PROGRAMS(statsnoop, newlstat, enter((const char *)ctx->args[0], NEWLSTAT), leave)
SYSCALL_PROGRAMS(statsnoop, newfstatat, enter((const char *)ctx->args[1], NEWFSTATAT), leave)
SYSCALL_PROGRAMS(statsnoop, statx, enter((const char *)ctx->args[1], STATX), leave)

char LICENSE[] SEC("license") = "GPL";
