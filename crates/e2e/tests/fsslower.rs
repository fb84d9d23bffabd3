//! End-to-end test of fsslower under the real pmcd: reads, writes, an open and an fsync made
//! slow for certain (userfaultfd, a frozen file system under a loop device) must each be in
//! the recent-events table exactly; fast calls, and as slow calls on another file system
//! type, must not.

mod snoop_common;

use e2e::*;
use snoop_common::*;

/// Python workload for fsslower, on DIR (an ext4 file system whose image lives on the ext4
/// file system mounted at OUTER) and OTHER (a tmpfs directory). Operations are made slow
/// for certain, each by STALL (0.1 s) after the kernel is inside the call: reads, writes
/// and an open whose user memory is a userfaultfd region (the handler answers each fault
/// after STALL), and an fsync while OUTER is frozen (thawed STALL after /proc shows the
/// thread inside fsync; the inner file system's writes wait for the thaw). Fast operations
/// (reads of a cached page, buffered writes) run between them. Prints per call
/// "<op> <file> <result> <µs measured around it> <offset>" and ends with "done".
const SLOW: &str = r#"
import ctypes, fcntl, mmap, os, struct, sys, threading, time
d, outer, other = sys.argv[1], sys.argv[2], sys.argv[3]
open("/proc/self/comm", "w").write("snoopfs-slow")
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.read.restype = ctypes.c_ssize_t
libc.pwrite.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
libc.pwrite.restype = ctypes.c_ssize_t
PAGE, STALL = mmap.PAGESIZE, 0.1
uffd = libc.syscall(323, os.O_CLOEXEC)
assert uffd >= 0, ctypes.get_errno()
fcntl.ioctl(uffd, 0xc018aa3f, bytearray(struct.pack("QQQ", 0xAA, 0, 0)))            # UFFDIO_API
area = mmap.mmap(-1, 4 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(area))
fcntl.ioctl(uffd, 0xc020aa00, bytearray(struct.pack("QQQQ", base, 4 * PAGE, 1, 0)))  # UFFDIO_REGISTER, missing pages
content = {0: f"{d}/slow-file".encode() + b"\0", 1: b"", 2: b"w" * PAGE, 3: b""}
def serve():
    while True:
        msg = os.read(uffd, 32)
        addr = struct.unpack_from("Q", msg, 16)[0]
        page = (addr - base) // PAGE
        time.sleep(STALL)
        src = ctypes.create_string_buffer(content[page].ljust(PAGE, b"\0"), PAGE)
        fcntl.ioctl(uffd, 0xc028aa03, bytearray(struct.pack("QQQQq", base + page * PAGE, ctypes.addressof(src), PAGE, 0, 0)))  # UFFDIO_COPY
