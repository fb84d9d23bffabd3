//! The PMDA runtime: set-up, the callbacks libpcp_pmda calls, and the poll loop.
//!
//! libpcp_pmda's callbacks carry no user pointer we can rely on, so the runtime state lives in
//! a thread-local, reached by every callback through [`with_state`]. Callbacks only ever run
//! inside `__pmdaMainPDU`, called from [`Pmda::run`]'s loop on that same thread.

use crate::cache::Instances;
use crate::clients::Clients;
use crate::types::*;
use log::{error, info, warn};
use pcp_pmda_sys as sys;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What pmcd told us about the client behind a context (PMDA_FLAG_AUTHORIZE). A client
/// pmcd sent no credentials for has none: `uid` `None` is an unauthenticated client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Client {
    pub context: i32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub user: Option<String>,
    pub pid: Option<u32>,
}

/// What a label request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelTarget {
    Domain,
    Cluster(u32),
    Item(Pmid),
    Indom(u32),
}

/// The agent behind the PMDA. All methods run on the PMDA's main thread.
pub trait Agent {
    /// Called once, connected to pmcd and before the loop: start slow work (e.g. loading
    /// BPF programs on a background thread) and call [`Control::ready`] when it is done.
    fn start(&mut self, _ctl: &mut Control) {}
    /// Before a fetch: bring the data of these clusters up to date.
    fn refresh(&mut self, _ctl: &mut Control, _clusters: &[u32]) {}
    /// Before an instance request on this indom: bring its members up to date.
    fn refresh_indom(&mut self, _ctl: &mut Control, _serial: u32) {}
    /// The value of one metric instance (`inst` is `None` for singular metrics).
    /// `Ok(None)` means "no value" (the instance has none right now).
    fn fetch(
        &mut self,
        pmid: Pmid,
        inst: Option<u32>,
        client: &Client,
    ) -> Result<Option<Value>, PmdaError>;
    /// A pmstore to one metric instance.
    fn store(
        &mut self,
        _ctl: &mut Control,
        _pmid: Pmid,
        _inst: Option<u32>,
        _value: Value,
        _client: &Client,
    ) -> Result<(), PmdaError> {
        Err(PmdaError::Permission)
    }
    /// Labels (a JSON object) of the domain, a cluster, a metric or an indom.
    fn labels(&self, _target: LabelTarget) -> Option<String> {
        None
    }
    /// Labels (a JSON object) of one instance.
    fn instance_labels(&self, _serial: u32, _inst: u32) -> Option<String> {
        None
    }
    /// A [`Waker`] was woken.
    fn wake(&mut self, _ctl: &mut Control) {}
    /// Periodic housekeeping, every [`Agent::tick_interval`].
    fn tick(&mut self, _ctl: &mut Control) {}
    fn tick_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
    /// SIGHUP arrived (e.g. reload the configuration).
    fn hangup(&mut self, _ctl: &mut Control) {}
    /// A client context closed.
    fn end_context(&mut self, _context: i32) {}
    /// The PMDA is about to exit (pmcd closed the channel, or SIGTERM/SIGINT).
    fn shutdown(&mut self) {}
}

/// Requests from an [`Agent`] to the runtime, and access to instance domains.
pub struct Control {
    pub instances: Instances,
    pending_table: Option<(Vec<Metric>, Vec<Indom>)>,
    ready: bool,
    labels_changed: bool,
    waker: Waker,
}

impl Control {
    /// Replaces the metric table, the namespace and the indom set. Clients are told the
    /// namespace changed.
    pub fn set_metrics(&mut self, metrics: Vec<Metric>, indoms: Vec<Indom>) {
        self.pending_table = Some((metrics, indoms));
    }
    /// The agent finished starting (logged once). pmcd was told the PMDA is ready when it
    /// connected: see [`Pmda::run`].
    pub fn ready(&mut self) {
        self.ready = true;
    }
    /// Tells clients that label metadata changed.
    pub fn labels_changed(&mut self) {
        self.labels_changed = true;
    }
    /// A handle background threads use to wake the main loop ([`Agent::wake`]).
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }
}

/// Wakes the PMDA's main loop from any thread.
#[derive(Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd with valid flags; the returned fd is owned by us from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Waker {
            // SAFETY: fd is a fresh descriptor nobody else owns.
            fd: Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }),
        })
    }
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }
    fn drain(&self) -> bool {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from our non-blocking eventfd.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) == 8 }
    }
}

/// How the PMDA was started.
#[derive(Clone, Debug)]
pub struct PmdaOptions {
    /// Agent name, e.g. "bcc": used for the log and the `agent` label.
    pub name: String,
    pub domain: u32,
    /// Log file; relative names land in pmcd's log directory (pmcd's working directory).
    pub logfile: String,
    /// Ask pmcd for client credentials (PMDA_FLAG_AUTHORIZE).
    pub authorize: bool,
    /// Send PM_ERR_PMDAREADY once connected: right under pmcd when its pmcd.conf line starts
    /// the agent `notready`; wrong under dbpmda, which does not expect that PDU.
    pub send_ready: bool,
}

struct MetricEntry {
    info: Metric,
    oneline: CString,
    help: CString,
}

