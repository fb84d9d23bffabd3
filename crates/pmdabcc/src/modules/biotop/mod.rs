//! `biotop`: block I/O per (disk, process), the original pmdabcc's `bcc.proc.io.perdev`
//! (after bcc's biotop tool), with a read/write/discard/flush split; or, with
//! `layout = table`, PCP's Python biotop's table of the busiest processes of the last
//! `interval` (`bcc.proc.io.perdev.{pid,comm,direction,...}`, rows "0".."N-1").
//!
//! BPF attributes each request to its submitter when it enters the block layer and adds its
//! bytes to a per-(disk, tgid) hash map when it completes. User space reads that map with
//! batched lookups on each fetch, names instances `<disk>::<pid as 6 digits>`, and retires
//! the pairs of exited processes after `retention` seconds once their final values were
//! served.

mod metrics;

use crate::bpf::{self, Hook};
use crate::config::{ConfigError, ModuleConfig};
use crate::module::{
    MapInfo, Module, ModuleError, ModuleInstances, ModuleSpec, OptionKind, OptionSpec, ProgInfo,
};
use crate::process::ProcessFilter;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use metrics::INDOM_PAIRS;
use pcp_pmda::{PmdaError, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

bpf::skeleton!("biotop");

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "biotop",
    summary: "block I/O bytes and requests per disk and process (bcc.proc.io.perdev)",
    default_cluster: Some(10),
    metrics: metrics::METRICS,
    indoms: metrics::INDOMS,
    options: &[
        OptionSpec { key: "process", kind: OptionKind::Process, default: "", doc: "only track these processes: PIDs, names or regular expressions (comma-separated); default: all" },
        OptionSpec { key: "max_entries", kind: OptionKind::Integer { min: 16, max: 1_000_000 }, default: "10240", doc: "most (disk, process) pairs tracked at once (16 to 1000000, default 10240); more are dropped and counted in proc.io.perdev_dropped" },
        OptionSpec { key: "retention", kind: OptionKind::Integer { min: 0, max: 86_400 }, default: "60", doc: "seconds an exited process's instances stay after its final values were served (0 to 86400, default 60)" },
        OptionSpec { key: "hook", kind: OptionKind::Enum(&["auto", "tp_btf", "tracepoint"]), default: "auto", doc: "auto (default: tp_btf, else classic tracepoints), tp_btf or tracepoint" },
        OptionSpec { key: "attribution", kind: OptionKind::Enum(&["auto", "io_start", "insert_issue"]), default: "auto", doc: "auto (default: block_io_start where the kernel has it), io_start, or insert_issue (block_rq_insert/block_rq_issue, first seen wins)" },
        OptionSpec { key: "layout", kind: OptionKind::Enum(&["process", "table"]), default: "process", doc: "process (default): per-process counters proc.io.perdev, proc.io.perdev_*; table: the busiest processes of the last interval (proc.io.perdev.pid, comm, direction, major, minor, disk, io, bytes, duration), as PCP's Python biotop served them" },
        OptionSpec { key: "interval", kind: OptionKind::Integer { min: 0, max: 3600 }, default: "1", doc: "table layout: seconds over which the rows are summed and ranked; 0: since the previous fetch" },
        OptionSpec { key: "process_count", kind: OptionKind::Integer { min: 1, max: 10_000 }, default: "20", doc: "table layout: how many rows to serve" },
        OptionSpec { key: "sort", kind: OptionKind::Enum(SORT_KEYS), default: "-bytes", doc: "table layout: the ranking, bytes, io, duration (average) or rw (reads first), ascending; with '-' descending" },
        OptionSpec { key: "include_residual", kind: OptionKind::Bool, default: "False", doc: "table layout: also rows of I/O submitted with no process context (PID 0)" },
    ],
    layouts: &[("layout = table", metrics::TABLE_METRICS, metrics::TABLE_INDOMS)],
    create,
    min_kernel: Some("5.10"),
    program: None,
};

const DEFAULT_MAX_ENTRIES: u64 = 10240;
const SORT_KEYS: &[&str] = &[
    "bytes",
    "-bytes",
    "io",
    "-io",
    "duration",
    "-duration",
    "rw",
    "-rw",
];
/// Options of the table layout: set with the process layout they are logged as unused.
const TABLE_OPTIONS: &[&str] = &["interval", "process_count", "sort", "include_residual"];
const DEFAULT_RETENTION: u64 = 60;
/// Exited processes whose values nobody fetched are retired after this many retention
/// periods anyway, so an unwatched agent does not keep them for ever.
const UNSERVED_FACTOR: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attribution {
    Auto,
    IoStart,
    InsertIssue,
}

