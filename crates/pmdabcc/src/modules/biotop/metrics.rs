//! The biotop metric table. Items are part of the PMID: never renumber them.
//! Names follow PCP's disk.dev.* (read, write, read_bytes, write_bytes, discard, discard_bytes,
//! flush), as siblings of the original pcp-bcc-pmda's `proc.io.perdev`, which stays a leaf.
//! PCP's Python biotop (PCP 6.x) numbered 149.10.0-8 by position in its list (perdev.pid,
//! comm, direction, major, minor, disk, io, bytes, duration): `layout = table` serves those
//! with the same items ([`TABLE_METRICS`]); the default layout's metrics use items it never
//! used, so no PMID means two things. The two layouts cannot be served together:
//! `proc.io.perdev` is a leaf in one and a subtree in the other.

use crate::module::{IndomSpec, MetricSpec};
use pcp_pmda::{IndomKind, Semantics, Type, Units};

/// The (disk, process) instance domain.
pub const INDOM_PAIRS: u32 = 0;
/// The table layout's rows, "0".."process_count-1".
pub const INDOM_ROWS: u32 = 1;

// The table layout: PCP's Python biotop's items.
pub const T_PID: u32 = 0;
pub const T_COMM: u32 = 1;
pub const T_DIRECTION: u32 = 2;
pub const T_MAJOR: u32 = 3;
pub const T_MINOR: u32 = 4;
pub const T_DISK: u32 = 5;
pub const T_IO: u32 = 6;
pub const T_BYTES: u32 = 7;
pub const T_DURATION: u32 = 8;

pub const DROPPED: u32 = 9;
pub const UNATTRIBUTED: u32 = 10;
pub const UNSEEN: u32 = 11;
pub const PERDEV: u32 = 12;
pub const READ_BYTES: u32 = 13;
pub const WRITE_BYTES: u32 = 14;
pub const READS: u32 = 15;
pub const WRITES: u32 = 16;
pub const DISCARD_BYTES: u32 = 17;
pub const DISCARDS: u32 = 18;
pub const FLUSHES: u32 = 19;
pub const COMM: u32 = 20;

pub static INDOMS: &[IndomSpec] = &[IndomSpec {
    id: INDOM_PAIRS,
    kind: IndomKind::Cached,
    oneline: "block I/O per disk and process",
    help: "One instance per (disk, process) pair that did block I/O, named <disk>::<pid as 6 \
digits>, e.g. vda::003412 (the original pmdabcc's naming). Instance ids persist across agent \
restarts.",
}];

macro_rules! pair_metric {
    ($item:expr, $name:expr, $ty:expr, $sem:expr, $units:expr, $oneline:expr, $help:expr, $sens:expr) => {
        MetricSpec {
            item: $item,
            name: $name,
            ty: $ty,
            sem: $sem,
            units: $units,
            indom: Some(INDOM_PAIRS),
            oneline: $oneline,
            help: concat!(
                $help,
                "

One instance per (disk, process) pair that did block I/O since the agent started, named \
<disk>::<pid as 6 digits> (e.g. vda::003412), disk names as in /proc/diskstats and disk.dev. \
I/O to a partition is counted on its whole disk. The process is the thread group that \
submitted the request to the block layer: buffered writes are submitted later by the kernel's \
writeback threads (kworker/...) and journal commits by jbd2, and are credited to them, not to \
the process that wrote the data. Instances of exited processes stay until their final values \
were fetched and `retention` seconds (bcc.conf [biotop]) passed. A new process that reuses \
the PID takes the instance over, starting from zero (a counter reset to PCP): processes are \
told apart by their start time, so one never continues another's counts."
            ),
            sensitive: $sens,
            aliases: &[],
        }
    };
}

const DROPPED_METRIC: MetricSpec = MetricSpec {
    item: DROPPED,
    name: "proc.io.perdev_dropped",
    ty: Type::U64,
    sem: Semantics::Counter,
    units: Units::COUNT,
    indom: None,
    oneline: "block I/O completions lost because the pair table was full",
    help: "Completed requests (or completion pieces) whose (disk, process) pair could not \
be recorded because the BPF table already held `max_entries` pairs (bcc.conf [biotop]). \
Non-zero means the proc.io.perdev* values are incomplete: raise max_entries or lower \
retention.",
    sensitive: false,
    aliases: &[],
};

