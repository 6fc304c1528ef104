//! A director loaded in a private network namespace, with the core's service table beside it,
//! and helpers to build packets and check what comes out (with etherparse, an independent
//! parser).

#![allow(dead_code)]

use std::net::IpAddr;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use xvs_core::{
    Balancer, DestConfig, Family, ForwardMethod, Instant, Packet, SchedKind, ServiceConfig, ServiceKey, Verdict,
};
use xvs_dataplane::{Director, LoadOptions, Publisher};
use xvs_lab::{Entered, Netns, PinDir};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x64];
pub const RS_MACS: [[u8; 6]; 3] =
    [[0x02, 0, 0, 0, 0x02, 0x02], [0x02, 0, 0, 0, 0x02, 0x03], [0x02, 0, 0, 0, 0x02, 0x04]];
pub const CLIENT4: &str = "198.18.1.100";
pub const CLIENT6: &str = "2001:2:0:1::100";
pub const VIP4: &str = "198.18.0.100";
pub const VIP6: &str = "2001:2::100";
pub const RS4: [&str; 3] = ["198.18.2.2", "198.18.2.3", "198.18.2.4"];
pub const RS6: [&str; 3] = ["2001:2:0:2::2", "2001:2:0:2::3", "2001:2:0:2::4"];

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Skips (returning None) when not root; in CI (CI=true) a missing privilege fails instead.
pub fn require_root() -> Option<()> {
    xvs_lab::require_root().then_some(())
}

/// The lab: one namespace holding the director's two interfaces, d0 towards the client and d1
/// towards the real servers, with permanent neighbour entries so the FIB answers at once.
pub struct Lab {
    // Field order is drop order: leave the namespace, unload, unpin, delete the namespace.
    _entered: Entered,
    pub dp: Director,
    pub publisher: Publisher,
    pub lb: Balancer,
    _pins: PinDir,
    pub ns: Netns,
    pub if_client: u32,
    pub if_server: u32,
    pub mac_d0: [u8; 6],
    pub mac_d1: [u8; 6],
    pub now: Instant,
}

impl Lab {
    pub fn new() -> Lab {
        Lab::with_options(|_| {})
    }

    pub fn with_options(adjust: impl FnOnce(&mut LoadOptions)) -> Lab {
        let prefix = xvs_lab::unique_prefix();
        let ns = Netns::new(&prefix);
        for (a, b) in [("d0", "c0"), ("d1", "r0")] {
            xvs_lab::veth(&ns, a, &ns, b);
        }
        ns.sysctl("net.ipv4.ip_forward", "1");
        ns.sysctl("net.ipv6.conf.all.forwarding", "1");
        ns.ip(&["addr", "add", "198.18.1.1/24", "dev", "d0"]);
        ns.ip(&["addr", "add", "198.18.2.1/24", "dev", "d1"]);
        ns.ip(&["addr", "add", "2001:2:0:1::1/64", "dev", "d0", "nodad"]);
        ns.ip(&["addr", "add", "2001:2:0:2::1/64", "dev", "d1", "nodad"]);
        let mac = |m: &[u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        for a in [CLIENT4, CLIENT6] {
            ns.ip(&["neigh", "replace", a, "lladdr", &mac(&CLIENT_MAC), "dev", "d0", "nud", "permanent"]);
        }
        for i in 0..3 {
            for a in [RS4[i], RS6[i]] {
                ns.ip(&["neigh", "replace", a, "lladdr", &mac(&RS_MACS[i]), "dev", "d1", "nud", "permanent"]);
            }
        }
        let if_client = ns.ifindex("d0");
        let if_server = ns.ifindex("d1");
        let mac_d0 = ns.mac("d0");
        let mac_d1 = ns.mac("d1");
        let pins = PinDir::new(&prefix);
        let entered = ns.enter();
        let mut options = LoadOptions::small(pins.path());
        // Tests send refusals back to back; the limit has a test of its own.
        options.icmp_rate = 0;
        adjust(&mut options);
        let mut dp = Director::load(options).expect("load the director");
        let lb = Balancer::default();
        Publisher::write_config(&mut dp, &lb.timeouts, &lb.sysctl).expect("write config");
        let publisher = Publisher::new(&dp);
        Lab {
            _entered: entered,
            dp,
            publisher,
            lb,
            _pins: pins,
            ns,
            if_client,
            if_server,
            mac_d0,
            mac_d1,
            now: Instant::ZERO,
        }
    }

    /// Adds a service to the core and publishes it.
    pub fn service(&mut self, key: ServiceKey, sched: SchedKind) -> ServiceKey {
        self.service_with(key, ServiceConfig::new(key.family(), sched))
    }

    pub fn service_with(&mut self, key: ServiceKey, cfg: ServiceConfig) -> ServiceKey {
        let id = self.lb.add_service(key, cfg, self.now).expect("add service");
        self.publisher.publish(&mut self.dp, &self.lb.services, id).expect("publish");
        key
    }

    /// Adds a real server to the core and republishes its service.
    pub fn dest(&mut self, key: &ServiceKey, addr: &str, port: u16, cfg: DestConfig) {
        self.lb.services.add_dest(key, ip(addr), port, cfg).expect("add dest");
        self.republish(key);
    }

    pub fn republish(&mut self, key: &ServiceKey) {
        let id = self.lb.services.find(key).expect("service");
        self.publisher.publish(&mut self.dp, &self.lb.services, id).expect("publish");
    }

    /// Runs a frame arriving from the client side.
    pub fn run_client(&self, frame: &[u8]) -> xvs_dataplane::RunResult {
        self.dp.test_run(frame, self.if_client).expect("test run")
    }

    /// Runs a frame arriving from the server side.
    pub fn run_server(&self, frame: &[u8]) -> xvs_dataplane::RunResult {
        self.dp.test_run(frame, self.if_server).expect("test run")
    }
}

pub fn vip4(port: u16) -> ServiceKey {
    ServiceKey::tcp(ip(VIP4), port)
}

pub fn method_cfg(m: ForwardMethod) -> DestConfig {
    DestConfig::new(m)
}

/// Builds an Ethernet frame carrying TCP (flags from `xvs_core::TcpFlags`) or UDP.
pub fn frame(
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    tcp: Option<u8>,
    payload: &[u8],
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let ipb = match (src.0, dst.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    };
    let mut buf = Vec::new();
    match tcp {
        Some(flags) => {
            let mut b = ipb.tcp(src.1, dst.1, 1000, 65535);
            if flags & 0x02 != 0 {
                b = b.syn();
            }
            if flags & 0x10 != 0 {
                b = b.ack(1);
            }
            if flags & 0x01 != 0 {
                b = b.fin();
            }
            if flags & 0x04 != 0 {
                b = b.rst();
            }
            b.write(&mut buf, payload).unwrap();
        }
        None => ipb.udp(src.1, dst.1).write(&mut buf, payload).unwrap(),
    }
    buf
}

/// What an output frame contains, with every checksum verified independently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// For IP-in-IP: the inner packet.
    pub inner: Option<Box<Seen>>,
}

