//! xvs as the master, a real kernel as the backup.
//!
//! [`sent`] is a fixed set of connections (IPv4 TCP NAT, DR, FIN_WAIT, UDP, a persistence
//! template with a connection it controls, IPv6 TCP NAT). [`Master`] turns them into
//! datagrams exactly as xvsd's master does; they are kept as hex in
//! `testdata/sync/xvs-master/datagrams.hex` (`XVS_REGEN=1` rewrites the file, otherwise the
//! test fails when the code no longer produces it).
//!
//! `testdata/sync/replay-to-kernel-backup.sh` multicast those datagrams, in the IPVS VM, to a
//! kernel running `ipvsadm --start-daemon backup --syncid 9` with the matching services, and
//! recorded its `ipvsadm -Lnc` and `-Ln` (`testdata/sync/kernel-6.1-backup/`,
//! `kernel-6.12-backup/`). Both kernels installed every connection xvs sent, as sent, and
//! logged no complaint (`dmesg.txt` there).

mod lnc;
use lnc::{listing, state_name};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

fn from_hex(line: &str) -> Vec<u8> {
    (0..line.len()).step_by(2).map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex")).collect()
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

/// The kernel backup's listing has exactly the connections in the recorded datagrams.
fn check_kernel_backup(dir: &str) {
    let hex = std::fs::read_to_string(testdata("xvs-master/datagrams.hex")).expect("datagrams.hex");
    let conns: Vec<SyncConn> = hex
        .lines()
        .filter(|l| !l.is_empty())
        .flat_map(|l| Message::parse(&from_hex(l)).expect("header").entries().collect::<Vec<_>>())
        .map(|e| e.expect("entry"))
        .collect();
    assert_eq!(conns.len(), sent().len());
    let lnc = std::fs::read_to_string(testdata(&format!("{dir}/lnc.txt"))).expect("the kernel's -Lnc");
    let listed = listing(&lnc);
    for c in &conns {
        let (source, virt) = (SocketAddr::new(c.caddr, c.cport), SocketAddr::new(c.vaddr, c.vport));
        let l = listed
            .iter()
            .find(|l| (l.protocol, l.source, l.virt) == (c.protocol, source, virt))
            .unwrap_or_else(|| panic!("{dir}: the kernel backup does not list {source} -> {virt}:\n{lnc}"));
        assert_eq!(l.dest, SocketAddr::new(c.daddr, c.dport), "{dir}: {source} -> {virt}");
        assert_eq!(l.state, state_name(c), "{dir}: {source} -> {virt}");
        assert!(l.expire_s <= c.timeout_s, "{dir}: {source} -> {virt}: {} s left of {} s", l.expire_s, c.timeout_s);
        // The replay took a few seconds at most: the timer was started with the timeout sent.
        assert!(
            l.expire_s + 30 >= c.timeout_s,
            "{dir}: {source} -> {virt}: {} s left of {} s",
            l.expire_s,
            c.timeout_s
        );
    }
    assert_eq!(listed.len(), conns.len(), "{dir}: the kernel backup lists more than was sent:\n{lnc}");
}

/// The kernel backup's `ipvsadm -Ln` counts each synced connection on the real server it was
/// sent with: in ActiveConn, or in InActConn when it was sent `INACTIVE` (a synced connection
/// keeps the activity it was sent with; templates count in neither).
fn check_kernel_backup_counts(dir: &str) {
    let ln = std::fs::read_to_string(testdata(&format!("{dir}/services.txt"))).expect("the kernel's -Ln");
    let mut service: Option<(u8, SocketAddr)> = None;
    let mut servers = 0;
    for l in ln.lines().skip(3) {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            ["->", dest, _forward, _weight, active, inactive] => {
                let (protocol, virt) = service.expect("a service before its servers");
                let dest: SocketAddr = dest.parse().expect("real server");
                let to_it = sent().into_iter().filter(|c| {
                    !c.is_template()
                        && (c.protocol, SocketAddr::new(c.vaddr, c.vport), SocketAddr::new(c.daddr, c.dport))
                            == (protocol, virt, dest)
                });
                let (want_inactive, want_active): (Vec<_>, Vec<_>) =
                    to_it.partition(|c| c.flags & conn_flags::INACTIVE != 0);
                let got = (active.parse::<usize>().expect("active"), inactive.parse::<usize>().expect("inactive"));
                assert_eq!(got, (want_active.len(), want_inactive.len()), "{dir}: {virt} -> {dest}");
                servers += 1;
            }
            [p, virt, ..] => {
                let protocol = match *p {
                    "TCP" => proto::TCP,
                    "UDP" => proto::UDP,
                    other => panic!("protocol {other}"),
                };
                service = Some((protocol, virt.parse().expect("virtual")));
            }
            _ => panic!("{dir}: unexpected line {l:?}"),
        }
    }
    assert_eq!(servers, 5, "{dir}: one real server per service");
}

#[test]
fn a_linux_6_1_backup_installs_every_connection_xvs_sent() {
    check_kernel_backup("kernel-6.1-backup");
    check_kernel_backup_counts("kernel-6.1-backup");
}

#[test]
fn a_linux_6_12_backup_installs_every_connection_xvs_sent() {
    check_kernel_backup("kernel-6.12-backup");
    check_kernel_backup_counts("kernel-6.12-backup");
}
