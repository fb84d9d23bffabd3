// SPDX-License-Identifier: GPL-2.0
/*
 * biotop: block I/O bytes and requests per (disk, process).
 *
 * A request is attributed to the process that submits it, when it enters the block layer,
 * and its bytes are counted when it completes (block_rq_complete, piece by piece for partial
 * completions), so a request is counted once however often it is issued (block_rq_issue
 * fires again on requeues).
 *
 * Two hook sets, chosen by user space (tp_btf first, classic tracepoints otherwise), and two
 * attribution points:
 *  - block_io_start (Linux >= 6.5) fires in blk_mq_submit_bio when the bio becomes a
 *    request, in the submitter's context, whether the request is then inserted into a
 *    scheduler or dispatched directly; it is overwritten unconditionally (a new request);
 *  - older kernels: block_rq_insert and block_rq_issue, first seen wins (direct dispatch
 *    never inserts).
 * tp_btf programs key in-flight requests by the request pointer; classic tracepoints do not
 * carry it, so they key by (disk, start sector) and follow front merges and partial
 * completions, which move the start sector.
 *
 * Merges: the block layer merges a bio into a request that another process started (in the
 * I/O scheduler, e.g. two writers of adjacent blocks), and whole requests into each other.
 * With tp_btf the merged bios remember their own submitter (`merged`, by bio pointer) and the
 * completion walks the request's bios, so each process gets exactly its own bytes; the
 * classic tracepoints carry no bio pointer, and credit a merged request to its starter.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "biotop.h"
#include "maps.bpf.h"
#include "block.bpf.h"
#include "hooks.bpf.h"
#include "task.bpf.h"

/* Set by user space before load. */
const volatile bool filter_enabled = false;  /* only PIDs in `pids` are attributed */
const volatile bool attribute_at_issue = false; /* insert/issue mode (no block_io_start) */


enum io_class { CLS_READ, CLS_WRITE, CLS_DISCARD, CLS_FLUSH };

/* An in-flight request: tp_btf sets rq, classic tracepoints set dev and sector. */
struct rq_key {
	__u64 rq;
	__u64 sector;
	__u32 dev;
	__u32 pad;
};

/* tgid of an owner that is not counted per process: excluded by the filter, or unknown. */
#define NO_OWNER 0xffffffffu
/* Most bios of one request walked at completion; the rest go to the request's owner. */
#define MAX_BIOS 64

struct rq_owner {
	__u32 tgid;
	__u32 remaining; /* classic: sectors not completed yet (set at issue) */
	__u64 start;     /* the process's start (biotop_key.start) */
	__u64 issued;    /* when the request was issued to the driver (or, until then, seen) */
	char comm[BIOTOP_COMM_LEN];
};

/* In-flight requests. LRU: requests that never complete here (merged away, started before
 * the agent, lost completions) age out instead of filling the map. */
LRU_HASH_MAP(pending, struct rq_key, struct rq_owner, 16384);

/* tp_btf: bios merged into a request, by bio pointer, with their own submitter (NO_OWNER:
 * not counted per process), until they complete. LRU like `pending`. */
LRU_HASH_MAP(merged, __u64, struct rq_owner, 16384);

/* Totals per (disk, process); max_entries is the `max_entries` option. */
HASH_MAP(pairs, struct biotop_key, struct biotop_val, 10240);

/* The processes to track when filter_enabled (filled by user space on each re-scan). */
HASH_MAP(pids, __u32, __u8, 16384);

PERCPU_SLOT_MAP(counters, struct biotop_counters);

static __always_inline struct biotop_counters *cnt(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&counters, &zero);
}

/* Fills `o` with the current process; false if the process filter excludes it. */
static __always_inline bool current_owner(struct rq_owner *o)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_struct *leader;

	if (filter_enabled && !bpf_map_lookup_elem(&pids, &tgid))
		return false;
	o->tgid = tgid;
	leader = BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), group_leader);
	o->start = process_start(leader);
	/* The process's name is its group leader's (a thread may have renamed itself). */
	BPF_CORE_READ_STR_INTO(&o->comm, leader, comm);
	return true;
}

static __always_inline void remember(struct rq_key *k, __u32 remaining, __u64 flags)
{
	struct rq_owner o = {};

	if (!current_owner(&o))
		return;
	o.remaining = remaining;
	o.issued = bpf_ktime_get_ns();
	bpf_map_update_elem(&pending, k, &o, flags);
}