/// Parses an output frame; panics on any malformation or wrong checksum.
pub fn parse(frame: &[u8]) -> Seen {
    let p = SlicedPacket::from_ethernet(frame).unwrap_or_else(|e| panic!("output does not parse: {e:?}"));
    let link = match p.link {
        Some(etherparse::LinkSlice::Ethernet2(e)) => e,
        other => panic!("not ethernet: {other:?}"),
    };
    let (src_mac, dst_mac) = (link.source(), link.destination());
    let (src, dst, ttl, proto, ip_payload): (IpAddr, IpAddr, u8, u8, &[u8]) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum(), "IPv4 header checksum");
            (h.source_addr().into(), h.destination_addr().into(), h.ttl(), h.protocol().0, v4.payload().payload)
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                h.hop_limit(),
                v6.payload().ip_number.0,
                v6.payload().payload,
            )
        }
        other => panic!("no IP: {other:?}"),
    };
    if proto == 4 || proto == 41 {
        // IP-in-IP: re-parse the inner packet behind a fake Ethernet header.
        let mut inner = vec![0u8; 14];
        inner[12..14].copy_from_slice(&(if proto == 4 { 0x0800u16 } else { 0x86DDu16 }).to_be_bytes());
        inner.extend_from_slice(ip_payload);
        return Seen {
            src_mac,
            dst_mac,
            src,
            dst,
            ttl,
            proto,
            sport: 0,
            dport: 0,
            inner: Some(Box::new(parse(&inner))),
        };
    }
    if proto == 1 || proto == 58 {
        // ICMP: the one's-complement sum over the message (plus the pseudo-header for ICMPv6)
        // must come out as all ones.
        let mut words: Vec<u8> = Vec::new();
        if let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) {
            words.extend_from_slice(&s.octets());
            words.extend_from_slice(&d.octets());
            words.extend_from_slice(&(ip_payload.len() as u32).to_be_bytes());
            words.extend_from_slice(&[0, 0, 0, 58]);
        }
        words.extend_from_slice(ip_payload);
        if words.len() % 2 == 1 {
            words.push(0);
        }
        let mut sum: u32 = words.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff, "ICMP checksum");
    }
    let (sport, dport) = match (&p.transport, &p.net) {
        (Some(TransportSlice::Tcp(t)), Some(net)) => {
            let h = t.to_header();
            let want = match net {
                NetSlice::Ipv4(v4) => h.calc_checksum_ipv4(&v4.header().to_header(), t.payload()).unwrap(),
                NetSlice::Ipv6(v6) => h.calc_checksum_ipv6(&v6.header().to_header(), t.payload()).unwrap(),
            };
            assert_eq!(t.checksum(), want, "TCP checksum");
            (t.source_port(), t.destination_port())
        }
        (Some(TransportSlice::Udp(u)), Some(net)) => {
            let h = u.to_header();
            if u.checksum() != 0 || matches!(net, NetSlice::Ipv6(_)) {
                let want = match net {
                    NetSlice::Ipv4(v4) => h.calc_checksum_ipv4(&v4.header().to_header(), u.payload()).unwrap(),
                    NetSlice::Ipv6(v6) => h.calc_checksum_ipv6(&v6.header().to_header(), u.payload()).unwrap(),
                };
                assert_eq!(u.checksum(), want, "UDP checksum");
            }
            (u.source_port(), u.destination_port())
        }
        _ => (0, 0),
    };
    Seen { src_mac, dst_mac, src, dst, ttl, proto, sport, dport, inner: None }
}

/// The real server the core picks for the same packet, and its verdict.
pub fn core_verdict(lb: &mut Balancer, now: Instant, p: &Packet) -> Verdict {
    lb.handle_inbound(now, p)
}

pub fn family_of(s: &str) -> Family {
    Family::of(&ip(s))
}

pub fn sched_cfg(af: Family, k: SchedKind) -> ServiceConfig {
    ServiceConfig::new(af, k)
}
