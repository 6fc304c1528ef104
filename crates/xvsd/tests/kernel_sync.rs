//! What a real kernel master sent lands in xvs as a backup: the datagrams Linux 6.1 sent as a
//! sync master (`testdata/sync/record-master.sh`, run in the IPVS VM) are fed to xvsd's backup
//! path with the same services configured, and the resulting connection table lists exactly
//! the connections the kernel listed (`ipvsadm -Lnc` after the run): same protocol, state,
//! client, virtual and real server addresses and ports. Expiry times are xvs's own timeouts.

use std::collections::BTreeSet;

use xvs_api::{Request, Response};
use xvs_dataplane::{Director, LoadOptions};
use xvsd::control::Control;

const DATAGRAMS: &str = include_str!("../../../testdata/sync/kernel-6.1/datagrams-v1.hex");
const LISTING: &str = include_str!("../../../testdata/sync/kernel-6.1/lnc-v1.txt");

/// The recording's services (`testdata/sync/kernel-6.1/services.txt`).
const SERVICES: &str = r#"
[[service]]
address = "198.18.0.100:80"
scheduler = "rr"
real_server = [{ address = "198.18.2.2:80", method = "masq" }]
[[service]]
address = "198.18.0.100:8080"
scheduler = "rr"
real_server = [{ address = "198.18.2.2:8080", method = "masq" }]
[[service]]
address = "198.18.0.101:80"
scheduler = "rr"
persistent = 60
real_server = [{ address = "198.18.2.2:80", method = "masq" }]
[[service]]
address = "198.18.1.100:80"
scheduler = "rr"
real_server = [{ address = "198.18.1.3:80", method = "route" }]
[[service]]
protocol = "udp"
address = "198.18.0.100:53"
scheduler = "rr"
real_server = [{ address = "198.18.2.2:53", method = "masq" }]
[[service]]
address = "[2001:db8::100]:80"
scheduler = "rr"
real_server = [{ address = "[2001:db8:2::2]:80", method = "masq" }]
"#;

fn hex(line: &str) -> Vec<u8> {
    (0..line.len()).step_by(2).map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn a_kernel_masters_connections_are_installed_as_the_kernel_listed_them() {
    if !xvs_lab::require_root() {
        return;
    }
    let pins = xvs_lab::PinDir::new(&format!("{}ksync", xvs_lab::unique_prefix()));
    let o = LoadOptions::small(xvs_abi::pin_dir(pins.path()));
    let mut c = Control::adopt(Director::load(o).unwrap(), xvsd::now()).unwrap();
    let config = xvs_api::config::Config::parse(SERVICES).unwrap();
    assert!(matches!(c.handle(Request::Apply { config, dry_run: false }, xvsd::now()), Response::Applied { .. }));
    // The backup's path: decode (sync ID 7, as recorded), translate, install.
    let mut backup = xvs_sync::Backup::new(xvs_sync::BackupConfig { syncid: 7, ..Default::default() });
    let mut installed = 0;
    for d in DATAGRAMS.lines().filter(|l| !l.is_empty()) {
        let r = backup.handle_datagram(xvsd::now(), &hex(d)).unwrap();
        assert!(r.skipped.is_empty() && r.dropped.is_none(), "{r:?}");
        let recs: Vec<_> = r
            .conns
            .iter()
            .map(|s| xvsd::sync::table::to_install(&c.lb, s).unwrap_or_else(|e| panic!("{s:?}: {e:?}")))
            .collect();
        let results = c.dp.as_ref().unwrap().director.install(&recs).unwrap();
        assert!(
            results.iter().all(|r| *r == xvs_abi::INSTALLED_NEW || *r == xvs_abi::INSTALLED_UPDATED),
            "{results:?}"
        );
        installed += results.len();
    }
    assert!(installed >= 32, "{installed}");
    // What xvs lists now, against what the kernel listed.
    let (tables, timeouts) = c.conn_lister().unwrap();
    let ours: BTreeSet<String> = xvsd::conns::list(&tables, &timeouts, xvsd::now())
        .iter()
        .map(|x| {
            let ep = |a: std::net::IpAddr, p: u16| std::net::SocketAddr::new(a, p).to_string();
            format!(
                "{} {} {} {} {}",
                x.proto,
                x.state,
                ep(x.caddr, x.cport),
                ep(x.vaddr, x.vport),
                ep(x.daddr, x.dport)
            )
        })
        .collect();
    let kernel: BTreeSet<String> = LISTING
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {} {}", w[0], w[2], w[3], w[4], w[5])
        })
        .collect();
    assert_eq!(ours, kernel, "xvs (left) and the kernel (right) list different connections");
    // The synced entries are bound to their servers as the kernel counted them: one
    // template, one active (ESTABLISHED) connection, the others inactive.
    let dp = c.dp.as_ref().unwrap();
    let (mut active, mut total, mut persist) = (0, 0, 0);
    for (id, _) in c.lb.services.iter() {
        for (did, _) in c.lb.services.view(id).unwrap().iter() {
            let st = dp.director.maps.dest_state.get(&did.index(), 0).unwrap();
            (active, total, persist) = (active + st.active, total + st.total, persist + st.persist);
        }
    }
    let listed = kernel.len() as i64;
    assert_eq!((active, total, persist), (1, listed - 1, 1), "active, connections, templates");
}
