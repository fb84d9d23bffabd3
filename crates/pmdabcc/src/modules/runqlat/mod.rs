//! `runqlat`: run-queue (scheduler) latency as a power-of-two histogram in microseconds (the
//! original's `bcc.runq.latency`, after bcc's runqlat tool), plus its count and sum.

mod metrics;

use super::histogram::{self, Hist};
use crate::bpf::{self, Hook};
use crate::config::{ConfigError, ModuleConfig};
use crate::module::{
    MapInfo, Module, ModuleError, ModuleInstances, ModuleSpec, OptionSpec, ProgInfo,
};
use crate::process::ProcessFilter;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use pcp_pmda::{PmdaError, Value};
use std::collections::BTreeSet;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/runqlat.skel.rs"));
}
use skel::*;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "runqlat",
    summary:
        "run queue (scheduler) latency histogram, from sched_wakeup/sched_wakeup_new/sched_switch",
    default_cluster: 4,
    metrics: metrics::METRICS,
    indoms: metrics::INDOMS,
    options: &[OptionSpec {
        key: "process",
        doc: "only measure these processes: comma-separated PIDs, names or regular expressions \
matched against the command line; processes started later are picked up every \
[pmda] process_refresh seconds",
    }],
    create,
};

fn create(cfg: &ModuleConfig) -> Result<Box<dyn Module>, ConfigError> {
    let filter = ProcessFilter::from_config(cfg, "process")?;
    if let Some(e) = cfg.unused().into_iter().next() {
        return Err(e);
    }
    Ok(Box::new(Runqlat {
        skel: None,
        hook: Hook::TpBtf,
        filter,
        process_refresh: cfg.process_refresh,
        targets: BTreeSet::new(),
        hist: Hist::default(),
        served: 1,
    }))
}

struct Runqlat {
    skel: Option<RunqlatSkel<'static>>,
    hook: Hook,
    filter: Option<ProcessFilter>,
    process_refresh: u64,
    /// Keys now in the BPF `targets` map.
    targets: BTreeSet<u32>,
    hist: Hist,
    /// Buckets served (0..served).
    served: usize,
}

// The shared header's bucket count must be the one the Rust side names instances for.
const _: () = assert!(std::mem::size_of::<types::runqlat_hist>() == (histogram::SLOTS + 2) * 8);

fn load(hook: Hook, filter: bool) -> Result<RunqlatSkel<'static>, ModuleError> {
    let mut open = RunqlatSkelBuilder::default()
        .open(bpf::storage())
        .map_err(ModuleError::bpf("open"))?;
    let p = &mut open.progs;
    for (prog, h) in [
        (&mut p.runqlat_wakeup_btf, Hook::TpBtf),
        (&mut p.runqlat_wakeup_new_btf, Hook::TpBtf),
        (&mut p.runqlat_switch_btf, Hook::TpBtf),
        (&mut p.runqlat_wakeup_raw, Hook::RawTp),
        (&mut p.runqlat_wakeup_new_raw, Hook::RawTp),
        (&mut p.runqlat_switch_raw, Hook::RawTp),
        (&mut p.runqlat_wakeup_tp, Hook::Tracepoint),
        (&mut p.runqlat_wakeup_new_tp, Hook::Tracepoint),
        (&mut p.runqlat_switch_tp, Hook::Tracepoint),
    ] {
        prog.set_autoload(h == hook);
    }
    open.maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| ModuleError::Other("runqlat: no .rodata in the BPF object".into()))?
        .filter_targets = filter;
    if !filter {
        // Hash maps are preallocated: without a `process` filter the targets map is never
        // read, so it should not hold its 16384 slots of kernel memory.
        open.maps
            .targets
            .set_max_entries(1)
            .map_err(ModuleError::bpf("resize targets"))?;
    }
    let mut skel = open.load().map_err(ModuleError::bpf("load"))?;
    skel.attach().map_err(ModuleError::bpf("attach"))?;
    Ok(skel)
}

/// The keys the BPF filter wants for these processes: thread group ids where the BPF side
/// sees the task (tp_btf, raw_tp), every thread id where it sees only that (tracepoint).
fn filter_keys(pids: &BTreeSet<u32>, hook: Hook) -> BTreeSet<u32> {
    if hook != Hook::Tracepoint {
        return pids.clone();
    }
    let mut out = BTreeSet::new();
    for pid in pids {
        out.insert(*pid);
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            out.extend(
                dir.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()),
            );
        }
    }
    out
}

