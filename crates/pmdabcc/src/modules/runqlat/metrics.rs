//! The runqlat metric table. Items are part of the PMID: never renumber them.

use crate::module::{IndomSpec, MetricSpec};
use pcp_pmda::{IndomKind, Semantics, Type, Units};

pub const LATENCY: u32 = 0;
pub const LATENCY_COUNT: u32 = 1;
pub const LATENCY_SUM: u32 = 2;

/// Module-local indom of the histogram buckets.
pub const INDOM_BUCKETS: u32 = 0;

pub static METRICS: &[MetricSpec] = &[
    MetricSpec {
        item: LATENCY,
        name: "runq.latency",
        ty: Type::U64,
        sem: Semantics::Counter,
        units: Units::USEC,
        indom: Some(INDOM_BUCKETS),
        oneline: "run queue (scheduler) latency distribution",
        help: "Run-queue latency histogram: how many times a task waited the given time, in \
microseconds, between becoming runnable (woken up, created, or preempted while still \
runnable) and running on a CPU. One instance per power-of-two bucket, named \"<low>-<high>\" \
(0-1, 2-3, 4-7, ...), from the first bucket to the highest non-empty one; each value counts \
the intervals that fell into that bucket since the agent started. The instance domain carries \
the label {\"statistic\":\"histogram\"} and every instance its lower_bound and upper_bound. \
Measured at the sched_wakeup, sched_wakeup_new and sched_switch tracepoints (as bcc's \
runqlat); the `process` option restricts it to some processes.",
        sensitive: false,
    },
    MetricSpec {
        item: LATENCY_COUNT,
        name: "runq.latency_count",
        ty: Type::U64,
        sem: Semantics::Counter,
        units: Units::COUNT,
        indom: None,
        oneline: "run queue latency intervals measured",
        help: "Number of run-queue waits measured since the agent started: the sum of all \
buckets of runq.latency. With runq.latency_sum it gives the mean run-queue latency over any \
interval (delta sum / delta count) without reading the buckets.",
        sensitive: false,
    },
    MetricSpec {
        item: LATENCY_SUM,
        name: "runq.latency_sum",
        ty: Type::U64,
        sem: Semantics::Counter,
        units: Units::USEC,
        indom: None,
        oneline: "total run queue latency",
        help: "Total time, in microseconds, that the waits counted by runq.latency_count \
spent in the run queue (summed in nanoseconds, so it is exact, not rebuilt from buckets).",
        sensitive: false,
    },
];

pub static INDOMS: &[IndomSpec] = &[IndomSpec {
    id: INDOM_BUCKETS,
    kind: IndomKind::Fixed,
    oneline: "power-of-two latency buckets, microseconds",
    help: "Buckets of the run-queue latency histogram: instance id i is the bucket of \
latencies whose floor(log2(us)) is i (0 and 1 in bucket 0), named \"<low>-<high>\". The ids \
never change; buckets are listed from 0 up to the highest non-empty one.",
}];

#[cfg(test)]
mod tests {
    use super::*;

    /// PMIDs are a contract with archives and dashboards: 149.4.0 is bcc.runq.latency, as in
    /// the original pmdabcc (cluster 4).
    #[test]
    fn pmids_are_pinned() {
        let pinned: Vec<(u32, &str)> = METRICS.iter().map(|m| (m.item, m.name)).collect();
        assert_eq!(
            pinned,
            vec![
                (0, "runq.latency"),
                (1, "runq.latency_count"),
                (2, "runq.latency_sum")
            ]
        );
        assert_eq!(super::super::SPEC.default_cluster, 4);
        assert_eq!(crate::module::indom_serial(4, INDOM_BUCKETS), 256);
        crate::module::check_table(&super::super::SPEC).unwrap();
    }
}
