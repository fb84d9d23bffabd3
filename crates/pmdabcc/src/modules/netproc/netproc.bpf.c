// SPDX-License-Identifier: GPL-2.0
/*
 * netproc: TCP and UDP send/receive calls and bytes per process, from the socket layer's
 * sock:sock_send_length / sock:sock_recv_length tracepoints (6.3+), which fire once per
 * sendmsg/recvmsg (and write/read/sendfile/splice on a socket) with its result, in the
 * caller's context. Keyed by process (TGID), not thread, as the proc PMDA counts.
 * The original hooked tcp_sendmsg/tcp_cleanup_rbuf/udp_sendmsg/skb_consume_udp kprobes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "netproc.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define MSG_PEEK 2

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tgid */
	__type(value, struct netproc_stats);
} stats SEC(".maps");

static __always_inline void account(__u16 family, __u16 protocol, int ret, bool send)
{
	struct netproc_stats zero = {}, *s;
	__u32 tgid;

	/* Only calls that moved data; errors, EOF and other families (unix, netlink) not. */
	if (ret <= 0 || (family != AF_INET && family != AF_INET6))
		return;
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP)
		return;
	tgid = bpf_get_current_pid_tgid() >> 32;
	s = bpf_map_lookup_elem(&stats, &tgid);
	if (!s) {
		bpf_map_update_elem(&stats, &tgid, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&stats, &tgid);
		if (!s)
			return; /* map full */
	}
	/* Per-CPU value: this CPU alone writes it. */
	if (protocol == IPPROTO_TCP) {
		if (send) {
			s->tcp_send_calls++;
			s->tcp_send_bytes += ret;
		} else {
			s->tcp_recv_calls++;
			s->tcp_recv_bytes += ret;
		}
	} else {
		if (send) {
			s->udp_send_calls++;
			s->udp_send_bytes += ret;
		} else {
			s->udp_recv_calls++;
			s->udp_recv_bytes += ret;
		}
	}
}

static __always_inline void account_sk(struct sock *sk, int ret, bool send)
{
	account(BPF_CORE_READ(sk, __sk_common.skc_family), BPF_CORE_READ(sk, sk_protocol), ret, send);
}

/* A process is gone when its last thread exits (signal->live reaches 0 before this
 * tracepoint): its entry goes, so a reused PID starts from zero. */
static __always_inline void retire(struct task_struct *p)
{
	__u32 tgid;

	if (BPF_CORE_READ(p, signal, live.counter) > 0)
		return;
	tgid = BPF_CORE_READ(p, tgid);
	bpf_map_delete_elem(&stats, &tgid);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(np_send_btf, struct sock *sk, int ret, int flags)
{
	account_sk(sk, ret, true);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(np_recv_btf, struct sock *sk, int ret, int flags)
{
	/* A peek leaves the data queued: the read that takes it counts. */
	if (!(flags & MSG_PEEK))
		account_sk(sk, ret, false);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(np_exit_btf, struct task_struct *p)
{
	retire(p);
	return 0;
}

SEC("tracepoint/sock/sock_send_length")
int np_send_tp(struct trace_event_raw_sock_msg_length *ctx)
{
	account(ctx->family, ctx->protocol, ctx->ret, true);
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int np_recv_tp(struct trace_event_raw_sock_msg_length *ctx)
{
	if (!(ctx->flags & MSG_PEEK))
		account(ctx->family, ctx->protocol, ctx->ret, false);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int np_exit_tp(void *ctx)
{
	retire((struct task_struct *)bpf_get_current_task());
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
