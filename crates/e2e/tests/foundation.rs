//! The foundation, end to end: the agent under the real pmcd with real eBPF.

use e2e::*;
use std::time::Duration;

#[test]
fn sysfork_tracks_kernel_all_sysfork_under_process_and_thread_load() {
    let _s = Session::start();
    let both = || {
        let v = fetch(&["bcc.proc.sysfork", "kernel.all.sysfork"]);
        let get = |m: &str| {
            v.get(m)
                .and_then(|x| x.get(&None))
                .and_then(|x| x.parse::<i64>().ok())
                .unwrap_or_else(|| panic!("no value for {m}: {v:?}"))
        };
        (get("bcc.proc.sysfork"), get("kernel.all.sysfork"))
    };
    let (b0, k0) = both();
    // 300 processes and 300 threads.
    sh("for i in $(seq 300); do /bin/true; done");
    sh("python3 -c 'import threading\nfor _ in range(300):\n    t = threading.Thread(target=lambda: None); t.start(); t.join()'");
    let (b1, k1) = both();
    let (db, dk) = (b1 - b0, k1 - k0);
    assert!(
        dk >= 600,
        "the load should have made at least 600 tasks, kernel.all.sysfork moved {dk}"
    );
    assert!(
        (db - dk).abs() <= 5,
        "bcc.proc.sysfork moved {db}, kernel.all.sysfork moved {dk}"
    );
}

