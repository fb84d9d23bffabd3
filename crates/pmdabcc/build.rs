//! Compiles each module's BPF program (`src/modules/<m>/<m>.bpf.c`) with clang into a CO-RE
//! object and generates its Rust skeleton (`$OUT_DIR/<m>.skel.rs`) with libbpf-cargo.
//! CO-RE against the committed `src/bpf/vmlinux.h`: no kernel headers needed here, and
//! neither LLVM nor headers on the monitored host.

use libbpf_cargo::SkeletonBuilder;
use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok("riscv64") => "riscv",
        Ok("powerpc64") => "powerpc",
        Ok("s390x") => "s390",
        Ok(a) => panic!("unsupported target arch {a}"),
        Err(_) => "x86",
    };
    let common = Path::new("src/bpf");
    println!("cargo:rerun-if-changed=src/bpf");
    // The whole tree, so a new module folder is noticed too.
    println!("cargo:rerun-if-changed=src/modules");
    let mut dirs: Vec<_> = std::fs::read_dir("src/modules")
        .expect("src/modules")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let src = dir.join(format!("{name}.bpf.c"));
        if !src.exists() {
            continue;
        }
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut b = SkeletonBuilder::new();
        b.source(&src)
            .obj(out.join(format!("{name}.bpf.o")))
            .clang_args([
                format!("-I{}", common.display()),
                format!("-I{}", dir.display()),
                format!("-D__TARGET_ARCH_{arch}"),
                "-Wall".to_string(),
                "-Wno-unused-function".to_string(),
            ]);
        // A spec module (`<m>.toml` beside it) embeds the object; the rest use a skeleton.
        let built = if dir.join(format!("{name}.toml")).exists() {
            b.build()
        } else {
            b.build_and_generate(out.join(format!("{name}.skel.rs")))
        };
        built.unwrap_or_else(|e| panic!("building BPF for module {name} ({}): {e:#}\n(is clang installed? ./install.sh installs it)", src.display()));
    }
    write_names(&out);
}

/// Syscall and errno names for the decoders, from the build host's kernel UAPI headers
/// (linux-libc-dev): the monitored host needs none. Missing headers leave a table empty
/// (the decoders then print numbers).
fn write_names(out: &Path) {
    fn defines(path: &str, prefix: &str) -> Vec<(i64, String)> {
        println!("cargo:rerun-if-changed={path}");
        let mut v: Vec<(i64, String)> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                (it.next()? == "#define").then_some(())?;
                let name = it.next()?.strip_prefix(prefix)?;
                let n: i64 = it.next()?.parse().ok()?;
                Some((n, name.to_string()))
            })
            .collect();
        v.sort();
        v.dedup_by_key(|e| e.0);
        v
    }
    let unistd = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") | Err(_) => "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
        Ok(_) => "/usr/include/asm-generic/unistd.h",
    };
    let sys = defines(unistd, "__NR_");
    let mut errno = defines("/usr/include/asm-generic/errno-base.h", "");
    errno.extend(defines("/usr/include/asm-generic/errno.h", ""));
    errno.retain(|(_, n)| n.starts_with('E'));
    errno.sort();
    errno.dedup_by_key(|e| e.0);
    let table = |name: &str, v: &[(i64, String)]| {
        let rows: String = v.iter().map(|(n, s)| format!("({n}, {s:?}),")).collect();
        format!("pub static {name}: &[(i64, &str)] = &[{rows}];\n")
    };
    std::fs::write(
        out.join("names.rs"),
        table("SYSCALLS", &sys) + &table("ERRNOS", &errno),
    )
    .expect("write names.rs");
}
