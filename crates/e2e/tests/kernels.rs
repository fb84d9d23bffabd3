//! Every module on the kernels people run: `pmdabcc --probe` on the running kernel and, under
//! QEMU, on Debian's oldest, Debian 12's and the newest kernel of tests/kernels/kernels.tsv,
//! each checked against tests/kernels/expected.tsv (the hooks each module runs with, or the
//! hook it misses) and counts.tsv (that each running module counted a known workload).
//! `tests/kernels/matrix.sh` (all kernels) is the same check by hand.
//!
//! These need no pmcd, but take the shared lock like every end-to-end test (the probe loads
//! the same BPF programs the installed agent runs).

use e2e::LOCK;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lock() -> File {
    let f = File::create(LOCK).expect("create lock file");
    // ./test.sh holds the lock for its whole run and says so in the environment.
    if std::env::var_os("PCP_BCC_E2E_LOCKED").is_none() {
        // SAFETY: flock on a valid fd we own; blocks until other test processes release it.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock {LOCK}");
    }
    f
}

fn agent() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let p = target.join("release/pmdabcc");
    assert!(
        p.exists(),
        "{} not found: build it first (cargo build --release -p pmdabcc; ./test.sh does)",
        p.display()
    );
    p
}

/// Runs the matrix for `kernels`; panics with its report unless every kernel is as expected.
fn matrix(kernels: &[&str]) {
    let _l = lock();
    agent();
    let out = Command::new("bash")
        .arg(root().join("tests/kernels/matrix.sh"))
        .args(kernels)
        .output()
        .expect("run tests/kernels/matrix.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Shown with --nocapture, and in the failure message otherwise.
    println!("{text}");
    assert!(
        out.status.success(),
        "kernel matrix {kernels:?} not as expected ({}):\n{text}",
        out.status
    );
}

#[test]
fn checker_catches_changed_rows_and_wrong_counts() {
    let out = Command::new("python3")
        .arg(root().join("tests/kernels/check.py"))
        .arg("--self-test")
        .output()
        .expect("python3 is needed for tests/kernels/check.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("self-test ok"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn probe_exit_status_tells_a_rejected_program_from_a_missing_hook() {
    let _l = lock();
    let dir = std::env::temp_dir().join(format!("pcp-bcc-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Another process name than the installed agent's: other tests signal `pmdabcc`.
    let exe = dir.join("pmdabcc-probe");
    let _ = std::fs::remove_file(&exe);
    std::os::unix::fs::symlink(agent(), &exe).unwrap();
    let probe = |fault: &str| {
        let conf = dir.join(format!("{fault}.conf"));
        std::fs::write(
            &conf,
            format!("[pmda]\nmodules = t\n[t]\nmodule = selftest\nfault = {fault}\n"),
        )
        .unwrap();
        let o = Command::new(&exe)
            .args(["--probe", "-c"])
            .arg(&conf)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, out) = probe("none");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("module\tt\trunning\tselftest_fork\t"), "{out}");
    let (code, out) = probe("missing_hook");
    assert_eq!(
        code,
        Some(0),
        "a missing hook is expected on some kernels:\n{out}"
    );
    assert!(
        out.contains(
            "module\tt\tunsupported\tmissing:tracepoint:bcc_pmda_selftest/no_such_event\t"
        ),
        "{out}"
    );
    let (code, out) = probe("verifier");
    assert_eq!(code, Some(1), "a rejected program is a failure:\n{out}");
    assert!(out.contains("module\tt\tfailed\tverifier\t"), "{out}");
    assert!(
        out.contains("dereference of modified ctx ptr"),
        "the verifier's verdict is shown:\n{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn running_kernel_matches_the_table() {
    matrix(&["host"]);
}

#[test]
fn oldest_kernel_of_the_matrix_in_qemu() {
    matrix(&["oldest"]);
}

#[test]
fn debian12_kernel_in_qemu() {
    matrix(&["bookworm"]);
}

#[test]
fn newest_kernel_of_the_matrix_in_qemu() {
    matrix(&["newest"]);
}
