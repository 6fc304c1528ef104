//! The declarative configuration file: the whole desired state, in TOML or YAML.
//!
//! ```toml
//! [[service]]
//! protocol = "tcp"              # tcp | udp | sctp (default tcp)
//! address = "198.18.0.100:80"   # or "[2001:2::100]:80"
//! scheduler = "rr"              # default wlc
//! persistent = 300              # seconds, optional
//! netmask = "255.255.255.0"     # persistence granularity, optional
//! flags = ["sh-port"]           # scheduler flags, optional
//! ops = false                   # one-packet scheduling (UDP)
//!
//!   [[service.real_server]]
//!   address = "198.18.2.2:80"   # the port defaults to the service's
//!   method = "masq"             # masq | route | tunnel (default route, as ipvsadm)
//!   # tunnel = { kind = "gue", port = 6080, csum = "csum" }   # ipip | gue | gre; nocsum | csum | remcsum
//!   weight = 1
//!   u_threshold = 0
//!   l_threshold = 0
//!
//! [timeouts]                    # optional, as ipvsadm --set (0 keeps)
//! tcp = 900
//! tcpfin = 120
//! udp = 300
//! ```
//!
//! The same in YAML (a file whose name ends in `.yaml` or `.yml`):
//!
//! ```yaml
//! service:
//!   - address: 198.18.0.100:80
//!     scheduler: rr
//!     real_server:
//!       - { address: 198.18.2.2:80, method: masq, weight: 1 }
//! ```
//!
//! A file may also hold IPVS's settings (`[sysctl]`, e.g. `sloppy_tcp = 1`) and, for xvsd's
//! `--config`, VRRP and connection synchronisation (`[[vrrp_instance]]`,
//! `[[vrrp_sync_group]]`, `[[vrrp_script]]`, `[sync_daemon]`; see [`crate::vrrp`]).
//!
//! Unknown keys are errors (with their line), so a typo never silently drops a setting.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use xvs_core::{SchedFlags, SchedKind};

use crate::spec::{DestSpec, KeySpec, ProtoName, ServiceSpec, TunnelSpec};

pub mod parts;

/// The desired state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Virtual services.
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceEntry>,
    /// Connection timeouts.
    #[serde(default)]
    pub timeouts: Option<TimeoutsEntry>,
    /// Leave services this file does not define alone (as keepalived does without
    /// `lvs_flush`); by default the file is the whole table and the rest is deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_unlisted: bool,
    /// Who notify, quorum and MISC_CHECK scripts run as: `user` or `user:group` (keepalived's
    /// `script_user`); by default `keepalived_script` if that user exists, else root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_user: Option<String>,
    /// Refuse scripts that anyone but root and their user could change (keepalived's
    /// `enable_script_security`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub script_security: bool,
    /// VRRP instances xvsd runs (from its `--config` file; see [`crate::vrrp`]).
    #[serde(default, rename = "vrrp_instance", skip_serializing_if = "Vec::is_empty")]
    pub vrrp_instances: Vec<crate::vrrp::VrrpInstanceEntry>,
    /// VRRP sync groups.
    #[serde(default, rename = "vrrp_sync_group", skip_serializing_if = "Vec::is_empty")]
    pub vrrp_sync_groups: Vec<crate::vrrp::VrrpSyncGroupEntry>,
    /// Scripts VRRP instances track.
    #[serde(default, rename = "vrrp_script", skip_serializing_if = "Vec::is_empty")]
    pub vrrp_scripts: Vec<crate::vrrp::VrrpScriptEntry>,
    /// Connection synchronisation following a VRRP instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_daemon: Option<crate::vrrp::SyncDaemonEntry>,
    /// IPVS's `net.ipv4.vs.*` settings by name (`sloppy_tcp = 1`); those not named keep
    /// their values.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sysctl: std::collections::BTreeMap<String, u64>,
    /// Announcing the VIPs to routers through a routing daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<Box<crate::bgp::BgpEntry>>,
}

