/* Types shared by exitsnoop.bpf.c and its spec (the agent reads them from BTF). */
#ifndef BCC_PMDA_EXITSNOOP_H
#define BCC_PMDA_EXITSNOOP_H

/* One process exit. */
struct exitsnoop_event {
	__u64 age;		/* ns from the process's start to its exit */
	__u32 pid;		/* thread group id */
	__u32 tid;		/* the exiting thread */
	__u32 ppid;		/* parent's thread group id */
	__s32 sig;		/* the signal that ended it, 0 for an exit() */
	__s32 exit_code;	/* the exit() status, 0 when a signal ended it */
	__s32 coredump;		/* 1 when it dumped core */
	char comm[16];
};

struct exitsnoop_stats {
	__u64 lost;		/* records the ring buffer had no room for */
};

#endif
