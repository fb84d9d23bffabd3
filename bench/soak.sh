#!/usr/bin/env bash
# bench/soak.sh [minutes]: the soak test (not part of ./test.sh). Every bcc metric is fetched
# once a second for N minutes (default 30) under process, I/O and TCP churn. Reports the
# agent's RSS at start and end, instances served, BPF map fill.
#
# It runs its own pmcd (Unix socket and loopback port 44399, its own PMNS and pmcd.conf) with
# the agent under domain 150 and another binary name, with the repo's default bcc.conf, so it
# shares nothing with the system pmcd the end-to-end tests and benchmarks drive, and can run
# beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
export PATH=/usr/bin:$PATH
bin=${CARGO_TARGET_DIR:-target}/release/pmdabcc
[ -x "$bin" ] || cargo build --release -p pmdabcc
work=$(mktemp -d /var/tmp/bcc-soak.XXXXXX)
install -m 0755 "$bin" "$work/pmdabcc-soak"
install -m 0644 pmda/bcc.conf "$work/bcc.conf"
printf 'root {\n\tbcc\t150:*:*\n}\n' >"$work/root"
printf 'bcc\t150\tpipe\tbinary notready\t%s/pmdabcc-soak -d 150 -c %s/bcc.conf -l %s/bcc.log\n\n[access]\nallow "local:*" : all;\n' \
    "$work" "$work" "$work" >"$work/pmcd.conf"
/usr/lib/pcp/bin/pmcd -f -i 127.0.0.1 -p 44399 -s "$work/pmcd.socket" -n "$work/root" -c "$work/pmcd.conf" -l "$work/pmcd.log" &
pmcd=$!
bench/churn.sh $(( ${minutes%.*} * 60 + 90 )) &
churn=$!
trap 'kill $churn $pmcd 2>/dev/null; wait $pmcd 2>/dev/null' EXIT
host="unix:$work/pmcd.socket"
for _ in $(seq 100); do pminfo -h "$host" -f bcc.agent.startup_time 2>/dev/null | grep -q value && break; sleep 0.2; done
echo "soak: private pmcd at $host, logs in $work"
/usr/bin/python3 bench/soak.py "$minutes" "$host" pmdabcc-soak
