//! A drop-in for PCP's Python pmdabcc (removed from PCP in 2026): its QA scenarios
//! (qa/1115-1286 in performancecopilot/pcp before the removal), written afresh for this
//! harness. Each module we share with it runs from the section its QA test wrote (with
//! upstream's layouts: biotop `layout = table`, tcplife `layout = sessions`), gets the same
//! kind of workload, and is checked the way that test checked it (names, descriptors,
//! instances, values), against the workload's own truth: the forks it made, the bytes dd
//! wrote and the disk it wrote them to, what each socket peer sent and received. Then the
//! default layouts under the same workloads, and an archive as that agent recorded it.

use e2e::netns::{Loss, LossyLink};
use e2e::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The loopback port of the socket workload (tcplife's `dport` filter names it).
fn port() -> u16 {
    20000 + (std::process::id() % 20000) as u16
}

/// upstream's QA sections (debug, interval, dport, pmda_indom_cache,
/// remove_stopped_processes as they wrote them), with the layouts that serve its names, a
/// second runqlat under a process filter, and a module we lack.
fn upstream_conf() -> String {
    format!(
        "[pmda]\nmodules = sysfork,biolatency,runqlat,runqfilter,biotop,tcplife,tcptop,netproc,kprobe_hits\n\
prefix = bcc.\nprocess_refresh = 1\nmodule_failure_fatal = True\n\
[sysfork]\nmodule = sysfork\ncluster = 2\n\
[biolatency]\nmodule = biolatency\ncluster = 0\n\
[runqlat]\nmodule = runqlat\ncluster = 4\n\
[runqfilter]\nmodule = runqlat\ncluster = 44\nprefix = bcc.compat.\nprocess = {}\n\
[biotop]\nmodule = biotop\ncluster = 10\nlayout = table\ninterval = 3\ndebug = True\n\
[tcplife]\nmodule = tcplife\ncluster = 3\nlayout = sessions\ndport = {}\n\
[tcptop]\nmodule = tcptop\ncluster = 12\ninterval = 2\ndebug = True\n\
[netproc]\nmodule = netproc\ncluster = 40\npmda_indom_cache = False\nremove_stopped_processes = False\n\
[kprobe_hits]\nmodule = kprobe_hits\ncluster = 103\nkprobes = kprobe:sched_fork\n",
        probe_tag(),
        port()
    )
}

/// The same QA sections of biotop and tcplife with our default layouts.
fn default_layouts_conf() -> String {
    format!(
        "[pmda]\nmodules = biotop,tcplife\nmodule_failure_fatal = True\n\
[biotop]\nmodule = biotop\ncluster = 10\ninterval = 5\ndebug = True\n\
[tcplife]\nmodule = tcplife\ncluster = 3\ndport = {}\n",
        port()
    )
}

/// A word on the command line of the process runqfilter follows (and of no other).
fn probe_tag() -> String {
    format!("compat-runq-probe-{}", std::process::id())
}

/// Installs `conf` and restarts the agent, until the agent runs with it (its modules indom
/// lists `present` and not `absent`): a restart can catch an agent of the previous
/// configuration.
fn configure(s: &mut Session, conf: &str, present: &str, absent: &str) {
    s.with_config(conf);
    for _ in 0..3 {
        let st = fetch(&["bcc.agent.modules.state"]);
        let has = |m: &str| {
            st.get("bcc.agent.modules.state")
                .is_some_and(|v| v.contains_key(&Some(m.to_string())))
        };
        if has(present) && !has(absent) {
            return;
        }
        eprintln!("the agent does not run the new configuration yet: restarting it again");
        s.restart_agent();
    }
    panic!(
        "the agent does not take the configuration:\n{conf}\nbcc.log:\n{}",
        log()
    );
}

fn log() -> String {
    std::fs::read_to_string("/var/log/pcp/pmcd/bcc.log").unwrap_or_default()
}

fn wait_log(what: &str) {
    wait_for(Duration::from_secs(10), || {
        log().contains(what).then_some(())
    })
    .unwrap_or_else(|| panic!("bcc.log does not say {what:?}:\n{}", log()));
}

/// `pminfo -dm` of `names` (or, with `archive`, of the archive): name -> (PMID, the
/// descriptor's lines without the indom number, the indom).
fn descriptors(
    archive: Option<&Path>,
    names: &[String],
) -> BTreeMap<String, (String, String, String)> {
    let mut args: Vec<String> = Vec::new();
    if let Some(a) = archive {
        args.extend(["-a".into(), a.display().to_string()]);
    }
    args.push("-dm".into());
    args.extend(names.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = String::from_utf8_lossy(&run("pminfo", &refs).stdout).into_owned();
    let mut m = BTreeMap::new();
    for block in out.split("\n\n").filter(|b| b.contains("PMID:")) {
        let mut lines = block.trim_start_matches('\n').lines();
        let head = lines.next().unwrap();
        let (name, pmid) = head.split_once(" PMID: ").unwrap();
        let rest: Vec<&str> = lines.map(str::trim).collect();
        let desc = rest.join(" | ");
        // "InDom: 149.4 0x25400004": the number and its hex form.
        let indom = desc
            .split("InDom: ")
            .nth(1)
            .map(|s| s.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let without = desc.replace(&indom, "");
        m.insert(
            name.trim().to_string(),
            (pmid.trim().to_string(), without, indom),
        );
    }
    m
}

/// Rows of a table of metrics `<prefix>.<field>`: instance -> field -> value.
fn rows(prefix: &str, fields: &[&'static str]) -> BTreeMap<String, BTreeMap<&'static str, String>> {
    table_rows(prefix, fields)
}

fn sum(metric: &str) -> u64 {
    values_u64(metric).values().sum()
}

/// The scratch file dd writes, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const MIB: u64 = 1 << 20;
const DD_MIB: u64 = 20;

/// Drops the page cache of dd's program, as a cold cache has it: the exec then reads it
/// from disk (where the scratch file is), in the child, before the child takes dd's name:
/// that I/O is the test thread's by name, dd's by PID. Pages some running dd has mapped stay.
fn evict_dd_program() {
    let path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("dd"))
        .find(|p| p.is_file())
        .expect("dd in PATH");
    let f = std::fs::File::open(&path).unwrap();
    // SAFETY: posix_fadvise only reads the descriptor, which `f` keeps open for the call.
    let rc = unsafe {
        libc::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
            0,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    assert_eq!(rc, 0, "posix_fadvise({}): {rc}", path.display());
}

/// dd writes DD_MIB MiB with direct I/O (upstream's biotop and biolatency workload), its
/// program read from disk by the exec (evict_dd_program); its pid.
fn dd_write(f: &Scratch) -> u32 {
    evict_dd_program();
    let c = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", f.0.display()),
            "bs=1M",
            &format!("count={DD_MIB}"),
            "oflag=direct",
            "conv=fsync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dd");
    let pid = c.id();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "dd: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    pid
}

/// The socket workload (upstream's netproc QA exchange): `server PORT` listens on
/// 127.0.0.1:PORT (TCP) and a UDP port it prints, takes one connection, reads it to EOF,
/// replies 17 bytes, echoes one datagram; `client PORT UPORT` sends 11 bytes over TCP, waits
/// until the reply and the server's FIN are in (so it reads from a closed session, as curl
/// reads a web server's reply), reads the reply to EOF, sends a 100-byte datagram and reads
/// its echo, then prints its TCP port. One system call each way, so calls are 1. Both wait for stdin to close before exiting.
const PEER: &str = r#"
import socket, sys, time
if sys.argv[1] == "server":
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", int(sys.argv[2]))); l.listen(1)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); u.settimeout(30)
    print(u.getsockname()[1], flush=True)
    c, _ = l.accept()
    while c.recv(65536):
        pass
    c.send(b"r" * 17); c.close()
    b, a = u.recvfrom(65536); u.sendto(b, a)
    print("done", flush=True)
else:
    s = socket.socket(); s.connect(("127.0.0.1", int(sys.argv[2]))); lport = s.getsockname()[1]
    s.send(b"t" * 11); s.shutdown(socket.SHUT_WR)
    time.sleep(0.3)  # the reply and the FIN are in: the session closes before it is read
    while s.recv(65536):
        pass
    s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(30)
    u.sendto(b"u" * 100, ("127.0.0.1", int(sys.argv[3]))); u.recvfrom(65536)
    print(lport, flush=True)
sys.stdin.read()
"#;

/// Runs the socket workload: (server, client, client's TCP port).
fn sockets() -> (Peer, Peer, String) {
    let mut server = Peer::spawn(PEER, &["server", &port().to_string()]);
    let uport = server.line();
    let mut client = Peer::spawn(PEER, &["client", &port().to_string(), &uport]);
    let lport = client.line();
    assert_eq!(server.line(), "done");
    (server, client, lport)
}

/// upstream's descriptors of the modules it shares with us, from an archive as it recorded
/// them; the archive's path.
fn upstream_archive(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let a = dir.join(name);
    let host = run_ok("hostname", &[]).trim().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 600;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/compat/upstream_archive.py"
    );
    let mut args = vec![
        script.to_string(),
        a.display().to_string(),
        host,
        now.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok("/usr/bin/python3", &refs);
    a
}

fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("compat-e2e-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn upstream_qa_scenarios_with_upstream_layouts() {
    let mut s = Session::start();
    configure(&mut s, &upstream_conf(), "runqfilter", "selftest");

    // Start-up: upstream's ready line, the module we lack reported as such (and not fatal,
    // though module_failure_fatal is set), the keys with no effect here logged.
    wait_log("Ready to process requests.");
    let st = fetch(&["bcc.agent.modules.state"]);
    let state = |m: &str| {
        st["bcc.agent.modules.state"]
            .get(&Some(m.to_string()))
            .cloned()
    };
    assert_eq!(
        state("kprobe_hits").as_deref(),
        Some("unavailable"),
        "{st:?}"
    );
    for m in [
        "sysfork",
        "biolatency",
        "runqlat",
        "runqfilter",
        "biotop",
        "tcplife",
        "tcptop",
        "netproc",
    ] {
        s.assert_module_running(m);
    }
    let l = log();
    assert!(
        l.contains(
            "\"kprobe_hits\" is a module of PCP's Python pmdabcc that this agent does not have"
        ),
        "{l}"
    );
    assert!(
        l.contains("[netproc] pmda_indom_cache: accepted for PCP's Python pmdabcc, no effect here"),
        "{l}"
    );
    assert!(
        l.contains("[netproc] remove_stopped_processes: accepted"),
        "{l}"
    );
    assert!(
        l.contains("module biotop: debug logging on")
            && l.contains("module tcptop: debug logging on"),
        "{l}"
    );
    assert!(!l.contains(" Error: "), "errors in the log:\n{l}");

    // The namespace and descriptors: every metric of upstream's archive is served under its
    // name with its PMID, type, semantics and units.
    let dir = scratch_dir("qa");
    let up = upstream_archive(&dir, "upstream", &[]);
    let theirs = descriptors(Some(&up), &["bcc".into()]);
    assert_eq!(theirs.len(), 37, "upstream archive: {theirs:?}");
    let names: Vec<String> = theirs.keys().cloned().collect();
    let ours = descriptors(None, &names);
    for (n, (pmid, d, _)) in &theirs {
        let (p, od, _) = ours
            .get(n)
            .unwrap_or_else(|| panic!("{n} (upstream's {pmid}) is not served"));
        assert_eq!((p, od), (pmid, d), "{n}: ours, then upstream's");
    }

    // sysfork (qa/1115): ten forks of /bin/true are counted.
    let before = value_u64("bcc.proc.sysfork", None).expect("bcc.proc.sysfork has a value");
    for _ in 0..10 {
        assert!(Command::new("/bin/true").status().unwrap().success());
    }
    let after = wait_for(Duration::from_secs(5), || {
        value_u64("bcc.proc.sysfork", None).filter(|v| *v >= before + 10)
    });
    assert!(
        after.is_some(),
        "sysfork: {before} before ten forks, {:?} after",
        value_u64("bcc.proc.sysfork", None)
    );

    // runqlat under a process filter (issue 14): no values before the process exists.
    let filtered = "bcc.compat.runq.latency";
    assert!(
        values_u64(filtered).is_empty(),
        "{filtered} before its process: {:?}",
        values_u64(filtered)
    );

    // biolatency and biotop (qa/1117, qa/1158): dd writes 20 MiB with direct I/O.
    let file = Scratch(Path::new("/var/tmp").join(format!("compat-e2e-{}", std::process::id())));
    let disk = {
        std::fs::write(&file.0, b"").unwrap();
        disk_of(file.0.to_str().unwrap())
    };
    let devno = std::fs::read_to_string(format!("/sys/block/{disk}/dev")).unwrap();
    let (major, minor) = devno.trim().split_once(':').unwrap();
    let lat_before = sum("bcc.disk.all.latency");
    let runq_before = sum("bcc.runq.latency");
    const FIELDS: &[&str] = &[
        "pid",
        "comm",
        "direction",
        "major",
        "minor",
        "disk",
        "io",
        "bytes",
        "duration",
    ];
    let mut credited = 0;
    let mut last_row: Option<BTreeMap<&str, String>> = None;
    // The table's instance names while dd's row was served (an idle interval's table is
    // empty, so a later fetch may find none).
    let mut table_names = std::collections::BTreeSet::new();
    for attempt in 1..=3 {
        let pid = dd_write(&file).to_string();
        // Each interval's table is served for an interval (3 s): watch the rows for two
        // intervals and add up the distinct rows of dd (a write that straddles the end of
        // an interval is in two tables).
        let mut seen: Vec<u64> = Vec::new();
        let mut since_last = 0;
        while since_last < 25 {
            let r = rows("bcc.proc.io.perdev", FIELDS);
            let mine = r.values().find(|r| {
                r.get("pid") == Some(&pid) && r.get("direction").map(String::as_str) == Some("W")
            });
            match mine {
                Some(row) => {
                    table_names.extend(r.keys().map(|k| k.to_string()));
                    let b: u64 = row["bytes"].parse().unwrap();
                    if seen.last() != Some(&b) {
                        seen.push(b);
                    }
                    since_last = 0;
                    last_row = Some(row.clone());
                }
                None => since_last += 1,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        credited = seen.iter().sum::<u64>();
        eprintln!("biotop table attempt {attempt}: dd {pid} rows {seen:?} ({credited} bytes)");
        if (DD_MIB * MIB * 8 / 10..=DD_MIB * MIB * 12 / 10).contains(&credited) {
            break;
        }
    }
    // upstream's QA allowed 20% either way.
    assert!(
        (DD_MIB * MIB * 8 / 10..=DD_MIB * MIB * 12 / 10).contains(&credited),
        "biotop table: dd wrote {} bytes, its rows have {credited}",
        DD_MIB * MIB
    );
    let row = last_row.unwrap();
    assert_eq!(row["comm"], "dd");
    assert_eq!(
        (
            row["major"].as_str(),
            row["minor"].as_str(),
            row["disk"].as_str()
        ),
        (major, minor, disk.as_str())
    );
    assert!(
        row["io"].parse::<u64>().unwrap() >= 1 && row["duration"].parse::<u64>().unwrap() >= 1,
        "{row:?}"
    );
    assert!(
        table_names.contains("0")
            && table_names
                .iter()
                .all(|n| n.parse::<usize>().is_ok_and(|i| i < 20)),
        "table rows are \"0\"..\"19\": {table_names:?}"
    );
    wait_log("biotop: table of");
    let requests = DD_MIB * MIB / max_request_bytes(&disk);
    let lat_after = sum("bcc.disk.all.latency");
    assert!(
        lat_after >= lat_before + requests,
        "biolatency: {lat_before} -> {lat_after} for at least {requests} requests"
    );
    let labels = run_ok(
        "pminfo",
        &["-l", "bcc.disk.all.latency", "bcc.runq.latency"],
    );
    for m in ["bcc.disk.all.latency", "bcc.runq.latency"] {
        let block = labels
            .split("\n\n")
            .find(|b| b.trim_start().starts_with(m))
            .unwrap_or("");
        let first = block
            .lines()
            .find(|l| l.contains("inst [0 or \"0-1\"]"))
            .unwrap_or_else(|| panic!("{m}: no 0-1 bucket: {labels}"));
        for want in [
            "\"statistic\":\"histogram\"",
            "\"lower_bound\":0",
            "\"upper_bound\":1",
        ] {
            assert!(first.contains(want), "{m} 0-1 labels lack {want}: {first}");
        }
    }
    // runqlat (qa/1118): the run queue latencies of everything, and of the filtered process.
    let mut probe = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, time\nfor _ in range(1500): time.sleep(0.002)",
            &probe_tag(),
        ])
        .spawn()
        .unwrap();
    let ppid = probe.id();
    let got = wait_for(Duration::from_secs(6), || {
        Some(sum(filtered)).filter(|v| *v > 0)
    });
    let status = std::fs::read_to_string(format!("/proc/{ppid}/status")).unwrap_or_default();
    let switches: u64 = status
        .lines()
        .filter(|l| l.contains("ctxt_switches"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    probe.kill().ok();
    probe.wait().ok();
    let got = got.unwrap_or_else(|| panic!("{filtered}: no values for the filtered process"));
    let total = sum(filtered);
    assert!(
        total <= switches + 50,
        "{filtered}: {total} wake-ups counted, the process switched {switches} times"
    );
    assert!(
        sum("bcc.runq.latency") > runq_before,
        "bcc.runq.latency did not move"
    );
    eprintln!(
        "runqfilter: {got} then {total} wake-ups of a process that switched {switches} times"
    );

    // tcplife (qa/1155), tcptop (qa/1170), netproc (qa/1286): the socket exchange.
    let (server, client, lport) = sockets();
    let (cpid, spid) = (client.pid().to_string(), server.pid().to_string());
    let sport = port().to_string();
    let session = wait_for(Duration::from_secs(5), || {
        rows("bcc.proc.io.net.tcp", TCPLIFE_SESSION_FIELDS)
            .get("0")
            .filter(|r| r.get("lport") == Some(&lport))
            .cloned()
    })
    .unwrap_or_else(|| {
        panic!(
            "tcplife: no session of port {lport}: {:?}",
            rows("bcc.proc.io.net.tcp", TCPLIFE_SESSION_FIELDS)
        )
    });
    for (k, v) in [
        ("pid", cpid.as_str()),
        ("laddr", "127.0.0.1"),
        ("daddr", "127.0.0.1"),
        ("dport", sport.as_str()),
        ("tx", "11"),
        ("rx", "17"),
    ] {
        assert_eq!(session[k], v, "tcplife {k}: {session:?}");
    }
    assert!(session["comm"].starts_with("python"), "{session:?}");
    assert!(
        session["duration"].parse::<u64>().unwrap() > 0,
        "{session:?}"
    );
    const TOP: &[&str] = &[
        "pid", "comm", "laddr", "lport", "daddr", "dport", "rx", "tx",
    ];
    // Each interval's table is served for an interval (2 s): watch for three intervals and
    // add up the client's distinct rows (its send and the reply may fall in two intervals).
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut row = None;
    for _ in 0..30 {
        let r = rows("bcc.proc.io.net.tcptop", TOP)
            .into_values()
            .find(|r| r.get("pid") == Some(&cpid) && r.get("lport") == Some(&lport));
        if let Some(r) = r {
            let v = (r["rx"].parse().unwrap(), r["tx"].parse().unwrap());
            if seen.last() != Some(&v) {
                seen.push(v);
            }
            row = Some(r);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let top = row.unwrap_or_else(|| {
        panic!(
            "tcptop: no row of the client: {:?}",
            rows("bcc.proc.io.net.tcptop", TOP)
        )
    });
    for (k, v) in [
        ("daddr", "127.0.0.1"),
        ("dport", sport.as_str()),
        ("comm", "python3"),
    ] {
        assert_eq!(top[k], v, "tcptop {k}: {top:?}");
    }
    let (rx, tx) = seen.iter().fold((0, 0), |(a, b), (r, t)| (a + r, b + t));
    assert_eq!(
        (rx, tx),
        (17, 11),
        "tcptop: the client's rows {seen:?} (rx, tx)"
    );
    // debug = True is per module: tcptop's debug lines are in the log, tcplife's are not.
    wait_log("tcptop: interval of");
    assert!(
        !log().contains("tcplife: session of PID"),
        "tcplife logs debug lines without debug = True"
    );
    let net = |m: &str, pid: &str| -> Option<u64> {
        fetch(&[m])
            .get(m)?
            .iter()
            .find(|(i, _)| {
                i.as_deref()
                    .is_some_and(|i| i.starts_with(&format!("{:0>6} ", pid)))
            })?
            .1
            .parse()
            .ok()
    };
    for (who, pid, tcp_out, tcp_in) in [("client", &cpid, 11, 17), ("server", &spid, 17, 11)] {
        for (m, want) in [
            ("tcp.send.calls", 1),
            ("tcp.send.bytes", tcp_out),
            ("tcp.recv.calls", 1),
            ("tcp.recv.bytes", tcp_in),
            ("udp.send.calls", 1),
            ("udp.send.bytes", 100),
            ("udp.recv.calls", 1),
            ("udp.recv.bytes", 100),
        ] {
            let name = format!("bcc.proc.net.{m}");
            let got = wait_for(Duration::from_secs(3), || {
                net(&name, pid).filter(|v| *v == want)
            });
            assert_eq!(
                got,
                Some(want),
                "netproc {name} of the {who}: {:?}",
                net(&name, pid)
            );
        }
    }
    client.finish();
    server.finish();

    // Archives (issue 14): upstream's archive replays with our names through pmrep; after
    // the shipped pmlogrewrite rules its descriptors are ours to the instance domain, and
    // it merges with an archive of this agent (which it does not before).
    let rep = run(
        "pmrep",
        &[
            "-a",
            up.to_str().unwrap(),
            "-z",
            "-s",
            "2",
            "-w",
            "24",
            "bcc.proc.sysfork",
            "bcc.runq.latency",
            "bcc.proc.io.perdev.bytes",
            "bcc.proc.net.tcp.send.bytes",
        ],
    );
    let text = String::from_utf8_lossy(&rep.stdout);
    assert!(
        rep.status.success() && text.contains("0-1") && text.contains("001234 python3"),
        "pmrep: {text}{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    let rules = "/etc/pcp/pmlogrewrite/bcc_upstream.conf";
    assert!(
        Path::new(rules).exists(),
        "{rules} is not installed (./install.sh installs it)"
    );
    let rw = dir.join("rewritten");
    run_ok(
        "/usr/lib/pcp/bin/pmlogrewrite",
        &["-c", rules, up.to_str().unwrap(), rw.to_str().unwrap()],
    );
    let after_rw = descriptors(Some(&rw), &["bcc".into()]);
    let ours = descriptors(None, &names);
    for (n, (pmid, d, indom)) in &after_rw {
        assert_eq!(
            Some(&(pmid.clone(), d.clone(), indom.clone())),
            ours.get(n),
            "{n} after pmlogrewrite, then ours"
        );
    }
    let conf = dir.join("logger.conf");
    std::fs::write(&conf, "log mandatory on every 200 msec {\n bcc.runq.latency\n bcc.proc.net\n bcc.proc.io.net.tcptop\n}\n").unwrap();
    let mine = dir.join("ours");
    let logger = Command::new("/usr/lib/pcp/bin/pmlogger")
        .args([
            "-s",
            "5",
            "-t",
            "200msec",
            "-c",
            conf.to_str().unwrap(),
            "-l",
            dir.join("logger.log").to_str().unwrap(),
            mine.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(
        logger.success(),
        "pmlogger: {}",
        std::fs::read_to_string(dir.join("logger.log")).unwrap_or_default()
    );
    let merge = |input: &Path, out: &str| {
        run(
            "pmlogextract",
            &[
                input.to_str().unwrap(),
                mine.to_str().unwrap(),
                dir.join(out).to_str().unwrap(),
            ],
        )
    };
    let before_rw = merge(&up, "merged-raw");
    assert!(
        !before_rw.status.success(),
        "upstream's archive merged with ours without the rules: the rules are not needed?"
    );
    let merged = merge(&rw, "merged");
    assert!(
        merged.status.success(),
        "pmlogextract: {}",
        String::from_utf8_lossy(&merged.stderr)
    );
    // netproc's names before PCP renamed them: PCP's bcc_migrate.conf renames them to ours.
    let old = upstream_archive(&dir, "old-names", &["--old-netproc-names"]);
    let renamed = dir.join("renamed");
    run_ok(
        "/usr/lib/pcp/bin/pmlogrewrite",
        &[
            "-c",
            "/etc/pcp/pmlogrewrite/bcc_migrate.conf",
            "-c",
            rules,
            old.to_str().unwrap(),
            renamed.to_str().unwrap(),
        ],
    );
    let net_names: Vec<String> = ["tcp", "udp"]
        .iter()
        .flat_map(|p| {
            ["send.calls", "send.bytes", "recv.calls", "recv.bytes"]
                .map(|m| format!("bcc.proc.net.{p}.{m}"))
        })
        .collect();
    let in_archive = descriptors(Some(&renamed), &net_names);
    assert_eq!(
        in_archive,
        descriptors(None, &net_names),
        "netproc's old names after pmlogrewrite, then ours"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn our_default_layouts_under_the_same_scenarios() {
    let mut s = Session::start();
    configure(&mut s, &default_layouts_conf(), "tcplife", "sysfork");
    wait_log("Ready to process requests.");
    s.assert_module_running("biotop");
    s.assert_module_running("tcplife");
    // upstream's biotop keys are for its table: with our default layout they are said to
    // have no effect.
    wait_log(
        "biotop: interval has no effect with layout = process (the default): set layout = table",
    );

    // biotop's per-process counters: dd's 20 MiB on its disk.
    let file =
        Scratch(Path::new("/var/tmp").join(format!("compat-e2e-default-{}", std::process::id())));
    std::fs::write(&file.0, b"").unwrap();
    let disk = disk_of(file.0.to_str().unwrap());
    let pid = dd_write(&file);
    let inst = format!("{disk}::{pid:06}");
    let bytes = wait_for(Duration::from_secs(5), || {
        value_u64("bcc.proc.io.perdev_write_bytes", Some(&inst))
            .filter(|b| *b >= DD_MIB * MIB * 8 / 10)
    });
    assert!(
        bytes.is_some_and(|b| b <= DD_MIB * MIB * 12 / 10),
        "biotop {inst}: {:?} bytes written, dd wrote {}",
        value_u64("bcc.proc.io.perdev_write_bytes", Some(&inst)),
        DD_MIB * MIB
    );
    // Reads and writes: dd's own page-ins are reads.
    let all = value_u64("bcc.proc.io.perdev", Some(&inst)).unwrap_or(0);
    assert!(
        all >= bytes.unwrap(),
        "biotop {inst}: proc.io.perdev {all} < its writes {bytes:?}"
    );
    // The pair is named as the process is now, though its exec read dd's program under the
    // test thread's name.
    let comm = fetch(&["bcc.proc.io.perdev_comm"])
        .get("bcc.proc.io.perdev_comm")
        .and_then(|v| v.get(&Some(inst.clone())).cloned());
    assert_eq!(comm.as_deref(), Some("dd"), "biotop {inst}: comm");

    // tcplife's per-process counters: the client's payload each way. The server's session
    // has the client's port as its remote port: upstream's dport filter leaves it out.
    let (server, client, _) = sockets();
    let inst = format!("{:06}", client.pid());
    let rx_tx = |inst: &str| {
        Some((
            value_u64("bcc.proc.io.net.tcp.rx", Some(inst))?,
            value_u64("bcc.proc.io.net.tcp.tx", Some(inst))?,
        ))
    };
    let got = wait_for(Duration::from_secs(5), || {
        rx_tx(&inst).filter(|v| *v == (17, 11))
    });
    assert!(
        got.is_some(),
        "tcplife client {inst}: rx/tx {:?}, expected 17/11",
        rx_tx(&inst)
    );
    let server_inst = format!("{:06}", server.pid());
    assert_eq!(
        rx_tx(&server_inst),
        None,
        "tcplife: the server's session passed the dport filter"
    );
    client.finish();
    server.finish();
}

/// The modules upstream had that landed later (issue 14): execsnoop, tcpretrans and
/// tcpperpid, each section with the keys upstream's bcc.conf documented for it, set.
fn new_modules_conf(tag: &str) -> String {
    format!(
        "[pmda]\nmodules = execsnoop,tcpretrans,tcpperpid\nprefix = bcc.\nmodule_failure_fatal = True\n\
[execsnoop]\nmodule = execsnoop\ncluster = 8\ninclude_failed = True\ncommand = ^true$\n\
args = {tag}-\nmax_args = 20\nprocess_count = 20\nbuffer_page_count = 64\n\
[tcpretrans]\nmodule = tcpretrans\ncluster = 9\nprocess = python3\ninclude_tlp = True\n\
flow_count = 20\nbuffer_page_count = 64\n\
[tcpperpid]\nmodule = tcpperpid\ncluster = 11\nprocess = python3\ndport = {}\nhighres = True\n\
buffer_page_count = 64\n",
        port()
    )
}

/// upstream's metric table of these modules: name, type, semantics, units as pminfo -d
/// prints them.
const NEW_MODULE_DESCRIPTORS: &[(&str, &str, &str, &str)] = &[
    ("bcc.proc.exec.comm", "string", "instant", "none"),
    (
        "bcc.proc.exec.pid",
        "32-bit unsigned int",
        "instant",
        "none",
    ),
    (
        "bcc.proc.exec.ppid",
        "32-bit unsigned int",
        "instant",
        "none",
    ),
    ("bcc.proc.exec.ret", "32-bit int", "instant", "none"),
    ("bcc.proc.exec.args", "string", "instant", "none"),
    (
        "bcc.io.net.tcp.retrans.count",
        "64-bit unsigned int",
        "counter",
        "count",
    ),
    (
        "bcc.proc.io.net.total.tx",
        "64-bit unsigned int",
        "counter",
        "byte",
    ),
    (
        "bcc.proc.io.net.total.rx",
        "64-bit unsigned int",
        "counter",
        "byte",
    ),
];

#[test]
fn upstream_scenarios_of_execsnoop_tcpretrans_and_tcpperpid() {
    let mut s = Session::start();
    let tag = format!("compatexec{}", std::process::id());
    configure(&mut s, &new_modules_conf(&tag), "tcpperpid", "sysfork");
    wait_log("Ready to process requests.");
    for m in ["execsnoop", "tcpretrans", "tcpperpid"] {
        s.assert_module_running(m);
    }
    // upstream's keys with no effect here are accepted and logged with the reason.
    let l = log();
    for (section, key) in [
        ("execsnoop", "buffer_page_count"),
        ("tcpretrans", "process"),
        ("tcpretrans", "include_tlp"),
        ("tcpretrans", "flow_count"),
        ("tcpretrans", "buffer_page_count"),
        ("tcpperpid", "process"),
        ("tcpperpid", "highres"),
        ("tcpperpid", "buffer_page_count"),
    ] {
        let note = format!("[{section}] {key}: accepted");
        assert!(l.contains(&note), "{note:?} not in:\n{l}");
    }
    assert!(!l.contains(" Error: "), "errors in the log:\n{l}");

    // Names and descriptors: upstream's, as its modules declared them.
    let names: Vec<String> = NEW_MODULE_DESCRIPTORS
        .iter()
        .map(|d| d.0.to_string())
        .collect();
    let ours = descriptors(None, &names);
    for (name, ty, sem, units) in NEW_MODULE_DESCRIPTORS {
        let (_, d, indom) = ours
            .get(*name)
            .unwrap_or_else(|| panic!("{name} is not served: {ours:?}"));
        assert!(
            d.contains(&format!("Data Type: {ty} "))
                && d.contains(&format!("Semantics: {sem}  Units: {units}")),
            "{name}: {d}, upstream's is {ty}, {sem}, {units}"
        );
        assert!(!indom.is_empty(), "{name} has no instance domain: {d}");
    }

    // execsnoop: five execs of a known argv, one filtered out by args and one by command,
    // then a failed one (include_failed) from a thread named as the command filter wants.
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for i in 0..5 {
        let mut c = Command::new("/bin/true")
            .arg(format!("{tag}-{i}"))
            .spawn()
            .unwrap();
        pids.push(c.id().to_string());
        assert!(c.wait().unwrap().success());
    }
    assert!(Command::new("/bin/true")
        .arg(format!("x{tag}"))
        .status()
        .unwrap()
        .success());
    assert!(Command::new("/bin/echo")
        .arg(format!("{tag}-echo"))
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let missing = format!("/nonexistent-compat-{tag}/true");
    let failed = std::thread::Builder::new()
        .name("true".into())
        .spawn({
            let (missing, tag) = (missing.clone(), tag.clone());
            move || {
                Command::new(&missing)
                    .arg(format!("{tag}-failed"))
                    .spawn()
                    .is_err()
            }
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(failed, "the exec of {missing} should fail");
    const EXEC: &[&str] = &["comm", "pid", "ppid", "ret", "args"];
    let table = wait_for(Duration::from_secs(5), || {
        Some(rows("bcc.proc.exec", EXEC)).filter(|t| t.len() >= 6)
    })
    .unwrap_or_else(|| panic!("execsnoop: not six rows: {:?}", rows("bcc.proc.exec", EXEC)));
    // upstream's ring: instances "0".."5", the newest first; the filters keep every other
    // exec of the host out.
    let insts: Vec<&str> = table.keys().map(String::as_str).collect();
    assert_eq!(
        insts,
        ["0", "1", "2", "3", "4", "5"],
        "execsnoop instances: {table:?}"
    );
    let f = &table["0"];
    assert_eq!(
        (f["comm"].as_str(), f["ppid"].as_str(), f["ret"].as_str()),
        ("true", me.as_str(), "-2"),
        "the failed exec: {f:?}"
    );
    assert_eq!(f["args"], format!("{missing} {tag}-failed"));
    for (i, pid) in pids.iter().enumerate() {
        let row = &table[&(5 - i).to_string()];
        let want: BTreeMap<&str, String> = [
            ("comm", "true".to_string()),
            ("pid", pid.clone()),
            ("ppid", me.clone()),
            ("ret", "0".into()),
            ("args", format!("/bin/true {tag}-{i}")),
        ]
        .into_iter()
        .collect();
        assert_eq!(row, &want, "exec {i} in slot {}", 5 - i);
    }

    // tcpperpid: the socket exchange; dport keeps the client's session (remote port
    // `port()`) and leaves the server's out. Instances "%06d".
    let (server, client, _) = sockets();
    let (cinst, sinst) = (
        format!("{:06}", client.pid()),
        format!("{:06}", server.pid()),
    );
    let txrx = |inst: &str| {
        (
            value_u64("bcc.proc.io.net.total.tx", Some(inst)),
            value_u64("bcc.proc.io.net.total.rx", Some(inst)),
        )
    };
    let got = wait_for(Duration::from_secs(5), || {
        Some(txrx(&cinst)).filter(|v| *v == (Some(11), Some(17)))
    });
    assert!(
        got.is_some(),
        "tcpperpid client {cinst}: tx/rx {:?}, it sent 11 and received 17 bytes",
        txrx(&cinst)
    );
    assert!(
        matches!(txrx(&sinst), (None | Some(0), None | Some(0))),
        "tcpperpid: the server's session passed the dport filter: {:?}",
        txrx(&sinst)
    );
    client.finish();
    server.finish();

    // tcpretrans: connections over a link that loses each connection's second data packet
    // on the wire (dropped as it arrives, so the sender must retransmit it: drops on the
    // way out fail the send, and TCP sends such data again as new data); the
    // retransmissions counted per connection, named as upstream named them, against the
    // namespaces' TcpRetransSegs.
    let link = LossyLink::with_loss(
        "cp",
        Loss {
            data_nth: 2,
            ..Loss::default()
        },
    );
    let skips = SkipWatch::start(TCPRETRANS_HOOKS);
    let on_link = || -> BTreeMap<String, u64> {
        values_u64("bcc.io.net.tcp.retrans.count")
            .into_iter()
            .filter(|(i, _)| i.starts_with("10.213.0.") || i.starts_with("fd00:213::"))
            .collect()
    };
    let kernel_before = link.retrans_segs();
    let k = 2;
    let conns = link.exchange_and_settle(k, 200_000);
    // The server sends no data: the drops are the clients' packets, one per connection.
    let lost = (
        LossyLink::tc_dropped(&link.a),
        LossyLink::tc_dropped(&link.b),
    );
    assert_eq!(
        lost,
        (0, 2 * k as u64),
        "tc's drops (client end, server end)"
    );
    let kernel = link.retrans_segs() - kernel_before;
    assert!(
        kernel >= lost.1,
        "{} data packets lost, the namespaces' TcpRetransSegs grew by {kernel}",
        lost.1
    );
    // The clients' side of each connection: "<client>:<port>::<server>:<port>".
    let clients: BTreeSet<&String> = conns
        .iter()
        .filter(|c| {
            c.starts_with(&format!("{}:", link.a.v4)) || c.starts_with(&format!("{}:", link.a.v6))
        })
        .collect();
    let mut seen = BTreeMap::new();
    wait_for(Duration::from_secs(5), || {
        seen = on_link();
        clients.iter().all(|c| seen.contains_key(*c)).then_some(())
    });
    let count: u64 = seen.values().sum();
    eprintln!(
        "tcpretrans: {count} retransmissions, the namespaces' TcpRetransSegs {kernel}: {seen:?}"
    );
    let strangers: Vec<&String> = seen.keys().filter(|i| !conns.contains(*i)).collect();
    assert!(
        strangers.is_empty(),
        "connections the test did not make: {strangers:?} (made: {conns:?})"
    );
    if skips.skipped() == 0 {
        let missing: Vec<&&String> = clients.iter().filter(|c| !seen.contains_key(**c)).collect();
        assert!(
            missing.is_empty(),
            "connections that lost a data packet but have no retransmission: {missing:?} ({seen:?})"
        );
    }
    // A retransmission sends one segment or more: never more retransmissions than
    // segments, and, with no run of the programs skipped, the segments are the kernel's.
    assert!(
        count > 0 && count <= kernel,
        "retransmissions {count}, the namespaces' TcpRetransSegs {kernel}"
    );
    let segs: u64 = values_u64("bcc.io.net.tcp.retrans.segs")
        .iter()
        .filter(|(i, _)| seen.contains_key(*i))
        .map(|(_, v)| v)
        .sum();
    if skips.skipped() == 0 {
        assert_eq!(
            segs, kernel,
            "retransmitted segments: agent {segs}, the namespaces' TcpRetransSegs {kernel}"
        );
    }
    drop(link);
}
