//! Compiles Katran's XDP balancer (third_party/katran, a benchmark peer) with clang into
//! OUT_DIR; the benchmark embeds the object.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../third_party/katran");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", root.display());
    let src = root.join("katran/lib/bpf/balancer.bpf.c");
    let arch = std::env::consts::ARCH;
    // Katran's headers include glibc's <string.h>, which wants the host's architecture macro
    // under -target bpf; its own bpf_helpers.h stands in for libbpf's.
    let status = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v2", &format!("-D__{arch}__")])
        .arg(format!("-I{}", root.display()))
        .arg(format!("-I/usr/include/{arch}-linux-gnu"))
        .args(["-Wno-unused-value", "-Wno-pointer-sign", "-Wno-compare-distinct-pointer-types"])
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(out.join("katran.o"))
        .status()
        .unwrap_or_else(|e| panic!("running clang for {}: {e} (install clang: scripts/setup.sh)", src.display()));
    assert!(status.success(), "clang failed on {}", src.display());
}
