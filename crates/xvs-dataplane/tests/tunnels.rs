//! The tunnel method in every form kernel IPVS has: IP-in-IP, GUE and GRE, without and with
//! the outer checksum, IPv4 and IPv6, and mixed families (4-in-6, 6-in-4). Each packet the
//! director encapsulates (BPF_PROG_TEST_RUN) is checked byte by byte — outer headers, the
//! outer checksum summed independently, GUE's per-flow source port — and then handed to the
//! real servers' decapsulation program, which must give back the inner packet intact.

mod common;

use std::net::IpAddr;

use common::*;
use xvs_core::{ForwardMethod, SchedKind, ServiceKey, TcpFlags, Tunnel, TunnelCsum, TunnelKind};
use xvs_dataplane::{action, Decap};

const GUE_PORT: u16 = 6080;

/// The one's-complement sum of `bytes` (16-bit big-endian words), folded.
fn sum16(bytes: &[u8]) -> u32 {
    let mut s: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s
}

/// The outer header of a frame: (source, destination, protocol, TTL, payload).
fn outer(frame: &[u8]) -> (IpAddr, IpAddr, u8, u8, Vec<u8>) {
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => {
            let h = &frame[14..34];
            assert_eq!(sum16(h), 0xffff, "outer IPv4 header checksum");
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            assert_eq!(len, frame.len() - 14, "outer IPv4 total length");
            let a = |o: usize| IpAddr::from(<[u8; 4]>::try_from(&h[o..o + 4]).unwrap());
            (a(12), a(16), h[9], h[8], frame[34..].to_vec())
        }
        0x86dd => {
            let h = &frame[14..54];
            assert_eq!(usize::from(u16::from_be_bytes([h[4], h[5]])), frame.len() - 54, "outer IPv6 payload length");
            let a = |o: usize| IpAddr::from(<[u8; 16]>::try_from(&h[o..o + 16]).unwrap());
            (a(8), a(24), h[6], h[7], frame[54..].to_vec())
        }
        t => panic!("outer ethertype {t:#x}"),
    }
}

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            v.extend_from_slice(&s.octets());
            v.extend_from_slice(&d.octets());
            v.extend_from_slice(&[0, proto]);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            v.extend_from_slice(&s.octets());
            v.extend_from_slice(&d.octets());
            v.extend_from_slice(&(len as u32).to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => unreachable!(),
    }
    v
}

struct Case {
    svc6: bool,
    rs6: bool,
    kind: TunnelKind,
    csum: TunnelCsum,
    udp: bool,
}

