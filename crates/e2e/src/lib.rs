//! Harness for the end-to-end tests: the bcc agent installed under the real pmcd, driven
//! through the real PCP clients (pminfo, pmprobe, dbpmda, …).
//!
//! Every test starts with [`Session::start`], which takes a machine-wide lock (the tests share
//! one pmcd) and fails, saying what is missing, when pmcd or the agent is not there: these
//! tests never pass silently. `./test.sh` installs everything first.

pub mod netns;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PMDAS_DIR: &str = "/var/lib/pcp/pmdas";
pub const LOCK: &str = "/tmp/pcp-bcc-e2e.lock";

pub fn bcc_dir() -> PathBuf {
    Path::new(PMDAS_DIR).join("bcc")
}

/// Runs a program, returning its output; panics if it cannot be started.
pub fn run(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin:/usr/lib/pcp/bin")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {prog}: {e} (is it installed? ./test.sh installs pcp)")
        })
}

/// Runs a program and returns its stdout; panics with its stderr on failure.
pub fn run_ok(prog: &str, args: &[&str]) -> String {
    let o = run(prog, args);
    if !o.status.success() {
        panic!(
            "{prog} {args:?} failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a shell script with bash; returns stdout, panics on failure.
pub fn sh(script: &str) -> String {
    run_ok("bash", &["-c", script])
}

/// Values of one metric: instance name (None for singular metrics) to the value as text
/// (strings without their quotes).
pub type Values = BTreeMap<Option<String>, String>;

/// Parses `pminfo -f` output into metric -> values. Metrics with an error line are absent
/// from the map and their error text is in the second map.
pub fn parse_pminfo_f(out: &str) -> (BTreeMap<String, Values>, BTreeMap<String, String>) {
    let mut vals: BTreeMap<String, Values> = BTreeMap::new();
    let mut errs = BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in out.lines() {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            if line.starts_with("Error") || line.contains(' ') {
                // "Error: name: Unknown metric name" and the like
                errs.insert(line.to_string(), line.to_string());
                cur = None;
                continue;
            }
            cur = Some(line.trim().to_string());
            vals.entry(line.trim().to_string()).or_default();
            continue;
        }
        let Some(m) = &cur else { continue };
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("value ") {
            vals.entry(m.clone())
                .or_default()
                .insert(None, unquote(rest));
        } else if let Some(rest) = t.strip_prefix("inst [") {
            // inst [12 or "name"] value 42
            if let (Some(q1), Some(end)) = (rest.find(" or \""), rest.find("\"] value ")) {
                let name = rest[q1 + 5..end].to_string();
                let v = &rest[end + 9..];
                vals.entry(m.clone())
                    .or_default()
                    .insert(Some(name), unquote(v));
            }
        } else if !t.starts_with("inst") {
            errs.insert(m.clone(), t.to_string());
            vals.remove(m);
        }
    }
    (vals, errs)
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
        .to_string()
}

/// Fetches metrics with `pminfo -f`; panics on an unknown name.
pub fn fetch(metrics: &[&str]) -> BTreeMap<String, Values> {
    let mut args = vec!["-f"];
    args.extend_from_slice(metrics);
    let o = run("pminfo", &args);
    parse_pminfo_f(&String::from_utf8_lossy(&o.stdout)).0
}

/// The rows of a table of metrics `<prefix>.<field>` (one instance a row, as the event and
/// top-N modules serve them): instance -> field -> value.
pub fn table_rows(
    prefix: &str,
    fields: &[&'static str],
) -> BTreeMap<String, BTreeMap<&'static str, String>> {
    let names: Vec<String> = fields.iter().map(|f| format!("{prefix}.{f}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let all = fetch(&refs);
    let mut out: BTreeMap<String, BTreeMap<&'static str, String>> = BTreeMap::new();
    for (f, m) in fields.iter().zip(&names) {
        for (inst, v) in all.get(m).into_iter().flatten() {
            out.entry(inst.clone().unwrap_or_default())
                .or_default()
                .insert(f, v.clone());
        }
    }
    out
}

/// Panics, saying `what` and showing `text`, unless `text` contains every one of `needles`.
pub fn assert_has(text: &str, needles: &[&str], what: &str) {
    for n in needles {
        assert!(text.contains(n), "{what}: no {n:?} in\n{text}");
    }
}

/// Every value of one metric (none when it has none or is unknown).
pub fn values(metric: &str) -> Values {
    fetch(&[metric]).remove(metric).unwrap_or_default()
}

/// One value (instance `inst`, or the singular value), if present.
pub fn value_str(metric: &str, inst: Option<&str>) -> Option<String> {
    values(metric).remove(&inst.map(str::to_string))
}

/// One numeric value (instance `inst`, or the singular value), if present.
pub fn value_u64(metric: &str, inst: Option<&str>) -> Option<u64> {
    value_str(metric, inst)?.parse().ok()
}

/// All instances of a numeric metric.
pub fn values_u64(metric: &str) -> BTreeMap<String, u64> {
    values(metric)
        .into_iter()
        .filter_map(|(k, v)| Some((k.unwrap_or_default(), v.parse().ok()?)))
        .collect()
}

/// Polls `f` every 200 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ids of every BPF program and map loaded in the kernel, from bpftool (independent of the
/// agent's own reports).
pub fn kernel_bpf_ids() -> (
    std::collections::BTreeSet<u64>,
    std::collections::BTreeSet<u64>,
) {
    let re = regex::Regex::new(r#""id":(\d+)"#).unwrap();
    let ids = |what: &str| -> std::collections::BTreeSet<u64> {
        let out = run_ok("bpftool", &["-j", what, "show"]);
        // One JSON object per program/map, its "id" first.
        out.split("},{")
            .filter_map(|o| re.captures(o).and_then(|c| c[1].parse().ok()))
            .collect()
    };
    (ids("prog"), ids("map"))
}

/// Program and map ids the agent reports for itself (bcc.agent.bpf.*.id).
pub fn our_bpf_ids() -> (
    std::collections::BTreeSet<u64>,
    std::collections::BTreeSet<u64>,
) {
    (
        values_u64("bcc.agent.bpf.prog.id").into_values().collect(),
        values_u64("bcc.agent.bpf.map.id").into_values().collect(),
    )
}

/// The running agent's pid.
pub fn agent_pid() -> Option<u32> {
    let o = run("pgrep", &["-x", "pmdabcc"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A test's hold on the shared pmcd: the lock, and the default config put back at the end
/// if the test changed it.
pub struct Session {
    _lock: File,
    changed_config: bool,
}

impl Session {
    /// Takes the lock and checks that pmcd and the agent are there, failing with what is
    /// missing otherwise.
    pub fn start() -> Session {
        let f = File::create(LOCK).expect("create lock file");
        // ./test.sh holds the lock for its whole run and says so in the environment.
        if std::env::var_os("PCP_BCC_E2E_LOCKED").is_none() {
            // SAFETY: flock on a valid fd we own; blocks until other test processes release it.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            assert_eq!(r, 0, "flock {LOCK}");
        }
        let s = Session {
            _lock: f,
            changed_config: false,
        };
        let o = run("pminfo", &["-f", "pmcd.version"]);
        assert!(o.status.success(), "pmcd is not running or not reachable: {} (./test.sh starts it with /etc/init.d/pmcd start)", String::from_utf8_lossy(&o.stderr).trim());
        assert!(
            bcc_dir().join("pmdabcc").exists(),
            "the bcc agent is not installed in {} (./test.sh and ./install.sh install it)",
            bcc_dir().display()
        );
        s.wait_ready();
        s
    }

    /// Waits until pmcd serves the agent and no module is loading; panics after 30 s.
    pub fn wait_ready(&self) {
        let ok = wait_for(Duration::from_secs(30), || {
            // startup_time has a value once the first load finished; no module may still be
            // loading after a reload either.
            let m = fetch(&["bcc.agent.startup_time", "bcc.agent.modules.state"]);
            m.get("bcc.agent.startup_time")?.get(&None)?;
            let loading = m
                .get("bcc.agent.modules.state")
                .is_some_and(|v| v.values().any(|s| s == "loading"));
            (!loading).then_some(())
        });
        if ok.is_none() {
            let log = std::fs::read_to_string("/var/log/pcp/pmcd/bcc.log").unwrap_or_default();
            let pmcd = run("pminfo", &["-f", "bcc.agent.modules.state"]);
            panic!(
                "the bcc agent is not serving under pmcd (is eBPF available? is the agent in pmcd.conf?)\npminfo: {}{}\nbcc.log:\n{log}",
                String::from_utf8_lossy(&pmcd.stdout),
                String::from_utf8_lossy(&pmcd.stderr)
            );
        }
    }

    /// Installs `conf` as bcc.conf and restarts the agent under pmcd; the default config
    /// (the repo's pmda/bcc.conf, as ./test.sh installed it) comes back when the session ends.
    pub fn with_config(&mut self, conf: &str) {
        std::fs::write(bcc_dir().join("bcc.conf"), conf).expect("write bcc.conf");
        self.changed_config = true;
        self.restart_agent();
    }

    /// Kills the agent and has pmcd start it again. pmcd restarts dead agents on SIGHUP, but
    /// only those it already knows are dead (it learns that on its next exchange with the
    /// agent): so ask, signal, and repeat until a new agent process is up.
    pub fn restart_agent(&self) {
        let old = agent_pid();
        if let Some(pid) = old {
            run("kill", &["-KILL", &pid.to_string()]);
            wait_for(Duration::from_secs(10), || {
                (agent_pid() != Some(pid)).then_some(())
            });
        }
        let up = wait_for(Duration::from_secs(30), || {
            let _ = run("pminfo", &["-f", "bcc.agent.version"]);
            run_ok("pmsignal", &["-a", "-s", "HUP", "pmcd"]);
            wait_for(Duration::from_secs(1), || {
                agent_pid().filter(|p| Some(*p) != old)
            })
        });
        up.expect("pmcd did not restart the bcc agent");
        self.wait_ready();
    }

    /// Session::start, then assert_module_running(module).
    pub fn running(module: &str) -> Session {
        let s = Session::start();
        s.assert_module_running(module);
        s
    }

    /// Fails unless `module` runs (bcc.agent.modules.state is "running"), saying its status;
    /// prints the status otherwise.
    pub fn assert_module_running(&self, module: &str) {
        let st = fetch(&["bcc.agent.modules.state", "bcc.agent.modules.status"]);
        let get = |m: &str| {
            st.get(m)
                .and_then(|v| v.get(&Some(module.to_string())))
                .cloned()
        };
        let status = get("bcc.agent.modules.status");
        assert_eq!(
            get("bcc.agent.modules.state").as_deref(),
            Some("running"),
            "module {module} is not running (is eBPF available? is [{module}] in [pmda] modules of the installed bcc.conf?): {status:?}"
        );
        eprintln!("{module}: {}", status.unwrap_or_default());
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.changed_config {
            let default = bcc_dir().join("bcc.conf.default");
            if std::fs::copy(&default, bcc_dir().join("bcc.conf")).is_ok() {
                self.restart_agent();
            }
        }
    }
}

/// A workload process: a Python script (`python3 -c SCRIPT ARGS…`, e.g. a loopback socket
/// peer) that the test talks to line by line, over its stdin and stdout.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts `script` with `args`; panics if python3 cannot be run.
    pub fn spawn(script: &str, args: &[&str]) -> Peer {
        Peer::spawn_as(None, script, args)
    }

    /// [`Peer::spawn`] with `argv0` as the peer's argv[0], the command name /proc shows.
    pub fn spawn_named(argv0: &str, script: &str, args: &[&str]) -> Peer {
        Peer::spawn_as(Some(argv0), script, args)
    }

    fn spawn_as(argv0: Option<&str>, script: &str, args: &[&str]) -> Peer {
        use std::os::unix::process::CommandExt;
        let py = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let mut child = Command::new(py)
            .arg0(argv0.unwrap_or(py))
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {py} for the loopback peers: {e}"));
        let out = BufReader::new(child.stdout.take().unwrap());
        Peer {
            stdin: child.stdin.take(),
            child,
            out,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the peer prints, trimmed; panics if it ended instead.
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).expect("read from peer");
        assert!(!l.is_empty(), "peer {} ended early", self.pid());
        l.trim().to_string()
    }

    /// Writes `what` and a newline to the peer's stdin.
    pub fn say(&mut self, what: &str) {
        let i = self.stdin.as_mut().unwrap();
        writeln!(i, "{what}").unwrap();
        i.flush().unwrap();
    }

    /// Closes the peer's stdin and waits for it; panics unless it exits successfully.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let st = self.child.wait().unwrap();
        assert!(st.success(), "peer {} failed: {st}", self.pid());
    }
}

/// A TCP peer for Peer: `server ADDR PORT` listens on ADDR, port PORT (0: any), prints the
/// port and accepts one connection; `client ADDR PORT` connects there and prints its own
/// port. Then, per stdin line "send N" or "recv N", each moves N bytes and prints "ok".
pub const TCP_PEER: &str = r#"
import socket, sys
role, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
af = socket.AF_INET6 if ":" in addr else socket.AF_INET
if role == "server":
    l = socket.socket(af); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((addr, port)); l.listen(1)
    print(l.getsockname()[1], flush=True)
    s = l.accept()[0]
else:
    s = socket.socket(af); s.connect((addr, port))
    print(s.getsockname()[1], flush=True)
for line in sys.stdin:
    what, n = line.split(); n = int(n)
    if what == "send":
        s.sendall(b"x" * n)
    else:
        while n > 0:
            n -= len(s.recv(min(n, 1 << 16)))
    print("ok", flush=True)
"#;

/// A TCP connection between two TCP_PEER processes on address `host`, the server on `port`
/// (0: any): (server, client, the server's port, the client's port).
pub fn tcp_peers(host: &str, port: u16) -> (Peer, Peer, String, String) {
    let mut server = Peer::spawn(TCP_PEER, &["server", host, &port.to_string()]);
    let sport = server.line();
    let mut client = Peer::spawn(TCP_PEER, &["client", host, &sport]);
    let cport = client.line();
    (server, client, sport, cport)
}

/// The metrics (after `bcc.proc.io.net.tcp.`) of tcplife's `sessions` layout: exactly the
/// names grafana-pcp's "eBPF/BCC Overview" tcplife table queries (pid … duration), plus ours.
pub const TCPLIFE_SESSION_FIELDS: &[&str] = &[
    "pid",
    "comm",
    "laddr",
    "lport",
    "daddr",
    "dport",
    "tx",
    "rx",
    "duration",
    "events_lost",
    "sessions_untracked",
];

/// Hits of one kernel tracepoint on every CPU, counted by a perf counting event per CPU:
/// the kernel's own count, which does not go through BPF.
pub struct TracepointHits {
    event: &'static str,
    fds: Vec<std::os::fd::OwnedFd>,
}

impl TracepointHits {
    /// `event` as tracefs names it, e.g. "block/block_rq_complete".
    pub fn open(event: &'static str) -> TracepointHits {
        use std::os::fd::FromRawFd;
        let id: u64 = [
            "/sys/kernel/tracing/events",
            "/sys/kernel/debug/tracing/events",
        ]
        .iter()
        .find_map(|d| std::fs::read_to_string(format!("{d}/{event}/id")).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no id for tracepoint {event}: is tracefs mounted?"));
        // struct perf_event_attr up to PERF_ATTR_SIZE_VER0: type, size, config; all else 0
        // (a counting event, enabled at once).
        const PERF_TYPE_TRACEPOINT: u32 = 2;
        const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
        const SIZE: u32 = 64;
        let mut attr = [0u64; SIZE as usize / 8];
        attr[0] = u64::from(PERF_TYPE_TRACEPOINT) | (u64::from(SIZE) << 32);
        attr[1] = id;
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1);
        let mut fds = Vec::new();
        for cpu in 0..cpus {
            // SAFETY: attr is a valid perf_event_attr of the size it declares; pid -1 with a
            // cpu counts every task on that CPU (root may).
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    attr.as_ptr(),
                    -1,
                    cpu,
                    -1,
                    PERF_FLAG_FD_CLOEXEC,
                )
            };
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENODEV) {
                    continue; // an offline CPU
                }
                panic!("perf_event_open for tracepoint {event} on CPU {cpu}: {e}");
            }
            // SAFETY: fd is a new descriptor that nothing else owns.
            fds.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
        }
        TracepointHits { event, fds }
    }

    pub fn count(&self) -> u64 {
        use std::io::Read;
        self.fds
            .iter()
            .map(|fd| {
                let mut f = File::from(fd.try_clone().expect("dup perf fd"));
                let mut b = [0u8; 8];
                f.read_exact(&mut b)
                    .unwrap_or_else(|e| panic!("read perf count of {}: {e}", self.event));
                u64::from_ne_bytes(b)
            })
            .sum()
    }
}

/// Watches whether the kernel ran an agent's BPF programs for every hit of their
/// tracepoints. The kernel skips tracing programs in some contexts without counting it as
/// a recursion miss (seen on these machines: block events in a softirq that interrupted the
/// VM's init process; every program on the tracepoint misses the hit, ours and pmdabpf's
/// alike). A test that finds a count off can ask this whether the kernel skipped runs,
/// which is not the agent's fault, or not, which is. Both truths are the kernel's: the
/// tracepoint's hits (perf) and the programs' run counts (bpftool, with
/// kernel.bpf_stats_enabled on).
pub struct SkipWatch {
    points: Vec<(TracepointHits, &'static [&'static str], u64, u64)>,
}

/// A tracepoint and the names of the programs an agent may attach to it (at most one of
/// them at a time).
pub type Hook = (&'static str, &'static [&'static str]);

/// biotop's programs, of every hook choice.
pub const BIOTOP_HOOKS: &[Hook] = &[
    ("block/block_io_start", &["btf_io_start", "tp_io_start"]),
    ("block/block_rq_insert", &["btf_rq_insert", "tp_rq_insert"]),
    ("block/block_rq_issue", &["btf_rq_issue", "tp_rq_issue"]),
    ("block/block_bio_backmerge", &["btf_bio_backmerge"]),
    (
        "block/block_bio_frontmerge",
        &["btf_bio_frontmerge", "tp_bio_frontmerge"],
    ),
    ("block/block_rq_merge", &["btf_rq_merge", "tp_rq_merge"]),
    (
        "block/block_rq_complete",
        &["btf_rq_complete", "tp_rq_complete"],
    ),
];
/// tcpretrans's tracepoints and programs.
pub const TCPRETRANS_HOOKS: &[Hook] = &[
    ("tcp/tcp_retransmit_skb", &["retrans_skb"]),
    ("tcp/tcp_retransmit_synack", &["retrans_synack"]),
];
/// tcplife's tracepoint programs.
pub const TCPLIFE_HOOKS: &[Hook] = &[
    ("sock/inet_sock_set_state", &["tcplife_state"]),
    ("sock/sock_send_length", &["tcplife_send"]),
    ("sock/sock_recv_length", &["tcplife_recv"]),
];
/// biolatency's programs, of every hook choice.
pub const BIOLATENCY_HOOKS: &[Hook] = &[
    (
        "block/block_rq_insert",
        &["biolat_insert_btf", "biolat_insert_raw", "biolat_insert_tp"],
    ),
    (
        "block/block_rq_issue",
        &["biolat_issue_btf", "biolat_issue_raw", "biolat_issue_tp"],
    ),
    (
        "block/block_rq_complete",
        &[
            "biolat_complete_btf",
            "biolat_complete_raw",
            "biolat_complete_tp",
        ],
    ),
];

impl SkipWatch {
    /// Watches those of `hooks` that have a program loaded now (loaded is attached: the
    /// agent loads only the programs it attaches).
    pub fn start(hooks: &[Hook]) -> SkipWatch {
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")
            .expect("enable kernel.bpf_stats_enabled");
        let runs = program_runs();
        let points = hooks
            .iter()
            .filter(|(_, progs)| progs.iter().any(|p| runs.contains_key(*p)))
            .map(|&(event, progs)| {
                let hits = TracepointHits::open(event);
                // Runs before hits here, hits before runs at the end: a hit between the
                // two reads can hide a skip, never invent one.
                let r0 = progs.iter().filter_map(|p| runs.get(*p)).sum();
                let h0 = hits.count();
                (hits, progs, h0, r0)
            })
            .collect();
        SkipWatch { points }
    }

    /// Hits since start that the programs did not run for, per tracepoint watched.
    ///
    /// A hit and its program's run are one step in the kernel, but the two counts are read
    /// apart (bpftool takes milliseconds): runs read after the hits count hits that came
    /// between, hiding skips; runs read before count them as skips. So runs are read before
    /// and after the hits, and a tracepoint's count is taken when both reads agree (no hit in
    /// between), else after a few tries from the later read (a count that can only be low).
    pub fn skipped_by_event(&self) -> BTreeMap<&'static str, u64> {
        let ran = |runs: &BTreeMap<String, u64>, progs: &[&str]| -> u64 {
            progs.iter().filter_map(|p| runs.get(*p)).sum()
        };
        let mut out = BTreeMap::new();
        for (h, progs, h0, r0) in &self.points {
            let mut skipped = 0;
            for attempt in 0..10 {
                let before = ran(&program_runs(), progs);
                let hits = h.count();
                let after = ran(&program_runs(), progs);
                skipped = (hits - h0).saturating_sub(after - r0);
                if before == after {
                    break;
                }
                if attempt < 9 {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            out.insert(h.event, skipped);
        }
        out
    }

    pub fn skipped(&self) -> u64 {
        self.skipped_by_event().values().sum()
    }
}

/// Run counts of the loaded BPF programs, by name, from bpftool.
fn program_runs() -> BTreeMap<String, u64> {
    let out = run_ok("bpftool", &["prog", "show"]);
    out.lines()
        .filter_map(|l| {
            let name = l.split(" name ").nth(1)?.split_whitespace().next()?;
            // bpftool leaves run_cnt out while it is 0 (a program that has not run since
            // kernel.bpf_stats_enabled went on).
            let runs = l
                .split("run_cnt ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map_or(0, |n| n.parse::<u64>().expect("run_cnt is a number"));
            Some((name.to_string(), runs))
        })
        .fold(BTreeMap::new(), |mut m, (n, r)| {
            *m.entry(n).or_default() += r;
            m
        })
}

/// The whole disk (as /proc/diskstats names it) that holds `path`.
pub fn disk_of(path: &str) -> String {
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(path).expect("stat"));
    let (ma, mi) = (libc::major(dev), libc::minor(dev));
    let sys =
        std::fs::canonicalize(format!("/sys/dev/block/{ma}:{mi}")).expect("sysfs block device");
    let whole = if sys.join("partition").exists() {
        sys.parent().unwrap().to_path_buf()
    } else {
        sys
    };
    whole.file_name().unwrap().to_string_lossy().into_owned()
}

/// The numbers /proc/diskstats has for `disk`, after its name: 0 reads completed, 4 writes
/// completed, 5 writes merged, 11 discards completed, 15 flushes completed, ...
pub fn diskstats(disk: &str) -> Vec<u64> {
    let stats = std::fs::read_to_string("/proc/diskstats").expect("read /proc/diskstats");
    stats
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&disk))
        .unwrap_or_else(|| panic!("{disk} not in /proc/diskstats"))
        .iter()
        .skip(3)
        .map(|v| v.parse().unwrap_or(0))
        .collect()
}

/// The most bytes one request to `disk` can carry (its queue's max_sectors_kb).
pub fn max_request_bytes(disk: &str) -> u64 {
    let limit = format!("/sys/block/{disk}/queue/max_sectors_kb");
    1024 * std::fs::read_to_string(&limit)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no request size limit in {limit}"))
}

/// What one process was credited by an attempt, against what its workload did.
pub struct Credit {
    pub who: String,
    pub expected: u64,
    pub got: Option<u64>,
}

impl std::fmt::Display for Credit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {:?} bytes, expected {}",
            self.who, self.got, self.expected
        )
    }
}

