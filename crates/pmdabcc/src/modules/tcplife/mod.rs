//! `tcplife`: TCP sessions and their bytes per owning process (the original pcp-bcc-pmda's
//! `bcc.proc.io.net.tcp.rx`/`.tx`, after bcc's tcplife tool), or, with `layout = sessions`,
//! the table of recently closed sessions PCP's later Python module served.
//!
//! Kernel side (tcplife.bpf.c): sock:inet_sock_set_state follows each session from
//! SYN_SENT/SYN_RECV to TCP_CLOSE; OPEN and CLOSE records go over a BPF ring buffer to a
//! background thread here, so no session is lost between fetches. Open sessions are counted
//! live: at each refresh a BPF iterator over TCP sockets (iter/tcp) stores their current byte
//! counts in the sessions map, which is then read.

mod metrics;

use crate::bpf;
use crate::config::{ConfigError, ModuleConfig};
use crate::module::{
    IndomSpec, MapInfo, MetricSpec, Module, ModuleError, ModuleInstances, ModuleSpec, OptionKind,
    OptionSpec, ProgInfo,
};
use crate::process::ProcessFilter;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use metrics::*;
use pcp_pmda::{PmdaError, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::framework::events::Stream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

bpf::skeleton!("tcplife");

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "tcplife",
    summary: "TCP sessions and bytes per process (or recent sessions), from sock:inet_sock_set_state",
    default_cluster: Some(3),
    metrics: PROCESS_METRICS,
    indoms: PROCESS_INDOMS,
    options: &[
        OptionSpec { key: "layout", kind: OptionKind::Enum(&["process", "sessions"]), default: "process", doc: "process (default): per-process counters proc.io.net.tcp.rx/tx/sessions_*; sessions: the table of the most recently closed sessions (proc.io.net.tcp.pid, comm, laddr, lport, daddr, dport, rx, tx, duration), as PCP's Python tcplife served it" },
        OptionSpec { key: "session_count", kind: OptionKind::Integer { min: 1, max: 10_000 }, default: "20", doc: "sessions layout: how many recently closed sessions to serve (default 20, 1-10000)" },
        OptionSpec { key: "process", kind: OptionKind::Process, default: "", doc: "only sessions owned by these processes: PIDs, names, or regular expressions on the command line (re-scanned every [pmda] process_refresh seconds)" },
        OptionSpec { key: "lport", kind: OptionKind::Ports, default: "", doc: "only sessions with one of these local ports (comma list)" },
        OptionSpec { key: "dport", kind: OptionKind::Ports, default: "", doc: "only sessions with one of these remote ports (comma list)" },
        OptionSpec { key: "map_size", kind: OptionKind::Integer { min: 16, max: 4_194_304 }, default: "16384", doc: "most TCP sessions followed at once (default 16384); more are counted in proc.io.net.tcp.sessions_untracked" },
        OptionSpec { key: "buffer_page_count", kind: OptionKind::Integer { min: 1, max: 65_536 }, default: "256", doc: "ring buffer size in pages, a power of two (default 256); records that do not fit are counted in proc.io.net.tcp.events_lost" },
        OptionSpec { key: "retention", kind: OptionKind::Integer { min: 0, max: 86_400 }, default: "60", doc: "seconds an exited process's instances stay after their final values were served (default 60)" },
    ],
    layouts: &[("layout = sessions", metrics::SESSION_METRICS, metrics::SESSION_INDOMS)],
    create,
    min_kernel: Some("5.10"),
    program: None,
};

/// What a port filter map holds at most (the BPF maps' max_entries).
const MAX_PORTS: usize = 64;
/// An open session absent from the kernel's map this long lost its CLOSE record: its last
/// sampled bytes are folded into the closed totals.
const MISSING_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Process,
    Sessions,
}

