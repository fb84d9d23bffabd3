//! End-to-end test of the tcpaccept module under the real pmcd: a listener process accepts
//! a known number of loopback connections (IPv4 and IPv6), half with accept4() (Python's
//! socket.accept) and half with accept() (libc's, through ctypes). Every accept must be in
//! the table of recent accepts with the listener's PID and command, its address and port,
//! and the client's port as the client's socket reports it; the count must grow by at
//! least the accepts and at most the kernel's PassiveOpens (/proc/net/snmp) over the run.

use e2e::*;
use std::collections::BTreeMap;
use std::time::Duration;

const FIELDS: [&str; 6] = ["pid", "comm", "laddr", "lport", "raddr", "rport"];

/// `listen ADDR K`: listens, prints its port, accepts K connections (odd ones with libc's
/// accept(), even ones with accept4()), printing "ok" after each. `connect ADDR PORT K`:
/// K connections, printing each one's local port.
const PEER: &str = r#"
import ctypes, socket, sys, time
role, addr = sys.argv[1], sys.argv[2]
af = socket.AF_INET6 if ":" in addr else socket.AF_INET
if role == "listen":
    libc = ctypes.CDLL(None, use_errno=True)
    l = socket.socket(af); l.bind((addr, 0)); l.listen(16)
    print(l.getsockname()[1], flush=True)
    kept = []
    for i in range(int(sys.argv[3])):
        if i % 2:
            fd = libc.accept(l.fileno(), None, None)
            assert fd >= 0, ctypes.get_errno()
            kept.append(socket.socket(fileno=fd))
        else:
            kept.append(l.accept()[0])
        print("ok", flush=True)
    sys.stdin.read()
else:
    kept = []
    for _ in range(int(sys.argv[4])):
        s = socket.socket(af); s.connect((addr, int(sys.argv[3]))); kept.append(s)
        print(s.getsockname()[1], flush=True)
    sys.stdin.read()
"#;

fn passive_opens() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap();
    let tcp: Vec<&str> = text.lines().filter(|l| l.starts_with("Tcp:")).collect();
    let i = tcp[0]
        .split_whitespace()
        .position(|f| f == "PassiveOpens")
        .unwrap();
    tcp[1].split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// The table: instance -> field -> value.
fn rows() -> BTreeMap<String, BTreeMap<&'static str, String>> {
    table_rows("bcc.proc.io.net.tcpaccept", &FIELDS)
}

#[test]
fn accepts_show_with_the_listener_and_both_ends_ipv4_and_ipv6() {
    let _s = Session::running("tcpaccept");
    let k = 6;
    let count0 = value_u64("bcc.proc.io.net.tcpaccept.count", None).expect("tcpaccept.count");
    let lost0 = value_u64("bcc.proc.io.net.tcpaccept.lost", None).expect("tcpaccept.lost");
    let opens0 = passive_opens();
    let mut want = Vec::new();
    let mut peers = Vec::new();
    for host in ["127.0.0.1", "::1"] {
        let mut server = Peer::spawn(PEER, &["listen", host, &k.to_string()]);
        let port = server.line();
        let mut client = Peer::spawn(PEER, &["connect", host, &port, &k.to_string()]);
        for _ in 0..k {
            let cport = client.line();
            assert_eq!(server.line(), "ok");
            want.push(BTreeMap::from([
                ("pid", server.pid().to_string()),
                ("comm", "python3".to_string()),
                ("laddr", host.to_string()),
                ("lport", port.clone()),
                ("raddr", host.to_string()),
                ("rport", cport),
            ]));
        }
        peers.push((server, client));
    }
    let opens = passive_opens() - opens0;
    let mut table = BTreeMap::new();
    let found = wait_for(Duration::from_secs(5), || {
        table = rows();
        want.iter()
            .all(|w| table.values().any(|r| r == w))
            .then_some(())
    });
    let missing: Vec<_> = want
        .iter()
        .filter(|w| !table.values().any(|r| r == *w))
        .collect();
    assert!(
        found.is_some(),
        "accepts missing from the table: {missing:?}\ntable: {table:?}"
    );
    let count = value_u64("bcc.proc.io.net.tcpaccept.count", None).unwrap() - count0;
    let lost = value_u64("bcc.proc.io.net.tcpaccept.lost", None).unwrap() - lost0;
    eprintln!(
        "{} accepts made, count +{count}, PassiveOpens +{opens}, lost +{lost}",
        want.len()
    );
    assert!(
        count >= want.len() as u64,
        "count +{count} < {} accepts",
        want.len()
    );
    assert!(
        count <= opens,
        "count +{count} > the kernel's PassiveOpens +{opens}"
    );
    assert_eq!(lost, 0);
    for (server, client) in peers {
        client.finish();
        server.finish();
    }
}
