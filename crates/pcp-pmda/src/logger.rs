//! The `log` facade onto the PMDA's log file.
//!
//! After `pmdaOpenLog` the process's stderr *is* `$PCP_LOG_DIR/pmcd/<name>.log`, so records
//! are written to stderr in the layout `pmNotifyErr` uses. We write ourselves instead of
//! calling `pmNotifyErr` because records come from background threads too, and libpcp's
//! logging is not documented as thread-safe. Stdout is never touched: it is the pmcd channel.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::{Mutex, RwLock};

/// Targets (prefixes of `log` targets, i.e. module paths) whose debug records are written.
static DEBUG_TARGETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Writes the debug records of these targets (prefixes of the records' targets) and only
/// those; an empty list turns debug records off again.
pub fn set_debug_targets(targets: Vec<String>) {
    let on = !targets.is_empty();
    *DEBUG_TARGETS.write().unwrap_or_else(|e| e.into_inner()) = targets;
    if on && log::max_level() < LevelFilter::Debug {
        log::set_max_level(LevelFilter::Debug);
    }
}

struct PcpLogger {
    prog: String,
    lock: Mutex<()>,
}

fn stamp() -> String {
    let mut buf = [0u8; 64];
    // SAFETY: time(NULL) and localtime_r on a stack struct; strftime writes at most buf.len()
    // bytes into buf and returns how many it wrote.
    let n = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%a %b %e %H:%M:%S".as_ptr(),
            &tm,
        )
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

impl Log for PcpLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= Level::Info
            || DEBUG_TARGETS
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|t| m.target().starts_with(t.as_str()))
    }
    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "Error",
            Level::Warn => "Warning",
            Level::Info => "Info",
            Level::Debug | Level::Trace => "Debug",
        };
        let line = format!(
            "[{}] {}({}) {}: {}\n",
            stamp(),
            self.prog,
            std::process::id(),
            level,
            record.args()
        );
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger (once; later calls only change the level).
pub fn init_logger(prog: &str, level: LevelFilter) {
    let _ = log::set_boxed_logger(Box::new(PcpLogger {
        prog: prog.to_string(),
        lock: Mutex::new(()),
    }));
    log::set_max_level(level);
}

/// Logs through libpcp's own `pmNotifyErr` (main thread only), for messages that must carry
/// PCP's exact format, e.g. before the logger is installed.
pub fn notify(priority: i32, msg: &str) {
    let Ok(c) = std::ffi::CString::new(msg.replace('\0', " ")) else {
        return;
    };
    // SAFETY: a "%s" format with one valid NUL-terminated string argument.
    unsafe { pcp_pmda_sys::pmNotifyErr(priority, c"%s".as_ptr(), c.as_ptr()) }
}
