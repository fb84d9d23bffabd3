//! The `process` option shared by modules (as the original pmdabcc's modules had it):
//! a comma-separated list of PIDs, process names, or regular expressions matched against the
//! full command line. Only matching processes are tracked. Processes that start later are
//! picked up by re-scans every `[pmda] process_refresh` seconds.
//!
//! Matching rules, per list item:
//! - all digits: that PID (thread group id);
//! - otherwise the item equals the process name (`/proc/<pid>/comm`), or
//! - the item, as a regular expression, matches the command line (`/proc/<pid>/cmdline`,
//!   arguments joined by spaces).

use crate::config::{ConfigError, ModuleConfig};
use regex_lite::Regex;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct ProcessFilter {
    pids: BTreeSet<u32>,
    names: Vec<String>,
    patterns: Vec<Regex>,
    refresh: Duration,
    last_scan: Option<Instant>,
}

impl ProcessFilter {
    /// Parses the option `key` (normally `process`); `None` when absent (track everything).
    pub fn from_config(
        cfg: &ModuleConfig,
        key: &str,
    ) -> Result<Option<ProcessFilter>, ConfigError> {
        let items = cfg.get_list(key);
        if items.is_empty() {
            return Ok(None);
        }
        let mut f = ProcessFilter {
            pids: BTreeSet::new(),
            names: Vec::new(),
            patterns: Vec::new(),
            refresh: Duration::from_secs(cfg.process_refresh),
            last_scan: None,
        };
        for it in items {
            if it.chars().all(|c| c.is_ascii_digit()) {
                let pid = it
                    .parse::<u32>()
                    .map_err(|_| cfg.error(key, format!("PID {it:?} out of range")))?;
                f.pids.insert(pid);
            } else {
                let re = Regex::new(&it).map_err(|e| {
                    cfg.error(
                        key,
                        format!("{it:?} is not a valid regular expression: {e}"),
                    )
                })?;
                f.names.push(it);
                f.patterns.push(re);
            }
        }
        Ok(Some(f))
    }

    /// Whether process `pid` (a thread group id) matches, reading /proc.
    pub fn matches(&self, pid: u32) -> bool {
        if self.pids.contains(&pid) {
            return true;
        }
        if self.names.is_empty() {
            return false;
        }
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            if self.names.iter().any(|n| n == comm.trim_end()) {
                return true;
            }
        }
        match std::fs::read(format!("/proc/{pid}/cmdline")) {
            Ok(raw) if !raw.is_empty() => {
                let cmd = String::from_utf8_lossy(&raw)
                    .trim_end_matches('\0')
                    .replace('\0', " ");
                self.patterns.iter().any(|p| p.is_match(&cmd))
            }
            _ => false,
        }
    }

    /// All live processes that match now.
    pub fn scan(&mut self) -> BTreeSet<u32> {
        self.last_scan = Some(Instant::now());
        let mut out: BTreeSet<u32> = BTreeSet::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return out;
        };
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                if self.matches(pid) {
                    out.insert(pid);
                }
            }
        }
        out
    }

    /// True when a re-scan is due (`process_refresh` elapsed; never when it is 0, except for
    /// the first scan).
    pub fn due(&self) -> bool {
        match self.last_scan {
            None => true,
            Some(_) if self.refresh.is_zero() => false,
            Some(t) => t.elapsed() >= self.refresh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pids_names_and_patterns() {
        let cfg =
            ModuleConfig::for_test("m", 1, &[("process", "1, java, ^/usr/bin/python.* -m x$")]);
        let f = ProcessFilter::from_config(&cfg, "process")
            .unwrap()
            .unwrap();
        assert!(f.pids.contains(&1));
        assert_eq!(f.names.len(), 2);
        assert!(f.matches(1));
        assert!(f.matches(std::process::id()) == f.patterns.iter().any(|p| p.is_match("never")));
    }

    #[test]
    fn bad_regex_names_the_key() {
        let cfg = ModuleConfig::for_test("m", 1, &[("process", "a(b")]);
        let e = ProcessFilter::from_config(&cfg, "process").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("process"));
        assert!(e.msg.contains("regular expression"));
    }

    #[test]
    fn finds_this_test_process_by_name() {
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let cfg = ModuleConfig::for_test("m", 1, &[("process", comm.trim_end())]);
        let mut f = ProcessFilter::from_config(&cfg, "process")
            .unwrap()
            .unwrap();
        assert!(f.scan().contains(&std::process::id()));
        assert!(!f.due() || f.refresh.is_zero());
    }
}
