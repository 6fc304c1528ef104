//! The load balancers measured against xvs, configured as their users configure them, and the
//! control-plane operations timed on each.
//!
//! - iptables: the rules kube-proxy's iptables mode writes — a KUBE-SERVICES dispatch rule per
//!   service, a service chain choosing a back end with `-m statistic --mode random`, and a DNAT
//!   chain per back end — loaded with iptables-restore (Debian's iptables, nf_tables backend).
//! - nftables: one verdict map `ip daddr . tcp dport` → the service's chain, which DNATs to a
//!   back end chosen by `numgen random` — loaded with `nft -f`.
//! - HAProxy in TCP mode: one frontend binding every service address, round robin over the two
//!   servers (a server without a port takes the one the client asked for).

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xvs_lab::Netns;

use crate::lab::{real_servers, service, vips};

/// Runs `args` in the director's namespace with `input` on stdin; the time it took.
pub fn timed(ns: &Netns, args: &[&str], input: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let mut child = ns
        .command(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    child.stdin.take().expect("piped").write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(took)
}

/// A kernel-based peer: how to write, extend, shrink and list its rules.
pub trait Rules {
    /// Its name in the results.
    fn name(&self) -> &'static str;
    /// The whole ruleset for `n` services and the command that loads it.
    fn install(&self, n: u32) -> (Vec<&'static str>, String);
    /// Adds service `i` to a loaded ruleset.
    fn add_one(&self, i: u32) -> (Vec<&'static str>, String);
    /// Removes service `i`.
    fn remove_one(&self, i: u32) -> (Vec<&'static str>, String);
    /// Lists the ruleset.
    fn list(&self) -> Vec<&'static str>;
    /// Removes everything.
    fn flush(&self) -> (Vec<&'static str>, String);
}

/// kube-proxy's iptables mode.
pub struct Iptables;

fn ipt_service(out: &mut String, i: u32) {
    let s = service(i);
    let [a, b] = real_servers();
    let p = s.port();
    let _ = writeln!(out, "-A KUBE-SERVICES -d {}/32 -p tcp -m tcp --dport {p} -j KUBE-SVC-{i}", s.ip());
    let _ = writeln!(out, "-A KUBE-SVC-{i} -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-{i}-A");
    let _ = writeln!(out, "-A KUBE-SVC-{i} -j KUBE-SEP-{i}-B");
    let _ = writeln!(out, "-A KUBE-SEP-{i}-A -p tcp -m tcp -j DNAT --to-destination {a}:{p}");
    let _ = writeln!(out, "-A KUBE-SEP-{i}-B -p tcp -m tcp -j DNAT --to-destination {b}:{p}");
}

fn ipt_chains(out: &mut String, i: u32) {
    let _ = writeln!(out, ":KUBE-SVC-{i} - [0:0]\n:KUBE-SEP-{i}-A - [0:0]\n:KUBE-SEP-{i}-B - [0:0]");
}

impl Rules for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn install(&self, n: u32) -> (Vec<&'static str>, String) {
        let mut s = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n");
        for i in 0..n {
            ipt_chains(&mut s, i);
        }
        s.push_str("-A PREROUTING -j KUBE-SERVICES\n");
        for i in 0..n {
            ipt_service(&mut s, i);
        }
        s.push_str("COMMIT\n");
        (vec!["iptables-restore"], s)
    }

    fn add_one(&self, i: u32) -> (Vec<&'static str>, String) {
        let mut s = String::from("*nat\n");
        ipt_chains(&mut s, i);
        ipt_service(&mut s, i);
        s.push_str("COMMIT\n");
        (vec!["iptables-restore", "--noflush"], s)
    }

    fn remove_one(&self, i: u32) -> (Vec<&'static str>, String) {
        let sv = service(i);
        let s = format!(
            "*nat\n-D KUBE-SERVICES -d {}/32 -p tcp -m tcp --dport {} -j KUBE-SVC-{i}\n-F KUBE-SVC-{i}\n-F KUBE-SEP-{i}-A\n-F KUBE-SEP-{i}-B\n-X KUBE-SVC-{i}\n-X KUBE-SEP-{i}-A\n-X KUBE-SEP-{i}-B\nCOMMIT\n",
            sv.ip(),
            sv.port()
        );
        (vec!["iptables-restore", "--noflush"], s)
    }

    fn list(&self) -> Vec<&'static str> {
        vec!["iptables-save", "-t", "nat"]
    }

    fn flush(&self) -> (Vec<&'static str>, String) {
        (vec!["iptables-restore"], "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n".into())
    }
}

/// nftables with a verdict map.
pub struct Nftables;

fn nft_chain(i: u32) -> String {
    let [a, b] = real_servers();
    format!("chain svc{i} {{\ndnat to numgen random mod 2 map {{ 0 : {a}, 1 : {b} }}\n}}\n")
}

fn nft_element(i: u32) -> String {
    let s = service(i);
    format!("{} . {} : goto svc{i}", s.ip(), s.port())
}

impl Rules for Nftables {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn install(&self, n: u32) -> (Vec<&'static str>, String) {
        let mut s = String::from("table ip xvsbench {\n");
        for i in 0..n {
            s.push_str(&nft_chain(i));
        }
        s.push_str("map services {\ntype ipv4_addr . inet_service : verdict\n");
        if n > 0 {
            s.push_str("elements = {\n");
            for i in 0..n {
                let _ = writeln!(s, "{},", nft_element(i));
            }
            s.push_str("}\n");
        }
        s.push_str("}\nchain prerouting {\ntype nat hook prerouting priority dstnat; policy accept;\nip daddr . tcp dport vmap @services\n}\n}\n");
        (vec!["nft", "-f", "-"], s)
    }

    fn add_one(&self, i: u32) -> (Vec<&'static str>, String) {
        let s = format!(
            "table ip xvsbench {{\n{}}}\nadd element ip xvsbench services {{ {} }}\n",
            nft_chain(i),
            nft_element(i)
        );
        (vec!["nft", "-f", "-"], s)
    }

    fn remove_one(&self, i: u32) -> (Vec<&'static str>, String) {
        let sv = service(i);
        let s = format!(
            "delete element ip xvsbench services {{ {} . {} }}\ndelete chain ip xvsbench svc{i}\n",
            sv.ip(),
            sv.port()
        );
        (vec!["nft", "-f", "-"], s)
    }

    fn list(&self) -> Vec<&'static str> {
        vec!["nft", "list", "ruleset"]
    }

    fn flush(&self) -> (Vec<&'static str>, String) {
        (vec!["nft", "-f", "-"], "table ip xvsbench\ndelete table ip xvsbench\n".into())
    }
}

/// HAProxy in TCP mode, running in the director's namespace while this value lives.
pub struct Haproxy {
    child: std::process::Child,
    ns: String,
    vips: Vec<std::net::Ipv4Addr>,
}

impl Haproxy {
    /// Writes the configuration for `n` services into `dir`, puts the VIPs on the director's
    /// loopback (HAProxy binds them) and starts HAProxy; returns when the last service listens.
    pub fn start(director: &Netns, dir: &std::path::Path, n: u32) -> Result<Haproxy, String> {
        let [a, b] = real_servers();
        let mut cfg = String::from(
            "global\n  maxconn 4000\n  nbthread 1\n  log stderr format short local0 emerg\n\
             defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
             frontend services\n",
        );
        for i in 0..n {
            let s = service(i);
            let _ = writeln!(cfg, "  bind {}:{}", s.ip(), s.port());
        }
        let _ = write!(
            cfg,
            "  default_backend servers\nbackend servers\n  balance roundrobin\n  server rs1 {a}\n  server rs2 {b}\n"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
        let vips = vips(n);
        for v in &vips {
            director.ip(&["addr", "add", &format!("{v}/32"), "dev", "lo"]);
        }
        let child = director
            .command("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("haproxy: {e}"))?;
        let mut h = Haproxy { child, ns: director.name().to_string(), vips };
        let last = service(n - 1);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("ip")
                .args(["netns", "exec", &h.ns, "ss", "-Htln", &format!("sport = :{}", last.port())])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.stdout.is_empty() {
                break;
            }
            if let Ok(Some(st)) = h.child.try_wait() {
                return Err(format!("haproxy exited: {st}"));
            }
            if Instant::now() > deadline {
                return Err("haproxy did not start listening within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(h)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for v in &self.vips {
            let _ = Command::new("ip")
                .args(["netns", "exec", &self.ns, "ip", "addr", "del", &format!("{v}/32"), "dev", "lo"])
                .output();
        }
    }
}