/* The pair's name follows the process's: a child that read its new program from disk
 * during exec did so under its parent's name, and the I/O it does after exec is under the
 * program's. Two 8-byte stores (both names are 8-byte aligned): a reader may catch half of
 * a change, never a torn word. */
static __always_inline void follow_comm(struct biotop_val *v, const struct rq_owner *o)
{
	const __u64 *now = (const __u64 *)o->comm;
	__u64 *had = (__u64 *)v->comm;

	if (had[0] != now[0])
		had[0] = now[0];
	if (had[1] != now[1])
		had[1] = now[1];
}

/* Adds one completion piece to the owner's pair. `done`: the request finished with it. */
static __always_inline void account(__u32 dev, const struct rq_owner *o, int cls, __u64 bytes, bool done)
{
	struct biotop_key k = { .dev = dev, .tgid = o->tgid, .start = o->start };
	struct biotop_val *v = bpf_map_lookup_elem(&pairs, &k);
	struct biotop_counters *c;

	if (!v) {
		struct biotop_val zero = {};

		__builtin_memcpy(zero.comm, o->comm, sizeof(zero.comm));
		/* -EEXIST: another CPU added it meanwhile; -E2BIG: the map is full. */
		bpf_map_update_elem(&pairs, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&pairs, &k);
		if (!v) {
			c = cnt();
			if (c)
				__sync_fetch_and_add(&c->dropped, 1);
			return;
		}
	} else {
		follow_comm(v, o);
	}
	switch (cls) {
	case CLS_READ:
		__sync_fetch_and_add(&v->read_bytes, bytes);
		if (done) {
			__sync_fetch_and_add(&v->reads, 1);
			if (o->issued)
				__sync_fetch_and_add(&v->read_ns, bpf_ktime_get_ns() - o->issued);
		}
		break;
	case CLS_WRITE:
		__sync_fetch_and_add(&v->write_bytes, bytes);
		if (done) {
			__sync_fetch_and_add(&v->writes, 1);
			if (o->issued)
				__sync_fetch_and_add(&v->write_ns, bpf_ktime_get_ns() - o->issued);
		}
		break;
	case CLS_DISCARD:
		__sync_fetch_and_add(&v->discard_bytes, bytes);
		if (done)
			__sync_fetch_and_add(&v->discards, 1);
		break;
	case CLS_FLUSH:
		if (done)
			__sync_fetch_and_add(&v->flushes, 1);
		break;
	}
}

/* A request finished: user space compares the count with /proc/diskstats, to tell how
 * many completions the kernel did not run this program for. */
static __always_inline void count_completed(void)
{
	struct biotop_counters *c = cnt();

	if (c)
		c->completed++; /* per-CPU slot */
}

static __always_inline void unattributed(int cls, __u64 bytes)
{
	struct biotop_counters *c;

	if (cls != CLS_READ && cls != CLS_WRITE)
		return;
	c = cnt();
	if (c)
		c->unattributed += bytes; /* per-CPU slot */
}

/* ---- tp_btf: keyed by the request pointer ---- */

/* Mirrors the kernel's op_stat_group (what /proc/diskstats counts), with data-less flushes
 * (REQ_OP_FLUSH, or an empty write with REQ_PREFLUSH as blkdev_issue_flush sends) apart. */
static __always_inline int rq_class(struct request *rq, bool empty)
{
	__u32 flags = BPF_CORE_READ(rq, cmd_flags);
	__u32 op = flags & BLK_OP_MASK;

	if (op == BLK_OP_FLUSH || (empty && blk_flag(flags, __REQ_PREFLUSH)))
		return CLS_FLUSH;
	if (op == BLK_OP_DISCARD || op == BLK_OP_SECURE_ERASE)
		return CLS_DISCARD;
	return (op & 1) ? CLS_WRITE : CLS_READ;
}

static __always_inline void btf_remember(struct request *rq, __u64 flags)
{
	struct rq_key k = { .rq = (__u64)rq };

	remember(&k, 0, flags);
}

SEC("tp_btf/block_rq_insert")
int BPF_PROG(btf_rq_insert, struct request *rq)
{
	btf_remember(rq, BPF_NOEXIST);
	return 0;
}

/* Also loaded with block_io_start attribution when durations are wanted (biotop's table):
 * then the request is known already and only its issue time is noted. */
SEC("tp_btf/block_rq_issue")
int BPF_PROG(btf_rq_issue, struct request *rq)
{
	struct rq_key k = { .rq = (__u64)rq };
	struct rq_owner *p;

	if (attribute_at_issue)
		btf_remember(rq, BPF_NOEXIST);
	p = bpf_map_lookup_elem(&pending, &k);
	if (p)
		p->issued = bpf_ktime_get_ns();
	return 0;
}

