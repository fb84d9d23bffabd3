//! Event records (`PM_TYPE_EVENT`): a queue of raw records with a cursor per client context,
//! and their encoding into the packed arrays libpcp_pmda builds (`pmdaEventNewArray(3)`).
//!
//! Why the queue is ours and not libpcp_pmda's `pmdaEventQueue*`: its per-client cursor is
//! reset after every fetch (`queue_fetch` ends with `clientq->last = NULL`, so the next fetch
//! starts again at the head of the queue). With two clients that fetch at different rates,
//! the faster one is handed again the records still kept for the slower one, and takes them
//! from it (each record has one shared use count); for the same reason its "missed" count
//! (`queue_drop` only counts a drop when it is the client's `last` record) never grows
//! between fetches. Here each client has its own sequence number: a client gets every record
//! appended since its previous fetch exactly once, whatever the other clients do, and the
//! records dropped at the memory bound before it fetched them are counted for it alone.
//!
//! The queue is filled from any thread (an event consumer); fetches and the end of a context
//! come on the PMDA's thread. A queue only keeps records while some client has a cursor, and
//! only the records some client has yet to fetch.

use crate::types::{EventRecord, Events, Pmid, Value};
use pcp_pmda_sys as sys;
use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes a kept record costs besides its data (queue entry, time, allocation).
const RECORD_OVERHEAD: usize = 64;

/// A kept record: when it came, and its bytes (shared by the clients that fetch it).
pub type Queued = (SystemTime, Arc<[u8]>);

/// One client's position: the sequence number of the next record it gets.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    next: u64,
}

#[derive(Debug, Default)]
struct QueueState {
    records: VecDeque<Queued>,
    /// Sequence number of `records[0]`; `first + records.len()` is the next one appended.
    first: u64,
    bytes: usize,
    clients: HashMap<i32, Cursor>,
    appended: u64,
    dropped: u64,
}

impl QueueState {
    fn end(&self) -> u64 {
        self.first + self.records.len() as u64
    }

    fn pop_front(&mut self) {
        if let Some((_, r)) = self.records.pop_front() {
            self.bytes -= r.len() + RECORD_OVERHEAD;
            self.first += 1;
        }
    }

    /// Drops the records every client has fetched.
    fn trim(&mut self) {
        let min = self
            .clients
            .values()
            .map(|c| c.next)
            .min()
            .unwrap_or(self.end());
        while self.first < min && !self.records.is_empty() {
            self.pop_front();
        }
    }
}

/// Statistics of a queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Records appended since the queue was made.
    pub appended: u64,
    /// Records dropped at the memory bound before every client had fetched them.
    pub dropped: u64,
    /// Records kept now, and their bytes (with overhead).
    pub kept: usize,
    pub bytes: usize,
    /// Client contexts with a cursor.
    pub clients: usize,
}

/// A bounded queue of event records with a cursor per client context.
#[derive(Debug)]
pub struct EventQueue {
    name: String,
    max_bytes: usize,
    state: Mutex<QueueState>,
}

/// Every live queue, so that the end of a client context reaches them all.
fn registry() -> &'static Mutex<Vec<Weak<EventQueue>>> {
    static QUEUES: OnceLock<Mutex<Vec<Weak<EventQueue>>>> = OnceLock::new();
    QUEUES.get_or_init(Default::default)
}

/// Forgets `context` in every queue (its end-of-context notice came).
pub(crate) fn end_client(context: i32) {
    let mut queues = registry().lock().unwrap_or_else(|e| e.into_inner());
    queues.retain(|q| match q.upgrade() {
        Some(q) => {
            q.end_client(context);
            true
        }
        None => false,
    });
}

impl EventQueue {
    /// A queue keeping at most `max_bytes` of records (data plus a small overhead each):
    /// beyond that the oldest go, counted as missed for the clients that had not fetched
    /// them.
    pub fn new(name: &str, max_bytes: usize) -> Arc<EventQueue> {
        let q = Arc::new(EventQueue {
            name: name.to_string(),
            max_bytes,
            state: Mutex::new(QueueState::default()),
        });
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&q));
        q
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record (any thread). Kept only while some client has a cursor.
    pub fn append(&self, data: &[u8]) {
        let mut s = self.lock();
        s.appended += 1;
        if s.clients.is_empty() {
            s.first += 1;
            return;
        }
        let cost = data.len() + RECORD_OVERHEAD;
        if cost > self.max_bytes {
            s.first += 1;
            s.dropped += 1;
            return;
        }
        while s.bytes + cost > self.max_bytes && !s.records.is_empty() {
            s.pop_front();
            s.dropped += 1;
        }
        s.records.push_back((SystemTime::now(), Arc::from(data)));
        s.bytes += cost;
    }

    /// The records `context` has not fetched yet, oldest first, and how many of those it
    /// missed (dropped at the bound); moves its cursor past them. A context's first call
    /// starts its cursor: it gets what comes from then on.
    pub fn take(&self, context: i32) -> (Vec<Queued>, u64) {
        let mut s = self.lock();
        let end = s.end();
        let first = s.first;
        let Some(c) = s.clients.get_mut(&context) else {
            s.clients.insert(context, Cursor { next: end });
            return (Vec::new(), 0);
        };
        let missed = first.saturating_sub(c.next);
        let from = c.next.max(first);
        c.next = end;
        let skip = (from - first) as usize;
        let out = s.records.range(skip..).cloned().collect();
        s.trim();
        (out, missed)
    }

    /// Forgets `context` (the end of its context, or a client that lost access).
    pub fn end_client(&self, context: i32) {
        let mut s = self.lock();
        if s.clients.remove(&context).is_some() {
            s.trim();
        }
    }

    pub fn stats(&self) -> QueueStats {
        let s = self.lock();
        QueueStats {
            appended: s.appended,
            dropped: s.dropped,
            kept: s.records.len(),
            bytes: s.bytes,
            clients: s.clients.len(),
        }
    }
}

