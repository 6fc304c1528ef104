//! xvsadm's listings against ipvsadm's, byte for byte.
//!
//! `testdata/ipvsadm/formats-extra/` holds what ipvsadm printed on a real kernel (see
//! `formats-scenario.sh` there). Each test restores the recorded `ipvsadm -S -n` output through
//! `xvsadm -R` into a small in-memory stand-in for xvsd, gives it the counters the kernel had
//! (read from the recording: the point is the layout, not the counting), and compares what
//! `xvsadm` prints with what `ipvsadm` printed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use xvs_api::{ConnState, Counters, DestState, KeySpec, Rates, Request, Response, ServiceState, Snapshot};
use xvsadm::client::Transport;
use xvsadm::run::run;

fn recorded(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/ipvsadm/formats-extra").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The numbers of each `addr:port` row (and `FWM n` row) of a recorded listing.
fn rows(text: &str) -> HashMap<String, Vec<u64>> {
    let mut out = HashMap::new();
    let mut service = String::new();
    for line in text.lines().skip(3) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (key, rest) = match fields.as_slice() {
            ["->", ep, rest @ ..] => (format!("{service} {ep}"), rest),
            [proto, ep, rest @ ..] => {
                service = format!("{proto} {ep}");
                (service.clone(), rest)
            }
            _ => continue,
        };
        out.insert(key, rest.iter().filter_map(|f| f.parse().ok()).collect());
    }
    out
}

fn proto_name(k: &KeySpec) -> String {
    match k {
        KeySpec::Fwmark { mark, .. } => format!("FWM {mark}"),
        KeySpec::Addr { proto, addr, port } => {
            let a = match addr {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            format!("{} {a}:{port}", format!("{proto:?}").to_uppercase())
        }
    }
}

/// Holds what `-R` added and answers snapshots with the recorded counters.
#[derive(Default)]
struct Recorded {
    snap: Snapshot,
    conns: Vec<ConnState>,
}

impl Transport for Recorded {
    fn call(&mut self, req: &Request) -> Result<Response, String> {
        if let Request::Batch { requests } = req {
            for r in requests {
                self.call(r)?;
            }
            return Ok(Response::Ok);
        }
        match req {
            Request::AddService { service } => self.snap.services.push(ServiceState {
                spec: service.clone(),
                stats: Counters::default(),
                rates: Rates::default(),
                dests: Vec::new(),
            }),
            Request::AddDest { key, dest } => {
                let s = self.snap.services.iter_mut().find(|s| s.spec.key == *key).expect("service first");
                s.dests.insert(
                    0,
                    DestState {
                        spec: dest.clone(),
                        active: 0,
                        inactive: 0,
                        persistent: 0,
                        overloaded: false,
                        stats: Counters::default(),
                        rates: Rates::default(),
                    },
                );
            }
            Request::Snapshot { conns } => {
                let mut s = self.snap.clone();
                if *conns {
                    s.conns = self.conns.clone();
                }
                return Ok(Response::Snapshot(Box::new(s)));
            }
            other => panic!("unexpected request {other:?}"),
        }
        Ok(Response::Ok)
    }
}

fn xvsadm(t: &mut Recorded, args: &str) -> String {
    let argv: Vec<String> = std::iter::once("xvsadm").chain(args.split_whitespace()).map(String::from).collect();
    let out = run(&argv, t, &mut std::io::empty());
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "xvsadm {args}");
    out.stdout
}

/// The recorded configuration, with the recorded connection counts, statistics and rates.
fn kernel() -> Recorded {
    let mut t = Recorded::default();
    t.snap.conn_table_size = 4096;
    t.snap.timeouts = (900, 120, 300);
    let save = recorded("S-n.txt");
    let out = run(&["xvsadm".into(), "-R".into()], &mut t, &mut save.as_bytes());
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "restore");
    let conns = rows(&recorded("Ln.txt"));
    let stats = rows(&recorded("Ln-stats.txt"));
    let rates = rows(&recorded("Ln-rate.txt"));
    let thresholds = rows(&recorded("Ln-thresholds.txt"));
    let counters = |v: &[u64]| Counters { conns: v[0], inpkts: v[1], outpkts: v[2], inbytes: v[3], outbytes: v[4] };
    let rate = |v: &[u64]| Rates { cps: v[0], inpps: v[1], outpps: v[2], inbps: v[3], outbps: v[4] };
    for s in &mut t.snap.services {
        let name = proto_name(&s.spec.key);
        s.stats = counters(&stats[&name]);
        s.rates = rate(&rates[&name]);
        for d in &mut s.dests {
            let row = format!("{name} {}:{}", d.spec.addr, d.spec.port);
            d.active = conns[&row][1] as u32;
            d.inactive = conns[&row][2] as u32;
            d.stats = counters(&stats[&row]);
            d.rates = rate(&rates[&row]);
            // ipvsadm -S does not save thresholds (the recording shows it), so they come from
            // the --thresholds listing.
            d.spec.u_threshold = thresholds[&row][0] as u32;
            d.spec.l_threshold = thresholds[&row][1] as u32;
        }
    }
    for line in recorded("Lnc.txt").lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (m, s) = f[1].split_once(':').unwrap();
        let ep = |x: &str| {
            let (a, p) = x.rsplit_once(':').unwrap();
            (a.parse().unwrap(), p.parse().unwrap())
        };
        let ((caddr, cport), (vaddr, vport), (daddr, dport)) = (ep(f[3]), ep(f[4]), ep(f[5]));
        t.conns.push(ConnState {
            proto: f[0].into(),
            expires: m.parse::<u64>().unwrap() * 60 + s.parse::<u64>().unwrap(),
            state: f[2].into(),
            caddr,
            cport,
            vaddr,
            vport,
            daddr,
            dport,
        });
    }
    t
}

