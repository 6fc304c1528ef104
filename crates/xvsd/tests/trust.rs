//! Never lose or misroute an established flow, shown with real clients and servers: xvsd in a
//! lab's director namespace, line-echo servers behind it, a client holding connections open.
//!
//! - A spoofed SYN flood (hping3 at full rate, 10 s) against tables far smaller than the flood:
//!   every held NAT and DR connection keeps answering during the flood and closes cleanly after.
//! - A server removed while it carries a connection, xvsd killed and restarted, a new server
//!   added: none of the old connection's packets reaches the new server.
//! - A connect() to a service with no usable server fails with ECONNREFUSED at once.
//! - A 30-day `--set` timeout and persistence keep connections and clients where they are.
//!
//! Floods and loads are bounded in count and time; no assertion is about speed.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use xvs_lab::daemon::Xvsd;
use xvs_lab::topology::{rs4, Classic, Mode, CLIENT4, VIP4};
use xvsadm::client::Socket;
use xvsadm::run::run;

const ECHO: &str = include_str!("trust/echo_server.py");
const HOLD: &str = include_str!("trust/hold.py");

/// Runs one xvsadm command against the daemon, in process; panics on failure.
fn adm(socket: &Path, args: &str) -> String {
    let argv: Vec<String> = std::iter::once("xvsadm").chain(args.split_whitespace()).map(String::from).collect();
    let mut t = Socket::connect(socket).unwrap_or_else(|e| panic!("{e}"));
    let out = run(&argv, &mut t, &mut std::io::empty());
    assert_eq!(out.code, 0, "xvsadm {args}: {}", out.stderr);
    out.stdout
}

/// A lab whose real servers run the echo server on `ports`. Client and servers are plain
/// (no XDP program of their own): xvsd attaches to veth in generic mode for them.
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

/// The client side: hold.py holding connections, driven line by line.
struct Held {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The server that answered each connection ("rs1"…).
    servers: Vec<String>,
    /// Each connection's local port.
    ports: Vec<u16>,
}

