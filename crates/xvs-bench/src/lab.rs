//! The benchmark's network and its traffic: a client, the director and two real servers (the
//! lab of the tests, in direct-routing form so both NAT and DR work), new TCP connections per
//! second with a connect-and-reset client, and packets per second with a live-frames XDP
//! generator and counting sinks.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr as SockAddr2, Socket, Type};
use xvs_dataplane::Aux;
use xvs_lab::topology::{rs4, Classic, Mode};

/// Services live on these VIPs, 50,000 ports each, so 100k services fit on two.
pub const PORTS_PER_VIP: u32 = 50_000;
/// First port of each VIP.
pub const FIRST_PORT: u32 = 10_000;

/// Service `i` (0-based): its VIP and port.
pub fn service(i: u32) -> SocketAddrV4 {
    let vip = Ipv4Addr::new(198, 18, 0, 100 + (i / PORTS_PER_VIP) as u8);
    SocketAddrV4::new(vip, (FIRST_PORT + i % PORTS_PER_VIP) as u16)
}

/// The VIPs used by `n` services.
pub fn vips(n: u32) -> Vec<Ipv4Addr> {
    (0..n.div_ceil(PORTS_PER_VIP).max(1)).map(|k| *service(k * PORTS_PER_VIP).ip()).collect()
}

/// The real servers' addresses.
pub fn real_servers() -> [Ipv4Addr; 2] {
    [rs4(0).parse().expect("literal"), rs4(1).parse().expect("literal")]
}

/// Builds the lab: two real servers holding every VIP on their loopback (for DR).
pub fn build(max_n: u32) -> Classic {
    let lab = Classic::new(2, Mode::Dr);
    for r in &lab.rs {
        // The lab already gives them the first VIP.
        for v in vips(max_n).into_iter().skip(1) {
            r.ip(&["addr", "add", &format!("{v}/32"), "dev", "lo"]);
        }
    }
    // Conntrack must not run out during the connection tests of the kernel peers.
    lab.director.sysctl("net.netfilter.nf_conntrack_max", "1048576");
    lab
}

fn pin_to(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A TCP server in a real server's namespace that accepts and closes, until dropped.
pub struct Acceptors {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Acceptors {
    /// Listens on `port` (any address, so both the VIP and the server's own address) in every
    /// real server.
    pub fn start(lab: &Classic, port: u16) -> Acceptors {
        Acceptors::start_in(&lab.rs.iter().collect::<Vec<_>>(), port)
    }

    /// Listens on `port` in each of `servers`.
    pub fn start_in(servers: &[&xvs_lab::Netns], port: u16) -> Acceptors {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for r in servers {
            let name = r.name().to_string();
            let stop = stop.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            threads.push(std::thread::spawn(move || {
                let _in = xvs_lab::enter_named(&name);
                pin_to(cpus().saturating_sub(1));
                let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
                s.set_reuse_address(true).expect("reuse");
                s.bind(&SockAddr2::from(SocketAddr::from(([0, 0, 0, 0], port)))).expect("bind the acceptor");
                s.listen(4096).expect("listen");
                s.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
                let _ = tx.send(());
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((c, _)) = s.accept() {
                        let _ = c.set_linger(Some(Duration::ZERO));
                    }
                }
            }));
            rx.recv().expect("the acceptor started");
        }
        Acceptors { stop, threads }
    }
}

impl Drop for Acceptors {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// New TCP connections per second to `target` from the client for `dur`: connect, then close
/// with a reset (no TIME_WAIT), in a loop on one CPU. Failed attempts are counted apart.
pub fn conn_rate(lab: &Classic, target: SocketAddrV4, dur: Duration) -> (f64, u64, String) {
    conn_rate_in(&lab.client, target, dur)
}

/// [`conn_rate`] from the namespace `client`.
pub fn conn_rate_in(client: &xvs_lab::Netns, target: SocketAddrV4, dur: Duration) -> (f64, u64, String) {
    let name = client.name().to_string();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (ok2, failed2) = (ok.clone(), failed.clone());
    let first_error = Arc::new(std::sync::Mutex::new(String::new()));
    let first_error2 = first_error.clone();
    let t = std::thread::spawn(move || {
        let _in = xvs_lab::enter_named(&name);
        pin_to(0);
        let start = Instant::now();
        let addr = SockAddr2::from(SocketAddr::V4(target));
        while start.elapsed() < dur {
            let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
            let _ = s.set_linger(Some(Duration::ZERO));
            match s.connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(()) => ok2.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    if let Ok(mut f) = first_error2.lock() {
                        if f.is_empty() {
                            *f = e.to_string();
                        }
                    }
                    failed2.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
        start.elapsed()
    });
    let took = t.join().expect("client thread");
    let err = first_error.lock().map(|e| e.clone()).unwrap_or_default();
    (ok.load(Ordering::Relaxed) as f64 / took.as_secs_f64(), failed.load(Ordering::Relaxed), err)
}

/// A TCP SYN from the client to `target`, addressed to the director's MAC.
pub fn syn_frame(lab: &Classic, target: SocketAddrV4, sport: u16) -> Vec<u8> {
    let src_mac = lab.client.mac("eth0");
    let dst_mac = lab.director.mac("c0");
    syn(src_mac, dst_mac, Ipv4Addr::new(198, 18, 1, 100), target, sport)
}

/// A TCP SYN frame.
pub fn syn(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, target: SocketAddrV4, sport: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), target.ip().octets(), 64)
        .tcp(sport, target.port(), 1000, 64_000)
        .syn();
    let mut out = Vec::with_capacity(b.size(0));
    b.write(&mut out, &[]).expect("a frame");
    out
}

/// An ACK of the same flow (an established connection's packet).
pub fn ack(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, target: SocketAddrV4, sport: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), target.ip().octets(), 64)
        .tcp(sport, target.port(), 1001, 64_000)
        .ack(1);
    let mut out = Vec::with_capacity(b.size(0));
    b.write(&mut out, &[]).expect("a frame");
    out
}

