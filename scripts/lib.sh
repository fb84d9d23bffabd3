# Shared by install.sh and test.sh: dependencies, pmcd, build, deployment of the agent.
# Every step is idempotent and quick when already done.

PCP_PMDAS_DIR=${PCP_PMDAS_DIR:-/var/lib/pcp/pmdas}
BCC_DIR=$PCP_PMDAS_DIR/bcc
# The distribution's Python pmdabcc, moved aside while ours is installed.
DIST_SAVE=$PCP_PMDAS_DIR/.bcc-dist-python
MARKER=.pcp-bcc-pmda
PCP_BIN=/usr/lib/pcp/bin
export PATH=/usr/bin:$PATH:$PCP_BIN   # system python3 first, for pmrep/pmpython

DEB_PACKAGES="pcp python3-pcp libpcp-pmda3-dev libpcp3-dev clang llvm libelf-dev zlib1g-dev pkg-config make bpftool libbpf-dev iproute2 tmux"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" = 0 ] || die "run as root: the agent loads BPF programs and installs into pmcd"
}

# Installs the Debian packages that are missing. The pcp package's post-install step fails
# where systemd is not running; a no-op systemctl first in PATH lets dpkg finish it.
ensure_deps() {
    local missing=()
    for p in $DEB_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        say "installing packages: ${missing[*]}"
        command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
        local fake; fake=$(mktemp -d)
        printf '#!/bin/sh\nexit 0\n' >"$fake/systemctl"; chmod +x "$fake/systemctl"
        apt-get update -qq || die "apt-get update failed"
        PATH=$fake:$PATH DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/tmp/pcp-bcc-apt.log 2>&1 \
            || PATH=$fake:$PATH dpkg --configure -a >>/tmp/pcp-bcc-apt.log 2>&1 \
            || { tail -20 /tmp/pcp-bcc-apt.log >&2; die "package installation failed (log: /tmp/pcp-bcc-apt.log)"; }
        rm -rf "$fake"
        for p in "${missing[@]}"; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || die "package $p did not install (log: /tmp/pcp-bcc-apt.log)"
        done
    fi
    command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || die "cargo not found: install the Rust toolchain (rustup)"
    command -v cargo >/dev/null || export PATH=$HOME/.cargo/bin:$PATH
}

pmcd_up() { pminfo -f pmcd.version >/dev/null 2>&1; }

ensure_pmcd() {
    if ! pmcd_up; then
        say "starting pmcd"
        /etc/init.d/pmcd start >/dev/null 2>&1 || true
        for _ in $(seq 1 30); do pmcd_up && break; sleep 0.5; done
        pmcd_up || die "pmcd did not start (see /var/log/pcp/pmcd/pmcd.log)"
    fi
}

build_release() {
    say "building the release binary"
    cargo build --release --locked -p pmdabcc >&2 || die "build failed"
}

# Waits until pmcd serves the agent and no module is still loading.
wait_ready() {
    local i
    for i in $(seq 1 60); do
        if out=$(pminfo -f bcc.agent.modules.state 2>/dev/null) && ! grep -q '"loading"' <<<"$out" && grep -q 'value' <<<"$out"; then
            return 0
        fi
        sleep 0.5
    done
    tail -20 /var/log/pcp/pmcd/bcc.log >&2 2>/dev/null || true
    die "the bcc agent did not become ready (log: /var/log/pcp/pmcd/bcc.log)"
}

# Copies the agent into $PCP_PMDAS_DIR/bcc (moving the distribution's Python pmdabcc aside)
# and runs its Install. Keeps an existing bcc.conf of ours unless BCC_CONF names one.
deploy_install() {
    local here; here=$(pwd)
    if [ -d "$BCC_DIR" ] && [ ! -f "$BCC_DIR/$MARKER" ]; then
        if [ -e "$DIST_SAVE" ]; then die "$BCC_DIR is not ours and $DIST_SAVE exists: resolve by hand"; fi
        say "moving the distribution's Python pmdabcc aside to $DIST_SAVE"
        if grep -q '^bcc[[:space:]]' /etc/pcp/pmcd/pmcd.conf 2>/dev/null; then
            (cd "$BCC_DIR" && PCPQA_SYSTEMD=no ./Remove >/dev/null 2>&1) || true
        fi
        mv "$BCC_DIR" "$DIST_SAVE"
    fi
    mkdir -p "$BCC_DIR"
    install -m 0755 "${CARGO_TARGET_DIR:-target}/release/pmdabcc" "$BCC_DIR/pmdabcc.new" && mv -f "$BCC_DIR/pmdabcc.new" "$BCC_DIR/pmdabcc"
    install -m 0755 pmda/Install pmda/Remove "$BCC_DIR/"
    install -m 0644 pmda/root_bcc pmda/domain.h pmda/pmdabcc.1 pmda/bcc.conf pmda/bpf-proc-net.conf "$BCC_DIR/" 2>/dev/null || true
    # What user modules build against, and where their objects and specs go.
    install -d -m 0755 "$BCC_DIR/include" "$BCC_DIR/modules"
    install -m 0644 crates/pmdabcc/src/bpf/vmlinux.h crates/pmdabcc/src/bpf/bits.bpf.h \
        crates/pmdabcc/src/bpf/hist.bpf.h crates/pmdabcc/src/bpf/maps.bpf.h \
        crates/pmdabcc/src/bpf/block.bpf.h crates/pmdabcc/src/bpf/inet.bpf.h \
        crates/pmdabcc/src/bpf/hooks.bpf.h crates/pmdabcc/src/bpf/task.bpf.h "$BCC_DIR/include/"
    # pmlogrewrite rules for archives of PCP's Python pmdabcc (pmlogger_daily applies them).
    install -d -m 0755 /etc/pcp/pmlogrewrite
    install -m 0644 pmda/bcc_upstream.conf /etc/pcp/pmlogrewrite/bcc_upstream.conf
    mv -f "$BCC_DIR/bcc.conf" "$BCC_DIR/bcc.conf.default"
    if [ -n "${BCC_CONF:-}" ]; then
        install -m 0644 "$BCC_CONF" "$BCC_DIR/bcc.conf"
    elif [ ! -f "$BCC_DIR/bcc.conf" ]; then
        cp "$BCC_DIR/bcc.conf.default" "$BCC_DIR/bcc.conf"
    fi
    chown root:root "$BCC_DIR/bcc.conf"; chmod 0644 "$BCC_DIR/bcc.conf"
    touch "$BCC_DIR/$MARKER"
    say "installing the agent into pmcd"
    (cd "$BCC_DIR" && PCPQA_SYSTEMD=no ./Install </dev/null >/tmp/pcp-bcc-install.log 2>&1) \
        || { cat /tmp/pcp-bcc-install.log >&2; die "Install failed"; }
    cd "$here"
    wait_ready
}

deploy_remove() {
    if [ -f "$BCC_DIR/$MARKER" ]; then
        say "removing the agent from pmcd"
        (cd "$BCC_DIR" && PCPQA_SYSTEMD=no ./Remove </dev/null >/tmp/pcp-bcc-remove.log 2>&1) || { cat /tmp/pcp-bcc-remove.log >&2; die "Remove failed"; }
        rm -rf "$BCC_DIR"
        rm -f /etc/pcp/pmlogrewrite/bcc_upstream.conf
    fi
    if [ -d "$DIST_SAVE" ] && [ ! -e "$BCC_DIR" ]; then
        say "putting the distribution's Python pmdabcc back"
        mv "$DIST_SAVE" "$BCC_DIR"
    fi
}
