//! The selftest metric table. Items are part of the PMID: never renumber them.

use crate::module::MetricSpec;
use pcp_pmda::{Semantics, Type, Units};

pub const FORKS: u32 = 0;
pub const LAST_COMM: u32 = 1;
pub const LAST_PID: u32 = 2;

pub static METRICS: &[MetricSpec] = &[
    MetricSpec {
        item: FORKS,
        name: "selftest.forks",
        ty: Type::U64,
        sem: Semantics::Counter,
        units: Units::COUNT,
        indom: None,
        oneline: "forks seen by the selftest module",
        help: "New tasks seen at sched:sched_process_fork by the selftest module, a module for \
testing the agent itself (like PCP's sample PMDA).",
        sensitive: false,
        aliases: &[],
    },
    MetricSpec {
        item: LAST_COMM,
        name: "selftest.last_comm",
        ty: Type::String,
        sem: Semantics::Instant,
        units: Units::NONE,
        indom: None,
        oneline: "command name of the last task that forked (sensitive)",
        help: "The command name of the last task that forked. It reveals what users run, so it \
is a sensitive metric: only root and the users and groups named by allowed_users / \
allowed_groups may fetch it; others get a permission error.",
        sensitive: true,
        aliases: &[],
    },
    MetricSpec {
        item: LAST_PID,
        name: "selftest.last_pid",
        ty: Type::U32,
        sem: Semantics::Instant,
        units: Units::NONE,
        indom: None,
        oneline: "process id of the last task that forked (sensitive)",
        help: "The process id of the last task that forked; sensitive like selftest.last_comm.",
        sensitive: true,
        aliases: &[],
    },
];