threading.Thread(target=serve, daemon=True).start()
def timed(op, name, f, offset=0):
    t = time.perf_counter_ns()
    r = f()
    t = time.perf_counter_ns() - t
    if r < 0:
        r = -ctypes.get_errno()
    print(op, name, r, t // 1000, offset, flush=True)
    return r
fd = timed("O", "slow-file", lambda: libc.syscall(257, -100, ctypes.c_void_p(base), os.O_RDWR))
os.lseek(fd, PAGE, 0)
timed("R", "slow-file", lambda: libc.read(fd, base + PAGE, PAGE), PAGE)
timed("W", "slow-file", lambda: libc.pwrite(fd, base + 2 * PAGE, PAGE, 2 * PAGE), 2 * PAGE)
fast = os.open(f"{d}/fast-file", os.O_RDONLY)
for _ in range(20):
    timed("R", "fast-file", lambda: len(os.pread(fast, PAGE, 0)))
o = os.open(f"{other}/other-fs-file", os.O_RDONLY)
timed("R", "other-fs-file", lambda: libc.read(o, base + 3 * PAGE, PAGE))
sync = os.open(f"{d}/synced-file", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for _ in range(4):
    timed("W", "synced-file", lambda: os.write(sync, b"s" * (1 << 18)))
FIFREEZE, FITHAW = 0xC0045877, 0xC0045878
x = os.open(outer, os.O_RDONLY)
fcntl.ioctl(x, FIFREEZE, 0)
me = threading.get_native_id()
def thaw():
    while open(f"/proc/self/task/{me}/syscall").read().split()[0] != "74":   # fsync
        time.sleep(0.001)
    time.sleep(STALL)
    fcntl.ioctl(x, FITHAW, 0)
threading.Thread(target=thaw).start()
timed("F", "synced-file", lambda: os.fsync(sync) or 0)
print("done", flush=True)
"#;

const SLOW_FIELDS: &[&str] = &[
    "pid", "comm", "file_op", "bytes", "offset", "lat", "filename", "fs",
];

/// An ext4 file system on a loop device whose image is on another ext4 file system on a
/// loop device, under /tmp; unmounted (and thawed) when dropped.
struct NestedExt4 {
    base: String,
}

impl NestedExt4 {
    fn new() -> NestedExt4 {
        let base = format!("/tmp/snoopfs-fs-{}", std::process::id());
        let n = NestedExt4 { base: base.clone() };
        sh(&format!(
            "set -e; mkdir -p {base}/outer {base}/inner {base}/other
             truncate -s 48M {base}/outer.img && mkfs.ext4 -q -F {base}/outer.img && mount -o loop {base}/outer.img {base}/outer
             truncate -s 24M {base}/outer/inner.img && mkfs.ext4 -q -F {base}/outer/inner.img && mount -o loop {base}/outer/inner.img {base}/inner
             mount -t tmpfs -o size=1m snoopfs {base}/other
             head -c 16384 /dev/urandom > {base}/inner/slow-file; head -c 4096 /dev/urandom > {base}/inner/fast-file
             head -c 4096 /dev/urandom > {base}/other/other-fs-file; cat {base}/inner/fast-file > /dev/null"
        ));
        n
    }
}

impl Drop for NestedExt4 {
    fn drop(&mut self) {
        let b = &self.base;
        run("bash", &["-c", &format!("fsfreeze -u {b}/outer; umount {b}/other; umount {b}/inner; umount {b}/outer; rm -rf {b}")]);
    }
}

#[test]
fn fsslower_records_the_slow_operations_and_only_those() {
    let _s = session(
        "fsslower",
        "process_count = 1000\nmin = 20\nfilesystem = ext4",
    );
    let fs = NestedExt4::new();
    let dir = format!("{}/inner", fs.base);
    let w = Peer::spawn(
        SLOW,
        &[
            &dir,
            &format!("{}/outer", fs.base),
            &format!("{}/other", fs.base),
        ],
    );
    let pid = w.pid().to_string();
    let (calls, end) = workload_calls(w);
    assert_eq!(end, "done");
    // The calls slow for certain (the kernel held them 100 ms): at least their records.
    let certain = calls
        .iter()
        .filter(|c| {
            let f: Vec<&str> = c.split(' ').collect();
            f[1] == "slow-file" || f[1] == "synced-file" && f[0] == "F"
        })
        .count();
    let mine = picked_when("fsslower", SLOW_FIELDS, certain, |e| e["pid"] == pid);
    drop(fs);
    // Every record is at least the threshold (20 ms), and of an ext4 file.
    for e in &mine {
        let lat: u64 = e["lat"].parse().unwrap();
        assert!(lat >= 20_000, "a record under the threshold: {e:?}");
        assert_eq!(
            e["fs"], "ext4",
            "a record of another file system type: {e:?}"
        );
    }
    let count = |op: &str, file: &str| {
        mine.iter()
            .filter(|e| e["file_op"] == op && e["filename"] == file)
            .count()
    };
    let mut slow = 0;
    for call in &calls {
        let f: Vec<&str> = call.split(' ').collect();
        let (op, file, res, took, offset): (&str, &str, i64, u64, &str) = (
            f[0],
            f[1],
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
            f[4],
        );
        assert!(res >= 0, "the workload's call failed: {call}");
        if file == "slow-file" || file == "synced-file" && op == "F" {
            // Slow for certain: the kernel was held STALL (100 ms) inside the call.
            slow += 1;
            let got: Vec<&Event> = mine
                .iter()
                .filter(|e| e["file_op"] == op && e["filename"] == file)
                .collect();
            assert_eq!(got.len(), 1, "{call}: slow for certain, records: {mine:#?}");
            let bytes = if op == "R" || op == "W" {
                res.to_string()
            } else {
                "0".into()
            };
            assert_fields(
                call,
                got[0],
                &[
                    ("comm", "snoopfs-slow".into()),
                    ("bytes", bytes),
                    ("offset", offset.into()),
                    ("fs", "ext4".into()),
                ],
            );
            let lat: u64 = got[0]["lat"].parse().unwrap();
            assert!(
                (100_000..=took).contains(&lat),
                "{call}: lat {lat} µs, held 100 ms, measured {took} µs around it"
            );
        }
    }
    assert_eq!(slow, 4, "slow calls of the workload: {calls:#?}");
    // Fast calls are not recorded unless they took the threshold (the measured time around
    // a call bounds the kernel's from above; a busy machine may stretch one).
    for (op, file) in [("R", "fast-file"), ("W", "synced-file")] {
        let slow_enough = calls.iter().filter(|c| {
            let f: Vec<&str> = c.split(' ').collect();
            f[0] == op && f[1] == file && f[3].parse::<u64>().unwrap() >= 20_000
        });
        assert!(
            count(op, file) <= slow_enough.count(),
            "{op} {file}: fast calls recorded: {mine:#?}\ncalls: {calls:#?}"
        );
    }
    // The read as slow on the tmpfs is not of the chosen file system type.
    assert_eq!(
        count("R", "other-fs-file"),
        0,
        "a tmpfs read was recorded with filesystem = ext4"
    );
    eprintln!("fsslower: {} records of the workload checked", mine.len());
    assert_access_as_nobody(
        "fsslower",
        &["pid", "file_op", "bytes", "offset", "lat", "fs"],
        &["comm", "filename"],
    );
    assert_eq!(
        value_u64("bcc.fsslower.lost", None),
        Some(0),
        "fsslower lost events"
    );
}
