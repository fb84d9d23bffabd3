/*
 * The floor of the in-kernel cost figures: do-nothing programs on the hooks the measured
 * modules use (tp_btf, the kind the agents choose on this kernel): runqlat and biolatency
 * (figure 4 of bench/bench.py), netproc (bench/netproc.py). Each returns 0 at once, so its
 * run_time_ns / run_cnt is what the kernel's BPF trampoline and the statistics themselves
 * cost per event: no module can go below it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("tp_btf/sched_switch")
int BPF_PROG(floor_sched_switch) { return 0; }

SEC("tp_btf/sched_wakeup")
int BPF_PROG(floor_sched_wakeup) { return 0; }

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(floor_sched_wakeup_new) { return 0; }

SEC("tp_btf/block_rq_insert")
int BPF_PROG(floor_block_rq_insert) { return 0; }

SEC("tp_btf/block_rq_issue")
int BPF_PROG(floor_block_rq_issue) { return 0; }

SEC("tp_btf/block_rq_complete")
int BPF_PROG(floor_block_rq_complete) { return 0; }

SEC("tp_btf/sock_send_length")
int BPF_PROG(floor_sock_send_length) { return 0; }

SEC("tp_btf/sock_recv_length")
int BPF_PROG(floor_sock_recv_length) { return 0; }

char LICENSE[] SEC("license") = "GPL";
