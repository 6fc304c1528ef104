//! ICMP errors about tracked connections reach the right host with consistent headers
//! (reference §5.5): towards the real server for errors about replies, towards the client for a
//! NAT real server's errors, unchanged to DR real servers.

mod common;

use common::*;
use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder};
use xvs_core::{ForwardMethod, SchedKind, ServiceKey, TcpFlags};
use xvs_dataplane::action;

const ROUTER4: &str = "198.18.1.254";
const ROUTER6: &str = "2001:2:0:1::254";

/// The first 28 (IPv4) or 48 (IPv6) bytes of a TCP packet, as an ICMP error quotes it.
fn quote(src: (&str, u16), dst: (&str, u16)) -> Vec<u8> {
    let f = frame((ip(src.0), src.1), (ip(dst.0), dst.1), Some(TcpFlags::ACK), b"data", [0; 6], [0; 6]);
    let hdr = if ip(src.0).is_ipv4() { 20 } else { 40 };
    f[14..14 + hdr + 8].to_vec()
}

fn icmp4(src: &str, dst: &str, q: &[u8], src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(ip4(src), ip4(dst), 64).icmpv4(
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1400,
        }),
    );
    let mut out = Vec::new();
    b.write(&mut out, q).unwrap();
    out
}

fn icmp6(src: &str, dst: &str, q: &[u8], src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(ip6(src), ip6(dst), 64)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1400 });
    let mut out = Vec::new();
    b.write(&mut out, q).unwrap();
    out
}

fn ip4(s: &str) -> [u8; 4] {
    match ip(s) {
        std::net::IpAddr::V4(a) => a.octets(),
        _ => panic!(),
    }
}

fn ip6(s: &str) -> [u8; 16] {
    match ip(s) {
        std::net::IpAddr::V6(a) => a.octets(),
        _ => panic!(),
    }
}

/// A lab with one NAT service on port 80 → 8080 and an established connection.
fn nat_lab(v6: bool, method: ForwardMethod) -> Lab {
    let mut lab = Lab::new();
    let (vip, client, rs) = if v6 { (VIP6, CLIENT6, RS6[0]) } else { (VIP4, CLIENT4, RS4[0]) };
    let key = lab.service(ServiceKey::tcp(ip(vip), 80), SchedKind::Rr);
    lab.dest(&key, rs, if method == ForwardMethod::Masq { 8080 } else { 80 }, method_cfg(method));
    let syn = frame((ip(client), 40000), (ip(vip), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.run_client(&syn).action, action::REDIRECT);
    lab
}

/// Checks the quoted IP header's checksum (IPv4) and returns (quoted src, dst, sport, dport).
fn quoted(frame: &[u8], v6: bool) -> (std::net::IpAddr, std::net::IpAddr, u16, u16) {
    if v6 {
        let q = &frame[14 + 40 + 8..];
        let a = |o: usize| std::net::IpAddr::from(<[u8; 16]>::try_from(&q[o..o + 16]).unwrap());
        (a(8), a(24), u16::from_be_bytes([q[40], q[41]]), u16::from_be_bytes([q[42], q[43]]))
    } else {
        let q = &frame[14 + 20 + 8..];
        let mut s: u32 = q[..20].chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        assert_eq!(s, 0xffff, "quoted IPv4 header checksum");
        let a = |o: usize| std::net::IpAddr::from(<[u8; 4]>::try_from(&q[o..o + 4]).unwrap());
        (a(12), a(16), u16::from_be_bytes([q[20], q[21]]), u16::from_be_bytes([q[22], q[23]]))
    }
}

#[test]
fn errors_about_replies_go_to_the_nat_real_server() {
    if require_root().is_none() {
        return;
    }
    for v6 in [false, true] {
        let lab = nat_lab(v6, ForwardMethod::Masq);
        let (vip, client, rs, router) =
            if v6 { (VIP6, CLIENT6, RS6[0], ROUTER6) } else { (VIP4, CLIENT4, RS4[0], ROUTER4) };
        // A router on the client's path could not forward the reply VIP:80 → client:40000.
        let q = quote((vip, 80), (client, 40000));
        let f = if v6 {
            icmp6(router, vip, &q, CLIENT_MAC, lab.mac_d0)
        } else {
            icmp4(router, vip, &q, CLIENT_MAC, lab.mac_d0)
        };
        let r = lab.run_client(&f);
        assert_eq!(r.action, action::REDIRECT, "v6={v6}");
        let out = parse(&r.frame); // verifies the outer and ICMP checksums
        assert_eq!((out.src, out.dst), (ip(router), ip(rs)), "v6={v6}: sent on to the real server");
        assert_eq!(out.dst_mac, RS_MACS[0]);
        assert_eq!(quoted(&r.frame, v6), (ip(rs), ip(client), 8080, 40000), "v6={v6}: quoted as the server sent it");
    }
}

#[test]
fn errors_from_a_nat_real_server_go_to_the_client() {
    if require_root().is_none() {
        return;
    }
    for v6 in [false, true] {
        let lab = nat_lab(v6, ForwardMethod::Masq);
        let (vip, client, rs) = if v6 { (VIP6, CLIENT6, RS6[0]) } else { (VIP4, CLIENT4, RS4[0]) };
        // The real server reports a problem with the client's packet client:40000 → rs:8080.
        let q = quote((client, 40000), (rs, 8080));
        let f = if v6 {
            icmp6(rs, client, &q, RS_MACS[0], lab.mac_d1)
        } else {
            icmp4(rs, client, &q, RS_MACS[0], lab.mac_d1)
        };
        let r = lab.run_server(&f);
        assert_eq!(r.action, action::REDIRECT, "v6={v6}");
        let out = parse(&r.frame);
        assert_eq!((out.src, out.dst), (ip(vip), ip(client)), "v6={v6}: from the VIP");
        assert_eq!(out.dst_mac, CLIENT_MAC);
        assert_eq!(quoted(&r.frame, v6), (ip(client), ip(vip), 40000, 80), "v6={v6}: quoted as the client sent it");
    }
}

#[test]
fn errors_about_direct_routing_replies_go_to_the_server_unchanged() {
    if require_root().is_none() {
        return;
    }
    let lab = nat_lab(false, ForwardMethod::Route);
    let q = quote((VIP4, 80), (CLIENT4, 40000));
    let f = icmp4(ROUTER4, VIP4, &q, CLIENT_MAC, lab.mac_d0);
    let r = lab.run_client(&f);
    assert_eq!(r.action, action::REDIRECT);
    let out = parse(&r.frame);
    assert_eq!((out.src, out.dst, out.dst_mac), (ip(ROUTER4), ip(VIP4), RS_MACS[0]));
    assert_eq!(r.frame[14 + 20..], f[14 + 20..], "ICMP message untouched");
}

#[test]
fn unrelated_icmp_passes() {
    if require_root().is_none() {
        return;
    }
    let lab = nat_lab(false, ForwardMethod::Masq);
    // An error about a connection nobody has.
    let q = quote((VIP4, 80), (CLIENT4, 1));
    let f = icmp4(ROUTER4, VIP4, &q, CLIENT_MAC, lab.mac_d0);
    let r = lab.run_client(&f);
    assert_eq!((r.action, r.frame == f), (action::PASS, true));
    // An echo request to the VIP is the kernel's.
    let b =
        PacketBuilder::ethernet2(CLIENT_MAC, lab.mac_d0).ipv4(ip4(CLIENT4), ip4(VIP4), 64).icmpv4_echo_request(1, 1);
    let mut echo = Vec::new();
    b.write(&mut echo, b"ping").unwrap();
    assert_eq!(lab.run_client(&echo).action, action::PASS);
}

/// The first bytes of an SCTP packet (ports, tag) as an ICMP error quotes them.
fn quote_sctp(src: (&str, u16), dst: (&str, u16)) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.1.to_be_bytes());
    l4.extend_from_slice(&dst.1.to_be_bytes());
    l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 20]);
    l4.resize(32, 0);
    let b = PacketBuilder::ethernet2([0; 6], [0; 6]);
    let b = if ip(src.0).is_ipv4() { b.ipv4(ip4(src.0), ip4(dst.0), 64) } else { b.ipv6(ip6(src.0), ip6(dst.0), 64) };
    let mut f = Vec::new();
    b.write(&mut f, etherparse::IpNumber(132), &l4).unwrap();
    let hdr = if ip(src.0).is_ipv4() { 20 } else { 40 };
    f[14..14 + hdr + 8].to_vec()
}

