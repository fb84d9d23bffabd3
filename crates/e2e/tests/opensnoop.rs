//! End-to-end test of opensnoop under the real pmcd: opens of known files (with open(2),
//! openat(2) and openat2(2), some failing with ENOENT, one with EACCES as nobody) must each be
//! in the recent-events table with every field exactly as the workload made the call.

mod snoop_common;

use e2e::*;
use snoop_common::*;

/// Python workload for opensnoop: names itself, then opens known paths under DIR with each
/// of open(2), openat(2) and openat2(2), printing "<syscall> <path> <flags> <result>" per
/// call (result: the fd, or minus the errno); the last calls run as nobody. Ends with
/// "done <uid-before> <uid-after>".
const OPENS: &str = r#"
import ctypes, os, sys
d = sys.argv[1]
open("/proc/self/comm", "w").write("snoopfs-open")
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
AT_FDCWD = -100
class How(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
def call(name, path, flags, mode=0o644):
    p = path.encode()
    if name == "open":
        r = libc.syscall(2, p, flags, mode)
    elif name == "openat":
        r = libc.syscall(257, AT_FDCWD, p, flags, mode)
    else:
        how = How(flags, mode if flags & os.O_CREAT else 0, 0)
        r = libc.syscall(437, AT_FDCWD, p, ctypes.byref(how), ctypes.sizeof(how))
    if r < 0:
        r = -ctypes.get_errno()
    print(name, path, flags, r, flush=True)
for i in range(3):
    call(["open", "openat", "openat2"][i], f"{d}/known{i}", os.O_RDONLY)
call("openat", f"{d}/created", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
call("openat2", f"{d}/known0", os.O_RDWR | os.O_CLOEXEC)
call("open", f"{d}/missing", os.O_RDONLY)
call("openat2", f"{d}/missing", os.O_RDONLY)
before = os.getuid()
os.setuid(65534)
call("openat", f"{d}/secret", os.O_RDONLY)
call("open", f"{d}/known1", os.O_RDONLY)
print("done", before, os.getuid(), flush=True)
"#;

const OPEN_FIELDS: &[&str] = &["pid", "tid", "uid", "fd", "err", "flags", "comm", "fname"];

#[test]
fn opensnoop_records_every_open_of_the_workload_exactly() {
    let _s = session("opensnoop", "process_count = 10000");
    let dir = format!("/tmp/snoopfs-open-{}", std::process::id());
    sh(&format!(
        "rm -rf {dir} && mkdir -m 0755 {dir} && for i in 0 1 2; do echo $i > {dir}/known$i; chmod 0644 {dir}/known$i; done \
         && echo s > {dir}/secret && chmod 0600 {dir}/secret"
    ));
    let w = Peer::spawn(OPENS, &[&dir]);
    let pid = w.pid();
    let (calls, end) = workload_calls(w);
    assert_eq!(end, "done 0 65534");
    let mine = picked_when("opensnoop", OPEN_FIELDS, calls.len(), |e| {
        e["pid"] == pid.to_string() && e["fname"].starts_with(&dir)
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert_one_record_per_call(&format!("opens of {dir}"), &mine, &calls);
    let mut failures = BTreeMap::new();
    for (i, (call, got)) in calls.iter().zip(&mine).enumerate() {
        let f: Vec<&str> = call.split(' ').collect();
        let (path, flags, res): (&str, i64, i64) =
            (f[1], f[2].parse().unwrap(), f[3].parse().unwrap());
        let uid = if i >= calls.len() - 2 { "65534" } else { "0" };
        if res < 0 {
            *failures.entry(-res).or_insert(0) += 1;
        }
        let (result, errno) = result_and_errno(res);
        assert_fields(
            &format!("open {i} ({call})"),
            got,
            &[
                ("pid", pid.to_string()),
                // Python is single-threaded here: the calls come from its main thread.
                ("tid", pid.to_string()),
                ("uid", uid.into()),
                ("fd", result),
                ("err", errno),
                ("flags", flags.to_string()),
                ("comm", "snoopfs-open".into()),
                ("fname", path.into()),
            ],
        );
    }
    // The workload's own failures, as the kernel returned them to it: two ENOENT, one EACCES.
    assert_eq!(
        failures,
        BTreeMap::from([(2, 2), (13, 1)]),
        "errors of the workload's calls: {calls:#?}"
    );
    eprintln!("opensnoop: {} opens checked", mine.len());
    assert_access_as_nobody(
        "opensnoop",
        &["pid", "tid", "uid", "fd", "err", "flags"],
        &["comm", "fname"],
    );
    assert_eq!(
        value_u64("bcc.opensnoop.lost", None),
        Some(0),
        "opensnoop lost events"
    );
}
