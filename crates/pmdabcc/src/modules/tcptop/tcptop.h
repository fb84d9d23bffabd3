/* tcptop: bytes per TCP connection and process, shared with the agent. */
#ifndef TCPTOP_H
#define TCPTOP_H

struct tcptop_key {
	__u32 pid;	/* thread group id */
	__u16 family;	/* AF_INET or AF_INET6 */
	__u16 lport;	/* host order */
	__u16 dport;	/* host order */
	__u16 pad;
	__u8 saddr[16]; /* IPv4: the first 4 bytes, network order */
	__u8 daddr[16];
};

struct tcptop_bytes {
	__u64 rx;
	__u64 tx;
};

#endif
