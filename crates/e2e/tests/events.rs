//! End-to-end tests of the event modules (execsnoop, exitsnoop) under the real pmcd: the
//! test runs processes of known argv, pid, parent and exit status (the workload's truth) and
//! reads them back field by field from both views, the table of the newest (pminfo -f) and
//! the event records (pmval, a PCP client of its own context); a burst of 20,000 execs
//! between two fetches reaches two clients whole, each record once; an unprivileged client
//! gets no sensitive field in either view. Other activity on the host adds records of its
//! own: every check picks the test's records by their unique arguments or pids.

use e2e::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One event record as pmval prints it: parameter name (module-relative, e.g. "args") to
/// value text (strings without quotes).
type Record = BTreeMap<String, String>;

/// A pmval reading event records: `samples` fetches, `interval` seconds apart, in one
/// context. Started when its first fetch (which starts its cursor) has been answered.
struct Reader {
    child: Child,
    /// Drains pmval's output as it comes (a full pipe would hold up its fetches).
    rest: std::thread::JoinHandle<String>,
    text: String,
}

impl Reader {
    fn start(metric: &str, samples: u32, interval: u32, user: Option<&str>) -> Reader {
        let s = samples.to_string();
        let t = interval.to_string();
        let mut args: Vec<&str> = Vec::new();
        if let Some(u) = user {
            args.extend(["runuser", "-u", u, "--"]);
        }
        args.extend(["stdbuf", "-oL", "pmval", "-s", &s, "-t", &t, metric]);
        let mut child = Command::new(args[0])
            .args(&args[1..])
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin:/usr/lib/pcp/bin")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pmval");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut text = String::new();
        // The first fetch gives no records (it starts the client's cursor).
        loop {
            let mut l = String::new();
            if out.read_line(&mut l).expect("read pmval") == 0 {
                panic!("pmval {metric} ended before its first fetch:\n{text}");
            }
            text.push_str(&l);
            if l.contains("event records") || l.contains("No value") || l.contains("Error") {
                break;
            }
        }
        assert!(
            text.contains(": 0 event records"),
            "the first fetch of {metric} (it starts the cursor) should have no records:\n{text}"
        );
        let rest = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut rest);
            rest
        });
        Reader { child, rest, text }
    }

    /// Waits for pmval to finish; returns the records of every later fetch, in order, and
    /// the missed counts it reported.
    fn finish(mut self) -> (Vec<Record>, u64, String) {
        let st = self.child.wait().expect("pmval");
        self.text.push_str(&self.rest.join().expect("pmval reader"));
        assert!(st.success(), "pmval failed ({st}):\n{}", tail(&self.text));
        let mut records = Vec::new();
        let mut missed = 0;
        let mut cur: Option<Record> = None;
        for l in self.text.lines() {
            if l.contains("missed event records") {
                // "==> N missed event records", after a record header flagged missed.
                let n = l.split_whitespace().find_map(|w| w.parse::<u64>().ok());
                missed += n.unwrap_or(0);
            } else if l.contains("--- event record") {
                if let Some(r) = cur.take() {
                    records.push(r);
                }
                // A missed record carries no parameters, only the line above.
                cur = (!l.contains("missed")).then(Record::new);
            } else if let (Some(r), Some((name, v))) = (cur.as_mut(), l.trim().split_once("[-1] "))
            {
                let short = name.rsplit('.').next().unwrap_or(name).to_string();
                r.insert(short, v.trim_matches('"').to_string());
            } else if l.contains("event records") {
                if let Some(r) = cur.take() {
                    records.push(r);
                }
            }
        }
        if let Some(r) = cur.take() {
            records.push(r);
        }
        (records, missed, self.text)
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Runs `/bin/true <tag>-<i>` to its end; returns its pid.
fn run_true(tag: &str, i: usize) -> u32 {
    let mut c = Command::new("/bin/true")
        .arg(format!("{tag}-{i}"))
        .spawn()
        .expect("spawn /bin/true");
    let pid = c.id();
    assert!(c.wait().expect("wait").success());
    pid
}

/// Runs `/bin/true <tag>-<i>` for each i, one after another; returns each child's pid.
fn exec_true(tag: &str, n: usize) -> Vec<u32> {
    (0..n).map(|i| run_true(tag, i)).collect()
}

/// Runs `/bin/true <tag>-<i>` for i in 0..n in four loops at once; returns each i's pid.
fn exec_true_parallel(tag: &str, n: usize) -> BTreeMap<usize, u32> {
    // Four exec loops at once: exec i runs `/bin/true <tag>-i` and records its pid.
    const LOOPS: usize = 4;
    let parts: Vec<Vec<(usize, u32)>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..LOOPS)
            .map(|k| {
                let tag = &tag;
                sc.spawn(move || {
                    (k..n)
                        .step_by(LOOPS)
                        .map(|i| (i, run_true(tag, i)))
                        .collect()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("exec loop"))
            .collect()
    });
    parts.into_iter().flatten().collect()
}

/// Seconds a burst of `n` execs (exec_true_parallel) should take at most here now: twice the
/// time of a sample of 400, plus 3 s.
fn burst_seconds(n: usize) -> u32 {
    let t0 = Instant::now();
    exec_true_parallel("bccevcal", 400);
    let est = t0.elapsed().as_secs_f64() * n as f64 / 400.0;
    eprintln!("a burst of {n} execs should take about {est:.1} s");
    (2.0 * est + 3.0).ceil() as u32
}

/// The table view: instance name -> field -> value, for the given fields (metrics under
/// `bcc.<module>.`, or full names), all in one pminfo fetch (the table moves with every exec
/// on the host, so two fetches may see different slots).
fn table(module: &str, fields: &[&str]) -> BTreeMap<String, BTreeMap<String, String>> {
    let names: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains('.') {
                f.to_string()
            } else {
                format!("bcc.{module}.{f}")
            }
        })
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let vals = fetch(&refs);
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (f, n) in fields.iter().zip(&names) {
        for (inst, v) in vals.get(n).cloned().unwrap_or_default() {
            out.entry(inst.unwrap_or_default())
                .or_default()
                .insert(f.to_string(), v);
        }
    }
    out
}

