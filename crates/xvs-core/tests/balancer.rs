//! Scenarios through the whole model: packets in both directions, timers, persistence,
//! statistics. Each test drives a fake clock.

use std::net::IpAddr;
use std::time::Duration;

use xvs_core::{
    Balancer, ConnState, DestConfig, DropReason, Family, ForwardMethod, Instant, Packet, SchedKind, ServiceConfig,
    ServiceKey, TcpFlags, TcpState, Verdict,
};

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Lab {
    lb: Balancer,
    now: Instant,
    vip: (IpAddr, u16),
}

impl Lab {
    fn new(sched: SchedKind, method: ForwardMethod, persistent: Option<u32>) -> Lab {
        let mut lb = Balancer::default();
        let key = ServiceKey::tcp(ip("198.18.0.100"), 80);
        let mut cfg = ServiceConfig::new(Family::V4, sched);
        cfg.persistence = persistent;
        lb.add_service(key, cfg, Instant::ZERO).unwrap();
        for a in ["198.18.2.1", "198.18.2.2"] {
            lb.services.add_dest(&key, ip(a), 8080, DestConfig::new(method)).unwrap();
        }
        Lab { lb, now: Instant::ZERO, vip: (ip("198.18.0.100"), 80) }
    }

    fn key(&self) -> ServiceKey {
        ServiceKey::tcp(self.vip.0, self.vip.1)
    }

    fn send(&mut self, client: (&str, u16), flags: u8) -> Verdict {
        let p = Packet::tcp((ip(client.0), client.1), self.vip, flags);
        self.lb.handle_inbound(self.now, &p)
    }

    fn reply(&mut self, rs: &str, client: (&str, u16), flags: u8) -> Verdict {
        let p = Packet::tcp((ip(rs), 8080), (ip(client.0), client.1), flags);
        self.lb.handle_outbound(self.now, &p)
    }

    fn advance(&mut self, secs: u64) {
        let until = self.now + Duration::from_secs(secs);
        while let Some(t) = self.lb.poll_timeout().filter(|t| *t <= until) {
            self.now = t.max(self.now);
            self.lb.handle_timeout(self.now);
        }
        self.now = until;
    }

    fn state(&self, client: (&str, u16)) -> Option<ConnState> {
        self.lb
            .conns
            .iter()
            .find(|(_, c)| !c.is_template() && c.key.caddr == ip(client.0) && c.key.cport == client.1)
            .map(|(_, c)| c.state)
    }

    fn dest_of(v: Verdict) -> IpAddr {
        match v {
            Verdict::Forward(f) => f.daddr,
            other => panic!("expected a forward, got {other:?}"),
        }
    }

    fn counts(&self, rs: &str) -> (u32, u32, u32) {
        let svc = self.lb.services.find(&self.key()).unwrap();
        let d = self.lb.services.find_dest(svc, &ip(rs), 8080).unwrap();
        let d = self.lb.services.dest(d).unwrap();
        (d.active_conns(), d.inactive_conns(), d.persist_conns())
    }
}

#[test]
fn nat_connection_through_both_directions() {
    let mut lab = Lab::new(SchedKind::Rr, ForwardMethod::Masq, None);
    let c = ("198.18.1.1", 40000);
    let v = lab.send(c, SYN);
    let Verdict::Forward(f) = v else { panic!("{v:?}") };
    assert!(f.new);
    assert_eq!((f.method, f.daddr, f.dport), (ForwardMethod::Masq, ip("198.18.2.2"), 8080));
    assert_eq!(lab.state(c), Some(ConnState::Tcp(TcpState::SynRecv)));
    assert_eq!(lab.counts("198.18.2.2"), (1, 0, 0));

    // The server's SYN+ACK comes back through the director and gets the VIP as source.
    let r = lab.reply("198.18.2.2", c, SYN | ACK);
    assert!(matches!(r, Verdict::Reply { vaddr, vport: 80, .. } if vaddr == ip("198.18.0.100")));
    assert_eq!(lab.state(c), Some(ConnState::Tcp(TcpState::SynRecv)));
    // A reply from the other server for this client is not ours.
    assert_eq!(lab.reply("198.18.2.1", c, ACK), Verdict::Pass);

    let _ = lab.send(c, ACK);
    assert_eq!(lab.state(c), Some(ConnState::Tcp(TcpState::Established)));
    // Client closes: ES -fin(in)-> CW; server's FIN+ACK: CW -fin(out)-> TW.
    let _ = lab.send(c, FIN | ACK);
    assert_eq!(lab.state(c), Some(ConnState::Tcp(TcpState::CloseWait)));
    assert_eq!(lab.counts("198.18.2.2"), (0, 1, 0));
    let _ = lab.reply("198.18.2.2", c, FIN | ACK);
    assert_eq!(lab.state(c), Some(ConnState::Tcp(TcpState::TimeWait)));

    let svc = lab.lb.services.get(lab.lb.services.find(&lab.key()).unwrap()).unwrap();
    let st = svc.stats.counters();
    assert_eq!((st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes), (1, 3, 2, 180, 120));

    // TIME_WAIT lasts 120 s, then the entry and its counters go.
    lab.advance(119);
    assert!(lab.state(c).is_some());
    lab.advance(2);
    assert!(lab.state(c).is_none());
    assert_eq!(lab.counts("198.18.2.2"), (0, 0, 0));
}

