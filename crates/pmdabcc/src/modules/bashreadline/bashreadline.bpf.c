// SPDX-License-Identifier: GPL-2.0
/*
 * bashreadline: every line an interactive bash reads, from a uretprobe on readline() in
 * the bash binary (as pmdabpf's bashreadline, after bcc's). The probe runs when readline
 * returns the line the user typed; it sends the line with the reader's pid and command to
 * the ring buffer. Typed lines can hold secrets: the agent serves them as sensitive.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"

#define LINE_LEN 256

struct bashreadline_event {
	__u32 pid;	/* thread group */
	__u32 uid;
	char comm[16];
	char line[LINE_LEN];
};
const struct bashreadline_event *unused_event;

struct bashreadline_stats {
	__u64 lost;
};

EVENT_MAPS(1 << 18, struct bashreadline_stats);

SEC("uretprobe")
int BPF_URETPROBE(bashreadline_line, const char *line)
{
	struct bashreadline_event *e;

	if (!line)
		return 0; /* end of input */
	e = RESERVE_OR_COUNT_LOST(events, sizeof(*e), stats);
	if (!e)
		return 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (bpf_probe_read_user_str(e->line, sizeof(e->line), line) < 0)
		e->line[0] = 0;
	bpf_ringbuf_submit(e, ringbuf_lazy_wakeup(&events));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
