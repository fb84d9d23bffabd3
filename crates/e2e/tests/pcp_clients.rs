//! PCP's own per-process network clients against the netproc module, with a process that
//! streams TCP data at a rate it measures itself: pmlogconf's networking/perprocess-linux
//! group switches on (its probe finds values), and pmlogger recording that group records
//! the process's send rate; pcp-htop's TCP columns (run under tmux, its screen captured)
//! show the process. (proc.hog.net and pmrep's :proc-net: netproc.rs.)

use e2e::*;
use std::time::Duration;

/// The start of the workloads below: `s`, a loopback TCP connection of the process to itself
/// (a thread drains the other end).
const SELF_CONNECTED: &str = r#"
import socket, sys, threading, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
def sink():
    c = l.accept()[0]
    while c.recv(1 << 16):
        pass
threading.Thread(target=sink, daemon=True).start()
s = socket.create_connection(l.getsockname())
"#;

/// `stream SECS` (after SELF_CONNECTED): sends 20000 bytes every 50 ms for SECS seconds;
/// prints "up" at the start and "SENT_BYTES SECONDS" at the end, then waits for stdin to close.
const STREAM: &str = r#"
print("up", flush=True)
t0, sent = time.time(), 0
while time.time() - t0 < float(sys.argv[1]):
    sent += s.send(b"s" * 20000); time.sleep(0.05)
print(sent, time.time() - t0, flush=True)
sys.stdin.read()
"#;

/// The stream's instance in netproc's indom, once it has one.
fn instance_of(pid: u32) -> String {
    wait_for(Duration::from_secs(5), || {
        values_u64("bcc.proc.net.tcp.send.bytes")
            .into_keys()
            .find(|i| i.starts_with(&format!("{pid:06} ")))
    })
    .unwrap_or_else(|| panic!("process {pid} never became a netproc instance"))
}

fn own_rate(stream: &mut Peer) -> f64 {
    let l = stream.line();
    let mut f = l.split_whitespace().map(|v| v.parse::<f64>().unwrap());
    let (bytes, secs) = (f.next().unwrap(), f.next().unwrap());
    bytes / secs
}

#[test]
fn pmlogconf_switches_the_group_on_and_pmlogger_records_the_rate() {
    let _s = Session::running("netproc");
    let dir = std::env::temp_dir().join(format!("bcc-plc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut stream = Peer::spawn(&[SELF_CONNECTED, STREAM].concat(), &["8"]);
    assert_eq!(stream.line(), "up");
    let inst = instance_of(stream.pid());
    // A new pmlogger configuration: the group's probe must find values now.
    let cfg = dir.join("all.cfg");
    run_ok("pmlogconf", &["-c", "-q", cfg.to_str().unwrap()]);
    let all = std::fs::read_to_string(&cfg).unwrap();
    let group: String = all
        .split("#+ ")
        .find(|g| g.starts_with("networking/perprocess-linux:"))
        .unwrap_or_else(|| {
            panic!("no networking/perprocess-linux group in pmlogconf's output:\n{all}")
        })
        .to_string();
    assert!(
        group.starts_with("networking/perprocess-linux:y:"),
        "pmlogconf left the group off: {group}"
    );
    assert!(
        group.contains("bcc.proc.net"),
        "the group logs no bcc.proc.net: {group}"
    );
    // Record only that group, once a second.
    let body = &group[group.find("log advisory").expect("a log clause")..];
    let small = dir.join("net.cfg");
    std::fs::write(&small, format!("{}\n", &body[..=body.find('}').unwrap()])).unwrap();
    let archive = dir.join("net");
    run_ok(
        "pmlogger",
        &[
            "-c",
            small.to_str().unwrap(),
            "-t",
            "1",
            "-s",
            "5",
            "-l",
            dir.join("log").to_str().unwrap(),
            archive.to_str().unwrap(),
        ],
    );
    let quoted = format!("\"{inst}\"");
    let out = run_ok(
        "pmval",
        &[
            "-a",
            archive.to_str().unwrap(),
            "-f",
            "0",
            "-i",
            &quoted,
            "bcc.proc.net.tcp.send.bytes",
        ],
    );
    let rates: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect();
    let own = own_rate(&mut stream);
    eprintln!("pmval of the archive ({inst}):\n{out}\nthe process's own rate {own:.0} B/s");
    assert!(
        rates.len() >= 2,
        "the archive has no send rates for {inst}:\n{out}"
    );
    for r in &rates {
        assert!(
            (own * 0.7..own * 1.3).contains(r),
            "recorded rate {r} B/s, the process sent {own:.0} B/s:\n{out}"
        );
    }
    stream.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `burst` (after SELF_CONNECTED): 10 sends of 20000 bytes, then prints "CALLS BYTES" as its
/// own send calls returned them and idles until stdin closes.
const BURST: &str = r#"
calls = sent = 0
for _ in range(10):
    data = b"h" * 20000
    while data:
        n = s.send(data); calls += 1; sent += n; data = data[n:]
print(calls, sent, flush=True)
sys.stdin.read()
"#;

/// pcp-htop with PCP's tcp columns (TCPSB: bytes sent, TCPS: send calls), in a tmux
/// session; the captured screen's row of the process shows what its own calls returned.
#[test]
fn pcp_htop_tcp_columns_show_the_process() {
    let _s = Session::running("netproc");
    let home = std::env::temp_dir().join(format!("bcc-htop-{}", std::process::id()));
    std::fs::create_dir_all(home.join(".config/htop")).unwrap();
    std::fs::write(
        home.join(".config/htop/htoprc"),
        "fields=0 Dynamic(tcp_send_bytes) Dynamic(tcp_send_calls) 1\nsort_key=0\ntree_view=0\ndelay=10\n",
    )
    .unwrap();
    let mut burst = Peer::spawn(&[SELF_CONNECTED, BURST].concat(), &[]);
    let own = burst.line();
    let (calls, bytes) = own.split_once(' ').unwrap();
    let pid = burst.pid();
    instance_of(pid);
    let session = format!("bcchtop{}", std::process::id());
    let cmd = format!("HOME={} /usr/lib/pcp/bin/pcp-htop -p {pid}", home.display());
    run_ok(
        "tmux",
        &[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "30",
            &cmd,
        ],
    );
    let mut screen = String::new();
    let row = wait_for(Duration::from_secs(10), || {
        screen = run_ok("tmux", &["capture-pane", "-t", &session, "-p"]);
        screen
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
            .map(str::to_string)
    });
    run("tmux", &["kill-session", "-t", &session]);
    let _ = std::fs::remove_dir_all(&home);
    let row = row.unwrap_or_else(|| panic!("pcp-htop shows no row for {pid}:\n{screen}"));
    eprintln!("pcp-htop:\n{screen}");
    assert!(
        screen.contains("TCPSB") && screen.contains("TCPS"),
        "no TCP columns on pcp-htop's screen:\n{screen}"
    );
    let f: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        (f.get(1).copied(), f.get(2).copied()),
        (Some(bytes), Some(calls)),
        "pcp-htop's TCPSB/TCPS for {pid}, the process's own {bytes} bytes in {calls} calls: {row}"
    );
    burst.finish();
}
