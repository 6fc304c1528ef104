//! Health checks end to end: the keepalived.conf of `testdata/keepalived/two-services.conf`
//! (two virtual servers, HTTP_GET, TCP_CHECK and MISC_CHECK, a sorry server, inhibit_on_failure)
//! run by xvsd in a lab whose real servers misbehave on demand: stopped, hung, resetting,
//! answering 500, slow, flapping. Each failure must be detected and recovered within the bound
//! the configuration implies, no request may reach a server marked down, and connections
//! established before a server is removed carry on (IPVS keeps them, as with keepalived).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use xvs_api::health::ServiceStatus;
use xvs_dataplane::Aux;
use xvs_lab::daemon::Xvsd;
use xvs_lab::topology::{Classic, Mode, VIP4};
use xvsadm::client::Socket;
use xvsadm::run::run;

/// HTTP_GET with delay_loop 1, connect_timeout 1, retry 1, delay_before_retry 0.5: a failure
/// starting just after a good check is seen at the next check (≤ 1.1 s with jitter), each
/// attempt may take the whole timeout, and one retry follows 0.5 s later. One second of slack
/// for the loop and the machine.
const DETECT: Duration = Duration::from_millis(1100 + 1000 + 500 + 1000 + 1000);
/// A failed checker is probed every delay_loop; one success brings it back.
const RECOVER: Duration = Duration::from_millis(1100 + 1000 + 1000);

struct Lab {
    xvsd: Xvsd,
    _aux: Vec<Aux>,
    lab: Classic,
}

fn setup() -> Lab {
    let mut lab = Classic::new(3, Mode::Nat);
    lab.start_fault_servers(80);
    let mut aux = Vec::new();
    for ns in std::iter::once(&lab.client).chain(lab.rs.iter()) {
        let _in = ns.enter();
        let mut a = Aux::load().unwrap();
        a.attach_pass("eth0").unwrap();
        aux.push(a);
    }
    // The operator's file, with its drain files moved into this lab's directory.
    let conf = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/keepalived/two-services.conf"),
    )
    .unwrap()
    .replace("/var/tmp/xvs-drain", &lab.dir.to_string_lossy())
    // Its VRRP instance runs too, on the director's client-side link.
    .replace("interface eth0", "interface c0");
    let path = lab.dir.join("keepalived.conf");
    std::fs::write(&path, conf).unwrap();
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &["--config", path.to_str().unwrap()]);
    let l = Lab { xvsd, _aux: aux, lab };
    // Alone on its link, the VRRP instance of the same file becomes master.
    let start = std::time::Instant::now();
    while !l.adm(&["vrrp"]).contains(": MASTER for") {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", l.adm(&["vrrp"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    for rs in ["198.18.2.2:80", "198.18.3.2:80"] {
        l.wait(80, rs, true, Duration::from_secs(5));
        l.wait(8080, rs, true, Duration::from_secs(5));
    }
    l
}

impl Lab {
    fn adm(&self, args: &[&str]) -> String {
        let argv: Vec<String> = std::iter::once("xvsadm").chain(args.iter().copied()).map(String::from).collect();
        let mut t = Socket::connect(&self.xvsd.socket).unwrap_or_else(|e| panic!("{e}"));
        let out = run(&argv, &mut t, &mut std::io::empty());
        assert_eq!(out.code, 0, "xvsadm {args:?}: {}", out.stderr);
        out.stdout
    }

    fn health(&self) -> Vec<ServiceStatus> {
        serde_json::from_str(&self.adm(&["health", "--json"])).unwrap()
    }

    fn service(&self, port: u16) -> ServiceStatus {
        let want = format!("{VIP4}:{port}");
        self.health()
            .into_iter()
            .find(
                |s| matches!(s.service, xvs_api::KeySpec::Addr { addr, port: p, .. } if format!("{addr}:{p}") == want),
            )
            .unwrap()
    }

    fn alive(&self, port: u16, rs: &str) -> bool {
        let rs: SocketAddr = rs.parse().unwrap();
        self.service(port).servers.iter().find(|s| s.server == rs).unwrap().alive
    }

