//! Crafted packets in, exact packets out: every forwarding method × IPv4/IPv6 × TCP/UDP through
//! the director with BPF_PROG_TEST_RUN, checked by an independent parser (etherparse), and
//! malformed input that must pass or drop untouched.

mod common;

use common::*;
use xvs_core::{ForwardMethod, SchedKind, ServiceKey, TcpFlags};
use xvs_dataplane::action;

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;

fn vip(af6: bool, udp: bool) -> ServiceKey {
    let a = ip(if af6 { VIP6 } else { VIP4 });
    if udp {
        ServiceKey::udp(a, 53)
    } else {
        ServiceKey::tcp(a, 80)
    }
}

fn client(af6: bool) -> IpAddr {
    ip(if af6 { CLIENT6 } else { CLIENT4 })
}

use std::net::IpAddr;

fn rs(af6: bool, i: usize) -> &'static str {
    if af6 {
        RS6[i]
    } else {
        RS4[i]
    }
}

/// One connection's first packet and a reply, for one method, family and protocol.
fn forwarding_case(method: ForwardMethod, af6: bool, udp: bool) {
    let mut lab = Lab::new();
    let key = lab.service(vip(af6, udp), SchedKind::Rr);
    let port = if udp { 5353 } else { 8080 };
    lab.dest(&key, rs(af6, 0), port, method_cfg(method));
    let tcp = if udp { None } else { Some(SYN) };
    let f = frame((client(af6), 40000), (key.addr(), key.port()), tcp, b"hello", CLIENT_MAC, lab.mac_d0);
    let r = lab.run_client(&f);
    let out = parse(&r.frame);
    let label = format!("{method:?} {} {}", if af6 { "IPv6" } else { "IPv4" }, if udp { "UDP" } else { "TCP" });
    match method {
        ForwardMethod::Masq => {
            assert_eq!(r.action, action::REDIRECT, "{label}: towards d1");
            assert_eq!((out.dst, out.dport), (ip(rs(af6, 0)), port), "{label}: destination rewritten");
            assert_eq!((out.src, out.sport), (client(af6), 40000), "{label}: source kept");
            assert_eq!(out.dst_mac, RS_MACS[0], "{label}");
            assert_eq!(out.src_mac, lab.mac_d1, "{label}");
            assert_eq!(out.ttl, 63, "{label}: TTL decremented");
            // The reply comes back through the director and leaves with the VIP as source.
            let reply_tcp = if udp { None } else { Some(SYN | ACK) };
            let back = frame((ip(rs(af6, 0)), port), (client(af6), 40000), reply_tcp, b"world", RS_MACS[0], lab.mac_d1);
            let r2 = lab.run_server(&back);
            assert_eq!(r2.action, action::REDIRECT, "{label}: reply towards d0");
            let o2 = parse(&r2.frame);
            assert_eq!(
                (o2.src, o2.sport, o2.dst, o2.dport),
                (key.addr(), key.port(), client(af6), 40000),
                "{label}: reply"
            );
            assert_eq!(o2.dst_mac, CLIENT_MAC, "{label}");
        }
        ForwardMethod::Route => {
            assert_eq!(r.action, action::REDIRECT, "{label}");
            assert_eq!(
                (out.dst, out.dport, out.src, out.sport),
                (key.addr(), key.port(), client(af6), 40000),
                "{label}: only MACs change"
            );
            assert_eq!(out.dst_mac, RS_MACS[0], "{label}");
            assert_eq!(out.ttl, 63, "{label}");
        }
        ForwardMethod::Tunnel => {
            assert_eq!(r.action, action::REDIRECT, "{label}");
            assert_eq!(out.proto, if af6 { 41 } else { 4 }, "{label}: IP-in-IP");
            assert_eq!(out.dst, ip(rs(af6, 0)), "{label}: outer destination");
            assert_eq!(
                out.src,
                ip(if af6 { "2001:2:0:2::1" } else { "198.18.2.1" }),
                "{label}: outer source from the route"
            );
            let inner = out.inner.expect("inner packet");
            assert_eq!(
                (inner.dst, inner.dport, inner.src, inner.sport),
                (key.addr(), key.port(), client(af6), 40000),
                "{label}: inner intact"
            );
            assert_eq!(inner.ttl, 63, "{label}");
        }
        _ => unreachable!(),
    }
}

macro_rules! forwarding_tests {
    ($($name:ident: $m:expr, $v6:expr, $udp:expr;)*) => {
        $(
            #[test]
            fn $name() {
                if require_root().is_none() { return; }
                forwarding_case($m, $v6, $udp);
            }
        )*
    };
}

forwarding_tests! {
    nat_v4_tcp: ForwardMethod::Masq, false, false;
    nat_v4_udp: ForwardMethod::Masq, false, true;
    nat_v6_tcp: ForwardMethod::Masq, true, false;
    nat_v6_udp: ForwardMethod::Masq, true, true;
    dr_v4_tcp: ForwardMethod::Route, false, false;
    dr_v4_udp: ForwardMethod::Route, false, true;
    dr_v6_tcp: ForwardMethod::Route, true, false;
    dr_v6_udp: ForwardMethod::Route, true, true;
    tun_v4_tcp: ForwardMethod::Tunnel, false, false;
    tun_v4_udp: ForwardMethod::Tunnel, false, true;
    tun_v6_tcp: ForwardMethod::Tunnel, true, false;
    tun_v6_udp: ForwardMethod::Tunnel, true, true;
}
