/* netproc: the per-process counters the agent serves (field names are the spec's). */
#ifndef NETPROC_H
#define NETPROC_H

/* A process: its thread group id and start time (the group leader's start_boottime, ns since
 * boot), so a reused PID is another key and the agent reads each process's name once. */
struct netproc_key {
	__u32 tgid;
	__u32 pad;
	__u64 start;
};

struct netproc_stats {
	__u64 tcp_send_calls;
	__u64 tcp_send_bytes;
	__u64 tcp_recv_calls;
	__u64 tcp_recv_bytes;
	__u64 udp_send_calls;
	__u64 udp_send_bytes;
	__u64 udp_recv_calls;
	__u64 udp_recv_bytes;
};

#endif
