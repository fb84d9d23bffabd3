//! The module interface: what one module (one folder under `src/modules/`) declares and does.
//!
//! A module is described by a static [`ModuleSpec`]: its metric table (explicit items, never
//! list positions), its instance domains, its options, and a constructor. The agent creates
//! the module from its config section on the main thread, starts it (open, configure, load,
//! attach its BPF programs) on a loader thread, then refreshes and fetches it on the main
//! thread.

use crate::config::{ConfigError, ModuleConfig};
use pcp_pmda::{IndomKind, Instances, PmdaError, Semantics, Type, Units, Value};

/// One metric of a module. `name` is relative to the module's prefix (`proc.sysfork` with
/// prefix `bcc.` is `bcc.proc.sysfork`).
#[derive(Clone, Debug)]
pub struct MetricSpec {
    pub item: u32,
    pub name: &'static str,
    pub ty: Type,
    pub sem: Semantics,
    pub units: Units,
    /// Module-local instance domain id (see [`IndomSpec::id`]).
    pub indom: Option<u32>,
    pub oneline: &'static str,
    pub help: &'static str,
    /// Values reveal private data (command lines, addresses, ports, file names): served only
    /// to clients the access policy allows.
    pub sensitive: bool,
    /// More names of the metric (same PMID), relative to the prefix like `name`.
    pub aliases: &'static [&'static str],
}

impl MetricSpec {
    /// One row of a metric table, its columns in the struct's order (`sensitive` before the
    /// texts, so that a table's rows line up).
    #[allow(clippy::too_many_arguments)] // one row of the table, in column order
    pub const fn new(
        item: u32,
        name: &'static str,
        ty: Type,
        sem: Semantics,
        units: Units,
        indom: Option<u32>,
        sensitive: bool,
        oneline: &'static str,
        help: &'static str,
    ) -> MetricSpec {
        MetricSpec {
            item,
            name,
            ty,
            sem,
            units,
            indom,
            oneline,
            help,
            sensitive,
            aliases: &[],
        }
    }
}

/// One instance domain of a module.
#[derive(Clone, Debug)]
pub struct IndomSpec {
    /// Module-local id; the PCP serial is derived from the module's cluster and this id.
    pub id: u32,
    pub kind: IndomKind,
    pub oneline: &'static str,
    pub help: &'static str,
}

/// The type of a module option: parsing, errors and the docs follow from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    Bool,
    Integer {
        min: i64,
        max: i64,
    },
    Enum(&'static [&'static str]),
    /// Comma-separated words.
    List,
    /// Comma-separated port numbers.
    Ports,
    /// The shared process filter (PIDs, names, regular expressions).
    Process,
    Text,
}

impl OptionKind {
    /// How the docs describe the values.
    pub fn describe(&self) -> String {
        match self {
            OptionKind::Bool => "True or False".into(),
            OptionKind::Integer { min, max } => format!("{min} to {max}"),
            OptionKind::Enum(v) => v.join(" | "),
            OptionKind::List => "comma-separated list".into(),
            OptionKind::Ports => "comma-separated ports".into(),
            OptionKind::Process => "PIDs, names or regular expressions, comma-separated".into(),
            OptionKind::Text => "text".into(),
        }
    }
}

/// A module option: its key, type, default (as bcc.conf writes it; "" for none) and doc.
#[derive(Clone, Copy, Debug)]
pub struct OptionSpec {
    pub key: &'static str,
    pub kind: OptionKind,
    pub default: &'static str,
    pub doc: &'static str,
}

impl OptionSpec {
    /// Checks the section's value of this option against its kind (absent is fine), so that
    /// every bad value of a section is reported, not only the first one the module reads.
    pub fn check(&self, cfg: &ModuleConfig) -> Result<(), ConfigError> {
        let Some(v) = cfg.get(self.key) else {
            return Ok(());
        };
        match self.kind {
            OptionKind::Bool => cfg.get_bool(self.key, false).map(drop),
            OptionKind::Integer { min, max } => match v.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(()),
                _ => Err(cfg.error(
                    self.key,
                    format!("expected a whole number from {min} to {max}, got {v:?}"),
                )),
            },
            OptionKind::Enum(values) if !values.contains(&v) => Err(cfg.error(
                self.key,
                format!("expected {}, got {v:?}", values.join(" | ")),
            )),
            OptionKind::Ports => cfg.get_ports(self.key).map(drop),
            OptionKind::Process => {
                crate::process::ProcessFilter::from_config(cfg, self.key).map(drop)
            }
            OptionKind::Enum(_) | OptionKind::List | OptionKind::Text => Ok(()),
        }
    }
}