/// Runs `attempt` (a workload, returning what each of its processes was credited) and checks
/// that every credit is exact. An attempt that is off passes nothing: it fails the test
/// unless the kernel skipped biotop's programs meanwhile (SkipWatch), and the skipped hits
/// can account for the difference (a request holds at most the queue's max_sectors_kb; a
/// skipped merge moves one bio from one process to another, a skipped start or completion
/// loses one request). When completions were skipped, the agent must have noticed
/// (bcc.proc.io.perdev_unseen rose). Such an attempt is retried, up to 4 attempts; when
/// every one of them lost hits to the kernel, the test passes on those checks and says so.
pub fn exact_unless_kernel_skipped(disk: &str, mut attempt: impl FnMut() -> Vec<Credit>) {
    let max_request = max_request_bytes(disk);
    let mut skips = Vec::new();
    for _ in 0..4 {
        let w = SkipWatch::start(BIOTOP_HOOKS);
        let unseen0 =
            value_u64("bcc.proc.io.perdev_unseen", None).expect("bcc.proc.io.perdev_unseen");
        let credits = attempt();
        let report = credits
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let off: u64 = credits
            .iter()
            .map(|c| c.expected.abs_diff(c.got.unwrap_or(0)))
            .sum();
        if off == 0 {
            return;
        }
        let by_event = w.skipped_by_event();
        let s: u64 = by_event.values().sum();
        assert!(
            s > 0,
            "{report} (the kernel ran biotop's programs for every hit of their tracepoints)"
        );
        if by_event
            .get("block/block_rq_complete")
            .copied()
            .unwrap_or(0)
            > 0
        {
            // The agent must have noticed: its own estimate of unseen completions rose.
            let unseen = value_u64("bcc.proc.io.perdev_unseen", None)
                .expect("bcc.proc.io.perdev_unseen")
                - unseen0;
            assert!(
                unseen > 0,
                "the kernel skipped completions ({by_event:?}) but bcc.proc.io.perdev_unseen did not rise"
            );
        }
        assert!(
            off <= 2 * s * max_request,
            "{report}: off by {off} bytes in all, more than the hits the kernel skipped ({by_event:?}) can account for ({max_request} bytes a request at most)"
        );
        eprintln!("retrying: {report}, but the kernel skipped biotop's programs: {by_event:?}");
        skips.push(by_event);
    }
    eprintln!("the kernel skipped biotop's programs in every attempt ({skips:?}); each difference was within what the skipped hits could account for");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pminfo_output() {
        let out = "\nbcc.agent.modules.state\n    inst [0 or \"sysfork\"] value \"running\"\n    inst [1 or \"a b\"] value \"failed\"\n\nbcc.proc.sysfork\n    value 21\n\nbcc.x\n    No value(s) available!\nError: bcc.y: Unknown metric name\n";
        let (v, e) = parse_pminfo_f(out);
        assert_eq!(
            v["bcc.agent.modules.state"][&Some("a b".to_string())],
            "failed"
        );
        assert_eq!(v["bcc.proc.sysfork"][&None], "21");
        assert!(e.contains_key("bcc.x"));
    }
}
