//! End-to-end test of the tcpdrop module under the real pmcd, against the kernel's own
//! counts of the drops the test causes, in two network namespaces it creates:
//! - TC_EGRESS: a tc classifier on both ends of a veth pair drops every 5th TCP packet of a
//!   transfer (IPv4 and IPv6); tc's drop statistics of the two ends count them.
//! - NO_SOCKET: SYNs to a closed port over loopback (IPv4 and IPv6), each answered by a RST
//!   the namespace counts (Tcp OutRsts); UDP datagrams to a closed port (Udp NoPorts) drop
//!   for the same reason but are not TCP, so the default protocols = tcp leaves them out.
//!
//! The agent counts system-wide: a reason's delta may exceed the namespaces' by what the
//! host did meanwhile (its own OutRsts bound NO_SOCKET), never fall short.

use e2e::netns::LossyLink;
use e2e::*;
use std::time::Duration;

/// `transfer ADDR N`: a server and a client in one process would share a namespace; so
/// `server ADDR` listens, prints its port, and reads one connection to its end;
/// `client ADDR PORT N` sends N bytes. `refused ADDR K`: K connects to a closed port.
/// `udp ADDR K`: K datagrams to a closed port.
const PEER: &str = r#"
import socket, sys
role, addr = sys.argv[1], sys.argv[2]
af = socket.AF_INET6 if ":" in addr else socket.AF_INET
def closed_port():
    s = socket.socket(af); s.bind((addr, 0)); p = s.getsockname()[1]; s.close(); return p
if role == "server":
    l = socket.socket(af); l.bind((addr, 0)); l.listen(1)
    print(l.getsockname()[1], flush=True)
    c = l.accept()[0]
    while c.recv(1 << 16):
        pass
elif role == "client":
    s = socket.socket(af); s.connect((addr, int(sys.argv[3])))
    s.sendall(b"d" * int(sys.argv[4])); s.shutdown(socket.SHUT_WR); s.recv(1)
elif role == "refused":
    port = closed_port()
    for _ in range(int(sys.argv[3])):
        s = socket.socket(af)
        try:
            s.connect((addr, port)); sys.exit("connected to a closed port")
        except ConnectionRefusedError:
            pass
        s.close()
else:
    port = closed_port()
    s = socket.socket(af, socket.SOCK_DGRAM)
    for _ in range(int(sys.argv[3])):
        s.sendto(b"u", (addr, port))
"#;

const HOOKS: &[Hook] = &[("skb/kfree_skb", &["drop_btf", "drop_tp"])];

fn drops() -> std::collections::BTreeMap<String, u64> {
    values_u64("bcc.net.drop.packets")
}

fn host_counter(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (group, field) = name.split_once('.').unwrap();
    lines
        .chunks(2)
        .find_map(|p| {
            let (n, v) = (
                p[0].strip_prefix(&format!("{group}:"))?,
                p[1].strip_prefix(&format!("{group}:"))?,
            );
            let i = n.split_whitespace().position(|f| f == field)?;
            v.split_whitespace().nth(i)?.parse().ok()
        })
        .unwrap_or_else(|| panic!("{name} not in /proc/net/snmp"))
}

