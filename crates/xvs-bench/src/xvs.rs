//! xvs's side: xvsd in the lab's director, configured with `xvsadm apply -f` and the ipvsadm
//! commands an operator would type, and the per-packet cost of its program measured with
//! BPF_PROG_TEST_RUN on the maps xvsd publishes.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use xvs_dataplane::{action, Aux, Director, LoadOptions};
use xvs_lab::daemon::Xvsd;
use xvs_lab::topology::Classic;
use xvsadm::client::Socket;

use crate::lab::{real_servers, service};

/// Runs one xvsadm command line in process against xvsd; the output and the time it took.
pub fn adm(x: &Xvsd, args: &[&str]) -> Result<(String, Duration), String> {
    let argv: Vec<String> = std::iter::once("xvsadm").chain(args.iter().copied()).map(String::from).collect();
    let start = Instant::now();
    let mut t = Socket::connect(&x.socket)?;
    let out = xvsadm::run::run(&argv, &mut t, &mut std::io::empty());
    let took = start.elapsed();
    if out.code != 0 {
        return Err(format!("xvsadm {args:?}: {}", out.stderr.trim()));
    }
    Ok((out.stdout, took))
}

/// `xvsadm -R` with `rules` on its standard input (ipvsadm-save lines), in one batch.
pub fn restore(x: &Xvsd, rules: &str) -> Result<(), String> {
    let argv: Vec<String> = ["xvsadm", "-R"].iter().map(|s| s.to_string()).collect();
    let mut t = Socket::connect(&x.socket)?;
    let out = xvsadm::run::run(&argv, &mut t, &mut rules.as_bytes());
    if out.code != 0 {
        return Err(format!("xvsadm -R: {}", out.stderr.trim()));
    }
    Ok(())
}

/// The declarative file for `n` services of two real servers each.
pub fn config(n: u32, method: &str) -> String {
    let [a, b] = real_servers();
    let mut s = String::with_capacity(n as usize * 200);
    for i in 0..n {
        let sv = service(i);
        let p = sv.port();
        let _ = write!(
            s,
            "[[service]]\naddress = \"{sv}\"\nscheduler = \"rr\"\n[[service.real_server]]\naddress = \"{a}:{p}\"\nmethod = \"{method}\"\n[[service.real_server]]\naddress = \"{b}:{p}\"\nmethod = \"{method}\"\n"
        );
    }
    s
}

/// Applies `n` services with `method` (`masq` or `route`); the time `xvsadm apply` took.
pub fn apply(x: &Xvsd, dir: &Path, n: u32, method: &str) -> Result<Duration, String> {
    let path = dir.join(format!("services-{n}-{method}.toml"));
    std::fs::write(&path, config(n, method)).map_err(|e| e.to_string())?;
    let r = adm(x, &["apply", "-f", path.to_str().expect("utf-8")]).map(|(_, t)| t);
    let _ = std::fs::remove_file(&path);
    r
}

/// `xvsadm apply -f` of the file of `n` NAT services in which one real server's weight differs
/// from what is installed (2, then back to 1, and so on), `reps` times each way: as the file
/// applied last (xvsadm sends the changed service only), and with xvsadm's memory of it
/// forgotten (the whole file is read and sent). Milliseconds each: (remembered, whole).
pub fn apply_one(x: &Xvsd, dir: &Path, n: u32, reps: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let base = config(n, "masq");
    // The last service's first real server: its `method` line is followed by the next one's
    // `[[service.real_server]]`; give it a weight.
    let at = base.rfind("method = \"masq\"\n[[service.real_server]]").ok_or("the file has no real server")?;
    let mut edited = base.clone();
    edited.insert_str(at, "weight = 2\n");
    let path = dir.join(format!("services-{n}-one.toml"));
    let file = path.to_str().expect("utf-8");
    // The installed table, applied once from this file: xvsadm remembers it.
    std::fs::write(&path, &base).map_err(|e| e.to_string())?;
    adm(x, &["apply", "-f", file])?;
    let (mut remembered, mut whole) = (Vec::new(), Vec::new());
    for i in 0..2 * reps {
        std::fs::write(&path, if i % 2 == 0 { &edited } else { &base }).map_err(|e| e.to_string())?;
        // The edit remembered, the way back whole: one change each.
        let forgotten = i % 2 == 1;
        if forgotten {
            xvsadm::applied::forget(&xvsadm::applied::path_for(&x.socket));
        }
        let (changes, took) = adm(x, &["apply", "-f", file])?;
        if changes.lines().count() != 1 {
            return Err(format!("one change expected, the apply made: {}", changes.trim()));
        }
        if forgotten { &mut whole } else { &mut remembered }.push(took.as_secs_f64() * 1e3);
    }
    // 2 × reps applies alternate: the table is as installed again.
    let _ = std::fs::remove_file(&path);
    Ok((remembered, whole))
}

