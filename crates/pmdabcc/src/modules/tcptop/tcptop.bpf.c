// SPDX-License-Identifier: GPL-2.0
/*
 * tcptop: TCP bytes sent and received per connection and process, cumulative; the agent
 * turns them into the busiest connections of each interval. Hooks: the socket layer's
 * sock_send_length / sock_recv_length tracepoints (6.3+), in the caller's context (the
 * original used tcp_sendmsg / tcp_cleanup_rbuf kprobes).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "tcptop.h"
#include "maps.bpf.h"
#include "inet.bpf.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

HASH_MAP(conns, struct tcptop_key, struct tcptop_bytes, 16384);

static __always_inline void account(struct sock *sk, int ret, bool send)
{
	struct tcptop_key k = {}; /* zeroed: keys are hashed byte for byte */
	struct tcptop_bytes zero = {}, *v;

	if (ret <= 0 || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	k.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	/* BPF_CORE_READ_INTO reads sizeof(*dst): pass whole-array pointers or typed values. */
	if (k.family == AF_INET) {
		__u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);

		__builtin_memcpy(k.saddr, &s, 4);
		__builtin_memcpy(k.daddr, &d, 4);
	} else if (k.family == AF_INET6) {
		BPF_CORE_READ_INTO(&k.saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&k.daddr, sk, __sk_common.skc_v6_daddr);
	} else {
		return;
	}
	k.lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	/* A session that reached TCP_CLOSE (e.g. data read after the peer's FIN, in TIME_WAIT)
	 * gave its port back (skc_num is 0); the socket still has it as its source port. */
	if (!k.lport)
		k.lport = __builtin_bswap16(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	k.dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	k.pid = bpf_get_current_pid_tgid() >> 32;
	v = map_lookup_or_init(&conns, &k, &zero);
	if (!v)
		return; /* map full */
	/* shared by all CPUs */
	if (send)
		__sync_fetch_and_add(&v->tx, ret);
	else
		__sync_fetch_and_add(&v->rx, ret);
}

SOCK_LENGTH_PROGRAMS(tcptop, account)

char LICENSE[] SEC("license") = "GPL";
