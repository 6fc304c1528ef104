//! Malformed and unusual input: the director must pass it to the kernel or drop it, unchanged,
//! never rewrite it wrongly and never read outside it (the verifier guarantees the last; these
//! tests pin the first two). IP options and IPv6 extension headers are handled, not refused.

mod common;

use common::*;
use xvs_core::{ForwardMethod, SchedKind, ServiceKey, TcpFlags};
use xvs_dataplane::action;

fn lab_with_vip() -> (Lab, ServiceKey) {
    let mut lab = Lab::new();
    let key = lab.service(ServiceKey::tcp(ip(VIP4), 80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 8080, method_cfg(ForwardMethod::Masq));
    let k6 = lab.service(ServiceKey::tcp(ip(VIP6), 80), SchedKind::Rr);
    lab.dest(&k6, RS6[0], 8080, method_cfg(ForwardMethod::Masq));
    let u = lab.service(ServiceKey::udp(ip(VIP4), 53), SchedKind::Rr);
    lab.dest(&u, RS4[0], 53, method_cfg(ForwardMethod::Masq));
    (lab, key)
}

fn syn4(lab: &Lab) -> Vec<u8> {
    frame((ip(CLIENT4), 40000), (ip(VIP4), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0)
}

fn syn6(lab: &Lab) -> Vec<u8> {
    frame((ip(CLIENT6), 40000), (ip(VIP6), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0)
}

/// Expects XDP_PASS with the frame untouched, and the reason counter `reason` to move.
fn passes_untouched(lab: &Lab, f: &[u8], reason: Option<&str>, what: &str) {
    let before = lab.dp.reasons().unwrap();
    let r = lab.run_client(f);
    assert_eq!(r.action, action::PASS, "{what}: passed to the kernel");
    assert_eq!(r.frame, f, "{what}: unchanged");
    if let Some(reason) = reason {
        let after = lab.dp.reasons().unwrap();
        let get = |v: &Vec<(&str, u64)>| v.iter().find(|(n, _)| *n == reason).map(|(_, c)| *c).unwrap();
        assert_eq!(get(&after), get(&before) + 1, "{what}: counted as {reason}");
    }
}

#[test]
fn truncated_and_bad_headers_pass_untouched() {
    if require_root().is_none() {
        return;
    }
    let (lab, _) = lab_with_vip();
    let good = syn4(&lab);
    // An Ethernet header and nothing else (shorter frames never reach XDP: the kernel's
    // test runner refuses them as drivers do).
    passes_untouched(&lab, &good[..14], Some("bad_packet"), "Ethernet header only");
    // IPv4 header cut short.
    passes_untouched(&lab, &good[..14 + 12], Some("bad_packet"), "truncated IPv4 header");
    // Total length beyond the frame.
    let mut f = good.clone();
    f[16..18].copy_from_slice(&200u16.to_be_bytes());
    passes_untouched(&lab, &f, Some("bad_packet"), "total length beyond the frame");
    // Total length below the header length.
    let mut f = good.clone();
    f[16..18].copy_from_slice(&10u16.to_be_bytes());
    passes_untouched(&lab, &f, Some("bad_packet"), "total length below the header");
    // TCP header cut short (the IP length says so too).
    let mut f = good[..14 + 20 + 12].to_vec();
    f[16..18].copy_from_slice(&32u16.to_be_bytes());
    passes_untouched(&lab, &f, Some("bad_packet"), "truncated TCP header");
    // TCP data offset below 5.
    let mut f = good.clone();
    f[14 + 20 + 12] = 0x40;
    passes_untouched(&lab, &f, Some("bad_packet"), "TCP data offset 4");
    // IPv4 header length below 5 words.
    let mut f = good.clone();
    f[14] = 0x44;
    passes_untouched(&lab, &f, Some("bad_packet"), "IHL 4");
    // UDP length below the UDP header.
    let mut u = frame((ip(CLIENT4), 5353), (ip(VIP4), 53), None, b"q", CLIENT_MAC, lab.mac_d0);
    u[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    passes_untouched(&lab, &u, Some("bad_packet"), "UDP length 4");
    // IPv6 payload length beyond the frame.
    let mut f = syn6(&lab);
    f[18..20].copy_from_slice(&500u16.to_be_bytes());
    passes_untouched(&lab, &f, Some("bad_packet"), "IPv6 payload length beyond the frame");
    // Not IP at all (ARP).
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    passes_untouched(&lab, &arp, None, "ARP");
}

#[test]
fn fragments_go_to_the_kernel() {
    if require_root().is_none() {
        return;
    }
    let (lab, _) = lab_with_vip();
    // IPv4 first fragment (MF) and a later one (offset), checksum fixed so only the flags differ.
    for (flags, what) in [(0x2000u16, "first fragment"), (0x0010u16, "non-first fragment")] {
        let mut f = syn4(&lab);
        f[20..22].copy_from_slice(&flags.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let sum = ipv4_sum(&f[14..34]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
        passes_untouched(&lab, &f, Some("fragment"), what);
    }
    // IPv6 with a fragment header.
    let base = syn6(&lab);
    let mut f = base[..14 + 40].to_vec();
    f[20] = 44; // next header: fragment
    let plen = u16::from_be_bytes([base[18], base[19]]) + 8;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 1]); // next header TCP, offset 0, M=0, id 1
    f.extend_from_slice(&base[14 + 40..]);
    passes_untouched(&lab, &f, Some("fragment"), "IPv6 fragment header");
}

fn ipv4_sum(h: &[u8]) -> u16 {
    let mut s: u32 = h.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

#[test]
fn ipv4_options_are_balanced_correctly() {
    if require_root().is_none() {
        return;
    }
    let (lab, _) = lab_with_vip();
    let base = syn4(&lab);
    // Insert a 4-byte option (NOP NOP NOP EOL) after the 20-byte header.
    let mut f = base[..34].to_vec();
    f.extend_from_slice(&[1, 1, 1, 0]);
    f.extend_from_slice(&base[34..]);
    f[14] = 0x46;
    let tot = u16::from_be_bytes([f[16], f[17]]) + 4;
    f[16..18].copy_from_slice(&tot.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let sum = ipv4_sum(&f[14..38]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    let r = lab.run_client(&f);
    assert_eq!(r.action, action::REDIRECT);
    let out = parse(&r.frame);
    assert_eq!((out.dst, out.dport, out.sport), (ip(RS4[0]), 8080, 40000), "rewritten past the options");
    assert_eq!(r.frame[34..38], [1, 1, 1, 0], "options kept");
}

#[test]
fn ipv6_extension_headers_are_walked() {
    if require_root().is_none() {
        return;
    }
    let (lab, _) = lab_with_vip();
    let base = syn6(&lab);
    // A hop-by-hop header (8 bytes: next TCP, length 0, PadN 4 + Pad1... as 6 bytes of padding).
    let mut f = base[..14 + 40].to_vec();
    f[20] = 0; // next header: hop-by-hop
    let plen = u16::from_be_bytes([base[18], base[19]]) + 8;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&base[14 + 40..]);
    let r = lab.run_client(&f);
    assert_eq!(r.action, action::REDIRECT, "balanced through the extension header");
    let out = parse(&r.frame);
    assert_eq!((out.dst, out.dport), (ip(RS6[0]), 8080));
}

#[test]
fn packets_for_nobody_pass_and_non_syn_opens_nothing() {
    if require_root().is_none() {
        return;
    }
    let (lab, _) = lab_with_vip();
    // Another port of the VIP.
    let other = frame((ip(CLIENT4), 40000), (ip(VIP4), 81), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    passes_untouched(&lab, &other, None, "SYN to a port without a service");
    // An ACK without a connection.
    let ack = frame((ip(CLIENT4), 40001), (ip(VIP4), 80), Some(TcpFlags::ACK), b"x", CLIENT_MAC, lab.mac_d0);
    passes_untouched(&lab, &ack, None, "ACK without a connection");
    assert_eq!(lab.dp.counter(xvs_abi::counter::CONN_NEW).unwrap(), 0);
}

#[test]
fn no_usable_server_answers_port_unreachable() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(ServiceKey::tcp(ip(VIP4), 80), SchedKind::Wlc);
    lab.dest(&key, RS4[0], 8080, method_cfg(ForwardMethod::Masq).weight(0));
    let f = syn4(&lab);
    let r = lab.run_client(&f);
    assert_eq!(r.action, action::TX, "sent back out of d0");
    let out = parse(&r.frame);
    assert_eq!((out.src, out.dst, out.proto), (ip(VIP4), ip(CLIENT4), 1), "ICMP from the VIP to the client");
    assert_eq!(&r.frame[34..36], &[3, 3], "destination unreachable / port unreachable");
    // The quoted header is the client's original IP header.
    assert_eq!(&r.frame[42..62], &f[14..34]);
    let k6 = lab.service(ServiceKey::tcp(ip(VIP6), 80), SchedKind::Wlc);
    lab.dest(&k6, RS6[0], 8080, method_cfg(ForwardMethod::Masq).weight(0));
    let r = lab.run_client(&syn6(&lab));
    assert_eq!(r.action, action::TX);
    let out = parse(&r.frame);
    assert_eq!((out.src, out.dst, out.proto), (ip(VIP6), ip(CLIENT6), 58));
    assert_eq!(&r.frame[54..56], &[1, 4], "ICMPv6 destination unreachable / port unreachable");
}

#[test]
fn transport_headers_are_read_within_the_ip_length_only() {
    if require_root().is_none() {
        return;
    }
    let (lab, _) = lab_with_vip();
    // An IPv4 packet whose length ends before the TCP header, in a frame padded to 60 bytes
    // (as Ethernet pads short frames): the "ports" would come from the padding.
    let good = syn4(&lab);
    let mut f = good[..14 + 20].to_vec();
    f.extend_from_slice(&[0u8; 26]); // padding: zeros where ports would be
    f[14 + 20..14 + 20 + 20].copy_from_slice(&good[14 + 20..14 + 20 + 20]); // looks like a SYN
    f[16..18].copy_from_slice(&24u16.to_be_bytes()); // but the IP packet is 24 bytes
    f[24..26].copy_from_slice(&[0, 0]);
    let sum = ipv4_sum(&f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    passes_untouched(&lab, &f, Some("bad_packet"), "TCP header beyond the IP length");
    // A UDP length beyond the IP packet.
    let mut u = frame((ip(CLIENT4), 5353), (ip(VIP4), 53), None, b"q", CLIENT_MAC, lab.mac_d0);
    u[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&200u16.to_be_bytes());
    passes_untouched(&lab, &u, Some("bad_packet"), "UDP length beyond the IP packet");
    // A well-formed short SYN padded to 60 bytes is still balanced, padding untouched.
    let mut padded = good.clone();
    let len = padded.len();
    padded.extend_from_slice(&[0xee; 8]);
    let r = lab.run_client(&padded);
    assert_eq!(r.action, action::REDIRECT);
    assert_eq!(r.frame[len..], [0xee; 8], "padding stays padding");
}

#[test]
fn ipv6_routing_headers_with_segments_left_are_the_kernels() {
    if require_root().is_none() {
        return;
    }
    let (lab, _) = lab_with_vip();
    let base = syn6(&lab);
    for (left, balanced) in [(1u8, false), (0u8, true)] {
        // A type-4 (segment routing) header with one segment, `left` segments to go.
        let mut f = base[..14 + 40].to_vec();
        f[20] = 43; // next header: routing
        let plen = u16::from_be_bytes([base[18], base[19]]) + 24;
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        f.extend_from_slice(&[6, 2, 4, left, 0, 0, 0, 0]);
        f.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&base[14 + 40..]);
        if balanced {
            let r = lab.run_client(&f);
            assert_eq!(r.action, action::REDIRECT, "the VIP is the final destination");
        } else {
            passes_untouched(&lab, &f, None, "a waypoint, not the destination");
        }
    }
}

#[test]
fn vlan_tagged_frames_pass_untouched() {
    if require_root().is_none() {
        return;
    }
    let (lab, _) = lab_with_vip();
    let good = syn4(&lab);
    let mut f = good[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]); // 802.1Q, VLAN 100
    f.extend_from_slice(&good[12..]);
    passes_untouched(&lab, &f, None, "802.1Q-tagged SYN");
}
