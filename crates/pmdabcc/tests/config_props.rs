//! Property tests: the configuration parser never panics, whatever it is fed, and every
//! error it reports names the file and the line (and the key, where one is involved).

use pmdabcc::agent::{BccAgent, SlotState};
use pmdabcc::config::{Config, ConfigError};
use proptest::prelude::*;
use std::path::Path;
use std::time::Instant;

const FILE: &str = "/etc/pcp/bcc/bcc.conf";
const SHIPPED: &str = include_str!("../../../pmda/bcc.conf");
const RICH: &str = "[pmda]\nmodules = sysfork, selftest, x\nprefix = bcc.\nprocess_refresh = 10\nmodule_failure_fatal = False\nallowed_users = root\n\n[sysfork]\nmodule = sysfork\ncluster = 2\n\n[selftest]\nmodule = selftest\ncluster = 7\nfault = none\nallowed_groups = root\n\n[x]\nmodule = sysfork\ncluster = 9\nprefix = bcc.x.\n";

fn check_error(e: &ConfigError) -> Result<(), String> {
    let text = e.to_string();
    if !text.starts_with(&format!("{FILE}:")) {
        return Err(format!("error does not name the file: {text}"));
    }
    if e.line == 0 && !text.contains("no [pmda] section") {
        return Err(format!("error does not name a line: {text}"));
    }
    if let Some(k) = &e.key {
        if !text.contains(&format!("{k}:")) {
            return Err(format!("error does not name its key {k}: {text}"));
        }
    }
    Ok(())
}

/// Parses, builds the agent's module slots (no BPF is loaded), and checks every message.
fn check(text: &str) -> Result<(), String> {
    let cfg = Config::parse(Path::new(FILE), text);
    for e in &cfg.global_errors {
        check_error(e)?;
    }
    for s in cfg.sections.values() {
        for e in &s.errors {
            check_error(e)?;
        }
    }
    let agent = BccAgent::new(cfg, Instant::now());
    for s in agent
        .slots()
        .iter()
        .filter(|s| s.state == SlotState::Failed)
    {
        let ok = s.status.starts_with(&format!("{FILE}:"))
            && (s.status.contains("there is no [")
                || s.status[FILE.len() + 1..]
                    .starts_with(|c: char| c.is_ascii_digit() && c != '0'));
        if !ok {
            return Err(format!(
                "module {} failed without file and line: {}",
                s.section, s.status
            ));
        }
    }
    Ok(())
}

/// One edit of a config: which line, what kind, what text.
fn mutate(base: &str, edits: &[(usize, u8, String)]) -> String {
    let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
    for (at, kind, text) in edits {
        if lines.is_empty() {
            lines.push(text.clone());
            continue;
        }
        let i = at % lines.len();
        match kind % 6 {
            0 => {
                lines.remove(i);
            }
            1 => lines.insert(i, text.clone()),
            2 => lines[i] = text.clone(),
            3 => {
                // keep the key, replace the value
                if let Some(p) = lines[i].find('=') {
                    lines[i] = format!("{}= {text}", &lines[i][..p]);
                }
            }
            4 => lines[i].push_str(text),
            _ => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        check(&text).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn ini_shaped_noise_never_panics(text in "(\\[[a-z ]{0,6}\\]?|[a-z_]{0,12} ?[=:]? ?[a-zA-Z0-9.,_ -]{0,16}|#.*|)(\n(\\[[a-z ]{0,6}\\]?|[a-z_]{0,12} ?[=:]? ?[a-zA-Z0-9.,_ -]{0,16}|#.*|)){0,20}") {
        check(&text).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mutated_configs_never_panic(edits in prop::collection::vec((0usize..64, 0u8..6, "\\PC{0,16}"), 0..8), which in 0usize..2) {
        let base = if which == 0 { SHIPPED } else { RICH };
        check(&mutate(base, &edits)).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn the_shipped_config_is_clean() {
    let cfg = Config::parse(Path::new(FILE), SHIPPED);
    assert!(cfg.global_errors.is_empty(), "{:?}", cfg.global_errors);
    let agent = BccAgent::new(cfg, Instant::now());
    assert!(
        agent.slots().iter().all(|s| s.state != SlotState::Failed),
        "{:?}",
        agent.slots().iter().map(|s| &s.status).collect::<Vec<_>>()
    );
}

#[test]
fn out_of_range_values_are_refused_with_their_key() {
    let text = "[pmda]\nmodules = a, b\nprocess_refresh = 999999\n\n[a]\nmodule = sysfork\ncluster = 4095\n\n[b]\nmodule = selftest\ncluster = 12\nfault = sometimes\n";
    let cfg = Config::parse(Path::new(FILE), text);
    assert!(
        cfg.global_errors.iter().any(|e| e
            .to_string()
            .starts_with(&format!("{FILE}:3: [pmda] process_refresh:"))),
        "{:?}",
        cfg.global_errors
    );
    let agent = BccAgent::new(cfg, Instant::now());
    let st: Vec<&str> = agent.slots().iter().map(|s| s.status.as_str()).collect();
    assert!(
        st.iter()
            .any(|s| s.starts_with(&format!("{FILE}:7: [a] cluster:"))),
        "{st:?}"
    );
    assert!(
        st.iter()
            .any(|s| s.starts_with(&format!("{FILE}:12: [b] fault:"))),
        "{st:?}"
    );
}
