//! The benchmark's quick mode as a smoke test: the harness builds its lab, measures every peer
//! and writes its results. Nothing here judges a figure: timings on a shared machine are for
//! the report, never for a test verdict.

use std::process::Command;

#[test]
fn quick_mode_measures_every_peer_and_writes_results() {
    if !xvs_lab::require_root() {
        return;
    }
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_xvs-bench"));
    let dir = exe.parent().unwrap();
    if !dir.join("xvsd").exists() || !dir.join("xvsadm").exists() {
        let st = Command::new(env!("CARGO")).args(["build", "-q", "-p", "xvsd", "-p", "xvsadm"]).status().unwrap();
        assert!(st.success());
    }
    let out_dir = std::env::temp_dir().join(format!("xvs-bench-smoke-{}", std::process::id()));
    let child = Command::new(exe)
        .args(["--quick", "--out"])
        .arg(&out_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run xvs-bench");
    let prefix = format!("xv{}n", child.id() % 100_000);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "xvs-bench --quick failed:\n{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).unwrap()).unwrap();
    let series = json["series"].as_array().unwrap();
    let has = |peer: &str, metric: &str| {
        series.iter().any(|s| {
            s["peer"] == peer && s["metric"] == metric && s["values"].as_array().is_some_and(|v| !v.is_empty())
        })
    };
    for (peer, metric) in [
        ("xvs-nat", "conn_per_s"),
        ("xvs-nat", "pps"),
        ("xvs-nat", "cost_new_flow"),
        ("xvs-nat", "install"),
        ("xvs-dr", "cost_established"),
        ("xvs-dr", "pps"),
        ("iptables", "conn_per_s"),
        ("iptables", "install"),
        ("nftables", "conn_per_s"),
        ("nftables", "list"),
        ("haproxy", "conn_per_s"),
        ("bare", "pps"),
        ("bare", "cost_established"),
        ("xvs-nat", "prog_new_flow"),
        ("xvs-nat", "prog_nat_reply"),
        ("xvs-nat", "prog_miss"),
        ("xvs-dr", "prog_established"),
        ("xvs-tun", "prog_established"),
        ("xvs-tun", "prog_new_flow"),
        ("katran", "prog_established"),
        ("katran", "prog_new_flow"),
        ("katran", "prog_miss"),
    ] {
        assert!(has(peer, metric), "no {peer} {metric} in the results:\n{stderr}");
    }
    // Directors behind the router's ECMP: 1 and 2 in quick mode.
    let scale = json["scale_out"].as_array().unwrap();
    for (n, metric) in [(1, "conn_per_s"), (2, "conn_per_s"), (1, "pps"), (2, "pps")] {
        assert!(
            scale.iter().any(|s| s["n"] == n && s["metric"] == metric),
            "no {metric} with {n} director(s) in the results:\n{stderr}"
        );
    }
    let md = std::fs::read_to_string(out_dir.join("results.md")).unwrap();
    assert!(md.contains("Headline ratios") && md.contains("Directors behind a router's ECMP"), "{md}");
    assert!(md.contains("Against Katran"), "{md}");
    // Every namespace of the benchmark's lab is gone.
    let netns =
        String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).to_string();
    assert!(!netns.lines().any(|l| l.starts_with(&prefix)), "the lab {prefix}* was left behind:\n{netns}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
