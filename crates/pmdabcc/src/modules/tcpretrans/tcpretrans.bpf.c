// SPDX-License-Identifier: GPL-2.0
/*
 * tcpretrans: TCP retransmissions per connection and per kind, from tcp:tcp_retransmit_skb
 * (data, SYN and FIN segments the kernel sends again, tail loss probes included) and
 * tcp:tcp_retransmit_synack (a listener's SYN-ACK sent again). The original hooked the
 * tcp_retransmit_skb kprobe. Counted as the kernel counts TcpRetransSegs: every attempt, by
 * segments (a GSO packet is several), whether the device took the packet or not (the
 * event's err: a queue or filter that dropped it); the failed ones are also counted apart.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"

struct conn_key {
	__u8 saddr[16];	/* IPv6, or IPv4 mapped (::ffff:a.b.c.d), as the tracepoints store it */
	__u8 daddr[16];
	__u16 lport;	/* host order */
	__u16 dport;
};

struct retrans {
	__u64 count;	/* retransmissions (one per packet sent again) */
	__u64 segs;	/* TCP segments they carried (TcpRetransSegs counts these) */
	__u64 failed;	/* of the retransmissions, those the send reported an error for */
};

enum kind { RETRANSMIT = 0, SYNACK = 1 };

/* Connections age out when it is full: the least recently retransmitting goes. */
LRU_HASH_MAP(conns, struct conn_key, struct retrans, 8192);

HASH_MAP(kinds, __u32, struct retrans, 2);

static __always_inline void add(void *map, const void *key, __u64 segs, bool failed)
{
	struct retrans zero = {}, *r = map_lookup_or_init(map, key, &zero);

	if (!r)
		return;
	__sync_fetch_and_add(&r->count, 1);
	__sync_fetch_and_add(&r->segs, segs);
	if (failed)
		__sync_fetch_and_add(&r->failed, 1);
}

static __always_inline void count(const __u8 *saddr, const __u8 *daddr, __u16 lport, __u16 dport,
				  __u32 kind, __u64 segs, bool failed)
{
	struct conn_key key = {};

	/* The record's arrays: the verifier allows no copy through a moved context pointer. */
	bpf_probe_read_kernel(key.saddr, sizeof(key.saddr), saddr);
	bpf_probe_read_kernel(key.daddr, sizeof(key.daddr), daddr);
	key.lport = lport;
	key.dport = dport;
	add(&conns, &key, segs, failed);
	add(&kinds, &kind, segs, failed);
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int retrans_skb(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx->skbaddr;
	struct tcp_skb_cb *cb;
	__u16 segs;

	/* tcp_skb_pcount(): the segments of the packet, as the kernel adds them up. */
	cb = (struct tcp_skb_cb *)&skb->cb[0];
	segs = BPF_CORE_READ(cb, tcp_gso_segs);
	count(ctx->saddr_v6, ctx->daddr_v6, ctx->sport, ctx->dport, RETRANSMIT, segs ? segs : 1,
	      ctx->err != 0);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_synack")
int retrans_synack(struct trace_event_raw_tcp_retransmit_synack *ctx)
{
	count(ctx->saddr_v6, ctx->daddr_v6, ctx->sport, ctx->dport, SYNACK, 1, false);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
