//! A director pair under load, as operators run one: two xvsd directors with VRRP and
//! connection synchronisation, a client on the front link, two real servers on the back link
//! routing through a gateway address the master holds (keepalived's classic NAT pair: a sync
//! group of the VIP's instance and the gateway's).
//!
//! ```text
//!  client 198.18.5.10 ─┐ front bridge ┌─ a: e0 198.18.5.1  e1 198.18.6.1 ─┐ back bridge ┌─ r1 198.18.6.11
//!                      └──────────────┴─ b: e0 198.18.5.2  e1 198.18.6.2 ─┴─────────────┴─ r2 198.18.6.12
//!  VIP 198.18.5.100 (NAT :7000, DR :7001), gateway 198.18.6.254: on the master
//!  router rt: 198.18.5.253 / 198.18.6.253 (direct-routing replies, sourced from the VIP)
//! ```
//! Direct-routing replies leave the real servers from the VIP, which the master holds as a
//! local address: Linux drops such packets as martians if asked to forward them, so the real
//! servers send them through a router of their own (a source rule), as a DR site does.
//!
//! Connections held open through the master (NAT and DR) must keep answering when the master
//! is killed (SIGKILL and its links down) and again when it comes back and takes over; an
//! iperf3 stream and wrk's keep-alive HTTP connections (DR) run across both changes. Failover
//! times are printed, not asserted.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::hold::Held;
use xvs_lab::daemon::Xvsd;
use xvs_lab::{veth, Netns};
use xvsadm::client::{Socket, Transport};

const ECHO: &str = include_str!("trust/echo_server.py");
const VIP: &str = "198.18.5.100";

struct Director {
    ns: Netns,
    name: String,
    dir: PathBuf,
    conf: PathBuf,
    xvsd: Option<Xvsd>,
}

impl Director {
    fn start(&mut self) {
        let conf = self.conf.to_string_lossy().to_string();
        let args = ["-i", "e0", "-i", "e1", "--metrics", "127.0.0.1:9642", "--config", &conf];
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_xvsd"));
        match &mut self.xvsd {
            Some(x) => x.start_again(),
            None => self.xvsd = Some(Xvsd::start_in(self.ns.name(), &self.dir, &self.name, bin, &args)),
        }
    }

    /// A crash: SIGKILL, and the host's links go down with it (its pinned tables stay).
    fn crash(&mut self) {
        if let Some(x) = &mut self.xvsd {
            x.kill();
        }
        for dev in ["e0", "e1"] {
            self.ns.ip(&["link", "set", dev, "down"]);
        }
    }

    /// The host comes back: links up (its addresses are back, the VIPs it held are not: a
    /// rebooted host has none), xvsd starts with what it pinned.
    fn recover(&mut self) {
        for dev in ["e0", "e1"] {
            let _ = xvs_lab::try_sh(&["ip", "-n", self.ns.name(), "addr", "del", &format!("{VIP}/32"), "dev", dev]);
            let _ = xvs_lab::try_sh(&["ip", "-n", self.ns.name(), "addr", "del", "198.18.6.254/32", "dev", dev]);
            self.ns.ip(&["link", "set", dev, "up"]);
        }
        self.start();
    }

    fn log_text(&self) -> String {
        self.xvsd.as_ref().map(Xvsd::log_text).unwrap_or_default()
    }

    fn snapshot(&self) -> Option<xvs_api::Snapshot> {
        let mut s = Socket::connect(&self.xvsd.as_ref()?.socket).ok()?;
        match s.call(&xvs_api::Request::Snapshot { conns: true }).ok()? {
            xvs_api::Response::Snapshot(s) => Some(*s),
            _ => None,
        }
    }

    fn state(&self) -> String {
        self.snapshot().and_then(|s| s.vrrp.first().map(|v| v.state.clone())).unwrap_or_default()
    }
}

struct Lab {
    prefix: String,
    dir: PathBuf,
    a: Director,
    b: Director,
    client: Netns,
    _rs: Vec<Netns>,
    _sw: Netns,
    children: Vec<Child>,
}

