//! Behaviours recorded on the kernel in the IPVS VM and replayed against xvsd in a lab.
//!
//! - Displayed counters (`testdata/kernel/zero-6.12.txt`): listings show the counters of the
//!   last 2-second tick, and `-Z` takes its zero point from that tick, so a connection made just
//!   before `-Z` shows up after it.

use std::path::Path;
use std::time::{Duration, Instant};

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

/// The service's connection counter as `-Ln --stats` shows it.
fn conns(socket: &Path) -> u64 {
    let s = adm(socket, "-Ln --stats");
    s.lines().nth(3).and_then(|l| l.split_whitespace().nth(2)?.parse().ok()).unwrap_or_else(|| panic!("{s}"))
}

#[test]
fn counters_are_shown_as_of_the_last_tick_and_zeroed_from_it() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Classic::new(1, Mode::Nat);
    lab.start_web_servers();
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &[]);
    let s = &xvsd.socket;
    adm(s, &format!("-A -t {VIP4}:80 -s rr"));
    adm(s, &format!("-a -t {VIP4}:80 -r {}:80 -m", rs4(0)));
    lab.curl(&format!("http://{VIP4}/")).unwrap();
    // Wait for the tick that shows it: just after a tick now.
    let deadline = Instant::now() + Duration::from_secs(5);
    while conns(s) != 1 {
        assert!(Instant::now() < deadline, "the first connection never showed:\n{}", adm(s, "-Ln --stats"));
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.curl(&format!("http://{VIP4}/")).unwrap();
    assert_eq!(conns(s), 1, "a connection made since the tick is not shown yet");
    adm(s, "-Z");
    assert_eq!(conns(s), 0, "zeroed");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(conns(s), 1, "the connection made before -Z shows after the next tick, as the kernel's");
    drop(xvsd);
}