/* A bio is merged into a request that may be another process's: remember who submitted it
 * (this runs in the submitter's context). block_bio_backmerge(bio), block_bio_frontmerge(bio). */
static __always_inline int note_merged_bio(unsigned long long *ctx)
{
	__u64 k = ctx[0]; /* the bio */
	struct rq_owner o = {};

	if (!current_owner(&o))
		o.tgid = NO_OWNER;
	bpf_map_update_elem(&merged, &k, &o, BPF_ANY);
	return 0;
}

BTF_PROGRAM(block_bio_backmerge, btf_bio_backmerge, note_merged_bio)
BTF_PROGRAM(block_bio_frontmerge, btf_bio_frontmerge, note_merged_bio)

/* `rq` is merged into the request before it and goes away (its bios move there): its bios
 * keep its owner, unless they were merged into it and have their own already. */
SEC("tp_btf/block_rq_merge")
int BPF_PROG(btf_rq_merge, struct request *rq)
{
	struct rq_key k = { .rq = (__u64)rq };
	struct rq_owner *p = bpf_map_lookup_elem(&pending, &k);
	struct rq_owner o = { .tgid = NO_OWNER };
	struct bio *bio = BPF_CORE_READ(rq, bio);
	int i;

	if (p)
		o = *p;
#pragma clang loop unroll(disable)
	for (i = 0; i < MAX_BIOS && bio; i++) {
		__u64 bk = (__u64)bio;

		bpf_map_update_elem(&merged, &bk, &o, BPF_NOEXIST);
		bio = BPF_CORE_READ(bio, bi_next);
	}
	bpf_map_delete_elem(&pending, &k);
	return 0;
}

/* A new request: its first bio is its owner's, whatever an earlier bio at the same address
 * that completed unseen left in `merged`. */
