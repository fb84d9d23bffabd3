// SPDX-License-Identifier: GPL-2.0
/*
 * tcpconnlat: how long active TCP connects take to establish, IPv4 and IPv6 (after bcc's
 * tcpconnlat, which needs kprobes on tcp_v4_connect, tcp_v6_connect and
 * tcp_rcv_state_process).
 *
 * sock:inet_sock_set_state: CLOSE -> SYN_SENT is connect(), in the caller's context (its
 * process and the time are noted, by socket); SYN_SENT -> ESTABLISHED is the SYN-ACK's
 * arrival (in a softirq: the process is the one noted), which sends the record; SYN_SENT
 * -> CLOSE is a refused or abandoned connect, forgotten.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcpconnlat.h"
#include "maps.bpf.h"
#include "inet.bpf.h"

PROCESS_FILTER()
/* Only connects that took at least this many microseconds. */
const volatile __u64 min_us = 0;

struct pending_connect {
	__u64 start_ns;
	__u32 tgid;
	char comm[TCPCONNLAT_COMM_LEN];
};

/* Connects in SYN_SENT, by socket address. LRU: a full table drops the oldest. */
LRU_HASH_MAP(pending, __u64, struct pending_connect, 8192);

EVENT_MAPS(1 << 20, struct tcpconnlat_stats);

const struct tcpconnlat_event *unused_event __attribute__((unused));

SEC("tracepoint/sock/inet_sock_set_state")
int tcpconnlat_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 sk = (__u64)ctx->skaddr, now = bpf_ktime_get_ns();
	struct pending_connect *p, init = {};
	struct tcpconnlat_event *e;

	if (ctx->protocol != INET_IPPROTO_TCP)
		return 0;
	if (ctx->newstate == INET_TCP_SYN_SENT) {
		init.tgid = bpf_get_current_pid_tgid() >> 32;
		if (!process_targeted(init.tgid))
			return 0;
		init.start_ns = now;
		bpf_get_current_comm(init.comm, sizeof(init.comm));
		bpf_map_update_elem(&pending, &sk, &init, BPF_ANY);
		return 0;
	}
	if (ctx->oldstate != INET_TCP_SYN_SENT)
		return 0;
	p = bpf_map_lookup_elem(&pending, &sk);
	if (!p)
		return 0;
	if (ctx->newstate != INET_TCP_ESTABLISHED || now - p->start_ns < min_us * 1000)
		goto out;
	e = RESERVE_OR_COUNT_LOST(events, sizeof(*e), stats);
	if (!e)
		goto out;
	__builtin_memset(e, 0, sizeof(*e));
	inet_state_addrs(ctx, e->saddr, e->daddr);
	e->lat = now - p->start_ns;
	e->pid = p->tgid;
	e->ipversion = ctx->family == INET_AF_INET ? 4 : 6;
	e->lport = ctx->sport;
	e->dport = ctx->dport;
	__builtin_memcpy(e->comm, p->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, ringbuf_lazy_wakeup(&events));
out:
	bpf_map_delete_elem(&pending, &sk);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
