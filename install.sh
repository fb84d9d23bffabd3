#!/usr/bin/env bash
# ./install.sh           set up everything, build, install the bcc agent into pmcd, show it live
# ./install.sh --remove  remove the agent (and put back the distribution's pmdabcc, if any)
set -euo pipefail
cd "$(dirname "$0")"
. scripts/lib.sh
need_root
case "${1:-}" in
    --remove) deploy_remove; say "removed"; exit 0 ;;
    "") ;;
    *) die "usage: ./install.sh [--remove]" ;;
esac
ensure_deps
ensure_pmcd
build_release
deploy_install
say "the bcc agent is running under pmcd; a live fetch:"
pminfo -f bcc