/// Adds then removes service `i` (an `-A` and two `-a`, then a `-D`), `reps` times.
pub fn add_remove(x: &Xvsd, i: u32, method_flag: &str, reps: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let sv = service(i).to_string();
    let [a, b] = real_servers();
    let p = service(i).port();
    let (mut add, mut del) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let start = Instant::now();
        adm(x, &["-A", "-t", &sv, "-s", "rr"])?;
        adm(x, &["-a", "-t", &sv, "-r", &format!("{a}:{p}"), method_flag])?;
        adm(x, &["-a", "-t", &sv, "-r", &format!("{b}:{p}"), method_flag])?;
        add.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        adm(x, &["-D", "-t", &sv])?;
        del.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok((add, del))
}

/// `xvsadm -Ln` at N, `reps` times (seconds each).
pub fn list(x: &Xvsd, reps: usize) -> Result<Vec<f64>, String> {
    (0..reps).map(|_| adm(x, &["-Ln"]).map(|(_, t)| t.as_secs_f64())).collect()
}

/// Per-packet costs with BPF_PROG_TEST_RUN in the director's namespace: the director program
/// loaded on xvsd's pinned maps, and the bare forwarder.
pub struct Cost {
    director: Director,
    /// Yardstick runs so far: each takes client addresses of its own, so that no run meets a
    /// connection an earlier one (another forwarding method) left in the tables.
    runs: std::cell::Cell<u8>,
    bare: Aux,
    ifindex: u32,
    client_mac: [u8; 6],
    director_mac: [u8; 6],
}

impl Cost {
    /// Loads both programs next to a running xvsd.
    pub fn load(lab: &Classic, x: &Xvsd) -> Result<Cost, String> {
        let _in = lab.director.enter();
        let director = Director::load(LoadOptions::new(xvs_abi::pin_dir(x.pins()))).map_err(|e| e.to_string())?;
        let bare = Aux::load().map_err(|e| e.to_string())?;
        Ok(Cost {
            director,
            runs: std::cell::Cell::new(0),
            bare,
            ifindex: lab.director.ifindex("c0"),
            client_mac: lab.client.mac("eth0"),
            director_mac: lab.director.mac("c0"),
        })
    }

    /// Runs `frame` a few times and prints what the director does with it.
    pub fn debug(&self, lab: &Classic, frame: &[u8]) {
        let _in = lab.director.enter();
        for _ in 0..4 {
            let r = self.director.test_run(frame, self.ifindex).expect("test run");
            eprintln!(
                "    debug: action {} len {} {:02x?}",
                r.action,
                r.frame.len(),
                &r.frame[..34.min(r.frame.len())]
            );
        }
        eprintln!("    debug: {}", self.reasons());
    }

    /// The dataplane's counts of packets that left the fast path, by reason (non-zero ones).
    pub fn reasons(&self) -> String {
        match self.director.reasons() {
            Ok(v) => v.iter().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{r}={n}")).collect::<Vec<_>>().join(" "),
            Err(e) => e.to_string(),
        }
    }

