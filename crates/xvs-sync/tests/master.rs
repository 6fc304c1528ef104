//! The master: what it sends, when, and how it packs it.

mod common;
use common::*;
use std::time::Duration;
use xvs_sync::*;

fn drain(m: &mut Master, now: Instant) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| m.poll_transmit(now)).collect()
}

/// The entries in `datagrams`, as sent (a backup would add `SYNC` to the flags).
fn decoded(datagrams: &[Vec<u8>]) -> Vec<SyncConn> {
    datagrams
        .iter()
        .flat_map(|d| Message::parse(d).expect("the master's own header").entries())
        .map(|e| e.expect("the master's own entry"))
        .collect()
}

fn master() -> Master {
    Master::new(MasterConfig { syncid: 7, ..MasterConfig::default() })
}

#[test]
fn new_connections_are_sent_once_and_unchanged_ones_are_not_resent_early() {
    let mut m = master();
    let t0 = Instant::from_secs(100);
    m.handle_snapshot(t0, (0..3).map(tcp));
    let d = drain(&mut m, t0);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0][1], 7, "sync ID in the header");
    assert_eq!(decoded(&d).len(), 3);
    let t1 = t0 + Duration::from_secs(5);
    m.handle_snapshot(t1, (0..3).map(tcp));
    assert_eq!(m.poll_transmit(t1), None);
    assert_eq!(m.stats().new, 3);
}

#[test]
fn a_state_or_destination_change_is_sent_at_the_next_snapshot() {
    let mut m = master();
    let t0 = Instant::from_secs(1);
    m.handle_snapshot(t0, [tcp(1), tcp(2)]);
    let _ = drain(&mut m, t0);
    let fin = SyncConn { state: tcp_state::FIN_WAIT, timeout_s: 120, ..tcp(1) };
    let moved = SyncConn { daddr: ip4(198, 18, 3, 2), ..tcp(2) };
    m.handle_snapshot(t0 + Duration::from_secs(1), [fin.clone(), moved.clone()]);
    let got = decoded(&drain(&mut m, t0 + Duration::from_secs(1)));
    assert_eq!(
        got.iter().map(|c| (c.state, c.daddr)).collect::<Vec<_>>(),
        vec![(fin.state, fin.daddr), (moved.state, moved.daddr)]
    );
    assert_eq!(m.stats().changed, 2);
}

#[test]
fn unchanged_entries_are_refreshed_before_half_their_timeout_has_passed() {
    // Without the 30 s cap of the default, to see the half-timeout rule alone.
    let refresh = Refresh::HalfTimeout { min: Duration::from_secs(10), max: Duration::from_secs(3600) };
    let mut m = Master::new(MasterConfig { refresh, ..MasterConfig::default() });
    let t0 = Instant::from_secs(0);
    m.handle_snapshot(t0, [tcp(1)]);
    let _ = drain(&mut m, t0);
    // Snapshots every 30 s: the 900 s connection is due again at 450 s, not before.
    let mut sends = Vec::new();
    for k in 1..=40u64 {
        let now = t0 + Duration::from_secs(30 * k);
        m.handle_snapshot(now, [tcp(1)]);
        if !drain(&mut m, now).is_empty() {
            sends.push(30 * k);
        }
    }
    assert_eq!(sends, vec![450, 900]);
    assert_eq!(m.stats().refreshed, 2);
    // So the backup's copy, restarted with 900 s at each send, outlives every snapshot.
    let mut last = 0;
    for s in &sends {
        assert!(s - last <= 900 / 2 + 30);
        last = *s;
    }
}

#[test]
fn by_default_a_joining_backup_learns_every_connection_within_30_s() {
    let mut m = master();
    let t0 = Instant::from_secs(0);
    m.handle_snapshot(t0, [tcp(1)]);
    let _ = drain(&mut m, t0);
    let mut sends = Vec::new();
    for k in 1..=12u64 {
        let now = t0 + Duration::from_secs(10 * k);
        m.handle_snapshot(now, [tcp(1)]);
        if !drain(&mut m, now).is_empty() {
            sends.push(10 * k);
        }
    }
    assert_eq!(sends, vec![30, 60, 90, 120]);
}

