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

/// All module kinds, by the name `module =` takes in bcc.conf.
pub fn all() -> &'static [&'static ModuleSpec] {
    static ALL: OnceLock<Vec<&'static ModuleSpec>> = OnceLock::new();
    ALL.get_or_init(|| {
        vec![
            spec_module!("sysfork"),
            &biotop::SPEC,
            &tcplife::SPEC,
            spec_module!("runqlat"),
            spec_module!("biolatency"),
            &selftest::SPEC,
        ]
    })
}

pub fn find(name: &str) -> Option<&'static ModuleSpec> {
    all().iter().copied().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_table_is_consistent_and_clusters_distinct() {
        let mut clusters = std::collections::BTreeSet::new();
        for m in super::all() {
            crate::module::check_table(m).unwrap();
            let c = m.default_cluster.expect("built-in modules have a default cluster");
            assert!(clusters.insert(c), "default cluster {c} used twice");
            assert_ne!(c, crate::agent::AGENT_CLUSTER);
        }
    }
}
