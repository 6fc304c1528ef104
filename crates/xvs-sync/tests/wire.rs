//! Byte-exact vectors built by hand from the kernel's struct layouts, round trips, and the
//! ways a message can be malformed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xvs_sync::wire::{ConnPacket, Header, CONN_V4_LEN, CONN_V6_LEN, HEADER_LEN};
use xvs_sync::*;

fn ip4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// 198.18.1.2:50000 -> 198.18.0.100:80 -> 198.18.2.2:80, TCP ESTABLISHED, NAT, 900 s.
fn nat_established() -> SyncConn {
    SyncConn {
        protocol: proto::TCP,
        flags: conn_flags::MASQ,
        state: tcp_state::ESTABLISHED,
        caddr: ip4(198, 18, 1, 2),
        cport: 50000,
        vaddr: ip4(198, 18, 0, 100),
        vport: 80,
        daddr: ip4(198, 18, 2, 2),
        dport: 80,
        fwmark: 0,
        timeout_s: 900,
        seq: None,
        pe: None,
    }
}

/// A version 1 message with one IPv4 entry: `nat_established()` from sync ID 7.
static V1_ONE_V4: [u8; 44] = [
    // struct ip_vs_sync_mesg
    0x00, // reserved: 0 (a version 0 receiver reads this as nr_conns = 0)
    0x07, // syncid 7
    0x00, 0x2c, // size 44 = 8-byte header + 36-byte entry, big-endian
    0x01, // nr_conns 1
    0x01, // version 1 (SYNC_PROTO_VER)
    0x00, 0x00, // spare
    // struct ip_vs_sync_v4
    0x00, // type 0: IPv4 (no STYPE_F_INET6)
    0x06, // protocol TCP
    0x00, 0x24, // ver_size: entry version 0 (top 4 bits), size 36 (low 12)
    0x00, 0x00, 0x00, 0x00, // flags: IP_VS_CONN_F_MASQ, nothing else
    0x00, 0x01, // state IP_VS_TCP_S_ESTABLISHED
    0xc3, 0x50, // cport 50000
    0x00, 0x50, // vport 80
    0x00, 0x50, // dport 80
    0x00, 0x00, 0x00, 0x00, // fwmark 0
    0x00, 0x00, 0x03, 0x84, // timeout 900 s
    198, 18, 1, 2, // caddr
    198, 18, 0, 100, // vaddr
    198, 18, 2, 2, // daddr
];

#[test]
fn v1_ipv4_entry_parses_byte_for_byte() {
    let msg = Message::parse(&V1_ONE_V4).expect("valid header");
    assert_eq!(msg.version(), Version::V1);
    assert_eq!(msg.syncid(), 7);
    assert_eq!(msg.nr_conns(), 1);
    let entries: Vec<_> = msg.entries().collect();
    assert_eq!(entries, vec![Ok(nat_established())]);

    let h = Header::new_checked(&V1_ONE_V4[..]).expect("8 bytes");
    assert_eq!((h.reserved(), h.syncid(), h.size(), h.nr_conns(), h.version(), h.spare()), (0, 7, 44, 1, 1, 0));
    let p = ConnPacket::new_checked(&V1_ONE_V4[HEADER_LEN..]).expect("36 bytes");
    assert_eq!(p.entry_version(), 0);
    assert_eq!(p.entry_size(), CONN_V4_LEN);
    assert!(p.options().is_empty());
}

#[test]
fn v1_ipv4_entry_emits_byte_for_byte() {
    let mut b = MessageBuilder::new(7, 1472);
    assert_eq!(b.push(&nat_established()), Ok(None));
    assert_eq!(b.finish().expect("one entry"), V1_ONE_V4.to_vec());
}

#[test]
fn emit_into_stale_buffer_writes_every_byte_of_the_entry() {
    let conn = nat_established();
    let mut buf = [0xa5u8; 40];
    conn.emit(&mut ConnPacket::new_unchecked(&mut buf[..])).expect("encodable");
    assert_eq!(&buf[..36], &V1_ONE_V4[8..]);
    assert_eq!(&buf[36..], &[0xa5; 4], "bytes past the entry are left alone");
}

