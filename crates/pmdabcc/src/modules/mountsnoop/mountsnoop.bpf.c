// SPDX-License-Identifier: GPL-2.0
/*
 * mountsnoop: every mount(2) and umount2(2), from the syscalls:sys_enter_* and sys_exit_*
 * tracepoints (what pmdabpf's mountsnoop, after bcc's libbpf-tools, traces). The entry
 * keeps the arguments per thread; the exit sends one record with the result, the time the
 * call took and the call written out, to the ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"
#include "hooks.bpf.h"

#define FS_LEN 32
#define PATH_LEN 256
#define CALL_LEN 1024

enum mount_op { MOUNT, UMOUNT };

struct mountsnoop_event {
	__u32 pid;	/* thread group */
	__u32 tid;
	__u32 op;	/* enum mount_op */
	__s32 ret;
	__u64 lat;	/* ns */
	__u64 flags;
	__u32 mnt_ns;
	char comm[16];
	char fs[FS_LEN];
	char source[PATH_LEN];
	char target[PATH_LEN];
	char data[PATH_LEN];
	char call[CALL_LEN];
};
const struct mountsnoop_event *unused_event;

struct mountsnoop_stats {
	__u64 lost;
};

struct pending {
	__u64 start;
	__u64 flags;
	const char *source;
	const char *target;
	const char *fs;
	const char *data;
	__u32 op;
};

PENDING_CALL_MAP(pending, struct pending, 1024);

EVENT_MAPS(1 << 20, struct mountsnoop_stats);

static const char mount_fmt[] = "mount(\"%s\", \"%s\", \"%s\", 0x%llx, \"%s\") = %d";
static const char umount_fmt[] = "umount(\"%s\", 0x%llx) = %d";

static __always_inline int enter(struct pending *p)
{
	p->start = bpf_ktime_get_ns();
	pending_save(&pending, p);
	return 0;
}

static __always_inline void user_str(char *dst, __u32 size, const char *src)
{
	if (!src || bpf_probe_read_user_str(dst, size, src) < 0)
		dst[0] = 0;
}

static __always_inline int leave(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct mountsnoop_event *e;
	struct pending *p;
	__u64 args[6];

	p = pending_find(&pending);
	if (!p)
		return 0;
	e = RESERVE_OR_COUNT_LOST(events, sizeof(*e), stats);
	if (!e)
		goto out;
	task = (struct task_struct *)bpf_get_current_task();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->op = p->op;
	e->ret = ret;
	e->lat = bpf_ktime_get_ns() - p->start;
	e->flags = p->flags;
	e->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	user_str(e->fs, sizeof(e->fs), p->fs);
	user_str(e->source, sizeof(e->source), p->source);
	user_str(e->target, sizeof(e->target), p->target);
	user_str(e->data, sizeof(e->data), p->data);
	/* bpf_snprintf came in 5.13: older kernels leave `call` empty (and load). */
	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_snprintf))
		e->call[0] = 0;
	else if (p->op == MOUNT) {
		args[0] = (__u64)(long)e->source;
		args[1] = (__u64)(long)e->target;
		args[2] = (__u64)(long)e->fs;
		args[3] = e->flags;
		args[4] = (__u64)(long)e->data;
		args[5] = (__u64)ret;
		bpf_snprintf(e->call, sizeof(e->call), mount_fmt, args, 6 * sizeof(__u64));
	} else {
		args[0] = (__u64)(long)e->target;
		args[1] = e->flags;
		args[2] = (__u64)ret;
		bpf_snprintf(e->call, sizeof(e->call), umount_fmt, args, 3 * sizeof(__u64));
	}
	bpf_ringbuf_submit(e, ringbuf_lazy_wakeup(&events));
out:
	pending_drop(&pending);
	return 0;
}

/* mount(source, target, filesystemtype, mountflags, data) */
static __always_inline int enter_mount(struct trace_event_raw_sys_enter *ctx)
{
	struct pending p = {
		.op = MOUNT,
		.source = (const char *)ctx->args[0],
		.target = (const char *)ctx->args[1],
		.fs = (const char *)ctx->args[2],
		.flags = ctx->args[3],
		.data = (const char *)ctx->args[4],
	};

	return enter(&p);
}

/* umount2(target, flags) */
static __always_inline int enter_umount(struct trace_event_raw_sys_enter *ctx)
{
	struct pending p = {
		.op = UMOUNT,
		.target = (const char *)ctx->args[0],
		.flags = ctx->args[1],
	};

	return enter(&p);
}

SYSCALL_PROGRAMS(mountsnoop, mount, enter_mount(ctx), leave)
SYSCALL_PROGRAMS(mountsnoop, umount, enter_umount(ctx), leave)

char LICENSE[] SEC("license") = "GPL";
