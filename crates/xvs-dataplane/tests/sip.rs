//! The sip persistence engine in the director program: a datagram is forwarded exactly when
//! the kernel's engine finds a Call-ID in it (the 23 payloads recorded in
//! testdata/kernel/sip-6.12.txt), and calls keep their server as the core says.

mod common;

use std::net::IpAddr;

use common::*;
use xvs_core::pe_sip::call_id;
use xvs_core::{ForwardMethod, Packet, SchedKind, ServiceConfig, ServiceKey, Verdict};
use xvs_dataplane::action;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn sip_service(lab: &mut Lab) -> ServiceKey {
    let key = ServiceKey::udp(ip(VIP4), 5060);
    let mut cfg = ServiceConfig::new(key.family(), SchedKind::Rr);
    cfg.persistence = Some(300);
    cfg.one_packet = true;
    cfg.pe = Some("sip".into());
    let key = lab.service_with(key, cfg);
    for a in RS4 {
        lab.dest(&key, a, 5060, method_cfg(ForwardMethod::Masq));
    }
    key
}

#[test]
fn datagrams_are_forwarded_exactly_when_the_kernel_finds_a_call_id() {
    if require_root().is_none() {
        return;
    }
    let dir = format!("{}/../../testdata/kernel", env!("CARGO_MANIFEST_DIR"));
    let payloads: Vec<Vec<u8>> =
        std::fs::read_to_string(format!("{dir}/sip-payloads.txt")).unwrap().lines().map(|l| hex(l.trim())).collect();
    let recorded = std::fs::read_to_string(format!("{dir}/sip-6.12.txt")).unwrap();
    let mut lab = Lab::new();
    let key = sip_service(&mut lab);
    let mut checked = 0;
    for line in recorded.lines() {
        let mut f = line.split_whitespace();
        let (Some(i), Some(id)) = (f.next().and_then(|i| i.parse::<usize>().ok()), f.next()) else { continue };
        let client = ip(&format!("198.18.1.{}", 100 + i));
        let fr = frame((client, 5060), (key.addr(), 5060), None, &payloads[i - 1], CLIENT_MAC, lab.mac_d0);
        let r = lab.run_client(&fr);
        let want = if id == "-" { action::DROP } else { action::REDIRECT };
        assert_eq!(r.action, want, "payload {i}: {:?}", String::from_utf8_lossy(&payloads[i - 1]));
        checked += 1;
    }
    assert_eq!(checked, payloads.len());
    let no_callid = lab.dp.counter(xvs_abi::counter::SIP_NO_CALLID).unwrap();
    assert_eq!(no_callid as usize, recorded.lines().filter(|l| l.ends_with(" -")).count(), "each drop counted");
}

#[test]
fn a_call_keeps_its_server_as_the_core_says() {
    if require_root().is_none() {
        return;
    }
    let mut lab = Lab::new();
    let key = sip_service(&mut lab);
    let send = |lab: &mut Lab, client: &str, port: u16, call: &str| -> IpAddr {
        let body = format!("INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP x\r\nCall-ID: {call}\r\n\r\n");
        let fr = frame((ip(client), port), (key.addr(), 5060), None, body.as_bytes(), CLIENT_MAC, lab.mac_d0);
        let r = lab.run_client(&fr);
        assert_eq!(r.action, action::REDIRECT, "{call}");
        let got = parse(&r.frame).dst;
        let mut p = Packet::udp((ip(client), port), (key.addr(), 5060));
        p.callid = call_id(body.as_bytes());
        match lab.lb.handle_inbound(lab.now, &p) {
            Verdict::Forward(f) => assert_eq!(f.daddr, got, "{call}: the core agrees"),
            v => panic!("{v:?}"),
        }
        got
    };
    let a = send(&mut lab, CLIENT4, 5060, "call-a@pc1");
    assert_eq!(send(&mut lab, CLIENT4, 5070, "call-a@pc1"), a, "the same call from another port");
    let b = send(&mut lab, CLIENT4, 5060, "call-b@pc1");
    assert_ne!(a, b, "another call is scheduled afresh");
    assert_eq!(send(&mut lab, CLIENT4, 5080, "call-a@pc1"), a);
    assert_ne!(send(&mut lab, "198.18.1.101", 5060, "call-a@pc1"), a, "another client's call of that name");
}