fn conf(priority: u32) -> String {
    format!(
        r#"
[[service]]
address = "{VIP}:7000"
scheduler = "rr"
vrrp_instance = "VI_1"
real_server = [{{ address = "198.18.6.11:7000", method = "masq" }}, {{ address = "198.18.6.12:7000", method = "masq" }}]

[[service]]
address = "{VIP}:7001"
scheduler = "rr"
vrrp_instance = "VI_1"
real_server = [{{ address = "198.18.6.11:7001", method = "route" }}, {{ address = "198.18.6.12:7001", method = "route" }}]

[[service]]
address = "{VIP}:7002"
scheduler = "sh"
vrrp_instance = "VI_1"
real_server = [{{ address = "198.18.6.11:7002", method = "route" }}, {{ address = "198.18.6.12:7002", method = "route" }}]

[[service]]
address = "{VIP}:7003"
scheduler = "sh"
vrrp_instance = "VI_1"
real_server = [{{ address = "198.18.6.11:7003", method = "masq" }}, {{ address = "198.18.6.12:7003", method = "masq" }}]

[sysctl]
sloppy_tcp = 1

[[service]]
address = "{VIP}:80"
scheduler = "rr"
real_server = [{{ address = "198.18.6.11:80", method = "route" }}, {{ address = "198.18.6.12:80", method = "route" }}]

[[service]]
address = "{VIP}:5201"
scheduler = "rr"
real_server = [{{ address = "198.18.6.11:5201", method = "masq" }}]

[[vrrp_instance]]
name = "VI_1"
interface = "e0"
virtual_router_id = 51
priority = {priority}
advert_int = 1
virtual_ipaddress = ["{VIP}"]

[[vrrp_instance]]
name = "VI_GW"
interface = "e1"
virtual_router_id = 52
priority = {priority}
advert_int = 1
virtual_ipaddress = ["198.18.6.254"]

[[vrrp_sync_group]]
name = "G"
group = ["VI_1", "VI_GW"]

[sync_daemon]
interface = "e0"
vrrp_instance = "VI_1"
syncid = 9
"#
    )
}

