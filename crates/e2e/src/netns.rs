//! A lossy link for the network tests: two network namespaces joined by a veth pair, IPv4
//! and IPv6 on each end, and tc classifiers on each end that drop TCP packets ([`Loss`]; the
//! kernels here are built without netem). Each namespace keeps its own SNMP counters
//! (/proc/net/snmp, /proc/net/netstat read inside it), the kernel's truth for what happened
//! on the link alone.

use crate::{run, run_ok};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A bulk TCP workload for [`LossyLink::python`]. `server ADDR K`: listens on ADDR, prints
/// its port, takes K connections one after the other, reads each to its end and closes it.
/// `client ADDR PORT K N`: K times, connects, sends N bytes, ends its side, waits for the
/// server's close, and prints its local port.
pub const BULK_PEER: &str = r#"
import socket, sys
role, addr = sys.argv[1], sys.argv[2]
af = socket.AF_INET6 if ":" in addr else socket.AF_INET
if role == "server":
    l = socket.socket(af); l.bind((addr, 0)); l.listen(8)
    print(l.getsockname()[1], flush=True)
    for _ in range(int(sys.argv[3])):
        c = l.accept()[0]
        while c.recv(1 << 16):
            pass
        c.close()
else:
    port, k, n = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    for _ in range(k):
        s = socket.socket(af); s.connect((addr, port))
        s.sendall(b"r" * n); s.shutdown(socket.SHUT_WR)
        while s.recv(1 << 16):
            pass
        print(s.getsockname()[1], flush=True)
        s.close()
"#;

/// One end of the link.
pub struct End {
    pub ns: String,
    pub dev: &'static str,
    pub v4: &'static str,
    pub v6: &'static str,
}

/// What the link's drop filters (bpf/tcdrop.bpf.c) take; 0 turns one off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    /// Every `sent`-th TCP packet leaving either end (tc egress). The sender's own transmit
    /// fails (the kernel's drop reason is TC_EGRESS; a failed retransmission counts in
    /// TCPRetransFail), so TCP knows the packet never left and sends new data again as new
    /// data: only the drops TCP cannot see (a SYN, a SYN-ACK, an ACK whose loss leaves the
    /// peer waiting) force retransmissions, and a few connections may see none.
    pub sent: u32,
    /// Each TCP flow's `data_nth`-th packet carrying data that arrives at either end (tc
    /// ingress), once: lost on the wire as far as the sender knows, so each flow with that
    /// many data packets retransmits, and its retransmission passes.
    pub data_nth: u32,
}

pub struct LossyLink {
    pub a: End,
    pub b: End,
    dir: PathBuf,
}

impl LossyLink {
    /// Creates the namespaces (named after `tag` and this process), the veth pair with
    /// 10.213.0.1-2/24 and fd00:213::1-2/64, and drops every `every`-th TCP packet leaving
    /// either end (0: no loss).
    pub fn new(tag: &str, every: u32) -> LossyLink {
        Self::with_loss(
            tag,
            Loss {
                sent: every,
                ..Loss::default()
            },
        )
    }