fn run_peer(end: &e2e::netns::End, args: &[&str]) -> String {
    let o = LossyLink::python(end, PEER, args)
        .wait_with_output()
        .unwrap();
    assert!(o.status.success(), "peer {args:?} failed");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn drops_per_reason_agree_with_the_kernels_counts() {
    let _s = Session::running("tcpdrop");
    let link = LossyLink::new("dr", 5);
    let skips = SkipWatch::start(HOOKS);
    let before = drops();
    let tc_before = LossyLink::tc_dropped(&link.a) + LossyLink::tc_dropped(&link.b);
    let ns_before = LossyLink::counters(&link.a);
    let host_rsts = host_counter("Tcp.OutRsts");

    // Transfers over the lossy link, IPv4 and IPv6.
    for addr in [link.b.v4, link.b.v6] {
        let mut server = LossyLink::python(&link.b, PEER, &["server", addr]);
        let mut port = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(server.stdout.as_mut().unwrap()),
            &mut port,
        )
        .unwrap();
        run_peer(&link.a, &["client", addr, port.trim(), "300000"]);
        assert!(server.wait().unwrap().success());
    }
    // Refused connections and UDP to closed ports, on the namespace's loopback.
    let (k, udp) = (10u64, 40u64);
    for addr in ["127.0.0.1", "::1"] {
        run_peer(&link.a, &["refused", addr, &k.to_string()]);
        run_peer(&link.a, &["udp", addr, &udp.to_string()]);
    }
    // The transfers' last packets (FINs, their retransmissions) are done when no socket is
    // left but TIME-WAIT.
    let settled = wait_for(Duration::from_secs(15), || {
        let o = LossyLink::command(&link.a, "ss", &["-Htan"])
            .output()
            .unwrap();
        let busy = String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| !l.starts_with("TIME-WAIT"));
        (!busy).then_some(())
    });
    assert!(settled.is_some(), "the link's connections did not close");

    let ns = LossyLink::counters(&link.a);
    let delta = |k: &str| ns[k] - ns_before[k];
    let (rsts, noports) = (
        delta("Tcp.OutRsts"),
        delta("Udp.NoPorts") + delta("Ip6.Udp6NoPorts"),
    );
    assert_eq!(
        rsts,
        2 * k,
        "the refused connects were not reset by the namespace"
    );
    assert_eq!(noports, 2 * udp, "UDP datagrams to closed ports: {noports}");
    let tc = LossyLink::tc_dropped(&link.a) + LossyLink::tc_dropped(&link.b) - tc_before;
    assert!(tc > 0, "the drop filter dropped nothing");

    let reason = |r: &str, now: &std::collections::BTreeMap<String, u64>| {
        now.get(r).copied().unwrap_or(0) - before.get(r).copied().unwrap_or(0)
    };
    let mut now = drops();
    wait_for(Duration::from_secs(5), || {
        now = drops();
        (reason("TC_EGRESS", &now) >= tc && reason("NO_SOCKET", &now) >= rsts).then_some(())
    });
    let host_extra = host_counter("Tcp.OutRsts") - host_rsts;
    let (tc_agent, nosock) = (reason("TC_EGRESS", &now), reason("NO_SOCKET", &now));
    eprintln!("TC_EGRESS: agent {tc_agent}, tc {tc}; NO_SOCKET: agent {nosock}, RSTs {rsts} (+{host_extra} on the host), UDP to closed ports {noports}; all: {now:?}");
    let skipped = skips.skipped();
    if skipped == 0 {
        assert_eq!(
            tc_agent, tc,
            "TC_EGRESS drops: agent {tc_agent}, tc's statistics {tc}"
        );
        assert!(
            nosock >= rsts,
            "NO_SOCKET drops: agent {nosock} < the namespace's RSTs {rsts}"
        );
    } else {
        eprintln!("the kernel skipped {skipped} runs of the programs");
    }
    assert!(
        nosock <= rsts + host_extra,
        "NO_SOCKET drops: agent {nosock} > RSTs {rsts} + host {host_extra}: are UDP datagrams counted ({noports} sent)?"
    );
    drop(link);
}

fn host_udp6_noports() -> u64 {
    std::fs::read_to_string("/proc/net/snmp6")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Udp6NoPorts")?.trim().parse().ok())
        .expect("Udp6NoPorts in /proc/net/snmp6")
}

/// With protocols = all, UDP's drops count too: NO_SOCKET is the RSTs plus the datagrams to
/// closed ports (the namespace's Tcp OutRsts and Udp/Udp6 NoPorts), within what the host's
/// own counters add.
#[test]
fn protocols_all_counts_udp_drops_too() {
    let mut s = Session::start();
    s.with_config("[pmda]\nmodules = tcpdrop\nprefix = bcc.\n\n[tcpdrop]\nmodule = tcpdrop\ncluster = 60\nprotocols = all\n");
    s.assert_module_running("tcpdrop");
    let link = LossyLink::new("da", 0);
    let before = drops();
    let ns_before = LossyLink::counters(&link.a);
    let host_before =
        host_counter("Tcp.OutRsts") + host_counter("Udp.NoPorts") + host_udp6_noports();
    let skips = SkipWatch::start(HOOKS);
    for addr in ["127.0.0.1", "::1"] {
        run_peer(&link.a, &["refused", addr, "10"]);
        run_peer(&link.a, &["udp", addr, "40"]);
    }
    let ns = LossyLink::counters(&link.a);
    let kernel: u64 = ["Tcp.OutRsts", "Udp.NoPorts", "Ip6.Udp6NoPorts"]
        .iter()
        .map(|k| ns[*k] - ns_before[*k])
        .sum();
    assert_eq!(
        kernel,
        2 * (10 + 40),
        "the namespace's RSTs and UDP NoPorts"
    );
    let nosock = |now: &std::collections::BTreeMap<String, u64>| {
        now.get("NO_SOCKET").copied().unwrap_or(0) - before.get("NO_SOCKET").copied().unwrap_or(0)
    };
    let mut now = drops();
    wait_for(Duration::from_secs(5), || {
        now = drops();
        (nosock(&now) >= kernel).then_some(())
    });
    let host = host_counter("Tcp.OutRsts") + host_counter("Udp.NoPorts") + host_udp6_noports()
        - host_before;
    let agent = nosock(&now);
    eprintln!("NO_SOCKET: agent {agent}, the namespace's RSTs and NoPorts {kernel} (+{host} on the host); all: {now:?}");
    if skips.skipped() == 0 {
        assert!(
            agent >= kernel,
            "NO_SOCKET drops: agent {agent} < the namespace's {kernel}"
        );
    }
    assert!(
        agent <= kernel + host,
        "NO_SOCKET drops: agent {agent} > {kernel} + host {host}"
    );
    drop(link);
}
