//! Shared by the file-system snoop modules' end-to-end tests (opensnoop.rs, statsnoop.rs,
//! mountsnoop.rs, fsslower.rs, bashreadline.rs): the agent running one module with a table
//! big enough for the workload, and the module's recent-events table as records. Each test
//! file uses only some of these.
#![allow(dead_code)]

use e2e::*;
pub use std::collections::BTreeMap;
use std::time::Duration;

/// The agent running `module` alone, with `options`: tables big enough that the system's own
/// events (pmcd, builds) between the workload and the fetch do not push the workload's out.
pub fn session(module: &str, options: &str) -> Session {
    let mut s = Session::start();
    s.with_config(&format!(
        "[pmda]\nmodules = {module}\nprefix = bcc.\nmodule_failure_fatal = False\n\n[{module}]\n{options}\n"
    ));
    s.assert_module_running(module);
    s
}

/// One event of a module's table: field (the metric name after `bcc.<module>.`) to value.
pub type Event = BTreeMap<String, String>;

/// The module's recent-events table, newest first (instance "0" first).
pub fn table(module: &str, fields: &[&str]) -> Vec<Event> {
    let names: Vec<String> = fields.iter().map(|f| format!("bcc.{module}.{f}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let vals = fetch(&refs);
    let mut rows: BTreeMap<u32, Event> = BTreeMap::new();
    for (f, n) in fields.iter().zip(&names) {
        let Some(v) = vals.get(n) else {
            panic!(
                "{n}: no values (fetched: {:?})",
                vals.keys().collect::<Vec<_>>()
            )
        };
        for (inst, value) in v {
            let i: u32 = inst
                .as_deref()
                .and_then(|i| i.parse().ok())
                .unwrap_or_else(|| panic!("{n}: instance {inst:?} is not a slot number"));
            rows.entry(i)
                .or_default()
                .insert(f.to_string(), value.clone());
        }
    }
    let n = rows.len();
    let out: Vec<Event> = rows.into_values().collect();
    for (i, e) in out.iter().enumerate() {
        assert_eq!(
            e.len(),
            fields.len(),
            "{module} slot {i} of {n}: not every field has a value: {e:?}"
        );
    }
    out
}

/// The workload's events in a table (oldest first, as they happened), by `pick`.
pub fn picked(rows: &[Event], pick: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut v: Vec<Event> = rows.iter().filter(|e| pick(e)).cloned().collect();
    v.reverse();
    v
}

/// The records `pick` selects, oldest first, once there are `n` of them (5 s at most): the
/// consumer thread drains the ring buffer every 20 ms, and a program wakes it only when the
/// buffer fills, so the last records of a workload come a little after its calls.
pub fn picked_when(
    module: &str,
    fields: &[&str],
    n: usize,
    pick: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut mine = Vec::new();
    wait_for(Duration::from_secs(5), || {
        mine = picked(&table(module, fields), &pick);
        (mine.len() >= n).then_some(())
    });
    mine
}

/// The workload's calls, a line each, up to its closing line (which starts with "done"),
/// then waits for it to end. Gives the calls and the closing line.
pub fn workload_calls(mut w: Peer) -> (Vec<String>, String) {
    let mut calls = Vec::new();
    loop {
        let l = w.line();
        if l.starts_with("done") {
            w.finish();
            return (calls, l);
        }
        calls.push(l);
    }
}

/// One record in `mine` per call of the workload: `what` says what the records are.
pub fn assert_one_record_per_call(what: &str, mine: &[Event], calls: &[String]) {
    assert_eq!(
        mine.len(),
        calls.len(),
        "{} {what} in the table, the workload made {}: {mine:#?}\ncalls: {calls:#?}",
        mine.len(),
        calls.len()
    );
}

/// A system call's result `res` (negative: an errno) as the modules record it: the result or
/// -1, and the errno or 0.
pub fn result_and_errno(res: i64) -> (String, String) {
    if res < 0 {
        ("-1".into(), (-res).to_string())
    } else {
        (res.to_string(), "0".into())
    }
}

/// Checks every field of `want` against `got`.
pub fn assert_fields(what: &str, got: &Event, want: &[(&str, String)]) {
    for (k, v) in want {
        assert_eq!(got.get(*k), Some(v), "{what}: field {k}: got {got:?}");
    }
}

/// What an unprivileged client gets: values for the public fields of the table, a
/// permission error for the sensitive ones.
pub fn assert_access_as_nobody(module: &str, public: &[&str], sensitive: &[&str]) {
    for f in public.iter().chain(sensitive) {
        let m = format!("bcc.{module}.{f}");
        let o = run("runuser", &["-u", "nobody", "--", "pminfo", "-f", &m]);
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        let (vals, _) = parse_pminfo_f(&text);
        if sensitive.contains(f) {
            assert!(
                text.contains("No permission"),
                "nobody fetched the sensitive {m}: {text}"
            );
            assert!(
                vals.get(&m).is_none_or(|v| v.is_empty()),
                "nobody got values of {m}: {text}"
            );
        } else {
            assert!(
                vals.get(&m).is_some_and(|v| !v.is_empty()),
                "nobody got no values of the public {m}: {text}"
            );
        }
    }
}
