//! xvs as the master, a real kernel as the backup.
//!
//! [`sent`] is a fixed set of connections (IPv4 TCP NAT, DR, FIN_WAIT, UDP, a persistence
//! template with a connection it controls, IPv6 TCP NAT). [`Master`] turns them into
//! datagrams exactly as xvsd's master does; they are kept as hex in
//! `testdata/sync/xvs-master/datagrams.hex` (`XVS_REGEN=1` rewrites the file, otherwise the
//! test fails when the code no longer produces it).
//!
//! They are meant to be replayed to a kernel sync backup.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use xvs_sync::*;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(last: &str) -> IpAddr {
    IpAddr::V6(format!("2001:db8:{last}").parse::<Ipv6Addr>().expect("ipv6"))
}

/// TCP NAT, ESTABLISHED, 900 s, client 198.18.1.2:`cport` to 198.18.0.100:80 → 198.18.2.2:80.
fn nat(cport: u16) -> SyncConn {
    SyncConn {
        protocol: proto::TCP,
        flags: conn_flags::MASQ,
        state: tcp_state::ESTABLISHED,
        caddr: v4(198, 18, 1, 2),
        cport,
        vaddr: v4(198, 18, 0, 100),
        vport: 80,
        daddr: v4(198, 18, 2, 2),
        dport: 80,
        fwmark: 0,
        timeout_s: 900,
        seq: None,
        pe: None,
    }
}

/// The connections xvs sends, with the timeouts of the default protocol timeout table (as
/// xvsd's `collect` fills them in), and the flags xvsd gives them.
fn sent() -> Vec<SyncConn> {
    let persistent = v4(198, 18, 0, 101);
    vec![
        nat(40001),
        // DR: the director sees only the client's half.
        SyncConn {
            flags: conn_flags::DROUTE | conn_flags::NOOUTPUT,
            cport: 40002,
            vaddr: v4(198, 18, 1, 100),
            daddr: v4(198, 18, 1, 3),
            ..nat(0)
        },
        SyncConn {
            flags: conn_flags::MASQ | conn_flags::INACTIVE,
            state: tcp_state::FIN_WAIT,
            timeout_s: 120,
            ..nat(40003)
        },
        SyncConn {
            protocol: proto::UDP,
            flags: conn_flags::MASQ | conn_flags::INACTIVE,
            state: udp_state::NORMAL,
            vport: 53,
            dport: 53,
            timeout_s: 300,
            ..nat(40004)
        },
        // `ipvsadm -A -t 198.18.0.101:80 -p 60`: the template (client port 0), assured, with the
        // persistence timeout, and the connection it controls.
        SyncConn {
            flags: conn_flags::TEMPLATE | conn_flags::MASQ,
            state: tpl_state::ASSURED,
            cport: 0,
            vaddr: persistent,
            timeout_s: 60,
            ..nat(0)
        },
        SyncConn { vaddr: persistent, ..nat(40005) },
        SyncConn { caddr: v6("1::2"), vaddr: v6(":100"), daddr: v6("2::2"), ..nat(40006) },
    ]
}

/// The datagrams xvs's master sends for [`sent`] (sync ID 9), as xvsd drives it.
fn datagrams() -> Vec<Vec<u8>> {
    let mut m = Master::new(MasterConfig { syncid: 9, ..MasterConfig::default() });
    let now = Instant::from_secs(1);
    m.handle_snapshot(now, sent());
    std::iter::from_fn(|| m.poll_transmit(now)).collect()
}

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sync").join(rel)
}

fn to_hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_recorded_datagrams_are_what_the_master_sends_now() {
    let text: String = datagrams().iter().map(|d| to_hex(d) + "\n").collect();
    let path = testdata("xvs-master/datagrams.hex");
    if std::env::var_os("XVS_REGEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, &text).expect("write datagrams.hex");
    }
    let recorded = std::fs::read_to_string(&path).expect("datagrams.hex (XVS_REGEN=1 writes it)");
    assert_eq!(recorded, text, "the master's datagrams changed: rerun with XVS_REGEN=1 and replay them to the kernel");
}

#[test]
fn the_datagrams_carry_every_connection_unchanged() {
    let d = datagrams();
    assert_eq!(d.len(), 1, "seven entries fit one message");
    let msg = Message::parse(&d[0]).expect("header");
    assert_eq!(msg.syncid(), 9);
    let got: Vec<SyncConn> = msg.entries().map(|e| e.expect("entry")).collect();
    assert_eq!(got, sent());
}
