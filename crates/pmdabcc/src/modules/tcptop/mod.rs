//! `tcptop`: the busiest TCP connections of the last `interval` seconds, by bytes, as the
//! original pmdabcc's tcptop served them (`bcc.proc.io.net.tcptop.*`, instances "0".."N-1",
//! 0 the busiest). The BPF side keeps cumulative bytes per (process, connection); each
//! interval this takes the deltas, sorts them and keeps the top `conn_count`.

use crate::bpf::{self, Hook};
use crate::config::{ConfigError, ModuleConfig};
use crate::framework::decode::{self, Decoder};
use crate::module::{
    IndomSpec, MapInfo, MetricSpec, Module, ModuleError, ModuleInstances, ModuleSpec, OptionKind,
    OptionSpec, ProgInfo,
};
use crate::process::ProcessFilter;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::MapCore;
use pcp_pmda::{IndomKind, PmdaError, Semantics, Type, Units, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

bpf::skeleton!("tcptop");

bpf::pod!(types::tcptop_key, 44);
bpf::pod!(types::tcptop_bytes, 16);

const INDOM: u32 = 0;
// Items in the original's metric order: part of the PMID, never renumber.
const PID: u32 = 0;
const COMM: u32 = 1;
const LADDR: u32 = 2;
const LPORT: u32 = 3;
const DADDR: u32 = 4;
const DPORT: u32 = 5;
const RX: u32 = 6;
const TX: u32 = 7;

static METRICS: &[MetricSpec] = &[
    MetricSpec::new(PID, "proc.io.net.tcptop.pid", Type::U32, Semantics::Instant, Units::NONE, Some(INDOM), false, "PID", "PID (thread group id) of the process that sent or received over the connection in the last interval."),
    MetricSpec::new(COMM, "proc.io.net.tcptop.comm", Type::String, Semantics::Instant, Units::NONE, Some(INDOM), true, "command", "Command name (comm) of the process, from /proc when the interval ended (the PID if it has exited)."),
    MetricSpec::new(LADDR, "proc.io.net.tcptop.laddr", Type::String, Semantics::Instant, Units::NONE, Some(INDOM), true, "local address", "Local IPv4 or IPv6 address of the connection."),
    MetricSpec::new(LPORT, "proc.io.net.tcptop.lport", Type::U32, Semantics::Instant, Units::NONE, Some(INDOM), true, "local port", "Local TCP port of the connection."),
    MetricSpec::new(DADDR, "proc.io.net.tcptop.daddr", Type::String, Semantics::Instant, Units::NONE, Some(INDOM), true, "destination address", "Remote IPv4 or IPv6 address of the connection."),
    MetricSpec::new(DPORT, "proc.io.net.tcptop.dport", Type::U32, Semantics::Instant, Units::NONE, Some(INDOM), true, "destination port", "Remote TCP port of the connection."),
    MetricSpec::new(RX, "proc.io.net.tcptop.rx", Type::U64, Semantics::Instant, Units::BYTES, Some(INDOM), false, "bytes received", "Bytes the process received over the connection in the last interval (the sum of what its receive calls returned, at sock:sock_recv_length; MSG_PEEK reads not counted)."),
    MetricSpec::new(TX, "proc.io.net.tcptop.tx", Type::U64, Semantics::Instant, Units::BYTES, Some(INDOM), false, "bytes sent", "Bytes the process sent over the connection in the last interval (the sum of what its send calls returned, at sock:sock_send_length)."),
];

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "tcptop",
    summary: "the busiest TCP connections (per process) of the last interval, by bytes, from sock:sock_send_length/sock_recv_length",
    default_cluster: Some(12),
    metrics: METRICS,
    indoms: &[IndomSpec {
        id: INDOM,
        kind: IndomKind::Fixed,
        oneline: "the busiest TCP connections of the last interval",
        help: "Instances \"0\" to conn_count-1: the TCP connections (per process) that moved the most bytes (received plus sent) in the last interval, \"0\" the busiest. Connections idle for the interval are not listed.",
    }],
    options: &[
        OptionSpec { key: "interval", kind: OptionKind::Integer { min: 1, max: 3600 }, default: "1", doc: "seconds over which connections are ranked and bytes counted" },
        OptionSpec { key: "conn_count", kind: OptionKind::Integer { min: 1, max: 10000 }, default: "20", doc: "how many connections to serve" },
        OptionSpec { key: "process", kind: OptionKind::Process, default: "", doc: "only connections of these processes" },
    ],
    layouts: &[],
    create,
    min_kernel: Some("6.12"),
    program: None,
};

