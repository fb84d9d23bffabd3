//! grafana-pcp's "PCP Vector: eBPF/BCC Overview" dashboard
//! (src/datasources/vector/dashboards/pcp-vector-bcc-overview.jsonnet) against the agent,
//! the way the dashboard reads it: through pmproxy's REST API (/pmapi/fetch, /pmapi/indom).
//! The dashboard cannot be downloaded here; QUERIES is its panels' metric queries, written
//! down from docs/research (anchors-modules.md § 3.1). It needs runqlat, biolatency, tcptop
//! and tcplife with layout = sessions (its "tcp lifespans" table). Its tables' columns
//! (comm, addresses, ports) are sensitive: pmproxy gets them only over pmcd's Unix socket
//! (hostspec `local:`, the datasource's "Host" setting) as a user the agent allows (root
//! here; for a pmproxy service, `allowed_users = pcp`); over TCP they stay empty.

use e2e::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Panel -> the metrics it queries.
const QUERIES: &[(&str, &[&str])] = &[
    ("run queue latency (us), heatmap", &["bcc.runq.latency"]),
    ("disk latency (us), heatmap", &["bcc.disk.all.latency"]),
    (
        "active TCP sessions, table",
        &[
            "bcc.proc.io.net.tcptop.pid",
            "bcc.proc.io.net.tcptop.comm",
            "bcc.proc.io.net.tcptop.laddr",
            "bcc.proc.io.net.tcptop.lport",
            "bcc.proc.io.net.tcptop.daddr",
            "bcc.proc.io.net.tcptop.dport",
            "bcc.proc.io.net.tcptop.rx",
            "bcc.proc.io.net.tcptop.tx",
        ],
    ),
    (
        "tcp lifespans, table",
        &[
            "bcc.proc.io.net.tcp.pid",
            "bcc.proc.io.net.tcp.comm",
            "bcc.proc.io.net.tcp.laddr",
            "bcc.proc.io.net.tcp.lport",
            "bcc.proc.io.net.tcp.daddr",
            "bcc.proc.io.net.tcp.dport",
            "bcc.proc.io.net.tcp.rx",
            "bcc.proc.io.net.tcp.tx",
            "bcc.proc.io.net.tcp.duration",
        ],
    ),
];

const CONF: &str = "[pmda]\nmodules = runqlat, biolatency, tcptop, tcplife\nprefix = bcc.\n\n\
[runqlat]\nmodule = runqlat\n\n[biolatency]\nmodule = biolatency\n\n[tcptop]\nmodule = tcptop\n\n\
[tcplife]\nmodule = tcplife\nlayout = sessions\n";

const PORT: &str = "44399";

/// Loopback traffic: short sessions (tcplife) and a connection kept busy (tcptop).
const TRAFFIC: &str = r#"
import socket, threading, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(16)
def serve():
    while True:
        c = l.accept()[0]
        while c.recv(1 << 16):
            pass
        c.close()
threading.Thread(target=serve, daemon=True).start()
for _ in range(3):
    s = socket.create_connection(l.getsockname()); s.sendall(b"x" * 10000); s.close()
print("ready", flush=True)
s = socket.create_connection(l.getsockname())
end = time.time() + 30
while time.time() < end:
    s.sendall(b"y" * 50000); time.sleep(0.1)
"#;

/// pmproxy on loopback, ours alone (its own port and socket), stopped at the end.
struct Pmproxy(Child);

impl Pmproxy {
    fn start() -> Pmproxy {
        let bin = "/usr/lib/pcp/bin/pmproxy";
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} missing: pmproxy comes with the pcp package (./test.sh installs it)"
        );
        let child = Command::new(bin)
            .args([
                "-f",
                "-A",
                "-U",
                "root",
                "-i",
                "127.0.0.1",
                "-p",
                PORT,
                "-s",
                "/tmp/pcp-bcc-e2e-pmproxy.sock",
                "-l",
                "/tmp/pcp-bcc-e2e-pmproxy.log",
            ])
            .spawn()
            .expect("start pmproxy");
        let p = Pmproxy(child);
        wait_for(Duration::from_secs(10), || {
            get("/pmapi/context").contains("context").then_some(())
        })
        .expect("pmproxy did not answer on 127.0.0.1 (log: /tmp/pcp-bcc-e2e-pmproxy.log)");
        p
    }
}

