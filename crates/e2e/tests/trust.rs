//! Trust: access control for sensitive metrics, faults survived, bad input refused,
//! reconfiguration without restarting pmcd.

use e2e::*;
use std::time::Duration;

/// The same [sysfork] section as BASE: an unchanged section must keep running across reloads.
const SYSFORK_ONLY: &str =
    "[pmda]\nmodules = sysfork\n\n[sysfork]\nmodule = sysfork\ncluster = 2\n";
const BASE: &str = "[pmda]\nmodules = sysfork, selftest\n\n[sysfork]\nmodule = sysfork\ncluster = 2\n\n[selftest]\nmodule = selftest\n";

fn state_of(section: &str) -> Option<String> {
    fetch(&["bcc.agent.modules.state"])
        .get("bcc.agent.modules.state")?
        .get(&Some(section.to_string()))
        .cloned()
}

fn status_of(section: &str) -> String {
    fetch(&["bcc.agent.modules.status"])
        .get("bcc.agent.modules.status")
        .and_then(|v| v.get(&Some(section.to_string())).cloned())
        .unwrap_or_default()
}

#[test]
fn sensitive_metrics_only_for_privileged_clients() {
    let mut s = Session::start();
    s.with_config(BASE);
    sh("/bin/true");
    // root (local connection: pmcd passes our uid) gets everything.
    let root = run_ok(
        "pminfo",
        &["-f", "bcc.selftest.last_comm", "bcc.selftest.forks"],
    );
    assert!(
        root.contains("bcc.selftest.last_comm\n    value \""),
        "{root}"
    );
    // An unprivileged local user gets a permission error for the sensitive metric only.
    let nobody = sh("runuser -u nobody -- pminfo -f bcc.selftest.last_comm bcc.selftest.last_pid bcc.selftest.forks bcc.proc.sysfork 2>&1");
    assert!(
        nobody.contains(
            "bcc.selftest.last_comm\nError: No permission to perform requested operation"
        ),
        "{nobody}"
    );
    let expected = [
        "bcc.selftest.last_pid\nError: No permission",
        "bcc.selftest.forks\n    value ",
        "bcc.proc.sysfork\n    value ",
    ];
    assert_has(&nobody, &expected, "unauthenticated local client");
    // A client over TCP without authentication has no credentials: denied too.
    let tcp = sh("pminfo -h 127.0.0.1 -f bcc.selftest.last_comm bcc.selftest.forks 2>&1");
    assert!(
        tcp.contains("bcc.selftest.last_comm\nError: No permission"),
        "{tcp}"
    );
    assert!(tcp.contains("bcc.selftest.forks\n    value "), "{tcp}");
    // Granting the user by name in the module's section lets it see the values.
    s.with_config(&format!("{BASE}allowed_users = nobody\n"));
    let granted = sh("runuser -u nobody -- pminfo -f bcc.selftest.last_comm 2>&1");
    assert!(
        granted.contains("bcc.selftest.last_comm\n    value \""),
        "{granted}"
    );
    // And a group named in [pmda] works for every module.
    s.with_config(&BASE.replace("[pmda]\n", "[pmda]\nallowed_groups = nogroup\n"));
    let by_group = sh("runuser -u nobody -g nogroup -- pminfo -f bcc.selftest.last_comm 2>&1");
    assert!(
        by_group.contains("bcc.selftest.last_comm\n    value \""),
        "{by_group}"
    );
}

#[test]
fn a_module_whose_hook_is_missing_or_rejected_fails_alone() {
    let mut s = Session::start();
    for (fault, stage) in [("missing_hook", "attach"), ("verifier", "load")] {
        s.with_config(&format!("{BASE}fault = {fault}\n"));
        assert_eq!(
            state_of("selftest").as_deref(),
            Some("failed"),
            "fault {fault}"
        );
        let why = status_of("selftest");
        assert!(
            why.contains(&format!("BPF {stage} failed")),
            "fault {fault}: status {why:?}"
        );
        assert_eq!(state_of("sysfork").as_deref(), Some("running"));
        let a = value_u64("bcc.proc.sysfork", None).expect("sysfork serves");
        sh("/bin/true; /bin/true");
        assert!(value_u64("bcc.proc.sysfork", None).unwrap() >= a + 2);
        // The failed module's metrics are not in the namespace.
        assert!(
            !run_ok("pminfo", &["bcc"]).contains("bcc.selftest."),
            "fault {fault}"
        );
    }
    let log = std::fs::read_to_string("/var/log/pcp/pmcd/bcc.log").unwrap_or_default();
    assert!(
        log.contains("module selftest failed"),
        "the log does not say which module failed"
    );
}

