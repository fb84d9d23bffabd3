//! End-to-end test of statsnoop under the real pmcd: stat-family calls on known paths (each
//! of statfs, stat, lstat, fstatat and statx, some failing with ENOENT, one with EACCES as
//! nobody) must each be in the recent-events table with every field exactly as made.

mod snoop_common;

use e2e::*;
use snoop_common::*;

/// Python workload for statsnoop: names itself, then calls each of statfs(2), stat(2),
/// lstat(2), newfstatat(2) and statx(2) on known paths under DIR (x86_64 numbers), printing
/// "<call> <path> <result>" per call (minus the errno on failure); the last calls run as
/// nobody. Ends with "done".
const STATS: &str = r#"
import ctypes, os, sys
d = sys.argv[1]
open("/proc/self/comm", "w").write("snoopfs-stat")
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
buf = ctypes.create_string_buffer(4096)
AT_FDCWD = -100
def call(name, path):
    p = path.encode()
    r = {
        "statfs": lambda: libc.syscall(137, p, buf),
        "stat": lambda: libc.syscall(4, p, buf),
        "lstat": lambda: libc.syscall(6, p, buf),
        "fstatat": lambda: libc.syscall(262, AT_FDCWD, p, buf, 0),
        "statx": lambda: libc.syscall(332, AT_FDCWD, p, 0, 0x7ff, buf),
    }[name]()
    if r < 0:
        r = -ctypes.get_errno()
    print(name, path, r, flush=True)
for c in ["statfs", "stat", "lstat", "fstatat", "statx"]:
    call(c, f"{d}/known")
call("stat", f"{d}/missing")
call("statx", f"{d}/missing")
os.setuid(65534)
call("fstatat", f"{d}/locked/inside")
call("lstat", f"{d}/known")
print("done", flush=True)
"#;

const STAT_FIELDS: &[&str] = &["pid", "tid", "comm", "ret", "err", "path", "call"];

#[test]
fn statsnoop_records_every_stat_of_the_workload_exactly() {
    let _s = session("statsnoop", "process_count = 10000");
    let dir = format!("/tmp/snoopfs-stat-{}", std::process::id());
    sh(&format!(
        "rm -rf {dir} && mkdir -m 0755 {dir} && echo k > {dir}/known && mkdir -m 0700 {dir}/locked && touch {dir}/locked/inside"
    ));
    let w = Peer::spawn(STATS, &[&dir]);
    let pid = w.pid();
    let (calls, end) = workload_calls(w);
    assert_eq!(end, "done");
    let mine = picked_when("statsnoop", STAT_FIELDS, calls.len(), |e| {
        e["pid"] == pid.to_string() && e["path"].starts_with(&dir)
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert_one_record_per_call(&format!("stats of {dir}"), &mine, &calls);
    let mut failures = BTreeMap::new();
    for (i, (call, got)) in calls.iter().zip(&mine).enumerate() {
        let f: Vec<&str> = call.split(' ').collect();
        let (name, path, res): (&str, &str, i64) = (f[0], f[1], f[2].parse().unwrap());
        if res < 0 {
            *failures.entry(-res).or_insert(0) += 1;
        }
        let (result, errno) = result_and_errno(res);
        assert_fields(
            &format!("stat {i} ({call})"),
            got,
            &[
                ("pid", pid.to_string()),
                ("tid", pid.to_string()),
                ("comm", "snoopfs-stat".into()),
                ("ret", result),
                ("err", errno),
                ("path", path.into()),
                ("call", name.into()),
            ],
        );
    }
    assert_eq!(
        failures,
        BTreeMap::from([(2, 2), (13, 1)]),
        "errors of the workload's calls: {calls:#?}"
    );
    eprintln!("statsnoop: {} stats checked", mine.len());
    assert_access_as_nobody(
        "statsnoop",
        &["pid", "tid", "ret", "err", "call"],
        &["comm", "path"],
    );
    assert_eq!(
        value_u64("bcc.statsnoop.lost", None),
        Some(0),
        "statsnoop lost events"
    );
}
