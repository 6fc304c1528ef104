//! The Grafana dashboard in packaging/grafana asks only for what xvsd exports: every metric name
//! in its queries is one xvsd registers (src/metrics.rs), every label it groups by is one xvsd
//! sets (or Prometheus' own `instance`), and every panel has a query.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn read(rel: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The metric names src/metrics.rs registers, as Prometheus sees them (`xvs_` prefix, counters
/// with `_total`).
fn exported() -> BTreeSet<String> {
    // Without any whitespace, however rustfmt broke the calls.
    let src: String = read("src/metrics.rs").split_whitespace().collect();
    let mut out = BTreeSet::new();
    for (kind, suffix) in [("counters(&mutr,\"", "_total"), ("gauges(&mutr,\"", "")] {
        for part in src.split(kind).skip(1) {
            let name = part.split('"').next().unwrap();
            out.insert(format!("xvs_{name}{suffix}"));
        }
    }
    out
}

/// Names starting with `xvs_` in a query.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("xvs_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Labels in `by (…)` clauses.
fn grouped_labels(expr: &str) -> Vec<String> {
    expr.split("by (")
        .skip(1)
        .flat_map(|p| p.split(')').next().unwrap().split(',').map(|l| l.trim().to_string()).collect::<Vec<_>>())
        .collect()
}

#[test]
fn the_dashboard_asks_for_what_xvsd_exports() {
    let exported = exported();
    assert!(exported.contains("xvs_service_connections_total") && exported.contains("xvs_real_server_weight"));
    let dash: serde_json::Value = serde_json::from_str(&read("../../packaging/grafana/xvs-dashboard.json")).unwrap();
    let labels: BTreeSet<&str> = [
        "instance",
        "service",
        "real_server",
        "direction",
        "kind",
        "reason",
        "state",
        "vrrp_instance",
        "role",
        "vip",
        "check",
        "target",
        "outcome",
    ]
    .into_iter()
    .collect();
    let panels = dash["panels"].as_array().unwrap();
    let mut queried = BTreeSet::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap();
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            for m in metric_names(expr) {
                assert!(exported.contains(&m), "{title}: {m} is not a metric xvsd exports ({expr})");
                queried.insert(m);
            }
            for l in grouped_labels(expr) {
                assert!(labels.contains(l.as_str()), "{title}: xvsd sets no label '{l}' ({expr})");
            }
        }
    }
    // What operators ask first is on it: rates per service and server, health, drops, fill.
    for m in [
        "xvs_service_connections_total",
        "xvs_real_server_connections_total",
        "xvs_real_server_healthy",
        "xvs_dataplane_packets_total",
        "xvs_conn_table_entries",
    ] {
        assert!(queried.contains(m), "the dashboard has no panel on {m}");
    }
}
