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
#include "task.bpf.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define MSG_PEEK 2

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct netproc_key);
	__type(value, struct netproc_stats);
} stats SEC(".maps");

/* Only calls that moved data over TCP or UDP, IPv4 or IPv6: errors, EOF and other families
 * (unix, netlink) not. */
static __always_inline bool counted(__u16 family, __u16 protocol, int ret)
{
	return ret > 0 && (family == AF_INET || family == AF_INET6) &&
	       (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP);
}

static __always_inline void account(struct netproc_key *k, bool tcp, int ret, bool send)
{
	struct netproc_stats zero = {}, *s;

	s = bpf_map_lookup_elem(&stats, k);
	if (!s) {
		bpf_map_update_elem(&stats, k, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&stats, k);
		if (!s)
			return; /* map full */
	}
	/* Per-CPU value: this CPU alone writes it. */
	if (tcp) {
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

/* tp_btf: the socket and the task are BTF pointers, read with plain loads (no probe-read
 * helper calls); the task is only looked at for calls that count. */
static __always_inline void account_btf(struct sock *sk, int ret, bool send)
{
	__u16 protocol = sk->sk_protocol;
	struct netproc_key k = {};
	struct task_struct *t;

	if (!counted(sk->__sk_common.skc_family, protocol, ret))
		return;
	t = bpf_get_current_task_btf();
	k.tgid = t->tgid;
	k.start = t->group_leader->start_boottime;
	account(&k, protocol == IPPROTO_TCP, ret, send);
}

/* Classic tracepoints: the record has family and protocol; the task is read with CO-RE. */
static __always_inline void account_tp(__u16 family, __u16 protocol, int ret, bool send)
{
	struct netproc_key k = {};
	struct task_struct *t;

	if (!counted(family, protocol, ret))
		return;
	t = (struct task_struct *)bpf_get_current_task();
	k.tgid = BPF_CORE_READ(t, tgid);
	k.start = process_start(BPF_CORE_READ(t, group_leader));
	account(&k, protocol == IPPROTO_TCP, ret, send);
}

/* A process is gone when its last thread exits (signal->live reaches 0 before this
 * tracepoint): its entry goes, so the map holds live processes only. */
static __always_inline void retire(struct task_struct *p)
{
	struct netproc_key k = {};

	if (BPF_CORE_READ(p, signal, live.counter) > 0)
		return;
	k.tgid = BPF_CORE_READ(p, tgid);
	k.start = process_start(BPF_CORE_READ(p, group_leader));
	bpf_map_delete_elem(&stats, &k);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(np_send_btf, struct sock *sk, int ret, int flags)
{
	account_btf(sk, ret, true);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(np_recv_btf, struct sock *sk, int ret, int flags)
{
	/* A peek leaves the data queued: the read that takes it counts. */
	if (!(flags & MSG_PEEK))
		account_btf(sk, ret, false);
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
	account_tp(ctx->family, ctx->protocol, ctx->ret, true);
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int np_recv_tp(struct trace_event_raw_sock_msg_length *ctx)
{
	if (!(ctx->flags & MSG_PEEK))
		account_tp(ctx->family, ctx->protocol, ctx->ret, false);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int np_exit_tp(void *ctx)
{
	retire((struct task_struct *)bpf_get_current_task());
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
