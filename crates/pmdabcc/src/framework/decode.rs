//! Decoders: how the bytes of a key or record field become an instance name or a string
//! value (`docs/MODULE-SPEC.md`, "Decoders"). Lookups that need the system (disk names,
//! kernel symbols, cgroup paths, command names) are cached.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod names {
    include!(concat!(env!("OUT_DIR"), "/names.rs"));
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoder {
    Uint,
    Int,
    Hex,
    String,
    /// NUL-separated strings (an argument vector), joined by spaces.
    Argv,
    Pid,
    PidComm,
    PidCmd,
    Disk,
    Ksym,
    Syscall,
    Errno,
    Ipv4,
    Ipv6,
    Inet,
    Port,
    Cgroup,
    Static(BTreeMap<i64, String>),
    /// A bit mask: the names of its set bits (by bit number), joined by " | ".
    Bits(BTreeMap<i64, String>),
    /// A kernel enum's value: its enumerator's name, from the running kernel's BTF, less the
    /// first of `strip` it starts with.
    Enum {
        name: String,
        strip: Vec<String>,
    },
}

/// What a decoder needs of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// An integer of 1-8 bytes.
    Int,
    /// A `char` array.
    Text,
    /// Exactly this many bytes.
    Bytes(usize),
}

impl Decoder {
    /// The `enum` decoder of kernel enum `name` (an error unless it is a C identifier).
    pub fn kernel_enum(name: &str, strip: Vec<String>) -> Result<Decoder, String> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("enum = {name:?} is not the name of a C enum"));
        }
        Ok(Decoder::Enum {
            name: name.into(),
            strip,
        })
    }

    pub fn parse(name: &str, values: Option<BTreeMap<i64, String>>) -> Result<Decoder, String> {
        let d = match name {
            "uint" => Decoder::Uint,
            "int" => Decoder::Int,
            "hex" => Decoder::Hex,
            "string" => Decoder::String,
            "argv" => Decoder::Argv,
            "pid" => Decoder::Pid,
            "pid_comm" => Decoder::PidComm,
            "pid_cmd" => Decoder::PidCmd,
            "disk" => Decoder::Disk,
            "ksym" => Decoder::Ksym,
            "syscall" => Decoder::Syscall,
            "errno" => Decoder::Errno,
            "ipv4" => Decoder::Ipv4,
            "ipv6" => Decoder::Ipv6,
            "inet" => Decoder::Inet,
            "port" => Decoder::Port,
            "cgroup" => Decoder::Cgroup,
            "enum" => return Err("the enum decoder needs enum = \"<kernel enum name>\"".into()),
            "static" => {
                return values.map(Decoder::Static).ok_or_else(|| {
                    "the static decoder needs values = { \"0\" = \"name\", … }".into()
                })
            }
            "bits" => {
                let v = values
                    .ok_or("the bits decoder needs values = { \"0\" = \"name of bit 0\", … }")?;
                if let Some(b) = v.keys().find(|b| !(0..64).contains(*b)) {
                    return Err(format!("bits decoder: bit {b} is not 0-63"));
                }
                return Ok(Decoder::Bits(v));
            }
            o => {
                return Err(format!(
                "unknown decoder {o:?} (uint, int, hex, string, argv, pid, pid_comm, disk, ksym, \
syscall, errno, ipv4, ipv6, inet, port, cgroup, static, bits, enum)"
            ))
            }
        };
        if values.is_some() {
            return Err("values = { … } goes with decoder = \"static\" or \"bits\" only".into());
        }
        Ok(d)
    }

    pub fn need(&self) -> Need {
        match self {
            Decoder::String | Decoder::Argv => Need::Text,
            Decoder::Ipv6 | Decoder::Inet => Need::Bytes(16),
            _ => Need::Int,
        }
    }

    /// Decodes a field's bytes (native byte order, as the BPF program wrote them).
    pub fn decode(&self, b: &[u8]) -> String {
        match self {
            Decoder::String => text(b),
            Decoder::Argv => argv(b),
            Decoder::Ipv6 => match <[u8; 16]>::try_from(b) {
                Ok(a) => Ipv6Addr::from(a).to_string(),
                Err(_) => hex(b),
            },
            // IPv4 held as an IPv4-mapped IPv6 address (::ffff:a.b.c.d), as the tcp:*
            // tracepoints store it: the dotted quad; any other address: RFC 5952 text.
            Decoder::Inet => match <[u8; 16]>::try_from(b) {
                Ok(a) => {
                    let v6 = Ipv6Addr::from(a);
                    v6.to_ipv4_mapped()
                        .map_or_else(|| v6.to_string(), |v4| v4.to_string())
                }
                Err(_) => hex(b),
            },
            Decoder::Ipv4 => match <[u8; 4]>::try_from(b) {
                // Network order: the bytes are the address as written.
                Ok(a) => Ipv4Addr::from(a).to_string(),
                Err(_) => hex(b),
            },
            Decoder::Port => match <[u8; 2]>::try_from(b) {
                Ok(a) => u16::from_be_bytes(a).to_string(),
                Err(_) => uint(b).to_string(),
            },
            Decoder::Uint => uint(b).to_string(),
            Decoder::Int => int(b).to_string(),
            Decoder::Hex => format!("{:#x}", uint(b)),
            Decoder::Pid => format!("{:06}", uint(b)),
            Decoder::PidComm => pid_named(uint(b), comm_of),
            Decoder::PidCmd => pid_named(uint(b), cmd_of),
            Decoder::Disk => disk_name(uint(b) as u32),
            Decoder::Ksym => ksym(uint(b)),
            Decoder::Syscall => {
                let n = int(b);
                lookup(names::SYSCALLS, n).map_or_else(|| format!("syscall_{n}"), str::to_string)
            }
            Decoder::Errno => {
                let n = int(b).abs();
                lookup(names::ERRNOS, n).map_or_else(|| n.to_string(), str::to_string)
            }
            Decoder::Cgroup => cgroup_path(uint(b)),
            Decoder::Static(m) => {
                let n = int(b);
                m.get(&n).cloned().unwrap_or_else(|| n.to_string())
            }
            Decoder::Bits(m) => bit_names(m, uint(b)),
            Decoder::Enum { name, strip } => {
                let n = int(b);
                match kernel_enum(name).get(&n) {
                    Some(e) => strip
                        .iter()
                        .find_map(|p| e.strip_prefix(p.as_str()).filter(|r| !r.is_empty()))
                        .unwrap_or(e)
                        .to_string(),
                    None => n.to_string(),
                }
            }
        }
    }
}

