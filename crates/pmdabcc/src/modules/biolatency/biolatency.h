/* Types shared by biolatency.bpf.c and the Rust side (which takes them from the skeleton). */
#ifndef BCC_PMDA_BIOLATENCY_H
#define BCC_PMDA_BIOLATENCY_H

/* Key of the in-flight map: the request's address where the hook passes the request
 * (tp_btf, raw_tp); device and sector where it passes only those (classic tracepoint). */
struct biolat_rq_key {
	__u64 rq;
	__u64 sector;
	__u32 dev;
	__u32 pad;
};

#endif
