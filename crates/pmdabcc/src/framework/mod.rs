//! The module framework: a module as a BPF object plus a spec (`docs/MODULE-SPEC.md`).
//!
//! [`Program`] is a spec checked against its object's BTF; [`module_spec`] turns it into the
//! agent's [`ModuleSpec`] (metric table, indoms, options); [`SpecModule`] runs it: `load`
//! opens, configures, loads and attaches the object, `serve` turns its maps into values.
//! The built-in `sysfork`, `runqlat` and `biolatency` are spec modules compiled into the
//! binary; user modules come from `bcc.conf` (`object =`, `spec =`).

pub mod decode;
pub mod events;
pub mod layout;
pub mod load;
pub mod serve;
pub mod spec;

use crate::config::{ConfigError, ModuleConfig};
use crate::module::{
    IndomSpec, Module, ModuleError, ModuleInstances, ModuleSpec, OptionKind, OptionSpec,
};
use decode::{Decoder, Need};
use layout::{Field, FieldKind, Layout, ObjectLayout};
use pcp_pmda::{IndomKind, PmdaError, Type, Value};
use spec::{MapKind, MetricDef, OptKind, Spec, SpecError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

// The BPF_MAP_TYPE_* values the map kinds accept.
use libbpf_rs::libbpf_sys::{
    BPF_MAP_TYPE_ARRAY as ARRAY, BPF_MAP_TYPE_HASH as HASH, BPF_MAP_TYPE_LRU_HASH as LRU_HASH,
    BPF_MAP_TYPE_LRU_PERCPU_HASH as LRU_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY as PERCPU_ARRAY,
    BPF_MAP_TYPE_PERCPU_HASH as PERCPU_HASH, BPF_MAP_TYPE_RINGBUF as RINGBUF,
};

fn is_percpu(t: u32) -> bool {
    matches!(t, PERCPU_HASH | PERCPU_ARRAY | LRU_PERCPU_HASH)
}

/// Where a value lives in a key, value or record.
#[derive(Clone, Debug)]
pub struct Loc {
    pub offset: usize,
    pub size: usize,
    pub kind: FieldKind,
}

impl Loc {
    fn of(f: &Field) -> Loc {
        Loc {
            offset: f.offset,
            size: f.size,
            kind: f.kind.clone(),
        }
    }
    /// The field's bytes; a record that ends inside the field (a variable-length event
    /// record, cut after the used part of its last array) gives the part it has.
    pub fn bytes<'b>(&self, b: &'b [u8]) -> &'b [u8] {
        let end = (self.offset + self.size).min(b.len());
        b.get(self.offset..end).unwrap_or(&[])
    }
}

/// A metric with where its value comes from.
#[derive(Clone, Debug)]
pub struct MetricPlan {
    pub item: u32,
    pub ty: Type,
    pub loc: Loc,
    pub decoder: Option<Decoder>,
}

#[derive(Clone, Debug)]
pub struct KeyPlan {
    pub loc: Loc,
    pub decoder: Decoder,
    pub label: String,
    /// Joins this part to the previous one in the instance name.
    pub join: String,
    /// The process start time field of a process key (`start = "<field>"`).
    pub start: Option<Loc>,
}

impl KeyPlan {
    /// Whether this part of a key always decodes to the same name: not a process's name
    /// read from /proc without its start time, nor a disk or cgroup name looked up anew.
    pub fn fixed_name(&self) -> bool {
        self.start.is_some()
            || !matches!(
                self.decoder,
                Decoder::PidCmd | Decoder::PidComm | Decoder::Disk | Decoder::Cgroup
            )
    }
}

/// How one map is served, resolved against the object's layouts.
#[derive(Clone, Debug)]
pub enum Plan {
    Counters {
        metrics: Vec<MetricPlan>,
    },
    Keyed {
        indom: u32,
        key: Vec<KeyPlan>,
        /// The key field that is the instance id (a fixed indom), if the spec names one.
        instance_id: Option<Loc>,
        metrics: Vec<MetricPlan>,
    },
    Histogram {
        indom: u32,
        key: Vec<KeyPlan>,
        key_indom: Option<u32>,
        buckets: Loc,
        count: Option<Loc>,
        sum: Option<Loc>,
        sum_divisor: u64,
        linear: Option<u64>,
        items: (u32, Option<u32>, Option<u32>),
    },
    Events {
        indom: u32,
        slots: usize,
        record_size: usize,
        metrics: Vec<MetricPlan>,
        lost: Option<(String, Loc, u32)>,
        /// Item of the event-record metric, if the spec declares one.
        records: Option<u32>,
    },
}

#[derive(Clone, Debug)]
pub struct MapPlan {
    pub name: String,
    pub percpu: bool,
    /// The value size as the kernel stores it (per CPU for per-CPU maps).
    pub value_size: usize,
    pub plan: Plan,
}

/// A spec and its object, checked against each other.
#[derive(Debug)]
pub struct Program {
    pub spec: Spec,
    /// The object file: borrowed from the binary for built-ins, read from disk for users'.
    pub object: std::borrow::Cow<'static, [u8]>,
    /// Where the object came from, for messages ("built in" or its path).
    pub origin: String,
    pub layout: ObjectLayout,
    pub maps: Vec<MapPlan>,
    /// Metric table and indoms, with types resolved.
    pub metrics: Vec<crate::module::MetricSpec>,
    pub indoms: Vec<IndomSpec>,
    pub options: Vec<OptionSpec>,
}

