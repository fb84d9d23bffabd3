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

/* LRU: an entry whose exit never came (a thread killed in the call) ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32); /* thread id */
	__type(value, struct pending);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

PERCPU_SLOT_MAP(stats, struct opensnoop_stats);

static __always_inline int enter(const char *fname, __s32 flags)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending p = { .fname = fname, .flags = flags };

	bpf_map_update_elem(&pending, &tid, &p, BPF_ANY);
	return 0;
}

static __always_inline int leave(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct opensnoop_stats *st;
	struct opensnoop_event *e;
	struct pending *p;

	p = bpf_map_lookup_elem(&pending, &tid);
	if (!p)
		return 0; /* entered before the program was attached */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		st = percpu_counters(&stats);
		if (st)
			st->lost++;
		bpf_map_delete_elem(&pending, &tid);
		return 0;
	}
	e->pid = id >> 32;
	e->tid = tid;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->fd = ret >= 0 ? ret : -1;
	e->err = ret >= 0 ? 0 : -ret;
	e->flags = p->flags;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (bpf_probe_read_user_str(e->fname, sizeof(e->fname), p->fname) < 0)
		e->fname[0] = 0;
	bpf_map_delete_elem(&pending, &tid);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int opensnoop_enter_open(struct trace_event_raw_sys_enter *ctx)
{
	return enter((const char *)ctx->args[0], (__s32)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_open")
int opensnoop_exit_open(struct trace_event_raw_sys_exit *ctx)
{
	return leave(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int opensnoop_enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	return enter((const char *)ctx->args[1], (__s32)ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int opensnoop_exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	return leave(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int opensnoop_enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	struct open_how how = {};

	bpf_probe_read_user(&how, sizeof(how), (void *)ctx->args[2]);
	return enter((const char *)ctx->args[1], (__s32)how.flags);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int opensnoop_exit_openat2(struct trace_event_raw_sys_exit *ctx)
{
	return leave(ctx->ret);
}

char LICENSE[] SEC("license") = "GPL";
