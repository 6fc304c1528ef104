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
    // The VRRP instance is read as keepalived reads it; the e-mail settings are reported.
    let v = &c.vrrp_instances[0];
    assert_eq!(
        (v.name.as_str(), v.interface.as_str(), v.state.as_deref(), v.virtual_router_id, v.priority),
        ("VI_1", "eth0", Some("MASTER"), 51, Some(100))
    );
    assert_eq!(v.virtual_ipaddress, ["198.18.0.100"]);
    let notices: Vec<String> = l.notices.iter().map(|n| n.to_string()).collect();
    assert!(notices.iter().any(|n| n.contains("notification_email")), "{notices:#?}");
    // And it is a valid xvs configuration, checks included.
    xvs_health::Plan::from_config(c).unwrap();
}

#[test]
fn vrrp_blocks_read_keyword_for_keyword() {
    let text = r#"
global_defs {
  vrrp_version 3
  vrrp_garp_master_delay 2
}
vrrp_script chk {
  script "/bin/true"
  interval 2
  weight -20
  fall 3
  rise 2
}
vrrp_sync_group G {
  group {
    V4
    V6
  }
  notify "/bin/true"
}
vrrp_instance V4 {
  interface e0
  virtual_router_id 7
  priority 150
  advert_int 0.5
  nopreempt
  unicast_src_ip 198.18.5.1
  unicast_peer {
    198.18.5.2
  }
  virtual_ipaddress {
    198.18.5.100/24 dev e0 label e0:vip
  }
  track_interface {
    e1 weight -10
  }
  track_script {
    chk weight 30 reverse
  }
  notify_master "/bin/echo master"
}
vrrp_instance V6 {
  interface e0
  virtual_router_id 8
  virtual_ipaddress {
    2001:2::100
  }
}
"#;
    let c = load_str(Path::new("v.conf"), text).unwrap().config;
    let v = &c.vrrp_instances[0];
    assert_eq!((v.version, v.advert_int, v.nopreempt, v.garp_master_delay), (Some(3), Some(0.5), true, Some(2.0)));
    assert_eq!(v.unicast_src_ip.as_deref(), Some("198.18.5.1"));
    assert_eq!(v.unicast_peer, ["198.18.5.2"]);
    assert_eq!(v.virtual_ipaddress, ["198.18.5.100/24 dev e0 label e0:vip"]);
    assert_eq!((v.track_interface[0].name.as_str(), v.track_interface[0].weight), ("e1", Some(-10)));
    assert_eq!((v.track_script[0].weight, v.track_script[0].reverse), (Some(30), true));
    assert_eq!(v.notify_master.as_deref(), Some("/bin/echo master"));
    assert_eq!(c.vrrp_instances[1].version, Some(3));
    assert_eq!(c.vrrp_scripts[0].weight, Some(-20));
    assert_eq!((c.vrrp_scripts[0].fall, c.vrrp_scripts[0].rise), (Some(3), Some(2)));
    assert_eq!(c.vrrp_sync_groups[0].group, ["V4", "V6"]);
    // What xvs cannot do is refused at its line.
    let e = load_str(
        Path::new("v.conf"),
        "vrrp_instance X {
  interface e0
  virtual_router_id 1
  use_vmac
}
",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("v.conf:4") && e.contains("virtual MAC"), "{e}");
    let e = load_str(
        Path::new("v.conf"),
        "vrrp_instance X {
  interface e0
  virtual_router_id 1
  authentication {
    auth_type AH
  }
}
",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("v.conf:5") && e.contains("AH"), "{e}");
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
fn firewall_mark_services_and_groups_as_keepalived_reads_them() {
    let text = "virtual_server_group MARKS {\n  fwmark 3\n  fwmark 4 inet\n  198.18.0.30 80\n}\n\
                virtual_server fwmark 7 {\n  lb_algo sh\n  lb_kind DR\n  persistence_timeout 600\n  \
                real_server 198.18.2.2 {\n    TCP_CHECK {\n      connect_port 443\n    }\n  }\n}\n\
                virtual_server fwmark 8 {\n  ip_family inet6\n  lb_kind NAT\n  real_server 2001:2:0:2::2 8080 {\n  }\n}\n\
                virtual_server group MARKS {\n  protocol TCP\n  lb_kind DR\n  real_server 198.18.2.3 {\n  }\n}\n";
    let l = load_str(Path::new("k.conf"), text).unwrap();
    let got: Vec<(Option<u32>, bool, Option<&str>, &str)> = l
        .config
        .services
        .iter()
        .map(|s| (s.fwmark, s.ipv6, s.address.as_deref(), s.real_servers[0].address.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Some(7), false, None, "198.18.2.2:0"),
            (Some(8), true, None, "[2001:2:0:2::2]:8080"),
            (Some(3), false, None, "198.18.2.3:0"),
            (Some(4), false, None, "198.18.2.3:0"),
            (None, false, Some("198.18.0.30:80"), "198.18.2.3:80"),
        ]
    );
    assert_eq!(l.config.services[0].persistent, Some(600));
    assert!(!l.notices.iter().any(|n| n.message.contains("no protocol")), "a mark needs no protocol: {:?}", l.notices);
    let specs = l.config.specs().unwrap();
    assert!(matches!(specs[1].0.key, xvs_api::KeySpec::Fwmark { mark: 8, ipv6: true }));
    // And the sip engine, as keepalived writes it.
    let sip =
        "virtual_server 198.18.0.1 5060 {\n  protocol UDP\n  persistence_timeout 300\n  persistence_engine sip\n  \
               real_server 198.18.2.2 5060 {\n  }\n}\n";
    let l = load_str(Path::new("k.conf"), sip).unwrap();
    assert_eq!(l.config.specs().unwrap()[0].0.pe.as_deref(), Some("sip"));
}

