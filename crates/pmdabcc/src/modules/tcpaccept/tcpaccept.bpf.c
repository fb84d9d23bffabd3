// SPDX-License-Identifier: GPL-2.0
/*
 * tcpaccept: TCP connections accepted, with the accepting process, from the exits of the
 * accept and accept4 system calls (syscalls:sys_exit_accept, sys_exit_accept4): they run
 * in the caller's context, so the process is the one that accepted, and their result is
 * the new descriptor, whose socket gives the addresses. The tool this follows hooked the
 * return of inet_csk_accept with a kretprobe; the kernel's other accept-side event,
 * sock:inet_sock_set_state (SYN_RECV to ESTABLISHED), fires in softirq context before any
 * process has taken the connection. Accepts through io_uring do not pass these syscalls.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "maps.bpf.h"
#include "hooks.bpf.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define S_IFMT 0170000
#define S_IFSOCK 0140000

struct accept_event {
	__u32 pid;	/* thread group id of the accepting process */
	__u16 family;	/* AF_INET or AF_INET6 */
	__u16 lport;	/* host order */
	__u16 rport;	/* host order */
	__u16 pad;
	char comm[16];
	__u8 laddr[16];	/* IPv6, or IPv4 mapped (::ffff:a.b.c.d) */
	__u8 raddr[16];
};

struct accept_stats {
	__u64 accepts;
	__u64 lost;
};

EVENT_MAPS(256 * 1024, struct accept_stats);

const struct accept_event *unused_accept_event;

static __always_inline void v4_mapped(__u8 *dst, __u32 addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr, 4);
}

static __always_inline void accepted(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct accept_stats *st;
	struct accept_event *e;
	struct file **fds, *file;
	struct socket *sock;
	struct sock *sk;
	__u16 family;

	if (fd < 0 || fd >= BPF_CORE_READ(task, files, fdt, max_fds))
		return;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return;
	sock = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if ((family != AF_INET && family != AF_INET6) || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	st = percpu_counters(&stats);
	if (!st)
		return;
	st->accepts++;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		st->lost++;
		return;
	}
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->family = family;
	e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (family == AF_INET) {
		v4_mapped(e->laddr, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
		v4_mapped(e->raddr, BPF_CORE_READ(sk, __sk_common.skc_daddr));
	} else {
		bpf_core_read(e->laddr, sizeof(e->laddr), &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->raddr, sizeof(e->raddr), &sk->__sk_common.skc_v6_daddr);
	}
	bpf_ringbuf_submit(e, ringbuf_lazy_wakeup(&events));
}

/* The exit of accept(2) or accept4(2): the result is the new descriptor, or an error. */
static __always_inline int accept_returned(struct trace_event_raw_sys_exit *ctx)
{
	accepted(ctx->ret);
	return 0;
}

TRACEPOINT_PROGRAM(syscalls, sys_exit_accept4, accept4_exit, struct trace_event_raw_sys_exit, accept_returned)
TRACEPOINT_PROGRAM(syscalls, sys_exit_accept, accept_exit, struct trace_event_raw_sys_exit, accept_returned)

char LICENSE[] SEC("license") = "GPL";
