//! `biolatency`: block I/O latency as a power-of-two histogram in microseconds (the original's
//! `bcc.disk.all.latency`, after bcc's biolatency tool), its count and sum, and with
//! `per_disk = true` the same per disk (biolatency -D).

mod metrics;

use super::histogram::{self, Hist};
use crate::bpf::{self, Hook};
use crate::config::{ConfigError, ModuleConfig};
use crate::module::{
    MapInfo, Module, ModuleError, ModuleInstances, ModuleSpec, OptionSpec, ProgInfo,
};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use pcp_pmda::{PmdaError, Value};
use std::collections::{BTreeMap, HashMap};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/biolatency.skel.rs"));
}
use skel::*;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "biolatency",
    summary: "block I/O latency histograms (all disks, and per disk), from the block tracepoints",
    default_cluster: 0,
    metrics: metrics::METRICS,
    indoms: metrics::INDOMS,
    options: &[
        OptionSpec { key: "queued", doc: "True: measure from the request's insertion into the OS queue (block_rq_insert), so queueing time counts; False (default): from its issue to the driver" },
        OptionSpec { key: "per_disk", doc: "True: also serve per-disk histograms (disk.dev.latency*); default False" },
    ],
    create,
};

fn create(cfg: &ModuleConfig) -> Result<Box<dyn Module>, ConfigError> {
    let queued = cfg.get_bool("queued", false)?;
    let per_disk = cfg.get_bool("per_disk", false)?;
    if let Some(e) = cfg.unused().into_iter().next() {
        return Err(e);
    }
    Ok(Box::new(Biolatency {
        queued,
        per_disk,
        ..Default::default()
    }))
}

/// One disk's histogram and where its instances are.
#[derive(Default)]
struct Disk {
    name: String,
    hist: Hist,
    /// Buckets served for this disk (0..served), only growing.
    served: usize,
    /// Instance id of each served bucket in the per-disk bucket indom.
    bucket_ids: Vec<u32>,
    /// Instance id in the disks indom.
    id: Option<u32>,
}

#[derive(Default)]
struct Biolatency {
    queued: bool,
    per_disk: bool,
    skel: Option<BiolatencySkel<'static>>,
    all: Hist,
    served: usize,
    /// By dev_t (kernel encoding, major << 20 | minor).
    disks: BTreeMap<u32, Disk>,
    /// Instance id -> (dev, bucket) in the per-disk bucket indom.
    bucket_inst: HashMap<u32, (u32, usize)>,
    /// Instance id -> dev in the disks indom.
    disk_inst: HashMap<u32, u32>,
}

const _: () = assert!(std::mem::size_of::<types::biolat_hist>() == (histogram::SLOTS + 2) * 8);

fn load(hook: Hook, queued: bool, per_disk: bool) -> Result<BiolatencySkel<'static>, ModuleError> {
    let mut open = BiolatencySkelBuilder::default()
        .open(bpf::storage())
        .map_err(ModuleError::bpf("open"))?;
    let p = &mut open.progs;
    for (prog, h, insert) in [
        (&mut p.biolat_insert_btf, Hook::TpBtf, true),
        (&mut p.biolat_issue_btf, Hook::TpBtf, false),
        (&mut p.biolat_complete_btf, Hook::TpBtf, false),
        (&mut p.biolat_insert_raw, Hook::RawTp, true),
        (&mut p.biolat_issue_raw, Hook::RawTp, false),
        (&mut p.biolat_complete_raw, Hook::RawTp, false),
        (&mut p.biolat_insert_tp, Hook::Tracepoint, true),
        (&mut p.biolat_issue_tp, Hook::Tracepoint, false),
        (&mut p.biolat_complete_tp, Hook::Tracepoint, false),
    ] {
        prog.set_autoload(h == hook && (queued || !insert));
    }
    let ro = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| ModuleError::Other("biolatency: no .rodata in the BPF object".into()))?;
    ro.targ_queued = queued;
    ro.targ_per_disk = per_disk;
    if !per_disk {
        // Preallocated hash map only used for per-disk histograms: keep it minimal.
        open.maps
            .disks
            .set_max_entries(1)
            .map_err(ModuleError::bpf("resize disks"))?;
    }
    let mut skel = open.load().map_err(ModuleError::bpf("load"))?;
    skel.attach().map_err(ModuleError::bpf("attach"))?;
    Ok(skel)
}

