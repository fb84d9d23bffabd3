/* Process facts shared by the modules' BPF programs. */
#ifndef BCC_PMDA_TASK_BPF_H
#define BCC_PMDA_TASK_BPF_H

/* Linux 5.5 renamed task_struct.real_start_time to start_boottime ("time: Rename
 * tsk->real_start_time to ->start_boottime"). */
struct task_struct___pre_5_5 {
	__u64 real_start_time;
} __attribute__((preserve_access_index));

/* When the process (its group leader `leader`) started, ns since boot: what /proc/<pid>/stat
 * shows (in clock ticks). With the PID, it tells a reused PID's new process from the old. */
static __always_inline __u64 process_start(struct task_struct *leader)
{
	if (bpf_core_field_exists(leader->start_boottime))
		return BPF_CORE_READ(leader, start_boottime);
	return BPF_CORE_READ((struct task_struct___pre_5_5 *)leader, real_start_time);
}

#endif
