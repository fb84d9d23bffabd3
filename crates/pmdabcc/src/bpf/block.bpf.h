/* Block layer helpers shared by the modules' BPF programs (biotop, biosnoop) and by user
 * modules: a request's disk, and its operation as blktrace spells it. Include after
 * vmlinux.h, <bpf/bpf_helpers.h> and <bpf/bpf_core_read.h>. */
#ifndef BCC_PMDA_BLOCK_BPF_H
#define BCC_PMDA_BLOCK_BPF_H

/* Request operations (the low 8 bits of cmd_flags since Linux 4.10); these numbers have
 * not changed since. */
#define BLK_OP_MASK 0xff
#define BLK_OP_READ 0
#define BLK_OP_WRITE 1
#define BLK_OP_FLUSH 2
#define BLK_OP_DISCARD 3
#define BLK_OP_SECURE_ERASE 5

/* The old layout, for CO-RE: request->rq_disk was removed in Linux 5.17 (the disk is then
 * request->q->disk, added in 5.15). */
struct request___old {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

/* The whole disk a request is for, as a kernel dev_t (major << 20 | minor): what the
 * agent's `disk` decoder names. 0 when the request has no disk. */
static __always_inline __u32 rq_dev(struct request *rq)
{
	struct gendisk *disk;

	if (bpf_core_field_exists(((struct request___old *)0)->rq_disk))
		disk = BPF_CORE_READ((struct request___old *)rq, rq_disk);
	else
		disk = BPF_CORE_READ(rq, q, disk);
	if (!disk)
		return 0;
	return ((__u32)BPF_CORE_READ(disk, major) << 20) | (__u32)BPF_CORE_READ(disk, first_minor);
}

/* Whether cmd_flags has the request flag `bit` (an enum req_flag_bits value, CO-RE
 * relocated: the bits moved between kernels). */
#define blk_flag(flags, bit) ((flags) & (1ULL << bpf_core_enum_value(enum req_flag_bits, bit)))

/* The request's operation and flags as blk_fill_rwbs writes them for blktrace and the block
 * tracepoints' rwbs field: 'F' for a preflush, the operation ('R', 'W', 'D', 'DE', 'F' for
 * a flush, 'N' for others), then 'F' (FUA), 'A' (readahead), 'S' (sync), 'M' (metadata).
 * `rwbs` holds at least 8 bytes, zeroed. */
static __always_inline void blk_rwbs(char *rwbs, __u64 flags)
{
	int i = 0;

	if (blk_flag(flags, __REQ_PREFLUSH))
		rwbs[i++] = 'F';
	switch (flags & BLK_OP_MASK) {
	case BLK_OP_WRITE:
		rwbs[i++] = 'W';
		break;
	case BLK_OP_DISCARD:
		rwbs[i++] = 'D';
		break;
	case BLK_OP_SECURE_ERASE:
		rwbs[i++] = 'D';
		rwbs[i++] = 'E';
		break;
	case BLK_OP_FLUSH:
		rwbs[i++] = 'F';
		break;
	case BLK_OP_READ:
		rwbs[i++] = 'R';
		break;
	default:
		rwbs[i++] = 'N';
	}
	if (blk_flag(flags, __REQ_FUA))
		rwbs[i++] = 'F';
	if (blk_flag(flags, __REQ_RAHEAD))
		rwbs[i++] = 'A';
	if (blk_flag(flags, __REQ_SYNC))
		rwbs[i++] = 'S';
	if (blk_flag(flags, __REQ_META))
		rwbs[i++] = 'M';
}

#endif
