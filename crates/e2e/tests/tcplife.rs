//! End-to-end tests of the tcplife module under the real pmcd: loopback TCP peers (separate
//! processes, so each has its own pid) move known payloads; the agent's per-process byte
//! counters must equal those payloads (the independent truth), without the sequence numbers
//! the kernel's counters give the SYN and FIN. Only loopback addresses (127.0.0.1, ::1) are
//! used.

use e2e::*;
use std::collections::BTreeMap;
use std::time::Duration;

const RX: &str = "bcc.proc.io.net.tcp.rx";
const TX: &str = "bcc.proc.io.net.tcp.tx";
const OPENED: &str = "bcc.proc.io.net.tcp.sessions_opened";
const CLOSED: &str = "bcc.proc.io.net.tcp.sessions_closed";
const ACTIVE: &str = "bcc.proc.io.net.tcp.sessions_active";
const LOST: &str = "bcc.proc.io.net.tcp.events_lost";
const UNTRACKED: &str = "bcc.proc.io.net.tcp.sessions_untracked";

/// A loopback peer. `server FAM N_CONN DOWN`: listens on an ephemeral port of the loopback
/// address, prints it, then for each of N_CONN connections reads to EOF, sends DOWN bytes and
/// closes; prints the total received. `client FAM PORT`: connects, then obeys stdin lines
/// "send N" (sends N bytes), "close" (half-closes, reads to EOF, prints what came, exits).
/// `burst FAM PORT N SIZE`: N sessions in a row, each sending SIZE bytes.
const PEER: &str = r#"
import socket, sys
mode, fam = sys.argv[1], sys.argv[2]
af, host = (socket.AF_INET6, "::1") if fam == "6" else (socket.AF_INET, "127.0.0.1")
def drain(c):
    n = 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            return n
        n += len(b)
if mode == "server":
    conns, down = int(sys.argv[3]), int(sys.argv[4])
    s = socket.socket(af)
    s.bind((host, 0))
    s.listen(1024)
    print(s.getsockname()[1], flush=True)
    total = 0
    for _ in range(conns):
        c, _ = s.accept()
        total += drain(c)
        if down:
            c.sendall(b"d" * down)
        c.close()
    print(total, flush=True)
elif mode == "client":
    c = socket.create_connection((host, int(sys.argv[3])))
    print("connected", flush=True)
    for line in sys.stdin:
        w = line.split()
        if w[0] == "send":
            c.sendall(b"u" * int(w[1]))
            print("sent", flush=True)
        elif w[0] == "close":
            c.shutdown(socket.SHUT_WR)
            print(drain(c), flush=True)
            c.close()
            break
elif mode == "burst":
    port, n, size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    for _ in range(n):
        c = socket.create_connection((host, port))
        c.sendall(b"b" * size)
        c.shutdown(socket.SHUT_WR)
        drain(c)
        c.close()
    print("done", flush=True)
"#;

/// A peer's instance name in the per-process layout.
fn inst(peer: &Peer) -> String {
    format!("{:06}", peer.pid())
}

/// Runs a server and a client; returns (server, client) when the client is connected.
fn pair(fam: &str, down: u64) -> (Peer, Peer) {
    let mut server = Peer::spawn(PEER, &["server", fam, "1", &down.to_string()]);
    let port = server.line();
    let mut client = Peer::spawn(PEER, &["client", fam, &port]);
    assert_eq!(client.line(), "connected");
    (server, client)
}

/// The agent's byte count is the payload, exactly (tcp_sock's counters would be one more
/// for a received FIN, one or two more for an acked SYN and FIN).
fn assert_payload(what: &str, got: Option<u64>, payload: u64) {
    let got = got.unwrap_or_else(|| panic!("{what}: no value (payload {payload})"));
    assert_eq!(got, payload, "{what}: {got} bytes, payload {payload}");
    eprintln!("{what}: {got} (payload {payload})");
}

fn values(metric: &str) -> BTreeMap<String, u64> {
    values_u64(metric)
}

