/* The record biosnoop.bpf.c sends over its ring buffer, one per completed block request. */
#ifndef BCC_PMDA_BIOSNOOP_H
#define BCC_PMDA_BIOSNOOP_H

#define BIOSNOOP_COMM_LEN 16
#define BIOSNOOP_RWBS_LEN 8

struct biosnoop_event {
	__u64 sector; /* first sector (512 bytes) of the request on its disk */
	__u64 lat;    /* ns from issue (or insert, with `queued`) to completion */
	__u32 bytes;  /* the request's size */
	__u32 pid;    /* thread group id of the submitter */
	__u32 dev;    /* whole disk, kernel dev_t encoding (major << 20 | minor) */
	char rwbs[BIOSNOOP_RWBS_LEN];
	char comm[BIOSNOOP_COMM_LEN];
};

struct biosnoop_stats {
	__u64 lost; /* records the ring buffer had no room for */
};

#endif
