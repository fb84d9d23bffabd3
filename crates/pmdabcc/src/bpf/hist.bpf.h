/* Histograms shared by the modules' BPF programs and by user modules: one record layout
 * that the agent's `histogram` map kind serves as PCP instances ("0-1", "2-3", …) with
 * `_count` and `_sum`. Include after vmlinux.h and <bpf/bpf_helpers.h>. */
#ifndef BCC_PMDA_HIST_BPF_H
#define BCC_PMDA_HIST_BPF_H

#include "bits.bpf.h"
#include "maps.bpf.h"

/* Power-of-two buckets: every u64 value has one, so nothing is clamped. */
#define HIST_SLOTS 64

struct hist {
	__u64 slots[HIST_SLOTS]; /* log2: slot i holds floor(log2(v)) == i (0 and 1 in slot 0);
				  * linear: slot i holds v in [i*w, (i+1)*w), the last the rest */
	__u64 count;             /* values recorded */
	__u64 sum;               /* their total, in the unit the program chose */
};

/* Zero record to insert new keys of a keyed histogram from (too big for the stack); static,
 * so an object that never uses it does not carry it. */
static struct hist hist_zero;

static __always_inline __u64 hist_log2_slot(__u64 v)
{
	__u64 s = log2l(v);

	return s < HIST_SLOTS ? s : HIST_SLOTS - 1;
}

static __always_inline __u64 hist_linear_slot(__u64 v, __u64 width)
{
	__u64 s = width ? v / width : 0;

	return s < HIST_SLOTS ? s : HIST_SLOTS - 1;
}

/* The verifiers of 5.10 and 6.1 lose the clamp's bound when clang compares a copy of the
 * slot and indexes with the original ("R2 unbounded memory access"; the kernel matrix,
 * tests/kernels): mask the register that indexes, in asm clang cannot drop. A no-op after
 * the clamp (HIST_SLOTS is a power of two). */
#define HIST_BOUND(slot) asm volatile("%0 &= %1" : "+r"(slot) : "i"(HIST_SLOTS - 1))

/* Records into a copy no other CPU writes (slot 0 of a per-CPU array). */
static __always_inline void hist_add(struct hist *h, __u64 slot, __u64 sum)
{
	if (slot >= HIST_SLOTS)
		slot = HIST_SLOTS - 1;
	HIST_BOUND(slot);
	h->slots[slot]++;
	h->count++;
	h->sum += sum;
}

/* Records into a copy every CPU may write (a hash map value): atomic adds. */
static __always_inline void hist_add_atomic(struct hist *h, __u64 slot, __u64 sum)
{
	if (slot >= HIST_SLOTS)
		slot = HIST_SLOTS - 1;
	HIST_BOUND(slot);
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->count, 1);
	__sync_fetch_and_add(&h->sum, sum);
}

/* The histogram of `key` in a hash map, created empty on first use; NULL when the map is
 * full (the agent counts the map's fill in bcc.agent.bpf.map.entries). */
static __always_inline struct hist *hist_lookup_or_init(void *map, const void *key)
{
	return map_lookup_or_init(map, key, &hist_zero);
}

#endif
