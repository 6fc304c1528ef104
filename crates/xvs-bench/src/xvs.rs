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
