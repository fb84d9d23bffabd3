//! End-to-end tests of the netproc module under the real pmcd: two loopback peers (separate
//! processes) move TCP and UDP data over IPv4 and IPv6, each counting what its own send and
//! receive calls returned (the workload's truth); the agent's per-process calls and bytes
//! must equal those counts exactly, its instances must be the proc PMDA's (id = PID, the
//! same name), and PCP's shipped consumers (proc.hog.net, pmrep's :proc-net) must show the
//! processes. Only loopback addresses are used.

use e2e::*;
use std::collections::BTreeMap;
use std::time::Duration;

const FIELDS: [&str; 8] = [
    "tcp.send.calls",
    "tcp.send.bytes",
    "tcp.recv.calls",
    "tcp.recv.bytes",
    "udp.send.calls",
    "udp.send.bytes",
    "udp.recv.calls",
    "udp.recv.bytes",
];

const HOOKS: &[Hook] = &[
    ("sock/sock_send_length", &["np_send_btf", "np_send_tp"]),
    ("sock/sock_recv_length", &["np_recv_btf", "np_recv_tp"]),
];

/// `server`: TCP listeners and UDP sockets on 127.0.0.1 and ::1, prints their ports; takes
/// one TCP connection on each listener, reads it to EOF, replies REPLY bytes, closes; then
/// echoes UDP_N datagrams on each UDP socket. `client P4 P6 U4 U6`: sends SIZES on each TCP
/// connection, half-closes, reads the reply to EOF; then UDP_N datagrams, each waiting for
/// its echo. `stream PORT SECS`: sends 20000 bytes every 50 ms for SECS seconds (server:
/// `sink`). Each counts the results of its own calls (one system call each) and prints
/// them, then waits for stdin to close.
const PEER: &str = r#"
import socket, sys, time
c = {k: 0 for k in ["tcp.send.calls", "tcp.send.bytes", "tcp.recv.calls", "tcp.recv.bytes",
                    "udp.send.calls", "udp.send.bytes", "udp.recv.calls", "udp.recv.bytes"]}
def sent(p, n):
    if n > 0:
        c[p + ".send.calls"] += 1; c[p + ".send.bytes"] += n
def got(p, b):
    if len(b) > 0:
        c[p + ".recv.calls"] += 1; c[p + ".recv.bytes"] += len(b)
    return b
def send_all(s, data):
    while data:
        n = s.send(data); sent("tcp", n); data = data[n:]
def drain(s):
    while got("tcp", s.recv(1 << 16)):
        pass
SIZES = [1, 100, 1000, 1460, 4000, 65000, 7]
REPLY, UDP_N = 50000, 5
L = {4: ("127.0.0.1", socket.AF_INET), 6: ("::1", socket.AF_INET6)}
role = sys.argv[1]
if role == "server":
    ls, us = {}, {}
    for f, (h, af) in L.items():
        ls[f] = socket.socket(af); ls[f].bind((h, 0)); ls[f].listen(4)
        us[f] = socket.socket(af, socket.SOCK_DGRAM); us[f].bind((h, 0)); us[f].settimeout(20)
    print(ls[4].getsockname()[1], ls[6].getsockname()[1], us[4].getsockname()[1], us[6].getsockname()[1], flush=True)
    conns = [ls[4].accept()[0], ls[6].accept()[0]]
    for s in conns:
        drain(s); send_all(s, b"r" * REPLY); s.close()
    for f in (4, 6):
        for _ in range(UDP_N):
            b, a = us[f].recvfrom(1 << 16); got("udp", b); sent("udp", us[f].sendto(b, a))
elif role == "client":
    p4, p6, u4, u6 = map(int, sys.argv[2:6])
    conns = []
    for f, p in ((4, p4), (6, p6)):
        s = socket.socket(L[f][1]); s.connect((L[f][0], p)); conns.append(s)
        for n in SIZES:
            send_all(s, b"t" * n)
        s.shutdown(socket.SHUT_WR)
    for s in conns:
        drain(s); s.close()
    for f, p in ((4, u4), (6, u6)):
        s = socket.socket(L[f][1], socket.SOCK_DGRAM); s.settimeout(20)
        for i in range(UDP_N):
            sent("udp", s.sendto(b"u" * (100 * i + 1), (L[f][0], p))); got("udp", s.recv(1 << 16))
