// SPDX-License-Identifier: GPL-2.0
/*
 * oomkill: every task the OOM killer chooses, from oom:mark_victim (after bcc's oomkill,
 * which needs a kprobe on oom_kill_process).
 *
 * mark_oom_victim() runs in the context of the task that ran out of memory (the allocating
 * task, or a kworker for sysrq-f), so the current task is the trigger. Since Linux 6.8 the
 * tracepoint passes the victim's task_struct (tp_btf: its thread group id, name, user,
 * memory); before, it carries the victim's task id alone (the classic tracepoint twin).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "oomkill.h"
#include "maps.bpf.h"

EVENT_MAPS(64 * 1024, struct oomkill_stats);

const struct oomkill_event *unused_event __attribute__((unused));

static __always_inline struct oomkill_event *new_event(void)
{
	struct oomkill_event *e = RESERVE_OR_COUNT_LOST(events, sizeof(*e), stats);

	if (!e)
		return NULL;
	__builtin_memset(e, 0, sizeof(*e));
	e->fpid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->fcomm, sizeof(e->fcomm));
	return e;
}

/* get_mm_counter(): the approximate (per-CPU batched) count, never below 0. */
static __always_inline __u64 mm_counter(struct mm_struct *mm, int member)
{
	s64 n = BPF_CORE_READ(mm, rss_stat[member].count);

	return n > 0 ? n : 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(oomkill_btf, struct task_struct *task, uid_t uid)
{
	/* A plain dereference: on kernels whose tracepoint passes a pid the verifier refuses
	 * it, and the classic twin runs instead. */
	__u32 tgid = task->tgid;
	struct oomkill_event *e = new_event();
	struct mm_struct *mm;

	if (!e)
		return 0;
	e->tpid = tgid;
	e->uid = uid;
	BPF_CORE_READ_STR_INTO(&e->tcomm, task, comm);
	e->oom_score_adj = BPF_CORE_READ(task, signal, oom_score_adj);
	mm = BPF_CORE_READ(task, mm);
	if (mm) {
		e->total_vm = BPF_CORE_READ(mm, total_vm);
		e->pages = mm_counter(mm, MM_ANONPAGES) + mm_counter(mm, MM_FILEPAGES) +
			   mm_counter(mm, MM_SHMEMPAGES);
	}
	bpf_ringbuf_submit(e, ringbuf_lazy_wakeup(&events));
	return 0;
}

/* Linux 6.8+ also records the victim's name (and its memory, in kB: page counts cannot be
 * told from it without the page size); before, the task id alone. */
SEC("tracepoint/oom/mark_victim")
int oomkill_tp(struct trace_event_raw_mark_victim *ctx)
{
	struct oomkill_event *e = new_event();

	if (!e)
		return 0;
	e->tpid = ctx->pid;
	if (bpf_core_field_exists(ctx->__data_loc_comm))
		bpf_probe_read_kernel_str(e->tcomm, sizeof(e->tcomm),
					  (void *)ctx + (BPF_CORE_READ(ctx, __data_loc_comm) & 0xffff));
	if (bpf_core_field_exists(ctx->uid))
		e->uid = BPF_CORE_READ(ctx, uid);
	if (bpf_core_field_exists(ctx->oom_score_adj))
		e->oom_score_adj = BPF_CORE_READ(ctx, oom_score_adj);
	bpf_ringbuf_submit(e, ringbuf_lazy_wakeup(&events));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
