//! `bcc.conf`: the original pmdabcc's INI layout.
//!
//! ```ini
//! [pmda]
//! modules = sysfork,biotop      ; sections to run
//! prefix = bcc.                 ; default prefix of metric names
//! process_refresh = 60          ; seconds between re-scans for `process` filters
//! module_failure_fatal = False  ; exit if any module fails to start
//!
//! [sysfork]
//! module = sysfork              ; which module this section configures
//! cluster = 2                   ; PMID cluster of its metrics
//! prefix = bcc.                 ; optional: overrides [pmda] prefix
//! ```
//!
//! Parsing never panics and every error names the file, the line and the key. A broken line
//! spoils only the section it is in: the parser reports it and parses the rest without it,
//! so the other modules still run.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration error: where, which key, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub section: Option<String>,
    pub key: Option<String>,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        match (&self.section, &self.key) {
            (Some(s), Some(k)) => write!(f, "[{s}] {k}: ")?,
            (Some(s), None) => write!(f, "[{s}]: ")?,
            (None, Some(k)) => write!(f, "{k}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ConfigError {}

/// One `key = value` with the line it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: String,
    pub line: usize,
}

/// One section, keys in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub keys: BTreeMap<String, Entry>,
    /// Syntax errors inside this section (the lines were left out).
    pub errors: Vec<ConfigError>,
}

/// The `[pmda]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PmdaSettings {
    pub modules: Vec<String>,
    pub prefix: String,
    pub process_refresh: u64,
    pub module_failure_fatal: bool,
    /// Hold kernel BPF run-time statistics on (costs a little on every event).
    pub bpf_stats: bool,
    /// Users and groups (besides root) allowed to fetch every module's sensitive metrics.
    pub allowed_users: Vec<String>,
    pub allowed_groups: Vec<String>,
}

/// The whole file.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub pmda: PmdaSettings,
    /// Module sections by name.
    pub sections: BTreeMap<String, Section>,
    /// Errors not tied to a module section (they are logged; the agent goes on).
    pub global_errors: Vec<ConfigError>,
    /// Line of each [pmda] key.
    pmda_lines: BTreeMap<String, usize>,
}

/// Upper bound on re-parses after syntax errors, so a hostile file cannot make us spin.
const MAX_SYNTAX_ERRORS: usize = 64;

fn err(
    file: &Path,
    line: usize,
    section: Option<&str>,
    key: Option<&str>,
    msg: impl Into<String>,
) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line,
        section: section.map(str::to_string),
        key: key.map(str::to_string),
        msg: msg.into(),
    }
}

/// Parses a boolean the way Python's configparser did for the original (`True`, `yes`, `1`…).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Why a line is not a header, `key = value`, comment or blank line.
fn bad_line(l: &str) -> Option<&'static str> {
    let t = l.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
        return None;
    }
    if t.starts_with('[') {
        return match t.find(']') {
            Some(e) if t[1..e].trim().is_empty() => Some("empty section name"),
            Some(e)
                if !t[e + 1..].trim().is_empty()
                    && !t[e + 1..].trim_start().starts_with(['#', ';']) =>
            {
                Some("text after the section header")
            }
            Some(_) => None,
            None => Some("section header without ']'"),
        };
    }
    if l.starts_with([' ', '\t']) {
        return Some("continuation lines are not supported");
    }
    match t.find(['=', ':']) {
        Some(0) => Some("key missing before '='"),
        Some(_) => None,
        None => Some("expected key = value"),
    }
}

/// Which section each line belongs to, by a plain scan for `[name]` headers.
fn section_of_lines(text: &str) -> Vec<Option<String>> {
    let mut cur = None;
    text.lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('[') {
                if let Some(end) = t.find(']') {
                    cur = Some(t[1..end].trim().to_string());
                }
            }
            cur.clone()
        })
        .collect()
}

/// The line (1-based) of `key` in `section`, found by scanning the text.
fn line_of(text: &str, section: Option<&str>, key: &str) -> usize {
    let owners = section_of_lines(text);
    for (i, l) in text.lines().enumerate() {
        if owners[i].as_deref() != section {
            continue;
        }
        let t = l.trim();
        if t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(pos) = t.find(['=', ':']) {
            if t[..pos].trim() == key {
                return i + 1;
            }
        }
    }
    // rust-ini may split a line differently from the scan above (escapes, odd separators):
    // then the first line of the section mentioning the key, else the section's header.
    let mentioning = text
        .lines()
        .enumerate()
        .find(|(i, l)| owners[*i].as_deref() == section && l.contains(key))
        .map(|(i, _)| i + 1);
    mentioning
        .or_else(|| section.map(|s| header_line(text, s)).filter(|l| *l > 0))
        .unwrap_or(1)
}

