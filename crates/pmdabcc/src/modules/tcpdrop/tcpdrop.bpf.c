// SPDX-License-Identifier: GPL-2.0
/*
 * tcpdrop: packets the kernel dropped, per drop reason, from skb:kfree_skb (the kernel
 * frees a packet it did not deliver there, with an enum skb_drop_reason; consumed packets
 * go to skb:consume_skb instead). TCP packets only (IPv4 and IPv6), or every packet with
 * protocols = all. The original tool hooked tcp_drop (later tcp_drop_reason) with a kprobe.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "maps.bpf.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6

const volatile __u32 protocols = 0; /* 0: TCP, 1: all */

struct drop_key {
	__u32 reason; /* enum skb_drop_reason */
};

struct drop_count {
	__u64 packets;
};

PERCPU_HASH_MAP(drops, struct drop_key, struct drop_count, 1024);

/* The packet's transport protocol, from its IPv4 or IPv6 header (0 when it has none, or
 * an IPv6 extension header comes first). */
static __always_inline __u8 l4_protocol(struct sk_buff *skb)
{
	__u16 proto = BPF_CORE_READ(skb, protocol);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u8 p = 0;

	if (nh == (__u16)~0U)
		return 0;
	if (proto == bpf_htons(ETH_P_IP))
		bpf_probe_read_kernel(&p, 1, head + nh + offsetof(struct iphdr, protocol));
	else if (proto == bpf_htons(ETH_P_IPV6))
		bpf_probe_read_kernel(&p, 1, head + nh + offsetof(struct ipv6hdr, nexthdr));
	return p;
}

static __always_inline void count(struct sk_buff *skb, __u32 reason)
{
	struct drop_key key = { .reason = reason };
	struct drop_count zero = {}, *c;

	if (reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return;
	if (protocols == 0 && l4_protocol(skb) != IPPROTO_TCP)
		return;
	c = map_lookup_or_init(&drops, &key, &zero);
	if (!c)
		return;
	c->packets++; /* per-CPU value */
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(drop_btf, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	count(skb, reason);
	return 0;
}

SEC("tracepoint/skb/kfree_skb")
int drop_tp(struct trace_event_raw_kfree_skb *ctx)
{
	count((struct sk_buff *)ctx->skbaddr, ctx->reason);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
