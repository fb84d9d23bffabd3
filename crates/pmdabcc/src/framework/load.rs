//! The BPF builder: open the object, set its read-only globals, size its maps, choose among
//! hook twins, leave out programs whose hooks the kernel lacks (optional ones) or whose
//! option is off, load, attach. Each stage fails with a typed error naming the program.

use super::{OptionValues, Program};
use crate::bpf::Sample;
use crate::module::{MapInfo, ModuleError, ProgInfo};
use libbpf_rs::{Link, MapCore, Object, ObjectBuilder, OpenObject};
use std::collections::BTreeMap;

/// Hook kinds of twin programs, in order of preference, by name suffix.
pub const TWINS: &[(&str, &str)] = &[
    ("_btf", "tp_btf"),
    ("_raw", "raw_tp"),
    ("_tp", "tracepoint"),
];

/// A loaded and attached object.
pub struct Loaded {
    // Links first: they detach before the object closes.
    links: Vec<Link>,
    pub object: Object,
    pub status: String,
}

impl Loaded {
    pub fn objects(&self) -> (Vec<ProgInfo>, Vec<MapInfo>) {
        crate::bpf::object_infos(&self.object)
    }

    pub fn map(&self, name: &str) -> Option<libbpf_rs::Map<'_>> {
        self.object.maps().find(|m| m.name() == name)
    }

    pub fn links(&self) -> usize {
        self.links.len()
    }
}

/// A program of the object as the builder sees it.
#[derive(Clone, Debug)]
struct Prog {
    name: String,
    section: String,
    /// `(base, twin index)` for `<base>_btf/_raw/_tp`.
    twin: Option<(String, usize)>,
}

/// The base name of a twin program (`<base>_btf` → `<base>`).
pub fn twin_base(name: &str) -> Option<&str> {
    TWINS
        .iter()
        .find_map(|(suffix, _)| name.strip_suffix(suffix))
}

fn twin_of(name: &str) -> Option<(String, usize)> {
    TWINS
        .iter()
        .enumerate()
        .find_map(|(i, (suffix, _))| name.strip_suffix(suffix).map(|b| (b.to_string(), i)))
}

/// The kernel's hook for a program section, when the kernel can be asked: `Some(false)` when
/// it is certainly missing.
fn hook_present(section: &str) -> Option<bool> {
    let (kind, rest) = section.split_once('/')?;
    match kind {
        "tracepoint" | "tp" => {
            let (cat, name) = rest.split_once('/')?;
            Some(crate::bpf::kernel_has_tracepoint(cat, name))
        }
        "tp_btf" | "raw_tp" | "raw_tracepoint" => crate::bpf::kernel_has_btf_tracepoint(rest),
        _ => None,
    }
}

fn open(p: &Program) -> Result<OpenObject, ModuleError> {
    ObjectBuilder::default()
        .name(&p.spec.name)
        .map_err(ModuleError::bpf("open"))?
        .open_memory(&p.object)
        .map_err(ModuleError::bpf("open"))
}

