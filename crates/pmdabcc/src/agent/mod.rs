//! The bcc agent: runs the configured modules and serves them through the PMDA layer.
//!
//! Start-up: the module sections are parsed and their modules created (cheap, main thread);
//! the PMDA connects to pmcd; a loader thread then opens, loads and attaches each module's
//! BPF programs and hands the module back through a channel; the main loop installs it and,
//! when every module has loaded or failed, tells pmcd the agent is ready.
//!
//! Reconfiguration (SIGHUP to the agent, or `pmstore bcc.agent.control.reload 1`): bcc.conf
//! is read again; sections whose settings did not change keep their running module (and its
//! counts), removed ones are unloaded, new or changed ones are loaded, and clients are told
//! the namespace changed.

pub mod access;
pub mod bpfstats;
pub mod metrics;

use crate::config::{check_prefix, check_trusted, Config, ModuleConfig};
use crate::module::{
    indom_serial, IndomSpec, MetricSpec, Module, ModuleError, ModuleInstances, ModuleSpec,
};
use crate::modules;
use log::{error, info, warn};
use pcp_pmda::{
    Agent, Client, Control, Indom, LabelTarget, Metric, PmdaError, Pmid, Type, Value, Waker,
};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

/// Cluster of the agent's own metrics (the highest; module clusters stay below it).
pub const AGENT_CLUSTER: u32 = pcp_pmda::MAX_CLUSTER;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotState {
    Disabled,
    /// A module of PCP's Python pmdabcc this agent does not have.
    Unavailable,
    Loading,
    Running,
    Failed,
}

impl SlotState {
    pub fn as_str(&self) -> &'static str {
        match self {
            SlotState::Disabled => "disabled",
            SlotState::Unavailable => "unavailable",
            SlotState::Loading => "loading",
            SlotState::Running => "running",
            SlotState::Failed => "failed",
        }
    }
}

/// One module section of bcc.conf.
pub struct Slot {
    /// Unique for the life of the process (loader results find their slot by it).
    pub id: u64,
    pub section: String,
    pub spec: Option<&'static ModuleSpec>,
    pub cluster: u32,
    pub prefix: String,
    pub state: SlotState,
    pub status: String,
    /// The module: here while created or running; with the loader while loading.
    pub module: Option<Box<dyn Module>>,
    pub load_time: Option<Duration>,
    /// Every problem with the section (`status` is their summary): `pmdabcc --check` lists
    /// them all.
    pub problems: Vec<String>,
    /// Remarks about the section that are no problem (keys of PCP's Python pmdabcc that have
    /// no effect here), logged once.
    pub notes: Vec<String>,
    /// `debug = True`: the module's debug messages go to the log.
    pub debug: bool,
    /// Everything the section's behaviour depends on: equal signatures across a reload mean
    /// the running module is kept.
    signature: String,
    policy: access::Policy,
}

struct Loaded {
    slot_id: u64,
    module: Box<dyn Module>,
    result: Result<String, String>,
    elapsed: Duration,
}

/// Reads bcc.conf, refusing a file root does not own or others can write: the agent loads
/// programs into the kernel on its say-so.
pub fn load_config(path: &Path) -> Result<Config, String> {
    check_trusted(path).map_err(|e| e.to_string())?;
    Config::load(path).map_err(|e| e.to_string())
}

/// The module slots of `config`, each module created but not started, and the problems
/// with the file as a whole: what `pmdabcc --probe` starts without pmcd.
pub fn build_slots(config: Config) -> (Vec<Slot>, Vec<String>) {
    let a = BccAgent::new(config, Instant::now());
    (a.slots, a.config_errors)
}

pub struct BccAgent {
    config: Config,
    /// Problems with the file as a whole or with [pmda] (shown in agent.config_status).
    config_errors: Vec<String>,
    global_policy: access::Policy,
    slots: Vec<Slot>,
    next_id: u64,
    by_cluster: HashMap<u32, usize>,
    tx: Sender<Loaded>,
    rx: Receiver<Loaded>,
    pending: usize,
    started: Instant,
    startup_time: Option<Duration>,
    reloads: u64,
    waker: Option<Waker>,
    /// Instance id in the modules indom -> slot index.
    inst_index: HashMap<u32, usize>,
    /// BPF object statistics by instance id, from the last refresh of the agent cluster.
    progs: HashMap<u32, bpfstats::ProgStats>,
    maps: HashMap<u32, bpfstats::MapStats>,
    stats_guard: Option<bpfstats::StatsGuard>,
    group_cache: HashMap<(u32, u32), Vec<u32>>,
}

