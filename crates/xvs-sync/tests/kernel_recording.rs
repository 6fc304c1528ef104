//! What a real kernel master sent, decoded and checked against its own connection listing.
//!
//! `testdata/sync/record-master.sh` ran Linux 6.1 as a sync master (sync ID 7) in the IPVS
//! VM: NAT, DR, a persistent service (one template), UDP and an IPv6 NAT connection, first
//! with `sync_version` 1, then 0. It recorded every datagram sent to 224.0.0.81:8848 and
//! `ipvsadm -Lnc` after each phase.

mod lnc;
use lnc::{listing, state_name, Listed};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use xvs_sync::*;

macro_rules! recorded {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/sync/kernel-6.1/", $name))
    };
}

fn hex(line: &str) -> Vec<u8> {
    (0..line.len()).step_by(2).map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex")).collect()
}

fn datagrams(text: &str) -> Vec<Vec<u8>> {
    text.lines().filter(|l| !l.is_empty()).map(hex).collect()
}

type Key = (u8, SocketAddr, SocketAddr);

fn key(c: &SyncConn) -> Key {
    (c.protocol, SocketAddr::new(c.caddr, c.cport), SocketAddr::new(c.vaddr, c.vport))
}

/// Decodes every datagram through a backup filtering on sync ID 7; all entries must pass.
fn receive(datagrams: &[Vec<u8>], version: Version) -> Vec<SyncConn> {
    let mut backup = Backup::new(BackupConfig { syncid: 7, ..BackupConfig::default() });
    let mut out = Vec::new();
    for d in datagrams {
        let r = backup.handle_datagram(Instant::ZERO, d).expect("the kernel's datagram");
        assert_eq!(r.version, version);
        assert_eq!(r.syncid, 7);
        assert_eq!((r.skipped.as_slice(), &r.dropped), (&[][..], &None));
        out.extend(r.conns);
    }
    assert_eq!(backup.stats().datagrams, datagrams.len() as u64);
    out
}

/// Every entry's last update agrees with the listing: destination, state, and (version 1)
/// a timeout no shorter than what the listing has left.
fn check_against_listing(conns: &[SyncConn], listed: &[Listed]) -> HashMap<Key, SyncConn> {
    let mut last: HashMap<Key, SyncConn> = HashMap::new();
    for c in conns {
        assert_eq!(c.flags & conn_flags::SYNC, conn_flags::SYNC);
        last.insert(key(c), c.clone());
    }
    for (k, c) in &last {
        let l = listed
            .iter()
            .find(|l| (l.protocol, l.source, l.virt) == *k)
            .unwrap_or_else(|| panic!("{k:?} was synced but is not listed"));
        assert_eq!(l.dest, SocketAddr::new(c.daddr, c.dport), "{k:?}");
        assert_eq!(l.state, state_name(c), "{k:?}");
        if c.timeout_s != 0 {
            assert!(l.expire_s <= c.timeout_s, "{k:?}: {} s left of {} s", l.expire_s, c.timeout_s);
        }
    }
    last
}

#[test]
fn kernel_version_1_datagrams_decode_to_the_listed_connections() {
    let dgrams = datagrams(recorded!("datagrams-v1.hex"));
    assert_eq!(dgrams.len(), 1);
    let conns = receive(&dgrams, Version::V1);
    let listed = listing(recorded!("lnc-v1.txt"));
    let last = check_against_listing(&conns, &listed);
    // Every listed connection was synced: they all reached a state the kernel sends.
    assert_eq!(last.len(), listed.len());

    let v6 = last.values().filter(|c| c.is_ipv6()).count();
    assert_eq!(v6, 1);
    let dr = last.values().filter(|c| c.fwd_method() == conn_flags::DROUTE).collect::<Vec<_>>();
    assert_eq!(dr.len(), 2);
    assert!(dr.iter().all(|c| c.flags & conn_flags::NOOUTPUT != 0), "DR connections are NOOUTPUT");
    let udp = last.values().find(|c| c.protocol == proto::UDP).expect("the UDP flow");
    assert_eq!((udp.timeout_s, udp.flags & conn_flags::INACTIVE), (300, conn_flags::INACTIVE));
    let tpl = last.values().find(|c| c.is_template()).expect("the template");
    assert_eq!((tpl.cport, tpl.vport, tpl.dport, tpl.timeout_s, tpl.state), (0, 80, 80, 60, tpl_state::ASSURED));
    let est = last.values().find(|c| c.vport == 8080).expect("the held connection");
    assert_eq!((est.state, est.timeout_s), (tcp_state::ESTABLISHED, 900));
}

#[test]
fn the_kernel_resends_a_template_for_every_packet_of_its_connections() {
    let conns = receive(&datagrams(recorded!("datagrams-v1.hex")), Version::V1);
    let vip: IpAddr = "198.18.0.101".parse().expect("ip");
    let through_vip: Vec<&SyncConn> = conns.iter().filter(|c| c.vaddr == vip).collect();
    let templates: Vec<u16> = through_vip.iter().filter(|c| c.is_template()).map(|c| c.state).collect();
    let controlled: Vec<u16> = through_vip.iter().filter(|c| !c.is_template()).map(|c| c.state).collect();
    // The two connections through the persistent service were sent at their state changes
    // (ESTABLISHED at the 3rd packet, then CLOSE_WAIT and TIME_WAIT for one, TIME_WAIT for the
    // other) ...
    use tcp_state::*;
    assert_eq!(controlled, vec![ESTABLISHED, CLOSE_WAIT, TIME_WAIT, ESTABLISHED, TIME_WAIT]);
    // ... but their template went out with every packet they sent: 13 times, first
    // unassured, then ASSURED. (`sync_period` does not apply to templates.)
    assert_eq!(templates.len(), 13);
    assert_eq!(templates[0], tpl_state::NONE);
    assert!(templates[1..].iter().all(|s| *s == tpl_state::ASSURED));
}

#[test]
fn re_encoding_the_kernel_entries_reproduces_its_datagram_byte_for_byte() {
    for d in datagrams(recorded!("datagrams-v1.hex")) {
        let msg = Message::parse(&d).expect("header");
        let mut b = MessageBuilder::new(msg.syncid(), 1472);
        for e in msg.entries() {
            assert_eq!(b.push(&e.expect("entry")), Ok(None));
        }
        assert_eq!(b.finish().expect("entries"), d);
    }
}

#[test]
fn kernel_version_0_datagrams_decode_to_the_listed_connections() {
    let dgrams = datagrams(recorded!("datagrams-v0.hex"));
    assert_eq!(dgrams.len(), 1);
    let conns = receive(&dgrams, Version::V0);
    let last = check_against_listing(&conns, &listing(recorded!("lnc-v0.txt")));
    // Phase 2's NAT, DR, persistent (plus its template) and UDP connections; no IPv6 in v0.
    assert_eq!(last.len(), 5);
    assert!(conns.iter().all(|c| !c.is_ipv6() && c.timeout_s == 0 && c.fwmark == 0));
}