/// One `[[service]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// `tcp`, `udp` or `sctp`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// `addr:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A firewall mark instead of an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    /// With `fwmark`: an IPv6 service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ipv6: bool,
    /// Scheduler.
    #[serde(default = "default_scheduler")]
    pub scheduler: String,
    /// Scheduler flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Persistence timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<u32>,
    /// Persistence granularity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<String>,
    /// One-packet scheduling.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ops: bool,
    /// Persistence engine: `"sip"` keys a persistent UDP service's templates by each
    /// datagram's SIP Call-ID too (`ipvsadm --pe sip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_engine: Option<String>,
    /// Clients allowed to connect (prefixes such as `198.18.1.0/24`); absent or empty:
    /// everyone. XDP runs before the firewall, so this replaces INPUT rules on the VIP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_sources: Vec<String>,
    /// Take new connections only while this director is MASTER of this VRRP instance (of
    /// xvsd's `--config` file); on a backup, connections synchronised from the master are
    /// still forwarded. Absent: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp_instance: Option<String>,
    /// Real servers.
    #[serde(default, rename = "real_server", skip_serializing_if = "Vec::is_empty")]
    pub real_servers: Vec<RealServerEntry>,
    /// Health: the least sum of the weights of healthy real servers (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// Health: quorum is lost below `quorum - hysteresis` and regained at `quorum + hysteresis`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hysteresis: u32,
    /// Health: the server used while the quorum is lost (`addr[:port]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<String>,
    /// Health: how the sorry server is reached (default: as the first real server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server_method: Option<String>,
    /// Health: keep the sorry server in the table with weight 0 while the quorum holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sorry_server_inhibit: bool,
    /// Health: real servers start failed and join after their first successful check.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alpha: bool,
    /// Health: run notify_down and quorum_down scripts when the service is removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub omega: bool,
    /// Health: command run when the quorum is regained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_up: Option<String>,
    /// Health: command run when the quorum is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_down: Option<String>,
    /// Health: a failed real server stays with weight 0 instead of being removed (default for
    /// the service's real servers).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inhibit_on_failure: bool,
}

/// One `[[service.real_server]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServerEntry {
    /// `addr[:port]`.
    pub address: String,
    /// `masq`, `route` or `tunnel`.
    #[serde(default = "default_method")]
    pub method: String,
    /// With `method = "tunnel"`: the encapsulation (default IP-in-IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSpec>,
    /// Weight.
    #[serde(default = "default_weight")]
    pub weight: i32,
    /// Upper threshold.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub u_threshold: u32,
    /// Lower threshold.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub l_threshold: u32,
    /// Health checks; all must pass for the server to take connections.
    #[serde(default, rename = "check", skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckEntry>,
    /// Overrides the service's `inhibit_on_failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inhibit_on_failure: Option<bool>,
    /// Overrides the service's `alpha`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<bool>,
    /// Command run when the server comes up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_up: Option<String>,
    /// Command run when the server goes down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_down: Option<String>,
}

