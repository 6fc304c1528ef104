//! Scale-out as operators build it: directors behind a router's ECMP, each announcing the VIP
//! over BGP through its own BIRD, the router (BIRD too) installing one multipath route with L4
//! hashing; direct routing and tunnels (IP-in-IP, GUE, GRE: xvs-decap on the real servers) to
//! four real servers; clients behind the router.
//!
//! ```text
//!  client 198.18.41.10 ── rt e1 198.18.41.1 │ rt br0 198.18.40.1 ─┬─ d1..d4 198.18.40.11-14 (xvsd + BIRD, AS 65001)
//!                         (BIRD, AS 65000,  │                     └─ r1..r4 198.18.40.21-24 (VIP on lo)
//!                          multipath, L4 hash)
//!  VIP 198.18.42.100: 80 (nginx, DR), 7001 (echo, DR), 7002 (echo, GUE with checksums),
//!  7003 (echo, GRE with checksums), 5201 (iperf3, DR), 5202 (iperf3, IP-in-IP)
//! ```
//! Every director has the same services with the mh scheduler and `sloppy_tcp`: a director that
//! receives a packet of a connection it has never seen (the router moved the flow to it) sends
//! it to the server the first director chose. The test adds a director, drains one (its route
//! withdrawn first, then xvsd stopped), kills one xvsd (the kernel removes its liveness
//! interface: BIRD withdraws at once) and crashes one host (BIRD gone, links down: the router's
//! hold time), under held connections, wrk and two iperf3 streams, and counts what broke.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::hold::Held;
use xvs_lab::daemon::Xvsd;
use xvs_lab::Netns;
use xvsadm::client::{Socket, Transport};

const ECHO: &str = include_str!("trust/echo_server.py");
const VIP: &str = "198.18.42.100";
const VIP2: &str = "198.18.42.101";
const HOLD_TIME: u32 = 3;

fn rs_addr(i: usize) -> String {
    format!("198.18.40.{}", 21 + i)
}

fn dir_addr(i: usize) -> String {
    format!("198.18.40.{}", 11 + i)
}

/// Each port's forwarding, as the file says it.
const METHODS: [(u16, &str); 6] = [
    (80, "method = \"route\""),
    (7001, "method = \"route\""),
    (7002, "method = \"tunnel\", tunnel = { kind = \"gue\", port = 6080, csum = \"csum\" }"),
    (7003, "method = \"tunnel\", tunnel = { kind = \"gre\", csum = \"csum\" }"),
    (5201, "method = \"route\""),
    (5202, "method = \"tunnel\""),
];

fn services() -> String {
    let mut out = String::from("[sysctl]\nsloppy_tcp = 1\n");
    // iperf3's control and data connections must meet at one server: its services hash the
    // client's address alone (mh), the others its port too (mh-port), so that one client's
    // connections spread over the servers.
    for (port, method) in METHODS {
        let flags = if port > 5000 && port < 6000 { "" } else { "\"mh-port\"" };
        let servers: Vec<String> =
            (0..4).map(|i| format!("{{ address = \"{}:{port}\", {method} }}", rs_addr(i))).collect();
        out += &format!(
            "\n[[service]]\naddress = \"{VIP}:{port}\"\nscheduler = \"mh\"\nflags = [{flags}]\nreal_server = [{}]\n",
            servers.join(", ")
        );
    }
    out
}