fn create(_spec: &'static ModuleSpec, cfg: &ModuleConfig) -> Result<Box<dyn Module>, ConfigError> {
    Ok(Box::new(Tcptop {
        interval: Duration::from_secs(cfg.get_u64("interval", 1, 1..=3600)?),
        conn_count: cfg.get_u64("conn_count", 20, 1..=10000)? as usize,
        filter: ProcessFilter::from_config(cfg, "process")?,
        targets: BTreeSet::new(),
        skel: None,
        last: None,
        prev: HashMap::new(),
        rows: Vec::new(),
    }))
}

/// One served connection.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    pid: u32,
    comm: String,
    laddr: String,
    lport: u32,
    daddr: String,
    dport: u32,
    rx: u64,
    tx: u64,
}

struct Tcptop {
    interval: Duration,
    conn_count: usize,
    filter: Option<ProcessFilter>,
    /// Processes the filter matches now.
    targets: BTreeSet<u32>,
    skel: Option<TcptopSkel<'static>>,
    last: Option<Instant>,
    /// Cumulative bytes per connection at the last interval's end.
    prev: HashMap<Vec<u8>, (u64, u64)>,
    rows: Vec<Row>,
}

/// The rows of one interval: deltas of every connection that moved bytes, busiest first
/// (ties by key, so the order is stable), at most `n`. `keep(pid)` filters processes.
fn top(
    cur: &HashMap<Vec<u8>, (u64, u64)>,
    prev: &HashMap<Vec<u8>, (u64, u64)>,
    n: usize,
    keep: impl Fn(u32) -> bool,
) -> Vec<(Vec<u8>, u64, u64)> {
    let mut d: Vec<(Vec<u8>, u64, u64)> = cur
        .iter()
        .map(|(k, (rx, tx))| {
            let (prx, ptx) = prev.get(k).copied().unwrap_or((0, 0));
            (k.clone(), rx.saturating_sub(prx), tx.saturating_sub(ptx))
        })
        .filter(|(k, rx, tx)| rx + tx > 0 && keep(bpf::from_bytes::<types::tcptop_key>(k).pid))
        .collect();
    d.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then_with(|| a.0.cmp(&b.0)));
    d.truncate(n);
    d
}

fn row(k: &[u8], rx: u64, tx: u64) -> Row {
    let key: types::tcptop_key = bpf::from_bytes(k);
    let addr = |a: &[u8; 16]| match key.family {
        2 => Decoder::Ipv4.decode(&a[..4]),
        _ => Decoder::Ipv6.decode(a),
    };
    Row {
        pid: key.pid,
        comm: decode::comm_of(key.pid as u64).unwrap_or_else(|| key.pid.to_string()),
        laddr: addr(&key.saddr),
        lport: key.lport as u32,
        daddr: addr(&key.daddr),
        dport: key.dport as u32,
        rx,
        tx,
    }
}

impl Tcptop {
    fn load(&self, h: Hook) -> Result<TcptopSkel<'static>, ModuleError> {
        let mut open = TcptopSkelBuilder::default()
            .open(bpf::storage())
            .map_err(ModuleError::bpf("open"))?;
        let btf = h == Hook::TpBtf;
        open.progs.tcptop_send_btf.set_autoload(btf);
        open.progs.tcptop_recv_btf.set_autoload(btf);
        open.progs.tcptop_send_tp.set_autoload(!btf);
        open.progs.tcptop_recv_tp.set_autoload(!btf);
        let mut skel = open.load().map_err(ModuleError::bpf("load"))?;
        skel.attach().map_err(ModuleError::bpf("attach"))?;
        Ok(skel)
    }

    /// Ends an interval: ranks the connections by their bytes since the last one. Idle
    /// connections leave the map, so it holds the connections in use.
    fn sample(&mut self) {
        let Some(skel) = &self.skel else { return };
        let map = &skel.maps.conns;
        let mut cur = HashMap::new();
        if let Err(e) = bpf::for_each_entry(map, |k, v| {
            let b: types::tcptop_bytes = bpf::from_bytes(v);
            cur.insert(k.to_vec(), (b.rx, b.tx));
        }) {
            log::warn!("tcptop: read conns: {e}");
            return;
        }
        let targets = &self.targets;
        let filtered = self.filter.is_some();
        let best = top(&cur, &self.prev, self.conn_count, |pid| {
            !filtered || targets.contains(&pid)
        });
        self.rows = best.iter().map(|(k, rx, tx)| row(k, *rx, *tx)).collect();
        log::debug!(
            "tcptop: interval of {} rows from {} connections",
            self.rows.len(),
            cur.len()
        );
        // A connection idle for a whole interval goes; bytes that race with the delete are
        // lost (at most those of the call that ends the idleness).
        cur.retain(|k, v| {
            let moved = self.prev.get(k) != Some(v);
            if !moved {
                let _ = map.delete(k);
            }
            moved
        });
        self.prev = cur;
    }
}

