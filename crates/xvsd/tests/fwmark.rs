//! Firewall-mark services with the operator's own mangle rules (iptables for IPv4, nftables
//! for IPv6) in front of xvsd, real clients and servers: marked connections are balanced by the
//! service with their mark, persistence spans the ports a mark covers, established connections
//! stay on the XDP path and close cleanly, a VIP held by the director itself works (the `local`
//! rule is moved behind xvsd's), and deleting the services takes xvsd's routing away again.
//! The connection rate through a firewall-mark service is printed beside an address service's
//! (a figure, never asserted).

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::hold::Held;
use xvs_lab::daemon::Xvsd;
use xvs_lab::topology::{rs4, rs6, Classic, Mode, VIP4, VIP6};
use xvs_lab::Netns;
use xvsadm::client::Socket;
use xvsadm::run::run;

const ECHO: &str = include_str!("trust/echo_server.py");

fn adm(socket: &Path, args: &str) -> String {
    let argv: Vec<String> = std::iter::once("xvsadm").chain(args.split_whitespace()).map(String::from).collect();
    let mut t = Socket::connect(socket).unwrap_or_else(|e| panic!("{e}"));
    let out = run(&argv, &mut t, &mut std::io::empty());
    assert_eq!(out.code, 0, "xvsadm {args}: {}", out.stderr);
    out.stdout
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Echo servers (IPv4) on `ports` in every real server; nginx for IPv6 on port 80.
fn lab(n: usize, mode: Mode, ports: &[u16]) -> Classic {
    let mut lab = Classic::new(n, mode);
    let script = lab.dir.join("echo_server.py");
    std::fs::write(&script, ECHO).unwrap();
    for i in 0..n {
        let mut args = vec![script.to_string_lossy().to_string(), format!("rs{}", i + 1)];
        args.extend(ports.iter().map(|p| p.to_string()));
        let c = lab.rs[i].command("python3").args(&args).stdout(Stdio::null()).spawn().expect("echo server");
        lab.children.push(c);
        for p in ports {
            xvs_lab::topology::wait_listening(&lab.rs[i], *p);
        }
    }
    lab
}

/// Which server answers "who" on a new connection from `src` (any local address when None).
fn who(client: &Netns, vip: &str, port: u16, src: Option<&str>) -> Result<String, String> {
    let bind = src.map(|s| format!("s.bind(('{s}', 0)); ")).unwrap_or_default();
    let code = format!(
        "import socket; s = socket.socket(); s.settimeout(3); {bind}s.connect(('{vip}', {port})); \
         s.sendall(b'who\\n'); print(s.makefile().readline().strip())"
    );
    let o = client.command("python3").args(["-c", &code]).output().unwrap();
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("").to_string())
    }
}

fn rules(ns: &Netns, v6: bool) -> String {
    let args: &[&str] = if v6 { &["-6", "rule", "show"] } else { &["rule", "show"] };
    ok(ns.ip(args), "ip rule")
}

