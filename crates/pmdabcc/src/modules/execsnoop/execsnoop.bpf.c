// SPDX-License-Identifier: GPL-2.0
/*
 * execsnoop: one record per exec (execve and execveat), with the path and arguments read at
 * syscall entry and the result and new command name at its exit. Records go to a ring
 * buffer, cut after the arguments used.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "execsnoop.h"
#include "maps.bpf.h"

#define INVALID_UID ((__u32)-1)
#define LAST_ARG (EXECSNOOP_ARGS_BUF - EXECSNOOP_ARGSIZE)
#define HEADER_SIZE (sizeof(struct execsnoop_event) - EXECSNOOP_ARGS_BUF)

const volatile __u32 targ_uid = INVALID_UID;
const volatile bool include_failed = false;
const volatile __u32 max_args = 20;

/* Keeps the record type in BTF for the agent. */
const struct execsnoop_event *unused_event __attribute__((unused));

static const struct execsnoop_event empty_event = {};

/* Execs in flight, by thread id: filled at entry, sent at exit. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct execsnoop_event);
} execs SEC(".maps");

#define EVENTS_SIZE (4 << 20)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_SIZE);
} events SEC(".maps");

PERCPU_SLOT_MAP(stats, struct execsnoop_stats);

static __always_inline int exec_enter(const char *path, const char *const *argv)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, uid = (__u32)bpf_get_current_uid_gid();
	struct execsnoop_event *e;
	struct task_struct *task;
	const char *arg;
	__u32 off;
	long n;
	int i;

	if (targ_uid != INVALID_UID && uid != targ_uid)
		return 0;
	if (bpf_map_update_elem(&execs, &tid, &empty_event, BPF_ANY))
		return 0;
	e = bpf_map_lookup_elem(&execs, &tid);
	if (!e)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	e->pid = id >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = uid;

	n = bpf_probe_read_user_str(e->args, EXECSNOOP_ARGSIZE, path);
	e->args_size = n > 0 ? n : 1;
	e->args_count = 1;
	for (i = 1; i < EXECSNOOP_MAX_ARGS && i < max_args; i++) {
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			return 0;
		off = e->args_size;
		if (off > LAST_ARG)
			return 0;
		n = bpf_probe_read_user_str(&e->args[off], EXECSNOOP_ARGSIZE, arg);
		if (n <= 0)
			return 0;
		e->args_size = off + n;
		e->args_count++;
	}
	/* More arguments than kept: say so with a last "...". */
	if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
		return 0;
	off = e->args_size;
	if (off > EXECSNOOP_ARGS_BUF - 4)
		return 0;
	e->args[off] = '.';
	e->args[off + 1] = '.';
	e->args[off + 2] = '.';
	e->args[off + 3] = 0;
	e->args_size = off + 4;
	return 0;
}

static __always_inline int exec_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct execsnoop_stats *st;
	struct execsnoop_event *e;
	__u32 size;

	e = bpf_map_lookup_elem(&execs, &tid);
	if (!e)
		return 0;
	if (ret < 0 && !include_failed)
		goto done;
	e->ret = ret;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	size = e->args_size;
	if (size > EXECSNOOP_ARGS_BUF)
		size = EXECSNOOP_ARGS_BUF;
	if (bpf_ringbuf_output(&events, e, HEADER_SIZE + size, ringbuf_wakeup_flags(&events, EVENTS_SIZE))) {
		st = percpu_counters(&stats);
		if (st)
			st->lost++;
	}
done:
	bpf_map_delete_elem(&execs, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int execve_enter(struct trace_event_raw_sys_enter *ctx)
{
	return exec_enter((const char *)ctx->args[0], (const char *const *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int execveat_enter(struct trace_event_raw_sys_enter *ctx)
{
	return exec_enter((const char *)ctx->args[1], (const char *const *)ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_execve")
int execve_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exec_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int execveat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exec_exit(ctx->ret);
}

char LICENSE[] SEC("license") = "GPL";
