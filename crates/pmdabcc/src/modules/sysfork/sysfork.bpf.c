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
#include "hooks.bpf.h"

PERCPU_SLOT_MAP(counts, struct sysfork_count);

static __always_inline void count_task(void)
{
	__u32 zero = 0;
	struct sysfork_count *c = bpf_map_lookup_elem(&counts, &zero);

	if (c)
		c->tasks++; /* per-CPU slot: no other CPU writes it */
}

BTF_TP_TWINS(sched, sched_process_fork, sysfork, count_task)

char LICENSE[] SEC("license") = "GPL";
