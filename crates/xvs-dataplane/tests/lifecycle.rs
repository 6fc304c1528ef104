//! Connections over time: states against the core's, expiry by the sweep at the configured
//! timeouts with exact accounting, persistence templates, reuse of closed 4-tuples, removed
//! servers, and a reloaded director adopting the pinned tables.

mod common;

use std::thread::sleep;
use std::time::Duration;

use common::*;
use xvs_abi as abi;
use xvs_core::{ConnState, ForwardMethod, Packet, SchedKind, ServiceConfig, ServiceKey, TcpFlags, TcpState, Verdict};
use xvs_dataplane::{action, addr_words, Director, LoadOptions, Prealloc, Publisher};

fn conn_of(lab: &Lab, client: &str, port: u16, key: &ServiceKey) -> Option<abi::Conn> {
    let k = abi::Conn4Key {
        caddr: addr_words(&ip(client))[0],
        vaddr: addr_words(&key.addr())[0],
        cport: port.to_be(),
        vport: key.port().to_be(),
        proto: key.protocol().number(),
        pad: [0; 3],
    };
    lab.dp.maps.conn4.get(&k, 0).ok()
}

fn send(lab: &mut Lab, key: &ServiceKey, client: &str, port: u16, flags: Option<u8>) -> (u32, Verdict) {
    let f = frame((ip(client), port), (key.addr(), key.port()), flags, b"", CLIENT_MAC, lab.mac_d0);
    let r = lab.run_client(&f);
    let p = match flags {
        Some(fl) => Packet::tcp((ip(client), port), (key.addr(), key.port()), fl),
        None => Packet::udp((ip(client), port), (key.addr(), key.port())),
    };
    let v = lab.lb.handle_inbound(lab.now, &p);
    (r.action, v)
}

fn short_timeouts(lab: &mut Lab) {
    lab.lb.timeouts.udp = Duration::from_secs(1);
    lab.lb.timeouts.tcp.0[TcpState::Close as usize] = Duration::from_secs(1);
    lab.lb.timeouts.tcp.0[TcpState::SynRecv as usize] = Duration::from_secs(1);
    Publisher::write_config(&mut lab.dp, &lab.lb.timeouts, &lab.lb.sysctl).unwrap();
}

/// A lab with short timeouts and one UDP service (rr) with one NAT real server.
fn udp_lab() -> (Lab, ServiceKey) {
    udp_lab_with(|_| {})
}

fn udp_lab_with(adjust: impl FnOnce(&mut LoadOptions)) -> (Lab, ServiceKey) {
    let mut lab = Lab::with_options(adjust);
    short_timeouts(&mut lab);
    let key = lab.service(ServiceKey::udp(ip(VIP4), 53), SchedKind::Rr);
    lab.dest(&key, RS4[0], 53, method_cfg(ForwardMethod::Masq));
    (lab, key)
}

#[test]
fn tcp_states_match_the_core_packet_by_packet() {
    if require_root().is_none() {
        return;
    }
    for method in [ForwardMethod::Masq, ForwardMethod::Route] {
        let mut lab = Lab::new();
        let key = lab.service(vip4(80), SchedKind::Rr);
        lab.dest(&key, RS4[0], 80, method_cfg(method));
        let steps =
            [TcpFlags::SYN, TcpFlags::ACK, TcpFlags::ACK, TcpFlags::FIN | TcpFlags::ACK, TcpFlags::ACK, TcpFlags::RST];
        for flags in steps {
            let (a, _) = send(&mut lab, &key, CLIENT4, 40000, Some(flags));
            assert_eq!(a, action::REDIRECT);
            let dp = conn_of(&lab, CLIENT4, 40000, &key).expect("connection entry");
            let core = lab.lb.conns.iter().next().map(|(_, c)| c.state).unwrap();
            let ConnState::Tcp(cs) = core else { panic!("{core:?}") };
            assert_eq!(dp.state, cs as u8, "{method:?} after flags {flags:#x}: core is {}", cs.name());
        }
    }
}

#[test]
fn udp_connections_expire_with_their_accounting() {
    if require_root().is_none() {
        return;
    }
    let (mut lab, key) = udp_lab();
    let (a, _) = send(&mut lab, &key, CLIENT4, 5353, None);
    assert_eq!(a, action::REDIRECT);
    let d = lab.lb.services.find_dest(lab.lb.services.find(&key).unwrap(), &ip(RS4[0]), 53).unwrap();
    assert_eq!(lab.dp.dest_counters(d).unwrap().inactive, 1, "UDP connections are inactive");
    assert_eq!(lab.dp.maps.nat4.iter().count(), 1);
    let out = lab.dp.sweep(0).unwrap();
    assert_eq!((out.seen, out.expired), (1, 0), "not yet");
    sleep(Duration::from_millis(1100));
    let out = lab.dp.sweep(0).unwrap();
    assert_eq!((out.seen, out.expired), (1, 1), "expired after the UDP timeout");
    assert!(conn_of(&lab, CLIENT4, 5353, &key).is_none());
    assert_eq!(lab.dp.maps.nat4.iter().count(), 0, "reply entry removed with it");
    let c = lab.dp.dest_counters(d).unwrap();
    assert_eq!((c.active, c.inactive), (0, 0));
    assert_eq!(
        lab.dp.counter(abi::counter::CONN_NEW).unwrap(),
        lab.dp.counter(abi::counter::CONN_DEL).unwrap(),
        "every insert has its removal"
    );
}

