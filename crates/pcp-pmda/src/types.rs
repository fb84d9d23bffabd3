//! Plain-data descriptions of metrics, instance domains, values and errors.

use pcp_pmda_sys as sys;
use std::fmt;

/// Largest cluster number a PMID can hold (12 bits).
pub const MAX_CLUSTER: u32 = 0xfff;
/// Largest item number a PMID can hold (10 bits).
pub const MAX_ITEM: u32 = 0x3ff;
/// Largest PMDA domain number (9 bits).
pub const MAX_DOMAIN: u32 = 0x1ff;

/// A metric identifier within this agent's domain: cluster and item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pmid {
    pub cluster: u32,
    pub item: u32,
}

impl Pmid {
    pub const fn new(cluster: u32, item: u32) -> Self {
        Pmid { cluster, item }
    }
    /// The 32-bit PMID as PCP encodes it: domain (9 bits), cluster (12), item (10).
    pub const fn encode(self, domain: u32) -> u32 {
        (domain & MAX_DOMAIN) << 22 | (self.cluster & MAX_CLUSTER) << 10 | (self.item & MAX_ITEM)
    }
    pub const fn decode(raw: u32) -> Self {
        Pmid {
            cluster: (raw >> 10) & MAX_CLUSTER,
            item: raw & MAX_ITEM,
        }
    }
}

impl fmt::Display for Pmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.cluster, self.item)
    }
}

/// Encodes an instance domain serial within `domain` as PCP does (domain 9 bits, serial 22).
pub const fn indom_encode(domain: u32, serial: u32) -> u32 {
    (domain & MAX_DOMAIN) << 22 | (serial & 0x3f_ffff)
}

/// The value type of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    I32,
    U32,
    I64,
    U64,
    Float,
    Double,
    String,
    /// Event records (`PM_TYPE_EVENT`): each fetch gives a client the records that came
    /// since its previous fetch ([`crate::EventQueue`]).
    Event,
}

impl Type {
    pub(crate) fn raw(self) -> i32 {
        match self {
            Type::I32 => sys::PM_TYPE_32,
            Type::U32 => sys::PM_TYPE_U32,
            Type::I64 => sys::PM_TYPE_64,
            Type::U64 => sys::PM_TYPE_U64,
            Type::Float => sys::PM_TYPE_FLOAT,
            Type::Double => sys::PM_TYPE_DOUBLE,
            Type::String => sys::PM_TYPE_STRING,
            Type::Event => sys::PM_TYPE_EVENT,
        }
    }
}

/// The semantics of a metric's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Semantics {
    /// Monotonically increasing; clients rate-convert it.
    Counter,
    /// A value at a point in time, continuous domain.
    Instant,
    /// A value at a point in time that rarely changes (versions, states, configuration).
    Discrete,
}

impl Semantics {
    pub(crate) fn raw(self) -> i32 {
        match self {
            Semantics::Counter => sys::PM_SEM_COUNTER,
            Semantics::Instant => sys::PM_SEM_INSTANT,
            Semantics::Discrete => sys::PM_SEM_DISCRETE,
        }
    }
}

/// Dimensions and scales of a metric, as `pmUnits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Units {
    pub dim_space: i8,
    pub dim_time: i8,
    pub dim_count: i8,
    pub scale_space: u8,
    pub scale_time: u8,
    pub scale_count: i8,
}

impl Units {
    pub const NONE: Units = Units::new(0, 0, 0, 0, 0, 0);
    pub const COUNT: Units = Units::new(0, 0, 1, 0, 0, sys::PM_COUNT_ONE);
    pub const BYTES: Units = Units::new(1, 0, 0, sys::PM_SPACE_BYTE, 0, 0);
    pub const NSEC: Units = Units::new(0, 1, 0, 0, sys::PM_TIME_NSEC, 0);
    pub const USEC: Units = Units::new(0, 1, 0, 0, sys::PM_TIME_USEC, 0);
    pub const MSEC: Units = Units::new(0, 1, 0, 0, sys::PM_TIME_MSEC, 0);
    pub const SEC: Units = Units::new(0, 1, 0, 0, sys::PM_TIME_SEC, 0);