impl Lab {
    fn new() -> Lab {
        let prefix = xvs_lab::unique_prefix();
        let dir = std::env::temp_dir().join(format!("{prefix}-failover"));
        std::fs::create_dir_all(&dir).unwrap();
        let sw = Netns::new(&format!("{prefix}sw"));
        for br in ["brf", "brb"] {
            sw.ip(&["link", "add", br, "type", "bridge"]);
            sw.ip(&["link", "set", br, "up"]);
        }
        let port = |ns: &Netns, dev: &str, br: &str, tag: &str, addr: &str| {
            let p = format!("p{tag}");
            veth(ns, dev, &sw, &p);
            sw.ip(&["link", "set", &p, "master", br]);
            ns.ip(&["addr", "add", addr, "dev", dev]);
        };
        let client = Netns::new(&format!("{prefix}c"));
        port(&client, "e0", "brf", "c", "198.18.5.10/24");
        // XDP rewrites checksums incrementally; a veth sender would otherwise leave partial
        // (offloaded) checksums that a rewrite cannot fix (real NICs deliver full ones).
        client.exec(&["ethtool", "-K", "e0", "tx", "off"]);
        let mut directors = Vec::new();
        for (n, i, prio) in [("a", 1, 150), ("b", 2, 100)] {
            let ns = Netns::new(&format!("{prefix}{n}"));
            port(&ns, "e0", "brf", &format!("{n}f"), &format!("198.18.5.{i}/24"));
            port(&ns, "e1", "brb", &format!("{n}b"), &format!("198.18.6.{i}/24"));
            ns.sysctl("net.ipv4.ip_forward", "1");
            let conf_path = dir.join(format!("{n}.toml"));
            std::fs::write(&conf_path, conf(prio)).unwrap();
            directors.push(Director { ns, name: n.to_string(), dir: dir.clone(), conf: conf_path, xvsd: None });
        }
        let rt = Netns::new(&format!("{prefix}rt"));
        port(&rt, "e0", "brf", "tf", "198.18.5.253/24");
        port(&rt, "e1", "brb", "tb", "198.18.6.253/24");
        rt.sysctl("net.ipv4.ip_forward", "1");
        for k in ["all", "default", "e0", "e1"] {
            rt.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0");
        }
        let echo = dir.join("echo_server.py");
        std::fs::write(&echo, ECHO).unwrap();
        let mut children = Vec::new();
        let mut rs = Vec::new();
        for (i, addr) in ["198.18.6.11", "198.18.6.12"].iter().enumerate() {
            let ns = Netns::new(&format!("{prefix}r{}", i + 1));
            port(&ns, "e0", "brb", &format!("r{}", i + 1), &format!("{addr}/24"));
            ns.ip(&["route", "add", "default", "via", "198.18.6.254"]);
            ns.ip(&["rule", "add", "from", &format!("{VIP}/32"), "lookup", "100"]);
            ns.ip(&["route", "add", "default", "via", "198.18.6.253", "table", "100"]);
            // Direct routing: the VIP on the loopback, never answered for on the link.
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
            ns.sysctl("net.ipv4.conf.all.arp_ignore", "1");
            ns.sysctl("net.ipv4.conf.all.arp_announce", "2");
            ns.exec(&["ethtool", "-K", "e0", "tx", "off"]);
            let c = ns
                .command("python3")
                .args([echo.to_str().unwrap(), &format!("rs{}", i + 1), "7000", "7001", "7002", "7003"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            children.push(c);
            // nginx with keep-alive: wrk's connections live across the failover.
            children.push(common::nginx(&ns, &dir.join(format!("nginx{}", i + 1)), &format!("rs{}", i + 1)));
            for p in [7000, 7001, 7002, 7003, 80] {
                xvs_lab::topology::wait_listening(&ns, p);
            }
            rs.push(ns);
        }
        rs.push(rt);
        let c = rs[0].command("iperf3").args(["-s", "-p", "5201"]).stdout(Stdio::null()).spawn().unwrap();
        children.push(c);
        xvs_lab::topology::wait_listening(&rs[0], 5201);
        let b = directors.pop().unwrap();
        let a = directors.pop().unwrap();
        Lab { prefix, dir, a, b, client, _rs: rs, _sw: sw, children }
    }

    /// What an operator would look at when clients cannot connect.
    fn diagnose(&self) -> String {
        let mut out = String::new();
        for (n, d) in [("a", &self.a), ("b", &self.b)] {
            let ip = |args: &[&str]| {
                let mut v = vec!["ip", "-n", d.ns.name()];
                v.extend_from_slice(args);
                let o = std::process::Command::new(v[0]).args(&v[1..]).output().unwrap();
                String::from_utf8_lossy(&o.stdout).to_string()
            };
            out += &format!("--- {n} addr ---\n{}--- {n} neigh ---\n{}", ip(&["-br", "addr"]), ip(&["neigh"]));
            out += &format!("--- {n} conns ---\n{:#?}\n", d.snapshot().map(|s| s.conns));
            out += &format!("--- {n} log ---\n{}", d.log_text());
        }
        out
    }

    fn wait(&self, secs: u64, what: &str, f: impl Fn(&Lab) -> bool) -> Duration {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "{what} not within {secs} s\n--- a ---\n{}\n--- b ---\n{}",
                self.a.log_text(),
                self.b.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        start.elapsed()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        xvs_lab::cleanup_prefix(&self.prefix);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn established_nat_and_dr_connections_survive_a_master_crash_and_its_return() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Lab::new();
    lab.a.start();
    lab.wait(8, "a (150) becomes master", |l| l.a.state() == "MASTER");
    // Connections opened before the backup runs reach it only with the master's next refresh
    // (within 30 s): if the master dies first, the backup has never heard of them. With
    // sloppy_tcp and a scheduler every director computes alike (sh), it sends their next
    // packets to the same server: direct routing needs nothing more, and NAT has its reply
    // entry made with the connection (the replies come back through the gateway address).
    let mut early = Held::open(&lab.client, &lab.dir, VIP, 4, &[7002, 7003], || lab.diagnose());
    assert_eq!(early.ping(), 0);
    lab.b.start();
    lab.wait(8, "b (100) becomes backup", |l| l.b.state() == "BACKUP");
    // On the backup the NAT and DR services are on standby (they follow VI_1).
    lab.wait(3, "b's services on standby", |l| l.b.log_text().contains("standby=true"));
    // Load: 8 held connections per port (NAT and DR) and a 20 s iperf3 stream through the NAT VIP.
    let mut held = Held::open(&lab.client, &lab.dir, VIP, 8, &[7000, 7001], || lab.diagnose());
    assert_eq!(held.ping(), 0);
    let iperf = lab
        .client
        .command("iperf3")
        .args(["-c", VIP, "-p", "5201", "-t", "20", "-b", "20M", "-J"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // HTTP through the DR VIP: wrk's 8 keep-alive connections, 10 s of patience per request.
    let wrk = lab
        .client
        .command("wrk")
        .args(["-t2", "-c8", "-d22s", "--timeout", "10s", &format!("http://{VIP}/")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The backup learns every connection (the held ones, iperf3's two and wrk's eight).
    lab.wait(5, "b holds the synchronised connections", |l| {
        l.b.snapshot().is_some_and(|s| s.conns.iter().filter(|c| c.state == "ESTABLISHED").count() >= 16 + 2 + 8)
    });
    let d = lab.b.snapshot().unwrap().daemons;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].role, "backup");
    assert!(d[0].installed >= 26, "{d:?}");
    assert!(
        lab.b.snapshot().unwrap().conns.iter().all(|c| c.vport != 7002 && c.vport != 7003),
        "the early connections must not have reached b for this check to mean anything"
    );
    // The master crashes.
    let crash = Instant::now();
    lab.a.crash();
    let t = lab.wait(8, "b takes over", |l| l.b.state() == "MASTER");
    eprintln!("b became master {t:?} after a crashed (3 × 1 s + skew {:.2} s expected)", 3.0 + 156.0 / 256.0);
    let broken = held.ping();
    eprintln!("first round trip through b completed {:?} after the crash", crash.elapsed());
    assert_eq!(broken, 0, "connections broken by the failover\n--- b ---\n{}", lab.b.log_text());
    assert_eq!(early.ping(), 0, "DR and NAT connections the backup never learned (sloppy_tcp, sh)");
    assert_eq!(held.ping(), 0);
    // New connections are b's to schedule now (its services left standby with the VIP).
    let fresh = Held::open(&lab.client, &lab.dir, VIP, 2, &[7000, 7001], || lab.diagnose());
    assert_eq!(fresh.close(), 0);
    // b is master now, and its sync daemon with it.
    assert_eq!(lab.b.snapshot().unwrap().daemons[0].role, "master");
    // a comes back (with its pinned tables), learns b's connections, and preempts b.
    lab.a.recover();
    lab.wait(6, "a starts as backup", |l| l.a.state() == "BACKUP");
    let t = lab.wait(8, "a (150) takes back from b (100)", |l| l.a.state() == "MASTER");
    eprintln!("a preempted b {t:?} after it started again");
    lab.wait(4, "b steps back", |l| l.b.state() == "BACKUP");
    let broken = held.ping();
    assert_eq!(broken, 0, "connections broken by the return\n--- a ---\n{}", lab.a.log_text());
    assert_eq!(held.close(), 0, "connections that did not close cleanly");
    assert_eq!(early.close(), 0, "early connections that did not close cleanly");
    let bytes = xvs_lab::iperf3_received(&iperf.wait_with_output().unwrap())
        .unwrap_or_else(|e| panic!("iperf3 stream broke: {e}"));
    eprintln!("iperf3: {bytes} bytes received across both changes");
    let (done, failed, text) = xvs_lab::wrk_report(&wrk.wait_with_output().unwrap());
    eprintln!("wrk through both changes: {done} requests, {failed} failed");
    assert!(done > 0 && failed == 0, "HTTP requests failed across the failovers:\n{text}");
    // What b's metrics say of it all: backup again, two transitions through master, and the
    // connections it installed as a backup.
    let m = lab.b.ns.exec(&["curl", "-sf", "http://127.0.0.1:9642/metrics"]);
    let m = String::from_utf8_lossy(&m.stdout).to_string();
    for want in [
        "xvs_vrrp_state{vrrp_instance=\"VI_1\",state=\"BACKUP\"} 1",
        "xvs_vrrp_became_master_total{vrrp_instance=\"VI_1\"} 1",
        "xvs_sync_daemon_running{role=\"backup\"} 1",
    ] {
        assert!(m.contains(want), "{want} not in b's metrics:\n{m}");
    }
    let installed = m
        .lines()
        .find(|l| l.starts_with("xvs_sync_installed_total{role=\"backup\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(installed > 0, "{m}");
}
