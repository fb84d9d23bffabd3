#!/bin/sh
# Builds every example user module: examples/modules/<m>/<m>.bpf.c -> OUTDIR/<m>.bpf.o, and
# copies its spec <m>.toml beside it, so OUTDIR can be $PCP_PMDAS_DIR/bcc/modules directly.
#
#   examples/modules/build.sh [OUTDIR]      (default: examples/modules/build)
#
# Headers: vmlinux.h, hist.bpf.h, bits.bpf.h and maps.bpf.h from BPF_INCLUDE (default: the
# agent's crates/pmdabcc/src/bpf in this tree; an installed agent has them in
# $PCP_PMDAS_DIR/bcc/include), <bpf/bpf_helpers.h> from the libbpf-dev package.
# CLANG overrides the compiler. Any warning fails the build (-Werror).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/build}
inc=${BPF_INCLUDE:-$here/../../crates/pmdabcc/src/bpf}
clang=${CLANG:-clang}
arch=$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/' -e 's/ppc64le/powerpc/' \
	-e 's/s390x/s390/' -e 's/riscv64/riscv/' -e 's/loongarch64/loongarch/')

[ -f "$inc/vmlinux.h" ] || { echo "build.sh: no vmlinux.h in $inc (set BPF_INCLUDE)" >&2; exit 1; }
[ -f /usr/include/bpf/bpf_helpers.h ] || { echo "build.sh: no <bpf/bpf_helpers.h>: apt-get install libbpf-dev" >&2; exit 1; }
command -v "$clang" >/dev/null || { echo "build.sh: no $clang: apt-get install clang" >&2; exit 1; }
mkdir -p "$out"

for src in "$here"/*/*.bpf.c; do
	m=$(basename "$src" .bpf.c)
	"$clang" -g -O2 -target bpf -D__TARGET_ARCH_"$arch" -Wall -Werror \
		-I"$inc" -c "$src" -o "$out/$m.bpf.o"
	cp "$(dirname "$src")/$m.toml" "$out/$m.toml"
	echo "$out/$m.bpf.o $out/$m.toml"
done