SEC("tp_btf/block_io_start")
int BPF_PROG(btf_io_start, struct request *rq)
{
	__u64 bk = (__u64)BPF_CORE_READ(rq, bio);

	bpf_map_delete_elem(&merged, &bk);
	btf_remember(rq, BPF_ANY);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(btf_rq_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	struct rq_key k = { .rq = (__u64)rq };
	/* Fires before the request is updated: __data_len is what was left before this piece,
	 * and the bios this piece completes are still linked from rq->bio. */
	bool done = nr_bytes >= BPF_CORE_READ(rq, __data_len);
	int cls = rq_class(rq, nr_bytes == 0);
	struct rq_owner *p = bpf_map_lookup_elem(&pending, &k);
	struct bio *bio = BPF_CORE_READ(rq, bio);
	struct rq_owner o = { .tgid = NO_OWNER };
	__u32 dev = rq_dev(rq);
	__u32 left = nr_bytes, own = 0;
	int i;

	if (done)
		count_completed();

	if (p) {
		o = *p;
		if (done)
			bpf_map_delete_elem(&pending, &k);
	}
	if (!bio || bio == BPF_CORE_READ(rq, biotail)) {
		own = nr_bytes; /* one bio: nothing merged */
	} else {
#pragma clang loop unroll(disable)
		for (i = 0; i < MAX_BIOS && bio && left; i++) {
			__u64 bk = (__u64)bio;
			__u32 size = BPF_CORE_READ(bio, bi_iter.bi_size);
			__u32 take = size < left ? size : left;
			struct rq_owner *m = bpf_map_lookup_elem(&merged, &bk);
			struct rq_owner mo = o; /* not merged: the request's owner's */

			left -= take;
			bio = BPF_CORE_READ(bio, bi_next);
			if (m) {
				mo = *m;
				if (take == size) /* the bio is done */
					bpf_map_delete_elem(&merged, &bk);
			}
			if (mo.tgid == o.tgid && mo.start == o.start)
				own += take;
			else if (mo.tgid == NO_OWNER)
				unattributed(cls, take);
			else
				account(dev, &mo, cls, take, false);
		}
		own += left; /* beyond MAX_BIOS */
	}
	if (o.tgid == NO_OWNER)
		unattributed(cls, own);
	else
		account(dev, &o, cls, own, done);
	return 0;
}

/* ---- classic tracepoints: keyed by (disk, start sector) ---- */

/* rwbs as blk_fill_rwbs writes it: 'F' for REQ_PREFLUSH, then the op ('W', 'R', 'D', 'DE',
 * 'F' for REQ_OP_FLUSH, 'N' for others), then flags. */
static __always_inline int rwbs_class(const char *rwbs, bool empty)
{
	char c0 = rwbs[0], c1 = rwbs[1];
	char op = c0;

	if (c0 == 'F') {
		if (c1 != 'W' && c1 != 'R' && c1 != 'D' && c1 != 'N')
			return CLS_FLUSH; /* REQ_OP_FLUSH */
		if (empty)
			return CLS_FLUSH; /* empty REQ_PREFLUSH write */
		op = c1;
	}
	if (op == 'D')
		return CLS_DISCARD;
	if (op == 'W')
		return CLS_WRITE;
	if (op == 'R')
		return CLS_READ;
	return -1; /* 'N': zone and driver operations, not counted */
}

static __always_inline void tp_remember(struct trace_event_raw_block_rq *ctx, __u64 flags)
{
	struct rq_key k = { .dev = ctx->dev, .sector = ctx->sector };

	remember(&k, ctx->nr_sector, flags);
}

SEC("tracepoint/block/block_io_start")
int tp_io_start(struct trace_event_raw_block_rq *ctx)
{
	tp_remember(ctx, BPF_ANY);
	return 0;
}

SEC("tracepoint/block/block_rq_insert")
int tp_rq_insert(struct trace_event_raw_block_rq *ctx)
{
	tp_remember(ctx, BPF_NOEXIST);
	return 0;
}

/* At issue the request's extent is final (merges happen before dispatch): note how many
 * sectors it has left, for partial completions; in insert/issue mode also attribute. */
SEC("tracepoint/block/block_rq_issue")
int tp_rq_issue(struct trace_event_raw_block_rq *ctx)
{
	struct rq_key k = { .dev = ctx->dev, .sector = ctx->sector };
	struct rq_owner *p;

	if (attribute_at_issue)
		tp_remember(ctx, BPF_NOEXIST);
	p = bpf_map_lookup_elem(&pending, &k);
	if (p) {
		p->remaining = ctx->nr_sector;
		p->issued = bpf_ktime_get_ns();
	}
	return 0;
}

/* A bio was merged in front of a request: the request now starts at the bio's sector. */
SEC("tracepoint/block/block_bio_frontmerge")
int tp_bio_frontmerge(struct trace_event_raw_block_bio *ctx)
{
	struct rq_key old = { .dev = ctx->dev, .sector = ctx->sector + ctx->nr_sector };
	struct rq_key new = { .dev = ctx->dev, .sector = ctx->sector };
	struct rq_owner *p = bpf_map_lookup_elem(&pending, &old);
	struct rq_owner o;

	if (!p)
		return 0;
	o = *p;
	o.remaining += ctx->nr_sector;
	bpf_map_update_elem(&pending, &new, &o, BPF_ANY);
	bpf_map_delete_elem(&pending, &old);
	return 0;
}

SEC("tracepoint/block/block_rq_merge")
int tp_rq_merge(struct trace_event_raw_block_rq *ctx)
{
	struct rq_key k = { .dev = ctx->dev, .sector = ctx->sector };

	bpf_map_delete_elem(&pending, &k);
	return 0;
}

SEC("tracepoint/block/block_rq_complete")
int tp_rq_complete(struct trace_event_raw_block_rq_completion *ctx)
{
	struct rq_key k = { .dev = ctx->dev, .sector = ctx->sector };
	__u32 nr = ctx->nr_sector;
	__u64 bytes = (__u64)nr << 9;
	char rwbs[4] = {};
	struct rq_owner *p;
	struct rq_owner o;
	bool done;
	int cls;

	bpf_probe_read_kernel(rwbs, sizeof(rwbs), ctx->rwbs);
	cls = rwbs_class(rwbs, nr == 0);
	p = bpf_map_lookup_elem(&pending, &k);
	/* Without an owner the request's size is unknown: count its first piece as its end. */
	if (!p || nr >= p->remaining)
		count_completed();
	if (cls < 0)
		return 0;
	if (!p) {
		unattributed(cls, bytes);
		return 0;
	}
	o = *p;
	done = nr >= o.remaining;
	if (!done) {
		/* The rest of the request now starts after this piece. */
		struct rq_key rest = { .dev = ctx->dev, .sector = ctx->sector + nr };
		struct rq_owner r = o;

		r.remaining -= nr;
		bpf_map_update_elem(&pending, &rest, &r, BPF_ANY);
	}
	bpf_map_delete_elem(&pending, &k);
	account(ctx->dev, &o, cls, bytes, done);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
