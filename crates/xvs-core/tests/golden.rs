//! Golden scheduler sequences, written down as data in `tests/golden/*.toml`.
//!
//! Each case is a small script run against a [`Balancer`] on a fake clock. The scripts were
//! derived by hand from `shared/reference/ipvs.md` and the kernel sources, or recorded from the
//! real kernel with `shared/tools/ipvs-vm` (each case says which in `derivation`). Commands:
//!
//! ```text
//! service tcp|udp ADDR:PORT SCHED [flags=a,b] [persistent=N] [mask=M] [ops]
//! add NAME ADDR:PORT [w=N] [x=N] [y=N] [m|g|i]     # -a
//! edit NAME [w=N] [x=N] [y=N] [m|g|i]              # -e: omitted options take defaults
//! del NAME                                         # -d
//! set NAME active=N inactive=N [overloaded]        # counters as the dataplane reports them
//! picks NAME...                                    # scheduler only, clients 198.18.1.1:10000+i
//! pick CLIENT[:PORT] [to ADDR] -> NAME|none        # one scheduler call
//! open CLIENT:PORT -> NAME|unreachable|pass        # a SYN (or UDP packet) through the balancer
//! send CLIENT:PORT ack|fin|rst|none                # another client packet on that flow
//! wait SECONDS                                     # advance the clock, running timers
//! expect NAME active=N inactive=N [persist=N] [overloaded=BOOL]
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use xvs_core::sched::{SchedEnv, SchedInput};
use xvs_core::{
    Balancer, DestConfig, DestCounters, ForwardMethod, Instant, Netmask, Packet, Protocol, SchedFlags, SchedKind,
    ServiceConfig, ServiceKey, SplitMix64, TcpFlags, Verdict,
};

#[derive(Deserialize)]
struct File {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    #[allow(dead_code)]
    derivation: String,
    script: String,
}

struct Run {
    lb: Balancer,
    now: Instant,
    svc: Option<ServiceKey>,
    names: HashMap<String, (IpAddr, u16)>,
    by_addr: HashMap<(IpAddr, u16), String>,
    next_client: u16,
}

fn kv<'a>(tokens: &[&'a str], key: &str) -> Option<&'a str> {
    tokens.iter().find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn endpoint(s: &str, default_port: u16) -> (IpAddr, u16) {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return (sa.ip(), sa.port());
    }
    (s.parse().unwrap_or_else(|_| panic!("bad address {s}")), default_port)
}

fn dest_config(tokens: &[&str]) -> DestConfig {
    let method = if tokens.contains(&"g") {
        ForwardMethod::Route
    } else if tokens.contains(&"i") {
        ForwardMethod::Tunnel
    } else {
        ForwardMethod::Masq
    };
    let n = |k| kv(tokens, k).map(|v| v.parse::<u32>().unwrap());
    DestConfig::new(method).weight(n("w").unwrap_or(1) as i32).thresholds(n("x").unwrap_or(0), n("y").unwrap_or(0))
}

impl Run {
    fn new() -> Self {
        Run {
            lb: Balancer::new(7),
            now: Instant::ZERO,
            svc: None,
            names: HashMap::new(),
            by_addr: HashMap::new(),
            next_client: 0,
        }
    }

    fn svc(&self) -> ServiceKey {
        self.svc.expect("script declares a service first")
    }

    fn name_of(&self, addr: IpAddr, port: u16) -> String {
        self.by_addr.get(&(addr, port)).cloned().unwrap_or_else(|| format!("{addr}:{port}"))
    }

    fn pick(&mut self, client: (IpAddr, u16), to: Option<IpAddr>) -> String {
        let key = self.svc();
        let id = self.lb.services.find(&key).expect("service exists");
        let input = SchedInput {
            proto: key.protocol(),
            saddr: client.0,
            daddr: to.unwrap_or(key.addr()),
            sport: client.1,
            dport: key.port(),
            inverse: false,
        };
        let mut rng = SplitMix64(1);
        let mut env = SchedEnv {
            now: self.now,
            flags: SchedFlags::empty(),
            expiration: Duration::from_secs(86400),
            rng: &mut rng,
        };
        match self.lb.services.schedule(id, &input, &mut env) {
            Some(d) => {
                let d = self.lb.services.dest(d).unwrap();
                self.name_of(d.addr(), d.port())
            }
            None => "none".into(),
        }
    }

    fn packet(&self, client: (IpAddr, u16), flags: u8) -> Packet {
        let key = self.svc();
        let mut p = match key.protocol() {
            Protocol::Udp => Packet::udp(client, (key.addr(), key.port())),
            _ => Packet::tcp(client, (key.addr(), key.port()), flags),
        };
        p.fwmark = key.fwmark();
        p
    }

