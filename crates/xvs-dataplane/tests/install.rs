//! The install program: connections and templates synchronised from another director land in
//! the tables with the accounting a packet would have given them, and the next packet of such a
//! connection is forwarded to its server (not scheduled anew, not passed to the kernel).

mod common;

use common::*;
use xvs_abi as abi;
use xvs_core::{ForwardMethod, SchedKind, ServiceConfig, ServiceKey, TcpFlags};
use xvs_dataplane::{action, addr_words};

fn rec(lab: &Lab, key: &ServiceKey, client: (&str, u16), rs: &str, kind: u8, state: u8) -> abi::InstallRec {
    let sid = lab.lb.services.find(key).unwrap();
    let did = lab.lb.services.find_dest(sid, &ip(rs), 80).unwrap();
    abi::InstallRec {
        caddr: addr_words(&ip(client.0)),
        vaddr: addr_words(&key.addr()),
        cport: client.1.to_be(),
        vport: key.port().to_be(),
        proto: 6,
        af: abi::AF_INET,
        kind,
        state,
        dest_id: did.index(),
        svc_id: sid.index(),
        timeout_s: 300,
        ..Default::default()
    }
}

fn counters(lab: &Lab, key: &ServiceKey, rs: &str) -> (i64, i64, i64) {
    let sid = lab.lb.services.find(key).unwrap();
    let did = lab.lb.services.find_dest(sid, &ip(rs), 80).unwrap();
    let s = lab.dp.maps.dest_state.get(&did.index(), 0).unwrap();
    (s.active, s.total, s.persist)
}

#[test]
fn a_synchronised_connection_is_forwarded_to_its_server_with_its_accounting() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(vip4(80), SchedKind::Rr);
    for rs in [RS4[0], RS4[1]] {
        lab.dest(&key, rs, 80, method_cfg(ForwardMethod::Masq));
    }
    // An established connection the master had on the second server.
    let r = rec(&lab, &key, (CLIENT4, 40000), RS4[1], abi::INSTALL_CONN, 1);
    assert_eq!(lab.dp.install(&[r]).unwrap(), [abi::INSTALLED_NEW]);
    assert_eq!(counters(&lab, &key, RS4[1]), (1, 1, 0));
    // Its next packet (an ACK, no SYN) goes to that server, rewritten for NAT.
    let f = frame((ip(CLIENT4), 40000), (key.addr(), 80), Some(TcpFlags::ACK), b"x", CLIENT_MAC, lab.mac_d0);
    let out = lab.run_client(&f);
    assert_eq!(out.action, action::REDIRECT);
    let seen = parse(&out.frame);
    assert_eq!((seen.dst, seen.dport), (ip(RS4[1]), 80));
    // And the server's reply goes back from the VIP (the reply entry was made).
    let f = frame((ip(RS4[1]), 80), (ip(CLIENT4), 40000), Some(TcpFlags::ACK), b"y", RS_MACS[1], lab.mac_d1);
    let out = lab.run_server(&f);
    assert_eq!(out.action, action::REDIRECT);
    assert_eq!(parse(&out.frame).src, key.addr());
    // Sent again (the master's refresh): updated, counted once.
    assert_eq!(lab.dp.install(&[r]).unwrap(), [abi::INSTALLED_UPDATED]);
    assert_eq!(counters(&lab, &key, RS4[1]), (1, 1, 0));
    // FIN_WAIT from the master: inactive now.
    let fin = abi::InstallRec { state: 4, ..r };
    assert_eq!(lab.dp.install(&[fin]).unwrap(), [abi::INSTALLED_UPDATED]);
    assert_eq!(counters(&lab, &key, RS4[1]), (0, 1, 0));
    // Moved to the other server on the master: the old binding is released.
    let moved = rec(&lab, &key, (CLIENT4, 40000), RS4[0], abi::INSTALL_CONN, 1);
    assert_eq!(lab.dp.install(&[moved]).unwrap(), [abi::INSTALLED_NEW]);
    assert_eq!(counters(&lab, &key, RS4[1]), (0, 0, 0));
    assert_eq!(counters(&lab, &key, RS4[0]), (1, 1, 0));
    // Nonsense is refused record by record, never half applied.
    let gone = abi::InstallRec { dest_id: 9999, ..r };
    let bad = abi::InstallRec { kind: 9, ..r };
    assert_eq!(lab.dp.install(&[gone, bad]).unwrap(), [abi::INSTALLED_NO_DEST, abi::INSTALLED_BAD]);
    // A flush gives every count back.
    lab.dp.sweep(abi::SWEEP_ALL).unwrap();
    assert_eq!(counters(&lab, &key, RS4[0]), (0, 0, 0));
}