/// Waits until `metric` for `inst` is at least `want`.
fn wait_at_least(metric: &str, inst: &str, want: u64) -> Option<u64> {
    wait_for(Duration::from_secs(10), || {
        values(metric).get(inst).copied().filter(|v| *v >= want)
    })
}

#[test]
fn short_sessions_count_per_process_ipv4_and_ipv6() {
    let _s = Session::running("tcplife");
    for (fam, up, down) in [("4", 123_457u64, 65_432u64), ("6", 234_567, 7_654)] {
        let (mut server, mut client) = pair(fam, down);
        client.say(&format!("send {up}"));
        assert_eq!(client.line(), "sent");
        client.say("close");
        assert_eq!(client.line().parse::<u64>().unwrap(), down);
        assert_eq!(server.line().parse::<u64>().unwrap(), up);
        let (si, ci) = (inst(&server), inst(&client));
        server.finish();
        client.finish();
        // the CLOSE records come through the ring buffer thread: wait for them
        wait_for(Duration::from_secs(10), || {
            (values(CLOSED).get(&si) == Some(&1) && values(CLOSED).get(&ci) == Some(&1))
                .then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "IPv{fam}: sessions_closed of {si}/{ci}: {:?}",
                values(CLOSED)
            )
        });
        let (rx, tx) = (values(RX), values(TX));
        assert_payload(&format!("IPv{fam} server rx"), rx.get(&si).copied(), up);
        assert_payload(&format!("IPv{fam} client tx"), tx.get(&ci).copied(), up);
        assert_payload(&format!("IPv{fam} client rx"), rx.get(&ci).copied(), down);
        assert_payload(&format!("IPv{fam} server tx"), tx.get(&si).copied(), down);
        assert_eq!(values(OPENED).get(&si), Some(&1));
        assert_eq!(values(OPENED).get(&ci), Some(&1));
        assert_eq!(values(ACTIVE).get(&ci), Some(&0));
    }
}

#[test]
fn a_long_session_counts_before_it_closes_ipv4_and_ipv6() {
    let _s = Session::running("tcplife");
    for fam in ["4", "6"] {
        let (mut server, mut client) = pair(fam, 0);
        let (si, ci) = (inst(&server), inst(&client));
        let chunk = 1_500_000u64;
        for round in 1..=3u64 {
            client.say(&format!("send {chunk}"));
            assert_eq!(client.line(), "sent");
            // the session is open: the counters must reach what was sent so far
            let want = round * chunk;
            let srx = wait_at_least(RX, &si, want).unwrap_or_else(|| {
                panic!(
                    "IPv{fam} round {round}: server rx {:?} never reached {want} while open",
                    values(RX).get(&si)
                )
            });
            let ctx = wait_at_least(TX, &ci, want).unwrap_or_else(|| {
                panic!(
                    "IPv{fam} round {round}: client tx {:?} never reached {want} while open",
                    values(TX).get(&ci)
                )
            });
            assert!(
                srx == want && ctx == want,
                "IPv{fam} round {round}: rx {srx} tx {ctx}, {want} sent so far"
            );
            assert_eq!(
                values(ACTIVE).get(&ci),
                Some(&1),
                "IPv{fam}: the client session is open"
            );
            assert_eq!(values(CLOSED).get(&ci).copied().unwrap_or(0), 0);
            eprintln!("IPv{fam} open session after {want} bytes: server rx {srx}, client tx {ctx}");
        }
        client.say("close");
        assert_eq!(client.line(), "0");
        assert_eq!(server.line().parse::<u64>().unwrap(), 3 * chunk);
        server.finish();
        client.finish();
        wait_for(Duration::from_secs(10), || {
            (values(CLOSED).get(&ci) == Some(&1)).then_some(())
        })
        .expect("client session closed");
        assert_payload(
            &format!("IPv{fam} final server rx"),
            values(RX).get(&si).copied(),
            3 * chunk,
        );
        assert_payload(
            &format!("IPv{fam} final client tx"),
            values(TX).get(&ci).copied(),
            3 * chunk,
        );
    }
}

