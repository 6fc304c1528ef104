//! Fuzzing the director against the core: random and mutated frames through BPF_PROG_TEST_RUN,
//! each verdict and rewrite checked against `xvs_core::Balancer` fed the same packets.
//!
//! Three kinds of frames: well-formed client packets (random clients, ports, flags, payloads,
//! both families, to services and to nothing), well-formed replies from real servers, and those
//! frames mutated at the byte level (flips, overwrites, truncation, extension). The oracle:
//!
//! - a frame passed to the kernel is unchanged, byte for byte;
//! - a rewritten frame parses, keeps the payload, has valid checksums when the input had them,
//!   and is exactly what the core's verdict says (the same real server, address, port, MAC);
//! - for well-formed frames, the director and the core agree on the verdict itself.
//!
//! `XVS_FUZZ_FRAMES` sets the count (100,000 by default; docs/dataplane.md has the long run's
//! figure) and `XVS_FUZZ_SEED` the seed.

mod common;

use std::net::IpAddr;

use common::*;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use xvs_core::{ForwardMethod, Instant, Packet, SchedKind, ServiceKey, TcpFlags, TcpState, Verdict};
use xvs_dataplane::{action, Publisher};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// A frame's packet as both sides see it, parsed independently of the director.
#[derive(Debug, Clone)]
struct In {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    tcp: Option<u8>,
    ttl: u8,
    len: u32,
    payload: Vec<u8>,
}

/// Parses a frame strictly: Ethernet, IPv4 or IPv6 (not a fragment), TCP or UDP with every
/// length consistent. `None` for anything else.
fn strict(frame: &[u8]) -> Option<In> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (src, dst, ttl, len): (IpAddr, IpAddr, u8, u32) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            if v4.payload().fragmented || h.ihl() < 5 {
                return None;
            }
            (h.source_addr().into(), h.destination_addr().into(), h.ttl(), u32::from(h.total_len()))
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            // etherparse reads a zero payload length as "the rest of the frame" (jumbograms);
            // without a jumbo option it is an empty payload, as the director reads it.
            if v6.payload().fragmented || h.payload_length() == 0 {
                return None;
            }
            let exts = v6.extensions();
            // As the director's parser: up to four hop-by-hop, routing or destination-options
            // headers; a routing header with segments left makes the packet the kernel's.
            let mut count = 0;
            for e in exts.clone() {
                count += 1;
                match e {
                    etherparse::Ipv6ExtensionSlice::Routing(r) if r.slice().get(3).copied().unwrap_or(0) != 0 => {
                        return None
                    }
                    etherparse::Ipv6ExtensionSlice::Authentication(_) | etherparse::Ipv6ExtensionSlice::Fragment(_) => {
                        return None
                    }
                    _ => {}
                }
            }
            if count > 4 {
                return None;
            }
            (h.source_addr().into(), h.destination_addr().into(), h.hop_limit(), 40 + u32::from(h.payload_length()))
        }
        _ => return None,
    };
    let (sport, dport, tcp, payload) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let f = (if t.fin() { TcpFlags::FIN } else { 0 })
                | (if t.syn() { TcpFlags::SYN } else { 0 })
                | (if t.rst() { TcpFlags::RST } else { 0 })
                | (if t.ack() { TcpFlags::ACK } else { 0 });
            (t.source_port(), t.destination_port(), Some(f), t.payload().to_vec())
        }
        Some(TransportSlice::Udp(u)) => {
            if u.length() < 8 {
                return None;
            }
            (u.source_port(), u.destination_port(), None, u.payload().to_vec())
        }
        _ => return None,
    };
    Some(In { src, dst, sport, dport, tcp, ttl, len, payload })
}

/// True when the frame's IP and transport checksums are all correct.
fn checksums_ok(frame: &[u8]) -> bool {
    std::panic::catch_unwind(|| parse(frame)).is_ok()
}

fn rs_mac(a: &IpAddr) -> Option<[u8; 6]> {
    (0..3).find(|i| ip(RS4[*i]) == *a || ip(RS6[*i]) == *a).map(|i| RS_MACS[i])
}

#[derive(Default, Debug)]
struct Tally {
    frames: u64,
    rewritten: u64,
    passed: u64,
    dropped: u64,
    icmp: u64,
    /// Well-formed frames on which the two disagreed (a failure).
    disagreements: Vec<String>,
    /// Rewrites that differ from the core's or break the packet (a failure).
    wrong: Vec<String>,
    /// Mutated frames the core would balance but the director left to the kernel or dropped.
    left_alone: u64,
}