struct State {
    dispatch: *mut sys::pmdaInterface,
    domain: u32,
    agent: Box<dyn Agent>,
    ctl: Control,
    table: Vec<sys::pmdaMetric>,
    by_pmid: HashMap<u32, MetricEntry>,
    indoms: HashMap<u32, Indom>,
    indom_table: Vec<sys::pmdaIndom>,
    tree: *mut sys::pmdaNameSpace,
    clients: Clients,
    /// Number of the PDU being answered (every PDU read counts): tells whether two
    /// attributes of a context came in one sequence.
    pdu: u64,
    /// The client of the PDU being answered, from its context (`pmdaExt.e_context`, which
    /// the PDU loop sets before any callback), never a remembered one: `pmdaGetContext()`
    /// is only updated by `pmdaFetch` and would name the previous fetch's client.
    current: Client,
    /// PMIDs whose values were refused for a type mismatch (logged once each).
    type_refused: HashSet<u32>,
    text_buf: CString,
    /// Packed event arrays of the fetch being answered.
    event_arrays: crate::events::EventArrays,
    ready_logged: bool,
    connected: bool,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Runs `f` on the runtime state. `None` when there is no state or it is already borrowed
/// (a callback re-entered while another one holds it: a bug we report rather than crash on).
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    STATE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut g) => g.as_mut().map(f),
        Err(_) => {
            error!("internal: PMDA state re-entered");
            None
        }
    })
}

/// Runs a callback body, turning a panic into PM_ERR_GENERIC: no unwind crosses into C.
fn guard(what: &str, f: impl FnOnce() -> i32) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error!("panic in {what} callback: {msg}");
            sys::PM_ERR_GENERIC
        }
    }
}

impl State {
    fn ext(&self) -> *mut sys::pmdaExt {
        // SAFETY: dispatch points at the boxed pmdaInterface that pmdaDaemon filled in; it
        // lives as long as the State.
        unsafe { (*self.dispatch).version.ext }
    }

    /// Makes the client of the PDU being answered current and returns it.
    fn begin(&mut self, ext: *mut sys::pmdaExt) -> Client {
        self.current = self.clients.get(pdu_context(ext));
        self.current.clone()
    }

    /// Validates and installs a new metric table and namespace.
    fn install_table(
        &mut self,
        metrics: Vec<Metric>,
        indoms: Vec<Indom>,
    ) -> Result<(), SetupError> {
        let mut by_pmid = HashMap::new();
        let mut names = BTreeSet::new();
        let mut table = Vec::with_capacity(metrics.len());
        for m in metrics {
            if m.pmid.cluster > MAX_CLUSTER || m.pmid.item > MAX_ITEM {
                return Err(SetupError::BadMetric {
                    name: m.name,
                    why: format!("PMID {} out of range", m.pmid),
                });
            }
            if let Some(s) = m.indom {
                if !indoms.iter().any(|i| i.serial == s) {
                    return Err(SetupError::BadMetric {
                        name: m.name,
                        why: format!("undeclared instance domain {s}"),
                    });
                }
            }
            for n in std::iter::once(&m.name).chain(&m.aliases) {
                if !names.insert(n.clone()) {
                    return Err(SetupError::DuplicateName(n.clone()));
                }
            }
            let raw = m.pmid.encode(self.domain);
            if let Some(prev) = by_pmid.get(&raw) {
                let prev: &MetricEntry = prev;
                return Err(SetupError::DuplicatePmid(
                    m.pmid,
                    format!("{} and {}", prev.info.name, m.name),
                ));
            }
            table.push(sys::pmdaMetric {
                m_user: std::ptr::null_mut(),
                m_desc: sys::pmDesc {
                    pmid: raw,
                    type_: m.ty.raw(),
                    indom: m
                        .indom
                        .map_or(sys::PM_INDOM_NULL, |s| indom_encode(self.domain, s)),
                    sem: m.sem.raw(),
                    units: m.units.raw(),
                },
            });
            let oneline =
                CString::new(m.oneline.clone()).map_err(|_| SetupError::Nul(m.name.clone()))?;
            let help = CString::new(m.help.clone()).map_err(|_| SetupError::Nul(m.name.clone()))?;
            by_pmid.insert(
                raw,
                MetricEntry {
                    info: m,
                    oneline,
                    help,
                },
            );
        }

        // The namespace: full dotted names to PMIDs.
        let mut tree: *mut sys::pmdaNameSpace = std::ptr::null_mut();
        // SAFETY: out-pointer to a fresh tree that we own and release below or in Drop.
        let sts = unsafe { sys::pmdaTreeCreate(&mut tree) };
        if sts < 0 {
            return Err(SetupError::Pcp(format!("pmdaTreeCreate failed: {sts}")));
        }
        let mut nnames = 0;
        for (raw, e) in &by_pmid {
            // Aliases first: the tree lists a PMID's names newest first, and clients name
            // a PMID (pmNameID: event parameters, pmval's headings) by the first.
            for n in e.info.aliases.iter().chain(std::iter::once(&e.info.name)) {
                let name = CString::new(n.clone()).map_err(|_| SetupError::Nul(n.clone()))?;
                // SAFETY: valid tree and NUL-terminated name (copied by libpcp).
                let sts = unsafe { sys::pmdaTreeInsert(tree, *raw, name.as_ptr()) };
                if sts < 0 {
                    // SAFETY: the tree we just created.
                    unsafe { sys::pmdaTreeRelease(tree) };
                    return Err(SetupError::BadMetric {
                        name: n.clone(),
                        why: format!("rejected by the namespace ({sts})"),
                    });
                }
                nnames += 1;
            }
        }
        // SAFETY: valid tree.
        unsafe { sys::pmdaTreeRebuildHash(tree, nnames) };
        if !self.tree.is_null() {
            // SAFETY: the previous tree, no longer referenced.
            unsafe { sys::pmdaTreeRelease(self.tree) };
        }
        self.tree = tree;

        for i in &indoms {
            self.ctl.instances.register(i.serial, i.kind);
        }
        self.indoms = indoms.into_iter().map(|i| (i.serial, i)).collect();
        self.table = table;
        self.by_pmid = by_pmid;
        self.rebuild_indom_table();
        // SAFETY: ext is valid; the table stays alive (and unmoved) in self.table until the
        // next install_table, which rehashes again.
        unsafe { sys::pmdaRehash(self.ext(), self.table.as_mut_ptr(), self.table.len() as i32) };
        if self.connected {
            // SAFETY: valid ext; tells pmcd (and through it, clients) the namespace changed.
            unsafe { sys::pmdaExtSetFlags(self.ext(), sys::PMDA_EXT_NAMES_CHANGE) };
        }
        Ok(())
    }