#[test]
fn a_synchronised_template_keeps_a_clients_new_connections_on_its_server() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service_with(vip4(80), ServiceConfig::new(vip4(80).family(), SchedKind::Rr).persistent(300));
    for rs in [RS4[0], RS4[1], RS4[2]] {
        lab.dest(&key, rs, 80, method_cfg(ForwardMethod::Route));
    }
    let t = abi::InstallRec { cport: 0, ..rec(&lab, &key, (CLIENT4, 0), RS4[2], abi::INSTALL_TPL, 0) };
    assert_eq!(lab.dp.install(&[t]).unwrap(), [abi::INSTALLED_NEW]);
    assert_eq!(counters(&lab, &key, RS4[2]).2, 1);
    // Many batches' worth at once: more records than one run takes.
    let many: Vec<abi::InstallRec> =
        (0..100).map(|p| rec(&lab, &key, (CLIENT4, 41000 + p), RS4[2], abi::INSTALL_CONN, 1)).collect();
    assert!(lab.dp.install(&many).unwrap().iter().all(|r| *r == abi::INSTALLED_NEW));
    assert_eq!(counters(&lab, &key, RS4[2]), (100, 100, 1));
    // A new connection of that client follows the template.
    for port in [50000, 50001] {
        let f = frame((ip(CLIENT4), port), (key.addr(), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
        let out = lab.run_client(&f);
        assert_eq!(out.action, action::REDIRECT);
        assert_eq!(out.frame[0..6], RS_MACS[2], "the template's server");
    }
    lab.dp.sweep(abi::SWEEP_ALL).unwrap();
    assert_eq!(counters(&lab, &key, RS4[2]), (0, 0, 0));
}

#[test]
fn a_service_on_standby_takes_no_new_connection_but_forwards_synchronised_ones() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Masq));
    lab.publisher.set_standby(&mut lab.dp, &lab.lb.services, &[key], true).unwrap();
    // A new connection is left to the kernel (the master schedules it), and counted.
    let syn = frame((ip(CLIENT4), 41000), (key.addr(), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.run_client(&syn).action, action::PASS);
    assert!(lab.dp.reasons().unwrap().contains(&("standby", 1)));
    // A synchronised connection is forwarded.
    let r = rec(&lab, &key, (CLIENT4, 40000), RS4[0], abi::INSTALL_CONN, 1);
    assert_eq!(lab.dp.install(&[r]).unwrap(), [abi::INSTALLED_NEW]);
    let ack = frame((ip(CLIENT4), 40000), (key.addr(), 80), Some(TcpFlags::ACK), b"x", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.run_client(&ack).action, action::REDIRECT);
    // Master again: new connections are scheduled; a republish keeps the state it was given.
    lab.publisher.set_standby(&mut lab.dp, &lab.lb.services, &[key], false).unwrap();
    assert_eq!(lab.run_client(&syn).action, action::REDIRECT);
    lab.publisher.set_standby(&mut lab.dp, &lab.lb.services, &[key], true).unwrap();
    lab.dest(&key, RS4[1], 80, method_cfg(ForwardMethod::Masq));
    let syn2 = frame((ip(CLIENT4), 41001), (key.addr(), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
    assert_eq!(lab.run_client(&syn2).action, action::PASS);
}
