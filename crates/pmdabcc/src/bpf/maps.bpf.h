/* Map helpers shared by the modules' BPF programs and by user modules. Include after
 * vmlinux.h and <bpf/bpf_helpers.h>. */
#ifndef BCC_PMDA_MAPS_BPF_H
#define BCC_PMDA_MAPS_BPF_H

/* Slot 0 of a per-CPU array: a struct of counters this CPU alone writes (the agent's
 * `counters` map kind sums every field over CPUs). */
static __always_inline void *percpu_counters(void *map)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(map, &zero);
}

/* Adds `n` to the u64 value of `key` in a hash map, creating it at 0 first; a full map
 * drops the add. */
static __always_inline void map_add(void *map, const void *key, __u64 n)
{
	__u64 zero = 0, *v = bpf_map_lookup_elem(map, key);

	if (!v) {
		bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(map, key);
		if (!v)
			return;
	}
	__sync_fetch_and_add(v, n);
}

#endif
