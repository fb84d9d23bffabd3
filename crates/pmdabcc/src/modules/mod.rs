//! Every module the agent can run: one folder each, registered here.

pub mod biolatency;
pub mod biotop;
pub mod histogram;
pub mod runqlat;
pub mod selftest;
pub mod sysfork;
pub mod tcplife;

#[cfg(test)]
mod pmids;

use crate::module::ModuleSpec;

/// All module kinds, by the name `module =` takes in bcc.conf.
pub static ALL: &[&ModuleSpec] = &[
    &sysfork::SPEC,
    &biotop::SPEC,
    &tcplife::SPEC,
    &runqlat::SPEC,
    &biolatency::SPEC,
    &selftest::SPEC,
];

pub fn find(name: &str) -> Option<&'static ModuleSpec> {
    ALL.iter().copied().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_table_is_consistent_and_clusters_distinct() {
        let mut clusters = std::collections::BTreeSet::new();
        for m in super::ALL {
            crate::module::check_table(m).unwrap();
            assert!(
                clusters.insert(m.default_cluster),
                "default cluster {} used twice",
                m.default_cluster
            );
            assert_ne!(m.default_cluster, crate::agent::AGENT_CLUSTER);
        }
    }
}