#[test]
fn marked_connections_are_balanced_by_their_mark() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = lab(3, Mode::Dr, &[8080, 8443, 9000]);
    lab.start_web_servers();
    let d = &lab.director;
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &[]);
    let s = &xvsd.socket;
    let diagnose = || format!("{}\n{}\n{}", xvsd.log_text(), rules(d, false), adm(s, "-Ln"));

    // The operator's rules: IPv4 with iptables, IPv6 with nftables, in the mangle position.
    ok(
        d.exec(&[
            "iptables",
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-d",
            VIP4,
            "-p",
            "tcp",
            "-m",
            "multiport",
            "--dports",
            "8080,8443",
            "-j",
            "MARK",
            "--set-mark",
            "1",
        ]),
        "iptables",
    );
    ok(d.exec(&["nft", "add", "table", "ip6", "xvsfwm"]), "nft");
    ok(
        d.exec(&["nft", "add", "chain", "ip6", "xvsfwm", "pre", "{ type filter hook prerouting priority mangle; }"]),
        "nft",
    );
    let rule = format!("add rule ip6 xvsfwm pre ip6 daddr {VIP6} tcp dport 80 meta mark set 2");
    ok(d.exec(&["sh", "-c", &format!("nft {rule}")]), "nft");

    adm(s, "-A -f 1 -s rr -p 300");
    for i in 0..3 {
        adm(s, &format!("-a -f 1 -r {} -g", rs4(i)));
    }
    adm(s, "-A -f 2 -6 -s rr");
    for i in 0..3 {
        adm(s, &format!("-a -f 2 -6 -r [{}]:80 -g", rs6(i)));
    }
    let listing = adm(s, "-Ln");
    assert!(listing.contains("FWM  1 rr persistent 300") && listing.contains("FWM  2 IPv6 rr"), "{listing}");
    let r4 = rules(d, false);
    assert!(
        r4.contains("0:\tfrom all fwmark 0x1 ipproto tcp lookup 30838")
            && r4.contains("0:\tfrom all fwmark 0x1 ipproto udp lookup 30838")
            && r4.contains("0:\tfrom all fwmark 0x1 ipproto sctp lookup 30838")
            && r4.contains("1:\tfrom all lookup local"),
        "{r4}"
    );
    // The moved local rule is tagged as the kernel's own, so network managers leave it.
    let detailed = ok(d.ip(&["-d", "rule"]), "ip -d rule");
    assert!(detailed.contains("1:\tfrom all lookup local proto kernel"), "{detailed}");
    // A rule someone else removes is put back within xvsd's re-check period.
    ok(d.ip(&["rule", "del", "pref", "0", "fwmark", "1", "ipproto", "udp", "lookup", "30838"]), "ip rule del");
    ok(d.ip(&["rule", "del", "pref", "1", "lookup", "local"]), "ip rule del");
    assert!(!r4.contains("0:\tfrom all lookup local"), "local moved behind the marks: {r4}");
    assert!(rules(d, true).contains("fwmark 0x2 ipproto tcp lookup 30838"), "{}", rules(d, true));

    // Persistence across the marked ports: one server for both, every time.
    let first = who(&lab.client, VIP4, 8080, None).unwrap_or_else(|e| panic!("{e}\n{}", diagnose()));
    for port in [8443, 8080, 8443] {
        assert_eq!(who(&lab.client, VIP4, port, None).unwrap(), first, "port {port}: the template of mark 1");
    }
    // Another client (address) is scheduled afresh: round robin gives it the next server.
    lab.client.ip(&["addr", "add", "198.18.1.101/24", "dev", "eth0"]);
    let second = who(&lab.client, VIP4, 8443, Some("198.18.1.101")).unwrap();
    assert_ne!(second, first, "a second client, the next server");
    assert_eq!(who(&lab.client, VIP4, 8080, Some("198.18.1.101")).unwrap(), second);
    // A port the rules do not mark is not a service's.
    assert!(who(&lab.client, VIP4, 9000, None).is_err(), "unmarked port 9000 is not balanced");

    // The listing shows the template as the kernel does: protocol IP, the mark as the VIP.
    let conns = adm(s, "-Lnc");
    assert!(conns.contains("IP ") && conns.contains("198.18.1.100:0     0.0.0.1:0"), "{conns}");

    // IPv6 through nftables' mark.
    let body = lab.curl(&format!("http://[{VIP6}]:80/")).unwrap_or_else(|e| panic!("{e}\n{}", diagnose()));
    assert!(body.starts_with("rs"), "{body}");

    // Held connections: established packets take XDP; they answer and close cleanly.
    let mut held = Held::open(&lab.client, &lab.dir, VIP4, 8, &[8080, 8443], diagnose);
    assert!(held.servers.iter().all(|s| *s == first), "held: {:?}", held.servers);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(held.ping(), 0, "held connections answer");
    let deadline = Instant::now() + ::xvsd::fwmark::RECHECK + Duration::from_secs(3);
    while !rules(d, false).contains("fwmark 0x1 ipproto udp") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(rules(d, false).contains("0:\tfrom all fwmark 0x1 ipproto udp lookup 30838"), "{}", rules(d, false));
    assert!(rules(d, false).contains("1:\tfrom all lookup local"), "the local rule is back: {}", rules(d, false));
    assert!(xvsd.log_text().contains("put back"), "{}", xvsd.log_text());
    // xvsd restarted: it takes the device and its programs over; old and new connections work.
    let mut xvsd = xvsd;
    xvsd.restart();
    let s = &xvsd.socket;
    assert_eq!(held.ping(), 0, "held connections answer across the restart");
    assert_eq!(who(&lab.client, VIP4, 8443, Some("198.18.1.101")).unwrap(), second, "new ones too, same template");
    assert!(!xvsd.log_text().contains("cannot reach the firewall-mark"), "{}", xvsd.log_text());
    assert_eq!(held.close(), 0, "and close cleanly");

    // The rules go with the services; the local rule returns to 0 with the last one.
    adm(s, "-D -f 1");
    let r4 = rules(d, false);
    assert!(!r4.contains("fwmark 0x1"), "{r4}");
    assert!(who(&lab.client, VIP4, 8080, Some("198.18.1.101")).is_err(), "no service for mark 1 any more");
    adm(s, "-D -f 2 -6");
    let r4 = rules(d, false);
    assert!(r4.contains("0:\tfrom all lookup local") && !r4.contains("1:\tfrom all lookup local"), "{r4}");
    assert!(rules(d, true).contains("0:\tfrom all lookup local"), "{}", rules(d, true));
    let dev = std::process::Command::new("ip").args(["-n", d.name(), "link", "show", "xvs-fwm"]).output().unwrap();
    assert!(!dev.status.success(), "the device is gone");
    drop(xvsd);
}

