//! End-to-end test of mountsnoop under the real pmcd: a tmpfs mounted and unmounted at a
//! known place, and calls that fail (ENOENT, EINVAL, EPERM as nobody), must each be in the
//! recent-events table with every field exactly as made, the mount namespace as /proc says.

mod snoop_common;

use e2e::*;
use snoop_common::*;

/// Python workload for mountsnoop: names itself, prints its mount namespace, then mounts a
/// tmpfs on DIR/mnt and unmounts it, and makes calls that fail (a missing mount point, an
/// unmount of a directory that is no mount point, a mount as nobody), printing per call
/// "<op> <source> <target> <fs> <flags> <data> <result> <ns taken>" (minus the errno on
/// failure; "-" for an empty text). Ends with "done".
const MOUNTS: &str = r#"
import ctypes, os, sys, time
d = sys.argv[1]
open("/proc/self/comm", "w").write("snoopfs-mount")
libc = ctypes.CDLL(None, use_errno=True)
print("ns", os.readlink("/proc/self/ns/mnt"), flush=True)
def res(r):
    return -ctypes.get_errno() if r < 0 else r
def mount(src, target, fs, flags, data):
    t = time.perf_counter_ns()
    r = res(libc.mount(src.encode(), target.encode(), fs.encode(), ctypes.c_ulong(flags), data.encode()))
    t = time.perf_counter_ns() - t
    print("MOUNT", src, target, fs, flags, data or "-", r, t, flush=True)
def umount(target, flags):
    t = time.perf_counter_ns()
    r = res(libc.umount2(target.encode(), flags))
    t = time.perf_counter_ns() - t
    print("UMOUNT", "-", target, "-", flags, "-", r, t, flush=True)
MS_NOSUID, MS_NODEV = 2, 4
mount("snoopfs", f"{d}/mnt", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
umount(f"{d}/mnt", 0)
mount("snoopfs", f"{d}/missing", "tmpfs", 0, "")
umount(f"{d}/mnt", 0)
os.setuid(65534)
mount("snoopfs", f"{d}/mnt", "tmpfs", MS_NOSUID, "size=1m")
print("done", flush=True)
"#;

const MOUNT_FIELDS: &[&str] = &[
    "pid", "tid", "comm", "op", "ret", "lat", "mnt_ns", "fs", "source", "target", "data", "flags",
    "call",
];

#[test]
fn mountsnoop_records_a_tmpfs_mount_and_unmount_exactly() {
    let _s = session("mountsnoop", "process_count = 1000");
    let dir = format!("/tmp/snoopfs-mount-{}", std::process::id());
    sh(&format!("rm -rf {dir} && mkdir -m 0755 {dir} {dir}/mnt"));
    let mut w = Peer::spawn(MOUNTS, &[&dir]);
    let pid = w.pid();
    let ns_line = w.line();
    let ns: String = ns_line
        .strip_prefix("ns mnt:[")
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("mount namespace line: {ns_line}"))
        .into();
    let (calls, end) = workload_calls(w);
    assert_eq!(end, "done");
    let mounted = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounted.contains(&format!("{dir}/mnt")),
        "the workload's tmpfs is still mounted"
    );
    let mine = picked_when("mountsnoop", MOUNT_FIELDS, calls.len(), |e| {
        e["pid"] == pid.to_string()
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert_one_record_per_call("mount calls of the workload", &mine, &calls);
    let errno_name = |e: i64| match e {
        2 => "ENOENT",
        1 => "EPERM",
        22 => "EINVAL",
        o => panic!("unexpected errno {o}"),
    };
    let mut results = Vec::new();
    for (i, (call, got)) in calls.iter().zip(&mine).enumerate() {
        let f: Vec<&str> = call.split(' ').collect();
        let text = |s: &str| {
            if s == "-" {
                String::new()
            } else {
                s.to_string()
            }
        };
        let (op, source, target, fs, flags, data) = (
            f[0],
            text(f[1]),
            f[2],
            text(f[3]),
            f[4].parse::<u64>().unwrap(),
            text(f[5]),
        );
        let (res, took): (i64, u64) = (f[6].parse().unwrap(), f[7].parse().unwrap());
        results.push(res);
        let flag_names = match flags {
            0 => "0x0".to_string(),
            2 => "MS_NOSUID".into(),
            6 => "MS_NOSUID | MS_NODEV".into(),
            o => panic!("flags {o}"),
        };
        let written = if op == "MOUNT" {
            format!("mount(\"{source}\", \"{target}\", \"{fs}\", {flags:#x}, \"{data}\") = {res}")
        } else {
            format!("umount(\"{target}\", {flags:#x}) = {res}")
        };
        assert_fields(
            &format!("mount call {i} ({call})"),
            got,
            &[
                ("pid", pid.to_string()),
                ("tid", pid.to_string()),
                ("comm", "snoopfs-mount".into()),
                ("op", op.into()),
                (
                    "ret",
                    if res < 0 {
                        errno_name(-res).into()
                    } else {
                        "0".into()
                    },
                ),
                ("mnt_ns", ns.clone()),
                ("fs", fs),
                ("source", source),
                ("target", target.into()),
                ("data", data),
                ("flags", flag_names),
                ("call", written),
            ],
        );
        // The kernel's interval lies within the one the workload measured around the call.
        let lat: u64 = got["lat"].parse().unwrap();
        assert!(
            lat > 0 && lat <= took,
            "mount call {i}: lat {lat} ns, the workload measured {took} ns around it"
        );
    }
    assert_eq!(
        results,
        vec![0, 0, -2, -22, -1],
        "results of the workload's calls: {calls:#?}"
    );
    eprintln!("mountsnoop: {} calls checked", mine.len());
    assert_access_as_nobody(
        "mountsnoop",
        &["pid", "tid", "op", "ret", "lat", "mnt_ns", "fs", "flags"],
        &["comm", "source", "target", "data", "call"],
    );
    assert_eq!(
        value_u64("bcc.mountsnoop.lost", None),
        Some(0),
        "mountsnoop lost events"
    );
}