fn create(_spec: &'static ModuleSpec, cfg: &ModuleConfig) -> Result<Box<dyn Module>, ConfigError> {
    let filter = ProcessFilter::from_config(cfg, "process")?;
    let max_entries = cfg.get_u64("max_entries", DEFAULT_MAX_ENTRIES, 16..=1_000_000)? as u32;
    let retention = Duration::from_secs(cfg.get_u64("retention", DEFAULT_RETENTION, 0..=86_400)?);
    let hooks = match cfg.get("hook").unwrap_or("auto") {
        "auto" => vec![Hook::TpBtf, Hook::Tracepoint],
        "tp_btf" => vec![Hook::TpBtf],
        "tracepoint" => vec![Hook::Tracepoint],
        v => {
            return Err(cfg.error(
                "hook",
                format!("expected auto, tp_btf or tracepoint, got {v:?}"),
            ))
        }
    };
    let attribution = match cfg.get("attribution").unwrap_or("auto") {
        "auto" => Attribution::Auto,
        "io_start" => Attribution::IoStart,
        "insert_issue" => Attribution::InsertIssue,
        v => {
            return Err(cfg.error(
                "attribution",
                format!("expected auto, io_start or insert_issue, got {v:?}"),
            ))
        }
    };
    let table = match cfg.get("layout").unwrap_or("process") {
        "process" => {
            // Keys set to other than their defaults (the shipped bcc.conf writes switches out).
            let default = |k: &str| {
                SPEC.options
                    .iter()
                    .find(|o| o.key == k)
                    .map_or("", |o| o.default)
            };
            let set: Vec<&str> = TABLE_OPTIONS
                .iter()
                .copied()
                .filter(|k| {
                    cfg.get(k)
                        .is_some_and(|v| !v.eq_ignore_ascii_case(default(k)))
                })
                .collect();
            if !set.is_empty() {
                log::info!(
                    "biotop: {} {} no effect with layout = process (the default): set layout = table for PCP's Python biotop table",
                    set.join(", "),
                    if set.len() == 1 { "has" } else { "have" }
                );
            }
            None
        }
        "table" => {
            let sort = cfg.get("sort").unwrap_or("-bytes");
            let descending = sort.starts_with('-');
            let sort = match sort.trim_start_matches('-') {
                "bytes" => SortKey::Bytes,
                "io" => SortKey::Io,
                "duration" => SortKey::Duration,
                "rw" => SortKey::Rw,
                _ => {
                    return Err(cfg.error(
                        "sort",
                        format!("expected one of {}, got {sort:?}", SORT_KEYS.join(" | ")),
                    ))
                }
            };
            Some(Table::new(
                Duration::from_secs(cfg.get_u64("interval", 1, 0..=3600)?),
                cfg.get_u64("process_count", 20, 1..=10_000)? as usize,
                cfg.get_bool("include_residual", false)?,
                sort,
                descending,
            ))
        }
        v => return Err(cfg.error("layout", format!("expected process or table, got {v:?}"))),
    };
    Ok(Box::new(Biotop {
        table,
        skel: None,
        filter,
        tracked: BTreeSet::new(),
        max_entries,
        retention,
        hooks,
        attribution,
        pairs: HashMap::new(),
        by_inst: HashMap::new(),
        disks: HashMap::new(),
        counters: types::biotop_counters::default(),
        unseen: Unseen::default(),
    }))
}

/// (dev, tgid, process start): a pair's key, as in the BPF `pairs` map.
type PairKey = (u32, u32, u64);

/// One (disk, process) pair as last read from the map.
struct Pair {
    inst: u32,
    name: String,
    disk: String,
    val: types::biotop_val,
    /// When the process was first seen gone.
    gone_since: Option<Instant>,
    /// A fetch refreshed this pair after the process was gone (its final values were served).
    served_gone: bool,
}

/// What the table layout ranks rows by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortKey {
    Bytes,
    Io,
    Duration,
    Rw,
}

/// One row of the table layout: a process's reads, or writes, on one disk in the interval.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    pid: u32,
    comm: String,
    write: bool,
    dev: u32,
    disk: String,
    io: u64,
    bytes: u64,
    duration_us: u32,
}

/// Counts of a pair the table's deltas are taken from: reads, writes, read bytes, write
/// bytes, read ns, write ns.
type RowCounts = [u64; 6];

fn row_counts(v: &types::biotop_val) -> RowCounts {
    [
        v.reads,
        v.writes,
        v.read_bytes,
        v.write_bytes,
        v.read_ns,
        v.write_ns,
    ]
}

/// The table layout's state.
struct Table {
    /// Zero: the rows cover the time since the previous fetch.
    interval: Duration,
    rows_max: usize,
    include_residual: bool,
    sort: SortKey,
    descending: bool,
    last: Option<Instant>,
    /// Each pair's counts when the rows were last made.
    prev: HashMap<PairKey, RowCounts>,
    rows: Vec<Row>,
    fixed_set: bool,
}