impl BccAgent {
    /// Builds the slots from the configuration. Nothing is loaded yet.
    pub fn new(config: Config, started: Instant) -> Self {
        let (tx, rx) = channel();
        let mut a = BccAgent {
            config,
            config_errors: Vec::new(),
            global_policy: access::Policy::default(),
            slots: Vec::new(),
            next_id: 0,
            by_cluster: HashMap::new(),
            tx,
            rx,
            pending: 0,
            started,
            startup_time: None,
            reloads: 0,
            waker: None,
            inst_index: HashMap::new(),
            progs: HashMap::new(),
            maps: HashMap::new(),
            stats_guard: None,
            group_cache: HashMap::new(),
        };
        a.configure(Vec::new());
        a
    }

    /// An agent for a configuration that could not be used at all: it serves its own
    /// metrics, with `why` in agent.config_status.
    pub fn unconfigured(file: &Path, why: String, started: Instant) -> Self {
        error!("{why}: serving the agent's own metrics only");
        let mut a = BccAgent::new(Config::parse(file, ""), started);
        a.config_errors = vec![why];
        a
    }

    /// (Re)builds the slots from `self.config`, taking over running modules of `old` slots
    /// whose section did not change.
    fn configure(&mut self, mut old: Vec<Slot>) {
        let config = &self.config;
        self.config_errors = config.global_errors.iter().map(|e| e.to_string()).collect();
        for e in &config.global_errors {
            error!("config: {e}");
        }
        let mut gp = access::Policy::default();
        for (key, names) in [
            ("allowed_users", &config.pmda.allowed_users),
            ("allowed_groups", &config.pmda.allowed_groups),
        ] {
            for n in names {
                let (u, g) = if key == "allowed_users" {
                    (vec![n.clone()], vec![])
                } else {
                    (vec![], vec![n.clone()])
                };
                if let Err(e) = gp.add(&u, &g, |k, m| crate::config::ConfigError {
                    file: config.file.clone(),
                    line: config.pmda_line(k),
                    section: Some("pmda".into()),
                    key: Some(k.into()),
                    msg: m,
                }) {
                    error!("config: {e}");
                    self.config_errors.push(e.to_string());
                }
            }
        }
        self.global_policy = gp;
        let mut slots = Vec::new();
        let mut used_clusters: HashMap<u32, String> = HashMap::new();
        let mut seen = BTreeSet::new();
        for name in &config.pmda.modules {
            if !seen.insert(name.clone()) {
                warn!("config: module {name} listed twice in [pmda] modules; running it once");
                continue;
            }
            let sig = self.signature(name);
            // An unchanged section keeps its module (running, or still loading).
            if let Some(pos) = old.iter().position(|s| {
                s.section == *name
                    && s.signature == sig
                    && matches!(s.state, SlotState::Running | SlotState::Loading)
            }) {
                let s = old.swap_remove(pos);
                used_clusters.insert(s.cluster, s.section.clone());
                slots.push(s);
                continue;
            }
            self.next_id += 1;
            let s = Self::make_slot(
                config,
                name,
                self.next_id,
                sig,
                &self.global_policy,
                &mut used_clusters,
            );
            match s.state {
                SlotState::Failed => {
                    for p in &s.problems {
                        error!("module {}: {p}", s.section);
                    }
                }
                SlotState::Unavailable => warn!("module {}: {}", s.section, s.status),
                _ => {}
            }
            for n in &s.notes {
                info!("module {}: {n}", s.section);
            }
            if s.debug {
                info!("module {}: debug logging on", s.section);
            }
            slots.push(s);
        }
        for name in config.sections.keys() {
            if !seen.contains(name) {
                self.next_id += 1;
                slots.push(Slot {
                    id: self.next_id,
                    section: name.clone(),
                    spec: None,
                    cluster: 0,
                    prefix: String::new(),
                    state: SlotState::Disabled,
                    status: "not listed in [pmda] modules".into(),
                    module: None,
                    load_time: None,
                    problems: Vec::new(),
                    notes: Vec::new(),
                    debug: false,
                    signature: String::new(),
                    policy: access::Policy::default(),
                });
            }
        }
        for s in &old {
            if s.module.is_some() {
                info!(
                    "module {}: unloading (removed or changed in bcc.conf)",
                    s.section
                );
            }
        }
        // Dropping the old slots drops their skeletons: links detach, programs and maps close.
        drop(old);
        self.slots = slots;
        self.group_cache.clear();
        pcp_pmda::set_debug_targets(
            self.slots
                .iter()
                .filter(|s| s.debug)
                .filter_map(|s| s.spec)
                .map(|spec| crate::module::log_target(spec.name))
                .collect(),
        );
    }