/// One `[[service.real_server.check]]`: keepalived's checkers and their options.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckEntry {
    /// `tcp`, `http_get`, `ssl_get`, `udp`, `dns`, `smtp`, `ping`, `file` or `misc`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds between checks (default 60).
    pub delay_loop: Option<f64>,
    /// Seconds an attempt may take (default 5).
    pub connect_timeout: Option<f64>,
    /// Failed attempts retried before the server is failed (default 1; 0 for misc).
    pub retry: Option<u32>,
    /// Seconds between a failed attempt and its retry (default 1).
    pub delay_before_retry: Option<f64>,
    /// The first check comes at a random moment within this many seconds.
    pub warmup: Option<f64>,
    /// Probe this address instead of the real server's.
    pub connect_ip: Option<String>,
    /// Probe this port instead of the real server's.
    pub connect_port: Option<u16>,
    /// Source address of probes.
    pub bindto: Option<String>,
    /// Source port of probes.
    pub bind_port: Option<u16>,
    /// HTTP/SSL: the URLs, all of which must pass.
    #[serde(default)]
    pub url: Vec<UrlEntry>,
    /// HTTP/SSL: the Host header (and the TLS name with `enable_sni`).
    pub virtualhost: Option<String>,
    /// SSL: send the server name.
    #[serde(default)]
    pub enable_sni: bool,
    /// UDP: the datagram, in hexadecimal.
    pub payload: Option<String>,
    /// UDP: a reply is required.
    pub require_reply: Option<bool>,
    /// UDP: the reply must start with these bytes (hexadecimal).
    pub reply: Option<String>,
    /// DNS: the query type (default SOA).
    pub dns_type: Option<String>,
    /// DNS: the query name (default ".").
    pub dns_name: Option<String>,
    /// SMTP: the name sent with HELO (default `smtpchecker.keepalived.org`, as keepalived).
    pub helo_name: Option<String>,
    /// FILE: the file whose number sets the state and weight (keepalived's `track_file`).
    pub file: Option<String>,
    /// FILE: the number's multiplier; 0: any number but 0 fails the server (default 1).
    pub weight: Option<i32>,
    /// FILE: the number counts the other way.
    #[serde(default)]
    pub reverse: bool,
    /// MISC: the command line.
    pub misc_path: Option<String>,
    /// MISC: seconds before the script is killed (default: delay_loop).
    pub misc_timeout: Option<f64>,
    /// MISC: exit codes 2-255 set the weight to code - 2.
    #[serde(default)]
    pub misc_dynamic: bool,
    /// MISC: run as this user.
    pub user: Option<String>,
}

/// One URL of an HTTP or SSL check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlEntry {
    /// Path requested.
    pub path: String,
    /// Expected MD5 of the body (hexadecimal).
    pub digest: Option<String>,
    /// Accepted status codes: `200`, `200-299`, `200,301` (default any 2xx).
    pub status_code: Option<String>,
}

/// `[timeouts]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsEntry {
    /// ESTABLISHED.
    #[serde(default)]
    pub tcp: u32,
    /// FIN_WAIT.
    #[serde(default)]
    pub tcpfin: u32,
    /// UDP.
    #[serde(default)]
    pub udp: u32,
}

/// For `skip_serializing_if`: an apply of 100k services sends a third of the JSON without the
/// values that are their defaults anyway.
fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_protocol() -> String {
    "tcp".into()
}
fn default_scheduler() -> String {
    "wlc".into()
}
fn default_method() -> String {
    "route".into()
}
fn default_weight() -> i32 {
    1
}

/// Parses `addr[:port]` as ipvsadm does (IPv6 must be bracketed to carry a port).
pub fn parse_endpoint(s: &str, default_port: Option<u16>) -> Result<(IpAddr, u16), String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok((sa.ip(), sa.port()));
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(a) => Ok((a, default_port.unwrap_or(0))),
        Err(_) => Err(format!("'{s}' is not an address with an optional port")),
    }
}

/// The syntax of a configuration file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// TOML, the default.
    Toml,
    /// YAML.
    Yaml,
}

impl Syntax {
    /// The syntax a file name implies: YAML for `.yaml` and `.yml`, TOML otherwise.
    pub fn of_path(path: &str) -> Syntax {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Syntax::Yaml
        } else {
            Syntax::Toml
        }
    }
}

impl Config {
    /// Parses a file's text in the syntax its name implies; errors name the line.
    pub fn parse_file(path: &str, text: &str) -> Result<Config, String> {
        match Syntax::of_path(path) {
            Syntax::Toml => Config::parse(text),
            Syntax::Yaml => Config::parse_yaml(text),
        }
    }

