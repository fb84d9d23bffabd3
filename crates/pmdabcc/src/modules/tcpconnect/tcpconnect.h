/* The record tcpconnect.bpf.c sends over its ring buffer, one per TCP connect. */
#ifndef BCC_PMDA_TCPCONNECT_H
#define BCC_PMDA_TCPCONNECT_H

#define TCPCONNECT_COMM_LEN 16

struct tcpconnect_event {
	__u8 saddr[16];   /* IPv6, or IPv4-mapped IPv6 for IPv4 */
	__u8 daddr[16];
	__u32 pid;        /* thread group id of the connecting process */
	__u32 uid;
	__u32 ipversion;  /* 4 or 6 */
	__u16 dport;      /* host order */
	__u16 pad;
	char comm[TCPCONNECT_COMM_LEN];
};

struct tcpconnect_stats {
	__u64 lost; /* records the ring buffer had no room for */
};

#endif
