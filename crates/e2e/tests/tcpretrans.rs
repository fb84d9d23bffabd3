//! End-to-end test of the tcpretrans module under the real pmcd: TCP connections over a
//! veth pair between two network namespaces the test creates, whose ends drop every 5th TCP
//! packet they send and each flow's 2nd data packet to arrive (tc classifiers; these kernels
//! have no netem), so the kernel retransmits on every connection. The truth is each namespace's own TcpRetransSegs (/proc/net/snmp read inside
//! it): the segments the agent counts on the test's connections (IPv4 and IPv6) must add up
//! to the two namespaces' delta, and every connection it names must be one of the test's,
//! named "<saddr>:<lport>::<daddr>:<dport>" from the side that retransmitted.

use e2e::netns::{Loss, LossyLink};
use e2e::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// The agent's per-connection values of `metric` on the link's addresses.
fn on_link(metric: &str) -> BTreeMap<String, u64> {
    values_u64(metric)
        .into_iter()
        .filter(|(i, _)| i.starts_with("10.213.0.") || i.starts_with("fd00:213::"))
        .collect()
}

#[test]
fn retransmitted_segments_agree_with_the_namespaces_tcp_retrans_segs() {
    let s = Session::start();
    s.assert_module_running("tcpretrans");
    // Egress drops alone force few retransmissions (the sender sees its own failed sends),
    // and a family could see none; a lost arrival makes every connection retransmit.
    let link = LossyLink::with_loss(
        "rt",
        Loss {
            sent: 5,
            data_nth: 2,
        },
    );
    let skips = SkipWatch::start(TCPRETRANS_HOOKS);
    let before = on_link("bcc.io.net.tcp.retrans.segs");
    let before_counts = on_link("bcc.io.net.tcp.retrans.count");
    let kind_before = values_u64("bcc.io.net.tcp.retrans.kind.segs");
    let kernel_before = link.retrans_segs();
    let before_failed = on_link("bcc.io.net.tcp.retrans.failed");
    let fail_before: u64 = [&link.a, &link.b]
        .iter()
        .map(|e| {
            LossyLink::counters(e)
                .get("TcpExt.TCPRetransFail")
                .copied()
                .unwrap_or(0)
        })
        .sum();

    // Client in a, server in b, over IPv4 then IPv6: 4 connections of 200 kB each.
    let (k, n) = (4, 200_000);
    let conns = link.exchange_and_settle(k, n);
    let kernel = link.retrans_segs() - kernel_before;
    assert!(kernel > 0, "the drop filter forced no retransmission");

    let delta = |now: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        now.iter()
            .map(|(i, v)| (i.clone(), v - before.get(i).copied().unwrap_or(0)))
            .filter(|(_, d)| *d > 0)
            .collect()
    };
    let mut seen = BTreeMap::new();
    wait_for(Duration::from_secs(5), || {
        seen = delta(&on_link("bcc.io.net.tcp.retrans.segs"));
        (seen.values().sum::<u64>() >= kernel).then_some(())
    });
    let agent: u64 = seen.values().sum();
    eprintln!(
        "kernel TcpRetransSegs delta {kernel}, agent {agent} over {} connections: {seen:?}",
        seen.len()
    );
    let strangers: Vec<&String> = seen.keys().filter(|i| !conns.contains(*i)).collect();
    assert!(
        strangers.is_empty(),
        "connections the test did not make: {strangers:?} (made: {conns:?})"
    );
    for fam in ["10.213.0.", "fd00:213::"] {
        assert!(
            seen.keys().any(|i| i.starts_with(fam)),
            "no {fam}* connection retransmitted: {seen:?}"
        );
    }
    let skipped = skips.skipped();
    if skipped == 0 {
        assert_eq!(
            agent, kernel,
            "retransmitted segments: agent {agent}, the namespaces' TcpRetransSegs {kernel}"
        );
    } else {
        eprintln!("the kernel skipped {skipped} runs of the programs");
        assert!(
            agent < kernel,
            "agent {agent} > kernel {kernel} with {skipped} skipped runs"
        );
    }
    // Counts are packets, segments at least as many; the kinds cover every namespace.
    let counts: u64 = on_link("bcc.io.net.tcp.retrans.count")
        .iter()
        .map(|(i, v)| v - before_counts.get(i).copied().unwrap_or(0))
        .sum();
    assert!(
        counts > 0 && counts <= agent,
        "retransmissions {counts} vs segments {agent}"
    );
    let failed: u64 = on_link("bcc.io.net.tcp.retrans.failed")
        .values()
        .sum::<u64>()
        - before_failed.values().sum::<u64>();
    let kernel_fail: u64 = [&link.a, &link.b]
        .iter()
        .map(|e| {
            LossyLink::counters(e)
                .get("TcpExt.TCPRetransFail")
                .copied()
                .unwrap_or(0)
        })
        .sum::<u64>()
        - fail_before;
    eprintln!("failed sends: agent {failed}, the namespaces' TCPRetransFail {kernel_fail}");
    assert!(
        failed <= counts,
        "failed {failed} > retransmissions {counts}"
    );
    if skipped == 0 {
        // TCPRetransFail counts the segments of the failed sends (a GSO packet is several),
        // the agent the sends: each failed send the drop filter took is one or more.
        assert!(
            failed <= kernel_fail && (failed > 0) == (kernel_fail > 0),
            "failed retransmissions: agent {failed} sends, the namespaces' TCPRetransFail \
             {kernel_fail} segments"
        );
    }
    let kinds = values_u64("bcc.io.net.tcp.retrans.kind.segs");
    let kind_delta: u64 = kinds
        .iter()
        .map(|(i, v)| v - kind_before.get(i).copied().unwrap_or(0))
        .sum();
    assert!(
        kind_delta >= agent,
        "segments by kind {kind_delta} < on the link {agent}: {kinds:?}"
    );
    drop(link);
}