#[test]
fn a_closed_tuple_is_rescheduled_and_expired_entries_are_replaced() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    short_timeouts(&mut lab);
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Masq));
    lab.dest(&key, RS4[1], 80, method_cfg(ForwardMethod::Masq));
    let first = conn_dest(&mut lab, &key, TcpFlags::SYN);
    let _ = send(&mut lab, &key, CLIENT4, 40000, Some(TcpFlags::ACK));
    let _ = send(&mut lab, &key, CLIENT4, 40000, Some(TcpFlags::RST));
    // conn_reuse_mode 1: a SYN on a CLOSE connection starts a new one, scheduled anew.
    let second = conn_dest(&mut lab, &key, TcpFlags::SYN);
    assert_ne!(first, second);
    // Let it expire without a sweep: the next SYN replaces the stale entry itself.
    sleep(Duration::from_millis(1100));
    let third = conn_dest(&mut lab, &key, TcpFlags::SYN);
    assert_ne!(second, third);
    let svc = lab.lb.services.find(&key).unwrap();
    let total: u32 = RS4[..2]
        .iter()
        .map(|a| {
            let c = lab.dp.dest_counters(lab.lb.services.find_dest(svc, &ip(a), 80).unwrap()).unwrap();
            c.active + c.inactive
        })
        .sum();
    assert_eq!(total, 1, "only the live connection is counted");
}

/// testdata/kernel/reuse-6.12.txt: lc sees the replaced connection on its server while the new
/// SYN is scheduled, as the kernel does and the core says.
#[test]
fn a_replaced_connection_counts_while_its_successor_is_scheduled() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(vip4(80), SchedKind::Lc);
    lab.dest(&key, RS4[1], 80, method_cfg(ForwardMethod::Masq));
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Masq));
    let core_dest = |lab: &mut Lab, flags: u8| match send(lab, &key, CLIENT4, 40000, Some(flags)).1 {
        Verdict::Forward(f) => Some(f.daddr),
        _ => None,
    };
    let first = conn_dest(&mut lab, &key, TcpFlags::SYN);
    assert_eq!(Some(first), core_dest(&mut lab, TcpFlags::SYN));
    assert_eq!(first, ip(RS4[0]), "both idle: the first in the list");
    let _ = send(&mut lab, &key, CLIENT4, 40000, Some(TcpFlags::ACK));
    let _ = send(&mut lab, &key, CLIENT4, 40000, Some(TcpFlags::RST));
    let second = conn_dest(&mut lab, &key, TcpFlags::SYN);
    assert_eq!(Some(second), core_dest(&mut lab, TcpFlags::SYN), "the core agrees");
    assert_eq!(second, ip(RS4[1]), "the closed connection still counted on its server");
    let svc = lab.lb.services.find(&key).unwrap();
    let c = lab.dp.dest_counters(lab.lb.services.find_dest(svc, &ip(RS4[0]), 80).unwrap()).unwrap();
    assert_eq!((c.active, c.inactive), (0, 0), "and released after");
}

fn conn_dest(lab: &mut Lab, key: &ServiceKey, flags: u8) -> std::net::IpAddr {
    let f = frame((ip(CLIENT4), 40000), (key.addr(), key.port()), Some(flags), b"", CLIENT_MAC, lab.mac_d0);
    let r = lab.run_client(&f);
    assert_eq!(r.action, action::REDIRECT);
    parse(&r.frame).dst
}

#[test]
fn removed_servers_drop_or_reschedule() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Masq));
    lab.dest(&key, RS4[1], 80, method_cfg(ForwardMethod::Masq));
    let d = conn_dest(&mut lab, &key, TcpFlags::SYN);
    lab.lb.services.delete_dest(&key, &d, 80, lab.now).unwrap();
    lab.republish(&key);
    let f = frame((ip(CLIENT4), 40000), (key.addr(), 80), Some(TcpFlags::ACK), b"x", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.run_client(&f).action, action::DROP, "expire_nodest_conn=0: dropped");
    lab.lb.sysctl.expire_nodest_conn = true;
    Publisher::write_config(&mut lab.dp, &lab.lb.timeouts, &lab.lb.sysctl).unwrap();
    let other = conn_dest(&mut lab, &key, TcpFlags::SYN);
    assert_ne!(other, d, "expired and rescheduled to a remaining server");
}