    /// [`LossyLink::new`] with the drops of `loss`.
    pub fn with_loss(tag: &str, loss: Loss) -> LossyLink {
        let me = std::process::id();
        let link = LossyLink {
            a: End {
                ns: format!("bcc{tag}a{me}"),
                dev: "veth0",
                v4: "10.213.0.1",
                v6: "fd00:213::1",
            },
            b: End {
                ns: format!("bcc{tag}b{me}"),
                dev: "veth1",
                v4: "10.213.0.2",
                v6: "fd00:213::2",
            },
            dir: std::env::temp_dir().join(format!("bcc-{tag}-{me}")),
        };
        for e in [&link.a, &link.b] {
            run("ip", &["netns", "del", &e.ns]);
            run_ok("ip", &["netns", "add", &e.ns]);
        }
        run_ok(
            "ip",
            &[
                "-n", &link.a.ns, "link", "add", link.a.dev, "type", "veth", "peer", "name",
                link.b.dev, "netns", &link.b.ns,
            ],
        );
        for e in [&link.a, &link.b] {
            run_ok("ip", &["-n", &e.ns, "link", "set", "lo", "up"]);
            run_ok(
                "ip",
                &[
                    "-n",
                    &e.ns,
                    "addr",
                    "add",
                    &format!("{}/24", e.v4),
                    "dev",
                    e.dev,
                ],
            );
            run_ok(
                "ip",
                &[
                    "-n",
                    &e.ns,
                    "addr",
                    "add",
                    &format!("{}/64", e.v6),
                    "dev",
                    e.dev,
                    "nodad",
                ],
            );
            run_ok("ip", &["-n", &e.ns, "link", "set", e.dev, "up"]);
        }
        if loss != Loss::default() {
            let obj = link.drop_object(loss);
            for e in [&link.a, &link.b] {
                run_ok(
                    "ip",
                    &[
                        "netns", "exec", &e.ns, "tc", "qdisc", "add", "dev", e.dev, "clsact",
                    ],
                );
                for (on, hook, sec) in [
                    (loss.sent, "egress", "tc"),
                    (loss.data_nth, "ingress", "tc_data"),
                ] {
                    if on > 0 {
                        run_ok(
                            "ip",
                            &[
                                "netns", "exec", &e.ns, "tc", "filter", "add", "dev", e.dev, hook,
                                "bpf", "da", "obj", &obj, "sec", sec,
                            ],
                        );
                    }
                }
            }
        }
        // Static neighbours: no ARP or neighbour discovery on the link, whose first
        // packets the drop filter would otherwise delay.
        for (from, to) in [(&link.a, &link.b), (&link.b, &link.a)] {
            let mac = run_ok(
                "ip",
                &[
                    "netns",
                    "exec",
                    &to.ns,
                    "cat",
                    &format!("/sys/class/net/{}/address", to.dev),
                ],
            );
            for addr in [to.v4, to.v6] {
                run_ok(
                    "ip",
                    &[
                        "-n",
                        &from.ns,
                        "neigh",
                        "replace",
                        addr,
                        "lladdr",
                        mac.trim(),
                        "dev",
                        from.dev,
                        "nud",
                        "permanent",
                    ],
                );
            }
        }
        link
    }

    /// tcdrop.bpf.c built for `loss`.
    fn drop_object(&self, loss: Loss) -> String {
        std::fs::create_dir_all(&self.dir).expect("temp dir");
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/tcdrop.bpf.c");
        let inc = concat!(env!("CARGO_MANIFEST_DIR"), "/../pmdabcc/src/bpf");
        let obj = self.dir.join("tcdrop.bpf.o").to_string_lossy().into_owned();
        run_ok(
            "clang",
            &[
                "-O2",
                "-g",
                "-target",
                "bpf",
                &format!("-DEVERY={}", loss.sent.max(1)),
                &format!("-DDATA_NTH={}", loss.data_nth.max(1)),
                "-I",
                inc,
                "-c",
                src,
                "-o",
                &obj,
            ],
        );
        obj
    }