impl Program {
    /// Checks `spec` against `object` and resolves every layout.
    pub fn new(
        spec: Spec,
        object: impl Into<std::borrow::Cow<'static, [u8]>>,
        origin: String,
    ) -> Result<Program, SpecError> {
        let object = object.into();
        let records: Vec<&str> = spec
            .maps
            .iter()
            .filter_map(|m| match &m.kind {
                MapKind::Events(e) => Some(e.strukt.as_str()),
                _ => None,
            })
            .collect();
        let layout = ObjectLayout::read(&object, &records)
            .map_err(|m| SpecError::in_file(origin.clone(), m))?;
        let mut maps = Vec::new();
        for m in &spec.maps {
            maps.push(resolve_map(&spec, &layout, m)?);
        }
        for o in &spec.options {
            check_option(&spec, &layout, o)?;
        }
        check_programs(&spec, &object, &origin)?;
        let metrics = metric_table(&spec, &maps);
        let indoms = indom_table(&spec);
        let mut options: Vec<OptionSpec> = spec.options.iter().map(option_spec).collect();
        options.extend(process_count_option(&spec));
        options.extend(queue_memory_option(&spec));
        Ok(Program {
            spec,
            object,
            origin,
            layout,
            maps,
            metrics,
            indoms,
            options,
        })
    }

    /// Reads and checks a user module's spec and object files.
    pub fn from_files(spec_path: &Path, object_path: &Path) -> Result<Program, SpecError> {
        let text = std::fs::read_to_string(spec_path)
            .map_err(|e| SpecError::in_file(spec_path, format!("cannot read: {e}")))?;
        let spec = Spec::parse(spec_path, &text)?;
        let object = std::fs::read(object_path)
            .map_err(|e| SpecError::in_file(object_path, format!("cannot read: {e}")))?;
        Program::new(spec, object, object_path.display().to_string())
    }
}

fn err_at(spec: &Spec, at: &spec::Pos, msg: impl Into<String>) -> SpecError {
    spec.error(at, msg)
}

/// The error for a `what` the spec names that the object lacks, listing those it has
/// (`known_as`: what the list is).
fn not_in_object<'k>(
    spec: &Spec,
    at: &spec::Pos,
    what: &str,
    name: &str,
    known_as: &str,
    known: impl Iterator<Item = &'k str>,
) -> SpecError {
    let known: Vec<&str> = known.collect();
    let msg = format!(
        "the object has no {what} {name:?} ({known_as}: {})",
        known.join(", ")
    );
    spec.error(at, msg)
}

/// A field of a layout by (optional) name: the plain value when `name` is None.
fn field_of<'l>(
    spec: &Spec,
    at: &spec::Pos,
    l: &'l Layout,
    name: Option<&str>,
    what: &str,
) -> Result<&'l Field, SpecError> {
    match name {
        Some(n) => l.field(n).ok_or_else(|| {
            err_at(
                spec,
                at,
                format!(
                    "{what} (struct {}) has no field {n:?} (fields: {})",
                    l.name,
                    l.field_names()
                ),
            )
        }),
        None => l.plain().ok_or_else(|| {
            err_at(
                spec,
                at,
                format!(
                    "{what} is struct {} : name a field (fields: {})",
                    l.name,
                    l.field_names()
                ),
            )
        }),
    }
}

fn key_plans(
    spec: &Spec,
    keys: &[spec::KeyField],
    l: Option<&Layout>,
    map: &str,
    at: &spec::Pos,
) -> Result<Vec<KeyPlan>, SpecError> {
    let Some(l) = l else {
        return Err(err_at(spec, at, format!("map {map} declares no key type")));
    };
    if keys.is_empty() {
        return Err(err_at(
            spec,
            at,
            format!("map {map}: a keyed map needs key = [{{ field = …, decoder = … }}]"),
        ));
    }
    keys.iter()
        .map(|k| {
            let f = field_of(
                spec,
                &k.at,
                l,
                k.field.as_deref(),
                &format!("the key of map {map}"),
            )?;
            check_need(spec, &k.at, f, &k.decoder)?;
            let start = match &k.start {
                None => None,
                Some((name, at)) => {
                    if !matches!(k.decoder, Decoder::PidCmd | Decoder::PidComm) {
                        return Err(err_at(spec, at, "start = … goes with decoder = \"pid_cmd\" or \"pid_comm\" only"));
                    }
                    let s = field_of(spec, at, l, Some(name), &format!("the key of map {map}"))?;
                    if !matches!(s.kind, FieldKind::Int { .. }) || s.size > 8 {
                        return Err(err_at(spec, at, format!("start {name:?} must be an integer key field (the process's start time)")));
                    }
                    Some(Loc::of(s))
                }
            };
            Ok(KeyPlan {
                loc: Loc::of(f),
                decoder: k.decoder.clone(),
                label: k
                    .label
                    .clone()
                    .unwrap_or_else(|| k.field.clone().unwrap_or_else(|| "key".into())),
                join: k.join.clone().unwrap_or_else(|| "::".into()),
                start,
            })
        })
        .collect()
}

fn check_need(spec: &Spec, at: &spec::Pos, f: &Field, d: &Decoder) -> Result<(), SpecError> {
    let ok = match (d.need(), &f.kind) {
        (Need::Int, FieldKind::Int { .. }) => f.size <= 8,
        (Need::Text, FieldKind::Text) => true,
        (Need::Bytes(n), _) => f.size == n,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(err_at(
            spec,
            at,
            format!(
                "decoder {d:?} does not fit field {:?} ({} bytes, {:?})",
                f.name, f.size, f.kind
            ),
        ))
    }
}