/// A NAT entry with sequence data (62 bytes), 2 bytes of padding, then a DR entry.
fn v1_seq_then_dr() -> Vec<u8> {
    let mut v = vec![
        0x00, 0x07, 0x00, 0x6c, // reserved, syncid 7, size 108 = 8 + 62 + 2 + 36
        0x02, 0x01, 0x00, 0x00, // nr_conns 2, version 1, spare
        // entry 1: struct ip_vs_sync_v4 + IPVS_OPT_SEQ_DATA
        0x00, 0x06, 0x00, 0x3e, // type v4, TCP, ver_size 62 = 36 + 2 + 24
        0x00, 0x00, 0x06, 0x00, // flags IN_SEQ | OUT_SEQ (0x0600)
        0x00, 0x01, 0xc3, 0x50, // ESTABLISHED, cport 50000
        0x00, 0x15, 0x00, 0x15, // vport 21, dport 21 (ftp: the helper adjusts sequences)
        0x00, 0x00, 0x00, 0x00, // fwmark
        0x00, 0x00, 0x03, 0x84, // timeout 900
        198, 18, 1, 2, 198, 18, 0, 100, 198, 18, 2, 2, // caddr, vaddr, daddr
        0x01, 0x18, // option IPVS_OPT_SEQ_DATA, length 24
        0x00, 0x00, 0x10, 0x00, // in_seq.init_seq 4096 (big-endian: hton_seq)
        0x00, 0x00, 0x00, 0x05, // in_seq.delta 5
        0x00, 0x00, 0x00, 0x03, // in_seq.previous_delta 3
        0x00, 0x00, 0x20, 0x00, // out_seq.init_seq 8192
        0xff, 0xff, 0xff, 0xfe, // out_seq.delta -2 as u32
        0x00, 0x00, 0x00, 0x00, // out_seq.previous_delta 0
        0x00, 0x00, // padding: the next entry starts at byte 72, a multiple of 4
        // entry 2: DR, FIN_WAIT, no options
        0x00, 0x06, 0x00, 0x24, // type v4, TCP, ver_size 36
        0x00, 0x00, 0x01, 0x83, // flags DROUTE (3) | NOOUTPUT (0x80) | INACTIVE (0x100)
        0x00, 0x04, 0xc3, 0x51, // FIN_WAIT, cport 50001
        0x00, 0x50, 0x00, 0x50, // vport 80, dport 80
        0x00, 0x00, 0x00, 0x00, // fwmark
        0x00, 0x00, 0x00, 0x78, // timeout 120
        198, 18, 1, 2, 198, 18, 0, 100, 198, 18, 3, 2,
    ];
    assert_eq!(v.len(), 108);
    v.shrink_to_fit();
    v
}

fn seq_conn() -> SyncConn {
    SyncConn {
        flags: conn_flags::SEQ_MASK,
        vport: 21,
        dport: 21,
        seq: Some(SeqData {
            in_seq: Seq { init_seq: 4096, delta: 5, previous_delta: 3 },
            out_seq: Seq { init_seq: 8192, delta: (-2i32) as u32, previous_delta: 0 },
        }),
        ..nat_established()
    }
}

fn dr_conn() -> SyncConn {
    SyncConn {
        flags: conn_flags::DROUTE | conn_flags::NOOUTPUT | conn_flags::INACTIVE,
        state: tcp_state::FIN_WAIT,
        cport: 50001,
        daddr: ip4(198, 18, 3, 2),
        timeout_s: 120,
        ..nat_established()
    }
}

#[test]
fn entries_are_padded_to_four_bytes_between_but_not_after() {
    let bytes = v1_seq_then_dr();
    let got: Vec<_> = Message::parse(&bytes).expect("header").entries().collect();
    assert_eq!(got, vec![Ok(seq_conn()), Ok(dr_conn())]);

    let mut b = MessageBuilder::new(7, 1472);
    b.push(&seq_conn()).expect("encodable");
    b.push(&dr_conn()).expect("encodable");
    assert_eq!(b.finish().expect("two entries"), bytes);
}