    fn signature(&self, section: &str) -> String {
        let c = &self.config;
        let keys: Vec<(&String, &String)> = c
            .sections
            .get(section)
            .map(|s| s.keys.iter().map(|(k, e)| (k, &e.value)).collect())
            .unwrap_or_default();
        format!(
            "{keys:?}|{}|{}|{:?}|{:?}",
            c.pmda.prefix, c.pmda.process_refresh, c.pmda.allowed_users, c.pmda.allowed_groups
        )
    }

    fn make_slot(
        config: &Config,
        name: &str,
        id: u64,
        signature: String,
        global: &access::Policy,
        used: &mut HashMap<u32, String>,
    ) -> Slot {
        let mut slot = Slot {
            id,
            section: name.to_string(),
            spec: None,
            cluster: 0,
            prefix: config.pmda.prefix.clone(),
            state: SlotState::Failed,
            status: String::new(),
            module: None,
            load_time: None,
            problems: Vec::new(),
            notes: Vec::new(),
            debug: false,
            signature,
            policy: global.clone(),
        };
        let fail = |mut slot: Slot, mut problems: Vec<String>| {
            // In file order ("file:line: ...").
            problems.sort_by_key(|p| {
                p.split(':')
                    .nth(1)
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or(0)
            });
            slot.status = problems.join("; ");
            slot.problems = problems;
            slot
        };
        let Some(section) = config.sections.get(name) else {
            let why = format!(
                "{}: [pmda] modules lists {name:?} but there is no [{name}] section",
                config.file.display()
            );
            return fail(slot, vec![why]);
        };
        let mut problems: Vec<String> = section.errors.iter().map(|e| e.to_string()).collect();
        if let Some(why) = lacking_upstream_module(config, name, section) {
            slot.state = SlotState::Unavailable;
            slot.status = why;
            return slot;
        }
        let spec = match module_of(config, name, section) {
            Ok(s) => s,
            Err(why) => {
                problems.push(why);
                return fail(slot, problems);
            }
        };
        let kind = spec.name;
        slot.spec = Some(spec);
        let probe = ModuleConfig::new(&config.file, section, kind, 0, "", 0);
        for k in section.keys.keys() {
            if crate::framework::spec::RESERVED_KEYS.contains(&k.as_str())
                || spec.options.iter().any(|o| o.key == *k)
            {
                continue;
            }
            match crate::compat::ignored_key(kind, k) {
                Some(why) => slot.notes.push(
                    probe
                        .error(
                            k,
                            format!("accepted for PCP's Python pmdabcc, no effect here: {why}"),
                        )
                        .to_string(),
                ),
                None => problems.push(probe.error(k, "unknown option for this module").to_string()),
            }
        }
        match probe.get_bool("debug", false) {
            Ok(d) => slot.debug = d,
            Err(e) => problems.push(e.to_string()),
        }
        slot.cluster = match (probe.get("cluster"), spec.default_cluster) {
            (None, None) => {
                problems.push(
                    probe
                        .error(
                            "cluster",
                            "required: the module's spec has no default cluster",
                        )
                        .to_string(),
                );
                0
            }
            (_, d) => match probe.get_u64(
                "cluster",
                d.unwrap_or(0) as u64,
                0..=(AGENT_CLUSTER as u64 - 1),
            ) {
                Ok(c) => c as u32,
                Err(e) => {
                    problems.push(e.to_string());
                    0
                }
            },
        };
        if let Some(other) = used.get(&slot.cluster) {
            problems.push(
                probe
                    .error(
                        "cluster",
                        format!("cluster {} is already used by [{other}]", slot.cluster),
                    )
                    .to_string(),
            );
        }
        if let Some(p) = probe.get("prefix") {
            match check_prefix(p) {
                Ok(()) => slot.prefix = p.to_string(),
                Err(m) => problems.push(probe.error("prefix", m).to_string()),
            }
        }
        let mut local = access::Policy::default();
        match local.add(
            &probe.get_list("allowed_users"),
            &probe.get_list("allowed_groups"),
            |k, m| probe.error(k, m),
        ) {
            Ok(()) => slot.policy = global.merged(&local),
            Err(e) => problems.push(e.to_string()),
        }
        let cfg = ModuleConfig::new(
            &config.file,
            section,
            kind,
            slot.cluster,
            &slot.prefix,
            config.pmda.process_refresh,
        );
        // Every bad option value, not only the first one the module reads.
        problems.extend(
            spec.options
                .iter()
                .filter_map(|o| o.check(&cfg).err())
                .map(|e| e.to_string()),
        );
        if !problems.is_empty() {
            return fail(slot, problems);
        }
        match (spec.create)(spec, &cfg) {
            Ok(m) => {
                used.insert(slot.cluster, name.to_string());
                slot.module = Some(m);
                slot.state = SlotState::Loading;
                slot.status = "loading".into();
                slot
            }
            Err(e) => fail(slot, vec![e.to_string()]),
        }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Problems with the configuration as a whole.
    pub fn config_errors(&self) -> &[String] {
        &self.config_errors
    }

    /// The metric table: the agent's own metrics and those of every running module.
    /// A module whose names collide with an earlier one's is failed instead.
    pub fn table(&mut self) -> (Vec<Metric>, Vec<Indom>) {
        let mut metrics = Vec::new();
        let mut indoms = Vec::new();
        let mut names: HashMap<String, String> = HashMap::new();
        add_spec_metrics(
            &mut metrics,
            &mut indoms,
            &self.config.pmda.prefix,
            AGENT_CLUSTER,
            metrics::METRICS,
            metrics::INDOMS,
        );
        for m in &metrics {
            names.insert(m.name.clone(), "the agent".into());
        }
        self.by_cluster.clear();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.state != SlotState::Running {
                continue;
            }
            let spec = slot.spec.expect("running slot has a spec");
            let mut mine = Vec::new();
            let mut my_indoms = Vec::new();
            let (table, table_indoms): (&[MetricSpec], &[IndomSpec]) = slot
                .module
                .as_ref()
                .and_then(|m| m.layout())
                .unwrap_or((spec.metrics, spec.indoms));
            add_spec_metrics(
                &mut mine,
                &mut my_indoms,
                &slot.prefix,
                slot.cluster,
                table,
                table_indoms,
            );
            let clash = mine.iter().find_map(|m| {
                let leaf_clash = names.keys().any(|n| {
                    n.starts_with(&format!("{}.", m.name)) || m.name.starts_with(&format!("{n}."))
                });
                names
                    .get(&m.name)
                    .cloned()
                    .or_else(|| leaf_clash.then(|| "another module".to_string()))
                    .map(|o| (m.name.clone(), o))
            });
            if let Some((name, owner)) = clash {
                slot.state = SlotState::Failed;
                slot.status = format!(
                    "metric name {name} is already served by {owner}; give [{}] another prefix",
                    slot.section
                );
                slot.module = None;
                error!("module {}: {}", slot.section, slot.status);
                continue;
            }
            for m in &mine {
                names.insert(m.name.clone(), format!("[{}]", slot.section));
            }
            metrics.extend(mine);
            indoms.extend(my_indoms);
            self.by_cluster.insert(slot.cluster, i);
        }
        (metrics, indoms)
    }