fn header_line(text: &str, section: &str) -> usize {
    text.lines()
        .position(|l| {
            let t = l.trim();
            t.starts_with('[') && t.find(']').is_some_and(|e| t[1..e].trim() == section)
        })
        .map_or(0, |i| i + 1)
}

impl Config {
    /// Reads and parses `path`. Only an unreadable file is an `Err`; everything else is
    /// recorded in the result.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path, 0, None, None, format!("cannot read: {e}")))?;
        Ok(Config::parse(path, &text))
    }

    /// Parses `text` as the contents of `file`.
    pub fn parse(file: &Path, text: &str) -> Config {
        let owners = section_of_lines(text);
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut syntax: Vec<ConfigError> = Vec::new();
        // rust-ini reads a line without '=' as the start of a key that runs on into the next
        // lines, so shapes are checked here first: a header, `key = value`, a comment or blank.
        for (i, l) in lines.iter_mut().enumerate() {
            if let Some(why) = bad_line(l) {
                let sect = owners.get(i).cloned().flatten();
                syntax.push(err(
                    file,
                    i + 1,
                    sect.as_deref(),
                    None,
                    format!("syntax error: {why}: {:?}", l.trim()),
                ));
                l.clear();
            }
        }
        // rust-ini stops at the first bad line: blank it out, remember the error, retry.
        let ini = loop {
            let joined = lines.join("\n");
            match ini::Ini::load_from_str_opt(
                &joined,
                ini::ParseOption {
                    enabled_quote: false,
                    enabled_escape: false,
                    ..Default::default()
                },
            ) {
                Ok(i) => break Some(i),
                Err(e) => {
                    let line = e.line + 1;
                    let sect = owners.get(e.line).cloned().flatten();
                    syntax.push(err(
                        file,
                        line,
                        sect.as_deref(),
                        None,
                        format!("syntax error: {}", e.msg),
                    ));
                    if e.line >= lines.len()
                        || lines[e.line].is_empty()
                        || syntax.len() >= MAX_SYNTAX_ERRORS
                    {
                        break None;
                    }
                    lines[e.line].clear();
                }
            }
        };
        let joined = lines.join("\n");
        let mut sections = BTreeMap::new();
        let mut global_errors = Vec::new();
        let mut pmda_keys: BTreeMap<String, Entry> = BTreeMap::new();
        if let Some(ini) = &ini {
            for (name, props) in ini.iter() {
                let Some(name) = name else {
                    for (k, _) in props.iter() {
                        global_errors.push(err(
                            file,
                            line_of(&joined, None, k),
                            None,
                            Some(k),
                            "key outside any section",
                        ));
                    }
                    continue;
                };
                let mut keys = BTreeMap::new();
                for (k, v) in props.iter() {
                    let line = line_of(&joined, Some(name), k);
                    if keys
                        .insert(
                            k.to_string(),
                            Entry {
                                value: v.trim().to_string(),
                                line,
                            },
                        )
                        .is_some()
                    {
                        global_errors.push(err(
                            file,
                            line,
                            Some(name),
                            Some(k),
                            "key given twice; the last one counts",
                        ));
                    }
                }
                if name == "pmda" {
                    pmda_keys.extend(keys);
                } else {
                    let s = sections.entry(name.to_string()).or_insert_with(|| Section {
                        name: name.to_string(),
                        line: header_line(&joined, name),
                        ..Default::default()
                    });
                    s.keys.extend(keys);
                }
            }
        }
        for e in syntax {
            match e.section.as_deref().and_then(|s| sections.get_mut(s)) {
                Some(s) => s.errors.push(e),
                None => global_errors.push(e),
            }
        }

        let mut pmda = PmdaSettings {
            modules: Vec::new(),
            prefix: "bcc.".into(),
            process_refresh: 60,
            module_failure_fatal: false,
            bpf_stats: false,
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
        };
        for (k, e) in &pmda_keys {
            match k.as_str() {
                "allowed_users" => pmda.allowed_users = e.value.split(',').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect(),
                "allowed_groups" => pmda.allowed_groups = e.value.split(',').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect(),
                "modules" => pmda.modules = e.value.split(',').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect(),
                "prefix" => match check_prefix(&e.value) {
                    Ok(()) => pmda.prefix = e.value.clone(),
                    Err(m) => global_errors.push(err(file, e.line, Some("pmda"), Some(k), m)),
                },
                "process_refresh" => match e.value.parse::<u64>() {
                    Ok(v) if v <= 86_400 => pmda.process_refresh = v,
                    _ => global_errors.push(err(file, e.line, Some("pmda"), Some(k), format!("expected whole seconds from 0 to 86400, got {:?}", e.value))),
                },
                "module_failure_fatal" | "bpf_stats" => match parse_bool(&e.value) {
                    Some(b) if k == "bpf_stats" => pmda.bpf_stats = b,
                    Some(b) => pmda.module_failure_fatal = b,
                    None => global_errors.push(err(file, e.line, Some("pmda"), Some(k), format!("expected True or False, got {:?}", e.value))),
                },
                _ => global_errors.push(err(file, e.line, Some("pmda"), Some(k), "unknown key (known: modules, prefix, process_refresh, module_failure_fatal, bpf_stats, allowed_users, allowed_groups)")),
            }
        }
        if ini.is_some() && !pmda_keys.contains_key("modules") && header_line(&joined, "pmda") == 0
        {
            global_errors.push(err(
                file,
                0,
                Some("pmda"),
                None,
                "no [pmda] section: no modules are enabled",
            ));
        }
        let pmda_lines = pmda_keys.iter().map(|(k, e)| (k.clone(), e.line)).collect();
        Config {
            file: file.to_path_buf(),
            pmda,
            sections,
            global_errors,
            pmda_lines,
        }
    }

    /// The line of a [pmda] key (0 when absent).
    pub fn pmda_line(&self, key: &str) -> usize {
        self.pmda_lines.get(key).copied().unwrap_or(0)
    }
}

