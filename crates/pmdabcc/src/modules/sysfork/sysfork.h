/* Types shared by sysfork.bpf.c and the Rust side (which takes them from the skeleton). */
#ifndef BCC_PMDA_SYSFORK_H
#define BCC_PMDA_SYSFORK_H

/* The value of the per-CPU array's only slot. */
struct sysfork_count {
	__u64 tasks; /* new tasks (processes and threads) created on this CPU */
};

#endif