/// Makes a module of a kind from its bcc.conf section.
pub type CreateFn = fn(&'static ModuleSpec, &ModuleConfig) -> Result<Box<dyn Module>, ConfigError>;

/// Everything the agent knows about a module kind before running it.
pub struct ModuleSpec {
    /// The value of `module =` in bcc.conf.
    pub name: &'static str,
    pub summary: &'static str,
    /// Cluster used when the section has no `cluster =` (the original pmdabcc's numbers);
    /// a user module without one needs `cluster =` in its section.
    pub default_cluster: Option<u32>,
    pub metrics: &'static [MetricSpec],
    pub indoms: &'static [IndomSpec],
    pub options: &'static [OptionSpec],
    /// Other metric tables an option can choose (e.g. tcplife's `layout = sessions`), by
    /// option setting: for the descriptor golden file and its one-PMID-one-descriptor check.
    pub layouts: &'static [(&'static str, &'static [MetricSpec], &'static [IndomSpec])],
    /// Parses the section's options (the agent has refused unknown keys); no BPF work here.
    pub create: CreateFn,
    /// The oldest kernel the module runs on, from the kernel matrix (tests/kernels).
    pub min_kernel: Option<&'static str>,
    /// A spec module's program (spec + object); `None` for modules written in Rust.
    pub program: Option<&'static crate::framework::Program>,
}

/// The `log` target of a module's messages: the path of a Rust module's code, so its
/// `log::debug!` lines are its own; the framework logs a spec module's lines under it too.
/// `debug = True` in the module's section writes them to the log.
pub fn log_target(kind: &str) -> String {
    format!("pmdabcc::modules::{kind}")
}

/// PCP serial of a module-local indom: 6 bits of local id under the 12-bit cluster, so
/// serials (and the pmdaCache files named after them) stay put as long as the cluster does.
pub const fn indom_serial(cluster: u32, local: u32) -> u32 {
    (cluster << 6) | (local & 0x3f)
}

/// Why a module could not start or refresh.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("no usable hook: {0}")]
    NoHook(String),
    #[error("BPF {stage} failed: {source}")]
    Bpf {
        stage: &'static str,
        source: libbpf_rs::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl ModuleError {
    pub fn bpf(stage: &'static str) -> impl FnOnce(libbpf_rs::Error) -> ModuleError {
        move |source| ModuleError::Bpf { stage, source }
    }
}

/// A module's view of its own instance domains (module-local ids).
pub struct ModuleInstances<'a> {
    pub(crate) cluster: u32,
    pub(crate) inner: &'a mut Instances,
}

impl ModuleInstances<'_> {
    pub fn serial(&self, local: u32) -> u32 {
        indom_serial(self.cluster, local)
    }
    /// Adds or re-activates `name`; the id is stable across agent restarts.
    pub fn add(&mut self, local: u32, name: &str) -> Result<u32, PmdaError> {
        let s = self.serial(local);
        self.inner.add(s, name)
    }
    pub fn hide(&mut self, local: u32, name: &str) {
        let s = self.serial(local);
        self.inner.hide(s, name)
    }
    /// Removes `name` for good: for members that will not come back (exited processes).
    pub fn cull(&mut self, local: u32, name: &str) {
        let s = self.serial(local);
        self.inner.cull(s, name)
    }
    pub fn hide_all(&mut self, local: u32) {
        let s = self.serial(local);
        self.inner.hide_all(s)
    }
    pub fn lookup(&self, local: u32, name: &str) -> Option<u32> {
        self.inner.lookup(self.serial(local), name)
    }
    pub fn name(&self, local: u32, inst: u32) -> Option<String> {
        self.inner.name(self.serial(local), inst)
    }
    pub fn active_count(&self, local: u32) -> usize {
        self.inner.active_count(self.serial(local))
    }
    /// Replaces the members of a fixed indom.
    pub fn set_fixed(&mut self, local: u32, members: &[(u32, String)]) {
        let s = self.serial(local);
        self.inner.set_fixed(s, members)
    }
}

