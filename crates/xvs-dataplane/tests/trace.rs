//! The packet trace (`xvsadm trace`): with a filter set, each matching packet leaves one record
//! saying what the director did — the connection it met or made, the scheduler's pick with its
//! runner-up's load, the verdict, the reason; packets outside the filter, and every packet while
//! no trace runs, leave nothing.

mod common;

use common::*;
use xvs_abi as abi;
use xvs_core::{ForwardMethod, SchedKind, ServiceKey, TcpFlags};
use xvs_dataplane::{action, addr_words};

fn filter_client(addr: &str) -> abi::TraceFilter {
    let a = ip(addr);
    abi::TraceFilter {
        flags: abi::trace_filter::CADDR,
        caddr: addr_words(&a),
        af: if a.is_ipv4() { abi::AF_INET } else { abi::AF_INET6 },
        ..Default::default()
    }
}

/// The dataplane slot of the real server `addr` of `key`.
fn slot(lab: &Lab, key: &ServiceKey, addr: &str) -> u32 {
    let id = lab.lb.services.find(key).unwrap();
    let v = lab.lb.services.view(id).unwrap();
    v.iter().find(|(_, d)| d.addr() == ip(addr)).map(|(i, _)| i.index()).unwrap()
}

#[test]
fn a_traced_connection_says_what_the_director_did() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(vip4(80), SchedKind::Wlc);
    let mut heavy = method_cfg(ForwardMethod::Route);
    heavy.weight = 3;
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Route));
    lab.dest(&key, RS4[1], 80, heavy);
    let mut reader = lab.dp.take_trace_reader().expect("the reader");
    let syn =
        |cport: u16| frame((ip(CLIENT4), cport), (ip(VIP4), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);

    // No trace running: nothing is recorded.
    assert_eq!(lab.run_client(&syn(40000)).action, action::REDIRECT);
    assert!(reader.read(10).is_empty());

    // A trace of another client: still nothing.
    lab.dp.set_trace(Some(filter_client("198.18.1.200"))).unwrap();
    assert_eq!(lab.run_client(&syn(40001)).action, action::REDIRECT);
    assert!(reader.read(10).is_empty());

    // A trace of this client: the new connection, wlc's pick and its runner-up.
    lab.dp.set_trace(Some(filter_client(CLIENT4))).unwrap();
    let r = lab.run_client(&syn(40002));
    let ev = reader.read(10);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let e = ev[0];
    let svc_id = lab.lb.services.find(&key).unwrap().index();
    assert_eq!((e.sport, e.dport), (40002u16.to_be(), 80u16.to_be()));
    assert_eq!((e.conn, e.svc_id, e.sched, e.verdict), (abi::trace_conn::NEW, svc_id, abi::sched::WLC, r.action as u8));
    assert_eq!(e.method, abi::FWD_ROUTE);
    assert_eq!(e.reason, abi::TRACE_NO_REASON);
    assert!(e.flags & abi::trace_flags::WIN != 0 && e.flags & abi::trace_flags::ALT != 0, "{e:?}");
    // Two connections went before (one each): the weight-3 server has the lower overhead per
    // weight, and the other is the runner-up; the record holds both servers' loads.
    let (s0, s1) = (slot(&lab, &key, RS4[0]), slot(&lab, &key, RS4[1]));
    assert_eq!((e.dest_id, e.alt_id), (s1, s0), "{e:?}");
    assert_eq!((e.win_weight, e.alt_weight), (3, 1));
    assert_eq!((e.win_active, e.win_total, e.alt_active, e.alt_total), (1, 1, 1, 1), "{e:?}");
    assert_eq!(e.state, xvs_core::TcpState::SynRecv as u8);

    // Its next packet: an existing connection, same server.
    let ack = frame((ip(CLIENT4), 40002), (ip(VIP4), 80), Some(TcpFlags::ACK), b"", CLIENT_MAC, lab.mac_d0);
    lab.run_client(&ack);
    let e = reader.read(10)[0];
    assert_eq!((e.conn, e.dest_id, e.flags & abi::trace_flags::ALT), (abi::trace_conn::HIT, s1, 0));
    assert_eq!(e.state, xvs_core::TcpState::Established as u8);

    // A port with no service: passed to the kernel, no connection.
    let other = frame((ip(CLIENT4), 40003), (ip(VIP4), 81), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.run_client(&other).action, action::PASS);
    let e = reader.read(10)[0];
    assert_eq!(
        (e.conn, e.svc_id, e.dest_id, e.verdict),
        (abi::trace_conn::NONE, u32::MAX, u32::MAX, action::PASS as u8)
    );

    // A service with no server: refused with ICMP, and the reason says why.
    let empty = lab.service(ServiceKey::tcp(ip(VIP4), 82), SchedKind::Rr);
    let refused = frame((ip(CLIENT4), 40004), (ip(VIP4), 82), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    lab.run_client(&refused);
    let e = reader.read(10)[0];
    let no_dest = abi::REASONS.iter().find(|(_, n)| *n == "no_dest").unwrap().0 as u8;
    assert_eq!((e.svc_id, e.reason), (lab.lb.services.find(&empty).unwrap().index(), no_dest), "{e:?}");

    // Off again: nothing.
    lab.dp.set_trace(None).unwrap();
    lab.run_client(&ack);
    assert!(reader.read(10).is_empty());
    lab.dp.return_trace_reader(reader);
}

#[test]
fn a_nat_reply_is_traced_with_its_client() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 8080, method_cfg(ForwardMethod::Masq));
    let mut reader = lab.dp.take_trace_reader().unwrap();
    lab.dp.set_trace(Some(filter_client(CLIENT4))).unwrap();
    let syn = frame((ip(CLIENT4), 40000), (ip(VIP4), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    lab.run_client(&syn);
    let back = frame(
        (ip(RS4[0]), 8080),
        (ip(CLIENT4), 40000),
        Some(TcpFlags::SYN | TcpFlags::ACK),
        b"",
        RS_MACS[0],
        lab.mac_d1,
    );
    assert_eq!(lab.run_server(&back).action, action::REDIRECT);
    let ev = reader.read(10);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!((ev[0].conn, ev[0].method), (abi::trace_conn::NEW, abi::FWD_MASQ));
    assert_eq!(
        (ev[1].conn, ev[1].dest_id, ev[1].verdict),
        (abi::trace_conn::REPLY, ev[0].dest_id, action::REDIRECT as u8)
    );
    lab.dp.return_trace_reader(reader);
}
