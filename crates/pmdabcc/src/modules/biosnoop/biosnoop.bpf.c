// SPDX-License-Identifier: GPL-2.0
/*
 * biosnoop: one record per completed block I/O request (after bcc's biosnoop, which needs
 * fentry on blk_account_io_start and a kprobe on blk_account_io_merge_bio).
 *
 * The submitter is taken as biotop takes it: at block_io_start (Linux 6.5+), which fires in
 * the submitting task's context when a bio becomes a request; on older kernels at the first
 * of block_rq_insert and block_rq_issue (direct dispatch never inserts), whose context is
 * the submitter's unless the request was plugged or queued and dispatched later by another
 * task. Bios merged into a request count as part of it (and its submitter's). The
 * request's extent is read at issue, when merging is over; the record goes out at the
 * completion that finishes the request.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "biosnoop.h"
#include "maps.bpf.h"
#include "block.bpf.h"
#include "hooks.bpf.h"

/* Set by user space before load. */
const volatile bool queued = false; /* latency from block_rq_insert, where a request has one */

struct pending_rq {
	__u64 insert_ns;
	__u64 issue_ns;
	__u64 sector;
	__u64 flags;
	__u32 bytes;
	__u32 tgid;
	char comm[BIOSNOOP_COMM_LEN];
};

/* In-flight requests by request pointer. LRU: requests whose completion is never seen
 * (merged away, lost) age out instead of filling the map. */
LRU_HASH_MAP(pending, __u64, struct pending_rq, 16384);

EVENT_MAPS(1 << 20, struct biosnoop_stats);

const struct biosnoop_event *unused_event __attribute__((unused));

/* The request's entry; with `owner_flags` (BPF_ANY: a new request, BPF_NOEXIST: first seen
 * wins) the current task becomes its submitter where it has none. */
static __always_inline struct pending_rq *entry(struct request *rq, __u64 owner_flags)
{
	__u64 k = (__u64)rq;
	struct pending_rq p = {};

	p.tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(p.comm, sizeof(p.comm));
	bpf_map_update_elem(&pending, &k, &p, owner_flags);
	return bpf_map_lookup_elem(&pending, &k);
}

/* block_io_start(rq): a new request, submitted by the current task. */
static __always_inline int new_request(unsigned long long *ctx)
{
	entry((struct request *)ctx[0], BPF_ANY);
	return 0;
}

BTF_PROGRAM(block_io_start, bs_io_start, new_request)

SEC("tp_btf/block_rq_insert")
int BPF_PROG(bs_rq_insert, struct request *rq)
{
	struct pending_rq *p = entry(rq, BPF_NOEXIST);

	if (p && !p->insert_ns)
		p->insert_ns = bpf_ktime_get_ns();
	return 0;
}

/* Also on a requeued request's next issue: the latency is then from the last issue. */
SEC("tp_btf/block_rq_issue")
int BPF_PROG(bs_rq_issue, struct request *rq)
{
	struct pending_rq *p = entry(rq, BPF_NOEXIST);

	if (!p)
		return 0;
	p->issue_ns = bpf_ktime_get_ns();
	p->sector = BPF_CORE_READ(rq, __sector);
	p->bytes = BPF_CORE_READ(rq, __data_len);
	p->flags = BPF_CORE_READ(rq, cmd_flags);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(bs_rq_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	__u64 k = (__u64)rq, now = bpf_ktime_get_ns(), from;
	struct pending_rq *p = bpf_map_lookup_elem(&pending, &k);
	struct biosnoop_event *e;

	if (!p || !p->issue_ns)
		return 0; /* started before the agent, or never issued here */
	/* Fires before the request is updated: __data_len is what was left before this piece. */
	if (nr_bytes < BPF_CORE_READ(rq, __data_len))
		return 0; /* a partial completion: the request goes on */
	from = queued && p->insert_ns ? p->insert_ns : p->issue_ns;
	e = RESERVE_OR_COUNT_LOST(events, sizeof(*e), stats);
	if (!e) {
		bpf_map_delete_elem(&pending, &k);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->sector = p->sector;
	e->lat = now - from;
	e->bytes = p->bytes;
	e->pid = p->tgid;
	e->dev = rq_dev(rq);
	blk_rwbs(e->rwbs, p->flags);
	__builtin_memcpy(e->comm, p->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, ringbuf_lazy_wakeup(&events));
	bpf_map_delete_elem(&pending, &k);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