/// The metric type of a field: as declared, else u64/i64 for integers, string for text or a
/// decoder that names things; a declared type must hold every value of the field.
fn metric_type(
    spec: &Spec,
    d: &MetricDef,
    f: &Field,
    dec: Option<&Decoder>,
) -> Result<Type, SpecError> {
    let numeric_decoder = matches!(dec, None | Some(Decoder::Uint) | Some(Decoder::Int));
    if let Some(dec) = dec {
        check_need(spec, &d.at, f, dec)?;
    }
    let natural = match (&f.kind, numeric_decoder) {
        (FieldKind::Int { signed }, true) if f.size <= 8 => {
            if *signed || matches!(dec, Some(Decoder::Int)) {
                Type::I64
            } else {
                Type::U64
            }
        }
        (FieldKind::Text, _) | (_, false) => Type::String,
        _ => {
            return Err(err_at(
                spec,
                &d.at,
                format!(
                    "field {:?} ({} bytes, {:?}) cannot be a metric value",
                    f.name, f.size, f.kind
                ),
            ))
        }
    };
    let Some(ty) = d.ty else { return Ok(natural) };
    let fits = match (ty, natural) {
        (Type::String, Type::String) => true,
        (Type::U64 | Type::I64, Type::U64 | Type::I64) => true,
        (Type::U32 | Type::I32, Type::U64 | Type::I64) => f.size <= 4,
        _ => false,
    };
    if !fits {
        return Err(err_at(
            spec,
            &d.at,
            format!(
                "type {ty:?} does not fit field {:?} ({} bytes, {:?}{})",
                f.name,
                f.size,
                f.kind,
                dec.map(|d| format!(", decoder {d:?}")).unwrap_or_default()
            ),
        ));
    }
    Ok(ty)
}

fn metric_plans(
    spec: &Spec,
    ms: &[spec::FieldMetric],
    l: &Layout,
    what: &str,
) -> Result<Vec<MetricPlan>, SpecError> {
    ms.iter()
        .map(|m| {
            let f = field_of(spec, &m.field_at, l, m.field.as_deref(), what)?;
            Ok(MetricPlan {
                item: m.def.item,
                ty: metric_type(spec, &m.def, f, m.decoder.as_ref())?,
                loc: Loc::of(f),
                decoder: m.decoder.clone(),
            })
        })
        .collect()
}