    pub const fn new(
        dim_space: i8,
        dim_time: i8,
        dim_count: i8,
        scale_space: u8,
        scale_time: u8,
        scale_count: i8,
    ) -> Self {
        Units {
            dim_space,
            dim_time,
            dim_count,
            scale_space,
            scale_time,
            scale_count,
        }
    }
    pub(crate) fn raw(self) -> sys::pmUnits {
        sys::pmUnits::new(
            self.dim_space,
            self.dim_time,
            self.dim_count,
            self.scale_space,
            self.scale_time,
            self.scale_count,
        )
    }
}

/// One metric: its identity, descriptor and help.
#[derive(Clone, Debug)]
pub struct Metric {
    pub pmid: Pmid,
    /// The full dotted name in the namespace, e.g. `bcc.proc.sysfork`.
    pub name: String,
    /// More names of the same metric (same PMID) in the namespace, e.g. an older agent's.
    pub aliases: Vec<String>,
    pub ty: Type,
    pub sem: Semantics,
    pub units: Units,
    /// Serial of the instance domain, or `None` for a singular metric.
    pub indom: Option<u32>,
    pub oneline: String,
    pub help: String,
}

/// How the members of an instance domain get their ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndomKind {
    /// Ids chosen by pmdaCache from the instance name and kept across restarts in
    /// `$PCP_VAR_DIR/config/pmda/<domain>.<serial>`.
    Cached,
    /// Ids chosen by the agent (e.g. a histogram bucket index), set with
    /// [`crate::Instances::set_fixed`].
    Fixed,
}

/// One instance domain.
#[derive(Clone, Debug)]
pub struct Indom {
    pub serial: u32,
    pub kind: IndomKind,
    pub oneline: String,
    pub help: String,
}

/// A fetched value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Float(f32),
    Double(f64),
    String(String),
    /// Event records, for a [`Type::Event`] metric.
    Events(Events),
}

/// What one client gets from an event metric at one fetch: the records that came since its
/// previous fetch, and how many it missed (dropped at the queue's memory bound).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Events {
    pub records: Vec<EventRecord>,
    pub missed: u64,
}

/// One event record: when it came, and its parameters, each the value of a metric (the PMID
/// names the parameter; clients look up its descriptor for the type and name).
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    pub time: std::time::SystemTime,
    pub params: Vec<(Pmid, Value)>,
}

/// Why a value cannot be returned. Each maps onto the PCP error a client sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PmdaError {
    #[error("unknown metric")]
    UnknownMetric,
    #[error("unknown instance")]
    UnknownInstance,
    #[error("no permission")]
    Permission,
    #[error("try again: value not available yet")]
    Again,
    #[error("metric not supported by this configuration")]
    NotSupported,
    #[error("bad store value")]
    BadStore,
    #[error("missing value")]
    NoValue,
    #[error("generic failure")]
    Generic,
}

impl PmdaError {
    pub fn code(self) -> i32 {
        match self {
            PmdaError::UnknownMetric => sys::PM_ERR_PMID,
            PmdaError::UnknownInstance => sys::PM_ERR_INST,
            PmdaError::Permission => sys::PM_ERR_PERMISSION,
            PmdaError::Again => sys::PM_ERR_AGAIN,
            PmdaError::NotSupported => sys::PM_ERR_APPVERSION,
            PmdaError::BadStore => sys::PM_ERR_BADSTORE,
            PmdaError::NoValue => sys::PM_ERR_VALUE,
            PmdaError::Generic => sys::PM_ERR_GENERIC,
        }
    }
}

/// Errors setting up the agent.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("metric {name}: {why}")]
    BadMetric { name: String, why: String },
    #[error("duplicate metric name {0}")]
    DuplicateName(String),
    #[error("duplicate PMID {0} ({1})")]
    DuplicatePmid(Pmid, String),
    #[error("libpcp_pmda: {0}")]
    Pcp(String),
    #[error("{0} contains a NUL byte")]
    Nul(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmid_encoding_matches_pcp() {
        // 149.2.0 as pminfo -m prints it: domain 149, cluster 2, item 0.
        let raw = Pmid::new(2, 0).encode(149);
        assert_eq!(raw, (149 << 22) | (2 << 10));
        assert_eq!(Pmid::decode(raw), Pmid::new(2, 0));
        assert_eq!(
            Pmid::decode(Pmid::new(4095, 1023).encode(511)),
            Pmid::new(4095, 1023)
        );
    }

    #[test]
    fn units_encode_like_pmunits() {
        assert_eq!(Units::BYTES.raw(), sys::pmUnits::new(1, 0, 0, 0, 0, 0));
        assert_eq!(Units::COUNT.raw().0, 1 << 20);
    }
}