/// Counting sinks on the real servers' interfaces, while they live.
pub struct Sinks(Vec<Aux>);

impl Sinks {
    /// Attaches a sink to each real server's eth0.
    pub fn attach(lab: &Classic) -> Sinks {
        Sinks::attach_to(&lab.rs.iter().map(|r| (r, "eth0")).collect::<Vec<_>>())
    }

    /// Attaches a sink to each of `ifaces`.
    pub fn attach_to(ifaces: &[(&xvs_lab::Netns, &str)]) -> Sinks {
        let mut v = Vec::new();
        for (ns, dev) in ifaces {
            let _in = ns.enter();
            let mut a = Aux::load().expect("load the sink");
            a.attach_sink(dev).expect("attach the sink");
            v.push(a);
        }
        Sinks(v)
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|a| a.sink_count().unwrap_or(0)).sum()
    }
}

/// Packets per second delivered to the real servers while the client's generator sends
/// `frame` for about `dur`; also the rate it offered. The first half second is not counted.
pub fn pps(lab: &Classic, sinks: &Sinks, frame: &[u8], dur: Duration) -> (f64, f64) {
    pps_in(&lab.client, "eth0", sinks, &[frame.to_vec()], dur)
}

/// [`pps`] from `dev` in the namespace `client`, taking `frames` in turn (50,000 of each: a
/// new flow every few tens of milliseconds, for a router to spread).
pub fn pps_in(client: &xvs_lab::Netns, dev: &str, sinks: &Sinks, frames: &[Vec<u8>], dur: Duration) -> (f64, f64) {
    let name = client.name().to_string();
    let ifindex = client.ifindex(dev);
    let frames = frames.to_vec();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let (stop2, sent2) = (stop.clone(), sent.clone());
    let t = std::thread::spawn(move || {
        let _in = xvs_lab::enter_named(&name);
        pin_to(0);
        let mut gen = Aux::load().expect("load the generator");
        const CHUNK: u32 = 50_000;
        let mut i = 0;
        while !stop2.load(Ordering::Relaxed) {
            let frame = &frames[i % frames.len()];
            i += 1;
            if (frames.len() > 1 || i == 1) && gen.set_gen_frame(frame).is_err() {
                break;
            }
            if gen.generate(frame, ifindex, CHUNK).is_err() {
                break;
            }
            sent2.fetch_add(u64::from(CHUNK), Ordering::Relaxed);
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let (s0, c0, t0) = (sent.load(Ordering::Relaxed), sinks.count(), Instant::now());
    std::thread::sleep(dur);
    let (s1, c1, took) = (sent.load(Ordering::Relaxed), sinks.count(), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    let _ = t.join();
    ((c1 - c0) as f64 / took.as_secs_f64(), (s1 - s0) as f64 / took.as_secs_f64())
}

/// The pass program on the client (and anything else given) so that frames sent to them by
/// XDP are delivered (lab-notes).
pub fn pass_on(lab: &Classic, ifaces: &[(&xvs_lab::Netns, &str)]) -> Vec<Aux> {
    let _ = lab;
    ifaces
        .iter()
        .map(|(ns, dev)| {
            let _in = ns.enter();
            let mut a = Aux::load().expect("load the pass program");
            a.attach_pass(dev).expect("attach the pass program");
            a
        })
        .collect()
}