impl Runqlat {
    /// Re-scans for the filtered processes and brings the BPF `targets` map in line.
    fn sync_targets(&mut self) {
        let (Some(f), Some(skel)) = (self.filter.as_mut(), self.skel.as_ref()) else {
            return;
        };
        let want = filter_keys(&f.scan(), self.hook);
        for gone in self.targets.difference(&want) {
            let _ = skel.maps.targets.delete(&gone.to_ne_bytes());
        }
        for new in want.difference(&self.targets) {
            if let Err(e) = skel
                .maps
                .targets
                .update(&new.to_ne_bytes(), &[1u8], MapFlags::ANY)
            {
                log::warn!("runqlat: cannot add {new} to the process filter: {e}");
            }
        }
        self.targets = want;
    }
}

impl Module for Runqlat {
    fn start(&mut self) -> Result<String, ModuleError> {
        let filtered = self.filter.is_some();
        let (skel, hook, status) =
            bpf::first_working(&[Hook::TpBtf, Hook::RawTp, Hook::Tracepoint], |h| {
                load(h, filtered)
            })?;
        self.skel = Some(skel);
        self.hook = hook;
        let mut status = format!("sched_wakeup, sched_wakeup_new, sched_switch via {status}");
        if filtered {
            self.sync_targets();
            if self.targets.is_empty() && self.process_refresh == 0 {
                // As the original: nothing to measure, and nothing will ever be added.
                return Err(ModuleError::Other(
                    "process filter: no process to attach found (and process_refresh is 0)".into(),
                ));
            }
            status.push_str(&format!(
                "; process filter: {} processes",
                self.targets.len()
            ));
        }
        Ok(status)
    }

    fn refresh(&mut self, inst: &mut ModuleInstances) -> Result<(), ModuleError> {
        let Some(s) = &self.skel else { return Ok(()) };
        let h = histogram::read_percpu(&s.maps.hist, |h, v: &types::runqlat_hist| {
            h.add(&v.slots, v.count, v.sum_ns)
        })?;
        // Counters only grow, so the served range only grows: ids never change meaning.
        self.served = histogram::served(&h.slots).max(self.served);
        self.hist = h;
        inst.set_fixed(
            metrics::INDOM_BUCKETS,
            &histogram::fixed_members(self.served),
        );
        Ok(())
    }

    fn fetch(&self, item: u32, inst: Option<u32>) -> Result<Option<Value>, PmdaError> {
        match item {
            metrics::LATENCY => {
                let i = inst.ok_or(PmdaError::UnknownInstance)? as usize;
                if i >= self.served {
                    return Err(PmdaError::UnknownInstance);
                }
                Ok(Some(Value::U64(self.hist.slots[i])))
            }
            metrics::LATENCY_COUNT => Ok(Some(Value::U64(self.hist.count))),
            metrics::LATENCY_SUM => Ok(Some(Value::U64(self.hist.sum_us()))),
            _ => Err(PmdaError::UnknownMetric),
        }
    }

    fn tick(&mut self, _inst: &mut ModuleInstances) {
        if self.filter.as_ref().is_some_and(|f| f.due()) {
            self.sync_targets();
        }
    }

    fn indom_labels(&self, local: u32) -> Option<String> {
        (local == metrics::INDOM_BUCKETS).then(|| histogram::INDOM_LABELS.to_string())
    }

    fn instance_labels(&self, local: u32, inst: u32) -> Option<String> {
        (local == metrics::INDOM_BUCKETS && (inst as usize) < histogram::SLOTS)
            .then(|| histogram::bound_labels(inst as usize))
    }

    fn bpf_objects(&self) -> (Vec<ProgInfo>, Vec<MapInfo>) {
        let Some(s) = &self.skel else {
            return Default::default();
        };
        let progs = bpf::loaded_programs(s.object());
        let maps = vec![
            bpf::map_info("hist", &s.maps.hist),
            bpf::map_info("start", &s.maps.start),
            bpf::map_info("targets", &s.maps.targets),
        ];
        (progs, maps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_unknown_ones_are_refused() {
        assert!(create(&ModuleConfig::for_test(
            "runqlat",
            4,
            &[("process", "1,bash")]
        ))
        .is_ok());
        assert!(create(&ModuleConfig::for_test("runqlat", 4, &[])).is_ok());
        let e = create(&ModuleConfig::for_test("runqlat", 4, &[("queued", "true")]))
            .err()
            .unwrap();
        assert_eq!(e.key.as_deref(), Some("queued"));
    }

    #[test]
    fn tracepoint_filter_lists_threads() {
        let me = std::process::id();
        let pids: BTreeSet<u32> = [me].into();
        assert_eq!(filter_keys(&pids, Hook::TpBtf), pids);
        let t = filter_keys(&pids, Hook::Tracepoint);
        assert!(t.contains(&me) && t.len() >= 1);
    }
}
