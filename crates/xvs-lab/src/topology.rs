//! The classic load-balancer lab: a client, a director and N real servers, each in its own
//! namespace, the director routing between them.
//!
//! ```text
//!  client 198.18.1.100 ── c0 director r1 ── rs1 198.18.2.2      VIP 198.18.0.100
//!  2001:2:0:1::100         198.18.1.1  r2 ── rs2 198.18.3.2     VIP 2001:2::100
//! ```
//! Real server i sits on its own link 198.18.(i+2).0/24 (2001:2:0:(i+2)::/64). Every real
//! server routes through the director, so NAT replies come back through it; for direct routing
//! and tunnelling the servers also hold the VIPs on their loopback and do not answer ARP for
//! them, as the ipvsadm example prescribes (shared/reference/claims.md).

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{sh, try_sh, veth, Netns};

/// The VIP of the lab.
pub const VIP4: &str = "198.18.0.100";
/// The IPv6 VIP.
pub const VIP6: &str = "2001:2::100";
/// The client's address.
pub const CLIENT4: &str = "198.18.1.100";
/// The client's IPv6 address.
pub const CLIENT6: &str = "2001:2:0:1::100";

/// Real server `i`'s IPv4 address.
pub fn rs4(i: usize) -> String {
    format!("198.18.{}.2", i + 2)
}

/// Real server `i`'s IPv6 address.
pub fn rs6(i: usize) -> String {
    format!("2001:2:0:{}::2", i + 2)
}

/// How real servers are reached; decides their loopback VIPs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// NAT: servers only need a route back through the director.
    Nat,
    /// Direct routing: the VIPs on the servers' loopback.
    Dr,
    /// Tunnelling: the VIPs on the loopback; decapsulation is the test's job.
    Tun,
}

/// The running lab. Dropping it stops every server and removes every namespace.
pub struct Classic {
    /// Servers and clients started in the lab, killed on drop.
    pub children: Vec<Child>,
    /// Real server namespaces.
    pub rs: Vec<Netns>,
    /// The director's namespace.
    pub director: Netns,
    /// The client's namespace.
    pub client: Netns,
    /// The prefix of every name in this lab.
    pub prefix: String,
    /// Scratch directory (server configs), removed on drop.
    pub dir: PathBuf,
}

