//! Firewall-mark services through the entry the kernel routes marked packets to (`xvs_lb_fwm`,
//! behind `xvs_fwm_stamp`, which writes the mark into the source MAC): the service is found by
//! the mark alone, the real server is the one the core picks for the same packet and mark,
//! persistence spans every port the mark covers, and the connection's next packets are handled
//! by the ordinary entry on the interface they arrive on. What this entry cannot serve is
//! dropped, never handed back to the kernel (which would route it into the device again).

mod common;

use std::net::IpAddr;

use common::*;
use xvs_core::{Family, ForwardMethod, Packet, SchedKind, ServiceConfig, ServiceKey, TcpFlags, Verdict};
use xvs_dataplane::action;

/// A client frame as it leaves the firewall-mark device: the source MAC carries the mark.
fn stamped(src: (IpAddr, u16), dst: (IpAddr, u16), tcp: Option<u8>, mark: u32, dst_mac: [u8; 6]) -> Vec<u8> {
    let mut mac = [0u8; 6];
    mac[..2].copy_from_slice(&xvs_abi::FWM_MAC);
    mac[2..].copy_from_slice(&mark.to_be_bytes());
    frame(src, dst, tcp, b"hello", mac, dst_mac)
}

/// The core's real server for the same packet (and mark): its address and port.
fn core_pick(lab: &mut Lab, src: (IpAddr, u16), dst: (IpAddr, u16), mark: u32) -> (IpAddr, u16) {
    let mut p = Packet::tcp(src, dst, TcpFlags::SYN);
    p.fwmark = mark;
    match core_verdict(&mut lab.lb, lab.now, &p) {
        Verdict::Forward(f) => (f.daddr, f.dport),
        v => panic!("the core does not forward {src:?} → {dst:?} mark {mark}: {v:?}"),
    }
}

fn persistent_across_ports(af: Family) {
    let (vip, client, rs) = match af {
        Family::V4 => (VIP4, CLIENT4, RS4),
        Family::V6 => (VIP6, CLIENT6, RS6),
    };
    let mut lab = Lab::new();
    let mut cfg = ServiceConfig::new(af, SchedKind::Rr);
    cfg.persistence = Some(300);
    let key = lab.service_with(ServiceKey::Fwmark { af, mark: 5 }, cfg);
    for a in rs {
        lab.dest(&key, a, 0, method_cfg(ForwardMethod::Route));
    }
    let (vip, client) = (ip(vip), ip(client));
    let mut chosen = None;
    for (i, port) in [80u16, 443, 8443].into_iter().enumerate() {
        let src = (client, 40000 + i as u16);
        let want = core_pick(&mut lab, src, (vip, port), 5);
        let r =
            lab.dp.test_run_fwm(&stamped(src, (vip, port), Some(TcpFlags::SYN), 5, lab.mac_d0), lab.if_client).unwrap();
        assert_eq!(r.action, action::REDIRECT, "{af:?} port {port}: forwarded");
        let seen = parse(&r.frame);
        assert_eq!(seen.dst, vip, "{af:?}: direct routing keeps the VIP");
        assert_eq!(seen.dport, port, "{af:?}: and the port");
        assert_eq!(seen.ttl, 64, "{af:?}: the kernel decremented the TTL on the way here, not again");
        let i = rs.iter().position(|a| ip(a) == want.0).unwrap();
        assert_eq!(seen.dst_mac, RS_MACS[i], "{af:?} port {port}: the core's server");
        assert_eq!(*chosen.get_or_insert(i), i, "{af:?}: one server for every port the mark covers");

        // The connection's next packet arrives on the client interface, unmarked as far as XDP
        // knows: the connection table takes it to the same server.
        let next = frame(src, (vip, port), Some(TcpFlags::ACK), b"more", CLIENT_MAC, lab.mac_d0);
        let r = lab.run_client(&next);
        assert_eq!(r.action, action::REDIRECT, "{af:?}: established on the fast path");
        let seen = parse(&r.frame);
        assert_eq!(seen.dst_mac, RS_MACS[i]);
        assert_eq!(seen.ttl, 63, "{af:?}: forwarded by XDP alone, the TTL goes down once");
    }
    // Another client is scheduled (round robin moves on), as in the core.
    let other = (ip(if af == Family::V4 { "198.18.1.101" } else { "2001:2:0:1::101" }), 41000);
    let want = core_pick(&mut lab, other, (vip, 80), 5);
    let r = lab.dp.test_run_fwm(&stamped(other, (vip, 80), Some(TcpFlags::SYN), 5, lab.mac_d0), lab.if_client).unwrap();
    let i = rs.iter().position(|a| ip(a) == want.0).unwrap();
    assert_eq!(parse(&r.frame).dst_mac, RS_MACS[i]);
    assert_ne!(Some(i), chosen, "round robin: the second client gets the next server");

    // The same packet without a firewall mark service behind it never reaches the kernel.
    let r =
        lab.dp.test_run_fwm(&stamped((client, 42000), (vip, 80), Some(TcpFlags::SYN), 6, lab.mac_d0), lab.if_client);
    assert_eq!(r.unwrap().action, action::DROP, "{af:?}: mark without a service");
    // Nor a frame the stamp program did not write.
    let plain = frame((client, 42001), (vip, 80), Some(TcpFlags::SYN), b"x", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.dp.test_run_fwm(&plain, lab.if_client).unwrap().action, action::DROP, "{af:?}: unstamped");
    // And the ordinary entry does not schedule by address for a firewall-mark service.
    let r = lab.run_client(&frame((client, 42002), (vip, 80), Some(TcpFlags::SYN), b"x", CLIENT_MAC, lab.mac_d0));
    assert_eq!(r.action, action::PASS, "{af:?}: no address service: the kernel (and its mangle table) decide");
}