impl Table {
    /// A table with no rows yet, whose first interval starts at the first fetch.
    fn new(
        interval: Duration,
        rows_max: usize,
        include_residual: bool,
        sort: SortKey,
        descending: bool,
    ) -> Table {
        Table {
            interval,
            rows_max,
            include_residual,
            sort,
            descending,
            last: None,
            prev: HashMap::new(),
            rows: Vec::new(),
            fixed_set: false,
        }
    }

    /// The rows of the interval since `self.prev`, ranked and cut to `rows_max`; `self.prev`
    /// becomes `now`.
    fn make_rows<'a>(&mut self, now: impl Iterator<Item = (PairKey, RowCounts, &'a str, String)>) {
        let mut rows = Vec::new();
        let mut next = HashMap::with_capacity(self.prev.len());
        for (key, cur, disk, comm) in now {
            let old = self.prev.get(&key).copied().unwrap_or_default();
            next.insert(key, cur);
            if key.1 == 0 && !self.include_residual {
                continue;
            }
            for write in [false, true] {
                let d = |i: usize| cur[i].saturating_sub(old[i]);
                let (io, bytes, ns) = if write {
                    (d(1), d(3), d(5))
                } else {
                    (d(0), d(2), d(4))
                };
                if io == 0 && bytes == 0 {
                    continue;
                }
                rows.push(Row {
                    pid: key.1,
                    comm: comm.clone(),
                    write,
                    dev: key.0,
                    disk: disk.to_string(),
                    io,
                    bytes,
                    duration_us: ns
                        .checked_div(io)
                        .map_or(0, |a| (a / 1000).min(u32::MAX as u64) as u32),
                });
            }
        }
        let sort = self.sort;
        rows.sort_by(|a, b| {
            let by = match sort {
                SortKey::Bytes => a.bytes.cmp(&b.bytes),
                SortKey::Io => a.io.cmp(&b.io),
                SortKey::Duration => a.duration_us.cmp(&b.duration_us),
                SortKey::Rw => a.write.cmp(&b.write),
            };
            by.then_with(|| (a.pid, a.dev, a.write).cmp(&(b.pid, b.dev, b.write)))
        });
        if self.descending {
            rows.reverse();
        }
        rows.truncate(self.rows_max);
        self.prev = next;
        self.rows = rows;
    }

    fn ensure_instances(&mut self, inst: &mut ModuleInstances) {
        if !self.fixed_set {
            let members: Vec<(u32, String)> = (0..self.rows_max as u32)
                .map(|i| (i, i.to_string()))
                .collect();
            inst.set_fixed(metrics::INDOM_ROWS, &members);
            self.fixed_set = true;
        }
    }
}

struct Biotop {
    /// `layout = table`; `None`: the per-process counters.
    table: Option<Table>,
    skel: Option<BiotopSkel<'static>>,
    filter: Option<ProcessFilter>,
    /// PIDs currently in the BPF `pids` map.
    tracked: BTreeSet<u32>,
    max_entries: u32,
    retention: Duration,
    hooks: Vec<Hook>,
    attribution: Attribution,
    pairs: HashMap<PairKey, Pair>,
    by_inst: HashMap<u32, PairKey>,
    /// dev_t (kernel encoding) to disk name.
    disks: HashMap<u32, String>,
    counters: types::biotop_counters,
    unseen: Unseen,
}

/// Completions the kernel did not run the completion program for: how far the requests
/// /proc/diskstats counted got ahead of those the program counted since the module started.
///
/// The kernel runs the program before it accounts a request in /proc/diskstats, so a
/// reading taken while a completion is between the two is low by one: that only ever lowers
/// a reading. A reading is taken only if the program's count did not move while
/// /proc/diskstats was read, so no completion can make it high.
#[derive(Default)]
struct Unseen {
    /// diskstats completions less the program's, at the start (the highest of the first
    /// readings: a low one would add to every later estimate).
    base: Option<i64>,
    /// The highest estimate so far (the metric is a counter).
    max: u64,
    /// Whether each disk of /proc/diskstats has a request queue (/sys/block/<disk>/mq).
    request_based: HashMap<String, bool>,
}

impl Unseen {
    /// diskstats completions less the program's count, if `ours` read the same before and
    /// after the diskstats text was read.
    fn reading(&mut self, ours_before: u64, diskstats: &str, ours_after: u64) -> Option<i64> {
        (ours_before == ours_after)
            .then(|| self.disk_completions(diskstats) as i64 - ours_after as i64)
    }

    fn baseline(&mut self, r: i64) {
        self.base = Some(self.base.map_or(r, |b| b.max(r)));
    }

    fn update(&mut self, r: i64) {
        if let Some(b) = self.base {
            self.max = self.max.max((r - b).max(0) as u64);
        }
    }