impl Held {
    fn open(lab: &Classic, per_port: usize, timeout_s: u32, ports: &[u16]) -> Held {
        let script = lab.dir.join("hold.py");
        std::fs::write(&script, HOLD).unwrap();
        let mut args =
            vec![script.to_string_lossy().to_string(), VIP4.into(), per_port.to_string(), timeout_s.to_string()];
        args.extend(ports.iter().map(|p| p.to_string()));
        let mut child = lab
            .client
            .command("python3")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hold.py");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("hold.py said {line:?}: {e}"));
        let servers = v["servers"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        let ports = v["ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u16).collect();
        Held { child, stdin, stdout, servers, ports }
    }

    /// Sends `cmd` and returns how many connections broke.
    fn say(&mut self, cmd: &str) -> u64 {
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("hold.py said {line:?}: {e}"));
        v["broken"].as_u64().unwrap()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric(lab: &Classic, name: &str) -> u64 {
    let m = lab.director.exec(&["curl", "-sf", "http://127.0.0.1:9642/metrics"]);
    let text = String::from_utf8_lossy(&m.stdout).to_string();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn held_connections_survive_a_spoofed_syn_flood() {
    // Tables far below what the flood sends (about a million SYNs in 10 s): the flood stops at
    // the half-open limit.
    held_through_a_flood(&["--max-conns", "4096", "--max-half-open", "1024"], "half_open_full", 1024);
}

/// The same with preallocated tables (`--prealloc-conns`) and a half-open limit above the
/// table's size: the flood fills the table itself, which refuses the rest while the held
/// connections carry on.
#[test]
fn held_connections_survive_a_spoofed_syn_flood_that_fills_a_preallocated_table() {
    held_through_a_flood(
        &["--max-conns", "1024", "--max-half-open", "4096", "--prealloc-conns", "all"],
        "conn_table_full",
        1024,
    );
}

/// Held connections through two 10-second floods of spoofed SYNs, with xvsd started with
/// `args`: the flood is refused with `reason` (counted), the table holds at most `room`.
fn held_through_a_flood(args: &[&str], reason: &str, room: u64) {
    if !xvs_lab::require_root() {
        return;
    }
    let lab = lab(2, Mode::Dr, &[7007, 7008]);
    let mut args = args.to_vec();
    args.extend_from_slice(&["--metrics", "127.0.0.1:9642"]);
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &args);
    if args.contains(&"--prealloc-conns") {
        assert!(xvsd.log_text().contains("connection tables preallocated"), "{}", xvsd.log_text());
    }
    let s = &xvsd.socket;
    adm(s, &format!("-A -t {VIP4}:7007 -s rr"));
    adm(s, &format!("-A -t {VIP4}:7008 -s wlc"));
    for i in 0..2 {
        adm(s, &format!("-a -t {VIP4}:7007 -r {}:7007 -m", rs4(i)));
        adm(s, &format!("-a -t {VIP4}:7008 -r {}:7008 -g", rs4(i)));
    }
    // 16 NAT and 16 DR connections, held open.
    let mut held = Held::open(&lab, 16, 10, &[7007, 7008]);
    assert_eq!(held.servers.len(), 32);
    assert!(held.servers.iter().any(|s| s == "rs1") && held.servers.iter().any(|s| s == "rs2"), "{:?}", held.servers);
    assert_eq!(held.say("ping"), 0, "before the flood");

    let flood = |port: u16| {
        lab.client
            .command("timeout")
            .args(["-s", "INT", "10", "hping3", "--flood", "--rand-source", "-S", "-p", &port.to_string(), VIP4])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hping3")
    };
    let mut floods = [flood(7007), flood(7008)];
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(9) {
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(held.say("ping"), 0, "held connections broke during the flood:\n{}", xvsd.log_text());
        rounds += 1;
    }
    for f in &mut floods {
        let _ = f.wait();
    }
    let refused = metric(&lab, &format!("xvs_dataplane_packets_total{{reason=\"{reason}\"}}"));
    let early = metric(&lab, "xvs_early_drops_total");
    eprintln!("flood: {refused} SYNs refused ({reason}), {early} unassured entries dropped early");
    assert!(refused > 0, "the flood was never refused with {reason}");
    assert!(rounds >= 3);
    assert_eq!(held.say("ping"), 0, "after the flood");
    // The counters are those of the table: the held connections plus at most `room` (the
    // half-open limit, which each CPU may pass by one at the same instant, or the table's
    // size), never the flood's size.
    let listing = adm(s, "-Ln");
    let active: u64 = listing
        .lines()
        .filter(|l| l.trim_start().starts_with("->"))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse::<u64>().ok())
        .sum();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert!((32..=32 + room + 4 * cpus).contains(&active), "ActiveConn {active}:\n{listing}");
    assert_eq!(held.say("close"), 0, "held connections did not close cleanly");
}

#[test]
fn a_restarted_xvsd_never_gives_a_busy_removed_servers_connections_to_another() {
    if !xvs_lab::require_root() {
        return;
    }
    let lab = lab(2, Mode::Nat, &[7007]);
    let mut xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &[]);
    let s = xvsd.socket.clone();
    adm(&s, &format!("-A -t {VIP4}:7007 -s rr"));
    adm(&s, &format!("-a -t {VIP4}:7007 -r {}:7007 -m", rs4(0)));
    let mut held = Held::open(&lab, 1, 3, &[7007]);
    assert_eq!(held.servers, ["rs1"]);
    let port = held.ports[0];
    // rs1 leaves while the connection lives; the daemon restarts; rs2 joins.
    adm(&s, &format!("-d -t {VIP4}:7007 -r {}:7007", rs4(0)));
    xvsd.kill();
    xvsd.restart();
    assert!(xvsd.log_text().contains("kept a removed server"), "{}", xvsd.log_text());
    adm(&s, &format!("-a -t {VIP4}:7007 -r {}:7007 -m", rs4(1)));
    // Count, on rs2, every packet of the old connection that would reach it.
    let rs2 = &lab.rs[1];
    rs2.exec(&["nft", "add", "table", "inet", "xvstrust"]);
    rs2.exec(&["nft", "add", "chain", "inet", "xvstrust", "in", "{ type filter hook prerouting priority -300; }"]);
    let out = rs2.exec(&[
        "nft",
        "add",
        "rule",
        "inet",
        "xvstrust",
        "in",
        "ip",
        "saddr",
        CLIENT4,
        "tcp",
        "sport",
        &port.to_string(),
        "counter",
    ]);
    assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    // The old connection sends; its packets are dropped (its server is gone), not delivered
    // to rs2. A new connection goes to rs2.
    assert_eq!(held.say("ping"), 1, "the removed server's connection should not be answered");
    let fresh = Held::open(&lab, 1, 3, &[7007]);
    assert_eq!(fresh.servers, ["rs2"]);
    let rules = rs2.exec(&["nft", "list", "chain", "inet", "xvstrust", "in"]);
    let rules = String::from_utf8_lossy(&rules.stdout).to_string();
    assert!(rules.contains("counter packets 0 bytes 0"), "the old connection reached rs2:\n{rules}");
}

#[test]
fn a_service_without_usable_servers_refuses_at_once() {
    if !xvs_lab::require_root() {
        return;
    }
    let lab = lab(1, Mode::Nat, &[7007]);
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &[]);
    let s = &xvsd.socket;
    adm(s, &format!("-A -t {VIP4}:7007 -s rr")); // no server at all
    adm(s, &format!("-A -t {VIP4}:7008 -s sh"));
    adm(s, &format!("-a -t {VIP4}:7008 -r {}:7007 -m -w 0", rs4(0))); // sh: weight 0 is unusable
    for port in [7007, 7008] {
        let t = Instant::now();
        let said = connect(&lab, port);
        let took = t.elapsed();
        assert_eq!(said, "refused", "port {port}: connect() gave {said} after {took:?}");
        assert!(took < Duration::from_secs(1), "port {port}: refused only after {took:?}");
    }
}

