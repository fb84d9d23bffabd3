//! The agent's own metrics (cluster [`super::AGENT_CLUSTER`]), under `<prefix>agent.`.
//! Items are part of the PMID: never renumber them.

use crate::module::{IndomSpec, MetricSpec};
use pcp_pmda::{IndomKind, Semantics, Type, Units};

pub const VERSION: u32 = 0;
pub const CONFIG: u32 = 1;
pub const MOD_STATE: u32 = 2;
pub const MOD_STATUS: u32 = 3;
pub const MOD_MODULE: u32 = 4;
pub const MOD_CLUSTER: u32 = 5;
pub const MOD_LOAD_TIME: u32 = 6;
pub const RUNNING: u32 = 7;
pub const FAILED: u32 = 8;
pub const STARTUP_TIME: u32 = 9;
pub const BPF_STATS_ENABLED: u32 = 10;
pub const CONFIG_STATUS: u32 = 11;
pub const RELOAD: u32 = 12;
pub const PROG_ID: u32 = 20;
pub const PROG_RUN_COUNT: u32 = 21;
pub const PROG_RUN_TIME: u32 = 22;
pub const PROG_VERIFIED_INSNS: u32 = 23;
pub const PROG_RECURSION_MISSES: u32 = 24;
pub const MAP_ID: u32 = 30;
pub const MAP_MAX_ENTRIES: u32 = 31;
pub const MAP_MEMORY: u32 = 32;
pub const MAP_ENTRIES: u32 = 33;

/// Module-local id of the indom of configured module sections.
pub const INDOM_MODULES: u32 = 0;
/// Module-local ids of the indoms of the modules' BPF programs and maps.
pub const INDOM_PROGS: u32 = 1;
pub const INDOM_MAPS: u32 = 2;

pub static INDOMS: &[IndomSpec] = &[
    IndomSpec {
        id: INDOM_MODULES,
        kind: IndomKind::Cached,
        oneline: "module sections of bcc.conf",
        help: "One instance per module section of bcc.conf, named by the section: those listed in \
[pmda] modules and those present but not listed (state \"disabled\").",
    },
    IndomSpec {
        id: INDOM_PROGS,
        kind: IndomKind::Cached,
        oneline: "BPF programs of the running modules",
        help: "One instance per BPF program loaded by a running module, named <section>/<program>.",
    },
    IndomSpec {
        id: INDOM_MAPS,
        kind: IndomKind::Cached,
        oneline: "BPF maps of the running modules",
        help: "One instance per BPF map created by a running module, named <section>/<map>.",
    },
];