    /// Points libpcp_pmda at the current indom table (cached indoms have empty sets; their
    /// members come from pmdaCache).
    fn rebuild_indom_table(&mut self) {
        let mut serials: Vec<u32> = self.indoms.keys().copied().collect();
        serials.sort_unstable();
        let inst = &mut self.ctl.instances;
        self.indom_table = serials
            .iter()
            .map(|s| {
                let (n, set) = match inst.fixed.get_mut(s) {
                    Some(f) => (
                        f.ids.len() as i32,
                        if f.ids.is_empty() {
                            std::ptr::null_mut()
                        } else {
                            f.ids.as_mut_ptr()
                        },
                    ),
                    None => (0, std::ptr::null_mut()),
                };
                sys::pmdaIndom {
                    it_indom: indom_encode(self.domain, *s),
                    it_numinst: n,
                    it_set: set,
                }
            })
            .collect();
        inst.fixed_dirty = false;
        let ext = self.ext();
        // SAFETY: ext is valid; the table lives in self.indom_table until replaced here.
        unsafe {
            (*ext).e_indoms = if self.indom_table.is_empty() {
                std::ptr::null_mut()
            } else {
                self.indom_table.as_mut_ptr()
            };
            (*ext).e_nindoms = self.indom_table.len() as i32;
        }
    }

    /// Applies what the agent asked for through [`Control`].
    fn apply(&mut self) {
        if let Some((m, i)) = self.ctl.pending_table.take() {
            if let Err(e) = self.install_table(m, i) {
                error!("metric table rejected: {e}");
            }
        }
        if self.ctl.instances.fixed_dirty {
            self.rebuild_indom_table();
        }
        self.ctl.instances.save();
        if self.ctl.labels_changed && self.connected {
            self.ctl.labels_changed = false;
            // SAFETY: valid ext.
            unsafe { sys::pmdaExtSetFlags(self.ext(), sys::PMDA_EXT_LABEL_CHANGE) };
        }
        if self.ctl.ready && !self.ready_logged {
            self.ready_logged = true;
            // The words of PCP's Python PMDAs (pmdabcc and others): scripts and PCP's QA
            // wait for this line before they fetch.
            info!("Ready to process requests.");
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        if !self.tree.is_null() {
            // SAFETY: our tree; nothing references it after the state is gone.
            unsafe { sys::pmdaTreeRelease(self.tree) };
        }
    }
}

// ---- conversions -------------------------------------------------------------------------

/// The PCP type a value carries.
fn value_type(v: &Value) -> i32 {
    match v {
        Value::I32(_) => sys::PM_TYPE_32,
        Value::U32(_) => sys::PM_TYPE_U32,
        Value::I64(_) => sys::PM_TYPE_64,
        Value::U64(_) => sys::PM_TYPE_U64,
        Value::Float(_) => sys::PM_TYPE_FLOAT,
        Value::Double(_) => sys::PM_TYPE_DOUBLE,
        Value::String(_) => sys::PM_TYPE_STRING,
        Value::Events(_) => sys::PM_TYPE_EVENT,
    }
}

/// Puts `v` into `atom` for a metric of type `ty`. A value of another type is refused with
/// PM_ERR_TYPE, never converted: a cast would truncate or wrap silently (a U64 counter
/// served as U32 wraps at 4 GiB and looks like a counter reset to every client).
fn value_to_atom(ty: i32, v: Value, atom: &mut sys::pmAtomValue) -> Result<i32, i32> {
    if value_type(&v) != ty {
        return Err(sys::PM_ERR_TYPE);
    }
    match v {
        Value::I32(x) => atom.l = x,
        Value::U32(x) => atom.ul = x,
        Value::I64(x) => atom.ll = x,
        Value::U64(x) => atom.ull = x,
        Value::Float(x) => atom.f = x,
        Value::Double(x) => atom.d = x,
        Value::String(s) => {
            let c = CString::new(s.replace('\0', " ")).map_err(|_| sys::PM_ERR_GENERIC)?;
            // SAFETY: strdup of a valid C string; libpcp_pmda frees it (PMDA_FETCH_DYNAMIC).
            let p = unsafe { libc::strdup(c.as_ptr()) };
            if p.is_null() {
                return Err(sys::PM_ERR_GENERIC);
            }
            atom.cp = p;
            return Ok(sys::PMDA_FETCH_DYNAMIC);
        }
        // Packed by the runtime's event arrays (see cb_fetch_value).
        Value::Events(_) => return Err(sys::PM_ERR_TYPE),
    }
    Ok(sys::PMDA_FETCH_STATIC)
}

fn type_name(ty: i32) -> &'static str {
    match ty {
        sys::PM_TYPE_32 => "32-bit int",
        sys::PM_TYPE_U32 => "32-bit unsigned int",
        sys::PM_TYPE_64 => "64-bit int",
        sys::PM_TYPE_U64 => "64-bit unsigned int",
        sys::PM_TYPE_FLOAT => "float",
        sys::PM_TYPE_DOUBLE => "double",
        sys::PM_TYPE_STRING => "string",
        sys::PM_TYPE_EVENT => "event",
        _ => "unknown type",
    }
}

