#!/usr/bin/env bash
# The kernel matrix: every module of pmdabcc, started on the kernels people run, checked
# against expected.tsv (which hooks each module runs with, or which hook it misses) and
# counts.tsv (that each running module counted a known workload).
#
#   tests/kernels/matrix.sh [--update] [KERNEL...]
#
# KERNEL: host (the running kernel, no VM), a name from kernels.tsv (bullseye, bookworm,
# trixie, trixie-backports), oldest, newest, `quick` (what ./test.sh runs: host, the oldest,
# bookworm and the newest) or `all` (the default: host and every kernel of kernels.tsv).
# --update writes the rows of expected.tsv for the kernels run from what was seen (review
# the diff!), instead of failing on a difference.
#
# The Debian kernels are only downloaded (apt-get download, Debian's archive) and unpacked,
# never installed, and boot under QEMU (KVM when it works, TCG otherwise) with an initramfs
# of busybox, bash, the agent and its libraries; the results come back on a second serial port.
# Downloads are cached in $PCP_BCC_KERNEL_CACHE (default /var/cache/pcp-bcc-kernels).
# Needs root (BPF; apt). Builds nothing: run `cargo build --release -p pmdabcc` first.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${PCP_BCC_KERNEL_CACHE:-/var/cache/pcp-bcc-kernels}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
AGENT=${PMDABCC:-$TARGET/release/pmdabcc}
OUT=${PCP_BCC_MATRIX_OUT:-$TARGET/kernel-matrix}
VM_TIMEOUT=${PCP_BCC_VM_TIMEOUT:-300}
PROBE_ARGS=(--probe -c /etc/matrix.conf --all-hooks --workload /etc/workload.sh)

# The first of its arguments that exists (globs that match nothing stay as they are).
first() { local f; for f in "$@"; do [ -e "$f" ] && { echo "$f"; return 0; }; done; return 0; }
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'matrix: error: %s\n' "$*" >&2; exit 2; }

UPDATE=0
WANT=()
for a in "$@"; do
    case $a in
        --update) UPDATE=1 ;;
        -h | --help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        -*) die "unknown option $a" ;;
        *) WANT+=("$a") ;;
    esac
done
((${#WANT[@]})) || WANT=(all)

# kernels.tsv: name, suite, description; in order, oldest first.
mapfile -t NAMES < <(grep -v '^#' "$HERE/kernels.tsv" | awk -F'\t' 'NF>=2 {print $1}')
suite_of() { awk -F'\t' -v n="$1" '$1 == n {print $2}' "$HERE/kernels.tsv"; }
RUN=()
for w in "${WANT[@]}"; do
    case $w in
        all) RUN+=(host "${NAMES[@]}") ;;
        quick) RUN+=(host "${NAMES[0]}" bookworm "${NAMES[-1]}") ;;
        oldest) RUN+=("${NAMES[0]}") ;;
        newest) RUN+=("${NAMES[-1]}") ;;
        host) RUN+=(host) ;;
        *) [ -n "$(suite_of "$w")" ] || die "unknown kernel $w (known: host ${NAMES[*]})"; RUN+=("$w") ;;
    esac
done
# Each once, in the order asked.
mapfile -t RUN < <(printf '%s\n' "${RUN[@]}" | awk '!seen[$0]++')

[ "$(id -u)" = 0 ] || die "run as root (BPF programs, apt-get)"
[ -x "$AGENT" ] || die "$AGENT not found: run cargo build --release -p pmdabcc (or ./test.sh) first"
mkdir -p "$OUT" "$CACHE"

