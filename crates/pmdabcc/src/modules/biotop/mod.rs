//! `biotop`: block I/O per (disk, process), the original pmdabcc's `bcc.proc.io.perdev`
//! (after bcc's biotop tool), with a read/write/discard/flush split.
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
    MapInfo, Module, ModuleError, ModuleInstances, ModuleSpec, OptionSpec, ProgInfo,
};
use crate::process::ProcessFilter;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use metrics::INDOM_PAIRS;
use pcp_pmda::{PmdaError, Value};
use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/biotop.skel.rs"));
}
use skel::*;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "biotop",
    summary: "block I/O bytes and requests per disk and process (bcc.proc.io.perdev)",
    default_cluster: 10,
    metrics: metrics::METRICS,
    indoms: metrics::INDOMS,
    options: &[
        OptionSpec { key: "process", doc: "only track these processes: PIDs, names or regular expressions (comma-separated); default: all" },
        OptionSpec { key: "max_entries", doc: "most (disk, process) pairs tracked at once (16 to 1000000, default 10240); more are dropped and counted in proc.io.perdev_dropped" },
        OptionSpec { key: "retention", doc: "seconds an exited process's instances stay after its final values were served (0 to 86400, default 60)" },
        OptionSpec { key: "hook", doc: "auto (default: tp_btf, else classic tracepoints), tp_btf or tracepoint" },
        OptionSpec { key: "attribution", doc: "auto (default: block_io_start where the kernel has it), io_start, or insert_issue (block_rq_insert/block_rq_issue, first seen wins)" },
    ],
    create,
};

const DEFAULT_MAX_ENTRIES: u64 = 10240;
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

