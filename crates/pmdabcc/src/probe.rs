//! `pmdabcc --probe`: will each configured module work on this kernel?
//!
//! Starts every module section of bcc.conf through the modules' own `start()` (the loader
//! the agent uses), without pmcd, and prints per section its state, the programs it loaded
//! (the hooks it chose) and, when it failed, why: libbpf's lines and the verifier's last
//! ones. With `--all-hooks` each section is also started once per hook alternative
//! ([`bpf::force_hook`]). With `--workload CMD` (or `--watch SECONDS`) the running modules
//! then count a workload and their metrics are printed, beside the kernel's own counts of
//! the same events. Everything is released at the end.
//!
//! Output, one record per line, tab-separated (the first field says which kind):
//!
//! ```text
//! kernel   RELEASE   MAJOR.MINOR
//! module   SECTION[@HOOK]  STATE  HOOKS  DETAIL
//! log      SECTION[@HOOK]  LINE                      (libbpf / verifier, for the module above)
//! value    SECTION[@HOOK]  METRIC  INSTANCE  VALUE  DELTA   (DELTA: counters over the workload)
//! value    kernel          NAME    INSTANCE  VALUE  DELTA   (/proc counts of the same events)
//! summary  N running  N unsupported  N failed
//! ```
//!
//! STATE is `running` (HOOKS: the programs loaded), `unsupported` (the kernel lacks a hook
//! the module needs; HOOKS: `missing:` and what), `failed` (anything else: a verifier or
//! CO-RE rejection, a configuration error; HOOKS: its kind) or `disabled`. The exit status
//! is 1 when any section `failed` or the workload failed: a missing hook is something a
//! module expects on some kernels, a rejected program is not.

use crate::agent::{build_slots, SlotState};
use crate::bpf::{self, Hook};
use crate::config::{check_trusted, Config};
use crate::module::{indom_serial, MetricSpec, Module, ModuleError, ModuleInstances};
use pcp_pmda::{Instances, Semantics, Value};
use regex_lite::Regex;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// What `--probe` was asked to do.
#[derive(Debug, Default)]
pub struct Options {
    pub config: PathBuf,
    /// Also start each section once per hook alternative.
    pub all_hooks: bool,
    /// Shell command run (and waited for) while the modules count.
    pub workload: Option<String>,
    /// Without a workload: how long the modules count.
    pub watch: Option<Duration>,
}

const HOOKS: [Hook; 3] = [Hook::TpBtf, Hook::RawTp, Hook::Tracepoint];

/// The outcome of one start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Unsupported,
    Failed,
    Disabled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Unsupported => "unsupported",
            State::Failed => "failed",
            State::Disabled => "disabled",
        }
    }
}

/// What libbpf's messages (and a failed start's error) say about the failure.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Hooks the kernel does not have (`btf:NAME`, `tracepoint:CAT/NAME`, `raw_tp:NAME`).
    pub missing: Vec<String>,
    /// The kernel refused a program (verifier, or libbpf poisoned it for a failed CO-RE
    /// relocation): a bug in the module, not a missing hook.
    pub rejected: bool,
    /// The field or type a CO-RE relocation could not find.
    pub core: Option<String>,
    /// The lines worth showing: libbpf's first failures, the verifier's last lines.
    pub lines: Vec<String>,
}

static RE_BTF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"failed to find kernel BTF type ID of '([^']+)'").unwrap());
static RE_TP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"failed to determine tracepoint '([^']+)' perf event ID").unwrap()
});
static RE_RAW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"failed to attach to raw tracepoint '([^']+)': (-ENOENT|-2\b|No such file)")
        .unwrap()
});
static RE_CORE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"failed to resolve CO-RE relocation <[^>]+> \[\d+\] (.+?) \(").unwrap()
});
/// The framework's own check of a program's section (`tp_btf/x is missing on this kernel`).
static RE_SECTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\S+/\S+) is missing on this kernel").unwrap());

