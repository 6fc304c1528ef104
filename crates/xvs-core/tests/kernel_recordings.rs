//! Recordings of the kernel (`testdata/kernel/`, made in the IPVS VM by the scenario scripts
//! beside them) replayed against the core, line by line.

use std::net::IpAddr;

use xvs_core::{
    Balancer, DestConfig, Family, ForwardMethod, Instant, Packet, SchedKind, ServiceConfig, ServiceKey, TcpFlags,
    Verdict,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn recording(name: &str) -> String {
    let path = format!("{}/../../testdata/kernel/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `active-scenario.sh`: connections that never finish their handshake (SYN_RECV) count as
/// active, and lc, wlc, sed, nq, ovf and an upper threshold choose as the kernel does — the
/// same on 6.1 and 6.12.
#[test]
fn half_open_connections_count_and_schedule_as_the_kernel_says() {
    for file in ["active-6.12.txt", "active-6.1.txt"] {
        let text = recording(file);
        let mut blocks: Vec<(String, Vec<&str>)> = Vec::new();
        for line in text.lines() {
            if let Some(h) = line.strip_prefix("#### ") {
                blocks.push((h.trim().to_string(), Vec::new()));
            } else if line.starts_with("SYN ") {
                blocks.last_mut().expect("a block").1.push(line.trim_end());
            }
        }
        assert_eq!(blocks.len(), 6, "{file}");
        for (n, (head, lines)) in blocks.iter().enumerate() {
            let sched: SchedKind = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            let threshold = head.contains("-x 2");
            let mut lb = Balancer::default();
            let vip = ip(&format!("198.18.0.{}", 100 + n));
            let key = ServiceKey::tcp(vip, 80);
            lb.add_service(key, ServiceConfig::new(Family::V4, sched), Instant::ZERO).unwrap();
            lb.services.add_dest(&key, ip("198.18.3.2"), 80, DestConfig::new(ForwardMethod::Masq).weight(1)).unwrap();
            let rs1 = DestConfig::new(ForwardMethod::Masq).weight(2);
            let rs1 = if threshold { rs1.thresholds(2, 0) } else { rs1 };
            lb.services.add_dest(&key, ip("198.18.2.2"), 80, rs1).unwrap();
            let svc = lb.services.find(&key).unwrap();
            let name = |a: IpAddr| if a == ip("198.18.2.2") { "rs1" } else { "rs2" };
            for (i, want) in lines.iter().enumerate() {
                let p = Packet::tcp((ip("198.18.1.50"), 41001 + i as u16), (vip, 80), TcpFlags::SYN);
                let to = match lb.handle_inbound(Instant::ZERO, &p) {
                    Verdict::Forward(f) => format!("{} (SYN_RECV)", name(f.daddr)),
                    Verdict::Unreachable => "none (-)".to_string(),
                    v => panic!("{file} {head}: {v:?}"),
                };
                let counts: Vec<String> = ["198.18.2.2", "198.18.3.2"]
                    .iter()
                    .map(|a| {
                        let d = lb.services.find_dest(svc, &ip(a), 80).unwrap();
                        let d = lb.services.dest(d).unwrap();
                        format!("{} {}/{}", name(ip(a)), d.active_conns(), d.inactive_conns())
                    })
                    .collect();
                let got = format!("SYN {} -> {to}; active/inactive: {}", i + 1, counts.join("  "));
                assert_eq!(got, *want, "{file}, {head}");
            }
        }
    }
}

/// `sip-scenario.sh`: the Call-ID the kernel's sip engine keeps for each datagram of
/// `sip-payloads.txt` (or none: dropped), the same on 6.1 and 6.12.
#[test]
fn the_sip_engine_finds_the_call_ids_the_kernel_finds() {
    let payloads: Vec<Vec<u8>> = recording("sip-payloads.txt").lines().map(|l| hex(l.trim())).collect();
    for file in ["sip-6.12.txt", "sip-6.1.txt"] {
        let text = recording(file);
        let mut n = 0;
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(i), Some(id)) = (f.next().and_then(|i| i.parse::<usize>().ok()), f.next()) else { continue };
            let got = xvs_core::pe_sip::call_id(&payloads[i - 1]).map(|c| c.as_bytes().to_vec());
            let want = (id != "-").then(|| hex(id));
            assert_eq!(got, want, "{file}, payload {i}: {:?}", String::from_utf8_lossy(&payloads[i - 1]));
            n += 1;
        }
        assert_eq!(n, payloads.len(), "{file}: every payload recorded");
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// `lblc-cap-scenario.sh` (6.12): beyond the table's 16384 entries a new destination still gets
/// its entry, so after the weights turn it keeps going to the server that first took it.
#[test]
fn an_lblc_entry_beyond_16384_is_stored() {
    let text = recording("lblc-cap-6.12.txt");
    assert!(text.contains("16400 destinations scheduled") && text.contains("(its entry was stored)"), "{text}");
    let mut lb = Balancer::default();
    let key = ServiceKey::Fwmark { af: Family::V4, mark: 1 };
    lb.add_service(key, ServiceConfig::new(Family::V4, SchedKind::Lblc), Instant::ZERO).unwrap();
    for a in ["198.18.2.2", "198.18.3.2"] {
        lb.services.add_dest(&key, ip(a), 80, DestConfig::new(ForwardMethod::Masq).weight(100)).unwrap();
    }
    let syn = |lb: &mut Balancer, dst: IpAddr, sport: u16| {
        let mut p = Packet::tcp((ip("198.18.1.1"), sport), (dst, 80), TcpFlags::SYN);
        p.fwmark = 1;
        match lb.handle_inbound(Instant::ZERO, &p) {
            Verdict::Forward(f) => f.daddr,
            v => panic!("{v:?}"),
        }
    };
    for n in 0..16400u32 {
        let dst = IpAddr::from([10, 0, (n / 252) as u8, (n % 252 + 1) as u8]);
        let _ = syn(&mut lb, dst, 1024 + (n % 60000) as u16);
    }
    let target = ip("10.255.0.1");
    let first = syn(&mut lb, target, 61001);
    let other = if first == ip("198.18.2.2") { ip("198.18.3.2") } else { ip("198.18.2.2") };
    lb.services.edit_dest(&key, first, 80, DestConfig::new(ForwardMethod::Masq).weight(1)).unwrap();
    lb.services.edit_dest(&key, other, 80, DestConfig::new(ForwardMethod::Masq).weight(1000)).unwrap();
    assert_eq!(syn(&mut lb, target, 61002), first, "the 16401st entry was stored");
}

/// The recorded SCTP scenario (`sctp-scenario.sh`), parsed.
mod sctp_recording {
    use std::collections::HashMap;

    /// A packet of a path: `in` (client → VIP) or `out` (NAT server → client), and the event.
    pub type Step = (String, String);

    /// The chunk type that stands for an event name of the recording.
    pub fn chunk(ev: &str) -> u8 {
        use xvs_core::conn::sctp::chunk as c;
        match ev {
            "DATA" => c::DATA,
            "INIT" => c::INIT,
            "INIT_ACK" => c::INIT_ACK,
            "COOKIE_ECHO" => c::COOKIE_ECHO,
            "COOKIE_ACK" => c::COOKIE_ACK,
            "SHUTDOWN" => c::SHUTDOWN,
            "SHUTDOWN_ACK" => c::SHUTDOWN_ACK,
            "SHUTDOWN_COMPLETE" => c::SHUTDOWN_COMPLETE,
            "ERROR" => c::ERROR,
            "ABORT" => c::ABORT,
            "UNKNOWN_0x40" => 0x40,
            _ => panic!("event {ev}"),
        }
    }

    /// Every recorded cell: (service kind "dr"/"nat", path to the cell's state, the last step,
    /// the state the kernel showed after it).
    pub fn cells(text: &str) -> Vec<(String, Vec<Step>, Step, String)> {
        let mut paths: HashMap<(String, String), Vec<Step>> = HashMap::new();
        let mut section = "";
        for line in text.lines() {
            if line.starts_with("== ") {
                section = line;
                continue;
            }
            if section.starts_with("== paths") {
                let mut f = line.split_whitespace();
                let (kind, state) = (f.next().unwrap().to_string(), f.next().unwrap().to_string());
                let steps = f
                    .map(|s| {
                        let (d, e) = s.split_once(':').unwrap();
                        (d.to_string(), e.to_string())
                    })
                    .collect();
                paths.insert((kind, state), steps);
            }
        }
        let mut out = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 6 && (f[0] == "dr" || f[0] == "nat") && f[4] == "->" {
                let path = paths[&(f[0].to_string(), f[3].to_string())].clone();
                out.push((f[0].to_string(), path, (f[1].to_string(), f[2].to_string()), f[5].to_string()));
            }
        }
        out
    }

    /// The lines of one section (after the line starting with `head`, up to the next section).
    pub fn section<'a>(text: &'a str, head: &str) -> Vec<&'a str> {
        text.lines().skip_while(|l| !l.starts_with(head)).skip(1).take_while(|l| !l.starts_with("== ")).collect()
    }
}

