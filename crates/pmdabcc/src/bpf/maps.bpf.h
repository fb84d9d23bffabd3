/* Map helpers shared by the modules' BPF programs and by user modules. Include after
 * vmlinux.h and <bpf/bpf_helpers.h>. */
#ifndef BCC_PMDA_MAPS_BPF_H
#define BCC_PMDA_MAPS_BPF_H

/* Declares `name`: a map of `map_type` (BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH,
 * BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_ARRAY, ...) of at most `entries` values of
 * `value_type`, by `key_type`. The agent finds a map by its name and reads the key and value
 * types from BTF, which keeps both. */
#define KEYED_MAP(name, map_type, key_type, value_type, entries)	\
	struct {						\
		__uint(type, map_type);				\
		__uint(max_entries, entries);			\
		__type(key, key_type);				\
		__type(value, value_type);			\
	} name SEC(".maps")

/* KEYED_MAP of the common kinds: a hash map, one whose least recently used entry makes room
 * when it is full, and one whose every CPU has its own value per key. */
#define HASH_MAP(name, key_type, value_type, entries) \
	KEYED_MAP(name, BPF_MAP_TYPE_HASH, key_type, value_type, entries)
#define LRU_HASH_MAP(name, key_type, value_type, entries) \
	KEYED_MAP(name, BPF_MAP_TYPE_LRU_HASH, key_type, value_type, entries)
#define PERCPU_HASH_MAP(name, key_type, value_type, entries) \
	KEYED_MAP(name, BPF_MAP_TYPE_PERCPU_HASH, key_type, value_type, entries)

/* Declares `name`: a per-CPU array of one `value_type` slot (key 0), the state or counters
 * each CPU keeps for itself (read it with percpu_counters). */
#define PERCPU_SLOT_MAP(name, value_type) \
	KEYED_MAP(name, BPF_MAP_TYPE_PERCPU_ARRAY, __u32, value_type, 1)

/* Declares the `process` filter the agent fills (MODULE-SPEC.md): `filter_targets`, which
 * it sets when bcc.conf gives `process`, and `targets`, the ids it puts (thread group or
 * thread ids, as the module says), and process_targeted(id): whether `id` is measured. */
#define PROCESS_FILTER()							\
	const volatile bool filter_targets = false;				\
	HASH_MAP(targets, __u32, __u8, 16384);					\
	static __always_inline bool process_targeted(__u32 id)			\
	{									\
		return !filter_targets || bpf_map_lookup_elem(&targets, &id);	\
	}

/* Slot 0 of a per-CPU array: a struct of counters this CPU alone writes (the agent's
 * `counters` map kind sums every field over CPUs). */
static __always_inline void *percpu_counters(void *map)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(map, &zero);
}

/* Flags for submitting a record to a ring buffer the agent's event stream drains: the stream
 * drains it every few milliseconds by itself (framework/events.rs), so a record wakes it only
 * once the buffer is a quarter full. A wakeup per record costs an interrupt (irq_work, a
 * self-IPI: several microseconds in a VM), more than the rest of a small program. */
static __always_inline __u64 ringbuf_wakeup_flags(void *rb, __u64 size)
{
	return bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA) > size / 4 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* ringbuf_wakeup_flags for a ring buffer of any size (asked of the kernel). */
static __always_inline __u64 ringbuf_lazy_wakeup(void *rb)
{
	return ringbuf_wakeup_flags(rb, bpf_ringbuf_query(rb, BPF_RB_RING_SIZE));
}

/* Declares `name`: a ring buffer of `bytes` (a power of 2, a multiple of the page size) the
 * program sends records to (the spec's `events` map kind). */
#define RINGBUF_MAP(name, bytes)				\
	struct {						\
		__uint(type, BPF_MAP_TYPE_RINGBUF);		\
		__uint(max_entries, bytes);			\
	} name SEC(".maps")

/* Declares the two maps of an event stream (the spec's `events` map kind with its `lost`
 * counter): `events`, a RINGBUF_MAP of `bytes`, and `stats`, a PERCPU_SLOT_MAP of
 * `stats_type`, whose `lost` field RESERVE_OR_COUNT_LOST(events, size, stats) counts. */
#define EVENT_MAPS(bytes, stats_type)		\
	RINGBUF_MAP(events, bytes);		\
	PERCPU_SLOT_MAP(stats, stats_type)

/* Reserves a `size`-byte record in ring buffer map `rb` (by name); when the buffer is full,
 * adds 1 to the `lost` field of the counters in PERCPU_SLOT_MAP `stats` (by name) and gives
 * NULL. */
#define RESERVE_OR_COUNT_LOST(rb, size, stats) ({				\
	void *rec_ = bpf_ringbuf_reserve(&(rb), size, 0);			\
	typeof((stats).value) st_;						\
										\
	if (!rec_) {								\
		st_ = percpu_counters(&(stats));				\
		if (st_)							\
			st_->lost++;						\
	}									\
	rec_;									\
})

/* Declares `name`: a system call's arguments, kept per thread from its entry to its exit
 * (pending_save, pending_find, pending_drop). LRU: an entry whose exit never came (a thread
 * killed in the call) ages out. */
#define PENDING_CALL_MAP(name, value_type, entries) \
	LRU_HASH_MAP(name, __u32 /* thread id */, value_type, entries)

/* Keeps `value` as the calling thread's pending call in `map`. */
static __always_inline void pending_save(void *map, const void *value)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_update_elem(map, &tid, value, BPF_ANY);
}

/* The calling thread's pending call in `map`, or NULL (it entered before the program was
 * attached, or its entry was not kept). */
static __always_inline void *pending_find(void *map)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	return bpf_map_lookup_elem(map, &tid);
}

/* Forgets the calling thread's pending call in `map`, at its exit. */
static __always_inline void pending_drop(void *map)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(map, &tid);
}

/* The value of `key` in a hash map, created from `init` first when there is none (another
 * CPU may create it meanwhile: its value stays); NULL when the map is full. */
static __always_inline void *map_lookup_or_init(void *map, const void *key, const void *init)
{
	void *v = bpf_map_lookup_elem(map, key);

	if (v)
		return v;
	bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

/* Adds `n` to the u64 value of `key` in a hash map, creating it at 0 first; a full map
 * drops the add. */
static __always_inline void map_add(void *map, const void *key, __u64 n)
{
	__u64 zero = 0, *v = map_lookup_or_init(map, key, &zero);

	if (v)
		__sync_fetch_and_add(v, n);
}

#endif