/// Kernel name of block device `dev` (kernel dev_t encoding), from sysfs.
fn disk_name(dev: u32) -> String {
    let (major, minor) = (dev >> 20, dev & 0xf_ffff);
    std::fs::read_link(format!("/sys/dev/block/{major}:{minor}"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

fn hist_of(v: &types::biolat_hist) -> Hist {
    let mut h = Hist::default();
    h.add(&v.slots, v.count, v.sum_ns);
    h
}

impl Biolatency {
    fn refresh_disks(&mut self, inst: &mut ModuleInstances) -> Result<(), ModuleError> {
        let Some(s) = &self.skel else { return Ok(()) };
        let mut seen: Vec<(u32, Hist)> = Vec::new();
        bpf::for_each_entry(&s.maps.disks, |k, v| {
            let dev = u32::from_ne_bytes(k[..4].try_into().unwrap_or_default());
            seen.push((dev, hist_of(&bpf::from_bytes::<types::biolat_hist>(v))));
        })
        .map_err(|e| ModuleError::Other(format!("read disks: {e}")))?;
        for (dev, h) in seen {
            let d = self.disks.entry(dev).or_insert_with(|| Disk {
                name: disk_name(dev),
                ..Default::default()
            });
            if d.id.is_none() {
                if let Ok(id) = inst.add(metrics::INDOM_DISKS, &d.name) {
                    d.id = Some(id);
                    self.disk_inst.insert(id, dev);
                }
            }
            let served = histogram::served(&h.slots).max(d.served);
            // Only new buckets touch pmdaCache (and its file).
            while d.bucket_ids.len() < served {
                let i = d.bucket_ids.len();
                match inst.add(
                    metrics::INDOM_DISK_BUCKETS,
                    &format!("{}::{}", d.name, histogram::name(i)),
                ) {
                    Ok(id) => {
                        d.bucket_ids.push(id);
                        self.bucket_inst.insert(id, (dev, i));
                    }
                    Err(e) => {
                        log::warn!("biolatency: cannot add an instance for {}: {e}", d.name);
                        break;
                    }
                }
            }
            d.served = d.bucket_ids.len();
            d.hist = h;
        }
        Ok(())
    }
}

impl Module for Biolatency {
    fn start(&mut self) -> Result<String, ModuleError> {
        let (queued, per_disk) = (self.queued, self.per_disk);
        let (skel, _, status) =
            bpf::first_working(&[Hook::TpBtf, Hook::RawTp, Hook::Tracepoint], |h| {
                load(h, queued, per_disk)
            })?;
        self.skel = Some(skel);
        let from = if queued {
            "block_rq_insert/block_rq_issue"
        } else {
            "block_rq_issue"
        };
        Ok(format!(
            "{from} to block_rq_complete via {status}{}",
            if per_disk { "; per disk" } else { "" }
        ))
    }

    fn refresh(&mut self, inst: &mut ModuleInstances) -> Result<(), ModuleError> {
        let Some(s) = &self.skel else { return Ok(()) };
        let h = histogram::read_percpu(&s.maps.hist, |h, v: &types::biolat_hist| {
            h.add(&v.slots, v.count, v.sum_ns)
        })?;
        self.served = histogram::served(&h.slots).max(self.served);
        self.all = h;
        inst.set_fixed(
            metrics::INDOM_BUCKETS,
            &histogram::fixed_members(self.served),
        );
        if self.per_disk {
            self.refresh_disks(inst)?;
        }
        Ok(())
    }

    fn fetch(&self, item: u32, inst: Option<u32>) -> Result<Option<Value>, PmdaError> {
        let inst = inst.unwrap_or(u32::MAX);
        let disk = || {
            self.disk_inst
                .get(&inst)
                .and_then(|d| self.disks.get(d))
                .ok_or(PmdaError::UnknownInstance)
        };
        let v = match item {
            metrics::ALL_LATENCY => {
                if inst as usize >= self.served {
                    return Err(PmdaError::UnknownInstance);
                }
                self.all.slots[inst as usize]
            }
            metrics::ALL_COUNT => self.all.count,
            metrics::ALL_SUM => self.all.sum_us(),
            metrics::DEV_LATENCY => {
                let (dev, b) = self
                    .bucket_inst
                    .get(&inst)
                    .ok_or(PmdaError::UnknownInstance)?;
                self.disks
                    .get(dev)
                    .ok_or(PmdaError::UnknownInstance)?
                    .hist
                    .slots[*b]
            }
            metrics::DEV_COUNT => disk()?.hist.count,
            metrics::DEV_SUM => disk()?.hist.sum_us(),
            _ => return Err(PmdaError::UnknownMetric),
        };
        Ok(Some(Value::U64(v)))
    }

    fn indom_labels(&self, local: u32) -> Option<String> {
        (local == metrics::INDOM_BUCKETS || local == metrics::INDOM_DISK_BUCKETS)
            .then(|| histogram::INDOM_LABELS.to_string())
    }

    fn instance_labels(&self, local: u32, inst: u32) -> Option<String> {
        match local {
            metrics::INDOM_BUCKETS if (inst as usize) < histogram::SLOTS => {
                Some(histogram::bound_labels(inst as usize))
            }
            metrics::INDOM_DISK_BUCKETS => {
                let (dev, b) = self.bucket_inst.get(&inst)?;
                let name = &self.disks.get(dev)?.name;
                let (lo, hi) = histogram::bounds(*b);
                Some(format!(
                    r#"{{"disk":"{}","lower_bound":{lo},"upper_bound":{hi}}}"#,
                    name.replace(['"', '\\'], "_")
                ))
            }
            _ => None,
        }
    }

    fn bpf_objects(&self) -> (Vec<ProgInfo>, Vec<MapInfo>) {
        let Some(s) = &self.skel else {
            return Default::default();
        };
        let progs = bpf::loaded_programs(s.object());
        let maps = vec![
            bpf::map_info("hist", &s.maps.hist),
            bpf::map_info("disks", &s.maps.disks),
            bpf::map_info("start", &s.maps.start),
        ];
        (progs, maps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_typed_and_unknown_ones_refused() {
        assert!(create(&ModuleConfig::for_test(
            "biolatency",
            0,
            &[("queued", "True"), ("per_disk", "yes")]
        ))
        .is_ok());
        let e = create(&ModuleConfig::for_test(
            "biolatency",
            0,
            &[("queued", "maybe")],
        ))
        .err()
        .unwrap();
        assert_eq!(e.key.as_deref(), Some("queued"));
        let e = create(&ModuleConfig::for_test(
            "biolatency",
            0,
            &[("process", "1")],
        ))
        .err()
        .unwrap();
        assert_eq!(e.key.as_deref(), Some("process"));
    }

    #[test]
    fn names_disks_from_sysfs() {
        // 1:3 is /dev/null, a char device: not a block device, so the numbers are the name.
        assert_eq!(disk_name((1 << 20) | 3), "1:3");
        if std::path::Path::new("/sys/dev/block/254:0").exists() {
            assert_eq!(disk_name(254 << 20), "vda");
        }
    }
}