impl Module for Tcptop {
    fn start(&mut self) -> Result<String, ModuleError> {
        let (skel, _, status) =
            bpf::first_working(&[Hook::TpBtf, Hook::Tracepoint], |h| self.load(h))?;
        self.skel = Some(skel);
        if let Some(f) = &mut self.filter {
            self.targets = f.scan();
        }
        self.last = Some(Instant::now());
        Ok(format!("sock_send_length, sock_recv_length via {status}"))
    }

    fn tick(&mut self, inst: &mut ModuleInstances) {
        if let Some(f) = self.filter.as_mut().filter(|f| f.due()) {
            self.targets = f.scan();
        }
        if self.last.is_some_and(|t| t.elapsed() >= self.interval) {
            self.last = Some(Instant::now());
            self.sample();
            let members: Vec<(u32, String)> = (0..self.rows.len() as u32)
                .map(|i| (i, i.to_string()))
                .collect();
            inst.set_fixed(INDOM, &members);
        }
    }

    fn fetch(&self, item: u32, inst: Option<u32>) -> Result<Option<Value>, PmdaError> {
        let r = self
            .rows
            .get(inst.ok_or(PmdaError::UnknownInstance)? as usize)
            .ok_or(PmdaError::UnknownInstance)?;
        Ok(Some(match item {
            PID => Value::U32(r.pid),
            COMM => Value::String(r.comm.clone()),
            LADDR => Value::String(r.laddr.clone()),
            LPORT => Value::U32(r.lport),
            DADDR => Value::String(r.daddr.clone()),
            DPORT => Value::U32(r.dport),
            RX => Value::U64(r.rx),
            TX => Value::U64(r.tx),
            _ => return Err(PmdaError::UnknownMetric),
        }))
    }

    fn bpf_objects(&self) -> (Vec<ProgInfo>, Vec<MapInfo>) {
        self.skel
            .as_ref()
            .map(|s| bpf::object_infos(s.object()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pid: u32, lport: u16) -> Vec<u8> {
        let k = types::tcptop_key {
            pid,
            family: 2,
            lport,
            dport: 80,
            saddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        bpf::as_bytes(&k).to_vec()
    }

    #[test]
    fn busiest_of_the_interval_first_idle_left_out() {
        let prev = HashMap::from([
            (key(1, 1), (100, 100)),
            (key(2, 2), (5, 0)),
            (key(3, 3), (0, 0)),
        ]);
        let cur = HashMap::from([
            (key(1, 1), (150, 100)),
            (key(2, 2), (5, 0)),
            (key(3, 3), (0, 900)),
            (key(4, 4), (7, 0)),
        ]);
        let t = top(&cur, &prev, 10, |_| true);
        let got: Vec<(u32, u64, u64)> = t
            .iter()
            .map(|(k, rx, tx)| (bpf::from_bytes::<types::tcptop_key>(k).pid, *rx, *tx))
            .collect();
        assert_eq!(got, vec![(3, 0, 900), (1, 50, 0), (4, 7, 0)]);
        assert_eq!(top(&cur, &prev, 1, |_| true).len(), 1);
        assert_eq!(top(&cur, &prev, 10, |p| p == 4).len(), 1);
        let r = row(&key(4, 4), 7, 0);
        assert_eq!(
            (r.laddr.as_str(), r.lport, r.daddr.as_str(), r.dport),
            ("127.0.0.1", 4, "10.1.2.3", 80)
        );
    }
}