/// The context of the PDU being answered: `__pmdaMainPDU` sets `e_context` from the PDU's
/// sender field before it calls any callback (PMDA_INTERFACE_5 and later).
fn pdu_context(ext: *mut sys::pmdaExt) -> i32 {
    if ext.is_null() {
        return -1;
    }
    // SAFETY: ext is the pmdaExt libpcp_pmda passed to the callback (or ours, the same one).
    unsafe { (*ext).e_context }
}

fn atom_to_value(ty: i32, atom: &sys::pmAtomValue) -> Option<Value> {
    // SAFETY: pmExtractValue filled the member matching `ty`.
    unsafe {
        Some(match ty {
            sys::PM_TYPE_32 => Value::I32(atom.l),
            sys::PM_TYPE_U32 => Value::U32(atom.ul),
            sys::PM_TYPE_64 => Value::I64(atom.ll),
            sys::PM_TYPE_U64 => Value::U64(atom.ull),
            sys::PM_TYPE_FLOAT => Value::Float(atom.f),
            sys::PM_TYPE_DOUBLE => Value::Double(atom.d),
            sys::PM_TYPE_STRING => {
                if atom.cp.is_null() {
                    return None;
                }
                let s = CStr::from_ptr(atom.cp).to_string_lossy().into_owned();
                libc::free(atom.cp.cast());
                Value::String(s)
            }
            _ => return None,
        })
    }
}

fn add_labels(lp: *mut *mut sys::pmLabelSet, json: &str) -> i32 {
    let Ok(c) = CString::new(json) else {
        return sys::PM_ERR_GENERIC;
    };
    // SAFETY: lp is the label-set pointer libpcp_pmda gave us; "%s" with one C string.
    unsafe { sys::pmdaAddLabels(lp, c"%s".as_ptr(), c.as_ptr()) }
}

// ---- callbacks -------------------------------------------------------------------------

unsafe extern "C" fn cb_fetch(
    n: libc::c_int,
    pmids: *mut sys::pmID,
    resp: *mut *mut sys::pmResult,
    ext: *mut sys::pmdaExt,
) -> libc::c_int {
    guard("fetch", || {
        let mut clusters: Vec<u32> = (0..n.max(0) as usize)
            // SAFETY: pmcd passes `n` PMIDs in `pmids`.
            .map(|i| Pmid::decode(unsafe { *pmids.add(i) }).cluster)
            .collect();
        clusters.sort_unstable();
        clusters.dedup();
        with_state(|s| {
            s.begin(ext);
            s.event_arrays.reset();
            s.agent.refresh(&mut s.ctl, &clusters);
            s.apply();
        });
        // SAFETY: forwarding pmcd's own arguments to the default fetch.
        unsafe { sys::pmdaFetch(n, pmids, resp, ext) }
    })
}

unsafe extern "C" fn cb_fetch_value(
    mdesc: *mut sys::pmdaMetric,
    inst: libc::c_uint,
    atom: *mut sys::pmAtomValue,
) -> libc::c_int {
    guard("fetch value", || {
        // SAFETY: pmdaFetch passes an entry of our metric table and a valid atom.
        let (raw, ty) = unsafe { ((*mdesc).m_desc.pmid, (*mdesc).m_desc.type_) };
        // SAFETY: as above: atom is the valid out-pointer pmdaFetch passes.
        let atom = unsafe { &mut *atom };
        let inst = (inst != sys::PM_IN_NULL).then_some(inst);
        with_state(
            |s| match s.agent.fetch(Pmid::decode(raw), inst, &s.current) {
                Ok(Some(Value::Events(ev))) if ty == sys::PM_TYPE_EVENT => {
                    match s.event_arrays.encode(&ev) {
                        Ok(p) => {
                            atom.vbp = p;
                            // The block belongs to the array, reused by the next fetch.
                            sys::PMDA_FETCH_STATIC
                        }
                        Err(e) => e,
                    }
                }
                Ok(Some(v)) => {
                    let got = value_type(&v);
                    value_to_atom(ty, v, atom).unwrap_or_else(|e| {
                        if e == sys::PM_ERR_TYPE && s.type_refused.insert(raw) {
                            let name = s.by_pmid.get(&raw).map_or("?", |m| m.info.name.as_str());
                            error!(
                                "internal: {name} ({}) is a {} metric but the agent gave a {} \
                             value: refused with PM_ERR_TYPE (logged once)",
                                Pmid::decode(raw),
                                type_name(ty),
                                type_name(got)
                            );
                        }
                        e
                    })
                }
                Ok(None) => sys::PMDA_FETCH_NOVALUES,
                Err(e) => e.code(),
            },
        )
        .unwrap_or(sys::PM_ERR_AGAIN)
    })
}

