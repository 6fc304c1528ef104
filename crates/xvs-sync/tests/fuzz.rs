//! Decoding untrusted bytes never panics; what the builder emits decodes back unchanged.

use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use xvs_sync::*;

fn decode_all(bytes: &[u8]) {
    if let Ok(m) = Message::parse(bytes) {
        for e in m.entries() {
            let _ = e;
        }
    }
    let mut b = Backup::new(BackupConfig { pe_names: vec!["sip".into()], ..BackupConfig::default() });
    let _ = b.handle_datagram(Instant::ZERO, bytes);
}

fn arb_conn() -> impl Strategy<Value = SyncConn> {
    let addrs = prop_oneof![
        (any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(a, b, c)| [a, b, c].map(|x| IpAddr::V4(Ipv4Addr::from(x)))),
        (any::<u128>(), any::<u128>(), any::<u128>())
            .prop_map(|(a, b, c)| [a, b, c].map(|x| IpAddr::V6(Ipv6Addr::from(x)))),
    ];
    let seq = proptest::option::of(any::<[u32; 6]>().prop_map(|w| SeqData {
        in_seq: Seq { init_seq: w[0], delta: w[1], previous_delta: w[2] },
        out_seq: Seq { init_seq: w[3], delta: w[4], previous_delta: w[5] },
    }));
    let pe = proptest::option::of(
        ("[a-z]{1,16}", proptest::collection::vec(any::<u8>(), 1..=255)).prop_map(|(name, data)| PeData { name, data }),
    );
    (addrs, any::<(u8, u32, u16, [u16; 3], u32, u32)>(), seq, pe).prop_map(
        |([caddr, vaddr, daddr], (protocol, flags, state, [cport, vport, dport], fwmark, timeout_s), seq, pe)| {
            SyncConn { protocol, flags, state, caddr, cport, vaddr, vport, daddr, dport, fwmark, timeout_s, seq, pe }
        },
    )
}

/// A valid message, to mutate: random bytes alone rarely get past the size check.
fn valid_message(conns: &[SyncConn], maxlen: usize) -> Vec<u8> {
    let mut b = MessageBuilder::new(0, maxlen);
    let mut first = None;
    for c in conns {
        if let Some(m) = b.push(c).expect("arb_conn is encodable") {
            first.get_or_insert(m);
        }
    }
    first.or_else(|| b.finish()).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_all(&bytes);
        // With a consistent size field, the entry walk is reached.
        let mut sized = bytes.clone();
        if sized.len() >= 4 {
            let n = sized.len() as u16;
            sized[2..4].copy_from_slice(&n.to_be_bytes());
            decode_all(&sized);
            sized[0] = 0;
            if sized.len() >= 8 {
                sized[5] = 1;
                sized[6] = 0;
                sized[7] = 0;
            }
            decode_all(&sized);
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        conns in proptest::collection::vec(arb_conn(), 1..6),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut m = valid_message(&conns, 1472);
        for (at, byte) in edits {
            let i = at.index(m.len());
            if i >= 4 { m[i] = byte; } // keep the size field, so entries are walked
        }
        decode_all(&m);
        let n = cut.index(m.len() + 1);
        m.truncate(n);
        if n >= 4 {
            m[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        }
        decode_all(&m);
    }

    #[test]
    fn emitted_entries_decode_back_unchanged(conns in proptest::collection::vec(arb_conn(), 1..60), maxlen in 1usize..3000) {
        let mut b = MessageBuilder::new(9, maxlen);
        let mut msgs = Vec::new();
        for c in &conns {
            msgs.extend(b.push(c).expect("encodable"));
        }
        msgs.extend(b.finish());
        let mut back = Vec::new();
        for m in &msgs {
            // Over-long messages only when one entry alone exceeds maxlen.
            prop_assert!(m.len() <= maxlen.max(8 + 72 + 26 + 257 + 18));
            let parsed = Message::parse(m).expect("own header");
            prop_assert_eq!(parsed.version(), Version::V1);
            for e in parsed.entries() {
                back.push(e.expect("own entry"));
            }
        }
        let want: Vec<_> = conns.into_iter().map(|mut c| { c.flags &= !conn_flags::HASHED; c }).collect();
        prop_assert_eq!(back, want);
    }
}