#[test]
fn pmcd_restart_brings_the_agent_back() {
    let s = Session::start();
    let old = agent_pid();
    let (progs, maps) = our_bpf_ids();
    assert!(
        !progs.is_empty() && !maps.is_empty(),
        "the agent reports no BPF objects"
    );
    sh("/etc/init.d/pmcd restart >/dev/null 2>&1");
    let new = wait_for(Duration::from_secs(30), || {
        agent_pid().filter(|p| Some(*p) != old)
    });
    assert!(
        new.is_some(),
        "the agent was not restarted with pmcd (old pid {old:?} still there)"
    );
    s.wait_ready();
    // Nothing of the old agent stays in the kernel (bpftool, independent of the agent).
    let (kp, km) = kernel_bpf_ids();
    assert!(!kp.is_empty(), "bpftool listed no programs at all");
    assert!(
        progs.is_disjoint(&kp),
        "programs of the old agent are still loaded"
    );
    assert!(maps.is_disjoint(&km), "maps of the old agent still exist");
    assert!(
        value_u64("bcc.proc.sysfork", None).is_some(),
        "sysfork does not serve after pmcd restarted"
    );
}

#[test]
fn reconfiguration_without_restarting_keeps_unchanged_modules_counting() {
    let mut s = Session::start();
    s.with_config(SYSFORK_ONLY);
    let pid = agent_pid().unwrap();
    sh("for i in $(seq 50); do /bin/true; done");
    let before = value_u64("bcc.proc.sysfork", None).unwrap();
    assert!(before >= 50);
    let reloads0 = value_u64("bcc.agent.control.reload", None).unwrap();
    // Add a module, reload with SIGHUP to the agent.
    std::fs::write(bcc_dir().join("bcc.conf"), BASE).unwrap();
    run_ok("kill", &["-HUP", &pid.to_string()]);
    let up = wait_for(Duration::from_secs(10), || {
        (state_of("selftest").as_deref() == Some("running")).then_some(())
    });
    assert!(
        up.is_some(),
        "selftest did not start on SIGHUP: {}",
        status_of("selftest")
    );
    assert!(run_ok("pminfo", &["bcc"]).contains("bcc.selftest.forks"));
    assert_eq!(
        agent_pid(),
        Some(pid),
        "the agent restarted instead of reloading"
    );
    let after = value_u64("bcc.proc.sysfork", None).unwrap();
    assert!(
        after >= before,
        "sysfork lost its count across the reload: {before} -> {after}"
    );
    // Remove it again, reload with a store to the control metric.
    std::fs::write(bcc_dir().join("bcc.conf"), SYSFORK_ONLY).unwrap();
    run_ok("pmstore", &["bcc.agent.control.reload", "1"]);
    assert!(
        !run_ok("pminfo", &["bcc"]).contains("bcc.selftest"),
        "selftest still in the namespace"
    );
    assert_eq!(
        value_u64("bcc.agent.control.reload", None),
        Some(reloads0 + 2)
    );
    assert!(value_u64("bcc.proc.sysfork", None).unwrap() >= after);
    assert_eq!(agent_pid(), Some(pid));
    // An unprivileged user may not reload.
    let denied = sh("runuser -u nobody -- pmstore bcc.agent.control.reload 1 2>&1 || true");
    assert!(
        denied.contains("No permission") || denied.contains("permission"),
        "{denied}"
    );
    s.with_config(SYSFORK_ONLY);
}

#[test]
fn a_config_file_others_can_write_is_refused() {
    let mut s = Session::start();
    s.with_config(BASE);
    let conf = bcc_dir().join("bcc.conf");
    sh(&format!("chmod 0666 {}", conf.display()));
    s.restart_agent();
    let st = fetch(&["bcc.agent.config_status"]);
    let msg = st["bcc.agent.config_status"][&None].clone();
    sh(&format!("chmod 0644 {}", conf.display()));
    assert!(
        msg.contains("refused: writable by group or others"),
        "{msg}"
    );
    assert!(
        !run_ok("pminfo", &["bcc"]).contains("bcc.proc.sysfork"),
        "modules ran from an untrusted file"
    );
    assert!(value_u64("bcc.agent.modules.running", None) == Some(0));
}