#[test]
fn direct_routing_follows_the_input_only_table() {
    let mut lab = Lab::new(SchedKind::Rr, ForwardMethod::Route, None);
    let c = ("198.18.1.1", 40000);
    assert!(matches!(lab.send(c, SYN), Verdict::Forward(f) if f.method == ForwardMethod::Route));
    let _ = lab.send(c, ACK);
    assert_eq!(lab.state(c), Some(ConnState::Tcp(TcpState::Established)));
    // With no reply ever seen, a client FIN goes to FIN_WAIT (INPUT_ONLY), not CLOSE_WAIT.
    let _ = lab.send(c, FIN | ACK);
    assert_eq!(lab.state(c), Some(ConnState::Tcp(TcpState::FinWait)));
    let _ = lab.send(c, ACK);
    assert_eq!(lab.state(c), Some(ConnState::Tcp(TcpState::FinWait)));
    lab.advance(121);
    assert!(lab.state(c).is_none());
}

#[test]
fn a_syn_on_a_closed_connection_is_rescheduled() {
    let mut lab = Lab::new(SchedKind::Rr, ForwardMethod::Masq, None);
    let c = ("198.18.1.1", 40000);
    let first = Lab::dest_of(lab.send(c, SYN));
    let _ = lab.send(c, ACK);
    let _ = lab.send(c, RST);
    assert_eq!(lab.state(c), Some(ConnState::Tcp(TcpState::Close)));
    // conn_reuse_mode = 1: the same 4-tuple opens a new connection, scheduled afresh.
    let second = Lab::dest_of(lab.send(c, SYN));
    assert_ne!(first, second);
    assert_eq!(lab.lb.conns.len(), 1);
}

/// testdata/kernel/reuse-6.12.txt (and 6.1): the replaced connection still counts while the new
/// SYN is scheduled, so lc avoids its server; with conn_reuse_mode 0 the SYN takes the old one.
#[test]
fn a_replaced_connection_counts_while_its_successor_is_scheduled() {
    let mut lab = Lab::new(SchedKind::Lc, ForwardMethod::Masq, None);
    let c = ("198.18.1.2", 40000);
    // Both idle: lc takes the first in the list, the server added last.
    assert_eq!(Lab::dest_of(lab.send(c, SYN)), ip("198.18.2.2"));
    let _ = lab.send(c, ACK);
    let _ = lab.send(c, RST);
    assert_eq!(lab.counts("198.18.2.2"), (0, 1, 0));
    assert_eq!(Lab::dest_of(lab.send(c, SYN)), ip("198.18.2.1"), "the closed connection still counted");
    assert_eq!(lab.counts("198.18.2.2"), (0, 0, 0), "and gone after");
    assert_eq!(lab.lb.conns.len(), 1);

    lab.lb.sysctl.conn_reuse_mode = 0;
    let c = ("198.18.1.2", 40001);
    let first = Lab::dest_of(lab.send(c, SYN));
    let _ = lab.send(c, RST);
    assert_eq!(Lab::dest_of(lab.send(c, SYN)), first, "mode 0: the closed connection is taken up again");
}

