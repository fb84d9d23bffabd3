//! End-to-end tests of the file-system "snoop" modules (opensnoop, statsnoop, mountsnoop,
//! fsslower, bashreadline) under the real pmcd: a workload of known content (opens of known
//! files, some failing with known errors; stats of known paths; a tmpfs mounted and
//! unmounted at a known place; reads and writes made slow for certain; lines typed into bash
//! on a pty), then each of its events must be in the module's recent-events table with every
//! field exactly as the workload did it. The table serves every process's events, so the
//! tests pick theirs out by process id and path, with a table large enough to hold them.

use e2e::*;
use std::collections::BTreeMap;

/// The agent running `module` alone, with `options`: tables big enough that the system's own
/// events (pmcd, builds) between the workload and the fetch do not push the workload's out.
fn session(module: &str, options: &str) -> Session {
    let mut s = Session::start();
    s.with_config(&format!(
        "[pmda]\nmodules = {module}\nprefix = bcc.\nmodule_failure_fatal = False\n\n[{module}]\n{options}\n"
    ));
    s.assert_module_running(module);
    s
}

/// One event of a module's table: field (the metric name after `bcc.<module>.`) to value.
type Event = BTreeMap<String, String>;

/// The module's recent-events table, newest first (instance "0" first).
fn table(module: &str, fields: &[&str]) -> Vec<Event> {
    let names: Vec<String> = fields.iter().map(|f| format!("bcc.{module}.{f}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let vals = fetch(&refs);
    let mut rows: BTreeMap<u32, Event> = BTreeMap::new();
    for (f, n) in fields.iter().zip(&names) {
        let Some(v) = vals.get(n) else {
            panic!("{n}: no values (fetched: {:?})", vals.keys().collect::<Vec<_>>())
        };
        for (inst, value) in v {
            let i: u32 = inst.as_deref().and_then(|i| i.parse().ok()).unwrap_or_else(|| panic!("{n}: instance {inst:?} is not a slot number"));
            rows.entry(i).or_default().insert(f.to_string(), value.clone());
        }
    }
    let n = rows.len();
    let out: Vec<Event> = rows.into_values().collect();
    for (i, e) in out.iter().enumerate() {
        assert_eq!(e.len(), fields.len(), "{module} slot {i} of {n}: not every field has a value: {e:?}");
    }
    out
}

/// The workload's events in a table (oldest first, as they happened), by `pick`.
fn picked(rows: &[Event], pick: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut v: Vec<Event> = rows.iter().filter(|e| pick(e)).cloned().collect();
    v.reverse();
    v
}

/// Checks every field of `want` against `got`.
fn assert_fields(what: &str, got: &Event, want: &[(&str, String)]) {
    for (k, v) in want {
        assert_eq!(got.get(*k), Some(v), "{what}: field {k}: got {got:?}");
    }
}

/// What an unprivileged client gets: values for the public fields of the table, a
/// permission error for the sensitive ones.
fn assert_access_as_nobody(module: &str, public: &[&str], sensitive: &[&str]) {
    for f in public.iter().chain(sensitive) {
        let m = format!("bcc.{module}.{f}");
        let o = run("runuser", &["-u", "nobody", "--", "pminfo", "-f", &m]);
        let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        let (vals, _) = parse_pminfo_f(&text);
        if sensitive.contains(f) {
            assert!(text.contains("No permission"), "nobody fetched the sensitive {m}: {text}");
            assert!(vals.get(&m).is_none_or(|v| v.is_empty()), "nobody got values of {m}: {text}");
        } else {
            assert!(vals.get(&m).is_some_and(|v| !v.is_empty()), "nobody got no values of the public {m}: {text}");
        }
    }
}

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
    let mut w = Peer::spawn(OPENS, &[&dir]);
    let pid = w.pid();
    let mut calls = Vec::new();
    loop {
        let l = w.line();
        if l.starts_with("done") {
            assert_eq!(l, "done 0 65534");
            break;
        }
        calls.push(l);
    }
    w.finish();
    let rows = table("opensnoop", OPEN_FIELDS);
    let mine = picked(&rows, |e| e["pid"] == pid.to_string() && e["fname"].starts_with(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(mine.len(), calls.len(), "{} opens of {dir} in the table, the workload made {}: {mine:#?}\ncalls: {calls:#?}", mine.len(), calls.len());
    let mut failures = BTreeMap::new();
    for (i, (call, got)) in calls.iter().zip(&mine).enumerate() {
        let f: Vec<&str> = call.split(' ').collect();
        let (path, flags, res): (&str, i64, i64) = (f[1], f[2].parse().unwrap(), f[3].parse().unwrap());
        let uid = if i >= calls.len() - 2 { "65534" } else { "0" };
        if res < 0 {
            *failures.entry(-res).or_insert(0) += 1;
        }
        assert_fields(
            &format!("open {i} ({call})"),
            got,
            &[
                ("pid", pid.to_string()),
                // Python is single-threaded here: the calls come from its main thread.
                ("tid", pid.to_string()),
                ("uid", uid.into()),
                ("fd", if res < 0 { "-1".into() } else { res.to_string() }),
                ("err", if res < 0 { (-res).to_string() } else { "0".into() }),
                ("flags", flags.to_string()),
                ("comm", "snoopfs-open".into()),
                ("fname", path.into()),
            ],
        );
    }
    // The workload's own failures, as the kernel returned them to it: two ENOENT, one EACCES.
    assert_eq!(failures, BTreeMap::from([(2, 2), (13, 1)]), "errors of the workload's calls: {calls:#?}");
    eprintln!("opensnoop: {} opens checked, table of {} events", mine.len(), rows.len());
    assert_access_as_nobody("opensnoop", &["pid", "tid", "uid", "fd", "err", "flags"], &["comm", "fname"]);
    assert_eq!(value_u64("bcc.opensnoop.lost", None), Some(0), "opensnoop lost events");
}

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
    let mut w = Peer::spawn(STATS, &[&dir]);
    let pid = w.pid();
    let mut calls = Vec::new();
    loop {
        let l = w.line();
        if l == "done" {
            break;
        }
        calls.push(l);
    }
    w.finish();
    let rows = table("statsnoop", STAT_FIELDS);
    let mine = picked(&rows, |e| e["pid"] == pid.to_string() && e["path"].starts_with(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(mine.len(), calls.len(), "{} stats of {dir} in the table, the workload made {}: {mine:#?}\ncalls: {calls:#?}", mine.len(), calls.len());
    let mut failures = BTreeMap::new();
    for (i, (call, got)) in calls.iter().zip(&mine).enumerate() {
        let f: Vec<&str> = call.split(' ').collect();
        let (name, path, res): (&str, &str, i64) = (f[0], f[1], f[2].parse().unwrap());
        if res < 0 {
            *failures.entry(-res).or_insert(0) += 1;
        }
        assert_fields(
            &format!("stat {i} ({call})"),
            got,
            &[
                ("pid", pid.to_string()),
                ("tid", pid.to_string()),
                ("comm", "snoopfs-stat".into()),
                ("ret", if res < 0 { "-1".into() } else { res.to_string() }),
                ("err", if res < 0 { (-res).to_string() } else { "0".into() }),
                ("path", path.into()),
                ("call", name.into()),
            ],
        );
    }
    assert_eq!(failures, BTreeMap::from([(2, 2), (13, 1)]), "errors of the workload's calls: {calls:#?}");
    eprintln!("statsnoop: {} stats checked, table of {} events", mine.len(), rows.len());
    assert_access_as_nobody("statsnoop", &["pid", "tid", "ret", "err", "call"], &["comm", "path"]);
    assert_eq!(value_u64("bcc.statsnoop.lost", None), Some(0), "statsnoop lost events");
}

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
    "pid", "tid", "comm", "op", "ret", "lat", "mnt_ns", "fs", "source", "target", "data", "flags", "call",
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
    let mut calls = Vec::new();
    loop {
        let l = w.line();
        if l == "done" {
            break;
        }
        calls.push(l);
    }
    w.finish();
    let mounted = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounted.contains(&format!("{dir}/mnt")), "the workload's tmpfs is still mounted");
    let rows = table("mountsnoop", MOUNT_FIELDS);
    let mine = picked(&rows, |e| e["pid"] == pid.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(mine.len(), calls.len(), "{} mount calls of the workload in the table, it made {}: {mine:#?}\ncalls: {calls:#?}", mine.len(), calls.len());
    let errno_name = |e: i64| match e {
        2 => "ENOENT",
        1 => "EPERM",
        22 => "EINVAL",
        o => panic!("unexpected errno {o}"),
    };
    let mut results = Vec::new();
    for (i, (call, got)) in calls.iter().zip(&mine).enumerate() {
        let f: Vec<&str> = call.split(' ').collect();
        let text = |s: &str| if s == "-" { String::new() } else { s.to_string() };
        let (op, source, target, fs, flags, data) = (f[0], text(f[1]), f[2], text(f[3]), f[4].parse::<u64>().unwrap(), text(f[5]));
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
                ("ret", if res < 0 { errno_name(-res).into() } else { "0".into() }),
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
        assert!(lat > 0 && lat <= took, "mount call {i}: lat {lat} ns, the workload measured {took} ns around it");
    }
    assert_eq!(results, vec![0, 0, -2, -22, -1], "results of the workload's calls: {calls:#?}");
    eprintln!("mountsnoop: {} calls checked, table of {} events", mine.len(), rows.len());
    assert_access_as_nobody("mountsnoop", &["pid", "tid", "op", "ret", "lat", "mnt_ns", "fs", "flags"], &["comm", "source", "target", "data", "call"]);
    assert_eq!(value_u64("bcc.mountsnoop.lost", None), Some(0), "mountsnoop lost events");
}

/// Python workload for bashreadline: runs BASH interactively on a pseudo-terminal (as root,
/// then as nobody), types known lines at its prompts, each after the prompt is shown, and
/// prints "bash <pid> <uid>" per shell. Ends with "done".
const TYPING: &str = r#"
import os, pty, sys
bash = sys.argv[1]
def shell(uid, lines):
    pid, fd = pty.fork()
    if pid == 0:
        if uid:
            os.setgid(65534)
            os.setuid(uid)
        os.execve(bash, ["bash", "--norc", "--noprofile", "-i"], {"PS1": "snoop-prompt$ ", "PATH": "/usr/bin:/bin", "TERM": "dumb"})
    seen = b""
    def prompt():
        nonlocal seen
        while seen.count(b"snoop-prompt$ ") == 0:
            seen += os.read(fd, 4096)
        seen = seen.split(b"snoop-prompt$ ", 1)[1]
    for l in lines:
        prompt()
        os.write(fd, (l + "\n").encode())
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    _, st = os.waitpid(pid, 0)
    assert st == 0, st
    print("bash", pid, uid, flush=True)
shell(0, ["echo snoop-line-1", "true 'a typed secret: hunter2'", "   :  spaces  around   ", "exit"])
shell(65534, ["echo as nobody", "exit"])
print("done", flush=True)
"#;

const LINE_FIELDS: &[&str] = &["pid", "uid", "comm", "line"];

#[test]
fn bashreadline_records_the_lines_typed_into_bash_exactly() {
    let _s = session("bashreadline", "process_count = 1000\nbash = /bin/bash");
    let mut w = Peer::spawn(TYPING, &["/bin/bash"]);
    let mut shells = Vec::new();
    loop {
        let l = w.line();
        if l == "done" {
            break;
        }
        let f: Vec<String> = l.split(' ').map(str::to_string).collect();
        assert_eq!(f[0], "bash", "{l}");
        shells.push((f[1].clone(), f[2].clone()));
    }
    w.finish();
    let typed: [&[&str]; 2] = [
        &["echo snoop-line-1", "true 'a typed secret: hunter2'", "   :  spaces  around   ", "exit"],
        &["echo as nobody", "exit"],
    ];
    let rows = table("bashreadline", LINE_FIELDS);
    for ((pid, uid), lines) in shells.iter().zip(typed) {
        let mine = picked(&rows, |e| &e["pid"] == pid);
        let got: Vec<&str> = mine.iter().map(|e| e["line"].as_str()).collect();
        assert_eq!(got, lines, "lines of bash {pid} (uid {uid}): {mine:#?}");
        for (i, e) in mine.iter().enumerate() {
            assert_fields(&format!("bash {pid} line {i}"), e, &[("uid", uid.clone()), ("comm", "bash".into())]);
        }
    }
    eprintln!("bashreadline: {} shells, table of {} lines", shells.len(), rows.len());
    assert_access_as_nobody("bashreadline", &["pid", "uid"], &["comm", "line"]);
    assert_eq!(value_u64("bcc.bashreadline.lost", None), Some(0), "bashreadline lost events");
}

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

const SLOW_FIELDS: &[&str] = &["pid", "comm", "file_op", "bytes", "offset", "lat", "filename", "fs"];

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
    let _s = session("fsslower", "process_count = 1000\nmin = 20\nfilesystem = ext4");
    let fs = NestedExt4::new();
    let dir = format!("{}/inner", fs.base);
    let mut w = Peer::spawn(SLOW, &[&dir, &format!("{}/outer", fs.base), &format!("{}/other", fs.base)]);
    let pid = w.pid().to_string();
    let mut calls = Vec::new();
    loop {
        let l = w.line();
        if l == "done" {
            break;
        }
        calls.push(l);
    }
    w.finish();
    let rows = table("fsslower", SLOW_FIELDS);
    let mine = picked(&rows, |e| e["pid"] == pid);
    drop(fs);
    // Every record is at least the threshold (20 ms), and of an ext4 file.
    for e in &mine {
        let lat: u64 = e["lat"].parse().unwrap();
        assert!(lat >= 20_000, "a record under the threshold: {e:?}");
        assert_eq!(e["fs"], "ext4", "a record of another file system type: {e:?}");
    }
    let count = |op: &str, file: &str| mine.iter().filter(|e| e["file_op"] == op && e["filename"] == file).count();
    let mut slow = 0;
    for call in &calls {
        let f: Vec<&str> = call.split(' ').collect();
        let (op, file, res, took, offset): (&str, &str, i64, u64, &str) = (f[0], f[1], f[2].parse().unwrap(), f[3].parse().unwrap(), f[4]);
        assert!(res >= 0, "the workload's call failed: {call}");
        if file == "slow-file" || file == "synced-file" && op == "F" {
            // Slow for certain: the kernel was held STALL (100 ms) inside the call.
            slow += 1;
            let got: Vec<&Event> = mine.iter().filter(|e| e["file_op"] == op && e["filename"] == file).collect();
            assert_eq!(got.len(), 1, "{call}: slow for certain, records: {mine:#?}");
            let bytes = if op == "R" || op == "W" { res.to_string() } else { "0".into() };
            assert_fields(call, got[0], &[("comm", "snoopfs-slow".into()), ("bytes", bytes), ("offset", offset.into()), ("fs", "ext4".into())]);
            let lat: u64 = got[0]["lat"].parse().unwrap();
            assert!((100_000..=took).contains(&lat), "{call}: lat {lat} µs, held 100 ms, measured {took} µs around it");
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
        assert!(count(op, file) <= slow_enough.count(), "{op} {file}: fast calls recorded: {mine:#?}\ncalls: {calls:#?}");
    }
    // The read as slow on the tmpfs is not of the chosen file system type.
    assert_eq!(count("R", "other-fs-file"), 0, "a tmpfs read was recorded with filesystem = ext4");
    eprintln!("fsslower: {} records of the workload checked, table of {} events", mine.len(), rows.len());
    assert_access_as_nobody("fsslower", &["pid", "file_op", "bytes", "offset", "lat", "fs"], &["comm", "filename"]);
    assert_eq!(value_u64("bcc.fsslower.lost", None), Some(0), "fsslower lost events");
}