elif role == "sink":
    l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
    print(l.getsockname()[1], flush=True)
    drain(l.accept()[0])
elif role == "stream":
    s = socket.socket(); s.connect(("127.0.0.1", int(sys.argv[2])))
    end = time.time() + float(sys.argv[3])
    while time.time() < end:
        send_all(s, b"s" * 20000); time.sleep(0.05)
    s.close()
print(" ".join("%s=%d" % kv for kv in c.items()), flush=True)
sys.stdin.read()
"#;

/// The counts a [`PEER`] printed.
fn counts(peer: &mut Peer) -> BTreeMap<String, u64> {
    peer.line()
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("k=v");
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// The agent's values of one process: metric suffix -> value, and the instance name.
fn agent_counts(pid: u32) -> (BTreeMap<String, u64>, Option<String>) {
    let names: Vec<String> = FIELDS.iter().map(|f| format!("bcc.proc.net.{f}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let all = fetch(&refs);
    let prefix = format!("{pid:06} ");
    let mut name = None;
    let mut out = BTreeMap::new();
    for (f, m) in FIELDS.iter().zip(&names) {
        let vals = all
            .get(m)
            .unwrap_or_else(|| panic!("{m}: no values at all (fetch: {all:?})"));
        for (inst, v) in vals {
            if let Some(i) = inst.as_deref().filter(|i| i.starts_with(&prefix)) {
                name = Some(i.to_string());
                out.insert(f.to_string(), v.parse().unwrap());
            }
        }
    }
    (out, name)
}

/// Instance id of `name` in a metric's indom, from pminfo's `inst [ID or "NAME"]` lines.
fn instance_id(metric: &str, name: &str) -> Option<u32> {
    let out = run_ok("pminfo", &["-f", metric]);
    let want = format!("\"{name}\"]");
    out.lines().find(|l| l.contains(&want)).and_then(|l| {
        l.trim()
            .strip_prefix("inst [")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The proc PMDA's instance name for `pid`.
fn proc_pmda_name(pid: u32) -> Option<String> {
    let out = run_ok("pminfo", &["-f", "proc.psinfo.pid"]);
    let want = format!("inst [{pid} or \"");
    out.lines().find_map(|l| {
        l.trim()
            .strip_prefix(&want)?
            .split_once("\"]")
            .map(|(n, _)| n.to_string())
    })
}

#[test]
fn calls_and_bytes_per_process_equal_the_workloads_own_counts() {
    let _s = Session::running("netproc");
    let skips = SkipWatch::start(HOOKS);
    let mut server = Peer::spawn(PEER, &["server"]);
    let ports = server.line();
    let mut args = vec!["client"];
    args.extend(ports.split_whitespace());
    let mut client = Peer::spawn(PEER, &args);
    let truth = [
        (client.pid(), counts(&mut client)),
        (server.pid(), counts(&mut server)),
    ];
    // The workload agrees with itself: what one side sent the other received.
    let (c, sv) = (&truth[0].1, &truth[1].1);
    assert_eq!(c["tcp.send.bytes"], sv["tcp.recv.bytes"]);
    assert_eq!(c["tcp.recv.bytes"], sv["tcp.send.bytes"]);
    assert_eq!(c["udp.send.bytes"], sv["udp.recv.bytes"]);
    assert!(
        truth.iter().all(|(_, t)| t.values().all(|v| *v > 0)),
        "{truth:?}"
    );
    let mut failures = Vec::new();
    for (pid, want) in &truth {
        let (got, name) = agent_counts(*pid);
        let name =
            name.unwrap_or_else(|| panic!("process {pid} is not an instance of bcc.proc.net.*"));
        eprintln!(
            "{name}: agent {got:?}\n{:>w$}  truth {want:?}",
            "",
            w = name.len()
        );
        if &got != want {
            failures.push(format!("{name}: agent {got:?}, its own calls {want:?}"));
        }
        // Named and numbered as PCP's proc PMDA names the process.
        assert_eq!(
            Some(name.clone()),
            proc_pmda_name(*pid),
            "instance name vs the proc PMDA's"
        );
        assert_eq!(
            instance_id("bcc.proc.net.tcp.send.bytes", &name),
            Some(*pid),
            "instance id is not the PID"
        );
    }
    if !failures.is_empty() {
        let skipped = skips.skipped_by_event();
        panic!(
            "counts differ ({}); kernel-skipped program runs: {skipped:?}",
            failures.join("; ")
        );
    }
    // Exited processes leave the instance domain.
    let (cp, sp) = (client.pid(), server.pid());
    client.finish();
    server.finish();
    let gone = wait_for(Duration::from_secs(10), || {
        let (_, a) = agent_counts(cp);
        let (_, b) = agent_counts(sp);
        (a.is_none() && b.is_none()).then_some(())
    });
    assert!(
        gone.is_some(),
        "exited processes {cp}, {sp} are still instances"
    );
}

/// `PORT BYTES`: waits for "go" on stdin (exits without it), sends one datagram of BYTES to
/// 127.0.0.1:PORT, prints "sent", then waits for stdin to close.
const SENDER: &str = r#"
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
if sys.stdin.readline().strip() != "go":
    sys.exit(0)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
assert s.sendto(b"x" * n, ("127.0.0.1", port)) == n
print("sent", flush=True)
sys.stdin.read()
"#;

/// A process that gets the PID of one that sent before is another instance: its own name
/// (the agent reads a name once per process and keeps it) and counts from zero. The PID is
/// reused on purpose: the kernel's next PID is set (kernel.ns_last_pid) just before the new
/// process starts.
#[test]
fn a_reused_pid_is_a_new_process_with_its_own_name_and_counts() {
    let s = Session::start();
    s.assert_module_running("netproc");
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP sink");
    let port = sink.local_addr().unwrap().port().to_string();
    let (first, second) = (1111u64, 222u64);
    let mut a = Peer::spawn_named("netproc-first", SENDER, &[&port, &first.to_string()]);
    a.say("go");
    assert_eq!(a.line(), "sent");
    let pid = a.pid();
    let shown = |who: &str, bytes: u64| {
        wait_for(Duration::from_secs(5), || {
            let (c, name) = agent_counts(pid);
            (c.get("udp.send.bytes") == Some(&bytes))
                .then_some(name)
                .flatten()
        })
        .unwrap_or_else(|| {
            panic!(
                "{who} (PID {pid}) never showed udp.send.bytes {bytes}: {:?}",
                agent_counts(pid)
            )
        })
    };
    // The agent has named the first process (and keeps the name) before it exits.
    assert_eq!(
        shown("the first process", first),
        format!("{pid:06} netproc-first")
    );
    a.finish();
    let mut b = (0..50)
        .find_map(|_| {
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
                .expect("write kernel.ns_last_pid");
            let p = Peer::spawn_named("netproc-second", SENDER, &[&port, &second.to_string()]);
            (p.pid() == pid).then_some(p) // another one's stdin closes: it exits unsent
        })
        .unwrap_or_else(|| panic!("could not start a process with PID {pid} again"));
    b.say("go");
    assert_eq!(b.line(), "sent");
    let name = shown("the process that reused the PID", second);
    assert_eq!(
        name,
        format!("{pid:06} netproc-second"),
        "the reused PID kept the old name"
    );
    assert_eq!(
        instance_id("bcc.proc.net.udp.send.bytes", &name),
        Some(pid),
        "instance id is not the PID"
    );
    let (got, _) = agent_counts(pid);
    assert_eq!(got.get("udp.send.calls"), Some(&1), "{got:?}");
    b.finish();
}

/// The shipped consumers: /etc/pcp/derived/proc.conf's proc.hog.net and pmrep's
/// :proc-net view (/etc/pcp/pmrep/proc.conf) show a process that streams over TCP.
#[test]
fn proc_hog_net_and_pmrep_proc_net_show_the_process() {
    let _s = Session::running("netproc");
    let mut sink = Peer::spawn(PEER, &["sink"]);
    let port = sink.line();
    let mut stream = Peer::spawn(PEER, &["stream", &port, "8"]);
    let inst = wait_for(Duration::from_secs(5), || agent_counts(stream.pid()).1)
        .expect("the streaming process never became an instance");
    // ~400 kB/s sent: its rate must show, and not be off by an order of magnitude.
    // pmval takes a list of names: quote the one with a space.
    let quoted = format!("\"{inst}\"");
    let hog = run_ok(
        "pmval",
        &[
            "-s",
            "3",
            "-t",
            "1",
            "-f",
            "0",
            "-i",
            &quoted,
            "proc.hog.net",
        ],
    );
    let last: f64 = hog
        .lines()
        .rev()
        .find_map(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("proc.hog.net for {inst}: no value:\n{hog}"));
    eprintln!("proc.hog.net {inst}:\n{hog}");
    assert!(
        hog.contains("byte / sec") || hog.contains("Kbyte / sec"),
        "units: {hog}"
    );
    let bytes_per_sec = if hog.contains("Kbyte / sec") {
        last * 1024.0
    } else {
        last
    };
    assert!(
        (40_000.0..4_000_000.0).contains(&bytes_per_sec),
        "proc.hog.net of {inst}: {bytes_per_sec} B/s, the process sends about 400000"
    );
    let rep = run_ok(
        "pmrep",
        &["-s", "3", "-t", "1", "-o", "csv", "-i", &inst, ":proc-net"],
    );
    eprintln!("pmrep :proc-net:\n{rep}");
    let header = rep.lines().next().unwrap_or_default();
    assert!(
        header.contains("bcc.proc.net.tcp.send.bytes") && header.contains(&inst),
        "pmrep :proc-net has no column for {inst}:\n{rep}"
    );
    let col = header
        .split(',')
        .position(|h| h.contains("tcp.send.bytes"))
        .unwrap();
    let sent: f64 = rep
        .lines()
        .last()
        .and_then(|l| l.split(',').nth(col)?.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("pmrep :proc-net: no TCP send value for {inst}:\n{rep}"));
    assert!(
        sent > 0.0,
        "pmrep :proc-net shows no TCP send rate for {inst}:\n{rep}"
    );
    let _ = counts(&mut stream);
    stream.finish();
    let _ = counts(&mut sink);
    sink.finish();
}

/// Newer PCP's clients read pmdabpf's bpf.proc.net.*: Install derives those names from
/// netproc's (/etc/pcp/derived/bcc-bpf-proc-net.conf) when no agent serves them. Through
/// them, a process's TCP sends (packets = calls, bytes) equal what its own calls returned,
/// under the same instance.
#[test]
fn bpf_proc_net_names_are_derived_when_pmdabpf_lacks_them() {
    let _s = Session::running("netproc");
    let file = "/etc/pcp/derived/bcc-bpf-proc-net.conf";
    assert!(
        std::path::Path::new(file).exists(),
        "{file} not installed (pmda/Install adds it when nothing serves bpf.proc.net)"
    );
    let mut sink = Peer::spawn(PEER, &["sink"]);
    let port = sink.line();
    let mut stream = Peer::spawn(PEER, &["stream", &port, "1"]);
    let own = counts(&mut stream);
    let inst = wait_for(Duration::from_secs(5), || {
        let (c, name) = agent_counts(stream.pid());
        (c.get("tcp.send.bytes") == own.get("tcp.send.bytes"))
            .then_some(name)
            .flatten()
    })
    .unwrap_or_else(|| panic!("netproc never showed the stream's {own:?}"));
    let derived = fetch(&[
        "bpf.proc.net.tcp.send.bytes",
        "bpf.proc.net.tcp.send.packets",
    ]);
    for (metric, truth) in [
        ("bpf.proc.net.tcp.send.bytes", "tcp.send.bytes"),
        ("bpf.proc.net.tcp.send.packets", "tcp.send.calls"),
    ] {
        let v: Option<u64> = derived
            .get(metric)
            .and_then(|m| m.get(&Some(inst.clone())))
            .and_then(|v| v.parse().ok());
        assert_eq!(
            v,
            own.get(truth).copied(),
            "{metric} [{inst}]: {v:?}, the process's own {truth} {:?}",
            own.get(truth)
        );
    }
    eprintln!("bpf.proc.net.tcp.send.* [{inst}] = the stream's {own:?}");
    stream.finish();
    let _ = counts(&mut sink);
    sink.finish();
}