/// Packed event arrays for the values of one fetch: libpcp_pmda keeps each array's buffer
/// until the array is reset, and the fetch result points into it until it has been sent,
/// so an array is reused only by the next fetch. Only used on the PMDA's thread.
#[derive(Default)]
pub(crate) struct EventArrays {
    handles: Vec<i32>,
    used: usize,
}

fn timeval(t: SystemTime) -> libc::timeval {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    }
}

impl EventArrays {
    /// A new fetch began: the previous fetch's arrays may be reused.
    pub(crate) fn reset(&mut self) {
        self.used = 0;
    }

    /// Packs `ev` and returns the `pmValueBlock` to put in the fetch's `vbp`.
    pub(crate) fn encode(&mut self, ev: &Events) -> Result<*mut libc::c_void, i32> {
        if self.used == self.handles.len() {
            // SAFETY: plain allocation of a new array in libpcp_pmda's table.
            let h = unsafe { sys::pmdaEventNewArray() };
            if h < 0 {
                return Err(h);
            }
            self.handles.push(h);
        }
        let h = self.handles[self.used];
        self.used += 1;
        // SAFETY: h is an array we allocated; reset keeps its buffer for reuse.
        let sts = unsafe { sys::pmdaEventResetArray(h) };
        if sts < 0 {
            return Err(sts);
        }
        for r in &ev.records {
            add_record(h, r)?;
        }
        if ev.missed > 0 {
            let mut tv = timeval(SystemTime::now());
            let n = ev.missed.min(i32::MAX as u64) as i32;
            // SAFETY: valid array handle and timeval.
            let sts = unsafe { sys::pmdaEventAddMissedRecord(h, &mut tv, n) };
            if sts < 0 {
                return Err(sts);
            }
        }
        // SAFETY: valid array handle; the block stays valid until the array is next reset.
        let p = unsafe { sys::pmdaEventGetAddr(h) };
        if p.is_null() {
            return Err(sys::PM_ERR_GENERIC);
        }
        Ok(p)
    }
}

impl Drop for EventArrays {
    fn drop(&mut self) {
        for h in &self.handles {
            // SAFETY: arrays we allocated; nothing points into them once the PMDA stops.
            unsafe { sys::pmdaEventReleaseArray(*h) };
        }
    }
}

fn add_record(h: i32, r: &EventRecord) -> Result<(), i32> {
    let mut tv = timeval(r.time);
    // SAFETY: valid array handle and timeval.
    let sts = unsafe { sys::pmdaEventAddRecord(h, &mut tv, sys::PM_EVENT_FLAG_POINT) };
    if sts < 0 {
        return Err(sts);
    }
    for (pmid, v) in &r.params {
        add_param(h, *pmid, v)?;
    }
    Ok(())
}