const UNATTRIBUTED_METRIC: MetricSpec = MetricSpec {
    item: UNATTRIBUTED,
    name: "proc.io.perdev_unattributed_bytes",
    ty: Type::U64,
    sem: Semantics::Counter,
    units: Units::BYTES,
    indom: None,
    oneline: "read and write bytes completed with no known submitter",
    help: "Bytes of read and write requests that completed without a recorded submitter: \
requests started before the agent, requests the block layer creates itself (passthrough), \
requests of processes excluded by the `process` option, and requests aged out of the \
in-flight table. All disks together. With proc.io.perdev summed over all instances it \
accounts for all the read and write bytes the disks completed.",
    sensitive: false,
    aliases: &[],
};

const UNSEEN_METRIC: MetricSpec = MetricSpec {
    item: UNSEEN,
    name: "proc.io.perdev_unseen",
    ty: Type::U64,
    sem: Semantics::Counter,
    units: Units::COUNT,
    indom: None,
    oneline: "requests the disks completed that the completion program did not see",
    help: "Requests that disks with a request queue completed since the module started \
(reads, writes, discards and flushes, as /proc/diskstats and disk.dev.* count them), less \
the requests whose completion the module's block_rq_complete program saw; never \
decreases. The kernel does not run tracing programs in every context (it was \
seen skipping block completions that interrupted some tasks, without counting a recursion \
miss), and the bytes of such requests are in no proc.io.perdev* value. Non-zero means the \
per-process values are short by about this many requests. An estimate: requests the \
kernel accounts in an unusual way, and the past requests of a disk that is removed, hide as \
many.",
    sensitive: false,
    aliases: &[],
};

pub static METRICS: &[MetricSpec] = &[
    pair_metric!(
        PERDEV,
        "proc.io.perdev",
        Type::U64,
        Semantics::Counter,
        Units::BYTES,
        "block I/O bytes (reads and writes) per disk and process",
        "Bytes of block I/O, reads plus writes, completed on the disk on behalf of the \
process since the agent started (the original pmdabcc biotop metric). Requests are attributed \
to the submitting process when they enter the block layer and counted once when they \
complete (each piece of a partial completion). When the block layer merges I/O of several \
processes into one request (adjacent blocks, in the I/O scheduler), each process is credited \
its own bytes (the classic-tracepoint fallback credits the whole request to the process that \
started it). Discards and cache flushes are not reads or \
writes and are not included (see proc.io.perdev_discard_bytes and proc.io.perdev_flush). \
Summed over all processes of a disk it tracks disk.dev.total_bytes (which is in Kbyte), \
apart from proc.io.perdev_unattributed_bytes.",
        false
    ),
    pair_metric!(
        READ_BYTES,
        "proc.io.perdev_read_bytes",
        Type::U64,
        Semantics::Counter,
        Units::BYTES,
        "bytes read per disk and process",
        "Bytes of completed block read requests, per disk and process (compare \
disk.dev.read_bytes).",
        false
    ),
    pair_metric!(
        WRITE_BYTES,
        "proc.io.perdev_write_bytes",
        Type::U64,
        Semantics::Counter,
        Units::BYTES,
        "bytes written per disk and process",
        "Bytes of completed block write requests (including write-zeroes), per disk and \
process (compare disk.dev.write_bytes).",
        false
    ),
    pair_metric!(
        READS,
        "proc.io.perdev_read",
        Type::U64,
        Semantics::Counter,
        Units::COUNT,
        "read requests completed per disk and process",
        "Block read requests completed, per disk and process, counted when the request \
finishes (compare disk.dev.read). Requests are what the block layer issues after merging, \
so one large read() may be one or several requests. A request that merged I/O of several \
processes counts for the process that started it.",
        false
    ),
    pair_metric!(
        WRITES,
        "proc.io.perdev_write",
        Type::U64,
        Semantics::Counter,
        Units::COUNT,
        "write requests completed per disk and process",
        "Block write requests completed, per disk and process, counted when the request \
finishes (compare disk.dev.write).",
        false
    ),
    pair_metric!(
        DISCARD_BYTES,
        "proc.io.perdev_discard_bytes",
        Type::U64,
        Semantics::Counter,
        Units::BYTES,
        "bytes discarded per disk and process",
        "Bytes covered by completed discard (TRIM/UNMAP) and secure-erase requests, per disk \
and process (compare disk.dev.discard_bytes). Not included in proc.io.perdev.",
        false
    ),
    pair_metric!(
        DISCARDS,
        "proc.io.perdev_discard",
        Type::U64,
        Semantics::Counter,
        Units::COUNT,
        "discard requests completed per disk and process",
        "Discard and secure-erase requests completed, per disk and process (compare \
disk.dev.discard).",
        false
    ),
    pair_metric!(
        FLUSHES,
        "proc.io.perdev_flush",
        Type::U64,
        Semantics::Counter,
        Units::COUNT,
        "cache flush requests completed per disk and process",
        "Data-less cache flush requests (REQ_OP_FLUSH, or an empty write with REQ_PREFLUSH as \
fsync sends) completed, per disk and process. Flushes the block layer generates itself for a \
write with REQ_PREFLUSH/REQ_FUA have no submitter and are not counted here.",
        false
    ),
    pair_metric!(
        COMM,
        "proc.io.perdev_comm",
        Type::String,
        Semantics::Discrete,
        Units::NONE,
        "name of the process of a (disk, process) pair",
        "The process's name (comm of its main thread) at the pair's latest request: I/O a \
child did before exec (reading its new program, under its parent's name) is shown under the \
program's name once the program does I/O. Reveals command names, so it is served only to \
clients the access policy allows (root).",
        true
    ),
    DROPPED_METRIC,
    UNATTRIBUTED_METRIC,
    UNSEEN_METRIC,
];

