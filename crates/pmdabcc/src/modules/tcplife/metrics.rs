//! The tcplife metric tables, one per `layout`. Items are part of the PMID: never renumber
//! them, and never give one item two meanings, in any layout (PCP clients and archives take
//! a PMID's descriptor as fixed). Both layouts live in the same cluster:
//! - `layout = sessions`: the table of recent sessions of PCP's Python tcplife (PCP 6.x),
//!   items 0-8 as it numbered them (positions in its metric list), the names the grafana-pcp
//!   "eBPF/BCC Overview" dashboard queries.
//! - `layout = process` (default): the original pcp-bcc-pmda's per-process counters
//!   (`bcc.proc.io.net.tcp.rx`/`.tx`) and our session counts, on items upstream never used
//!   in this cluster (it used 0-8).
//!
//! The two layouts share the names rx and tx (with different PMIDs), so only one layout is
//! served at a time.

use crate::module::{IndomSpec, MetricSpec};
use pcp_pmda::{IndomKind, Semantics, Type, Units};

// layout = process (items upstream never used in cluster 3)
pub const OPENED: u32 = 10;
pub const CLOSED: u32 = 11;
pub const ACTIVE: u32 = 12;
pub const RX: u32 = 13;
pub const TX: u32 = 14;
// layout = sessions (the Python module's list positions)
pub const S_PID: u32 = 0;
pub const S_COMM: u32 = 1;
pub const S_LADDR: u32 = 2;
pub const S_LPORT: u32 = 3;
pub const S_DADDR: u32 = 4;
pub const S_DPORT: u32 = 5;
pub const S_TX: u32 = 6;
pub const S_RX: u32 = 7;
pub const S_DURATION: u32 = 8;
// both layouts
pub const LOST: u32 = 20;
pub const UNTRACKED: u32 = 21;

/// Module-local indom ids.
pub const INDOM_PROCESS: u32 = 0;
pub const INDOM_SESSION: u32 = 1;

pub static PROCESS_INDOMS: &[IndomSpec] = &[IndomSpec {
    id: INDOM_PROCESS,
    kind: IndomKind::Cached,
    oneline: "processes that owned TCP sessions",
    help: "One instance per process (thread group) that owned a TCP session since the agent \
started, named by its PID as six digits (\"015751\"), as PCP's proc PMDA names processes \
without the command. An exited process's instance stays until its final values have been \
served by at least two fetches and the module's retention time has passed, then disappears; \
instance ids persist across agent restarts. A new process that reuses the PID takes the \
instance over, starting from zero (a counter reset to PCP): processes are told apart by \
their start time (/proc/PID/stat), checked every second, so one never continues another's \
counts (sessions the new process closes within that second before it is noticed are lost).",
}];

pub static SESSION_INDOMS: &[IndomSpec] = &[IndomSpec {
    id: INDOM_SESSION,
    kind: IndomKind::Fixed,
    oneline: "most recently closed TCP sessions",
    help: "session_count instances named \"0\", \"1\", ...: \"0\" is the most recently closed \
session, \"1\" the one before, and so on; an instance has no values until that many \
sessions have closed since the agent started.",
}];

const LOST_METRIC: MetricSpec = MetricSpec::new(
    LOST,
    "proc.io.net.tcp.events_lost",
    Type::U64,
    Semantics::Counter,
    Units::COUNT,
    None,
    false,
    "session records lost because the ring buffer was full",
    "Records (session opened, session closed) the kernel side could not put in the BPF ring \
buffer because it was full; each is a session whose bytes or counts are missing. Raise the \
tcplife buffer_page_count option if this moves.",
);

const UNTRACKED_METRIC: MetricSpec = MetricSpec::new(
    UNTRACKED,
    "proc.io.net.tcp.sessions_untracked",
    Type::U64,
    Semantics::Counter,
    Units::COUNT,
    None,
    false,
    "TCP sessions not followed because the sessions map was full",
    "TCP sessions that started while the BPF map of open sessions held map_size entries: \
they are not counted anywhere. Raise the tcplife map_size option if this moves.",
);

