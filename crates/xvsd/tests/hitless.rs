//! Hitless operation, end to end: xvsd in a lab's director namespace, nginx and iperf3 behind
//! it, real clients in front.
//!
//! - Hundreds of configuration changes while clients run: no request to a server that stays
//!   fails, and a long transfer through the director carries on.
//! - xvsd killed with SIGKILL and restarted while clients run: the pinned programs and maps
//!   keep forwarding, no connection fails, and the restarted daemon has the same configuration
//!   and takes changes again.
//!
//! Load is bounded in time (wrk -d, iperf3 -t) and the assertions are about failures, never
//! about speed.

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use xvs_dataplane::Aux;
use xvs_lab::daemon::Xvsd;
use xvs_lab::topology::{rs4, Classic, Mode, VIP4};
use xvsadm::client::Socket;
use xvsadm::run::run;

/// Runs one xvsadm command against the daemon, in process; panics on failure.
fn adm(socket: &Path, args: &str) -> String {
    let argv: Vec<String> = std::iter::once("xvsadm").chain(args.split_whitespace()).map(String::from).collect();
    let mut t = Socket::connect(socket).unwrap_or_else(|e| panic!("{e}"));
    let out = run(&argv, &mut t, &mut std::io::empty());
    assert_eq!(out.code, 0, "xvsadm {args}: {}", out.stderr);
    out.stdout
}

/// A lab with three web servers (rs3 is the one that changes), iperf3 on rs1 and rs2, the pass
/// program on the peers, and xvsd configured with a web service and a bulk service.
struct Setup {
    xvsd: Xvsd,
    _aux: Vec<Aux>,
    lab: Classic,
}

/// The two load labs one after the other. Run together on a two-core machine (wrk, iperf3 and
/// two generic-XDP directors at once), 4 of 21,929 requests once went past wrk's 5 s timeout in
/// a fresh-clone run, with nothing in xvsd's log; alone, the test has not failed. Taken to be
/// starvation, not the balancer (noted in the stop note for a second look).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup(xvsd_args: &[&str]) -> Setup {
    let mut lab = Classic::new(3, Mode::Nat);
    lab.start_web_servers();
    for i in 0..2 {
        let c =
            lab.rs[i].command("iperf3").args(["-s", "-p", "5201"]).stdout(Stdio::null()).spawn().expect("iperf3 -s");
        lab.children.push(c);
        xvs_lab::topology::wait_listening(&lab.rs[i], 5201);
    }
    let mut aux = Vec::new();
    for ns in std::iter::once(&lab.client).chain(lab.rs.iter()) {
        let _in = ns.enter();
        let mut a = Aux::load().unwrap();
        a.attach_pass("eth0").unwrap();
        aux.push(a);
    }
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), xvsd_args);
    let s = &xvsd.socket;
    adm(s, &format!("-A -t {VIP4}:80 -s rr"));
    for i in 0..2 {
        adm(s, &format!("-a -t {VIP4}:80 -r {}:80 -m", rs4(i)));
    }
    // iperf3 opens a control and a data connection that must meet the same server: source hashing.
    adm(s, &format!("-A -t {VIP4}:5201 -s sh"));
    for i in 0..2 {
        adm(s, &format!("-a -t {VIP4}:5201 -r {}:5201 -m", rs4(i)));
    }
    // The first requests through a fresh lab must work before load starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.curl(&format!("http://{VIP4}/")).is_err() {
        assert!(Instant::now() < deadline, "the service never answered:\n{}", xvsd.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    Setup { xvsd, _aux: aux, lab }
}

