#!/usr/bin/env bash
# bench/events.sh: the event modules against pmdabpf's (execsnoop, exitsnoop, opensnoop,
# statsnoop, mountsnoop, bashreadline: delivery under a burst, in-kernel cost per event);
# see bench/events.py. As root; builds this agent, then per module takes the shared pmcd
# lock, installs the agent with the repo's pmda/bcc.conf, measures and lets the lock go.
# bench/events.sh [--rounds 3] [module...] (default: every module); then prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
[ -x /var/lib/pcp/pmdas/bpf/pmdabpf ] || die "PCP's pmdabpf is not in /var/lib/pcp/pmdas/bpf (Debian package pcp)"
command -v bpftool >/dev/null || die "bpftool is needed"
command -v unshare >/dev/null || die "unshare (util-linux) is needed"
args=()
modules=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds|--units) args+=("$1" "$2"); shift 2 ;;
        -*) die "unknown option $1" ;;
        *) modules+=("$1"); shift ;;
    esac
done
[ ${#modules[@]} -gt 0 ] || modules=(execsnoop exitsnoop opensnoop statsnoop mountsnoop bashreadline)
build_release
for m in "${modules[@]}"; do
    flock -o /tmp/pcp-bcc-e2e.lock env PCP_BCC_E2E_LOCKED=1 bash -c \
        '. scripts/lib.sh; ensure_pmcd; BCC_CONF=pmda/bcc.conf deploy_install >&2 && exec /usr/bin/python3 bench/events.py --module "$@"' \
        events "$m" ${args[@]+"${args[@]}"}
done
exec /usr/bin/python3 bench/events.py --report