fn resolve_map(spec: &Spec, ol: &ObjectLayout, m: &spec::MapSpec) -> Result<MapPlan, SpecError> {
    let Some(ml) = ol.maps.get(&m.name) else {
        let known = ol.maps.keys().map(String::as_str);
        return Err(not_in_object(spec, &m.at, "map", &m.name, "maps", known));
    };
    let t = ml.map_type;
    let kind_ok = match &m.kind {
        MapKind::Counters { .. } => matches!(t, ARRAY | PERCPU_ARRAY),
        MapKind::Keyed { .. } => matches!(t, HASH | PERCPU_HASH | LRU_HASH | LRU_PERCPU_HASH),
        MapKind::Histogram(h) if h.key.is_empty() => matches!(t, ARRAY | PERCPU_ARRAY),
        MapKind::Histogram(_) => matches!(t, HASH | PERCPU_HASH | LRU_HASH | LRU_PERCPU_HASH),
        MapKind::Events(_) => t == RINGBUF,
    };
    if !kind_ok {
        return Err(err_at(
            spec,
            &m.at,
            format!("map {} has BPF map type {t}, which does not fit its kind (counters and unkeyed histograms: (per-CPU) array; keyed: (per-CPU/LRU) hash; events: ring buffer)", m.name),
        ));
    }
    let value = || {
        ml.value.as_ref().ok_or_else(|| {
            err_at(
                spec,
                &m.at,
                format!(
                    "map {} declares no value type (use __type(value, …))",
                    m.name
                ),
            )
        })
    };
    let what = format!("the value of map {}", m.name);
    let (plan, value_size) = match &m.kind {
        MapKind::Counters { metrics } => {
            let v = value()?;
            (
                Plan::Counters {
                    metrics: metric_plans(spec, metrics, v, &what)?,
                },
                v.size,
            )
        }
        MapKind::Keyed {
            indom,
            key,
            instance_id,
            metrics,
        } => {
            let v = value()?;
            let instance_id = match instance_id {
                None => None,
                Some((name, at)) => {
                    let kl = ml.key.as_ref().ok_or_else(|| {
                        err_at(spec, at, format!("map {} declares no key type", m.name))
                    })?;
                    let plain = name == "key" && kl.field("key").is_none();
                    let f = field_of(
                        spec,
                        at,
                        kl,
                        (!plain).then_some(name.as_str()),
                        &format!("the key of map {}", m.name),
                    )?;
                    // PCP instance ids are non-negative 32-bit integers.
                    if !matches!(f.kind, FieldKind::Int { .. }) || f.size > 4 {
                        return Err(err_at(spec, at, format!("instance_id {name:?} must be an integer key field of at most 4 bytes (a pid, an index)")));
                    }
                    Some(Loc::of(f))
                }
            };
            (
                Plan::Keyed {
                    indom: indom.id,
                    key: key_plans(spec, key, ml.key.as_ref(), &m.name, &m.at)?,
                    instance_id,
                    metrics: metric_plans(spec, metrics, v, &what)?,
                },
                v.size,
            )
        }
        MapKind::Histogram(h) => {
            let v = value()?;
            let b = field_of(spec, &h.fields_at[0], v, Some(&h.buckets), &what)?;
            let FieldKind::Array { elem: 8, .. } = b.kind else {
                return Err(err_at(
                    spec,
                    &h.fields_at[0],
                    format!(
                        "buckets field {:?} must be an array of __u64 (struct hist of hist.bpf.h)",
                        h.buckets
                    ),
                ));
            };
            let opt_field = |(name, named): &(String, bool),
                             at: &spec::Pos|
             -> Result<Option<Loc>, SpecError> {
                match v.field(name) {
                    Some(f) if matches!(f.kind, FieldKind::Int { .. }) && f.size == 8 => {
                        Ok(Some(Loc::of(f)))
                    }
                    Some(_) => Err(err_at(spec, at, format!("field {name:?} must be a __u64"))),
                    None if *named => Err(err_at(
                        spec,
                        at,
                        format!(
                            "{what} (struct {}) has no field {name:?} (fields: {})",
                            v.name,
                            v.field_names()
                        ),
                    )),
                    None => Ok(None),
                }
            };
            let count = opt_field(&h.count, &h.fields_at[1])?;
            let sum = opt_field(&h.sum, &h.fields_at[2])?;
            for (d, loc, f) in [
                (&h.count_metric, &count, "count"),
                (&h.sum_metric, &sum, "sum"),
            ] {
                if let (Some(d), None) = (d, loc) {
                    return Err(err_at(spec, &d.at, format!("{what} has no {f} field")));
                }
            }
            let key = if h.key.is_empty() {
                Vec::new()
            } else {
                key_plans(spec, &h.key, ml.key.as_ref(), &m.name, &m.at)?
            };
            (
                Plan::Histogram {
                    indom: h.indom.id,
                    key,
                    key_indom: h.key_indom.as_ref().map(|i| i.id),
                    buckets: Loc::of(b),
                    count,
                    sum,
                    sum_divisor: h.sum_divisor,
                    linear: h.linear,
                    items: (
                        h.metric.item,
                        h.count_metric.as_ref().map(|m| m.item),
                        h.sum_metric.as_ref().map(|m| m.item),
                    ),
                },
                v.size,
            )
        }
        MapKind::Events(e) => {
            let rec = ol.structs.get(&e.strukt).ok_or_else(|| {
                err_at(spec, &m.at, format!("the object's BTF has no struct {:?} (keep it with `const struct {} *unused_{0} __attribute__((unused));`)", e.strukt, e.strukt))
            })?;
            let lost = match &e.lost {
                None => None,
                Some((map, field)) => {
                    let lm = ol
                        .maps
                        .get(map)
                        .and_then(|l| l.value.as_ref())
                        .ok_or_else(|| {
                            err_at(
                                spec,
                                &m.at,
                                format!("lost: the object has no map {map:?} with a value type"),
                            )
                        })?;
                    let f = field_of(
                        spec,
                        &m.at,
                        lm,
                        Some(field),
                        &format!("the value of map {map}"),
                    )?;
                    let item = e.lost_metric.as_ref().map(|d| d.item).ok_or_else(|| {
                        err_at(
                            spec,
                            &m.at,
                            "lost = { … } needs lost_metric = { item, name, … }",
                        )
                    })?;
                    Some((map.clone(), Loc::of(f), item))
                }
            };
            (
                Plan::Events {
                    indom: e.indom.id,
                    slots: e.slots,
                    record_size: rec.size,
                    metrics: metric_plans(spec, &e.metrics, rec, &format!("struct {}", e.strukt))?,
                    lost,
                    records: e.records.as_ref().map(|d| d.item),
                },
                rec.size,
            )
        }
    };
    Ok(MapPlan {
        name: m.name.clone(),
        percpu: is_percpu(t),
        value_size,
        plan,
    })
}

/// The object's programs against the spec's `[[program]]` entries: every entry names a
/// program (or twin set) of the object, and programs that cannot attach by their section
/// alone (perf_event, uprobes without a target) have an entry that says how.
fn check_programs(spec: &Spec, object: &[u8], origin: &str) -> Result<(), SpecError> {
    let open = libbpf_rs::ObjectBuilder::default()
        .open_memory(object)
        .map_err(|e| SpecError::in_file(origin, format!("libbpf cannot open the object: {e}")))?;
    let progs: Vec<(String, String)> = open
        .progs()
        .map(|p| {
            (
                p.name().to_string_lossy().into_owned(),
                p.section().to_string_lossy().into_owned(),
            )
        })
        .collect();
    let entry = |name: &str| {
        let base = load::twin_base(name);
        spec.programs
            .iter()
            .find(|s| s.name == name || Some(s.name.as_str()) == base)
    };
    for s in &spec.programs {
        if !progs
            .iter()
            .any(|(n, _)| n == &s.name || load::twin_base(n) == Some(s.name.as_str()))
        {
            let known = progs.iter().map(|(n, _)| n.as_str());
            return Err(not_in_object(
                spec, &s.at, "program", &s.name, "programs", known,
            ));
        }
    }
    let module_at = spec::Pos {
        line: 1,
        key: "program".into(),
    };
    for (name, section) in &progs {
        let e = entry(name);
        if section == "perf_event" && e.and_then(|e| e.perf_event.as_ref()).is_none() {
            return Err(spec.error(e.map_or(&module_at, |e| &e.at), format!("program {name} is SEC(\"perf_event\"): it needs [[program]] name = {name:?} with perf_event = \"cpu-clock\" (and frequency or period)")));
        }
        let bare_uprobe = matches!(section.as_str(), "uprobe" | "uretprobe");
        if bare_uprobe && e.is_none_or(|e| e.binary.is_none() && e.binary_option.is_none()) {
            return Err(spec.error(e.map_or(&module_at, |e| &e.at), format!("program {name} is SEC({section:?}) without a target: it needs [[program]] with binary and symbol")));
        }
    }
    Ok(())
}

