// SPDX-License-Identifier: GPL-2.0
/*
 * fsslower: file reads, writes, opens and fsyncs slower than a threshold, timed at the
 * system call (the syscalls:sys_enter_ and sys_exit_ tracepoints of read, write, pread64,
 * pwrite64, open, openat, openat2, fsync, fdatasync) on regular files of one file system
 * type or all.
 * pmdabpf's fsslower (after bcc's) times the file system's own file operations with
 * kprobes or fentry, which this kernel refuses; at the system call it sees the same calls
 * plus the VFS around them, and misses what does not pass through these calls: page faults
 * on mmap'd files, readv/writev and their p*v2 kin, sendfile/splice/copy_file_range, AIO,
 * io_uring, and writeback done later by the kernel's flusher threads.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"
#include "hooks.bpf.h"

#define FILE_LEN 64
#define S_IFMT 00170000
#define S_IFREG 0100000

enum file_op { F_READ, F_WRITE, F_OPEN, F_FSYNC };

/* bcc.conf `filesystem`: the index of its value; 0 is "all". */
enum fs_filter { FS_ALL, FS_EXT4, FS_XFS, FS_BTRFS, FS_NFS, FS_TMPFS, FS_F2FS, FS_OVERLAY, FS_FUSE };

const volatile __u32 filesystem = FS_EXT4;
/* bcc.conf `min`, in milliseconds. */
const volatile __u64 min_ms = 10;

struct fsslower_event {
	__u32 pid;	/* thread group */
	__u32 op;	/* enum file_op */
	__u64 bytes;
	__s64 offset;
	__u64 lat;	/* µs */
	char comm[16];
	char fs[16];
	char file[FILE_LEN];
};
const struct fsslower_event *unused_event;

struct fsslower_stats {
	__u64 lost;
};

struct pending {
	__u64 start;
	struct file *file;	/* NULL for opens: the file is known at the exit */
	__s64 offset;
	__u32 op;
};

PENDING_CALL_MAP(pending, struct pending, 10240);

EVENT_MAPS(1 << 20, struct fsslower_stats);

static __always_inline bool fs_wanted(unsigned long magic)
{
	switch (filesystem) {
	case FS_ALL: return true;
	case FS_EXT4: return magic == 0xEF53;
	case FS_XFS: return magic == 0x58465342;
	case FS_BTRFS: return magic == 0x9123683E;
	case FS_NFS: return magic == 0x6969;
	case FS_TMPFS: return magic == 0x01021994;
	case FS_F2FS: return magic == 0xF2F52010;
	case FS_OVERLAY: return magic == 0x794C7630;
	case FS_FUSE: return magic == 0x65735546;
	}
	return false;
}

/* The file behind the caller's descriptor `fd`, when it is a regular file of the chosen
 * file system type. */
static __always_inline struct file *wanted_file(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *f = NULL;
	struct inode *inode;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	inode = BPF_CORE_READ(f, f_inode);
	if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFREG)
		return NULL;
	if (!fs_wanted(BPF_CORE_READ(inode, i_sb, s_magic)))
		return NULL;
	return f;
}

static __always_inline int enter_fd(long fd, __u32 op, __s64 offset, bool at_pos)
{
	struct file *f = wanted_file(fd);
	struct pending p = { .op = op, .offset = offset, .file = f };

	if (!f)
		return 0;
	/* (Through f: BPF_CORE_READ on p.file would relocate struct pending too.) */
	if (at_pos)
		p.offset = BPF_CORE_READ(f, f_pos);
	p.start = bpf_ktime_get_ns();
	pending_save(&pending, &p);
	return 0;
}

static __always_inline int enter_open(void)
{
	struct pending p = { .op = F_OPEN, .start = bpf_ktime_get_ns() };

	pending_save(&pending, &p);
	return 0;
}

static __always_inline int leave(long ret)
{
	__u64 id = bpf_get_current_pid_tgid(), lat;
	struct fsslower_event *e;
	struct pending *p;
	struct file *f;
	struct dentry *d;

	p = pending_find(&pending);
	if (!p)
		return 0;
	lat = bpf_ktime_get_ns() - p->start;
	f = p->file;
	if (p->op == F_OPEN)
		f = ret >= 0 ? wanted_file(ret) : NULL;
	if (!f || lat < min_ms * 1000000)
		goto out;
	e = RESERVE_OR_COUNT_LOST(events, sizeof(*e), stats);
	if (!e)
		goto out;
	e->pid = id >> 32;
	e->op = p->op;
	e->bytes = (p->op == F_READ || p->op == F_WRITE) && ret > 0 ? ret : 0;
	e->offset = p->offset;
	e->lat = lat / 1000;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	d = BPF_CORE_READ(f, f_path.dentry);
	if (bpf_probe_read_kernel_str(e->file, sizeof(e->file), BPF_CORE_READ(d, d_name.name)) < 0)
		e->file[0] = 0;
	if (bpf_probe_read_kernel_str(e->fs, sizeof(e->fs), BPF_CORE_READ(f, f_inode, i_sb, s_type, name)) < 0)
		e->fs[0] = 0;
	bpf_ringbuf_submit(e, ringbuf_lazy_wakeup(&events));
out:
	pending_drop(&pending);
	return 0;
}

SYSCALL_PROGRAMS(fsslower, read, enter_fd(ctx->args[0], F_READ, 0, true), leave)
SYSCALL_PROGRAMS(fsslower, write, enter_fd(ctx->args[0], F_WRITE, 0, true), leave)
SYSCALL_PROGRAMS(fsslower, pread64, enter_fd(ctx->args[0], F_READ, ctx->args[3], false), leave)
SYSCALL_PROGRAMS(fsslower, pwrite64, enter_fd(ctx->args[0], F_WRITE, ctx->args[3], false), leave)
SYSCALL_PROGRAMS(fsslower, fsync, enter_fd(ctx->args[0], F_FSYNC, 0, false), leave)
SYSCALL_PROGRAMS(fsslower, fdatasync, enter_fd(ctx->args[0], F_FSYNC, 0, false), leave)
SYSCALL_PROGRAMS(fsslower, open, enter_open(), leave)
SYSCALL_PROGRAMS(fsslower, openat, enter_open(), leave)
SYSCALL_PROGRAMS(fsslower, openat2, enter_open(), leave)

char LICENSE[] SEC("license") = "GPL";