    /// Completed requests (reads, writes, discards, flushes) of the disks with a request
    /// queue. Partitions and bio-based devices (zram, device mapper) are left out: their I/O
    /// does not complete as requests of their own.
    fn disk_completions(&mut self, diskstats: &str) -> u64 {
        diskstats
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let name = *f.get(2)?;
                let rq = *self
                    .request_based
                    .entry(name.to_string())
                    .or_insert_with(|| {
                        std::path::Path::new("/sys/block")
                            .join(name)
                            .join("mq")
                            .exists()
                    });
                if !rq {
                    return None;
                }
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
                // after the name: reads (3), writes (7), discards (14), flushes (18) completed
                Some(num(3)? + num(7)? + num(14).unwrap_or(0) + num(18).unwrap_or(0))
            })
            .sum()
    }
}

/// Whether the running kernel has the block_io_start tracepoint (Linux 6.5+): its BTF
/// typedef when there is kernel BTF, tracefs otherwise.
fn kernel_has_io_start() -> bool {
    bpf::kernel_has_btf_tracepoint("block_io_start")
        .unwrap_or_else(|| bpf::kernel_has_tracepoint("block", "block_io_start"))
}

/// The name /proc/diskstats gives a whole disk, from its dev_t (kernel encoding).
fn disk_name(dev: u32) -> Option<String> {
    let (major, minor) = (dev >> 20, dev & 0xfffff);
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// Whether the process `pid` that started `start` ns after boot (its BPF start time) still
/// runs: /proc/<pid>/stat field 22 is the same start, in clock ticks. pid 0 (I/O from
/// interrupt or idle context) never exits.
fn process_alive(pid: u32, start: u64) -> bool {
    if pid == 0 {
        return true;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // After the command name (in parentheses, and it may hold any character), field 3 on.
    let Some(ticks) = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(22 - 3))
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return true; // unreadable: keep the pair rather than retire a live process
    };
    ticks == start / (1_000_000_000 / clock_ticks())
}

/// USER_HZ, the unit of /proc/<pid>/stat times (asked once).
fn clock_ticks() -> u64 {
    bpf::clock_ticks()
}

/// `<disk>::<pid as 6 digits>`, as the original pmdabcc named its instances.
fn instance_name(disk: &str, pid: u32) -> String {
    format!("{disk}::{pid:06}")
}

fn comm_str(c: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = c.iter().map(|&b| b as u8).take_while(|&b| b != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn load(
    hook: Hook,
    io_start: bool,
    max_entries: u32,
    filter: bool,
    timing: bool,
) -> Result<BiotopSkel<'static>, ModuleError> {
    let mut open = BiotopSkelBuilder::default()
        .open(bpf::storage())
        .map_err(ModuleError::bpf("open"))?;
    let btf = hook == Hook::TpBtf;
    let p = &mut open.progs;
    p.btf_io_start.set_autoload(btf && io_start);
    p.btf_rq_insert.set_autoload(btf && !io_start);
    // With block_io_start attribution, only for the issue time of durations.
    p.btf_rq_issue.set_autoload(btf && (!io_start || timing));
    p.btf_rq_merge.set_autoload(btf);
    p.btf_bio_backmerge.set_autoload(btf);
    p.btf_bio_frontmerge.set_autoload(btf);
    p.btf_rq_complete.set_autoload(btf);
    p.tp_io_start.set_autoload(!btf && io_start);
    p.tp_rq_insert.set_autoload(!btf && !io_start);
    p.tp_rq_issue.set_autoload(!btf);
    p.tp_bio_frontmerge.set_autoload(!btf);
    p.tp_rq_merge.set_autoload(!btf);
    p.tp_rq_complete.set_autoload(!btf);
    open.maps
        .pairs
        .set_max_entries(max_entries)
        .map_err(ModuleError::bpf("set pairs max_entries"))?;
    let ro = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| ModuleError::Other("no .rodata in the biotop BPF object".into()))?;
    ro.filter_enabled = filter;
    ro.attribute_at_issue = !io_start;
    let mut skel = open.load().map_err(ModuleError::bpf("load"))?;
    skel.attach().map_err(ModuleError::bpf("attach"))?;
    Ok(skel)
}

impl Biotop {
    /// The module-wide counters, summed over CPUs.
    fn counters(&self) -> Option<types::biotop_counters> {
        let cpus = self
            .skel
            .as_ref()?
            .maps
            .counters
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .ok()??;
        let mut sum = types::biotop_counters::default();
        for c in cpus
            .iter()
            .map(|b| bpf::from_bytes::<types::biotop_counters>(b))
        {
            sum.dropped += c.dropped;
            sum.unattributed += c.unattributed;
            sum.completed += c.completed;
        }
        Some(sum)
    }

