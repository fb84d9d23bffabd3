#!/usr/bin/env bash
# bench/netproc.sh: netproc's in-kernel cost per event against the floor, and its fetch cost
# per process at 1,000 and 10,000 live processes; see bench/netproc.py and
# docs/BENCHMARKS.md ("netproc"). As root. Takes the shared pmcd lock for each part and
# leaves the agent with its default configuration.
#   bench/netproc.sh [--parts kernel,scale] [--rounds 5] [--sizes 1000,10000] [--write]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. bench/tools.sh
need_root
command -v bpftool >/dev/null || die "bpftool is needed"
build_release
build_bench_tools
exec /usr/bin/python3 bench/netproc.py --cmdline "bench/netproc.sh${*:+ $*}" "$@"
