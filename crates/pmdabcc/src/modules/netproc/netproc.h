/* netproc: the per-process counters the agent serves (field names are the spec's). */
#ifndef NETPROC_H
#define NETPROC_H

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