# ---- tools ------------------------------------------------------------------------------
# qemu-system-x86 and busybox-static from Debian. Where a backports qemu-utils is installed,
# bookworm's qemu-system-x86 conflicts with it, so the matching backports version is taken.
APT_TOOLS=$CACHE/apt-tools
apt_tools() {
    mkdir -p "$APT_TOOLS"/lists/partial "$APT_TOOLS"/cache/archives/partial
    local codename; codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    cat >"$APT_TOOLS/sources.list" <<EOF
deb http://deb.debian.org/debian $codename main
deb http://deb.debian.org/debian $codename-updates main
deb http://deb.debian.org/debian-security $codename-security main
deb http://deb.debian.org/debian $codename-backports main
EOF
    apt-get -o Dir::Etc::sourcelist="$APT_TOOLS/sources.list" -o Dir::Etc::sourceparts=- \
        -o Dir::State::Lists="$APT_TOOLS/lists" -o Dir::Cache="$APT_TOOLS/cache" \
        -o APT::Sandbox::User=root "$@"
}
ensure_tools() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    [ -x /bin/busybox ] && /bin/busybox cpio --help >/dev/null 2>&1 || need+=(busybox-static)
    command -v python3 >/dev/null || need+=(python3)
    command -v xz >/dev/null || need+=(xz-utils)
    command -v zstd >/dev/null || need+=(zstd)
    command -v strip >/dev/null || need+=(binutils)
    ((${#need[@]})) || return 0
    say "installing ${need[*]}"
    local fake; fake=$(mktemp -d)
    printf '#!/bin/sh\nexit 0\n' >"$fake/systemctl"; chmod +x "$fake/systemctl"
    local qv; qv=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    local args=()
    for p in "${need[@]}"; do
        if [ "$p" = qemu-system-x86 ] && [[ $qv == *bpo* ]]; then
            args+=(qemu-system-x86="$qv" qemu-system-common="$qv" qemu-system-data="$qv")
        else
            args+=("$p")
        fi
    done
    apt_tools update -qq >/dev/null 2>&1 || die "apt-get update failed"
    local rel=(); [[ $qv == *bpo* ]] && rel=(-t "$(. /etc/os-release && echo "$VERSION_CODENAME")-backports")
    PATH=$fake:$PATH DEBIAN_FRONTEND=noninteractive apt_tools install -y -q --no-install-recommends \
        --no-remove "${rel[@]}" "${args[@]}" >"$OUT/apt-tools.log" 2>&1 \
        || { tail -20 "$OUT/apt-tools.log" >&2; die "could not install ${need[*]} (log: $OUT/apt-tools.log)"; }
    rm -rf "$fake"
}

# ---- kernels ----------------------------------------------------------------------------
# A private apt configuration over every suite of kernels.tsv: the system's sources stay
# untouched, and packages are only downloaded.
APT_K=$CACHE/apt
apt_k() {
    apt-get -o Dir::Etc::sourcelist="$APT_K/sources.list" -o Dir::Etc::sourceparts=- \
        -o Dir::State::Lists="$APT_K/lists" -o Dir::Cache="$APT_K/cache" \
        -o APT::Sandbox::User=root "$@"
}
apt_cache_k() {
    apt-cache -o Dir::Etc::sourcelist="$APT_K/sources.list" -o Dir::Etc::sourceparts=- \
        -o Dir::State::Lists="$APT_K/lists" -o Dir::Cache="$APT_K/cache" "$@"
}
apt_k_update() {
    mkdir -p "$APT_K"/lists/partial "$APT_K"/cache/archives/partial
    local s new; new=$(mktemp)
    for s in $(grep -v '^#' "$HERE/kernels.tsv" | awk -F'\t' 'NF>=2 {print $2}'); do
        case $s in
            *-security) echo "deb http://deb.debian.org/debian-security $s main" ;;
            *) echo "deb http://deb.debian.org/debian $s main" ;;
        esac
    done >"$new"
    cmp -s "$new" "$APT_K/sources.list" && rm -f "$new" || mv "$new" "$APT_K/sources.list"
    # Once a day is enough: the archive keeps one kernel ABI per suite. ($APT_K/updated is
    # touched after each update; this runs in command substitutions, so no variable keeps it.)
    if [ -z "$(find "$APT_K/updated" -mmin -1440 2>/dev/null)" ] \
        || [ "$APT_K/sources.list" -nt "$APT_K/updated" ]; then
        say "apt-get update (kernel suites)"
        apt_k update -qq -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false >/dev/null 2>&1 && touch "$APT_K/updated" || return 1
    fi
}

