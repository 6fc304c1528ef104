//! The README's demo runs and shows what it promises: both modes balance real requests evenly
//! with rr, the listings appear, the drain works, and nothing of the lab is left behind.

use std::process::Command;

#[test]
fn the_demo_runs_and_cleans_up() {
    if !xvs_lab::require_root() {
        return;
    }
    let exe = env!("CARGO_BIN_EXE_xvs-demo");
    let dir = std::path::Path::new(exe).parent().unwrap();
    if !dir.join("xvsd").exists() || !dir.join("xvsadm").exists() {
        // `cargo test --workspace` builds them (their crates have integration tests).
        let st = Command::new(env!("CARGO")).args(["build", "-q", "-p", "xvsd", "-p", "xvsadm"]).status().unwrap();
        assert!(st.success());
    }
    let out = Command::new(exe).output().expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "demo failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches("=> rs1: 5, rs2: 5").count(), 2, "{text}");
    assert_eq!(text.matches("=> rs1: 4\n").count(), 2, "the drained server got requests:\n{text}");
    for needle in ["Route   1", "Masq    1", "Conns   InPkts", "CPS    InPPS", "TIME_WAIT", "demo done"] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    // Every lab name appears in the output as "(lab PREFIX removed)"; none may remain.
    let netns =
        String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).to_string();
    for line in text.lines().filter_map(|l| l.strip_prefix("(lab ")) {
        let prefix = line.split_whitespace().next().unwrap();
        assert!(!netns.contains(prefix), "namespaces of {prefix} remain:\n{netns}");
        assert!(!std::path::Path::new(&format!("/sys/fs/bpf/{prefix}xvsd")).exists());
    }
}
