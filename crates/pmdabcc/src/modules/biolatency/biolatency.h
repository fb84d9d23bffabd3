/* Types shared by biolatency.bpf.c and the Rust side (which takes them from the skeleton). */
#ifndef BCC_PMDA_BIOLATENCY_H
#define BCC_PMDA_BIOLATENCY_H

/* Power-of-two buckets: every u64 value has one, so nothing is clamped. */
#define BIOLAT_SLOTS 64

/* A latency histogram: the whole-system one (per-CPU array, one slot) and one per disk. */
struct biolat_hist {
	__u64 slots[BIOLAT_SLOTS]; /* slot i: floor(log2(latency in us)) == i (0 and 1 in slot 0) */
	__u64 count;               /* requests measured */
	__u64 sum_ns;              /* their total latency, nanoseconds */
};

/* Key of the in-flight map: the request's address where the hook passes the request
 * (tp_btf, raw_tp); device and sector where it passes only those (classic tracepoint). */
struct biolat_rq_key {
	__u64 rq;
	__u64 sector;
	__u32 dev;
	__u32 pad;
};

#endif