#[test]
fn what_xvs_cannot_honour_is_an_error_at_its_line() {
    let cases = [
        ("virtual_server fwmark 0 {\n}\n", "k.conf:1: fwmark '0' is not a number from 1"),
        ("virtual_server_group G {\n  fwmark 3 inet4\n}\n", "k.conf:2: fwmark 3: family 'inet4' is not inet or inet6"),
        ("virtual_server fwmark 3 {\n  ip_family inet6\n  real_server 198.18.2.2 {\n  }\n}\n", "k.conf:1: real server 198.18.2.2 is not of the firewall-mark service's family (inet6)"),
        ("virtual_server 198.18.0.1 80 {\n  lb_algo xx\n}\n", "k.conf:2: scheduler 'xx' is not one of"),
        ("virtual_server 198.18.0.1 80 {\n  persistence_engine h323\n}\n", "k.conf:2: persistence engine 'h323' is not one of sip"),
        ("virtual_server 198.18.0.1 80 {\n  lb_kind TUN type gue\n}\n", "k.conf:2: TUN type gue needs port PORT"),
        ("virtual_server 198.18.0.1 80 {\n  lb_kind TUN type gre remcsum\n}\n", "k.conf:2: 'remcsum' is not a checksum option"),
        ("virtual_server 198.18.0.1 80 {\n  lb_kind DR csum\n}\n", "k.conf:2: lb_kind DR takes no options"),
        ("virtual_server 198.18.0.1 80 {\n  real_server 198.18.2.2 80 {\n    BFD_CHECK {\n    }\n  }\n}\n", "k.conf:3: BFD_CHECK is not supported"),
        ("virtual_server 198.18.0.1 25 {\n  real_server 198.18.2.2 25 {\n    SMTP_CHECK {\n      host {\n        weight 2\n      }\n    }\n  }\n}\n", "k.conf:5: unknown keyword 'weight' in an SMTP_CHECK host block"),
        ("virtual_server 198.18.0.1 80 {\n  real_server 198.18.2.2 80 {\n    HTTP_GET {\n      url {\n        path /\n        regex \"ok\"\n      }\n    }\n  }\n}\n", "k.conf:6: regex is not supported"),
        ("virtual_server 198.18.0.1 80 {\n  real_server 198.18.2.2 80 {\n    wieght 3\n  }\n}\n", "k.conf:3: unknown keyword 'wieght' in real_server"),
        ("virtual_server 198.18.0.1 80 {\n  delay_loop soon\n}\n", "k.conf:2: delay_loop 'soon' is not a time"),
        ("virtual_server 198.18.0.300 80 {\n}\n", "k.conf:1: '198.18.0.300' is not an IP address"),
        ("virtual_server group NOPE {\n}\n", "k.conf:1: virtual_server_group NOPE is not defined"),
        ("virtual_server 198.18.0.1 80 {\n  quorum_up \"/bin/up\" nobody\n}\n", "k.conf:2: quorum_up: a user for one script is not supported"),
        ("bogus_block {\n}\n", "k.conf:1: unknown keyword 'bogus_block'"),
        ("global_defs {\n  lvs_sync_daemon eth0\n}\n", "k.conf:2: lvs_sync_daemon takes INTERFACE VRRP_INSTANCE"),
        ("global_defs {\n  lvs_sync_daemon eth0 VI_1 id 300\n}\n", "k.conf:2: lvs_sync_daemon: id '300' is out of range"),
    ];
    for (text, want) in cases {
        let e = load_str(Path::new("k.conf"), text).unwrap_err().to_string();
        assert!(e.starts_with(want), "{text}\n=> {e}\nwanted {want}");
    }
    assert!(err("virtual_server 198.18.0.1 80 {\n").contains("never closed"));
}