/// wrk against the web service: a new connection per request (nginx closes each).
fn start_wrk(lab: &Classic, secs: u32) -> Child {
    lab.client
        .command("wrk")
        .args(["-t2", "-c8", &format!("-d{secs}s"), "--timeout", "5s", &format!("http://{VIP4}/")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk")
}

/// iperf3 through the bulk service: four streams held open for the whole run.
fn start_iperf(lab: &Classic, secs: u32) -> Child {
    lab.client
        .command("iperf3")
        .args(["-c", VIP4, "-p", "5201", "-P", "4", "-t", &secs.to_string(), "--connect-timeout", "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("iperf3 -c")
}

/// Requests done and failed, from wrk's report.
fn wrk_result(out: Output) -> (u64, u64, String) {
    xvs_lab::wrk_report(&out)
}

fn iperf_ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("receiver"), "iperf3 did not finish cleanly:\n{text}");
    text.lines().filter(|l| l.contains("[SUM]") && l.contains("receiver")).collect::<Vec<_>>().join("\n")
}

#[test]
fn hundreds_of_changes_under_load_fail_nothing() {
    if !xvs_lab::require_root() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Setup { xvsd, lab, _aux } = setup(&[]);
    let s = xvsd.socket.clone();
    let wrk = start_wrk(&lab, 12);
    let iperf = start_iperf(&lab, 12);
    std::thread::sleep(Duration::from_millis(500));

    // Around 400 changes: rs3 joins and leaves the web service, the servers that stay change
    // weight, the scheduler changes, other services come and go, the bulk service's weights
    // move under its open streams.
    let start = Instant::now();
    let mut changes = 0;
    let scheds = ["rr", "wrr", "lc", "wlc", "sed", "nq", "mh"];
    for round in 0..40 {
        let rs3 = rs4(2);
        adm(&s, &format!("-a -t {VIP4}:80 -r {rs3}:80 -m -w {}", 1 + round % 3));
        adm(&s, &format!("-e -t {VIP4}:80 -r {}:80 -m -w {}", rs4(0), 1 + round % 4));
        adm(&s, &format!("-e -t {VIP4}:80 -r {}:80 -m -w {}", rs4(1), 1 + (round + 1) % 4));
        adm(&s, &format!("-E -t {VIP4}:80 -s {}", scheds[round % scheds.len()]));
        let other = 8000 + round as u16;
        adm(&s, &format!("-A -t {VIP4}:{other} -s wlc"));
        adm(&s, &format!("-a -t {VIP4}:{other} -r {}:80 -m", rs4(round % 3)));
        adm(&s, &format!("-e -t {VIP4}:5201 -r {}:5201 -m -w {}", rs4(round % 2), 1 + round % 5));
        adm(&s, &format!("-e -t {VIP4}:80 -r {rs3}:80 -m -w 0")); // drain, then remove
        adm(&s, &format!("-d -t {VIP4}:80 -r {rs3}:80"));
        adm(&s, &format!("-D -t {VIP4}:{other}"));
        changes += 10;
        std::thread::sleep(Duration::from_millis(150));
        if start.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    adm(&s, &format!("-E -t {VIP4}:80 -s rr"));
    let (done, failed, text) = wrk_result(wrk.wait_with_output().unwrap());
    let bulk = iperf_ok(iperf.wait_with_output().unwrap());
    eprintln!("{changes} changes in {:?}; wrk: {done} requests, {failed} failed; iperf3:\n{bulk}", start.elapsed());
    assert!(changes >= 200, "only {changes} changes were made");
    assert!(done > 100, "too little load to mean anything:\n{text}");
    assert_eq!(failed, 0, "requests failed during the changes:\n{text}\n{}", xvsd.log_text());
    // Only the configuration that was set is left, and the listing is consistent.
    let saved = adm(&s, "-S -n");
    assert_eq!(saved.matches("-A ").count(), 2, "{saved}");
    assert!(!saved.contains(&rs4(2)), "{saved}");
}

#[test]
fn killing_and_restarting_xvsd_keeps_forwarding() {
    if !xvs_lab::require_root() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Setup { mut xvsd, lab, _aux } = setup(&["--metrics", "127.0.0.1:9642"]);
    let s = xvsd.socket.clone();
    adm(&s, &format!("-e -t {VIP4}:80 -r {}:80 -m -w 3 -x 5000 -y 1000", rs4(1)));
    let before = adm(&s, "-S -n");
    let wrk = start_wrk(&lab, 10);
    let iperf = start_iperf(&lab, 10);
    std::thread::sleep(Duration::from_secs(2));

    xvsd.kill();
    std::thread::sleep(Duration::from_secs(2)); // no daemon at all: XDP forwards on its own
    xvsd.restart();
    assert!(xvsd.log_text().contains("picked up the running configuration"), "{}", xvsd.log_text());
    assert_eq!(adm(&s, "-S -n"), before, "the restarted daemon has another configuration");
    let thresholds = adm(&s, "-Ln --thresholds"); // -S does not save them
    assert!(thresholds.contains(&format!("  -> {}:80                5000       1000 ", rs4(1))), "{thresholds}");

    // It takes changes again, and they reach the dataplane: rs3 joins and gets requests.
    adm(&s, &format!("-a -t {VIP4}:80 -r {}:80 -m -w 3", rs4(2)));
    std::thread::sleep(Duration::from_secs(1));
    let mut rs3 = 0;
    for _ in 0..12 {
        if lab.curl(&format!("http://{VIP4}/")).is_ok_and(|b| b.trim() == "rs3") {
            rs3 += 1;
        }
    }
    let (done, failed, text) = wrk_result(wrk.wait_with_output().unwrap());
    let bulk = iperf_ok(iperf.wait_with_output().unwrap());
    eprintln!("wrk: {done} requests, {failed} failed; iperf3:\n{bulk}");
    assert!(rs3 > 0, "the server added after the restart got no requests");
    assert!(done > 100, "too little load to mean anything:\n{text}");
    assert_eq!(failed, 0, "requests failed across the restart:\n{text}\n{}", xvsd.log_text());
    // Counters are those of the last 2-second tick, as the kernel's.
    std::thread::sleep(Duration::from_millis(2500));
    // The metrics endpoint (in the director's namespace) tells the same story.
    let m = lab.director.exec(&["curl", "-sf", "http://127.0.0.1:9642/metrics"]);
    let metrics = String::from_utf8_lossy(&m.stdout).to_string();
    let rs1 = format!("xvs_real_server_connections_total{{service=\"TCP {VIP4}:80\",real_server=\"{}:80\"}} ", rs4(0));
    let line = metrics.lines().find(|l| l.starts_with(&rs1)).unwrap_or_else(|| panic!("no {rs1}in:\n{metrics}"));
    assert!(line.rsplit(' ').next().unwrap().parse::<u64>().unwrap() > 0, "{line}");
    for name in
        ["xvs_conn_table_entries ", "xvs_conn_table_capacity ", "xvs_service_rate{", "xvs_dataplane_packets_total{"]
    {
        assert!(metrics.contains(name), "no {name} in:\n{metrics}");
    }
    let stats = adm(&s, "-Ln --stats");
    let conns: u64 = stats.lines().nth(3).and_then(|l| l.split_whitespace().nth(2)?.parse().ok()).unwrap_or(0);
    assert!(
        conns >= done,
        "the counters lost connections across the restart (counted {conns}, wrk made {done}):\n{stats}"
    );
}
