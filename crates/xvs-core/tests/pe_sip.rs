//! The sip persistence engine in the model: templates keyed by the Call-ID as well as the
//! client, datagrams without a Call-ID dropped (`ip_vs_sched_persist` with `ip_vs_pe_sip`).

use std::net::IpAddr;

use xvs_core::pe_sip::call_id;
use xvs_core::{
    Balancer, DestConfig, DropReason, Family, ForwardMethod, Instant, Packet, SchedKind, ServiceConfig, ServiceKey,
    TcpFlags, Verdict,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sip(client: (&str, u16), callid: Option<&str>) -> Packet {
    let mut p = Packet::udp((ip(client.0), client.1), (ip("198.18.0.100"), 5060));
    let body = match callid {
        Some(c) => format!("INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: {c}\r\nCSeq: 1 INVITE\r\n\r\n"),
        None => "OPTIONS sip:bob@example.com SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n".to_string(),
    };
    p.callid = call_id(body.as_bytes());
    p
}

fn dest(v: Verdict) -> IpAddr {
    match v {
        Verdict::Forward(f) => f.daddr,
        v => panic!("not forwarded: {v:?}"),
    }
}

#[test]
fn a_call_stays_on_its_server_and_a_datagram_without_call_id_is_dropped() {
    let mut lb = Balancer::default();
    let key = ServiceKey::udp(ip("198.18.0.100"), 5060);
    let mut cfg = ServiceConfig::new(Family::V4, SchedKind::Rr);
    cfg.persistence = Some(60);
    cfg.one_packet = true;
    cfg.pe = Some("sip".into());
    lb.add_service(key, cfg, Instant::ZERO).unwrap();
    for a in ["198.18.2.2", "198.18.2.3", "198.18.2.4"] {
        lb.services.add_dest(&key, ip(a), 5060, DestConfig::new(ForwardMethod::Masq)).unwrap();
    }
    let now = Instant::ZERO;
    let a = dest(lb.handle_inbound(now, &sip(("198.18.1.10", 5060), Some("call-a@pc1"))));
    // The same call from another port of the client: its template.
    assert_eq!(dest(lb.handle_inbound(now, &sip(("198.18.1.10", 5070), Some("call-a@pc1")))), a);
    // Another call from the same client: scheduled afresh (round robin moves on).
    let b = dest(lb.handle_inbound(now, &sip(("198.18.1.10", 5060), Some("call-b@pc1"))));
    assert_ne!(a, b, "one template per call, not per client");
    // The first call again, after the second.
    assert_eq!(dest(lb.handle_inbound(now, &sip(("198.18.1.10", 5060), Some("call-a@pc1")))), a);
    // The same Call-ID from another client is another template (the client is part of the key).
    let c = dest(lb.handle_inbound(now, &sip(("198.18.1.11", 5060), Some("call-a@pc1"))));
    assert_ne!(c, a);
    assert_eq!(lb.conns.iter().filter(|(_, c)| c.is_template()).count(), 3);
    // No Call-ID, or not UDP: dropped without an answer.
    let none = lb.handle_inbound(now, &sip(("198.18.1.10", 5060), None));
    assert_eq!(none, Verdict::Drop(DropReason::NoCallId));
    let tcp = Packet::tcp((ip("198.18.1.10"), 40000), (ip("198.18.0.100"), 5060), TcpFlags::SYN);
    let tcp_svc = ServiceKey::tcp(ip("198.18.0.100"), 5060);
    let mut cfg = ServiceConfig::new(Family::V4, SchedKind::Rr);
    cfg.persistence = Some(60);
    cfg.pe = Some("sip".into());
    lb.add_service(tcp_svc, cfg, now).unwrap();
    lb.services.add_dest(&tcp_svc, ip("198.18.2.2"), 5060, DestConfig::new(ForwardMethod::Masq)).unwrap();
    assert_eq!(lb.handle_inbound(now, &tcp), Verdict::Drop(DropReason::NoCallId));
}