#[test]
fn a_mark_selects_the_service_and_persistence_spans_its_ports() {
    if require_root().is_none() {
        return;
    }
    persistent_across_ports(Family::V4);
    persistent_across_ports(Family::V6);
}

#[test]
fn nat_ports_and_refusals_follow_the_kernel() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let af = Family::V4;
    // Not persistent: a server's port replaces the packet's; a server without one keeps it.
    let k7 = lab.service_with(ServiceKey::Fwmark { af, mark: 7 }, ServiceConfig::new(af, SchedKind::Rr));
    lab.dest(&k7, RS4[0], 8080, method_cfg(ForwardMethod::Masq));
    lab.dest(&k7, RS4[1], 0, method_cfg(ForwardMethod::Masq));
    let (vip, client) = (ip(VIP4), ip(CLIENT4));
    let mut ports = Vec::new();
    for i in 0..2u16 {
        let src = (client, 50000 + i);
        let want = core_pick(&mut lab, src, (vip, 80), 7);
        let r =
            lab.dp.test_run_fwm(&stamped(src, (vip, 80), Some(TcpFlags::SYN), 7, lab.mac_d0), lab.if_client).unwrap();
        assert_eq!(r.action, action::REDIRECT);
        let seen = parse(&r.frame);
        assert_eq!((seen.dst, seen.dport), want, "NAT to the core's server and port");
        ports.push(seen.dport);

        // The server's reply goes back from the VIP and the port the client used.
        let reply = frame(want, src, Some(TcpFlags::SYN | TcpFlags::ACK), b"", RS_MACS[0], lab.mac_d1);
        let r = lab.run_server(&reply);
        assert_eq!(r.action, action::REDIRECT, "the reply");
        let back = parse(&r.frame);
        assert_eq!((back.src, back.sport), (vip, 80), "the reply comes from the VIP");
    }
    ports.sort();
    assert_eq!(ports, vec![80, 8080], "one server's port, the other keeps the packet's");

    // No server: the client is refused (ICMP port unreachable), routed back towards it.
    let k8 = lab.service_with(ServiceKey::Fwmark { af, mark: 8 }, ServiceConfig::new(af, SchedKind::Rr));
    let _ = k8;
    let r = lab
        .dp
        .test_run_fwm(&stamped((client, 50100), (vip, 80), Some(TcpFlags::SYN), 8, lab.mac_d0), lab.if_client)
        .unwrap();
    assert!(matches!(r.action, action::REDIRECT | action::TX), "refusal sent: {}", r.action);
    let seen = parse(&r.frame);
    assert_eq!((seen.src, seen.dst, seen.proto), (vip, client, 1), "ICMP from the VIP to the client");
    assert_eq!(seen.dst_mac, CLIENT_MAC, "addressed to the client's next hop");
    // A packet that opens nothing (an ACK without a connection) is dropped.
    let r = lab
        .dp
        .test_run_fwm(&stamped((client, 50101), (vip, 80), Some(TcpFlags::ACK), 7, lab.mac_d0), lab.if_client)
        .unwrap();
    assert_eq!(r.action, action::DROP);
}

/// SCTP behind a firewall mark: a NAT server on the packet's own port (or none) takes it; one
/// on another port would need the CRC32c recomputed, so the packet is dropped and counted as
/// unsupported (xvsd refuses such a server for an SCTP service; a mark covers any protocol).
#[test]
fn sctp_behind_a_mark_is_not_sent_to_a_nat_port_it_cannot_checksum() {
    if require_root().is_none() {
        return;
    }
    let sctp_init = |cport: u16, port: u16, mark: u32, lab: &Lab| {
        let mut mac = [0u8; 6];
        mac[..2].copy_from_slice(&xvs_abi::FWM_MAC);
        mac[2..].copy_from_slice(&mark.to_be_bytes());
        let mut l4 = Vec::new();
        l4.extend_from_slice(&cport.to_be_bytes());
        l4.extend_from_slice(&port.to_be_bytes());
        l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 20]);
        l4.resize(32, 0);
        let (IpAddr::V4(c), IpAddr::V4(v)) = (ip(CLIENT4), ip(VIP4)) else { unreachable!() };
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(mac, lab.mac_d0)
            .ipv4(c.octets(), v.octets(), 63)
            .write(&mut f, etherparse::IpNumber(132), &l4)
            .unwrap();
        f
    };
    let mut lab = Lab::new();
    let same = lab.service(ServiceKey::Fwmark { af: Family::V4, mark: 7 }, SchedKind::Rr);
    lab.dest(&same, RS4[0], 0, method_cfg(ForwardMethod::Masq));
    let other = lab.service(ServiceKey::Fwmark { af: Family::V4, mark: 8 }, SchedKind::Rr);
    lab.dest(&other, RS4[1], 9999, method_cfg(ForwardMethod::Masq));
    let r = lab.dp.test_run_fwm(&sctp_init(40000, 9000, 7, &lab), lab.if_client).unwrap();
    assert_eq!(r.action, action::REDIRECT, "a server without a port keeps the packet's");
    assert_eq!(r.frame[36..38], 9000u16.to_be_bytes(), "the port is unchanged");
    let before = lab.dp.reasons().unwrap().into_iter().find(|(r, _)| *r == "unsupported").unwrap().1;
    let r = lab.dp.test_run_fwm(&sctp_init(40001, 9000, 8, &lab), lab.if_client).unwrap();
    assert_eq!(r.action, action::DROP, "port 9999 would need a new CRC32c");
    let after = lab.dp.reasons().unwrap().into_iter().find(|(r, _)| *r == "unsupported").unwrap().1;
    assert_eq!(after, before + 1, "counted as unsupported");
}
