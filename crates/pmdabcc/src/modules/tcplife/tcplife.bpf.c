// SPDX-License-Identifier: GPL-2.0
/*
 * tcplife: TCP sessions and the bytes they move, per owning process (after bcc's and
 * libbpf-tools' tcplife).
 *
 * - sock:inet_sock_set_state (classic tracepoint, IPv4 and IPv6): a session is remembered
 *   from SYN_SENT (connect side) or SYN_RECV (accepted side) in the `sessions` map, keyed by
 *   the socket's address; at TCP_CLOSE its final payload byte counts (payload_bytes) go to
 *   user space in a CLOSE record over the `events` ring buffer.
 * - Owner: the current task, but only at changes a system call of the owner makes, never
 *   at those made in a softirq on receipt of a packet (the passive side's handshake, FIN
 *   and ACK processing), where the current task is whoever the softirq interrupted (on
 *   loopback, the peer). The preempt count would tell, but per-CPU kernel variables are
 *   out of reach without CONFIG_KALLSYMS_ALL, so the state says it instead. So the
 *   connect side gets its owner at SYN_SENT (connect()); the accepted side at its first
 *   sendmsg/recvmsg (sock:sock_send_length / sock:sock_recv_length, kernel 6.3+), or at
 *   FIN_WAIT1/LAST_ACK (close()/shutdown()) if nobody used it. Once a session is
 *   established and owned, an OPEN record tells user space to count it as live.
 * - Live sessions: the sendmsg/recvmsg tracepoints and the iter/tcp program (run by user
 *   space at each refresh) store the current byte counts into the session's map value.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "tcplife.h"
#include "maps.bpf.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* TCP states (include/net/tcp_states.h) */
#define S_ESTABLISHED 1
#define S_SYN_SENT 2
#define S_SYN_RECV 3
#define S_FIN_WAIT1 4
#define S_CLOSE 7
#define S_LAST_ACK 9

const volatile bool filter_pid = false;
const volatile bool filter_lport = false;
const volatile bool filter_dport = false;

/* Sessions by socket address; max_entries is set from the map_size option. */
HASH_MAP(sessions, __u64, struct tcplife_session, 16384);

/* PIDs (thread group ids) the process option selects, kept up to date by user space. */
HASH_MAP(pids, __u32, __u8, 8192);

/* The lport and dport filters: ports (host order) to record. */
HASH_MAP(lports, __u16, __u8, 64);
HASH_MAP(dports, __u16, __u8, 64);

/* Its size is set from the buffer_page_count option. */
EVENT_MAPS(1 << 20, struct tcplife_stats);

/* Keep the shared types in BTF, so the skeleton carries them to Rust. */
enum tcplife_kind tcplife_kind_btf __attribute__((unused));
enum tcplife_flag tcplife_flag_btf __attribute__((unused));
struct tcplife_event *tcplife_event_btf __attribute__((unused));

static __always_inline struct tcplife_stats *my_stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&stats, &zero);
}

/* Makes the current process the owner; false when the process option rejects it. */
static __always_inline bool set_owner(struct tcplife_session *s)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (filter_pid && !bpf_map_lookup_elem(&pids, &pid))
		return false;
	s->pid = pid;
	bpf_get_current_comm(&s->comm, sizeof(s->comm));
	return true;
}

/*
 * Payload bytes of a session, from counters of sequence space, where the SYN and the FIN
 * take one number each:
 * - tcp_sock.bytes_received counts rcv_nxt's advances, the peer's FIN included once it
 *   arrived; tcp_fin() then also sets SOCK_DONE (the SYN is not counted: rcv_nxt starts
 *   past it).
 * - tcp_sock.bytes_acked counts snd_una's advances: on the connecting side from the ISN, so
 *   the acked SYN counts; an accepted socket starts at ISN + 1. Our FIN counts once acked:
 *   it was queued (FIN_WAIT1/LAST_ACK, then tcp_send_fin adds it to write_seq) and snd_una
 *   reached write_seq. An abort (RST) sends no FIN.
 */
static __always_inline void payload_bytes(__u64 sk, __u32 flags, __u64 *rx, __u64 *tx)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct sock *s = (struct sock *)sk;
	__u64 r = BPF_CORE_READ(tp, bytes_received);
	__u64 t = BPF_CORE_READ(tp, bytes_acked);

	if ((BPF_CORE_READ(s, __sk_common.skc_flags) & (1UL << SOCK_DONE)) && r > 0)
		r--;
	if (!(flags & TCPLIFE_F_PASSIVE) && t > 0)
		t--;
	if ((flags & TCPLIFE_F_FIN_SENT) && t > 0 &&
	    BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq))
		t--;
	*rx = r;
	*tx = t;
}

static __always_inline void sample_bytes(struct tcplife_session *s, __u64 sk)
{
	payload_bytes(sk, s->flags, &s->rx, &s->tx);
}