/// Most libbpf lines and verifier lines shown per start.
const LIBBPF_LINES: usize = 6;
const VERIFIER_LINES: usize = 3;
const VERIFIER_WIDTH: usize = 160;

/// `missing:` names for a program section: `tp_btf/x` -> `btf:x`, `tracepoint/c/x` ->
/// `tracepoint:c/x`, as libbpf's messages give them.
fn section_hook(section: &str) -> String {
    match section.split_once('/') {
        Some(("tp_btf", r)) => format!("btf:{r}"),
        Some(("raw_tp" | "raw_tracepoint", r)) => format!("raw_tp:{r}"),
        Some(("tracepoint" | "tp", r)) => format!("tracepoint:{r}"),
        _ => section.to_string(),
    }
}

impl Evidence {
    /// From libbpf's messages (multi-line ones are split) and the start's error.
    pub fn from_log(messages: &[String], err: Option<&ModuleError>) -> Evidence {
        let mut ev = Evidence::default();
        let mut plain = Vec::new();
        let mut verifier: Option<Vec<String>> = None;
        for line in messages
            .iter()
            .flat_map(|m| m.lines())
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
        {
            if let Some(v) = verifier.as_mut() {
                if line.contains("-- END PROG LOAD LOG --") {
                    // The verifier's verdict is at the end of its log; the start is preamble.
                    let v = verifier.take().unwrap_or_default();
                    let from = v.len().saturating_sub(VERIFIER_LINES);
                    plain.extend(v[from..].iter().map(|l| format!("  {l}")));
                } else if !line.starts_with("processed ")
                    && !line.starts_with("verification time")
                    && !line.starts_with("stack depth")
                {
                    if let Some(c) = RE_CORE.captures(line) {
                        ev.core = Some(c[1].to_string());
                    }
                    // Register dumps run to hundreds of characters: their start says enough.
                    v.push(line.chars().take(VERIFIER_WIDTH).collect());
                }
                continue;
            }
            if let Some(head) = line.strip_suffix("-- BEGIN PROG LOAD LOG --") {
                ev.rejected = true;
                plain.push(format!("{} verifier log, last lines:", head.trim_end()));
                verifier = Some(Vec::new());
                continue;
            }
            if let Some(c) = RE_BTF.captures(line) {
                ev.missing.push(format!("btf:{}", &c[1]));
            } else if let Some(c) = RE_TP.captures(line) {
                ev.missing.push(format!("tracepoint:{}", &c[1]));
            } else if let Some(c) = RE_RAW.captures(line) {
                ev.missing.push(format!("raw_tp:{}", &c[1]));
            } else if let Some(c) = RE_CORE.captures(line) {
                ev.core = Some(c[1].to_string());
                ev.rejected = true;
            } else if line.contains("BPF program load failed") {
                ev.rejected = true;
            }
            // libbpf's informational lines (the bridge captures those too) say nothing here.
            let failure = ["fail", "error", "invalid", "-E"]
                .iter()
                .any(|w| line.contains(w));
            if failure && plain.len() < LIBBPF_LINES {
                plain.push(line.to_string());
            }
        }
        if let Some(e @ ModuleError::NoHook(_)) = err {
            let msg = e.to_string();
            ev.missing
                .extend(RE_SECTION.captures_iter(&msg).map(|c| section_hook(&c[1])));
        }
        ev.missing.sort();
        ev.missing.dedup();
        ev.lines = plain;
        ev
    }
}

/// State and HOOKS column of a start that returned `err`, with libbpf's `ev`idence: a
/// missing hook is `unsupported`, a program the kernel refused (or anything else) `failed`.
pub fn classify_failure(err: &ModuleError, ev: &Evidence) -> (State, String) {
    if !ev.rejected && ev.core.is_none() && !matches!(err, ModuleError::Config(_)) {
        if !ev.missing.is_empty() {
            return (
                State::Unsupported,
                format!("missing:{}", ev.missing.join(",")),
            );
        }
        if matches!(err, ModuleError::NoHook(_)) {
            // The module's own check of the kernel (e.g. a tracepoint absent from tracefs).
            return (State::Unsupported, "missing:-".into());
        }
    }
    let kind = if let Some(c) = &ev.core {
        format!("core:{c}")
    } else if ev.rejected {
        "verifier".into()
    } else {
        match err {
            ModuleError::Config(_) => "config".into(),
            ModuleError::Bpf { stage, .. } => format!("bpf-{stage}"),
            ModuleError::NoHook(_) => "no-hook".into(),
            ModuleError::Other(_) => "error".into(),
        }
    };
    (State::Failed, kind)
}