fn create(_spec: &'static ModuleSpec, cfg: &ModuleConfig) -> Result<Box<dyn Module>, ConfigError> {
    let layout = match cfg.get("layout").map(str::trim) {
        None | Some("process") => Layout::Process,
        Some("sessions") => Layout::Sessions,
        Some(v) => {
            return Err(cfg.error("layout", format!("expected process or sessions, got {v:?}")))
        }
    };
    let session_count = cfg.get_u64("session_count", 20, 1..=10_000)? as usize;
    let filter = ProcessFilter::from_config(cfg, "process")?;
    let lports = cfg.get_ports("lport")?;
    let dports = cfg.get_ports("dport")?;
    for (k, v) in [("lport", &lports), ("dport", &dports)] {
        if v.len() > MAX_PORTS {
            return Err(cfg.error(k, format!("at most {MAX_PORTS} ports")));
        }
    }
    let map_size = cfg.get_u64("map_size", 16384, 16..=1 << 22)? as u32;
    let pages = cfg.get_u64("buffer_page_count", 256, 1..=1 << 16)?;
    if !pages.is_power_of_two() {
        return Err(cfg.error(
            "buffer_page_count",
            format!("expected a power of two, got {pages}"),
        ));
    }
    let retention = Duration::from_secs(cfg.get_u64("retention", 60, 0..=86_400)?);
    Ok(Box::new(Tcplife {
        layout,
        session_count,
        filter,
        lports,
        dports,
        map_size,
        pages: pages as u32,
        retention,
        skel: None,
        shared: Arc::new(Mutex::new(Shared::new(layout, session_count))),
        events: None,
        lost: 0,
        untracked: 0,
        by_inst: HashMap::new(),
        exits: HashMap::new(),
        recent: Vec::new(),
        fixed_set: false,
        filtered_pids: BTreeSet::new(),
    }))
}

/// An open session as user space knows it (from its OPEN record).
#[derive(Debug)]
struct OpenSession {
    pid: u32,
    rx: u64,
    tx: u64,
    missing_since: Option<Instant>,
}

/// Per-process totals of closed sessions.
#[derive(Debug, Default, Clone)]
struct ProcTotals {
    closed_rx: u64,
    closed_tx: u64,
    opened: u64,
    closed: u64,
    /// The process's start time (/proc/PID/stat), read when it first appeared: a PID that
    /// shows another start time later belongs to a new process.
    start: Option<u64>,
}

/// A process's start time (clock ticks after boot, /proc/PID/stat field 22); None once it
/// has exited.
fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command (field 2) is in parentheses and may hold spaces: count after its end.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

#[derive(Debug, Clone, PartialEq)]
struct ClosedSession {
    pid: u32,
    comm: String,
    laddr: String,
    lport: u16,
    daddr: String,
    dport: u16,
    rx: u64,
    tx: u64,
    duration_us: u32,
}

/// Current byte counts of open sessions: (socket, start) -> (rx, tx).
type Samples = HashMap<(u64, u64), (u64, u64)>;

/// State fed by the ring buffer thread, read at refresh.
#[derive(Debug)]
struct Shared {
    layout: Layout,
    session_count: usize,
    /// Keyed by (socket address, start time): a socket address can be reused.
    open: HashMap<(u64, u64), OpenSession>,
    procs: HashMap<u32, ProcTotals>,
    /// Most recent first.
    recent: VecDeque<ClosedSession>,
}