#[test]
fn persistence_templates_pin_clients_and_expire() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    short_timeouts(&mut lab);
    let key = ServiceKey::udp(ip(VIP4), 53);
    lab.service_with(key, ServiceConfig::new(key.family(), SchedKind::Rr).persistent(1));
    lab.dest(&key, RS4[0], 53, method_cfg(ForwardMethod::Masq));
    lab.dest(&key, RS4[1], 53, method_cfg(ForwardMethod::Masq));
    let pick = |lab: &mut Lab, port: u16| {
        let f = frame((ip(CLIENT4), port), (key.addr(), 53), None, b"q", CLIENT_MAC, lab.mac_d0);
        parse(&lab.run_client(&f).frame).dst
    };
    let a = pick(&mut lab, 1000);
    assert_eq!(pick(&mut lab, 1001), a, "same client, same server");
    assert_eq!(lab.dp.maps.tpl4.iter().count(), 1);
    let svc = lab.lb.services.find(&key).unwrap();
    let d = lab.lb.services.find_dest(svc, &a, 53).unwrap();
    assert_eq!(lab.dp.dest_counters(d).unwrap().persistent, 1);
    sleep(Duration::from_millis(1100));
    // Connections (UDP, 1 s) and then the idle template go in one sweep.
    let out = lab.dp.sweep(0).unwrap();
    assert_eq!((out.expired, out.tpl_expired), (2, 1));
    assert_eq!(lab.dp.dest_counters(d).unwrap().persistent, 0);
    assert_ne!(pick(&mut lab, 1002), a, "rr moves on once the template is gone");
}

#[test]
fn a_template_controlling_connections_outlives_its_timeout() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service_with(vip4(80), ServiceConfig::new(vip4(80).family(), SchedKind::Rr).persistent(1));
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Masq));
    conn_dest(&mut lab, &key, TcpFlags::SYN);
    sleep(Duration::from_millis(1100));
    let out = lab.dp.sweep(0).unwrap();
    assert_eq!(out.tpl_expired, 0);
    let (_, t) = lab.dp.maps.tpl4.iter().next().unwrap().unwrap();
    assert_eq!((t.n_control, t.timeout), (1, 60), "re-armed for 60 s, and 60 s from then on");
}

#[test]
fn a_reloaded_director_adopts_pinned_connections() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Masq));
    lab.dest(&key, RS4[1], 80, method_cfg(ForwardMethod::Masq));
    let d = conn_dest(&mut lab, &key, TcpFlags::SYN);
    // A second instance on the same pins, as a restarted xvsd would load it.
    let again = Director::load(LoadOptions::small(lab.dp.pin_dir.clone())).unwrap();
    let f = frame((ip(CLIENT4), 40000), (key.addr(), 80), Some(TcpFlags::ACK), b"x", CLIENT_MAC, lab.mac_d0);
    let r = again.test_run(&f, lab.if_client).unwrap();
    assert_eq!(r.action, action::REDIRECT);
    assert_eq!(parse(&r.frame).dst, d, "the established connection keeps its server");
}

fn reason(lab: &Lab, name: &str) -> u64 {
    lab.dp.reasons().unwrap().into_iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| v)
}

