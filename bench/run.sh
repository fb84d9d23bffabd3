#!/usr/bin/env bash
# bench/run.sh: the benchmark suite, this agent against PCP's pmdabpf (see docs/BENCHMARKS.md).
#   bench/run.sh                 full run: 5 rounds, writes docs/BENCHMARKS.md
#   bench/run.sh --smoke         one short round, a few seconds per figure (CI)
#   bench/run.sh --rounds 9 --figures 1,3 --no-write
# As root. It takes the shared pmcd lock (/tmp/pcp-bcc-e2e.lock) one figure group at a time
# and leaves both agents installed with their default configurations.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
# Bench-only packages, with the project's (whose libbpf-dev has the floor programs' headers):
# perf for the scheduler workload. bpftool comes with DEB_PACKAGES, pmdabpf and the Python PCP
# API (python3-pcp) with pcp, losetup with mount (priority required).
DEB_PACKAGES="$DEB_PACKAGES linux-perf"
ensure_deps
[ -x /var/lib/pcp/pmdas/bpf/pmdabpf ] || die "PCP's pmdabpf is not in /var/lib/pcp/pmdas/bpf (Debian package pcp)"
for t in perf bpftool losetup; do command -v $t >/dev/null || die "$t is needed (linux-perf, bpftool, mount)"; done
ensure_pmcd
build_release
. bench/tools.sh
build_bench_tools
say "running the benchmarks"
exec /usr/bin/python3 bench/bench.py --cmdline "bench/run.sh${*:+ $*}" "$@"