/// ICMP errors about SCTP associations go where the kernel sends them (ip_vs_in_icmp takes
/// TCP, UDP and SCTP alike): about a NAT reply to the real server, from the real server to the
/// client.
#[test]
fn errors_about_sctp_associations_reach_the_other_end() {
    if require_root().is_none() {
        return;
    }
    for v6 in [false, true] {
        let mut lab = Lab::new();
        let (vip, client, rs, router) =
            if v6 { (VIP6, CLIENT6, RS6[0], ROUTER6) } else { (VIP4, CLIENT4, RS4[0], ROUTER4) };
        let key = lab.service(ServiceKey::sctp(ip(vip), 9000), SchedKind::Rr);
        lab.dest(&key, rs, 9000, method_cfg(ForwardMethod::Masq));
        // An INIT: ports, tag, checksum, then the chunk.
        let mut l4 = Vec::new();
        l4.extend_from_slice(&40000u16.to_be_bytes());
        l4.extend_from_slice(&9000u16.to_be_bytes());
        l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 20]);
        l4.resize(32, 0);
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, lab.mac_d0);
        let b = if v6 { eth.ipv6(ip6(client), ip6(vip), 64) } else { eth.ipv4(ip4(client), ip4(vip), 64) };
        let mut f = Vec::new();
        b.write(&mut f, etherparse::IpNumber(132), &l4).unwrap();
        assert_eq!(lab.run_client(&f).action, action::REDIRECT, "v6={v6}: the INIT is forwarded");

        let q = quote_sctp((vip, 9000), (client, 40000));
        let e = if v6 {
            icmp6(router, vip, &q, CLIENT_MAC, lab.mac_d0)
        } else {
            icmp4(router, vip, &q, CLIENT_MAC, lab.mac_d0)
        };
        let r = lab.run_client(&e);
        assert_eq!(r.action, action::REDIRECT, "v6={v6}");
        let out = parse(&r.frame);
        assert_eq!((out.src, out.dst), (ip(router), ip(rs)), "v6={v6}: sent on to the real server");
        assert_eq!(quoted(&r.frame, v6), (ip(rs), ip(client), 9000, 40000), "v6={v6}: quoted as the server sent it");

        let q = quote_sctp((client, 40000), (rs, 9000));
        let e = if v6 {
            icmp6(rs, client, &q, RS_MACS[0], lab.mac_d1)
        } else {
            icmp4(rs, client, &q, RS_MACS[0], lab.mac_d1)
        };
        let r = lab.run_server(&e);
        assert_eq!(r.action, action::REDIRECT, "v6={v6}");
        let out = parse(&r.frame);
        assert_eq!((out.src, out.dst), (ip(vip), ip(client)), "v6={v6}: from the VIP");
        assert_eq!(quoted(&r.frame, v6), (ip(client), ip(vip), 40000, 9000), "v6={v6}: quoted as the client sent it");
    }
}
