#!/usr/bin/env bash
# ./test.sh: set up everything, then run every test: unit tests, and the end-to-end tests
# against the real pmcd with real eBPF (they fail, saying what is missing, where either is
# unavailable). Extra arguments go to `cargo test` (e.g. ./test.sh -p e2e sysfork).
set -euo pipefail
cd "$(dirname "$0")"
. scripts/lib.sh
need_root
ensure_deps
# The end-to-end tests share one pmcd: the rest of the run holds its lock (the tests see
# PCP_BCC_E2E_LOCKED and do not lock again). flock -o keeps the lock's fd out of every
# child, so a pmcd (re)started by a test cannot inherit it and hold the lock for good.
if [ -z "${PCP_BCC_E2E_LOCKED:-}" ]; then
    export PCP_BCC_E2E_LOCKED=1
    exec flock -o /tmp/pcp-bcc-e2e.lock "$0" "$@"
fi
ensure_pmcd
build_release
BCC_CONF=pmda/bcc.conf deploy_install
say "running the tests"
# One test thread: the end-to-end tests share one pmcd (they also take a lock file).
cargo test --release --locked --workspace "$@" -- --test-threads=1
