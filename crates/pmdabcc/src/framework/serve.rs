//! Serving a spec module's maps: each refresh reads every map once (batched for hash maps,
//! every CPU's copy for per-CPU maps) into a table of values; fetches read that table.

use super::events::{Recent, Stream};
use super::layout::FieldKind;
use super::load::Loaded;
use super::{decode, KeyPlan, Loc, MapPlan, MetricPlan, OptionValues, Plan, Program};
use crate::module::{FetchClient, ModuleError, ModuleInstances};
use crate::modules::histogram;
use libbpf_rs::{MapCore, MapFlags};
use pcp_pmda::{EventQueue, EventRecord, Events, PmdaError, Pmid, Type, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// A table keyed by two small integers, with a multiply-xor hash: the std SipHash is built to
/// resist hostile keys, which item and instance numbers are not, and costs more per fetch.
type Table<V> = HashMap<(u32, u32), V, std::hash::BuildHasherDefault<PairHasher>>;

#[derive(Default)]
struct PairHasher(u64);

impl std::hash::Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Instance key of singular metrics in the value table.
const SINGULAR: u32 = u32::MAX;

/// A number summed over CPUs, or text.
#[derive(Clone, Debug)]
enum Raw {
    Int(i128),
    Text(String),
}

impl Raw {
    fn value(&self, ty: Type) -> Value {
        match (self, ty) {
            (Raw::Int(n), Type::U64) => Value::U64(*n as u64),
            (Raw::Int(n), Type::U32) => Value::U32(*n as u32),
            (Raw::Int(n), Type::I64) => Value::I64(*n as i64),
            (Raw::Int(n), Type::I32) => Value::I32(*n as i32),
            (Raw::Int(n), _) => Value::String(n.to_string()),
            (Raw::Text(s), _) => Value::String(s.clone()),
        }
    }
}

struct MapState {
    plan: &'static MapPlan,
    /// Buckets served per key ("" unkeyed): only grows, so an instance keeps its meaning.
    served: HashMap<String, usize>,
    recent: Option<Arc<Mutex<Recent>>>,
    /// The event-record queue, when the map has a `records` metric.
    queue: Option<Arc<EventQueue>>,
    /// Match options on this map's records: (the field's metric, expression).
    filters: Vec<(MetricPlan, regex_lite::Regex)>,
    stream: Option<Stream>,
    slots: usize,
    /// A keyed map's entries of the last refresh.
    rows: Rows,
}

/// A keyed map's entries as read (each value with every CPU's copy): a fetch reads the
/// metric it asks for from its instance's entry, so a refresh costs one index entry per key,
/// not one table entry per metric and key.
#[derive(Default)]
struct Rows {
    keys: Vec<u8>,
    /// The keys of the refresh before, whose instances the indom has.
    prev_keys: Vec<u8>,
    vals: Vec<u8>,
    key_size: usize,
    value_size: usize,
    /// instance id → entry number
    index: HashMap<u32, usize, std::hash::BuildHasherDefault<PairHasher>>,
}

impl Rows {
    fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.chunks(self.key_size.max(1))
    }

    fn value(&self, id: u32) -> Option<&[u8]> {
        let i = *self.index.get(&id)?;
        self.vals
            .get(i * self.value_size..(i + 1) * self.value_size)
    }
}

pub struct Served {
    maps: Vec<MapState>,
    /// Items of keyed maps' metrics → (map, metric): read from the map's rows at fetch.
    keyed_items: HashMap<u32, (usize, usize), std::hash::BuildHasherDefault<PairHasher>>,
    /// (item, instance) → value, rebuilt each refresh in the same allocation.
    values: Table<Raw>,
    /// Instance labels by (local indom, instance id).
    /// (indom, instance) → labels: fixed for an instance id, so made once.
    labels: Table<String>,
    hist_indoms: BTreeSet<u32>,
    /// Keys now in the process filter map.
    targets: BTreeSet<u32>,
    process_map_name: Option<String>,
    ncpu: usize,
    /// Items of sensitive metrics: left out of event records for clients not allowed them.
    sensitive: BTreeSet<u32>,
    queue_memory: usize,
    module: &'static str,
}

fn int_of(loc: &Loc, b: &[u8]) -> i128 {
    let bytes = loc.bytes(b);
    match loc.kind {
        FieldKind::Int { signed: true } => decode::int(bytes) as i128,
        _ => decode::uint(bytes) as i128,
    }
}