impl Decoder {
    /// Decodes the PID `b` of a process that started at `start` (a key part with `start =
    /// "<field>"`: any value that differs between two processes given the same PID, e.g. the
    /// group leader's `start_boottime`). `pid_cmd` and `pid_comm` read the name from /proc
    /// once per (PID, start) and keep it while the process is asked for ([`ProcNames`]); other
    /// decoders ignore `start`.
    pub fn decode_process(&self, b: &[u8], start: u64) -> String {
        let (read, cmd): (fn(u64) -> Option<String>, bool) = match self {
            Decoder::PidCmd => (cmd_of, true),
            Decoder::PidComm => (comm_of, false),
            _ => return self.decode(b),
        };
        let pid = uint(b);
        static NAMES: OnceLock<Mutex<ProcNames>> = OnceLock::new();
        pid_named(pid, |pid| {
            let mut n = NAMES.get_or_init(Default::default).lock().ok()?;
            n.name(pid, start, cmd, Instant::now(), || read(pid))
        })
    }
}

/// A process as PCP's proc PMDA names it, `"%06d <name>"`, from `name_of` (`?` if unknown).
fn pid_named(pid: u64, name_of: impl FnOnce(u64) -> Option<String>) -> String {
    format!("{pid:06} {}", name_of(pid).unwrap_or_else(|| "?".into()))
}

/// Process names by (PID, start time), read once per process lifetime. A PID seen with
/// another start time is another process: its name is read again and replaces the old one.
/// An entry not asked for during a whole [`ProcNames::SWEEP`] period (its process left the
/// map: it exited) is dropped at the next sweep, so the cache holds about the processes
/// asked for in the last two periods. A name that could not be read is not kept.
#[derive(Debug)]
struct ProcNames {
    /// (pid, argv0 or comm) -> (start, name, sweep generation of the last ask)
    names: HashMap<(u64, bool), (u64, String, u64)>,
    generation: u64,
    swept: Instant,
}