unsafe extern "C" fn cb_instance(
    indom: sys::pmInDom,
    inst: libc::c_int,
    name: *mut libc::c_char,
    result: *mut *mut sys::pmInResult,
    ext: *mut sys::pmdaExt,
) -> libc::c_int {
    guard("instance", || {
        with_state(|s| {
            s.begin(ext);
            s.agent.refresh_indom(&mut s.ctl, indom & 0x3f_ffff);
            s.apply();
        });
        // SAFETY: forwarding pmcd's own arguments to the default.
        unsafe { sys::pmdaInstance(indom, inst, name, result, ext) }
    })
}

unsafe extern "C" fn cb_text(
    ident: libc::c_int,
    ty: libc::c_int,
    buffer: *mut *mut libc::c_char,
    ext: *mut sys::pmdaExt,
) -> libc::c_int {
    guard("text", || {
        with_state(|s| {
            s.begin(ext);
            let help = ty & sys::PM_TEXT_HELP != 0;
            let text = if ty & sys::PM_TEXT_PMID != 0 {
                s.by_pmid.get(&(ident as u32)).map(|e| {
                    if help {
                        e.help.clone()
                    } else {
                        e.oneline.clone()
                    }
                })
            } else if ty & sys::PM_TEXT_INDOM != 0 {
                s.indoms.get(&((ident as u32) & 0x3f_ffff)).and_then(|i| {
                    CString::new(if help {
                        i.help.clone()
                    } else {
                        i.oneline.clone()
                    })
                    .ok()
                })
            } else {
                None
            };
            match text {
                Some(t) if !t.as_bytes().is_empty() => {
                    s.text_buf = t;
                    // SAFETY: buffer is libpcp's out-pointer; text_buf outlives the reply
                    // (it is only replaced by the next text request).
                    unsafe { *buffer = s.text_buf.as_ptr() as *mut libc::c_char };
                    0
                }
                _ => sys::PM_ERR_TEXT,
            }
        })
        .unwrap_or(sys::PM_ERR_TEXT)
    })
}

unsafe extern "C" fn cb_store(result: *mut sys::pmResult, ext: *mut sys::pmdaExt) -> libc::c_int {
    guard("store", || {
        with_state(|s| {
            let client = s.begin(ext);
            let res = result as *const sys::pmResultHead;
            // SAFETY: pmcd passes a well-formed pmResult: numpmid value sets, each with numval
            // values in valfmt.
            let nsets = unsafe { (*res).numpmid };
            let mut sts = 0;
            for i in 0..nsets.max(0) as usize {
                // SAFETY: pmcd passes a well-formed pmResult (see above).
                let vs = unsafe { *(*res).vset.as_ptr().add(i) };
                // SAFETY: i < numpmid: vset has that many entries.
                let (raw, numval, valfmt) = unsafe { ((*vs).pmid, (*vs).numval, (*vs).valfmt) };
                let Some(ty) = s.by_pmid.get(&raw).map(|e| e.info.ty.raw()) else {
                    sts = sys::PM_ERR_PMID;
                    break;
                };
                for j in 0..numval.max(0) as usize {
                    // SAFETY: j < numval: vlist has that many entries.
                    let v = unsafe { (*vs).vlist.as_ptr().add(j) };
                    let mut atom = sys::pmAtomValue { ull: 0 };
                    // SAFETY: v points at a value of this set, in valfmt; atom is ours.
                    let r = unsafe { sys::pmExtractValue(valfmt, v, ty, &mut atom, ty) };
                    if r < 0 {
                        return sys::PM_ERR_BADSTORE;
                    }
                    let Some(val) = atom_to_value(ty, &atom) else {
                        return sys::PM_ERR_BADSTORE;
                    };
                    // SAFETY: v points at a value of this set.
                    let inst = unsafe { (*v).inst } as u32;
                    let inst = (inst != sys::PM_IN_NULL).then_some(inst);
                    if let Err(e) = s
                        .agent
                        .store(&mut s.ctl, Pmid::decode(raw), inst, val, &client)
                    {
                        sts = e.code();
                        break;
                    }
                }
                if sts < 0 {
                    break;
                }
            }
            s.apply();
            sts
        })
        .unwrap_or(sys::PM_ERR_AGAIN)
    })
}

unsafe extern "C" fn cb_pmid(
    name: *const libc::c_char,
    pmid: *mut sys::pmID,
    _ext: *mut sys::pmdaExt,
) -> libc::c_int {
    guard("pmid", || {
        // SAFETY: forwarding to the tree lookup with pmcd's arguments and our tree.
        with_state(|s| unsafe { sys::pmdaTreePMID(s.tree, name, pmid) }).unwrap_or(sys::PM_ERR_NAME)
    })
}

