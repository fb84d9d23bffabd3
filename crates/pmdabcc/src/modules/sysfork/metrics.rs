//! The sysfork metric table. Items are part of the PMID: never renumber them.

use crate::module::MetricSpec;
use pcp_pmda::{Semantics, Type, Units};

pub const TASKS: u32 = 0;

pub static METRICS: &[MetricSpec] = &[MetricSpec {
    item: TASKS,
    name: "proc.sysfork",
    ty: Type::U64,
    sem: Semantics::Counter,
    units: Units::COUNT,
    indom: None,
    oneline: "fork rate",
    help: "Number of new tasks (processes and threads) created system-wide since the agent \
started, counted at the sched:sched_process_fork tracepoint, so it includes kernel threads \
and every clone() that succeeded. Over any interval its delta tracks kernel.all.sysfork from \
PCP's linux PMDA; clients such as pmval show it as a rate.",
    sensitive: false,
}];

#[cfg(test)]
mod tests {
    use super::*;

    /// PMIDs are a contract with archives and dashboards: 149.2.0 is bcc.proc.sysfork, as in
    /// the original pmdabcc.
    #[test]
    fn pmids_are_pinned() {
        let pinned: Vec<(u32, &str)> = METRICS.iter().map(|m| (m.item, m.name)).collect();
        assert_eq!(pinned, vec![(0, "proc.sysfork")]);
        assert_eq!(super::super::SPEC.default_cluster, 2);
        crate::module::check_table(&super::super::SPEC).unwrap();
    }
}