/// A module that started, kept for the workload.
struct Live {
    label: String,
    cluster: u32,
    prefix: String,
    metrics: Vec<MetricSpec>,
    module: Box<dyn Module>,
    inst: Instances,
}

impl Live {
    fn with_instances<R>(
        &mut self,
        f: impl FnOnce(&mut dyn Module, &mut ModuleInstances) -> R,
    ) -> R {
        let mut mi = ModuleInstances {
            cluster: self.cluster,
            inner: &mut self.inst,
        };
        f(self.module.as_mut(), &mut mi)
    }

    fn refresh(&mut self) {
        if let Err(e) = self.with_instances(|m, i| m.refresh(i)) {
            eprintln!("pmdabcc: {}: refresh failed: {e}", self.label);
        }
    }

    fn tick(&mut self) {
        self.with_instances(|m, i| m.tick(i));
    }

    /// Every value: (metric, instance or "-") -> (value, counter?).
    fn values(&self) -> BTreeMap<(String, String), (Value, bool)> {
        let mut out = BTreeMap::new();
        for m in &self.metrics {
            let name = format!("{}{}", self.prefix, m.name);
            let counter = m.sem == Semantics::Counter;
            let insts: Vec<(Option<u32>, String)> = match m.indom {
                None => vec![(None, "-".into())],
                Some(local) => self
                    .inst
                    .members(indom_serial(self.cluster, local))
                    .into_iter()
                    .map(|(id, n)| (Some(id), n))
                    .collect(),
            };
            for (id, iname) in insts {
                if let Ok(Some(v)) = self.module.fetch(m.item, id) {
                    out.insert((name.clone(), iname), (v, counter));
                }
            }
        }
        out
    }
}

fn num(v: &Value) -> Option<f64> {
    Some(match v {
        Value::I32(x) => *x as f64,
        Value::U32(x) => *x as f64,
        Value::I64(x) => *x as f64,
        Value::U64(x) => *x as f64,
        Value::Float(x) => *x as f64,
        Value::Double(x) => *x,
        Value::String(_) | Value::Events(_) => return None,
    })
}

fn show(v: &Value) -> String {
    match v {
        Value::I32(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Double(x) => x.to_string(),
        // Tabs and newlines would break the record.
        Value::String(s) => s.replace(['\t', '\n'], " "),
        Value::Events(e) => format!("{} records", e.records.len()),
    }
}

/// The kernel's own counts of what the modules count: (name, instance) -> count. `processes`,
/// `ctxt` and `intr` (all interrupts) from /proc/stat, `disk.reads` and `disk.requests`
/// (completed) per disk from /proc/diskstats, `softirqs` per vector from /proc/softirqs,
/// `tcp.opens` (active and passive) from /proc/net/snmp, `uptime.ms` from /proc/uptime.
pub fn kernel_counts() -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        for l in stat.lines() {
            let mut f = l.split_whitespace();
            if let (Some(k @ ("processes" | "ctxt" | "intr")), Some(v)) = (f.next(), f.next()) {
                if let Ok(v) = v.parse() {
                    out.insert((k.to_string(), "-".to_string()), v);
                }
            }
        }
    }
    if let Ok(ds) = std::fs::read_to_string("/proc/diskstats") {
        for l in ds.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 14 {
                continue;
            }
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            // Completed requests: reads, writes, then discards and flushes where present.
            let (reads, writes, discards, flushes) = (n(3), n(7), n(14), n(18));
            let disk = f[2].to_string();
            out.insert(("disk.reads".into(), disk.clone()), reads);
            out.insert(
                ("disk.requests".into(), disk),
                reads + writes + discards + flushes,
            );
        }
    }
    if let Some(secs) = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
    {
        // The window's length, for counts that grow with time (samples at a frequency).
        out.insert(("uptime.ms".into(), "-".into()), (secs * 1000.0) as u64);
    }
    if let Ok(soft) = std::fs::read_to_string("/proc/softirqs") {
        // "NET_RX:  12  34": runs of each vector, per CPU.
        for l in soft.lines().skip(1) {
            if let Some((name, cpus)) = l.split_once(':') {
                let n: u64 = cpus
                    .split_whitespace()
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum();
                out.insert(("softirqs".into(), name.trim().to_lowercase()), n);
            }
        }
    }
    if let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") {
        let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
        if let [names, vals] = tcp[..] {
            let pairs: HashMap<&str, &str> = names
                .split_whitespace()
                .zip(vals.split_whitespace())
                .collect();
            let get = |k: &str| {
                pairs
                    .get(k)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            out.insert(
                ("tcp.opens".into(), "-".into()),
                get("ActiveOpens") + get("PassiveOpens"),
            );
        }
    }
    out
}