/// An IPv6 UDP entry with persistence-engine data and name: 72 + (2 + 4) + (2 + 3) = 83 bytes.
fn v1_v6_pe() -> Vec<u8> {
    let mut v = vec![
        0x00, 0x00, 0x00, 0x5b, 0x01, 0x01, 0x00, 0x00, // syncid 0, size 91 = 8 + 83, 1 entry
        0x01, 0x11, 0x00, 0x53, // type STYPE_F_INET6, UDP, ver_size 83
        0x00, 0x00, 0x00, 0x02, // flags TUNNEL
        0x00, 0x00, 0x13, 0xc4, // state NORMAL, cport 5060
        0x13, 0xc4, 0x13, 0xc4, // vport 5060, dport 5060
        0x00, 0x00, 0x00, 0x2a, // fwmark 42
        0x00, 0x00, 0x01, 0x2c, // timeout 300
    ];
    for last in [1u8, 0x64, 2] {
        // caddr 2001:db8::1, vaddr 2001:db8::64, daddr 2001:db8::2
        v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
    }
    v.extend_from_slice(&[0x02, 0x04, 0xde, 0xad, 0xbe, 0xef]); // IPVS_OPT_PE_DATA, 4 bytes
    v.extend_from_slice(&[0x03, 0x03, b's', b'i', b'p']); // IPVS_OPT_PE_NAME "sip" (no NUL)
    assert_eq!(v.len(), 91);
    v
}

fn v6_pe_conn() -> SyncConn {
    let a = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
    SyncConn {
        protocol: proto::UDP,
        flags: conn_flags::TUNNEL,
        state: udp_state::NORMAL,
        caddr: a(1),
        cport: 5060,
        vaddr: a(0x64),
        vport: 5060,
        daddr: a(2),
        dport: 5060,
        fwmark: 42,
        timeout_s: 300,
        seq: None,
        pe: Some(PeData { name: "sip".into(), data: vec![0xde, 0xad, 0xbe, 0xef] }),
    }
}

#[test]
fn ipv6_entry_with_pe_data_parses_and_emits() {
    let bytes = v1_v6_pe();
    let got: Vec<_> = Message::parse(&bytes).expect("header").entries().collect();
    assert_eq!(got, vec![Ok(v6_pe_conn())]);
    assert_eq!(v6_pe_conn().buffer_len(), CONN_V6_LEN + 6 + 5);
    let mut b = MessageBuilder::new(0, 1472);
    b.push(&v6_pe_conn()).expect("encodable");
    assert_eq!(b.finish().expect("one"), bytes);
}

/// Version 0: header (nr_conns, syncid, size), then `struct ip_vs_sync_conn_v0` entries; the
/// second carries `struct ip_vs_sync_conn_options` in the master's (x86: little-endian) order.
fn v0_two() -> Vec<u8> {
    let mut v = vec![
        0x02, 0x07, 0x00, 0x4c, // nr_conns 2, syncid 7, size 76 = 4 + 24 + 48
        // entry 1
        0x00, 0x06, // reserved, TCP
        0xc3, 0x50, 0x00, 0x50, 0x00, 0x50, // cport 50000, vport 80, dport 80
        198, 18, 1, 2, 198, 18, 0, 100, 198, 18, 2, 2, // caddr, vaddr, daddr
        0x00, 0x00, 0x00, 0x01, // flags MASQ (16 bits), state ESTABLISHED
        // entry 2, flags IN_SEQ: 24 bytes of options follow
        0x00, 0x06, 0xc3, 0x51, 0x00, 0x15, 0x00, 0x15, //
        198, 18, 1, 2, 198, 18, 0, 100, 198, 18, 2, 2, //
        0x04, 0x00, 0x00, 0x01, // flags 0x0400, state ESTABLISHED
        0x00, 0x10, 0x00, 0x00, 0x05, 0, 0, 0, 0x03, 0, 0, 0, // in_seq 4096, 5, 3 (LE)
        0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, // out_seq 8192, 0, 0
    ];
    v.shrink_to_fit();
    assert_eq!(v.len(), 76);
    v
}

