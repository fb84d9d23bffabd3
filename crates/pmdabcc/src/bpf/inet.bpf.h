/* Helpers for the sock tracepoints, shared by the modules' BPF programs (tcpconnect,
 * tcpconnlat, tcptop, tcpperpid) and by user modules. Include after vmlinux.h and <bpf/bpf_helpers.h>. */
#ifndef BCC_PMDA_INET_BPF_H
#define BCC_PMDA_INET_BPF_H

#define INET_AF_INET 2
#define INET_AF_INET6 10
#define INET_IPPROTO_TCP 6
#define INET_MSG_PEEK 2

/* TCP states (include/net/tcp_states.h) */
#define INET_TCP_ESTABLISHED 1
#define INET_TCP_SYN_SENT 2
#define INET_TCP_CLOSE 7

/* The record's addresses in 16 bytes each: IPv6 as they are, IPv4 as IPv4-mapped IPv6
 * addresses (::ffff:a.b.c.d), which the agent's `inet` decoder prints as dotted quads.
 * `saddr` and `daddr` are zeroed. Probe reads, as libbpf-tools does: clang would copy
 * through a moved ctx pointer, which the verifier refuses. */
static __always_inline void inet_state_addrs(struct trace_event_raw_inet_sock_set_state *ctx,
					     __u8 *saddr, __u8 *daddr)
{
	if (ctx->family == INET_AF_INET) {
		saddr[10] = saddr[11] = 0xff;
		daddr[10] = daddr[11] = 0xff;
		bpf_probe_read_kernel(saddr + 12, 4, ctx->saddr);
		bpf_probe_read_kernel(daddr + 12, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(daddr, 16, ctx->daddr_v6);
	}
}

/* Defines the hook twins (MODULE-SPEC.md) of a module that counts what sockets move, from
 * sock:sock_send_length and sock:sock_recv_length (6.3+), which run in the caller's context:
 * `base`_send_btf and `base`_recv_btf (tp_btf), `base`_send_tp and `base`_recv_tp (classic
 * tracepoints) call `account`(struct sock *sk, int ret, bool send) for each call, `ret` its
 * result (bytes, or a negative error). A peek (MSG_PEEK) leaves the data queued: the read
 * that takes it counts, so peeks are left out. */
#define SOCK_LENGTH_PROGRAMS(base, account)						\
	SEC("tp_btf/sock_send_length")							\
	int BPF_PROG(base##_send_btf, struct sock *sk, int ret, int flags)		\
	{										\
		account(sk, ret, true);							\
		return 0;								\
	}										\
	SEC("tp_btf/sock_recv_length")							\
	int BPF_PROG(base##_recv_btf, struct sock *sk, int ret, int flags)		\
	{										\
		if (!(flags & INET_MSG_PEEK))						\
			account(sk, ret, false);					\
		return 0;								\
	}										\
	SEC("tracepoint/sock/sock_send_length")						\
	int base##_send_tp(struct trace_event_raw_sock_msg_length *ctx)		\
	{										\
		account((struct sock *)ctx->sk, ctx->ret, true);			\
		return 0;								\
	}										\
	SEC("tracepoint/sock/sock_recv_length")						\
	int base##_recv_tp(struct trace_event_raw_sock_msg_length *ctx)		\
	{										\
		if (!(ctx->flags & INET_MSG_PEEK))					\
			account((struct sock *)ctx->sk, ctx->ret, false);		\
		return 0;								\
	}

#endif
