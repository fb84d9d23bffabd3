// SPDX-License-Identifier: GPL-2.0
/*
 * cpudist: on-CPU time, from a task's switch-in to its switch-out, as a power-of-two
 * histogram in microseconds. After BCC's tools/cpudist.py (its default, on-CPU mode). The
 * idle tasks (pid 0) are not tasks: their stints are not recorded. A user module of
 * pmdabcc: this object plus cpudist.toml, no Rust.
 *
 * Hook twins (MODULE-SPEC.md): cpudist_btf (tp_btf), cpudist_raw (raw_tp), cpudist_tp
 * (classic tracepoint); the agent keeps the first the kernel accepts.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hist.bpf.h"
#include "maps.bpf.h"

/* The `process` filter: thread group ids (the agent inserts thread and process ids). */
PROCESS_FILTER();

/* When the task now on this CPU was switched in. A running task cannot move to another
 * CPU, so its stint starts and ends on one CPU: no per-task map, nothing to drop. */
PERCPU_SLOT_MAP(start, __u64);

PERCPU_SLOT_MAP(dist, struct hist);

/* At every switch: the stint of prev ends, the stint of next begins. sched_switch runs
 * with the run queue locked and interrupts off: nothing else writes this CPU's slots. */
static __always_inline void on_switch(__u32 prev_pid, __u32 prev_tgid)
{
	__u32 zero = 0;
	__u64 now = bpf_ktime_get_ns(), began, *ts = bpf_map_lookup_elem(&start, &zero);
	struct hist *h;

	if (!ts)
		return;
	began = *ts;
	*ts = now;
	/* began 0: the first switch seen on this CPU, its stint began before we attached */
	if (!began || !prev_pid)
		return;
	if (!process_targeted(prev_tgid))
		return;
	h = bpf_map_lookup_elem(&dist, &zero);
	if (h) /* buckets in µs; the sum in ns, which the spec divides by 1000 */
		hist_add(h, hist_log2_slot((now - began) / 1000), now - began);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(cpudist_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	on_switch(prev->pid, prev->tgid);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(cpudist_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	on_switch(BPF_CORE_READ(prev, pid), BPF_CORE_READ(prev, tgid));
	return 0;
}

/* The record has only thread ids; prev is still the current task, which gives its tgid. */
SEC("tracepoint/sched/sched_switch")
int cpudist_tp(struct trace_event_raw_sched_switch *ctx)
{
	on_switch(ctx->prev_pid, bpf_get_current_pid_tgid() >> 32);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
