/* The record oomkill.bpf.c sends over its ring buffer, one per OOM kill. */
#ifndef BCC_PMDA_OOMKILL_H
#define BCC_PMDA_OOMKILL_H

#define OOMKILL_COMM_LEN 16

struct oomkill_event {
	__u32 fpid;         /* thread group id of the task running when the victim was chosen */
	__u32 tpid;         /* the victim: thread group id (tp_btf) or task id (tracepoint) */
	__u64 pages;        /* the victim's resident pages: anonymous + file + shared memory */
	__u64 total_vm;     /* the victim's mapped pages */
	__u32 uid;          /* the victim's user id */
	__s32 oom_score_adj;
	char fcomm[OOMKILL_COMM_LEN];
	char tcomm[OOMKILL_COMM_LEN];
};

struct oomkill_stats {
	__u64 lost; /* records the ring buffer had no room for */
};

#endif