/// Connections per second through `port` on `vip`, one after the other (connect, one line,
/// close), `n` of them.
fn conn_rate(client: &Netns, vip: &str, port: u16, n: u32) -> f64 {
    let code = format!(
        "import socket, time\nt = time.monotonic()\nfor i in range({n}):\n    s = socket.socket(); s.settimeout(3)\n    \
         s.connect(('{vip}', {port})); s.sendall(b'who\\n'); s.makefile().readline(); s.close()\n\
         print({n} / (time.monotonic() - t))"
    );
    let o = client.exec(&["python3", "-c", &code]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

#[test]
fn a_vip_on_the_director_and_the_cost_of_the_first_packet() {
    if !xvs_lab::require_root() {
        return;
    }
    let lab = lab(2, Mode::Nat, &[8080, 8081]);
    let d = &lab.director;
    // The VIP is the director's own address, as keepalived's virtual_ipaddress makes it.
    d.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"]);
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &[]);
    let s = &xvsd.socket;
    ok(
        d.exec(&[
            "iptables",
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-d",
            VIP4,
            "-p",
            "tcp",
            "--dport",
            "8080",
            "-j",
            "MARK",
            "--set-mark",
            "0x10",
        ]),
        "iptables",
    );
    adm(s, "-A -f 16 -s rr");
    adm(s, &format!("-A -t {VIP4}:8081 -s rr"));
    for i in 0..2 {
        adm(s, &format!("-a -f 16 -r {}:8080 -m", rs4(i)));
        adm(s, &format!("-a -t {VIP4}:8081 -r {}:8081 -m", rs4(i)));
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(who(&lab.client, VIP4, 8080, None).unwrap_or_else(|e| panic!("{e}\n{}", xvsd.log_text())));
    }
    assert_eq!(seen.len(), 2, "both servers behind the local VIP: {seen:?}");
    // Marked traffic the service does not balance (a ping) still reaches the director, as with IPVS.
    ok(
        d.exec(&[
            "iptables",
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-d",
            VIP4,
            "-p",
            "icmp",
            "-j",
            "MARK",
            "--set-mark",
            "0x10",
        ]),
        "iptables",
    );
    let ping = lab.client.command("ping").args(["-c1", "-W2", VIP4]).output().unwrap();
    assert!(ping.status.success(), "a marked ping to the director's VIP is answered by the director");

    // The price of the kernel's part (mangle, routing, the veth) on each first packet: the
    // connection rate of the firewall-mark service beside the address service's, side by side.
    let rounds = 5;
    let mut ratios = Vec::new();
    let started = Instant::now();
    for _ in 0..rounds {
        let fwm = conn_rate(&lab.client, VIP4, 8080, 300);
        let addr = conn_rate(&lab.client, VIP4, 8081, 300);
        ratios.push(fwm / addr);
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "fwmark/address connection rate (NAT, sequential connections, {} rounds): min {:.2} median {:.2} max {:.2}",
        ratios.len(),
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1]
    );
    drop(xvsd);
}