/// The agent loads programs into the kernel on the configuration's say-so: refuse a file
/// that root does not own or that others can write.
pub fn check_trusted(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path)
        .map_err(|e| err(path, 0, None, None, format!("cannot read: {e}")))?;
    if md.uid() != 0 {
        return Err(err(
            path,
            0,
            None,
            None,
            format!("refused: owned by uid {}, not root", md.uid()),
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(err(
            path,
            0,
            None,
            None,
            format!(
                "refused: writable by group or others (mode {:o})",
                md.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// A metric name prefix must be dotted name components ending in a dot, under `bcc`
/// (pmcd routes only the `bcc` subtree to this agent).
pub fn check_prefix(p: &str) -> Result<(), String> {
    let ok_component = |c: &str| {
        !c.is_empty()
            && c.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic())
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    };
    let Some(body) = p.strip_suffix('.') else {
        return Err(format!("prefix {p:?} must end with a dot, e.g. \"bcc.\""));
    };
    if !body.split('.').all(ok_component) {
        return Err(format!(
            "prefix {p:?} is not a dotted metric name (letters, digits, _)"
        ));
    }
    if body.split('.').next() != Some("bcc") {
        return Err(format!("prefix {p:?} must start with \"bcc.\": pmcd routes only the bcc namespace to this agent"));
    }
    Ok(())
}

/// The settings of one module section, with typed accessors that report errors by
/// file, line and key. Keys read through it are marked used; [`ModuleConfig::unused`] lists
/// the rest (unknown options).
#[derive(Clone, Debug)]
pub struct ModuleConfig {
    pub file: PathBuf,
    pub section: String,
    pub module: String,
    pub cluster: u32,
    pub prefix: String,
    pub process_refresh: u64,
    /// Line of the section header: where errors about keys left at their default point.
    section_line: usize,
    keys: BTreeMap<String, Entry>,
    used: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl ModuleConfig {
    pub fn new(
        file: &Path,
        section: &Section,
        module: &str,
        cluster: u32,
        prefix: &str,
        process_refresh: u64,
    ) -> Self {
        let used: std::collections::BTreeSet<String> = [
            "module",
            "cluster",
            "prefix",
            "allowed_users",
            "allowed_groups",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        ModuleConfig {
            file: file.to_path_buf(),
            section: section.name.clone(),
            module: module.to_string(),
            cluster,
            prefix: prefix.to_string(),
            process_refresh,
            section_line: section.line.max(1),
            keys: section.keys.clone(),
            used: std::cell::RefCell::new(used),
        }
    }

    /// A config for tests and benchmarks: `options` as `key=value` pairs.
    pub fn for_test(module: &str, cluster: u32, options: &[(&str, &str)]) -> Self {
        let mut s = Section {
            name: module.into(),
            ..Default::default()
        };
        for (i, (k, v)) in options.iter().enumerate() {
            s.keys.insert(
                k.to_string(),
                Entry {
                    value: v.to_string(),
                    line: i + 2,
                },
            );
        }
        ModuleConfig::new(Path::new("test.conf"), &s, module, cluster, "bcc.", 60)
    }

    pub fn error(&self, key: &str, msg: impl Into<String>) -> ConfigError {
        let line = self.keys.get(key).map_or(self.section_line, |e| e.line);
        err(&self.file, line, Some(&self.section), Some(key), msg)
    }

    /// The raw string value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.used.borrow_mut().insert(key.to_string());
        self.keys.get(key).map(|e| e.value.as_str())
    }

    /// An unsigned integer within `range`, or `default` when absent.
    pub fn get_u64(
        &self,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(self.error(
                    key,
                    format!(
                        "expected a whole number from {} to {}, got {v:?}",
                        range.start(),
                        range.end()
                    ),
                )),
            },
        }
    }

    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_bool(v)
                .ok_or_else(|| self.error(key, format!("expected True or False, got {v:?}"))),
        }
    }

    /// A comma-separated list (empty when absent).
    pub fn get_list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Comma-separated port numbers.
    pub fn get_ports(&self, key: &str) -> Result<Vec<u16>, ConfigError> {
        self.get_list(key)
            .iter()
            .map(|p| {
                p.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    self.error(key, format!("expected port numbers 1-65535, got {p:?}"))
                })
            })
            .collect()
    }

    /// Keys set in the section that no accessor asked for: unknown options.
    pub fn unused(&self) -> Vec<ConfigError> {
        let used = self.used.borrow();
        self.keys
            .keys()
            .filter(|k| !used.contains(*k))
            .map(|k| self.error(k, "unknown option for this module"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Config {
        Config::parse(Path::new("/etc/bcc.conf"), t)
    }

    #[test]
    fn reads_the_original_keys() {
        let c = parse("[pmda]\nmodules = sysfork, biotop\nprefix = bcc.\nprocess_refresh = 30\nmodule_failure_fatal = True\n\n[sysfork]\nmodule = sysfork\ncluster = 2\n");
        assert_eq!(c.pmda.modules, vec!["sysfork", "biotop"]);
        assert_eq!(c.pmda.process_refresh, 30);
        assert!(c.pmda.module_failure_fatal);
        assert!(c.global_errors.is_empty(), "{:?}", c.global_errors);
        let s = &c.sections["sysfork"];
        assert_eq!(
            s.keys["cluster"],
            Entry {
                value: "2".into(),
                line: 9
            }
        );
        assert_eq!(s.line, 7);
    }

    #[test]
    fn a_broken_line_spoils_only_its_section() {
        let c = parse("[pmda]\nmodules = a,b\n[a]\nmodule = sysfork\nthis line is broken\n[b]\nmodule = sysfork\ncluster = 5\n");
        let a = &c.sections["a"];
        assert_eq!(a.errors.len(), 1, "{:?}", c);
        assert_eq!(a.errors[0].line, 5);
        assert!(
            a.errors[0].to_string().starts_with("/etc/bcc.conf:5: [a]"),
            "{}",
            a.errors[0]
        );
        assert!(c.sections["b"].errors.is_empty());
        assert_eq!(c.sections["b"].keys["cluster"].value, "5");
    }

    #[test]
    fn bad_pmda_values_name_file_line_and_key() {
        let c = parse("[pmda]\nmodules = x\nprocess_refresh = soon\nprefix = foo.\nwhat = 1\n");
        let msgs: Vec<String> = c.global_errors.iter().map(|e| e.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("/etc/bcc.conf:3: [pmda] process_refresh:")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("/etc/bcc.conf:4: [pmda] prefix:")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("/etc/bcc.conf:5: [pmda] what: unknown key")),
            "{msgs:?}"
        );
    }

    #[test]
    fn module_options_are_typed_and_unknown_ones_reported() {
        let c = parse("[pmda]\nmodules=t\n[t]\nmodule = tcplife\ncluster = 3\ndport = 80,x\nmapsize = 10\nsession_count = 20\n");
        let mc = ModuleConfig::new(&c.file, &c.sections["t"], "tcplife", 3, "bcc.", 60);
        let e = mc.get_ports("dport").unwrap_err();
        assert_eq!(e.line, 6);
        assert_eq!(e.key.as_deref(), Some("dport"));
        assert_eq!(mc.get_u64("session_count", 1, 1..=1000).unwrap(), 20);
        let unknown = mc.unused();
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].key.as_deref(), Some("mapsize"));
        assert_eq!(unknown[0].line, 7);
    }

    #[test]
    fn prefixes_must_stay_under_bcc() {
        assert!(check_prefix("bcc.").is_ok());
        assert!(check_prefix("bcc.x.").is_ok());
        assert!(check_prefix("bcc").is_err());
        assert!(check_prefix("other.").is_err());
        assert!(check_prefix("bcc..").is_err());
    }
}