/// A metric's value from a value's copies (one per CPU): integers summed, text of the first.
fn read_metric<'a>(m: &MetricPlan, copies: impl IntoIterator<Item = &'a [u8]>) -> Raw {
    let mut copies = copies.into_iter();
    match (&m.decoder, &m.loc.kind) {
        (
            None | Some(decode::Decoder::Uint) | Some(decode::Decoder::Int),
            FieldKind::Int { .. },
        ) => Raw::Int(copies.map(|c| int_of(&m.loc, c)).sum()),
        (Some(d), _) => Raw::Text(d.decode(m.loc.bytes(copies.next().unwrap_or(&[])))),
        (None, _) => Raw::Text(decode::text(m.loc.bytes(copies.next().unwrap_or(&[])))),
    }
}

fn key_name(key: &[KeyPlan], k: &[u8]) -> String {
    let mut name = String::new();
    for (i, p) in key.iter().enumerate() {
        if i > 0 {
            name.push_str(&p.join);
        }
        name.push_str(&key_part(p, k));
    }
    name
}

/// One part of a key, decoded; a process key with a start time through the name cache.
fn key_part(p: &KeyPlan, k: &[u8]) -> String {
    match &p.start {
        Some(s) => p
            .decoder
            .decode_process(p.loc.bytes(k), decode::uint(s.bytes(k))),
        None => p.decoder.decode(p.loc.bytes(k)),
    }
}

