// SPDX-License-Identifier: GPL-2.0
/*
 * exitsnoop: one record per process exit (when its thread group leader exits, as bcc's
 * exitsnoop reports by default), with its age, how it ended, and its parent.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "exitsnoop.h"
#include "maps.bpf.h"
#include "hooks.bpf.h"

const struct exitsnoop_event *unused_event __attribute__((unused));

#define EVENTS_SIZE (1 << 20)

EVENT_MAPS(EVENTS_SIZE, struct exitsnoop_stats);

static __always_inline void report(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 id = bpf_get_current_pid_tgid();
	struct exitsnoop_event *e;
	int status;

	if ((__u32)id != id >> 32)
		return;
	e = RESERVE_OR_COUNT_LOST(events, sizeof(*e), stats);
	if (!e)
		return;
	status = BPF_CORE_READ(task, exit_code);
	e->age = bpf_ktime_get_ns() - BPF_CORE_READ(task, start_time);
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->sig = status & 0x7f;
	e->exit_code = (status >> 8) & 0xff;
	e->coredump = (status & 0x80) ? 1 : 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, ringbuf_wakeup_flags(&events, EVENTS_SIZE));
}

/* sched_process_exit runs in the exiting task. */
BTF_TP_TWINS(sched, sched_process_exit, exitsnoop, report)

char LICENSE[] SEC("license") = "GPL";
