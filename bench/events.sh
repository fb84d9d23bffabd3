#!/usr/bin/env bash
# bench/events.sh: the event modules against pmdabpf's (execsnoop: delivery under an exec
# burst, in-kernel cost per exec); see bench/events.py. As root; builds and installs this
# agent with the repo's pmda/bcc.conf under the shared pmcd lock.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
[ -x /var/lib/pcp/pmdas/bpf/pmdabpf ] || die "PCP's pmdabpf is not in /var/lib/pcp/pmdas/bpf (Debian package pcp)"
command -v bpftool >/dev/null || die "bpftool is needed"
build_release
exec flock -o /tmp/pcp-bcc-e2e.lock env PCP_BCC_E2E_LOCKED=1 bash -c \
    '. scripts/lib.sh; BCC_CONF=pmda/bcc.conf deploy_install && exec /usr/bin/python3 bench/events.py "$@"' events "$@"
