//! keepalived.conf files into xvs configurations: the same services, defaults and inheritance
//! as keepalived, errors with file and line, notices for what is not run.

use std::path::{Path, PathBuf};

use xvs_keepalived::{load, load_str};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/keepalived").join(name)
}

fn err(text: &str) -> String {
    load_str(Path::new("/etc/keepalived/keepalived.conf"), text).unwrap_err().to_string()
}

#[test]
fn the_lab_file_reads_as_keepalived_would() {
    let l = load(&testdata("two-services.conf")).unwrap();
    let c = &l.config;
    assert_eq!(c.services.len(), 2);
    let web = &c.services[0];
    assert_eq!(
        (web.address.as_deref(), web.protocol.as_str(), web.scheduler.as_str()),
        (Some("198.18.0.100:80"), "tcp", "rr")
    );
    assert_eq!(web.sorry_server.as_deref(), Some("198.18.4.2:80"));
    assert_eq!(web.real_servers.len(), 2);
    let rs1 = &web.real_servers[0];
    assert_eq!((rs1.address.as_str(), rs1.method.as_str(), rs1.weight), ("198.18.2.2:80", "masq", 1));
    let chk = &rs1.checks[0];
    assert_eq!(chk.kind, "http_get");
    // delay_loop comes from the virtual_server.
    assert_eq!(
        (chk.delay_loop, chk.connect_timeout, chk.retry, chk.delay_before_retry),
        (Some(1.0), Some(1.0), Some(1), Some(0.5))
    );
    assert_eq!(chk.url[0].status_code.as_deref(), Some("200"));
    assert_eq!(web.real_servers[1].inhibit_on_failure, Some(true));
    let api = &c.services[1];
    assert_eq!(api.persistent, Some(60));
    assert_eq!(api.real_servers[0].checks.len(), 2);
    let misc = &api.real_servers[0].checks[1];
    assert_eq!(
        (misc.kind.as_str(), misc.misc_path.as_deref(), misc.misc_timeout),
        ("misc_check", Some("/bin/sh -c '! test -e /var/tmp/xvs-drain/rs1'"), Some(2.0))
    );
    assert_eq!(c.timeouts.as_ref().map(|t| (t.tcp, t.tcpfin, t.udp)), Some((900, 120, 300)));
    // VRRP and the e-mail settings are reported, with their lines.
    let notices: Vec<String> = l.notices.iter().map(|n| n.to_string()).collect();
    assert!(notices.iter().any(|n| n.contains("two-services.conf:12: vrrp_instance is VRRP")), "{notices:#?}");
    assert!(notices.iter().any(|n| n.contains("notification_email")), "{notices:#?}");
    // And it is a valid xvs configuration, checks included.
    xvs_health::Plan::from_config(c).unwrap();
}

#[test]
fn keepalived_defaults_apply_with_a_notice() {
    let l = load_str(
        Path::new("k.conf"),
        "virtual_server 198.18.0.1 53 {\n  real_server 198.18.2.2 53 {\n    DNS_CHECK {\n      name example.org\n    }\n  }\n}\n",
    )
    .unwrap();
    let s = &l.config.services[0];
    // keepalived: no protocol → UDP, no lb_algo → wlc, no lb_kind → NAT.
    assert_eq!((s.protocol.as_str(), s.scheduler.as_str(), s.real_servers[0].method.as_str()), ("udp", "wlc", "masq"));
    let notices: Vec<String> = l.notices.iter().map(|n| n.to_string()).collect();
    assert!(notices.iter().any(|n| n.starts_with("k.conf:1: no protocol given: UDP")), "{notices:?}");
    let plan = xvs_health::Plan::from_config(&l.config).unwrap();
    let chk = &plan.services[0].dests[0].checks[0];
    // DNS_CHECK: retry 3, delay_before_retry = delay_loop (60 s), SOA query.
    assert_eq!((chk.retry, chk.delay_before_retry.as_secs()), (3, 60));
}

#[test]
fn groups_become_one_service_per_member_sharing_checks() {
    let l = load_str(
        Path::new("k.conf"),
        "virtual_server_group WEB {\n  198.18.0.10-12 80\n  198.18.0.20 443\n}\nvirtual_server group WEB {\n  protocol TCP\n  lb_algo rr\n  lb_kind DR\n  real_server 198.18.2.2 {\n    TCP_CHECK {\n    }\n  }\n}\n",
    )
    .unwrap();
    let addrs: Vec<&str> = l.config.services.iter().map(|s| s.address.as_deref().unwrap()).collect();
    assert_eq!(addrs, ["198.18.0.10:80", "198.18.0.11:80", "198.18.0.12:80", "198.18.0.20:443"]);
    // DR: the real server takes each service's port.
    assert_eq!(l.config.services[3].real_servers[0].address, "198.18.2.2:443");
    let plan = xvs_health::Plan::from_config(&l.config).unwrap();
    let (m, _) = xvs_health::Monitor::new(plan, std::time::Instant::now(), 1);
    // Three services probe 198.18.2.2:80 the same way: one checker; :443 is another.
    assert_eq!(m.checker_count(), 2);
}

#[test]
fn what_xvs_cannot_honour_is_an_error_at_its_line() {
    let cases = [
        ("virtual_server fwmark 7 {\n}\n", "k.conf:1: firewall-mark services are not supported"),
        ("virtual_server 198.18.0.1 80 {\n  lb_algo xx\n}\n", "k.conf:2: scheduler 'xx' is not one of"),
        ("virtual_server 198.18.0.1 80 {\n  persistence_engine sip\n}\n", "k.conf:2: persistence engines"),
        ("virtual_server 198.18.0.1 80 {\n  lb_kind TUN type gue port 6080\n}\n", "k.conf:2: xvs tunnels with IP-in-IP only"),
        ("virtual_server 198.18.0.1 80 {\n  real_server 198.18.2.2 80 {\n    PING_CHECK {\n    }\n  }\n}\n", "k.conf:3: PING_CHECK is not supported"),
        ("virtual_server 198.18.0.1 80 {\n  real_server 198.18.2.2 80 {\n    HTTP_GET {\n      url {\n        path /\n        regex \"ok\"\n      }\n    }\n  }\n}\n", "k.conf:6: regex is not supported"),
        ("virtual_server 198.18.0.1 80 {\n  real_server 198.18.2.2 80 {\n    wieght 3\n  }\n}\n", "k.conf:3: unknown keyword 'wieght' in real_server"),
        ("virtual_server 198.18.0.1 80 {\n  delay_loop soon\n}\n", "k.conf:2: delay_loop 'soon' is not a time"),
        ("virtual_server 198.18.0.300 80 {\n}\n", "k.conf:1: '198.18.0.300' is not an IP address"),
        ("virtual_server group NOPE {\n}\n", "k.conf:1: virtual_server_group NOPE is not defined"),
        ("virtual_server 198.18.0.1 80 {\n  quorum_up \"/bin/up\" nobody\n}\n", "k.conf:2: quorum_up: a user for one script is not supported"),
        ("bogus_block {\n}\n", "k.conf:1: unknown keyword 'bogus_block'"),
        ("global_defs {\n  lvs_sync_daemon eth0 VI_1\n}\n", "k.conf:2: lvs_sync_daemon is not supported by xvs yet"),
    ];
    for (text, want) in cases {
        let e = load_str(Path::new("k.conf"), text).unwrap_err().to_string();
        assert!(e.starts_with(want), "{text}\n=> {e}\nwanted {want}");
    }
    assert!(err("virtual_server 198.18.0.1 80 {\n").contains("never closed"));
}
