//! # xvs-lab
//!
//! Builds small networks of Linux network namespaces for tests, the demo and the benchmark, and
//! tears them down — also when a test fails or panics, because every object is owned by a value
//! whose `Drop` removes it. Names carry a per-process prefix so labs run in parallel.
//!
//! Addresses come from the ranges reserved for benchmarking (198.18.0.0/15, 2001:2::/48), and
//! nothing here touches the host's own interfaces.

#![warn(missing_docs)]

use std::fs::File;
use std::os::fd::AsFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique short prefix for this process's lab objects (`xv<pid>n<k>`), at most 11 bytes so
/// that interface names built from it fit in 15.
pub fn unique_prefix() -> String {
    format!("xv{}n{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs a command and returns its output; panics with the command and its stderr on failure,
/// which is what tests and the lab scripts want.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    out
}

/// Like [`sh`] but returns whether it succeeded (for cleanup and probes).
pub fn try_sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when the process can build labs (root, iproute2, a BPF file system).
pub fn privileged() -> bool {
    nix::unistd::geteuid().is_root() && try_sh(&["ip", "netns", "list"])
}

/// For tests that need root: true when this process can build labs. Otherwise says the test
/// is skipped, except under CI (which runs as root), where a missing privilege is a failure.
pub fn require_root() -> bool {
    if privileged() {
        return true;
    }
    assert!(std::env::var("CI").is_err(), "this test needs root, and CI runs as root");
    eprintln!("skipped: needs root");
    false
}

/// A network namespace, deleted on drop (with every process still in it killed).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with its loopback up.
    pub fn new(name: &str) -> Netns {
        let _ = try_sh(&["ip", "netns", "del", name]);
        sh(&["ip", "netns", "add", name]);
        let ns = Netns { name: name.to_string() };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// A command that will run inside the namespace (to spawn servers and clients).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name)).arg("--").arg(program);
        c
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")]);
    }

    /// Moves the calling thread into the namespace until the guard is dropped. Only the network
    /// namespace changes, so /sys/fs/bpf stays visible (lab-notes: `ip netns exec` remounts /sys).
    pub fn enter(&self) -> Entered {
        enter_named(&self.name)
    }

    /// The interface index of `dev` inside the namespace.
    pub fn ifindex(&self, dev: &str) -> u32 {
        let out = self.exec(&["cat", &format!("/sys/class/net/{dev}/ifindex")]);
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("ifindex is a number")
    }

    /// The MAC address of `dev` inside the namespace.
    pub fn mac(&self, dev: &str) -> [u8; 6] {
        let out = self.exec(&["cat", &format!("/sys/class/net/{dev}/address")]);
        let s = String::from_utf8_lossy(&out.stdout);
        let mut m = [0u8; 6];
        for (i, b) in s.trim().split(':').enumerate().take(6) {
            m[i] = u8::from_str_radix(b, 16).expect("hex MAC");
        }
        m
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill anything left running inside, then remove the namespace (and its veths).
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = try_sh(&["kill", "-9", pid]);
            }
        }
        let _ = try_sh(&["ip", "netns", "del", &self.name]);
    }
}

/// Moves the calling thread into the existing namespace `name` until the guard is dropped
/// (for threads other than the one that created the lab).
pub fn enter_named(name: &str) -> Entered {
    let back = File::open("/proc/thread-self/ns/net").expect("open own netns");
    let target = File::open(format!("/run/netns/{name}")).expect("open target netns");
    nix::sched::setns(target.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns into lab");
    Entered { back }
}

/// While alive, the thread that created it runs in a lab namespace.
#[derive(Debug)]
pub struct Entered {
    back: File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = nix::sched::setns(self.back.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
    }
}

/// Removes every namespace whose name starts with `prefix` (killing what runs inside) and
/// every bpffs directory of that name: the emergency cleanup of an interrupted lab.
pub fn cleanup_prefix(prefix: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if !name.is_empty() && name.starts_with(prefix) {
                drop(Netns { name: name.to_string() });
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/sys/fs/bpf") {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Connects `a` (device `a_dev`) and `b` (device `b_dev`) with a veth pair.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) {
    sh(&["ip", "link", "add", a_dev, "netns", a.name(), "type", "veth", "peer", "name", b_dev, "netns", b.name()]);
    a.ip(&["link", "set", a_dev, "up"]);
    b.ip(&["link", "set", b_dev, "up"]);
}

/// Mounts bpffs at /sys/fs/bpf when a freshly booted machine has not (xvsd does the same).
pub fn ensure_bpffs() {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let bpf_fs = nix::sys::statfs::statfs("/sys/fs/bpf").map(|s| s.filesystem_type().0 == 0xcafe_4a11);
    if bpf_fs.unwrap_or(false) {
        return;
    }
    eprintln!("lab: bpffs is not mounted; mounting it at /sys/fs/bpf");
    sh(&["mount", "-t", "bpf", "-o", "mode=0700", "bpf", "/sys/fs/bpf"]);
}

/// A directory on bpffs removed (with its pins) on drop.
#[derive(Debug)]
pub struct PinDir {
    path: std::path::PathBuf,
}

impl PinDir {
    /// `/sys/fs/bpf/<name>`, created empty.
    pub fn new(name: &str) -> PinDir {
        let path = std::path::Path::new("/sys/fs/bpf").join(name);
        ensure_bpffs();
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a directory on bpffs");
        PinDir { path }
    }

    /// The path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub mod daemon;
pub mod ecmp;
pub mod topology;

/// The bytes an iperf3 client (`-J`) reports received, or why its stream broke.
pub fn iperf3_received(out: &Output) -> Result<u64, String> {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if !out.status.success() || report.get("error").is_some() {
        return Err(format!(
            "{} {}",
            report.get("error").map(|e| e.to_string()).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0))
}

/// Requests done and failed (socket errors and non-2xx/3xx answers) from wrk's report, and the
/// report; panics when wrk itself failed.
pub fn wrk_report(out: &Output) -> (u64, u64, String) {
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wrk failed: {text}");
    let mut done = 0;
    let mut failed = 0;
    for line in text.lines().map(str::trim) {
        if let Some(n) = line.split_whitespace().next().filter(|_| line.contains(" requests in ")) {
            done = n.parse().unwrap_or(0);
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            failed += rest.split(',').filter_map(|f| f.split_whitespace().last()?.parse::<u64>().ok()).sum::<u64>();
        }
        if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            failed += rest.trim().parse::<u64>().unwrap_or(0);
        }
    }
    (done, failed, text)
}
