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

#[test]
fn tunnel_overhead_sends_fragmentation_needed_to_the_client() {
    if require_root().is_none() {
        return;
    }
    for af6 in [false, true] {
        let mut lab = Lab::new();
        lab.ns.ip(&["link", "set", "d1", "mtu", "1300"]);
        let key = lab.service(vip(af6, false), SchedKind::Rr);
        lab.dest(&key, rs(af6, 0), 80, method_cfg(ForwardMethod::Tunnel));
        // Fits the link, not the link minus the outer header.
        let payload = vec![0u8; 1300 - if af6 { 40 + 20 + 10 } else { 20 + 20 + 10 }];
        let f = frame((client(af6), 40000), (key.addr(), 80), Some(SYN), &payload, CLIENT_MAC, lab.mac_d0);
        let r = lab.run_client(&f);
        assert_eq!(r.action, action::TX, "af6={af6}: answered on the client side");
        let out = parse(&r.frame);
        assert_eq!((out.src, out.dst), (key.addr(), client(af6)));
        if af6 {
            assert_eq!(r.frame[54], 2, "packet too big");
            assert_eq!(
                u32::from_be_bytes(r.frame[58..62].try_into().unwrap()),
                1300 - 40,
                "MTU minus the outer header"
            );
        } else {
            assert_eq!(&r.frame[34..36], &[3, 4], "fragmentation needed");
            assert_eq!(u16::from_be_bytes([r.frame[40], r.frame[41]]), 1300 - 20);
        }
        // A packet that fits is encapsulated.
        let small = frame((client(af6), 40001), (key.addr(), 80), Some(SYN), b"", CLIENT_MAC, lab.mac_d0);
        assert_eq!(lab.run_client(&small).action, action::REDIRECT);
    }
}

