//! Harness for the end-to-end tests: the bcc agent installed under the real pmcd, driven
//! through the real PCP clients (pminfo, pmprobe, dbpmda, …).
//!
//! Every test starts with [`Session::start`], which takes a machine-wide lock (the tests share
//! one pmcd) and fails, saying what is missing, when pmcd or the agent is not there: these
//! tests never pass silently. `./test.sh` installs everything first.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
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

/// One numeric value (instance `inst`, or the singular value), if present.
pub fn value_u64(metric: &str, inst: Option<&str>) -> Option<u64> {
    fetch(&[metric])
        .get(metric)?
        .get(&inst.map(str::to_string))?
        .parse()
        .ok()
}

/// All instances of a numeric metric.
pub fn values_u64(metric: &str) -> BTreeMap<String, u64> {
    fetch(&[metric])
        .remove(metric)
        .unwrap_or_default()
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

/// Watches whether the kernel ran the agent's block completion program for every request
/// a disk completed. The kernel skips tracing programs in some contexts without counting it
/// as a recursion miss (seen on these machines: block completions in a softirq that
/// interrupted the VM's init process). A test that finds a per-process count short can ask
/// this whether the kernel skipped runs, which is not the agent's fault, or not, which is.
/// Both truths are the kernel's: the program's run count (bpftool, with
/// kernel.bpf_stats_enabled on) and the disk's completed requests (/proc/diskstats).
pub struct CompletionWatch {
    disk: String,
    runs: u64,
    done: u64,
}

impl CompletionWatch {
    pub fn start(disk: &str) -> CompletionWatch {
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")
            .expect("enable kernel.bpf_stats_enabled");
        CompletionWatch {
            disk: disk.to_string(),
            runs: completion_runs(),
            done: disk_completions(disk),
        }
    }

    /// Completions of the disk since start that the program did not run for (0 when it ran
    /// for all; other disks' completions can only hide skips, never invent them).
    pub fn skipped(&self) -> u64 {
        (disk_completions(&self.disk) - self.done).saturating_sub(completion_runs() - self.runs)
    }
}

/// Runs of biotop's completion program (whichever hook it chose), from bpftool.
fn completion_runs() -> u64 {
    let out = run_ok("bpftool", &["prog", "show"]);
    out.lines()
        .filter(|l| l.contains("name btf_rq_complete") || l.contains("name tp_rq_complete"))
        // bpftool leaves run_cnt out while it is 0 (a program that has not run since
        // kernel.bpf_stats_enabled went on).
        .map(|l| {
            l.split("run_cnt ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map_or(0, |n| n.parse::<u64>().expect("run_cnt is a number"))
        })
        .sum()
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

/// Requests the disk completed (reads, writes, discards, flushes), from /proc/diskstats.
pub fn disk_completions(disk: &str) -> u64 {
    let f = diskstats(disk);
    f[0] + f[4] + f.get(11).copied().unwrap_or(0) + f.get(15).copied().unwrap_or(0)
}

/// Runs `attempt` (a workload and its exact checks) until it passes. A failed attempt is
/// retried only when the kernel skipped the agent's completion program meanwhile
/// (CompletionWatch); a failure without skipped runs, or skips in every one of 4 attempts,
/// fails the test.
pub fn exact_unless_kernel_skipped(disk: &str, mut attempt: impl FnMut() -> Result<(), String>) {
    let mut skips = Vec::new();
    for _ in 0..4 {
        let w = CompletionWatch::start(disk);
        let unseen0 =
            value_u64("bcc.proc.io.perdev_unseen", None).expect("bcc.proc.io.perdev_unseen");
        match attempt() {
            Ok(()) => return,
            Err(e) => {
                let s = w.skipped();
                if s == 0 {
                    panic!("{e} (the kernel ran the completion program for every request)");
                }
                // The agent must have noticed: its own estimate of unseen completions rose.
                let unseen = value_u64("bcc.proc.io.perdev_unseen", None)
                    .expect("bcc.proc.io.perdev_unseen")
                    - unseen0;
                eprintln!("retrying: {e}, but the kernel skipped the completion program for {s} requests (bcc.proc.io.perdev_unseen rose by {unseen})");
                assert!(
                    unseen > 0,
                    "the kernel skipped {s} completions but bcc.proc.io.perdev_unseen did not rise"
                );
                skips.push(s);
            }
        }
    }
    panic!("the kernel skipped the completion program in every attempt ({skips:?} requests): exactness could not be checked");
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