    /// Reads the module-wide counters, and /proc/diskstats for `unseen`.
    fn unseen_reading(&mut self) -> Option<i64> {
        let before = self.counters()?;
        let text = std::fs::read_to_string("/proc/diskstats").ok();
        let after = self.counters()?;
        self.counters = after;
        self.unseen
            .reading(before.completed, &text?, after.completed)
    }

    /// Re-scans the process filter and brings the BPF `pids` map in line.
    fn rescan(&mut self) {
        let (Some(f), Some(s)) = (self.filter.as_mut(), self.skel.as_ref()) else {
            return;
        };
        let now = f.scan();
        for pid in self.tracked.difference(&now) {
            let _ = s.maps.pids.delete(&pid.to_ne_bytes());
        }
        for pid in now.difference(&self.tracked) {
            if let Err(e) = s
                .maps
                .pids
                .update(&pid.to_ne_bytes(), &[1u8], MapFlags::ANY)
            {
                log::warn!("biotop: cannot track PID {pid}: {e}");
            }
        }
        self.tracked = now;
    }

    /// Drops a pair here and in the BPF map.
    fn forget(&mut self, key: PairKey) -> Option<Pair> {
        let p = self.pairs.remove(&key)?;
        if self.by_inst.get(&p.inst) == Some(&key) {
            self.by_inst.remove(&p.inst);
        }
        self.delete_bpf_pair(key);
        Some(p)
    }

    fn delete_bpf_pair(&self, (dev, tgid, start): PairKey) {
        let Some(s) = &self.skel else { return };
        let k = types::biotop_key { dev, tgid, start };
        let _ = s.maps.pairs.delete(bpf::as_bytes(&k));
    }

    /// Retires the pairs of processes gone for `retention` whose final values were served.
    fn retire(&mut self, inst: &mut ModuleInstances) {
        let now = Instant::now();
        let mut alive: HashMap<(u32, u64), bool> = HashMap::new();
        let mut retire = Vec::new();
        for (&(dev, pid, start), p) in self.pairs.iter_mut() {
            if p.gone_since.is_none()
                && !*alive
                    .entry((pid, start))
                    .or_insert_with(|| process_alive(pid, start))
            {
                p.gone_since = Some(now);
            }
            if let Some(t) = p.gone_since {
                let age = now.duration_since(t);
                if (p.served_gone && age >= self.retention)
                    || age >= self.retention * UNSERVED_FACTOR
                {
                    retire.push((dev, pid, start));
                }
            }
        }
        for key in retire {
            if let Some(p) = self.forget(key) {
                if self.table.is_none() {
                    inst.cull(INDOM_PAIRS, &p.name);
                }
                if let Some(t) = &mut self.table {
                    t.prev.remove(&key);
                }
                log::debug!("biotop: retired {}", p.name);
            }
        }
        // After a burst of short processes, give the memory back (HashMaps never shrink).
        if self.pairs.capacity() > 1024 && self.pairs.len() * 4 < self.pairs.capacity() {
            self.pairs.shrink_to_fit();
            self.by_inst.shrink_to_fit();
        }
    }
}