#[test]
fn tunnel_types_and_checksums_are_read_as_keepalived_writes_them() {
    let text = "virtual_server 198.18.0.1 80 {\n  lb_kind TUN type gue port 6080 csum\n  \
                real_server 198.18.2.2 80 {\n  }\n  real_server 198.18.2.3 80 {\n    lvs_method TUN type gre\n  }\n}\n";
    let loaded = xvs_keepalived::load_str(std::path::Path::new("k.conf"), text).unwrap();
    let rs = &loaded.config.services[0].real_servers;
    let t = rs[0].tunnel.expect("inherited from the virtual server");
    assert_eq!((t.kind, t.port, t.csum), (xvs_api::TunnelKindName::Gue, 6080, xvs_api::CsumName::Csum));
    let t = rs[1].tunnel.expect("its own");
    assert_eq!((t.kind, t.csum), (xvs_api::TunnelKindName::Gre, xvs_api::CsumName::Nocsum));
    let (_, dests) = &loaded.config.specs().unwrap()[0];
    assert_eq!(dests[0].tunnel.kind, xvs_api::TunnelKindName::Gue);
}

#[test]
fn smtp_and_ping_checks_are_read() {
    let text = "virtual_server 198.18.0.1 25 {\n  real_server 198.18.2.2 25 {\n    SMTP_CHECK {\n      helo_name lb1.example\n      \
                connect_timeout 3\n    }\n    PING_CHECK {\n      bindto 198.18.2.1\n      retry 2\n    }\n  }\n}\n";
    let loaded = xvs_keepalived::load_str(std::path::Path::new("k.conf"), text).unwrap();
    let checks = &loaded.config.services[0].real_servers[0].checks;
    assert_eq!(checks[0].kind, "smtp_check");
    assert_eq!(checks[0].helo_name.as_deref(), Some("lb1.example"));
    assert_eq!(checks[0].connect_timeout, Some(3.0));
    assert_eq!(checks[1].kind, "ping_check");
    assert_eq!(checks[1].bindto, None, "keepalived ignores a ping check's bindto");
    assert!(loaded.notices.iter().any(|n| n.message.contains("PING_CHECK sends from the routed address")));
    // SMTP_CHECK's deprecated host blocks: a check per host.
    let hosts = "virtual_server 198.18.0.1 25 {\n  real_server 198.18.2.2 25 {\n    SMTP_CHECK {\n      helo_name a\n      \
                 host {\n        connect_ip 198.18.2.3\n        connect_port 2525\n      }\n      host {\n      }\n    }\n  }\n}\n";
    let l = xvs_keepalived::load_str(std::path::Path::new("k.conf"), hosts).unwrap();
    let c = &l.config.services[0].real_servers[0].checks;
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!((c[0].connect_ip.as_deref(), c[0].connect_port), (Some("198.18.2.3"), Some(2525)));
    assert_eq!((c[1].connect_ip.as_deref(), c[1].connect_port), (None, None), "the real server itself");
    assert!(c.iter().all(|x| x.helo_name.as_deref() == Some("a")));
    // And they make checks xvs runs.
    let rs: std::net::SocketAddr = "198.18.2.2:25".parse().unwrap();
    for c in checks {
        xvs_health::CheckSpec::from_entry(c, rs).unwrap();
    }
}

