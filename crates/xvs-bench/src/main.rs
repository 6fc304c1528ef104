//! `xvs-bench`: measures the claim that IPVS-style hashing beats iptables chains as services
//! grow — xvs (NAT and direct routing) against iptables as kube-proxy writes it, nftables with a
//! verdict map, HAProxy in TCP mode, Katran's XDP balancer (the per-packet yardstick only), and
//! a bare XDP forwarder that does no lookup at all.
//!
//! For each N it configures N services on every peer in turn, in one lab, and measures side by
//! side: per-packet cost (BPF_PROG_TEST_RUN, and each program's own time from the kernel's run
//! statistics: the yardstick), new TCP connections per second and packets per
//! second through the director to the last service, and the control plane (install N, add and
//! remove one at N, list N). Every figure is kept per repetition and reported as
//! min/median/max; the headline is ratios between peers of the same run, because this machine
//! is shared and noisy. Results go to a folder as JSON, markdown and PNG plots.

mod katran;
mod lab;
mod peers;
mod report;
mod scaleout;
mod xvs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use xvs_dataplane::{Aux, BareCfg};
use xvs_lab::daemon::Xvsd;
use xvs_lab::topology::Classic;

use crate::peers::{timed, Haproxy, Iptables, Nftables, Rules};
use crate::report::{Metric, Report};

/// Benchmark xvs against iptables, nftables, HAProxy and a bare XDP forwarder.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Opts {
    /// Quick mode (≤ 2 minutes): N = 1 and 1000, 2 repetitions of 0.5 s. It checks that the
    /// harness works; its figures are rough.
    #[arg(long)]
    quick: bool,
    /// Where results go (default bench-results/<UTC time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Service counts (default 1,1000,10000,100000).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<u32>>,
    /// Repetitions of each measurement (default 5).
    #[arg(long)]
    reps: Option<usize>,
    /// Seconds of traffic per repetition (default 2).
    #[arg(long)]
    seconds: Option<f64>,
    /// Peers to measure (default all): xvs, katran (measured with xvs, needs it), iptables, nftables, haproxy, bare.
    #[arg(long, value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// Largest N for iptables (its install time grows with N; default 100000).
    #[arg(long, default_value_t = 100_000)]
    iptables_max: u32,
    /// Largest N for nftables (a chain per service: installing and listing 100k takes
    /// minutes; default 10000).
    #[arg(long, default_value_t = 10_000)]
    nftables_max: u32,
    /// Largest N for HAProxy (one listening socket per service; default 10000).
    #[arg(long, default_value_t = 10_000)]
    haproxy_max: u32,
    /// Directors behind a router's ECMP, measured 1..=this many side by side (default 3; 2
    /// in quick mode; 0 leaves the measurement out).
    #[arg(long)]
    directors: Option<usize>,
    /// xvsd's --prealloc-conns for the xvs peers: none (the default), ipv4 or all.
    #[arg(long, default_value = "none", value_parser = ["none", "ipv4", "all"])]
    xvs_prealloc: String,
}

struct Plan {
    quick: bool,
    peers: Vec<String>,
    sizes: Vec<u32>,
    reps: usize,
    dur: Duration,
    new_flows: u16,
    out: PathBuf,
    iptables_max: u32,
    nftables_max: u32,
    haproxy_max: u32,
    xvs_prealloc: String,
}

fn bin(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    let p = me.parent().expect("a directory").join(name);
    if !p.exists() {
        // Tests run from target/<profile>/deps.
        let up = me.parent().and_then(Path::parent).map(|d| d.join(name));
        if let Some(u) = up.filter(|u| u.exists()) {
            return u;
        }
    }
    p
}

fn machine() -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let mem = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| format!("{:.1} GiB", k as f64 / 1048576.0))
        .unwrap_or_default();
    let uname = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let tool = |cmd: &[&str]| {
        std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
            .unwrap_or_else(|_| "absent".into())
    };
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    vec![
        ("date".into(), date),
        ("cpu".into(), format!("{cpu} × {}", std::thread::available_parallelism().map_or(1, |n| n.get()))),
        ("memory".into(), mem),
        ("kernel".into(), uname),
        ("iptables".into(), tool(&["iptables", "--version"])),
        ("nft".into(), tool(&["nft", "--version"])),
        ("haproxy".into(), tool(&["haproxy", "-v"])),
    ]
}