/// `sctp-scenario.sh`: every cell of the SCTP state table a client (direct routing: the
/// input-only direction) or a client and a NAT server (input and output) can reach, driven
/// packet by packet through the balancer — identical on 6.1 and 6.12. Also the chunks that open
/// a connection, bundled ABORTs, ActiveConn and timeouts by state, and an INIT on a CLOSED
/// association.
#[test]
fn sctp_associations_move_through_the_states_the_kernel_records() {
    use sctp_recording::{cells, chunk, section};
    use xvs_core::conn::{InKey, SctpChunks};

    let client = ip("198.18.1.2");
    let vip = ip("198.18.0.100");
    let new_lb = || {
        let mut lb = Balancer::default();
        for (port, method, servers) in [
            (5000, ForwardMethod::Route, ["198.18.2.2", "198.18.2.3"]),
            (6000, ForwardMethod::Masq, ["198.18.2.4", "198.18.2.5"]),
        ] {
            let key = ServiceKey::sctp(vip, port);
            lb.add_service(key, ServiceConfig::new(Family::V4, SchedKind::Rr), Instant::ZERO).unwrap();
            for s in servers {
                lb.services.add_dest(&key, ip(s), port, DestConfig::new(method)).unwrap();
            }
        }
        lb
    };
    let state = |lb: &Balancer, cport: u16, vport: u16| {
        let key = InKey { proto: 132, caddr: client, cport, vaddr: vip, vport };
        lb.conns.lookup_in(&key).map(|id| lb.conns.get(id).unwrap().clone())
    };
    let send_in = |lb: &mut Balancer, cport: u16, vport: u16, chunks: SctpChunks| {
        let _ = lb.handle_inbound(Instant::ZERO, &Packet::sctp((client, cport), (vip, vport), chunks));
    };

    for file in ["sctp-6.12.txt", "sctp-6.1.txt"] {
        let text = recording(file);
        let all = cells(&text);
        assert_eq!(all.iter().filter(|c| c.0 == "dr").count(), 60, "{file}: six states reached by a DR client");
        assert_eq!(all.iter().filter(|c| c.0 == "nat").count(), 260, "{file}: 13 states, two directions");
        let mut lb = new_lb();
        let mut cport = 30000u16;
        for (kind, path, last, want) in &all {
            cport += 1;
            let vport = if kind == "dr" { 5000 } else { 6000 };
            for (dir, ev) in path.iter().chain(std::iter::once(last)) {
                let chunks = SctpChunks::one(chunk(ev));
                if dir == "in" {
                    send_in(&mut lb, cport, vport, chunks);
                } else {
                    let c = state(&lb, cport, vport).expect("a connection to reply on");
                    let p = Packet::sctp((c.daddr, vport), (client, cport), chunks);
                    let _ = lb.handle_outbound(Instant::ZERO, &p);
                }
            }
            let got = state(&lb, cport, vport).map(|c| c.state.name().to_string());
            let path: Vec<String> = path.iter().map(|(d, e)| format!("{d}:{e}")).collect();
            assert_eq!(got.as_deref(), Some(want.as_str()), "{file}: {kind} {} then {last:?}", path.join(" "));
        }

        for line in section(&text, "== which first chunk") {
            // "sloppy_sctp=0 first chunk DATA: no connection"
            let (head, want) = line.split_once(": ").unwrap();
            let f: Vec<&str> = head.split_whitespace().collect();
            let mut lb = new_lb();
            lb.sysctl.sloppy_sctp = f[0].ends_with('1');
            send_in(&mut lb, 40000, 5000, SctpChunks::one(chunk(f[3])));
            let got = state(&lb, 40000, 5000).map_or("no connection".to_string(), |c| c.state.name().to_string());
            assert_eq!(got, want, "{file}: {line}");
        }

        for line in section(&text, "== bundles") {
            // "COOKIE_ECHO+ABORT: CLOSED"
            let (pair, want) = line.split_once(": ").unwrap();
            let (a, b) = pair.split_once('+').unwrap();
            let mut lb = new_lb();
            send_in(&mut lb, 40000, 5000, SctpChunks::one(chunk("INIT")));
            send_in(&mut lb, 40000, 5000, SctpChunks { first: chunk(a), second: Some(chunk(b)) });
            assert_eq!(state(&lb, 40000, 5000).unwrap().state.name(), want, "{file}: {line}");
        }

        for line in section(&text, "== ActiveConn") {
            // "INIT COOKIE_ECHO: ESTABLISHED expires 899 s, ActiveConn 1"
            let (path, rest) = line.split_once(": ").unwrap();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let mut lb = new_lb();
            for ev in path.split_whitespace() {
                send_in(&mut lb, 40000, 5000, SctpChunks::one(chunk(ev)));
            }
            let c = state(&lb, 40000, 5000).unwrap();
            assert_eq!(c.state.name(), f[0], "{file}: {line}");
            // The kernel shows whole seconds left, a moment after the packet.
            let left: u64 = f[2].parse().unwrap();
            assert_eq!(c.timeout.as_secs(), left + 1, "{file}: {line}");
            let svc = lb.services.find(&ServiceKey::sctp(vip, 5000)).unwrap();
            let active: u32 = ["198.18.2.2", "198.18.2.3"]
                .iter()
                .map(|a| lb.services.dest(lb.services.find_dest(svc, &ip(a), 5000).unwrap()).unwrap().active_conns())
                .sum();
            assert_eq!(active.to_string(), f[5], "{file}: {line}");
        }

        for line in section(&text, "== INIT on a CLOSED").into_iter().filter(|l| l.starts_with("conn_reuse_mode=")) {
            // "conn_reuse_mode=1: before CLOSED on 198.18.2.2, after INIT INIT1 on 198.18.2.3"
            let mode: u32 = line[16..17].parse().unwrap();
            let f: Vec<&str> = line.split_whitespace().collect();
            let mut lb = new_lb();
            lb.sysctl.conn_reuse_mode = mode;
            for ev in ["INIT", "COOKIE_ECHO", "ABORT"] {
                send_in(&mut lb, 40000, 5000, SctpChunks::one(chunk(ev)));
            }
            let before = state(&lb, 40000, 5000).unwrap();
            send_in(&mut lb, 40000, 5000, SctpChunks::one(chunk("INIT")));
            let after = state(&lb, 40000, 5000).unwrap();
            // Where rr stands differs from the VM's service; whether the server changed does not.
            let moved = f[4].trim_end_matches(',') != f[9];
            assert_eq!(before.state.name(), f[2], "{file}: {line}");
            assert_eq!((after.state.name(), after.daddr != before.daddr), (f[7], moved), "{file}: {line}");
        }
    }
}

