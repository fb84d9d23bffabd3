// SPDX-License-Identifier: GPL-2.0
/*
 * sysfork: counts every new task (process or thread), as the kernel's own fork counter
 * (kernel.all.sysfork) does. One program per hook kind; user space enables the one the
 * kernel accepts (tp_btf first, classic tracepoint otherwise).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sysfork.h"
#include "maps.bpf.h"

PERCPU_SLOT_MAP(counts, struct sysfork_count);

static __always_inline void count_task(void)
{
	__u32 zero = 0;
	struct sysfork_count *c = bpf_map_lookup_elem(&counts, &zero);

	if (c)
		c->tasks++; /* per-CPU slot: no other CPU writes it */
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sysfork_btf, struct task_struct *parent, struct task_struct *child)
{
	count_task();
	return 0;
}

SEC("tracepoint/sched/sched_process_fork")
int sysfork_tp(void *ctx)
{
	count_task();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
