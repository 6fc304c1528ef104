//! Runs one kind of packet through the director over and over, for a profiler to attribute the
//! program's time (docs/benchmarks.md, "Where a packet's time goes"):
//!
//!     cargo build --release -p xvs-dataplane --example profile_path
//!     perf record -g -- target/release/examples/profile_path new 5 dr
//!
//! `new`: SYNs of distinct flows (each makes a connection); `established`: ACKs of one
//! connection made first; `sweep`: a million connections made, then xvsd's sweeps (in steps). Direct routing (`dr`, the default), tunnelling (`tun`) or NAT
//! (`nat`), rr over two real servers, in a private namespace (the tests' lab). At most
//! `seconds` (default 5) and 2,000,000 packets.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use xvs_core::{ForwardMethod, SchedKind, TcpFlags};
use xvs_dataplane::action;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("new", String::as_str).to_string();
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let method = match args.get(3).map_or("dr", String::as_str) {
        "dr" => ForwardMethod::Route,
        "tun" => ForwardMethod::Tunnel,
        "nat" => ForwardMethod::Masq,
        _ => usage(),
    };
    if what != "new" && what != "established" && what != "sweep" {
        usage();
    }
    // Room for every flow, none of them completing its handshake.
    let mut lab = Lab::with_options(|o| {
        o.max_conns = 1 << 21;
        o.max_half = 1 << 21;
    });
    let key = lab.service(vip4(80), SchedKind::Rr);
    lab.dest(&key, RS4[0], 80, method_cfg(method));
    lab.dest(&key, RS4[1], 80, method_cfg(method));
    let packet = |port: u16, flags: u8, lab: &Lab| {
        // Clients spread over a /16 so that two million flows never repeat.
        frame((ip(CLIENT4), port), (ip(VIP4), 80), Some(flags), b"", CLIENT_MAC, lab.mac_d0)
    };
    let ack = packet(40000, TcpFlags::ACK, &lab);
    if what == "established" {
        let syn = packet(40000, TcpFlags::SYN, &lab);
        assert_eq!(lab.run_client(&syn).action, action::REDIRECT);
        assert_eq!(lab.run_client(&ack).action, action::REDIRECT);
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    // `sweep`: a million connections made first, then the sweep xvsd runs, in steps.
    let (seconds, limit) = if what == "sweep" { (60, 1_000_000) } else { (seconds, 2_000_000) };
    while start.elapsed() < Duration::from_secs(seconds) && n < limit {
        let r = if what != "established" {
            let mut f = packet(1024 + (n % 60000) as u16, TcpFlags::SYN, &lab);
            // A distinct client address every 60,000 ports (the frame's IPv4 source, bytes 26..30;
            // etherparse wrote its checksum for the first address, and the director does not check it).
            let hi = (n / 60000) as u16;
            f[28..30].copy_from_slice(&hi.to_be_bytes());
            lab.run_client(&f)
        } else {
            lab.run_client(&ack)
        };
        assert_eq!(r.action, action::REDIRECT, "packet {n} not forwarded");
        n += 1;
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{what}: {n} packets, {per:.0} ns each with the test-run call");
    if what == "sweep" {
        // Reading the whole table from user space (listings, sync, adoption): by keys, and in
        // batches.
        let t = Instant::now();
        let by_key = lab.dp.maps.conn4.iter().flatten().count();
        let keys_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let batched = xvs_dataplane::batch::hash_entries(&lab.dp.maps.conn4).len();
        println!(
            "read the table: {by_key} by key {keys_ms:.0} ms, {batched} in batches {:.0} ms",
            t.elapsed().as_secs_f64() * 1000.0
        );
        let t = Instant::now();
        let out = lab.dp.sweep(0).expect("sweep");
        println!("one sweep in one go: {} connections, {:.1} ms", out.seen, t.elapsed().as_secs_f64() * 1000.0);
        let mut sweeper = xvs_dataplane::Sweeper::default();
        let start = Instant::now();
        let (mut sweeps, mut seen) = (0u32, 0u64);
        let mut pass = 0;
        while start.elapsed() < Duration::from_secs(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5)) {
            let plan = sweeper.plan(&lab.dp).expect("plan");
            let done = plan.execute(&lab.dp).expect("sweep");
            seen += sweeper.record(&plan, &done, lab.dp.options.max_half).seen;
            pass += done.steps[0].seen;
            if done.steps[0].finished {
                println!("a pass visited {pass} connections");
                pass = 0;
            }
            sweeps += 1;
        }
        let per = start.elapsed().as_secs_f64() * 1000.0 / f64::from(sweeps);
        println!(
            "sweep: {sweeps} sweeps of {} connections, {per:.1} ms each (stepwise: {})",
            seen / u64::from(sweeps),
            sweeper.stepping()
        );
    }
}

fn usage() -> ! {
    eprintln!("usage: profile_path new|established|sweep [SECONDS] [dr|tun|nat]");
    std::process::exit(2);
}
