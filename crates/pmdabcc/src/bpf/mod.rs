//! BPF plumbing shared by the modules: libbpf's log into the PCP log, skeleton storage,
//! hook probing, and map reads (including the batched read that loops to the end).

use crate::module::ModuleError;
use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, OpenObject, PrintLevel};
use std::mem::MaybeUninit;

use std::os::fd::AsRawFd;

mod force;
pub use force::{force_hook, Forcing};
use force::{forced_among, note_choice};

/// Routes libbpf's messages into the agent's log (which is the PCP log file).
pub fn bridge_libbpf_log() {
    fn print(level: PrintLevel, msg: String) {
        let msg = msg.trim_end();
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

/// Reads a plain `#[repr(C)]` value of a skeleton type from map bytes.
pub fn from_bytes<T: Copy + Default>(bytes: &[u8]) -> T {
    if bytes.len() < std::mem::size_of::<T>() {
        return T::default();
    }
    // SAFETY: T is a Copy, repr(C) plain-data type generated from BTF (integers and arrays of
    // them), for which every bit pattern is valid; the length was checked above and
    // read_unaligned copes with any alignment.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
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
    let vsz = map.value_size() as usize;
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

/// A named map, for the self-metrics.
pub fn map_info(name: &str, map: &impl MapCore) -> crate::module::MapInfo {
    crate::module::MapInfo {
        name: name.to_string(),
        fd: map.as_fd().as_raw_fd(),
    }
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
