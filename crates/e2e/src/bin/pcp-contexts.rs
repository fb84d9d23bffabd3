//! `pcp-contexts [--user NAME] [--rounds N] [--interval-ms MS] METRIC HOSTSPEC...`:
//! opens one long-lived PMAPI context to pmcd per HOSTSPEC (`unix:` is a local connection,
//! which pmcd authenticates with the peer's uid; `127.0.0.1` is TCP without
//! authentication), then fetches METRIC from each context in turn, N rounds, and prints
//! one line per context: `context=I spec=S fetches=N values=V empty=E errors=X err=TEXT`
//! (values: fetches that returned at least one value; empty: no value and no error;
//! errors: a per-metric or whole-fetch error, the last one's text in `err`).
//!
//! The contexts stay open for the whole run, and consecutive requests reaching the agent
//! come from different contexts: the client side of the per-context credential tests.
//! With `--user` the process drops to that user before connecting.

use std::ffi::{c_char, c_int, CStr, CString};

#[repr(C)]
struct PmValueSet {
    pmid: u32,
    numval: c_int,
    valfmt: c_int,
    // vlist follows; only numval is read here.
}

#[repr(C)]
struct PmResult {
    timestamp: libc::timeval,
    numpmid: c_int,
    vset: [*mut PmValueSet; 1],
}

#[link(name = "pcp")]
extern "C" {
    fn pmNewContext(ty: c_int, name: *const c_char) -> c_int;
    fn pmUseContext(handle: c_int) -> c_int;
    fn pmLookupName(n: c_int, names: *const *const c_char, pmids: *mut u32) -> c_int;
    fn pmFetch(n: c_int, pmids: *mut u32, result: *mut *mut PmResult) -> c_int;
    fn pmFreeResult(result: *mut PmResult);
    fn pmErrStr(code: c_int) -> *const c_char;
}

const PM_CONTEXT_HOST: c_int = 1;

fn err_str(code: c_int) -> String {
    // SAFETY: pmErrStr returns a pointer to a NUL-terminated static buffer; copied at once
    // (this program is single-threaded).
    unsafe { CStr::from_ptr(pmErrStr(code)) }
        .to_string_lossy()
        .into_owned()
}

fn die(msg: String) -> ! {
    eprintln!("pcp-contexts: {msg}");
    std::process::exit(2)
}

fn drop_to(user: &str) {
    let c = CString::new(user).unwrap();
    // SAFETY: getpwnam with a valid C string; the fields are read before any other call.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        die(format!("no such user {user}"));
    }
    // SAFETY: pw is a valid passwd entry; group first, then user, as privileges allow.
    let ok = unsafe {
        let (uid, gid) = ((*pw).pw_uid, (*pw).pw_gid);
        libc::setgroups(1, &gid) == 0 && libc::setgid(gid) == 0 && libc::setuid(uid) == 0
    };
    if !ok {
        die(format!(
            "cannot become {user}: {}",
            std::io::Error::last_os_error()
        ));
    }
}

#[derive(Default)]
struct Tally {
    fetches: u64,
    values: u64,
    empty: u64,
    errors: u64,
    last_err: String,
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let (mut rounds, mut interval_ms, mut user) = (100u64, 0u64, None);
    while let Some(a) = args.peek().cloned() {
        let mut val = || {
            args.next();
            args.next()
                .unwrap_or_else(|| die(format!("{a} needs a value")))
        };
        match a.as_str() {
            "--rounds" => rounds = val().parse().unwrap_or_else(|_| die("bad --rounds".into())),
            "--interval-ms" => {
                interval_ms = val()
                    .parse()
                    .unwrap_or_else(|_| die("bad --interval-ms".into()))
            }
            "--user" => user = Some(val()),
            _ => break,
        }
    }
    let rest: Vec<String> = args.collect();
    if rest.len() < 2 {
        die(
            "usage: pcp-contexts [--user NAME] [--rounds N] [--interval-ms MS] METRIC HOSTSPEC..."
                .into(),
        );
    }
    if let Some(u) = &user {
        drop_to(u);
    }
    let metric = CString::new(rest[0].clone()).unwrap();
    let mut ctxs = Vec::new();
    for spec in &rest[1..] {
        let c = CString::new(spec.clone()).unwrap();
        // SAFETY: valid C string; returns a context handle or an error code.
        let h = unsafe { pmNewContext(PM_CONTEXT_HOST, c.as_ptr()) };
        if h < 0 {
            die(format!("pmNewContext({spec}): {}", err_str(h)));
        }
        let mut pmid = 0u32;
        let names = [metric.as_ptr()];
        // SAFETY: one name, one output slot; the new context is the current one.
        let s = unsafe { pmLookupName(1, names.as_ptr(), &mut pmid) };
        if s < 0 {
            die(format!("pmLookupName({}): {}", rest[0], err_str(s)));
        }
        ctxs.push((h, pmid, Tally::default()));
    }
    for _ in 0..rounds {
        for (h, pmid, t) in ctxs.iter_mut() {
            t.fetches += 1;
            let mut res: *mut PmResult = std::ptr::null_mut();
            // SAFETY: a handle pmNewContext returned; one PMID; res is an out-pointer.
            let s = unsafe {
                pmUseContext(*h);
                pmFetch(1, pmid, &mut res)
            };
            if s < 0 {
                t.errors += 1;
                t.last_err = err_str(s);
                continue;
            }
            // SAFETY: pmFetch succeeded: res holds numpmid (1) value sets.
            let numval = unsafe {
                let r = &*res;
                let n = if r.numpmid >= 1 {
                    (*r.vset[0]).numval
                } else {
                    0
                };
                pmFreeResult(res);
                n
            };
            match numval {
                n if n > 0 => t.values += 1,
                0 => t.empty += 1,
                e => {
                    t.errors += 1;
                    t.last_err = err_str(e);
                }
            }
            if interval_ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(interval_ms));
            }
        }
    }
    for (i, ((_, _, t), spec)) in ctxs.iter().zip(&rest[1..]).enumerate() {
        println!(
            "context={i} spec={spec} fetches={} values={} empty={} errors={} err={}",
            t.fetches,
            t.values,
            t.empty,
            t.errors,
            t.last_err.replace(' ', "_")
        );
    }
}