impl Module for Biotop {
    fn start(&mut self) -> Result<String, ModuleError> {
        let io_start = match self.attribution {
            Attribution::Auto => kernel_has_io_start(),
            Attribution::IoStart => true,
            Attribution::InsertIssue => false,
        };
        let (max, filter, timing) = (
            self.max_entries,
            self.filter.is_some(),
            self.table.is_some(),
        );
        let (skel, hook, via) =
            bpf::first_working(&self.hooks, |h| load(h, io_start, max, filter, timing))?;
        self.skel = Some(skel);
        self.rescan();
        // The baseline of `unseen`, now that the program is attached: the highest of a few
        // readings (a completion between program and diskstats lowers one).
        for _ in 0..3 {
            if let Some(r) = self.unseen_reading() {
                self.unseen.baseline(r);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let attr = if io_start {
            "block_io_start"
        } else {
            "block_rq_insert/block_rq_issue (first seen)"
        };
        let who = match &self.filter {
            Some(_) => format!("process filter: {} PIDs", self.tracked.len()),
            None => "all processes".to_string(),
        };
        let merges = if hook == Hook::TpBtf {
            "merged bios credited to their own submitters"
        } else {
            "merged requests credited to their first submitter"
        };
        let layout = match &self.table {
            None => "layout process".to_string(),
            Some(t) => format!(
                "layout table ({} rows, interval {}s)",
                t.rows_max,
                t.interval.as_secs()
            ),
        };
        Ok(format!("attributed at {attr}, counted at block_rq_complete, via {via}, {merges}; max_entries {}, retention {}s, {who}; {layout}", self.max_entries, self.retention.as_secs()))
    }

    fn refresh(&mut self, inst: &mut ModuleInstances) -> Result<(), ModuleError> {
        if let Some(r) = self.unseen_reading() {
            self.unseen.update(r);
        }
        match &mut self.table {
            None => self.read_pairs(Some(inst)),
            Some(t) => {
                t.ensure_instances(inst);
                if t.interval.is_zero() {
                    self.make_table()?;
                }
                Ok(())
            }
        }
    }

    fn fetch(&self, item: u32, inst: Option<u32>) -> Result<Option<Value>, PmdaError> {
        match item {
            metrics::DROPPED => return Ok(Some(Value::U64(self.counters.dropped))),
            metrics::UNATTRIBUTED => return Ok(Some(Value::U64(self.counters.unattributed))),
            metrics::UNSEEN => return Ok(Some(Value::U64(self.unseen.max))),
            _ => {}
        }
        let inst = inst.ok_or(PmdaError::UnknownInstance)?;
        if let Some(t) = &self.table {
            if inst as usize >= t.rows_max {
                return Err(PmdaError::UnknownInstance);
            }
            let Some(r) = t.rows.get(inst as usize) else {
                return Ok(None);
            };
            return Ok(Some(match item {
                metrics::T_PID => Value::U32(r.pid),
                metrics::T_COMM => Value::String(r.comm.clone()),
                metrics::T_DIRECTION => Value::String(if r.write { "W" } else { "R" }.into()),
                metrics::T_MAJOR => Value::U32(r.dev >> 20),
                metrics::T_MINOR => Value::U32(r.dev & 0xfffff),
                metrics::T_DISK => Value::String(r.disk.clone()),
                metrics::T_IO => Value::U32(r.io.min(u32::MAX as u64) as u32),
                metrics::T_BYTES => Value::U64(r.bytes),
                metrics::T_DURATION => Value::U32(r.duration_us),
                _ => return Err(PmdaError::UnknownMetric),
            }));
        }
        let key = self.by_inst.get(&inst).ok_or(PmdaError::UnknownInstance)?;
        let p = &self.pairs[key];
        let v = &p.val;
        Ok(Some(match item {
            metrics::PERDEV => Value::U64(v.read_bytes + v.write_bytes),
            metrics::READ_BYTES => Value::U64(v.read_bytes),
            metrics::WRITE_BYTES => Value::U64(v.write_bytes),
            metrics::READS => Value::U64(v.reads),
            metrics::WRITES => Value::U64(v.writes),
            metrics::DISCARD_BYTES => Value::U64(v.discard_bytes),
            metrics::DISCARDS => Value::U64(v.discards),
            metrics::FLUSHES => Value::U64(v.flushes),
            metrics::COMM => Value::String(comm_str(&v.comm)),
            _ => return Err(PmdaError::UnknownMetric),
        }))
    }

    fn tick(&mut self, inst: &mut ModuleInstances) {
        if self.filter.as_ref().is_some_and(|f| f.due()) {
            self.rescan();
        }
        if let Some(t) = &mut self.table {
            t.ensure_instances(inst);
            let due = !t.interval.is_zero() && t.last.is_none_or(|l| l.elapsed() >= t.interval);
            if due && self.skel.is_some() {
                if let Err(e) = self.make_table() {
                    log::warn!("biotop: {e}");
                }
            }
        }
        self.retire(inst);
    }

    fn layout(&self) -> Option<(&[crate::module::MetricSpec], &[crate::module::IndomSpec])> {
        self.table
            .as_ref()
            .map(|_| (metrics::TABLE_METRICS, metrics::TABLE_INDOMS))
    }

    fn instance_labels(&self, local: u32, inst: u32) -> Option<String> {
        if local != INDOM_PAIRS {
            return None;
        }
        let key = self.by_inst.get(&inst)?;
        let p = self.pairs.get(key)?;
        Some(format!(
            r#"{{"disk":"{}","pid":{}}}"#,
            p.disk.replace(['"', '\\'], "_"),
            key.1
        ))
    }

    fn bpf_objects(&self) -> (Vec<ProgInfo>, Vec<MapInfo>) {
        let Some(s) = &self.skel else {
            return Default::default();
        };
        bpf::object_infos(s.object())
    }
}

impl Biotop {
    /// Reads the table layout's rows: the pairs' counts now, less those of the last rows.
    fn make_table(&mut self) -> Result<(), ModuleError> {
        self.read_pairs(None)?;
        let Some(t) = &mut self.table else {
            return Ok(());
        };
        t.make_rows(self.pairs.iter().map(|(k, p)| {
            (
                *k,
                row_counts(&p.val),
                p.disk.as_str(),
                comm_str(&p.val.comm),
            )
        }));
        t.last = Some(Instant::now());
        log::debug!(
            "biotop: table of {} rows from {} (disk, process) pairs",
            t.rows.len(),
            self.pairs.len()
        );
        // The pairs' final values are in the rows now.
        for p in self.pairs.values_mut() {
            if p.gone_since.is_some() {
                p.served_gone = true;
            }
        }
        Ok(())
    }

    /// Brings `pairs` up to date from the BPF map; with `inst` (the process layout) each new
    /// pair gets its instance.
    fn read_pairs(&mut self, mut inst: Option<&mut ModuleInstances>) -> Result<(), ModuleError> {
        let Some(s) = &self.skel else { return Ok(()) };
        let mut entries: Vec<(types::biotop_key, types::biotop_val)> =
            Vec::with_capacity(self.pairs.len() + 16);
        bpf::for_each_entry(&s.maps.pairs, |k, v| {
            entries.push((bpf::from_bytes(k), bpf::from_bytes(v)))
        })
        .map_err(|e| ModuleError::Other(format!("reading the pairs map: {e}")))?;
        for (k, v) in entries {
            let key = (k.dev, k.tgid, k.start);
            if let Some(p) = self.pairs.get_mut(&key) {
                p.val = v;
                continue;
            }
            let disk = match self.disks.get(&k.dev) {
                Some(d) => d.clone(),
                None => match disk_name(k.dev) {
                    Some(d) => {
                        self.disks.insert(k.dev, d.clone());
                        d
                    }
                    // Not cached: the disk may appear in sysfs later.
                    None => format!("{}:{}", k.dev >> 20, k.dev & 0xfffff),
                },
            };
            let name = instance_name(&disk, k.tgid);
            let Some(inst) = inst.as_deref_mut() else {
                // The table layout: no instance of its own.
                let pair = Pair {
                    inst: u32::MAX,
                    name,
                    disk,
                    val: v,
                    gone_since: None,
                    served_gone: false,
                };
                self.pairs.insert(key, pair);
                continue;
            };
            match inst.add(INDOM_PAIRS, &name) {
                Ok(id) => {
                    // The name is the PID's: a pair of an earlier process with the same PID
                    // (the PID was reused) is over. The newer process keeps the name.
                    if let Some(&other) = self.by_inst.get(&id) {
                        if other.2 > key.2 {
                            self.delete_bpf_pair(key);
                            continue;
                        }
                        self.forget(other);
                        log::debug!("biotop: {name} is a new process (PID reused)");
                    }
                    self.by_inst.insert(id, key);
                    self.pairs.insert(
                        key,
                        Pair {
                            inst: id,
                            name,
                            disk,
                            val: v,
                            gone_since: None,
                            served_gone: false,
                        },
                    );
                }
                Err(e) => log::warn!("biotop: cannot add instance {name}: {e}"),
            }
        }
        if self.table.is_none() {
            for p in self.pairs.values_mut() {
                if p.gone_since.is_some() {
                    p.served_gone = true;
                }
            }
        }
        Ok(())
    }
}

// The shared header's types, as the skeleton generated them from BTF: the key must have no
// padding (it is hashed as bytes) and the value holds 7 counters and the name.
bpf::pod!(types::biotop_key, 16);
bpf::pod!(types::biotop_val, 9 * 8 + 16);
bpf::pod!(types::biotop_counters, 24);

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sort: SortKey, descending: bool, rows_max: usize, include_residual: bool) -> Table {
        let interval = Duration::from_secs(1);
        Table::new(interval, rows_max, include_residual, sort, descending)
    }

