//! The xvs demo: the classic ipvsadm example, run for real in network namespaces.
//!
//! A client, a director and two real servers running nginx; xvsd on the director, configured
//! with xvsadm exactly as an operator would type it — first in direct-routing mode (`-g`, as
//! the ipvsadm example does), then in NAT mode (`-m`). Real HTTP requests show which server
//! answered each; `xvsadm -Ln --stats` shows what the load balancer counted. Everything is
//! removed at the end, on Ctrl-C, or on failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use xvs_dataplane::aux::Aux;
use xvs_lab::daemon::Xvsd;
use xvs_lab::topology::{rs4, Classic, Mode, CLIENT4, VIP4};

fn bin(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    let dir = me.parent().expect("a directory");
    let p = dir.join(name);
    assert!(p.exists(), "{} not found next to the demo; run scripts/demo.sh", p.display());
    p
}

fn start_xvsd(lab: &Classic) -> Xvsd {
    Xvsd::start(lab, &bin("xvsd"), &[])
}

fn xvsadm(socket: &Path, args: &str) -> String {
    println!("director# xvsadm {args}");
    let out = Command::new(bin("xvsadm"))
        .args(args.split_whitespace())
        .env("XVS_SOCKET", socket)
        .output()
        .expect("run xvsadm");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    print!("{text}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "xvsadm {args} failed");
    text
}

/// Attaches the pass program to the client's and servers' veths (lab-notes: a veth delivers
/// frames redirected by XDP only when its peer runs an XDP program too). The programs stay
/// attached while the returned values live.
fn peers_pass(lab: &Classic) -> Vec<Aux> {
    let mut kept = Vec::new();
    for ns in std::iter::once(&lab.client).chain(lab.rs.iter()) {
        let _in = ns.enter();
        let mut aux = Aux::load().expect("load the pass program");
        aux.attach_pass("eth0").expect("attach the pass program");
        kept.push(aux);
    }
    kept
}

fn requests(lab: &Classic, n: usize) {
    println!("client# for i in $(seq {n}); do curl -s http://{VIP4}/; done");
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..n {
        let body = lab.curl(&format!("http://{VIP4}/")).unwrap_or_else(|e| panic!("request {}: {e}", i + 1));
        println!("  request {:>2} answered by {body}", i + 1);
        *counts.entry(body).or_insert(0) += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("  => {}", summary.join(", "));
}

fn scenario(mode: Mode) {
    let (title, flag) = match mode {
        Mode::Dr => {
            ("direct routing (-g): the director rewrites only the MAC; servers answer the client directly", "-g")
        }
        _ => ("NAT (-m): the director rewrites the destination; replies come back through it", "-m"),
    };
    println!("\n=== {title}");
    let mut lab = Classic::new(2, mode);
    let _ = ctrlc_prefix(&lab.prefix);
    lab.start_web_servers();
    println!("lab: client {CLIENT4} -> director -> rs1 {} / rs2 {}  (VIP {VIP4})", rs4(0), rs4(1));
    if mode == Mode::Dr {
        println!("     the real servers hold {VIP4} on lo and ignore ARP for it (arp_ignore=1, arp_announce=2)");
    }
    let pass = peers_pass(&lab);
    let xvsd = start_xvsd(&lab);
    xvsadm(&xvsd.socket, &format!("-A -t {VIP4}:80 -s rr"));
    for i in 0..2 {
        xvsadm(&xvsd.socket, &format!("-a -t {VIP4}:80 -r {}:80 {flag}", rs4(i)));
    }
    xvsadm(&xvsd.socket, "-Ln");
    requests(&lab, 10);
    xvsadm(&xvsd.socket, "-Lnc");
    println!("(waiting 4 s: the rate estimator samples every 2 s)");
    std::thread::sleep(Duration::from_secs(4));
    xvsadm(&xvsd.socket, "-Ln --stats");
    xvsadm(&xvsd.socket, "-Ln --rate");
    println!("drain rs2: weight 0 sends no new connections to it (existing ones carry on)");
    xvsadm(&xvsd.socket, &format!("-e -t {VIP4}:80 -r {}:80 {flag} -w 0", rs4(1)));
    requests(&lab, 4);
    xvsadm(&xvsd.socket, "-Ln");
    drop(xvsd);
    drop(pass);
    println!("(lab {} removed)", lab.prefix);
}

static PREFIXES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn ctrlc_prefix(prefix: &str) -> Option<()> {
    PREFIXES.lock().ok()?.push(prefix.to_string());
    Some(())
}

fn main() {
    if !xvs_lab::privileged() {
        eprintln!("the demo needs root (network namespaces, XDP)");
        std::process::exit(1);
    }
    ctrlc::set_handler(|| {
        eprintln!("\ninterrupted: removing the lab");
        for p in PREFIXES.lock().map(|v| v.clone()).unwrap_or_default() {
            xvs_lab::cleanup_prefix(&p);
        }
        std::process::exit(130);
    })
    .expect("install the Ctrl-C handler");
    let result = std::panic::catch_unwind(|| {
        scenario(Mode::Dr);
        scenario(Mode::Nat);
    });
    for p in PREFIXES.lock().map(|v| v.clone()).unwrap_or_default() {
        xvs_lab::cleanup_prefix(&p);
    }
    if result.is_err() {
        eprintln!("demo failed (lab removed)");
        std::process::exit(1);
    }
    println!("\ndemo done: every namespace, program and process is gone");
}