/// The kernel's release and its "major.minor", the key of the expectation table.
pub fn kernel_release() -> (String, String) {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    let release = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return ("unknown".into(), "unknown".into());
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    let mm: Vec<&str> = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .collect();
    let key = mm.join(".");
    (release, key)
}

struct Out<W: Write> {
    w: W,
}

impl<W: Write> Out<W> {
    fn rec(&mut self, fields: &[&str]) {
        let _ = writeln!(self.w, "{}", fields.join("\t"));
    }
}

/// Runs the probe; returns the exit status.
pub fn run(opts: &Options) -> anyhow::Result<i32> {
    let cfg = Config::load(&opts.config)?;
    if let Err(e) = check_trusted(&opts.config) {
        // The agent refuses such a file; the probe was asked for it explicitly by root.
        eprintln!("pmdabcc: warning: {e}");
    }
    // libbpf's messages go to the log (none here: no logger) and to the captures below.
    bpf::bridge_libbpf_log();
    if let Err(e) = bpf::ensure_tracefs() {
        eprintln!("pmdabcc: {e}");
    }
    let stdout = std::io::stdout();
    let mut out = Out { w: stdout.lock() };
    let (release, key) = kernel_release();
    out.rec(&["kernel", &release, &key]);

    let mut live: Vec<Live> = Vec::new();
    let (mut running, mut unsupported, mut failed) = (0, 0, 0);
    let (_, config_errors) = build_slots(cfg.clone());
    for e in config_errors {
        out.rec(&["module", "-", "failed", "config", &e]);
        failed += 1;
    }
    // Per section, from the normal start: the hook first_working chose, if it was used.
    let mut chosen: HashMap<String, Option<Hook>> = HashMap::new();
    let mut runs: Vec<Option<Hook>> = vec![None];
    if opts.all_hooks {
        runs.extend(HOOKS.map(Some));
    }
    for forced in runs {
        let (slots, _) = build_slots(cfg.clone());
        for slot in slots {
            let label = match forced {
                None => slot.section.clone(),
                Some(h) => format!("{}@{}", slot.section, h.as_str()),
            };
            match (&slot.state, forced) {
                (SlotState::Loading, _) => {}
                (SlotState::Disabled | SlotState::Unavailable, None) => {
                    out.rec(&["module", &label, slot.state.as_str(), "-", &slot.status]);
                    continue;
                }
                (SlotState::Failed, None) => {
                    out.rec(&["module", &label, "failed", "config", &slot.status]);
                    failed += 1;
                    continue;
                }
                _ => continue,
            }
            if let Some(h) = forced {
                // Only modules with hook alternatives, and not the one the normal start chose.
                match chosen.get(&slot.section) {
                    Some(Some(c)) if *c == h => continue,
                    Some(_) => {}
                    None => continue,
                }
            }
            let (Some(spec), Some(mut module)) = (slot.spec, slot.module) else {
                continue;
            };
            bpf::force_hook(forced);
            let t0 = Instant::now();
            let (result, log) = bpf::capture_libbpf(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| module.start()))
                    .unwrap_or_else(|_| Err(ModuleError::Other("panic while loading".into())))
            });
            let ms = t0.elapsed().as_millis();
            let forcing = bpf::force_hook(None);
            if forced.is_some() && forcing.not_offered {
                continue;
            }
            if forced.is_none() && forcing.consulted {
                chosen.insert(slot.section.clone(), forcing.chosen);
            }
            let ev = Evidence::from_log(&log, result.as_ref().err());
            match result {
                Ok(status) => {
                    running += 1;
                    let mut progs: Vec<String> =
                        module.bpf_objects().0.into_iter().map(|p| p.name).collect();
                    progs.sort();
                    let progs = if progs.is_empty() {
                        "-".into()
                    } else {
                        progs.join(",")
                    };
                    out.rec(&[
                        "module",
                        &label,
                        "running",
                        &progs,
                        &format!("{status} ({ms} ms)"),
                    ]);
                    for l in &ev.lines {
                        out.rec(&["log", &label, l]);
                    }
                    // Copies: the layout borrows from the module, which moves below.
                    let (metrics, kinds) = {
                        let (m, i) = module.layout().unwrap_or((spec.metrics, spec.indoms));
                        let kinds: Vec<(u32, pcp_pmda::IndomKind)> = i
                            .iter()
                            .map(|i| (indom_serial(slot.cluster, i.id), i.kind))
                            .collect();
                        (m.to_vec(), kinds)
                    };
                    let domain = live.len() as u32 + 1;
                    if domain > pcp_pmda::MAX_DOMAIN {
                        continue; // more modules than pmdaCache domains: counted, not watched
                    }
                    live.push(Live {
                        label,
                        cluster: slot.cluster,
                        prefix: slot.prefix.clone(),
                        metrics,
                        module,
                        inst: Instances::standalone(domain, &kinds),
                    });
                }
                Err(e) => {
                    let (state, kind) = classify_failure(&e, &ev);
                    match state {
                        State::Unsupported => unsupported += 1,
                        _ => failed += 1,
                    }
                    out.rec(&[
                        "module",
                        &label,
                        state.as_str(),
                        &kind,
                        &format!("{e} ({ms} ms)"),
                    ]);
                    for l in &ev.lines {
                        out.rec(&["log", &label, l]);
                    }
                }
            }
        }
    }
    let _ = out.w.flush();

    let mut workload_failed = false;
    if opts.workload.is_some() || opts.watch.is_some() {
        workload_failed = !watch(opts, &mut live, &mut out)?;
    }
    // Dropping the modules detaches and closes everything they loaded.
    drop(live);
    out.rec(&[
        "summary",
        &format!("{running} running"),
        &format!("{unsupported} unsupported"),
        &format!("{failed} failed"),
    ]);
    let _ = out.w.flush();
    Ok(if failed > 0 || workload_failed { 1 } else { 0 })
}