impl Classic {
    /// Builds the lab with `n` real servers.
    pub fn new(n: usize, mode: Mode) -> Classic {
        let prefix = crate::unique_prefix();
        let client = Netns::new(&format!("{prefix}c"));
        let director = Netns::new(&format!("{prefix}d"));
        let rs: Vec<Netns> = (0..n).map(|i| Netns::new(&format!("{prefix}r{}", i + 1))).collect();
        let dir = std::env::temp_dir().join(format!("{prefix}-lab"));
        std::fs::create_dir_all(&dir).expect("create lab directory");

        veth(&client, "eth0", &director, "c0");
        client.ip(&["addr", "add", "198.18.1.100/24", "dev", "eth0"]);
        client.ip(&["addr", "add", "2001:2:0:1::100/64", "dev", "eth0", "nodad"]);
        client.ip(&["route", "add", "default", "via", "198.18.1.1"]);
        client.ip(&["-6", "route", "add", "default", "via", "2001:2:0:1::1"]);
        director.ip(&["addr", "add", "198.18.1.1/24", "dev", "c0"]);
        director.ip(&["addr", "add", "2001:2:0:1::1/64", "dev", "c0", "nodad"]);
        // The VIPs are not on the director: XDP takes their traffic before the stack, and in
        // this lab the direct-routing replies (source: the VIP) are forwarded by the director,
        // which would drop them as martians if the VIP were its own address.
        director.sysctl("net.ipv4.ip_forward", "1");
        director.sysctl("net.ipv6.conf.all.forwarding", "1");
        director.sysctl("net.ipv4.conf.all.rp_filter", "0");

        for (i, r) in rs.iter().enumerate() {
            let dev = format!("r{}", i + 1);
            veth(r, "eth0", &director, &dev);
            let net = i + 2;
            director.ip(&["addr", "add", &format!("198.18.{net}.1/24"), "dev", &dev]);
            director.ip(&["addr", "add", &format!("2001:2:0:{net}::1/64"), "dev", &dev, "nodad"]);
            r.ip(&["addr", "add", &format!("{}/24", rs4(i)), "dev", "eth0"]);
            r.ip(&["addr", "add", &format!("{}/64", rs6(i)), "dev", "eth0", "nodad"]);
            r.ip(&["route", "add", "default", "via", &format!("198.18.{net}.1")]);
            r.ip(&["-6", "route", "add", "default", "via", &format!("2001:2:0:{net}::1")]);
            r.sysctl("net.ipv4.conf.all.rp_filter", "0");
            r.sysctl("net.ipv4.conf.eth0.rp_filter", "0");
            if mode != Mode::Nat {
                r.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"]);
                r.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "lo", "nodad"]);
                r.sysctl("net.ipv4.conf.all.arp_ignore", "1");
                r.sysctl("net.ipv4.conf.all.arp_announce", "2");
            }
        }
        // XDP rewrites checksums incrementally; a veth sender would otherwise leave partial
        // (offloaded) checksums that a rewrite cannot fix. Real NICs deliver full checksums.
        client.exec(&["ethtool", "-K", "eth0", "tx", "off"]);
        for r in &rs {
            r.exec(&["ethtool", "-K", "eth0", "tx", "off"]);
        }
        let lab = Classic { children: Vec::new(), rs, director, client, prefix, dir };
        lab.warm_neighbours();
        lab
    }

    /// Resolves every neighbour once (a ping each way), so the first packets do not meet an
    /// empty neighbour table.
    pub fn warm_neighbours(&self) {
        let _ = try_sh(&["ip", "netns", "exec", self.client.name(), "ping", "-c1", "-W1", "198.18.1.1"]);
        let _ = try_sh(&["ip", "netns", "exec", self.client.name(), "ping", "-6", "-c1", "-W1", "2001:2:0:1::1"]);
        for i in 0..self.rs.len() {
            let _ = try_sh(&["ip", "netns", "exec", self.director.name(), "ping", "-c1", "-W1", &rs4(i)]);
            let _ = try_sh(&["ip", "netns", "exec", self.director.name(), "ping", "-6", "-c1", "-W1", &rs6(i)]);
        }
    }

    /// Starts nginx in every real server, answering `rsN` on port 80 (IPv4 and IPv6).
    pub fn start_web_servers(&mut self) {
        for i in 0..self.rs.len() {
            let d = self.dir.join(format!("nginx{}", i + 1));
            std::fs::create_dir_all(&d).expect("nginx directory");
            let conf = format!(
                "worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\ndaemon off;\n\
                 events {{ worker_connections 512; }}\n\
                 http {{ access_log off; client_body_temp_path {p}; proxy_temp_path {p}; fastcgi_temp_path {p};\n\
                 server {{ listen 80 reuseport; listen [::]:80 reuseport; keepalive_timeout 0;\n\
                 location / {{ return 200 \"rs{n}\\n\"; }} }} }}\n",
                p = d.display(),
                n = i + 1
            );
            let path = d.join("nginx.conf");
            std::fs::write(&path, conf).expect("write nginx.conf");
            let child = self.rs[i]
                .command("nginx")
                .args(["-c", path.to_str().expect("utf-8 path"), "-p", d.to_str().expect("utf-8 path")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nginx (scripts/setup.sh installs nginx-light)");
            self.children.push(child);
        }
        for i in 0..self.rs.len() {
            wait_listening(&self.rs[i], 80);
        }
    }

    /// Starts a UDP echo server (answering `rsN <datagram>`) on `port` in every real server.
    pub fn start_udp_echo(&mut self, port: u16) {
        for i in 0..self.rs.len() {
            let code = format!(
                "import socket\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
                 s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\ns.bind(('::',{port}))\n\
                 while True:\n d,a=s.recvfrom(2048)\n s.sendto(b'rs{n} '+d,a)\n",
                n = i + 1
            );
            let child = self.rs[i]
                .command("python3")
                .args(["-c", &code])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the UDP echo server");
            self.children.push(child);
        }
        // Bound, not just started: a query sent before would be lost.
        for r in &self.rs {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                let out = sh(&["ip", "netns", "exec", r.name(), "ss", "-Huln", &format!("sport = :{port}")]);
                if !out.stdout.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts a web server on `port` in every real server whose behaviour follows the file
    /// [`Classic::fault_mode`] sets: `ok`, `500`, `hang`, `reset`, `slow:S`, `flap` or `stop`
    /// (see `scripts/fault_server.py`). All start in `ok`.
    pub fn start_fault_servers(&mut self, port: u16) {
        let script = self.dir.join("fault_server.py");
        std::fs::write(&script, include_str!("scripts/fault_server.py")).expect("write the fault server");
        for i in 0..self.rs.len() {
            self.fault_mode(i, "ok");
            let child = self.rs[i]
                .command("python3")
                .arg(&script)
                .args([format!("rs{}", i + 1), port.to_string()])
                .arg(self.fault_file(i))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the fault server");
            self.children.push(child);
        }
        for i in 0..self.rs.len() {
            wait_listening(&self.rs[i], port);
        }
    }

    fn fault_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("mode-rs{}", i + 1))
    }

    /// Sets how real server `i`'s fault server behaves from its next connection on.
    pub fn fault_mode(&self, i: usize, mode: &str) {
        let tmp = self.dir.join(format!("mode-rs{}.tmp", i + 1));
        std::fs::write(&tmp, mode).expect("write the mode");
        std::fs::rename(&tmp, self.fault_file(i)).expect("set the mode");
    }

    /// One HTTP request from the client with curl; the body (trimmed) or an error.
    pub fn curl(&self, url: &str) -> Result<String, String> {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", self.client.name(), "curl", "-s", "-m", "3", "--no-keepalive", url])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!("curl {url}: exit {:?}", out.status.code()))
        }
    }

    /// Starts an SCTP peer (`scripts/sctp_peer.py`, raw IP sockets: the lab's kernel may have
    /// no SCTP stack) in every real server, answering as `rsN`.
    pub fn start_sctp_peers(&mut self) {
        let script = self.dir.join("sctp_peer.py");
        std::fs::write(&script, include_str!("scripts/sctp_peer.py")).expect("write the SCTP peer");
        for i in 0..self.rs.len() {
            let child = self.rs[i]
                .command("python3")
                .arg(&script)
                .args(["serve", &format!("rs{}", i + 1)])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the SCTP peer");
            self.children.push(child);
        }
        // The raw socket is open once python runs the script's first lines: give it a moment.
        std::thread::sleep(Duration::from_millis(300));
    }

    /// One step of an SCTP association from the client (`open`, `data` or `close`, see
    /// `scripts/sctp_peer.py`) from client port `cport`; the server that answered, or an error.
    pub fn sctp(&self, step: &str, addr: &str, port: u16, cport: u16) -> Result<String, String> {
        let script = self.dir.join("sctp_peer.py");
        std::fs::write(&script, include_str!("scripts/sctp_peer.py")).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", self.client.name(), "python3"])
            .arg(&script)
            .args([step, addr, &port.to_string(), &cport.to_string()])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// One UDP request from the client; the answer or an error.
    pub fn udp(&self, addr: &str, port: u16, payload: &str) -> Result<String, String> {
        let fam = if addr.contains(':') { "AF_INET6" } else { "AF_INET" };
        let code = format!(
            "import socket,sys\ns=socket.socket(socket.{fam},socket.SOCK_DGRAM)\ns.settimeout(2)\n\
             s.sendto(b'{payload}',('{addr}',{port}))\nsys.stdout.write(s.recvfrom(2048)[0].decode())\n"
        );
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", self.client.name(), "python3", "-c", &code])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

/// Waits (up to 5 s) until something listens on TCP `port` in `ns`.
pub fn wait_listening(ns: &Netns, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let out = sh(&["ip", "netns", "exec", ns.name(), "ss", "-Htln", &format!("sport = :{port}")]);
        if !out.stdout.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port} in {}", ns.name());
}

impl Drop for Classic {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