/* Sends the OPEN record once the session is both established and owned. */
static __always_inline void maybe_open(struct tcplife_session *s, __u64 sk)
{
	struct tcplife_event *e;
	struct tcplife_stats *st;

	if (!(s->flags & TCPLIFE_F_ESTABLISHED) || !s->pid || (s->flags & TCPLIFE_F_OPEN_SENT))
		return;
	s->flags |= TCPLIFE_F_OPEN_SENT;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		s->flags |= TCPLIFE_F_OPEN_LOST;
		st = my_stats();
		if (st)
			__sync_fetch_and_add(&st->lost, 1);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = TCPLIFE_OPEN;
	e->sk = sk;
	e->start_ns = s->start_ns;
	e->pid = s->pid;
	e->flags = s->flags;
	__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

static __always_inline bool ports_wanted(__u16 lport, __u16 dport)
{
	if (filter_lport && !bpf_map_lookup_elem(&lports, &lport))
		return false;
	if (filter_dport && !bpf_map_lookup_elem(&dports, &dport))
		return false;
	return true;
}

SEC("tracepoint/sock/inet_sock_set_state")
int tcplife_state(struct trace_event_raw_inet_sock_set_state *args)
{
	struct tcplife_session *s;
	struct tcplife_event *e;
	struct tcplife_stats *st;
	int newstate = args->newstate;
	__u64 sk = (__u64)args->skaddr;
	__u64 now;

	if (args->protocol != IPPROTO_TCP)
		return 0;

	if (newstate == S_SYN_SENT || newstate == S_SYN_RECV) {
		struct tcplife_session init = {};

		if (!ports_wanted(args->sport, args->dport))
			return 0;
		init.start_ns = bpf_ktime_get_ns();
		if (newstate == S_SYN_RECV)
			init.flags = TCPLIFE_F_PASSIVE;
		if (bpf_map_update_elem(&sessions, &sk, &init, BPF_ANY)) {
			st = my_stats();
			if (st)
				__sync_fetch_and_add(&st->untracked, 1);
			return 0;
		}
		s = bpf_map_lookup_elem(&sessions, &sk);
		/* connect(): the caller owns the session */
		if (s && newstate == S_SYN_SENT && !set_owner(s))
			bpf_map_delete_elem(&sessions, &sk);
		return 0;
	}

	s = bpf_map_lookup_elem(&sessions, &sk);
	if (!s)
		return 0;
	if (newstate == S_ESTABLISHED)
		s->flags |= TCPLIFE_F_ESTABLISHED;
	if (newstate == S_FIN_WAIT1 || newstate == S_LAST_ACK)
		s->flags |= TCPLIFE_F_FIN_SENT;

	if (newstate != S_CLOSE) {
		/* close()/shutdown() of a session nobody has used yet: its owner acts */
		if (!s->pid && (newstate == S_FIN_WAIT1 || newstate == S_LAST_ACK) && !set_owner(s)) {
			bpf_map_delete_elem(&sessions, &sk);
			return 0;
		}
		maybe_open(s, sk);
		return 0;
	}

	/* TCP_CLOSE: a session that never got established (refused, reset) is not reported. */
	if (!(s->flags & TCPLIFE_F_ESTABLISHED))
		goto out;
	if (!s->pid) {
		/*
		 * Last resort, as bcc's tcplife does: whoever closes it. Right when the owner's
		 * close() aborts it (unread data: RST); wrong when a reset from the peer closes
		 * it in a softirq before anyone used it.
		 */
		if (!set_owner(s))
			goto out;
		s->flags |= TCPLIFE_F_GUESSED;
	}
	now = bpf_ktime_get_ns();
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		st = my_stats();
		if (st)
			__sync_fetch_and_add(&st->lost, 1);
		goto out;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = TCPLIFE_CLOSE;
	e->sk = sk;
	e->start_ns = s->start_ns;
	e->duration_ns = now - s->start_ns;
	e->pid = s->pid;
	e->flags = s->flags;
	__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	payload_bytes(sk, s->flags, &e->rx, &e->tx);
	e->family = args->family;
	e->lport = args->sport;
	e->dport = args->dport;
	/* probe reads, as libbpf-tools does: clang would copy through a moved ctx pointer */
	if (args->family == AF_INET) {
		bpf_probe_read_kernel(e->saddr, 4, args->saddr);
		bpf_probe_read_kernel(e->daddr, 4, args->daddr);
	} else {
		bpf_probe_read_kernel(e->saddr, 16, args->saddr_v6);
		bpf_probe_read_kernel(e->daddr, 16, args->daddr_v6);
	}
	bpf_ringbuf_submit(e, 0);
out:
	bpf_map_delete_elem(&sessions, &sk);
	return 0;
}

/* sendmsg/recvmsg on a socket (process context): owner of accepted sessions, live bytes. */
static __always_inline int on_io(struct trace_event_raw_sock_msg_length *args)
{
	struct tcplife_session *s;
	__u64 sk = (__u64)args->sk;

	if (args->protocol != IPPROTO_TCP)
		return 0;
	s = bpf_map_lookup_elem(&sessions, &sk);
	if (!s)
		return 0;
	sample_bytes(s, sk);
	if (!s->pid) {
		if (!set_owner(s)) {
			bpf_map_delete_elem(&sessions, &sk);
			return 0;
		}
		maybe_open(s, sk);
	}
	return 0;
}

SEC("tracepoint/sock/sock_send_length")
int tcplife_send(struct trace_event_raw_sock_msg_length *args)
{
	return on_io(args);
}

SEC("tracepoint/sock/sock_recv_length")
int tcplife_recv(struct trace_event_raw_sock_msg_length *args)
{
	return on_io(args);
}

/* Run by user space at refresh: current byte counts of every tracked open session. */
SEC("iter/tcp")
int tcplife_iter(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcplife_session *s;
	struct tcp_sock *tp;
	__u64 sk;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	sk = (__u64)tp;
	s = bpf_map_lookup_elem(&sessions, &sk);
	if (!s)
		return 0;
	sample_bytes(s, sk);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
