//! Access to sensitive metrics is judged per request, with the credentials of the client that
//! sent it, however requests of several clients interleave at the agent.
//!
//! The clients are long-lived PMAPI contexts (`pcp-contexts`): root over pmcd's Unix socket
//! (pmcd passes the peer's uid: allowed) and unauthenticated over TCP (no credentials: never
//! allowed), fetching in turn, so that every request the agent answers follows one of the
//! other client. The truth is who each client is, not anything the agent reports.

use e2e::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sensitive (command names), and a metric of the same instance domain that is not.
const SENSITIVE: &str = "bcc.proc.io.perdev_comm";
const OPEN: &str = "bcc.proc.io.perdev";
const NO_PERMISSION: &str = "No_permission_to_perform_requested_operation";

/// One context's tally, as pcp-contexts prints it.
#[derive(Debug)]
struct Tally {
    spec: String,
    fetches: u64,
    values: u64,
    errors: u64,
    err: String,
}

fn contexts_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pcp-contexts"));
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn tallies(child: Child) -> Vec<Tally> {
    let o = child.wait_with_output().expect("pcp-contexts");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "pcp-contexts failed: {}{out}",
        String::from_utf8_lossy(&o.stderr)
    );
    out.lines()
        .map(|l| {
            let f: BTreeMap<&str, &str> = l
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .collect();
            let n = |k: &str| f[k].parse::<u64>().unwrap();
            Tally {
                spec: f["spec"].to_string(),
                fetches: n("fetches"),
                values: n("values"),
                errors: n("errors"),
                err: f["err"].to_string(),
            }
        })
        .collect()
}

/// Root must have had a value in every fetch, everybody else none, each refusal saying so.
fn check(t: &[Tally], rounds: u64, allowed: impl Fn(&str) -> bool) {
    for c in t {
        assert_eq!(c.fetches, rounds, "{c:?}");
        if allowed(&c.spec) {
            assert_eq!(c.values, rounds, "an allowed client was refused: {c:?}");
        } else {
            assert_eq!(c.values, 0, "a client without access got values: {c:?}");
            assert_eq!(c.errors, rounds, "{c:?}");
            assert_eq!(c.err, NO_PERMISSION, "{c:?}");
        }
    }
}

/// Does block I/O from this process (O_DIRECT), so (disk, this pid) is an instance of the
/// pairs domain for as long as the test runs, and waits until root sees it: without an
/// instance, "no value" would prove nothing.
fn own_io() {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let path = format!("/var/tmp/pcp-bcc-access-{}", std::process::id());
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .expect("open test file");
    let layout = std::alloc::Layout::from_size_align(1 << 16, 4096).unwrap();
    // SAFETY: a valid non-zero layout; freed below.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    // SAFETY: buf holds layout.size() initialised bytes.
    let data = unsafe { std::slice::from_raw_parts(buf, layout.size()) };
    for i in 0..4 {
        f.write_at(data, i * data.len() as u64)
            .expect("O_DIRECT write");
    }
    f.sync_all().unwrap();
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(buf, layout) };
    let _ = std::fs::remove_file(&path);
    let inst = format!("{}::{:06}", disk_of("/var/tmp"), std::process::id());
    wait_for(Duration::from_secs(10), || {
        fetch(&[SENSITIVE])
            .get(SENSITIVE)?
            .get(&Some(inst.clone()))?;
        Some(())
    })
    .unwrap_or_else(|| panic!("root does not see {inst} in {SENSITIVE}"));
}

#[test]
fn root_and_unauthenticated_contexts_in_turn_never_share_credentials() {
    let _s = Session::start();
    own_io();
    let t0 = Instant::now();
    // Two long-lived contexts, 1,000 fetches each, strictly alternating.
    let two = tallies(
        contexts_cmd(&["--rounds", "1000", SENSITIVE, "unix:", "127.0.0.1"])
            .spawn()
            .unwrap(),
    );
    check(&two, 1000, |s| s == "unix:");
    // Ten: five processes, each with a root and an unauthenticated context, all at once.
    let procs: Vec<Child> = (0..5)
        .map(|_| {
            contexts_cmd(&["--rounds", "1000", SENSITIVE, "unix:", "127.0.0.1"])
                .spawn()
                .unwrap()
        })
        .collect();
    for p in procs {
        check(&tallies(p), 1000, |s| s == "unix:");
    }
    eprintln!("12,000 fetches in {:?}", t0.elapsed());
}

