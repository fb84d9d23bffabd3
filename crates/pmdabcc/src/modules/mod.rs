//! Every module the agent can run: one folder each, registered here.
//!
//! A spec module is a folder with `<m>.bpf.c` and `<m>.toml` (docs/MODULE-SPEC.md) and no
//! Rust: its object and spec are compiled in and served by the framework. The others (a
//! `mod.rs` of their own) keep logic the framework does not have (biotop's exact
//! attribution, tcplife's sessions).
#![deny(unsafe_code)]

pub mod biotop;
pub mod histogram;
pub mod selftest;
pub mod tcplife;
pub mod tcptop;

#[cfg(test)]
mod pmids;

use crate::module::ModuleSpec;
use std::sync::OnceLock;

/// A compiled-in spec module: its spec and the object build.rs made from its `.bpf.c`.
macro_rules! spec_module {
    ($name:literal) => {
        crate::framework::builtin(
            concat!($name, ".toml"),
            include_str!(concat!($name, "/", $name, ".toml")),
            include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".bpf.o")),
        )
    };
}

/// A module kind's name and its spec, made on first use.
type Kind = (&'static str, fn() -> &'static ModuleSpec);

/// Every built-in module kind, by the name `module =` takes in bcc.conf. A spec module's spec
/// is parsed on first use, so the agent parses only the modules its configuration runs.
static KINDS: &[Kind] = &[
    ("sysfork", || spec_module!("sysfork")),
    ("biotop", || &biotop::SPEC),
    ("tcplife", || &tcplife::SPEC),
    ("runqlat", || spec_module!("runqlat")),
    ("biolatency", || spec_module!("biolatency")),
    ("netproc", || spec_module!("netproc")),
    ("tcptop", || &tcptop::SPEC),
    ("oomkill", || spec_module!("oomkill")),
    ("biosnoop", || spec_module!("biosnoop")),
    ("tcpconnect", || spec_module!("tcpconnect")),
    ("tcpconnlat", || spec_module!("tcpconnlat")),
    ("opensnoop", || spec_module!("opensnoop")),
    ("statsnoop", || spec_module!("statsnoop")),
    ("mountsnoop", || spec_module!("mountsnoop")),
    ("bashreadline", || spec_module!("bashreadline")),
    ("fsslower", || spec_module!("fsslower")),
    ("tcpretrans", || spec_module!("tcpretrans")),
    ("tcpdrop", || spec_module!("tcpdrop")),
    ("tcpaccept", || spec_module!("tcpaccept")),
    ("tcpperpid", || spec_module!("tcpperpid")),
    ("execsnoop", || spec_module!("execsnoop")),
    ("exitsnoop", || spec_module!("exitsnoop")),
    ("selftest", || &selftest::SPEC),
];

/// All module kinds (parses every built-in spec).
pub fn all() -> &'static [&'static ModuleSpec] {
    static ALL: OnceLock<Vec<&'static ModuleSpec>> = OnceLock::new();
    ALL.get_or_init(|| KINDS.iter().map(|(_, spec)| spec()).collect())
}

/// The names of all module kinds (parses nothing).
pub fn names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|(n, _)| *n)
}

pub fn find(name: &str) -> Option<&'static ModuleSpec> {
    let (_, spec) = KINDS.iter().find(|(n, _)| *n == name)?;
    Some(spec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn kinds_are_named_as_their_specs() {
        for (n, spec) in super::KINDS {
            assert_eq!(spec().name, *n);
        }
    }

    #[test]
    fn every_table_is_consistent_and_clusters_distinct() {
        let mut clusters = std::collections::BTreeSet::new();
        for m in super::all() {
            crate::module::check_table(m).unwrap();
            let c = m
                .default_cluster
                .expect("built-in modules have a default cluster");
            assert!(clusters.insert(c), "default cluster {c} used twice");
            assert_ne!(c, crate::agent::AGENT_CLUSTER);
        }
    }
}
