//! xvs-decap: the real server's side of the tunnel method, for hosts whose kernel lacks the
//! ipip, ip6_tnl, fou or gre modules (or that would rather not configure tunnel devices). It
//! attaches xvs's decapsulation program (`bpf/xvs_decap.bpf.c`) to the interfaces the tunnels
//! arrive on and strips IP-in-IP, GUE (on the given ports) and GRE, both families inside both,
//! for the VIPs given; everything else passes untouched. It runs until stopped (SIGTERM or
//! SIGINT), then detaches and prints its counts. The VIPs go on the loopback as for direct
//! routing (`ip addr add VIP/32 dev lo`, `arp_ignore=1`, `arp_announce=2`).

use std::net::IpAddr;

use anyhow::Context;
use clap::Parser;

/// Decapsulates IP-in-IP, GUE and GRE tunnel packets from xvs (or IPVS) directors for the VIPs
/// this real server holds.
#[derive(Parser, Debug)]
#[command(name = "xvs-decap", version)]
struct Opts {
    /// An interface tunnel packets arrive on (repeat for more).
    #[arg(short = 'i', long = "interface", required = true)]
    interfaces: Vec<String>,
    /// A VIP whose tunnel packets are decapsulated (repeat for more).
    #[arg(long = "vip", required = true)]
    vips: Vec<IpAddr>,
    /// A UDP port GUE arrives on: the directors' --tun-port (repeat for more).
    #[arg(long = "gue-port")]
    gue_ports: Vec<u16>,
}

fn main() -> anyhow::Result<()> {
    let o = Opts::parse();
    let mut d = xvs_dataplane::Decap::load().context("load the decapsulation program")?;
    for v in &o.vips {
        d.allow(*v).with_context(|| format!("allow {v}"))?;
    }
    for p in &o.gue_ports {
        anyhow::ensure!(*p != 0, "--gue-port 0 is not a port");
        d.allow_gue_port(*p)?;
    }
    for i in &o.interfaces {
        let mode = d.attach(i).with_context(|| format!("attach to {i}"))?;
        eprintln!("xvs-decap: attached to {i} ({mode:?})");
    }
    eprintln!(
        "xvs-decap: decapsulating for {} VIP(s){}; stop with SIGTERM",
        o.vips.len(),
        if o.gue_ports.is_empty() { String::new() } else { format!(", GUE on {:?}", o.gue_ports) }
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    let (done, passed) = d.counts().unwrap_or((0, 0));
    eprintln!("xvs-decap: stopped; {done} packets decapsulated, {passed} tunnel packets passed to the kernel");
    Ok(())
}