    /// Sends every created-but-not-loaded module to a loader thread.
    fn spawn_loader(&mut self) {
        let work: Vec<(u64, Box<dyn Module>)> = self
            .slots
            .iter_mut()
            .filter(|s| s.state == SlotState::Loading)
            .filter_map(|s| s.module.take().map(|m| (s.id, m)))
            .collect();
        if work.is_empty() {
            return;
        }
        let n = work.len();
        let tx = self.tx.clone();
        let waker = self.waker.clone();
        let spawned = std::thread::Builder::new()
            .name("bpf-loader".into())
            .spawn(move || {
                for (slot_id, mut module) in work {
                    let t0 = Instant::now();
                    let result =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| module.start()))
                            .unwrap_or_else(|_| {
                                Err(ModuleError::Other("panic while loading".into()))
                            })
                            .map_err(|e| e.to_string());
                    if tx
                        .send(Loaded {
                            slot_id,
                            module,
                            result,
                            elapsed: t0.elapsed(),
                        })
                        .is_err()
                    {
                        return;
                    }
                    if let Some(w) = &waker {
                        w.wake();
                    }
                }
            });
        match spawned {
            Ok(_) => self.pending += n,
            Err(e) => {
                error!("cannot start the loader thread: {e}");
                for s in self
                    .slots
                    .iter_mut()
                    .filter(|s| s.state == SlotState::Loading)
                {
                    s.state = SlotState::Failed;
                    s.status = format!("cannot start the loader thread: {e}");
                }
            }
        }
    }

    /// Takes the loader's results; true when something changed.
    fn collect_loaded(&mut self) -> bool {
        let mut changed = false;
        while let Ok(l) = self.rx.try_recv() {
            changed = true;
            self.pending = self.pending.saturating_sub(1);
            let Some(slot) = self.slots.iter_mut().find(|s| s.id == l.slot_id) else {
                // Removed by a reload while it loaded: dropping it unloads it.
                continue;
            };
            slot.load_time = Some(l.elapsed);
            match l.result {
                Ok(status) => {
                    info!(
                        "module {} running ({} ms): {status}",
                        slot.section,
                        l.elapsed.as_millis()
                    );
                    slot.state = SlotState::Running;
                    slot.status = status;
                    slot.module = Some(l.module);
                }
                Err(why) => {
                    error!("module {} failed: {why}", slot.section);
                    slot.state = SlotState::Failed;
                    slot.status = why;
                    if self.config.pmda.module_failure_fatal {
                        error!("module_failure_fatal is set: exiting");
                        std::process::exit(1);
                    }
                }
            }
        }
        changed
    }

    fn publish(&mut self, ctl: &mut Control) {
        let (m, i) = self.table();
        ctl.set_metrics(m, i);
        self.update_agent_instances(ctl);
        if self.pending == 0 && self.startup_time.is_none() {
            self.startup_time = Some(self.started.elapsed());
            ctl.ready();
        }
    }

    fn check_fatal(&self) {
        if self.config.pmda.module_failure_fatal {
            if let Some(s) = self.slots.iter().find(|s| s.state == SlotState::Failed) {
                error!(
                    "module {} failed and module_failure_fatal is set: exiting",
                    s.section
                );
                std::process::exit(1);
            }
        }
    }

    /// Re-reads bcc.conf and applies it (see the module docs).
    pub fn reload(&mut self, ctl: &mut Control) {
        let file = self.config.file.clone();
        info!("reloading {}", file.display());
        match load_config(&file) {
            Ok(cfg) => {
                self.reloads += 1;
                self.config = cfg;
                let old = std::mem::take(&mut self.slots);
                self.configure(old);
                self.check_fatal();
                self.spawn_loader();
                self.publish(ctl);
            }
            Err(why) => {
                error!("reload refused, keeping the running configuration: {why}");
                self.config_errors = vec![format!("reload refused: {why}")];
            }
        }
    }

    fn update_agent_instances(&mut self, ctl: &mut Control) {
        let mut inst = ModuleInstances {
            cluster: AGENT_CLUSTER,
            inner: &mut ctl.instances,
        };
        inst.hide_all(metrics::INDOM_MODULES);
        self.inst_index.clear();
        for (i, s) in self.slots.iter().enumerate() {
            if let Ok(id) = inst.add(metrics::INDOM_MODULES, &s.section) {
                self.inst_index.insert(id, i);
            }
        }
    }

    /// Re-reads the kernel's info on every program and map of the running modules.
    fn refresh_bpf(&mut self, ctl: &mut Control) {
        let mut inst = ModuleInstances {
            cluster: AGENT_CLUSTER,
            inner: &mut ctl.instances,
        };
        inst.hide_all(metrics::INDOM_PROGS);
        inst.hide_all(metrics::INDOM_MAPS);
        self.progs.clear();
        self.maps.clear();
        for s in self.slots.iter().filter(|s| s.state == SlotState::Running) {
            let Some(m) = &s.module else { continue };
            let (progs, maps) = m.bpf_objects();
            for p in progs {
                if let (Ok(id), Some(st)) = (
                    inst.add(metrics::INDOM_PROGS, &format!("{}/{}", s.section, p.name)),
                    bpfstats::prog_stats(p.fd),
                ) {
                    self.progs.insert(id, st);
                }
            }
            for mp in maps {
                if let (Ok(id), Some(st)) = (
                    inst.add(metrics::INDOM_MAPS, &format!("{}/{}", s.section, mp.name)),
                    bpfstats::map_stats(mp.fd),
                ) {
                    self.maps.insert(id, st);
                }
            }
        }
    }

    fn stats_enabled(&self) -> bool {
        self.stats_guard.is_some()
            || std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
                .is_ok_and(|v| v.trim() == "1")
    }

    fn slot_by_inst(&self, inst: Option<u32>) -> Result<&Slot, PmdaError> {
        let inst = inst.ok_or(PmdaError::UnknownInstance)?;
        self.inst_index
            .get(&inst)
            .map(|i| &self.slots[*i])
            .ok_or(PmdaError::UnknownInstance)
    }

    fn fetch_agent(&self, item: u32, inst: Option<u32>) -> Result<Option<Value>, PmdaError> {
        Ok(Some(match item {
            metrics::VERSION => Value::String(env!("CARGO_PKG_VERSION").to_string()),
            metrics::CONFIG => Value::String(self.config.file.display().to_string()),
            metrics::CONFIG_STATUS => Value::String(if self.config_errors.is_empty() {
                "ok".into()
            } else {
                self.config_errors.join("; ")
            }),
            metrics::RELOAD => Value::U64(self.reloads),
            metrics::RUNNING => Value::U32(
                self.slots
                    .iter()
                    .filter(|s| s.state == SlotState::Running)
                    .count() as u32,
            ),
            metrics::FAILED => Value::U32(
                self.slots
                    .iter()
                    .filter(|s| s.state == SlotState::Failed)
                    .count() as u32,
            ),
            metrics::STARTUP_TIME => match self.startup_time {
                Some(d) => Value::U64(d.as_millis() as u64),
                None => return Ok(None),
            },
            metrics::BPF_STATS_ENABLED => Value::U32(self.stats_enabled() as u32),
            metrics::PROG_ID
            | metrics::PROG_RUN_COUNT
            | metrics::PROG_RUN_TIME
            | metrics::PROG_VERIFIED_INSNS
            | metrics::PROG_RECURSION_MISSES => {
                let p = inst
                    .and_then(|i| self.progs.get(&i))
                    .ok_or(PmdaError::UnknownInstance)?;
                match item {
                    metrics::PROG_ID => Value::U32(p.id),
                    metrics::PROG_RUN_COUNT => Value::U64(p.run_cnt),
                    metrics::PROG_RUN_TIME => Value::U64(p.run_time_ns),
                    metrics::PROG_VERIFIED_INSNS => Value::U32(p.verified_insns),
                    _ => Value::U64(p.recursion_misses),
                }
            }
            metrics::MAP_ID
            | metrics::MAP_MAX_ENTRIES
            | metrics::MAP_MEMORY
            | metrics::MAP_ENTRIES => {
                let m = inst
                    .and_then(|i| self.maps.get(&i))
                    .ok_or(PmdaError::UnknownInstance)?;
                match item {
                    metrics::MAP_ID => Value::U32(m.id),
                    metrics::MAP_MAX_ENTRIES => Value::U32(m.max_entries),
                    metrics::MAP_ENTRIES => match bpfstats::map_entries(m) {
                        Some(n) => Value::U64(n),
                        None => return Ok(None),
                    },
                    _ => Value::U64(m.memlock),
                }
            }
            metrics::MOD_STATE => Value::String(self.slot_by_inst(inst)?.state.as_str().into()),
            metrics::MOD_STATUS => Value::String(self.slot_by_inst(inst)?.status.clone()),
            metrics::MOD_MODULE => match self.slot_by_inst(inst)?.spec {
                Some(s) => Value::String(s.name.into()),
                None => return Ok(None),
            },
            metrics::MOD_CLUSTER => {
                let s = self.slot_by_inst(inst)?;
                if s.spec.is_none()
                    || matches!(s.state, SlotState::Disabled | SlotState::Unavailable)
                {
                    return Ok(None);
                }
                Value::U32(s.cluster)
            }
            metrics::MOD_LOAD_TIME => match self.slot_by_inst(inst)?.load_time {
                Some(d) => Value::U64(d.as_millis() as u64),
                None => return Ok(None),
            },
            _ => return Err(PmdaError::UnknownMetric),
        }))
    }
}

