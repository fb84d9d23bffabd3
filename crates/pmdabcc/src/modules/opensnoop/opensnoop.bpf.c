// SPDX-License-Identifier: GPL-2.0
/*
 * opensnoop: every open(2), openat(2) and openat2(2), from the syscalls:sys_enter_* and
 * sys_exit_* tracepoints (as pmdabpf's opensnoop, after bcc's libbpf-tools). The entry
 * keeps the file name pointer and flags per thread; the exit sends one record with the
 * result to the ring buffer the agent drains.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"
#include "hooks.bpf.h"

#define FNAME_LEN 256

struct opensnoop_event {
	__u32 pid;	/* thread group */
	__u32 tid;
	__u32 uid;
	__s32 fd;	/* the result, or -1 */
	__s32 err;	/* errno, or 0 */
	__s32 flags;
	char comm[16];
	char fname[FNAME_LEN];
};
const struct opensnoop_event *unused_event;

struct opensnoop_stats {
	__u64 lost;
};

struct pending {
	const char *fname;
	__s32 flags;
};

PENDING_CALL_MAP(pending, struct pending, 10240);

EVENT_MAPS(1 << 20, struct opensnoop_stats);

static __always_inline int enter(const char *fname, __s32 flags)
{
	struct pending p = { .fname = fname, .flags = flags };

	pending_save(&pending, &p);
	return 0;
}

static __always_inline int leave(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct opensnoop_event *e;
	struct pending *p;

	p = pending_find(&pending);
	if (!p)
		return 0;
	e = RESERVE_OR_COUNT_LOST(events, sizeof(*e), stats);
	if (!e)
		goto out;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->fd = ret >= 0 ? ret : -1;
	e->err = ret >= 0 ? 0 : -ret;
	e->flags = p->flags;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (bpf_probe_read_user_str(e->fname, sizeof(e->fname), p->fname) < 0)
		e->fname[0] = 0;
	bpf_ringbuf_submit(e, ringbuf_lazy_wakeup(&events));
out:
	pending_drop(&pending);
	return 0;
}

/* openat2(dfd, filename, how, size): the flags are in the user's struct open_how. */
static __always_inline int enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	struct open_how how = {};

	bpf_probe_read_user(&how, sizeof(how), (void *)ctx->args[2]);
	return enter((const char *)ctx->args[1], (__s32)how.flags);
}

SYSCALL_PROGRAMS(opensnoop, open, enter((const char *)ctx->args[0], (__s32)ctx->args[1]), leave)
SYSCALL_PROGRAMS(opensnoop, openat, enter((const char *)ctx->args[1], (__s32)ctx->args[2]), leave)
SYSCALL_PROGRAMS(opensnoop, openat2, enter_openat2(ctx), leave)

char LICENSE[] SEC("license") = "GPL";