#[test]
fn connections_to_a_removed_server_are_dropped_or_expired() {
    let mut lab = Lab::new(SchedKind::Rr, ForwardMethod::Masq, None);
    let c = ("198.18.1.1", 40000);
    let d = Lab::dest_of(lab.send(c, SYN));
    let _ = lab.send(c, ACK);
    lab.lb.services.delete_dest(&lab.key(), &d, 8080, lab.now).unwrap();
    assert_eq!(lab.send(c, ACK), Verdict::Drop(DropReason::DestUnavailable));
    // The trashed server still counts its connection.
    assert_eq!(lab.lb.services.trash().count(), 1);

    lab.lb.sysctl.expire_nodest_conn = true;
    // A non-SYN packet expires the connection and, not being a SYN, opens nothing.
    assert_eq!(lab.send(c, ACK), Verdict::Pass);
    assert!(lab.state(c).is_none());
    // After 120 s idle in the trash the server object is freed.
    lab.advance(200);
    assert_eq!(lab.lb.services.trash().count(), 0);
}

#[test]
fn persistence_template_lifetime() {
    let mut lab = Lab::new(SchedKind::Rr, ForwardMethod::Masq, Some(100));
    let c1 = ("198.18.1.1", 40001);
    let d = Lab::dest_of(lab.send(c1, SYN));
    let _ = lab.send(c1, ACK);
    let d_s = d.to_string();
    assert_eq!(lab.counts(&d_s), (1, 0, 1));
    let template =
        |lab: &Lab| lab.lb.conns.iter().find(|(_, c)| c.is_template()).map(|(_, c)| (c.state, c.timeout, c.expires));
    assert_eq!(template(&lab).unwrap().0, ConnState::TemplateAssured, "ESTABLISHED assures the template");

    // A second connection at t=50 restarts the 100 s window.
    lab.advance(50);
    assert_eq!(Lab::dest_of(lab.send(("198.18.1.1", 40002), SYN)), d);
    assert_eq!(template(&lab).unwrap().2, Instant::from_secs(150));

    // At 150 the template still controls connections: it waits 60 s more, with timeout 60.
    lab.advance(101);
    let (_, timeout, expires) = template(&lab).unwrap();
    assert_eq!((timeout, expires), (Duration::from_secs(60), Instant::from_secs(210)));

    // Both connections end; the template goes at its next expiry.
    let _ = lab.send(c1, RST);
    lab.advance(60);
    assert!(template(&lab).is_none());
    assert_eq!(lab.counts(&d_s), (0, 0, 0));
}

#[test]
fn quiescent_templates_expire_with_the_sysctl() {
    let mut lab = Lab::new(SchedKind::Rr, ForwardMethod::Masq, Some(300));
    let c = ("198.18.1.1", 40001);
    let d = Lab::dest_of(lab.send(c, SYN));
    lab.lb.services.edit_dest(&lab.key(), d, 8080, DestConfig::new(ForwardMethod::Masq).weight(0)).unwrap();
    assert_eq!(Lab::dest_of(lab.send(("198.18.1.1", 40002), SYN)), d);
    lab.lb.sysctl.expire_quiescent_template = true;
    assert_ne!(Lab::dest_of(lab.send(("198.18.1.1", 40003), SYN)), d);
}

#[test]
fn one_packet_scheduling_schedules_every_datagram() {
    let mut lb = Balancer::default();
    let key = ServiceKey::udp(ip("198.18.0.53"), 53);
    let mut cfg = ServiceConfig::new(Family::V4, SchedKind::Rr);
    cfg.one_packet = true;
    lb.add_service(key, cfg, Instant::ZERO).unwrap();
    for a in ["198.18.2.1", "198.18.2.2"] {
        lb.services.add_dest(&key, ip(a), 53, DestConfig::new(ForwardMethod::Masq)).unwrap();
    }
    let p = Packet::udp((ip("198.18.1.1"), 5353), (ip("198.18.0.53"), 53));
    let picks: Vec<IpAddr> = (0..4).map(|_| Lab::dest_of(lb.handle_inbound(Instant::ZERO, &p))).collect();
    assert_eq!(picks, [ip("198.18.2.2"), ip("198.18.2.1"), ip("198.18.2.2"), ip("198.18.2.1")]);
    assert!(lb.conns.is_empty(), "one-packet connections are freed at once");
    assert_eq!(lb.total.counters().conns, 4);
}