/// The module kind of a section: a built-in one by `module =` (default: the section name),
/// or a user module from its `object =` and `spec =` files (relative to
/// `$PCP_PMDAS_DIR/bcc/modules/`), checked against each other.
/// Why the section is skipped, when it runs a module of PCP's Python pmdabcc this agent does
/// not have (an upstream user's file then starts as it is; the module is reported).
fn lacking_upstream_module(
    config: &Config,
    name: &str,
    section: &crate::config::Section,
) -> Option<String> {
    if section.keys.contains_key("object") || section.keys.contains_key("spec") {
        return None;
    }
    let entry = section.keys.get("module");
    let kind = entry.map_or(name, |e| e.value.as_str());
    if modules::find(kind).is_some() || !crate::compat::is_upstream_module(kind) {
        return None;
    }
    let line = entry.map_or(section.line, |e| e.line);
    Some(format!(
        "{}:{line}: [{name}] module: {kind:?} is a module of PCP's Python pmdabcc that this agent does not have: section skipped",
        config.file.display()
    ))
}

fn module_of(
    config: &Config,
    name: &str,
    section: &crate::config::Section,
) -> Result<&'static ModuleSpec, String> {
    let key = |k: &str| section.keys.get(k);
    let here = |k: &str| {
        let line = key(k).map_or(section.line, |e| e.line);
        format!("{}:{line}: [{name}] {k}", config.file.display())
    };
    match (key("object"), key("spec")) {
        (None, None) => {}
        (Some(o), Some(s)) => {
            let dir = user_module_dir();
            let (obj, spec) = (dir.join(&o.value), dir.join(&s.value));
            for (k, p) in [("object", &obj), ("spec", &spec)] {
                if let Err(e) = check_trusted(p) {
                    return Err(format!("{}: {e}", here(k)));
                }
            }
            let p = crate::framework::Program::from_files(&spec, &obj)
                .map_err(|e| format!("{}: {e}", here("spec")))?;
            if let Some(m) = key("module") {
                if m.value != p.spec.name {
                    return Err(format!(
                        "{}: {:?} is not the spec's module name {:?}",
                        here("module"),
                        m.value,
                        p.spec.name
                    ));
                }
            }
            return Ok(crate::framework::module_spec(p));
        }
        (Some(_), None) => {
            return Err(format!(
                "{}: a user module needs spec = too",
                here("object")
            ))
        }
        (None, Some(_)) => {
            return Err(format!(
                "{}: a user module needs object = too",
                here("spec")
            ))
        }
    }
    let kind = key("module").map_or(name, |e| e.value.as_str());
    modules::find(kind).ok_or_else(|| {
        let known: Vec<&str> = modules::names().collect();
        format!(
            "{}: unknown module {kind:?} (known: {}; or a user module with object = and spec =)",
            here("module"),
            known.join(", ")
        )
    })
}