#[test]
fn pmrep_shows_a_download_in_megabytes() {
    let _s = Session::running("tcplife");
    // A download: the client receives `down` bytes from the server while pmrep watches.
    let down = 3_145_728u64; // 3 MB
    let (server, mut client) = pair("4", down);
    let ci = inst(&client);
    client.say("close"); // half-close: the server answers with the download
    assert_eq!(client.line().parse::<u64>().unwrap(), down);
    let conf = std::env::temp_dir().join(format!("tcplife-pmrep-{}.conf", std::process::id()));
    std::fs::write(&conf, "[bcc-example]\ntimestamp = yes\ninterval = 1s\nbcc.proc.io.net.tcp.rx = ,,MB,raw,\nbcc.proc.io.net.tcp.tx = ,,MB,raw,\n").unwrap();
    // the process is still alive (it waits for us to close its stdin), so its row is there
    let out = run_ok(
        "pmrep",
        &[
            "-c",
            conf.to_str().unwrap(),
            "-i",
            &format!(".*{ci}.*"),
            "-s",
            "2",
            ":bcc-example",
        ],
    );
    eprintln!("{out}");
    server.finish();
    client.finish();
    let _ = std::fs::remove_file(&conf);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("b.p.i.n.t.rx") && l.contains("b.p.i.n.t.tx")),
        "columns: {out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().filter(|w| *w == ci).count() == 2),
        "instance {ci} in both columns: {out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().filter(|w| *w == "MB").count() == 2),
        "MB units: {out}"
    );
    let last = lines.last().unwrap();
    let cols: Vec<f64> = last
        .split_whitespace()
        .skip(1)
        .map(|w| w.parse().unwrap())
        .collect();
    let want = down as f64 / 1_048_576.0;
    assert!(
        (cols[0] - want).abs() < 0.001,
        "rx {} MB, downloaded {want} MB: {out}",
        cols[0]
    );
    assert!(cols[1] < 0.001, "tx {} MB: {out}", cols[1]);
}

#[test]
fn a_burst_of_1000_sessions_loses_none() {
    let _s = Session::running("tcplife");
    let n = 1000u64;
    let size = 100u64;
    let lost0 = value_u64(LOST, None).expect("events_lost");
    let untracked0 = value_u64(UNTRACKED, None).expect("sessions_untracked");
    let mut skipped_all = 0;
    for fam in ["4", "6"] {
        let watch = SkipWatch::start(TCPLIFE_HOOKS);
        let mut server = Peer::spawn(PEER, &["server", fam, &n.to_string(), "0"]);
        let port = server.line();
        let mut burst = Peer::spawn(
            PEER,
            &["burst", fam, &port, &n.to_string(), &size.to_string()],
        );
        assert_eq!(burst.line(), "done");
        assert_eq!(server.line().parse::<u64>().unwrap(), n * size);
        let (si, bi) = (inst(&server), inst(&burst));
        server.finish();
        burst.finish();
        let done = wait_for(Duration::from_secs(15), || {
            let c = values(CLOSED);
            (c.get(&si) == Some(&n) && c.get(&bi) == Some(&n)).then_some(())
        });
        let (o, c) = (values(OPENED), values(CLOSED));
        // State changes the kernel ran no program for (SkipWatch) are lost sessions that
        // are not the agent's fault: one session each at most.
        let skipped = watch.skipped_by_event()["sock/inet_sock_set_state"];
        skipped_all += skipped;
        eprintln!(
            "IPv{fam} burst of {n}: server opened {:?} closed {:?}, client opened {:?} closed {:?}; the kernel skipped the state program {skipped} times",
            o.get(&si),
            c.get(&si),
            o.get(&bi),
            c.get(&bi)
        );
        let exact = |what: &str, got: Option<&u64>, want: u64, per_skip: u64| {
            let got = got.copied().unwrap_or(0);
            assert!(
                got == want || (got < want && want - got <= skipped * per_skip),
                "IPv{fam} {what}: {got}, expected {want} (the kernel skipped the state program {skipped} times)"
            );
        };
        assert!(
            done.is_some() || skipped > 0,
            "IPv{fam}: not every session closed in the counts"
        );
        exact("server sessions opened", o.get(&si), n, 1);
        exact("client sessions opened", o.get(&bi), n, 1);
        exact("server sessions closed", c.get(&si), n, 1);
        exact("client sessions closed", c.get(&bi), n, 1);
        // Payload only: no FIN (rx) or SYN and FIN (tx) counted.
        exact("server rx", values(RX).get(&si), n * size, size);
        exact("client tx", values(TX).get(&bi), n * size, size);
    }
    let lost = value_u64(LOST, None).unwrap();
    let untracked = value_u64(UNTRACKED, None).unwrap();
    eprintln!("events_lost {lost0} -> {lost}, sessions_untracked {untracked0} -> {untracked}");
    assert_eq!(lost, 0, "ring buffer records lost");
    assert!(
        untracked - untracked0 <= skipped_all,
        "{} sessions not tracked (the kernel skipped the state program {skipped_all} times)",
        untracked - untracked0
    );
}