fn check_option(spec: &Spec, ol: &ObjectLayout, o: &spec::OptSpec) -> Result<(), SpecError> {
    if let Some(g) = &o.global {
        let Some((_, size)) = ol.rodata.get(g) else {
            let known = ol.rodata.keys().map(String::as_str);
            let globals = "const volatile; globals";
            return Err(not_in_object(
                spec,
                &o.at,
                "read-only global",
                g,
                globals,
                known,
            ));
        };
        let fits = match &o.kind {
            OptKind::Bool | OptKind::Process { .. } | OptKind::Path | OptKind::Ports { .. } => {
                (1..=8).contains(size)
            }
            OptKind::Match { .. } => false,
            OptKind::Integer { min, max } => {
                let bits = 8 * *size as u32;
                *size <= 8
                    && (bits == 64
                        || (*max as i128) < (1i128 << bits)
                            && *min >= -(1i64 << (bits - 1).min(62)))
            }
            OptKind::Enum(v) => {
                (1..=8).contains(size) && (v.len() as u64) < (1u64 << (8 * size.min(&7)))
            }
        };
        if !fits {
            return Err(err_at(
                spec,
                &o.at,
                format!("global {g:?} ({size} bytes) cannot hold this option's values"),
            ));
        }
    }
    if let OptKind::Match { field } = &o.kind {
        if match_target(spec, field).is_none() {
            return Err(err_at(
                spec,
                &o.at,
                format!("match option: no events map has a metric of field {field:?}"),
            ));
        }
    }
    if let OptKind::Process { map } = &o.kind {
        let key_ok = ol
            .maps
            .get(map)
            .and_then(|m| m.key.as_ref())
            .is_some_and(|k| k.size == 4);
        if !key_ok {
            return Err(err_at(spec, &o.at, format!("process filter map {map:?}: the object needs a hash map of that name keyed by __u32")));
        }
    }
    if let OptKind::Ports { map } = &o.kind {
        let key_ok = ol
            .maps
            .get(map)
            .is_some_and(|m| m.map_type == HASH && m.key.as_ref().is_some_and(|k| k.size == 2));
        if !key_ok {
            return Err(err_at(
                spec,
                &o.at,
                format!(
                    "ports map {map:?}: the object needs a hash map of that name keyed by __u16"
                ),
            ));
        }
    }
    Ok(())
}

fn metric_spec(d: &MetricDef, ty: Type, indom: Option<u32>) -> crate::module::MetricSpec {
    crate::module::MetricSpec {
        item: d.item,
        name: leak(&d.name),
        ty,
        sem: d.sem,
        units: d.units,
        indom,
        oneline: leak(&d.oneline),
        help: leak(&d.help),
        sensitive: d.sensitive,
        aliases: Box::leak(
            d.aliases
                .iter()
                .map(|a| leak(a))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        ),
    }
}

/// The spec's metric table, types resolved by the plans.
fn metric_table(spec: &Spec, plans: &[MapPlan]) -> Vec<crate::module::MetricSpec> {
    let mut out = Vec::new();
    for (m, p) in spec.maps.iter().zip(plans) {
        let typed = |ms: &[spec::FieldMetric],
                     ps: &[MetricPlan],
                     indom: Option<u32>|
         -> Vec<crate::module::MetricSpec> {
            ms.iter()
                .zip(ps)
                .map(|(m, p)| metric_spec(&m.def, p.ty, indom))
                .collect()
        };
        match (&m.kind, &p.plan) {
            (MapKind::Counters { metrics }, Plan::Counters { metrics: ps }) => {
                out.extend(typed(metrics, ps, None))
            }
            (MapKind::Keyed { metrics, indom, .. }, Plan::Keyed { metrics: ps, .. }) => {
                out.extend(typed(metrics, ps, Some(indom.id)))
            }
            (MapKind::Histogram(h), _) => {
                out.push(metric_spec(&h.metric, Type::U64, Some(h.indom.id)));
                let per_key = h.key_indom.as_ref().map(|i| i.id);
                for d in h.count_metric.iter().chain(h.sum_metric.iter()) {
                    out.push(metric_spec(d, Type::U64, per_key));
                }
            }
            (MapKind::Events(e), Plan::Events { metrics: ps, .. }) => {
                out.extend(typed(&e.metrics, ps, Some(e.indom.id)));
                if let Some(d) = &e.lost_metric {
                    out.push(metric_spec(d, Type::U64, None));
                }
                if let Some(d) = &e.records {
                    // Event records are observations: instant, no units (pmdaEventNewArray(3)).
                    let mut s = metric_spec(d, Type::Event, None);
                    s.sem = pcp_pmda::Semantics::Instant;
                    s.units = pcp_pmda::Units::NONE;
                    out.push(s);
                }
            }
            _ => {}
        }
    }
    out
}