impl Default for ProcNames {
    fn default() -> Self {
        ProcNames {
            names: HashMap::new(),
            generation: 0,
            swept: Instant::now(),
        }
    }
}

impl ProcNames {
    const SWEEP: Duration = Duration::from_secs(60);

    /// The name of process (`pid`, `start`) (`cmd`: the argv0 kind of name, else the comm),
    /// from the cache or else from `read`.
    fn name(
        &mut self,
        pid: u64,
        start: u64,
        cmd: bool,
        now: Instant,
        read: impl FnOnce() -> Option<String>,
    ) -> Option<String> {
        if now.duration_since(self.swept) >= Self::SWEEP {
            let g = self.generation;
            self.names.retain(|_, e| e.2 == g);
            self.generation += 1;
            self.swept = now;
        }
        let g = self.generation;
        match self.names.get_mut(&(pid, cmd)) {
            Some(e) if e.0 == start => {
                e.2 = g;
                Some(e.1.clone())
            }
            _ => {
                let n = read()?;
                self.names.insert((pid, cmd), (start, n.clone(), g));
                Some(n)
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.names.len()
    }
}

/// NUL-separated strings joined by spaces (trailing NULs and padding dropped).
pub fn argv(b: &[u8]) -> String {
    let end = b.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1);
    b[..end]
        .split(|c| *c == 0)
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The names of the set bits of `n`, lowest first, joined by " | "; bits without a name
/// as one hexadecimal rest; `0x0` for none.
fn bit_names(names: &BTreeMap<i64, String>, n: u64) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut rest = n;
    for (bit, name) in names {
        if n & (1 << bit) != 0 {
            out.push(name.clone());
            rest &= !(1 << bit);
        }
    }
    if rest != 0 || out.is_empty() {
        out.push(format!("{rest:#x}"));
    }
    out.join(" | ")
}

fn lookup(table: &[(i64, &'static str)], n: i64) -> Option<&'static str> {
    table
        .binary_search_by_key(&n, |(k, _)| *k)
        .ok()
        .map(|i| table[i].1)
}

/// An unsigned integer of up to 8 bytes, native order.
pub fn uint(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    if cfg!(target_endian = "little") {
        a[..n].copy_from_slice(&b[..n]);
        u64::from_le_bytes(a)
    } else {
        a[8 - n..].copy_from_slice(&b[..n]);
        u64::from_be_bytes(a)
    }
}

/// A signed integer of up to 8 bytes, native order, sign-extended.
pub fn int(b: &[u8]) -> i64 {
    let n = b.len().clamp(1, 8);
    let shift = 64 - 8 * n as u32;
    ((uint(b) << shift) as i64) >> shift
}

/// Text up to the first NUL, invalid UTF-8 replaced.
pub fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Command name of a process, from /proc.
pub fn comm_of(pid: u64) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(s.trim_end().to_string())
}

/// A process as PCP's proc PMDA names its instances (after `%06d `): the first word of
/// argv[0], or `(comm)` when there is no command line (kernel threads), so a client that
/// lists both agents sees one name per process.
pub fn cmd_of(pid: u64) -> Option<String> {
    let c = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = c.split(|b| *b == 0).next().unwrap_or(&[]);
    let word = String::from_utf8_lossy(argv0)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_string();
    if word.is_empty() {
        return comm_of(pid).map(|c| format!("({c})"));
    }
    Some(word)
}

/// The enumerators of kernel enum `name` (value to name), read once from the running
/// kernel's BTF (/sys/kernel/btf/vmlinux): the kernel's own numbering, which changes
/// between releases (skb_drop_reason gains members in most). Empty if BTF or the enum is
/// missing.
type EnumNames = std::sync::Arc<BTreeMap<i64, String>>;

fn kernel_enum(name: &str) -> EnumNames {
    static CACHE: OnceLock<Mutex<HashMap<String, EnumNames>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(m) = cache.lock().ok().and_then(|c| c.get(name).cloned()) {
        return m;
    }
    let m = std::sync::Arc::new(enum_from_btf(name).unwrap_or_default());
    if let Ok(mut c) = cache.lock() {
        c.insert(name.to_string(), m.clone());
    }
    m
}

fn enum_from_btf(name: &str) -> Option<BTreeMap<i64, String>> {
    use libbpf_rs::btf::{types, Btf};
    let btf = Btf::from_vmlinux().ok()?;
    let mut out = BTreeMap::new();
    if let Some(e) = btf.type_by_name::<types::Enum>(name) {
        for m in e.iter() {
            out.insert(m.value, m.name?.to_string_lossy().into_owned());
        }
    } else {
        let e = btf.type_by_name::<types::Enum64>(name)?;
        for m in e.iter() {
            out.insert(
                i64::try_from(m.value).ok()?,
                m.name?.to_string_lossy().into_owned(),
            );
        }
    }
    Some(out)
}

/// Kernel name of block device `dev` (kernel dev_t encoding, major << 20 | minor).
pub fn disk_name(dev: u32) -> String {
    static CACHE: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(n) = cache.lock().ok().and_then(|c| c.get(&dev).cloned()) {
        return n;
    }
    let (major, minor) = (dev >> 20, dev & 0xf_ffff);
    let found = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let name = found.clone().unwrap_or_else(|| format!("{major}:{minor}"));
    if found.is_some() {
        if let Ok(mut c) = cache.lock() {
            c.insert(dev, name.clone());
        }
    }
    name
}

/// The kernel symbol at or before `addr` (`name+0x10` inside a function).
fn ksym(addr: u64) -> String {
    static SYMS: OnceLock<Vec<(u64, String)>> = OnceLock::new();
    let syms = SYMS.get_or_init(|| {
        let mut v: Vec<(u64, String)> = std::fs::read_to_string("/proc/kallsyms")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let a = u64::from_str_radix(it.next()?, 16).ok()?;
                let _ty = it.next()?;
                Some((a, it.next()?.to_string()))
            })
            .filter(|(a, _)| *a != 0)
            .collect();
        v.sort_unstable();
        v
    });
    match syms.partition_point(|(a, _)| *a <= addr) {
        0 => format!("{addr:#x}"),
        i => {
            let (a, n) = &syms[i - 1];
            if *a == addr {
                n.clone()
            } else {
                format!("{n}+{:#x}", addr - a)
            }
        }
    }
}

/// The cgroup v2 path of a cgroup id (the inode number of its directory).
fn cgroup_path(id: u64) -> String {
    static CACHE: OnceLock<Mutex<HashMap<u64, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().ok().and_then(|c| c.get(&id).cloned()) {
        return p;
    }
    // A miss re-walks the hierarchy (new cgroups appear); bounded by the tree's size.
    let mut found = HashMap::new();
    if let Some(root) = cgroup2_root() {
        if let Ok(m) = std::fs::metadata(&root) {
            use std::os::unix::fs::MetadataExt;
            walk_cgroups(&root, "/", m.dev(), &mut found, 0);
        }
    }
    let p = found
        .get(&id)
        .cloned()
        .unwrap_or_else(|| format!("cgroup_{id}"));
    if let Ok(mut c) = cache.lock() {
        *c = found;
    }
    p
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `…/unified` on hybrid
/// systems): BPF's cgroup ids are its inode numbers.
pub fn cgroup2_root() -> Option<std::path::PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })
}

