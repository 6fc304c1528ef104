//! Recordings of the kernel (`testdata/kernel/`, made in the IPVS VM) replayed through the
//! director program with BPF_PROG_TEST_RUN.

mod common;

use common::*;
use xvs_core::{ForwardMethod, SchedKind, ServiceConfig, ServiceKey, TcpFlags};
use xvs_dataplane::action;

/// `active-scenario.sh` (6.1 and 6.12 alike): SYN_RECV counts as active, and lc, wlc, sed, nq,
/// ovf and an upper threshold pick what the kernel picked, SYN after SYN.
#[test]
fn half_open_connections_count_and_schedule_as_the_kernel_says() {
    if require_root().is_none() {
        return;
    }
    let path = format!("{}/../../testdata/kernel/active-6.12.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut blocks: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("#### ") {
            blocks.push((h.trim().to_string(), Vec::new()));
        } else if line.starts_with("SYN ") {
            blocks.last_mut().unwrap().1.push(line.trim_end());
        }
    }
    assert_eq!(blocks.len(), 6);
    let mut lab = Lab::new();
    let (rs1, rs2) = (RS4[0], RS4[1]);
    for (n, (head, lines)) in blocks.iter().enumerate() {
        let sched: SchedKind = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let key = ServiceKey::tcp(ip(VIP4), 80 + n as u16);
        let key = lab.service_with(key, ServiceConfig::new(key.family(), sched));
        lab.dest(&key, rs2, 80, method_cfg(ForwardMethod::Masq).weight(1));
        let mut c1 = method_cfg(ForwardMethod::Masq).weight(2);
        if head.contains("-x 2") {
            c1 = c1.thresholds(2, 0);
        }
        lab.dest(&key, rs1, 80, c1);
        let svc = lab.lb.services.find(&key).unwrap();
        for (i, want) in lines.iter().enumerate() {
            let f = frame(
                (ip("198.18.1.50"), 41001 + i as u16),
                (key.addr(), key.port()),
                Some(TcpFlags::SYN),
                b"",
                CLIENT_MAC,
                lab.mac_d0,
            );
            let r = lab.run_client(&f);
            let to = match r.action {
                action::REDIRECT => {
                    let d = parse(&r.frame).dst;
                    format!("{} (SYN_RECV)", if d == ip(rs1) { "rs1" } else { "rs2" })
                }
                _ => "none (-)".to_string(),
            };
            let counts: Vec<String> = [(rs1, "rs1"), (rs2, "rs2")]
                .iter()
                .map(|(a, name)| {
                    let c = lab.dp.dest_counters(lab.lb.services.find_dest(svc, &ip(a), 80).unwrap()).unwrap();
                    format!("{name} {}/{}", c.active, c.inactive)
                })
                .collect();
            assert_eq!(format!("SYN {} -> {to}; active/inactive: {}", i + 1, counts.join("  ")), *want, "{head}");
        }
    }
}