/// The domain of parameter PMIDs: set by the runtime once (the agent's domain).
pub(crate) static DOMAIN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn add_param(h: i32, pmid: Pmid, v: &Value) -> Result<(), i32> {
    let raw = pmid.encode(DOMAIN.load(std::sync::atomic::Ordering::Relaxed));
    let mut atom = sys::pmAtomValue { ull: 0 };
    let mut keep: Option<CString> = None;
    let ty = match v {
        Value::I32(x) => {
            atom.l = *x;
            sys::PM_TYPE_32
        }
        Value::U32(x) => {
            atom.ul = *x;
            sys::PM_TYPE_U32
        }
        Value::I64(x) => {
            atom.ll = *x;
            sys::PM_TYPE_64
        }
        Value::U64(x) => {
            atom.ull = *x;
            sys::PM_TYPE_U64
        }
        Value::Float(x) => {
            atom.f = *x;
            sys::PM_TYPE_FLOAT
        }
        Value::Double(x) => {
            atom.d = *x;
            sys::PM_TYPE_DOUBLE
        }
        Value::String(s) => {
            let c = CString::new(s.replace('\0', " ")).map_err(|_| sys::PM_ERR_GENERIC)?;
            atom.cp = c.as_ptr() as *mut libc::c_char;
            keep = Some(c);
            sys::PM_TYPE_STRING
        }
        Value::Events(_) => return Err(sys::PM_ERR_TYPE),
    };
    // SAFETY: valid array handle; atom holds a value of `ty` (a string stays alive in `keep`
    // for the call, and libpcp_pmda copies it into the array).
    let sts = unsafe { sys::pmdaEventAddParam(h, raw, ty, &mut atom) };
    drop(keep);
    if sts < 0 {
        return Err(sts);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(v: &[Queued]) -> Vec<u8> {
        v.iter().map(|(_, d)| d[0]).collect()
    }

    #[test]
    fn each_client_gets_every_record_once() {
        let q = EventQueue::new("t1", 1 << 20);
        assert_eq!(q.take(1).0.len(), 0); // starts client 1
        q.append(&[1]);
        assert_eq!(q.take(2).0.len(), 0); // client 2 starts after record 1
        q.append(&[2]);
        q.append(&[3]);
        assert_eq!(seqs(&q.take(1).0), vec![1, 2, 3]);
        q.append(&[4]);
        assert_eq!(seqs(&q.take(1).0), vec![4]);
        assert_eq!(seqs(&q.take(1).0), Vec::<u8>::new());
        // The slow client still gets everything since its previous fetch, once.
        assert_eq!(seqs(&q.take(2).0), vec![2, 3, 4]);
        assert_eq!(seqs(&q.take(2).0), Vec::<u8>::new());
        assert_eq!(q.stats().kept, 0, "fetched by all: dropped");
    }

    #[test]
    fn nothing_is_kept_without_clients_and_an_ended_client_releases() {
        let q = EventQueue::new("t2", 1 << 20);
        q.append(&[1]);
        assert_eq!(q.stats().kept, 0);
        q.take(7);
        q.append(&[2]);
        assert_eq!(q.stats().kept, 1);
        end_client(7);
        assert_eq!(q.stats().kept, 0);
        assert_eq!(q.stats().clients, 0);
        assert_eq!(q.stats().appended, 2);
    }

    #[test]
    fn the_bound_drops_the_oldest_and_counts_them_per_client() {
        let q = EventQueue::new("t3", 3 * (1 + RECORD_OVERHEAD));
        q.take(1);
        q.take(2);
        for i in 0..5u8 {
            q.append(&[i]);
            if i == 0 {
                assert_eq!(seqs(&q.take(2).0), vec![0]);
            }
        }
        let (r, missed) = q.take(1);
        assert_eq!((seqs(&r), missed), (vec![2, 3, 4], 2));
        let (r, missed) = q.take(2);
        assert_eq!((seqs(&r), missed), (vec![2, 3, 4], 1));
        assert_eq!(q.stats().dropped, 2);
    }

    #[test]
    fn a_burst_within_the_bound_is_delivered_whole() {
        let q = EventQueue::new("t4", 20_000 * (100 + RECORD_OVERHEAD));
        q.take(3);
        for i in 0..20_000u32 {
            let mut d = [0u8; 100];
            d[..4].copy_from_slice(&i.to_ne_bytes());
            q.append(&d);
        }
        let (r, missed) = q.take(3);
        assert_eq!((r.len(), missed), (20_000, 0));
        assert!(r
            .iter()
            .enumerate()
            .all(|(i, (_, d))| d[..4] == (i as u32).to_ne_bytes()));
    }

    #[test]
    fn records_and_the_missed_count_are_packed() {
        let ev = Events {
            records: vec![
                EventRecord {
                    time: SystemTime::now(),
                    params: vec![
                        (Pmid::new(8, 1), Value::U32(42)),
                        (Pmid::new(8, 0), Value::String("sh".into())),
                    ],
                },
                EventRecord {
                    time: SystemTime::now(),
                    params: vec![],
                },
            ],
            missed: 5,
        };
        let mut a = EventArrays::default();
        let p = a.encode(&ev).expect("packed");
        // SAFETY: a packed pmEventArray: a 32-bit header (vlen:24, vtype:8), then nrecords.
        let (head, n) = unsafe { (*(p as *const u32), *(p as *const i32).add(1)) };
        assert_eq!(head >> 24, sys::PM_TYPE_EVENT as u32);
        assert_eq!(n, 3, "two records and the missed record");
        a.reset();
        let p = a.encode(&Events::default()).expect("packed");
        // SAFETY: as above.
        assert_eq!(unsafe { *(p as *const i32).add(1) }, 0);
    }
}
