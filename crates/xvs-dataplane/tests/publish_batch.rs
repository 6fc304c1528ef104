//! New services published in one batch of map writes (what `xvsadm apply` does) work as if
//! published one by one: nothing of a service is visible before the batch is written, and
//! afterwards every service sends each new connection to the real server the core picks.

mod common;

use common::*;
use xvs_core::{DestConfig, ForwardMethod, Packet, SchedKind, ServiceConfig, TcpFlags, Verdict};
use xvs_dataplane::action;

const SCHEDULERS: [SchedKind; 6] =
    [SchedKind::Rr, SchedKind::Wrr, SchedKind::Mh, SchedKind::Sh, SchedKind::Wlc, SchedKind::Dh];

/// Sends a SYN from `CLIENT4:cport` to service port `port` through the director and through the
/// core; the real server each picked (None where a packet was not forwarded).
fn pick(lab: &mut Lab, port: u16, cport: u16) -> (Option<std::net::IpAddr>, Option<std::net::IpAddr>) {
    let key = vip4(port);
    let f = frame((ip(CLIENT4), cport), (key.addr(), port), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    let r = lab.run_client(&f);
    let dp = (r.action == action::REDIRECT).then(|| parse(&r.frame).dst);
    let p = Packet::tcp((ip(CLIENT4), cport), (key.addr(), port), TcpFlags::SYN);
    let core = match lab.lb.handle_inbound(lab.now, &p) {
        Verdict::Forward(f) => Some(f.daddr),
        _ => None,
    };
    (dp, core)
}

#[test]
fn a_batch_of_new_services_lands_whole_and_schedules_as_the_core() {
    if require_root().is_none() {
        return;
    }
    // mh's tables take 4093 buckets each.
    let mut lab = Lab::with_options(|o| o.table_slots = 1 << 20);
    // One service first, published on its own: the batch must leave it alone.
    let first = lab.service(vip4(999), SchedKind::Rr);
    lab.dest(&first, RS4[2], 999, method_cfg(ForwardMethod::Masq));

    lab.publisher.begin_batch();
    let ports: Vec<u16> = (1000..1120).collect();
    for (i, port) in ports.iter().enumerate() {
        let key = vip4(*port);
        let sched = SCHEDULERS[i % SCHEDULERS.len()];
        let id = lab.lb.add_service(key, ServiceConfig::new(key.family(), sched), lab.now).expect("add service");
        for (j, rs) in RS4.iter().enumerate() {
            let mut c = DestConfig::new(ForwardMethod::Masq);
            c.weight = 1 + ((i + j) % 3) as i32;
            lab.lb.services.add_dest(&key, ip(rs), *port, c).expect("add dest");
        }
        lab.publisher.publish(&mut lab.dp, &lab.lb.services, id).expect("publish in the batch");
    }
    // Held: the dataplane knows none of them yet (a miss is passed on), and the service
    // published before the batch still works.
    let f = frame((ip(CLIENT4), 40000), (ip(VIP4), 1000), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.run_client(&f).action, action::PASS, "a staged service is not visible before the flush");
    assert_eq!(pick(&mut lab, 999, 40001), (Some(ip(RS4[2])), Some(ip(RS4[2]))));

    lab.publisher.end_batch(&mut lab.dp).expect("flush");
    let mut seen = std::collections::HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        // Several connections each, so that rr and wrr move through their lists.
        for k in 0..4u16 {
            let (dp, core) = pick(&mut lab, *port, 41000 + (i as u16) * 4 + k);
            assert!(dp.is_some(), "service {port} forwards");
            assert_eq!(dp, core, "service {port} ({:?}), connection {k}", SCHEDULERS[i % SCHEDULERS.len()]);
            seen.insert(dp);
        }
    }
    assert_eq!(seen.len(), 3, "every real server is reached");

    // After the batch, changes are written at once again: an edit shows immediately.
    let key = vip4(1000);
    lab.lb.services.delete_dest(&key, &ip(RS4[0]), 1000, lab.now).unwrap();
    lab.lb.services.delete_dest(&key, &ip(RS4[1]), 1000, lab.now).unwrap();
    lab.republish(&key);
    assert_eq!(pick(&mut lab, 1000, 50000), (Some(ip(RS4[2])), Some(ip(RS4[2]))));
}

#[test]
fn a_change_to_a_live_service_inside_a_batch_writes_what_was_held_first() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let live = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&live, RS4[0], 80, method_cfg(ForwardMethod::Masq));
    lab.publisher.begin_batch();
    let new = vip4(81);
    let id = lab.lb.add_service(new, ServiceConfig::new(new.family(), SchedKind::Rr), lab.now).unwrap();
    lab.lb.services.add_dest(&new, ip(RS4[1]), 81, DestConfig::new(ForwardMethod::Masq)).unwrap();
    lab.publisher.publish(&mut lab.dp, &lab.lb.services, id).unwrap();
    assert_eq!(pick(&mut lab, 81, 40000).0, None, "held");
    // Republishing the live service is not held, and writes the held one on its way.
    lab.lb.services.add_dest(&live, ip(RS4[2]), 80, DestConfig::new(ForwardMethod::Masq)).unwrap();
    lab.republish(&live);
    assert_eq!(pick(&mut lab, 81, 40001), (Some(ip(RS4[1])), Some(ip(RS4[1]))));
    let (a, b) = (pick(&mut lab, 80, 40002), pick(&mut lab, 80, 40003));
    assert_eq!((a.0, b.0), (a.1, b.1));
    assert_ne!(a.0, b.0, "rr over both servers of the live service");
    lab.publisher.end_batch(&mut lab.dp).unwrap();
}