#[test]
fn a_syn_flood_never_pushes_out_established_connections() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::with_options(|o| {
        o.max_conns = 256;
        o.max_half = 128;
    });
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Route));
    lab.dest(&key, RS4[1], 80, method_cfg(ForwardMethod::Route));
    let svc = lab.lb.services.find(&key).unwrap();
    let counted = |lab: &Lab| -> u32 {
        RS4[..2]
            .iter()
            .map(|a| {
                let c = lab.dp.dest_counters(lab.lb.services.find_dest(svc, &ip(a), 80).unwrap()).unwrap();
                c.active + c.inactive
            })
            .sum()
    };
    // 50 established connections (SYN, then the handshake's ACK).
    let held: Vec<String> = (0..50u32).map(|i| format!("198.18.1.{}", 1 + i)).collect();
    let mut server_of = Vec::new();
    for c in &held {
        for flags in [TcpFlags::SYN, TcpFlags::ACK] {
            let f = frame((ip(c), 2000), (key.addr(), 80), Some(flags), b"", CLIENT_MAC, lab.mac_d0);
            let r = lab.run_client(&f);
            assert_eq!(r.action, action::REDIRECT);
            if flags == TcpFlags::ACK {
                server_of.push(parse(&r.frame).dst);
            }
        }
        assert_eq!(conn_of(&lab, c, 2000, &key).unwrap().flags & abi::CONN_F_HALF, 0, "assured by the ACK");
    }
    assert_eq!(lab.dp.half_open().unwrap(), 0);
    // A spoofed SYN flood far larger than the tables: unassured entries stop at max_half and
    // the rest are refused, counted.
    for i in 0..1500u32 {
        let c = format!("198.18.{}.{}", 100 + i / 250, 1 + i % 250);
        let f = frame((ip(&c), 1000), (key.addr(), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
        let a = lab.run_client(&f).action;
        assert_eq!(a, if i < 128 { action::REDIRECT } else { action::DROP }, "flood SYN {i}");
    }
    assert_eq!(lab.dp.half_open().unwrap(), 128);
    assert_eq!(reason(&lab, "half_open_full"), 1500 - 128);
    assert_eq!(counted(&lab), 50 + 128, "every entry is counted once: nothing vanished");
    // Every established connection is still there and still goes to its server.
    for (c, d) in held.iter().zip(&server_of) {
        let f = frame((ip(c), 2000), (key.addr(), 80), Some(TcpFlags::ACK), b"data", CLIENT_MAC, lab.mac_d0);
        let r = lab.run_client(&f);
        assert_eq!(r.action, action::REDIRECT, "{c}");
        assert_eq!(parse(&r.frame).dst, *d, "{c} keeps its server");
    }
    // The sweep sees the gauge high and drops the idle unassured entries early, with their
    // accounting; the established ones stay.
    sleep(xvs_dataplane::sweep::EARLY_IDLE + Duration::from_millis(100));
    let mut sweeper = xvs_dataplane::Sweeper::default();
    let report = sweeper.run(&lab.dp).unwrap();
    assert_eq!((report.early_dropped, report.half), (128, 0), "{report:?}");
    assert_eq!(counted(&lab), 50);
    for c in &held {
        assert!(conn_of(&lab, c, 2000, &key).is_some(), "{c} survived the early drop");
    }
    // New clients are served again.
    let f = frame((ip("198.18.9.9"), 1000), (key.addr(), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.run_client(&f).action, action::REDIRECT);
    let quiet = sweeper.run(&lab.dp).unwrap();
    assert_eq!((quiet.early_dropped, quiet.pressure), (0, false), "{quiet:?}");
}

#[test]
fn a_full_table_refuses_new_connections_and_keeps_the_old() {
    if require_root().is_none() {
        return;
    }
    // Room for 64 entries, 16 of which may be unassured; assured connections can take all.
    let mut lab = Lab::with_options(|o| {
        o.max_conns = 64;
        o.max_half = 16;
    });
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Masq));
    let mut accepted = Vec::new();
    for i in 0..100u32 {
        let c = format!("198.18.1.{}", 1 + i);
        let f = frame((ip(&c), 3000), (key.addr(), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
        if lab.run_client(&f).action != action::REDIRECT {
            continue;
        }
        let f = frame((ip(&c), 3000), (key.addr(), 80), Some(TcpFlags::ACK), b"", CLIENT_MAC, lab.mac_d0);
        assert_eq!(lab.run_client(&f).action, action::REDIRECT);
        accepted.push(c);
    }
    assert_eq!(accepted.len(), 64, "max_conns were accepted");
    assert!(reason(&lab, "conn_table_full") + reason(&lab, "table_full") > 0, "the rest were refused, counted");
    let nat = lab.dp.maps.nat4.iter().count();
    assert_eq!(nat, accepted.len(), "one reply entry per connection, never more or fewer");
    for c in &accepted {
        let f = frame((ip(c), 3000), (key.addr(), 80), Some(TcpFlags::ACK), b"x", CLIENT_MAC, lab.mac_d0);
        assert_eq!(lab.run_client(&f).action, action::REDIRECT, "{c} carries on");
    }
}

#[test]
fn editing_thresholds_reevaluates_the_overload_flag_and_new_servers_start_clean() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Route).thresholds(1, 0));
    let _ = conn_dest(&mut lab, &key, TcpFlags::SYN);
    let d = ip(RS4[0]);
    let svc = lab.lb.services.find(&key).unwrap();
    let id = lab.lb.services.find_dest(svc, &d, 80).unwrap();
    assert!(lab.dp.dest_counters(id).unwrap().overloaded, "the upper threshold was reached");
    // -x 0: no threshold any more, the flag goes (reference §3.7).
    lab.lb.services.edit_dest(&key, d, 80, method_cfg(ForwardMethod::Route)).unwrap();
    lab.republish(&key);
    assert!(!lab.dp.dest_counters(id).unwrap().overloaded);
    // -x 1 again with one connection: reached, set.
    lab.lb.services.edit_dest(&key, d, 80, method_cfg(ForwardMethod::Route).thresholds(1, 0)).unwrap();
    lab.republish(&key);
    assert!(lab.dp.dest_counters(id).unwrap().overloaded);

    // A removed server's slot taken by a new one starts from zero.
    lab.lb.services.delete_dest(&key, &d, 80, lab.now).unwrap();
    lab.republish(&key);
    lab.dp.sweep(abi::SWEEP_ALL).unwrap();
    // Let the core free the idle trashed server (its slot becomes reusable).
    lab.lb.services.set_dest_counters(id, Default::default()).unwrap();
    lab.lb.services.handle_timeout(xvs_core::Instant::from_secs(200), Duration::ZERO, Duration::ZERO);
    lab.lb.services.handle_timeout(xvs_core::Instant::from_secs(400), Duration::ZERO, Duration::ZERO);
    let key2 = lab.service(ServiceKey::tcp(ip(VIP4), 443), SchedKind::Rr);
    lab.dest(&key2, RS4[1], 443, method_cfg(ForwardMethod::Route));
    let svc2 = lab.lb.services.find(&key2).unwrap();
    let id2 = lab.lb.services.find_dest(svc2, &ip(RS4[1]), 443).unwrap();
    assert_eq!(id2.index(), id.index(), "the slot was reused");
    let c = lab.dp.dest_counters(id2).unwrap();
    assert_eq!((c.active, c.inactive, c.persistent, c.overloaded), (0, 0, 0, false));
}