    /// ns/packet of an established flow to service `i`: the flow's SYN first, then its ACK
    /// `per_rep` times, each run on a fresh copy (a repeated run would see the packet it
    /// rewrote, with its TTL spent). `reps` figures for xvs and for the bare forwarder.
    pub fn established(
        &self,
        lab: &Classic,
        i: u32,
        reps: usize,
        per_rep: u32,
    ) -> Result<(Vec<f64>, Vec<f64>), String> {
        let _in = lab.director.enter();
        let src = std::net::Ipv4Addr::new(198, 18, 1, 100);
        let syn = crate::lab::syn(self.client_mac, self.director_mac, src, service(i), 33_333);
        let ack = crate::lab::ack(self.client_mac, self.director_mac, src, service(i), 33_333);
        let r = self.director.test_run(&syn, self.ifindex).map_err(|e| e.to_string())?;
        if r.action != action::REDIRECT && r.action != action::TX {
            return Err(format!("the SYN was not forwarded (action {}; {})", r.action, self.reasons()));
        }
        let (mut xvs, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let (mut tx, mut tb) = (0u128, 0u128);
            for _ in 0..per_rep {
                let (r, d) = self.director.test_run_timed(&ack, self.ifindex, 1).map_err(|e| e.to_string())?;
                if r.action != action::REDIRECT && r.action != action::TX {
                    return Err(format!(
                        "the established flow was not forwarded (action {}; {})",
                        r.action,
                        self.reasons()
                    ));
                }
                tx += d.as_nanos();
                let (_, d) = self.bare.bare_test_run(&ack, 1).map_err(|e| e.to_string())?;
                tb += d.as_nanos();
            }
            xvs.push(tx as f64 / f64::from(per_rep));
            bare.push(tb as f64 / f64::from(per_rep));
        }
        Ok((xvs, bare))
    }

    /// ns/packet of new flows to service `i`: `per_rep` SYNs from distinct client ports, one
    /// run each (so each is new), for xvs and for the bare forwarder.
    pub fn new_flows(&self, lab: &Classic, i: u32, reps: usize, per_rep: u16) -> Result<(Vec<f64>, Vec<f64>), String> {
        let _in = lab.director.enter();
        let (mut xvs, mut bare) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            // A fresh client address per repetition keeps every flow new.
            let src = std::net::Ipv4Addr::new(198, 18, 1, 10 + rep as u8);
            let (mut tx, mut tb) = (0u128, 0u128);
            for k in 0..per_rep {
                let f = crate::lab::syn(self.client_mac, self.director_mac, src, service(i), 20_000 + k);
                let (r, d) = self.director.test_run_timed(&f, self.ifindex, 1).map_err(|e| e.to_string())?;
                if r.action != action::REDIRECT && r.action != action::TX {
                    return Err(format!("a new flow was not forwarded (action {}; {})", r.action, self.reasons()));
                }
                tx += d.as_nanos();
                let (_, d) = self.bare.bare_test_run(&f, 1).map_err(|e| e.to_string())?;
                tb += d.as_nanos();
            }
            xvs.push(tx as f64 / f64::from(per_rep));
            bare.push(tb as f64 / f64::from(per_rep));
        }
        Ok((xvs, bare))
    }

    /// Bytes of kernel memory per tracked connection: the connection tables' memory over their
    /// size (a NAT connection has an entry in each direction's table).
    pub fn bytes_per_connection(&self) -> Option<(f64, f64)> {
        let per = |name: &str| -> Option<f64> {
            let path = self.director.map_path(name);
            let out =
                std::process::Command::new("bpftool").args(["-j", "map", "show", "pinned"]).arg(&path).output().ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let bytes = v.get("bytes_memlock")?.as_f64()?;
            let max = v.get("max_entries")?.as_f64()?;
            Some(bytes / max)
        };
        Some((per("xvs_conn4")?, per("xvs_nat4")?))
    }
}

/// A frame from a NAT real server to the client: the reply of the flow `client:cport →
/// target` the director sent to `rs` (source MAC `src_mac`, to the director's `dst_mac`).
pub fn reply(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    rs: std::net::SocketAddrV4,
    client: std::net::Ipv4Addr,
    cport: u16,
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(rs.ip().octets(), client.octets(), 64)
        .tcp(rs.port(), cport, 5000, 64_000)
        .ack(1001);
    let mut out = Vec::with_capacity(b.size(0));
    b.write(&mut out, &[]).expect("a frame");
    out
}

/// A program the yardstick measures.
pub trait Measured {
    /// Runs it once on `frame` arriving on `ifindex`; its action.
    fn run(&self, frame: &[u8], ifindex: u32) -> Result<u32, String>;
    /// The kernel's run statistics: total run time (ns), run count.
    fn stats(&self) -> Result<(u64, u64), String>;
}