fn run(c: &Case) {
    let label = format!(
        "{:?}/{:?} {}-in-{} {}",
        c.kind,
        c.csum,
        if c.svc6 { 6 } else { 4 },
        if c.rs6 { 6 } else { 4 },
        if c.udp { "UDP" } else { "TCP" }
    );
    let mut lab = Lab::new();
    let vip = ip(if c.svc6 { VIP6 } else { VIP4 });
    let key = if c.udp { ServiceKey::udp(vip, 53) } else { ServiceKey::tcp(vip, 80) };
    let key = lab.service(key, SchedKind::Rr);
    let rs = if c.rs6 { RS6[0] } else { RS4[0] };
    let mut cfg = method_cfg(ForwardMethod::Tunnel);
    cfg.tunnel = Tunnel { kind: c.kind, port: if c.kind == TunnelKind::Gue { GUE_PORT } else { 0 }, csum: c.csum };
    lab.dest(&key, rs, key.port(), cfg);
    let client = ip(if c.svc6 { CLIENT6 } else { CLIENT4 });
    let tcp = if c.udp { None } else { Some(TcpFlags::SYN) };
    let payload = b"a payload of odd length!!";
    let f = frame((client, 40000), (key.addr(), key.port()), tcp, payload, CLIENT_MAC, lab.mac_d0);
    let r = lab.run_client(&f);
    assert_eq!(r.action, action::REDIRECT, "{label}: towards the real server");
    let (src, dst, proto, ttl, body) = outer(&r.frame);
    assert_eq!(dst, ip(rs), "{label}: outer destination");
    assert_eq!(src, ip(if c.rs6 { "2001:2:0:2::1" } else { "198.18.2.1" }), "{label}: outer source from the route");
    assert_eq!(ttl, 63, "{label}: outer TTL from the inner one");
    let inner_v: u8 = if c.svc6 { 41 } else { 4 };
    let inner: Vec<u8> = match c.kind {
        TunnelKind::Ipip => {
            assert_eq!(proto, inner_v, "{label}");
            body.clone()
        }
        TunnelKind::Gue => {
            assert_eq!(proto, 17, "{label}: UDP");
            let sport = u16::from_be_bytes([body[0], body[1]]);
            assert!((32768..61000).contains(&sport), "{label}: source port {sport} in the ephemeral range");
            assert_eq!(u16::from_be_bytes([body[2], body[3]]), GUE_PORT, "{label}");
            assert_eq!(usize::from(u16::from_be_bytes([body[4], body[5]])), body.len(), "{label}: UDP length");
            let check = u16::from_be_bytes([body[6], body[7]]);
            if c.csum == TunnelCsum::None {
                assert_eq!(check, 0, "{label}: no checksum");
            } else {
                assert_ne!(check, 0, "{label}: a checksum");
                let mut all = pseudo(src, dst, 17, body.len());
                all.extend_from_slice(&body);
                assert_eq!(sum16(&all), 0xffff, "{label}: outer UDP checksum");
            }
            assert_eq!(&body[8..12], &[0, inner_v, 0, 0], "{label}: GUE header");
            body[12..].to_vec()
        }
        TunnelKind::Gre => {
            assert_eq!(proto, 47, "{label}: GRE");
            let flags = u16::from_be_bytes([body[0], body[1]]);
            assert_eq!(u16::from_be_bytes([body[2], body[3]]), if c.svc6 { 0x86dd } else { 0x0800 }, "{label}");
            if c.csum == TunnelCsum::None {
                assert_eq!(flags, 0, "{label}");
                body[4..].to_vec()
            } else {
                assert_eq!(flags, 0x8000, "{label}: checksum present");
                assert_eq!(sum16(&body), 0xffff, "{label}: GRE checksum");
                body[8..].to_vec()
            }
        }
    };
    // The inner packet as it would arrive directly (TTL already decremented).
    let mut direct = r.frame[..14].to_vec();
    direct[12..14].copy_from_slice(&(if c.svc6 { 0x86ddu16 } else { 0x0800u16 }).to_be_bytes());
    direct.extend_from_slice(&inner);
    let seen = parse(&direct);
    assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (client, 40000, key.addr(), key.port()), "{label}");
    assert_eq!(seen.ttl, 63, "{label}");

    // The real server's program strips it all.
    let mut d = Decap::load().unwrap();
    d.allow(key.addr()).unwrap();
    d.allow_gue_port(GUE_PORT).unwrap();
    let back = d.run(&r.frame).unwrap();
    assert_eq!(back.action, action::PASS, "{label}");
    assert_eq!(back.frame, direct, "{label}: decapsulated to the inner packet");
    // Not for a VIP it holds (or a GUE port it does not take): untouched.
    let mut other = Decap::load().unwrap();
    other.allow(ip(if c.svc6 { "2001:2::9" } else { "198.18.0.9" })).unwrap();
    let kept = other.run(&r.frame).unwrap();
    assert_eq!(kept.frame, r.frame, "{label}: left alone");
}

