//! The backup: sync ID filter, size checks, per-entry skips and drops, flags, counters.

mod common;
use common::*;
use xvs_sync::*;

fn message(syncid: u8, conns: &[SyncConn]) -> Vec<u8> {
    let mut b = MessageBuilder::new(syncid, 65507);
    for c in conns {
        assert_eq!(b.push(c), Ok(None));
    }
    b.finish().expect("at least one entry")
}

fn backup(syncid: u8) -> Backup {
    Backup::new(BackupConfig { syncid, ..BackupConfig::default() })
}

#[test]
fn syncid_zero_accepts_any_master_and_others_filter() {
    let m = message(7, &[tcp(1)]);
    let now = Instant::from_secs(5);
    assert_eq!(backup(0).handle_datagram(now, &m).expect("any").conns.len(), 1);
    assert_eq!(backup(7).handle_datagram(now, &m).expect("same").conns.len(), 1);
    let mut b = backup(8);
    assert_eq!(b.handle_datagram(now, &m), Err(Error::OtherSyncId { got: 7, want: 8 }));
    assert_eq!(b.stats().other_syncid, 1);
    assert_eq!(b.stats().last_message, None);
}

#[test]
fn the_backup_keeps_the_backup_mask_and_adds_sync() {
    let sent = SyncConn { flags: conn_flags::DROUTE | conn_flags::NFCT | conn_flags::ONE_PACKET | 0x8, ..tcp(1) };
    let got = backup(0).handle_datagram(Instant::ZERO, &message(0, &[sent])).expect("ok");
    assert_eq!(got.conns[0].flags, conn_flags::DROUTE | conn_flags::SYNC);
}

#[test]
fn unsupported_protocols_and_states_are_skipped_but_templates_keep_any_state() {
    let icmp = SyncConn { protocol: 1, ..tcp(1) };
    let bad_state = SyncConn { state: tcp_state::LAST, ..tcp(2) };
    let udp_bad = SyncConn { protocol: proto::UDP, state: 1, ..tcp(3) };
    let odd_template = SyncConn { state: 9, protocol: 0, ..template() };
    let m = message(0, &[icmp, bad_state, tcp(4), udp_bad, odd_template.clone()]);
    let mut b = backup(0);
    let got = b.handle_datagram(Instant::ZERO, &m).expect("ok");
    assert_eq!(
        got.skipped,
        vec![
            Rejected { index: 0, error: EntryError::UnsupportedProtocol { protocol: 1 } },
            Rejected { index: 1, error: EntryError::InvalidState { protocol: 6, state: 11 } },
            Rejected { index: 3, error: EntryError::InvalidState { protocol: 17, state: 1 } },
        ]
    );
    assert_eq!(got.conns.len(), 2);
    assert_eq!(got.conns[1].state, 9);
    assert_eq!(got.dropped, None);
    let s = b.stats();
    assert_eq!((s.messages_v1, s.conns, s.conns_rejected, s.truncated), (1, 2, 3, 0));
}

#[test]
fn pe_entries_need_an_engine_the_backup_has() {
    let sip = SyncConn { pe: Some(PeData { name: "sip".into(), data: b"call-1".to_vec() }), ..tcp(1) };
    let m = message(0, std::slice::from_ref(&sip));
    let got = backup(0).handle_datagram(Instant::ZERO, &m).expect("ok");
    assert_eq!(got.skipped[0].error, EntryError::UnknownPe { name: "sip".into() });
    let mut with_sip = Backup::new(BackupConfig { pe_names: vec!["sip".into()], ..BackupConfig::default() });
    assert_eq!(with_sip.handle_datagram(Instant::ZERO, &m).expect("ok").conns[0].pe, sip.pe);
}

#[test]
fn a_bad_entry_drops_the_rest_but_keeps_what_came_before() {
    let mut m = message(0, &[tcp(1), tcp(2), tcp(3)]);
    // Entry 2 (at 8 + 36) gets entry version 1.
    m[8 + 36 + 2] |= 0x10;
    let mut b = backup(0);
    let got = b.handle_datagram(Instant::ZERO, &m).expect("header ok");
    assert_eq!(got.conns.len(), 1);
    assert_eq!(got.dropped, Some(Rejected { index: 1, error: EntryError::UnknownEntryVersion { version: 1 } }));
    assert_eq!((b.stats().truncated, b.stats().conns, b.stats().conns_rejected), (1, 1, 1));
}

#[test]
fn datagrams_longer_than_maxlen_arrive_truncated_and_are_refused() {
    let conns: Vec<_> = (0..40).map(tcp).collect();
    let m = message(0, &conns);
    assert_eq!(m.len(), 8 + 40 * 36);
    let mut b = Backup::new(BackupConfig { maxlen: 1024, ..BackupConfig::default() });
    assert_eq!(
        b.handle_datagram(Instant::ZERO, &m),
        Err(Error::Message(MessageError::SizeMismatch { header: 1448, actual: 1024 }))
    );
    assert_eq!(b.stats().invalid, 1);
}

#[test]
fn version_0_messages_are_accepted_with_their_flags() {
    // nr_conns 1, syncid 3, size 28; one TCP ESTABLISHED DR entry with HASHED set.
    let m = [1, 3, 0, 28, 0, 6, 0x27, 0x10, 0, 80, 0, 80, 10, 0, 0, 1, 10, 0, 0, 100, 10, 0, 0, 2, 0x00, 0x43, 0, 1];
    let mut b = backup(3);
    let got = b.handle_datagram(Instant::from_secs(1), &m).expect("ok");
    assert_eq!(got.version, Version::V0);
    assert_eq!(got.conns[0].flags, conn_flags::DROUTE | conn_flags::SYNC);
    assert_eq!((got.conns[0].cport, got.conns[0].timeout_s), (10000, 0));
    assert_eq!(b.stats().messages_v0, 1);
}
