// SPDX-License-Identifier: GPL-2.0
/*
 * tcpperpid: TCP bytes sent and received per process, from sock:sock_send_length /
 * sock:sock_recv_length (6.3+), counted as the data moves, with optional local and remote
 * port filters. The original's default counted a session's bytes when it closed, from
 * tcplife's program (a long-lived connection showed nothing until its end); its
 * `highres` mode counted at tcp_sendmsg/tcp_cleanup_rbuf kprobes, as this does with the
 * tracepoints. Keyed by process (TGID); a process's entry goes when it exits.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "maps.bpf.h"
#include "inet.bpf.h"
#include "hooks.bpf.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

struct perpid_bytes {
	__u64 tx;
	__u64 rx;
};

/* Bytes per process (thread group id). */
PERCPU_HASH_MAP(bytes, __u32, struct perpid_bytes, 16384);

/* The lport and dport options: ports (host order) to count; all when not given. */
const volatile bool filter_lport = false;
const volatile bool filter_dport = false;

HASH_MAP(lports, __u16, __u8, 1024);
HASH_MAP(dports, __u16, __u8, 1024);

static __always_inline void account(struct sock *sk, int ret, bool send)
{
	struct perpid_bytes zero = {}, *b;
	__u16 family, lport, dport;
	__u32 tgid;

	if (ret <= 0 || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	if (filter_lport) {
		lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		if (!bpf_map_lookup_elem(&lports, &lport))
			return;
	}
	if (filter_dport) {
		dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		if (!bpf_map_lookup_elem(&dports, &dport))
			return;
	}
	tgid = bpf_get_current_pid_tgid() >> 32;
	b = map_lookup_or_init(&bytes, &tgid, &zero);
	if (!b)
		return; /* map full */
	if (send)
		b->tx += ret; /* per-CPU value */
	else
		b->rx += ret;
}

/* A process is gone when its last thread exits: its entry goes, so a reused PID starts
 * from zero. sched_process_exit runs in the exiting task. */
static __always_inline void retire(void)
{
	struct task_struct *p = (struct task_struct *)bpf_get_current_task();
	__u32 tgid;

	if (BPF_CORE_READ(p, signal, live.counter) > 0)
		return;
	tgid = BPF_CORE_READ(p, tgid);
	bpf_map_delete_elem(&bytes, &tgid);
}

SOCK_LENGTH_PROGRAMS(pp, account)

BTF_TP_TWINS(sched, sched_process_exit, pp_exit, retire)

char LICENSE[] SEC("license") = "GPL";