fn indom_table(spec: &Spec) -> Vec<IndomSpec> {
    let mk = |d: &spec::IndomDef, kind| IndomSpec {
        id: d.id,
        kind,
        oneline: leak(&d.oneline),
        help: leak(&d.help),
    };
    let mut out = Vec::new();
    for m in &spec.maps {
        match &m.kind {
            MapKind::Counters { .. } => {}
            MapKind::Keyed {
                indom, instance_id, ..
            } => out.push(mk(
                indom,
                if instance_id.is_some() {
                    IndomKind::Fixed
                } else {
                    IndomKind::Cached
                },
            )),
            MapKind::Histogram(h) => {
                out.push(mk(
                    &h.indom,
                    if h.key.is_empty() {
                        IndomKind::Fixed
                    } else {
                        IndomKind::Cached
                    },
                ));
                if let Some(k) = &h.key_indom {
                    out.push(mk(k, IndomKind::Cached));
                }
            }
            MapKind::Events(e) => out.push(mk(&e.indom, IndomKind::Fixed)),
        }
    }
    out
}

/// The bcc.conf key the framework adds for `events` maps with event records: the memory
/// bound of their queues.
fn queue_memory_option(spec: &Spec) -> Option<OptionSpec> {
    spec.maps
        .iter()
        .any(|m| matches!(&m.kind, MapKind::Events(e) if e.records.is_some()))
        .then_some(OptionSpec {
            key: "queue_memory",
            kind: OptionKind::Text,
            default: "32M",
            doc: "memory for event records clients have yet to fetch (bytes, or K, M, G); \
                  beyond it the oldest go, and the clients that had not fetched them get a \
                  missed count",
        })
}

fn option_spec(o: &spec::OptSpec) -> OptionSpec {
    OptionSpec {
        key: leak(&o.key),
        doc: leak(&o.doc),
        default: leak(&o.default),
        kind: match &o.kind {
            OptKind::Bool => OptionKind::Bool,
            OptKind::Integer { min, max } => OptionKind::Integer {
                min: *min,
                max: *max,
            },
            OptKind::Enum(v) => OptionKind::Enum(Box::leak(
                v.iter()
                    .map(|s| leak(s))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            )),
            OptKind::Process { .. } => OptionKind::Process,
            OptKind::Path => OptionKind::Text,
            OptKind::Ports { .. } => OptionKind::Ports,
            OptKind::Match { .. } => OptionKind::Text,
        },
    }
}

/// `process_count`, the size of the recent-events table, which every module with an
/// `events` map takes (the name pmdabpf and the original pmdabcc gave it).
fn process_count_option(spec: &Spec) -> Option<OptionSpec> {
    let slots = spec.maps.iter().find_map(|m| match &m.kind {
        MapKind::Events(e) => Some(e.slots),
        _ => None,
    })?;
    if spec.options.iter().any(|o| o.key == "process_count") {
        return None;
    }
    Some(OptionSpec {
        key: "process_count",
        doc:
            "how many of the most recent events the table serves (instances 0, the newest, to N-1)",
        default: leak(&slots.to_string()),
        kind: OptionKind::Integer {
            min: 1,
            max: 100_000,
        },
    })
}

/// Spec texts live as long as the agent: a `ModuleSpec` is `'static`. Each distinct spec is
/// leaked once (see [`module_spec`]'s cache), so reloads do not grow memory.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// The agent's view of a program: its `ModuleSpec`, made once per distinct (spec, object)
/// content and kept for the life of the process.
pub fn module_spec(p: Program) -> &'static ModuleSpec {
    static CACHE: OnceLock<Mutex<HashMap<u64, &'static ModuleSpec>>> = OnceLock::new();
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{:?}", p.spec).hash(&mut h);
    p.object.hash(&mut h);
    let key = h.finish();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = c.get(&key) {
        return s;
    }
    let p: &'static Program = Box::leak(Box::new(p));
    let s: &'static ModuleSpec = Box::leak(Box::new(ModuleSpec {
        name: leak(&p.spec.name),
        summary: leak(&p.spec.summary),
        default_cluster: p.spec.cluster,
        metrics: &p.metrics,
        indoms: &p.indoms,
        options: &p.options,
        layouts: &[],
        create: create_spec_module,
        min_kernel: p.spec.min_kernel.as_deref().map(leak),
        program: Some(p),
    }));
    c.insert(key, s);
    s
}