    /// Parses YAML text; errors name the line.
    pub fn parse_yaml(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default()); // an empty document: nothing configured
        }
        serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!("line {}: {}", l.line(), strip_location(&e.to_string())),
            None => e.to_string(),
        })
    }

    /// Parses TOML text; errors name the line. A large file of services is read on several
    /// threads ([`parts::parse_parallel`]).
    pub fn parse(text: &str) -> Result<Config, String> {
        if text.len() >= 1 << 20 {
            if let Some(c) = parts::parse_parallel(text) {
                return Ok(c);
            }
        }
        Config::parse_whole(text)
    }

    /// Parses TOML text in one go.
    fn parse_whole(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_string(),
            }
        })
    }

    /// The services and real servers it describes, validated as the CLI would validate them.
    pub fn specs(&self) -> Result<Vec<(ServiceSpec, Vec<DestSpec>)>, String> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, s) in self.services.iter().enumerate() {
            let at = |m: String| format!("service #{}: {m}", i + 1);
            let key = match (&s.address, s.fwmark) {
                (Some(a), None) => {
                    let proto = match s.protocol.as_str() {
                        "tcp" => ProtoName::Tcp,
                        "udp" => ProtoName::Udp,
                        "sctp" => ProtoName::Sctp,
                        p => return Err(at(format!("unknown protocol '{p}' (tcp, udp or sctp)"))),
                    };
                    let (addr, port) = parse_endpoint(a, None).map_err(at)?;
                    KeySpec::Addr { proto, addr, port }
                }
                (None, Some(mark)) if mark > 0 => KeySpec::Fwmark { mark, ipv6: s.ipv6 },
                (None, Some(_)) => return Err(at("fwmark must be at least 1".into())),
                _ => return Err(at("give either address or fwmark".into())),
            };
            if s.scheduler != "none" {
                s.scheduler.parse::<SchedKind>().map_err(|e| at(e.to_string()))?;
            }
            let flags = if s.flags.is_empty() {
                0
            } else {
                SchedFlags::parse(&s.flags.join(","), &s.scheduler).map_err(at)?.bits()
            };
            if let KeySpec::Addr { port: 0, .. } = key {
                if s.persistent.is_none() {
                    return Err(at(
                        "port 0 needs persistence (as ipvsadm: \"Zero port specified for non-persistent service\")"
                            .into(),
                    ));
                }
            }
            if s.ops && !matches!(key, KeySpec::Addr { proto: ProtoName::Udp, .. } | KeySpec::Fwmark { .. }) {
                return Err(at("ops (one-packet scheduling) is only for UDP services".into()));
            }
            let spec = ServiceSpec {
                key,
                scheduler: s.scheduler.clone(),
                flags,
                persistence: s.persistent,
                netmask: s.netmask.clone(),
                one_packet: s.ops,
                pe: s.persistence_engine.clone(),
                allowed_sources: s.allowed_sources.clone(),
            };
            let mut spec = spec;
            let core = spec.core_config().map_err(|e| at(e.to_string()))?;
            // As the daemon shows them: sorted, one spelling (an unchanged file diffs as nothing);
            // a /32 or /128 persistence mask, or one without persistence, is no mask, as the
            // command line has it.
            spec.allowed_sources = core.allowed_sources.iter().map(|p| p.to_string()).collect();
            if core.netmask.is_host() || s.persistent.is_none() {
                spec.netmask = None;
            }
            let svc_port = match key {
                KeySpec::Addr { port, .. } => port,
                KeySpec::Fwmark { .. } => 0,
            };
            let mut dests: Vec<DestSpec> = Vec::new();
            for r in &s.real_servers {
                let (addr, mut port) = parse_endpoint(&r.address, Some(svc_port)).map_err(at)?;
                // ipvsadm forces the service port for direct routing and tunnels.
                if r.method != "masq" && svc_port != 0 {
                    port = svc_port;
                }
                let d = DestSpec {
                    addr,
                    port,
                    method: r.method.clone(),
                    weight: r.weight,
                    u_threshold: r.u_threshold,
                    l_threshold: r.l_threshold,
                    tunnel: r.tunnel.unwrap_or_default(),
                };
                if r.tunnel.is_some() && r.method != "tunnel" {
                    return Err(at(format!("real server {}: tunnel settings need method = \"tunnel\"", r.address)));
                }
                d.core_config().map_err(|e| at(e.to_string()))?;
                if d.weight < 0 {
                    return Err(at(xvs_core::Error::WeightRange(i64::from(d.weight)).to_string()));
                }
                if d.l_threshold > d.u_threshold {
                    return Err(at(
                        xvs_core::Error::ThresholdRange { upper: d.u_threshold, lower: d.l_threshold }.to_string()
                    ));
                }
                if dests.iter().any(|o| o.addr == d.addr && o.port == d.port) {
                    return Err(at(format!("real server {} is listed twice", r.address)));
                }
                dests.push(d);
            }
            if !seen.insert(spec.key) {
                return Err(at("the same service is listed twice".into()));
            }
            out.push((spec, dests));
        }
        Ok(out)
    }
}

