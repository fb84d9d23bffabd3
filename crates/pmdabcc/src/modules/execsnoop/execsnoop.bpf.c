// SPDX-License-Identifier: GPL-2.0
/*
 * execsnoop: one record per exec (execve and execveat), with the path and arguments read at
 * syscall entry and the result and new command name at its exit. Records go to a ring
 * buffer, cut after the arguments used.
 *
 * Entry builds the record in a per-CPU scratch slot, then keeps it until the exit in a hash
 * map by thread id: the short map when the arguments fit in EXECSNOOP_SHORT_ARGS bytes (most
 * execs), else the full-size one. A hash map insert copies the whole value: 7.7 KB for the
 * full-size one, most of what the entry program cost before the short map.
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

/* An exec's record while it is in flight, when its arguments are short: execsnoop_event
 * with less arguments room. */
struct execsnoop_short {
	__u32 pid, ppid, uid;
	__s32 ret;
	__u32 args_count, args_size;
	char comm[16];
	char args[EXECSNOOP_SHORT_ARGS];
};
_Static_assert(__builtin_offsetof(struct execsnoop_short, args) == HEADER_SIZE, "execsnoop_short's header is execsnoop_event's");

/* Execs in flight, by thread id: filled at entry, sent at exit; short ones in short_execs.
 * LRU: an exec by a non-leader thread exits under the leader's id and leaves its entry
 * behind, which a plain hash would keep for good. Few execs are in flight at once, fewer
 * with long arguments: the full-size map (7.7 KB entries, preallocated) is kept small. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct execsnoop_short);
} short_execs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct execsnoop_event);
} execs SEC(".maps");

/* Where entry builds the record. */
PERCPU_SLOT_MAP(scratch, struct execsnoop_event);

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
	e = percpu_counters(&scratch);
	if (!e)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	e->pid = id >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = uid;

	n = bpf_probe_read_user_str(e->args, EXECSNOOP_ARGSIZE, path);
	if (n <= 0) {
		e->args[0] = 0;
		n = 1;
	}
	e->args_size = n;
	e->args_count = 1;
	for (i = 1; i < EXECSNOOP_MAX_ARGS && i < max_args; i++) {
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			goto keep;
		off = e->args_size;
		if (off > LAST_ARG)
			goto keep;
		n = bpf_probe_read_user_str(&e->args[off], EXECSNOOP_ARGSIZE, arg);
		if (n <= 0)
			goto keep;
		e->args_size = off + n;
		e->args_count++;
	}
	/* More arguments than kept: say so with a last "...". */
	if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
		goto keep;
	off = e->args_size;
	if (off > EXECSNOOP_ARGS_BUF - 4)
		goto keep;
	e->args[off] = '.';
	e->args[off + 1] = '.';
	e->args[off + 2] = '.';
	e->args[off + 3] = 0;
	e->args_size = off + 4;
keep:
	if (e->args_size <= EXECSNOOP_SHORT_ARGS)
		bpf_map_update_elem(&short_execs, &tid, e, BPF_ANY);
	else
		bpf_map_update_elem(&execs, &tid, e, BPF_ANY);
	return 0;
}

/* Completes an exec's record `e` (`cap` bytes of arguments room) and sends it. */
static __always_inline void exec_send(struct execsnoop_event *e, __u32 cap, long ret)
{
	struct execsnoop_stats *st;
	__u32 size;

	if (ret < 0 && !include_failed)
		return;
	e->ret = ret;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	size = e->args_size;
	if (size > cap)
		size = cap;
	if (bpf_ringbuf_output(&events, e, HEADER_SIZE + size, ringbuf_wakeup_flags(&events, EVENTS_SIZE))) {
		st = percpu_counters(&stats);
		if (st)
			st->lost++;
	}
}

static __always_inline int exec_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct execsnoop_event *e;

	e = (struct execsnoop_event *)bpf_map_lookup_elem(&short_execs, &tid);
	if (e) {
		exec_send(e, EXECSNOOP_SHORT_ARGS, ret);
		bpf_map_delete_elem(&short_execs, &tid);
		return 0;
	}
	e = bpf_map_lookup_elem(&execs, &tid);
	if (e) {
		exec_send(e, EXECSNOOP_ARGS_BUF, ret);
		bpf_map_delete_elem(&execs, &tid);
	}
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
