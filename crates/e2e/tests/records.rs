//! Event records as PCP keeps and shares them: a root pmlogger logs execsnoop's and
//! opensnoop's records every second while an unprivileged pmval (nobody) reads opensnoop's
//! at the same time, and the workload execs and opens things of known names. The archive,
//! read back with pmdumplog, must hold each of the workload's events exactly once, field by
//! field; nobody's client must get each open once too, without the sensitive fields. Each
//! client has its own cursor, so neither takes records from the other.

use e2e::*;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One event record: metric name (`bcc.<module>.<field>`) to value text (strings unquoted).
type Record = BTreeMap<String, String>;

/// The event records in pmdumplog's or pmval's text, in order, with the missed counts.
fn parse_records(text: &str) -> (Vec<Record>, u64) {
    let mut records = Vec::new();
    let mut missed = 0;
    let mut cur: Option<Record> = None;
    for l in text.lines() {
        let t = l.trim();
        if t.contains("--- event record") {
            records.extend(cur.take());
            // A missed record has no parameters, only its count.
            cur = (!t.contains("missed")).then(Record::new);
        } else if t.contains("missed event records") {
            missed += t
                .split_whitespace()
                .find_map(|w| w.parse::<u64>().ok())
                .unwrap_or(0);
        } else if let (Some(r), Some((name, v))) = (cur.as_mut(), param(t)) {
            r.insert(name.to_string(), v.trim_matches('"').to_string());
        } else if !t.starts_with("149.") {
            // Anything else (the next metric, the next sample) ends the record.
            records.extend(cur.take());
        }
    }
    records.extend(cur);
    (records, missed)
}

/// A record parameter's metric name and value text: pmdumplog prints
/// `149.51.8 (bcc.opensnoop.fname): value "/tmp/x"` (the name before any alias), pmval
/// `bcc.opensnoop.fname[-1] "/tmp/x"`.
fn param(t: &str) -> Option<(&str, &str)> {
    if let Some((head, v)) = t.split_once("): value ") {
        let name = head.split_once(" (")?.1;
        return Some((name.split(" or ").next()?, v));
    }
    let (name, v) = t.split_once("[-1] ")?;
    name.starts_with("bcc.").then_some((name, v))
}

/// Python workload: names itself, opens `n` known files under DIR (every fourth one missing),
/// printing "<path> <result>" per open (result: the fd or minus the errno), then "done".
const OPENS: &str = r#"
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
open("/proc/self/comm", "w").write("records-open")
for i in range(n):
    p = f"{d}/missing{i}" if i % 4 == 3 else f"{d}/f{i}"
    try:
        fd = os.open(p, os.O_RDONLY)
        os.close(fd)
        r = fd
    except OSError as e:
        r = -e.errno
    print(p, r, flush=True)
print("done", flush=True)
"#;