pub static METRICS: &[MetricSpec] = &[
    MetricSpec::new(VERSION, "agent.version", Type::String, Semantics::Discrete, Units::NONE, None, false, "version of the bcc agent", "Version of the running pmdabcc binary (the Rust/CO-RE bcc PMDA)."),
    MetricSpec::new(CONFIG, "agent.config", Type::String, Semantics::Discrete, Units::NONE, None, false, "path of the configuration file in use", "Path of the bcc.conf the agent read at start or at its last reload."),
    MetricSpec::new(
        MOD_STATE,
        "agent.modules.state",
        Type::String,
        Semantics::Instant,
        Units::NONE,
        Some(INDOM_MODULES),
        false,
        "state of each configured module",
        "One of: \"loading\" (its BPF programs are being loaded), \"running\" (its metrics are \
served), \"failed\" (it could not start; agent.modules.status says why; the other modules \
are not affected), \"disabled\" (a section in bcc.conf that [pmda] modules does not list).",
    ),
    MetricSpec::new(
        MOD_STATUS,
        "agent.modules.status",
        Type::String,
        Semantics::Instant,
        Units::NONE,
        Some(INDOM_MODULES),
        false,
        "status detail of each configured module",
        "For a running module, the kernel hooks it chose at start (e.g. \"sched_process_fork via \
tp_btf\"), with the hooks it passed over and why; for a failed module, the reason, including \
file, line and key for configuration errors.",
    ),
    MetricSpec::new(MOD_MODULE, "agent.modules.module", Type::String, Semantics::Discrete, Units::NONE, Some(INDOM_MODULES), false, "module kind of each section", "The value of the section's module key: which module the section runs."),
    MetricSpec::new(MOD_CLUSTER, "agent.modules.cluster", Type::U32, Semantics::Discrete, Units::NONE, Some(INDOM_MODULES), false, "PMID cluster of each module's metrics", "The cluster part of the PMIDs of the module's metrics (the section's cluster key, or the module's default)."),
    MetricSpec::new(
        MOD_LOAD_TIME,
        "agent.modules.load_time",
        Type::U64,
        Semantics::Discrete,
        Units::MSEC,
        Some(INDOM_MODULES),
        false,
        "time taken to load and attach each module",
        "Wall-clock time from opening the module's BPF object to its programs being attached, \
including any hooks tried and passed over.",
    ),
    MetricSpec::new(RUNNING, "agent.modules.running", Type::U32, Semantics::Instant, Units::COUNT, None, false, "number of running modules", "Number of configured modules whose metrics are being served."),
    MetricSpec::new(FAILED, "agent.modules.failed", Type::U32, Semantics::Instant, Units::COUNT, None, false, "number of failed modules", "Number of configured modules that could not start (see agent.modules.status)."),
    MetricSpec::new(
        STARTUP_TIME,
        "agent.startup_time",
        Type::U64,
        Semantics::Discrete,
        Units::MSEC,
        None,
        false,
        "time from agent start until every module loaded",
        "Wall-clock time from the agent's process start until every configured module loaded \
(or failed). The agent tells pmcd it is ready as soon as it connects; metrics of modules \
still loading answer \"try again\" until then.",
    ),
    MetricSpec::new(
        BPF_STATS_ENABLED,
        "agent.bpf.stats_enabled",
        Type::U32,
        Semantics::Instant,
        Units::NONE,
        None,
        false,
        "whether kernel BPF run-time statistics are on",
        "1 when the kernel is keeping BPF run counts and run times (the agent holds them on when \
[pmda] bpf_stats = True, or kernel.bpf_stats_enabled is set), else 0, in which case \
agent.bpf.prog.run_count and run_time do not advance. Statistics cost a little on every event.",
    ),
    MetricSpec::new(
        CONFIG_STATUS,
        "agent.config_status",
        Type::String,
        Semantics::Instant,
        Units::NONE,
        None,
        false,
        "problems with the configuration file as a whole",
        "\"ok\", or the problems with bcc.conf that concern no single module (file refused \
because root does not own it or others can write it, unknown [pmda] keys, bad values), each \
naming file, line and key. Problems of one module section are in agent.modules.status.",
    ),
    MetricSpec::new(
        RELOAD,
        "agent.control.reload",
        Type::U64,
        Semantics::Counter,
        Units::COUNT,
        None,
        false,
        "reload bcc.conf (pmstore any value); value: reloads done",
        "Storing any value (as root: pmstore bcc.agent.control.reload 1) makes the agent read \
bcc.conf again, as SIGHUP to the agent does: module sections whose settings did not change keep \
running with their counts, removed ones are unloaded, new or changed ones are loaded, and clients \
are told the namespace changed. A file that is not trusted is refused and the running \
configuration kept. The value is the number of reloads done.",
    ),
    MetricSpec::new(PROG_ID, "agent.bpf.prog.id", Type::U32, Semantics::Discrete, Units::NONE, Some(INDOM_PROGS), false, "kernel id of each BPF program", "The program's id, as bpftool prog show lists it."),
    MetricSpec::new(
        PROG_RUN_COUNT,
        "agent.bpf.prog.run_count",
        Type::U64,
        Semantics::Counter,
        Units::COUNT,
        Some(INDOM_PROGS),
        false,
        "number of times each BPF program ran",
        "Runs of the program counted by the kernel while BPF statistics are on (see agent.bpf.stats_enabled).",
    ),
    MetricSpec::new(
        PROG_RUN_TIME,
        "agent.bpf.prog.run_time",
        Type::U64,
        Semantics::Counter,
        Units::NSEC,
        Some(INDOM_PROGS),
        false,
        "time spent running each BPF program",
        "Total run time of the program measured by the kernel while BPF statistics are on; \
run_time / run_count is the in-kernel cost per event.",
    ),
    MetricSpec::new(PROG_VERIFIED_INSNS, "agent.bpf.prog.verified_insns", Type::U32, Semantics::Discrete, Units::COUNT, Some(INDOM_PROGS), false, "instructions the verifier processed", "Number of instructions the kernel verifier processed when loading the program."),
    MetricSpec::new(
        PROG_RECURSION_MISSES,
        "agent.bpf.prog.recursion_misses",
        Type::U64,
        Semantics::Counter,
        Units::COUNT,
        Some(INDOM_PROGS),
        false,
        "events each BPF program missed by recursion",
        "Times the kernel skipped the program because it was already running on that CPU: events it did not see.",
    ),
    MetricSpec::new(MAP_ID, "agent.bpf.map.id", Type::U32, Semantics::Discrete, Units::NONE, Some(INDOM_MAPS), false, "kernel id of each BPF map", "The map's id, as bpftool map show lists it."),
    MetricSpec::new(MAP_MAX_ENTRIES, "agent.bpf.map.max_entries", Type::U32, Semantics::Discrete, Units::COUNT, Some(INDOM_MAPS), false, "capacity of each BPF map", "Maximum number of entries of the map (its size option where the module has one)."),
    MetricSpec::new(MAP_MEMORY, "agent.bpf.map.memory", Type::U64, Semantics::Instant, Units::BYTES, Some(INDOM_MAPS), false, "kernel memory of each BPF map", "Kernel memory charged for the map (memlock in /proc/<pid>/fdinfo; bpftool's bytes_memlock)."),
    MetricSpec::new(
        MAP_ENTRIES,
        "agent.bpf.map.entries",
        Type::U64,
        Semantics::Instant,
        Units::COUNT,
        Some(INDOM_MAPS),
        false,
        "entries in use in each BPF map",
        "Entries in use, against agent.bpf.map.max_entries: counted by walking the keys of hash \
maps when this metric is fetched (about a microsecond per entry); arrays always hold \
max_entries; no value for ring buffers.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmids_are_pinned() {
        let got: Vec<(u32, &str)> = METRICS.iter().map(|m| (m.item, m.name)).collect();
        assert_eq!(
            got,
            vec![
                (0, "agent.version"),
                (1, "agent.config"),
                (2, "agent.modules.state"),
                (3, "agent.modules.status"),
                (4, "agent.modules.module"),
                (5, "agent.modules.cluster"),
                (6, "agent.modules.load_time"),
                (7, "agent.modules.running"),
                (8, "agent.modules.failed"),
                (9, "agent.startup_time"),
                (10, "agent.bpf.stats_enabled"),
                (11, "agent.config_status"),
                (12, "agent.control.reload"),
                (20, "agent.bpf.prog.id"),
                (21, "agent.bpf.prog.run_count"),
                (22, "agent.bpf.prog.run_time"),
                (23, "agent.bpf.prog.verified_insns"),
                (24, "agent.bpf.prog.recursion_misses"),
                (30, "agent.bpf.map.id"),
                (31, "agent.bpf.map.max_entries"),
                (32, "agent.bpf.map.memory"),
                (33, "agent.bpf.map.entries"),
            ]
        );
        assert_eq!(super::super::AGENT_CLUSTER, 4095);
    }
}