#[test]
fn save_reads_back_what_ipvsadm_wrote() {
    assert_eq!(xvsadm(&mut kernel(), "-S -n"), recorded("S-n.txt"));
}

#[test]
fn plain_listing() {
    assert_eq!(xvsadm(&mut kernel(), "-L -n"), recorded("Ln.txt"));
    assert_eq!(xvsadm(&mut kernel(), "-Ln"), recorded("Ln.txt"));
}

#[test]
fn statistics_rates_and_exact() {
    assert_eq!(xvsadm(&mut kernel(), "-Ln --stats"), recorded("Ln-stats.txt"));
    assert_eq!(xvsadm(&mut kernel(), "-Ln --rate"), recorded("Ln-rate.txt"));
    assert_eq!(xvsadm(&mut kernel(), "-Ln --exact"), recorded("Ln-exact.txt"));
}

#[test]
fn thresholds_and_persistent_connections() {
    assert_eq!(xvsadm(&mut kernel(), "-Ln --thresholds"), recorded("Ln-thresholds.txt"));
    assert_eq!(xvsadm(&mut kernel(), "-Ln --persistent-conn"), recorded("Ln-persistent-conn.txt"));
}

#[test]
fn connections_and_timeouts() {
    assert_eq!(xvsadm(&mut kernel(), "-Lnc"), recorded("Lnc.txt"));
    assert_eq!(xvsadm(&mut kernel(), "-L --timeout"), recorded("L-timeout.txt"));
}

#[test]
fn one_service_and_a_missing_one() {
    let listing = xvsadm(&mut kernel(), "-Ln -t 198.18.0.101:443");
    // No version header for one service (reference §8.4).
    let full = recorded("Ln.txt");
    let want: String =
        full.lines().skip(1).take(2).chain(full.lines().skip(7).take(3)).map(|l| format!("{l}\n")).collect();
    assert_eq!(listing, want);
    let argv: Vec<String> = ["xvsadm", "-Ln", "-t", "198.18.0.99:80"].map(String::from).to_vec();
    let out = run(&argv, &mut kernel(), &mut std::io::empty());
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (1, "", "No such service\n"));
}

#[test]
fn json_listing_is_the_snapshot() {
    let text = xvsadm(&mut kernel(), "-Ln --json");
    let back: Snapshot = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(back.services.len(), 4);
    assert_eq!(back.services[0].dests.len(), 3);
}

#[test]
fn health_listing() {
    use xvs_api::health::{CheckStatus, LastResult, ServerStatus, ServiceStatus};
    let mut t = kernel();
    let key = t.snap.services[0].spec.key;
    let check = |up: bool, reason: &str| CheckStatus {
        kind: "HTTP_GET".into(),
        target: "198.18.2.2:80".into(),
        up,
        retries: u32::from(!up),
        last: Some(LastResult { ok: up, reason: reason.into(), ago_ms: 400 }),
        shared_with: 1,
    };
    t.snap.health = vec![ServiceStatus {
        service: key,
        quorum_up: true,
        alive_weight: 1,
        quorum: 1,
        sorry_active: None,
        servers: vec![
            ServerStatus {
                server: "198.18.2.2:80".parse().unwrap(),
                alive: true,
                weight: Some(1),
                checks: vec![check(true, "/ answered status 200")],
            },
            ServerStatus {
                server: "198.18.3.2:80".parse().unwrap(),
                alive: false,
                weight: None,
                checks: vec![check(false, "timed out after 1s")],
            },
        ],
    }];
    assert_eq!(
        xvsadm(&mut t, "health"),
        "TCP  198.18.0.100:80  quorum up (alive weight 1 of quorum 1)\n\
         \x20 -> 198.18.2.2:80                UP    weight 1\n\
         \x20      HTTP_GET 198.18.2.2:80 up: ok 0.4s ago: / answered status 200 [shared with 1]\n\
         \x20 -> 198.18.3.2:80                DOWN  not in table\n\
         \x20      HTTP_GET 198.18.2.2:80 down: FAILED 0.4s ago: timed out after 1s (retry 1) [shared with 1]\n"
    );
    let json: Vec<ServiceStatus> = serde_json::from_str(&xvsadm(&mut t, "health --json")).unwrap();
    assert_eq!(json, t.snap.health);
    assert!(xvsadm(&mut Recorded::default(), "health").starts_with("no health checks configured"));
}