    #[test]
    fn table_rows_are_interval_deltas_ranked_and_cut() {
        let sda = (8 << 20, 0);
        let mut t = table(SortKey::Bytes, true, 2, false);
        let key = |pid: u32| (sda.0, pid, 7u64);
        let now = |c: &[(u32, RowCounts)]| {
            c.iter()
                .map(|(pid, n)| (key(*pid), *n, "sda", format!("p{pid}")))
                .collect::<Vec<_>>()
                .into_iter()
        };
        // pid 10 read 4 KiB in 2 requests of 3 ms each; pid 11 wrote 64 KiB once; pid 0
        // (no process) is left out without include_residual; pid 12 did nothing.
        t.make_rows(now(&[
            (10, [2, 0, 4096, 0, 6_000_000, 0]),
            (11, [0, 1, 0, 65536, 0, 1_000_000]),
            (0, [0, 9, 0, 1 << 20, 0, 0]),
            (12, [0; 6]),
        ]));
        let r: Vec<(u32, bool, u64, u64, u32)> = t
            .rows
            .iter()
            .map(|r| (r.pid, r.write, r.io, r.bytes, r.duration_us))
            .collect();
        assert_eq!(
            r,
            vec![(11, true, 1, 65536, 1000), (10, false, 2, 4096, 3000)]
        );
        assert_eq!((t.rows[0].dev >> 20, t.rows[0].comm.as_str()), (8, "p11"));
        // The next interval: only what changed since.
        t.make_rows(now(&[
            (10, [3, 0, 8192, 0, 7_000_000, 0]),
            (11, [0, 1, 0, 65536, 0, 1_000_000]),
        ]));
        let r: Vec<(u32, u64, u64, u32)> = t
            .rows
            .iter()
            .map(|r| (r.pid, r.io, r.bytes, r.duration_us))
            .collect();
        assert_eq!(r, vec![(10, 1, 4096, 1000)]);
        // Ascending by duration, with residual I/O.
        let mut t = table(SortKey::Duration, false, 5, true);
        t.make_rows(now(&[
            (10, [1, 0, 512, 0, 9_000, 0]),
            (0, [1, 0, 512, 0, 2_000, 0]),
        ]));
        assert_eq!(
            t.rows.iter().map(|r| r.pid).collect::<Vec<_>>(),
            vec![0, 10]
        );
    }