#[test]
fn pminfo_shows_descriptor_help_and_labels() {
    let _s = Session::start();
    let out = run_ok("pminfo", &["-dfTlm", "bcc.proc.sysfork"]);
    let descriptor = [
        "PMID: 149.2.0",
        "Data Type: 64-bit unsigned int  InDom: PM_INDOM_NULL",
        "Semantics: counter  Units: count",
    ];
    assert_has(&out, &descriptor, "descriptor");
    assert_has(&out, &["sched:sched_process_fork"], "help text");
    assert!(
        out.contains(r#"module:"sysfork""#) || out.contains(r#""module":"sysfork""#),
        "module label missing: {out}"
    );
}

#[test]
fn dbpmda_session_without_pmcd() {
    let _s = Session::start();
    let bin = bcc_dir().join("pmdabcc");
    let conf = bcc_dir().join("bcc.conf.default");
    // indom serial of bcc.agent.modules: cluster 4095, local 0.
    let serial = 4095 << 6;
    let script = format!(
        "open pipe {} -d 149 -l /tmp/bcc-dbpmda.log -c {} -N\nwait 2\ndesc 149.2.0\ntext 149.2.0\nfetch 149.2.0\ninstance 149.{serial}\nfetch 149.4095.2\nlabel cluster 149.2\n",
        bin.display(),
        conf.display()
    );
    std::fs::write("/tmp/bcc-dbpmda.cmds", script).unwrap();
    let out = sh("dbpmda -n /var/lib/pcp/pmns/root -e < /tmp/bcc-dbpmda.cmds 2>&1");
    assert!(
        out.contains("Semantics: counter  Units: count"),
        "desc:\n{out}"
    );
    assert!(out.contains("[fork rate]"), "text:\n{out}");
    assert!(
        out.contains("149.2.0 (<noname>): numval: 1"),
        "fetch:\n{out}"
    );
    assert!(out.contains(r#"name: "sysfork""#), "instance:\n{out}");
    assert!(out.contains(r#"value "running""#), "module state:\n{out}");
    assert!(out.contains(r#"module="sysfork""#), "label:\n{out}");
    assert!(!out.contains("Error"), "dbpmda reported an error:\n{out}");
}

#[test]
fn bad_config_is_reported_precisely_and_good_modules_keep_serving() {
    let mut s = Session::start();
    let conf = "[pmda]\nmodules = sysfork, nosuch, badopt, broken, missing\n\n[sysfork]\nmodule = sysfork\ncluster = 2\n\n[nosuch]\nmodule = nosuchmodule\ncluster = 20\n\n[badopt]\nmodule = sysfork\ncluster = 21\nprefix = bcc.other.\ncolour = blue\n\n[broken]\nmodule = sysfork\nthis line is not ini\ncluster = 22\n";
    // The same text, checked offline: every problem named with file, line and key.
    std::fs::write("/tmp/bcc-bad.conf", conf).unwrap();
    let o = run(
        bcc_dir().join("pmdabcc").to_str().unwrap(),
        &["--check", "-c", "/tmp/bcc-bad.conf"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "--check accepted a bad file: {err}");
    let errors = [
        "/tmp/bcc-bad.conf:9: [nosuch] module: unknown module \"nosuchmodule\"",
        "/tmp/bcc-bad.conf:16: [badopt] colour: unknown option",
        "/tmp/bcc-bad.conf:20: [broken]: syntax error",
        "there is no [missing] section",
    ];
    assert_has(&err, &errors, "--check errors");

    s.with_config(conf);
    let st = fetch(&["bcc.agent.modules.state", "bcc.agent.modules.status"]);
    let state = &st["bcc.agent.modules.state"];
    let status = &st["bcc.agent.modules.status"];
    let of = |m: &str| state.get(&Some(m.to_string())).cloned().unwrap_or_default();
    assert_eq!(of("sysfork"), "running", "{st:?}");
    for bad in ["nosuch", "badopt", "broken", "missing"] {
        assert_eq!(of(bad), "failed", "{bad}: {st:?}");
    }
    assert!(
        status[&Some("badopt".into())].contains("bcc.conf:16: [badopt] colour"),
        "{status:?}"
    );
    // The good module serves.
    let v0 = value_u64("bcc.proc.sysfork", None).expect("bcc.proc.sysfork has a value");
    sh("for i in $(seq 20); do /bin/true; done");
    let v1 = value_u64("bcc.proc.sysfork", None).unwrap();
    assert!(v1 >= v0 + 20, "sysfork did not count: {v0} -> {v1}");
    // The namespace lists what can be fetched: nothing of the failed modules.
    let names = run_ok("pminfo", &["bcc"]);
    assert!(!names.contains("bcc.other."), "{names}");
}

#[test]
fn sigkill_restart_keeps_instance_ids_and_leaves_nothing_behind() {
    let s = Session::start();
    let pid = agent_pid().expect("agent pid");
    let before = run_ok("pminfo", &["-f", "bcc.agent.modules.state"]);
    let (progs, maps) = our_bpf_ids();
    assert!(
        !progs.is_empty() && !maps.is_empty(),
        "the agent reports no BPF objects"
    );
    let (kp0, km0) = kernel_bpf_ids();
    assert!(
        progs.is_subset(&kp0) && maps.is_subset(&km0),
        "bpftool does not list the agent's objects: {progs:?} {maps:?}"
    );
    s.restart_agent();
    let pid2 = agent_pid().expect("agent restarted");
    assert_ne!(pid, pid2);
    let after = run_ok("pminfo", &["-f", "bcc.agent.modules.state"]);
    assert_eq!(
        before, after,
        "instance ids or states changed across the restart"
    );
    assert!(
        value_u64("bcc.proc.sysfork", None).is_some(),
        "sysfork does not serve after the restart"
    );
    let (kp, km) = kernel_bpf_ids();
    assert!(
        progs.is_disjoint(&kp),
        "programs of the killed agent are still loaded: {:?}",
        progs.intersection(&kp).collect::<Vec<_>>()
    );
    assert!(
        maps.is_disjoint(&km),
        "maps of the killed agent still exist: {:?}",
        maps.intersection(&km).collect::<Vec<_>>()
    );
}

#[test]
fn remove_unloads_every_bpf_object_and_install_brings_it_back() {
    let s = Session::start();
    let (progs, maps) = our_bpf_ids();
    assert!(!progs.is_empty(), "the agent reports no BPF programs");
    let (kp0, km0) = kernel_bpf_ids();
    assert!(
        progs.is_subset(&kp0) && maps.is_subset(&km0),
        "bpftool does not list the agent's objects: {progs:?} {maps:?}"
    );
    let dir = bcc_dir();
    let dir = dir.to_str().unwrap();
    sh(&format!(
        "cd {dir} && PCPQA_SYSTEMD=no ./Remove </dev/null >/tmp/bcc-remove.log 2>&1"
    ));
    let gone = wait_for(Duration::from_secs(10), || {
        let (kp, km) = kernel_bpf_ids();
        (progs.is_disjoint(&kp) && maps.is_disjoint(&km)).then_some(())
    });
    let pmcd_conf = std::fs::read_to_string("/etc/pcp/pmcd/pmcd.conf").unwrap();
    // Put the agent back before asserting, so a failure leaves the machine usable.
    sh(&format!(
        "cd {dir} && PCPQA_SYSTEMD=no ./Install </dev/null >/tmp/bcc-install.log 2>&1"
    ));
    s.wait_ready();
    assert!(
        gone.is_some(),
        "BPF objects of the agent are still loaded after Remove"
    );
    assert!(
        !pmcd_conf.lines().any(|l| l.starts_with("bcc")),
        "Remove left bcc in pmcd.conf"
    );
    assert!(
        value_u64("bcc.proc.sysfork", None).is_some(),
        "sysfork does not serve after Install"
    );
}
