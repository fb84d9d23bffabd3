//! bcc.conf files of PCP's Python pmdabcc users start unchanged: every key that agent
//! documented is accepted (with its meaning, or logged as having none here), its modules we
//! lack are reported as unavailable, and keys it never had stay errors, all of them listed.

use pmdabcc::agent::{BccAgent, SlotState};
use pmdabcc::config::Config;
use std::path::Path;
use std::time::Instant;

const FILE: &str = "/var/lib/pcp/pmdas/bcc/bcc.conf";
const UPSTREAM: &str = include_str!("../../../tests/compat/upstream-bcc.conf");

fn agent(text: &str) -> BccAgent {
    BccAgent::new(Config::parse(Path::new(FILE), text), Instant::now())
}

#[test]
fn an_upstream_config_starts_with_no_error() {
    let a = agent(UPSTREAM);
    assert!(a.config_errors().is_empty(), "{:?}", a.config_errors());
    let mut running = Vec::new();
    for s in a.slots() {
        let module = Config::parse(Path::new(FILE), UPSTREAM).sections[&s.section].keys["module"]
            .value
            .clone();
        match pmdabcc::modules::find(&module) {
            Some(_) => {
                assert_eq!(s.state, SlotState::Loading, "[{}]: {}", s.section, s.status);
                running.push(s.section.clone());
            }
            None => {
                assert_eq!(
                    s.state,
                    SlotState::Unavailable,
                    "[{}]: {}",
                    s.section,
                    s.status
                );
                assert!(
                    s.status
                        .contains("module of PCP's Python pmdabcc that this agent does not have"),
                    "{}",
                    s.status
                );
                assert!(s.status.starts_with(&format!("{FILE}:")), "{}", s.status);
            }
        }
    }
    for m in [
        "sysfork",
        "runqlat",
        "biolatency",
        "biotop",
        "netproc",
        "tcplife",
        "tcptop",
        "execsnoop",
        "tcpretrans",
        "tcpperpid",
    ] {
        assert!(
            running.contains(&m.to_string()),
            "{m} does not start: {running:?}"
        );
    }
    let netproc = a.slots().iter().find(|s| s.section == "netproc").unwrap();
    assert!(
        netproc
            .notes
            .iter()
            .any(|n| n.contains("pmda_indom_cache") && n.contains("no effect here")),
        "{:?}",
        netproc.notes
    );
}

/// Each module's section as upstream's own QA tests wrote it (qa/1115-1286).
#[test]
fn upstream_qa_sections_start() {
    for (module, keys) in [
        ("sysfork", "cluster = 2"),
        ("biolatency", "cluster = 0"),
        ("runqlat", "cluster = 4"),
        ("tcplife", "cluster = 3\ndport = 80"),
        ("biotop", "cluster = 10\ninterval = 5\ndebug = True"),
        ("tcptop", "cluster = 12\ninterval = 5\ndebug = True"),
        (
            "netproc",
            "cluster = 40\npmda_indom_cache = False\nremove_stopped_processes = False",
        ),
        // The sections of crates/e2e/tests/compat.rs: every key upstream documented, set.
        (
            "execsnoop",
            "cluster = 8\ninclude_failed = True\ncommand = ^true$\nargs = tag-\nmax_args = 20\nprocess_count = 20\nbuffer_page_count = 64",
        ),
        (
            "tcpretrans",
            "cluster = 9\nprocess = python3\ninclude_tlp = True\nflow_count = 20\nbuffer_page_count = 64",
        ),
        (
            "tcpperpid",
            "cluster = 11\nprocess = python3\ndport = 20000\nhighres = True\nbuffer_page_count = 64",
        ),
    ] {
        let text = format!(
            "[pmda]\nmodules = {module}\nprefix = bcc.\n[{module}]\nmodule = {module}\n{keys}\n"
        );
        let a = agent(&text);
        assert!(
            a.config_errors().is_empty(),
            "{module}: {:?}",
            a.config_errors()
        );
        let s = &a.slots()[0];
        assert_eq!(s.state, SlotState::Loading, "{module}: {}", s.status);
        assert_eq!(s.debug, keys.contains("debug = True"), "{module}");
    }
    let a = agent("[pmda]\nmodules = n\n[n]\nmodule = netproc\npmda_indom_cache = False\nremove_stopped_processes = False\n");
    let notes = &a.slots()[0].notes;
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[1].starts_with(&format!("{FILE}:6: [n] remove_stopped_processes:")),
        "{notes:?}"
    );
}

#[test]
fn every_problem_of_a_section_is_listed() {
    let a = agent(
        "[pmda]\nmodules = t, b\n[t]\nmodule = tcplife\ndport = 80,x\nsession_count = 0\nmapsize = 1\ndebug = maybe\nlayout = rows\n[b]\nmodule = biotop\nsort = size\ninterval = -1\n",
    );
    let t = a.slots().iter().find(|s| s.section == "t").unwrap();
    assert_eq!(t.state, SlotState::Failed);
    let keys: Vec<&str> = t
        .problems
        .iter()
        .map(|p| p.split("] ").nth(1).unwrap().split(':').next().unwrap())
        .collect();
    for k in ["dport", "session_count", "mapsize", "debug", "layout"] {
        assert!(keys.contains(&k), "{k} missing from {:?}", t.problems);
    }
    assert_eq!(t.problems.len(), 5, "{:?}", t.problems);
    let b = a.slots().iter().find(|s| s.section == "b").unwrap();
    assert_eq!(b.problems.len(), 2, "{:?}", b.problems);
}

#[test]
fn keys_upstream_never_had_stay_errors() {
    let a = agent("[pmda]\nmodules = s\n[s]\nmodule = sysfork\ninterval = 5\n");
    let s = &a.slots()[0];
    assert_eq!(s.state, SlotState::Failed);
    assert!(
        s.status.contains("interval: unknown option"),
        "{}",
        s.status
    );
}
