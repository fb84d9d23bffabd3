// SPDX-License-Identifier: GPL-2.0
/*
 * tcpconnect: every active TCP connection attempt, IPv4 and IPv6 (after bcc's tcpconnect,
 * which needs kprobes on tcp_v4_connect and tcp_v6_connect).
 *
 * sock:inet_sock_set_state CLOSE -> SYN_SENT: connect() moves the socket there in the
 * calling task's context, once the route and the source address are chosen and just
 * before the SYN goes out (the source port may not be chosen yet, so it is not recorded).
 * Attempts the peer then refuses are recorded too, as bcc's tool records them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcpconnect.h"
#include "maps.bpf.h"
#include "inet.bpf.h"

PROCESS_FILTER()
/* Only connects by this user id (-1: every user). */
const volatile __s64 target_uid = -1;

EVENT_MAPS(1 << 20, struct tcpconnect_stats);

const struct tcpconnect_event *unused_event __attribute__((unused));

SEC("tracepoint/sock/inet_sock_set_state")
int tcpconnect_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	struct tcpconnect_event *e;

	if (ctx->protocol != INET_IPPROTO_TCP || ctx->newstate != INET_TCP_SYN_SENT)
		return 0;
	if (!process_targeted(tgid) || (target_uid >= 0 && uid != target_uid))
		return 0;
	e = RESERVE_OR_COUNT_LOST(events, sizeof(*e), stats);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	inet_state_addrs(ctx, e->saddr, e->daddr);
	e->pid = tgid;
	e->uid = uid;
	e->ipversion = ctx->family == INET_AF_INET ? 4 : 6;
	e->dport = ctx->dport;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, ringbuf_lazy_wakeup(&events));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
