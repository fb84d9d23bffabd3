/* The record tcpconnlat.bpf.c sends over its ring buffer, one per established connect. */
#ifndef BCC_PMDA_TCPCONNLAT_H
#define BCC_PMDA_TCPCONNLAT_H

#define TCPCONNLAT_COMM_LEN 16

struct tcpconnlat_event {
	__u8 saddr[16];   /* IPv6, or IPv4-mapped IPv6 for IPv4 */
	__u8 daddr[16];
	__u64 lat;        /* ns from SYN_SENT to ESTABLISHED */
	__u32 pid;        /* thread group id of the connecting process */
	__u32 ipversion;  /* 4 or 6 */
	__u16 lport;      /* host order */
	__u16 dport;
	char comm[TCPCONNLAT_COMM_LEN];
};

struct tcpconnlat_stats {
	__u64 lost; /* records the ring buffer had no room for */
};

#endif