unsafe extern "C" fn cb_name(
    pmid: sys::pmID,
    names: *mut *mut *mut libc::c_char,
    _ext: *mut sys::pmdaExt,
) -> libc::c_int {
    guard("name", || {
        // SAFETY: as above.
        with_state(|s| unsafe { sys::pmdaTreeName(s.tree, pmid, names) })
            .unwrap_or(sys::PM_ERR_PMID)
    })
}

unsafe extern "C" fn cb_children(
    name: *const libc::c_char,
    traverse: libc::c_int,
    offspring: *mut *mut *mut libc::c_char,
    status: *mut *mut libc::c_int,
    _ext: *mut sys::pmdaExt,
) -> libc::c_int {
    guard("children", || {
        // SAFETY: as above.
        with_state(|s| unsafe { sys::pmdaTreeChildren(s.tree, name, traverse, offspring, status) })
            .unwrap_or(sys::PM_ERR_NAME)
    })
}

unsafe extern "C" fn cb_attribute(
    ctx: libc::c_int,
    attr: libc::c_int,
    value: *const libc::c_char,
    len: libc::c_int,
    ext: *mut sys::pmdaExt,
) -> libc::c_int {
    guard("attribute", || {
        let text = if value.is_null() || len <= 0 {
            String::new()
        } else {
            // SAFETY: pmcd passes `len` bytes at `value` (NUL-terminated within them).
            let bytes = unsafe { std::slice::from_raw_parts(value as *const u8, len as usize) };
            String::from_utf8_lossy(bytes.split(|b| *b == 0).next().unwrap_or(&[])).into_owned()
        };
        // `ctx` is e_context, the PDU's sender, as libpcp_pmda passes it.
        with_state(|s| {
            s.clients.attribute(ctx, s.pdu, attr, &text);
            s.current = s.clients.get(ctx);
        });
        // SAFETY: forwarding pmcd's own arguments to the default (it only logs).
        unsafe { sys::pmdaAttribute(ctx, attr, value, len, ext) }
    })
}

unsafe extern "C" fn cb_label(
    ident: libc::c_int,
    ty: libc::c_int,
    lp: *mut *mut sys::pmLabelSet,
    ext: *mut sys::pmdaExt,
) -> libc::c_int {
    guard("label", || {
        with_state(|s| {
            s.begin(ext);
        });
        // SAFETY: forwarding pmcd's own arguments; for PM_LABEL_INSTANCES this calls
        // cb_instance_label per instance.
        let base = unsafe { sys::pmdaLabel(ident, ty, lp, ext) };
        if base < 0 || ty & sys::PM_LABEL_INSTANCES != 0 {
            return base;
        }
        let target = if ty & sys::PM_LABEL_DOMAIN != 0 {
            LabelTarget::Domain
        } else if ty & sys::PM_LABEL_CLUSTER != 0 {
            LabelTarget::Cluster(Pmid::decode(ident as u32).cluster)
        } else if ty & sys::PM_LABEL_ITEM != 0 {
            LabelTarget::Item(Pmid::decode(ident as u32))
        } else if ty & sys::PM_LABEL_INDOM != 0 {
            LabelTarget::Indom((ident as u32) & 0x3f_ffff)
        } else {
            return base;
        };
        match with_state(|s| s.agent.labels(target)).flatten() {
            Some(json) => add_labels(lp, &json),
            None => base,
        }
    })
}

unsafe extern "C" fn cb_instance_label(
    indom: sys::pmInDom,
    inst: libc::c_uint,
    lp: *mut *mut sys::pmLabelSet,
) -> libc::c_int {
    guard("instance label", || {
        match with_state(|s| s.agent.instance_labels(indom & 0x3f_ffff, inst)).flatten() {
            Some(json) => add_labels(lp, &json),
            None => 0,
        }
    })
}

unsafe extern "C" fn cb_end_context(ctx: libc::c_int) {
    guard("end context", || {
        // `ctx` is e_context: the context pmcd's PM_ERR_NOTCONN notice names.
        with_state(|s| {
            s.clients.end(ctx);
            crate::events::end_client(ctx);
            s.current = s.clients.get(ctx);
            s.agent.end_context(ctx);
        });
        0
    });
}

// ---- signals ---------------------------------------------------------------------------

static SIG_FD: AtomicI32 = AtomicI32::new(-1);
static SIG_TERM: AtomicBool = AtomicBool::new(false);
static SIG_HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGHUP {
        SIG_HUP.store(true, Ordering::SeqCst);
    } else {
        SIG_TERM.store(true, Ordering::SeqCst);
    }
    let fd = SIG_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; 8 bytes to our eventfd.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