/// Where user modules' objects and specs live.
pub fn user_module_dir() -> std::path::PathBuf {
    let dir = pcp_pmda::config_var("PCP_PMDAS_DIR").unwrap_or_else(|| "/var/lib/pcp/pmdas".into());
    Path::new(&dir).join("bcc").join("modules")
}

fn add_spec_metrics(
    out: &mut Vec<Metric>,
    indoms: &mut Vec<Indom>,
    prefix: &str,
    cluster: u32,
    specs: &[crate::module::MetricSpec],
    ind: &[crate::module::IndomSpec],
) {
    for m in specs {
        out.push(Metric {
            pmid: Pmid::new(cluster, m.item),
            name: format!("{prefix}{}", m.name),
            aliases: m.aliases.iter().map(|a| format!("{prefix}{a}")).collect(),
            ty: m.ty,
            sem: m.sem,
            units: m.units,
            indom: m.indom.map(|i| indom_serial(cluster, i)),
            oneline: m.oneline.to_string(),
            help: m.help.to_string(),
        });
    }
    for i in ind {
        indoms.push(Indom {
            serial: indom_serial(cluster, i.id),
            kind: i.kind,
            oneline: i.oneline.to_string(),
            help: i.help.to_string(),
        });
    }
}

impl Agent for BccAgent {
    fn start(&mut self, ctl: &mut Control) {
        self.check_fatal();
        match crate::bpf::ensure_tracefs() {
            Ok("mounted") => {}
            Ok(how) => info!("tracefs: {how}"),
            Err(e) => warn!("{e}"),
        }
        if self.config.pmda.bpf_stats {
            match bpfstats::enable_stats() {
                Ok(g) => {
                    info!("kernel BPF run-time statistics enabled ([pmda] bpf_stats)");
                    self.stats_guard = Some(g);
                }
                Err(e) => warn!("[pmda] bpf_stats: cannot enable kernel BPF statistics: {e}"),
            }
        }
        self.waker = Some(ctl.waker());
        self.spawn_loader();
        self.publish(ctl);
    }

