/* Types shared by selftest.bpf.c and the Rust side. */
#ifndef BCC_PMDA_SELFTEST_H
#define BCC_PMDA_SELFTEST_H

#define SELFTEST_COMM_LEN 16

/* The last task that forked, and how many forks were seen. */
struct selftest_state {
	__u64 forks;
	__u32 last_pid;
	char last_comm[SELFTEST_COMM_LEN];
};

#endif