#[test]
fn a_reused_slot_never_inherits_another_servers_connections() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Masq));
    assert_eq!(conn_dest(&mut lab, &key, TcpFlags::SYN), ip(RS4[0]));
    // A control plane that lost track of the removed server (as a restart without adoption
    // would): the next server added takes the same slot.
    lab.lb = xvs_core::Balancer::default();
    lab.publisher = Publisher::new(&lab.dp);
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[1], 80, method_cfg(ForwardMethod::Masq));
    let svc = lab.lb.services.find(&key).unwrap();
    let newcomer = lab.lb.services.find_dest(svc, &ip(RS4[1]), 80).unwrap();
    assert_eq!(newcomer.index(), 0, "the slot was reused");
    // The old connection's packets never reach the newcomer.
    let f = frame((ip(CLIENT4), 40000), (key.addr(), 80), Some(TcpFlags::ACK), b"x", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.run_client(&f).action, action::DROP);
    assert!(reason(&lab, "stale_dest") > 0);
    // Nor do its counters: expiring the old connection leaves the newcomer's alone.
    lab.dp.sweep(abi::SWEEP_ALL).unwrap();
    let c = lab.dp.dest_counters(newcomer).unwrap();
    assert_eq!((c.active, c.inactive), (0, 0));
    // A new client goes to the newcomer.
    let f = frame((ip(CLIENT4), 40001), (key.addr(), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    assert_eq!(parse(&lab.run_client(&f).frame).dst, ip(RS4[1]));
}

#[test]
fn timeouts_of_up_to_31_days_keep_connections_and_templates() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    // 25 and 31 days: beyond 24.8 days a signed 32-bit millisecond comparison breaks.
    lab.lb.timeouts.set(25 * 86_400, 0, xvs_core::sysctl::MAX_SET_TIMEOUT);
    Publisher::write_config(&mut lab.dp, &lab.lb.timeouts, &lab.lb.sysctl).unwrap();
    let key = lab.service_with(
        vip4(80),
        ServiceConfig::new(vip4(80).family(), SchedKind::Rr).persistent(xvs_core::model::MAX_PERSISTENCE_TIMEOUT),
    );
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Masq));
    lab.dest(&key, RS4[1], 80, method_cfg(ForwardMethod::Masq));
    let first = conn_dest(&mut lab, &key, TcpFlags::SYN);
    let _ = send(&mut lab, &key, CLIENT4, 40000, Some(TcpFlags::ACK));
    let udp = ServiceKey::udp(ip(VIP4), 53);
    lab.service(udp, SchedKind::Rr);
    lab.dest(&udp, RS4[0], 53, method_cfg(ForwardMethod::Masq));
    let _ = send(&mut lab, &udp, CLIENT4, 5353, None);
    let out = lab.dp.sweep(0).unwrap();
    assert_eq!((out.expired, out.tpl_expired), (0, 0), "{out:?}");
    assert_eq!(conn_of(&lab, CLIENT4, 40000, &key).unwrap().state, TcpState::Established as u8);
    // Persistence holds: the same client's next connection goes to the same server.
    let f = frame((ip(CLIENT4), 40001), (key.addr(), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    assert_eq!(parse(&lab.run_client(&f).frame).dst, first);
}

#[test]
fn the_directors_own_icmp_errors_are_rate_limited() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::with_options(|o| {
        o.icmp_rate = 1000;
        o.icmp_burst = 50;
    });
    let key = lab.service(vip4(80), SchedKind::Rr); // no real server: every SYN is refused
    let mut sent = 0;
    for i in 0..400u16 {
        let f = frame((ip(CLIENT4), 10000 + i), (key.addr(), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
        if lab.run_client(&f).action == action::TX {
            sent += 1;
        }
    }
    let limited = lab.dp.counter(abi::counter::ICMP_LIMITED).unwrap();
    // A burst per CPU the test thread ran on, plus what refilled meanwhile.
    assert!((50..400).contains(&sent), "{sent} unreachables sent");
    assert_eq!(limited, 400 - sent, "the rest were counted as limited");
}

#[test]
fn allowed_sources_are_enforced_and_follow_edits() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = vip4(80);
    let mut cfg = ServiceConfig::new(key.family(), SchedKind::Rr);
    cfg.allowed_sources = vec!["198.18.1.0/24".parse().unwrap()];
    lab.service_with(key, cfg.clone());
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Route));
    let syn = |lab: &Lab, src: &str, port: u16| {
        let f = frame((ip(src), port), (key.addr(), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
        lab.run_client(&f).action
    };
    assert_eq!(syn(&lab, CLIENT4, 1000), action::REDIRECT, "inside the prefix");
    assert_eq!(syn(&lab, "198.18.9.9", 1000), action::DROP, "outside");
    assert_eq!(reason(&lab, "not_allowed"), 1);
    // Narrow the list: the old prefix goes, the established connection carries on (as a
    // firewall that filters new connections), new ones from it are refused.
    cfg.allowed_sources = vec!["198.18.9.0/24".parse().unwrap()];
    lab.lb.services.edit_service(&key, cfg, lab.now).unwrap();
    lab.republish(&key);
    assert_eq!(lab.dp.maps.allow.keys().count(), 1, "the stale prefix was removed");
    assert_eq!(syn(&lab, "198.18.9.9", 1000), action::REDIRECT);
    assert_eq!(syn(&lab, CLIENT4, 1001), action::DROP);
    let f = frame((ip(CLIENT4), 1000), (key.addr(), 80), Some(TcpFlags::ACK), b"x", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.run_client(&f).action, action::REDIRECT, "the established connection");
    // A restarted daemon reads the list back.
    let adopted = xvs_dataplane::adopt::read_published(&lab.dp).unwrap();
    assert_eq!(adopted[0].config.allowed_sources, vec!["198.18.9.0/24".parse().unwrap()]);
    // No list: everyone.
    let mut open = ServiceConfig::new(key.family(), SchedKind::Rr);
    open.allowed_sources.clear();
    lab.lb.services.edit_service(&key, open, lab.now).unwrap();
    lab.republish(&key);
    assert_eq!(lab.dp.maps.allow.keys().count(), 0);
    assert_eq!(syn(&lab, "198.18.5.5", 1000), action::REDIRECT);
}

#[test]
fn the_sweep_leaves_empty_tables_alone_and_still_expires_what_enters_them() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    short_timeouts(&mut lab);
    let v6 = lab.service(ServiceKey::udp(ip(VIP6), 53), SchedKind::Rr);
    lab.dest(&v6, RS6[0], 53, method_cfg(ForwardMethod::Masq));
    let mut persistent = ServiceConfig::new(xvs_core::Family::V4, SchedKind::Rr);
    persistent.persistence = Some(1);
    let p4 = lab.service_with(ServiceKey::udp(ip(VIP4), 53), persistent);
    lab.dest(&p4, RS4[0], 53, method_cfg(ForwardMethod::Masq));
    let all_skipped = abi::SWEEP_SKIP_CONN4
        | abi::SWEEP_SKIP_CONN6
        | abi::SWEEP_SKIP_TPL4
        | abi::SWEEP_SKIP_TPL6
        | abi::SWEEP_SKIP_SIP;
    let mut sweeper = xvs_dataplane::Sweeper::default();
    // The first sweep walks everything; then, with nothing in the tables, nothing is walked.
    assert_eq!(sweeper.plan(&lab.dp).unwrap().args.flags & all_skipped, 0);
    sweeper.run(&lab.dp).unwrap();
    assert_eq!(sweeper.plan(&lab.dp).unwrap().args.flags & all_skipped, all_skipped);
    sweeper.run(&lab.dp).unwrap();

    // An IPv6 flow: its table is walked again (and IPv4's, counted by the same counter), the
    // template tables too (they share the other counter) until found empty.
    let (a, _) = send(&mut lab, &v6, CLIENT6, 5353, None);
    assert_eq!(a, action::REDIRECT);
    let args = sweeper.plan(&lab.dp).unwrap().args;
    assert_eq!(args.flags & (abi::SWEEP_SKIP_CONN4 | abi::SWEEP_SKIP_CONN6), 0, "{:#x}", args.flags);
    let r = sweeper.run(&lab.dp).unwrap();
    assert_eq!((r.seen, r.expired), (1, 0));
    // Held: walked every time until it expires, at its timeout (1 s), with its accounting.
    let args = sweeper.plan(&lab.dp).unwrap().args;
    assert_eq!(args.flags & abi::SWEEP_SKIP_CONN6, 0);
    assert_ne!(args.flags & abi::SWEEP_SKIP_CONN4, 0, "the IPv4 table was found empty");
    sleep(Duration::from_millis(1100));
    let r = sweeper.run(&lab.dp).unwrap();
    assert_eq!((r.seen, r.expired), (1, 1), "expired after the UDP timeout");
    sweeper.run(&lab.dp).unwrap();
    assert_eq!(sweeper.plan(&lab.dp).unwrap().args.flags & all_skipped, all_skipped);

    // A persistent IPv4 service: a connection and a template, both walked and expired.
    let (a, _) = send(&mut lab, &p4, CLIENT4, 5353, None);
    assert_eq!(a, action::REDIRECT);
    // The program honours the flags: skipped tables are not walked, walked ones say they hold.
    let out = lab.dp.sweep_with(abi::SweepArgs { flags: all_skipped, ..Default::default() }).unwrap();
    assert_eq!((out.seen, out.tpl_seen, out.held), (0, 0, 0));
    let out = lab.dp.sweep_with(abi::SweepArgs::default()).unwrap();
    assert_eq!((out.seen, out.tpl_seen, out.held), (1, 1, 0b101));
    let args = sweeper.plan(&lab.dp).unwrap().args;
    assert_eq!(args.flags & (abi::SWEEP_SKIP_CONN4 | abi::SWEEP_SKIP_TPL4), 0, "{:#x}", args.flags);
    sweeper.run(&lab.dp).unwrap();
    sleep(Duration::from_millis(2200));
    let (mut conns, mut tpls) = (0, 0);
    for _ in 0..3 {
        let r = sweeper.run(&lab.dp).unwrap();
        conns += r.expired;
        tpls += r.tpl_expired;
        sleep(Duration::from_millis(600));
    }
    assert_eq!((conns, tpls), (1, 1), "the connection, then its template, expired");
    assert!(lab.dp.maps.tpl4.iter().next().is_none() && lab.dp.maps.conn4.iter().next().is_none());
    sweeper.run(&lab.dp).unwrap();
    assert_eq!(sweeper.plan(&lab.dp).unwrap().args.flags & all_skipped, all_skipped);
}