#[test]
fn a_zero_timeout_is_refreshed_at_the_floor_and_never_means_never() {
    let zero = SyncConn { timeout_s: 0, ..tcp(1) };
    let mut m = master();
    m.handle_snapshot(Instant::ZERO, [zero.clone()]);
    let _ = drain(&mut m, Instant::ZERO);
    m.handle_snapshot(Instant::from_secs(9), [zero.clone()]);
    assert_eq!(m.poll_transmit(Instant::from_secs(9)), None);
    m.handle_snapshot(Instant::from_secs(10), [zero.clone()]);
    assert!(m.poll_transmit(Instant::from_secs(10)).is_some());

    let mut never = Master::new(MasterConfig { refresh: Refresh::Never, ..MasterConfig::default() });
    never.handle_snapshot(Instant::ZERO, [tcp(1)]);
    let _ = drain(&mut never, Instant::ZERO);
    never.handle_snapshot(Instant::from_secs(100_000), [tcp(1)]);
    assert_eq!(never.poll_transmit(Instant::from_secs(100_000)), None);

    let mut every =
        Master::new(MasterConfig { refresh: Refresh::Every(Duration::from_secs(5)), ..MasterConfig::default() });
    every.handle_snapshot(Instant::ZERO, [tcp(1)]);
    let _ = drain(&mut every, Instant::ZERO);
    every.handle_snapshot(Instant::from_secs(5), [tcp(1)]);
    assert!(every.poll_transmit(Instant::from_secs(5)).is_some());
}

#[test]
fn deleted_connections_are_forgotten_and_a_return_is_new() {
    let mut m = master();
    m.handle_snapshot(Instant::ZERO, [tcp(1), tcp(2)]);
    let _ = drain(&mut m, Instant::ZERO);
    m.handle_snapshot(Instant::from_secs(1), [tcp(2)]);
    assert_eq!((m.tracked(), m.stats().forgotten), (1, 1));
    assert_eq!(m.poll_transmit(Instant::from_secs(1)), None);
    m.handle_snapshot(Instant::from_secs(2), [tcp(1), tcp(2)]);
    assert_eq!(decoded(&drain(&mut m, Instant::from_secs(2))), vec![tcp(1)]);
}

#[test]
fn a_connection_deleted_before_it_was_sent_is_not_sent() {
    let mut m = master();
    m.handle_snapshot(Instant::ZERO, [tcp(1), tcp(2)]);
    m.handle_snapshot(Instant::from_secs(1), [tcp(2)]);
    assert_eq!(decoded(&drain(&mut m, Instant::from_secs(1))), vec![tcp(2)]);
}

#[test]
fn the_kernels_state_filter_applies_tcp_handshakes_and_one_packet_are_not_sent() {
    let mut m = master();
    let syn = SyncConn { state: tcp_state::SYN_RECV, ..tcp(1) };
    let one = SyncConn { protocol: proto::UDP, state: 0, flags: conn_flags::ONE_PACKET, ..tcp(2) };
    let udp = SyncConn { protocol: proto::UDP, state: 0, timeout_s: 300, ..tcp(3) };
    m.handle_snapshot(Instant::ZERO, [syn, one, udp.clone(), template()]);
    assert_eq!(decoded(&drain(&mut m, Instant::ZERO)), vec![udp, template()]);
    // Once established, the first connection is sent.
    m.handle_snapshot(Instant::from_secs(1), [tcp(1)]);
    assert_eq!(decoded(&drain(&mut m, Instant::from_secs(1))).len(), 1);
}

#[test]
fn datagrams_respect_maxlen_and_carry_every_due_entry_once() {
    let mut m = Master::new(MasterConfig { syncid: 1, maxlen: 300, ..MasterConfig::default() });
    let conns: Vec<_> = (0..100).map(tcp).collect();
    m.handle_snapshot(Instant::ZERO, conns.clone());
    let d = drain(&mut m, Instant::ZERO);
    assert!(d.iter().all(|x| x.len() <= 300));
    assert_eq!(d.len(), 100usize.div_ceil((300 - 8) / 36));
    let mut got: Vec<_> = decoded(&d).into_iter().map(|c| c.cport).collect();
    got.sort();
    assert_eq!(got, conns.iter().map(|c| c.cport).collect::<Vec<_>>());
    assert_eq!(m.stats().datagrams, d.len() as u64);
}

#[test]
fn memory_is_bounded_by_max_tracked() {
    let mut m = Master::new(MasterConfig { max_tracked: 10, ..MasterConfig::default() });
    m.handle_snapshot(Instant::ZERO, (0..25).map(tcp));
    assert_eq!((m.tracked(), m.pending(), m.stats().untracked), (10, 10, 15));
    assert_eq!(decoded(&drain(&mut m, Instant::ZERO)).len(), 10);
}

#[test]
fn an_unencodable_entry_is_counted_and_not_retried_until_it_changes() {
    let bad = SyncConn { daddr: "::1".parse().expect("v6"), ..tcp(1) };
    let mut m = master();
    m.handle_snapshot(Instant::ZERO, [bad.clone(), tcp(2)]);
    assert_eq!(decoded(&drain(&mut m, Instant::ZERO)), vec![tcp(2)]);
    assert_eq!(m.stats().unencodable, 1);
    m.handle_snapshot(Instant::from_secs(1), [bad, tcp(2)]);
    assert_eq!(m.poll_transmit(Instant::from_secs(1)), None);
}