#[test]
fn version_0_parses_with_and_without_sequence_options() {
    let bytes = v0_two();
    let msg = Message::parse(&bytes).expect("header");
    assert_eq!(msg.version(), Version::V0);
    assert_eq!((msg.syncid(), msg.nr_conns()), (7, 2));
    let got: Vec<_> = msg.entries().collect::<Result<_, _>>().expect("valid entries");
    let first = SyncConn { timeout_s: 0, ..nat_established() };
    assert_eq!(got[0], first);
    assert_eq!(got[1].flags, conn_flags::IN_SEQ);
    assert_eq!((got[1].cport, got[1].vport, got[1].fwmark, got[1].timeout_s), (50001, 21, 0, 0));
    assert_eq!(
        got[1].seq,
        Some(SeqData {
            in_seq: Seq { init_seq: 4096, delta: 5, previous_delta: 3 },
            out_seq: Seq { init_seq: 8192, delta: 0, previous_delta: 0 }
        })
    );
}

#[test]
fn a_v1_header_with_another_version_is_read_as_an_empty_v0_message() {
    // reserved 0, version 2: not version 1, so the kernel takes the v0 path, where byte 0
    // is nr_conns = 0, and nothing happens.
    let mut bytes = V1_ONE_V4;
    bytes[5] = 2;
    let msg = Message::parse(&bytes).expect("header");
    assert_eq!((msg.version(), msg.nr_conns()), (Version::V0, 0));
    assert_eq!(msg.entries().count(), 0);
    // The same for a non-zero spare.
    let mut bytes = V1_ONE_V4;
    bytes[7] = 1;
    assert_eq!(Message::parse(&bytes).expect("header").version(), Version::V0);
}

#[test]
fn short_and_mis_sized_messages_are_refused() {
    assert_eq!(Message::parse(&[]).unwrap_err(), MessageError::TooShort { len: 0 });
    assert_eq!(Message::parse(&V1_ONE_V4[..3]).unwrap_err(), MessageError::TooShort { len: 3 });
    assert_eq!(Message::parse(&V1_ONE_V4[..43]).unwrap_err(), MessageError::SizeMismatch { header: 44, actual: 43 });
    let mut long = V1_ONE_V4.to_vec();
    long.push(0);
    assert_eq!(Message::parse(&long).unwrap_err(), MessageError::SizeMismatch { header: 44, actual: 45 });
}

/// `V1_ONE_V4` with its entry edited by `f`, header size kept consistent.
fn edited(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = V1_ONE_V4.to_vec();
    f(&mut v);
    let size = v.len() as u16;
    v[2..4].copy_from_slice(&size.to_be_bytes());
    v
}

fn entries(bytes: &[u8]) -> Vec<Result<SyncConn, EntryError>> {
    Message::parse(bytes).expect("valid header").entries().collect()
}

#[test]
fn entry_size_zero_ends_the_message() {
    let bytes = edited(|v| v[10..12].copy_from_slice(&[0, 0]));
    let e = entries(&bytes);
    assert_eq!(e, vec![Err(EntryError::TooSmall { size: 0, needed: 36 })]);
    assert!(EntryError::TooSmall { size: 0, needed: 36 }.ends_message());
}

#[test]
fn an_unknown_entry_version_ends_the_message() {
    let bytes = edited(|v| v[10] = 0x10);
    assert_eq!(entries(&bytes), vec![Err(EntryError::UnknownEntryVersion { version: 1 })]);
}

#[test]
fn an_unknown_entry_type_ends_the_message() {
    let bytes = edited(|v| v[8] = 2);
    assert_eq!(entries(&bytes), vec![Err(EntryError::UnknownType { ty: 2 })]);
    // An odd type is IPv6 whatever the other bits; 36 bytes are too few for it.
    let bytes = edited(|v| v[8] = 3);
    assert_eq!(entries(&bytes), vec![Err(EntryError::TooSmall { size: 36, needed: 72 })]);
}

#[test]
fn an_entry_running_past_the_message_ends_it() {
    let bytes = edited(|v| v[10..12].copy_from_slice(&40u16.to_be_bytes()));
    assert_eq!(entries(&bytes), vec![Err(EntryError::BeyondMessage { offset: 8, size: 40, len: 44 })]);
}

/// `V1_ONE_V4` plus option bytes `opt` inside the entry.
fn with_option(opt: &[u8]) -> Vec<u8> {
    edited(|v| {
        v.extend_from_slice(opt);
        let size = (36 + opt.len()) as u16;
        v[10..12].copy_from_slice(&size.to_be_bytes());
    })
}