fn main() {
    let o = Opts::parse();
    if !xvs_lab::privileged() {
        eprintln!("xvs-bench needs root (network namespaces, XDP, iptables)");
        std::process::exit(1);
    }
    let plan = Plan {
        peers: o
            .peers
            .clone()
            .unwrap_or_else(|| ["xvs", "katran", "iptables", "nftables", "haproxy", "bare"].map(String::from).to_vec()),
        quick: o.quick,
        sizes: o.sizes.clone().unwrap_or_else(|| if o.quick { vec![1, 1000] } else { vec![1, 1000, 10_000, 100_000] }),
        reps: o.reps.unwrap_or(if o.quick { 2 } else { 5 }),
        dur: Duration::from_secs_f64(o.seconds.unwrap_or(if o.quick { 0.5 } else { 2.0 })),
        new_flows: if o.quick { 300 } else { 2000 },
        out: o.out.clone().unwrap_or_else(|| {
            let stamp = std::process::Command::new("date")
                .args(["-u", "+%Y%m%d-%H%M%S"])
                .output()
                .map(|x| String::from_utf8_lossy(&x.stdout).trim().to_string())
                .unwrap_or_default();
            PathBuf::from("bench-results").join(stamp)
        }),
        xvs_prealloc: o.xvs_prealloc.clone(),
        iptables_max: o.iptables_max,
        nftables_max: o.nftables_max,
        haproxy_max: o.haproxy_max,
    };
    for (bin_name, what) in [("xvsd", "xvsd"), ("xvsadm", "xvsadm")] {
        if !bin(bin_name).exists() {
            eprintln!("{what} not found next to xvs-bench: build it (scripts/bench.sh does)");
            std::process::exit(1);
        }
    }
    let max_n = *plan.sizes.iter().max().unwrap_or(&1);
    let lab = lab::build(max_n);
    let prefix = lab.prefix.clone();
    ctrlc::set_handler(move || {
        eprintln!("\ninterrupted: removing the lab");
        xvs_lab::cleanup_prefix(&prefix);
        std::process::exit(130);
    })
    .expect("install the Ctrl-C handler");
    let start = Instant::now();
    let mut report = Report::default();
    for (k, v) in machine() {
        report.meta.insert(k, v);
    }
    report.meta.insert("mode".into(), if o.quick { "quick".into() } else { "full".into() });
    report.meta.insert("repetitions".into(), plan.reps.to_string());
    report.meta.insert("xvsd --prealloc-conns".into(), plan.xvs_prealloc.clone());
    report.meta.insert("seconds per traffic repetition".into(), format!("{}", plan.dur.as_secs_f64()));
    report.meta.insert(
        "traffic generator".into(),
        "connections: one client thread doing connect + reset-close on CPU 0, acceptors on the last CPU; packets: live-frames BPF_PROG_RUN of an XDP_TX program on the client's veth (the same TCP SYN), counted by XDP sinks on the real servers".into(),
    );
    let mut result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&lab, &plan, &mut report)));
    let directors = o.directors.unwrap_or(if o.quick { 2 } else { 3 });
    if result.is_ok() && directors > 0 && plan.peers.iter().any(|p| p == "xvs") {
        eprintln!("== directors behind a router's ECMP: 1 to {directors}");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scaleout::run(&bin("xvsd"), directors, plan.reps, plan.dur, &mut report)
        }));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("directors behind ECMP: {e}");
                report.skipped.push(format!("directors behind ECMP: {e}"));
                result = Err(Box::new(e));
            }
            Err(p) => result = Err(p),
        }
    }
    report.meta.insert("duration".into(), format!("{:.0} s", start.elapsed().as_secs_f64()));
    if let Err(e) = report.write(&plan.out) {
        eprintln!("cannot write results to {}: {e}", plan.out.display());
    }
    println!("{}", report.markdown());
    println!("results in {} ({:.0} s)", plan.out.display(), start.elapsed().as_secs_f64());
    drop(lab);
    if result.is_err() {
        eprintln!("the benchmark failed (partial results written; the lab is removed)");
        std::process::exit(1);
    }
}

