//! End-to-end test of the tcpperpid module under the real pmcd: two processes exchange known
//! byte counts over a loopback TCP connection (IPv4 and IPv6); each one's
//! bcc.proc.io.net.total.tx and rx (instance "%06d", id the PID) must grow by exactly what
//! its own calls moved. With lport set, only the connections of that local port count.

use e2e::*;
use std::time::Duration;

fn bytes(metric: &str, pid: u32) -> u64 {
    value_u64(
        &format!("bcc.proc.io.net.total.{metric}"),
        Some(&format!("{pid:06}")),
    )
    .unwrap_or(0)
}

/// Runs a connection on `port` (0: any) moving `up` bytes client to server and `down` back;
/// returns (server, client, the server's port), the processes still running.
fn exchange(host: &str, port: u16, up: u64, down: u64) -> (Peer, Peer, String) {
    let (mut server, mut client, sport, _) = tcp_peers(host, port);
    client.say(&format!("send {up}"));
    server.say(&format!("recv {up}"));
    server.say(&format!("send {down}"));
    client.say(&format!("recv {down}"));
    for _ in 0..2 {
        assert_eq!(client.line(), "ok");
        assert_eq!(server.line(), "ok");
    }
    (server, client, sport)
}

#[test]
fn per_process_bytes_are_exact_ipv4_and_ipv6() {
    let _s = Session::running("tcpperpid");
    for host in ["127.0.0.1", "::1"] {
        let (up, down) = (1_234_567, 76_543);
        let (server, client, _) = exchange(host, 0, up, down);
        let want = [
            ("tx", client.pid(), up),
            ("rx", client.pid(), down),
            ("rx", server.pid(), up),
            ("tx", server.pid(), down),
        ];
        let ok = wait_for(Duration::from_secs(5), || {
            want.iter()
                .all(|(m, p, n)| bytes(m, *p) == *n)
                .then_some(())
        });
        let got: Vec<_> = want
            .iter()
            .map(|(m, p, n)| (*m, *p, *n, bytes(m, *p)))
            .collect();
        eprintln!("{host}: (metric, pid, sent, agent) {got:?}");
        assert!(
            ok.is_some(),
            "{host}: per-process bytes not exact: (metric, pid, moved, agent) {got:?}"
        );
        let (sp, cp) = (server.pid(), client.pid());
        client.finish();
        server.finish();
        // Exited processes leave.
        let gone = wait_for(Duration::from_secs(5), || {
            let tx = values_u64("bcc.proc.io.net.total.tx");
            (!tx.contains_key(&format!("{sp:06}")) && !tx.contains_key(&format!("{cp:06}")))
                .then_some(())
        });
        assert!(gone.is_some(), "{host}: exited processes still listed");
    }
}

#[test]
fn lport_filter_counts_only_that_local_port() {
    let mut s = Session::start();
    let port: u16 = 47_123;
    s.with_config(&format!("[pmda]\nmodules = tcpperpid\nprefix = bcc.\n\n[tcpperpid]\nmodule = tcpperpid\ncluster = 11\nlport = {port}\n"));
    s.assert_module_running("tcpperpid");
    let (server, client, sport) = exchange("127.0.0.1", port, 100_000, 2_000);
    assert_eq!(sport, port.to_string());
    let (other_server, other_client, _) = exchange("::1", 0, 50_000, 500);
    // The server's side has local port 47123; the client's side has it as remote port.
    let ok = wait_for(Duration::from_secs(5), || {
        (bytes("rx", server.pid()) == 100_000 && bytes("tx", server.pid()) == 2_000).then_some(())
    });
    assert!(
        ok.is_some(),
        "server on lport {port}: rx {} tx {}",
        bytes("rx", server.pid()),
        bytes("tx", server.pid())
    );
    for p in [client.pid(), other_server.pid(), other_client.pid()] {
        assert_eq!(
            (bytes("tx", p), bytes("rx", p)),
            (0, 0),
            "process {p} (not on local port {port}) counted"
        );
    }
    for peer in [client, server, other_client, other_server] {
        peer.finish();
    }
}
