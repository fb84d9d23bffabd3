//! `sysfork`: new tasks per second, system-wide (the original's `bcc.proc.sysfork`, after
//! bcc's pidpersec tool). Tracks `kernel.all.sysfork` from PCP's linux PMDA.

mod metrics;

use crate::bpf::{self, Hook};
use crate::config::{ConfigError, ModuleConfig};
use crate::module::{MapInfo, Module, ModuleError, ModuleSpec, ProgInfo};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use pcp_pmda::{PmdaError, Value};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/sysfork.skel.rs"));
}
use skel::*;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "sysfork",
    summary: "new tasks (processes and threads) system-wide, from sched:sched_process_fork",
    default_cluster: 2,
    metrics: metrics::METRICS,
    indoms: &[],
    options: &[],
    create,
};

fn create(cfg: &ModuleConfig) -> Result<Box<dyn Module>, ConfigError> {
    if let Some(e) = cfg.unused().into_iter().next() {
        return Err(e);
    }
    Ok(Box::new(Sysfork {
        skel: None,
        tasks: 0,
    }))
}

struct Sysfork {
    skel: Option<SysforkSkel<'static>>,
    tasks: u64,
}

fn load(hook: Hook) -> Result<SysforkSkel<'static>, ModuleError> {
    let mut open = SysforkSkelBuilder::default()
        .open(bpf::storage())
        .map_err(ModuleError::bpf("open"))?;
    open.progs.sysfork_btf.set_autoload(hook == Hook::TpBtf);
    open.progs.sysfork_tp.set_autoload(hook == Hook::Tracepoint);
    let mut skel = open.load().map_err(ModuleError::bpf("load"))?;
    skel.attach().map_err(ModuleError::bpf("attach"))?;
    Ok(skel)
}

impl Module for Sysfork {
    fn start(&mut self) -> Result<String, ModuleError> {
        let (skel, _, status) = bpf::first_working(&[Hook::TpBtf, Hook::Tracepoint], load)?;
        self.skel = Some(skel);
        Ok(format!("sched_process_fork via {status}"))
    }

    fn refresh(&mut self, _: &mut crate::module::ModuleInstances) -> Result<(), ModuleError> {
        if let Some(s) = &self.skel {
            self.tasks = bpf::percpu_sum_u64(&s.maps.counts, 0);
        }
        Ok(())
    }

    fn fetch(&self, item: u32, _inst: Option<u32>) -> Result<Option<Value>, PmdaError> {
        match item {
            metrics::TASKS => Ok(Some(Value::U64(self.tasks))),
            _ => Err(PmdaError::UnknownMetric),
        }
    }

    fn bpf_objects(&self) -> (Vec<ProgInfo>, Vec<MapInfo>) {
        let Some(s) = &self.skel else {
            return Default::default();
        };
        let progs = bpf::loaded_programs(s.object());
        let maps = vec![bpf::map_info("counts", &s.maps.counts)];
        (progs, maps)
    }
}

// The shared header's type, as the skeleton generated it from BTF: a compile-time check that
// the per-CPU slot the Rust side sums is one u64.
const _: () = assert!(std::mem::size_of::<types::sysfork_count>() == 8);