fn run(lab: &Classic, plan: &Plan, report: &mut Report) {
    // The client must take frames the director sends it with XDP.
    let _client_pass = lab::pass_on(lab, &[(&lab.client, "eth0")]);
    let mut conntrack_fact = false;
    for &n in &plan.sizes {
        eprintln!("== N = {n}");
        let last = n - 1;
        let target = lab::service(last);
        let acceptors = lab::Acceptors::start(lab, target.port());
        let on = |p: &str| plan.peers.iter().any(|x| x == p);
        if on("xvs") {
            measure_xvs(lab, plan, report, n);
        }
        for rules in [&Iptables as &dyn Rules, &Nftables] {
            if !on(rules.name()) {
                continue;
            }
            let max = if rules.name() == "iptables" { plan.iptables_max } else { plan.nftables_max };
            if n > max {
                report.skipped.push(format!(
                    "{} at N={n}: over --{}-max ({max}), to keep the run within 15 minutes",
                    rules.name(),
                    rules.name()
                ));
                continue;
            }
            measure_rules(lab, plan, report, n, rules);
        }
        if !on("haproxy") {
        } else if n <= plan.haproxy_max {
            match Haproxy::start(&lab.director, &lab.dir, n) {
                Ok(h) => {
                    let v = conn_reps(lab, plan, target);
                    report.add("haproxy", n, Metric::ConnRate, v);
                    drop(h);
                }
                Err(e) => {
                    eprintln!("  haproxy at N={n} not measured: {e}");
                    report.skipped.push(format!("haproxy at N={n}: {e}"))
                }
            }
        } else {
            report.skipped.push(format!(
                "haproxy at N={n}: one listening socket per service; measured up to {}",
                plan.haproxy_max
            ));
        }
        if on("bare") {
            measure_bare(lab, plan, report, n);
        }
        drop(acceptors);
        if !conntrack_fact {
            if let Some(b) = conntrack_bytes() {
                report.facts.insert("conntrack entry (nf_conntrack slab object)".into(), format!("{b} bytes"));
            }
            conntrack_fact = true;
        }
    }
    report.skipped.push(
        "HAProxy packets/s: a proxy terminates TCP, so its packets are not comparable; its connections/s are".into(),
    );
}

fn conn_reps(lab: &Classic, plan: &Plan, target: std::net::SocketAddrV4) -> Vec<f64> {
    let mut v = Vec::new();
    let _ = lab::conn_rate(lab, target, Duration::from_millis(200)); // warm neighbours and caches
    for _ in 0..plan.reps {
        let (rate, failed, err) = lab::conn_rate(lab, target, plan.dur);
        if failed > 0 {
            eprintln!("    ({failed} connection attempts failed: {err})");
        }
        v.push(rate);
    }
    v
}

fn pps_reps(lab: &Classic, plan: &Plan, frame: &[u8]) -> (Vec<f64>, Vec<f64>) {
    let sinks = lab::Sinks::attach(lab);
    let (mut got, mut offered) = (Vec::new(), Vec::new());
    for _ in 0..plan.reps {
        let (g, o) = lab::pps(lab, &sinks, frame, plan.dur);
        got.push(g);
        offered.push(o);
    }
    (got, offered)
}

/// The real servers' veths need an XDP program to receive frames the director redirects.
fn rs_pass(lab: &Classic) -> Vec<Aux> {
    let ifs: Vec<(&xvs_lab::Netns, &str)> = lab.rs.iter().map(|r| (r, "eth0")).collect();
    lab::pass_on(lab, &ifs)
}