#[test]
fn the_sessions_layout_serves_the_dashboard_names() {
    let mut s = Session::start();
    s.with_config(
        "[pmda]\nmodules = tcplife\nprefix = bcc.\n\n[tcplife]\nmodule = tcplife\ncluster = 3\nlayout = sessions\nsession_count = 5\n",
    );
    s.assert_module_running("tcplife");
    // exactly the names grafana-pcp's "eBPF/BCC Overview" tcplife table queries, plus ours
    let names: Vec<String> = run_ok("pminfo", &["bcc.proc.io.net.tcp"])
        .lines()
        .map(str::to_string)
        .collect();
    let mut want: Vec<String> = TCPLIFE_SESSION_FIELDS
        .iter()
        .map(|n| format!("bcc.proc.io.net.tcp.{n}"))
        .collect();
    let mut got = names.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // the Python module's PMIDs: 149.3.0 pid ... 149.3.8 duration
    let pmids = run_ok(
        "pminfo",
        &[
            "-m",
            "bcc.proc.io.net.tcp.pid",
            "bcc.proc.io.net.tcp.rx",
            "bcc.proc.io.net.tcp.duration",
        ],
    );
    assert!(
        pmids.contains("PMID: 149.3.0")
            && pmids.contains("PMID: 149.3.7")
            && pmids.contains("PMID: 149.3.8"),
        "{pmids}"
    );

    let (up, down) = (54_321u64, 12_345u64);
    let (mut server, mut client) = pair("4", down);
    client.say(&format!("send {up}"));
    assert_eq!(client.line(), "sent");
    client.say("close");
    assert_eq!(client.line().parse::<u64>().unwrap(), down);
    assert_eq!(server.line().parse::<u64>().unwrap(), up);
    let (sp, cp) = (server.pid(), client.pid());
    server.finish();
    client.finish();
    // the table's columns: every session field but the module's own counters
    let columns: Vec<String> = TCPLIFE_SESSION_FIELDS
        .iter()
        .filter(|f| !["events_lost", "sessions_untracked"].contains(f))
        .map(|f| format!("bcc.proc.io.net.tcp.{f}"))
        .collect();
    let all: Vec<&str> = columns.iter().map(String::as_str).collect();
    let table = wait_for(Duration::from_secs(10), || {
        let f = fetch(&all);
        let pids = f.get("bcc.proc.io.net.tcp.pid")?;
        let has = |p: u32| pids.values().any(|v| v == &p.to_string());
        (has(sp) && has(cp)).then_some(f)
    })
    .unwrap_or_else(|| {
        panic!(
            "sessions of {sp} and {cp} not in the table: {:?}",
            fetch(&all)
        )
    });
    let row = |pid: u32| -> BTreeMap<&str, String> {
        let inst = table["bcc.proc.io.net.tcp.pid"]
            .iter()
            .find(|(_, v)| *v == &pid.to_string())
            .unwrap()
            .0
            .clone();
        all.iter()
            .map(|m| {
                (
                    m.rsplit('.').next().unwrap(),
                    table[*m].get(&inst).cloned().unwrap_or_default(),
                )
            })
            .collect()
    };
    let (c, sv) = (row(cp), row(sp));
    eprintln!("client row {c:?}\nserver row {sv:?}");
    for r in [&c, &sv] {
        assert_eq!(r["laddr"], "127.0.0.1");
        assert_eq!(r["daddr"], "127.0.0.1");
        assert!(r["comm"].starts_with("python"), "{r:?}");
        assert!(r["duration"].parse::<u64>().unwrap() > 0);
    }
    assert_eq!(
        c["dport"], sv["lport"],
        "the client talked to the server's port"
    );
    assert_eq!(c["lport"], sv["dport"]);
    assert_payload("session client tx", c["tx"].parse().ok(), up);
    assert_payload("session client rx", c["rx"].parse().ok(), down);
    assert_payload("session server rx", sv["rx"].parse().ok(), up);
    assert_payload("session server tx", sv["tx"].parse().ok(), down);
    // instances "0".."4", "0" the most recent
    let insts = run_ok("pminfo", &["-f", "bcc.proc.io.net.tcp.duration"]);
    for i in 0..5 {
        assert!(
            insts.contains(&format!("or \"{i}\"]")) || i >= table["bcc.proc.io.net.tcp.pid"].len(),
            "instance {i}: {insts}"
        );
    }
}

