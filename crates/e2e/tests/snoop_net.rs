//! End-to-end tests of the event tables of oomkill, biosnoop, tcpconnect and tcpconnlat
//! (instances "0" … "N-1", the newest first), through the real pmcd, each against a workload
//! of known content: a process the OOM killer kills in a memory cgroup (and the cgroup's own
//! oom_kill count), direct I/O of known size and offset to a loop device of its own, and
//! connects over IPv4 and IPv6 loopback to listeners of the test's. Sensitive fields (command
//! names, addresses, ports) are refused to an unprivileged client, the others served.

use e2e::*;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One table: slot ("0" the newest) -> field (the metric name after the module's prefix)
/// -> value.
type Table = BTreeMap<u32, BTreeMap<String, String>>;

fn table(module: &str, fields: &[&str]) -> Table {
    let names: Vec<String> = fields.iter().map(|f| format!("bcc.{module}.{f}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut t = Table::new();
    for (metric, vals) in fetch(&refs) {
        let field = metric.rsplit('.').next().unwrap_or_default().to_string();
        for (inst, v) in vals {
            if let Some(slot) = inst.and_then(|i| i.parse().ok()) {
                t.entry(slot).or_default().insert(field.clone(), v);
            }
        }
    }
    t
}

/// The rows of `module`'s table that `pick` selects, once there are `n` of them (5 s at
/// most; the consumer thread drains the ring buffer as records come), newest first.
fn rows(
    module: &str,
    fields: &[&str],
    n: usize,
    pick: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Vec<(u32, BTreeMap<String, String>)> {
    let mut last = Vec::new();
    wait_for(Duration::from_secs(5), || {
        last = table(module, fields)
            .into_iter()
            .filter(|(_, r)| pick(r))
            .collect();
        (last.len() >= n).then_some(())
    });
    last
}

fn lost(module: &str) -> u64 {
    let m = format!("bcc.{module}.lost");
    value_u64(&m, None).unwrap_or_else(|| panic!("{m} has no value"))
}

/// `pminfo -f` as nobody: every sensitive metric is refused, every other one has values.
fn nobody_sees(module: &str, sensitive: &[&str], open: &[&str]) {
    let names: Vec<String> = sensitive
        .iter()
        .chain(open)
        .map(|f| format!("bcc.{module}.{f}"))
        .collect();
    let mut args = vec!["-u", "nobody", "--", "pminfo", "-f"];
    args.extend(names.iter().map(String::as_str));
    let out = run("runuser", &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Blocks: the metric's name on a line of its own, then its values or its error.
    let mut blocks: BTreeMap<String, String> = BTreeMap::new();
    let mut cur = None;
    for l in text.lines() {
        if names.iter().any(|n| n == l.trim()) && !l.starts_with(' ') {
            cur = Some(l.trim().to_string());
        } else if let Some(c) = &cur {
            let b = blocks.entry(c.clone()).or_default();
            b.push_str(l);
            b.push('\n');
        }
    }
    for f in sensitive {
        let b = blocks
            .get(&format!("bcc.{module}.{f}"))
            .cloned()
            .unwrap_or_default();
        assert!(
            b.contains("No permission") && !b.contains("inst ["),
            "nobody was not refused bcc.{module}.{f}: {b:?}\n{text}"
        );
    }
    for f in open {
        let b = blocks
            .get(&format!("bcc.{module}.{f}"))
            .cloned()
            .unwrap_or_default();
        assert!(
            b.contains("inst [") && !b.contains("No permission"),
            "nobody got no values of bcc.{module}.{f}: {b:?}\n{text}"
        );
    }
}

/// Runs `attempt` (a workload and its checks, which panic when a record is missing or off)
/// until it passes. A failed attempt fails the test unless the kernel skipped one of the
/// modules' programs meanwhile (`hooks`: one set per module, SkipWatch), which is not the
/// agent's doing; then it is retried, up to 4 attempts, and the test passes, saying so, when
/// every attempt lost hits to the kernel.
fn exact_unless_kernel_skipped(what: &str, hooks: &[&[Hook]], mut attempt: impl FnMut()) {
    let mut skips = Vec::new();
    for n in 1..=4 {
        let watches: Vec<SkipWatch> = hooks.iter().map(|h| SkipWatch::start(h)).collect();
        let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut attempt)) else {
            return;
        };
        let by: Vec<_> = watches.iter().map(SkipWatch::skipped_by_event).collect();
        if by.iter().flat_map(|m| m.values()).sum::<u64>() == 0 {
            // The kernel ran the programs for every hit: the failure is the agent's.
            std::panic::resume_unwind(e);
        }
        eprintln!("attempt {n}: the kernel skipped {what}'s programs ({by:?}); retrying");
        skips.push(by);
    }
    eprintln!("the kernel skipped {what}'s programs in every attempt: {skips:?}");
}

// ---- oomkill ----

/// A memory cgroup of the test's, limited to `limit` bytes without swap: under cgroup v2
/// where the memory controller is there, else under v1's memory hierarchy. Removed when
/// dropped (its processes have exited by then).
struct MemCgroup {
    dir: PathBuf,
    v2: bool,
}

impl MemCgroup {
    fn new(limit: u64) -> MemCgroup {
        let name = format!("pcp-bcc-oomkill-{}", std::process::id());
        let v2_root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .find(|r| {
                std::fs::read_to_string(format!("{r}/cgroup.controllers"))
                    .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"))
            });
        let (dir, v2) = match v2_root {
            Some(r) => (Path::new(r).join(&name), true),
            None => (Path::new("/sys/fs/cgroup/memory").join(&name), false),
        };
        assert!(
            dir.parent().unwrap().exists(),
            "no memory cgroup controller: neither cgroup v2 with memory nor /sys/fs/cgroup/memory"
        );
        if v2 {
            // The parent must hand the memory controller down.
            let sub = dir.parent().unwrap().join("cgroup.subtree_control");
            let _ = std::fs::write(&sub, "+memory");
        }
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let cg = MemCgroup { dir, v2 };
        if v2 {
            cg.set("memory.max", &limit.to_string());
            if cg.dir.join("memory.swap.max").exists() {
                cg.set("memory.swap.max", "0");
            }
        } else {
            cg.set("memory.limit_in_bytes", &limit.to_string());
            if cg.dir.join("memory.memsw.limit_in_bytes").exists() {
                cg.set("memory.memsw.limit_in_bytes", &limit.to_string());
            }
        }
        cg
    }

    fn set(&self, file: &str, v: &str) {
        std::fs::write(self.dir.join(file), v)
            .unwrap_or_else(|e| panic!("write {v} to {}/{file}: {e}", self.dir.display()));
    }

    /// The cgroup's own count of OOM kills (memory.events, or v1's memory.oom_control).
    fn oom_kills(&self) -> u64 {
        let f = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = std::fs::read_to_string(self.dir.join(f)).expect("read the oom_kill count");
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no oom_kill line in {f}: {text}"))
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

const OOM_FIELDS: &[&str] = &[
    "fpid",
    "fcomm",
    "tpid",
    "tcomm",
    "pages",
    "total_vm",
    "uid",
    "oom_score_adj",
];

#[test]
fn a_process_killed_in_a_memory_cgroup_is_recorded() {
    let _s = Session::running("oomkill");
    let limit: u64 = 32 << 20;
    let cg = MemCgroup::new(limit);
    let before = cg.oom_kills();
    let lost0 = lost("oomkill");
    // `tail` keeps every line it reads, and /dev/zero has no line end: it grows until the
    // cgroup's limit has the OOM killer kill it. The shell joins the cgroup, then becomes tail.
    let procs = cg.dir.join("cgroup.procs");
    let t0 = Instant::now();
    let child = Command::new("sh")
        .args([
            "-c",
            &format!("echo $$ > {} && exec tail /dev/zero", procs.display()),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait tail");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "the allocator was not killed by SIGKILL: {:?}",
        out.status
    );
    let kills = cg.oom_kills() - before;
    assert_eq!(kills, 1, "the cgroup counted {kills} OOM kills");
    eprintln!("tail (pid {pid}) killed after {:?}", t0.elapsed());

    let got = rows("oomkill", OOM_FIELDS, kills as usize, |r| {
        r.get("tpid").map(String::as_str) == Some(&pid.to_string())
    });
    assert_eq!(got.len() as u64, kills, "records of pid {pid}: {got:?}");
    let r = &got[0].1;
    let field = |f: &str| r.get(f).cloned().unwrap_or_default();
    assert_eq!(field("tcomm"), "tail", "{r:?}");
    // tail's own allocation ran the cgroup out of memory: it is the trigger too.
    assert_eq!(field("fpid"), pid.to_string(), "{r:?}");
    assert_eq!(field("fcomm"), "tail", "{r:?}");
    assert_eq!(field("uid"), "0", "{r:?}");
    assert_eq!(field("oom_score_adj"), "0", "{r:?}");
    // Resident pages: about the limit (file pages charged elsewhere may add a few MiB).
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let pages: u64 = field("pages").parse().expect("pages");
    let total_vm: u64 = field("total_vm").parse().expect("total_vm");
    assert!(
        pages * page >= limit / 2 && pages * page <= limit + (8 << 20),
        "{pages} resident pages of {page} bytes for a {limit}-byte cgroup: {r:?}"
    );
    assert!(total_vm >= pages, "{r:?}");
    assert_eq!(lost("oomkill"), lost0);

    nobody_sees(
        "oomkill",
        &["fcomm", "tcomm"],
        &["fpid", "tpid", "pages", "total_vm"],
    );
}

// ---- biosnoop ----

/// A loop device over a sparse file of the test's, detached when dropped.
struct Loop {
    dev: String,
    file: PathBuf,
}

impl Loop {
    fn new(mib: u64) -> Loop {
        let file = PathBuf::from(format!(
            "/var/tmp/pcp-bcc-biosnoop-{}.img",
            std::process::id()
        ));
        let f = std::fs::File::create(&file).expect("create the loop file");
        f.set_len(mib << 20).unwrap();
        let dev = run_ok("losetup", &["-f", "--show", &file.to_string_lossy()])
            .trim()
            .to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup gave {dev:?}");
        Loop { dev, file }
    }

    fn name(&self) -> &str {
        self.dev.trim_start_matches("/dev/")
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        run("losetup", &["-d", &self.dev]);
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Runs dd with `args`; its pid and how long it took.
fn dd(args: &[String]) -> (u32, Duration) {
    let t0 = Instant::now();
    let c = Command::new("dd")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dd");
    let pid = c.id();
    let o = c.wait_with_output().expect("wait dd");
    assert!(
        o.status.success(),
        "dd {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (pid, t0.elapsed())
}

const BIOSNOOP_HOOKS: &[Hook] = &[
    ("block/block_io_start", &["bs_io_start"]),
    ("block/block_rq_insert", &["bs_rq_insert"]),
    ("block/block_rq_issue", &["bs_rq_issue"]),
    ("block/block_rq_complete", &["bs_rq_complete"]),
];
const BIO_FIELDS: &[&str] = &["comm", "pid", "disk", "rwbs", "sector", "bytes", "lat"];

#[test]
fn direct_io_of_known_size_and_offset_is_recorded_per_request() {
    let mut s = Session::start();
    // Room in the table for the test's requests whatever else the disks do meanwhile.
    let conf =
        std::fs::read_to_string(bcc_dir().join("bcc.conf.default")).expect("bcc.conf.default");
    assert!(
        conf.contains("\n[biosnoop]\n"),
        "no [biosnoop] section in the default bcc.conf"
    );
    s.with_config(&conf.replace("\n[biosnoop]\n", "\n[biosnoop]\nprocess_count = 5000\n"));
    s.assert_module_running("biosnoop");
    let lo = Loop::new(16);
    let lost0 = lost("biosnoop");
    exact_unless_kernel_skipped("biosnoop", &[BIOSNOOP_HOOKS], || dd_requests(&lo));
    assert_eq!(lost("biosnoop"), lost0);
    nobody_sees(
        "biosnoop",
        &["comm"],
        &["pid", "disk", "rwbs", "sector", "bytes", "lat"],
    );
}

/// dd's direct I/O to the loop device, each request checked in biosnoop's table.
fn dd_requests(lo: &Loop) {
    // 4 writes of 64 KiB from 640 KiB on, then 3 reads of 16 KiB from 1 MiB on: one request
    // each (O_DIRECT, one at a time, well under the device's largest request).
    let (wpid, wtime) = dd(&[
        "if=/dev/zero".into(),
        format!("of={}", lo.dev),
        "bs=64k".into(),
        "count=4".into(),
        "seek=10".into(),
        "oflag=direct".into(),
    ]);
    let (rpid, rtime) = dd(&[
        format!("if={}", lo.dev),
        "of=/dev/null".into(),
        "bs=16k".into(),
        "count=3".into(),
        "skip=64".into(),
        "iflag=direct".into(),
    ]);
    let disk = lo.name().to_string();
    let ours = |r: &BTreeMap<String, String>| {
        r.get("disk") == Some(&disk)
            && [wpid, rpid]
                .iter()
                .any(|p| r.get("pid") == Some(&p.to_string()))
    };
    let got = rows("biosnoop", BIO_FIELDS, 7, ours);
    // Oldest first: the order the requests were made in.
    let got: Vec<&BTreeMap<String, String>> = got.iter().rev().map(|(_, r)| r).collect();
    let want: Vec<(u32, char, u64, u64, Duration)> = (0..4)
        .map(|i| (wpid, 'W', (640 * 1024 + i * 65536) / 512, 65536, wtime))
        .chain((0..3).map(|i| (rpid, 'R', (1024 * 1024 + i * 16384) / 512, 16384, rtime)))
        .collect();
    assert_eq!(got.len(), want.len(), "records of dd on {disk}: {got:#?}");
    for (r, (pid, op, sector, bytes, wall)) in got.iter().zip(&want) {
        let field = |f: &str| r.get(f).cloned().unwrap_or_default();
        assert_eq!(field("pid"), pid.to_string(), "{r:?}");
        assert_eq!(field("comm"), "dd", "{r:?}");
        assert_eq!(field("sector"), sector.to_string(), "{r:?}");
        assert_eq!(field("bytes"), bytes.to_string(), "{r:?}");
        let rwbs = field("rwbs");
        assert!(rwbs.starts_with(*op), "rwbs {rwbs:?}, want {op}…: {r:?}");
        let lat: u64 = field("lat").parse().expect("lat");
        assert!(
            lat > 0 && lat < wall.as_nanos() as u64,
            "latency {lat} ns, dd ran {wall:?}: {r:?}"
        );
    }
}

// ---- tcpconnect, tcpconnlat ----

const CONNECT_FIELDS: &[&str] = &["pid", "comm", "ipversion", "saddr", "daddr", "dport", "uid"];
const CONNLAT_FIELDS: &[&str] = &[
    "pid",
    "comm",
    "ipversion",
    "saddr",
    "lport",
    "daddr",
    "dport",
    "lat",
];
const K: usize = 3;

/// A listener that accepts in a thread of its own and keeps every peer's port.
struct Listener {
    port: u16,
    peers: std::sync::mpsc::Receiver<u16>,
}

impl Listener {
    fn new(addr: SocketAddr) -> Listener {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("listen on {addr}: {e}"));
        let port = l.local_addr().unwrap().port();
        let (tx, peers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { break };
                if tx
                    .send(c.peer_addr().map(|a| a.port()).unwrap_or(0))
                    .is_err()
                {
                    break;
                }
            }
        });
        Listener { port, peers }
    }

    /// The ports of the next `n` accepted peers.
    fn peer_ports(&self, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| {
                self.peers
                    .recv_timeout(Duration::from_secs(5))
                    .expect("an accepted peer")
            })
            .collect()
    }
}

#[test]
fn connects_over_ipv4_and_ipv6_loopback_are_recorded_with_their_latency() {
    let s = Session::running("tcpconnect");
    s.assert_module_running("tcpconnlat");
    let lost0 = (lost("tcpconnect"), lost("tcpconnlat"));
    exact_unless_kernel_skipped(
        "tcpconnect and tcpconnlat",
        &[
            &[("sock/inet_sock_set_state", &["tcpconnect_tp"])],
            &[("sock/inet_sock_set_state", &["tcpconnlat_tp"])],
        ],
        connects,
    );
    assert_eq!((lost("tcpconnect"), lost("tcpconnlat")), lost0);
    nobody_sees(
        "tcpconnect",
        &["comm", "saddr", "daddr", "dport"],
        &["pid", "ipversion", "uid"],
    );
    nobody_sees(
        "tcpconnlat",
        &["comm", "saddr", "lport", "daddr", "dport"],
        &["pid", "ipversion", "lat"],
    );
}

/// K connects to each of two new listeners, checked in both modules' tables.
fn connects() {
    let v4 = Listener::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let v6 = Listener::new(SocketAddr::from((Ipv6Addr::LOCALHOST, 0)));
    // One bash connects K times to each listener (bash's /dev/tcp), IPv4 first.
    let script = format!(
        "for i in $(seq {K}); do exec 3<>/dev/tcp/127.0.0.1/{p4}; exec 3<&-; done; \
         for i in $(seq {K}); do exec 3<>/dev/tcp/::1/{p6}; exec 3<&-; done",
        p4 = v4.port,
        p6 = v6.port
    );
    let t0 = Instant::now();
    let c = Command::new("bash")
        .args(["-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bash");
    let pid = c.id().to_string();
    let o = c.wait_with_output().expect("wait bash");
    let wall = t0.elapsed();
    assert!(
        o.status.success(),
        "bash connects: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (ports4, ports6) = (v4.peer_ports(K), v6.peer_ports(K));
    let dports = [v4.port.to_string(), v6.port.to_string()];
    let to_ours = |r: &BTreeMap<String, String>| r.get("dport").is_some_and(|p| dports.contains(p));

    let got = rows("tcpconnect", CONNECT_FIELDS, 2 * K, to_ours);
    assert_eq!(
        got.len(),
        2 * K,
        "tcpconnect records to ports {dports:?}: {got:#?}"
    );
    // Oldest first: the IPv4 connects, then the IPv6 ones.
    for (i, (_, r)) in got.iter().rev().enumerate() {
        let (ver, addr, port) = if i < K {
            ("4", "127.0.0.1", v4.port)
        } else {
            ("6", "::1", v6.port)
        };
        let want: BTreeMap<String, String> = [
            ("pid", pid.as_str()),
            ("comm", "bash"),
            ("ipversion", ver),
            ("saddr", addr),
            ("daddr", addr),
            ("dport", &port.to_string()),
            ("uid", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(r, &want, "tcpconnect record {i} (oldest first)");
    }

    let got = rows("tcpconnlat", CONNLAT_FIELDS, 2 * K, to_ours);
    assert_eq!(
        got.len(),
        2 * K,
        "tcpconnlat records to ports {dports:?}: {got:#?}"
    );
    let lports: Vec<u16> = ports4.iter().chain(&ports6).copied().collect();
    for (i, (_, r)) in got.iter().rev().enumerate() {
        let (ver, addr, port) = if i < K {
            ("4", "127.0.0.1", v4.port)
        } else {
            ("6", "::1", v6.port)
        };
        let field = |f: &str| r.get(f).cloned().unwrap_or_default();
        assert_eq!(field("pid"), pid, "{r:?}");
        assert_eq!(field("comm"), "bash", "{r:?}");
        assert_eq!(field("ipversion"), ver, "{r:?}");
        assert_eq!(
            (field("saddr"), field("daddr")),
            (addr.to_string(), addr.to_string()),
            "{r:?}"
        );
        assert_eq!(field("dport"), port.to_string(), "{r:?}");
        // The local port is what the listener's accept saw as the peer's.
        assert_eq!(
            field("lport"),
            lports[i].to_string(),
            "record {i} (oldest first): {r:?}"
        );
        let lat: u64 = field("lat").parse().expect("lat");
        assert!(
            lat > 0 && lat < wall.as_nanos() as u64,
            "connect latency {lat} ns, the connects took {wall:?} in all: {r:?}"
        );
    }
}
