//! PCP's own per-process network clients against the netproc module, with a process that
//! streams TCP data at a rate it measures itself: pmlogconf's networking/perprocess-linux
//! group switches on (its probe finds values), and pmlogger recording that group records
//! the process's send rate; pcp-htop's TCP columns (run under tmux, its screen captured)
//! show the process. (proc.hog.net and pmrep's :proc-net: netproc.rs.)

use e2e::*;
use std::time::Duration;

/// `stream SECS`: a loopback TCP connection to itself (a sink thread), sending 20000 bytes
/// every 50 ms for SECS seconds; prints "up" at the start and "SENT_BYTES SECONDS" at the
/// end, then waits for stdin to close.
const STREAM: &str = r#"
import socket, sys, threading, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
def sink():
    c = l.accept()[0]
    while c.recv(1 << 16):
        pass
threading.Thread(target=sink, daemon=True).start()
s = socket.create_connection(l.getsockname())
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
    let s = Session::start();
    s.assert_module_running("netproc");
    let dir = std::env::temp_dir().join(format!("bcc-plc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut stream = Peer::spawn(STREAM, &["8"]);
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