fn install_signals(fd: i32) {
    SIG_FD.store(fd, Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installing a handler that only does async-signal-safe work.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    // A closed pmcd pipe must end the loop through read/poll, not kill us mid-write.
    // SAFETY: ignoring SIGPIPE is always allowed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

// ---- the runtime -------------------------------------------------------------------------

/// The PMDA: construct with [`Pmda::new`], then [`Pmda::run`].
pub struct Pmda {
    opts: PmdaOptions,
    dispatch: Box<sys::pmdaInterface>,
}

impl Pmda {
    /// Sets up libpcp_pmda (`pmdaDaemon`) and opens the log: from here on stderr is the log.
    pub fn new(opts: PmdaOptions) -> Result<Self, SetupError> {
        let name = CString::new(opts.name.clone()).map_err(|_| SetupError::Nul("name".into()))?;
        let log =
            CString::new(opts.logfile.clone()).map_err(|_| SetupError::Nul("logfile".into()))?;
        // SAFETY: all-zero is a valid initial pmdaInterface (pmdaDaemon fills it in).
        let mut dispatch: Box<sys::pmdaInterface> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: valid pointers; pmdaDaemon copies/keeps the strings (we leak them below so
        // they outlive the process's use of them).
        unsafe {
            sys::pmSetProgname(name.as_ptr());
            sys::pmdaDaemon(
                &mut *dispatch,
                sys::PMDA_INTERFACE_7,
                name.as_ptr(),
                opts.domain as i32,
                log.as_ptr(),
                std::ptr::null(),
            );
        }
        std::mem::forget(name);
        std::mem::forget(log);
        if dispatch.status != 0 {
            return Err(SetupError::Pcp(format!(
                "pmdaDaemon failed: {}",
                dispatch.status
            )));
        }
        // SAFETY: dispatch was initialised by pmdaDaemon.
        unsafe { sys::pmdaOpenLog(&mut *dispatch) };
        Ok(Pmda { opts, dispatch })
    }

    /// Connects to pmcd and serves until pmcd closes the channel or a SIGTERM/SIGINT.
    /// `metrics`/`indoms` are the initial table (the agent may replace it later).
    pub fn run(
        mut self,
        agent: Box<dyn Agent>,
        metrics: Vec<Metric>,
        indoms: Vec<Indom>,
    ) -> Result<(), SetupError> {
        let d: *mut sys::pmdaInterface = &mut *self.dispatch;
        // SAFETY: d is the boxed, initialised dispatch structure; we only set callbacks.
        unsafe {
            if self.opts.authorize {
                sys::pmdaSetCommFlags(d, sys::PMDA_FLAG_AUTHORIZE);
            }
            let v = &mut (*d).version;
            v.fetch = Some(cb_fetch);
            v.instance = Some(cb_instance);
            v.text = Some(cb_text);
            v.store = Some(cb_store);
            v.pmid = Some(cb_pmid);
            v.name = Some(cb_name);
            v.children = Some(cb_children);
            v.attribute = Some(cb_attribute);
            v.label = Some(cb_label);
            sys::pmdaSetFetchCallBack(d, Some(cb_fetch_value));
            sys::pmdaSetLabelCallBack(d, Some(cb_instance_label));
            sys::pmdaSetEndContextCallBack(d, Some(cb_end_context));
            sys::pmdaInit(d, std::ptr::null_mut(), 0, std::ptr::null_mut(), 0);
            if (*d).status != 0 {
                return Err(SetupError::Pcp(format!("pmdaInit failed: {}", (*d).status)));
            }
        }
        let waker = Waker::new().map_err(|e| SetupError::Pcp(format!("eventfd: {e}")))?;
        let sigwaker = Waker::new().map_err(|e| SetupError::Pcp(format!("eventfd: {e}")))?;
        install_signals(sigwaker.fd.as_raw_fd());
        crate::events::DOMAIN.store(self.opts.domain, Ordering::Relaxed);
        let mut state = State {
            dispatch: d,
            domain: self.opts.domain,
            agent,
            ctl: Control {
                instances: Instances::new(self.opts.domain),
                pending_table: None,
                ready: false,
                labels_changed: false,
                waker: waker.clone(),
            },
            table: Vec::new(),
            by_pmid: HashMap::new(),
            indoms: HashMap::new(),
            indom_table: Vec::new(),
            tree: std::ptr::null_mut(),
            clients: Clients::default(),
            pdu: 0,
            current: Client::default(),
            type_refused: HashSet::new(),
            text_buf: CString::default(),
            event_arrays: Default::default(),
            ready_logged: false,
            connected: false,
        };
        state.install_table(metrics, indoms)?;
        STATE.with(|c| *c.borrow_mut() = Some(state));

        // Connect first: pmcd gives the handshake only a few seconds. Slow work comes after.
        // SAFETY: initialised dispatch.
        unsafe { sys::pmdaConnect(d) };
        // SAFETY: as above.
        if unsafe { (*d).status } != 0 {
            // SAFETY: as above: initialised dispatch.
            let st = unsafe { (*d).status };
            STATE.with(|c| c.borrow_mut().take());
            return Err(SetupError::Pcp(format!("pmdaConnect failed: {st}")));
        }
        // Ready at once, before the agent's slow start (which runs off this thread): while
        // pmcd holds an agent "not ready" it drops its end-of-context notices
        // (NotifyEndContext, pmcd client.c), so a context number could change hands unseen
        // and keep its last owner's credentials, and it refuses every new authenticated
        // client with PM_ERR_AGAIN (DoAttributes, pmcd config.c). Metrics of modules still
        // loading answer PM_ERR_AGAIN meanwhile.
        if self.opts.send_ready {
            // SAFETY: connected dispatch, between PDUs: this error PDU is the first we send.
            unsafe { sys::pmdaSendError(d, sys::PM_ERR_PMDAREADY) };
            info!("connected to pmcd (PMDA ready announced; modules still loading answer PM_ERR_AGAIN)");
        } else {
            info!("connected (ready not announced: started without notready)");
        }
        with_state(|s| {
            s.connected = true;
            s.agent.start(&mut s.ctl);
            s.apply();
        });

        // SAFETY: initialised and connected dispatch.
        let infd = unsafe { sys::__pmdaInFd(d) };
        let tick = with_state(|s| s.agent.tick_interval()).unwrap_or(Duration::from_secs(1));
        let mut next_tick = Instant::now() + tick;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            let mut fds = [
                libc::pollfd {
                    fd: infd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: waker.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: sigwaker.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: three valid pollfds.
            let n = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    timeout.as_millis().min(60_000) as i32,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    error!("poll: {e}");
                    break;
                }
            }
            if fds[2].revents != 0 {
                sigwaker.drain();
            }
            if SIG_TERM.load(Ordering::SeqCst) {
                info!("terminating on signal");
                break;
            }
            if SIG_HUP.swap(false, Ordering::SeqCst) {
                with_state(|s| {
                    s.agent.hangup(&mut s.ctl);
                    s.apply();
                });
            }
            if fds[0].revents != 0 {
                with_state(|s| s.pdu += 1);
                // SAFETY: connected dispatch; processes exactly one PDU, calling our callbacks.
                if unsafe { sys::__pmdaMainPDU(d) } < 0 {
                    info!("pmcd closed the channel");
                    break;
                }
            }
            if fds[1].revents != 0 && waker.drain() {
                with_state(|s| {
                    s.agent.wake(&mut s.ctl);
                    s.apply();
                });
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + tick;
                with_state(|s| {
                    s.agent.tick(&mut s.ctl);
                    s.apply();
                });
            }
        }
        // Safety net: once pmcd is gone nothing may keep the agent alive. If the orderly
        // shutdown (dropping modules, joining their threads) has not finished in 5 s, leave at
        // once: the kernel releases every BPF program and map with the process anyway.
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(5));
            let msg = b"pmda: shutdown took over 5 s: exiting now\n";
            // SAFETY: write(2) of a static buffer to stderr (the log), then _exit(2): neither
            // takes a lock another thread might hold.
            unsafe {
                libc::write(2, msg.as_ptr().cast(), msg.len());
                libc::_exit(0);
            }
        });
        with_state(|s| s.agent.shutdown());
        if let Some(s) = STATE.with(|c| c.borrow_mut().take()) {
            drop(s);
        }
        warn!("exiting");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(ty: i32, v: Value) -> (Result<i32, i32>, sys::pmAtomValue) {
        let mut atom = sys::pmAtomValue { ull: 0 };
        let r = value_to_atom(ty, v, &mut atom);
        (r, atom)
    }

    #[test]
    fn values_of_the_declared_type_are_served() {
        let (r, a) = put(sys::PM_TYPE_U64, Value::U64(u64::MAX - 1));
        assert_eq!(r, Ok(sys::PMDA_FETCH_STATIC));
        // SAFETY: the member value_to_atom wrote.
        assert_eq!(unsafe { a.ull }, u64::MAX - 1);
        let (r, a) = put(sys::PM_TYPE_32, Value::I32(-7));
        assert_eq!(r, Ok(sys::PMDA_FETCH_STATIC));
        // SAFETY: as above.
        assert_eq!(unsafe { a.l }, -7);
        let (r, a) = put(sys::PM_TYPE_STRING, Value::String("a\0b".into()));
        assert_eq!(r, Ok(sys::PMDA_FETCH_DYNAMIC));
        // SAFETY: a strdup'ed C string we own now.
        unsafe {
            assert_eq!(CStr::from_ptr(a.cp).to_str(), Ok("a b"));
            libc::free(a.cp.cast());
        }
    }

    #[test]
    fn a_value_of_another_type_is_refused_not_cast() {
        // Narrowing would wrap, widening would hide the agent's bug: both refused.
        for (ty, v) in [
            (sys::PM_TYPE_U32, Value::U64(1 << 32)),
            (sys::PM_TYPE_U64, Value::U32(5)),
            (sys::PM_TYPE_32, Value::U32(u32::MAX)),
            (sys::PM_TYPE_U64, Value::I64(-1)),
            (sys::PM_TYPE_DOUBLE, Value::Float(0.5)),
            (sys::PM_TYPE_U64, Value::String("12".into())),
            (sys::PM_TYPE_STRING, Value::U64(12)),
        ] {
            let (r, a) = put(ty, v.clone());
            assert_eq!(r, Err(sys::PM_ERR_TYPE), "{v:?} as {}", type_name(ty));
            // SAFETY: the atom's initial value: nothing was written.
            assert_eq!(unsafe { a.ull }, 0, "{v:?} touched the atom");
        }
    }

    #[test]
    fn the_pdu_context_comes_from_the_ext() {
        // SAFETY: all-zero is a valid pmdaExt for reading one field.
        let mut ext: sys::pmdaExt = unsafe { std::mem::zeroed() };
        ext.e_context = 12;
        assert_eq!(pdu_context(&mut ext), 12);
        assert_eq!(pdu_context(std::ptr::null_mut()), -1);
    }
}
