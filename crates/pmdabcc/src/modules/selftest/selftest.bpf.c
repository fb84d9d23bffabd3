// SPDX-License-Identifier: GPL-2.0
/*
 * selftest: a module for testing the agent itself, like PCP's sample PMDA.
 * With fault = none it counts forks and remembers the last forking task's command name
 * (a sensitive value, for the access-control tests). The other two programs exist to fail
 * for real: one attaches to a tracepoint no kernel has, one is rejected by the verifier.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "selftest.h"
#include "maps.bpf.h"

KEYED_MAP(state, BPF_MAP_TYPE_ARRAY, __u32, struct selftest_state, 1);

SEC("tracepoint/sched/sched_process_fork")
int selftest_fork(void *ctx)
{
	__u32 zero = 0;
	struct selftest_state *s = bpf_map_lookup_elem(&state, &zero);

	if (!s)
		return 0;
	__sync_fetch_and_add(&s->forks, 1);
	s->last_pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(s->last_comm, sizeof(s->last_comm));
	return 0;
}

/* fault = missing_hook: no kernel has this tracepoint, so attaching fails. */
SEC("tracepoint/bcc_pmda_selftest/no_such_event")
int selftest_missing(void *ctx)
{
	return 0;
}

/* fault = verifier: reads far beyond the tracepoint's context, which the verifier refuses. */
SEC("tracepoint/sched/sched_process_exec")
int selftest_verifier(void *ctx)
{
	return *(volatile int *)(ctx + 65536);
}

char LICENSE[] SEC("license") = "GPL";