/// Loads and attaches `p` with its options, trying twin sets in order.
pub fn load(p: &Program, opts: &OptionValues) -> Result<Loaded, ModuleError> {
    let probe = open(p)?;
    let progs: Vec<Prog> = probe
        .progs()
        .map(|o| {
            let name = o.name().to_string_lossy().into_owned();
            Prog {
                twin: twin_of(&name),
                section: o.section().to_string_lossy().into_owned(),
                name,
            }
        })
        .collect();
    drop(probe);
    let spec_of = |name: &str| {
        let base = twin_of(name).map(|t| t.0);
        p.spec
            .programs
            .iter()
            .find(|s| s.name == name || Some(&s.name) == base.as_ref())
    };
    for s in &p.spec.programs {
        if !progs
            .iter()
            .any(|g| g.name == s.name || g.twin.as_ref().is_some_and(|t| t.0 == s.name))
        {
            return Err(ModuleError::Other(format!(
                "{}: [[program]] {:?}: the object has no such program",
                p.spec.file.display(),
                s.name
            )));
        }
    }
    // Which programs are wanted at all (option), and which hooks are certainly missing.
    let mut notes = Vec::new();
    let mut want: BTreeMap<String, bool> = BTreeMap::new();
    for g in &progs {
        let s = spec_of(&g.name);
        let on = s
            .and_then(|s| s.enabled_by.as_ref())
            .is_none_or(|k| opts.flags.get(k).copied().unwrap_or(false));
        let present = hook_present(&g.section) != Some(false);
        if on && !present && g.twin.is_none() {
            if s.is_some_and(|s| s.optional) {
                notes.push(format!(
                    "{} left out: {} is missing on this kernel",
                    g.name, g.section
                ));
            } else {
                return Err(ModuleError::NoHook(format!(
                    "program {}: {} is missing on this kernel",
                    g.name, g.section
                )));
            }
        }
        want.insert(g.name.clone(), on && present);
    }
    // Twin groups: for each base, the kinds present in the object whose hooks exist.
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for g in &progs {
        if let Some((base, i)) = &g.twin {
            if want.get(&g.name).copied().unwrap_or(false) {
                groups.entry(base.clone()).or_default().push(*i);
            } else {
                groups.entry(base.clone()).or_default();
            }
        }
    }
    // `pmdabcc --probe --all-hooks`: one hook kind forced on every twin group.
    let offered: Vec<&str> = progs
        .iter()
        .filter_map(|g| g.twin.as_ref().map(|t| TWINS[t.1].1))
        .collect();
    if let Some(kind) = crate::bpf::forced_twin(&offered) {
        for kinds in groups.values_mut() {
            kinds.retain(|i| TWINS[*i].1 == kind);
        }
    }
    for (base, kinds) in groups.iter_mut() {
        kinds.sort_unstable();
        let all_off = progs
            .iter()
            .filter(|g| g.twin.as_ref().is_some_and(|t| &t.0 == base))
            .all(|g| {
                spec_of(&g.name)
                    .and_then(|s| s.enabled_by.as_ref())
                    .is_some_and(|k| !opts.flags.get(k).copied().unwrap_or(false))
            });
        if kinds.is_empty() && !all_off {
            let optional = spec_of(&format!("{base}_btf")).is_some_and(|s| s.optional);
            if optional {
                notes.push(format!("{base} left out: no hook on this kernel"));
            } else {
                return Err(ModuleError::NoHook(format!(
                    "{base}: none of its hooks exists on this kernel"
                )));
            }
        }
    }
    let attempts = groups.values().map(Vec::len).max().unwrap_or(1).max(1);
    let mut failed = Vec::new();
    for a in 0..attempts {
        // Attempt a: each twin group uses its a-th available kind (its last when it has fewer).
        let choice: BTreeMap<&String, usize> = groups
            .iter()
            .filter(|(_, k)| !k.is_empty())
            .map(|(b, k)| (b, k[a.min(k.len() - 1)]))
            .collect();
        let chosen_kind = choice.values().next().map(|i| TWINS[*i].1);
        let (res, said) = crate::bpf::capture_libbpf(|| try_load(p, opts, &progs, &want, &choice));
        let res = res.map_err(|e| match e {
            ModuleError::Bpf { stage, source } if !said.is_empty() => ModuleError::Other(format!(
                "BPF {stage} failed: {source}: {}",
                crate::bpf::load_failure_summary(&said)
            )),
            e => e,
        });
        match res {
            Ok((object, links, attach_notes)) => {
                let mut kinds: Vec<&str> = choice.values().map(|i| TWINS[*i].1).collect();
                kinds.sort_unstable();
                kinds.dedup();
                if let [k] = kinds[..] {
                    crate::bpf::note_twin_choice(k);
                }
                let hooks: Vec<String> = progs
                    .iter()
                    .filter(|g| {
                        object
                            .progs()
                            .any(|o| o.name().to_string_lossy() == g.name && o.autoload())
                    })
                    .map(|g| {
                        g.section
                            .split_once('/')
                            .map_or(g.section.clone(), |(_, r)| {
                                r.rsplit('/').next().unwrap_or(r).to_string()
                            })
                    })
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let mut status = hooks.join(", ");
                if !kinds.is_empty() {
                    status.push_str(&format!(" via {}", kinds.join("+")));
                }
                notes.extend(attach_notes);
                if !failed.is_empty() {
                    notes.push(format!("passed over: {}", failed.join("; ")));
                }
                if !notes.is_empty() {
                    status.push_str(&format!(" ({})", notes.join("; ")));
                }
                return Ok(Loaded {
                    links,
                    object,
                    status,
                });
            }
            Err(e) => {
                log::info!(
                    "module {}: {} not usable: {e}",
                    p.spec.name,
                    chosen_kind.unwrap_or("object")
                );
                failed.push(format!("{}: {e}", chosen_kind.unwrap_or("load")));
                if attempts == 1 {
                    return Err(e);
                }
            }
        }
    }
    Err(ModuleError::NoHook(failed.join("; ")))
}

