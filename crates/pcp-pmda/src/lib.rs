//! A small safe layer over PCP's `libpcp_pmda` for a pipe PMDA written in Rust.
//!
//! A PMDA author describes metrics and instance domains as plain data ([`Metric`],
//! [`Indom`]), implements [`Agent`] (refresh, fetch, optional store and labels) and hands it
//! to [`Pmda::run`], which owns the connection to pmcd, the metric table, the dynamic
//! namespace, client credentials and the poll loop. No `unsafe` is needed above this crate.
//!
//! Everything that touches libpcp_pmda runs on the thread that called [`Pmda::run`]:
//! libpcp_pmda is not thread-safe. Background threads reach the loop through a [`Waker`].

mod cache;
mod clients;
mod events;
mod logger;
mod pmda;
mod types;

pub use cache::Instances;
pub use events::{EventQueue, QueueStats};
pub use logger::{init_logger, notify, set_debug_targets};
pub use pmda::{Agent, Client, Control, LabelTarget, Pmda, PmdaOptions, Waker};
pub use types::*;

/// A PCP configuration variable (`PCP_PMDAS_DIR`, `PCP_LOG_DIR`, …) from pcp.conf or the
/// environment, as `pmGetConfig` reads it.
pub fn config_var(name: &str) -> Option<String> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: valid C string; pmGetConfig returns a pointer to a static/env string or "".
    let p = unsafe { pcp_pmda_sys::pmGetConfig(c.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null NUL-terminated string owned by libpcp.
    let v = unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned();
    (!v.is_empty()).then_some(v)
}
