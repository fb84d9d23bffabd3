// SPDX-License-Identifier: GPL-2.0
/*
 * runqlat: run-queue latency, the time from a task becoming runnable (woken, new, or
 * preempted while runnable) to it running on a CPU, as a power-of-two histogram in
 * microseconds. After libbpf-tools' runqlat.bpf.c. Three program sets, one per hook kind;
 * user space enables the first the kernel accepts (tp_btf, raw_tp, classic tracepoint).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hist.bpf.h"
#include "maps.bpf.h"
#include "hooks.bpf.h"

#define TASK_RUNNING 0

PERCPU_SLOT_MAP(hist, struct hist);

/* When each runnable task (thread id) was enqueued. */
HASH_MAP(start, __u32, __u64, 10240);

/*
 * The `process` filter: thread group ids with tp_btf/raw_tp (the task is at hand); with
 * classic tracepoints, which give only the woken thread's id, user space puts thread ids.
 */
PROCESS_FILTER();

/*
 * CO-RE shim: task_struct->state was renamed __state (and made unsigned int) in 5.14
 * (commit 2f064a59a11f, "sched: Change task_struct::state"). As libbpf-tools core_fixes.bpf.h.
 */
struct task_struct___o {
	volatile long int state;
} __attribute__((preserve_access_index));

struct task_struct___x {
	unsigned int __state;
} __attribute__((preserve_access_index));

static __always_inline __s64 get_task_state(void *task)
{
	struct task_struct___x *t = task;

	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___o *)task, state);
}

static __always_inline void enqueue(__u32 id, __u32 pid)
{
	__u64 ts;

	if (!pid || !process_targeted(id)) /* pid 0: the idle tasks */
		return;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &pid, &ts, BPF_ANY);
}

static __always_inline void record(__u64 delta_ns)
{
	__u32 zero = 0;
	struct hist *h = bpf_map_lookup_elem(&hist, &zero);

	/* per-CPU slot, and sched_switch runs with preemption off: no other writer;
	 * buckets in microseconds, the sum exact in nanoseconds */
	if (h)
		hist_add(h, hist_log2_slot(delta_ns / 1000), delta_ns);
}

static __always_inline void run(__u32 pid)
{
	__u64 *tsp, now;

	if (!pid)
		return;
	tsp = bpf_map_lookup_elem(&start, &pid);
	if (!tsp)
		return; /* enqueued before we attached, or filtered out */
	now = bpf_ktime_get_ns();
	if (now > *tsp)
		record(now - *tsp);
	bpf_map_delete_elem(&start, &pid);
}

static __always_inline void switch_task(struct task_struct *prev, struct task_struct *next)
{
	/* involuntary switch: prev stays runnable, so it waits in the run queue from now */
	if (get_task_state(prev) == TASK_RUNNING)
		enqueue(BPF_CORE_READ(prev, tgid), BPF_CORE_READ(prev, pid));
	run(BPF_CORE_READ(next, pid));
}

/* sched_wakeup(p), sched_wakeup_new(p): p becomes runnable. */
static __always_inline int wakeup(unsigned long long *ctx)
{
	struct task_struct *p = (void *)ctx[0];

	enqueue(BPF_CORE_READ(p, tgid), BPF_CORE_READ(p, pid));
	return 0;
}

/* sched_switch(preempt, prev, next, ...) */
static __always_inline int sched_switch(unsigned long long *ctx)
{
	switch_task((void *)ctx[1], (void *)ctx[2]);
	return 0;
}

/* --- tp_btf (typed arguments, cheapest) and raw_tp (the same arguments, untyped) --- */

BTF_RAW_TWINS(sched_wakeup, runqlat_wakeup, wakeup)
BTF_RAW_TWINS(sched_wakeup_new, runqlat_wakeup_new, wakeup)
BTF_RAW_TWINS(sched_switch, runqlat_switch, sched_switch)

/*
 * --- classic tracepoints: only thread ids in the record. At sched_switch prev is still the
 * current task, so its state comes from bpf_get_current_task().
 */

SEC("tracepoint/sched/sched_wakeup")
int runqlat_wakeup_tp(struct trace_event_raw_sched_wakeup_template *ctx)
{
	__u32 pid = ctx->pid;

	enqueue(pid, pid);
	return 0;
}

SEC("tracepoint/sched/sched_wakeup_new")
int runqlat_wakeup_new_tp(struct trace_event_raw_sched_wakeup_template *ctx)
{
	__u32 pid = ctx->pid;

	enqueue(pid, pid);
	return 0;
}

SEC("tracepoint/sched/sched_switch")
int runqlat_switch_tp(struct trace_event_raw_sched_switch *ctx)
{
	struct task_struct *prev = (struct task_struct *)bpf_get_current_task();
	__u32 prev_pid = ctx->prev_pid;

	if (get_task_state(prev) == TASK_RUNNING)
		enqueue(prev_pid, prev_pid);
	run(ctx->next_pid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