#[test]
fn a_thirty_day_timeout_keeps_connections_and_persistence() {
    if !xvs_lab::require_root() {
        return;
    }
    let lab = lab(2, Mode::Nat, &[7007]);
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &[]);
    let s = &xvsd.socket;
    adm(s, "--set 2592000 0 0");
    adm(s, &format!("-A -t {VIP4}:7007 -s rr -p 2678400"));
    for i in 0..2 {
        adm(s, &format!("-a -t {VIP4}:7007 -r {}:7007 -m", rs4(i)));
    }
    let mut held = Held::open(&lab, 4, 5, &[7007]);
    assert!(
        held.servers.iter().all(|s| *s == held.servers[0]),
        "persistence: one server for the client {:?}",
        held.servers
    );
    std::thread::sleep(Duration::from_secs(3)); // several sweeps
    assert_eq!(held.say("ping"), 0);
    let conns = adm(s, "-Lcn");
    let established: Vec<&str> = conns.lines().filter(|l| l.contains("ESTABLISHED")).collect();
    assert_eq!(established.len(), 4, "{conns}");
    for l in &established {
        // "TCP 719:59 ESTABLISHED ...": minutes:seconds left, close to 30 days.
        let left = l.split_whitespace().nth(1).unwrap();
        let minutes: u64 = left.split(':').next().unwrap().parse().unwrap();
        assert!(minutes > 43_000, "{l}");
    }
    let later = Held::open(&lab, 1, 5, &[7007]);
    assert_eq!(later.servers[0], held.servers[0], "the template still holds the client");
    assert_eq!(held.say("close"), 0);
}

