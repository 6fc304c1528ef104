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

/// `dr-replies-scenario.sh` (6.1 and 6.12 alike): the replies of a direct-routing connection
/// that come back through the director (source: the VIP) are seen, counted and move the state
/// with the full table, so a connection the client closes first reaches TIME_WAIT; the frames
/// themselves go on to the kernel unchanged.
#[test]
fn direct_routing_replies_through_the_director_are_seen_as_the_kernel_sees_them() {
    if require_root().is_none() {
        return;
    }
    for file in ["dr-replies-6.12.txt", "dr-replies-6.1.txt"] {
        let text =
            std::fs::read_to_string(format!("{}/../../testdata/kernel/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(text.contains("TCP TIME_WAIT") && text.contains(" 1        7        6 "), "{file}: {text}");
    }
    use xvs_core::{Packet, TcpState, Verdict};
    let mut lab = Lab::new();
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Route));
    let (vip, client) = ((key.addr(), 80), (ip(CLIENT4), 47618));
    let steps: [(bool, u8); 8] = [
        (false, TcpFlags::SYN),
        (true, TcpFlags::SYN | TcpFlags::ACK),
        (false, TcpFlags::ACK),
        (false, TcpFlags::ACK),
        (true, TcpFlags::ACK),
        (false, TcpFlags::FIN | TcpFlags::ACK),
        (true, TcpFlags::FIN | TcpFlags::ACK),
        (false, TcpFlags::ACK),
    ];
    for (reply, flags) in steps {
        if reply {
            let f = frame(vip, client, Some(flags), b"", RS_MACS[0], lab.mac_d1);
            let r = lab.run_server(&f);
            assert_eq!(r.action, action::PASS, "a DR reply goes on to the kernel");
            assert_eq!(r.frame, f, "unchanged");
            let v = lab.lb.handle_outbound(lab.now, &Packet::tcp(vip, client, flags));
            assert!(matches!(v, Verdict::Observed { .. }), "{v:?}");
        } else {
            let f = frame(client, vip, Some(flags), b"", CLIENT_MAC, lab.mac_d0);
            assert_eq!(lab.run_client(&f).action, action::REDIRECT);
            let _ = lab.lb.handle_inbound(lab.now, &Packet::tcp(client, vip, flags));
        }
    }
    let k = xvs_abi::Conn4Key {
        caddr: xvs_dataplane::addr_words(&client.0)[0],
        vaddr: xvs_dataplane::addr_words(&vip.0)[0],
        cport: client.1.to_be(),
        vport: 80u16.to_be(),
        proto: 6,
        pad: [0; 3],
    };
    let c = lab.dp.maps.conn4.get(&k, 0).unwrap();
    assert_eq!(TcpState::from_u8(c.state), Some(TcpState::TimeWait), "the dataplane reaches TIME_WAIT");
    let core = lab.lb.conns.iter().find(|(_, c)| !c.is_template()).map(|(_, c)| c.state).unwrap();
    assert_eq!(core, xvs_core::ConnState::Tcp(TcpState::TimeWait), "and so does the core");
    let svc = lab.lb.services.find(&key).unwrap();
    let stats = lab.dp.dest_stats(lab.lb.services.find_dest(svc, &ip(RS4[0]), 80).unwrap()).unwrap();
    assert_eq!(stats.outpkts, 3, "the replies are counted");
}