    /// A command run inside `end`'s namespace.
    pub fn command(end: &End, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &end.ns, prog]).args(args);
        c
    }

    /// Starts a Python script inside `end`'s namespace, stdout piped.
    pub fn python(end: &End, script: &str, args: &[&str]) -> Child {
        let mut a = vec!["-c", script];
        a.extend_from_slice(args);
        Self::command(end, "python3", &a)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3 in the namespace")
    }

    /// The namespace's SNMP counters, "Group.Name" -> value, from /proc/net/snmp,
    /// /proc/net/snmp6 and /proc/net/netstat read inside it.
    pub fn counters(end: &End) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for file in ["/proc/net/snmp", "/proc/net/netstat"] {
            let text = run_ok("ip", &["netns", "exec", &end.ns, "cat", file]);
            let lines: Vec<&str> = text.lines().collect();
            for pair in lines.chunks(2) {
                let [names, values] = pair else { continue };
                let (group, names) = names.split_once(':').unwrap_or_default();
                let values = values.split_once(':').map(|v| v.1).unwrap_or_default();
                for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                    if let Ok(v) = v.parse() {
                        out.insert(format!("{group}.{n}"), v);
                    }
                }
            }
        }
        let text = run_ok("ip", &["netns", "exec", &end.ns, "cat", "/proc/net/snmp6"]);
        for l in text.lines() {
            let mut f = l.split_whitespace();
            if let (Some(n), Some(Ok(v))) = (f.next(), f.next().map(str::parse)) {
                out.insert(format!("Ip6.{n}"), v);
            }
        }
        out
    }

    /// Client in a, server in b, over IPv4 then IPv6: `k` connections of `n` bytes each
    /// ([`BULK_PEER`]); the peers have exited when it returns (their sockets may still be
    /// closing). Each connection's names
    /// "<saddr>:<lport>::<daddr>:<dport>" from both sides.
    pub fn bulk_exchange(&self, k: usize, n: usize) -> BTreeSet<String> {
        let mut conns = BTreeSet::new();
        for (server_addr, client_addr) in [(self.b.v4, self.a.v4), (self.b.v6, self.a.v6)] {
            let mut server =
                Self::python(&self.b, BULK_PEER, &["server", server_addr, &k.to_string()]);
            let mut out = BufReader::new(server.stdout.take().unwrap());
            let mut port = String::new();
            out.read_line(&mut port).unwrap();
            let port = port.trim().to_string();
            let client = Self::python(
                &self.a,
                BULK_PEER,
                &["client", server_addr, &port, &k.to_string(), &n.to_string()],
            )
            .wait_with_output()
            .unwrap();
            assert!(client.status.success(), "client over {server_addr} failed");
            assert!(
                server.wait().unwrap().success(),
                "server on {server_addr} failed"
            );
            for cport in String::from_utf8_lossy(&client.stdout).lines() {
                conns.insert(format!("{client_addr}:{cport}::{server_addr}:{port}"));
                conns.insert(format!("{server_addr}:{port}::{client_addr}:{cport}"));
            }
        }
        conns
    }

    /// Both ends' TcpRetransSegs: the segments the link's namespaces retransmitted.
    pub fn retrans_segs(&self) -> u64 {
        [&self.a, &self.b]
            .iter()
            .map(|e| {
                Self::counters(e)
                    .get("Tcp.RetransSegs")
                    .copied()
                    .expect("Tcp RetransSegs in /proc/net/snmp")
            })
            .sum()
    }

    /// `bulk_exchange(k, n)`, then waits (15 s at most) until every connection has ended:
    /// closing connections retransmit their FINs until acknowledged, which the counts must
    /// include. Returns the connections, checked to be all `2 × 2 × k` of them.
    pub fn exchange_and_settle(&self, k: usize, n: usize) -> BTreeSet<String> {
        let conns = self.bulk_exchange(k, n);
        assert_eq!(
            conns.len(),
            2 * 2 * k,
            "the clients did not report every connection"
        );
        let settled = crate::wait_for(std::time::Duration::from_secs(15), || {
            (self.live_sockets() == 0).then_some(())
        });
        assert!(settled.is_some(), "the link's connections did not close");
        conns
    }

    /// TCP sockets of the link still able to send (neither listening nor in TIME-WAIT).
    pub fn live_sockets(&self) -> usize {
        [&self.a, &self.b]
            .iter()
            .map(|e| {
                let o = Self::command(e, "ss", &["-Htan"]).output().expect("ss");
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.starts_with("LISTEN") && !l.starts_with("TIME-WAIT"))
                    .count()
            })
            .sum()
    }

    /// Packets the end's clsact (the drop filters, both ways) has dropped: tc's own
    /// statistics.
    pub fn tc_dropped(end: &End) -> u64 {
        let text = run_ok(
            "ip",
            &[
                "netns", "exec", &end.ns, "tc", "-s", "qdisc", "show", "dev", end.dev,
            ],
        );
        text.lines()
            .skip_while(|l| !l.starts_with("qdisc clsact"))
            .find_map(|l| l.split("(dropped ").nth(1)?.split(',').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no clsact drop count in tc -s qdisc:\n{text}"))
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        for e in [&self.a, &self.b] {
            run("ip", &["netns", "del", &e.ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
