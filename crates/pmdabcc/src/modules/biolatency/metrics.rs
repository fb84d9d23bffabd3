//! The biolatency metric table. Items are part of the PMID: never renumber them.

use crate::module::{IndomSpec, MetricSpec};
use pcp_pmda::{IndomKind, Semantics, Type, Units};

pub const ALL_LATENCY: u32 = 0;
pub const ALL_COUNT: u32 = 1;
pub const ALL_SUM: u32 = 2;
pub const DEV_LATENCY: u32 = 3;
pub const DEV_COUNT: u32 = 4;
pub const DEV_SUM: u32 = 5;

/// Buckets of the whole-system histogram (fixed ids: the bucket index).
pub const INDOM_BUCKETS: u32 = 0;
/// `<disk>::<low>-<high>` (pmdaCache: ids kept across restarts).
pub const INDOM_DISK_BUCKETS: u32 = 1;
/// Disk names (pmdaCache).
pub const INDOM_DISKS: u32 = 2;

pub static METRICS: &[MetricSpec] = &[
    MetricSpec {
        item: ALL_LATENCY,
        name: "disk.all.latency",
        ty: Type::U64,
        sem: Semantics::Counter,
        units: Units::USEC,
        indom: Some(INDOM_BUCKETS),
        oneline: "block io latency distribution",
        help: "Block I/O latency histogram over all disks, reads and writes: how many requests \
took the given time, in microseconds, from being issued to the device driver to completing \
(with the `queued` option, from being inserted into the OS queue, so queueing time is \
included). One instance per power-of-two bucket, named \"<low>-<high>\" (0-1, 2-3, 4-7, ...), \
from the first bucket to the highest non-empty one; values count requests since the agent \
started. The instance domain carries {\"statistic\":\"histogram\"} and every instance its \
lower_bound and upper_bound. From the block:block_rq_issue (or block_rq_insert) and \
block:block_rq_complete tracepoints.",
        sensitive: false,
    },
    MetricSpec {
        item: ALL_COUNT,
        name: "disk.all.latency_count",
        ty: Type::U64,
        sem: Semantics::Counter,
        units: Units::COUNT,
        indom: None,
        oneline: "block io requests measured",
        help: "Number of block I/O requests whose latency was measured since the agent started: \
the sum of all buckets of disk.all.latency. With disk.all.latency_sum it gives the mean \
latency over any interval (delta sum / delta count) without reading the buckets.",
        sensitive: false,
    },
    MetricSpec {
        item: ALL_SUM,
        name: "disk.all.latency_sum",
        ty: Type::U64,
        sem: Semantics::Counter,
        units: Units::USEC,
        indom: None,
        oneline: "total block io latency",
        help: "Total latency, in microseconds, of the requests counted by \
disk.all.latency_count (summed in nanoseconds, so it is exact, not rebuilt from buckets).",
        sensitive: false,
    },
    MetricSpec {
        item: DEV_LATENCY,
        name: "disk.dev.latency",
        ty: Type::U64,
        sem: Semantics::Counter,
        units: Units::USEC,
        indom: Some(INDOM_DISK_BUCKETS),
        oneline: "per-disk block io latency distribution",
        help: "Block I/O latency histogram per disk (as bcc's biolatency -D), measured like \
disk.all.latency; only with the option per_disk = true (otherwise it has no instances). \
Instances are named \"<disk>::<low>-<high>\" (vda::0-1, vda::2-3, ...); each disk's buckets go \
from the first to that disk's highest non-empty one. The instance domain carries \
{\"statistic\":\"histogram\"} and every instance its disk, lower_bound and upper_bound.",
        sensitive: false,
    },
    MetricSpec {
        item: DEV_COUNT,
        name: "disk.dev.latency_count",
        ty: Type::U64,
        sem: Semantics::Counter,
        units: Units::COUNT,
        indom: Some(INDOM_DISKS),
        oneline: "per-disk block io requests measured",
        help: "Per disk, the number of block I/O requests measured by disk.dev.latency (only \
with per_disk = true).",
        sensitive: false,
    },
    MetricSpec {
        item: DEV_SUM,
        name: "disk.dev.latency_sum",
        ty: Type::U64,
        sem: Semantics::Counter,
        units: Units::USEC,
        indom: Some(INDOM_DISKS),
        oneline: "per-disk total block io latency",
        help: "Per disk, the total latency in microseconds of the requests counted by \
disk.dev.latency_count (only with per_disk = true).",
        sensitive: false,
    },
];

pub static INDOMS: &[IndomSpec] = &[
    IndomSpec {
        id: INDOM_BUCKETS,
        kind: IndomKind::Fixed,
        oneline: "power-of-two latency buckets, microseconds",
        help: "Buckets of the block I/O latency histogram: instance id i is the bucket of \
latencies whose floor(log2(us)) is i (0 and 1 in bucket 0), named \"<low>-<high>\". The ids \
never change; buckets are listed from 0 up to the highest non-empty one.",
    },
    IndomSpec {
        id: INDOM_DISK_BUCKETS,
        kind: IndomKind::Cached,
        oneline: "per-disk power-of-two latency buckets, microseconds",
        help: "Buckets of the per-disk block I/O latency histograms, named \
\"<disk>::<low>-<high>\"; instance ids are kept across agent restarts.",
    },
    IndomSpec {
        id: INDOM_DISKS,
        kind: IndomKind::Cached,
        oneline: "disks with measured block io",
        help: "Disks (block devices, by kernel name) that completed block I/O since the agent \
started, with per_disk = true.",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// PMIDs are a contract with archives and dashboards: 149.0.0 is bcc.disk.all.latency, as
    /// in the original pmdabcc (cluster 0).
    #[test]
    fn pmids_are_pinned() {
        let pinned: Vec<(u32, &str)> = METRICS.iter().map(|m| (m.item, m.name)).collect();
        assert_eq!(
            pinned,
            vec![
                (0, "disk.all.latency"),
                (1, "disk.all.latency_count"),
                (2, "disk.all.latency_sum"),
                (3, "disk.dev.latency"),
                (4, "disk.dev.latency_count"),
                (5, "disk.dev.latency_sum"),
            ]
        );
        assert_eq!(super::super::SPEC.default_cluster, 0);
        crate::module::check_table(&super::super::SPEC).unwrap();
    }
}
