//! Directors behind a router's ECMP: connections/s and packets/s through the router with 1, 2
//! and 3 xvs directors, side by side in one run.
//!
//! ```text
//!  client 198.18.41.10 ── rt (e1 198.18.41.1, br0 198.18.40.1; multipath route to the VIP,
//!                            L4 hash) ─┬─ d1..d3 198.18.40.11-13 (xvsd, native XDP, DR, mh)
//!                                      └─ r1, r2 198.18.40.21-22 (VIP on lo; acceptors, sinks)
//! ```
//! The router's route is static (`ip route replace … nexthop via … nexthop via …`): the routing
//! daemon that would install it does not touch packets. Packets are SYNs of 64 flows in turn,
//! so that the router spreads them. On a 2-CPU machine the router, the directors, the client and
//! the servers share the CPUs: more directors spread the work, they cannot add CPUs; the figures
//! show what spreading costs or gains here, and that every director count works.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use xvs_lab::daemon::Xvsd;
use xvs_lab::Netns;

use crate::lab;
use crate::report::{Metric, Report};

const VIP: &str = "198.18.42.100";
const PORT: u16 = 80;

struct Lab {
    prefix: String,
    dir: std::path::PathBuf,
    rt: Netns,
    client: Netns,
    dirs: Vec<(Netns, Xvsd)>,
    rs: Vec<Netns>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.dirs.clear();
        xvs_lab::cleanup_prefix(&self.prefix);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dir_addr(i: usize) -> String {
    format!("198.18.40.{}", 11 + i)
}

fn build(xvsd: &Path, directors: usize) -> Lab {
    let prefix = xvs_lab::unique_prefix();
    let dir = std::env::temp_dir().join(format!("{prefix}-bench-ecmp"));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let xvs_lab::ecmp::Router { ns: rt, client } = xvs_lab::ecmp::Router::new(&prefix);
    let port = |ns: &Netns, tag: &str, addr: &str| xvs_lab::ecmp::attach(&rt, ns, tag, addr);
    let mut rs = Vec::new();
    for i in 0..2 {
        let ns = Netns::new(&format!("{prefix}r{}", i + 1));
        port(&ns, &format!("r{}", i + 1), &format!("198.18.40.{}", 21 + i));
        ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        ns.sysctl("net.ipv4.conf.all.arp_ignore", "1");
        ns.sysctl("net.ipv4.conf.all.arp_announce", "2");
        rs.push(ns);
    }
    let conf = dir.join("xvs.toml");
    std::fs::write(
        &conf,
        format!(
            "[sysctl]\nsloppy_tcp = 1\n\n[[service]]\naddress = \"{VIP}:{PORT}\"\nscheduler = \"mh\"\n\
             flags = [\"mh-port\"]\nreal_server = [{{ address = \"198.18.40.21:{PORT}\", method = \"route\" }}, \
             {{ address = \"198.18.40.22:{PORT}\", method = \"route\" }}]\n"
        ),
    )
    .expect("write the configuration");
    let mut dirs = Vec::new();
    for i in 0..directors {
        let name = format!("d{}", i + 1);
        let ns = Netns::new(&format!("{prefix}{name}"));
        port(&ns, &name, &dir_addr(i));
        ns.sysctl("net.ipv4.ip_forward", "1");
        let c = conf.to_string_lossy().to_string();
        // Every veth peer gets an XDP program (below), so native mode is valid, as on a NIC.
        let x =
            Xvsd::start_in(ns.name(), &dir, &name, xvsd, &["-i", "e0", "--native", "--metrics", "off", "--config", &c]);
        dirs.push((ns, x));
    }
    Lab { prefix, dir, rt, client, dirs, rs }
}

/// Measures 1..=`max` directors; records `conn_per_s` and `pps` per director count.
pub fn run(xvsd: &Path, max: usize, reps: usize, dur: Duration, report: &mut Report) -> Result<(), String> {
    let lab = build(xvsd, max);
    // Frames sent with XDP reach a veth peer only if it runs an XDP program (lab-notes).
    let mut peers: Vec<(&Netns, String)> = vec![(&lab.rt, "e1".into()), (&lab.client, "e0".into())];
    for i in 0..max {
        peers.push((&lab.rt, format!("pd{}", i + 1)));
    }
    for i in 0..lab.rs.len() {
        peers.push((&lab.rt, format!("pr{}", i + 1)));
    }
    let peer_refs: Vec<(&Netns, &str)> = peers.iter().map(|(n, d)| (*n, d.as_str())).collect();
    let _pass = pass_on(&peer_refs);
    let rs_refs: Vec<&Netns> = lab.rs.iter().collect();
    let target = SocketAddrV4::new(VIP.parse::<Ipv4Addr>().expect("literal"), PORT);
    let src_mac = lab.client.mac("e0");
    let dst_mac = lab.rt.mac("e1");
    let frames: Vec<Vec<u8>> =
        (0..64u16).map(|k| lab::syn(src_mac, dst_mac, Ipv4Addr::new(198, 18, 41, 10), target, 30_000 + k)).collect();
    for k in 1..=max {
        let mut args: Vec<String> = ["-4", "route", "replace", &format!("{VIP}/32")].map(String::from).to_vec();
        for i in 0..k {
            args.extend(["nexthop".into(), "via".into(), dir_addr(i)]);
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.rt.ip(&a);
        eprintln!("== {k} director(s) behind the router");
        let mut conns = Vec::new();
        {
            let _acc = lab::Acceptors::start_in(&rs_refs, PORT);
            let _ = lab::conn_rate_in(&lab.client, target, Duration::from_millis(300)); // warm up
            for _ in 0..reps {
                let (rate, failed, err) = lab::conn_rate_in(&lab.client, target, dur);
                if failed > 0 {
                    eprintln!("    ({failed} connection attempts failed: {err})");
                }
                conns.push(rate);
            }
        }
        let (mut got, mut offered) = (Vec::new(), Vec::new());
        {
            let sink_ifs: Vec<(&Netns, &str)> = lab.rs.iter().map(|r| (r, "e0")).collect();
            let sinks = lab::Sinks::attach_to(&sink_ifs);
            for _ in 0..reps {
                let (g, o) = lab::pps_in(&lab.client, "e0", &sinks, &frames, dur);
                got.push(g);
                offered.push(o);
            }
        }
        if conns.iter().all(|c| *c == 0.0) || got.iter().all(|g| *g == 0.0) {
            return Err(format!("nothing went through {k} director(s)"));
        }
        report.add_scale_out(k as u32, Metric::ConnRate, conns);
        report.add_scale_out(k as u32, Metric::Pps, got);
        report.add_scale_out(k as u32, Metric::OfferedPps, offered);
    }
    Ok(())
}

fn pass_on(ifaces: &[(&Netns, &str)]) -> Vec<xvs_dataplane::Aux> {
    ifaces
        .iter()
        .map(|(ns, dev)| {
            let _in = ns.enter();
            let mut a = xvs_dataplane::Aux::load().expect("load the pass program");
            a.attach_pass(dev).expect("attach the pass program");
            a
        })
        .collect()
}