/// A private pmproxy on a free loopback port, as user pcp (as the service runs it), with
/// only its PCP and REST services.
struct Pmproxy {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Pmproxy {
    fn start() -> Pmproxy {
        let dir = std::env::temp_dir().join(format!("pcp-bcc-pmproxy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (uid, gid) = user_ids("pcp");
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        let conf = dir.join("pmproxy.conf");
        std::fs::write(&conf, "[pmproxy]\npcp.enabled = true\nhttp.enabled = true\nredis.enabled = false\nsecure.enabled = false\n[redis]\nenabled = false\n[discover]\nenabled = false\n[pmsearch]\nenabled = false\n[pmseries]\nenabled = false\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/lib/pcp/bin/pmproxy")
            .args(["-f", "-A", "-i", "127.0.0.1", "-p", &port.to_string(), "-c"])
            .arg(&conf)
            .arg("-l")
            .arg(dir.join("pmproxy.log"))
            .arg("-s")
            .arg(dir.join("pmproxy.socket"))
            .current_dir(&dir)
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pmproxy (in the pcp package)");
        let p = Pmproxy { child, port, dir };
        wait_for(Duration::from_secs(10), || p.get("/pmapi/context").ok())
            .unwrap_or_else(|| panic!("pmproxy did not answer on port {port}"));
        p
    }

    /// One HTTP GET; the body of a 200 answer (Content-Length bytes: pmproxy keeps the
    /// connection open).
    fn get(&self, path: &str) -> Result<String, String> {
        let e = |e: std::io::Error| e.to_string();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).map_err(e)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(e)?;
        // One write: pmproxy 6.0 answers "no handler for URL" to a request line that
        // arrives in pieces.
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        s.write_all(req.as_bytes()).map_err(e)?;
        let mut r = std::io::BufReader::new(s);
        let mut head = String::new();
        let mut len = 0usize;
        loop {
            let mut l = String::new();
            if std::io::BufRead::read_line(&mut r, &mut l).map_err(e)? == 0 {
                return Err(format!("{path}: connection closed in the header"));
            }
            if l == "\r\n" {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().map_err(|_| format!("bad length {l:?}"))?;
            }
            head.push_str(&l);
        }
        let mut body = Vec::new();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            // chunks: hex size line, data, CRLF; a 0 size ends them
            loop {
                let mut l = String::new();
                std::io::BufRead::read_line(&mut r, &mut l).map_err(e)?;
                let n = usize::from_str_radix(l.trim(), 16)
                    .map_err(|_| format!("{path}: bad chunk size {l:?}"))?;
                let mut chunk = vec![0u8; n + 2];
                r.read_exact(&mut chunk).map_err(e)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(len, 0);
            r.read_exact(&mut body).map_err(e)?;
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!(
                "{path}: {} {body}",
                head.lines().next().unwrap_or("")
            ));
        }
        Ok(body)
    }
}

impl Drop for Pmproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn user_ids(name: &str) -> (u32, u32) {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: getpwnam with a valid C string; fields copied at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    assert!(!pw.is_null(), "no user {name} (the pcp package creates it)");
    // SAFETY: non-null entry from getpwnam.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

/// Instances of `metric` in a /pmapi/fetch answer (0 for an empty list).
fn rest_instances(body: &str, metric: &str) -> usize {
    let key = format!("\"name\":\"{metric}\",\"instances\":[");
    let at = body
        .find(&key)
        .unwrap_or_else(|| panic!("{metric} not in the answer: {body}"))
        + key.len();
    let list = &body[at..];
    if list.starts_with(']') {
        0
    } else {
        list[..list.find(']').unwrap()]
            .matches("\"instance\":")
            .count()
    }
}

fn rest_context(body: &str) -> String {
    let at = body
        .find("\"context\":")
        .unwrap_or_else(|| panic!("no context id in {body:?}"))
        + 10;
    body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

/// `n` REST fetches of both metrics on one pmproxy context (`hostspec` as a client gives
/// it); returns how many had instances of (sensitive, open).
fn rest_fetches(px: &Pmproxy, hostspec: Option<&str>, n: usize) -> (usize, usize) {
    let names = format!("names={SENSITIVE},{OPEN}");
    let first = match hostspec {
        Some(h) => format!("/pmapi/fetch?hostspec={h}&{names}"),
        None => format!("/pmapi/fetch?{names}"),
    };
    let body = px.get(&first).expect("REST fetch");
    let ctx = rest_context(&body);
    let mut got = (0, 0);
    for i in 0..n {
        let body = if i == 0 {
            body.clone()
        } else {
            px.get(&format!("/pmapi/fetch?context={ctx}&{names}"))
                .expect("REST fetch")
        };
        got.0 += (rest_instances(&body, SENSITIVE) > 0) as usize;
        got.1 += (rest_instances(&body, OPEN) > 0) as usize;
        std::thread::sleep(Duration::from_millis(5));
    }
    got
}

#[test]
fn through_pmproxy_only_the_granted_see_sensitive_values() {
    let mut s = Session::start();
    own_io();
    let px = Pmproxy::start();
    // A root client polls all along, directly over the Unix socket.
    let root = contexts_cmd(&["--rounds", "3000", "--interval-ms", "2", SENSITIVE, "unix:"])
        .spawn()
        .unwrap();
    // REST clients (grafana-pcp's way): pmproxy's default host spec is a TCP connection
    // without credentials; `local:` connects over the Unix socket as pmproxy's user, pcp.
    let n = 150;
    let (sens, open) = rest_fetches(&px, None, n);
    assert_eq!(open, n, "the open metric must have instances (control)");
    assert_eq!(sens, 0, "an anonymous REST client got sensitive values");
    let (sens, open) = rest_fetches(&px, Some("local:"), n);
    assert_eq!(open, n);
    assert_eq!(
        sens, 0,
        "pmproxy's user got sensitive values without a grant"
    );
    // PMAPI clients through pmproxy's protocol proxy get pmcd's error itself, visibly.
    let proxied = format!("localhost@127.0.0.1:{}", px.port);
    let t = tallies(
        contexts_cmd(&["--rounds", "300", SENSITIVE, "unix:", &proxied])
            .spawn()
            .unwrap(),
    );
    check(&t, 300, |s| s == "unix:");
    check(&tallies(root), 3000, |_| true);

    // The administrator grants pmproxy's user: every REST client with hostspec=local: sees
    // the values (whoever reached pmproxy), anonymous TCP contexts still do not.
    let conf = std::fs::read_to_string(bcc_dir().join("bcc.conf.default")).unwrap();
    s.with_config(&conf.replacen("[pmda]\n", "[pmda]\nallowed_users = pcp\n", 1));
    own_io();
    let (sens, _) = rest_fetches(&px, Some("local:"), 20);
    assert_eq!(
        sens, 20,
        "allowed_users = pcp did not reach REST clients of local:"
    );
    let (sens, open) = rest_fetches(&px, None, 20);
    assert_eq!(
        (sens, open),
        (0, 20),
        "an anonymous TCP context got sensitive values"
    );
}

#[test]
fn a_store_by_nobody_is_refused_while_root_fetches() {
    let _s = Session::start();
    own_io();
    let reloads = || value_u64("bcc.agent.control.reload", None).expect("reload count");
    // Control: a local root store reaches the agent and is obeyed.
    let r0 = reloads();
    run_ok("pmstore", &["bcc.agent.control.reload", "1"]);
    assert_eq!(reloads(), r0 + 1, "root's store did not reload");
    own_io();
    let root = contexts_cmd(&["--rounds", "4000", "--interval-ms", "1", SENSITIVE, "unix:"])
        .spawn()
        .unwrap();
    let r1 = reloads();
    for i in 0..30 {
        let o = run(
            "runuser",
            &[
                "-u",
                "nobody",
                "--",
                "pmstore",
                "bcc.agent.control.reload",
                "1",
            ],
        );
        let text =
            String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
        assert!(
            !o.status.success() && text.contains("No permission"),
            "store {i} by nobody: {text}"
        );
    }
    check(&tallies(root), 4000, |_| true);
    assert_eq!(reloads(), r1, "a store by nobody reloaded the agent");
}
