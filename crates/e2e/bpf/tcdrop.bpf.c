// SPDX-License-Identifier: GPL-2.0
/*
 * The e2e tests' packet loss (the kernels here have no netem): a tc classifier, attached
 * direct-action on a veth's egress, that drops every EVERY-th TCP packet (IPv4 or IPv6)
 * leaving it, and passes everything else. Built by the tests with clang at run time.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define ETH_HLEN 14
#define IPPROTO_TCP 6

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tcp_seen SEC(".maps");

SEC("tc")
int drop_every(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u8 proto = 0;
	__u64 *n;

	if (skb->protocol == bpf_htons(0x0800))
		bpf_skb_load_bytes(skb, ETH_HLEN + 9, &proto, 1);	/* iphdr.protocol */
	else if (skb->protocol == bpf_htons(0x86DD))
		bpf_skb_load_bytes(skb, ETH_HLEN + 6, &proto, 1);	/* ipv6hdr.nexthdr */
	if (proto != IPPROTO_TCP)
		return TC_ACT_OK;
	n = bpf_map_lookup_elem(&tcp_seen, &zero);
	if (!n)
		return TC_ACT_OK;
	return __sync_fetch_and_add(n, 1) % EVERY == EVERY - 1 ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