/// The YAML parser appends " at line L column C"; the line is already in front.
fn strip_location(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_parses_with_defaults() {
        let c = Config::parse(
            r#"
[[service]]
address = "198.18.0.100:80"
scheduler = "rr"
  [[service.real_server]]
  address = "198.18.2.2"
  method = "masq"
  [[service.real_server]]
  address = "198.18.2.3:8080"
"#,
        )
        .unwrap();
        let specs = c.specs().unwrap();
        assert_eq!(specs.len(), 1);
        let (s, d) = &specs[0];
        assert_eq!(s.scheduler, "rr");
        assert_eq!((d[0].port, d[0].weight, d[0].method.as_str()), (80, 1, "masq"));
        assert_eq!(d[1].port, 80, "direct routing keeps the service port");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let e = Config::parse("[[service]]\naddress = \"198.18.0.1:80\"\nschedular = \"rr\"\n").unwrap_err();
        assert!(e.starts_with("line 3:") && e.contains("schedular"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |t: &str| Config::parse(t).unwrap().specs().unwrap_err();
        assert!(bad("[[service]]\naddress = \"198.18.0.1:80\"\nscheduler = \"foo\"\n")
            .contains("scheduler 'foo' not found"));
        assert!(bad("[[service]]\naddress = \"nowhere:80\"\n").contains("not an address"));
        assert!(bad("[[service]]\naddress = \"198.18.0.1:0\"\n").contains("Zero port"));
        assert!(bad("[[service]]\naddress = \"198.18.0.1:80\"\n[[service.real_server]]\naddress = \"198.18.2.2\"\nweight = -1\n").contains("weight -1"));
    }

    #[test]
    fn yaml_says_the_same_as_toml() {
        let yaml = "service:\n  - address: 198.18.0.100:80\n    scheduler: rr\n    real_server:\n      - { address: 198.18.2.2, method: masq }\n      - address: 198.18.2.3:8080\n";
        let toml = "[[service]]\naddress = \"198.18.0.100:80\"\nscheduler = \"rr\"\n[[service.real_server]]\naddress = \"198.18.2.2\"\nmethod = \"masq\"\n[[service.real_server]]\naddress = \"198.18.2.3:8080\"\n";
        assert_eq!(Config::parse_file("a.yaml", yaml).unwrap(), Config::parse_file("a.toml", toml).unwrap());
        assert_eq!(Config::parse_file("empty.yml", "").unwrap(), Config::default());
        let e = Config::parse_file("a.yml", "service:\n  - address: 198.18.0.1:80\n    schedular: rr\n").unwrap_err();
        assert!(e.starts_with("line 3:") && e.contains("schedular"), "{e}");
    }
}