#[test]
fn a_large_table_is_swept_in_steps_that_resume_where_they_stopped() {
    if require_root().is_none() {
        return;
    }
    // With the iterators where the kernel loads them (batch reads where it refuses them), then
    // with batch reads whatever the kernel.
    for batch in [false, true] {
        swept_in_steps(batch);
    }
}

fn swept_in_steps(batch: bool) {
    let (lab, key) = udp_lab_with(|o| o.batch_walk = batch);
    if batch {
        assert!(lab.dp.walk_batch_reason().is_some(), "batch reads asked for");
    }
    let d = lab.lb.services.find_dest(lab.lb.services.find(&key).unwrap(), &ip(RS4[0]), 53).unwrap();
    for i in 0..40u16 {
        let f = frame((ip(CLIENT4), 6000 + i), (key.addr(), 53), None, b"q", CLIENT_MAC, lab.mac_d0);
        assert_eq!(lab.run_client(&f).action, action::REDIRECT);
    }
    assert_eq!(lab.dp.maps.nat4.iter().count(), 40);
    if let Some(why) = lab.dp.walk_unavailable() {
        // A kernel with neither walk (no iterator programs, no batch reads of hash maps): the
        // sweep walks in one go, as xvsd then warns, and must still expire everything with
        // its accounting.
        eprintln!("no stepwise walk on this kernel ({why}): checking the sweep in one go instead");
        let mut sweeper = xvs_dataplane::Sweeper::stepping_from(8);
        for _ in 0..2 {
            let r = sweeper.run(&lab.dp).unwrap();
            assert_eq!((r.seen, r.expired, sweeper.stepping()), (40, 0, false), "never in steps");
        }
        sleep(Duration::from_millis(1100));
        let r = sweeper.run(&lab.dp).unwrap();
        assert_eq!((r.seen, r.expired, sweeper.stepping()), (40, 40, false));
        assert_eq!((lab.dp.maps.conn4.iter().count(), lab.dp.maps.nat4.iter().count()), (0, 0));
        let c = lab.dp.dest_counters(d).unwrap();
        assert_eq!((c.active, c.inactive), (0, 0));
        assert_eq!(lab.dp.counter(abi::counter::CONN_NEW).unwrap(), lab.dp.counter(abi::counter::CONN_DEL).unwrap());
        return;
    }
    // Stepwise from 8 connections on: the first sweep walks in one go and counts 40; the next
    // ones leave the IPv4 table to the steps, 8 connections each, every one visited once a pass.
    let mut sweeper = xvs_dataplane::Sweeper::stepping_from(8);
    let r = sweeper.run(&lab.dp).unwrap();
    assert_eq!((r.seen, r.expired, sweeper.stepping()), (40, 0, false));
    let batched = lab.dp.walk_batch_reason().is_some();
    let mut visited = 0;
    let mut sweeps = 0;
    loop {
        let plan = sweeper.plan(&lab.dp).unwrap();
        assert!(sweeper.stepping());
        assert_ne!(plan.args.flags & abi::SWEEP_SKIP_CONN4, 0, "the program leaves IPv4 to the steps");
        assert_eq!(plan.steps, [8, 0], "IPv6: found empty, nothing entered");
        let done = plan.execute(&lab.dp).unwrap();
        sweeper.record(&plan, &done, lab.dp.options.max_half);
        // A batch read takes whole buckets: one of two entries may straddle the step.
        assert!(done.steps[0].seen <= if batched { 9 } else { 8 }, "{:?}", done.steps[0]);
        visited += done.steps[0].seen;
        sweeps += 1;
        if done.steps[0].finished {
            break;
        }
        assert!(sweeps < 10, "the pass never ended");
    }
    // Five full steps, then a read that meets the end of the table; a batch read sees the end
    // with the last bucket it reads (and may take a step more or less where a bucket of two
    // straddles a step).
    assert_eq!(visited, 40);
    if batched {
        assert!((4..=6).contains(&sweeps), "{sweeps} steps");
    } else {
        assert_eq!(sweeps, 6, "five full steps, then the end of the table");
    }
    assert_eq!(sweeper.live, 40);
    // Expired: the steps remove them, with their accounting and their reply entries.
    sleep(Duration::from_millis(1100));
    // Six sweeps a pass; a removal may shift where the next read resumes in its bucket, and
    // what a pass misses the next one finds.
    // Batch reads resume at a bucket, which never moves: one pass expires them all.
    let mut expired = 0;
    let mut runs = 0;
    for _ in 0..30 {
        expired += sweeper.run(&lab.dp).unwrap().expired;
        runs += 1;
        if expired == 40 {
            break;
        }
    }
    assert_eq!(expired, 40);
    if batched {
        assert!(runs <= sweeps + 1, "{runs} sweeps to expire what one pass of {sweeps} visits");
    }
    assert_eq!(lab.dp.maps.conn4.iter().count(), 0);
    assert_eq!(lab.dp.maps.nat4.iter().count(), 0, "reply entries removed with them");
    let c = lab.dp.dest_counters(d).unwrap();
    assert_eq!((c.active, c.inactive), (0, 0));
    assert_eq!(lab.dp.counter(abi::counter::CONN_NEW).unwrap(), lab.dp.counter(abi::counter::CONN_DEL).unwrap());
    // Found empty by the pass that ended: back to walks in one go, which skip the empty table.
    sweeper.run(&lab.dp).unwrap();
    let plan = sweeper.plan(&lab.dp).unwrap();
    assert!(!sweeper.stepping());
    assert_eq!(plan.steps, [0, 0]);
    assert_eq!(sweeper.live, 0);
}