#[test]
fn every_tunnel_type_family_and_checksum_round_trips() {
    if require_root().is_none() {
        return;
    }
    for kind in [TunnelKind::Ipip, TunnelKind::Gue, TunnelKind::Gre] {
        let csums: &[TunnelCsum] = match kind {
            TunnelKind::Ipip => &[TunnelCsum::None],
            TunnelKind::Gue => &[TunnelCsum::None, TunnelCsum::Csum, TunnelCsum::Remcsum],
            TunnelKind::Gre => &[TunnelCsum::None, TunnelCsum::Csum],
        };
        for &csum in csums {
            for (svc6, rs6) in [(false, false), (true, true), (false, true), (true, false)] {
                for udp in [false, true] {
                    run(&Case { svc6, rs6, kind, csum, udp });
                }
            }
        }
    }
}

#[test]
fn gue_source_ports_follow_the_flow() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(ServiceKey::tcp(ip(VIP4), 80), SchedKind::Rr);
    let mut cfg = method_cfg(ForwardMethod::Tunnel);
    cfg.tunnel = Tunnel { kind: TunnelKind::Gue, port: GUE_PORT, csum: TunnelCsum::None };
    lab.dest(&key, RS4[0], 80, cfg);
    let sport_of = |lab: &Lab, cport: u16, flags: u8| {
        let f = frame((ip(CLIENT4), cport), (key.addr(), 80), Some(flags), b"", CLIENT_MAC, lab.mac_d0);
        let r = lab.run_client(&f);
        assert_eq!(r.action, action::REDIRECT);
        u16::from_be_bytes([r.frame[34], r.frame[35]])
    };
    let mut ports = std::collections::BTreeSet::new();
    for cport in 40000..40064 {
        let first = sport_of(&lab, cport, TcpFlags::SYN);
        assert_eq!(sport_of(&lab, cport, TcpFlags::ACK), first, "every packet of a flow has one source port");
        ports.insert(first);
    }
    assert!(ports.len() > 48, "64 flows spread over {} source ports only", ports.len());
}

/// SCTP through every tunnel without an outer checksum (xvsd refuses one for SCTP): the
/// encapsulated packet carries the SCTP packet byte for byte, and the real server's program
/// gives it back.
#[test]
fn sctp_rides_every_tunnel_unchanged() {
    if require_root().is_none() {
        return;
    }
    for kind in [TunnelKind::Ipip, TunnelKind::Gue, TunnelKind::Gre] {
        let mut lab = Lab::new();
        let key = lab.service(ServiceKey::sctp(ip(VIP4), 9000), SchedKind::Rr);
        let mut cfg = method_cfg(ForwardMethod::Tunnel);
        cfg.tunnel = Tunnel { kind, port: if kind == TunnelKind::Gue { GUE_PORT } else { 0 }, csum: TunnelCsum::None };
        lab.dest(&key, RS4[0], 9000, cfg);
        let mut sctp = Vec::new();
        sctp.extend_from_slice(&40000u16.to_be_bytes());
        sctp.extend_from_slice(&9000u16.to_be_bytes());
        sctp.extend_from_slice(&[0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 0, 0, 20]);
        sctp.resize(32, 7);
        let (IpAddr::V4(c), IpAddr::V4(v)) = (ip(CLIENT4), key.addr()) else { unreachable!() };
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(CLIENT_MAC, lab.mac_d0)
            .ipv4(c.octets(), v.octets(), 64)
            .write(&mut f, etherparse::IpNumber(132), &sctp)
            .unwrap();
        let r = lab.run_client(&f);
        assert_eq!(r.action, action::REDIRECT, "{kind:?}: the INIT goes to the real server");
        let (_, dst, _, _, body) = outer(&r.frame);
        assert_eq!(dst, ip(RS4[0]), "{kind:?}");
        assert!(body.ends_with(&sctp), "{kind:?}: the SCTP packet inside, unchanged");
        let mut d = Decap::load().unwrap();
        d.allow(key.addr()).unwrap();
        d.allow_gue_port(GUE_PORT).unwrap();
        let back = d.run(&r.frame).unwrap();
        assert_eq!(back.action, action::PASS, "{kind:?}");
        assert_eq!(back.frame[14 + 20..], sctp[..], "{kind:?}: decapsulated");
    }
}
