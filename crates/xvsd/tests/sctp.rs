//! SCTP services with a client and servers exchanging real SCTP packets (raw IP sockets with
//! their CRC32c checked at each end: this machine's kernel has no SCTP stack, see
//! `xvs-lab/src/scripts/sctp_peer.py`). Associations are spread by the scheduler, each keeps
//! its server from INIT to SHUTDOWN, answers come back from the VIP, and `xvsadm -Lnc` shows
//! the kernel's SCTP states — under direct routing, under NAT, and through a firewall mark.

use std::path::Path;

use xvs_lab::daemon::Xvsd;
use xvs_lab::topology::{rs4, Classic, Mode, VIP4};
use xvsadm::client::Socket;
use xvsadm::run::run;

fn adm(socket: &Path, args: &str) -> String {
    let argv: Vec<String> = std::iter::once("xvsadm").chain(args.split_whitespace()).map(String::from).collect();
    let mut t = Socket::connect(socket).unwrap_or_else(|e| panic!("{e}"));
    let out = run(&argv, &mut t, &mut std::io::empty());
    assert_eq!(out.code, 0, "xvsadm {args}: {}", out.stderr);
    out.stdout
}

/// The state `xvsadm -Lnc` shows for the association from client port `cport`.
fn state(socket: &Path, cport: u16) -> Option<String> {
    let listing = adm(socket, "-Lnc");
    listing
        .lines()
        .find(|l| l.starts_with("SCTP") && l.contains(&format!(":{cport} ")))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
}

/// Four associations through a service on VIP:9000: an SCTP service, or with `fwmark` the
/// mark an iptables rule sets on SCTP packets to that port.
fn associations(mode: Mode, flag: &str, fwmark: bool) {
    let mut lab = Classic::new(2, mode);
    lab.start_sctp_peers();
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &[]);
    let s = &xvsd.socket;
    let svc = if fwmark {
        let rule = ["-t", "mangle", "-A", "PREROUTING", "-d", VIP4, "-p", "sctp", "--dport", "9000"];
        let out = lab.director.exec(&[&["iptables"], &rule[..], &["-j", "MARK", "--set-mark", "3"]].concat());
        assert!(out.status.success(), "iptables: {}", String::from_utf8_lossy(&out.stderr));
        "-f 3".to_string()
    } else {
        format!("--sctp-service {VIP4}:9000")
    };
    adm(s, &format!("-A {svc} -s rr"));
    for i in 0..2 {
        adm(s, &format!("-a {svc} -r {}:9000 {flag}", rs4(i)));
    }
    let fail = |e: String| panic!("{e}\n{}", xvsd.log_text());
    // Four associations, each from its own port: rr alternates between the servers.
    let mut seen = Vec::new();
    for cport in 41001..41005 {
        let name = lab.sctp("open", VIP4, 9000, cport).unwrap_or_else(fail);
        assert_eq!(state(s, cport).as_deref(), Some("ESTABLISHED"), "{}", adm(s, "-Lnc"));
        seen.push(name);
    }
    assert!(seen.contains(&"rs1".to_string()) && seen.contains(&"rs2".to_string()), "{seen:?}");
    assert_ne!(seen[0], seen[1], "rr alternates: {seen:?}");
    // Held associations keep their server for data and for the shutdown.
    for (n, cport) in (41001..41005).enumerate() {
        assert_eq!(lab.sctp("data", VIP4, 9000, cport).unwrap_or_else(fail), seen[n], "data, port {cport}");
    }
    let listing = adm(s, "-Ln");
    assert!(listing.contains(if fwmark { "FWM  3 rr" } else { "SCTP 198.18.0.100:9000 rr" }), "{listing}");
    for cport in 41001..41005 {
        let n = (cport - 41001) as usize;
        assert_eq!(lab.sctp("close", VIP4, 9000, cport).unwrap_or_else(fail), seen[n], "close, port {cport}");
        // Direct routing sees the client's SHUTDOWN and SHUTDOWN_COMPLETE (S-RECEIVED, then
        // CLOSED); NAT also the server's SHUTDOWN_ACK (S-ACK-SENT, then CLOSED).
        assert_eq!(state(s, cport).as_deref(), Some("CLOSED"), "{}", adm(s, "-Lnc"));
    }
    // Listings show the counters of the last tick (every 2 s, as the kernel's estimator): a
    // loaded machine may not have had one since the last association.
    let head = if fwmark { "FWM" } else { "SCTP" };
    let counted = |stats: &str| stats.lines().any(|l| l.starts_with(head) && l.split_whitespace().nth(2) == Some("4"));
    let mut stats = adm(s, "-Ln --stats");
    for _ in 0..50 {
        if counted(&stats) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        stats = adm(s, "-Ln --stats");
    }
    assert!(counted(&stats), "{stats}");
    drop(xvsd);
}

#[test]
fn sctp_associations_under_direct_routing() {
    if !xvs_lab::require_root() {
        return;
    }
    associations(Mode::Dr, "-g", false);
}

#[test]
fn sctp_associations_under_nat() {
    if !xvs_lab::require_root() {
        return;
    }
    associations(Mode::Nat, "-m", false);
}

/// Marked by the operator's iptables rule: the first packet of each association is routed to
/// the dataplane by the mark (`ipproto sctp` among xvsd's policy rules), the rest meet their
/// connection in XDP.
#[test]
fn sctp_associations_through_a_firewall_mark() {
    if !xvs_lab::require_root() {
        return;
    }
    associations(Mode::Dr, "-g", true);
}
