# bench/tools.sh: sourced by the bench scripts (after scripts/lib.sh): builds the helpers
# they share into $CARGO_TARGET_DIR/bench: the floor BPF programs (bench/floor/floor.bpf.c)
# and the process spawner (bench/procs.c).
build_bench_tools() {
    local arch out="${CARGO_TARGET_DIR:-target}/bench"
    case $(uname -m) in x86_64) arch=x86 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
    mkdir -p "$out"
    say "building the floor BPF programs (bench/floor/floor.bpf.c) and bench/procs.c"
    clang -O2 -g -target bpf -D__TARGET_ARCH_$arch -Icrates/pmdabcc/src/bpf \
        -c bench/floor/floor.bpf.c -o "$out/floor.bpf.o"
    cc -O2 -Wall -o "$out/procs" bench/procs.c
}
