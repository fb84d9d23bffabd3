/* Types shared by runqlat.bpf.c and the Rust side (which takes them from the skeleton). */
#ifndef BCC_PMDA_RUNQLAT_H
#define BCC_PMDA_RUNQLAT_H

/* Power-of-two buckets: every u64 value has one, so nothing is clamped. */
#define RUNQLAT_SLOTS 64

/* The value of the per-CPU array's only slot: the whole histogram, so one lookup reads it. */
struct runqlat_hist {
	__u64 slots[RUNQLAT_SLOTS]; /* slot i: floor(log2(latency in us)) == i (0 and 1 in slot 0) */
	__u64 count;                /* intervals measured */
	__u64 sum_ns;               /* their total, nanoseconds */
};

#endif