# Downloads and unpacks the current cloud kernel of a suite; prints its directory.
# Offline, the last one unpacked for the suite is used.
fetch_kernel() {
    local name=$1 suite; suite=$(suite_of "$1")
    local last=$CACHE/kernels/$name.current
    local pkg=""
    if apt_k_update; then
        pkg=$(apt_cache_k depends "linux-image-cloud-amd64/$suite" 2>/dev/null \
            | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    fi
    if [ -z "$pkg" ]; then
        [ -s "$last" ] || die "no kernel package found for $suite (and none cached)"
        say "$name: archive not reachable, using the cached $(cat "$last")"
        cat "$last"
        return
    fi
    local dir=$CACHE/kernels/$pkg
    if [ ! -e "$dir/.done" ]; then
        # From 6.13 on, Debian splits the image into linux-binary-* and linux-modules-*.
        local pkgs=("$pkg") abi=${pkg#linux-image-}
        mapfile -t -O 1 pkgs < <(apt_cache_k depends "$pkg" 2>/dev/null \
            | awk -v a="$abi" '$1 ~ /Depends:/ && ($2 == "linux-binary-" a || $2 == "linux-modules-" a) {print $2}')
        mkdir -p "$CACHE/debs" && rm -rf "$dir" && mkdir -p "$dir"
        say "$name: downloading ${pkgs[*]}"
        (cd "$CACHE/debs" && apt_k download "${pkgs[@]}" >/dev/null) || die "apt-get download ${pkgs[*]} failed"
        local p
        for p in "${pkgs[@]}"; do dpkg-deb -x "$(first "$CACHE/debs/${p}"_*.deb)" "$dir"; done
        touch "$dir/.done"
    fi
    echo "$dir" >"$last"
    echo "$dir"
}

# ---- user modules -----------------------------------------------------------------------
# The example user modules (examples/modules: a CO-RE object and a spec each), built as a
# user would, go where the agent looks for them: $PCP_PMDAS_DIR/bcc/modules.
USER_MODULES=$OUT/user-modules
build_user_modules() {
    local f stale=0
    for f in "$ROOT"/examples/modules/*/* "$ROOT"/crates/pmdabcc/src/bpf/*.h; do
        [ -e "$USER_MODULES/.done" ] && [ ! "$f" -nt "$USER_MODULES/.done" ] || stale=1
    done
    ((stale)) || return 0
    rm -rf "$USER_MODULES" && mkdir -p "$USER_MODULES"
    sh "$ROOT/examples/modules/build.sh" "$USER_MODULES" >"$OUT/user-modules.log" 2>&1 \
        || { cat "$OUT/user-modules.log" >&2; die "the example user modules did not build"; }
    chmod 0644 "$USER_MODULES"/*
    touch "$USER_MODULES/.done"
}

# ---- initramfs --------------------------------------------------------------------------
# One archive for every kernel (busybox, the agent and its libraries, the configuration)
# and one per kernel (its modules), concatenated: the kernel unpacks both.
lib_closure() { ldd "$@" 2>/dev/null | awk '/=> \// {print $3} /^\t\/lib.*ld-linux/ {print $1}' | sort -u; }
build_common() {
    local root=$OUT/initramfs-common f
    # Up to date when newer than everything it is made of.
    if [ -s "$OUT/common.cpio.gz" ]; then
        local stale=0
        for f in "$AGENT" "$HERE"/matrix.conf "$HERE"/workload.sh "$HERE"/vm-init.sh "$0" /bin/busybox "$USER_MODULES/.done"; do
            [ "$f" -nt "$OUT/common.cpio.gz" ] && stale=1
        done
        ((stale)) || return 0
    fi
    rm -rf "$root" && mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,usr/bin,lib/modules}
    cp /bin/busybox "$root/bin/busybox"
    strip -o "$root/bin/pmdabcc" "$AGENT"
    cp /usr/bin/true "$root/usr/bin/true"
    # bashreadline's uprobe needs a bash binary (with readline) to attach to.
    cp /bin/bash "$root/bin/bash"
    local l
    for l in $(lib_closure "$AGENT" /usr/bin/true /bin/bash); do
        mkdir -p "$root$(dirname "$l")" && cp -L "$l" "$root$l"
    done
    # The dynamic loader, where ldd names it by its canonical path.
    mkdir -p "$root/lib64" && cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
    cp /etc/pcp.conf "$root/etc/pcp.conf"
    cp "$HERE/matrix.conf" "$root/etc/matrix.conf"
    cp "$HERE/workload.sh" "$root/etc/workload.sh"
    cp "$HERE/vm-init.sh" "$root/init"
    mkdir -p "$root/var/lib/pcp/pmdas/bcc/modules"
    cp "$USER_MODULES"/*.bpf.o "$USER_MODULES"/*.toml "$root/var/lib/pcp/pmdas/bcc/modules/"
    chmod 0755 "$root/init" "$root/etc/workload.sh"
    printf '%s\n' "${PROBE_ARGS[@]}" >"$root/etc/probe-args"
    (cd "$root" && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -1) >"$OUT/common.cpio.gz"
}

# The modules the workload's disk needs (null_blk, else loop), decompressed, with their
# dependencies first; /etc/modules lists them in load order.
build_modules() {
    local kdir=$1 out=$2 root; root=$(mktemp -d)
    local mdir; mdir=$(first "$kdir"/lib/modules/* "$kdir"/usr/lib/modules/*)
    mkdir -p "$root/lib/modules" "$root/etc"
    local order=() seen=" "
    add_mod() {
        local m=$1 f dep
        [[ $seen == *" $m "* ]] && return 0
        seen+="$m "
        f=$(find "$mdir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -1)
        [ -n "$f" ] || return 0
        case $f in
            *.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
            *.zst) zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
            *) cp "$f" "$root/lib/modules/$m.ko" ;;
        esac
        for dep in $(tr '\0' '\n' <"$root/lib/modules/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
            add_mod "${dep//-/_}"
        done
        order+=("$m")
    }
    add_mod null_blk
    add_mod loop
    printf '%s\n' "${order[@]}" >"$root/etc/modules"
    (cd "$root" && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -1) >"$out"
    rm -rf "$root"
}

# ---- running ----------------------------------------------------------------------------
KVM_VERDICT=$CACHE/kvm-verdict-$(uname -r)-$(qemu-system-x86_64 --version 2>/dev/null | awk 'NR==1 {print $4}')
pick_accel() {
    if [ -n "${PCP_BCC_QEMU_ACCEL:-}" ]; then echo "$PCP_BCC_QEMU_ACCEL"; return; fi
    if [ -w /dev/kvm ] && [ "$(cat "$KVM_VERDICT" 2>/dev/null)" != broken ]; then echo kvm; else echo tcg; fi
}

# boot NAME KERNEL_DIR: runs the VM; results in $OUT/NAME.results.
boot() {
    local name=$1 kdir=$2 accel; accel=$(pick_accel)
    local vmlinuz; vmlinuz=$(first "$kdir"/boot/vmlinuz-* "$kdir"/usr/lib/modules/*/vmlinuz)
    [ -n "$vmlinuz" ] || die "$name: no vmlinuz in $kdir"
    build_modules "$kdir" "$OUT/$name.modules.cpio.gz"
    cat "$OUT/common.cpio.gz" "$OUT/$name.modules.cpio.gz" >"$OUT/$name.initramfs"
    local res=$OUT/$name.results con=$OUT/$name.console
    rm -f "$res" "$con"
    local cpu=(-cpu max -accel tcg) t=$VM_TIMEOUT
    if [ "$accel" = kvm ]; then cpu=(-cpu host -accel kvm); t=60; fi
    say "$name: booting $(basename "$vmlinuz") under QEMU ($accel)"
    local t0=$SECONDS rc=0
    # In a subshell of its own, so the shell's note of a crashed qemu goes to the log too.
    (timeout --foreground -k 5 "$t" qemu-system-x86_64 "${cpu[@]}" -m 1024 -smp 2 \
        -nographic -no-reboot -nodefaults -monitor none \
        -kernel "$vmlinuz" -initrd "$OUT/$name.initramfs" \
        -append "console=ttyS0 panic=-1 quiet" \
        -serial "file:$con" -serial "file:$res" </dev/null; exit $?) >"$OUT/$name.qemu.log" 2>&1 || rc=$?
    if [ "$accel" = kvm ] && ! grep -q '^boot' "$res" 2>/dev/null; then
        # Nested KVM can fail before the guest's init runs (an MSR qemu cannot set, an
        # emulation failure): note it, and use TCG from now on.
        mv "$OUT/$name.qemu.log" "$OUT/$name.kvm.log"
        say "$name: KVM did not work here (see $OUT/$name.kvm.log); TCG from now on"
        echo broken >"$KVM_VERDICT"
        boot "$@"
        return
    fi
    [ "$accel" = kvm ] && echo ok >"$KVM_VERDICT"
    printf 'matrix-time\t%s\t%s\n' "$((SECONDS - t0))" "$accel" >>"$res"
    ((rc == 0)) || printf 'qemu-exit\t%s\n' "$rc" >>"$res"
}

# The running kernel: the agent runs here, under another process name so other jobs that
# signal `pmdabcc` leave it alone, with a loop device for the workload's disk.
run_host() {
    local res=$OUT/host.results dir; dir=$(mktemp -d)
    ln -s "$AGENT" "$dir/pmdabcc-probe"
    # The user modules from a PCP_PMDAS_DIR of its own (the installed agent's stays as it is).
    mkdir -p "$dir/pmdas/bcc/modules"
    cp "$USER_MODULES"/*.bpf.o "$USER_MODULES"/*.toml "$dir/pmdas/bcc/modules/"
    truncate -s 16M "$dir/disk.img"
    local loopdev; loopdev=$(losetup -f --show "$dir/disk.img") || die "no loop device for the workload"
    say "host: probing the running kernel $(uname -r)"
    local t0=$SECONDS rc=0
    # SKIP_PERCENT: this kernel sometimes runs no tracing program for a block completion
    # (README, "Notes for these machines"); the VMs get none.
    # IRQ_FILE: on the disk of the build (not tmpfs), for a device interrupt.
    DISK=${loopdev#/dev/} BB=/bin/busybox TRUE=/usr/bin/true SKIP_PERCENT=2 PCP_PMDAS_DIR=$dir/pmdas \
        IRQ_FILE=$OUT/irq.tmp \
        "$dir/pmdabcc-probe" --probe -c "$HERE/matrix.conf" --all-hooks --workload "$HERE/workload.sh" \
        >"$res" 2>"$OUT/host.stderr" || rc=$?
    losetup -d "$loopdev" || true
    rm -rf "$dir"
    { printf 'probe-exit\t%s\n' "$rc"; echo matrix-done
      printf 'matrix-time\t%s\thost\n' "$((SECONDS - t0))"; } >>"$res"
}

ensure_tools
build_user_modules
failed=()
NEED_VM=0
for k in "${RUN[@]}"; do [ "$k" = host ] || NEED_VM=1; done
((NEED_VM)) && build_common
for k in "${RUN[@]}"; do
    if [ "$k" = host ]; then
        run_host
    else
        kdir=$(fetch_kernel "$k")
        boot "$k" "$kdir"
    fi
    upd=(); ((UPDATE)) && upd=(--update)
    python3 "$HERE/check.py" "${upd[@]}" --name "$k" "$OUT/$k.results" || failed+=("$k")
done
python3 "$HERE/check.py" --table "$OUT" "${RUN[@]}" || true
if ((${#failed[@]})); then
    echo "kernel matrix: FAILED on ${failed[*]} (results in $OUT)" >&2
    exit 1
fi
echo "kernel matrix: ok (${RUN[*]})" >&2
