//! Compiles the eBPF programs in `bpf/` with clang into OUT_DIR; the crate embeds the objects.
//! No prebuilt object is kept in git.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", root.display());
    for dir in [root.clone(), root.join("include")] {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if matches!(path.extension().and_then(|e| e.to_str()), Some("c" | "h")) {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let arch_include = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    for prog in ["xvs_lb", "xvs_decap", "xvs_aux"] {
        let src = root.join(format!("{prog}.bpf.c"));
        let obj = out.join(format!("{prog}.o"));
        let status = Command::new("clang")
            .args(["-O2", "-g", "-target", "bpfel", "-mcpu=v3", "-Wall", "-Wno-visibility", "-Werror"])
            .arg(format!("-I{arch_include}"))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| panic!("running clang for {}: {e} (install clang: scripts/setup.sh)", src.display()));
        assert!(status.success(), "clang failed on {}", src.display());
    }
}
