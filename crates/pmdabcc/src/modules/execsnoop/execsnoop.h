/* Types shared by execsnoop.bpf.c and its spec (the agent reads them from BTF). */
#ifndef BCC_PMDA_EXECSNOOP_H
#define BCC_PMDA_EXECSNOOP_H

#define EXECSNOOP_ARGSIZE 128	/* longest argument kept, with its NUL */
#define EXECSNOOP_MAX_ARGS 60	/* most arguments kept (the max_args option's ceiling) */
#define EXECSNOOP_ARGS_BUF (EXECSNOOP_MAX_ARGS * EXECSNOOP_ARGSIZE)
#define EXECSNOOP_SHORT_ARGS 512	/* arguments room of an exec kept in the short map */

/* One exec. The record sent ends after the used part of `args` (args_size bytes). */
struct execsnoop_event {
	__u32 pid;		/* thread group id */
	__u32 ppid;		/* parent's thread group id */
	__u32 uid;
	__s32 ret;		/* what execve returned: 0, or -errno */
	__u32 args_count;
	__u32 args_size;	/* bytes of args used */
	char comm[16];		/* the command after the exec */
	char args[EXECSNOOP_ARGS_BUF];	/* path, then argv[1..]: NUL-separated */
};

struct execsnoop_stats {
	__u64 lost;		/* records the ring buffer had no room for */
};

#endif