/// `trash-lblc-scenario.sh` (6.12): under lblc, the server the scheduler's entry for the VIP
/// names stays in the trash — added back 201 s after its deletion it still has its counters —
/// while a server no entry names is freed about 180 s after its deletion (`trash-6.12.txt`).
#[test]
fn an_lblc_entry_keeps_its_server_in_the_trash() {
    let text = recording("trash-lblc-6.12.txt");
    // The last listing: 198.18.3.2, back after 201 s, with the four connections it had.
    let last = text.split("== 198.18.3.2 added back").nth(1).expect("the last listing");
    assert!(last.starts_with(" 201 s"), "{last}");
    let line = last.lines().find(|l| l.contains("-> 198.18.3.2:80")).expect("3.2 listed");
    let kept: u64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(kept, 4, "{line}");

    let mut lb = Balancer::default();
    let vip = ip("198.18.0.100");
    let key = ServiceKey::tcp(vip, 80);
    lb.add_service(key, ServiceConfig::new(Family::V4, SchedKind::Lblc), Instant::ZERO).unwrap();
    let nat = DestConfig::new(ForwardMethod::Masq);
    for rs in ["198.18.2.2", "198.18.3.2"] {
        lb.services.add_dest(&key, ip(rs), 80, nat).unwrap();
    }
    let mut now = Instant::ZERO;
    let mut to = Vec::new();
    for port in 40000..40004 {
        for flags in [TcpFlags::SYN, TcpFlags::ACK, TcpFlags::RST] {
            if let Verdict::Forward(f) =
                lb.handle_inbound(now, &Packet::tcp((ip("198.18.1.2"), port), (vip, 80), flags))
            {
                to.push(f.daddr);
            }
        }
    }
    assert!(to.iter().all(|a| *a == ip("198.18.3.2")), "the kernel's lblc sent all four to 3.2: {to:?}");
    run_until(&mut lb, &mut now, 15);
    assert_eq!(lb.conns.len(), 0, "the reset connections expired");
    let deleted = now;
    for rs in ["198.18.2.2", "198.18.3.2"] {
        lb.services.delete_dest(&key, &ip(rs), 80, deleted).unwrap();
    }
    run_until(&mut lb, &mut now, 15 + 201);
    let id = lb.services.add_dest(&key, ip("198.18.3.2"), 80, nat).unwrap();
    run_until(&mut lb, &mut now, 15 + 204);
    let conns = lb.services.dest(id).unwrap().stats.counters().conns;
    assert_eq!(conns, kept, "3.2 came back from the trash with its counters");
    // Under rr no entry holds it: the same steps free it (trash-6.12.txt).
    let mut lb = Balancer::default();
    lb.add_service(key, ServiceConfig::new(Family::V4, SchedKind::Rr), Instant::ZERO).unwrap();
    lb.services.add_dest(&key, ip("198.18.3.2"), 80, nat).unwrap();
    let _ = lb.handle_inbound(Instant::ZERO, &Packet::tcp((ip("198.18.1.2"), 40000), (vip, 80), TcpFlags::SYN));
    let _ = lb.handle_inbound(Instant::ZERO, &Packet::tcp((ip("198.18.1.2"), 40000), (vip, 80), TcpFlags::RST));
    let mut now = Instant::ZERO;
    run_until(&mut lb, &mut now, 15);
    lb.services.delete_dest(&key, &ip("198.18.3.2"), 80, now).unwrap();
    run_until(&mut lb, &mut now, 15 + 201);
    assert_eq!(lb.services.trash().count(), 0, "under rr it was freed");
}

/// Runs the balancer's timers second by second up to `t` seconds.
fn run_until(lb: &mut Balancer, now: &mut Instant, t: u64) {
    while *now < Instant::from_secs(t) {
        *now += std::time::Duration::from_secs(1);
        lb.handle_timeout(*now);
    }
}
