//! End to end: real clients (curl, a UDP client) and real servers (nginx, a UDP echo) in
//! network namespaces, the director attached in native XDP mode, for NAT, direct routing and
//! tunnelling over IPv4 and IPv6. Every namespace, program and process is removed afterwards,
//! also when an assertion fails (the lab's values own them).

use std::collections::BTreeSet;

use aya::programs::XdpMode;
use xvs_core::{Balancer, DestConfig, ForwardMethod, Instant, SchedKind, ServiceConfig, ServiceKey};
use xvs_dataplane::{Aux, Decap, Director, LoadOptions, Publisher};
use xvs_lab::topology::{rs4, rs6, Classic, Mode, VIP4, VIP6};
use xvs_lab::PinDir;

/// The director side of a lab: programs attached, a service published.
struct Director_ {
    _aux: Vec<Aux>,
    _decap: Vec<Decap>,
    dp: Director,
    _pins: PinDir,
}

fn setup(lab: &Classic, mode: Mode, key: ServiceKey, port: u16) -> Director_ {
    let pins = PinDir::new(&format!("{}p", lab.prefix));
    let method = match mode {
        Mode::Nat => ForwardMethod::Masq,
        Mode::Dr => ForwardMethod::Route,
        Mode::Tun => ForwardMethod::Tunnel,
    };
    let v6 = key.addr().is_ipv6();
    let mut lb = Balancer::default();
    let id = lb.add_service(key, ServiceConfig::new(key.family(), SchedKind::Rr), Instant::ZERO).unwrap();
    for i in 0..lab.rs.len() {
        let a = if v6 { rs6(i) } else { rs4(i) };
        lb.services.add_dest(&key, a.parse().unwrap(), port, DestConfig::new(method)).unwrap();
    }
    let mut dp = {
        let _in = lab.director.enter();
        let mut dp = Director::load(LoadOptions::small(pins.path())).expect("load the director");
        for dev in ["c0", "r1", "r2"] {
            assert_eq!(dp.attach(dev, true).unwrap(), XdpMode::Driver, "native XDP on {dev}");
        }
        dp
    };
    Publisher::write_config(&mut dp, &lb.timeouts, &lb.sysctl).unwrap();
    let mut publisher = Publisher::new(&dp);
    publisher.publish(&mut dp, &lb.services, id).unwrap();

    // The peers of the director's veths need an XDP program to receive redirected frames;
    // tunnel servers get the decapsulation program, which passes everything else.
    let mut aux = Vec::new();
    let mut decap = Vec::new();
    {
        let _in = lab.client.enter();
        let mut a = Aux::load().unwrap();
        a.attach_pass("eth0").unwrap();
        aux.push(a);
    }
    for r in &lab.rs {
        let _in = r.enter();
        if mode == Mode::Tun {
            let mut d = Decap::load().unwrap();
            d.allow(VIP4.parse().unwrap()).unwrap();
            d.allow(VIP6.parse().unwrap()).unwrap();
            d.attach("eth0").unwrap();
            decap.push(d);
        } else {
            let mut a = Aux::load().unwrap();
            a.attach_pass("eth0").unwrap();
            aux.push(a);
        }
    }
    Director_ { _aux: aux, _decap: decap, dp, _pins: pins }
}

fn http_case(mode: Mode, v6: bool) {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Classic::new(2, mode);
    lab.start_web_servers();
    let vip = if v6 { VIP6 } else { VIP4 };
    let key = ServiceKey::tcp(vip.parse().unwrap(), 80);
    let d = setup(&lab, mode, key, 80);
    let url = if v6 { format!("http://[{vip}]/") } else { format!("http://{vip}/") };
    let mut seen = BTreeSet::new();
    for i in 0..20 {
        let body = lab.curl(&url).unwrap_or_else(|e| panic!("{mode:?} v6={v6} request {i}: {e}"));
        seen.insert(body);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["rs1", "rs2"], "{mode:?} v6={v6}: both servers answered");
    assert_eq!(
        d.dp.counter(xvs_abi::counter::CONN_NEW).unwrap(),
        20,
        "{mode:?} v6={v6}: every connection went through XDP"
    );
    let reasons = d.dp.reasons().unwrap();
    assert!(reasons.iter().all(|(n, c)| *c == 0 || matches!(*n, "no_neigh")), "{mode:?} v6={v6}: {reasons:?}");
}

#[test]
fn nat_ipv4_http() {
    http_case(Mode::Nat, false);
}

#[test]
fn nat_ipv6_http() {
    http_case(Mode::Nat, true);
}

#[test]
fn dr_ipv4_http() {
    http_case(Mode::Dr, false);
}

#[test]
fn dr_ipv6_http() {
    http_case(Mode::Dr, true);
}

#[test]
fn tun_ipv4_http() {
    http_case(Mode::Tun, false);
}

#[test]
fn tun_ipv6_http() {
    http_case(Mode::Tun, true);
}

#[test]
fn nat_udp_both_families() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Classic::new(2, Mode::Nat);
    lab.start_udp_echo(5353);
    for vip in [VIP4, VIP6] {
        let key = ServiceKey::udp(vip.parse().unwrap(), 53);
        let _d = setup(&lab, Mode::Nat, key, 5353);
        let mut seen = BTreeSet::new();
        for i in 0..8 {
            let answer = lab.udp(vip, 53, &format!("q{i}")).unwrap_or_else(|e| panic!("UDP via {vip}: {e}"));
            assert!(answer.ends_with(&format!("q{i}")), "{answer}");
            seen.insert(answer.split(' ').next().unwrap().to_string());
        }
        assert_eq!(seen.len(), 2, "{vip}: both servers answered");
    }
}