impl Drop for Pmproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(path: &str) -> String {
    let o = run(
        "curl",
        &[
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{PORT}{path}"),
        ],
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Instance ids with a value in a /pmapi/fetch answer for one metric.
fn instances(json: &str) -> Vec<u64> {
    json.split("\"instance\":")
        .skip(1)
        .filter_map(|s| s.split([',', '}']).next()?.trim().parse().ok())
        .collect()
}

#[test]
fn every_panel_query_returns_data_through_pmproxy() {
    let mut s = Session::start();
    s.with_config(CONF);
    let mut traffic = Command::new("/usr/bin/python3")
        .args(["-c", TRAFFIC])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 for the loopback traffic");
    let mut out = BufReader::new(traffic.stdout.take().unwrap());
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    assert_eq!(l.trim(), "ready");
    // Block I/O for the disk latency panel: direct writes reach the disk.
    sh("dd if=/dev/zero of=/var/tmp/pcp-bcc-e2e-dash bs=64k count=64 oflag=direct,sync status=none; rm -f /var/tmp/pcp-bcc-e2e-dash");
    let _proxy = Pmproxy::start();
    let mut missing = Vec::new();
    for (panel, metrics) in QUERIES {
        // The table panels join their columns by instance id: every column needs a value
        // for some common instance.
        let answer = wait_for(Duration::from_secs(10), || {
            let per: Vec<(String, Vec<u64>)> = metrics
                .iter()
                .map(|m| {
                    (
                        m.to_string(),
                        instances(&get(&format!("/pmapi/fetch?hostspec=local:&names={m}"))),
                    )
                })
                .collect();
            let common = per[0]
                .1
                .iter()
                .any(|i| per.iter().all(|(_, v)| v.contains(i)));
            common.then_some(per)
        });
        match answer {
            Some(per) => eprintln!("{panel}: {per:?}"),
            None => {
                let now: Vec<String> = metrics
                    .iter()
                    .map(|m| get(&format!("/pmapi/fetch?hostspec=local:&names={m}")))
                    .collect();
                missing.push(format!(
                    "{panel}: no row/instance with values in every query: {now:?}"
                ));
            }
        }
    }
    // The heatmaps parse instance names "<low>-<high>".
    for m in ["bcc.runq.latency", "bcc.disk.all.latency"] {
        let indom = get(&format!("/pmapi/indom?hostspec=local:&name={m}"));
        let names: Vec<&str> = indom
            .split("\"name\":\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        let ok = !names.is_empty()
            && names.iter().all(|n| {
                n.split_once('-')
                    .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
            });
        if !ok {
            missing.push(format!(
                "{m}: heatmap instance names are not <low>-<high>: {indom}"
            ));
        }
    }
    // Without credentials (pmproxy's default, TCP to pmcd) the sensitive columns are empty,
    // the counters not.
    let tcp = |m: &str| instances(&get(&format!("/pmapi/fetch?names={m}")));
    if !tcp("bcc.proc.io.net.tcptop.comm").is_empty() || tcp("bcc.proc.io.net.tcptop.tx").is_empty()
    {
        missing.push(format!(
            "over TCP: comm {:?} (want none), tx {:?} (want some)",
            tcp("bcc.proc.io.net.tcptop.comm"),
            tcp("bcc.proc.io.net.tcptop.tx")
        ));
    }
    let _ = traffic.kill();
    let _ = traffic.wait();
    let _ = std::io::stderr().flush();
    assert!(
        missing.is_empty(),
        "dashboard queries without data:\n{}",
        missing.join("\n")
    );
}
