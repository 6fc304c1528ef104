//! Recordings of the kernel (`testdata/kernel/`, made in the IPVS VM by the scenario scripts
//! beside them) replayed against the core, line by line.

use std::net::IpAddr;

use xvs_core::{
    Balancer, DestConfig, Family, ForwardMethod, Instant, Packet, SchedKind, ServiceConfig, ServiceKey, TcpFlags,
    Verdict,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn recording(name: &str) -> String {
    let path = format!("{}/../../testdata/kernel/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `active-scenario.sh`: connections that never finish their handshake (SYN_RECV) count as
/// active, and lc, wlc, sed, nq, ovf and an upper threshold choose as the kernel does — the
/// same on 6.1 and 6.12.
#[test]
fn half_open_connections_count_and_schedule_as_the_kernel_says() {
    for file in ["active-6.12.txt", "active-6.1.txt"] {
        let text = recording(file);
        let mut blocks: Vec<(String, Vec<&str>)> = Vec::new();
        for line in text.lines() {
            if let Some(h) = line.strip_prefix("#### ") {
                blocks.push((h.trim().to_string(), Vec::new()));
            } else if line.starts_with("SYN ") {
                blocks.last_mut().expect("a block").1.push(line.trim_end());
            }
        }
        assert_eq!(blocks.len(), 6, "{file}");
        for (n, (head, lines)) in blocks.iter().enumerate() {
            let sched: SchedKind = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            let threshold = head.contains("-x 2");
            let mut lb = Balancer::default();
            let vip = ip(&format!("198.18.0.{}", 100 + n));
            let key = ServiceKey::tcp(vip, 80);
            lb.add_service(key, ServiceConfig::new(Family::V4, sched), Instant::ZERO).unwrap();
            lb.services.add_dest(&key, ip("198.18.3.2"), 80, DestConfig::new(ForwardMethod::Masq).weight(1)).unwrap();
            let rs1 = DestConfig::new(ForwardMethod::Masq).weight(2);
            let rs1 = if threshold { rs1.thresholds(2, 0) } else { rs1 };
            lb.services.add_dest(&key, ip("198.18.2.2"), 80, rs1).unwrap();
            let svc = lb.services.find(&key).unwrap();
            let name = |a: IpAddr| if a == ip("198.18.2.2") { "rs1" } else { "rs2" };
            for (i, want) in lines.iter().enumerate() {
                let p = Packet::tcp((ip("198.18.1.50"), 41001 + i as u16), (vip, 80), TcpFlags::SYN);
                let to = match lb.handle_inbound(Instant::ZERO, &p) {
                    Verdict::Forward(f) => format!("{} (SYN_RECV)", name(f.daddr)),
                    Verdict::Unreachable => "none (-)".to_string(),
                    v => panic!("{file} {head}: {v:?}"),
                };
                let counts: Vec<String> = ["198.18.2.2", "198.18.3.2"]
                    .iter()
                    .map(|a| {
                        let d = lb.services.find_dest(svc, &ip(a), 80).unwrap();
                        let d = lb.services.dest(d).unwrap();
                        format!("{} {}/{}", name(ip(a)), d.active_conns(), d.inactive_conns())
                    })
                    .collect();
                let got = format!("SYN {} -> {to}; active/inactive: {}", i + 1, counts.join("  "));
                assert_eq!(got, *want, "{file}, {head}");
            }
        }
    }
}

/// `sip-scenario.sh`: the Call-ID the kernel's sip engine keeps for each datagram of
/// `sip-payloads.txt` (or none: dropped), the same on 6.1 and 6.12.
#[test]
fn the_sip_engine_finds_the_call_ids_the_kernel_finds() {
    let payloads: Vec<Vec<u8>> = recording("sip-payloads.txt").lines().map(|l| hex(l.trim())).collect();
    for file in ["sip-6.12.txt", "sip-6.1.txt"] {
        let text = recording(file);
        let mut n = 0;
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(i), Some(id)) = (f.next().and_then(|i| i.parse::<usize>().ok()), f.next()) else { continue };
            let got = xvs_core::pe_sip::call_id(&payloads[i - 1]).map(|c| c.as_bytes().to_vec());
            let want = (id != "-").then(|| hex(id));
            assert_eq!(got, want, "{file}, payload {i}: {:?}", String::from_utf8_lossy(&payloads[i - 1]));
            n += 1;
        }
        assert_eq!(n, payloads.len(), "{file}: every payload recorded");
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// `lblc-cap-scenario.sh` (6.12): beyond the table's 16384 entries a new destination still gets
/// its entry, so after the weights turn it keeps going to the server that first took it.
#[test]
fn an_lblc_entry_beyond_16384_is_stored() {
    let text = recording("lblc-cap-6.12.txt");
    assert!(text.contains("16400 destinations scheduled") && text.contains("(its entry was stored)"), "{text}");
    let mut lb = Balancer::default();
    let key = ServiceKey::Fwmark { af: Family::V4, mark: 1 };
    lb.add_service(key, ServiceConfig::new(Family::V4, SchedKind::Lblc), Instant::ZERO).unwrap();
    for a in ["198.18.2.2", "198.18.3.2"] {
        lb.services.add_dest(&key, ip(a), 80, DestConfig::new(ForwardMethod::Masq).weight(100)).unwrap();
    }
    let syn = |lb: &mut Balancer, dst: IpAddr, sport: u16| {
        let mut p = Packet::tcp((ip("198.18.1.1"), sport), (dst, 80), TcpFlags::SYN);
        p.fwmark = 1;
        match lb.handle_inbound(Instant::ZERO, &p) {
            Verdict::Forward(f) => f.daddr,
            v => panic!("{v:?}"),
        }
    };
    for n in 0..16400u32 {
        let dst = IpAddr::from([10, 0, (n / 252) as u8, (n % 252 + 1) as u8]);
        let _ = syn(&mut lb, dst, 1024 + (n % 60000) as u16);
    }
    let target = ip("10.255.0.1");
    let first = syn(&mut lb, target, 61001);
    let other = if first == ip("198.18.2.2") { ip("198.18.3.2") } else { ip("198.18.2.2") };
    lb.services.edit_dest(&key, first, 80, DestConfig::new(ForwardMethod::Masq).weight(1)).unwrap();
    lb.services.edit_dest(&key, other, 80, DestConfig::new(ForwardMethod::Masq).weight(1000)).unwrap();
    assert_eq!(syn(&mut lb, target, 61002), first, "the 16401st entry was stored");
}
