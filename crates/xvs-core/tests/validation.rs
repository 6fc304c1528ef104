//! Requests the kernel refuses are refused, with its errno, and change nothing.

use std::net::IpAddr;

use xvs_core::{
    DestConfig, Errno, Error, Family, ForwardMethod, Instant, Netmask, SchedKind, ServiceConfig, ServiceKey, Services,
    Tunnel, TunnelKind,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn vip() -> ServiceKey {
    ServiceKey::tcp(ip("198.18.0.100"), 80)
}

fn table() -> Services {
    let mut s = Services::new();
    s.add_service(vip(), ServiceConfig::new(Family::V4, SchedKind::Wlc), Instant::ZERO).unwrap();
    s.add_dest(&vip(), ip("198.18.2.1"), 80, DestConfig::new(ForwardMethod::Masq)).unwrap();
    s
}

/// A fingerprint of everything an operator could see.
fn snapshot(s: &Services) -> String {
    let mut out = String::new();
    for (id, svc) in s.iter() {
        out += &format!("{} {:?}\n", svc.key(), svc.config());
        for (_, d) in s.view(id).unwrap().iter() {
            out += &format!("  {}:{} {:?} lw={}\n", d.addr(), d.port(), d.config(), d.last_weight());
        }
    }
    out
}

#[track_caller]
fn refused(s: &mut Services, errno: Errno, f: impl FnOnce(&mut Services) -> Result<(), Error>) {
    let before = snapshot(s);
    let err = f(s).expect_err("request must be refused");
    assert_eq!(err.errno(), errno, "{err}");
    assert!(!err.to_string().is_empty());
    assert_eq!(snapshot(s), before, "a refused request changed the table");
}

#[test]
fn service_errors() {
    let mut s = table();
    let cfg = ServiceConfig::new(Family::V4, SchedKind::Rr);
    refused(&mut s, Errno::Exist, |s| s.add_service(vip(), cfg.clone(), Instant::ZERO).map(drop));
    refused(&mut s, Errno::Srch, |s| {
        s.edit_service(&ServiceKey::tcp(ip("198.18.0.1"), 80), cfg.clone(), Instant::ZERO)
    });
    refused(&mut s, Errno::Srch, |s| s.delete_service(&ServiceKey::tcp(ip("198.18.0.1"), 80), Instant::ZERO));
    refused(&mut s, Errno::Srch, |s| s.zero(Some(&ServiceKey::udp(ip("198.18.0.100"), 80))));
    let v6 = ServiceKey::tcp(ip("2001:2::1"), 80);
    let mut bad = ServiceConfig::new(Family::V6, SchedKind::Rr);
    bad.netmask = Netmask::V6(129);
    refused(&mut s, Errno::Inval, |s| s.add_service(v6, bad, Instant::ZERO).map(drop));
    let mut pe = cfg.clone();
    pe.pe = Some("nope".into());
    refused(&mut s, Errno::NoEnt, |s| {
        s.add_service(ServiceKey::tcp(ip("198.18.0.2"), 80), pe, Instant::ZERO).map(drop)
    });
    refused(&mut s, Errno::Inval, |s| {
        s.add_service(ServiceKey::Fwmark { af: Family::V4, mark: 0 }, cfg.clone(), Instant::ZERO).map(drop)
    });
    assert_eq!("foo".parse::<SchedKind>().unwrap_err().errno(), Errno::NoEnt);
}

#[test]
fn dest_errors() {
    let mut s = table();
    let m = DestConfig::new(ForwardMethod::Masq);
    refused(&mut s, Errno::Srch, |s| {
        s.add_dest(&ServiceKey::udp(ip("198.18.0.100"), 80), ip("198.18.2.2"), 80, m).map(drop)
    });
    refused(&mut s, Errno::Exist, |s| s.add_dest(&vip(), ip("198.18.2.1"), 80, m).map(drop));
    refused(&mut s, Errno::Range, |s| s.add_dest(&vip(), ip("198.18.2.2"), 80, m.weight(-1)).map(drop));
    refused(&mut s, Errno::Range, |s| s.add_dest(&vip(), ip("198.18.2.2"), 80, m.thresholds(10, 20)).map(drop));
    refused(&mut s, Errno::Range, |s| s.add_dest(&vip(), ip("198.18.2.2"), 80, m.thresholds(0, 5)).map(drop));
    refused(&mut s, Errno::Inval, |s| s.add_dest(&vip(), ip("224.0.0.1"), 80, m).map(drop));
    refused(&mut s, Errno::Inval, |s| s.add_dest(&vip(), ip("0.0.0.0"), 80, m).map(drop));
    refused(&mut s, Errno::Inval, |s| s.add_dest(&vip(), ip("2001:2::5"), 80, m).map(drop));
    let gue = DestConfig {
        tunnel: Tunnel { kind: TunnelKind::Gue, ..Tunnel::default() },
        ..DestConfig::new(ForwardMethod::Tunnel)
    };
    refused(&mut s, Errno::Inval, |s| s.add_dest(&vip(), ip("198.18.2.2"), 80, gue).map(drop));
    refused(&mut s, Errno::NoEnt, |s| s.edit_dest(&vip(), ip("198.18.2.9"), 80, m).map(drop));
    refused(&mut s, Errno::NoEnt, |s| s.delete_dest(&vip(), &ip("198.18.2.9"), 80, Instant::ZERO));
    refused(&mut s, Errno::Range, |s| s.edit_dest(&vip(), ip("198.18.2.1"), 80, m.weight(-5)).map(drop));
}

#[test]
fn mixed_families_only_with_tunnels() {
    let mut s = table();
    s.add_dest(&vip(), ip("2001:2::5"), 80, DestConfig::new(ForwardMethod::Tunnel)).unwrap();
}

#[test]
fn mh_holds_at_most_one_server_per_slot() {
    let mut s = Services::new();
    let key = ServiceKey::tcp(ip("198.18.0.100"), 80);
    s.add_service(key, ServiceConfig::new(Family::V4, SchedKind::Mh), Instant::ZERO).unwrap();
    for i in 0..4093u32 {
        let a = IpAddr::from((0xC613_0000u32 + i + 1).to_be_bytes());
        s.add_dest(&key, a, 80, DestConfig::new(ForwardMethod::Route)).unwrap();
    }
    refused(&mut s, Errno::Inval, |s| {
        s.add_dest(&key, ip("198.18.200.1"), 80, DestConfig::new(ForwardMethod::Route)).map(drop)
    });
}

#[test]
fn editing_the_scheduler_rebinds_it_and_keeps_the_servers() {
    let mut s = table();
    s.add_dest(&vip(), ip("198.18.2.2"), 80, DestConfig::new(ForwardMethod::Masq)).unwrap();
    s.edit_service(&vip(), ServiceConfig::new(Family::V4, SchedKind::Sh), Instant::ZERO).unwrap();
    let id = s.find(&vip()).unwrap();
    assert_eq!(s.get(id).unwrap().scheduler().unwrap().kind(), SchedKind::Sh);
    assert_eq!(s.view(id).unwrap().len(), 2);
}

#[test]
fn a_removed_server_comes_back_from_the_trash_with_its_identity() {
    let mut s = table();
    let id = s.find_dest(s.find(&vip()).unwrap(), &ip("198.18.2.1"), 80).unwrap();
    s.delete_dest(&vip(), &ip("198.18.2.1"), 80, Instant::ZERO).unwrap();
    // Idle in the trash, and added back within its time: the same server.
    s.handle_timeout(Instant::from_secs(60), Default::default(), Default::default());
    let again = s.add_dest(&vip(), ip("198.18.2.1"), 80, DestConfig::new(ForwardMethod::Masq).weight(3)).unwrap();
    assert_eq!(again, id, "revived, not recreated");
    // As the kernel: the check 60 s after it entered the empty trash finds it idle, and the
    // check 120 s after that frees it — 180 s after its deletion.
    s.delete_dest(&vip(), &ip("198.18.2.1"), 80, Instant::from_secs(100)).unwrap();
    for t in [120, 160, 220, 270] {
        s.handle_timeout(Instant::from_secs(t), Default::default(), Default::default());
        assert!(s.dest(id).is_some(), "still in the trash at {t} s");
    }
    s.handle_timeout(Instant::from_secs(280), Default::default(), Default::default());
    assert!(s.dest(id).is_none(), "freed 180 s after its deletion");
}