/// Whether a client connect() to `port` succeeds ("connected"), is refused, or times out.
fn connect(lab: &Classic, port: u16) -> String {
    let out = lab.client.exec(&[
        "python3",
        "-c",
        &format!(
            "import socket\ntry:\n socket.create_connection(('{VIP4}', {port}), timeout=2)\n print('connected')\n\
             except ConnectionRefusedError:\n print('refused')\nexcept OSError as e:\n print(type(e).__name__)"
        ),
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn allowed_sources_filter_clients_as_the_firewall_did() {
    if !xvs_lab::require_root() {
        return;
    }
    let lab = lab(1, Mode::Nat, &[7007]);
    let mut xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &[]);
    let s = xvsd.socket.clone();
    let file = lab.dir.join("lb.toml");
    let write = |allowed: &str| {
        std::fs::write(
            &file,
            format!(
                "[[service]]\naddress = \"{VIP4}:7007\"\nscheduler = \"rr\"\nallowed_sources = [{allowed}]\n\
                 [[service.real_server]]\naddress = \"{}:7007\"\nmethod = \"masq\"\n",
                rs4(0)
            ),
        )
        .unwrap();
    };
    write(&format!("\"{CLIENT4}\", \"2001:2::/48\""));
    let err = {
        let argv: Vec<String> =
            ["xvsadm", "apply", "-f", file.to_str().unwrap()].iter().map(|s| s.to_string()).collect();
        let mut t = Socket::connect(&s).unwrap();
        run(&argv, &mut t, &mut std::io::empty())
    };
    assert_ne!(err.code, 0, "an IPv6 prefix on an IPv4 service is refused");
    assert!(err.stderr.contains("address family"), "{}", err.stderr);
    write("\"198.18.1.0/24\"");
    adm(&s, &format!("apply -f {}", file.display()));
    assert_eq!(connect(&lab, 7007), "connected");
    let listing = adm(&s, "-Ln");
    assert!(listing.contains(&format!("TCP  {VIP4}:7007 rr allow 198.18.1.0/24")), "{listing}");
    assert!(adm(&s, &format!("apply -f {}", file.display())).contains("no changes"));
    // Narrowed to another network: this client's connections are dropped, as a firewall
    // DROP rule would (no answer at all).
    write("\"198.18.9.0/24\"");
    adm(&s, &format!("apply -f {}", file.display()));
    assert_eq!(connect(&lab, 7007), "TimeoutError");
    // An ipvsadm -E keeps the list; a restart reads it back from the dataplane.
    adm(&s, &format!("-E -t {VIP4}:7007 -s wlc"));
    xvsd.restart();
    let listing = adm(&s, "-Ln");
    assert!(listing.contains(&format!("TCP  {VIP4}:7007 wlc allow 198.18.9.0/24")), "{listing}");
    assert_eq!(connect(&lab, 7007), "TimeoutError");
}

#[test]
fn a_second_xvsd_refuses_and_the_first_keeps_serving() {
    if !xvs_lab::require_root() {
        return;
    }
    let lab = lab(1, Mode::Nat, &[7007]);
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &[]);
    let s = xvsd.socket.clone();
    adm(&s, &format!("-A -t {VIP4}:7007 -s rr"));
    adm(&s, &format!("-a -t {VIP4}:7007 -r {}:7007 -m", rs4(0)));
    let out = lab
        .director
        .command(env!("CARGO_BIN_EXE_xvsd"))
        .args(["-i", "c0", "--metrics", "off", "--pin-dir"])
        .arg(xvsd.pins())
        .arg("--socket")
        .arg(&s)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second xvsd started:\n{err}");
    assert!(err.contains("another xvsd (pid ") && err.contains("stop it first"), "{err}");
    // The first one still answers on its socket and still forwards.
    assert!(adm(&s, "-Ln").contains(&format!("{}:7007", rs4(0))));
    assert_eq!(connect(&lab, 7007), "connected");
}

#[test]
fn xvsd_tells_systemd_it_is_ready_and_a_busy_metrics_port_does_not_stop_it() {
    if !xvs_lab::require_root() {
        return;
    }
    let lab = lab(1, Mode::Nat, &[7007]);
    // Something else holds the metrics port in the director's namespace.
    let busy = {
        let _in = lab.director.enter();
        std::net::TcpListener::bind("127.0.0.1:9655").unwrap()
    };
    let notify = lab.dir.join("notify.sock");
    let sd = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    sd.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let pins = xvs_lab::PinDir::new(&format!("{}sd", lab.prefix));
    let socket = lab.dir.join("sd.sock");
    let child = lab
        .director
        .command(env!("CARGO_BIN_EXE_xvsd"))
        .args(["-i", "c0", "--metrics", "127.0.0.1:9655", "--pin-dir"])
        .arg(pins.path())
        .arg("--socket")
        .arg(&socket)
        .arg("--state-file")
        .arg(lab.dir.join("sd.health.json"))
        .env("NOTIFY_SOCKET", &notify)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sd.recv(&mut buf).expect("no readiness notification within 30 s");
    let said = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(said.contains("READY=1"), "{said}");
    // Ready means answering, with the metrics port still taken.
    assert!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions()) & 0o777 == 0o600
    );
    adm(&socket, &format!("-A -t {VIP4}:7007 -s rr"));
    drop(busy);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    xvs_lab::daemon::remove_lock_files(pins.path());
    assert!(out.status.success(), "{log}");
    assert!(log.contains("cannot serve metrics and the status page yet"), "{log}");
}
