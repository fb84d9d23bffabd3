// SPDX-License-Identifier: GPL-2.0
/*
 * runqlen: run-queue length, sampled on every CPU at 99 Hz, as a linear histogram (one
 * bucket per length). After libbpf-tools' runqlen (BCC's tools/runqlen.py). A user module
 * of pmdabcc: this object plus runqlen.toml, no Rust.
 *
 * The program is a perf_event program: the spec's [[program]] entry attaches it to a
 * cpu-clock software event on every CPU, 99 samples per second each. At each sample it
 * reads the interrupted task's CFS queue (task->se.cfs_rq), the queue its scheduling
 * entity is on (with group scheduling, its group's queue on that CPU).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "hist.bpf.h"
#include "maps.bpf.h"

/* Linux 6.14 renamed cfs_rq::nr_running to nr_queued (commit 736c55a02c47, "sched/fair:
 * Rename cfs_rq.nr_running into nr_queued"); vmlinux.h has the new name. This flavour
 * (CO-RE ignores the ___ suffix) is the old layout: the agent's libbpf relocates whichever
 * field the running kernel has. */
struct cfs_rq___pre_v614 {
	unsigned int nr_running;
};

static __always_inline __u64 cfs_queued(struct cfs_rq *q)
{
	if (bpf_core_field_exists(q->nr_queued))
		return BPF_CORE_READ(q, nr_queued);
	return BPF_CORE_READ((struct cfs_rq___pre_v614 *)q, nr_running);
}

PERCPU_SLOT_MAP(dist, struct hist);

SEC("perf_event")
int runqlen_sample(struct bpf_perf_event_data *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	__u32 zero = 0;
	struct hist *h;
	__u64 len;

	/* The queue counts the running entity too: the length is the tasks waiting behind
	 * it (0: idle or one task running). */
	len = cfs_queued(BPF_CORE_READ(task, se.cfs_rq));
	if (len > 0)
		len--;
	h = bpf_map_lookup_elem(&dist, &zero);
	if (h) /* a per-CPU copy: the sample runs in this CPU's timer interrupt */
		hist_add(h, hist_linear_slot(len, 1), len);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
