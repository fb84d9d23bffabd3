// SPDX-License-Identifier: GPL-2.0
/*
 * softirqs: time spent in each softirq vector (hi, timer, net_tx, …), a power-of-two
 * histogram in microseconds per vector. A port of BCC's tools/softirqs.py (-d: the
 * distribution); docs/WRITING-MODULES.md walks through the port. A user module of
 * pmdabcc: this object plus softirqs.toml, no Rust.
 *
 * Hook twins (MODULE-SPEC.md): *_btf (tp_btf) first, *_tp (classic tracepoints) otherwise.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "hist.bpf.h"
#include "maps.bpf.h"

/* Softirqs do not nest on a CPU (a hard IRQ may interrupt one, another softirq may not),
 * so one start time per CPU is enough. */
PERCPU_SLOT_MAP(start, __u64);

/* One histogram per vector number (the spec names the numbers). Every CPU writes the same
 * value, so hist_add_atomic. NR_SOFTIRQS is 10; room for a kernel that adds some. */
HASH_MAP(dists, __u32, struct hist, 32);

static __always_inline void vec_entry(void)
{
	__u32 zero = 0;
	__u64 *ts = bpf_map_lookup_elem(&start, &zero);

	if (ts)
		*ts = bpf_ktime_get_ns();
}

static __always_inline void vec_exit(__u32 vec)
{
	__u32 zero = 0;
	__u64 *ts = bpf_map_lookup_elem(&start, &zero);
	struct hist *h;
	__u64 delta;

	/* 0: the entry was not seen (attached while this softirq ran) */
	if (!ts || !*ts)
		return;
	delta = bpf_ktime_get_ns() - *ts;
	*ts = 0;
	h = hist_lookup_or_init(&dists, &vec);
	if (h) /* buckets in µs; the sum in ns, which the spec divides by 1000 */
		hist_add_atomic(h, hist_log2_slot(delta / 1000), delta);
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(sirq_entry_btf, unsigned int vec_nr)
{
	vec_entry();
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(sirq_exit_btf, unsigned int vec_nr)
{
	vec_exit(vec_nr);
	return 0;
}

SEC("tracepoint/irq/softirq_entry")
int sirq_entry_tp(struct trace_event_raw_softirq *ctx)
{
	vec_entry();
	return 0;
}

SEC("tracepoint/irq/softirq_exit")
int sirq_exit_tp(struct trace_event_raw_softirq *ctx)
{
	vec_exit(ctx->vec);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