#[test]
fn bad_options_end_the_message() {
    assert_eq!(entries(&with_option(&[1])), vec![Err(EntryError::OptionTruncated { offset: 36 })]);
    assert_eq!(entries(&with_option(&[2, 0])), vec![Err(EntryError::BadOptionLength { ptype: 2, plen: 0 })]);
    assert_eq!(entries(&with_option(&[2, 5, 1, 2])), vec![Err(EntryError::BadOptionLength { ptype: 2, plen: 5 })]);
    let mut seq20 = vec![1, 20];
    seq20.extend([0; 20]);
    assert_eq!(entries(&with_option(&seq20)), vec![Err(EntryError::BadSeqLength { plen: 20 })]);
    let mut two_seqs = vec![1, 24];
    two_seqs.extend([0; 24]);
    two_seqs.extend_from_within(..);
    assert_eq!(entries(&with_option(&two_seqs)), vec![Err(EntryError::DuplicateOption { ptype: 1 })]);
    let mut long_name = vec![3, 17];
    long_name.extend([b'x'; 17]);
    assert_eq!(entries(&with_option(&long_name)), vec![Err(EntryError::PeNameTooLong { len: 17 })]);
}

#[test]
fn options_are_matched_without_the_optional_bit() {
    // 65 = IPVS_OPT_F_PARAM | IPVS_OPT_SEQ_DATA: still sequence data for the kernel.
    let mut opt = vec![65, 24];
    opt.extend([0; 24]);
    let e = entries(&with_option(&opt));
    assert_eq!(e[0].as_ref().expect("accepted").seq, Some(SeqData::default()));
}

#[test]
fn unknown_options_skip_the_entry_only_when_mandatory() {
    assert_eq!(entries(&with_option(&[9, 1, 0])), vec![Err(EntryError::UnknownMandatoryOption { ptype: 9 })]);
    assert!(!EntryError::UnknownMandatoryOption { ptype: 9 }.ends_message());
    assert_eq!(entries(&with_option(&[64 | 9, 1, 0])), vec![Ok(nat_established())]);
}

#[test]
fn pe_data_without_a_name_skips_the_entry_and_a_name_alone_is_ignored() {
    assert_eq!(entries(&with_option(&[2, 1, 0xaa])), vec![Err(EntryError::PeDataWithoutName)]);
    assert_eq!(entries(&with_option(&[3, 3, b's', b'i', b'p'])), vec![Ok(nat_established())]);
}

#[test]
fn too_many_entries_keeps_those_present_then_ends() {
    let mut bytes = v1_seq_then_dr();
    bytes[4] = 3;
    let e = entries(&bytes);
    assert_eq!(e.len(), 3);
    assert_eq!(e[0], Ok(seq_conn()));
    assert_eq!(e[1], Ok(dr_conn()));
    assert_eq!(e[2], Err(EntryError::Truncated { offset: 108, needed: 36, len: 108 }));
}

#[test]
fn a_skipped_entry_does_not_stop_the_next() {
    // Entry 1 carries an unknown mandatory option (skipped), entry 2 is fine.
    let mut b = MessageBuilder::new(7, 1472);
    b.push(&nat_established()).expect("encodable");
    b.push(&dr_conn()).expect("encodable");
    let good = b.finish().expect("two");
    let mut bytes = good[..44].to_vec();
    bytes[10..12].copy_from_slice(&40u16.to_be_bytes());
    bytes.extend_from_slice(&[9, 2, 0, 0]); // 40 bytes: no padding needed
    bytes.extend_from_slice(&good[44..]);
    let size = bytes.len() as u16;
    bytes[2..4].copy_from_slice(&size.to_be_bytes());
    assert_eq!(entries(&bytes), vec![Err(EntryError::UnknownMandatoryOption { ptype: 9 }), Ok(dr_conn())]);
}