impl Measured for Director {
    fn run(&self, frame: &[u8], ifindex: u32) -> Result<u32, String> {
        self.test_run(frame, ifindex).map(|r| r.action).map_err(|e| e.to_string())
    }
    fn stats(&self) -> Result<(u64, u64), String> {
        self.run_stats().map_err(|e| e.to_string())
    }
}

impl Measured for crate::katran::Katran {
    fn run(&self, frame: &[u8], _ifindex: u32) -> Result<u32, String> {
        self.test_run(frame)
    }
    fn stats(&self) -> Result<(u64, u64), String> {
        self.run_stats()
    }
}

/// The figures of [`Cost::state_scale`] at one table size.
pub struct StateScale {
    /// Connections installed.
    pub conns: u32,
    /// An established packet of a random one, ns/packet per rep.
    pub established: Vec<f64>,
    /// One sweep of the whole table in one go, ms per rep.
    pub sweep_ms: Vec<f64>,
    /// One sweep as xvsd runs it each second (in steps past `Sweeper`'s threshold), ms per rep.
    pub xvsd_sweep_ms: Vec<f64>,
    /// Whether those sweeps walked the connections in steps.
    pub stepping: bool,
}

/// The yardstick's figures for one peer, ns/packet of the program alone (floor subtracted).
#[derive(Default)]
pub struct Costs {
    /// A SYN of a new flow.
    pub new_flow: Vec<f64>,
    /// An established flow's packet from the client.
    pub established: Vec<f64>,
    /// A NAT real server's reply (NAT only).
    pub reply: Vec<f64>,
    /// A packet for no service.
    pub miss: Vec<f64>,
}