    #[test]
    fn table_options_are_checked() {
        for (k, v) in [("sort", "size"), ("layout", "rows")] {
            let e = create(
                &SPEC,
                &ModuleConfig::for_test("biotop", 10, &[("layout", "table"), (k, v)]),
            )
            .err()
            .expect(k);
            assert_eq!(e.key.as_deref(), Some(k), "{e}");
        }
        let ok = ModuleConfig::for_test(
            "biotop",
            10,
            &[
                ("layout", "table"),
                ("sort", "-io"),
                ("interval", "0"),
                ("process_count", "3"),
            ],
        );
        assert!(create(&SPEC, &ok).is_ok());
    }

    #[test]
    fn instance_names_match_the_original() {
        assert_eq!(instance_name("vda", 3412), "vda::003412");
        assert_eq!(instance_name("nvme0n1", 1234567), "nvme0n1::1234567");
    }

    #[test]
    fn options_are_checked() {
        let ok = ModuleConfig::for_test(
            "biotop",
            10,
            &[
                ("max_entries", "64"),
                ("retention", "5"),
                ("hook", "tracepoint"),
                ("process", "dd"),
            ],
        );
        assert!(create(&SPEC, &ok).is_ok());
        for (k, v) in [
            ("max_entries", "0"),
            ("retention", "x"),
            ("hook", "kprobe"),
            ("attribution", "late"),
        ] {
            let e = create(&SPEC, &ModuleConfig::for_test("biotop", 10, &[(k, v)]))
                .err()
                .expect(k);
            assert_eq!(e.key.as_deref(), Some(k), "{e}");
        }
    }

    #[test]
    fn unseen_is_diskstats_less_what_the_program_saw_and_never_falls() {
        // Lines of /proc/diskstats for a disk this machine has with a request queue, one it
        // has not (so without one), and for that disk's partition (no mq either).
        let Some(disk) = std::fs::read_dir("/sys/block").ok().and_then(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| {
                    std::path::Path::new("/sys/block")
                        .join(n)
                        .join("mq")
                        .exists()
                })
        }) else {
            return;
        };
        let stats = |done: u64| {
            // reads, writes, discards and flushes completed: done, 20, 3, 4
            format!(
                "   8 0 {disk} {done} 0 80 5 20 0 160 9 0 12 14 3 0 24 1 4 2\n   8 1 {disk}p9 7 0 8 1 1 0 8 1 0 1 1 0 0 0 0 0 0\n   9 0 nosuchdisk0 5 0 8 1 1 0 8 1 0 1 1 0 0 0 0 0 0\n"
            )
        };
        let mut u = Unseen::default();
        assert_eq!(u.disk_completions(&stats(10)), 10 + 20 + 3 + 4);
        assert_eq!(
            u.reading(5, &stats(10), 6),
            None,
            "the program's count moved: no reading"
        );
        // Baseline: 127 done, 7 seen, then a reading low by a completion in between.
        let r = u.reading(7, &stats(100), 7).unwrap();
        u.baseline(r);
        u.baseline(r - 1);
        let r = u.reading(35, &stats(130), 35).unwrap(); // 30 done, 28 seen
        u.update(r);
        assert_eq!(u.max, 2);
        let r = u.reading(37, &stats(130), 37).unwrap(); // seen, not yet in diskstats
        u.update(r);
        assert_eq!(u.max, 2, "the count never falls");
        let r = u.reading(37, &stats(135), 37).unwrap(); // 5 done that it never saw
        u.update(r);
        assert_eq!(u.max, 5);
    }

    #[test]
    fn disk_names_come_from_sysfs() {
        // Any block device the machine has: its dev_t maps back to its own name.
        let Ok(dir) = std::fs::read_dir("/sys/block") else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(dev) = std::fs::read_to_string(e.path().join("dev")) else {
                continue;
            };
            let (ma, mi) = dev.trim().split_once(':').unwrap();
            let devt = (ma.parse::<u32>().unwrap() << 20) | mi.parse::<u32>().unwrap();
            assert_eq!(disk_name(devt).as_deref(), Some(name.as_str()));
        }
    }
}
