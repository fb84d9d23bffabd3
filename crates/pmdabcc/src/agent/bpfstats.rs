//! What each module's BPF programs and maps cost in the kernel, read from the kernel's own
//! object info (`BPF_OBJ_GET_INFO_BY_FD`) and `/proc/self/fdinfo`.
//!
//! Run counts and run time are only kept by the kernel while BPF statistics are enabled,
//! which costs a little on every event: the agent enables them (holding a
//! `bpf_enable_stats` fd) only when `[pmda] bpf_stats = True`.

use libbpf_rs::libbpf_sys;
use std::os::fd::{FromRawFd, OwnedFd};

#[derive(Clone, Debug, Default)]
pub struct ProgStats {
    pub id: u32,
    pub run_cnt: u64,
    pub run_time_ns: u64,
    pub recursion_misses: u64,
    pub verified_insns: u32,
}

#[derive(Clone, Debug, Default)]
pub struct MapStats {
    pub id: u32,
    pub max_entries: u32,
    pub memlock: u64,
    pub map_type: u32,
    pub key_size: u32,
    pub fd: i32,
}

/// Entries in use: counted by walking the keys for hash maps (about a microsecond each, so
/// only when the metric is fetched); arrays always hold max_entries; None for map kinds
/// without a meaningful count (ring buffers, …).
pub fn map_entries(m: &MapStats) -> Option<u64> {
    match m.map_type {
        libbpf_sys::BPF_MAP_TYPE_HASH
        | libbpf_sys::BPF_MAP_TYPE_PERCPU_HASH
        | libbpf_sys::BPF_MAP_TYPE_LRU_HASH
        | libbpf_sys::BPF_MAP_TYPE_LRU_PERCPU_HASH => {
            let mut cur = vec![0u8; m.key_size as usize];
            let mut next = vec![0u8; m.key_size as usize];
            let mut n = 0u64;
            let mut first = true;
            loop {
                // SAFETY: key buffers sized to the map's key size; a NULL current key asks for
                // the first key.
                let r = unsafe {
                    libbpf_sys::bpf_map_get_next_key(
                        m.fd,
                        if first {
                            std::ptr::null()
                        } else {
                            cur.as_ptr().cast()
                        },
                        next.as_mut_ptr().cast(),
                    )
                };
                if r != 0 || n > m.max_entries as u64 {
                    return Some(n);
                }
                n += 1;
                first = false;
                std::mem::swap(&mut cur, &mut next);
            }
        }
        libbpf_sys::BPF_MAP_TYPE_ARRAY | libbpf_sys::BPF_MAP_TYPE_PERCPU_ARRAY => {
            Some(m.max_entries as u64)
        }
        _ => None,
    }
}

pub fn prog_stats(fd: i32) -> Option<ProgStats> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: fd is a program fd owned by a loaded skeleton; info/len describe a zeroed
    // struct of the size we pass (the kernel writes at most len bytes).
    let r = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) };
    (r == 0).then_some(ProgStats {
        id: info.id,
        run_cnt: info.run_cnt,
        run_time_ns: info.run_time_ns,
        recursion_misses: info.recursion_misses,
        verified_insns: info.verified_insns,
    })
}

pub fn map_stats(fd: i32) -> Option<MapStats> {
    let mut info = libbpf_sys::bpf_map_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
    // SAFETY: as above, for a map fd.
    let r = unsafe { libbpf_sys::bpf_map_get_info_by_fd(fd, &mut info, &mut len) };
    if r != 0 {
        return None;
    }
    let memlock = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("memlock:")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0);
    Some(MapStats {
        id: info.id,
        max_entries: info.max_entries,
        memlock,
        map_type: info.type_,
        key_size: info.key_size,
        fd,
    })
}

/// Holds kernel BPF run-time statistics on while alive.
pub struct StatsGuard(#[allow(dead_code)] OwnedFd);

pub fn enable_stats() -> std::io::Result<StatsGuard> {
    // SAFETY: plain syscall wrapper; on success returns a new fd we own.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: fd is fresh and ours.
    Ok(StatsGuard(unsafe { OwnedFd::from_raw_fd(fd) }))
}