fn measure_xvs(lab: &Classic, plan: &Plan, report: &mut Report, n: u32) {
    let target = lab::service(n - 1);
    // The lab's peers run XDP programs (sinks, pass), so native mode on the veths is valid and
    // is what a NIC would give.
    let x = Xvsd::start(
        lab,
        &bin("xvsd"),
        &["--max-services", "131072", "--native", "--prealloc-conns", &plan.xvs_prealloc],
    );
    // Control plane.
    let t = xvs::apply(&x, &lab.dir, n, "masq").unwrap_or_else(|e| fail(&x, n, "install", e));
    report.add("xvs-nat", n, Metric::Install, vec![t.as_secs_f64()]);
    let (add, del) = xvs::add_remove(&x, n, "-m", plan.reps).unwrap_or_else(|e| fail(&x, n, "add/remove", e));
    report.add("xvs-nat", n, Metric::AddOne, add);
    report.add("xvs-nat", n, Metric::RemoveOne, del);
    let (one, whole) =
        xvs::apply_one(&x, &lab.dir, n, plan.reps).unwrap_or_else(|e| fail(&x, n, "apply one change", e));
    report.add("xvs-nat", n, Metric::ApplyOne, one);
    report.add("xvs-nat", n, Metric::ApplyWhole, whole);
    report.add("xvs-nat", n, Metric::List, xvs::list(&x, plan.reps).unwrap_or_else(|e| fail(&x, n, "list", e)));
    let mut cost = xvs::Cost::load(lab, &x).unwrap_or_else(|e| fail(&x, n, "load for test runs", e));
    let (c, b) =
        cost.new_flows(lab, n - 1, plan.reps, plan.new_flows).unwrap_or_else(|e| fail(&x, n, "new-flow cost", e));
    report.add("xvs-nat", n, Metric::CostNew, c);
    report.add("bare", n, Metric::CostNew, b);
    let (yreps, yk) = (plan.reps.max(5), plan.new_flows.min(1000));
    let y = cost.yardstick(lab, n - 1, yreps, yk, true).unwrap_or_else(|e| fail(&x, n, "yardstick (NAT)", e));
    report.add_costs("xvs-nat", n, y);
    // A new flow's cost with 2 and with 1000 real servers behind the service (rr, NAT: the
    // lab's two servers on 500 ports each).
    if n == 1000 || plan.sizes.len() == 1 {
        let wide = lab::service(n + 1);
        let [a, b] = lab::real_servers();
        let mut rules = format!("-A -t {wide} -s rr\n");
        for p in 0..500u16 {
            for r in [a, b] {
                rules.push_str(&format!("-a -t {wide} -r {r}:{} -m\n", 10_000 + p));
            }
        }
        xvs::restore(&x, &rules).unwrap_or_else(|e| fail(&x, n, "1000 servers", e));
        let c = cost.new_flow_cost(lab, wide, yreps, yk).unwrap_or_else(|e| fail(&x, n, "1000 servers", e));
        report.add("xvs-nat-1000rs", n, Metric::ProgNew, c);
        let c = cost.new_flow_cost(lab, lab::service(n - 1), yreps, yk).unwrap_or_else(|e| fail(&x, n, "2 servers", e));
        report.add("xvs-nat-2rs", n, Metric::ProgNew, c);
        xvs::adm(&x, &["-D", "-t", &wide.to_string()]).unwrap_or_else(|e| fail(&x, n, "1000 servers", e));
    }
    if plan.peers.iter().any(|p| p == "katran") {
        match cost.yardstick_katran(lab, n - 1, yreps, yk) {
            Ok(y) => report.add_costs("katran", n, y),
            Err(e) => report.skipped.push(format!("katran at N={n}: {e}")),
        }
    }
    if let Some((conn, nat)) = cost.bytes_per_connection() {
        report.facts.insert(
            "xvs kernel memory per connection (map memory / entries)".into(),
            format!("{conn:.0} bytes in the connection table, plus {nat:.0} in the reply table for NAT"),
        );
    }
    // Traffic, NAT.
    {
        let _pass = rs_pass(lab);
        report.add("xvs-nat", n, Metric::ConnRate, conn_reps(lab, plan, target));
    }
    let frame = lab::syn_frame(lab, target, 44_444);
    if std::env::var("XVS_BENCH_DEBUG").is_ok() {
        cost.debug(lab, &frame);
    }
    let (g, off) = pps_reps(lab, plan, &frame);
    eprintln!("    dataplane, off the fast path: {}", cost.reasons());
    if std::env::var("XVS_BENCH_DEBUG").is_ok() {
        for (ns, dev) in [
            (&lab.director, "c0"),
            (&lab.director, "r1"),
            (&lab.director, "r2"),
            (&lab.rs[0], "eth0"),
            (&lab.rs[1], "eth0"),
        ] {
            let out = ns.exec(&["ethtool", "-S", dev]);
            let text = String::from_utf8_lossy(&out.stdout);
            let nz: Vec<&str> = text.lines().filter(|l| !l.trim_end().ends_with(": 0")).collect();
            eprintln!("    debug {} {dev}: {}", ns.name(), nz.join(" | "));
        }
    }
    report.add("xvs-nat", n, Metric::Pps, g);
    report.add("xvs-nat", n, Metric::OfferedPps, off);
    // Direct routing.
    xvs::apply(&x, &lab.dir, n, "route").unwrap_or_else(|e| fail(&x, n, "switch to direct routing", e));
    let (c, b) = cost
        .established(lab, n - 1, plan.reps, u32::from(plan.new_flows))
        .unwrap_or_else(|e| fail(&x, n, "established cost", e));
    report.add("xvs-dr", n, Metric::CostEstablished, c);
    report.add("bare", n, Metric::CostEstablished, b);
    let y = cost.yardstick(lab, n - 1, yreps, yk, false).unwrap_or_else(|e| fail(&x, n, "yardstick (DR)", e));
    report.add_costs("xvs-dr", n, y);
    // What `xvsadm trace` costs an established packet (DR): none, idle (another client), traced.
    let [off, idle, traced] = cost.trace_cost(lab, n - 1, yreps, yk).unwrap_or_else(|e| fail(&x, n, "trace cost", e));
    let mmm = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        format!("{:.1} [{:.1}–{:.1}]", v[v.len() / 2], v[0], v[v.len() - 1])
    };
    report.facts.insert(
        format!("packet trace, established DR packet at N={n} (ns/packet, median [min–max], measured in turn)"),
        format!("no trace {}, a trace of another client running {}, traced {}", mmm(&off), mmm(&idle), mmm(&traced)),
    );
    // Scale of state: many tracked connections (direct routing), established packets of random
    // ones, and a sweep of the whole table; at the largest N only (it takes a while).
    if Some(&n) == plan.sizes.last() {
        let sizes: &[u32] = if plan.quick { &[1000, 100_000] } else { &[1000, 4_000_000] };
        let scale = cost.state_scale(lab, n - 1, sizes, yreps, yk).unwrap_or_else(|e| fail(&x, n, "scale of state", e));
        let base = scale.first().map(|s| {
            let mut v = s.established.clone();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        });
        for xvs::StateScale { conns, established: est, sweep_ms: sweep, xvsd_sweep_ms: xsweep, stepping } in &scale {
            let mut m = est.clone();
            m.sort_by(f64::total_cmp);
            let ratio = base.map_or(String::new(), |b| format!(", {:.2}× the first size", m[m.len() / 2] / b));
            report.facts.insert(
                format!("scale of state at N={n}: {conns} connections (DR)"),
                format!(
                    "established packet of a random connection {} ns{ratio}; one sweep of the whole table in one \
                     go {} ms; xvsd's sweep {} ms ({}; xvsd sweeps once a second: ms / 10 = % of one CPU)",
                    mmm(est),
                    mmm(sweep),
                    mmm(xsweep),
                    if *stepping { "the connections in steps" } else { "in one go" }
                ),
            );
        }
    }
    // Tunnels (IP-in-IP, as Katran sends): the yardstick only, the servers do not decapsulate.
    xvs::apply(&x, &lab.dir, n, "tunnel").unwrap_or_else(|e| fail(&x, n, "switch to tunnels", e));
    let y = cost.yardstick(lab, n - 1, yreps, yk, false).unwrap_or_else(|e| fail(&x, n, "yardstick (TUN)", e));
    report.add_costs("xvs-tun", n, y);
    xvs::apply(&x, &lab.dir, n, "route").unwrap_or_else(|e| fail(&x, n, "switch back to direct routing", e));
    drop(cost);
    {
        let _pass = rs_pass(lab);
        report.add("xvs-dr", n, Metric::ConnRate, conn_reps(lab, plan, target));
    }
    let (g, off) = pps_reps(lab, plan, &lab::syn_frame(lab, target, 44_445));
    report.add("xvs-dr", n, Metric::Pps, g);
    report.add("xvs-dr", n, Metric::OfferedPps, off);
    drop(x); // kills xvsd and removes its pins: the program is detached
}

