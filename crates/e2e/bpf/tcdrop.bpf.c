// SPDX-License-Identifier: GPL-2.0
/*
 * The e2e tests' packet loss (the kernels here have no netem): tc classifiers, attached
 * direct-action on a veth, built by the tests with clang at run time.
 *  - "tc" (drop_every): drops every EVERY-th TCP packet (IPv4 or IPv6) through the hook;
 *  - "tc_data" (drop_nth_data): drops the DATA_NTH-th TCP packet carrying data of each
 *    flow (source address and ports), once: its retransmission passes.
 * Everything else passes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define ETH_HLEN 14
#define IPPROTO_TCP 6

#ifndef EVERY
#define EVERY 1
#endif
#ifndef DATA_NTH
#define DATA_NTH 1
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tcp_seen SEC(".maps");

/* A TCP flow as one end sees it: the sender's address (IPv4 in the first 4 bytes) and the
 * ports as they are on the wire. */
struct flow {
	__u8 saddr[16];
	__u32 ports;
};

/* Data packets seen per flow. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct flow);
	__type(value, __u64);
} data_seen SEC(".maps");

/* The offset of the TCP header, or 0 if the packet is not TCP over IPv4 or IPv6 (with no
 * extension header). Fills `f` if given. */
static __always_inline __u32 tcp_offset(struct __sk_buff *skb, struct flow *f)
{
	__u8 b = 0, proto = 0;

	if (skb->protocol == bpf_htons(0x0800)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 9, &proto, 1) ||	/* iphdr.protocol */
		    proto != IPPROTO_TCP || bpf_skb_load_bytes(skb, ETH_HLEN, &b, 1))
			return 0;
		if (f && bpf_skb_load_bytes(skb, ETH_HLEN + 12, f->saddr, 4))	/* iphdr.saddr */
			return 0;
		return ETH_HLEN + (b & 0xf) * 4;				/* ihl */
	}
	if (skb->protocol == bpf_htons(0x86DD)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 6, &proto, 1) ||	/* ipv6hdr.nexthdr */
		    proto != IPPROTO_TCP)
			return 0;
		if (f && bpf_skb_load_bytes(skb, ETH_HLEN + 8, f->saddr, 16))	/* ipv6hdr.saddr */
			return 0;
		return ETH_HLEN + 40;
	}
	return 0;
}

SEC("tc")
int drop_every(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u64 *n;

	if (!tcp_offset(skb, 0))
		return TC_ACT_OK;
	n = bpf_map_lookup_elem(&tcp_seen, &zero);
	if (!n)
		return TC_ACT_OK;
	return __sync_fetch_and_add(n, 1) % EVERY == EVERY - 1 ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("tc_data")
int drop_nth_data(struct __sk_buff *skb)
{
	struct flow f = {};
	__u64 one = 1, *n;
	__u32 l4 = tcp_offset(skb, &f);
	__u8 doff = 0;

	if (!l4 || bpf_skb_load_bytes(skb, l4, &f.ports, 4) ||
	    bpf_skb_load_bytes(skb, l4 + 12, &doff, 1))				/* tcphdr.doff */
		return TC_ACT_OK;
	if (skb->len <= l4 + (doff >> 4) * 4)	/* no data: a SYN, an ACK, a bare FIN */
		return TC_ACT_OK;
	n = bpf_map_lookup_elem(&data_seen, &f);
	if (!n) {
		bpf_map_update_elem(&data_seen, &f, &one, BPF_NOEXIST);
		return DATA_NTH == 1 ? TC_ACT_SHOT : TC_ACT_OK;
	}
	return __sync_add_and_fetch(n, 1) == DATA_NTH ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
