/* Types shared by biotop.bpf.c and the Rust side (which takes them from the skeleton). */
#ifndef BCC_PMDA_BIOTOP_H
#define BCC_PMDA_BIOTOP_H

#define BIOTOP_COMM_LEN 16

/* A (disk, process) pair: the key of the `pairs` map. */
struct biotop_key {
	__u32 dev;   /* whole disk, kernel dev_t encoding (major << 20 | minor) */
	__u32 tgid;  /* thread group id of the submitter */
	__u64 start; /* the process's start, ns since boot (a reused PID is another pair) */
};

/* What one pair did, since it was first seen. Updated with atomic adds. */
struct biotop_val {
	__u64 read_bytes;
	__u64 write_bytes;
	__u64 discard_bytes;
	__u64 reads;    /* completed read requests */
	__u64 writes;   /* completed write requests */
	__u64 discards; /* completed discard (and secure erase) requests */
	__u64 flushes;  /* completed cache flush requests (no data) */
	__u64 read_ns;  /* issue to completion, summed over the completed read requests */
	__u64 write_ns; /* the same for write requests */
	char comm[BIOTOP_COMM_LEN]; /* the process's name at its latest request (8-byte aligned) */
};

/* Module-wide counters: the only slot of a per-CPU array. */
struct biotop_counters {
	__u64 dropped;       /* completions lost because `pairs` was full */
	__u64 unattributed;  /* read/write bytes completed with no known submitter */
	__u64 completed;     /* requests whose last completion piece was seen (all disks) */
};

#endif