    fn wake(&mut self, ctl: &mut Control) {
        if self.collect_loaded() {
            self.publish(ctl);
        }
    }

    fn refresh(&mut self, ctl: &mut Control, clusters: &[u32]) {
        if clusters.contains(&AGENT_CLUSTER) {
            self.refresh_bpf(ctl);
        }
        for c in clusters {
            let Some(&i) = self.by_cluster.get(c) else {
                continue;
            };
            let slot = &mut self.slots[i];
            if let Some(m) = slot.module.as_mut() {
                let mut inst = ModuleInstances {
                    cluster: slot.cluster,
                    inner: &mut ctl.instances,
                };
                if let Err(e) = m.refresh(&mut inst) {
                    warn!("module {}: refresh failed: {e}", slot.section);
                }
            }
        }
    }

    fn refresh_indom(&mut self, ctl: &mut Control, serial: u32) {
        self.refresh(ctl, &[serial >> 6]);
    }

    fn fetch(
        &mut self,
        pmid: Pmid,
        inst: Option<u32>,
        client: &Client,
    ) -> Result<Option<Value>, PmdaError> {
        if pmid.cluster == AGENT_CLUSTER {
            return self.fetch_agent(pmid.item, inst);
        }
        let i = *self
            .by_cluster
            .get(&pmid.cluster)
            .ok_or(PmdaError::UnknownMetric)?;
        let slot = &self.slots[i];
        let spec = slot.spec.ok_or(PmdaError::UnknownMetric)?;
        let table: &[MetricSpec] = slot
            .module
            .as_ref()
            .and_then(|m| m.layout())
            .map_or(spec.metrics, |l| l.0);
        let m = table
            .iter()
            .find(|m| m.item == pmid.item)
            .ok_or(PmdaError::UnknownMetric)?;
        if m.sensitive && !slot.policy.allows(client, &mut self.group_cache) {
            return Err(PmdaError::Permission);
        }
        let module = slot.module.as_ref().ok_or(PmdaError::Again)?;
        if m.ty != Type::Event {
            return module.fetch(pmid.item, inst);
        }
        // Event records carry several fields: the module leaves out the sensitive ones for
        // a client the policy does not allow them.
        let who = crate::module::FetchClient {
            context: client.context,
            cluster: slot.cluster,
            sensitive: slot.policy.allows(client, &mut self.group_cache),
        };
        module.fetch_for(pmid.item, inst, &who)
    }