    fn step(&mut self, line: &str) {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let (cmd, args) = tokens.split_first().expect("non-empty line");
        match *cmd {
            "service" => {
                let (addr, port) = endpoint(args[1], 0);
                let key = match args[0] {
                    "tcp" => ServiceKey::tcp(addr, port),
                    "udp" => ServiceKey::udp(addr, port),
                    p => panic!("unknown protocol {p}"),
                };
                let sched: SchedKind = args[2].parse().unwrap();
                let mut cfg = ServiceConfig::new(key.family(), sched);
                if let Some(f) = kv(args, "flags") {
                    cfg.flags = SchedFlags::parse(f, sched.name()).unwrap();
                }
                if let Some(p) = kv(args, "persistent") {
                    cfg.persistence = Some(p.parse().unwrap());
                }
                if let Some(m) = kv(args, "mask") {
                    cfg.netmask = Netmask::V4(m.parse().unwrap());
                }
                cfg.one_packet = args.contains(&"ops");
                self.lb.add_service(key, cfg, self.now).unwrap();
                self.svc = Some(key);
            }
            "add" => {
                let (addr, port) = endpoint(args[1], self.svc().port());
                self.lb.services.add_dest(&self.svc(), addr, port, dest_config(&args[2..])).unwrap();
                self.names.insert(args[0].to_string(), (addr, port));
                self.by_addr.insert((addr, port), args[0].to_string());
            }
            "edit" => {
                let (addr, port) = self.names[args[0]];
                self.lb.services.edit_dest(&self.svc(), addr, port, dest_config(&args[1..])).unwrap();
            }
            "del" => {
                let (addr, port) = self.names[args[0]];
                self.lb.services.delete_dest(&self.svc(), &addr, port, self.now).unwrap();
            }
            "set" => {
                let (addr, port) = self.names[args[0]];
                let svc = self.lb.services.find(&self.svc()).unwrap();
                let id = self.lb.services.find_dest(svc, &addr, port).unwrap();
                let n = |k| kv(args, k).map_or(0, |v| v.parse().unwrap());
                let c = DestCounters {
                    active: n("active"),
                    inactive: n("inactive"),
                    persistent: n("persist"),
                    overloaded: args.contains(&"overloaded"),
                };
                self.lb.services.set_dest_counters(id, c).unwrap();
            }
            "picks" => {
                for (i, want) in args.iter().enumerate() {
                    let client = (IpAddr::from([198, 18, 1, 1]), 10000 + self.next_client);
                    self.next_client += 1;
                    let got = self.pick(client, None);
                    assert_eq!(&got, want, "pick #{} of `{line}`", i + 1);
                }
            }
            "pick" => {
                let client = endpoint(args[0], 0);
                let to = (args[1] == "to").then(|| args[2].parse().unwrap());
                let want = args.last().unwrap();
                assert_eq!(args[args.len() - 2], "->", "syntax: pick CLIENT [to ADDR] -> NAME");
                let got = self.pick(client, to);
                assert_eq!(&got, want, "`{line}`");
            }
            "open" => {
                let client = endpoint(args[0], 0);
                let want = args[2];
                let pkt = self.packet(client, TcpFlags::SYN);
                let got = match self.lb.handle_inbound(self.now, &pkt) {
                    Verdict::Forward(f) => self.name_of(f.daddr, f.dport),
                    Verdict::Unreachable => "unreachable".into(),
                    Verdict::Pass => "pass".into(),
                    v => format!("{v:?}"),
                };
                assert_eq!(got, want, "`{line}`");
            }
            "send" => {
                let client = endpoint(args[0], 0);
                let flags = match args[1] {
                    "ack" => TcpFlags::ACK,
                    "fin" => TcpFlags::FIN | TcpFlags::ACK,
                    "rst" => TcpFlags::RST,
                    "syn" => TcpFlags::SYN,
                    _ => 0,
                };
                let pkt = self.packet(client, flags);
                let _ = self.lb.handle_inbound(self.now, &pkt);
            }
            "wait" => {
                let until = self.now + Duration::from_secs(args[0].parse().unwrap());
                while let Some(t) = self.lb.poll_timeout().filter(|t| *t <= until) {
                    self.now = t.max(self.now);
                    self.lb.handle_timeout(self.now);
                }
                self.now = until;
            }
            "expect" => {
                let (addr, port) = self.names[args[0]];
                let svc = self.lb.services.find(&self.svc()).unwrap();
                let id = self.lb.services.find_dest(svc, &addr, port).unwrap();
                let d = self.lb.services.dest(id).unwrap();
                let n = |k| kv(args, k).map(|v| v.parse::<u32>().unwrap());
                if let Some(a) = n("active") {
                    assert_eq!(d.active_conns(), a, "active of `{line}`");
                }
                if let Some(i) = n("inactive") {
                    assert_eq!(d.inactive_conns(), i, "inactive of `{line}`");
                }
                if let Some(p) = n("persist") {
                    assert_eq!(d.persist_conns(), p, "persist of `{line}`");
                }
                if let Some(o) = kv(args, "overloaded") {
                    assert_eq!(d.is_overloaded().to_string(), o, "overload flag of `{line}`");
                }
            }
            other => panic!("unknown command `{other}`"),
        }
    }
}

#[test]
fn golden_sequences() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut cases = 0;
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
        let text = std::fs::read_to_string(path).unwrap();
        let file: File = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for case in file.case {
            let mut run = Run::new();
            for line in case.script.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.step(line)));
                if let Err(e) = r {
                    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
                    panic!("{} / {}: {msg}", path.file_name().unwrap().to_string_lossy(), case.name);
                }
            }
            cases += 1;
        }
    }
    assert!(cases >= 14, "every scheduler has golden cases ({cases} found)");
}
