//! BPF plumbing shared by the modules: libbpf's log into the PCP log, skeleton storage,
//! hook probing, and map reads (including the batched read that loops to the end).

use crate::module::ModuleError;
use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, OpenObject, PrintLevel};
use std::mem::MaybeUninit;

use std::os::fd::AsRawFd;

mod force;
pub use force::{force_hook, forced_twin, note_twin_choice, Forcing};
use force::{forced_among, note_choice};

thread_local! {
    /// libbpf's messages on this thread while [`capture_libbpf`] runs.
    static CAPTURE: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`, collecting what libbpf says meanwhile on this thread (libbpf calls its print
/// callback on the thread that called it), e.g. the verifier's log of a failed load.
pub fn capture_libbpf<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let outer = CAPTURE.with(|c| c.borrow_mut().replace(Vec::new()));
    let t = f();
    let lines = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    // Nested (`pmdabcc --probe` around a module's own capture): the enclosing one sees them too.
    if let Some(mut o) = outer {
        o.extend(lines.iter().cloned());
        CAPTURE.with(|c| *c.borrow_mut() = Some(o));
    }
    (t, lines)
}

/// The lines of a failed load worth showing a user: what failed, and the verifier's first
/// and last lines (its verdict is at the end).
pub fn load_failure_summary(lines: &[String]) -> String {
    let failed = lines
        .iter()
        .filter(|l| l.contains("failed") || l.contains("error"))
        .take(2);
    let log: Vec<&String> = lines
        .iter()
        .skip_while(|l| !l.contains("BEGIN PROG LOAD LOG"))
        .skip(1)
        .take_while(|l| !l.contains("END PROG LOAD LOG"))
        .collect();
    let mut out: Vec<String> = failed.map(|l| l.trim().to_string()).collect();
    if log.len() > 4 {
        out.extend(log[..2].iter().map(|l| l.trim().to_string()));
        out.push("...".into());
        out.extend(log[log.len() - 2..].iter().map(|l| l.trim().to_string()));
    } else {
        out.extend(log.iter().map(|l| l.trim().to_string()));
    }
    out.dedup();
    out.join(" | ")
}

/// Routes libbpf's messages into the agent's log (which is the PCP log file), and to a
/// running [`capture_libbpf`].
pub fn bridge_libbpf_log() {
    fn print(level: PrintLevel, msg: String) {
        let msg = msg.trim_end();
        CAPTURE.with(|c| {
            if let Some(v) = c.borrow_mut().as_mut() {
                v.extend(msg.lines().map(str::to_string));
            }
        });
        match level {
            PrintLevel::Warn => log::warn!("libbpf: {msg}"),
            PrintLevel::Info => log::info!("libbpf: {msg}"),
            PrintLevel::Debug => log::debug!("libbpf: {msg}"),
        }
    }
    libbpf_rs::set_print(Some((PrintLevel::Info, print)));
}

/// Storage for a skeleton's open object. A loaded skeleton borrows it for as long as the
/// module runs, which is normally the life of the process; the few hundred bytes are leaked
/// when a module is removed by a reconfiguration (the kernel objects are not: they go with
/// the skeleton).
pub fn storage() -> &'static mut MaybeUninit<OpenObject> {
    Box::leak(Box::new(MaybeUninit::uninit()))
}

/// A way of hooking an event into BPF, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// BTF-typed raw tracepoint (`tp_btf/…`): cheapest, typed arguments.
    TpBtf,
    /// Raw tracepoint (`raw_tp/…`).
    RawTp,
    /// Classic tracepoint (`tracepoint/<category>/<name>`), works everywhere with tracefs.
    Tracepoint,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::TpBtf => "tp_btf",
            Hook::RawTp => "raw_tp",
            Hook::Tracepoint => "tracepoint",
        }
    }
}

/// Tries `load` with each hook in turn and returns the first that loads and attaches,
/// with a status line naming the choice and why earlier ones were passed over.
/// Under `pmdabcc --probe --all-hooks` only the hook [`force_hook`] names is tried.
pub fn first_working<T>(
    hooks: &[Hook],
    mut load: impl FnMut(Hook) -> Result<T, ModuleError>,
) -> Result<(T, Hook, String), ModuleError> {
    let hooks = forced_among(hooks)?;
    let mut skipped = Vec::new();
    for h in hooks {
        match load(h) {
            Ok(t) => {
                note_choice(h);
                let mut status = h.as_str().to_string();
                if !skipped.is_empty() {
                    status.push_str(&format!(" (passed over: {})", skipped.join("; ")));
                }
                return Ok((t, h, status));
            }
            Err(e) => {
                log::info!("hook {} not usable: {e}", h.as_str());
                skipped.push(format!("{}: {e}", h.as_str()));
            }
        }
    }
    Err(ModuleError::NoHook(skipped.join("; ")))
}

/// Whether the kernel has a tracepoint, by its BTF type (`btf_trace_<name>`) or tracefs.
pub fn kernel_has_tracepoint(category: &str, name: &str) -> bool {
    let paths = [
        format!("/sys/kernel/tracing/events/{category}/{name}"),
        format!("/sys/kernel/debug/tracing/events/{category}/{name}"),
    ];
    paths.iter().any(|p| std::path::Path::new(p).exists())
}

/// Plain data shared with BPF: a `#[repr(C)]` type of integers and arrays of them, for which
/// every bit pattern is a valid value.
///
/// # Safety
/// Implement it only for such types (the skeleton's types generated from BTF), next to an
/// assertion of the type's size.
pub unsafe trait Pod: Copy + Default + 'static {}

// SAFETY: integers: every bit pattern is valid.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}

/// Declares a skeleton type [`Pod`] with its size pinned: the one reviewed place where a
/// module's BPF-shared type gets the marker (modules themselves contain no `unsafe`).
macro_rules! pod {
    ($t:ty, $size:expr) => {
        const _: () = assert!(std::mem::size_of::<$t>() == $size);
        // SAFETY: libbpf-cargo generates these types from the object's BTF as repr(C)
        // structs of integers and arrays of integers; every bit pattern is valid, and the
        // size assertion above fails the build if the BPF side changes shape.
        #[allow(unsafe_code)]
        unsafe impl $crate::bpf::Pod for $t {}
    };
}
pub(crate) use pod;

/// Includes the skeleton build.rs generates from a Rust module's `<name>.bpf.c` as `mod skel`
/// and brings its items (the skeleton builder, `types`) into scope.
macro_rules! skeleton {
    ($name:literal) => {
        #[allow(unsafe_code, clippy::undocumented_unsafe_blocks)] // generated by libbpf-cargo
        mod skel {
            include!(concat!(env!("OUT_DIR"), "/", $name, ".skel.rs"));
        }
        use skel::*;
    };
}
pub(crate) use skeleton;

/// Reads a value of a BPF-shared type from map bytes (default when too short).
pub fn from_bytes<T: Pod>(bytes: &[u8]) -> T {
    if bytes.len() < std::mem::size_of::<T>() {
        return T::default();
    }
    // SAFETY: T: Pod, so any bit pattern is a valid T; the length was checked above and
    // read_unaligned copes with any alignment.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

/// The bytes of a BPF-shared value (a map key to write or delete).
pub fn as_bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: T: Pod is plain data with no padding-dependent invariants; the slice covers
    // exactly the value and lives as long as the borrow.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// Whether the running kernel has a BTF tracepoint (`btf_trace_<name>`, what tp_btf and
/// raw_tp programs attach to); `None` without kernel BTF. The names are read once and kept
/// as one sorted text (1,600 names on 6.18: 40 KiB, not the 100 KiB of a set of strings).
pub fn kernel_has_btf_tracepoint(name: &str) -> Option<bool> {
    static NAMES: std::sync::OnceLock<Option<SortedNames>> = std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| {
            let btf = libbpf_rs::btf::Btf::from_vmlinux().ok()?;
            Some(SortedNames::new(
                btf.type_by_kind::<libbpf_rs::btf::types::Typedef>()
                    .filter_map(|t| {
                        t.name()?
                            .to_str()?
                            .strip_prefix("btf_trace_")
                            .map(str::to_string)
                    }),
            ))
        })
        .as_ref()
        .map(|s| s.contains(name))
}

/// A set of names in one buffer, searched by bisection.
struct SortedNames {
    text: String,
    starts: Vec<u32>,
}

impl SortedNames {
    fn new(names: impl Iterator<Item = String>) -> SortedNames {
        let mut v: Vec<String> = names.collect();
        v.sort_unstable();
        v.dedup();
        let mut text = String::with_capacity(v.iter().map(String::len).sum());
        let mut starts = Vec::with_capacity(v.len() + 1);
        for n in &v {
            starts.push(text.len() as u32);
            text.push_str(n);
        }
        starts.push(text.len() as u32);
        SortedNames { text, starts }
    }

    fn get(&self, i: usize) -> &str {
        &self.text[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    fn contains(&self, name: &str) -> bool {
        let n = self.starts.len() - 1;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid).cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

fn sysconf(name: libc::c_int, default: u64) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 {
        v as u64
    } else {
        default
    }
}

/// USER_HZ: the unit of /proc's clock-tick fields (asked once).
pub fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| sysconf(libc::_SC_CLK_TCK, 100))
}

pub fn page_size() -> u32 {
    sysconf(libc::_SC_PAGESIZE, 4096) as u32
}

/// How often a perf event samples.
#[derive(Clone, Copy, Debug)]
pub enum Sample {
    /// Samples per second.
    Frequency(u64),
    /// One sample every so many events (nanoseconds of a clock event).
    Period(u64),
}

/// Opens a software perf event (`PERF_COUNT_SW_*`) on `cpu`, for perf_event programs.
pub fn perf_event_open_sw(
    config: u64,
    sample: Sample,
    cpu: i32,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut attr = libbpf_sys::perf_event_attr {
        type_: libbpf_sys::PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32,
        config,
        ..Default::default()
    };
    match sample {
        Sample::Frequency(f) => {
            attr.__bindgen_anon_1.sample_freq = f;
            attr.set_freq(1);
        }
        Sample::Period(p) => attr.__bindgen_anon_1.sample_period = p,
    }
    // SAFETY: perf_event_open with a zero-initialised attr of the right size; pid -1 with a
    // cpu counts every task on that CPU; the fd returned is owned by the caller.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const _,
            -1,
            cpu,
            -1,
            libbpf_sys::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// The sum over CPUs of u64 slot `key` of a per-CPU array map.
pub fn percpu_sum_u64(map: &impl MapCore, key: u32) -> u64 {
    match map.lookup_percpu(&key.to_ne_bytes(), libbpf_rs::MapFlags::ANY) {
        Ok(Some(cpus)) => cpus.iter().map(|b| from_bytes::<u64>(b)).sum(),
        _ => 0,
    }
}

/// Reads every entry of a map with `BPF_MAP_LOOKUP_BATCH`, looping until the kernel says the
/// end was reached (ENOENT): on hash maps the kernel returns short batches at bucket
/// boundaries, which libbpf-rs's `lookup_batch` takes for the end. Calls `f(key, value)` per
/// entry. Falls back to per-key iteration where the map type has no batch support.
pub fn for_each_entry(
    map: &impl MapCore,
    mut f: impl FnMut(&[u8], &[u8]),
) -> Result<usize, std::io::Error> {
    const BATCH: u32 = 256;
    let ksz = map.key_size() as usize;
    // Per-CPU maps return every possible CPU's copy, each rounded up to 8 bytes.
    let vsz = if map.map_type().is_percpu() {
        (map.value_size() as usize).div_ceil(8) * 8 * libbpf_rs::num_possible_cpus().unwrap_or(1)
    } else {
        map.value_size() as usize
    };
    let fd = map.as_fd().as_raw_fd();
    let mut keys = vec![0u8; ksz * BATCH as usize];
    let mut vals = vec![0u8; vsz * BATCH as usize];
    // in/out batch tokens: big enough for any map's key (the kernel uses a key-sized token
    // for hash maps).
    let mut in_tok = vec![0u8; ksz.max(8)];
    let mut out_tok = vec![0u8; ksz.max(8)];
    let mut first = true;
    let mut total = 0usize;
    loop {
        let mut count: u32 = BATCH;
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: buffers sized for BATCH keys/values of this map; tokens are key-sized; count
        // says how many fit and is updated by the kernel to how many were written.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd,
                if first {
                    std::ptr::null_mut()
                } else {
                    in_tok.as_mut_ptr().cast()
                },
                out_tok.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                vals.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let errno = if ret < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        };
        if ret < 0 && errno != libc::ENOENT {
            if first
                && (errno == libc::EINVAL || errno == libc::ENOTSUP || errno == libc::EOPNOTSUPP)
            {
                return for_each_entry_slow(map, f);
            }
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        for i in 0..count as usize {
            f(&keys[i * ksz..(i + 1) * ksz], &vals[i * vsz..(i + 1) * vsz]);
        }
        total += count as usize;
        if ret < 0 {
            // ENOENT: the end (the entries returned with it, if any, were taken above).
            return Ok(total);
        }
        std::mem::swap(&mut in_tok, &mut out_tok);
        first = false;
    }
}

fn for_each_entry_slow(
    map: &impl MapCore,
    mut f: impl FnMut(&[u8], &[u8]),
) -> Result<usize, std::io::Error> {
    let mut n = 0;
    for k in map.keys() {
        if let Ok(Some(v)) = map.lookup(&k, libbpf_rs::MapFlags::ANY) {
            f(&k, &v);
            n += 1;
        }
    }
    Ok(n)
}

/// The programs of a loaded object that were loaded (autoload on), for the self-metrics.
pub fn loaded_programs(obj: &libbpf_rs::Object) -> Vec<crate::module::ProgInfo> {
    use std::os::fd::AsFd;
    obj.progs()
        .filter(|p| p.autoload())
        .map(|p| crate::module::ProgInfo {
            name: p.name().to_string_lossy().into_owned(),
            fd: p.as_fd().as_raw_fd(),
        })
        .collect()
}

/// Every loaded program and every map of an object, for the self-metrics.
pub fn object_infos(
    obj: &libbpf_rs::Object,
) -> (Vec<crate::module::ProgInfo>, Vec<crate::module::MapInfo>) {
    use std::os::fd::AsFd;
    let maps = obj
        .maps()
        .map(|m| crate::module::MapInfo {
            name: m.name().to_string_lossy().into_owned(),
            fd: m.as_fd().as_raw_fd(),
        })
        .collect();
    (loaded_programs(obj), maps)
}

/// Classic tracepoints are attached through tracefs (libbpf reads each event's id there).
/// Where it is not mounted (some minimal systems and containers), mount it, as perf and
/// bpftrace do; without it only the BTF-based hooks work.
pub fn ensure_tracefs() -> Result<&'static str, String> {
    const TRACEFS: &str = "/sys/kernel/tracing";
    if std::path::Path::new(TRACEFS).join("events").exists() {
        return Ok("mounted");
    }
    if std::path::Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok("mounted under debugfs");
    }
    // SAFETY: mount(2) with valid NUL-terminated strings and no data.
    let r = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(format!(
            "cannot mount tracefs on {TRACEFS}: {}; classic tracepoints will not attach",
            std::io::Error::last_os_error()
        ));
    }
    Ok("mounted by the agent")
}

#[cfg(test)]
mod tests {
    #[test]
    fn sorted_names_find_exactly_their_members() {
        let s = super::SortedNames::new(
            ["sched_switch", "block_rq_issue", "a", "sched_switch"]
                .iter()
                .map(|x| x.to_string()),
        );
        for n in ["a", "block_rq_issue", "sched_switch"] {
            assert!(s.contains(n), "{n}");
        }
        for n in ["", "b", "sched", "sched_switch_", "zz"] {
            assert!(!s.contains(n), "{n}");
        }
        assert!(!super::SortedNames::new(std::iter::empty()).contains("x"));
    }
}