/// BIRD in the foreground in `ns`; waits until its control socket answers.
fn start_bird(ns: &Netns, conf: &std::path::Path, sock: &std::path::Path) -> Child {
    let err = std::fs::File::create(conf.with_extension("stderr")).unwrap();
    let mut c = ns
        .command("bird")
        .args(["-f", "-c", conf.to_str().unwrap(), "-s", sock.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if let Ok(Some(st)) = c.try_wait() {
            panic!(
                "BIRD exited ({st}): {}",
                std::fs::read_to_string(conf.with_extension("stderr")).unwrap_or_default()
            );
        }
        assert!(t.elapsed() < Duration::from_secs(10), "BIRD ({}) did not start", conf.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    c
}

struct Director {
    ns: Netns,
    name: String,
    addr: String,
    dir: PathBuf,
    conf: PathBuf,
    bird: Option<Child>,
    xvsd: Option<Xvsd>,
}

impl Director {
    fn bird_conf(&self) -> String {
        format!(
            "router id {a};\nlog \"{d}/{n}-bird.log\" all;\nprotocol device {{ scan time 1; }}\n\
             include \"{d}/{n}-vips*.conf\";\n\
             protocol bgp uplink {{\n  local {a} as 65001;\n  neighbor 198.18.40.1 as 65000;\n  hold time {HOLD_TIME};\n  \
             keepalive time 1;\n  connect retry time 1;\n  ipv4 {{ import none; export where proto = \"xvs_vips4\"; }};\n}}\n",
            a = self.addr,
            d = self.dir.display(),
            n = self.name
        )
    }

    fn start_bird(&mut self) {
        let conf = self.dir.join(format!("{}-bird.conf", self.name));
        std::fs::write(&conf, self.bird_conf()).unwrap();
        let sock = self.dir.join(format!("{}-bird.ctl", self.name));
        self.bird = Some(start_bird(&self.ns, &conf, &sock));
    }

    fn start(&mut self) {
        let conf = self.conf.to_string_lossy().to_string();
        let args = ["-i", "e0", "--metrics", "127.0.0.1:9642", "--config", &conf];
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_xvsd"));
        match &mut self.xvsd {
            Some(x) => x.start_again(),
            None => self.xvsd = Some(Xvsd::start_in(self.ns.name(), &self.dir, &self.name, bin, &args)),
        }
    }

    /// xvsadm against this director's xvsd: (exit code, stdout, stderr).
    fn adm(&self, args: &[&str]) -> xvsadm::run::Outcome {
        let argv: Vec<String> = std::iter::once("xvsadm").chain(args.iter().copied()).map(String::from).collect();
        let mut t = Socket::connect(&self.xvsd.as_ref().unwrap().socket).unwrap_or_else(|e| panic!("{e}"));
        xvsadm::run::run(&argv, &mut t, &mut std::io::empty())
    }

    fn snapshot(&self) -> Option<xvs_api::Snapshot> {
        let mut s = Socket::connect(&self.xvsd.as_ref()?.socket).ok()?;
        match s.call(&xvs_api::Request::Snapshot { conns: false }).ok()? {
            xvs_api::Response::Snapshot(s) => Some(*s),
            _ => None,
        }
    }

    fn log_text(&self) -> String {
        self.xvsd.as_ref().map(Xvsd::log_text).unwrap_or_default()
    }

    fn snapshot_conns(&self) -> Option<xvs_api::Snapshot> {
        let x = self.xvsd.as_ref()?;
        if !x.running() {
            return None;
        }
        let mut s = Socket::connect(&x.socket).ok()?;
        match s.call(&xvs_api::Request::Snapshot { conns: true }).ok()? {
            xvs_api::Response::Snapshot(s) => Some(*s),
            _ => None,
        }
    }
}

/// Per (client port, VIP port): each director's entry as (director, seconds left, server).
type Entries = BTreeMap<(u16, u16), Vec<(String, u64, std::net::IpAddr)>>;

struct Lab {
    prefix: String,
    dir: PathBuf,
    rt: Netns,
    client: Netns,
    dirs: Vec<Director>,
    _rs: Vec<Netns>,
    children: Vec<Child>,
}

impl Lab {
    fn new(directors: usize) -> Lab {
        let prefix = xvs_lab::unique_prefix();
        let dir = std::env::temp_dir().join(format!("{prefix}-scaleout"));
        std::fs::create_dir_all(&dir).unwrap();
        let xvs_lab::ecmp::Router { ns: rt, client } = xvs_lab::ecmp::Router::new(&prefix);
        let port = |ns: &Netns, tag: &str, addr: &str| xvs_lab::ecmp::attach(&rt, ns, tag, addr);
        let echo = dir.join("echo_server.py");
        std::fs::write(&echo, ECHO).unwrap();
        let mut children = Vec::new();
        let mut rs = Vec::new();
        for i in 0..4 {
            let ns = Netns::new(&format!("{prefix}r{}", i + 1));
            port(&ns, &format!("r{}", i + 1), &rs_addr(i));
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
            ns.sysctl("net.ipv4.conf.all.arp_ignore", "1");
            ns.sysctl("net.ipv4.conf.all.arp_announce", "2");
            for k in ["all", "default", "e0"] {
                ns.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0");
            }
            ns.exec(&["ethtool", "-K", "e0", "tx", "off"]);
            // Tunnels from the directors (IP-in-IP, GUE, GRE): this kernel has no ipip, fou or
            // gre module; xvs-decap strips them, as an operator would run it.
            let log = dir.join(format!("decap{}.log", i + 1));
            children.push(
                ns.command(env!("CARGO_BIN_EXE_xvs-decap"))
                    .args(["-i", "e0", "--vip", VIP, "--gue-port", "6080"])
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .unwrap(),
            );
            let t = Instant::now();
            while !std::fs::read_to_string(&log).unwrap_or_default().contains("decapsulating for") {
                assert!(t.elapsed() < Duration::from_secs(10), "xvs-decap: {}", std::fs::read_to_string(&log).unwrap());
                std::thread::sleep(Duration::from_millis(20));
            }
            let name = format!("rs{}", i + 1);
            children.push(
                ns.command("python3")
                    .args([echo.to_str().unwrap(), &name, "7001", "7002", "7003"])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            children.push(common::nginx(&ns, &dir.join(format!("nginx{}", i + 1)), &name));
            for p in ["5201", "5202"] {
                children.push(ns.command("iperf3").args(["-s", "-p", p]).stdout(Stdio::null()).spawn().unwrap());
            }
            for p in [80, 7001, 7002, 7003, 5201, 5202] {
                xvs_lab::topology::wait_listening(&ns, p);
            }
            rs.push(ns);
        }
        // The router's BIRD: a session per director (all of them, started or not), multipath.
        let mut rconf = String::from(
            "router id 198.18.40.1;\nprotocol device { scan time 1; }\n\
             protocol kernel { ipv4 { import none; export all; }; merge paths on; }\n",
        );
        for i in 0..4 {
            rconf += &format!(
                "protocol bgp d{n} {{\n  local 198.18.40.1 as 65000;\n  neighbor {a} as 65001;\n  hold time {HOLD_TIME};\n  \
                 keepalive time 1;\n  connect retry time 1;\n  error wait time 1, 2;\n  ipv4 {{ import all; export none; }};\n}}\n",
                n = i + 1,
                a = dir_addr(i)
            );
        }
        let rc = dir.join("rt-bird.conf");
        std::fs::write(&rc, rconf).unwrap();
        children.push(start_bird(&rt, &rc, &dir.join("rt-bird.ctl")));
        let mut dirs = Vec::new();
        for i in 0..directors {
            dirs.push(Lab::director(&prefix, &dir, &rt, i));
        }
        Lab { prefix, dir, rt, client, dirs, _rs: rs, children }
    }

    fn director(prefix: &str, dir: &std::path::Path, rt: &Netns, i: usize) -> Director {
        let name = format!("d{}", i + 1);
        let ns = Netns::new(&format!("{prefix}{name}"));
        let addr = dir_addr(i);
        xvs_lab::ecmp::attach(rt, &ns, &name, &addr);
        ns.sysctl("net.ipv4.ip_forward", "1");
        let conf = dir.join(format!("{name}.toml"));
        let bgp = format!(
            "\n[bgp]\ncontrol_socket = \"{d}/{name}-bird.ctl\"\ninclude_file = \"{d}/{name}-vips.conf\"\n",
            d = dir.display()
        );
        std::fs::write(&conf, services() + &bgp).unwrap();
        let mut d = Director { ns, name, addr, dir: dir.to_path_buf(), conf, bird: None, xvsd: None };
        d.start_bird();
        d
    }

    /// The router's next hops for the VIP.
    fn next_hops(&self) -> Vec<String> {
        self.next_hops_of(VIP)
    }

    /// The router's next hops for `vip`.
    fn next_hops_of(&self, vip: &str) -> Vec<String> {
        let out = self.rt.ip(&["-4", "route", "show", &format!("{vip}/32")]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut v: Vec<String> = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect();
        v.sort();
        v
    }

    fn wait_hops(&self, want: &[usize], secs: u64, what: &str) -> Duration {
        self.wait_hops_of(VIP, want, secs, what)
    }

    fn wait_hops_of(&self, vip: &str, want: &[usize], secs: u64, what: &str) -> Duration {
        let mut want: Vec<String> = want.iter().map(|i| dir_addr(*i)).collect();
        want.sort();
        let t = Instant::now();
        loop {
            let got = self.next_hops_of(vip);
            if got == want {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "{what}: the router's next hops are {got:?}, not {want:?}, after {secs} s\n{}",
                self.diagnose()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every director's connection entries of client port and VIP port: (director, seconds
    /// to expiry, real server).
    fn entries(&self) -> Entries {
        let mut out = Entries::new();
        for d in &self.dirs {
            let Some(snap) = d.snapshot_conns() else { continue };
            for c in snap.conns {
                out.entry((c.cport, c.vport)).or_default().push((d.addr.clone(), c.expires, c.daddr));
            }
        }
        out
    }

    fn diagnose(&self) -> String {
        let mut out = String::new();
        out += &format!("--- router routes ---\n{}", String::from_utf8_lossy(&self.rt.ip(&["route"]).stdout));
        for d in &self.dirs {
            out += &format!("--- {} log ---\n{}", d.name, d.log_text());
            out += &format!(
                "--- {} bird ---\n{}",
                d.name,
                std::fs::read_to_string(self.dir.join(format!("{}-bird.log", d.name))).unwrap_or_default()
            );
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.dirs {
            d.xvsd = None;
            if let Some(mut b) = d.bird.take() {
                let _ = b.kill();
                let _ = b.wait();
            }
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        xvs_lab::cleanup_prefix(&self.prefix);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Held connections, and which director each goes through.
trait Mapped {
    /// Pings, then tells which director each held flow went through (the one whose entry
    /// the ping refreshed: the most time left), and checks that every director that has seen a
    /// flow sent it to the same real server (the consistent choice that keeps moved flows).
    fn ping_and_map(&mut self, lab: &Lab, what: &str) -> Vec<String>;
}

impl Mapped for Held {
    fn ping_and_map(&mut self, lab: &Lab, what: &str) -> Vec<String> {
        let broken = self.ping();
        assert_eq!(broken, 0, "{what}: held flows broken\n{}", lab.diagnose());
        let entries = lab.entries();
        self.flows
            .iter()
            .map(|f| {
                let e = entries.get(f).cloned().unwrap_or_default();
                let servers: std::collections::BTreeSet<_> = e.iter().map(|x| x.2).collect();
                assert!(servers.len() <= 1, "{what}: directors disagree on the server of flow {f:?}: {e:?}");
                e.iter().max_by_key(|x| x.1).map(|x| x.0.clone()).unwrap_or_default()
            })
            .collect()
    }
}

/// The share of flows whose director changed between two maps, as text and as a fraction.
fn moved(before: &[String], after: &[String]) -> (usize, f64) {
    let n = before.iter().zip(after).filter(|(a, b)| a != b).count();
    (n, n as f64 / before.len().max(1) as f64)
}

fn spread(map: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in map {
        *m.entry(d.clone()).or_insert(0) += 1;
    }
    m
}

/// Short connections in a loop (bounded: `secs` seconds, at most 5000), each sending a line
/// and reading it back; prints and returns (done, failed).
fn churn(lab: &Lab, secs: u32) -> Child {
    let code = format!(
        "import socket,time,json\nend=time.time()+{secs}\nok=bad=0\n\
         slow=0\nworst=0.0\n\
         while time.time()<end and ok+bad<5000:\n  t=time.time()\n  try:\n    s=socket.create_connection(('{VIP}',7001),timeout=5)\n    \
         s.settimeout(5)\n    s.sendall(b'x\\n')\n    ok+= s.makefile('rb').readline()==b'x\\n'\n    s.close()\n  \
         except OSError:\n    bad+=1\n  d=time.time()-t\n  worst=max(worst,d)\n  slow+=d>0.5\n  time.sleep(0.01)\n\
         print(json.dumps({{'ok':ok,'bad':bad,'slow':slow,'worst':worst}}))\n"
    );
    lab.client.command("python3").args(["-c", &code]).stdout(Stdio::piped()).spawn().unwrap()
}

/// (completed, failed, slower than 0.5 s, the slowest in seconds).
fn churn_result(c: Child) -> (u64, u64, u64, f64) {
    let out = c.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (
        v["ok"].as_u64().unwrap_or(0),
        v["bad"].as_u64().unwrap_or(u64::MAX),
        v["slow"].as_u64().unwrap_or(0),
        v["worst"].as_f64().unwrap_or(0.0),
    )
}

#[test]
fn flows_survive_directors_joining_draining_dying_and_crashing_behind_ecmp() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Lab::new(3);
    for i in 0..3 {
        lab.dirs[i].start();
    }
    let t = lab.wait_hops(&[0, 1, 2], 20, "three directors announce");
    eprintln!("the router has three next hops {t:?} after the xvsd starts");
    let bgp = lab.dirs[0].snapshot().unwrap().bgp.expect("[bgp] state in the snapshot");
    assert!(bgp.vips.len() == 1 && bgp.vips[0].announced && bgp.vips[0].reason == "ready", "{bgp:?}");
    let listing = lab.dirs[0].adm(&["bgp"]).stdout;
    assert!(listing.contains(VIP) && listing.contains("announced"), "{listing}");

    // Load: 24 held connections per port (DR and TUN), wrk's keep-alive connections (DR), and
    // two iperf3 streams (DR and TUN), all for longer than the changes take.
    let mut held = Held::open(&lab.client, &lab.dir, VIP, 16, &[7001, 7002, 7003], || lab.diagnose());
    let servers: std::collections::BTreeSet<_> = held.servers.iter().collect();
    assert!(servers.len() >= 3, "mh spreads the connections over the servers: {servers:?}");
    let map0 = held.ping_and_map(&lab, "start");
    eprintln!("held flows per director: {:?}", spread(&map0));
    assert_eq!(spread(&map0).len(), 3, "the router spreads the flows over the three directors: {map0:?}");
    let iperf = |port: &str| {
        lab.client
            .command("iperf3")
            .args(["-c", VIP, "-p", port, "-t", "40", "-b", "20M", "-J"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ip_dr, ip_tun) = (iperf("5201"), iperf("5202"));
    let wrk = lab
        .client
        .command("wrk")
        .args(["-t2", "-c16", "-d42s", "--timeout", "10s", &format!("http://{VIP}/")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));

    // 1. A fourth director joins: the router rehashes, some flows move to it and continue.
    let prefix = lab.prefix.clone();
    let dir = lab.dir.clone();
    let d4 = Lab::director(&prefix, &dir, &lab.rt, 3);
    lab.dirs.push(d4);
    lab.dirs[3].start();
    let t = lab.wait_hops(&[0, 1, 2, 3], 20, "the fourth director announces");
    std::thread::sleep(Duration::from_millis(1100));
    let map1 = held.ping_and_map(&lab, "join");
    let (n, share) = moved(&map0, &map1);
    eprintln!(
        "join: announced {t:?} after start; {n} of {} held flows moved directors ({:.0} %), now {:?}",
        map0.len(),
        share * 100.0,
        spread(&map1)
    );
    assert!(n > 0, "the join must move some flows for this to mean anything");

    // 2. d1 is drained (withdrawn first), then stopped: its flows move and continue.
    let out = lab.dirs[0].adm(&["bgp", "drain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let t = lab.wait_hops(&[1, 2, 3], 10, "d1 drained");
    std::thread::sleep(Duration::from_millis(1100));
    let map2 = held.ping_and_map(&lab, "drain");
    let (n, _) = moved(&map1, &map2);
    eprintln!("drain: withdrawn {t:?} after the drain; {n} held flows moved, now {:?}", spread(&map2));
    assert!(!map2.contains(&dir_addr(0)), "no flow goes through the drained director");
    let listing = lab.dirs[0].adm(&["bgp"]).stdout;
    assert!(listing.contains("DRAINED") && listing.contains("withdrawn: drained by the operator"), "{listing}");
    // The drain is kept: a restarted xvsd does not announce again.
    lab.dirs[0].xvsd.as_mut().unwrap().terminate();
    lab.dirs[0].start();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.next_hops().len(), 3, "a drained director stays withdrawn across a restart");
    lab.dirs[0].xvsd.as_mut().unwrap().terminate();

    // 3. d2's xvsd is killed: the kernel removes its liveness interface, BIRD withdraws.
    lab.dirs[1].xvsd.as_mut().unwrap().kill();
    let t = lab.wait_hops(&[2, 3], HOLD_TIME as u64 + 5, "d2's VIP withdrawn after its xvsd died");
    eprintln!("kill: the router dropped d2 {t:?} after its xvsd was killed");
    std::thread::sleep(Duration::from_millis(1100));
    let map3 = held.ping_and_map(&lab, "kill");
    assert!(!map3.contains(&dir_addr(1)), "no flow goes through d2");

    // 4. d3's host crashes (xvsd and BIRD gone, link down): the router notices when the BGP
    // hold time runs out; short connections meanwhile count the SYNs lost with d3.
    let churning = churn(&lab, 8);
    std::thread::sleep(Duration::from_secs(1));
    {
        // The link first: nothing leaves the host after the crash (no FIN from BIRD's session).
        let d3 = &mut lab.dirs[2];
        d3.ns.ip(&["link", "set", "e0", "down"]);
        d3.xvsd.as_mut().unwrap().kill();
        if let Some(mut b) = d3.bird.take() {
            let _ = b.kill();
            let _ = b.wait();
        }
    }
    let t = lab.wait_hops(&[3], HOLD_TIME as u64 + 5, "d3 dropped after its crash");
    eprintln!("crash: the router dropped d3 {t:?} after the crash (hold time {HOLD_TIME} s)");
    let (ok, bad, slow, worst) = churn_result(churning);
    eprintln!(
        "crash: short connections across it: {ok} completed, {bad} failed, {slow} took over 0.5 s (slowest \
         {worst:.2} s: a SYN sent to d3 before the router knew, sent again by the client)"
    );
    assert!(ok > 0);
    let map4 = held.ping_and_map(&lab, "crash");
    assert!(map4.iter().all(|d| *d == dir_addr(3)), "every flow goes through d4 now: {map4:?}");

    assert_eq!(held.close(), 0, "connections that did not close cleanly");
    for (name, c) in [("DR", ip_dr), ("IP-in-IP", ip_tun)] {
        let bytes = xvs_lab::iperf3_received(&c.wait_with_output().unwrap())
            .unwrap_or_else(|e| panic!("iperf3 {name} stream broke: {e}"));
        eprintln!("iperf3 {name}: {bytes} bytes received across every change");
    }
    let (done, failed, text) = xvs_lab::wrk_report(&wrk.wait_with_output().unwrap());
    eprintln!("wrk across every change: {done} requests, {failed} failed");
    assert!(done > 0 && failed == 0, "HTTP requests failed:\n{text}");
}

#[test]
fn the_vip_is_announced_only_while_it_can_be_served() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Lab::new(1);
    // A second VIP whose one service has a health check and a quorum: nothing listens on the
    // checked port yet.
    let mut conf = std::fs::read_to_string(&lab.dirs[0].conf).unwrap();
    conf += &format!(
        "\n[[service]]\naddress = \"{VIP2}:7009\"\nscheduler = \"mh\"\nquorum = 1\n  [[service.real_server]]\n  \
         address = \"{}:7009\"\n  method = \"route\"\n    [[service.real_server.check]]\n    type = \"tcp\"\n    \
         delay_loop = 1\n    connect_timeout = 1\n    retry = 0\n",
        rs_addr(0)
    );
    std::fs::write(&lab.dirs[0].conf, conf).unwrap();
    lab.dirs[0].start();
    lab.wait_hops(&[0], 20, "d1 announces");
    // Quorum lost (the check fails): the second VIP is withdrawn, the first stays; the port
    // opens: announced.
    lab.wait_hops_of(VIP2, &[], 10, "the second VIP withdrawn while its quorum is lost");
    let listing = lab.dirs[0].adm(&["bgp"]).stdout;
    assert!(listing.contains(&format!("TCP {VIP2}:7009: quorum lost")), "{listing}");
    let listener = lab._rs[0]
        .command("python3")
        .args([lab.dir.join("echo_server.py").to_str().unwrap(), "rs1", "7009"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    lab.children.push(listener);
    lab.wait_hops_of(VIP2, &[0], 10, "the second VIP announced once its quorum holds");
    assert_eq!(lab.next_hops().len(), 1);
    let d = &lab.dirs[0];
    // No real server takes new connections: withdrawn; one does again: announced.
    for (port, method) in METHODS {
        // -e replaces the whole real server: its tunnel is said again.
        let tun: &[&str] = match port {
            7002 => &["-i", "--tun-type", "gue", "--tun-port", "6080", "--tun-csum"],
            7003 => &["-i", "--tun-type", "gre", "--tun-csum"],
            _ if method.contains("tunnel") => &["-i"],
            _ => &["-g"],
        };
        for i in 0..4 {
            let (svc, rs) = (format!("{VIP}:{port}"), format!("{}:{port}", rs_addr(i)));
            let mut args = vec!["-e", "-t", &svc, "-r", &rs, "-w", "0"];
            args.extend_from_slice(tun);
            let out = d.adm(&args);
            assert_eq!(out.code, 0, "{svc} {rs}: {}\n{}", out.stderr, d.adm(&["-Ln"]).stdout);
        }
    }
    lab.wait_hops(&[], 5, "withdrawn without servers");
    let listing = d.adm(&["bgp"]).stdout;
    assert!(
        listing.contains("withdrawn: TCP") && listing.contains("no real server takes new connections"),
        "{listing}"
    );
    let out = d.adm(&["-e", "-t", &format!("{VIP}:80"), "-r", &format!("{}:80", rs_addr(0)), "-w", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    lab.wait_hops(&[0], 5, "announced with one server back");

    // BIRD goes down: a drain meanwhile is written to the file, reported as not reaching BIRD,
    // and retried; BIRD reads the file when it starts, and xvsd's retry confirms.
    let conf = lab.dir.join("d1-bird.conf");
    let sock = lab.dir.join("d1-bird.ctl");
    if let Some(mut b) = lab.dirs[0].bird.take() {
        let _ = b.kill();
        let _ = b.wait();
    }
    let d = &lab.dirs[0];
    assert_eq!(d.adm(&["bgp", "drain", VIP]).code, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let b = d.snapshot().unwrap().bgp.unwrap();
        if b.error.is_some() {
            assert!(b.error.as_deref().unwrap().contains("control socket"), "{b:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no error reported while BIRD is down: {b:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = d.ns.exec(&["curl", "-sf", "http://127.0.0.1:9642/metrics"]);
    let m = String::from_utf8_lossy(&m.stdout).to_string();
    for want in ["xvs_bgp_daemon_error 1", &format!("xvs_bgp_vip_reason{{vip=\"{VIP}\",reason=\"drained\"}} 1")] {
        assert!(m.contains(want), "{want} not in the metrics:\n{m}");
    }
    let out = d.adm(&["bgp", "undrain", "198.18.42.7"]);
    assert!(out.code != 0 && out.stderr.contains("not drained"), "{out:?}");
    assert!(d.adm(&["bgp", "drain", "198.18.42.7"]).stderr.contains("not a VIP"));
    // A BIRD whose configuration does not include the file: the error says so.
    let good = std::fs::read_to_string(&conf).unwrap();
    let bad: String = good.lines().filter(|l| !l.starts_with("include")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&conf, bad).unwrap();
    lab.dirs[0].bird = Some(start_bird(&lab.dirs[0].ns, &conf, &sock));
    let d = &lab.dirs[0];
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let b = d.snapshot().unwrap().bgp.unwrap();
        if b.error.as_deref().is_some_and(|e| e.contains("must include")) {
            break;
        }
        assert!(Instant::now() < deadline, "no error about the include: {b:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The right configuration: the retry lands (BIRD already reads the drained file).
    if let Some(mut b) = lab.dirs[0].bird.take() {
        let _ = b.kill();
        let _ = b.wait();
    }
    std::fs::write(&conf, good).unwrap();
    lab.dirs[0].bird = Some(start_bird(&lab.dirs[0].ns, &conf, &sock));
    let d = &lab.dirs[0];
    let deadline = Instant::now() + Duration::from_secs(35);
    while d.snapshot().unwrap().bgp.unwrap().error.is_some() {
        assert!(Instant::now() < deadline, "the retry did not land");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(lab.next_hops().is_empty(), "a drained VIP stays withdrawn after BIRD restarts");
    assert_eq!(d.adm(&["bgp", "undrain"]).code, 0);
    lab.wait_hops(&[0], 10, "undrained");

    // A clean stop withdraws before xvsd exits, and its liveness interface goes with it.
    lab.dirs[0].xvsd.as_mut().unwrap().terminate();
    lab.wait_hops(&[], 1, "withdrawn at stop");
    let ns = lab.dirs[0].ns.name().to_string();
    assert!(!xvs_lab::try_sh(&["ip", "-n", &ns, "link", "show", "xvs-vips"]), "the liveness interface outlived xvsd");
    assert!(lab.dirs[0].log_text().contains("BIRD announces the new set of VIPs"));
    lab.dirs[0].start();
    lab.wait_hops(&[0], 10, "announced again after a start");
}