#[test]
fn random_and_mutated_frames_agree_with_the_core() {
    if require_root().is_none() {
        return;
    }
    let frames: u64 = std::env::var("XVS_FUZZ_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let seed: u64 = std::env::var("XVS_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let mut lab = Lab::with_options(|o| {
        o.max_conns = 1 << 20;
        o.max_half = 1 << 19;
    });
    // Nothing expires during the run on either side (the core's clock stands still).
    for t in lab.lb.timeouts.tcp.0.iter_mut() {
        *t = std::time::Duration::from_secs(3600);
    }
    lab.lb.timeouts.udp = std::time::Duration::from_secs(3600);
    Publisher::write_config(&mut lab.dp, &lab.lb.timeouts, &lab.lb.sysctl).unwrap();
    let services: Vec<(ServiceKey, ForwardMethod, &[&str], u16)> = vec![
        (ServiceKey::tcp(ip(VIP4), 80), ForwardMethod::Masq, &RS4[..2], 8080),
        (ServiceKey::tcp(ip(VIP4), 81), ForwardMethod::Route, &RS4[..3], 81),
        (ServiceKey::udp(ip(VIP4), 53), ForwardMethod::Masq, &RS4[..2], 5353),
        (ServiceKey::tcp(ip(VIP6), 80), ForwardMethod::Masq, &RS6[..2], 8080),
        (ServiceKey::udp(ip(VIP6), 53), ForwardMethod::Route, &RS6[..2], 53),
    ];
    for (key, m, servers, port) in &services {
        let sched = if key.port() == 81 { SchedKind::Wlc } else { SchedKind::Rr };
        lab.service(*key, sched);
        for s in *servers {
            lab.dest(key, s, *port, method_cfg(*m));
        }
    }
    let clients4: Vec<String> = (1..=12).map(|i| format!("198.18.1.{i}")).collect();
    let clients6: Vec<String> = (1..=12).map(|i| format!("2001:2:0:1::{i:x}")).collect();
    for c in clients4.iter().chain(&clients6) {
        let mac = CLIENT_MAC.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        lab.ns.ip(&["neigh", "replace", c, "lladdr", &mac, "dev", "d0", "nud", "permanent"]);
    }
    let flag_sets = [
        TcpFlags::SYN,
        TcpFlags::ACK,
        TcpFlags::ACK,
        TcpFlags::FIN | TcpFlags::ACK,
        TcpFlags::RST,
        TcpFlags::SYN | TcpFlags::ACK,
        0,
    ];
    let mut rng = Rng(seed);
    let mut t = Tally::default();
    // What happened to each 5-tuple, for the report of a failure.
    let mut history: std::collections::HashMap<(IpAddr, u16, IpAddr, u16, bool), Vec<String>> =
        std::collections::HashMap::new();
    // `parse` panics on what it rejects; those panics are answers here, not failures.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let now = Instant::ZERO;

    for n in 0..frames {
        let v6 = rng.below(2) == 1;
        let clients = if v6 { &clients6 } else { &clients4 };
        let client: IpAddr = rng.pick(clients).parse().unwrap();
        let cport = 10_000 + rng.below(8) as u16;
        let vip = ip(if v6 { VIP6 } else { VIP4 });
        let payload: Vec<u8> = (0..rng.below(48)).map(|_| rng.next() as u8).collect();
        let kind = rng.below(10);
        let (mut f, from_server) = if kind == 6 {
            // A reply from a real server (NAT services).
            let pool: &[&str] = if v6 { &RS6[..2] } else { &RS4[..2] };
            let name: &&str = rng.pick(pool);
            let rs = ip(name);
            let (sport, tcp) = if rng.below(3) == 0 { (5353, None) } else { (8080, Some(*rng.pick(&flag_sets))) };
            let mac = rs_mac(&rs).unwrap();
            (frame((rs, sport), (client, cport), tcp, &payload, mac, lab.mac_d1), true)
        } else {
            let (vport, tcp) = match rng.below(5) {
                0 => (80, Some(*rng.pick(&flag_sets))),
                1 => (81, Some(*rng.pick(&flag_sets))),
                2 => (53, None),
                3 => (82, Some(TcpFlags::SYN)),
                _ => (80, Some(rng.below(64) as u8)),
            };
            (frame((client, cport), (vip, vport), tcp, &payload, CLIENT_MAC, lab.mac_d0), false)
        };
        let mutated = kind >= 7;
        if mutated {
            for _ in 0..1 + rng.below(4) {
                match rng.below(4) {
                    0 => {
                        let i = 14 + rng.below((f.len() - 14) as u64) as usize;
                        f[i] ^= 1 << rng.below(8);
                    }
                    1 => {
                        let i = 14 + rng.below((f.len() - 14) as u64) as usize;
                        f[i] = rng.next() as u8;
                    }
                    2 => {
                        let keep = 14 + rng.below((f.len() - 13) as u64) as usize;
                        f.truncate(keep.max(15));
                    }
                    _ => f.extend((0..1 + rng.below(16)).map(|_| rng.next() as u8)),
                }
            }
        } else if rng.below(20) == 0 {
            // A TTL of 1: the director answers time exceeded itself.
            let off = if v6 { 14 + 7 } else { 14 + 8 };
            f[off] = 1;
            if !v6 {
                f[24..26].copy_from_slice(&[0, 0]);
                let mut s: u32 = f[14..34].chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
                while s > 0xffff {
                    s = (s & 0xffff) + (s >> 16);
                }
                f[24..26].copy_from_slice(&(!(s as u16)).to_be_bytes());
            }
        }
        t.frames += 1;
        let input = strict(&f);
        let valid_sums = input.is_some() && checksums_ok(&f);
        let r = if from_server { lab.run_server(&f) } else { lab.run_client(&f) };
        // The core sees exactly the packets that parse, as the director's parser should.
        let core = input.as_ref().map(|i| {
            let mut p = match i.tcp {
                Some(fl) => Packet::tcp((i.src, i.sport), (i.dst, i.dport), fl),
                None => Packet::udp((i.src, i.sport), (i.dst, i.dport)),
            };
            p.len = i.len;
            // Whatever its source, a packet to a VIP is a client's (as the director sees it).
            if i.dst == ip(VIP4) || i.dst == ip(VIP6) {
                lab.lb.handle_inbound(now, &p)
            } else {
                lab.lb.handle_outbound(now, &p)
            }
        });
        // The tuple where a plain frame carries it, also when it does not parse.
        let raw_tuple = (|| -> Option<(IpAddr, u16, IpAddr, u16, bool)> {
            let v6 = f.get(12..14)? == [0x86, 0xdd];
            let (s0, d0, l4, proto) = if v6 { (22, 38, 54, *f.get(20)?) } else { (26, 30, 34, *f.get(23)?) };
            let alen = if v6 { 16 } else { 4 };
            let a = |o: usize| -> Option<IpAddr> {
                let b = f.get(o..o + alen)?;
                Some(if v6 {
                    IpAddr::from(<[u8; 16]>::try_from(b).ok()?)
                } else {
                    IpAddr::from(<[u8; 4]>::try_from(b).ok()?)
                })
            };
            let port = |o: usize| Some(u16::from_be_bytes([*f.get(o)?, *f.get(o + 1)?]));
            Some((a(s0)?, port(l4)?, a(d0)?, port(l4 + 2)?, proto == 6))
        })();
        if let Some(k) = input.as_ref().map(|i| (i.src, i.sport, i.dst, i.dport, i.tcp.is_some())).or(raw_tuple) {
            let h = history.entry(k).or_default();
            let flags = input.as_ref().map(|i| i.tcp);
            h.push(format!("#{n} parsed {flags:?} director {} core {core:?} {f:02x?}", r.action));
            if h.len() > 12 {
                h.remove(0);
            }
        }
        let before = t.wrong.len() + t.disagreements.len();
        let what = || format!("frame {n} ({}): {f:02x?}", if mutated { "mutated" } else { "well-formed" });
        assert_ne!(r.action, action::ABORTED, "{}", what());
        // A rewritten packet whose next hop is not resolved yet goes to the kernel to forward.
        let kernel_forwards = r.action == action::PASS && r.frame != f;
        match r.action {
            action::PASS if !kernel_forwards => {
                t.passed += 1;
                if r.frame != f {
                    t.wrong.push(format!("passed but changed: {}", what()));
                }
                if matches!(core, Some(Verdict::Forward(_)) | Some(Verdict::Reply { .. }) | Some(Verdict::Unreachable))
                {
                    if mutated {
                        t.left_alone += 1;
                    } else {
                        t.disagreements.push(format!("director passed, core {core:?}: {}", what()));
                    }
                }
            }
            action::DROP => {
                t.dropped += 1;
                if !mutated && !matches!(core, Some(Verdict::Drop(_))) {
                    t.disagreements.push(format!("director dropped, core {core:?}: {}", what()));
                }
            }
            action::TX | action::REDIRECT | action::PASS => {
                let Some(i) = &input else {
                    t.wrong.push(format!("rewrote a frame that does not parse: {}", what()));
                    continue;
                };
                let out = match std::panic::catch_unwind(|| parse(&r.frame)) {
                    Ok(o) => o,
                    Err(_) if !valid_sums => match strict(&r.frame) {
                        // Checksums were already wrong: compare what can be compared.
                        Some(o) => common::Seen {
                            src_mac: r.frame[6..12].try_into().unwrap(),
                            dst_mac: r.frame[0..6].try_into().unwrap(),
                            src: o.src,
                            dst: o.dst,
                            ttl: o.ttl,
                            proto: if o.tcp.is_some() { 6 } else { 17 },
                            sport: o.sport,
                            dport: o.dport,
                            inner: None,
                        },
                        None => {
                            t.icmp += 1;
                            continue;
                        }
                    },
                    Err(_) => {
                        t.wrong.push(format!("the rewrite broke the packet: {}", what()));
                        continue;
                    }
                };
                if out.proto == 1 || out.proto == 58 {
                    // The director's own ICMP error: unreachable (core agrees) or TTL.
                    t.icmp += 1;
                    let ttl_case = i.ttl <= 1;
                    let ok = out.dst == i.src && (ttl_case || matches!(core, Some(Verdict::Unreachable)) || mutated);
                    if !ok {
                        t.wrong.push(format!("ICMP error where the core says {core:?}: {}", what()));
                    }
                    continue;
                }
                t.rewritten += 1;
                let out_payload = strict(&r.frame).map(|o| o.payload).unwrap_or_default();
                if out_payload != i.payload {
                    t.wrong.push(format!("payload changed: {}", what()));
                }
                let want_ttl = i.ttl.wrapping_sub(1);
                match core {
                    Some(Verdict::Forward(fw)) => {
                        // NAT rewrites the destination; direct routing keeps the VIP and
                        // reaches the server by its MAC (checked below for both).
                        let (want_dst, want_port) = match fw.method {
                            ForwardMethod::Masq => (fw.daddr, fw.dport),
                            _ => (i.dst, i.dport),
                        };
                        let ok = out.dst == want_dst
                            && out.dport == want_port
                            && out.src == i.src
                            && out.sport == i.sport
                            && out.ttl == want_ttl
                            && (kernel_forwards || Some(out.dst_mac) == rs_mac(&fw.daddr));
                        let dr_ok = fw.method != ForwardMethod::Route || {
                            // Direct routing changes nothing in the IP packet but the TTL.
                            let ip_off = 14;
                            let (a, b) = (&f[ip_off..], &r.frame[ip_off..]);
                            a.len() == b.len()
                                && a.iter().zip(b).enumerate().all(|(k, (x, y))| {
                                    x == y || if i.dst.is_ipv4() { (8..=11).contains(&k) } else { k == 7 }
                                })
                        };
                        if !ok || !dr_ok {
                            t.wrong.push(format!(
                                "core {fw:?}, director sent {out:?} ({:02x?}): {}",
                                &r.frame[..],
                                what()
                            ));
                        }
                    }
                    Some(Verdict::Reply { vaddr, vport, .. }) => {
                        let ok = out.src == vaddr && out.sport == vport && out.dst == i.dst && out.dport == i.dport;
                        if !ok {
                            t.wrong.push(format!("core replies as {vaddr}:{vport}, director sent {out:?}: {}", what()));
                        }
                    }
                    other => t.wrong.push(format!("director rewrote, core {other:?}: {}", what())),
                }
            }
            a => t.wrong.push(format!("action {a}: {}", what())),
        }
        if t.wrong.len() + t.disagreements.len() > before && before == 0 {
            if let Some(i) = &input {
                let h = &history[&(i.src, i.sport, i.dst, i.dport, i.tcp.is_some())];
                eprintln!("first failure; the tuple's history:\n  {}", h.join("\n  "));
            }
        }
        if t.wrong.len() + t.disagreements.len() > 20 {
            break;
        }
    }
    std::panic::set_hook(default_hook);
    // TCP state: the connections the two hold are in the same states.
    let core_states: usize =
        lab.lb.conns.iter().filter(|(_, c)| c.state == xvs_core::ConnState::Tcp(TcpState::Established)).count();
    eprintln!("fuzz: {t:?}; core ESTABLISHED {core_states}");
    assert!(t.wrong.is_empty(), "wrong rewrites:\n{}", t.wrong.join("\n"));
    assert!(t.disagreements.is_empty(), "disagreements:\n{}", t.disagreements.join("\n"));
    assert!(t.rewritten > frames / 10, "too few frames were balanced to mean anything: {t:?}");
}