fn comm_of(c: &[std::os::raw::c_char]) -> String {
    let bytes: Vec<u8> = c
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn addr_of(family: u16, a: &[u8; 16]) -> String {
    const AF_INET: u16 = 2;
    if family == AF_INET {
        Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
    } else {
        Ipv6Addr::from(*a).to_string()
    }
}

impl Shared {
    fn new(layout: Layout, session_count: usize) -> Self {
        Shared {
            layout,
            session_count,
            open: HashMap::new(),
            procs: HashMap::new(),
            recent: VecDeque::new(),
        }
    }

    /// Takes one ring buffer record.
    fn apply(&mut self, e: &types::tcplife_event) {
        let key = (e.sk, e.start_ns);
        if e.kind as u32 == types::tcplife_kind::TCPLIFE_OPEN.0 {
            if self.layout == Layout::Process && !self.open.contains_key(&key) {
                self.open.insert(
                    key,
                    OpenSession {
                        pid: e.pid,
                        rx: 0,
                        tx: 0,
                        missing_since: None,
                    },
                );
                self.procs
                    .entry(e.pid)
                    .or_insert_with(|| ProcTotals::new(e.pid))
                    .opened += 1;
            }
        } else if e.kind as u32 == types::tcplife_kind::TCPLIFE_CLOSE.0 {
            log::debug!(
                "tcplife: session of PID {} closed ({} bytes received, {} sent, {} us)",
                e.pid,
                e.rx,
                e.tx,
                e.duration_ns / 1000
            );
            match self.layout {
                Layout::Process => {
                    let was_open = self.open.remove(&key).is_some();
                    let p = self
                        .procs
                        .entry(e.pid)
                        .or_insert_with(|| ProcTotals::new(e.pid));
                    if !was_open {
                        p.opened += 1;
                    }
                    p.closed += 1;
                    p.closed_rx += e.rx;
                    p.closed_tx += e.tx;
                }
                Layout::Sessions => {
                    self.recent.push_front(ClosedSession {
                        pid: e.pid,
                        comm: comm_of(&e.comm),
                        laddr: addr_of(e.family, &e.saddr),
                        lport: e.lport,
                        daddr: addr_of(e.family, &e.daddr),
                        dport: e.dport,
                        rx: e.rx,
                        tx: e.tx,
                        duration_us: u32::try_from(e.duration_ns / 1000).unwrap_or(u32::MAX),
                    });
                    self.recent.truncate(self.session_count);
                }
            }
        }
    }

    /// Takes the kernel's current byte counts of open sessions (`None`: could not be read).
    /// Open sessions the kernel no longer has for MISSING_GRACE lost their CLOSE record:
    /// their last values count as final.
    fn update_live(&mut self, samples: Option<&Samples>, now: Instant) {
        let Some(samples) = samples else { return };
        let mut gone = Vec::new();
        for (k, o) in self.open.iter_mut() {
            match samples.get(k) {
                Some(&(rx, tx)) => {
                    // max: the counters only grow; a sample never takes a value back
                    o.rx = o.rx.max(rx);
                    o.tx = o.tx.max(tx);
                    o.missing_since = None;
                }
                None => {
                    if now.duration_since(*o.missing_since.get_or_insert(now)) >= MISSING_GRACE {
                        gone.push(*k);
                    }
                }
            }
        }
        for k in gone {
            if let Some(o) = self.open.remove(&k) {
                let p = self
                    .procs
                    .entry(o.pid)
                    .or_insert_with(|| ProcTotals::new(o.pid));
                p.closed += 1;
                p.closed_rx += o.rx;
                p.closed_tx += o.tx;
            }
        }
    }

    /// Per process: [rx, tx, opened, closed, active], closed and open sessions together.
    fn totals(&self) -> HashMap<u32, [u64; 5]> {
        let mut out: HashMap<u32, [u64; 5]> = self
            .procs
            .iter()
            .map(|(pid, p)| (*pid, [p.closed_rx, p.closed_tx, p.opened, p.closed, 0]))
            .collect();
        for o in self.open.values() {
            let v = out.entry(o.pid).or_default();
            v[0] += o.rx;
            v[1] += o.tx;
            v[4] += 1;
        }
        out
    }
}

/// An exited process's instance, on its way out.
#[derive(Debug, Default)]
struct Exit {
    since: Option<Instant>,
    /// Refreshes that served its final values.
    served: u32,
}

struct Tcplife {
    layout: Layout,
    session_count: usize,
    filter: Option<ProcessFilter>,
    lports: Vec<u16>,
    dports: Vec<u16>,
    map_size: u32,
    pages: u32,
    retention: Duration,
    skel: Option<TcplifeSkel<'static>>,
    shared: Arc<Mutex<Shared>>,
    /// The ring buffer's consumer (the framework's event stream).
    events: Option<Stream>,
    lost: u64,
    untracked: u64,
    /// Process layout: instance id -> (pid, [rx, tx, opened, closed, active]).
    by_inst: HashMap<u32, (u32, [u64; 5])>,
    exits: HashMap<u32, Exit>,
    /// Sessions layout: most recent first.
    recent: Vec<ClosedSession>,
    fixed_set: bool,
    /// PIDs currently in the kernel's pids map.
    filtered_pids: BTreeSet<u32>,
}

impl ProcTotals {
    fn new(pid: u32) -> Self {
        ProcTotals {
            start: proc_start(pid),
            ..Default::default()
        }
    }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Hooks {
    iter: bool,
    io: bool,
}

impl Tcplife {
    fn load(&self, h: &Hooks) -> Result<TcplifeSkel<'static>, ModuleError> {
        let mut open = TcplifeSkelBuilder::default()
            .open(bpf::storage())
            .map_err(ModuleError::bpf("open"))?;
        open.maps
            .sessions
            .set_max_entries(self.map_size)
            .map_err(ModuleError::bpf("map_size"))?;
        open.maps
            .events
            .set_max_entries(self.pages * page_size())
            .map_err(ModuleError::bpf("buffer_page_count"))?;
        open.progs.tcplife_iter.set_autoload(h.iter);
        open.progs.tcplife_send.set_autoload(h.io);
        open.progs.tcplife_recv.set_autoload(h.io);
        {
            let ro = open
                .maps
                .rodata_data
                .as_deref_mut()
                .ok_or_else(|| ModuleError::Other("no .rodata in the BPF object".into()))?;
            ro.filter_pid = self.filter.is_some();
            ro.filter_lport = !self.lports.is_empty();
            ro.filter_dport = !self.dports.is_empty();
        }
        let mut skel = open.load().map_err(ModuleError::bpf("load"))?;
        for p in &self.lports {
            skel.maps
                .lports
                .update(&p.to_ne_bytes(), &[1], MapFlags::ANY)
                .map_err(ModuleError::bpf("lport"))?;
        }
        for p in &self.dports {
            skel.maps
                .dports
                .update(&p.to_ne_bytes(), &[1], MapFlags::ANY)
                .map_err(ModuleError::bpf("dport"))?;
        }
        skel.attach().map_err(ModuleError::bpf("attach"))?;
        Ok(skel)
    }

    /// Runs the TCP socket iterator (it stores current byte counts into the sessions map),
    /// then reads the map: (socket, start) -> (rx, tx).
    fn sample_live(&self) -> Option<Samples> {
        let skel = self.skel.as_ref()?;
        if let Some(link) = skel.links.tcplife_iter.as_ref() {
            match libbpf_rs::Iter::new(link) {
                Ok(mut it) => {
                    let mut sink = Vec::new();
                    if let Err(e) = it.read_to_end(&mut sink) {
                        log::warn!("tcplife: reading the TCP socket iterator: {e}");
                    }
                }
                Err(e) => log::warn!("tcplife: creating the TCP socket iterator: {e}"),
            }
        }
        let mut out = HashMap::new();
        let r = bpf::for_each_entry(&skel.maps.sessions, |k, v| {
            let sk = u64::from_ne_bytes(k.try_into().unwrap_or([0; 8]));
            let s: types::tcplife_session = bpf::from_bytes(v);
            out.insert((sk, s.start_ns), (s.rx, s.tx));
        });
        match r {
            Ok(_) => Some(out),
            Err(e) => {
                log::warn!("tcplife: reading the sessions map: {e}");
                None
            }
        }
    }

    fn read_stats(&mut self) {
        let Some(skel) = &self.skel else { return };
        if let Ok(Some(cpus)) = skel
            .maps
            .stats
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        {
            let (mut lost, mut untracked) = (0, 0);
            for c in cpus {
                let s: types::tcplife_stats = bpf::from_bytes(&c);
                lost += s.lost;
                untracked += s.untracked;
            }
            self.lost = lost;
            self.untracked = untracked;
        }
    }

    /// Brings the kernel's pids map in line with the process filter.
    fn rescan(&mut self) {
        let (Some(f), Some(skel)) = (self.filter.as_mut(), self.skel.as_ref()) else {
            return;
        };
        if !f.due() {
            return;
        }
        let now = f.scan();
        for pid in self.filtered_pids.difference(&now) {
            let _ = skel.maps.pids.delete(&pid.to_ne_bytes());
        }
        let mut kept = BTreeSet::new();
        for pid in &now {
            if self.filtered_pids.contains(pid)
                || skel
                    .maps
                    .pids
                    .update(&pid.to_ne_bytes(), &[1], MapFlags::ANY)
                    .is_ok()
            {
                kept.insert(*pid);
            } else {
                log::warn!("tcplife: the pids map is full: process {pid} is not followed");
            }
        }
        self.filtered_pids = kept;
    }
}

fn page_size() -> u32 {
    bpf::page_size()
}

fn inst_name(pid: u32) -> String {
    format!("{pid:06}")
}

impl Module for Tcplife {
    fn start(&mut self) -> Result<String, ModuleError> {
        if !bpf::kernel_has_tracepoint("sock", "inet_sock_set_state") {
            return Err(ModuleError::NoHook(
                "the kernel has no sock:inet_sock_set_state tracepoint (added in Linux 4.16)"
                    .into(),
            ));
        }
        let io = bpf::kernel_has_tracepoint("sock", "sock_send_length")
            && bpf::kernel_has_tracepoint("sock", "sock_recv_length");
        let mut notes = Vec::new();
        let skel = match self.load(&Hooks { iter: true, io }) {
            Ok(s) => s,
            Err(e) => {
                log::info!("tcplife: iter/tcp not usable ({e}); live sessions from sendmsg/recvmsg samples");
                notes.push(format!("iter/tcp passed over: {e}"));
                self.load(&Hooks { iter: false, io })?
            }
        };
        let iter = skel.links.tcplife_iter.is_some();
        // The ring buffer consumer: a thread of its own, so records are taken as they come.
        let shared = self.shared.clone();
        self.events = Some(Stream::start(
            &skel.maps.events,
            "tcplife",
            move |data: &[u8]| {
                let e: types::tcplife_event = bpf::from_bytes(data);
                lock(&shared).apply(&e);
            },
        )?);
        self.skel = Some(skel);
        self.rescan();
        let mut status = format!(
            "sock:inet_sock_set_state via tracepoint; owner of accepted sessions: {}; live bytes: {}; layout {}",
            if io { "first sendmsg/recvmsg (sock:sock_send_length/sock_recv_length tracepoints) or close" } else { "close only (no sock:sock_send_length/sock_recv_length tracepoints: kernel < 6.3)" },
            match (iter, io) {
                (true, _) => "iter/tcp at each fetch",
                (false, true) => "last sendmsg/recvmsg",
                (false, false) => "none (closed sessions only)",
            },
            if self.layout == Layout::Process { "process" } else { "sessions" },
        );
        if !notes.is_empty() {
            status.push_str(&format!(" ({})", notes.join("; ")));
        }
        Ok(status)
    }

    fn refresh(&mut self, inst: &mut ModuleInstances) -> Result<(), ModuleError> {
        if self.skel.is_none() {
            return Ok(());
        }
        self.read_stats();
        match self.layout {
            Layout::Sessions => {
                if !self.fixed_set {
                    let members: Vec<(u32, String)> = (0..self.session_count as u32)
                        .map(|i| (i, i.to_string()))
                        .collect();
                    inst.set_fixed(INDOM_SESSION, &members);
                    self.fixed_set = true;
                }
                self.recent = lock(&self.shared).recent.iter().cloned().collect();
            }
            Layout::Process => {
                let samples = self.sample_live();
                let totals = {
                    let mut sh = lock(&self.shared);
                    sh.update_live(samples.as_ref(), Instant::now());
                    sh.totals()
                };
                self.by_inst.clear();
                for (pid, v) in totals {
                    match inst.add(INDOM_PROCESS, &inst_name(pid)) {
                        Ok(id) => {
                            self.by_inst.insert(id, (pid, v));
                        }
                        Err(e) => log::warn!("tcplife: instance for process {pid}: {e}"),
                    }
                    if let Some(x) = self.exits.get_mut(&pid) {
                        if x.since.is_some() {
                            x.served += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn fetch(&self, item: u32, inst: Option<u32>) -> Result<Option<Value>, PmdaError> {
        if item == LOST {
            return Ok(Some(Value::U64(self.lost)));
        }
        if item == UNTRACKED {
            return Ok(Some(Value::U64(self.untracked)));
        }
        let inst = inst.ok_or(PmdaError::UnknownInstance)?;
        match self.layout {
            Layout::Process => {
                let idx = match item {
                    RX => 0,
                    TX => 1,
                    OPENED => 2,
                    CLOSED => 3,
                    ACTIVE => 4,
                    _ => return Err(PmdaError::UnknownMetric),
                };
                let (_, v) = self.by_inst.get(&inst).ok_or(PmdaError::UnknownInstance)?;
                Ok(Some(Value::U64(v[idx])))
            }
            Layout::Sessions => {
                if inst as usize >= self.session_count {
                    return Err(PmdaError::UnknownInstance);
                }
                let Some(s) = self.recent.get(inst as usize) else {
                    return Ok(None);
                };
                Ok(Some(match item {
                    S_PID => Value::U32(s.pid),
                    S_COMM => Value::String(s.comm.clone()),
                    S_LADDR => Value::String(s.laddr.clone()),
                    S_LPORT => Value::U32(s.lport.into()),
                    S_DADDR => Value::String(s.daddr.clone()),
                    S_DPORT => Value::U32(s.dport.into()),
                    S_TX => Value::U64(s.tx),
                    S_RX => Value::U64(s.rx),
                    S_DURATION => Value::U32(s.duration_us),
                    _ => return Err(PmdaError::UnknownMetric),
                }))
            }
        }
    }

    fn tick(&mut self, inst: &mut ModuleInstances) {
        self.rescan();
        if self.layout != Layout::Process || self.skel.is_none() {
            return;
        }
        // Retention: a process that exited and has no open session leaves once its final
        // values were served by two refreshes (one fetch interval) and `retention` passed.
        let now = Instant::now();
        let mut sh = lock(&self.shared);
        let busy: BTreeSet<u32> = sh.open.values().map(|o| o.pid).collect();
        let pids: Vec<u32> = sh.procs.keys().copied().collect();
        for pid in pids {
            let start = proc_start(pid);
            if let (Some(now_start), Some(p)) = (start, sh.procs.get_mut(&pid)) {
                if p.start.is_some_and(|s| s != now_start) {
                    // The PID was reused: the new process's instance starts from zero (a
                    // counter reset to PCP), its open sessions still count.
                    log::debug!("tcplife: {} is a new process (PID reused)", inst_name(pid));
                    *p = ProcTotals {
                        start: Some(now_start),
                        ..Default::default()
                    };
                    self.exits.remove(&pid);
                    continue;
                }
                p.start.get_or_insert(now_start);
            }
            if busy.contains(&pid) || start.is_some() {
                self.exits.remove(&pid);
                continue;
            }
            let x = self.exits.entry(pid).or_default();
            let since = *x.since.get_or_insert(now);
            if x.served >= 2 && now.duration_since(since) >= self.retention {
                sh.procs.remove(&pid);
                self.exits.remove(&pid);
                let name = inst_name(pid);
                if let Some(id) = inst.lookup(INDOM_PROCESS, &name) {
                    self.by_inst.remove(&id);
                }
                inst.cull(INDOM_PROCESS, &name);
            }
        }
    }

    fn layout(&self) -> Option<(&[MetricSpec], &[IndomSpec])> {
        match self.layout {
            Layout::Process => None,
            Layout::Sessions => Some((SESSION_METRICS, SESSION_INDOMS)),
        }
    }

    fn bpf_objects(&self) -> (Vec<ProgInfo>, Vec<MapInfo>) {
        let Some(s) = &self.skel else {
            return Default::default();
        };
        bpf::object_infos(s.object())
    }
}

impl Drop for Tcplife {
    fn drop(&mut self) {
        // Stop the consumer before the skeleton (and its ring buffer map) goes.
        self.events = None;
    }
}

// The record the ring buffer carries is the skeleton's type, generated from BTF: a
// compile-time check that it kept its shape.
bpf::pod!(types::tcplife_event, 5 * 8 + 2 * 4 + 4 * 2 + 2 * 16 + 16);
bpf::pod!(types::tcplife_session, 3 * 8 + 2 * 4 + 16);
bpf::pod!(types::tcplife_stats, 2 * 8);

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: u32, sk: u64, pid: u32, rx: u64, tx: u64) -> types::tcplife_event {
        types::tcplife_event {
            kind: kind as u16,
            sk,
            start_ns: 7,
            pid,
            rx,
            tx,
            ..Default::default()
        }
    }
    const OPEN: u32 = types::tcplife_kind::TCPLIFE_OPEN.0;
    const CLOSE: u32 = types::tcplife_kind::TCPLIFE_CLOSE.0;

    #[test]
    fn live_then_closed_counts_once_and_never_goes_back() {
        let mut s = Shared::new(Layout::Process, 20);
        s.apply(&ev(OPEN, 1, 100, 0, 0));
        s.apply(&ev(OPEN, 1, 100, 0, 0)); // a repeated record counts once
        let t0 = Instant::now();
        let mut live = HashMap::new();
        live.insert((1u64, 7u64), (500u64, 40u64));
        s.update_live(Some(&live), t0);
        assert_eq!(s.totals()[&100], [500, 40, 1, 0, 1]);
        live.insert((1, 7), (400, 30)); // an older sample does not take values back
        s.update_live(Some(&live), t0);
        assert_eq!(s.totals()[&100], [500, 40, 1, 0, 1]);
        s.apply(&ev(CLOSE, 1, 100, 1000, 41));
        assert_eq!(s.totals()[&100], [1000, 41, 1, 1, 0]);
        // a session whose OPEN was never seen counts as opened at its close
        s.apply(&ev(CLOSE, 2, 100, 10, 10));
        assert_eq!(s.totals()[&100], [1010, 51, 2, 2, 0]);
    }

    #[test]
    fn a_session_gone_without_close_record_is_folded_in() {
        let mut s = Shared::new(Layout::Process, 20);
        s.apply(&ev(OPEN, 1, 5, 0, 0));
        let t0 = Instant::now();
        let mut live = HashMap::new();
        live.insert((1u64, 7u64), (9u64, 3u64));
        s.update_live(Some(&live), t0);
        live.clear();
        s.update_live(Some(&live), t0);
        assert_eq!(
            s.totals()[&5],
            [9, 3, 1, 0, 1],
            "kept during the grace period"
        );
        s.update_live(Some(&live), t0 + MISSING_GRACE);
        assert_eq!(s.totals()[&5], [9, 3, 1, 1, 0]);
        s.update_live(None, t0 + MISSING_GRACE * 2);
        assert_eq!(s.totals()[&5], [9, 3, 1, 1, 0]);
    }

    #[test]
    fn sessions_layout_keeps_the_most_recent_first() {
        let mut s = Shared::new(Layout::Sessions, 2);
        for i in 0..3u64 {
            let mut e = ev(CLOSE, i, 10 + i as u32, i * 100, i);
            e.family = 10;
            e.saddr[15] = 1;
            e.daddr[15] = 1;
            e.lport = 80;
            e.dport = 40000 + i as u16;
            e.duration_ns = 2_500_000;
            for (d, c) in e.comm.iter_mut().zip(b"curl\0") {
                *d = *c as _;
            }
            s.apply(&e);
        }
        assert_eq!(s.recent.len(), 2);
        let r = &s.recent[0];
        assert_eq!(
            (r.pid, r.rx, r.dport, r.duration_us),
            (12, 200, 40002, 2500)
        );
        assert_eq!(
            (r.laddr.as_str(), r.daddr.as_str(), r.comm.as_str()),
            ("::1", "::1", "curl")
        );
        assert_eq!(s.recent[1].pid, 11);
        assert_eq!(
            addr_of(2, &[127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            "127.0.0.1"
        );
    }

    #[test]
    fn options_are_checked() {
        let bad = |k: &str, v: &str| {
            create(&SPEC, &ModuleConfig::for_test("tcplife", 3, &[(k, v)]))
                .err()
                .map(|e| e.key)
        };
        assert_eq!(bad("layout", "table"), Some(Some("layout".into())));
        assert_eq!(
            bad("buffer_page_count", "3"),
            Some(Some("buffer_page_count".into()))
        );
        assert_eq!(bad("dport", "http"), Some(Some("dport".into())));
        assert!(create(
            &SPEC,
            &ModuleConfig::for_test(
                "tcplife",
                3,
                &[
                    ("layout", "sessions"),
                    ("session_count", "5"),
                    ("lport", "80,443")
                ]
            )
        )
        .is_ok());
    }
}