impl Cost {
    /// A program's own cost per packet, from the kernel's run statistics (BPF statistics
    /// enabled while it runs): each rep runs the frames `frames(rep)` once each on interface
    /// `ifindex`, reads the program's run time and count before and after, and does the same
    /// with an empty XDP program (the floor: what taking the time itself costs); the figure is
    /// the difference. BPF_PROG_TEST_RUN's own per-call work is in neither. Every run must
    /// end in one of `want` (actions of [`action`]).
    pub fn program_cost(
        &self,
        lab: &Classic,
        prog: &dyn Measured,
        ifindex: u32,
        reps: usize,
        want: &[u32],
        frames: impl Fn(usize) -> Vec<Vec<u8>>,
    ) -> Result<Vec<f64>, String> {
        let _in = lab.director.enter();
        let _stats =
            aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| format!("enable BPF statistics: {e}"))?;
        let mut out = Vec::with_capacity(reps);
        for rep in 0..reps {
            let frames = frames(rep);
            let (t0, n0) = prog.stats()?;
            for f in &frames {
                let a = prog.run(f, ifindex)?;
                if !want.contains(&a) {
                    return Err(format!("action {a} where {want:?} was expected ({})", self.reasons()));
                }
            }
            let (t1, n1) = prog.stats()?;
            let (e0, m0) = self.bare.run_stats("xvs_pass").map_err(|e| e.to_string())?;
            for f in &frames {
                self.bare.test_run("xvs_pass", f).map_err(|e| e.to_string())?;
            }
            let (e1, m1) = self.bare.run_stats("xvs_pass").map_err(|e| e.to_string())?;
            if n1 == n0 || m1 == m0 {
                return Err("the kernel counted no runs: BPF statistics are not being kept".into());
            }
            let cost = (t1 - t0) as f64 / (n1 - n0) as f64;
            let floor = (e1 - e0) as f64 / (m1 - m0) as f64;
            out.push(cost - floor);
        }
        Ok(out)
    }

    /// The client addresses of a new yardstick run: one on the client's link for an
    /// established flow (its NAT replies are routed back there: the director gets its
    /// neighbour entry), and a network of its own for new flows (one address per rep).
    fn clients(&self, lab: &Classic) -> (std::net::Ipv4Addr, impl Fn(usize) -> std::net::Ipv4Addr) {
        let run = self.runs.get();
        self.runs.set(run.wrapping_add(1));
        let net = 200u8.wrapping_add(run);
        let client = std::net::Ipv4Addr::new(198, 18, 1, 20 + run);
        let mac = self.client_mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        lab.director.ip(&["neigh", "replace", &client.to_string(), "lladdr", &mac, "dev", "c0", "nud", "permanent"]);
        (client, move |rep: usize| std::net::Ipv4Addr::new(198, 18, net, 1 + rep as u8))
    }

    /// New flows to service `i` (a distinct client port each, a client address per rep), then
    /// an established flow's packets, and a miss, through `prog`; `k` packets per rep.
    fn flows(
        &self,
        lab: &Classic,
        prog: &dyn Measured,
        i: u32,
        reps: usize,
        k: u16,
        fwd: &[u32],
    ) -> Result<Costs, String> {
        let (client, fresh) = self.clients(lab);
        let new_flow = self.program_cost(lab, prog, self.ifindex, reps, fwd, |rep| {
            let src = fresh(rep);
            (0..k).map(|p| crate::lab::syn(self.client_mac, self.director_mac, src, service(i), 21_000 + p)).collect()
        })?;
        let cport = 33_334;
        let syn = crate::lab::syn(self.client_mac, self.director_mac, client, service(i), cport);
        {
            let _in = lab.director.enter();
            let a = prog.run(&syn, self.ifindex)?;
            if !fwd.contains(&a) {
                return Err(format!("the SYN was not forwarded (action {a}; {})", self.reasons()));
            }
        }
        let ack = crate::lab::ack(self.client_mac, self.director_mac, client, service(i), cport);
        let established =
            self.program_cost(lab, prog, self.ifindex, reps, fwd, |_| vec![ack.clone(); usize::from(k)])?;
        let other = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(198, 18, 9, 9), 80);
        let miss_frame = crate::lab::syn(self.client_mac, self.director_mac, client, other, 40_000);
        let miss = self.program_cost(lab, prog, self.ifindex, reps, &[action::PASS], |_| {
            vec![miss_frame.clone(); usize::from(k)]
        })?;
        Ok(Costs { new_flow, established, reply: Vec::new(), miss })
    }

    /// An established packet's cost (`xvsadm trace`'s price) through service `i`: with no trace
    /// running, with a trace of another client running, and traced itself (its record written
    /// to the ring buffer, drained between reps). The three are measured in turn, rep by rep.
    pub fn trace_cost(&mut self, lab: &Classic, i: u32, reps: usize, k: u16) -> Result<[Vec<f64>; 3], String> {
        let fwd = [action::REDIRECT, action::TX];
        let (client, _) = self.clients(lab);
        let cport = 33_335;
        let syn = crate::lab::syn(self.client_mac, self.director_mac, client, service(i), cport);
        {
            let _in = lab.director.enter();
            let a = self.director.run(&syn, self.ifindex)?;
            if !fwd.contains(&a) {
                return Err(format!("the SYN was not forwarded (action {a}; {})", self.reasons()));
            }
        }
        let ack = crate::lab::ack(self.client_mac, self.director_mac, client, service(i), cport);
        let filter = |c: std::net::Ipv4Addr| xvs_abi::TraceFilter {
            flags: xvs_abi::trace_filter::CADDR,
            caddr: xvs_dataplane::addr_words(&c.into()),
            af: xvs_abi::AF_INET,
            ..Default::default()
        };
        let reader = std::cell::RefCell::new(self.director.take_trace_reader().ok_or("the trace reader is taken")?);
        let mut out: [Vec<f64>; 3] = Default::default();
        let mut result = Ok(());
        for _ in 0..reps {
            for (which, f) in [None, Some(filter(std::net::Ipv4Addr::new(198, 18, 9, 9))), Some(filter(client))]
                .into_iter()
                .enumerate()
            {
                if let Err(e) = self.director.set_trace(f) {
                    result = Err(e.to_string());
                    break;
                }
                let c = self.program_cost(lab, &self.director, self.ifindex, 1, &fwd, |_| {
                    reader.borrow_mut().read(usize::MAX);
                    vec![ack.clone(); usize::from(k)]
                });
                match c {
                    Ok(c) => out[which].extend(c),
                    Err(e) => result = Err(e),
                }
            }
        }
        let _ = self.director.set_trace(None);
        let traced = reader.borrow_mut().read(usize::MAX).len();
        self.director.return_trace_reader(reader.into_inner());
        result?;
        if traced < usize::from(k) {
            return Err(format!("{traced} packets traced in the last rep, {k} expected"));
        }
        Ok(out)
    }

    /// The established path and the sweep with many connections tracked (the issue's "scale of
    /// state"): connections of service `i` (direct routing) are installed, as a synchronised
    /// director's would be, up to each of `sizes`; at each size the yardstick sends `k` packets
    /// per rep, each of a different connection picked at random among them (so that with
    /// millions most are cache misses), and one sweep of the whole table is timed. Every
    /// installed connection is removed at the end (a flush).
    /// Returns one [`StateScale`] per size.
    pub fn state_scale(
        &self,
        lab: &Classic,
        i: u32,
        sizes: &[u32],
        reps: usize,
        k: u16,
    ) -> Result<Vec<StateScale>, String> {
        let fwd = [action::REDIRECT, action::TX];
        // One real connection gives the service's and a server's slots.
        let (client, _) = self.clients(lab);
        let syn = crate::lab::syn(self.client_mac, self.director_mac, client, service(i), 33_336);
        let key = xvs_abi::Conn4Key {
            caddr: u32::from_ne_bytes(client.octets()),
            vaddr: u32::from_ne_bytes(service(i).ip().octets()),
            cport: 33_336u16.to_be(),
            vport: service(i).port().to_be(),
            proto: 6,
            pad: [0; 3],
        };
        let conn = {
            let _in = lab.director.enter();
            let a = self.director.run(&syn, self.ifindex)?;
            if !fwd.contains(&a) {
                return Err(format!("the SYN was not forwarded (action {a}; {})", self.reasons()));
            }
            self.director.maps.conn4.get(&key, 0).map_err(|e| format!("the SYN's connection: {e}"))?
        };
        // Clients 198.19.0.0/16, 64 ports each: up to 4,194,304 connections.
        let nth = |n: u32| (std::net::Ipv4Addr::new(198, 19, (n >> 14) as u8, (n >> 6) as u8), 1024 + (n & 63) as u16);
        let rec = |n: u32| {
            let (a, p) = nth(n);
            xvs_abi::InstallRec {
                caddr: [u32::from_ne_bytes(a.octets()), 0, 0, 0],
                vaddr: [key.vaddr, 0, 0, 0],
                cport: p.to_be(),
                vport: key.vport,
                proto: 6,
                af: xvs_abi::AF_INET,
                kind: xvs_abi::INSTALL_CONN,
                state: 1, // ESTABLISHED
                dest_id: conn.dest_id,
                svc_id: conn.svc_id,
                timeout_s: 900,
                ..Default::default()
            }
        };
        let mut out = Vec::new();
        let mut installed = 0u32;
        let seed = std::cell::Cell::new(0x9e37_79b9_7f4a_7c15u64);
        let result = (|| -> Result<(), String> {
            for &n in sizes {
                let _in = lab.director.enter();
                let t = Instant::now();
                while installed < n {
                    let batch: Vec<_> = (installed..n.min(installed + 4800)).map(rec).collect();
                    let res = self.director.install(&batch).map_err(|e| e.to_string())?;
                    if let Some(bad) = res.iter().find(|r| **r != xvs_abi::INSTALLED_NEW) {
                        return Err(format!("install at {installed}: result {bad} (table full?)"));
                    }
                    installed += batch.len() as u32;
                }
                eprintln!("    {n} connections installed ({:.1} s)", t.elapsed().as_secs_f64());
                drop(_in);
                let established = self.program_cost(lab, &self.director, self.ifindex, reps, &fwd, |_| {
                    (0..k)
                        .map(|_| {
                            // xorshift: a different connection for each packet.
                            let mut x = seed.get();
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            seed.set(x);
                            let (a, p) = nth((x % u64::from(n)) as u32);
                            crate::lab::ack(self.client_mac, self.director_mac, a, service(i), p)
                        })
                        .collect()
                })?;
                let _in = lab.director.enter();
                let mut sweeps = Vec::new();
                for _ in 0..reps.min(3) {
                    let t = Instant::now();
                    let r = self.director.sweep(0).map_err(|e| e.to_string())?;
                    sweeps.push(t.elapsed().as_secs_f64() * 1000.0);
                    if r.seen < u64::from(n) {
                        return Err(format!("the sweep saw {} connections, {n} were installed", r.seen));
                    }
                }
                // xvsd's sweeps: the first counts the table in one go, the next ones (timed)
                // walk it in steps when it is large.
                let mut sweeper = xvs_dataplane::Sweeper::default();
                sweeper.run(&self.director).map_err(|e| e.to_string())?;
                let mut xvsd_sweeps = Vec::new();
                for _ in 0..reps {
                    let t = Instant::now();
                    sweeper.run(&self.director).map_err(|e| e.to_string())?;
                    xvsd_sweeps.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                out.push(StateScale {
                    conns: n,
                    established,
                    sweep_ms: sweeps,
                    xvsd_sweep_ms: xvsd_sweeps,
                    stepping: sweeper.stepping(),
                });
            }
            Ok(())
        })();
        {
            let _in = lab.director.enter();
            self.director.sweep(xvs_abi::SWEEP_ALL).map_err(|e| format!("flush: {e}"))?;
        }
        result.map(|()| out)
    }

    /// xvs's figures for service `i` with its servers' current method; with NAT, a real
    /// server's reply too.
    pub fn yardstick(&self, lab: &Classic, i: u32, reps: usize, k: u16, nat: bool) -> Result<Costs, String> {
        let fwd = [action::REDIRECT, action::TX];
        let mut c = self.flows(lab, &self.director, i, reps, k, &fwd)?;
        if !nat {
            return Ok(c);
        }
        // The established flow's server (the SYN's destination), and its reply.
        let client = std::net::Ipv4Addr::new(198, 18, 1, 20 + self.runs.get().wrapping_sub(1));
        let cport = 33_334;
        let syn = crate::lab::syn(self.client_mac, self.director_mac, client, service(i), cport);
        let rs = {
            let _in = lab.director.enter();
            let r = self.director.test_run(&syn, self.ifindex).map_err(|e| e.to_string())?;
            std::net::Ipv4Addr::new(r.frame[30], r.frame[31], r.frame[32], r.frame[33])
        };
        let n = (0..lab.rs.len())
            .position(|n| xvs_lab::topology::rs4(n) == rs.to_string())
            .ok_or_else(|| format!("{rs} is none of the lab's real servers"))?;
        let dev = format!("r{}", n + 1);
        let back = reply(
            lab.rs[n].mac("eth0"),
            lab.director.mac(&dev),
            std::net::SocketAddrV4::new(rs, service(i).port()),
            client,
            cport,
        );
        c.reply = self.program_cost(lab, &self.director, lab.director.ifindex(&dev), reps, &fwd, |_| {
            vec![back.clone(); usize::from(k)]
        })?;
        Ok(c)
    }

    /// The new-flow cost through a NAT service at `target` (rr), whose servers are already
    /// configured: the figure to compare across server counts.
    pub fn new_flow_cost(
        &self,
        lab: &Classic,
        target: std::net::SocketAddrV4,
        reps: usize,
        k: u16,
    ) -> Result<Vec<f64>, String> {
        let (_, fresh) = self.clients(lab);
        self.program_cost(lab, &self.director, self.ifindex, reps, &[action::REDIRECT, action::TX], |rep| {
            let src = fresh(rep);
            (0..k).map(|p| crate::lab::syn(self.client_mac, self.director_mac, src, target, 21_000 + p)).collect()
        })
    }

    /// Katran's figures: loaded beside xvs in the director's namespace with service `i` as its
    /// VIP and the lab's two real servers, measured with the same frames.
    pub fn yardstick_katran(&self, lab: &Classic, i: u32, reps: usize, k: u16) -> Result<Costs, String> {
        let katran = {
            let _in = lab.director.enter();
            crate::katran::Katran::load(service(i), &real_servers(), self.client_mac)?
        };
        self.flows(lab, &katran, i, reps, k, &[action::TX])
    }
}
