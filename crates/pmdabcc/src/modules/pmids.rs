//! One PMID, one descriptor: PCP clients, pmlogger and pmproxy take a PMID's descriptor as
//! fixed for good, so no (cluster, item) may mean two things in any layout or option, and
//! where we serve a metric of PCP's Python pmdabcc (PCP 6.x) its PMID is upstream's, so
//! archives recorded with that agent read the same.

use crate::module::{indom_serial, IndomSpec, MetricSpec, ModuleSpec};
use pcp_pmda::{Semantics, Type, Units};
use std::collections::BTreeMap;

/// Every table a module can serve: its spec's, and the alternatives an option selects.
fn tables(spec: &ModuleSpec) -> Vec<(String, &'static [MetricSpec], &'static [IndomSpec])> {
    let mut t = vec![(
        format!("{} (default)", spec.name),
        spec.metrics,
        spec.indoms,
    )];
    for (when, m, i) in spec.layouts {
        t.push((format!("{} {when}", spec.name), *m, *i));
    }
    t
}

type Desc = (&'static str, Type, Semantics, Units, Option<u32>);

#[test]
fn no_pmid_has_two_descriptors_in_any_layout() {
    let mut seen: BTreeMap<(u32, u32), (Desc, String)> = BTreeMap::new();
    for spec in super::all() {
        let c = spec.default_cluster.expect("built-ins have a cluster");
        for (table, metrics, indoms) in tables(spec) {
            for m in metrics {
                let indom = m.indom.map(|l| {
                    assert!(
                        indoms.iter().any(|i| i.id == l),
                        "{table}: {} uses an indom the table does not declare",
                        m.name
                    );
                    indom_serial(c, l)
                });
                let d: Desc = (m.name, m.ty, m.sem, m.units, indom);
                if let Some((prev, where_)) = seen.get(&(c, m.item)) {
                    assert_eq!(
                        *prev, d,
                        "PMID 149.{c}.{} is {prev:?} in {where_} but {d:?} in {table}",
                        m.item
                    );
                } else {
                    seen.insert((c, m.item), (d, table.clone()));
                }
            }
        }
    }
    // The check has teeth: tcplife's two layouts were both looked at.
    assert!(seen.contains_key(&(3, 0)) && seen.contains_key(&(3, 13)));
}

/// PCP's Python pmdabcc (src/pmdas/bcc/modules/*.python before its removal in PCP 7):
/// cluster, item (position in the module's metric list), name, type, semantics, units.
#[rustfmt::skip]
const UPSTREAM: &[(u32, u32, &str, Type, Semantics, Units)] = &[
    (0, 0, "disk.all.latency", Type::U64, Semantics::Counter, Units::USEC),
    (2, 0, "proc.sysfork", Type::U64, Semantics::Counter, Units::COUNT),
    (3, 0, "proc.io.net.tcp.pid", Type::U32, Semantics::Instant, Units::NONE),
    (3, 1, "proc.io.net.tcp.comm", Type::String, Semantics::Instant, Units::NONE),
    (3, 2, "proc.io.net.tcp.laddr", Type::String, Semantics::Instant, Units::NONE),
    (3, 3, "proc.io.net.tcp.lport", Type::U32, Semantics::Instant, Units::NONE),
    (3, 4, "proc.io.net.tcp.daddr", Type::String, Semantics::Instant, Units::NONE),
    (3, 5, "proc.io.net.tcp.dport", Type::U32, Semantics::Instant, Units::NONE),
    (3, 6, "proc.io.net.tcp.tx", Type::U64, Semantics::Instant, Units::BYTES),
    (3, 7, "proc.io.net.tcp.rx", Type::U64, Semantics::Instant, Units::BYTES),
    (3, 8, "proc.io.net.tcp.duration", Type::U32, Semantics::Instant, Units::USEC),
    (4, 0, "runq.latency", Type::U64, Semantics::Counter, Units::USEC),
    (10, 0, "proc.io.perdev.pid", Type::U32, Semantics::Instant, Units::NONE),
    (10, 1, "proc.io.perdev.comm", Type::String, Semantics::Instant, Units::NONE),
    (10, 2, "proc.io.perdev.direction", Type::String, Semantics::Instant, Units::NONE),
    (10, 3, "proc.io.perdev.major", Type::U32, Semantics::Instant, Units::NONE),
    (10, 4, "proc.io.perdev.minor", Type::U32, Semantics::Instant, Units::NONE),
    (10, 5, "proc.io.perdev.disk", Type::String, Semantics::Instant, Units::NONE),
    (10, 6, "proc.io.perdev.io", Type::U32, Semantics::Instant, Units::NONE),
    (10, 7, "proc.io.perdev.bytes", Type::U64, Semantics::Instant, Units::BYTES),
    (10, 8, "proc.io.perdev.duration", Type::U32, Semantics::Instant, Units::USEC),
];

/// Names the original pcp-bcc-pmda gave metrics of its own, which upstream later gave to other
/// metrics (per-process counters here, per-session values there): the same name, another
/// metric, so another PMID. Only one of the two is in the namespace at a time.
const SEED_NAMES: &[(&str, &str)] = &[
    ("tcplife (default)", "proc.io.net.tcp.rx"),
    ("tcplife (default)", "proc.io.net.tcp.tx"),
];

#[test]
fn upstream_pmids_keep_upstream_meanings_and_ours_use_free_items() {
    for spec in super::all() {
        let c = spec.default_cluster.expect("built-ins have a cluster");
        for (table, metrics, _) in tables(spec) {
            for m in metrics {
                let same_pmid = UPSTREAM.iter().find(|u| u.0 == c && u.1 == m.item);
                let seed = SEED_NAMES.contains(&(table.as_str(), m.name));
                let same_name = UPSTREAM.iter().find(|u| u.0 == c && u.2 == m.name && !seed);
                if let Some(u) = same_pmid.or(same_name) {
                    assert_eq!(
                        (u.1, u.2, u.3, u.4, u.5),
                        (m.item, m.name, m.ty, m.sem, m.units),
                        "{table}: 149.{c}.{} {} disagrees with upstream's 149.{}.{} {}",
                        m.item,
                        m.name,
                        u.0,
                        u.1,
                        u.2
                    );
                }
            }
        }
    }
}