pub static PROCESS_METRICS: &[MetricSpec] = &[
    MetricSpec::new(
        RX,
        "proc.io.net.tcp.rx",
        Type::U64,
        Semantics::Counter,
        Units::BYTES,
        Some(INDOM_PROCESS),
        false,
        "bytes received over TCP, per process",
        "Payload bytes received (tcp_sock.bytes_received, less the one the peer's FIN takes: \
without headers, retransmitted duplicates or the FIN) by the TCP sessions the process owned, \
IPv4 and IPv6, since the agent started. \
A closed session counts with its final value, taken at TCP_CLOSE \
(sock:inet_sock_set_state). An open session counts with its value as sampled at the fetch \
(a BPF iterator over TCP sockets where the kernel supports it, otherwise at the session's \
last sendmsg/recvmsg), so the counter moves during a long transfer. Sessions that were \
already open when the agent started, and sessions that never became established, are not \
counted. Owner: the process that called connect(); for an accepted session, the first \
process that sent or received on it (or closed it). The kernel completes the accepting \
side's handshake in a softirq, where the current process is unrelated (on loopback, the \
client), so the owner is never taken from there; only an accepted session closed before any \
process used it, and closed in a softirq, falls back to the current process, and may be \
credited to the wrong one (e.g. the client of a loopback session).",
    ),
    MetricSpec::new(
        TX,
        "proc.io.net.tcp.tx",
        Type::U64,
        Semantics::Counter,
        Units::BYTES,
        Some(INDOM_PROCESS),
        false,
        "bytes sent over TCP, per process",
        "Payload bytes sent and acknowledged by the peer (tcp_sock.bytes_acked, less the \
sequence numbers the SYN and FIN take) by the TCP sessions the process owned, IPv4 and IPv6, \
since the agent started. \
Counted when as proc.io.net.tcp.rx: final values at TCP_CLOSE, open sessions as sampled at \
the fetch; the same ownership rules and limits apply.",
    ),
    MetricSpec::new(
        OPENED,
        "proc.io.net.tcp.sessions_opened",
        Type::U64,
        Semantics::Counter,
        Units::COUNT,
        Some(INDOM_PROCESS),
        false,
        "TCP sessions opened, per process",
        "TCP sessions (connected or accepted, IPv4 and IPv6) that became established and \
were owned by the process, since the agent started. A session is counted when it is both \
established and has an owner (see proc.io.net.tcp.rx), or at its close if it got its owner \
only then. Failed connection attempts are not counted.",
    ),
    MetricSpec::new(
        CLOSED,
        "proc.io.net.tcp.sessions_closed",
        Type::U64,
        Semantics::Counter,
        Units::COUNT,
        Some(INDOM_PROCESS),
        false,
        "TCP sessions closed, per process",
        "TCP sessions owned by the process that reached TCP_CLOSE since the agent started \
(each also counted in proc.io.net.tcp.sessions_opened).",
    ),
    MetricSpec::new(
        ACTIVE,
        "proc.io.net.tcp.sessions_active",
        Type::U64,
        Semantics::Instant,
        Units::COUNT,
        Some(INDOM_PROCESS),
        false,
        "open TCP sessions, per process",
        "TCP sessions of the process that are established and owned and not yet closed, as \
of the fetch.",
    ),
    LOST_METRIC,
    UNTRACKED_METRIC,
];

pub static SESSION_METRICS: &[MetricSpec] = &[
    MetricSpec::new(S_PID, "proc.io.net.tcp.pid", Type::U32, Semantics::Instant, Units::NONE, Some(INDOM_SESSION), false, "PID", "PID (thread group id) of the process that owned the closed session (see the ownership notes of the process layout's proc.io.net.tcp.rx: the connecting process, or the first process to use an accepted session)."),
    MetricSpec::new(S_COMM, "proc.io.net.tcp.comm", Type::String, Semantics::Instant, Units::NONE, Some(INDOM_SESSION), true, "command", "Command name (comm) of the process that owned the closed session, when it took ownership."),
    MetricSpec::new(S_LADDR, "proc.io.net.tcp.laddr", Type::String, Semantics::Instant, Units::NONE, Some(INDOM_SESSION), true, "local address", "Local IPv4 or IPv6 address of the closed session."),
    MetricSpec::new(S_LPORT, "proc.io.net.tcp.lport", Type::U32, Semantics::Instant, Units::NONE, Some(INDOM_SESSION), true, "local port", "Local TCP port of the closed session."),
    MetricSpec::new(S_DADDR, "proc.io.net.tcp.daddr", Type::String, Semantics::Instant, Units::NONE, Some(INDOM_SESSION), true, "destination address", "Remote IPv4 or IPv6 address of the closed session."),
    MetricSpec::new(S_DPORT, "proc.io.net.tcp.dport", Type::U32, Semantics::Instant, Units::NONE, Some(INDOM_SESSION), true, "destination port", "Remote TCP port of the closed session."),
    MetricSpec::new(S_TX, "proc.io.net.tcp.tx", Type::U64, Semantics::Instant, Units::BYTES, Some(INDOM_SESSION), false, "transmitted data", "Payload bytes sent and acknowledged over the closed session (tcp_sock.bytes_acked at TCP_CLOSE, less the SYN and FIN)."),
    MetricSpec::new(S_RX, "proc.io.net.tcp.rx", Type::U64, Semantics::Instant, Units::BYTES, Some(INDOM_SESSION), false, "received data", "Payload bytes received over the closed session (tcp_sock.bytes_received at TCP_CLOSE, less the FIN)."),
    MetricSpec::new(
        S_DURATION,
        "proc.io.net.tcp.duration",
        Type::U32,
        Semantics::Instant,
        Units::USEC,
        Some(INDOM_SESSION),
        false,
        "duration of the TCP session (from TCP_ESTABLISHED/TCP_SYN_* until TCP_CLOSE)",
        "Microseconds from the session's SYN_SENT (connecting side) or SYN_RECV (accepting side) \
to its TCP_CLOSE.",
    ),
    LOST_METRIC,
    UNTRACKED_METRIC,
];