#[test]
fn conditional_lines_parameters_and_sequences_as_keepalived_reads_them() {
    let text = "$VIP=198.18.0.1\n$W=3\nvirtual_server $VIP 80 {\n  lb_kind DR\n  \
                ~SEQ(i, 2, 3) real_server 198.18.2.$i 80 { weight $W }\n  \
                @lb1 real_server 198.18.2.9 80 { }\n  @^lb1 real_server 198.18.2.8 80 { }\n}\n";
    let servers = |id: &str| -> Vec<(String, i32)> {
        let loaded = xvs_keepalived::load_str_for(std::path::Path::new("k.conf"), text, Some(id)).unwrap();
        assert_eq!(loaded.config.services[0].address.as_deref(), Some("198.18.0.1:80"));
        loaded.config.services[0].real_servers.iter().map(|r| (r.address.clone(), r.weight)).collect()
    };
    let want =
        |last: &str| vec![("198.18.2.2:80".to_string(), 3), ("198.18.2.3:80".to_string(), 3), (last.to_string(), 1)];
    assert_eq!(servers("lb1"), want("198.18.2.9:80"));
    assert_eq!(servers("lb2"), want("198.18.2.8:80"));
    // Errors keep their line.
    let e = xvs_keepalived::load_str_for(std::path::Path::new("k.conf"), "x\n~SEQ(i, 1, 0, 3) y\n", None).unwrap_err();
    assert_eq!(e.to_string(), "k.conf:2: ~SEQ(i, 1, 0, 3) never reaches its end");
}

/// keepalived's own sample configurations (its repository's doc/samples), read from the folder
/// `XVS_KEEPALIVED_SAMPLES` names (`XVS_ID`: the configuration id, default lb1): `cargo test -p
/// xvs-keepalived samples -- --ignored --nocapture` prints what each becomes (docs/health.md
/// lists the refusals).
#[test]
#[ignore]
fn keepalived_samples() {
    let Ok(dir) = std::env::var("XVS_KEEPALIVED_SAMPLES") else { return };
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    names.sort();
    let mut refused = Vec::new();
    for p in names {
        match xvs_keepalived::load_for(&p, Some(std::env::var("XVS_ID").as_deref().unwrap_or("lb1"))) {
            Ok(l) => eprintln!(
                "ACCEPTED {} ({} services, {} notices)",
                p.display(),
                l.config.services.len(),
                l.notices.len()
            ),
            Err(e) => {
                eprintln!("REFUSED  {e}");
                refused
                    .push(p.file_name().unwrap().to_string_lossy().trim_start_matches("keepalived.conf.").to_string());
            }
        }
    }
    if std::env::var("XVS_ID").is_err() {
        // The ones docs/health.md lists (keepalived's samples of 2026-12-02).
        let listed = [
            "SSL_GET",
            "conditional_conf",
            "track_interface",
            "vrrp.lvs_syncd",
            "vrrp.routes",
            "vrrp.rules",
            "vrrp.static_ipaddress",
        ];
        assert_eq!(refused, listed, "refusals not listed in docs/health.md");
    }
}

#[test]
fn file_check_follows_a_track_file() {
    let text = "track_file maint {\n  file /run/maint\n  weight -5 reverse\n  init_file 0\n}\n\
                virtual_server 198.18.0.1 80 {\n  real_server 198.18.2.2 80 {\n    FILE_CHECK {\n      track_file maint\n    }\n  }\n  \
                real_server 198.18.2.3 80 {\n    FILE_CHECK {\n      track_file maint\n      weight 0 noreverse\n    }\n  }\n}\n";
    let l = xvs_keepalived::load_str(std::path::Path::new("k.conf"), text).unwrap();
    let rs = &l.config.services[0].real_servers;
    let c = &rs[0].checks[0];
    assert_eq!((c.kind.as_str(), c.file.as_deref(), c.weight, c.reverse), ("file", Some("/run/maint"), Some(-5), true));
    let c = &rs[1].checks[0];
    assert_eq!((c.weight, c.reverse), (Some(0), false), "FILE_CHECK's own weight");
    assert!(l.notices.iter().any(|n| n.message.starts_with("init_file")));
    for (bad, why) in [
        ("virtual_server 198.18.0.1 80 {\n  real_server 198.18.2.2 80 {\n    FILE_CHECK {\n      track_file none\n    }\n  }\n}\n", "k.conf:3: FILE_CHECK: no track_file none"),
        ("track_file t {\n  file /x\n}\nvirtual_server 198.18.0.1 80 {\n  real_server 198.18.2.2 80 {\n    FILE_CHECK {\n      track_file t\n      delay_loop 3\n    }\n  }\n}\n", "k.conf:8: unknown keyword 'delay_loop' in FILE_CHECK"),
        ("track_file t {\n  weight 2\n}\n", "k.conf:1: track_file t needs file"),
    ] {
        let e = xvs_keepalived::load_str(std::path::Path::new("k.conf"), bad).unwrap_err().to_string();
        assert!(e.starts_with(why), "{e}");
    }
}