fn key_labels(key: &[KeyPlan], k: &[u8]) -> String {
    key.iter()
        .map(|p| {
            let v = key_part(p, k).replace(['"', '\\'], "_");
            format!("\"{}\":\"{v}\"", p.label)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The instance id of a key: its `instance_id` field, when PCP can take it (0..=i32::MAX).
fn id_of(loc: &Loc, k: &[u8]) -> Option<u32> {
    u32::try_from(int_of(loc, k))
        .ok()
        .filter(|id| *id <= i32::MAX as u32)
}

/// Members of a keyed map's fixed indom: (the key's id field, the decoded key), one per id
/// (the first key wins: the field is meant to identify the entry alone).
pub(super) fn fixed_members<'a>(
    key: &[KeyPlan],
    id: &Loc,
    keys: impl Iterator<Item = &'a [u8]>,
) -> Vec<(u32, String)> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<(u32, String)> = keys
        .filter_map(|k| {
            id_of(id, k)
                .filter(|i| seen.insert(*i))
                .map(|i| (i, key_name(key, k)))
        })
        .collect();
    out.sort();
    out
}

/// Bounds of bucket `i`: log2 as the original pmdabcc named them, or linear of `width`.
fn bounds(linear: Option<u64>, i: usize) -> (u64, u64) {
    match linear {
        None => histogram::bounds(i),
        Some(w) if i + 1 == histogram::SLOTS => (i as u64 * w, u64::MAX),
        Some(w) => (i as u64 * w, (i as u64 + 1) * w - 1),
    }
}

impl Served {
    pub fn new(p: &'static Program, opts: &OptionValues) -> Served {
        let maps = p
            .maps
            .iter()
            .filter(|m| !opts.disabled_maps.contains(&m.name))
            .map(|plan| MapState {
                plan,
                served: HashMap::new(),
                recent: None,
                queue: None,
                filters: match &plan.plan {
                    Plan::Events { metrics, .. } => opts
                        .matches
                        .iter()
                        .filter(|(map, _, _)| *map == plan.name)
                        .filter_map(|(_, item, re)| {
                            Some((
                                metrics.iter().find(|m| m.item == *item)?.clone(),
                                re.clone(),
                            ))
                        })
                        .collect(),
                    _ => Vec::new(),
                },
                stream: None,
                slots: match plan.plan {
                    Plan::Events { slots, .. } => opts.slots_override.unwrap_or(slots),
                    _ => 0,
                },
                rows: Rows::default(),
            })
            .collect::<Vec<_>>();
        let keyed_items = maps
            .iter()
            .enumerate()
            .flat_map(|(mi, m)| match &m.plan.plan {
                Plan::Keyed { metrics, .. } => metrics
                    .iter()
                    .enumerate()
                    .map(|(pi, mp)| (mp.item, (mi, pi)))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let hist_indoms = p
            .maps
            .iter()
            .filter_map(|m| match m.plan {
                Plan::Histogram { indom, .. } => Some(indom),
                _ => None,
            })
            .collect();
        Served {
            maps,
            keyed_items,
            values: Table::default(),
            labels: Table::default(),
            hist_indoms,
            targets: BTreeSet::new(),
            process_map_name: opts.process.as_ref().map(|(_, m)| m.clone()),
            ncpu: libbpf_rs::num_possible_cpus().unwrap_or(1),
            sensitive: p
                .metrics
                .iter()
                .filter(|m| m.sensitive)
                .map(|m| m.item)
                .collect(),
            queue_memory: opts.queue_memory,
            module: p.spec.name.as_str(),
        }
    }

    /// Starts the event streams of a loaded object.
    pub fn start(&mut self, l: &Loaded) -> Result<(), ModuleError> {
        for m in &mut self.maps {
            if let Plan::Events { records, .. } = m.plan.plan {
                let map = l
                    .map(&m.plan.name)
                    .ok_or_else(|| ModuleError::Other(format!("map {} not loaded", m.plan.name)))?;
                let recent = Recent::new(m.slots);
                let sink = recent.clone();
                let queue = records.map(|_| {
                    EventQueue::new(
                        &format!("{}.{}", self.module, m.plan.name),
                        self.queue_memory,
                    )
                });
                let qsink = queue.clone();
                let filters = m.filters.clone();
                m.stream = Some(Stream::start(&map, &m.plan.name, move |r| {
                    let shown = |mp: &MetricPlan| match read_metric(mp, [r]) {
                        Raw::Int(n) => n.to_string(),
                        Raw::Text(s) => s,
                    };
                    if !filters.iter().all(|(mp, re)| re.is_match(&shown(mp))) {
                        return;
                    }
                    if let Some(q) = &qsink {
                        q.append(r);
                    }
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(r)
                })?);
                m.recent = Some(recent);
                m.queue = queue;
            }
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        for m in &mut self.maps {
            if let Some(s) = &mut m.stream {
                s.stop();
            }
        }
    }

    /// Every CPU's copy of a value (one for maps that are not per-CPU).
    fn copies<'b>(&self, plan: &MapPlan, v: &'b [u8]) -> Vec<&'b [u8]> {
        self.each_copy(plan, v).collect()
    }

    fn each_copy<'b>(&self, plan: &MapPlan, v: &'b [u8]) -> impl Iterator<Item = &'b [u8]> {
        let (stride, n) = if plan.percpu {
            (plan.value_size.div_ceil(8) * 8, self.ncpu)
        } else {
            (v.len().max(1), 1)
        };
        v.chunks(stride).take(n)
    }

    pub fn refresh(&mut self, l: &Loaded, inst: &mut ModuleInstances) -> Result<(), ModuleError> {
        let mut values = std::mem::take(&mut self.values);
        values.clear();
        let mut labels = std::mem::take(&mut self.labels);
        let mut maps = std::mem::take(&mut self.maps);
        let mut res = Ok(());
        for m in &mut maps {
            if let Err(e) = self.refresh_map(l, m, inst, &mut values, &mut labels) {
                res = Err(e);
            }
        }
        self.maps = maps;
        self.values = values;
        self.labels = labels;
        res
    }

    fn read_slot0(&self, l: &Loaded, plan: &MapPlan) -> Result<Vec<u8>, ModuleError> {
        let map = l
            .map(&plan.name)
            .ok_or_else(|| ModuleError::Other(format!("map {} not loaded", plan.name)))?;
        let key = 0u32.to_ne_bytes();
        if plan.percpu {
            let cpus = map
                .lookup_percpu(&key, MapFlags::ANY)
                .map_err(ModuleError::bpf("read"))?
                .unwrap_or_default();
            let stride = plan.value_size.div_ceil(8) * 8;
            let mut out = Vec::with_capacity(stride * cpus.len());
            for c in cpus {
                let mut c = c;
                c.resize(stride, 0);
                out.extend_from_slice(&c);
            }
            Ok(out)
        } else {
            Ok(map
                .lookup(&key, MapFlags::ANY)
                .map_err(ModuleError::bpf("read"))?
                .unwrap_or_default())
        }
    }

    fn refresh_map(
        &self,
        l: &Loaded,
        m: &mut MapState,
        inst: &mut ModuleInstances,
        values: &mut Table<Raw>,
        labels: &mut Table<String>,
    ) -> Result<(), ModuleError> {
        let plan = m.plan;
        match &plan.plan {
            Plan::Counters { metrics } => {
                let v = self.read_slot0(l, plan)?;
                let copies = self.copies(plan, &v);
                for mp in metrics {
                    values.insert((mp.item, SINGULAR), read_metric(mp, copies.iter().copied()));
                }
            }
            Plan::Keyed {
                indom,
                key,
                instance_id,
                ..
            } => {
                let map = l
                    .map(&plan.name)
                    .ok_or_else(|| ModuleError::Other("map not loaded".into()))?;
                // In the same allocations every refresh; values are read at fetch.
                let rows = &mut m.rows;
                std::mem::swap(&mut rows.keys, &mut rows.prev_keys);
                rows.keys.clear();
                rows.vals.clear();
                rows.index.clear();
                crate::bpf::for_each_entry(&map, |k, v| {
                    (rows.key_size, rows.value_size) = (k.len(), v.len());
                    rows.keys.extend_from_slice(k);
                    rows.vals.extend_from_slice(v);
                })
                .map_err(|e| ModuleError::Other(format!("read {}: {e}", plan.name)))?;
                match instance_id {
                    Some(loc) => {
                        // The same keys as before name the same instances, unless a name
                        // can change under a key.
                        if rows.keys != rows.prev_keys || !key.iter().all(KeyPlan::fixed_name) {
                            inst.set_fixed(*indom, &fixed_members(key, loc, rows.keys()));
                        }
                        let mut index = std::mem::take(&mut rows.index);
                        for (i, k) in rows.keys().enumerate() {
                            if let Some(id) = id_of(loc, k) {
                                index.entry(id).or_insert(i);
                            }
                        }
                        rows.index = index;
                    }
                    None => {
                        inst.hide_all(*indom);
                        let mut index = std::mem::take(&mut rows.index);
                        for (i, k) in rows.keys().enumerate() {
                            if let Ok(id) = inst.add(*indom, &key_name(key, k)) {
                                index.insert(id, i);
                            }
                        }
                        rows.index = index;
                    }
                }
            }
            Plan::Histogram {
                indom,
                key,
                key_indom,
                buckets,
                count,
                sum,
                sum_divisor,
                linear,
                items,
            } => {
                let FieldKind::Array { len, .. } = buckets.kind else {
                    return Ok(());
                };
                let len = len.min(histogram::SLOTS);
                // (key name, key labels, summed buckets, count, sum)
                let mut hists: Vec<(String, String, Vec<u64>, u64, u64)> = Vec::new();
                let mut add = |name: String, lab: String, copies: Vec<&[u8]>| {
                    let mut b = vec![0u64; len];
                    let (mut c, mut s) = (0u64, 0u64);
                    for cp in copies {
                        let arr = buckets.bytes(cp);
                        for (i, slot) in b.iter_mut().enumerate() {
                            *slot = slot.wrapping_add(decode::uint(
                                arr.get(i * 8..i * 8 + 8).unwrap_or(&[]),
                            ));
                        }
                        c = c.wrapping_add(count.as_ref().map_or(0, |l| int_of(l, cp) as u64));
                        s = s.wrapping_add(sum.as_ref().map_or(0, |l| int_of(l, cp) as u64));
                    }
                    hists.push((name, lab, b, c, s));
                };
                if key.is_empty() {
                    let v = self.read_slot0(l, plan)?;
                    add(String::new(), String::new(), self.copies(plan, &v));
                } else {
                    let map = l
                        .map(&plan.name)
                        .ok_or_else(|| ModuleError::Other("map not loaded".into()))?;
                    let mut rows = Vec::new();
                    crate::bpf::for_each_entry(&map, |k, v| {
                        rows.push((key_name(key, k), key_labels(key, k), v.to_vec()))
                    })
                    .map_err(|e| ModuleError::Other(format!("read {}: {e}", plan.name)))?;
                    for (n, lab, v) in rows {
                        add(n, lab, self.copies(plan, &v));
                    }
                }
                // Bucket 0 is served before the first event (the metric has an instance), but
                // not under a process filter: as the original, nothing until a matching
                // process ran.
                let first = usize::from(self.process_map_name.is_none());
                if key.is_empty() {
                    let (_, _, b, c, s) = hists.pop().unwrap_or_default();
                    let served = m.served.entry(String::new()).or_insert(first);
                    *served = if b.iter().any(|&v| v > 0) {
                        histogram::served(&b)
                    } else {
                        first
                    }
                    .max(*served)
                    .min(len);
                    let members: Vec<(u32, String)> = (0..*served)
                        .map(|i| {
                            let (lo, hi) = bounds(*linear, i);
                            labels.entry((*indom, i as u32)).or_insert_with(|| {
                                format!(r#"{{"lower_bound":{lo},"upper_bound":{hi}}}"#)
                            });
                            (i as u32, format!("{lo}-{hi}"))
                        })
                        .collect();
                    inst.set_fixed(*indom, &members);
                    for (i, v) in b.iter().enumerate().take(*served) {
                        values.insert((items.0, i as u32), Raw::Int(*v as i128));
                    }
                    if let Some(ci) = items.1 {
                        values.insert((ci, SINGULAR), Raw::Int(c as i128));
                    }
                    if let Some(si) = items.2 {
                        values.insert((si, SINGULAR), Raw::Int((s / sum_divisor) as i128));
                    }
                } else {
                    for (name, lab, b, c, s) in hists {
                        let served = m.served.entry(name.clone()).or_insert(first);
                        *served = if b.iter().any(|&v| v > 0) {
                            histogram::served(&b)
                        } else {
                            first
                        }
                        .max(*served)
                        .min(len);
                        for (i, v) in b.iter().enumerate().take(*served) {
                            let (lo, hi) = bounds(*linear, i);
                            let Ok(id) = inst.add(*indom, &format!("{name}::{lo}-{hi}")) else {
                                continue;
                            };
                            labels.entry((*indom, id)).or_insert_with(|| {
                                format!(r#"{{{lab},"lower_bound":{lo},"upper_bound":{hi}}}"#)
                            });
                            values.insert((items.0, id), Raw::Int(*v as i128));
                        }
                        if let Some(ki) = key_indom {
                            let Ok(id) = inst.add(*ki, &name) else {
                                continue;
                            };
                            labels
                                .entry((*ki, id))
                                .or_insert_with(|| format!("{{{lab}}}"));
                            if let Some(ci) = items.1 {
                                values.insert((ci, id), Raw::Int(c as i128));
                            }
                            if let Some(si) = items.2 {
                                values.insert((si, id), Raw::Int((s / sum_divisor) as i128));
                            }
                        }
                    }
                }
            }
            Plan::Events {
                indom,
                metrics,
                lost,
                ..
            } => {
                let Some(recent) = &m.recent else {
                    return Ok(());
                };
                let snapshot: Vec<Vec<u8>> = recent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .newest_first()
                    .cloned()
                    .collect();
                let members: Vec<(u32, String)> = (0..snapshot.len())
                    .map(|i| (i as u32, i.to_string()))
                    .collect();
                inst.set_fixed(*indom, &members);
                for (i, r) in snapshot.iter().enumerate() {
                    for mp in metrics {
                        values.insert((mp.item, i as u32), read_metric(mp, [r.as_slice()]));
                    }
                }
                if let Some((map, loc, item)) = lost {
                    let lp = MapPlan {
                        name: map.clone(),
                        percpu: l.map(map).is_some_and(|m| m.map_type().is_percpu()),
                        value_size: l.map(map).map_or(0, |m| m.value_size() as usize),
                        plan: Plan::Counters { metrics: vec![] },
                    };
                    let v = self.read_slot0(l, &lp)?;
                    let n: i128 = self.copies(&lp, &v).iter().map(|c| int_of(loc, c)).sum();
                    values.insert((*item, SINGULAR), Raw::Int(n));
                }
            }
        }
        Ok(())
    }

    pub fn fetch(
        &self,
        item: u32,
        ty: Type,
        inst: Option<u32>,
    ) -> Result<Option<Value>, PmdaError> {
        if let Some(&(mi, pi)) = self.keyed_items.get(&item) {
            let m = &self.maps[mi];
            let (Plan::Keyed { metrics, .. }, Some(inst)) = (&m.plan.plan, inst) else {
                return Ok(None);
            };
            let v = m.rows.value(inst).ok_or(PmdaError::UnknownInstance)?;
            return Ok(Some(
                read_metric(&metrics[pi], self.each_copy(m.plan, v)).value(ty),
            ));
        }
        match self.values.get(&(item, inst.unwrap_or(SINGULAR))) {
            Some(r) => Ok(Some(r.value(ty))),
            None if inst.is_some() => Err(PmdaError::UnknownInstance),
            None => Ok(None),
        }
    }

    /// The event records of `item` for a client, when `item` is an event-record metric:
    /// what came since the client's previous fetch, each record's fields as parameters
    /// (sensitive ones only for clients allowed them).
    pub fn fetch_records(
        &self,
        item: u32,
        who: &FetchClient,
    ) -> Option<Result<Option<Value>, PmdaError>> {
        let (m, metrics) = self.maps.iter().find_map(|m| match &m.plan.plan {
            Plan::Events {
                records: Some(i),
                metrics,
                ..
            } if *i == item => Some((m, metrics)),
            _ => None,
        })?;
        let Some(q) = &m.queue else {
            return Some(Err(PmdaError::Again));
        };
        let (raw, missed) = q.take(who.context);
        let params: Vec<&MetricPlan> = metrics
            .iter()
            .filter(|mp| who.sensitive || !self.sensitive.contains(&mp.item))
            .collect();
        let records = raw
            .iter()
            .map(|(time, r)| EventRecord {
                time: *time,
                params: params
                    .iter()
                    .map(|mp| {
                        (
                            Pmid::new(who.cluster, mp.item),
                            read_metric(mp, [&r[..]]).value(mp.ty),
                        )
                    })
                    .collect(),
            })
            .collect();
        Some(Ok(Some(Value::Events(Events { records, missed }))))
    }

    pub fn indom_labels(&self, local: u32) -> Option<String> {
        self.hist_indoms
            .contains(&local)
            .then(|| histogram::INDOM_LABELS.to_string())
    }

    pub fn instance_labels(&self, local: u32, inst: u32) -> Option<String> {
        self.labels.get(&(local, inst)).cloned()
    }

    /// Brings the process filter map in line with the processes the filter matches now
    /// (their process ids and thread ids: tp_btf programs see the one, tracepoints the
    /// other). Returns how many processes match.
    pub fn sync_process(&mut self, l: &Loaded, f: &mut crate::process::ProcessFilter) -> usize {
        let pids = f.scan();
        let mut want = BTreeSet::new();
        for pid in &pids {
            want.insert(*pid);
            if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                want.extend(
                    dir.flatten()
                        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()),
                );
            }
        }
        let Some(map) = self.process_map(l) else {
            return pids.len();
        };
        let one = {
            let mut v = vec![0u8; map.value_size() as usize];
            if let Some(b) = v.first_mut() {
                *b = 1;
            }
            v
        };
        for gone in self.targets.difference(&want) {
            let _ = map.delete(&gone.to_ne_bytes());
        }
        for new in want.difference(&self.targets) {
            if let Err(e) = map.update(&new.to_ne_bytes(), &one, MapFlags::ANY) {
                log::warn!("process filter: cannot add {new}: {e}");
            }
        }
        self.targets = want;
        pids.len()
    }

    fn process_map<'l>(&self, l: &'l Loaded) -> Option<libbpf_rs::Map<'l>> {
        let name = self.process_map_name.as_deref()?;
        l.map(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::layout::FieldKind;

    #[test]
    fn key_parts_are_joined_as_the_spec_says() {
        let part = |offset, size, decoder, join: &str| KeyPlan {
            loc: Loc {
                offset,
                size,
                kind: FieldKind::Int { signed: false },
            },
            decoder,
            label: String::new(),
            join: join.into(),
            start: None,
        };
        let addr = |offset| KeyPlan {
            loc: Loc {
                offset,
                size: 16,
                kind: FieldKind::Other,
            },
            ..part(0, 0, decode::Decoder::Inet, "::")
        };
        // "<saddr>:<lport>::<daddr>:<dport>", as the original tcpretrans named connections.
        let key = [
            addr(0),
            part(32, 2, decode::Decoder::Uint, ":"),
            addr(16),
            part(34, 2, decode::Decoder::Uint, ":"),
        ];
        let mut k = vec![0u8; 36];
        k[..16].copy_from_slice(
            &"::ffff:10.0.0.1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        k[16..32].copy_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        k[32..34].copy_from_slice(&8080u16.to_ne_bytes());
        k[34..36].copy_from_slice(&443u16.to_ne_bytes());
        assert_eq!(key_name(&key, &k), "10.0.0.1:8080::fd00::2:443");
    }
}
