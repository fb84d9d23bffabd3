// SPDX-License-Identifier: GPL-2.0
/*
 * biolatency: block I/O latency, from a request's issue to the device (or, with `queued`,
 * from its insertion into the OS queue) to its completion, as power-of-two histograms in
 * microseconds: one for the whole system, and one per disk when asked. After libbpf-tools'
 * biolatency.bpf.c. Three program sets, one per hook kind; user space enables the first the
 * kernel accepts (tp_btf, raw_tp, classic tracepoint).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hist.bpf.h"
#include "biolatency.h"
#include "maps.bpf.h"
#include "hooks.bpf.h"

/* Set by user space before load. */
const volatile bool targ_queued = false;   /* measure from block_rq_insert */
const volatile bool targ_per_disk = false; /* also fill the per-disk histograms */

extern int LINUX_KERNEL_VERSION __kconfig;

PERCPU_SLOT_MAP(hist, struct hist);

/* Per disk (dev_t, kernel encoding major << 20 | minor), updated atomically. */
HASH_MAP(disks, __u32, struct hist, 256);

/* Requests in flight: when they started. */
HASH_MAP(start, struct biolat_rq_key, __u64, 10240);

/*
 * CO-RE shim: the disk of a request. Commit f3fa33acca9f ("block: remove the ->rq_disk field
 * in struct request", 5.17) leaves it at rq->q->disk, added by d152c682f03c ("block: add an
 * explicit ->disk backpointer to the request_queue", 5.15). As libbpf-tools core_fixes.bpf.h.
 */
struct request_queue___x {
	struct gendisk *disk;
} __attribute__((preserve_access_index));

struct request___x {
	struct request_queue___x *q;
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline __u32 rq_dev(void *request)
{
	struct request___x *r = request;
	struct gendisk *disk;

	if (bpf_core_field_exists(r->rq_disk))
		disk = BPF_CORE_READ(r, rq_disk);
	else
		disk = BPF_CORE_READ(r, q, disk);
	if (!disk)
		return 0;
	return ((__u32)BPF_CORE_READ(disk, major) << 20) | (__u32)BPF_CORE_READ(disk, first_minor);
}

/*
 * A request starts. block_rq_issue can fire more than once for one request (a driver that
 * is busy has it requeued and issued again): without `queued` the last issue counts (the
 * one the device accepted), as libbpf-tools does. With `queued` the first of insert and
 * issue counts (issue alone for requests that bypass the queue).
 */
static __always_inline void rq_start(struct biolat_rq_key *key)
{
	__u64 ts = bpf_ktime_get_ns();

	bpf_map_update_elem(&start, key, &ts, targ_queued ? BPF_NOEXIST : BPF_ANY);
}

/* A request completes: measured once (the first completion event), then forgotten. */
static __always_inline void rq_done(struct biolat_rq_key *key, __u32 dev)
{
	__u64 *tsp, now, delta, slot;
	struct hist *h;
	__u32 zero = 0;

	tsp = bpf_map_lookup_elem(&start, key);
	if (!tsp)
		return; /* started before we attached */
	now = bpf_ktime_get_ns();
	delta = now > *tsp ? now - *tsp : 0;
	bpf_map_delete_elem(&start, key);

	/* buckets in microseconds, the sum exact in nanoseconds */
	slot = hist_log2_slot(delta / 1000);
	h = bpf_map_lookup_elem(&hist, &zero);
	/* per-CPU slot; the tracing-program recursion guard keeps nested runs out */
	if (h)
		hist_add(h, slot, delta);
	if (!targ_per_disk || !dev)
		return;
	h = hist_lookup_or_init(&disks, &dev);
	if (h) /* shared by all CPUs */
		hist_add_atomic(h, slot, delta);
}

/*
 * Commit a54895fa057c ("block: remove the request_queue to argument request based
 * tracepoints", 5.11) dropped the leading request_queue argument of block_rq_insert and
 * block_rq_issue. (clang 14 has no bpf_core_type_matches, so the kernel version decides;
 * the untaken branch is pruned at load, as LINUX_KERNEL_VERSION is a constant.)
 */
static __always_inline void *rq_arg(unsigned long long *ctx)
{
	if (LINUX_KERNEL_VERSION >= KERNEL_VERSION(5, 11, 0))
		return (void *)ctx[0];
	return (void *)ctx[1];
}

/* block_rq_insert and block_rq_issue, tp_btf or raw_tp: the request is an argument. */
static __always_inline int start_ptr(unsigned long long *ctx)
{
	struct biolat_rq_key key = { .rq = (__u64)rq_arg(ctx) };

	rq_start(&key);
	return 0;
}

/* block_rq_complete(rq, error, nr_bytes), tp_btf or raw_tp. */
static __always_inline int done_ptr(unsigned long long *ctx)
{
	void *rq = (void *)ctx[0];
	struct biolat_rq_key key = { .rq = (__u64)rq };

	rq_done(&key, rq_dev(rq));
	return 0;
}

BTF_RAW_TWINS(block_rq_insert, biolat_insert, start_ptr)
BTF_RAW_TWINS(block_rq_issue, biolat_issue, start_ptr)
BTF_RAW_TWINS(block_rq_complete, biolat_complete, done_ptr)

/* --- classic tracepoints: no request address, so device and sector identify it --- */

static __always_inline int start_tp(struct trace_event_raw_block_rq *ctx)
{
	struct biolat_rq_key key = { .sector = ctx->sector, .dev = ctx->dev };

	rq_start(&key);
	return 0;
}

TRACEPOINT_PROGRAM(block, block_rq_insert, biolat_insert_tp, struct trace_event_raw_block_rq, start_tp)
TRACEPOINT_PROGRAM(block, block_rq_issue, biolat_issue_tp, struct trace_event_raw_block_rq, start_tp)

SEC("tracepoint/block/block_rq_complete")
int biolat_complete_tp(struct trace_event_raw_block_rq_completion *ctx)
{
	struct biolat_rq_key key = { .sector = ctx->sector, .dev = ctx->dev };

	rq_done(&key, ctx->dev);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
