//! PCP's Python pmdabcc (removed from PCP in February 2026): its bcc.conf keys and modules.
//!
//! One table says what each key that agent's bcc.conf and man page documented does here, so
//! that its users' files start unchanged: a key we give the same meaning is an option (or a
//! reserved key) of our module and is parsed there; a key with no meaning here is accepted
//! and logged once with the reason. Keys that agent never had stay errors. Its modules we do
//! not have are reported as unavailable instead of failing the file.

/// What one of the Python agent's keys does here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The same key with the same meaning (parsed by the agent or the module). The text says
    /// what it does here, for the docs.
    Same(&'static str),
    /// Accepted and logged once: no effect here, for this reason.
    Ignored(&'static str),
}

/// One key: the module it belongs to (`"pmda"` for the [pmda] section, `"*"` for every
/// module section), the key, its effect here.
pub struct UpstreamKey {
    pub module: &'static str,
    pub key: &'static str,
    pub effect: Effect,
}

const fn same(module: &'static str, key: &'static str, what: &'static str) -> UpstreamKey {
    UpstreamKey {
        module,
        key,
        effect: Effect::Same(what),
    }
}

const fn ignored(module: &'static str, key: &'static str, why: &'static str) -> UpstreamKey {
    UpstreamKey {
        module,
        key,
        effect: Effect::Ignored(why),
    }
}

/// Every key the Python agent's bcc.conf and pmdabcc(1) documented for the [pmda] section,
/// for every module section, and for the modules we have.
pub static UPSTREAM_KEYS: &[UpstreamKey] = &[
    same("pmda", "modules", "the sections to run"),
    same("pmda", "prefix", "default prefix of metric names (bcc.)"),
    same("pmda", "process_refresh", "seconds between re-scans for process filters (default 60 here, 0 there; 0 turns re-scans off)"),
    same("pmda", "module_failure_fatal", "exit when a module fails to start (default False here, True there); modules this agent lacks are skipped, never fatal"),
    same("*", "module", "which module the section runs"),
    same("*", "cluster", "PMID cluster of the module's metrics"),
    same("*", "prefix", "prefix of the module's metric names"),
    same("*", "debug", "the module's debug messages in the agent's log"),
    ignored("*", "pmda_indom_cache", "instance names and ids always persist in PCP's instance cache here, and netproc's instance ids are PIDs whatever it says"),
    same("biotop", "interval", "layout = table: seconds over which the table is summed and ranked (0: at each fetch)"),
    same("biotop", "include_residual", "layout = table: include I/O with no known process (PID 0)"),
    same("biotop", "process_count", "layout = table: rows served"),
    same("biotop", "sort", "layout = table: ranking, bytes, io, duration or rw, '-' for descending"),
    same("tcplife", "process", "only sessions of these processes"),
    same("tcplife", "dport", "only sessions with these remote ports"),
    same("tcplife", "lport", "only sessions with these local ports"),
    same("tcplife", "session_count", "layout = sessions: sessions served"),
    same("tcplife", "buffer_page_count", "size of the ring buffer in pages (one buffer here, not one per CPU: default 256)"),
    same("runqlat", "process", "only wake-ups of these processes"),
    same("biolatency", "queued", "include the time requests spent queued in the OS"),
    ignored("netproc", "remove_stopped_processes", "a process's instance always leaves when it exits (as with True, the default there)"),
    same("tcptop", "interval", "seconds over which connections are summed and ranked"),
    same("tcptop", "conn_count", "connections served"),
    same("tcptop", "process", "only connections of these processes"),
    same("execsnoop", "include_failed", "also execs that failed"),
    same("execsnoop", "command", "only execs whose command name matches this regular expression"),
    same("execsnoop", "args", "only execs whose arguments match this regular expression"),
    same("execsnoop", "max_args", "arguments kept per exec"),
    same("execsnoop", "process_count", "rows of the table of the newest execs"),
    ignored("execsnoop", "buffer_page_count", "one ring buffer drained continuously by a thread of its own; what a client has not fetched yet waits in a queue sized by queue_memory"),
    ignored("tcpretrans", "process", "retransmissions mostly run in the kernel's timers, not in a process: every connection is counted"),
    ignored("tcpretrans", "include_tlp", "the kernel has no tracepoint for tail loss probes: they are counted as retransmissions (kind retransmit)"),
    ignored("tcpretrans", "flow_count", "connections are kept in an LRU map of 8192"),
    ignored("tcpretrans", "buffer_page_count", "counted in maps, no ring buffer"),
    same("tcpperpid", "dport", "only these remote ports"),
    same("tcpperpid", "lport", "only these local ports"),
    ignored("tcpperpid", "process", "every process is counted, one instance each (choose instances in the client)"),
    ignored("tcpperpid", "highres", "bytes are always counted as they move (upstream's highres mode)"),
    ignored("tcpperpid", "buffer_page_count", "counted in maps, no ring buffer"),
];

/// `module =` values of the Python agent's modules (all of them, whether we have them or not).
pub static UPSTREAM_MODULES: &[&str] = &[
    "biolatency",
    "bioperpid",
    "biotop",
    "cachestat",
    "execsnoop",
    "exectop",
    "fs.ext4dist",
    "fs.xfsdist",
    "fs.zfsdist",
    "klockstat",
    "kprobe_hits",
    "netproc",
    "profile",
    "runqlat",
    "syscount",
    "sysfork",
    "tcplife",
    "tcpperpid",
    "tcpretrans",
    "tcptop",
    "tracepoint_hits",
    "ucalls",
    "uprobe_hits",
    "usdt_hits",
    "usdt_jvm_threads",
    "ustat",
];

/// Whether `module` (a `module =` value) names one of the Python agent's modules.
pub fn is_upstream_module(module: &str) -> bool {
    UPSTREAM_MODULES.contains(&module)
}

/// The reason `key` of a `module` section is accepted without effect, if it is such a key.
pub fn ignored_key(module: &str, key: &str) -> Option<&'static str> {
    UPSTREAM_KEYS
        .iter()
        .filter(|k| k.key == key && (k.module == "*" || k.module == module))
        .find_map(|k| match k.effect {
            Effect::Ignored(why) => Some(why),
            Effect::Same(_) => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key with the same meaning is a key the agent or the module parses; a key without
    /// one is not also an option (which would make the log line a lie).
    #[test]
    fn same_keys_are_parsed_and_ignored_ones_are_not_options() {
        let pmda_keys = [
            "modules",
            "prefix",
            "process_refresh",
            "module_failure_fatal",
        ];
        for k in UPSTREAM_KEYS {
            let specs: Vec<&crate::module::ModuleSpec> = match k.module {
                "pmda" => {
                    assert!(pmda_keys.contains(&k.key), "[pmda] {}", k.key);
                    continue;
                }
                "*" => crate::modules::all().to_vec(),
                m => vec![crate::modules::find(m).unwrap_or_else(|| panic!("no module {m}"))],
            };
            for spec in specs {
                let option = spec.options.iter().any(|o| o.key == k.key);
                let reserved = crate::framework::spec::RESERVED_KEYS.contains(&k.key);
                match k.effect {
                    Effect::Same(_) => assert!(
                        option || reserved,
                        "{}: {} has a meaning but nothing parses it",
                        spec.name,
                        k.key
                    ),
                    Effect::Ignored(_) => assert!(
                        !option && !reserved,
                        "{}: {} is logged as ignored but is parsed",
                        spec.name,
                        k.key
                    ),
                }
            }
        }
    }

    #[test]
    fn ignored_keys_by_module() {
        assert!(is_upstream_module("fs.ext4dist"));
        assert!(!is_upstream_module("selftest"));
        assert!(ignored_key("netproc", "remove_stopped_processes").is_some());
        assert!(ignored_key("biotop", "pmda_indom_cache").is_some());
        assert!(ignored_key("biotop", "remove_stopped_processes").is_none());
        assert!(ignored_key("biotop", "interval").is_none());
    }

    /// pmda/bcc_upstream.conf (pmlogrewrite) maps each instance domain of the Python agent
    /// (serial = cluster) to ours, as the module tables number them, and no serial it
    /// rewrites is one of ours (pmlogger_daily applies it to every archive).
    #[test]
    fn the_pmlogrewrite_rules_follow_the_module_tables() {
        let rules = include_str!("../../../pmda/bcc_upstream.conf");
        let ours: Vec<(u32, u32, &str)> = crate::modules::all()
            .iter()
            .flat_map(|spec| {
                let c = spec.default_cluster.unwrap();
                std::iter::once(spec.indoms)
                    .chain(spec.layouts.iter().map(|l| l.2))
                    .flat_map(move |ids| {
                        ids.iter()
                            .map(move |i| (c, crate::module::indom_serial(c, i.id), spec.name))
                    })
            })
            .collect();
        let mut n = 0;
        for l in rules.lines().filter(|l| l.starts_with("indom ")) {
            let num = |s: &str| s.trim_start_matches("149.").parse::<u32>().unwrap();
            let f: Vec<&str> = l.split_whitespace().collect();
            let (from, to) = (num(f[1]), num(f[5].trim_end_matches('}')));
            assert!(
                ours.iter().any(|(c, s, _)| *c == from && *s == to),
                "{l}: no module of cluster {from} has indom 149.{to}"
            );
            assert!(
                !ours.iter().any(|(_, s, _)| *s == from),
                "{l}: 149.{from} is one of our own indoms"
            );
            n += 1;
        }
        assert_eq!(n, 5, "tcplife, runqlat, biotop, tcptop, netproc");
    }
}
