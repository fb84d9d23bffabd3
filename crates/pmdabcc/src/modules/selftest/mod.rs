//! `selftest`: a module for testing the agent itself (like PCP's sample PMDA). It counts
//! forks and serves one sensitive value; its `fault` option makes it fail in the kernel for
//! real, to test that a failing module is reported and the others keep serving.

mod metrics;

use crate::bpf;
use crate::config::{ConfigError, ModuleConfig};
use crate::module::{
    MapInfo, Module, ModuleError, ModuleInstances, ModuleSpec, OptionKind, OptionSpec, ProgInfo,
};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::MapCore;
use pcp_pmda::{PmdaError, Value};

bpf::skeleton!("selftest");

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "selftest",
    summary: "tests the agent itself: fork count, a sensitive value, and real load failures on request",
    default_cluster: Some(4000),
    metrics: metrics::METRICS,
    indoms: &[],
    options: &[OptionSpec { key: "fault", kind: OptionKind::Enum(&["none", "missing_hook", "verifier"]), default: "none", doc: "none (default), missing_hook (attach to a tracepoint no kernel has) or verifier (load a program the verifier rejects)" }],
    layouts: &[],
    create,
    min_kernel: Some("5.10"),
    program: None,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    MissingHook,
    Verifier,
}

fn create(_spec: &'static ModuleSpec, cfg: &ModuleConfig) -> Result<Box<dyn Module>, ConfigError> {
    let fault = match cfg.get("fault").unwrap_or("none") {
        "none" => Fault::None,
        "missing_hook" => Fault::MissingHook,
        "verifier" => Fault::Verifier,
        other => {
            return Err(cfg.error(
                "fault",
                format!("expected none, missing_hook or verifier, got {other:?}"),
            ))
        }
    };
    Ok(Box::new(Selftest {
        fault,
        skel: None,
        state: Default::default(),
    }))
}

struct Selftest {
    fault: Fault,
    skel: Option<SelftestSkel<'static>>,
    state: types::selftest_state,
}

impl Module for Selftest {
    fn start(&mut self) -> Result<String, ModuleError> {
        let mut open = SelftestSkelBuilder::default()
            .open(bpf::storage())
            .map_err(ModuleError::bpf("open"))?;
        open.progs
            .selftest_missing
            .set_autoload(self.fault == Fault::MissingHook);
        open.progs
            .selftest_verifier
            .set_autoload(self.fault == Fault::Verifier);
        let mut skel = open.load().map_err(ModuleError::bpf("load"))?;
        skel.attach().map_err(ModuleError::bpf("attach"))?;
        self.skel = Some(skel);
        Ok("sched_process_fork via tracepoint".into())
    }

    fn refresh(&mut self, _: &mut ModuleInstances) -> Result<(), ModuleError> {
        if let Some(s) = &self.skel {
            if let Ok(Some(v)) = s
                .maps
                .state
                .lookup(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            {
                self.state = bpf::from_bytes(&v);
            }
        }
        Ok(())
    }

    fn fetch(&self, item: u32, _inst: Option<u32>) -> Result<Option<Value>, PmdaError> {
        Ok(Some(match item {
            metrics::FORKS => Value::U64(self.state.forks),
            metrics::LAST_COMM => {
                let raw: Vec<u8> = self
                    .state
                    .last_comm
                    .iter()
                    .map(|c| *c as u8)
                    .take_while(|c| *c != 0)
                    .collect();
                Value::String(String::from_utf8_lossy(&raw).into_owned())
            }
            metrics::LAST_PID => Value::U32(self.state.last_pid),
            _ => return Err(PmdaError::UnknownMetric),
        }))
    }

    fn bpf_objects(&self) -> (Vec<ProgInfo>, Vec<MapInfo>) {
        let Some(s) = &self.skel else {
            return Default::default();
        };
        bpf::object_infos(s.object())
    }
}

bpf::pod!(types::selftest_state, 32);