#[test]
fn udp_flows_stay_inactive_and_time_out_after_300s() {
    let mut lb = Balancer::default();
    let key = ServiceKey::udp(ip("198.18.0.53"), 53);
    lb.add_service(key, ServiceConfig::new(Family::V4, SchedKind::Wlc), Instant::ZERO).unwrap();
    lb.services.add_dest(&key, ip("198.18.2.1"), 53, DestConfig::new(ForwardMethod::Masq)).unwrap();
    let p = Packet::udp((ip("198.18.1.1"), 5353), (ip("198.18.0.53"), 53));
    let _ = lb.handle_inbound(Instant::ZERO, &p);
    let _ = lb.handle_inbound(Instant::from_secs(200), &p);
    let svc = lb.services.find(&key).unwrap();
    let d = lb.services.dest(lb.services.find_dest(svc, &ip("198.18.2.1"), 53).unwrap()).unwrap();
    assert_eq!((d.active_conns(), d.inactive_conns()), (0, 1));
    lb.handle_timeout(Instant::from_secs(499));
    assert_eq!(lb.conns.len(), 1);
    lb.handle_timeout(Instant::from_secs(500));
    assert_eq!(lb.conns.len(), 0);
}

#[test]
fn packets_that_are_not_for_a_service_pass() {
    let mut lab = Lab::new(SchedKind::Rr, ForwardMethod::Masq, None);
    let other = Packet::tcp((ip("198.18.1.1"), 1), (ip("198.18.0.100"), 81), SYN);
    assert_eq!(lab.lb.handle_inbound(lab.now, &other), Verdict::Pass);
    // A non-SYN TCP packet does not open a connection.
    assert_eq!(lab.send(("198.18.1.1", 2), ACK), Verdict::Pass);
    // No server usable: ICMP port unreachable.
    for a in ["198.18.2.1", "198.18.2.2"] {
        lab.lb.services.edit_dest(&lab.key(), ip(a), 8080, DestConfig::new(ForwardMethod::Masq).weight(0)).unwrap();
    }
    assert_eq!(lab.send(("198.18.1.1", 3), SYN), Verdict::Unreachable);
}

#[test]
fn estimator_reports_rates_and_zeroing_resets_them() {
    let mut lab = Lab::new(SchedKind::Rr, ForwardMethod::Masq, None);
    // 10 new connections per second (one SYN each) for 60 s.
    for i in 0..600u16 {
        let _ = lab.send(("198.18.1.1", 1000 + i), SYN);
        lab.advance_millis(100);
    }
    let r = lab.lb.total.rates();
    assert_eq!((r.cps, r.inpps, r.inbps), (10, 10, 600));
    lab.lb.zero(None).unwrap();
    assert_eq!(lab.lb.total.rates().cps, 0);
    assert_eq!(lab.lb.total.counters().conns, 0);
    assert_eq!(lab.lb.total.raw().conns, 600);
}

impl Lab {
    fn advance_millis(&mut self, ms: u64) {
        let until = self.now + Duration::from_millis(ms);
        while let Some(t) = self.lb.poll_timeout().filter(|t| *t <= until) {
            self.now = t.max(self.now);
            self.lb.handle_timeout(self.now);
        }
        self.now = until;
    }
}

#[test]
fn allowed_sources_admit_only_their_clients() {
    use xvs_core::SourcePrefix;
    let mut lb = Balancer::default();
    let key = ServiceKey::tcp(ip("198.18.0.100"), 80);
    let mut cfg = ServiceConfig::new(Family::V4, SchedKind::Rr);
    cfg.allowed_sources = vec!["198.18.1.0/24".parse().unwrap(), "198.18.7.7".parse().unwrap()];
    lb.add_service(key, cfg, Instant::ZERO).unwrap();
    lb.services.add_dest(&key, ip("198.18.2.1"), 80, DestConfig::new(ForwardMethod::Route)).unwrap();
    let syn = |src: &str| Packet::tcp((ip(src), 1000), (ip("198.18.0.100"), 80), SYN);
    for ok in ["198.18.1.1", "198.18.1.254", "198.18.7.7"] {
        assert!(matches!(lb.handle_inbound(Instant::ZERO, &syn(ok)), Verdict::Forward(_)), "{ok}");
    }
    for no in ["198.18.2.1", "198.18.7.8", "198.18.0.1"] {
        assert_eq!(lb.handle_inbound(Instant::ZERO, &syn(no)), Verdict::Drop(DropReason::NotAllowed), "{no}");
    }
    // Prefixes: parsing, host bits, families.
    assert_eq!("2001:2::/48".parse::<SourcePrefix>().unwrap().to_string(), "2001:2::/48");
    assert!("198.18.1.1/24".parse::<SourcePrefix>().unwrap_err().to_string().contains("198.18.1.0/24"));
    assert!("198.18.1.0/33".parse::<SourcePrefix>().is_err());
    assert!("nonsense".parse::<SourcePrefix>().is_err());
    let all: SourcePrefix = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(&ip("203.0.113.9")) && !all.contains(&ip("2001:2::1")));
}