#[test]
fn pmlogger_archives_and_an_unprivileged_client_each_get_every_record_once() {
    const EXECS: usize = 300;
    const OPENS_N: usize = 40;
    let s = Session::start();
    s.assert_module_running("execsnoop");
    s.assert_module_running("opensnoop");
    let tag = format!("rec{}x{}", std::process::id(), rand_tag());
    let dir = format!("/tmp/bcc-{tag}");
    sh(&format!(
        "rm -rf {dir} && mkdir -m 0755 {dir} && for i in $(seq 0 {OPENS_N}); do : > {dir}/f$i; done"
    ));
    let arch = format!("{dir}/archive/a");
    std::fs::create_dir_all(format!("{dir}/archive")).expect("archive dir");
    let conf = format!("{dir}/archive/pmlogger.conf");
    std::fs::write(
        &conf,
        "log mandatory on 1 sec {\n  bcc.execsnoop.records\n  bcc.opensnoop.records\n}\n",
    )
    .expect("pmlogger config");
    let mut logger = Command::new("pmlogger")
        .args(["-c", &conf, "-l", &format!("{dir}/archive/log"), &arch])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pmlogger");
    // nobody's pmval: one fetch a second, for the whole workload and a little after.
    let reader = Command::new("runuser")
        .args(["-u", "nobody", "--", "pmval", "-s", "14", "-t", "1"])
        .arg("bcc.opensnoop.records")
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pmval as nobody");
    // Both clients have made their first fetch (which starts their cursors) when the
    // archive has two samples: wait for the logger's volume to grow past its label.
    let started = wait_for(Duration::from_secs(10), || {
        let n = std::fs::metadata(format!("{arch}.0")).ok()?.len();
        (n > 2048).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(started.is_some(), "pmlogger wrote no sample to {arch}.0");

    let mut pids = Vec::new();
    for i in 0..EXECS {
        let c = Command::new("/bin/true")
            .arg(format!("{tag}-{i}"))
            .spawn()
            .expect("exec /bin/true");
        pids.push(c.id());
        let mut c = c;
        c.wait().expect("wait /bin/true");
    }
    let w = Peer::spawn(OPENS, &[&dir, &OPENS_N.to_string()]);
    let opener = w.pid();
    let mut w = w;
    let mut opens = Vec::new();
    loop {
        let l = w.line();
        if l == "done" {
            break;
        }
        let (p, r) = l.split_once(' ').expect("path result");
        opens.push((p.to_string(), r.parse::<i64>().expect("result")));
    }
    w.finish();
    assert_eq!(opens.len(), OPENS_N);

    // The readers' next fetches, a drain interval and a sample after the calls.
    std::thread::sleep(Duration::from_secs(3));
    let out = reader.wait_with_output().expect("pmval as nobody");
    // SIGTERM: pmlogger closes the archive (index and trailer) as it exits.
    sh(&format!("kill -TERM {}", logger.id()));
    let _ = logger.wait();
    let nobody_text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "pmval as nobody failed: {}\n{nobody_text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = run_ok("pmdumplog", &[&arch]);
    let check = run_ok("pmlogcheck", &[&arch]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !check.contains("botch") && !check.contains("Error"),
        "pmlogcheck: {check}"
    );

    let (logged, missed) = parse_records(&dump);
    assert_eq!(missed, 0, "the archive holds missed records");
    // execsnoop: each of the workload's execs once, with its pid and comm.
    let mut execs: BTreeMap<usize, Vec<&Record>> = BTreeMap::new();
    for r in &logged {
        if let Some(i) = r
            .get("bcc.execsnoop.args")
            .and_then(|a| a.strip_prefix(&format!("/bin/true {tag}-")))
            .and_then(|i| i.parse().ok())
        {
            execs.entry(i).or_default().push(r);
        }
    }
    for (i, pid) in pids.iter().enumerate() {
        let got = execs.get(&i).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            got.len(),
            1,
            "exec {i} (pid {pid}) in the archive {} times",
            got.len()
        );
        let r = got[0];
        assert_eq!(
            r.get("bcc.execsnoop.pid"),
            Some(&pid.to_string()),
            "exec {i}: pid"
        );
        assert_eq!(
            r.get("bcc.execsnoop.comm").map(String::as_str),
            Some("true"),
            "exec {i}"
        );
        assert_eq!(
            r.get("bcc.execsnoop.ret").map(String::as_str),
            Some("0"),
            "exec {i}"
        );
    }
    // opensnoop, root's archive: each open once, with its result.
    let mine = |r: &&Record| r.get("bcc.opensnoop.pid") == Some(&opener.to_string());
    let logged_opens: Vec<&Record> = logged
        .iter()
        .filter(mine)
        .filter(|r| {
            r.get("bcc.opensnoop.fname")
                .is_some_and(|f| f.starts_with(&dir))
        })
        .collect();
    let names: Vec<&str> = logged_opens
        .iter()
        .map(|r| r["bcc.opensnoop.fname"].as_str())
        .collect();
    let want: Vec<&str> = opens.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names, want,
        "the archive's opens of {dir}, in order, once each"
    );
    for ((p, res), r) in opens.iter().zip(&logged_opens) {
        let (fd, err) = if *res < 0 {
            ("-1".to_string(), (-res).to_string())
        } else {
            (res.to_string(), "0".into())
        };
        assert_eq!(r.get("bcc.opensnoop.fd"), Some(&fd), "{p}: fd");
        assert_eq!(r.get("bcc.opensnoop.err"), Some(&err), "{p}: errno");
    }
    // nobody's client: the same opens once each, by pid and fd, but no file or command name.
    let (seen, missed) = parse_records(&nobody_text);
    assert_eq!(missed, 0, "nobody's client missed records");
    let leaked: Vec<&Record> = seen
        .iter()
        .filter(|r| r.contains_key("bcc.opensnoop.fname") || r.contains_key("bcc.opensnoop.comm"))
        .collect();
    assert!(
        leaked.is_empty(),
        "sensitive fields reached nobody: {:?}",
        &leaked[..leaked.len().min(3)]
    );
    let theirs: Vec<String> = seen
        .iter()
        .filter(mine)
        .filter_map(|r| r.get("bcc.opensnoop.fd").cloned())
        .collect();
    // The opener's Python start-up opens files too: the workload's are its last 40 opens.
    let fds: Vec<String> = logged_opens
        .iter()
        .map(|r| r["bcc.opensnoop.fd"].clone())
        .collect();
    let all_logged = logged.iter().filter(mine).count();
    assert_eq!(
        theirs.len(),
        all_logged,
        "nobody's client and the archive got different numbers of the opener's records"
    );
    assert!(
        theirs.ends_with(&fds),
        "nobody's records of the workload's opens differ from the archive's:\n{theirs:?}\n{fds:?}"
    );
}

fn rand_tag() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        % 1_000_000_000
}

#[test]
fn the_record_parser_reads_pmdumplog() {
    let text = "06:55:57.5 1 metric\n    149.8.100 (bcc.execsnoop.records): value[2 event records]\n        \
        --- event record [0] timestamp 06:55:57.52 flags 0x1 (point) ---\n        \
        149.8.1 (bcc.execsnoop.pid or bcc.proc.exec.pid): value 4807\n        \
        149.8.4 (bcc.execsnoop.args or bcc.proc.exec.args): value \"/bin/true a b\"\n        \
        --- event record [1] timestamp 06:55:57.53 flags 0x1 (point) ---\n        \
        149.8.1 (bcc.execsnoop.pid or bcc.proc.exec.pid): value 4808\n\n06:55:58.5 1 metric\n";
    let (r, missed) = parse_records(text);
    assert_eq!(missed, 0);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["bcc.execsnoop.args"], "/bin/true a b");
    assert_eq!(r[1]["bcc.execsnoop.pid"], "4808");
    let text = "06:56:36.3  1 event records\n  06:56:36.35 --- event record [0] flags 0x1 (point) ---\n    \
        bcc.opensnoop.pid[-1] 5890\n    bcc.opensnoop.fd[-1] -1\n06:56:37.3  No values\n";
    let (r, _) = parse_records(text);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["bcc.opensnoop.fd"], "-1");
}
