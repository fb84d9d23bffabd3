// SPDX-License-Identifier: GPL-2.0
/*
 * hardirqs: time spent in each hard IRQ handler, a power-of-two histogram in nanoseconds
 * per IRQ action name (as /proc/interrupts names them). After BCC's tools/hardirqs.py.
 * A user module of pmdabcc: this object plus hardirqs.toml, no Rust.
 *
 * Two program sets for the same two events (hook twins, see MODULE-SPEC.md): *_btf
 * (tp_btf, typed arguments) and *_tp (classic tracepoints); the agent keeps the first set
 * the kernel accepts.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hist.bpf.h"
#include "maps.bpf.h"

#define IRQ_NAME_LEN 32

/* bcc.conf `min_us`: handler runs shorter than this are not recorded. */
const volatile __u32 min_us = 0;

/* The histograms' key: the action's name (the spec decodes it as a string). */
struct irq_key {
	char name[IRQ_NAME_LEN];
};

/* What the entry leaves for the exit on this CPU: hard IRQ handlers do not nest (they run
 * with interrupts off), so one slot per CPU holds the handler running there. */
struct irq_start {
	__u64 ts;
	struct irq_key key;
};

PERCPU_SLOT_MAP(start, struct irq_start);

HASH_MAP(dists, struct irq_key, struct hist, 1024);

static __always_inline struct irq_start *slot(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&start, &zero);
}

/* The map hashes all 32 bytes of the key: bytes after the name's NUL, left from a longer
 * name of an earlier IRQ on this CPU, would make another key for the same name. */
static __always_inline void clear_key(struct irq_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
}

static __always_inline void handler_exit(void)
{
	struct irq_start *s = slot();
	struct hist *h;
	__u64 delta;

	/* ts 0: the entry was not seen (attached mid-handler) */
	if (!s || !s->ts)
		return;
	delta = bpf_ktime_get_ns() - s->ts;
	s->ts = 0;
	if (delta < (__u64)min_us * 1000)
		return;
	h = hist_lookup_or_init(&dists, &s->key);
	if (h)
		hist_add_atomic(h, hist_log2_slot(delta), delta);
}

/* --- tp_btf: the irqaction is at hand --- */

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(irq_entry_btf, int irq, struct irqaction *action)
{
	struct irq_start *s = slot();

	if (!s)
		return 0;
	clear_key(&s->key);
	bpf_probe_read_kernel_str(s->key.name, sizeof(s->key.name), BPF_CORE_READ(action, name));
	s->ts = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/irq_handler_exit")
int BPF_PROG(irq_exit_btf, int irq, struct irqaction *action, int ret)
{
	handler_exit();
	return 0;
}

/* --- classic tracepoints: the entry record carries the name as a __data_loc string (low
 * 16 bits: its offset in the record); the exit record has no name, hence the per-CPU slot. */

SEC("tracepoint/irq/irq_handler_entry")
int irq_entry_tp(struct trace_event_raw_irq_handler_entry *ctx)
{
	struct irq_start *s = slot();
	__u32 off = ctx->__data_loc_name & 0xFFFF;

	if (!s)
		return 0;
	clear_key(&s->key);
	bpf_probe_read_kernel_str(s->key.name, sizeof(s->key.name), (void *)ctx + off);
	s->ts = bpf_ktime_get_ns();
	return 0;
}

SEC("tracepoint/irq/irq_handler_exit")
int irq_exit_tp(struct trace_event_raw_irq_handler_exit *ctx)
{
	handler_exit();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