    fn store(
        &mut self,
        ctl: &mut Control,
        pmid: Pmid,
        _inst: Option<u32>,
        _value: Value,
        client: &Client,
    ) -> Result<(), PmdaError> {
        if pmid != Pmid::new(AGENT_CLUSTER, metrics::RELOAD) {
            return Err(PmdaError::Permission);
        }
        if client.uid != Some(0) {
            return Err(PmdaError::Permission);
        }
        self.reload(ctl);
        Ok(())
    }

    fn labels(&self, target: LabelTarget) -> Option<String> {
        match target {
            LabelTarget::Cluster(c) if c == AGENT_CLUSTER => Some(r#"{"module":"agent"}"#.into()),
            LabelTarget::Cluster(c) => {
                let s = &self.slots[*self.by_cluster.get(&c)?];
                Some(format!(
                    r#"{{"module":"{}","module_section":"{}"}}"#,
                    s.spec?.name, s.section
                ))
            }
            LabelTarget::Indom(serial) => {
                let s = &self.slots[*self.by_cluster.get(&(serial >> 6))?];
                s.module.as_ref()?.indom_labels(serial & 0x3f)
            }
            _ => None,
        }
    }

    fn instance_labels(&self, serial: u32, inst: u32) -> Option<String> {
        let s = &self.slots[*self.by_cluster.get(&(serial >> 6))?];
        s.module.as_ref()?.instance_labels(serial & 0x3f, inst)
    }

    fn tick(&mut self, ctl: &mut Control) {
        for slot in self
            .slots
            .iter_mut()
            .filter(|s| s.state == SlotState::Running)
        {
            if let Some(m) = slot.module.as_mut() {
                let mut inst = ModuleInstances {
                    cluster: slot.cluster,
                    inner: &mut ctl.instances,
                };
                m.tick(&mut inst);
            }
        }
    }

    fn hangup(&mut self, ctl: &mut Control) {
        self.reload(ctl);
    }

    fn shutdown(&mut self) {
        // Dropping the modules drops their skeletons: links detach, programs and maps close.
        for s in &mut self.slots {
            s.module = None;
        }
        info!("all modules released");
    }
}