/// `dr-replies-scenario.sh` (6.1 and 6.12 alike): the replies of a direct-routing connection
/// that come back through the director (source: the VIP) are seen, counted and move the state
/// with the full table, so a connection the client closes first reaches TIME_WAIT; the frames
/// themselves go on to the kernel unchanged.
#[test]
fn direct_routing_replies_through_the_director_are_seen_as_the_kernel_sees_them() {
    if require_root().is_none() {
        return;
    }
    for file in ["dr-replies-6.12.txt", "dr-replies-6.1.txt"] {
        let text =
            std::fs::read_to_string(format!("{}/../../testdata/kernel/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(text.contains("TCP TIME_WAIT") && text.contains(" 1        7        6 "), "{file}: {text}");
    }
    use xvs_core::{Packet, TcpState, Verdict};
    let mut lab = Lab::new();
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 80, method_cfg(ForwardMethod::Route));
    let (vip, client) = ((key.addr(), 80), (ip(CLIENT4), 47618));
    let steps: [(bool, u8); 8] = [
        (false, TcpFlags::SYN),
        (true, TcpFlags::SYN | TcpFlags::ACK),
        (false, TcpFlags::ACK),
        (false, TcpFlags::ACK),
        (true, TcpFlags::ACK),
        (false, TcpFlags::FIN | TcpFlags::ACK),
        (true, TcpFlags::FIN | TcpFlags::ACK),
        (false, TcpFlags::ACK),
    ];
    for (reply, flags) in steps {
        if reply {
            let f = frame(vip, client, Some(flags), b"", RS_MACS[0], lab.mac_d1);
            let r = lab.run_server(&f);
            assert_eq!(r.action, action::PASS, "a DR reply goes on to the kernel");
            assert_eq!(r.frame, f, "unchanged");
            let v = lab.lb.handle_outbound(lab.now, &Packet::tcp(vip, client, flags));
            assert!(matches!(v, Verdict::Observed { .. }), "{v:?}");
        } else {
            let f = frame(client, vip, Some(flags), b"", CLIENT_MAC, lab.mac_d0);
            assert_eq!(lab.run_client(&f).action, action::REDIRECT);
            let _ = lab.lb.handle_inbound(lab.now, &Packet::tcp(client, vip, flags));
        }
    }
    let k = xvs_abi::Conn4Key {
        caddr: xvs_dataplane::addr_words(&client.0)[0],
        vaddr: xvs_dataplane::addr_words(&vip.0)[0],
        cport: client.1.to_be(),
        vport: 80u16.to_be(),
        proto: 6,
        pad: [0; 3],
    };
    let c = lab.dp.maps.conn4.get(&k, 0).unwrap();
    assert_eq!(TcpState::from_u8(c.state), Some(TcpState::TimeWait), "the dataplane reaches TIME_WAIT");
    let core = lab.lb.conns.iter().find(|(_, c)| !c.is_template()).map(|(_, c)| c.state).unwrap();
    assert_eq!(core, xvs_core::ConnState::Tcp(TcpState::TimeWait), "and so does the core");
    let svc = lab.lb.services.find(&key).unwrap();
    let stats = lab.dp.dest_stats(lab.lb.services.find_dest(svc, &ip(RS4[0]), 80).unwrap()).unwrap();
    assert_eq!(stats.outpkts, 3, "the replies are counted");
}

/// An SCTP packet (common header with tag 1 and a zero checksum — nothing on the path checks
/// it — then `chunks`) in an Ethernet frame.
fn sctp_frame(
    src: (std::net::IpAddr, u16),
    dst: (std::net::IpAddr, u16),
    chunks: &[u8],
    macs: ([u8; 6], [u8; 6]),
) -> Vec<u8> {
    let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (src.0, dst.0) else { panic!("IPv4 only") };
    let mut payload = Vec::new();
    payload.extend_from_slice(&src.1.to_be_bytes());
    payload.extend_from_slice(&dst.1.to_be_bytes());
    payload.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    payload.extend_from_slice(chunks);
    let mut buf = Vec::new();
    etherparse::PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(s.octets(), d.octets(), 64)
        .write(&mut buf, etherparse::IpNumber(132), &payload)
        .unwrap();
    buf
}

/// A chunk of type `t`, 20 bytes long (as the recording's scenario sends them).
fn chunk(t: u8) -> Vec<u8> {
    let mut c = vec![t, 0, 0, 20];
    c.resize(20, 0);
    c
}

fn sctp_chunk_type(ev: &str) -> u8 {
    match ev {
        "DATA" => 0,
        "INIT" => 1,
        "INIT_ACK" => 2,
        "COOKIE_ECHO" => 10,
        "COOKIE_ACK" => 11,
        "SHUTDOWN" => 7,
        "SHUTDOWN_ACK" => 8,
        "SHUTDOWN_COMPLETE" => 14,
        "ERROR" => 9,
        "ABORT" => 6,
        "UNKNOWN_0x40" => 0x40,
        _ => panic!("event {ev}"),
    }
}

/// `sctp-scenario.sh` (6.1 and 6.12 alike), through the director program: every recorded cell
/// of the SCTP state table (a direct-routing client: the input-only direction; a NAT client and
/// server: input and output), the chunks that open an association with and without
/// sloppy_sctp, an ABORT bundled after a COOKIE_ECHO, ActiveConn by state, and an INIT on a
/// CLOSED association. The SCTP bytes reach the server unchanged.
#[test]
fn sctp_associations_move_through_the_states_the_kernel_records() {
    if require_root().is_none() {
        return;
    }
    use xvs_core::conn::SctpState;
    let text =
        std::fs::read_to_string(format!("{}/../../testdata/kernel/sctp-6.12.txt", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let same =
        std::fs::read_to_string(format!("{}/../../testdata/kernel/sctp-6.1.txt", env!("CARGO_MANIFEST_DIR"))).unwrap();
    fn body(t: &str) -> Vec<&str> {
        t.lines().filter(|l| !l.starts_with("== kernel") && !l.starts_with("run-ipvs-vm")).collect()
    }
    assert_eq!(body(&text), body(&same), "6.1 and 6.12 recorded the same");

    let mut lab = Lab::new();
    let client = ip(CLIENT4);
    let vip = ip(VIP4);
    let dr = lab.service(ServiceKey::sctp(vip, 5000), SchedKind::Rr);
    let nat = lab.service(ServiceKey::sctp(vip, 6000), SchedKind::Rr);
    for rs in [RS4[0], RS4[1]] {
        lab.dest(&dr, rs, 5000, method_cfg(ForwardMethod::Route));
        lab.dest(&nat, rs, 6000, method_cfg(ForwardMethod::Masq));
    }
    let state = |lab: &Lab, cport: u16, vport: u16| {
        let k = xvs_abi::Conn4Key {
            caddr: xvs_dataplane::addr_words(&client)[0],
            vaddr: xvs_dataplane::addr_words(&vip)[0],
            cport: cport.to_be(),
            vport: vport.to_be(),
            proto: 132,
            pad: [0; 3],
        };
        lab.dp.maps.conn4.get(&k, 0).ok().map(|c| {
            let s = c.state.checked_sub(xvs_abi::SCTP_STATE_BASE).and_then(SctpState::from_u8);
            (s.unwrap_or_else(|| panic!("state byte {}", c.state)).name(), c.dest_id)
        })
    };
    // Sends a client packet; returns the server it went to, if forwarded, after checking that
    // the SCTP header and chunks arrived unchanged.
    let send_in = |lab: &Lab, cport: u16, vport: u16, chunks: &[u8]| -> Option<std::net::IpAddr> {
        let f = sctp_frame((client, cport), (vip, vport), chunks, (CLIENT_MAC, lab.mac_d0));
        let r = lab.run_client(&f);
        (r.action == action::REDIRECT).then(|| {
            assert_eq!(r.frame[34..], f[34..], "the SCTP packet reaches the server unchanged");
            // The server, by the MAC address the frame was sent to (DR keeps the VIP).
            let i = RS_MACS.iter().position(|m| r.frame[..6] == m[..]).expect("a server's MAC");
            ip(RS4[i])
        })
    };
    let mut servers = std::collections::HashMap::new();
    let mut cport = 30000u16;
    let mut cells = 0;
    let paths: std::collections::HashMap<(String, String), Vec<(String, String)>> = text
        .lines()
        .skip_while(|l| !l.starts_with("== paths dr"))
        .filter(|l| l.starts_with("dr ") || l.starts_with("nat "))
        .filter(|l| !l.contains(" -> "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let steps = f[2..]
                .iter()
                .map(|s| {
                    let (d, e) = s.split_once(':').unwrap();
                    (d.to_string(), e.to_string())
                })
                .collect();
            ((f[0].to_string(), f[1].to_string()), steps)
        })
        .collect();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if !(f.len() == 6 && (f[0] == "dr" || f[0] == "nat") && f[4] == "->") {
            continue;
        }
        cells += 1;
        cport += 1;
        let vport = if f[0] == "dr" { 5000 } else { 6000 };
        let path = &paths[&(f[0].to_string(), f[3].to_string())];
        let last = (f[1].to_string(), f[2].to_string());
        for (dir, ev) in path.iter().chain(std::iter::once(&last)) {
            let c = chunk(sctp_chunk_type(ev));
            if dir == "in" {
                if let Some(rs) = send_in(&lab, cport, vport, &c) {
                    servers.insert(cport, rs);
                }
            } else {
                let rs = servers[&cport];
                let i = RS4.iter().position(|a| ip(a) == rs).unwrap();
                let fr = sctp_frame((rs, vport), (client, cport), &c, (RS_MACS[i], lab.mac_d1));
                let r = lab.run_server(&fr);
                assert_eq!(r.action, action::REDIRECT, "{line}: a NAT reply goes back to the client");
                let seen = parse(&r.frame);
                assert_eq!((seen.src, seen.dst), (vip, client), "{line}: from the VIP");
                assert_eq!(r.frame[38..], fr[38..], "{line}: ports unchanged, chunks unchanged");
            }
        }
        assert_eq!(state(&lab, cport, vport).map(|s| s.0), Some(f[5]), "{line}");
    }
    assert_eq!(cells, 320);

    let section = |head: &str| -> Vec<String> {
        text.lines()
            .skip_while(|l| !l.starts_with(head))
            .skip(1)
            .take_while(|l| !l.starts_with("== ") && !l.starts_with("run-ipvs-vm"))
            .map(str::to_string)
            .collect()
    };
    let set_sysctl = |lab: &mut Lab, f: &dyn Fn(&mut xvs_core::Sysctl)| {
        f(&mut lab.lb.sysctl);
        xvs_dataplane::Publisher::write_config(&mut lab.dp, &lab.lb.timeouts, &lab.lb.sysctl).unwrap();
    };
    for line in section("== which first chunk") {
        let (head, want) = line.split_once(": ").unwrap();
        let f: Vec<&str> = head.split_whitespace().collect();
        let sloppy = f[0].ends_with('1');
        set_sysctl(&mut lab, &|s| s.sloppy_sctp = sloppy);
        cport += 1;
        send_in(&lab, cport, 5000, &chunk(sctp_chunk_type(f[3])));
        assert_eq!(state(&lab, cport, 5000).map_or("no connection", |s| s.0), want, "{line}");
    }
    set_sysctl(&mut lab, &|s| s.sloppy_sctp = false);
    for line in section("== bundles") {
        let (pair, want) = line.split_once(": ").unwrap();
        let (a, b) = pair.split_once('+').unwrap();
        cport += 1;
        send_in(&lab, cport, 5000, &chunk(1));
        // The first chunk 22 bytes long: the second starts at 24 (rounded up to four).
        let mut c = chunk(sctp_chunk_type(a));
        c[3] = 22;
        c.extend_from_slice(&[0; 4]);
        c.extend_from_slice(&chunk(sctp_chunk_type(b)));
        send_in(&lab, cport, 5000, &c);
        assert_eq!(state(&lab, cport, 5000).unwrap().0, want, "{line}");
    }
    for (i, line) in section("== ActiveConn").iter().enumerate() {
        let (path, rest) = line.split_once(": ").unwrap();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let key = lab.service(ServiceKey::sctp(vip, 7000 + i as u16), SchedKind::Rr);
        lab.dest(&key, RS4[0], 7000 + i as u16, method_cfg(ForwardMethod::Route));
        cport += 1;
        for ev in path.split_whitespace() {
            send_in(&lab, cport, 7000 + i as u16, &chunk(sctp_chunk_type(ev)));
        }
        assert_eq!(state(&lab, cport, 7000 + i as u16).unwrap().0, f[0], "{line}");
        let svc = lab.lb.services.find(&key).unwrap();
        let c = lab.dp.dest_counters(lab.lb.services.find_dest(svc, &ip(RS4[0]), 7000 + i as u16).unwrap()).unwrap();
        assert_eq!(c.active.to_string(), f[5], "{line}");
    }
    for line in section("== INIT on a CLOSED") {
        let mode: u32 = line[16..17].parse().unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        set_sysctl(&mut lab, &|s| s.conn_reuse_mode = mode);
        cport += 1;
        let mut before = None;
        for ev in ["INIT", "COOKIE_ECHO", "ABORT"] {
            before = send_in(&lab, cport, 5000, &chunk(sctp_chunk_type(ev))).or(before);
        }
        assert_eq!(state(&lab, cport, 5000).unwrap().0, f[2], "{line}");
        let after = send_in(&lab, cport, 5000, &chunk(1)).unwrap();
        let moved = f[4].trim_end_matches(',') != f[9];
        assert_eq!((state(&lab, cport, 5000).unwrap().0, Some(after) != before), (f[7], moved), "{line}");
    }
}
