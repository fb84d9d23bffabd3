//! The spec file of a module (TOML, `docs/MODULE-SPEC.md`): parsed into plain data, every
//! error naming the file, the line and the key. Nothing here knows the BPF object; the
//! layouts are checked against its BTF by `layout`.

use super::decode::Decoder;
use pcp_pmda::{Semantics, Type, Units};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml_edit::{Item, TableLike, Value};

/// A problem with a spec (or with the object it describes), where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    /// Dotted path of the key (`map.metric.field`).
    pub key: String,
    pub msg: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: ", self.file.display())?,
            l => write!(f, "{}:{l}: ", self.file.display())?,
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.msg)
    }
}

impl std::error::Error for SpecError {}

impl SpecError {
    /// An error about `file` as a whole (no line, no key).
    pub fn in_file(file: impl Into<PathBuf>, msg: impl Into<String>) -> SpecError {
        SpecError {
            file: file.into(),
            line: 0,
            key: String::new(),
            msg: msg.into(),
        }
    }
}

/// Where a part of the spec was declared: for errors found later (against the object).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub key: String,
}

#[derive(Clone, Debug)]
pub struct ProgramSpec {
    /// The program's name, or the base name of a twin set (`<base>_btf/_raw/_tp`).
    pub name: String,
    pub optional: bool,
    pub binary: Option<String>,
    /// A `path` option whose value is the binary (its default when bcc.conf omits it).
    pub binary_option: Option<String>,
    pub symbol: Option<String>,
    pub perf_event: Option<String>,
    /// Samples per second per CPU, or (`period`) one sample every so many events.
    pub frequency: u64,
    pub period: Option<u64>,
    /// A bool option that must be true for the program to load.
    pub enabled_by: Option<String>,
    pub at: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OptKind {
    Bool,
    Integer {
        min: i64,
        max: i64,
    },
    Enum(Vec<String>),
    /// The shared process filter, filling `map` (pids and tids).
    Process {
        map: String,
    },
    /// An absolute file path (a uprobe's binary, see `binary_option`); sets no global.
    Path,
    /// A list of ports (TCP/UDP), put as `__u16` keys in hash map `map`.
    Ports {
        map: String,
    },
    /// A regular expression an event record's `field` (as its metric serves it) must match:
    /// other records are dropped by the agent before the table and the event records.
    Match {
        field: String,
    },
}

#[derive(Clone, Debug)]
pub struct OptSpec {
    pub key: String,
    /// The `.rodata` variable it sets (a bool "filter on" flag for `process`).
    pub global: Option<String>,
    pub kind: OptKind,
    /// The default as bcc.conf would write it ("" for none).
    pub default: String,
    pub doc: String,
    /// Maps (with their metrics) that exist only when this bool option is true.
    pub enables: Vec<String>,
    pub at: Pos,
}

#[derive(Clone, Debug)]
pub struct MetricDef {
    pub item: u32,
    pub name: String,
    /// As declared; `None`: from the field (u64 for integers, string for text).
    pub ty: Option<Type>,
    pub sem: Semantics,
    pub units: Units,
    pub oneline: String,
    pub help: String,
    pub sensitive: bool,
    /// More names of the metric (same PMID), e.g. the Python pmdabcc's.
    pub aliases: Vec<String>,
    pub at: Pos,
}

#[derive(Clone, Debug)]
pub struct FieldMetric {
    /// Field of the value/record struct; `None` for a map whose value is a plain integer.
    pub field: Option<String>,
    /// Where `field` is written (the metric's name when it is not).
    pub field_at: Pos,
    pub decoder: Option<Decoder>,
    pub def: MetricDef,
}

#[derive(Clone, Debug)]
pub struct KeyField {
    /// Field of the key struct; `None` for a key that is a plain integer.
    pub field: Option<String>,
    pub decoder: Decoder,
    /// Label name of this part of the key on instances (default: the field name).
    pub label: Option<String>,
    /// What joins this part to the previous one in the instance name (default `::`).
    pub join: Option<String>,
    /// A key field that tells processes with the same PID apart (their start time), under
    /// which a `pid_cmd`/`pid_comm` part's name is cached.
    pub start: Option<(String, Pos)>,
    pub at: Pos,
}

#[derive(Clone, Debug)]
pub struct IndomDef {
    pub id: u32,
    pub oneline: String,
    pub help: String,
}

#[derive(Clone, Debug)]
pub struct HistSpec {
    pub indom: IndomDef,
    pub buckets: String,
    /// Where buckets, count and sum are written (the map's name when they are not).
    pub fields_at: [Pos; 3],
    /// Field names and whether the spec named them (a named one must exist).
    pub count: (String, bool),
    pub sum: (String, bool),
    pub sum_divisor: u64,
    /// `Some(width)`: linear buckets.
    pub linear: Option<u64>,
    pub key: Vec<KeyField>,
    pub key_indom: Option<IndomDef>,
    pub metric: MetricDef,
    pub count_metric: Option<MetricDef>,
    pub sum_metric: Option<MetricDef>,
}

#[derive(Clone, Debug)]
pub struct EventSpec {
    pub strukt: String,
    pub indom: IndomDef,
    pub slots: usize,
    /// A counters-style map and field the program adds lost records to.
    pub lost: Option<(String, String)>,
    pub lost_metric: Option<MetricDef>,
    /// The event-record metric (PM_TYPE_EVENT): every record, its fields as parameters.
    pub records: Option<MetricDef>,
    pub metrics: Vec<FieldMetric>,
}

// The variants differ in size (an events map carries its records and lost metrics), but a
// spec has a handful of maps, parsed once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum MapKind {
    Counters {
        metrics: Vec<FieldMetric>,
    },
    Keyed {
        indom: IndomDef,
        key: Vec<KeyField>,
        /// A key field whose integer is the instance id (`"key"` for a plain integer key),
        /// e.g. a PID, so the ids agree with other agents'; `None`: ids chosen by name.
        instance_id: Option<(String, Pos)>,
        metrics: Vec<FieldMetric>,
    },
    Histogram(HistSpec),
    Events(EventSpec),
}