fn try_load(
    p: &Program,
    opts: &OptionValues,
    progs: &[Prog],
    want: &BTreeMap<String, bool>,
    choice: &BTreeMap<&String, usize>,
) -> Result<(Object, Vec<Link>, Vec<String>), ModuleError> {
    let mut open = open(p)?;
    for mut o in open.progs_mut() {
        let name = o.name().to_string_lossy().into_owned();
        let g = progs.iter().find(|g| g.name == name);
        let on = want.get(&name).copied().unwrap_or(false)
            && g.and_then(|g| g.twin.as_ref())
                .is_none_or(|(b, i)| choice.get(b) == Some(i));
        o.set_autoload(on);
    }
    let mut small: Vec<&str> = opts.disabled_maps.iter().map(String::as_str).collect();
    small.sort_unstable();
    for mut m in open.maps_mut() {
        let name = m.name().to_string_lossy().into_owned();
        if name.ends_with(".rodata") && !opts.globals.is_empty() {
            let data = m
                .initial_value_mut()
                .ok_or_else(|| ModuleError::Other("no .rodata data".into()))?;
            for (off, size, v) in &opts.globals {
                let bytes = v.to_ne_bytes();
                let src = if cfg!(target_endian = "little") {
                    &bytes[..*size]
                } else {
                    &bytes[8 - size..]
                };
                data.get_mut(*off..off + size)
                    .ok_or_else(|| ModuleError::Other(format!("global at {off} outside .rodata")))?
                    .copy_from_slice(src);
            }
        }
        if small.binary_search(&name.as_str()).is_ok() {
            // Unused: hash maps are preallocated, so keep it at one entry.
            m.set_max_entries(1).map_err(ModuleError::bpf("resize"))?;
        }
    }
    let object = open.load().map_err(ModuleError::bpf("load"))?;
    let mut links = Vec::new();
    let mut notes = Vec::new();
    for prog in object.progs_mut().filter(|o| o.autoload()) {
        let name = prog.name().to_string_lossy().into_owned();
        let s = p
            .spec
            .programs
            .iter()
            .find(|s| s.name == name || twin_of(&name).is_some_and(|t| t.0 == s.name));
        let res = match s {
            Some(s) if s.perf_event.is_some() => attach_perf(
                &prog,
                s.perf_event.as_deref().unwrap_or(""),
                s.period
                    .map_or(Sample::Frequency(s.frequency), Sample::Period),
            )
            .map(|mut l| {
                let n = l.len();
                links.append(&mut l);
                n
            }),
            Some(s) if s.binary.is_some() || s.binary_option.is_some() => {
                let retprobe = prog.section().to_string_lossy().starts_with("uretprobe");
                let binary = s
                    .binary_option
                    .as_ref()
                    .and_then(|k| opts.paths.get(k))
                    .or(s.binary.as_ref());
                prog.attach_uprobe_with_opts(
                    -1,
                    binary.map_or("", String::as_str),
                    0,
                    libbpf_rs::UprobeOpts {
                        retprobe,
                        func_name: s.symbol.clone(),
                        ..Default::default()
                    },
                )
                .map(|l| {
                    links.push(l);
                    1
                })
                .map_err(ModuleError::bpf("attach"))
            }
            _ => prog
                .attach()
                .map(|l| {
                    links.push(l);
                    1
                })
                .map_err(ModuleError::bpf("attach")),
        };
        if let Err(e) = res {
            if s.is_some_and(|s| s.optional) {
                notes.push(format!("{name} not attached: {e}"));
                continue;
            }
            return Err(ModuleError::Other(format!("program {name}: {e}")));
        }
    }
    Ok((object, links, notes))
}

/// Attaches a perf_event program to a software clock on every online CPU.
fn attach_perf(
    prog: &libbpf_rs::ProgramMut,
    event: &str,
    sample: Sample,
) -> Result<Vec<Link>, ModuleError> {
    let config = match event {
        "task-clock" => libbpf_rs::libbpf_sys::PERF_COUNT_SW_TASK_CLOCK,
        _ => libbpf_rs::libbpf_sys::PERF_COUNT_SW_CPU_CLOCK,
    };
    let ncpu = libbpf_rs::num_possible_cpus().map_err(ModuleError::bpf("cpus"))?;
    let mut links = Vec::new();
    for cpu in 0..ncpu {
        let Ok(fd) = crate::bpf::perf_event_open_sw(config as u64, sample, cpu as i32) else {
            continue; // an offline CPU
        };
        // The link owns the event's fd from here on (libbpf closes it on detach).
        let l = prog
            .attach_perf_event(std::os::fd::IntoRawFd::into_raw_fd(fd))
            .map_err(ModuleError::bpf("attach perf event"))?;
        links.push(l);
    }
    if links.is_empty() {
        return Err(ModuleError::Other("no CPU accepted the perf event".into()));
    }
    Ok(links)
}
