//! A PMID keeps its descriptor across configuration changes: pmlogger archives recorded
//! while tcplife's `layout` switches under them (SIGHUP to the agent) are valid, as PCP's
//! own archive checker (pmlogcheck) judges them.
//!
//! The loggers name leaf metrics. A logger given the subtree (`bcc.proc.io.net.tcp`) adds
//! metrics that appear later under it, and the two layouts give the names rx and tx to
//! different metrics (PMIDs): an archive cannot hold one name for two PMIDs, so such a
//! logger must be restarted after a switch (see the man page).

use e2e::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PROCESS: &str = "[pmda]\nmodules = tcplife\n\n[tcplife]\nmodule = tcplife\ncluster = 3\n";

fn sessions() -> String {
    format!("{PROCESS}layout = sessions\nsession_count = 4\n")
}

/// Installs `conf` and has the agent reload it (SIGHUP, the agent keeps running), then waits
/// until the namespace shows the layout (`pid` is only in the sessions layout).
fn switch(conf: &str, sessions: bool) {
    std::fs::write(bcc_dir().join("bcc.conf"), conf).unwrap();
    let pid = agent_pid().expect("agent running");
    run_ok("kill", &["-HUP", &pid.to_string()]);
    wait_for(Duration::from_secs(15), || {
        // (absent while the module reloads)
        let names =
            String::from_utf8_lossy(&run("pminfo", &["bcc.proc.io.net.tcp"]).stdout).into_owned();
        let st = fetch(&["bcc.agent.modules.state"]);
        let running = st
            .get("bcc.agent.modules.state")?
            .get(&Some("tcplife".to_string()))?
            == "running";
        (running && names.contains("bcc.proc.io.net.tcp.pid") == sessions).then_some(())
    })
    .unwrap_or_else(|| panic!("the layout did not switch (sessions: {sessions})"));
    assert_eq!(
        agent_pid(),
        Some(pid),
        "the agent restarted instead of reloading"
    );
}

/// Some TCP sessions (pminfo over TCP to pmcd), so both layouts have values to log.
fn traffic() {
    for _ in 0..3 {
        run_ok("pminfo", &["-h", "127.0.0.1", "-f", "pmcd.version"]);
    }
    std::thread::sleep(Duration::from_millis(1200));
}

const PROCESS_METRICS: &[&str] = &[
    "rx",
    "tx",
    "sessions_opened",
    "sessions_closed",
    "sessions_active",
    "events_lost",
    "sessions_untracked",
];
const SESSION_METRICS: &[&str] = TCPLIFE_SESSION_FIELDS;

fn pmlogger(dir: &Path, name: &str, metrics: &[&str]) -> Child {
    let conf = dir.join(format!("{name}.config"));
    let list: String = metrics
        .iter()
        .map(|m| format!("    bcc.proc.io.net.tcp.{m}\n"))
        .collect();
    std::fs::write(
        &conf,
        format!("log mandatory on every 250 msec {{\n{list}}}\n"),
    )
    .unwrap();
    let child = Command::new("/usr/lib/pcp/bin/pmlogger")
        .arg("-c")
        .arg(&conf)
        .arg("-l")
        .arg(dir.join(format!("{name}.log")))
        .arg(dir.join(name))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pmlogger");
    // The archive exists once pmlogger has logged its first sample.
    let meta = dir.join(format!("{name}.meta"));
    wait_for(Duration::from_secs(10), || {
        (std::fs::metadata(&meta).ok()?.len() > 0).then_some(())
    })
    .unwrap_or_else(|| panic!("pmlogger {name} did not start"));
    child
}

fn stop(mut logger: Child) {
    run_ok("kill", &["-TERM", &logger.id().to_string()]);
    let st = logger.wait().unwrap();
    assert!(
        st.success() || st.code().is_none(),
        "pmlogger ended badly: {st}"
    );
}

/// pmlogcheck must accept the archive; returns pmdumplog's listing of its values.
/// Counter wraps are the one thing it may report: a module whose configuration changed
/// starts counting from zero again (as after an agent restart), and pmlogcheck reports every
/// counter that goes down.
fn checked(dir: &Path, name: &str) -> String {
    let archive = dir.join(name);
    let a = archive.to_str().unwrap();
    let o = run("pmlogcheck", &[a]);
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let other: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(": unsigned 64-bit wrap") && !l.trim_start().starts_with("value "))
        .collect();
    assert!(
        o.status.success() && other.is_empty(),
        "pmlogcheck rejects {name}: {text}\npmlogger log:\n{log}"
    );
    eprintln!(
        "pmlogcheck {name}: {}",
        if text.is_empty() { "clean" } else { &text }
    );
    run_ok("pmdumplog", &["-a", a])
}

#[test]
fn archives_recorded_across_layout_switches_are_valid() {
    let mut s = Session::start();
    s.with_config(PROCESS);
    let dir = std::env::temp_dir().join(format!("pcp-bcc-layouts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    traffic();
    // A: started in the process layout, records the switch to sessions and back.
    let a = pmlogger(&dir, "a", PROCESS_METRICS);
    traffic();
    switch(&sessions(), true);
    // B: started in the sessions layout, records the switch back to process.
    let b = pmlogger(&dir, "b", SESSION_METRICS);
    traffic();
    switch(PROCESS, false);
    traffic();
    stop(a);
    stop(b);
    let da = checked(&dir, "a");
    let db = checked(&dir, "b");
    // Each logged its own layout's values, under one descriptor each (pmlogcheck), and A
    // got its metrics back after the round trip.
    let in_a = [
        "149.3.13 (bcc.proc.io.net.tcp.rx)",
        "(bcc.proc.io.net.tcp.sessions_opened)",
    ];
    assert_has(&da, &in_a, "archive a");
    assert_has(&db, &["149.3.0 (bcc.proc.io.net.tcp.pid)"], "archive b");
    let samples_with_rx = |d: &str| d.matches("(bcc.proc.io.net.tcp.rx)").count();
    let last_quarter = &da[da.len() * 3 / 4..];
    assert!(
        samples_with_rx(last_quarter) > 0 && samples_with_rx(&da) > 2,
        "A has no rx values after switching back:\n{da}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
