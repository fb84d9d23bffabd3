//! Links libpcp_pmda and libpcp, and compiles `layout.c`: a few functions that report
//! sizes, offsets and bitfield encodings as the installed PCP headers define them, so the
//! tests can check every hand-written declaration in `src/lib.rs` against the real thing.

fn main() {
    println!("cargo:rerun-if-changed=layout.c");
    println!("cargo:rustc-link-lib=dylib=pcp_pmda");
    println!("cargo:rustc-link-lib=dylib=pcp");
    let hdr = std::path::Path::new("/usr/include/pcp/pmda.h");
    if !hdr.exists() {
        panic!(
            "PCP development headers not found ({}): install libpcp-pmda3-dev and libpcp3-dev \
             (./install.sh and ./test.sh do this)",
            hdr.display()
        );
    }
    cc::Build::new()
        .file("layout.c")
        .warnings(true)
        .compile("pcp_pmda_layout");
}
