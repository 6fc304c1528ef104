//! Recordings of the kernel (`testdata/kernel/`, made in the IPVS VM) replayed through the
//! director program with BPF_PROG_TEST_RUN.

mod common;

use common::*;
use xvs_core::{ForwardMethod, SchedKind, ServiceConfig, ServiceKey, TcpFlags};
use xvs_dataplane::action;

/// `active-scenario.sh` (6.1 and 6.12 alike): SYN_RECV counts as active, and lc, wlc, sed, nq,
/// ovf and an upper threshold pick what the kernel picked, SYN after SYN.
#[test]
fn half_open_connections_count_and_schedule_as_the_kernel_says() {
    if require_root().is_none() {
        return;
    }
    let path = format!("{}/../../testdata/kernel/active-6.12.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut blocks: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("#### ") {
            blocks.push((h.trim().to_string(), Vec::new()));
        } else if line.starts_with("SYN ") {
            blocks.last_mut().unwrap().1.push(line.trim_end());
        }
    }
    assert_eq!(blocks.len(), 6);
    let mut lab = Lab::new();
    let (rs1, rs2) = (RS4[0], RS4[1]);
    for (n, (head, lines)) in blocks.iter().enumerate() {
        let sched: SchedKind = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let key = ServiceKey::tcp(ip(VIP4), 80 + n as u16);
        let key = lab.service_with(key, ServiceConfig::new(key.family(), sched));
        lab.dest(&key, rs2, 80, method_cfg(ForwardMethod::Masq).weight(1));
        let mut c1 = method_cfg(ForwardMethod::Masq).weight(2);
        if head.contains("-x 2") {
            c1 = c1.thresholds(2, 0);
        }
        lab.dest(&key, rs1, 80, c1);
        let svc = lab.lb.services.find(&key).unwrap();
        for (i, want) in lines.iter().enumerate() {
            let f = frame(
                (ip("198.18.1.50"), 41001 + i as u16),
                (key.addr(), key.port()),
                Some(TcpFlags::SYN),
                b"",
                CLIENT_MAC,
                lab.mac_d0,
            );
            let r = lab.run_client(&f);
            let to = match r.action {
                action::REDIRECT => {
                    let d = parse(&r.frame).dst;
                    format!("{} (SYN_RECV)", if d == ip(rs1) { "rs1" } else { "rs2" })
                }
                _ => "none (-)".to_string(),
            };
            let counts: Vec<String> = [(rs1, "rs1"), (rs2, "rs2")]
                .iter()
                .map(|(a, name)| {
                    let c = lab.dp.dest_counters(lab.lb.services.find_dest(svc, &ip(a), 80).unwrap()).unwrap();
                    format!("{name} {}/{}", c.active, c.inactive)
                })
                .collect();
            assert_eq!(format!("SYN {} -> {to}; active/inactive: {}", i + 1, counts.join("  ")), *want, "{head}");
        }
    }
}
