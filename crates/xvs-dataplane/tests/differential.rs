//! The dataplane and the core pick the same real servers.
//!
//! For every scheduler but twos (which draws random numbers), the same sequence of new
//! connections, closes and weight edits goes through the director (BPF_PROG_TEST_RUN) and
//! through `xvs_core::Balancer`, and each new connection must land on the same server on both.
//! Connections stay open or are closed on both sides alike, so the counter-based schedulers see
//! the same active/inactive counts; one server has an upper threshold so overload shows up.

mod common;

use common::*;
use xvs_core::{
    DestConfig, ForwardMethod, Packet, SchedFlags, SchedKind, ServiceConfig, ServiceKey, TcpFlags, Verdict,
};
use xvs_dataplane::action;

/// A tiny deterministic generator for the sequences.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u32) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}

fn client(i: u32) -> String {
    format!("198.18.{}.{}", 1 + i / 200, 10 + i % 200)
}

fn run(sched: SchedKind, flags: SchedFlags, seed: u64) {
    let mut lab = Lab::new();
    let key = ServiceKey::tcp(ip(VIP4), 80);
    lab.service_with(key, ServiceConfig::new(key.family(), sched).with_flags(flags));
    let weights = [3, 1, 2];
    for (i, w) in weights.iter().enumerate() {
        let mut cfg = DestConfig::new(ForwardMethod::Masq).weight(*w);
        if i == 1 {
            cfg = cfg.thresholds(3, 0);
        }
        lab.dest(&key, RS4[i], 8080, cfg);
    }
    lab.ns.ip(&["neigh", "replace", "198.18.2.5", "lladdr", "02:00:00:00:02:05", "dev", "d1", "nud", "permanent"]);
    let mut rng = Lcg(seed);
    let mut open: Vec<(String, u16)> = Vec::new();
    let mut next_port = 10000u16;
    for step in 0..120 {
        let r = rng.next(10);
        if std::env::var("XVS_TRACE").is_ok() {
            eprintln!("step {step}: {r} state {:?}", lab.dp.maps.sched_state.get(&0, 0));
        }
        match r {
            0..=5 => {
                let c = client(rng.next(if matches!(sched, SchedKind::Sh | SchedKind::Mh) { 400 } else { 20 }));
                next_port += 1;
                let p = Packet::tcp((ip(&c), next_port), (key.addr(), 80), TcpFlags::SYN);
                let core = match lab.lb.handle_inbound(lab.now, &p) {
                    Verdict::Forward(f) => f.daddr.to_string(),
                    Verdict::Unreachable => "unreachable".into(),
                    v => format!("{v:?}"),
                };
                let f = frame((ip(&c), next_port), (key.addr(), 80), Some(TcpFlags::SYN), b"", CLIENT_MAC, lab.mac_d0);
                let r = lab.run_client(&f);
                let dp = match r.action {
                    action::REDIRECT => parse(&r.frame).dst.to_string(),
                    action::TX => "unreachable".into(),
                    a => format!("action {a}"),
                };
                if std::env::var("XVS_TRACE").is_ok() {
                    eprintln!("  open -> dp {dp} core {core}");
                }
                assert_eq!(dp, core, "{sched} seed {seed} step {step}: new connection from {c}:{next_port}");
                if core != "unreachable" {
                    open.push((c, next_port));
                }
            }
            6 | 7 if !open.is_empty() => {
                // Established, then reset by the client: inactive on both sides.
                let (c, port) = open.swap_remove(rng.next(open.len() as u32) as usize);
                for flags in [TcpFlags::ACK, TcpFlags::RST] {
                    let p = Packet::tcp((ip(&c), port), (key.addr(), 80), flags);
                    let core = match lab.lb.handle_inbound(lab.now, &p) {
                        Verdict::Forward(_) => action::REDIRECT,
                        Verdict::Drop(_) => action::DROP,
                        v => panic!("{v:?}"),
                    };
                    let f = frame((ip(&c), port), (key.addr(), 80), Some(flags), b"", CLIENT_MAC, lab.mac_d0);
                    assert_eq!(lab.run_client(&f).action, core, "{sched} seed {seed} step {step}: close");
                }
            }
            9 => {
                // The fourth server comes and goes (new servers go to the head of the list).
                let svc = lab.lb.services.find(&key).unwrap();
                if lab.lb.services.find_dest(svc, &ip("198.18.2.5"), 8080).is_some() {
                    lab.lb.services.delete_dest(&key, &ip("198.18.2.5"), 8080, lab.now).unwrap();
                } else {
                    let w = 1 + rng.next(4) as i32;
                    lab.lb
                        .services
                        .add_dest(&key, ip("198.18.2.5"), 8080, DestConfig::new(ForwardMethod::Masq).weight(w))
                        .unwrap();
                }
                lab.republish(&key);
            }
            8 => {
                let i = rng.next(3) as usize;
                let w = rng.next(4) as i32;
                let mut cfg = DestConfig::new(ForwardMethod::Masq).weight(w);
                if i == 1 {
                    cfg = cfg.thresholds(3, 0);
                }
                if std::env::var("XVS_TRACE").is_ok() {
                    eprintln!("  edit {} w={w}", RS4[i]);
                }
                lab.lb.services.edit_dest(&key, ip(RS4[i]), 8080, cfg).unwrap();
                lab.republish(&key);
            }
            _ => {}
        }
        // Counters agree after every step.
        let svc = lab.lb.services.find(&key).unwrap();
        for rs in RS4 {
            let d = lab.lb.services.find_dest(svc, &ip(rs), 8080).unwrap();
            let core = lab.lb.services.dest(d).unwrap();
            let dp = lab.dp.dest_counters(d).unwrap();
            assert_eq!(
                (dp.active, dp.inactive, dp.overloaded),
                (core.active_conns(), core.inactive_conns(), core.is_overloaded()),
                "{sched} seed {seed} step {step}: counters of {rs}"
            );
        }
    }
}

macro_rules! differential {
    ($($name:ident: $s:expr, $f:expr;)*) => {
        $(
            #[test]
            fn $name() {
                if require_root().is_none() { return; }
                for seed in [1, 2, 3, 4, 5, 6] {
                    run($s, $f, seed);
                }
            }
        )*
    };
}

differential! {
    rr: SchedKind::Rr, SchedFlags::empty();
    wrr: SchedKind::Wrr, SchedFlags::empty();
    lc: SchedKind::Lc, SchedFlags::empty();
    wlc: SchedKind::Wlc, SchedFlags::empty();
    sed: SchedKind::Sed, SchedFlags::empty();
    nq: SchedKind::Nq, SchedFlags::empty();
    fo: SchedKind::Fo, SchedFlags::empty();
    ovf: SchedKind::Ovf, SchedFlags::empty();
    lblc: SchedKind::Lblc, SchedFlags::empty();
    lblcr: SchedKind::Lblcr, SchedFlags::empty();
    dh: SchedKind::Dh, SchedFlags::empty();
    sh: SchedKind::Sh, SchedFlags::empty();
    sh_fallback_port: SchedKind::Sh, SchedFlags::SCHED1.union(SchedFlags::SCHED2);
    mh: SchedKind::Mh, SchedFlags::empty();
    mh_fallback_port: SchedKind::Mh, SchedFlags::SCHED1.union(SchedFlags::SCHED2);
}