/// A built-in spec module: its spec text and object, compiled in.
pub fn builtin(file: &str, spec: &str, object: &'static [u8]) -> &'static ModuleSpec {
    let spec = Spec::parse(Path::new(file), spec).unwrap_or_else(|e| panic!("built-in spec: {e}"));
    let p = Program::new(spec, object, "built in".into())
        .unwrap_or_else(|e| panic!("built-in module {file}: {e}"));
    module_spec(p)
}

/// Option values of a module section, typed by the spec's options.
#[derive(Debug, Default)]
pub struct OptionValues {
    /// (rodata offset, size, value) to write before load.
    pub globals: Vec<(usize, usize, u64)>,
    /// Bool options' values by key.
    pub flags: HashMap<String, bool>,
    pub process: Option<(crate::process::ProcessFilter, String)>,
    /// Path options' values by key.
    pub paths: HashMap<String, String>,
    /// Ports options given: (map, ports) put in the map at start.
    pub ports: Vec<(String, Vec<u16>)>,
    /// Maps enabled by an option that is false: kept at one entry, their metrics not served.
    pub disabled_maps: Vec<String>,
    pub slots_override: Option<usize>,
    /// Memory bound of each event-record queue (bcc.conf `queue_memory`), in bytes.
    pub queue_memory: usize,
    /// Match options given: (events map, item of the field's metric, expression).
    pub matches: Vec<(String, u32, regex_lite::Regex)>,
}

/// The events map and metric item a match option's field is served by.
fn match_target(spec: &Spec, field: &str) -> Option<(String, u32)> {
    spec.maps.iter().find_map(|m| match &m.kind {
        MapKind::Events(e) => e
            .metrics
            .iter()
            .find(|f| f.field.as_deref() == Some(field))
            .map(|f| (m.name.clone(), f.def.item)),
        _ => None,
    })
}

fn create_spec_module(
    spec: &'static ModuleSpec,
    cfg: &ModuleConfig,
) -> Result<Box<dyn Module>, ConfigError> {
    let p = spec.program.expect("spec module has a program");
    let mut v = OptionValues::default();
    for o in &p.spec.options {
        let rodata = |g: &Option<String>| g.as_ref().and_then(|g| p.layout.rodata.get(g)).copied();
        match &o.kind {
            OptKind::Bool => {
                let d = crate::config::parse_bool(&o.default).unwrap_or(false);
                let b = cfg.get_bool(&o.key, d)?;
                v.flags.insert(o.key.clone(), b);
                if let Some((off, size)) = rodata(&o.global) {
                    v.globals.push((off, size, b as u64));
                }
                if !b {
                    v.disabled_maps.extend(o.enables.iter().cloned());
                }
            }
            OptKind::Integer { min, max } => {
                let d: i64 = o.default.parse().unwrap_or(*min);
                let n = match cfg.get(&o.key) {
                    None => d,
                    Some(s) => match s.trim().parse::<i64>() {
                        Ok(n) if (*min..=*max).contains(&n) => n,
                        _ => {
                            return Err(cfg.error(
                                &o.key,
                                format!("expected a whole number from {min} to {max}, got {s:?}"),
                            ))
                        }
                    },
                };
                if let Some((off, size)) = rodata(&o.global) {
                    v.globals.push((off, size, n as u64));
                }
            }
            OptKind::Enum(names) => {
                let s = cfg.get(&o.key).unwrap_or(&o.default).trim().to_string();
                let i = names
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(&s))
                    .ok_or_else(|| {
                        cfg.error(
                            &o.key,
                            format!("expected one of {}, got {s:?}", names.join(", ")),
                        )
                    })?;
                if let Some((off, size)) = rodata(&o.global) {
                    v.globals.push((off, size, i as u64));
                }
            }
            OptKind::Match { field } => {
                if let Some(s) = cfg.get(&o.key).map(str::trim).filter(|s| !s.is_empty()) {
                    let re = regex_lite::Regex::new(s)
                        .map_err(|e| cfg.error(&o.key, format!("not a regular expression: {e}")))?;
                    let (map, item) = match_target(&p.spec, field).expect("checked with the spec");
                    v.matches.push((map, item, re));
                }
            }
            OptKind::Path => {
                let s = cfg.get(&o.key).unwrap_or(&o.default).trim().to_string();
                if !s.starts_with('/') {
                    return Err(cfg.error(&o.key, format!("expected an absolute path, got {s:?}")));
                }
                v.paths.insert(o.key.clone(), s);
            }
            OptKind::Process { map } => {
                let f = crate::process::ProcessFilter::from_config(cfg, &o.key)?;
                if let Some((off, size)) = rodata(&o.global) {
                    v.globals.push((off, size, f.is_some() as u64));
                }
                match f {
                    Some(f) => v.process = Some((f, map.clone())),
                    None => v.disabled_maps.push(map.clone()),
                }
            }
            OptKind::Ports { map } => {
                let ports = cfg.get_ports(&o.key)?;
                if let Some((off, size)) = rodata(&o.global) {
                    v.globals.push((off, size, !ports.is_empty() as u64));
                }
                if ports.is_empty() {
                    v.disabled_maps.push(map.clone());
                } else {
                    v.ports.push((map.clone(), ports));
                }
            }
        }
    }
    v.queue_memory = DEFAULT_QUEUE_MEMORY;
    if p.maps.iter().any(|m| {
        matches!(
            m.plan,
            Plan::Events {
                records: Some(_),
                ..
            }
        )
    }) {
        if let Some(s) = cfg.get("queue_memory") {
            v.queue_memory = parse_size(s)
                .filter(|n| (MIN_QUEUE_MEMORY..=MAX_QUEUE_MEMORY).contains(n))
                .ok_or_else(|| cfg.error("queue_memory", format!("expected a size from 64K to 4G (bytes, or with a K, M or G suffix), got {s:?}")))?;
        }
    }
    if p.maps.iter().any(|m| matches!(m.plan, Plan::Events { .. })) {
        if let Some(n) = cfg.get("process_count") {
            v.slots_override = Some(
                n.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| {
                        cfg.error(
                            "process_count",
                            format!("expected a whole number from 1 to 100000, got {n:?}"),
                        )
                    })?,
            );
        }
    }
    Ok(Box::new(SpecModule::new(p, v, cfg.process_refresh)))
}

/// Default memory bound of an event-record queue: a burst of 20,000 records of up to ~1.6 KB
/// each waits whole for a client that fetches once after it.
pub const DEFAULT_QUEUE_MEMORY: usize = 32 << 20;
const MIN_QUEUE_MEMORY: usize = 64 << 10;
const MAX_QUEUE_MEMORY: usize = 4 << 30;

