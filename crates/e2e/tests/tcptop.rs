//! End-to-end tests of the tcptop module under the real pmcd: a loopback TCP connection
//! (two processes, IPv4 and IPv6) moves a known burst; within an interval or two the agent
//! must list the connection of each side, with its PID, command, addresses and ports as
//! the sockets themselves report them and the burst's bytes exactly (the truth: what the
//! peers' own calls returned). Addresses, ports and commands are refused to unprivileged
//! users. Only loopback addresses are used.

use e2e::*;
use std::collections::BTreeMap;
use std::time::Duration;

const FIELDS: [&str; 8] = [
    "pid", "comm", "laddr", "lport", "daddr", "dport", "rx", "tx",
];

/// The served rows: instance -> field -> value.
fn rows() -> BTreeMap<String, BTreeMap<&'static str, String>> {
    table_rows("bcc.proc.io.net.tcptop", &FIELDS)
}

/// The row with these fields, if served now.
fn find(want: &[(&str, String)]) -> Option<BTreeMap<&'static str, String>> {
    rows()
        .into_values()
        .find(|r| want.iter().all(|(k, v)| r.get(k) == Some(v)))
}

#[test]
fn connections_show_with_their_bytes_of_the_interval_ipv4_and_ipv6() {
    let _s = Session::running("tcptop");
    for (fam, host) in [("4", "127.0.0.1"), ("6", "::1")] {
        let (mut server, mut client, sport, cport) = tcp_peers(host, 0);
        let (cpid, spid) = (client.pid().to_string(), server.pid().to_string());
        let burst: u64 = 345_678;
        // A burst takes milliseconds; one that straddles an interval's end is split over
        // two intervals, so try again (a few times at most).
        let mut seen = None;
        for attempt in 1..=4 {
            client.say(&format!("send {burst}"));
            server.say(&format!("recv {burst}"));
            assert_eq!(client.line(), "ok");
            assert_eq!(server.line(), "ok");
            let c_want = [
                ("pid", cpid.clone()),
                ("lport", cport.clone()),
                ("dport", sport.clone()),
                ("tx", burst.to_string()),
            ];
            let s_want = [
                ("pid", spid.clone()),
                ("lport", sport.clone()),
                ("dport", cport.clone()),
                ("rx", burst.to_string()),
            ];
            let (mut c_row, mut s_row) = (None, None);
            wait_for(Duration::from_secs(4), || {
                c_row = c_row.take().or_else(|| find(&c_want));
                s_row = s_row.take().or_else(|| find(&s_want));
                (c_row.is_some() && s_row.is_some()).then_some(())
            });
            if let (Some(c), Some(sr)) = (c_row, s_row) {
                seen = Some((c, sr));
                break;
            }
            eprintln!(
                "IPv{fam} attempt {attempt}: burst not seen whole in one interval: {:?}",
                rows()
            );
        }
        let (c, sr) = seen.unwrap_or_else(|| {
            panic!("IPv{fam}: no interval showed the client's tx and the server's rx of {burst} bytes: {:?}", rows())
        });
        eprintln!("IPv{fam} client {c:?}\nIPv{fam} server {sr:?}");
        for r in [&c, &sr] {
            assert_eq!(r["laddr"], host);
            assert_eq!(r["daddr"], host);
            assert_eq!(r["comm"], "python3");
        }
        assert_eq!(c["rx"], "0");
        assert_eq!(sr["tx"], "0");
        // Idle for an interval: the connection leaves the table.
        let gone = wait_for(Duration::from_secs(5), || {
            find(&[("pid", cpid.clone()), ("lport", cport.clone())])
                .is_none()
                .then_some(())
        });
        assert!(
            gone.is_some(),
            "IPv{fam}: idle connection still listed: {:?}",
            rows()
        );
        client.finish();
        server.finish();
    }
}

#[test]
fn addresses_ports_and_commands_are_refused_to_unprivileged_users() {
    let _s = Session::running("tcptop");
    let (mut server, mut client, _, _) = tcp_peers("127.0.0.1", 0);
    // Keep the connection busy so the table has a row while nobody asks.
    let names: Vec<String> = FIELDS
        .iter()
        .map(|f| format!("bcc.proc.io.net.tcptop.{f}"))
        .collect();
    let mut nobody = String::new();
    for _ in 0..10 {
        client.say("send 100000");
        server.say("recv 100000");
        client.line();
        server.line();
        nobody = sh(&format!(
            "runuser -u nobody -- pminfo -f {} 2>&1",
            names.join(" ")
        ));
        if nobody.contains("bcc.proc.io.net.tcptop.tx\n    inst") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("{nobody}");
    for f in ["comm", "laddr", "lport", "daddr", "dport"] {
        assert!(
            nobody.contains(&format!("bcc.proc.io.net.tcptop.{f}\nError: No permission")),
            "{f} is not refused to nobody:\n{nobody}"
        );
    }
    for f in ["pid", "rx", "tx"] {
        assert!(
            nobody.contains(&format!("bcc.proc.io.net.tcptop.{f}\n    inst")),
            "{f} has no values for nobody:\n{nobody}"
        );
    }
    client.finish();
    server.finish();
}