fn create(cfg: &ModuleConfig) -> Result<Box<dyn Module>, ConfigError> {
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
    if let Some(e) = cfg.unused().into_iter().next() {
        return Err(e);
    }
    Ok(Box::new(Biotop {
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

struct Biotop {
    skel: Option<BiotopSkel<'static>>,
    filter: Option<ProcessFilter>,
    /// PIDs currently in the BPF `pids` map.
    tracked: BTreeSet<u32>,
    max_entries: u32,
    retention: Duration,
    hooks: Vec<Hook>,
    attribution: Attribution,
    /// By (dev, tgid).
    pairs: HashMap<(u32, u32), Pair>,
    by_inst: HashMap<u32, (u32, u32)>,
    /// dev_t (kernel encoding) to disk name.
    disks: HashMap<u32, String>,
    counters: types::biotop_counters,
    unseen: Unseen,
}

/// Completions the kernel did not run the completion program for, per disk: the requests
/// /proc/diskstats counted since a baseline, less those the program counted in `seen`.
#[derive(Default)]
struct Unseen {
    /// dev -> (diskstats completions, program's count) at the baseline.
    base: HashMap<u32, (u64, u64)>,
    /// dev -> highest estimate so far (the metric is a counter).
    by_dev: HashMap<u32, u64>,
}

impl Unseen {
    /// Takes new readings: sets the baseline of disks not seen before, updates the others.
    fn update(&mut self, diskstats: &HashMap<u32, u64>, seen: &HashMap<u32, u64>) {
        for (&dev, &done) in diskstats {
            let ours = seen.get(&dev).copied().unwrap_or(0);
            match self.base.get(&dev) {
                None => {
                    self.base.insert(dev, (done, ours));
                }
                Some(&(done0, ours0)) => {
                    let est = done
                        .saturating_sub(done0)
                        .saturating_sub(ours.saturating_sub(ours0));
                    let e = self.by_dev.entry(dev).or_default();
                    *e = (*e).max(est);
                }
            }
        }
    }

    fn total(&self) -> u64 {
        self.by_dev.values().sum()
    }
}

/// Completed requests (reads, writes, discards, flushes) of each disk with a request queue,
/// by dev_t (kernel encoding), from /proc/diskstats. Partitions and bio-based devices (zram,
/// device mapper) are left out: their I/O does not complete as requests of their own.
fn disk_completions(diskstats: &str) -> HashMap<u32, u64> {
    diskstats
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            let (major, minor) = (num(0)?, num(1)?);
            if !std::path::Path::new("/sys/block")
                .join(f.get(2)?)
                .join("mq")
                .exists()
            {
                return None;
            }
            // after the name: reads (3), writes (7), discards (14), flushes (18) completed
            let done = num(3)? + num(7)? + num(14).unwrap_or(0) + num(18).unwrap_or(0);
            Some((((major as u32) << 20) | minor as u32, done))
        })
        .collect()
}

/// Whether the running kernel has the block_io_start tracepoint (Linux 6.5+): its BTF
/// typedef when there is kernel BTF, tracefs otherwise.
fn kernel_has_io_start() -> bool {
    // SAFETY: libbpf allocates and returns a BTF object (or an error pointer / NULL, which
    // libbpf_get_error turns into a code); it is only used here and freed before returning.
    unsafe {
        let btf = libbpf_rs::libbpf_sys::btf__load_vmlinux_btf();
        if !btf.is_null() && libbpf_rs::libbpf_sys::libbpf_get_error(btf as *const _) == 0 {
            let found = libbpf_rs::libbpf_sys::btf__find_by_name_kind(
                btf,
                c"btf_trace_block_io_start".as_ptr(),
                libbpf_rs::libbpf_sys::BTF_KIND_TYPEDEF,
            ) >= 0;
            libbpf_rs::libbpf_sys::btf__free(btf);
            return found;
        }
    }
    bpf::kernel_has_tracepoint("block", "block_io_start")
}

/// The name /proc/diskstats gives a whole disk, from its dev_t (kernel encoding).
fn disk_name(dev: u32) -> Option<String> {
    let (major, minor) = (dev >> 20, dev & 0xfffff);
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
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
) -> Result<BiotopSkel<'static>, ModuleError> {
    let mut open = BiotopSkelBuilder::default()
        .open(bpf::storage())
        .map_err(ModuleError::bpf("open"))?;
    let btf = hook == Hook::TpBtf;
    let p = &mut open.progs;
    p.btf_io_start.set_autoload(btf && io_start);
    p.btf_rq_insert.set_autoload(btf && !io_start);
    p.btf_rq_issue.set_autoload(btf && !io_start);
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
    /// Reads /proc/diskstats and the program's per-disk completion counts into `unseen`.
    fn count_unseen(&mut self) {
        let Some(s) = &self.skel else { return };
        let Ok(text) = std::fs::read_to_string("/proc/diskstats") else {
            return;
        };
        let diskstats = disk_completions(&text);
        let mut seen = HashMap::new();
        if let Err(e) = bpf::for_each_entry(&s.maps.seen, |k, v| {
            seen.insert(bpf::from_bytes::<u32>(k), bpf::from_bytes::<u64>(v));
        }) {
            log::warn!("biotop: reading the seen map: {e}");
            return;
        }
        self.unseen.update(&diskstats, &seen);
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

    /// Retires the pairs of processes gone for `retention` whose final values were served.
    fn retire(&mut self, inst: &mut ModuleInstances) {
        let now = Instant::now();
        let mut alive: HashMap<u32, bool> = HashMap::new();
        let mut retire = Vec::new();
        for (&(dev, pid), p) in self.pairs.iter_mut() {
            if p.gone_since.is_none() {
                // pid 0: I/O submitted from interrupt or idle context; never "exits".
                let up = *alive.entry(pid).or_insert_with(|| {
                    pid == 0 || std::path::Path::new(&format!("/proc/{pid}")).exists()
                });
                if !up {
                    p.gone_since = Some(now);
                }
            }
            if let Some(t) = p.gone_since {
                let age = now.duration_since(t);
                if (p.served_gone && age >= self.retention)
                    || age >= self.retention * UNSERVED_FACTOR
                {
                    retire.push((dev, pid));
                }
            }
        }
        for key in retire {
            let Some(p) = self.pairs.remove(&key) else {
                continue;
            };
            self.by_inst.remove(&p.inst);
            inst.cull(INDOM_PAIRS, &p.name);
            if let Some(s) = &self.skel {
                let k = types::biotop_key {
                    dev: key.0,
                    tgid: key.1,
                };
                // SAFETY: biotop_key is a repr(C) pair of u32s with no padding; viewing it as
                // bytes for the map key is sound.
                let kb = unsafe {
                    std::slice::from_raw_parts(
                        (&k as *const types::biotop_key).cast::<u8>(),
                        std::mem::size_of_val(&k),
                    )
                };
                let _ = s.maps.pairs.delete(kb);
            }
            log::debug!("biotop: retired {}", p.name);
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
        let (max, filter) = (self.max_entries, self.filter.is_some());
        let (skel, hook, via) =
            bpf::first_working(&self.hooks, |h| load(h, io_start, max, filter))?;
        self.skel = Some(skel);
        self.rescan();
        self.count_unseen(); // the baseline: the program is attached, so nothing after is missed
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
        Ok(format!("attributed at {attr}, counted at block_rq_complete, via {via}, {merges}; max_entries {}, retention {}s, {who}", self.max_entries, self.retention.as_secs()))
    }

    fn refresh(&mut self, inst: &mut ModuleInstances) -> Result<(), ModuleError> {
        let Some(s) = &self.skel else { return Ok(()) };
        if let Ok(Some(cpus)) = s
            .maps
            .counters
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        {
            let mut sum = types::biotop_counters::default();
            for c in cpus
                .iter()
                .map(|b| bpf::from_bytes::<types::biotop_counters>(b))
            {
                sum.dropped += c.dropped;
                sum.unattributed += c.unattributed;
            }
            self.counters = sum;
        }
        let mut entries: Vec<(types::biotop_key, types::biotop_val)> =
            Vec::with_capacity(self.pairs.len() + 16);
        bpf::for_each_entry(&s.maps.pairs, |k, v| {
            entries.push((bpf::from_bytes(k), bpf::from_bytes(v)))
        })
        .map_err(|e| ModuleError::Other(format!("reading the pairs map: {e}")))?;
        for (k, v) in entries {
            let key = (k.dev, k.tgid);
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
            match inst.add(INDOM_PAIRS, &name) {
                Ok(id) => {
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
        for p in self.pairs.values_mut() {
            if p.gone_since.is_some() {
                p.served_gone = true;
            }
        }
        self.count_unseen();
        Ok(())
    }

    fn fetch(&self, item: u32, inst: Option<u32>) -> Result<Option<Value>, PmdaError> {
        match item {
            metrics::DROPPED => return Ok(Some(Value::U64(self.counters.dropped))),
            metrics::UNATTRIBUTED => return Ok(Some(Value::U64(self.counters.unattributed))),
            metrics::UNSEEN => return Ok(Some(Value::U64(self.unseen.total()))),
            _ => {}
        }
        let key = self
            .by_inst
            .get(&inst.ok_or(PmdaError::UnknownInstance)?)
            .ok_or(PmdaError::UnknownInstance)?;
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
        self.retire(inst);
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
        let progs = bpf::loaded_programs(s.object());
        let m = &s.maps;
        let maps = vec![
            MapInfo {
                name: "pending".into(),
                fd: m.pending.as_fd().as_raw_fd(),
            },
            MapInfo {
                name: "merged".into(),
                fd: m.merged.as_fd().as_raw_fd(),
            },
            MapInfo {
                name: "pairs".into(),
                fd: m.pairs.as_fd().as_raw_fd(),
            },
            MapInfo {
                name: "pids".into(),
                fd: m.pids.as_fd().as_raw_fd(),
            },
            MapInfo {
                name: "counters".into(),
                fd: m.counters.as_fd().as_raw_fd(),
            },
        ];
        (progs, maps)
    }
}

// The shared header's types, as the skeleton generated them from BTF: the key must have no
// padding (it is hashed as bytes) and the value holds 7 counters and the name.
const _: () = assert!(std::mem::size_of::<types::biotop_key>() == 8);
const _: () = assert!(std::mem::size_of::<types::biotop_val>() == 7 * 8 + 16);
const _: () = assert!(std::mem::size_of::<types::biotop_counters>() == 16);

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(create(&ok).is_ok());
        for (k, v) in [
            ("max_entries", "0"),
            ("retention", "x"),
            ("hook", "kprobe"),
            ("attribution", "late"),
            ("mapsize", "1"),
        ] {
            let e = create(&ModuleConfig::for_test("biotop", 10, &[(k, v)]))
                .err()
                .expect(k);
            assert_eq!(e.key.as_deref(), Some(k), "{e}");
        }
    }

    #[test]
    fn unseen_is_diskstats_less_what_the_program_saw_and_never_falls() {
        let d = |v: &[(u32, u64)]| v.iter().copied().collect::<HashMap<u32, u64>>();
        let mut u = Unseen::default();
        u.update(&d(&[(1, 100), (2, 50)]), &d(&[(1, 7)])); // baseline
        assert_eq!(u.total(), 0);
        u.update(&d(&[(1, 130), (2, 60)]), &d(&[(1, 35), (2, 10)])); // disk 1: 30 done, 28 seen
        assert_eq!(u.total(), 2 + 0); // disk 2: 10 done, 10 seen
        u.update(&d(&[(1, 131), (2, 60)]), &d(&[(1, 37), (2, 10)])); // in flight at the last read
        assert_eq!(u.total(), 2, "a request seen late does not lower the count");
        u.update(&d(&[(1, 131), (2, 60), (3, 9)]), &d(&[(1, 37), (2, 10)])); // new disk: baseline
        assert_eq!(u.total(), 2);
    }

    #[test]
    fn diskstats_lines_are_read_for_request_based_disks_only() {
        // A line for a disk this machine has, and one for a name no machine has.
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
        let text = format!("   8       0 {disk} 10 0 80 5 20 0 160 9 0 12 14 3 0 24 1 4 2\n   8       1 nosuchdisk0 1 0 8 1 1 0 8 1 0 1 1 0 0 0 0 0 0\n");
        assert_eq!(
            disk_completions(&text),
            HashMap::from([((8 << 20), 10 + 20 + 3 + 4)])
        );
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