    /// Waits until `rs` of the service on `port` is (not) alive; returns how long it took.
    fn wait(&self, port: u16, rs: &str, alive: bool, within: Duration) -> Duration {
        let start = Instant::now();
        while self.alive(port, rs) != alive {
            assert!(
                start.elapsed() < within,
                "{rs} of :{port} not {} within {within:?}:\n{}\n{}",
                if alive { "up" } else { "down" },
                self.adm(&["health"]),
                self.xvsd.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        start.elapsed()
    }

    /// `n` requests to the web service; the bodies.
    fn requests(&self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.lab.curl(&format!("http://{VIP4}/")).unwrap_or_else(|e| format!("failed: {e}"))).collect()
    }

    fn table(&self) -> String {
        self.adm(&["-Ln"])
    }

    /// The weight `rs` has in the service on `port`, if it is in the table.
    fn in_table(&self, port: u16, rs: &str) -> Option<i32> {
        let table = self.table();
        let header = format!("TCP  {VIP4}:{port} ");
        let mut lines = table.lines().skip_while(|x| !x.starts_with(&header)).skip(1);
        let section = lines.by_ref().take_while(|x| x.starts_with("  -> "));
        let mut found = None;
        for x in section {
            let f: Vec<&str> = x.split_whitespace().collect();
            if f[1] == rs {
                found = f[3].parse().ok();
            }
        }
        found
    }
}

/// A failure mode of rs1 is detected in time, no request reaches it while down, and it comes
/// back once healthy.
fn failure_and_recovery(l: &Lab, mode: &str) {
    l.lab.fault_mode(0, mode);
    let took = l.wait(80, "198.18.2.2:80", false, DETECT);
    eprintln!("{mode}: down after {took:?}");
    assert_eq!(l.in_table(80, "198.18.2.2:80"), None, "{mode}: rs1 still in the table:\n{}", l.table());
    let bodies = l.requests(10);
    assert!(bodies.iter().all(|b| b == "rs2"), "{mode}: requests while rs1 is down: {bodies:?}");
    l.lab.fault_mode(0, "ok");
    let took = l.wait(80, "198.18.2.2:80", true, RECOVER);
    eprintln!("{mode}: up after {took:?}");
    let bodies = l.requests(4);
    assert!(bodies.iter().any(|b| b == "rs1"), "{mode}: rs1 back but unused: {bodies:?}");
}

#[test]
fn each_failure_kind_is_detected_and_recovered() {
    if !xvs_lab::require_root() {
        return;
    }
    let l = setup();
    for mode in ["500", "stop", "reset", "hang", "slow:3"] {
        failure_and_recovery(&l, mode);
    }
    // Slow but within the timeout is healthy.
    l.lab.fault_mode(0, "slow:0.2");
    std::thread::sleep(Duration::from_secs(3));
    assert!(l.alive(80, "198.18.2.2:80"), "a slow-but-in-time server was failed:\n{}", l.adm(&["health"]));
    l.lab.fault_mode(0, "ok");
}

#[test]
fn inhibit_quorum_sorry_server_and_flapping() {
    if !xvs_lab::require_root() {
        return;
    }
    let l = setup();
    // rs2 has inhibit_on_failure: it stays in the table with weight 0 and gets nothing.
    l.lab.fault_mode(1, "500");
    l.wait(80, "198.18.3.2:80", false, DETECT);
    assert_eq!(l.in_table(80, "198.18.3.2:80"), Some(0), "rs2 should be at weight 0:\n{}", l.table());
    assert!(l.requests(6).iter().all(|b| b == "rs1"));
    // rs1 fails too: the quorum (1) is lost and the sorry server (rs3) takes the traffic.
    l.lab.fault_mode(0, "stop");
    l.wait(80, "198.18.2.2:80", false, DETECT);
    let s = l.service(80);
    assert!(!s.quorum_up && s.sorry_active.is_some(), "{s:?}");
    let bodies = l.requests(4);
    assert!(bodies.iter().all(|b| b == "rs3"), "sorry server not used: {bodies:?}\n{}", l.table());
    // rs1 recovers: the quorum is back and the sorry server leaves.
    l.lab.fault_mode(0, "ok");
    l.wait(80, "198.18.2.2:80", true, RECOVER);
    let s = l.service(80);
    assert!(s.quorum_up && s.sorry_active.is_none(), "{s:?}");
    assert!(l.requests(4).iter().all(|b| b == "rs1"));
    assert_eq!(l.in_table(80, "198.18.4.2:80"), None, "sorry server still in the table:\n{}", l.table());
    l.lab.fault_mode(1, "ok");
    l.wait(80, "198.18.3.2:80", true, RECOVER);

    // Flapping (200 and 500 alternating each second): the server goes down and comes back,
    // again and again, as keepalived's checker would report it; requests never fail.
    l.lab.fault_mode(0, "flap");
    let start = Instant::now();
    let (mut downs, mut ups, mut last) = (0, 0, true);
    let mut failed = Vec::new();
    while start.elapsed() < Duration::from_secs(12) {
        let now = l.alive(80, "198.18.2.2:80");
        if now != last {
            if now {
                ups += 1;
            } else {
                downs += 1;
            }
            last = now;
        }
        let b = l.lab.curl(&format!("http://{VIP4}/"));
        if !matches!(b.as_deref(), Ok("rs1" | "rs2" | "error")) {
            failed.push(format!("{b:?}"));
        }
    }
    l.lab.fault_mode(0, "ok");
    eprintln!("flapping: {downs} down, {ups} up");
    assert!(downs >= 1 && ups >= 1, "flapping seen as {downs} down / {ups} up");
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn established_connections_outlive_a_failed_check() {
    if !xvs_lab::require_root() {
        return;
    }
    let l = setup();
    // Both servers answer after 4 s; a request is in flight when its server is drained by
    // its MISC_CHECK file, and must still get its answer through the director.
    l.lab.fault_mode(0, "slow:4");
    l.lab.fault_mode(1, "slow:4");
    let client = l
        .lab
        .client
        .command("curl")
        .args(["-s", "-m", "10", &format!("http://{VIP4}:8080/")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the request to be in flight (its connection in the table).
    let start = Instant::now();
    let line = loop {
        let conns = l.adm(&["-Lnc"]);
        if let Some(line) = conns.lines().find(|x| x.contains(&format!("{VIP4}:8080"))) {
            break line.to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(3), "no connection to :8080 in the table:\n{conns}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let rs = line.split_whitespace().last().unwrap().to_string();
    let n = if rs.starts_with("198.18.2.2") { 1 } else { 2 };
    std::fs::write(l.lab.dir.join(format!("rs{n}")), "").unwrap();
    l.wait(8080, &rs, false, Duration::from_secs(4));
    assert_eq!(l.in_table(8080, &rs), None, "{rs} still serves :8080:\n{}", l.table());
    let out = client.wait_with_output().unwrap();
    let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(body, format!("rs{n}"), "the connection established before the drain was cut");
    // New connections of the same client: persistence ties them to the drained server, but
    // that server is out of the table, so they go to the other one.
    l.lab.fault_mode(0, "ok");
    l.lab.fault_mode(1, "ok");
    let other = if n == 1 { "rs2" } else { "rs1" };
    for _ in 0..3 {
        assert_eq!(l.lab.curl(&format!("http://{VIP4}:8080/")).unwrap(), other);
    }
    std::fs::remove_file(l.lab.dir.join(format!("rs{n}"))).unwrap();
    l.wait(8080, &rs, true, RECOVER);
    // The health listing and the metrics say what happened.
    let listing = l.adm(&["health"]);
    assert!(listing.contains("MISC_CHECK") && listing.contains("HTTP_GET"), "{listing}");
}

/// keepalived.conf with scripts that log what they report.
fn scripted_conf(log: &Path) -> String {
    let log = log.display();
    let server = |ip: &str, name: &str| {
        format!(
            "    real_server {ip} 80 {{\n        weight 1\n\
             \x20       notify_up \"/bin/sh -c 'echo up {name} >> {log}'\"\n\
             \x20       notify_down \"/bin/sh -c 'echo down {name} >> {log}'\"\n\
             \x20       TCP_CHECK {{\n            connect_timeout 1\n            retry 0\n            warmup 0\n        }}\n    }}\n"
        )
    };
    format!(
        "virtual_server {VIP4} 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n    quorum 2\n\
         \x20   sorry_server 198.18.4.2 80\n\
         \x20   quorum_up \"/bin/sh -c 'echo quorum_up >> {log}'\"\n\
         \x20   quorum_down \"/bin/sh -c 'echo quorum_down >> {log}'\"\n{}{}}}\n",
        server("198.18.2.2", "rs1"),
        server("198.18.3.2", "rs2")
    )
}

#[test]
fn a_restart_keeps_failed_servers_and_the_sorry_server_and_runs_no_script() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Classic::new(3, Mode::Nat);
    lab.start_fault_servers(80);
    let log = lab.dir.join("scripts.log");
    let path = lab.dir.join("keepalived.conf");
    std::fs::write(&path, scripted_conf(&log)).unwrap();
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &["--config", path.to_str().unwrap()]);
    let wait_log = |want: &str| {
        let start = Instant::now();
        while !std::fs::read_to_string(&log).unwrap_or_default().contains(want) {
            assert!(start.elapsed() < Duration::from_secs(5), "no '{want}' in the script log");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut l = Lab { xvsd, _aux: Vec::new(), lab };
    l.wait(80, "198.18.2.2:80", true, Duration::from_secs(5));
    wait_log("quorum_up");
    // rs1 fails: it goes down, the quorum (2) is lost, the sorry server takes over.
    l.lab.fault_mode(0, "stop");
    l.wait(80, "198.18.2.2:80", false, DETECT);
    wait_log("quorum_down");
    std::thread::sleep(Duration::from_millis(500));
    let table = l.table();
    assert!(table.contains("198.18.4.2:80") && !table.contains("198.18.2.2:80"), "{table}");
    let scripts = std::fs::read_to_string(&log).unwrap();

    // SIGKILL and restart with the same file: rs1 stays out, the sorry server stays in, and no
    // script runs for a state that did not change.
    l.xvsd.kill();
    l.xvsd.restart();
    assert!(l.xvsd.log_text().contains("picked up the health checks' states"), "{}", l.xvsd.log_text());
    for _ in 0..15 {
        let table = l.table();
        assert!(table.contains("198.18.4.2:80") && !table.contains("198.18.2.2:80"), "after the restart:\n{table}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!l.alive(80, "198.18.2.2:80") && l.alive(80, "198.18.3.2:80"));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), scripts, "scripts ran for states that did not change");
    // rs1 recovers: up, quorum back, sorry server out, and the scripts say so.
    l.lab.fault_mode(0, "ok");
    l.wait(80, "198.18.2.2:80", true, RECOVER);
    let start = Instant::now();
    loop {
        let now = std::fs::read_to_string(&log).unwrap();
        let new = now.strip_prefix(scripts.as_str()).unwrap_or(&now);
        if new.contains("up rs1") && new.contains("quorum_up") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the recovery's scripts did not run: {new:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_operators_drain_and_services_outlive_health_events_and_reloads() {
    if !xvs_lab::require_root() {
        return;
    }
    let l = setup();
    // The operator drains rs1 of :80 and adds a service of their own.
    l.adm(&["-e", "-t", &format!("{VIP4}:80"), "-r", "198.18.2.2:80", "-m", "-w", "0"]);
    l.adm(&["-A", "-t", &format!("{VIP4}:9090"), "-s", "rr"]);
    l.adm(&["-a", "-t", &format!("{VIP4}:9090"), "-r", "198.18.2.2:80", "-m"]);
    // Health events on another server: rs2 (inhibit_on_failure) fails and recovers.
    l.lab.fault_mode(1, "500");
    l.wait(80, "198.18.3.2:80", false, DETECT);
    assert_eq!(l.in_table(80, "198.18.3.2:80"), Some(0));
    l.lab.fault_mode(1, "ok");
    l.wait(80, "198.18.3.2:80", true, RECOVER);
    assert_eq!(l.in_table(80, "198.18.3.2:80"), Some(1));
    assert_eq!(l.in_table(80, "198.18.2.2:80"), Some(0), "the drain was undone:\n{}", l.table());
    // A reload of the same keepalived.conf: the operator's service stays (no lvs_flush).
    l.xvsd.hangup();
    let start = Instant::now();
    while !l.xvsd.log_text().contains("configuration reloaded") {
        assert!(start.elapsed() < Duration::from_secs(5), "no reload:\n{}", l.xvsd.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let table = l.table();
    assert!(table.contains(&format!("TCP  {VIP4}:9090 rr")), "the operator's service went:\n{table}");
    assert_eq!(l.in_table(80, "198.18.2.2:80"), Some(0), "the reload undid the drain:\n{table}");
    // rs1's own checker still owns rs1: its failure takes it out, its recovery restores the
    // file's weight (as keepalived does).
    l.lab.fault_mode(0, "stop");
    l.wait(80, "198.18.2.2:80", false, DETECT);
    assert_eq!(l.in_table(80, "198.18.2.2:80"), None);
    l.lab.fault_mode(0, "ok");
    l.wait(80, "198.18.2.2:80", true, RECOVER);
    assert_eq!(l.in_table(80, "198.18.2.2:80"), Some(1));
}