#[test]
fn a_packet_never_sees_half_a_configuration() {
    if require_root().is_none() {
        return;
    }
    // One thread republishes the service over and over, switching its only server (and its
    // sh table) between two; meanwhile new connections must always land on one of them,
    // intact.
    let mut lab = Lab::new();
    let key = lab.service(ServiceKey::tcp(ip(VIP4), 80), SchedKind::Sh);
    lab.dest(&key, RS4[0], 8080, method_cfg(ForwardMethod::Masq));
    // Every packet opens its own connection (a reused 4-tuple whose server was removed would
    // rightly be dropped); fewer than the half-open bound (16,384 here), since every SYN stays
    // half-open and past the bound new connections are rightly refused.
    let frames: Vec<Vec<u8>> = (0..12_000u16)
        .map(|i| frame((ip(CLIENT4), 20000 + i), (ip(VIP4), 80), Some(SYN), b"", CLIENT_MAC, lab.mac_d0))
        .collect();
    // The checker runs its own instance of the program on the same pinned maps; both sides
    // are bounded, and the checker stops when the publisher is done.
    let reader = xvs_dataplane::Director::load(xvs_dataplane::LoadOptions::small(lab.dp.pin_dir.clone())).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (checked, flips) = std::thread::scope(|s| {
        let dp = &reader;
        let done = &done;
        let ifindex = lab.if_client;
        let ns = lab.ns.name().to_string();
        let checker = s.spawn(move || {
            let _in = xvs_lab::enter_named(&ns);
            let mut n = 0;
            for f in &frames {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let r = dp.test_run(f, ifindex).unwrap();
                assert_eq!(r.action, action::REDIRECT, "dataplane reasons: {:?}", dp.reasons());
                let out = parse(&r.frame);
                assert!([ip(RS4[0]), ip(RS4[1])].contains(&out.dst), "{out:?}");
                n += 1;
            }
            n
        });
        let mut flips = 0;
        while flips < 200 && !checker.is_finished() {
            let (add, del) = if flips % 2 == 0 { (RS4[1], RS4[0]) } else { (RS4[0], RS4[1]) };
            lab.lb.services.add_dest(&key, ip(add), 8080, method_cfg(ForwardMethod::Masq)).unwrap();
            lab.lb.services.delete_dest(&key, &ip(del), 8080, lab.now).unwrap();
            let id = lab.lb.services.find(&key).unwrap();
            lab.publisher.publish(&mut lab.dp, &lab.lb.services, id).unwrap();
            flips += 1;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (checker.join().expect("every packet saw a whole configuration"), flips)
    });
    assert!(checked > 100 && flips > 10, "{checked} packets across {flips} changes");
}

/// The next hop towards a real server is cached for at most a second: a neighbour that
/// changes its MAC, or a route that goes away, is followed once the entry has aged out.
#[test]
fn next_hop_changes_are_followed_within_a_second() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(vip(false, false), SchedKind::Rr);
    lab.dest(&key, rs(false, 0), 8080, method_cfg(ForwardMethod::Route));
    let send = |lab: &Lab, sport: u16| {
        let f = frame((client(false), sport), (key.addr(), key.port()), Some(SYN), b"", CLIENT_MAC, lab.mac_d0);
        lab.run_client(&f)
    };
    let r = send(&lab, 41000);
    assert_eq!((r.action, parse(&r.frame).dst_mac), (action::REDIRECT, RS_MACS[0]));
    // The real server's MAC changes (a replaced NIC, a VRRP pair of servers).
    let new_mac = [0x02, 0, 0, 0, 0x77, 0x77];
    lab.ns.ip(&["neigh", "replace", rs(false, 0), "lladdr", "02:00:00:00:77:77", "dev", "d1", "nud", "permanent"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = send(&lab, 41001);
    assert_eq!((r.action, parse(&r.frame).dst_mac), (action::REDIRECT, new_mac), "the new MAC after a second");
    // The route goes away: the packet is no longer sent to the old next hop.
    lab.ns.ip(&["addr", "del", "198.18.2.1/24", "dev", "d1"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = send(&lab, 41002);
    assert_ne!(r.action, action::REDIRECT, "no route, no forwarding");
}

#[test]
fn frames_for_another_host_are_left_to_the_kernel() {
    if require_root().is_none() {
        return;
    }
    // A switch flooding a frame for another director, or an interface in promiscuous mode,
    // brings the director frames that are not its own: the kernel drops them (other host), and
    // so must the director leave them — forwarding them would duplicate another director's work.
    let mut lab = Lab::new();
    lab.dp.note_interface("d0").unwrap(); // as attaching does
    let key = lab.service(vip(false, false), SchedKind::Rr);
    lab.dest(&key, rs(false, 0), 80, method_cfg(ForwardMethod::Route));
    let other_mac = [0x02, 0, 0, 0, 0x99, 0x01];
    let f = frame((client(false), 40000), (key.addr(), 80), Some(SYN), b"", CLIENT_MAC, other_mac);
    let r = lab.run_client(&f);
    assert_eq!(r.action, action::PASS, "left to the kernel");
    assert_eq!(r.frame, f, "untouched");
    let reasons = lab.dp.reasons().unwrap();
    assert!(reasons.iter().any(|(n, v)| *n == "other_host" && *v == 1), "{reasons:?}");
    // The same frame to the director's own MAC is forwarded.
    let mine = frame((client(false), 40000), (key.addr(), 80), Some(SYN), b"", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.run_client(&mine).action, action::REDIRECT);
}

#[test]
fn a_deleted_servers_connections_can_be_expired_at_once() {
    if require_root().is_none() {
        return;
    }
    // expire_nodest_conn: the kernel expires a deleted server's connections when it is
    // deleted (testdata/kernel/nodest-flush-6.12.txt); xvsd runs this sweep then.
    let mut lab = Lab::new();
    let key = lab.service(vip(false, false), SchedKind::Rr);
    lab.dest(&key, rs(false, 0), 80, method_cfg(ForwardMethod::Route));
    lab.dest(&key, rs(false, 1), 80, method_cfg(ForwardMethod::Route));
    for port in 40000..40006 {
        let f = frame((client(false), port), (key.addr(), 80), Some(SYN), b"", CLIENT_MAC, lab.mac_d0);
        assert_eq!(lab.run_client(&f).action, action::REDIRECT);
    }
    let count = |lab: &Lab| lab.dp.maps.conn4.keys().count();
    assert_eq!(count(&lab), 6);
    let sid = lab.lb.services.find(&key).unwrap();
    let did = lab.lb.services.find_dest(sid, &ip(rs(false, 0)), 80).unwrap();
    let (slot, gen) = lab.publisher.dest_slot(did).expect("published");
    lab.lb.services.delete_dest(&key, &ip(rs(false, 0)), 80, lab.now).unwrap();
    lab.republish(&key);
    assert_eq!(count(&lab), 6, "deleting alone leaves them (expire_nodest_conn=0)");
    let mut sweeper = xvs_dataplane::Sweeper::default();
    assert_eq!(sweeper.flush_dest(&lab.dp, slot, gen).unwrap(), 3);
    assert_eq!(count(&lab), 3, "the other server's connections stay");
    // A different generation (the slot's next server) is not touched.
    assert_eq!(sweeper.flush_dest(&lab.dp, slot, gen.wrapping_add(1)).unwrap(), 0);
}
