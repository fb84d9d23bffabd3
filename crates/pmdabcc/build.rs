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
        SkeletonBuilder::new()
            .source(&src)
            .obj(out.join(format!("{name}.bpf.o")))
            .clang_args([
                format!("-I{}", common.display()),
                format!("-I{}", dir.display()),
                format!("-D__TARGET_ARCH_{arch}"),
                "-Wall".to_string(),
                "-Wno-unused-function".to_string(),
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building BPF for module {name} ({}): {e:#}\n(is clang installed? ./install.sh installs it)", src.display()));
    }
}