#[derive(Clone, Debug)]
pub struct MapSpec {
    pub name: String,
    pub kind: MapKind,
    pub at: Pos,
}

impl MapSpec {
    /// Every metric this map serves.
    pub fn metrics(&self) -> Vec<&MetricDef> {
        match &self.kind {
            MapKind::Counters { metrics } | MapKind::Keyed { metrics, .. } => {
                metrics.iter().map(|m| &m.def).collect()
            }
            MapKind::Histogram(h) => std::iter::once(&h.metric)
                .chain(h.count_metric.iter())
                .chain(h.sum_metric.iter())
                .collect(),
            MapKind::Events(e) => e
                .metrics
                .iter()
                .map(|m| &m.def)
                .chain(e.lost_metric.iter())
                .chain(e.records.iter())
                .collect(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub file: PathBuf,
    pub name: String,
    pub summary: String,
    pub cluster: Option<u32>,
    pub min_kernel: Option<String>,
    pub programs: Vec<ProgramSpec>,
    pub options: Vec<OptSpec>,
    pub maps: Vec<MapSpec>,
}

impl Spec {
    pub fn error(&self, at: &Pos, msg: impl Into<String>) -> SpecError {
        SpecError {
            file: self.file.clone(),
            line: at.line,
            key: at.key.clone(),
            msg: msg.into(),
        }
    }

    /// Parses a spec; `file` is only for messages.
    pub fn parse(file: &Path, text: &str) -> Result<Spec, SpecError> {
        let doc = toml_edit::Document::parse(text.to_string()).map_err(|e| SpecError {
            file: file.to_path_buf(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            key: String::new(),
            msg: e.message().trim().to_string(),
        })?;
        let cx = Cx { file, text };
        let root = Tbl::new(&cx, doc.as_table(), "", 1);
        let module = root
            .table("module")?
            .ok_or_else(|| root.err("module", 1, "missing [module] table"))?;
        let name = module.req_str("name")?;
        check_ident(&module, "name", &name)?;
        let spec = Spec {
            file: file.to_path_buf(),
            summary: module.req_str("summary")?,
            cluster: module
                .int("cluster", 0, pcp_pmda::MAX_CLUSTER as i64 - 1)?
                .map(|c| c as u32),
            min_kernel: module.str("min_kernel")?,
            name,
            programs: root
                .tables("program")?
                .iter()
                .map(program)
                .collect::<Result<_, _>>()?,
            options: root
                .tables("option")?
                .iter()
                .map(option)
                .collect::<Result<_, _>>()?,
            maps: root
                .tables("map")?
                .iter()
                .map(map)
                .collect::<Result<_, _>>()?,
        };
        module.done()?;
        root.done()?;
        spec.check()?;
        Ok(spec)
    }

    /// Cross-checks: unique items, names, option keys; options that name maps name real ones.
    fn check(&self) -> Result<(), SpecError> {
        let mut items = BTreeMap::new();
        let mut names = BTreeSet::new();
        let mut indoms: BTreeMap<u32, &str> = BTreeMap::new();
        for m in &self.maps {
            for d in m.metrics() {
                if let Some(other) = items.insert(d.item, &d.name) {
                    return Err(
                        self.error(&d.at, format!("item {} is already used by {other}", d.item))
                    );
                }
                for n in std::iter::once(&d.name).chain(&d.aliases) {
                    if !names.insert(n.as_str()) {
                        return Err(self.error(&d.at, format!("metric {n} declared twice")));
                    }
                }
            }
            let mine: Vec<u32> = match &m.kind {
                MapKind::Counters { .. } => vec![],
                MapKind::Keyed { indom, .. } | MapKind::Events(EventSpec { indom, .. }) => {
                    vec![indom.id]
                }
                MapKind::Histogram(h) => std::iter::once(h.indom.id)
                    .chain(h.key_indom.as_ref().map(|i| i.id))
                    .collect(),
            };
            for id in mine {
                if let Some(other) = indoms.insert(id, &m.name) {
                    return Err(
                        self.error(&m.at, format!("indom {id} is already used by map {other}"))
                    );
                }
            }
        }
        for n in &names {
            if let Some(p) = names.iter().find(|o| o.starts_with(&format!("{n}."))) {
                let d = self
                    .maps
                    .iter()
                    .flat_map(|m| m.metrics())
                    .find(|d| d.name == *p);
                let at = d.map(|d| d.at.clone()).unwrap_or_default();
                return Err(self.error(&at, format!("{n} would be both a metric and a subtree")));
            }
        }
        let mut keys = BTreeSet::new();
        for o in &self.options {
            let events = self
                .maps
                .iter()
                .any(|m| matches!(m.kind, MapKind::Events(_)));
            let framework = events && o.key == "queue_memory";
            if !keys.insert(o.key.as_str()) || RESERVED_KEYS.contains(&o.key.as_str()) || framework
            {
                return Err(self.error(&o.at, format!("option key {:?} is taken", o.key)));
            }
            for e in &o.enables {
                if !self.maps.iter().any(|m| m.name == *e) {
                    return Err(
                        self.error(&o.at, format!("enables {e:?}: no [[map]] of that name"))
                    );
                }
            }
        }
        for p in &self.programs {
            if let Some(o) = &p.binary_option {
                if !self
                    .options
                    .iter()
                    .any(|x| x.key == *o && x.kind == OptKind::Path)
                {
                    return Err(self.error(
                        &p.at,
                        format!("binary_option {o:?}: no path option of that key"),
                    ));
                }
            }
            if let Some(by) = &p.enabled_by {
                if !self
                    .options
                    .iter()
                    .any(|o| o.key == *by && o.kind == OptKind::Bool)
                {
                    return Err(self.error(
                        &p.at,
                        format!("enabled_by {by:?}: no bool option of that key"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Keys of a module section that every module takes (not options of its own).
pub const RESERVED_KEYS: &[&str] = &[
    "module",
    "cluster",
    "prefix",
    "allowed_users",
    "allowed_groups",
    "object",
    "spec",
    "debug",
];

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn line(&self, span: Option<Range<usize>>) -> Option<usize> {
        span.map(|s| line_of(self.text, s.start))
    }
}

/// A table of the spec being read: typed getters that remember which keys were read, so
/// `done` can name the unknown ones.
struct Tbl<'a> {
    cx: &'a Cx<'a>,
    t: &'a dyn TableLike,
    path: String,
    line: usize,
    used: RefCell<BTreeSet<String>>,
}

impl<'a> Tbl<'a> {
    fn new(cx: &'a Cx<'a>, t: &'a dyn TableLike, path: &str, line: usize) -> Self {
        Tbl {
            cx,
            t,
            path: path.to_string(),
            line,
            used: RefCell::new(BTreeSet::new()),
        }
    }

    fn dotted(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn err(&self, key: &str, line: usize, msg: impl Into<String>) -> SpecError {
        SpecError {
            file: self.cx.file.to_path_buf(),
            line,
            key: self.dotted(key),
            msg: msg.into(),
        }
    }

    fn pos(&self, key: &str) -> Pos {
        Pos {
            line: self.key_line(key),
            key: self.dotted(key),
        }
    }

    fn key_line(&self, key: &str) -> usize {
        self.t
            .get_key_value(key)
            .and_then(|(k, v)| self.cx.line(k.span()).or_else(|| self.cx.line(v.span())))
            .unwrap_or(self.line)
    }

    fn get(&self, key: &str) -> Option<(&'a Item, usize)> {
        self.used.borrow_mut().insert(key.to_string());
        let item = self.t.get(key)?;
        Some((item, self.key_line(key)))
    }

    fn value(&self, key: &str) -> Option<(&'a Value, usize)> {
        match self.get(key)? {
            (Item::Value(v), l) => Some((v, l)),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Result<Option<String>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some((Item::Value(Value::String(s)), _)) => Ok(Some(s.value().clone())),
            Some((_, l)) => Err(self.err(key, l, "expected a string")),
        }
    }

    fn req_str(&self, key: &str) -> Result<String, SpecError> {
        self.needed_str(key, self.line, format!("missing key {key:?}"))
    }

    /// A string `key` this table must have, or the error `msg` at `line` (where the key that
    /// needs it is).
    fn needed_str(
        &self,
        key: &str,
        line: usize,
        msg: impl Into<String>,
    ) -> Result<String, SpecError> {
        self.str(key)?.ok_or_else(|| self.err(key, line, msg))
    }

    fn int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some((Item::Value(Value::Integer(i)), l)) => {
                let v = *i.value();
                if (min..=max).contains(&v) {
                    Ok(Some(v))
                } else {
                    Err(self.err(key, l, format!("{v} is out of range {min}-{max}")))
                }
            }
            Some((_, l)) => Err(self.err(key, l, "expected a whole number")),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some((Item::Value(Value::Boolean(b)), _)) => Ok(Some(*b.value())),
            Some((_, l)) => Err(self.err(key, l, "expected true or false")),
        }
    }

    fn str_list(&self, key: &str) -> Result<Vec<String>, SpecError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some((Item::Value(Value::Array(a)), l)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.err(key, l, "expected a list of strings"))
                })
                .collect(),
            Some((_, l)) => Err(self.err(key, l, "expected a list of strings")),
        }
    }

    fn table(&self, key: &str) -> Result<Option<Tbl<'a>>, SpecError> {
        let Some((item, l)) = self.get(key) else {
            return Ok(None);
        };
        let t: &dyn TableLike = match item {
            Item::Table(t) => t,
            Item::Value(Value::InlineTable(t)) => t,
            _ => return Err(self.err(key, l, "expected a table")),
        };
        Ok(Some(Tbl::new(self.cx, t, &self.dotted(key), l)))
    }

    /// An array of tables (`[[key]]` or `key = [{…}, …]`).
    fn tables(&self, key: &str) -> Result<Vec<Tbl<'a>>, SpecError> {
        let Some((item, l)) = self.get(key) else {
            return Ok(Vec::new());
        };
        let path = self.dotted(key);
        match item {
            Item::ArrayOfTables(a) => Ok(a
                .iter()
                .map(|t| {
                    let line = self.cx.line(t.span()).unwrap_or(l);
                    Tbl::new(self.cx, t as &dyn TableLike, &path, line)
                })
                .collect()),
            Item::Value(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::InlineTable(t) => {
                        let line = self.cx.line(v.span()).unwrap_or(l);
                        Ok(Tbl::new(self.cx, t as &dyn TableLike, &path, line))
                    }
                    _ => Err(self.err(key, l, "expected a list of tables")),
                })
                .collect(),
            _ => Err(self
                .err(key, l, "expected [[")
                .map_msg(|m| format!("{m}{key}]] tables"))),
        }
    }

    /// Fails on the first key no getter asked for.
    fn done(&self) -> Result<(), SpecError> {
        let used = self.used.borrow();
        for (k, _) in self.t.iter() {
            if !used.contains(k) {
                let known: Vec<&str> = used.iter().map(String::as_str).collect();
                return Err(self.err(
                    k,
                    self.key_line(k),
                    format!("unknown key (known here: {})", known.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

trait MapMsg {
    fn map_msg(self, f: impl FnOnce(&str) -> String) -> Self;
}

impl MapMsg for SpecError {
    fn map_msg(mut self, f: impl FnOnce(&str) -> String) -> Self {
        self.msg = f(&self.msg);
        self
    }
}

fn check_ident(t: &Tbl, key: &str, v: &str) -> Result<(), SpecError> {
    let ok = !v.is_empty()
        && v.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(t.err(
            key,
            t.key_line(key),
            format!("{v:?}: letters, digits and _ only, starting with a letter"),
        ))
    }
}

fn check_metric_name(t: &Tbl, v: &str) -> Result<(), SpecError> {
    for part in v.split('.') {
        check_ident(t, "name", part).map_err(|e| e.map_msg(|_| format!("{v:?}: each dot-separated part must be letters, digits and _, starting with a letter")))?;
    }
    Ok(())
}

fn program(t: &Tbl) -> Result<ProgramSpec, SpecError> {
    let p = ProgramSpec {
        name: t.req_str("name")?,
        optional: t.bool("optional")?.unwrap_or(false),
        binary: t.str("binary")?,
        binary_option: t.str("binary_option")?,
        symbol: t.str("symbol")?,
        perf_event: t.str("perf_event")?,
        frequency: t.int("frequency", 1, 100_000)?.unwrap_or(99) as u64,
        period: t.int("period", 1, i64::MAX)?.map(|p| p as u64),
        enabled_by: t.str("enabled_by")?,
        at: t.pos("name"),
    };
    if let Some(e) = &p.perf_event {
        if !["cpu-clock", "task-clock"].contains(&e.as_str()) {
            return Err(t.err(
                "perf_event",
                t.key_line("perf_event"),
                format!("{e:?}: expected cpu-clock or task-clock"),
            ));
        }
    }
    t.done()?;
    Ok(p)
}

fn option(t: &Tbl) -> Result<OptSpec, SpecError> {
    let key = t.req_str("key")?;
    check_ident(t, "key", &key)?;
    let ty = t.req_str("type")?;
    let ty_line = t.key_line("type");
    let default_of = |v: Option<(&Value, usize)>| -> String {
        match v {
            Some((Value::String(s), _)) => s.value().clone(),
            Some((Value::Boolean(b), _)) => if *b.value() { "True" } else { "False" }.into(),
            Some((Value::Integer(i), _)) => i.value().to_string(),
            _ => String::new(),
        }
    };
    let kind = match ty.as_str() {
        "bool" => OptKind::Bool,
        "integer" => OptKind::Integer {
            min: t.int("min", i64::MIN, i64::MAX)?.unwrap_or(0),
            max: t.int("max", i64::MIN, i64::MAX)?.unwrap_or(u32::MAX as i64),
        },
        "enum" => {
            let v = t.str_list("values")?;
            if v.is_empty() {
                return Err(t.err(
                    "values",
                    ty_line,
                    "an enum option needs values = [\"…\", …]",
                ));
            }
            OptKind::Enum(v)
        }
        "path" => OptKind::Path,
        "process" => OptKind::Process {
            map: t.needed_str(
                "map",
                ty_line,
                "a process option needs map = \"<hash map of pids>\"",
            )?,
        },
        "ports" => OptKind::Ports {
            map: t.needed_str(
                "map",
                ty_line,
                "a ports option needs map = \"<hash map of __u16 ports>\"",
            )?,
        },
        "match" => OptKind::Match {
            field: t.needed_str(
                "field",
                ty_line,
                "a match option needs field = \"<a field of an events map's record>\"",
            )?,
        },
        other => {
            return Err(t.err(
                "type",
                ty_line,
                format!(
                "unknown option type {other:?} (bool, integer, enum, process, path, ports, match)"
            ),
            ))
        }
    };
    let default = default_of(t.value("default"));
    if let OptKind::Integer { min, max } = &kind {
        if min > max {
            return Err(t.err("min", t.key_line("min"), "min is above max"));
        }
        if let Ok(d) = default.parse::<i64>() {
            if !(*min..=*max).contains(&d) {
                return Err(t.err(
                    "default",
                    t.key_line("default"),
                    format!("{d} is out of range {min}-{max}"),
                ));
            }
        }
    }
    let o = OptSpec {
        global: match (t.str("global")?, &kind) {
            (Some(_), OptKind::Path | OptKind::Match { .. }) => {
                return Err(t.err(
                    "global",
                    t.key_line("global"),
                    "a path or match option sets no global",
                ))
            }
            (
                g,
                OptKind::Process { .. }
                | OptKind::Path
                | OptKind::Ports { .. }
                | OptKind::Match { .. },
            ) => g,
            (g, _) => g.or_else(|| Some(key.clone())),
        },
        doc: t.req_str("doc")?,
        enables: t.str_list("enables")?,
        at: t.pos("key"),
        kind,
        default,
        key,
    };
    if o.kind == OptKind::Path && !o.default.is_empty() && !o.default.starts_with('/') {
        return Err(t.err(
            "default",
            t.key_line("default"),
            "a path option's default must be an absolute path",
        ));
    }
    if !o.enables.is_empty() && o.kind != OptKind::Bool {
        return Err(t.err(
            "enables",
            t.key_line("enables"),
            "only a bool option can enable maps",
        ));
    }
    t.done()?;
    Ok(o)
}

fn indom(t: &Tbl, key: &str, what: &str) -> Result<Option<IndomDef>, SpecError> {
    let Some(id) = t.int(key, 0, 63)? else {
        return Ok(None);
    };
    let prefix = key.strip_suffix("indom").unwrap_or("");
    Ok(Some(IndomDef {
        id: id as u32,
        oneline: t
            .str(&format!("{prefix}indom_oneline"))?
            .unwrap_or_else(|| what.to_string()),
        help: t
            .str(&format!("{prefix}indom_help"))?
            .unwrap_or_else(|| format!("Instances: {what}.")),
    }))
}

fn req_indom(t: &Tbl, key: &str, what: &str) -> Result<IndomDef, SpecError> {
    indom(t, key, what)?.ok_or_else(|| {
        t.err(
            key,
            t.line,
            format!("missing key {key:?} (the instance domain id, 0-63)"),
        )
    })
}

fn metric_def(t: &Tbl, units_default: Units) -> Result<MetricDef, SpecError> {
    let name = t.req_str("name")?;
    check_metric_name(t, &name)?;
    let ty = match t.str("type")?.as_deref() {
        None => None,
        Some("u32") => Some(Type::U32),
        Some("u64") => Some(Type::U64),
        Some("i32") => Some(Type::I32),
        Some("i64") => Some(Type::I64),
        Some("string") => Some(Type::String),
        Some(o) => {
            return Err(t.err(
                "type",
                t.key_line("type"),
                format!("unknown type {o:?} (u32, u64, i32, i64, string)"),
            ))
        }
    };
    let sem = match t.str("semantics")?.as_deref() {
        None | Some("counter") => Semantics::Counter,
        Some("instant") => Semantics::Instant,
        Some("discrete") => Semantics::Discrete,
        Some(o) => {
            return Err(t.err(
                "semantics",
                t.key_line("semantics"),
                format!("unknown semantics {o:?} (counter, instant, discrete)"),
            ))
        }
    };
    let units = match t.str("units")?.as_deref() {
        None => units_default,
        Some(u) => units_of(u).ok_or_else(|| {
            t.err(
                "units",
                t.key_line("units"),
                format!("unknown units {u:?} (count, bytes, nsec, usec, msec, sec, none)"),
            )
        })?,
    };
    let d = MetricDef {
        item: t
            .int("item", 0, pcp_pmda::MAX_ITEM as i64)?
            .ok_or_else(|| {
                t.err(
                    "item",
                    t.line,
                    "missing key \"item\" (the metric's number, 0-1023)",
                )
            })? as u32,
        oneline: t.req_str("oneline")?,
        help: t.req_str("help")?,
        sensitive: t.bool("sensitive")?.unwrap_or(false),
        aliases: {
            let a = t.str_list("aliases")?;
            for n in &a {
                check_metric_name(t, n)?;
            }
            a
        },
        at: t.pos("name"),
        name,
        ty,
        sem,
        units,
    };
    Ok(d)
}

pub fn units_of(u: &str) -> Option<Units> {
    Some(match u {
        "count" => Units::COUNT,
        "bytes" => Units::BYTES,
        "nsec" => Units::NSEC,
        "usec" => Units::USEC,
        "msec" => Units::MSEC,
        "sec" => Units::SEC,
        "none" => Units::NONE,
        _ => return None,
    })
}

fn decoder(t: &Tbl) -> Result<Option<Decoder>, SpecError> {
    let Some(name) = t.str("decoder")? else {
        return Ok(None);
    };
    let line = t.key_line("decoder");
    if name == "enum" {
        let e = t.str("enum")?.ok_or_else(|| {
            t.err(
                "decoder",
                line,
                "the enum decoder needs enum = \"<kernel enum name>\"",
            )
        })?;
        let strip = t.str_list("strip")?;
        return Decoder::kernel_enum(&e, strip)
            .map(Some)
            .map_err(|m| t.err("enum", t.key_line("enum"), m));
    }
    let values = match t.table("values")? {
        None => None,
        Some(v) => {
            let mut m = BTreeMap::new();
            for (k, item) in v.t.iter() {
                let n: i64 = k
                    .parse()
                    .map_err(|_| v.err(k, v.key_line(k), "keys of values must be numbers"))?;
                let s = item
                    .as_str()
                    .ok_or_else(|| v.err(k, v.key_line(k), "expected a string"))?;
                m.insert(n, s.to_string());
            }
            Some(m)
        }
    };
    Decoder::parse(&name, values)
        .map(Some)
        .map_err(|m| t.err("decoder", line, m))
}

fn field_metrics(t: &Tbl, key: &str) -> Result<Vec<FieldMetric>, SpecError> {
    t.tables(key)?
        .iter()
        .map(|m| {
            let fm = FieldMetric {
                field: m.str("field")?.filter(|f| !f.is_empty()),
                field_at: m.pos(if m.t.contains_key("field") {
                    "field"
                } else {
                    "name"
                }),
                decoder: decoder(m)?,
                def: metric_def(m, Units::COUNT)?,
            };
            m.done()?;
            Ok(fm)
        })
        .collect()
}

fn key_fields(t: &Tbl) -> Result<Vec<KeyField>, SpecError> {
    t.tables("key")?
        .iter()
        .map(|k| {
            let f = KeyField {
                field: k.str("field")?.filter(|f| !f.is_empty()),
                decoder: decoder(k)?.unwrap_or(Decoder::Uint),
                label: k.str("label")?,
                join: k.str("join")?,
                start: k.str("start")?.map(|f| (f, k.pos("start"))),
                at: k.pos(if k.t.contains_key("field") {
                    "field"
                } else {
                    "decoder"
                }),
            };
            k.done()?;
            Ok(f)
        })
        .collect()
}

fn sub_metric(t: &Tbl, key: &str, units: Units) -> Result<Option<MetricDef>, SpecError> {
    let Some(m) = t.table(key)? else {
        return Ok(None);
    };
    let d = metric_def(&m, units)?;
    m.done()?;
    Ok(Some(d))
}

fn map(t: &Tbl) -> Result<MapSpec, SpecError> {
    let name = t.req_str("name")?;
    let kind_s = t.req_str("kind")?;
    let what = format!("entries of map {name}");
    let kind = match kind_s.as_str() {
        "counters" => MapKind::Counters {
            metrics: field_metrics(t, "metric")?,
        },
        "keyed" => MapKind::Keyed {
            indom: req_indom(t, "indom", &what)?,
            key: key_fields(t)?,
            instance_id: t.str("instance_id")?.map(|f| (f, t.pos("instance_id"))),
            metrics: field_metrics(t, "metric")?,
        },
        "histogram" => {
            let count = t.str("count")?;
            let sum = t.str("sum")?;
            let linear = match t.str("bucket_type")?.as_deref() {
                None | Some("log2") => None,
                Some("linear") => Some(t.int("bucket_width", 1, i64::MAX)?.ok_or_else(|| {
                    t.err(
                        "bucket_width",
                        t.key_line("bucket_type"),
                        "linear buckets need bucket_width",
                    )
                })? as u64),
                Some(o) => {
                    return Err(t.err(
                        "bucket_type",
                        t.key_line("bucket_type"),
                        format!("unknown bucket type {o:?} (log2, linear)"),
                    ))
                }
            };
            let key = key_fields(t)?;
            let key_indom = indom(t, "key_indom", &format!("keys of map {name}"))?;
            if !key.is_empty() && key_indom.is_none() {
                let has_totals = t.t.contains_key("count_metric") || t.t.contains_key("sum_metric");
                if has_totals {
                    return Err(t.err(
                        "key_indom",
                        t.line,
                        "a keyed histogram with count_metric or sum_metric needs key_indom",
                    ));
                }
            }
            let metric = sub_metric(t, "metric", Units::COUNT)?.ok_or_else(|| {
                t.err(
                    "metric",
                    t.line,
                    "a histogram needs metric = { item, name, … }",
                )
            })?;
            let units = metric.units;
            MapKind::Histogram(HistSpec {
                indom: req_indom(t, "indom", &format!("buckets of map {name}"))?,
                buckets: t.str("buckets")?.unwrap_or_else(|| "slots".into()),
                fields_at: ["buckets", "count", "sum"]
                    .map(|k| t.pos(if t.t.contains_key(k) { k } else { "name" })),
                count: count.map_or(("count".into(), false), |c| (c, true)),
                sum: sum.map_or(("sum".into(), false), |c| (c, true)),
                sum_divisor: t.int("sum_divisor", 1, i64::MAX)?.unwrap_or(1) as u64,
                linear,
                key,
                key_indom,
                count_metric: sub_metric(t, "count_metric", Units::COUNT)?,
                sum_metric: sub_metric(t, "sum_metric", units)?,
                metric,
            })
        }
        "events" => {
            let lost = match t.table("lost")? {
                None => None,
                Some(l) => {
                    let v = (l.req_str("map")?, l.req_str("field")?);
                    l.done()?;
                    Some(v)
                }
            };
            MapKind::Events(EventSpec {
                strukt: t.req_str("struct")?,
                indom: req_indom(
                    t,
                    "indom",
                    &format!("recent records of map {name}, 0 the newest"),
                )?,
                slots: t.int("slots", 1, 100_000)?.unwrap_or(64) as usize,
                lost,
                lost_metric: sub_metric(t, "lost_metric", Units::COUNT)?,
                records: sub_metric(t, "records", Units::NONE)?,
                metrics: field_metrics(t, "metric")?,
            })
        }
        o => {
            return Err(t.err(
                "kind",
                t.key_line("kind"),
                format!("unknown map kind {o:?} (counters, keyed, histogram, events)"),
            ))
        }
    };
    let m = MapSpec {
        at: t.pos("name"),
        name,
        kind,
    };
    t.done()?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Spec, SpecError> {
        Spec::parse(Path::new("x.toml"), t)
    }

    const GOOD: &str = r#"
[module]
name = "demo"
summary = "a demo"
cluster = 20

[[option]]
key = "min_us"
type = "integer"
max = 100
default = 5
doc = "minimum"

[[map]]
name = "counts"
kind = "counters"
[[map.metric]]
field = "a"
item = 0
name = "demo.a"
oneline = "a"
help = "the a"

[[map]]
name = "hist"
kind = "histogram"
indom = 0
metric = { item = 1, name = "demo.lat", units = "usec", oneline = "l", help = "lat" }
count_metric = { item = 2, name = "demo.lat_count", oneline = "c", help = "count" }
"#;

    #[test]
    fn reads_a_good_spec() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.name, "demo");
        assert_eq!(s.cluster, Some(20));
        assert_eq!(s.options[0].default, "5");
        assert_eq!(s.options[0].global.as_deref(), Some("min_us"));
        assert_eq!(s.maps.len(), 2);
        let MapKind::Histogram(h) = &s.maps[1].kind else {
            panic!()
        };
        assert_eq!(h.metric.units, Units::USEC);
        assert_eq!(h.count_metric.as_ref().unwrap().item, 2);
        assert_eq!(s.maps[0].metrics()[0].at.line, 20);
    }

    #[test]
    fn a_path_option_names_a_uprobes_binary() {
        let uprobe =
            "\n[[program]]\nname = \"p\"\nbinary_option = \"shell\"\nsymbol = \"readline\"\n";
        let opt = "\n[[option]]\nkey = \"shell\"\ntype = \"path\"\ndefault = \"/bin/bash\"\ndoc = \"d\"\n";
        let s = parse(&format!("{GOOD}{uprobe}{opt}")).unwrap();
        assert_eq!(s.programs[0].binary_option.as_deref(), Some("shell"));
        assert_eq!(s.options[1].kind, OptKind::Path);
        assert_eq!(s.options[1].global, None);
        let e = parse(&format!("{GOOD}{uprobe}")).unwrap_err();
        assert!(e.msg.contains("no path option"), "{e}");
        let e = parse(&format!(
            "{GOOD}{uprobe}{}",
            opt.replace("/bin/bash", "bash")
        ))
        .unwrap_err();
        assert_eq!(e.key, "option.default", "{e}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse(&GOOD.replace("kind = \"counters\"", "kind = \"countrs\"")).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (16, "map.kind"), "{e}");
        assert!(
            e.to_string()
                .starts_with("x.toml:16: map.kind: unknown map kind"),
            "{e}"
        );
        let e = parse(&GOOD.replace("item = 0", "item = 1")).unwrap_err();
        assert!(e.msg.contains("item 1 is already used"), "{e}");
        let e =
            parse(&GOOD.replace("help = \"the a\"", "help = \"the a\"\ncolour = 1")).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (23, "map.metric.colour"), "{e}");
        let e = parse(&GOOD.replace("default = 5", "default = 500")).unwrap_err();
        assert_eq!(e.key, "option.default");
        let e = parse("[module\nname=1").unwrap_err();
        assert_eq!(e.line, 1);
    }
}