/// A word no other process on the host passes as an argument.
fn tag() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "bccev{}x{}",
        std::process::id(),
        t.as_nanos() % 1_000_000_000
    )
}

#[test]
fn execsnoop_serves_each_exec_field_by_field_in_both_views() {
    let _s = Session::running("execsnoop");
    let me = std::process::id().to_string();
    let want = |tag: &str, i: usize, pid: u32| -> Record {
        [
            ("comm", "true".to_string()),
            ("pid", pid.to_string()),
            ("ppid", me.clone()),
            ("ret", "0".into()),
            ("args", format!("/bin/true {tag}-{i}")),
            ("uid", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    // The event records: every exec, once.
    let tag = tag();
    let reader = Reader::start("bcc.execsnoop.records", 2, 3, None);
    let pids = exec_true(&tag, 5);
    let (records, missed, text) = reader.finish();
    assert_eq!(missed, 0, "{}", tail(&text));
    for (i, pid) in pids.iter().enumerate() {
        let w = want(&tag, i, *pid);
        let got: Vec<&Record> = records
            .iter()
            .filter(|r| r.get("args") == w.get("args"))
            .collect();
        assert_eq!(
            got,
            vec![&w],
            "exec {i} in the event records:\n{}",
            tail(&text)
        );
    }
    // The table holds the host's newest 20 execs: other processes' execs can push the
    // test's out before the fetch, so a set pushed out (partly) is run again, fresh.
    for attempt in 0..5 {
        let tag = format!("{}a{attempt}", self::tag());
        let pids = exec_true(&tag, 5);
        // The agent drains the ring buffer every 20 ms at the latest.
        std::thread::sleep(Duration::from_millis(100));
        let mut tab = table(
            "execsnoop",
            &[
                "comm",
                "pid",
                "ppid",
                "ret",
                "args",
                "uid",
                "bcc.proc.exec.args",
                "bcc.proc.exec.pid",
            ],
        );
        // The aliases: the same values under the Python pmdabcc's names.
        for (slot, r) in tab.iter_mut() {
            for f in ["args", "pid"] {
                let a = r.remove(&format!("bcc.proc.exec.{f}"));
                assert_eq!(
                    a.as_ref(),
                    r.get(f),
                    "slot {slot}: bcc.proc.exec.{f} is not bcc.execsnoop.{f}"
                );
            }
        }
        // Slot 0 is the newest: the test's execs sit in the table newest first.
        let order: Vec<usize> = (0..tab.len())
            .filter_map(|slot| {
                tab.get(&slot.to_string())?
                    .get("args")?
                    .strip_prefix(&format!("/bin/true {tag}-"))?
                    .parse()
                    .ok()
            })
            .collect();
        let newest: Vec<usize> = (0..5).rev().take(order.len()).collect();
        assert_eq!(
            order, newest,
            "table order of the test's execs (slot 0 newest): {tab:?}"
        );
        if order.len() < 5 {
            assert_eq!(
                tab.len(),
                20,
                "execs missing from a table that is not full: {tab:?}"
            );
            eprintln!(
                "attempt {attempt}: {} of 5 execs pushed out of the table by the host's",
                5 - order.len()
            );
            continue;
        }
        for (i, pid) in pids.iter().enumerate() {
            let w = want(&tag, i, *pid);
            let rows: Vec<&BTreeMap<String, String>> = tab
                .values()
                .filter(|r| r.get("args") == w.get("args"))
                .collect();
            assert_eq!(rows, vec![&w], "exec {i} in the table: {tab:?}");
        }
        assert_eq!(
            value_u64("bcc.execsnoop.lost", None),
            Some(0),
            "no exec lost"
        );
        return;
    }
    panic!("5 attempts: the host's execs pushed the test's out of the table every time");
}

/// `count` arguments that, after `/bin/true <first>`, make the record's arguments (each with
/// its NUL) exactly `size` bytes: 100-character ones, then one shorter.
fn filler(first: &str, size: usize) -> Vec<String> {
    let mut left = size - "/bin/true ".len() - (first.len() + 1);
    let mut out = Vec::new();
    while left > 0 {
        let n = left.min(101);
        out.push("c".repeat(n - 1));
        left -= n;
    }
    out
}

#[test]
fn execsnoop_keeps_long_arguments_exact() {
    // The program keeps an exec's arguments in a short entry up to 512 bytes and in a
    // full-size one beyond: both sides of the limit, an argument cut at 127 bytes, and more
    // arguments than max_args (20, the path counting) ending in "...".
    let s = Session::start();
    s.assert_module_running("execsnoop");
    let tag = tag();
    let a100 = "a".repeat(100);
    let mut cases: Vec<(Vec<String>, String)> = Vec::new();
    for size in [512, 513] {
        let first = format!("{tag}-size{size}");
        let mut argv = vec![first.clone()];
        argv.extend(filler(&first, size));
        let want = format!("/bin/true {}", argv.join(" "));
        assert_eq!(want.len() + 1, size);
        cases.push((argv, want));
    }
    let long = vec![format!("{tag}-long")]
        .into_iter()
        .chain(std::iter::repeat_n(a100.clone(), 6))
        .collect::<Vec<_>>();
    cases.push((long.clone(), format!("/bin/true {}", long.join(" "))));
    cases.push((
        vec![format!("{tag}-cut"), "b".repeat(200)],
        format!("/bin/true {tag}-cut {}", "b".repeat(127)),
    ));
    let many: Vec<String> = std::iter::once(format!("{tag}-many"))
        .chain((1..=25).map(|i| i.to_string()))
        .collect();
    cases.push((
        many.clone(),
        format!("/bin/true {} ...", many[..19].join(" ")),
    ));
    let wide: Vec<String> = std::iter::once(format!("{tag}-wide"))
        .chain(std::iter::repeat_n(a100, 24))
        .collect();
    cases.push((
        wide.clone(),
        format!("/bin/true {} ...", wide[..19].join(" ")),
    ));
    let reader = Reader::start("bcc.execsnoop.records", 2, 3, None);
    for (argv, _) in &cases {
        let st = Command::new("/bin/true")
            .args(argv)
            .status()
            .expect("spawn /bin/true");
        assert!(st.success());
    }
    let (records, missed, text) = reader.finish();
    assert_eq!(missed, 0, "{}", tail(&text));
    let prefix = format!("/bin/true {tag}-");
    let got: Vec<&str> = records
        .iter()
        .filter_map(|r| r.get("args").map(String::as_str))
        .filter(|a| a.starts_with(&prefix))
        .collect();
    let want: Vec<&str> = cases.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(got, want, "the execs' arguments, in order");
}

#[test]
fn a_burst_of_20000_execs_reaches_two_clients_whole() {
    const N: usize = 20_000;
    let _s = Session::running("execsnoop");
    let tag = tag();
    let lost0 = value_u64("bcc.execsnoop.lost", None).expect("bcc.execsnoop.lost");
    // One client fetches once after the whole burst, the other every 2 s during it.
    // The slow client's second fetch must come after the burst: time it from the host's
    // exec rate now (other tests and builds share the machine).
    let secs = burst_seconds(N);
    let slow = Reader::start("bcc.execsnoop.records", 2, secs, None);
    let fast = Reader::start("bcc.execsnoop.records", secs / 2 + 1, 2, None);
    let t0 = Instant::now();
    let pids = exec_true_parallel(&tag, N);
    let burst = t0.elapsed();
    eprintln!("{N} execs in {burst:?}");
    assert!(
        burst < Duration::from_secs(secs as u64 - 1),
        "the burst took {burst:?}: too slow to fit between the slow client's fetches"
    );
    std::thread::sleep(Duration::from_millis(100));
    let tab = table("execsnoop", &["args"]);
    let index =
        |a: &str| -> Option<usize> { a.strip_prefix(&format!("/bin/true {tag}-"))?.parse().ok() };
    let mut orders = Vec::new();
    for (who, r) in [("the slow client", slow), ("the fast client", fast)] {
        let (records, missed, text) = r.finish();
        assert_eq!(missed, 0, "{who} missed records");
        let mine: Vec<(usize, &Record)> = records
            .iter()
            .filter_map(|r| Some((index(r.get("args")?)?, r)))
            .collect();
        let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, r) in &mine {
            *seen.entry(*i).or_default() += 1;
            assert_eq!(
                r.get("pid"),
                Some(&pids[i].to_string()),
                "{who}: pid of exec {i}"
            );
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{who}: records delivered more than once: {twice:?}"
        );
        let absent: Vec<usize> = (0..N).filter(|i| !seen.contains_key(i)).collect();
        assert!(
            absent.is_empty(),
            "{who}: {} of {N} execs missing (first {:?}):\n{}",
            absent.len(),
            &absent[..absent.len().min(10)],
            tail(&text)
        );
        orders.push(mine.iter().map(|(i, _)| *i).collect::<Vec<_>>());
    }
    assert_eq!(
        orders[0], orders[1],
        "both clients get the records in the same (arrival) order"
    );
    assert_eq!(
        value_u64("bcc.execsnoop.lost", None),
        Some(lost0),
        "execs lost in the ring buffer"
    );
    // The table holds the newest process_count (20): the last of the burst, newest first.
    let order: Vec<usize> = (0..tab.len())
        .filter_map(|slot| index(tab.get(&slot.to_string())?.get("args")?))
        .collect();
    assert!(!order.is_empty() && order.len() <= 20, "table: {tab:?}");
    let want: Vec<usize> = orders[0].iter().rev().take(order.len()).copied().collect();
    assert_eq!(
        order, want,
        "the table shows the newest of the burst (as the records ordered them), newest first"
    );
}

#[test]
fn exitsnoop_reports_exit_codes_and_signals() {
    let _s = Session::running("exitsnoop");
    let me = std::process::id().to_string();
    // A shell that exits with 7 and a sleep killed by SIGKILL: (pid, comm, sig, exit code),
    // and an upper bound of their ages.
    let exits = || {
        let t0 = Instant::now();
        let mut code = Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .expect("sh");
        let code_pid = code.id();
        assert_eq!(code.wait().unwrap().code(), Some(7));
        let mut killed = Command::new("/bin/sleep").arg("60").spawn().expect("sleep");
        let killed_pid = killed.id();
        std::thread::sleep(Duration::from_millis(200));
        killed.kill().expect("kill");
        killed.wait().unwrap();
        (
            [(code_pid, "sh", "0", "7"), (killed_pid, "sleep", "9", "0")],
            t0.elapsed().as_nanos() as u64,
        )
    };
    let check =
        |what: &str, r: &Record, (pid, comm, sig, code): (u32, &str, &str, &str), elapsed: u64| {
            let pid = pid.to_string();
            let want: Record = [
                ("pid", pid.clone()),
                ("tid", pid.clone()),
                ("ppid", me.clone()),
                ("sig", sig.into()),
                ("exit_code", code.into()),
                ("comm", comm.into()),
                ("coredump", "0".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let age: u64 = r.get("age").and_then(|a| a.parse().ok()).unwrap_or(0);
            assert!(
                age > 0 && age <= elapsed,
                "{what}: age {age} ns of pid {pid} outside (0, {elapsed}]"
            );
            let mut r = r.clone();
            r.remove("age");
            assert_eq!(r, want, "{what}: exit of pid {pid}");
        };
    let reader = Reader::start("bcc.exitsnoop.records", 2, 3, None);
    let (procs, elapsed) = exits();
    let (records, missed, text) = reader.finish();
    assert_eq!(missed, 0);
    for p in procs {
        let got: Vec<&Record> = records
            .iter()
            .filter(|r| r.get("pid") == Some(&p.0.to_string()))
            .collect();
        assert_eq!(
            got.len(),
            1,
            "exit of pid {} once in the records:\n{}",
            p.0,
            tail(&text)
        );
        check("records", got[0], p, elapsed);
    }
    // The table holds the host's newest 20 exits: retry when the host's pushed ours out.
    let fields = [
        "pid",
        "tid",
        "ppid",
        "sig",
        "exit_code",
        "comm",
        "coredump",
        "age",
    ];
    for attempt in 0..5 {
        let (procs, elapsed) = exits();
        std::thread::sleep(Duration::from_millis(100));
        let tab = table("exitsnoop", &fields);
        let rows: Vec<Option<&BTreeMap<String, String>>> = procs
            .iter()
            .map(|p| {
                tab.values()
                    .find(|r| r.get("pid") == Some(&p.0.to_string()))
            })
            .collect();
        if rows.iter().any(Option::is_none) {
            assert_eq!(
                tab.len(),
                20,
                "exits missing from a table that is not full: {tab:?}"
            );
            eprintln!("attempt {attempt}: exits pushed out of the table by the host's");
            continue;
        }
        for (p, r) in procs.into_iter().zip(rows) {
            check("table", r.unwrap(), p, elapsed);
        }
        return;
    }
    panic!("5 attempts: the host's exits pushed the test's out of the table every time");
}

#[test]
fn an_unprivileged_client_gets_no_sensitive_field() {
    let _s = Session::running("execsnoop");
    let tag = tag();
    let reader = Reader::start("bcc.execsnoop.records", 2, 3, Some("nobody"));
    let pids = exec_true(&tag, 3);
    std::thread::sleep(Duration::from_millis(300));
    let nobody = sh("runuser -u nobody -- pminfo -f bcc.execsnoop.args bcc.execsnoop.comm bcc.proc.exec.args bcc.execsnoop.pid bcc.execsnoop.ret 2>&1");
    let (records, _, text) = reader.finish();
    for m in [
        "bcc.execsnoop.args",
        "bcc.execsnoop.comm",
        "bcc.proc.exec.args",
    ] {
        assert!(
            nobody.contains(&format!("{m}\nError: No permission")),
            "{m} is not refused to nobody:\n{nobody}"
        );
    }
    assert!(
        nobody.contains("bcc.execsnoop.pid\n    inst"),
        "pid has values for nobody:\n{nobody}"
    );
    assert!(
        !nobody.contains(&tag),
        "a sensitive value reached nobody:\n{nobody}"
    );
    // The records: the test's execs (found by pid) without comm and args.
    assert!(
        !text.contains(&tag),
        "arguments reached nobody through the records:\n{}",
        tail(&text)
    );
    for pid in pids {
        let got: Vec<&Record> = records
            .iter()
            .filter(|r| r.get("pid") == Some(&pid.to_string()))
            .collect();
        assert_eq!(
            got.len(),
            1,
            "exec of pid {pid} once in nobody's records:\n{}",
            tail(&text)
        );
        let keys: Vec<&str> = got[0].keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec!["pid", "ppid", "ret", "uid"],
            "parameters nobody gets"
        );
    }
}

/// The command name a failed exec keeps: the spawning thread's (the test harness names it
/// after the test), cut to 15 characters.
fn failed_comm() -> String {
    let name = std::thread::current().name().unwrap_or("").to_string();
    regex_escape(&name.chars().take(15).collect::<String>())
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            (!c.is_ascii_alphanumeric() && c != '_')
                .then_some('\\')
                .into_iter()
                .chain([c])
        })
        .collect()
}

#[test]
fn options_filter_and_a_slow_client_beyond_queue_memory_is_told_what_it_missed() {
    const N: usize = 4000;
    let mut s = Session::start();
    let conf =
        std::fs::read_to_string(bcc_dir().join("bcc.conf.default")).expect("bcc.conf.default");
    assert!(
        conf.contains("\n[execsnoop]\n") && conf.contains("\ninclude_failed = False\n"),
        "no [execsnoop] section with include_failed in the installed bcc.conf.default"
    );
    // Only this test's execs (the args and command filters), failed ones too; 512K holds about two
    // seconds of the burst below, not all of it.
    let tag = tag();
    s.with_config(
        &conf
            .replace(
                "\n[execsnoop]\n",
                &format!("\n[execsnoop]\nqueue_memory = 512K\nargs = ^/\\S+ {tag}-\ncommand = ^(true|{})$\n", failed_comm()),
            )
            .replace("\ninclude_failed = False\n", "\ninclude_failed = True\n"),
    );
    s.assert_module_running("execsnoop");
    let secs = burst_seconds(N);
    let slow = Reader::start("bcc.execsnoop.records", 2, secs, None);
    let fast = Reader::start("bcc.execsnoop.records", secs, 1, None);
    // A failed exec (ENOENT) is reported with include_failed; a filtered-out one is not.
    let e = Command::new("/nonexistent-bcc-test/true")
        .arg(format!("{tag}-failed"))
        .spawn();
    assert!(e.is_err(), "the exec of a missing file should fail");
    exec_true(&format!("x{tag}"), 3);
    let t0 = Instant::now();
    exec_true_parallel(&tag, N);
    let took = t0.elapsed();
    eprintln!("{N} execs in {took:?}");
    assert!(
        took < Duration::from_secs(secs as u64 - 1),
        "the burst took {took:?}: too slow to end before the slow client's second fetch"
    );
    let mine = |records: &[Record]| {
        records
            .iter()
            .filter(|r| {
                r.get("args")
                    .is_some_and(|a| a.starts_with(&format!("/bin/true {tag}-")))
            })
            .count()
    };
    let (records, missed, text) = slow.finish();
    let got = mine(&records);
    eprintln!("slow client: {got} of the burst, {missed} missed");
    assert!(
        missed > 0 && got < N,
        "the slow client should have missed records past 512K: got {got}, missed {missed}:\n{}",
        tail(&text)
    );
    // The filters keep every other exec out.
    let failed_args = format!("/nonexistent-bcc-test/true {tag}-failed");
    let others: Vec<&Record> = records
        .iter()
        .filter(|r| {
            r.get("args")
                .is_none_or(|a| !a.starts_with(&format!("/bin/true {tag}-")) && *a != failed_args)
        })
        .collect();
    assert!(
        others.is_empty(),
        "records the filters should have dropped: {others:?}"
    );
    assert!(
        got + missed as usize >= N,
        "got {got} + missed {missed} < {N}: records vanished uncounted"
    );
    let (records, missed, text) = fast.finish();
    assert_eq!(
        (mine(&records), missed),
        (N, 0),
        "the fast client, fetching every second, gets every record:\n{}",
        tail(&text)
    );
    let failed: Vec<&Record> = records
        .iter()
        .filter(|r| r.get("ret").is_some_and(|r| r != "0"))
        .collect();
    assert_eq!(failed.len(), 1, "one failed exec:\n{}", tail(&text));
    assert_eq!(
        failed[0].get("ret").map(String::as_str),
        Some("-2"),
        "ENOENT: {:?}",
        failed[0]
    );
    assert_eq!(failed[0].get("args"), Some(&failed_args));
    assert_eq!(
        failed[0].get("comm").cloned(),
        Some(
            std::thread::current()
                .name()
                .unwrap_or("")
                .chars()
                .take(15)
                .collect()
        )
    );
    assert_eq!(
        records.len(),
        N + 1,
        "the fast client got other execs than the test's (the args filter)"
    );
}