/// A size in bytes: a number with an optional K, M or G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, shift) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 10),
        (i, 'm' | 'M') => (&s[..i], 20),
        (i, 'g' | 'G') => (&s[..i], 30),
        _ => (s, 0),
    };
    num.trim().parse::<usize>().ok()?.checked_mul(1 << shift)
}

/// A running spec module.
pub struct SpecModule {
    program: &'static Program,
    opts: OptionValues,
    process_refresh: u64,
    /// The metric table served: the spec's, less the metrics of disabled maps.
    metrics: Vec<crate::module::MetricSpec>,
    indoms: Vec<IndomSpec>,
    loaded: Option<load::Loaded>,
    serve: serve::Served,
}

impl SpecModule {
    fn new(program: &'static Program, opts: OptionValues, process_refresh: u64) -> Self {
        let off: Vec<u32> = program
            .spec
            .maps
            .iter()
            .filter(|m| opts.disabled_maps.contains(&m.name))
            .flat_map(|m| m.metrics().into_iter().map(|d| d.item))
            .collect();
        let metrics: Vec<_> = program
            .metrics
            .iter()
            .filter(|m| !off.contains(&m.item))
            .cloned()
            .collect();
        let used: Vec<u32> = metrics.iter().filter_map(|m| m.indom).collect();
        let indoms = program
            .indoms
            .iter()
            .filter(|i| used.contains(&i.id))
            .cloned()
            .collect();
        SpecModule {
            serve: serve::Served::new(program, &opts),
            program,
            opts,
            process_refresh,
            metrics,
            indoms,
            loaded: None,
        }
    }
}

impl Module for SpecModule {
    fn start(&mut self) -> Result<String, ModuleError> {
        let loaded = load::load(self.program, &self.opts)?;
        let mut status = loaded.status.clone();
        self.serve.start(&loaded)?;
        for (name, ports) in &self.opts.ports {
            let map = loaded
                .map(name)
                .ok_or_else(|| ModuleError::Other(format!("no map {name}")))?;
            for p in ports {
                libbpf_rs::MapCore::update(
                    &map,
                    &p.to_ne_bytes(),
                    &[1u8],
                    libbpf_rs::MapFlags::ANY,
                )
                .map_err(|e| {
                    ModuleError::Other(format!("ports map {name}: cannot add {p}: {e}"))
                })?;
            }
        }
        if let Some((f, _)) = &mut self.opts.process {
            let n = self.serve.sync_process(&loaded, f);
            if n == 0 && self.process_refresh == 0 {
                return Err(ModuleError::Other(
                    "process filter: no process to attach found (and process_refresh is 0)".into(),
                ));
            }
            status.push_str(&format!("; process filter: {n} processes"));
        }
        self.loaded = Some(loaded);
        log::debug!(target: &crate::module::log_target(&self.program.spec.name), "{}: started: {status}", self.program.spec.name);
        Ok(status)
    }

    fn refresh(&mut self, inst: &mut ModuleInstances) -> Result<(), ModuleError> {
        let r = match &self.loaded {
            Some(l) => self.serve.refresh(l, inst),
            None => Ok(()),
        };
        if log::log_enabled!(target: &crate::module::log_target(&self.program.spec.name), log::Level::Debug)
        {
            let name = &self.program.spec.name;
            log::debug!(target: &crate::module::log_target(name), "{name}: refreshed ({})", match &r { Ok(()) => "ok".to_string(), Err(e) => e.to_string() });
        }
        r
    }

    fn fetch(&self, item: u32, inst: Option<u32>) -> Result<Option<Value>, PmdaError> {
        let m = self
            .metrics
            .iter()
            .find(|m| m.item == item)
            .ok_or(PmdaError::UnknownMetric)?;
        self.serve.fetch(item, m.ty, inst)
    }

    fn fetch_for(
        &self,
        item: u32,
        inst: Option<u32>,
        who: &crate::module::FetchClient,
    ) -> Result<Option<Value>, PmdaError> {
        match self.serve.fetch_records(item, who) {
            Some(v) => v,
            None => self.fetch(item, inst),
        }
    }

    fn tick(&mut self, _inst: &mut ModuleInstances) {
        if let (Some((f, _)), Some(l)) = (&mut self.opts.process, &self.loaded) {
            if f.due() {
                let n = self.serve.sync_process(l, f);
                let name = &self.program.spec.name;
                log::debug!(target: &crate::module::log_target(name), "{name}: process filter re-scan: {n} processes");
            }
        }
    }

    fn indom_labels(&self, local: u32) -> Option<String> {
        self.serve.indom_labels(local)
    }

    fn instance_labels(&self, local: u32, inst: u32) -> Option<String> {
        self.serve.instance_labels(local, inst)
    }

    fn bpf_objects(&self) -> (Vec<crate::module::ProgInfo>, Vec<crate::module::MapInfo>) {
        self.loaded
            .as_ref()
            .map(load::Loaded::objects)
            .unwrap_or_default()
    }

    fn layout(&self) -> Option<(&[crate::module::MetricSpec], &[IndomSpec])> {
        Some((&self.metrics, &self.indoms))
    }
}

impl Drop for SpecModule {
    fn drop(&mut self) {
        // Consumer threads go before the object (and its ring buffers).
        self.serve.stop();
    }
}

#[cfg(test)]
mod tests;