pub static TABLE_INDOMS: &[IndomSpec] = &[IndomSpec {
    id: INDOM_ROWS,
    kind: IndomKind::Fixed,
    oneline: "the busiest (process, disk, direction) rows of the last interval",
    help: "process_count instances named \"0\", \"1\", ... (bcc.conf [biotop], default 20), \
as PCP's Python biotop served them: the rows of the last `interval` seconds ranked by `sort` \
(default -bytes: most bytes first). A row is one process's reads, or its writes, on one disk \
in that interval; instances beyond the rows there were have no values.",
}];

macro_rules! row_metric {
    ($item:expr, $name:expr, $ty:expr, $units:expr, $sens:expr, $oneline:expr, $help:expr) => {
        MetricSpec::new(
            $item,
            $name,
            $ty,
            Semantics::Instant,
            $units,
            Some(INDOM_ROWS),
            $sens,
            $oneline,
            concat!(
                $help,
                " One row of layout = table (bcc.conf [biotop]): a process's reads, or its \
writes, on one disk during the last `interval` seconds, rows ranked by `sort`; the row \
instances have the same meaning across the metrics of one fetch."
            ),
        )
    };
}

pub static TABLE_METRICS: &[MetricSpec] = &[
    row_metric!(
        T_PID,
        "proc.io.perdev.pid",
        Type::U32,
        Units::NONE,
        false,
        "PID",
        "PID (thread group id) of the process that submitted the I/O; 0 for I/O with no \
process context (only with include_residual = True)."
    ),
    row_metric!(
        T_COMM,
        "proc.io.perdev.comm",
        Type::String,
        Units::NONE,
        true,
        "command",
        "Name (comm of the main thread) of the process at its latest block I/O request."
    ),
    row_metric!(
        T_DIRECTION,
        "proc.io.perdev.direction",
        Type::String,
        Units::NONE,
        false,
        "IO direction",
        "\"R\" for reads, \"W\" for writes."
    ),
    row_metric!(
        T_MAJOR,
        "proc.io.perdev.major",
        Type::U32,
        Units::NONE,
        false,
        "disk major",
        "Major device number of the disk."
    ),
    row_metric!(
        T_MINOR,
        "proc.io.perdev.minor",
        Type::U32,
        Units::NONE,
        false,
        "disk minor",
        "Minor device number of the disk (of the whole disk: I/O to a partition counts on \
its disk)."
    ),
    row_metric!(
        T_DISK,
        "proc.io.perdev.disk",
        Type::String,
        Units::NONE,
        false,
        "disk name",
        "Name of the disk, as in /proc/diskstats and disk.dev."
    ),
    row_metric!(
        T_IO,
        "proc.io.perdev.io",
        Type::U32,
        Units::NONE,
        false,
        "IO count",
        "Requests of this direction the disk completed for the process in the interval."
    ),
    row_metric!(
        T_BYTES,
        "proc.io.perdev.bytes",
        Type::U64,
        Units::BYTES,
        false,
        "number of bytes",
        "Bytes of those requests."
    ),
    row_metric!(
        T_DURATION,
        "proc.io.perdev.duration",
        Type::U32,
        Units::USEC,
        false,
        "avg duration",
        "Average time of those requests, from issue to the driver to completion, in \
microseconds."
    ),
    DROPPED_METRIC,
    UNATTRIBUTED_METRIC,
    UNSEEN_METRIC,
];