#[test]
fn version_0_truncation_ends_the_message() {
    let mut bytes = v0_two();
    bytes.truncate(60); // entry 2's options cut short
    bytes[2..4].copy_from_slice(&60u16.to_be_bytes());
    let e = entries(&bytes);
    assert!(e[0].is_ok());
    assert_eq!(e[1], Err(EntryError::V0OptionsTruncated { offset: 28, len: 60 }));
    bytes.truncate(40);
    bytes[2..4].copy_from_slice(&40u16.to_be_bytes());
    assert_eq!(entries(&bytes)[1], Err(EntryError::V0Truncated { offset: 28, len: 40 }));
}

#[test]
fn emission_refuses_what_the_wire_cannot_say() {
    let mixed = SyncConn { daddr: IpAddr::V6(Ipv6Addr::LOCALHOST), ..nat_established() };
    assert_eq!(MessageBuilder::new(0, 1472).push(&mixed), Err(EmitError::MixedFamilies));
    let long = SyncConn { pe: Some(PeData { name: "x".repeat(17), data: vec![1] }), ..nat_established() };
    assert_eq!(long.check_emit(), Err(EmitError::BadPeName { len: 17 }));
    let empty = SyncConn { pe: Some(PeData { name: "sip".into(), data: vec![] }), ..nat_established() };
    assert_eq!(empty.check_emit(), Err(EmitError::BadPeData { len: 0 }));
}

#[test]
fn the_builder_clears_hashed_as_the_kernel_does() {
    let hashed = SyncConn { flags: conn_flags::HASHED | conn_flags::DROUTE, ..nat_established() };
    let mut b = MessageBuilder::new(7, 1472);
    b.push(&hashed).expect("encodable");
    let msg = b.finish().expect("one");
    let got = entries(&msg);
    assert_eq!(got[0].as_ref().expect("ok").flags, conn_flags::DROUTE);
}

#[test]
fn messages_never_exceed_maxlen_and_keep_every_entry_in_order() {
    let conns: Vec<SyncConn> = (0..200u16)
        .map(|i| match i % 3 {
            0 => SyncConn { cport: i, ..nat_established() },
            1 => SyncConn { cport: i, ..seq_conn() },
            _ => SyncConn { cport: i, ..v6_pe_conn() },
        })
        .collect();
    for maxlen in [100, 200, 512, 1472, 9000] {
        let mut b = MessageBuilder::new(3, maxlen);
        let mut msgs = Vec::new();
        for c in &conns {
            msgs.extend(b.push(c).expect("encodable"));
        }
        msgs.extend(b.finish());
        let mut back = Vec::new();
        for m in &msgs {
            assert!(m.len() <= maxlen, "{} bytes with maxlen {maxlen}", m.len());
            let parsed = Message::parse(m).expect("own header");
            assert_eq!(parsed.syncid(), 3);
            back.extend(parsed.entries().map(|e| e.expect("own entry")));
        }
        assert_eq!(back, conns, "maxlen {maxlen}");
    }
}

#[test]
fn the_default_maxlen_holds_40_plain_ipv4_entries() {
    // (1472 - 8) / 36 = 40.7: the kernel's master packs 40 per datagram.
    let mut b = MessageBuilder::new(0, 1472);
    let mut first = None;
    for i in 0..41u16 {
        if let Some(m) = b.push(&SyncConn { cport: i, ..nat_established() }).expect("ok") {
            first = Some((i, m));
        }
    }
    let (at, m) = first.expect("the 41st entry starts a new message");
    assert_eq!((at, m.len(), m[4]), (40, 8 + 40 * 36, 40));
}

#[test]
fn an_entry_longer_than_maxlen_gets_a_message_of_its_own() {
    let mut b = MessageBuilder::new(0, 20);
    assert_eq!(b.push(&nat_established()), Ok(None));
    let m = b.push(&nat_established()).expect("ok").expect("the first is finished");
    assert_eq!(m.len(), 44);
    assert_eq!(b.finish().expect("second").len(), 44);
}

#[test]
fn a_message_holds_at_most_255_entries() {
    let mut b = MessageBuilder::new(0, 65507);
    let mut finished = Vec::new();
    for i in 0..300u16 {
        finished.extend(b.push(&SyncConn { cport: i, ..nat_established() }).expect("ok"));
    }
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0][4], 255);
    assert_eq!(Message::parse(&finished[0]).expect("header").entries().count(), 255);
    assert_eq!(b.nr_conns(), 45);
}