/// Counts over the workload (or the watch time) and prints the values; false when the
/// workload failed.
fn watch<W: Write>(opts: &Options, live: &mut [Live], out: &mut Out<W>) -> anyhow::Result<bool> {
    // Kernel counts outside the modules' readings: their window contains the modules'.
    let k0 = kernel_counts();
    for l in live.iter_mut() {
        l.refresh();
    }
    let before: Vec<_> = live.iter().map(Live::values).collect();
    let _ = out.w.flush();
    let t0 = Instant::now();
    let mut ok = true;
    let mut child = match &opts.workload {
        Some(cmd) => Some(
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd)
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot run the workload {cmd:?}: {e}"))?,
        ),
        None => None,
    };
    let mut last_tick = Instant::now();
    loop {
        if let Some(c) = child.as_mut() {
            if let Some(status) = c.try_wait()? {
                if !status.success() {
                    eprintln!("pmdabcc: the workload failed: {status}");
                    ok = false;
                }
                out.rec(&["workload", "exit", &status.code().unwrap_or(-1).to_string()]);
                break;
            }
        } else if t0.elapsed() >= opts.watch.unwrap_or_default() {
            break;
        }
        // The agent ticks its modules about once a second (process filter re-scans).
        if last_tick.elapsed() >= Duration::from_secs(1) {
            live.iter_mut().for_each(Live::tick);
            last_tick = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Events still in ring buffers reach their consumer threads.
    std::thread::sleep(Duration::from_millis(500));
    for l in live.iter_mut() {
        l.refresh();
    }
    let k1 = kernel_counts();
    for (l, before) in live.iter().zip(before) {
        for ((metric, inst), (v, counter)) in l.values() {
            let old = before.get(&(metric.clone(), inst.clone())).map(|b| &b.0);
            let delta = match (counter, num(&v)) {
                (true, Some(now)) => {
                    let was = old.and_then(num).unwrap_or(0.0);
                    show_num(now - was)
                }
                _ => "-".into(),
            };
            // Zero before and after says nothing: skip it (a missing value reads as 0).
            if num(&v) == Some(0.0) && old.and_then(num).unwrap_or(0.0) == 0.0 {
                continue;
            }
            out.rec(&["value", &l.label, &metric, &inst, &show(&v), &delta]);
        }
    }
    for ((name, inst), now) in &k1 {
        let was = k0.get(&(name.clone(), inst.clone())).copied().unwrap_or(0);
        if *now == 0 {
            continue;
        }
        out.rec(&[
            "value",
            "kernel",
            name,
            inst,
            &now.to_string(),
            &now.saturating_sub(was).to_string(),
        ]);
    }
    let _ = out.w.flush();
    Ok(ok)
}

fn show_num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    // Verbatim from Debian 12's 6.1 kernel (shared/research/kernel-portability.md).
    #[test]
    fn missing_btf_tracepoint_is_unsupported() {
        let ev = Evidence::from_log(&msgs(&[
            "libbpf: prog 'btf_io_start': failed to find kernel BTF type ID of 'block_io_start': -ESRCH\n",
            "libbpf: prog 'btf_io_start': failed to prepare load attributes: -ESRCH\n",
        ]), None);
        assert_eq!(ev.missing, vec!["btf:block_io_start"]);
        assert!(!ev.rejected);
        let e = ModuleError::NoHook("tp_btf: BPF load failed: No such process (os error 3)".into());
        assert_eq!(
            classify_failure(&e, &ev),
            (State::Unsupported, "missing:btf:block_io_start".into())
        );
    }

    #[test]
    fn missing_classic_tracepoint_is_unsupported_but_a_config_error_is_not() {
        let ev = Evidence::from_log(&msgs(&[
            "libbpf: failed to determine tracepoint 'block/block_io_start' perf event ID: -ENOENT\n",
            "libbpf: prog 'tp_io_start': failed to create tracepoint 'block/block_io_start' perf event: -ENOENT\n",
        ]), None);
        assert_eq!(ev.missing, vec!["tracepoint:block/block_io_start"]);
        // The framework reports a failed attach as Other, with libbpf's summary.
        let e = ModuleError::Other("BPF attach failed: ...".into());
        assert_eq!(
            classify_failure(&e, &ev),
            (
                State::Unsupported,
                "missing:tracepoint:block/block_io_start".into()
            )
        );
        let e = ModuleError::Config(crate::config::ConfigError {
            file: "x".into(),
            line: 1,
            section: None,
            key: None,
            msg: "bad".into(),
        });
        assert_eq!(classify_failure(&e, &ev).0, State::Failed);
    }

    #[test]
    fn the_frameworks_own_hook_check_names_the_hook() {
        let e = ModuleError::NoHook(
            "program x_io: tp_btf/block_io_start is missing on this kernel".into(),
        );
        let ev = Evidence::from_log(&[], Some(&e));
        assert_eq!(
            classify_failure(&e, &ev),
            (State::Unsupported, "missing:btf:block_io_start".into())
        );
    }

    // As the agent's libbpf bridge captures it: one line at a time.
    #[test]
    fn line_by_line_capture_reads_the_same() {
        let log = "libbpf: prog 'p': BPF program load failed: -EACCES\nlibbpf: prog 'p': -- BEGIN PROG LOAD LOG --\n0: (07) r1 += 8\ndereference of modified ctx ptr R1 off=8 disallowed\nprocessed 2 insns\n-- END PROG LOAD LOG --\nlibbpf: prog 'p': failed to load: -EACCES";
        let whole = Evidence::from_log(&msgs(&[log]), None);
        let lines: Vec<String> = log.lines().map(str::to_string).collect();
        assert_eq!(Evidence::from_log(&lines, None), whole);
        assert!(whole.rejected);
    }

    #[test]
    fn core_relocation_failure_is_a_failure_with_the_field() {
        let log = "libbpf: prog 'tcplife_send': BPF program load failed: -EINVAL\nlibbpf: prog 'tcplife_send': -- BEGIN PROG LOAD LOG --\nreg type unsupported for arg#0 function tcplife_send#270\n0: R1=ctx(off=0,imm=0) R10=fp0\n; __u64 sk = (__u64)args->sk;\n0: <invalid CO-RE relocation>\nfailed to resolve CO-RE relocation <byte_off> [268] struct trace_event_raw_sock_msg_length.sk (0:1 @ offset 8)\nprocessed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n-- END PROG LOAD LOG --\n";
        let ev = Evidence::from_log(&msgs(&[log]), None);
        assert!(ev.rejected);
        assert_eq!(
            ev.core.as_deref(),
            Some("struct trace_event_raw_sock_msg_length.sk")
        );
        // The verdict lines, not the "processed" statistics.
        assert!(ev
            .lines
            .iter()
            .any(|l| l.contains("failed to resolve CO-RE")));
        assert!(!ev.lines.iter().any(|l| l.contains("processed 1 insns")));
        let e = ModuleError::NoHook("tracepoint: BPF load failed: Invalid argument".into());
        assert_eq!(
            classify_failure(&e, &ev),
            (
                State::Failed,
                "core:struct trace_event_raw_sock_msg_length.sk".into()
            )
        );
    }

    #[test]
    fn verifier_rejection_is_a_failure_even_beside_a_missing_hook() {
        let ev = Evidence::from_log(&msgs(&[
            "libbpf: failed to determine tracepoint 'x/y' perf event ID: -ENOENT\n",
            "libbpf: prog 'selftest_verifier': BPF program load failed: -EACCES\n",
            "libbpf: prog 'selftest_verifier': -- BEGIN PROG LOAD LOG --\n0: (07) r1 += 65536\n1: (61) r0 = *(u32 *)(r1 +0)\ndereference of modified ctx ptr R1 off=65536 disallowed\nprocessed 2 insns\n-- END PROG LOAD LOG --\n",
        ]), None);
        let e = ModuleError::Bpf {
            stage: "load",
            source: libbpf_rs::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            classify_failure(&e, &ev),
            (State::Failed, "verifier".into())
        );
        assert_eq!(
            ev.lines.last().map(String::as_str),
            Some("  dereference of modified ctx ptr R1 off=65536 disallowed")
        );
    }

    #[test]
    fn kernel_key_is_major_minor() {
        let (release, key) = kernel_release();
        assert!(release.starts_with(&key), "{release} vs {key}");
        assert_eq!(key.split('.').count(), 2, "{key}");
    }

    #[test]
    fn kernel_counts_move_with_a_fork() {
        let k0 = kernel_counts();
        std::process::Command::new("/bin/true").status().unwrap();
        let k1 = kernel_counts();
        let p =
            |k: &BTreeMap<(String, String), u64>| k[&("processes".to_string(), "-".to_string())];
        assert!(p(&k1) > p(&k0));
    }
}