/// xvsd --prealloc-conns: tables made preallocated serve connections as the others do (NAT
/// replies included), refuse a connection past their room and leave nothing of it, and a
/// restart that asks otherwise keeps them as they were made, connections and all.
#[test]
fn preallocated_tables_serve_refuse_past_their_room_and_outlive_a_restart() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::with_options(|o| {
        o.max_conns = 8;
        o.prealloc = Prealloc::Ipv4;
    });
    let made = [("xvs_conn4", true, 8), ("xvs_nat4", true, 8), ("xvs_conn6", false, 8), ("xvs_nat6", false, 8)];
    assert_eq!(lab.dp.conn_table_kinds().unwrap(), made);
    let nat = lab.service(vip4(80), SchedKind::Rr);
    let dr = lab.service(vip4(81), SchedKind::Rr);
    for (key, m) in [(&nat, ForwardMethod::Masq), (&dr, ForwardMethod::Route)] {
        lab.dest(key, RS4[0], key.port(), method_cfg(m));
        lab.dest(key, RS4[1], key.port(), method_cfg(m));
    }
    // One client (its neighbour entry is the lab's), a port per connection: four NAT
    // connections, then four direct-routing ones fill the connection table.
    let port = |i: u32| 3000 + i as u16;
    let mut server_of = Vec::new();
    for i in 0..8 {
        let key = if i < 4 { &nat } else { &dr };
        for flags in [TcpFlags::SYN, TcpFlags::ACK] {
            let f = frame((ip(CLIENT4), port(i)), (key.addr(), key.port()), Some(flags), b"", CLIENT_MAC, lab.mac_d0);
            let r = lab.run_client(&f);
            assert_eq!(r.action, action::REDIRECT, "connection {i}");
            if flags == TcpFlags::ACK {
                server_of.push(parse(&r.frame).dst);
            }
        }
    }
    let sizes = |lab: &Lab| (lab.dp.maps.conn4.keys().count(), lab.dp.maps.nat4.keys().count());
    assert_eq!(sizes(&lab), (8, 4));
    // The reply of the first connection goes back to its client, from the service's address.
    let mac = RS_MACS[usize::from(server_of[0] != ip(RS4[0]))];
    let back = frame((server_of[0], 80), (ip(CLIENT4), port(0)), Some(TcpFlags::ACK), b"x", mac, lab.mac_d1);
    let r = lab.run_server(&back);
    assert_eq!(r.action, action::REDIRECT);
    let seen = parse(&r.frame);
    assert_eq!((seen.src, seen.dst, seen.dport), (nat.addr(), ip(CLIENT4), port(0)));
    // A ninth connection finds no room in the connection table, through either service:
    // refused, counted, nothing of it left behind (the NAT one's reply entry taken back).
    for (i, key) in [(8, &dr), (9, &nat)] {
        let before = (reason(&lab, "conn_table_full"), reason(&lab, "table_full"));
        let f =
            frame((ip(CLIENT4), port(i)), (key.addr(), key.port()), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
        assert_eq!(lab.run_client(&f).action, action::DROP);
        assert_eq!((reason(&lab, "conn_table_full"), reason(&lab, "table_full")), (before.0 + 1, before.1));
        assert_eq!(sizes(&lab), (8, 4));
    }
    // Restarted without the option: the pinned tables stay as they were made and keep every
    // connection on its server.
    let again = Director::load(LoadOptions::small(lab.dp.pin_dir.clone())).unwrap();
    assert_eq!(again.conn_table_kinds().unwrap(), made);
    for (i, server) in server_of.iter().enumerate() {
        let key = if i < 4 { &nat } else { &dr };
        let f = frame(
            (ip(CLIENT4), port(i as u32)),
            (key.addr(), key.port()),
            Some(TcpFlags::ACK),
            b"y",
            CLIENT_MAC,
            lab.mac_d0,
        );
        let r = again.test_run(&f, lab.if_client).unwrap();
        assert_eq!(r.action, action::REDIRECT);
        assert_eq!(parse(&r.frame).dst, *server, "connection {i} keeps its server");
    }
}

#[test]
fn tables_are_allocated_per_connection_unless_asked_otherwise() {
    if require_root().is_none() {
        return;
    }
    {
        let lab = Lab::new();
        assert!(lab.dp.conn_table_kinds().unwrap().iter().all(|t| !t.1));
    }
    let lab = Lab::with_options(|o| {
        o.max_conns = 64;
        o.prealloc = Prealloc::All;
    });
    assert!(lab.dp.conn_table_kinds().unwrap().iter().all(|t| t.1 && t.2 == 64));
}
