//! The announcer as xvsd drives it: readiness, drains, stop, pushes and retries.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use xvs_announce::{readiness, Announcer, Policy, Reason, ServiceInput, Settings};
use xvs_core::Instant;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(ms: u64) -> Instant {
    Instant::from_nanos(ms * 1_000_000)
}

fn svc(vip: &str, usable: u32) -> ServiceInput {
    ServiceInput { vip: ip(vip), name: format!("TCP {vip}:80"), usable, quorum_up: None, standby: false }
}

fn set(v: &[&str]) -> BTreeSet<IpAddr> {
    v.iter().map(|s| ip(s)).collect()
}

#[test]
fn pushes_follow_readiness_and_wait_for_the_daemon() {
    let mut a = Announcer::new(Settings::default());
    a.handle_readiness(readiness(&[svc("198.18.0.1", 2), svc("198.18.0.2", 0)], None, Policy::Any));
    let p = a.poll(at(0)).expect("first push");
    assert_eq!(p.routes, set(&["198.18.0.1"]));
    assert!(a.poll(at(1)).is_none(), "one push at a time");
    assert!(!a.status()[0].announced, "not announced before the daemon says so");
    a.handle_result(p.id, p.routes.clone(), Ok(()), at(5));
    assert!(a.settled());
    assert!(a.status()[0].announced);
    assert!(a.poll(at(6)).is_none(), "nothing changed");
    // The second VIP gets a server: one push with both.
    a.handle_readiness(readiness(&[svc("198.18.0.1", 2), svc("198.18.0.2", 1)], None, Policy::Any));
    let p = a.poll(at(7)).unwrap();
    assert_eq!(p.routes, set(&["198.18.0.1", "198.18.0.2"]));
}

#[test]
fn an_empty_first_push_clears_what_an_earlier_daemon_left() {
    let mut a = Announcer::new(Settings::default());
    let p = a.poll(at(0)).expect("the daemon's routes are unknown until the first push");
    assert!(p.routes.is_empty());
}

#[test]
fn failures_retry_with_doubling_delays_and_the_current_set() {
    let mut a = Announcer::new(Settings::default());
    a.handle_readiness(readiness(&[svc("198.18.0.1", 1)], None, Policy::Any));
    let p = a.poll(at(0)).unwrap();
    a.handle_result(p.id, p.routes, Err("connect: No such file or directory".into()), at(0));
    assert_eq!(a.last_error(), Some("connect: No such file or directory"));
    assert!(a.poll(at(999)).is_none());
    let p = a.poll(at(1000)).expect("retry after 1 s");
    a.handle_result(p.id, p.routes, Err("again".into()), at(1000));
    assert!(a.poll(at(2999)).is_none());
    // Meanwhile the VIP lost its servers: the retry carries the set wanted now.
    a.handle_readiness(readiness(&[svc("198.18.0.1", 0)], None, Policy::Any));
    let p = a.poll(at(3000)).expect("retry after 2 s more");
    assert!(p.routes.is_empty());
    a.handle_result(p.id, p.routes, Ok(()), at(3000));
    assert_eq!(a.last_error(), None);
    assert_eq!(a.failures(), 0);
    // A stale result is ignored.
    a.handle_result(1, set(&["198.18.0.1"]), Ok(()), at(3001));
    assert!(!a.status()[0].announced);
    // The longest delay is 30 s.
    let mut now = 4000;
    a.handle_readiness(readiness(&[svc("198.18.0.1", 1)], None, Policy::Any));
    let mut last = 0;
    for _ in 0..10 {
        let p = loop {
            if let Some(p) = a.poll(at(now)) {
                break p;
            }
            now += 100;
        };
        a.handle_result(p.id, p.routes, Err("down".into()), at(now));
        last = now;
        now += 100;
    }
    let p = loop {
        if let Some(p) = a.poll(at(now)) {
            break p;
        }
        now += 100;
    };
    assert_eq!(now - last, Duration::from_secs(30).as_millis() as u64);
    drop(p);
}

#[test]
fn drains_hold_whatever_the_readiness_and_stop_withdraws_everything() {
    let mut a = Announcer::new(Settings::default());
    let both = readiness(&[svc("198.18.0.1", 1), svc("198.18.0.2", 1)], None, Policy::Any);
    a.handle_readiness(both.clone());
    a.drain(Some(ip("198.18.0.2"))).unwrap();
    assert_eq!(a.wanted(), set(&["198.18.0.1"]));
    assert!(a.drain(Some(ip("198.18.0.9"))).unwrap_err().contains("not a VIP"));
    a.drain(None).unwrap();
    assert!(a.wanted().is_empty());
    assert!(a.undrain(Some(ip("198.18.0.1"))).unwrap_err().contains("whole director"));
    let (all, vips) = a.drains();
    // A new daemon restores the drains before it pushes anything.
    let mut b = Announcer::new(Settings::default());
    b.restore_drains(all, vips);
    b.handle_readiness(both);
    assert!(b.poll(at(0)).unwrap().routes.is_empty());
    assert!(b.status().iter().all(|s| s.reason == Reason::Drained));
    b.undrain(None).unwrap();
    assert_eq!(b.wanted(), set(&["198.18.0.1", "198.18.0.2"]));
    assert!(b.undrain(Some(ip("198.18.0.1"))).unwrap_err().contains("not drained"));
    b.handle_stop();
    assert!(b.wanted().is_empty());
    assert!(b.status().iter().all(|s| s.reason == Reason::Stopping));
}

#[test]
fn a_vip_removed_from_the_configuration_shows_until_withdrawn() {
    let mut a = Announcer::new(Settings::default());
    a.handle_readiness(readiness(&[svc("198.18.0.1", 1)], None, Policy::Any));
    let p = a.poll(at(0)).unwrap();
    a.handle_result(p.id, p.routes, Ok(()), at(0));
    a.handle_readiness(BTreeMap::new());
    let s = a.status();
    assert_eq!(s.len(), 1);
    assert!(s[0].announced);
    assert_eq!(s[0].reason, Reason::NoService);
    let p = a.poll(at(1)).unwrap();
    assert!(p.routes.is_empty());
}