/// Records the directories of the cgroup v2 file system (`dev`) under `dir`: a cgroup v1
/// hierarchy mounted below is another file system, with inode numbers of its own.
fn walk_cgroups(
    dir: &std::path::Path,
    rel: &str,
    dev: u64,
    out: &mut HashMap<u64, String>,
    depth: usize,
) {
    use std::os::unix::fs::MetadataExt;
    if depth > 32 {
        return;
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.dev() == dev => {
            out.insert(m.ino(), rel.to_string());
        }
        _ => return,
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let sub = if rel == "/" {
                format!("/{name}")
            } else {
                format!("{rel}/{name}")
            };
            walk_cgroups(&e.path(), &sub, dev, out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_text() {
        assert_eq!(Decoder::Uint.decode(&7u32.to_ne_bytes()), "7");
        assert_eq!(Decoder::Int.decode(&(-2i16).to_ne_bytes()), "-2");
        assert_eq!(Decoder::Hex.decode(&255u64.to_ne_bytes()), "0xff");
        assert_eq!(Decoder::Pid.decode(&42u32.to_ne_bytes()), "000042");
        assert_eq!(Decoder::String.decode(b"bash\0junk"), "bash");
        assert_eq!(Decoder::String.decode(b"full"), "full");
    }

    #[test]
    fn bit_masks() {
        let names = BTreeMap::from([
            (0, "RDONLY".to_string()),
            (1, "NOSUID".to_string()),
            (2, "NODEV".to_string()),
        ]);
        let d = Decoder::parse("bits", Some(names.clone())).unwrap();
        assert_eq!(d.decode(&0u64.to_ne_bytes()), "0x0");
        assert_eq!(d.decode(&6u64.to_ne_bytes()), "NOSUID | NODEV");
        assert_eq!(d.decode(&0x101u32.to_ne_bytes()), "RDONLY | 0x100");
        assert!(Decoder::parse("bits", None).is_err());
        assert!(Decoder::parse("bits", Some(BTreeMap::from([(64, "X".to_string())]))).is_err());
    }

    #[test]
    fn network_fields() {
        assert_eq!(Decoder::Ipv4.decode(&[127, 0, 0, 1]), "127.0.0.1");
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(Decoder::Ipv6.decode(&v6), "::1");
        assert_eq!(Decoder::Inet.decode(&v6), "::1");
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3];
        assert_eq!(Decoder::Inet.decode(&mapped), "10.1.2.3");
        assert_eq!(Decoder::Ipv6.decode(&mapped), "::ffff:10.1.2.3");
        assert_eq!(Decoder::parse("inet", None), Ok(Decoder::Inet));
        assert_eq!(Decoder::Port.decode(&8080u16.to_be_bytes()), "8080");
    }

    #[test]
    fn names_from_tables() {
        assert_eq!(Decoder::Errno.decode(&(-2i32).to_ne_bytes()), "ENOENT");
        assert_eq!(Decoder::Errno.decode(&13i32.to_ne_bytes()), "EACCES");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(Decoder::Syscall.decode(&257u32.to_ne_bytes()), "openat");
            assert_eq!(Decoder::Syscall.decode(&59u64.to_ne_bytes()), "execve");
        }
        let s = Decoder::parse("static", Some([(0, "read".to_string())].into())).unwrap();
        assert_eq!(s.decode(&0u8.to_ne_bytes()), "read");
        assert_eq!(s.decode(&5u8.to_ne_bytes()), "5");
        assert!(Decoder::parse("static", None).is_err());
        assert!(Decoder::parse("colour", None)
            .unwrap_err()
            .contains("unknown decoder"));
        assert!(Decoder::parse("enum", None)
            .unwrap_err()
            .contains("enum = "));
        assert!(Decoder::kernel_enum("a b", vec![]).is_err());
    }

    #[test]
    fn system_lookups() {
        let me = std::process::id() as u64;
        assert!(Decoder::PidComm
            .decode(&me.to_ne_bytes())
            .starts_with(&format!("{me:06} ")));
        // argv[0] of this test binary, as the proc PMDA would name it; kthreadd has none.
        let argv0 = std::env::args().next().unwrap();
        assert_eq!(
            Decoder::PidCmd.decode(&me.to_ne_bytes()),
            format!("{me:06} {argv0}")
        );
        assert_eq!(
            Decoder::PidCmd.decode(&2u32.to_ne_bytes()),
            "000002 (kthreadd)"
        );
        assert_eq!(disk_name((1 << 20) | 3), "1:3"); // /dev/null: a char device
                                                     // The root cgroup's id is its directory's inode.
        use std::os::unix::fs::MetadataExt;
        if let Some(m) = cgroup2_root().and_then(|r| std::fs::metadata(r).ok()) {
            assert_eq!(Decoder::Cgroup.decode(&m.ino().to_ne_bytes()), "/");
        }
        assert!(!Decoder::Ksym.decode(&0u64.to_ne_bytes()).is_empty());
    }

    /// A process's name is read once per (PID, start time); a reused PID (another start
    /// time) gets its own; entries not asked for during a sweep period go.
    #[test]
    fn process_names_cached_per_process_lifetime() {
        let mut n = ProcNames::default();
        let t0 = n.swept;
        let reads = std::cell::Cell::new(0);
        // The name of (pid, start) at `t`, where a read of /proc would give `fresh` (None: the
        // read fails); `reads` counts the reads that gave a name.
        let ask = |n: &mut ProcNames, pid, start, cmd, t, fresh: Option<&str>| {
            n.name(pid, start, cmd, t, || {
                let f = fresh.map(str::to_string);
                reads.set(reads.get() + f.is_some() as u32);
                f
            })
        };
        assert_eq!(
            ask(&mut n, 7, 100, true, t0, Some("old")).as_deref(),
            Some("old")
        );
        assert_eq!(
            ask(&mut n, 7, 100, true, t0, Some("new")).as_deref(),
            Some("old")
        );
        assert_eq!(reads.get(), 1, "one read per process lifetime");
        // The same PID, started later: another process.
        assert_eq!(
            ask(&mut n, 7, 200, true, t0, Some("new")).as_deref(),
            Some("new")
        );
        assert_eq!(
            ask(&mut n, 7, 200, true, t0, Some("x")).as_deref(),
            Some("new")
        );
        assert_eq!(reads.get(), 2);
        // The comm kind of name is kept apart; a failed read is not kept.
        assert_eq!(ask(&mut n, 7, 200, false, t0, None), None);
        assert_eq!(
            ask(&mut n, 7, 200, false, t0, Some("comm")).as_deref(),
            Some("comm")
        );
        assert_eq!(n.len(), 2);
        // Asked for in every period: kept; not asked for in a whole period: dropped.
        ask(&mut n, 8, 1, true, t0, Some("gone"));
        let t1 = t0 + ProcNames::SWEEP;
        assert_eq!(
            ask(&mut n, 7, 200, true, t1, Some("x")).as_deref(),
            Some("new")
        );
        assert_eq!(n.len(), 3, "entries asked for in the last period stay");
        let t2 = t1 + ProcNames::SWEEP;
        assert_eq!(
            ask(&mut n, 7, 200, true, t2, Some("x")).as_deref(),
            Some("new")
        );
        assert_eq!(
            n.len(),
            1,
            "pid 8 and the comm entry were not asked for since {t1:?}"
        );
        assert_eq!(reads.get(), 4);
        // Through the decoder: the name of this process, as the uncached decoder gives it.
        let me = std::process::id() as u64;
        assert_eq!(
            Decoder::PidCmd.decode_process(&me.to_ne_bytes(), 1),
            Decoder::PidCmd.decode(&me.to_ne_bytes())
        );
        assert_eq!(
            Decoder::Pid.decode_process(&me.to_ne_bytes(), 1),
            format!("{me:06}")
        );
    }

    /// Names from the running kernel's BTF; a value it lacks, the number.
    #[test]
    fn kernel_enum_names() {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return; // no BTF to read (the agent needs it anyway)
        }
        let d = Decoder::kernel_enum(
            "skb_drop_reason",
            vec!["SKB_DROP_REASON_".into(), "SKB_".into()],
        )
        .unwrap();
        let names = kernel_enum("skb_drop_reason");
        let (n, _) = names
            .iter()
            .find(|(_, v)| *v == "SKB_DROP_REASON_NO_SOCKET")
            .expect("NO_SOCKET in skb_drop_reason");
        assert_eq!(d.decode(&(*n as u32).to_ne_bytes()), "NO_SOCKET");
        let (c, _) = names
            .iter()
            .find(|(_, v)| *v == "SKB_CONSUMED")
            .expect("SKB_CONSUMED");
        assert_eq!(d.decode(&(*c as u32).to_ne_bytes()), "CONSUMED");
        assert_eq!(d.decode(&0x7fff_fff0u32.to_ne_bytes()), "2147483632");
        let plain = Decoder::kernel_enum("skb_drop_reason", vec![]).unwrap();
        assert_eq!(
            plain.decode(&(*n as u32).to_ne_bytes()),
            "SKB_DROP_REASON_NO_SOCKET"
        );
        let none = Decoder::kernel_enum("no_such_enum_here", vec![]).unwrap();
        assert_eq!(none.decode(&3u32.to_ne_bytes()), "3");
    }
}