/// `reuser FAM PORT N`: waits for a line on stdin, then one session sending N bytes.
const REUSER: &str = r#"
import socket, sys
fam, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
af, host = (socket.AF_INET6, "::1") if fam == "6" else (socket.AF_INET, "127.0.0.1")
sys.stdin.readline()
c = socket.create_connection((host, port))
c.sendall(b"r" * n); c.shutdown(socket.SHUT_WR)
while c.recv(1 << 16):
    pass
print("done", flush=True)
"#;

/// A process that reuses the PID of one that had TCP sessions gets the instance from zero,
/// not the old process's counts plus its own. The PID is reused on purpose: the kernel's
/// next PID is set (kernel.ns_last_pid) just before the new process starts.
#[test]
fn a_reused_pid_starts_from_zero() {
    let _s = Session::running("tcplife");
    let mut server = Peer::spawn(PEER, &["server", "4", "2", "0"]);
    let port = server.line();
    let (first, second) = (111_111u64, 2_222u64);
    let mut a = Peer::spawn(PEER, &["client", "4", &port]);
    assert_eq!(a.line(), "connected");
    a.say(&format!("send {first}"));
    assert_eq!(a.line(), "sent");
    a.say("close");
    a.line();
    let (pid, name) = (a.pid(), inst(&a));
    a.finish();
    let seen = wait_for(Duration::from_secs(10), || {
        (values(CLOSED).get(&name) == Some(&1) && values(TX).get(&name) == Some(&first))
            .then_some(())
    });
    assert!(
        seen.is_some(),
        "the first process's session: tx {:?}",
        values(TX).get(&name)
    );
    // Start processes until one gets the same PID.
    let b = (0..50)
        .find_map(|_| {
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
                .expect("write kernel.ns_last_pid");
            let p = Peer::spawn(REUSER, &["4", &port, &second.to_string()]);
            if p.pid() == pid {
                Some(p)
            } else {
                drop(p); // its stdin closes: it exits without a session
                None
            }
        })
        .unwrap_or_else(|| panic!("could not start a process with PID {pid} again"));
    let mut b = b;
    // The agent tells the processes apart by start time, once a second.
    std::thread::sleep(Duration::from_millis(2500));
    b.say("go");
    assert_eq!(b.line(), "done");
    b.finish();
    let got = wait_for(Duration::from_secs(10), || {
        let (tx, closed) = (
            values(TX).get(&name).copied(),
            values(CLOSED).get(&name).copied(),
        );
        (closed == Some(1) && tx == Some(second)).then_some(())
    });
    assert!(
        got.is_some(),
        "PID {pid} reused: tx {:?} (the new process sent {second}, the old one {first}), sessions_closed {:?}, opened {:?}",
        values(TX).get(&name),
        values(CLOSED).get(&name),
        values(OPENED).get(&name)
    );
    assert_eq!(values(OPENED).get(&name), Some(&1));
    server.finish();
}