/// Who a fetch is for.
#[derive(Clone, Copy, Debug)]
pub struct FetchClient {
    /// pmcd's context number of the client.
    pub context: i32,
    /// The module's cluster (the PMIDs of event parameters are in it).
    pub cluster: u32,
    /// Whether the access policy lets the client see sensitive values.
    pub sensitive: bool,
}

/// A BPF program of a module, for the self-metrics.
#[derive(Clone, Debug)]
pub struct ProgInfo {
    pub name: String,
    pub fd: i32,
}

/// A BPF map of a module, for the self-metrics.
#[derive(Clone, Debug)]
pub struct MapInfo {
    pub name: String,
    pub fd: i32,
}

/// A running (or about to run) module.
pub trait Module: Send {
    /// Opens, configures, loads and attaches the BPF programs, probing the kernel for the
    /// hooks to use. Returns a one-line status of what was chosen (e.g. the hooks). Runs on
    /// the loader thread.
    fn start(&mut self) -> Result<String, ModuleError>;
    /// Brings values and instances up to date before a fetch (main thread).
    fn refresh(&mut self, _inst: &mut ModuleInstances) -> Result<(), ModuleError> {
        Ok(())
    }
    /// The value of `item` for instance `inst` (from the last refresh).
    fn fetch(&self, item: u32, inst: Option<u32>) -> Result<Option<Value>, PmdaError>;
    /// [`Module::fetch`] for a client: values that depend on who asks (event records, of
    /// which each client context gets its own share) come through here.
    fn fetch_for(
        &self,
        item: u32,
        inst: Option<u32>,
        _who: &FetchClient,
    ) -> Result<Option<Value>, PmdaError> {
        self.fetch(item, inst)
    }
    /// Periodic work, about once a second (process filter re-scans, retention).
    fn tick(&mut self, _inst: &mut ModuleInstances) {}
    /// Labels (JSON) of a module-local indom.
    fn indom_labels(&self, _local: u32) -> Option<String> {
        None
    }
    /// Labels (JSON) of one instance of a module-local indom.
    fn instance_labels(&self, _local: u32, _inst: u32) -> Option<String> {
        None
    }
    /// The module's BPF programs and maps (for the BPF self-metrics).
    fn bpf_objects(&self) -> (Vec<ProgInfo>, Vec<MapInfo>) {
        (Vec::new(), Vec::new())
    }
    /// The metric table and instance domains served, when an option chose a layout other
    /// than the spec's own (e.g. tcplife's `layout = sessions`); `None`: the spec's.
    fn layout(&self) -> Option<(&[MetricSpec], &[IndomSpec])> {
        None
    }
}

/// Checks a metric table's invariants; used by every module's PMID-pinning test.
pub fn check_table(spec: &ModuleSpec) -> Result<(), String> {
    let mut items = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    for m in spec.metrics {
        if !items.insert(m.item) {
            return Err(format!("{}: item {} used twice", spec.name, m.item));
        }
        if !names.insert(m.name) {
            return Err(format!("{}: name {} used twice", spec.name, m.name));
        }
        if m.item > pcp_pmda::MAX_ITEM {
            return Err(format!("{}: item {} out of range", spec.name, m.item));
        }
        if let Some(i) = m.indom {
            if !spec.indoms.iter().any(|d| d.id == i) {
                return Err(format!(
                    "{}: {} uses undeclared indom {}",
                    spec.name, m.name, i
                ));
            }
        }
        if m.oneline.is_empty() || m.help.is_empty() {
            return Err(format!("{}: {} lacks help text", spec.name, m.name));
        }
        if names.iter().any(|n| {
            *n != m.name
                && (n.starts_with(&format!("{}.", m.name)) || m.name.starts_with(&format!("{n}.")))
        }) {
            return Err(format!(
                "{}: {} is both a leaf and a subtree",
                spec.name, m.name
            ));
        }
    }
    Ok(())
}
