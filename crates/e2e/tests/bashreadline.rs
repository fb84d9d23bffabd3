//! End-to-end test of bashreadline under the real pmcd: lines typed at the prompts of bash on
//! a pseudo-terminal (as root and as nobody) must be in the recent-events table exactly, in
//! order, with the shell's pid and uid.

mod snoop_common;

use e2e::*;
use snoop_common::*;

/// Python workload for bashreadline: runs BASH interactively on a pseudo-terminal (as root,
/// then as nobody), types known lines at its prompts, each after the prompt is shown, and
/// prints "bash <pid> <uid>" per shell. Ends with "done".
const TYPING: &str = r#"
import os, pty, sys
bash = sys.argv[1]
def shell(uid, lines):
    pid, fd = pty.fork()
    if pid == 0:
        if uid:
            os.setgid(65534)
            os.setuid(uid)
        os.execve(bash, ["bash", "--norc", "--noprofile", "-i"], {"PS1": "snoop-prompt$ ", "PATH": "/usr/bin:/bin", "TERM": "dumb"})
    seen = b""
    def prompt():
        nonlocal seen
        while seen.count(b"snoop-prompt$ ") == 0:
            seen += os.read(fd, 4096)
        seen = seen.split(b"snoop-prompt$ ", 1)[1]
    for l in lines:
        prompt()
        os.write(fd, (l + "\n").encode())
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    _, st = os.waitpid(pid, 0)
    assert st == 0, st
    print("bash", pid, uid, flush=True)
shell(0, ["echo snoop-line-1", "true 'a typed secret: hunter2'", "   :  spaces  around   ", "exit"])
shell(65534, ["echo as nobody", "exit"])
print("done", flush=True)
"#;

const LINE_FIELDS: &[&str] = &["pid", "uid", "comm", "line"];

#[test]
fn bashreadline_records_the_lines_typed_into_bash_exactly() {
    let _s = session("bashreadline", "process_count = 1000\nbash = /bin/bash");
    let mut w = Peer::spawn(TYPING, &["/bin/bash"]);
    let mut shells = Vec::new();
    loop {
        let l = w.line();
        if l == "done" {
            break;
        }
        let f: Vec<String> = l.split(' ').map(str::to_string).collect();
        assert_eq!(f[0], "bash", "{l}");
        shells.push((f[1].clone(), f[2].clone()));
    }
    w.finish();
    let typed: [&[&str]; 2] = [
        &[
            "echo snoop-line-1",
            "true 'a typed secret: hunter2'",
            "   :  spaces  around   ",
            "exit",
        ],
        &["echo as nobody", "exit"],
    ];
    for ((pid, uid), lines) in shells.iter().zip(typed) {
        let mine = picked_when("bashreadline", LINE_FIELDS, lines.len(), |e| {
            &e["pid"] == pid
        });
        let got: Vec<&str> = mine.iter().map(|e| e["line"].as_str()).collect();
        assert_eq!(got, lines, "lines of bash {pid} (uid {uid}): {mine:#?}");
        for (i, e) in mine.iter().enumerate() {
            assert_fields(
                &format!("bash {pid} line {i}"),
                e,
                &[("uid", uid.clone()), ("comm", "bash".into())],
            );
        }
    }
    eprintln!("bashreadline: {} shells checked", shells.len());
    assert_access_as_nobody("bashreadline", &["pid", "uid"], &["comm", "line"]);
    assert_eq!(
        value_u64("bcc.bashreadline.lost", None),
        Some(0),
        "bashreadline lost events"
    );
}