fn fail<T>(x: &Xvsd, n: u32, what: &str, e: String) -> T {
    panic!("xvs {what} at N={n}: {e}\n{}", x.log_text())
}

fn measure_rules(lab: &Classic, plan: &Plan, report: &mut Report, n: u32, rules: &dyn Rules) {
    let name = rules.name();
    let d = &lab.director;
    let run = |cmd: (Vec<&'static str>, String)| timed(d, &cmd.0, &cmd.1);
    let t = match run(rules.install(n)) {
        Ok(t) => t,
        Err(e) => {
            report.skipped.push(format!("{name} at N={n}: {e}"));
            let _ = run(rules.flush());
            return;
        }
    };
    report.add(name, n, Metric::Install, vec![t.as_secs_f64()]);
    let (mut add, mut del, mut list) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.reps {
        match (run(rules.add_one(n)), run(rules.remove_one(n)), timed(d, &rules.list(), "")) {
            (Ok(a), Ok(r), Ok(l)) => {
                add.push(a.as_secs_f64() * 1e3);
                del.push(r.as_secs_f64() * 1e3);
                list.push(l.as_secs_f64());
            }
            (a, r, l) => {
                report.skipped.push(format!(
                    "{name} control plane at N={n}: {:?} {:?} {:?}",
                    a.err(),
                    r.err(),
                    l.err()
                ));
                break;
            }
        }
    }
    report.add(name, n, Metric::AddOne, add);
    report.add(name, n, Metric::RemoveOne, del);
    report.add(name, n, Metric::List, list);
    let target = lab::service(n - 1);
    report.add(name, n, Metric::ConnRate, conn_reps(lab, plan, target));
    {
        // The generator's frames reach the director's stack through an XDP pass program.
        let _pass = lab::pass_on(lab, &[(&lab.director, "c0")]);
        let (g, off) = pps_reps(lab, plan, &lab::syn_frame(lab, target, 44_446));
        report.add(name, n, Metric::Pps, g);
        report.add(name, n, Metric::OfferedPps, off);
    }
    if let Err(e) = run(rules.flush()) {
        panic!("cannot remove the {name} rules: {e}");
    }
}

fn measure_bare(lab: &Classic, plan: &Plan, report: &mut Report, n: u32) {
    // The bare forwarder sends everything from the client to the first real server, which
    // holds the VIPs (as in direct routing) and answers the client itself.
    let target = lab::service(n - 1);
    let cfg =
        BareCfg { dmac: lab.rs[0].mac("eth0"), smac: lab.director.mac("r1"), ifindex: lab.director.ifindex("r1") };
    let _bare = {
        let _in = lab.director.enter();
        let mut a = Aux::load().expect("load the bare forwarder");
        a.attach_bare("c0", cfg).expect("attach the bare forwarder");
        a
    };
    {
        let _pass = rs_pass(lab);
        report.add("bare", n, Metric::ConnRate, conn_reps(lab, plan, target));
    }
    let (g, off) = pps_reps(lab, plan, &lab::syn_frame(lab, target, 44_447));
    report.add("bare", n, Metric::Pps, g);
    report.add("bare", n, Metric::OfferedPps, off);
}

/// The size of a conntrack entry (the nf_conntrack slab's object size).
fn conntrack_bytes() -> Option<u64> {
    let slab = std::fs::read_to_string("/proc/slabinfo").ok()?;
    let line = slab.lines().find(|l| l.starts_with("nf_conntrack "))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
