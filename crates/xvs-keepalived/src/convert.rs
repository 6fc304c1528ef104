//! keepalived.conf's LVS blocks into xvs's [`Config`]: the same services, real servers and
//! checks, with keepalived's defaults and inheritance (virtual_server → real_server → checker).
//!
//! Anything that would change behaviour and that xvs cannot honour is an error at its file and
//! line. Blocks xvs does not run (VRRP, global settings about e-mail or SNMP) are reported as
//! notices, so nothing is dropped silently.

use std::net::IpAddr;

use xvs_api::config::{CheckEntry, Config, RealServerEntry, ServiceEntry, TimeoutsEntry, UrlEntry};
use xvs_api::{CsumName, TunnelKindName, TunnelSpec};

use crate::syntax::{Node, ParseError, Pos};

/// Something xvs read and did not act on, or a default keepalived applies with a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// The result of reading a keepalived.conf.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// The services, real servers and checks.
    pub config: Config,
    /// What was read but not acted on.
    pub notices: Vec<Notice>,
}

pub(crate) type R<T> = Result<T, ParseError>;

/// What a virtual server (or a group's member) stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    /// An address and port.
    Addr(IpAddr, u16),
    /// A firewall mark, with its family when the group entry names one (`true`: inet6).
    Fwmark(u32, Option<bool>),
}

/// A `virtual_server_group`: its name, members and position.
type Group = (String, Vec<Target>, Pos);

/// keepalived's `track_file` blocks by name: the file, its weight and `reverse`.
type TrackFiles = std::collections::HashMap<String, (String, i32, bool)>;

/// Blocks of keepalived's VRRP side that xvs does not run: reported, not applied.
const VRRP_BLOCKS: &[&str] =
    &["vrrp_track_process", "static_ipaddress", "static_routes", "static_rules", "garp_group", "bfd_instance"];

/// Settings of `global_defs` that matter to the health checker or the LVS table.
const GLOBAL_UNSUPPORTED: &[&str] = &["lvs_flush_on_stop", "lvs_notify_fifo", "notify_fifo"];

/// keepalived's scheduler names.
const SCHEDULERS: &[&str] =
    &["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"];

#[derive(Clone, Debug, Default)]
struct Inherit {
    delay_loop: Option<f64>,
    connect_timeout: Option<f64>,
    retry: Option<u32>,
    delay_before_retry: Option<f64>,
    warmup: Option<f64>,
    alpha: Option<bool>,
    virtualhost: Option<String>,
}

impl Inherit {
    fn over(&self, parent: &Inherit) -> Inherit {
        Inherit {
            delay_loop: self.delay_loop.or(parent.delay_loop),
            connect_timeout: self.connect_timeout.or(parent.connect_timeout),
            retry: self.retry.or(parent.retry),
            delay_before_retry: self.delay_before_retry.or(parent.delay_before_retry),
            warmup: self.warmup.or(parent.warmup),
            alpha: self.alpha.or(parent.alpha),
            virtualhost: self.virtualhost.clone().or_else(|| parent.virtualhost.clone()),
        }
    }

    /// Reads an inheritable keyword; false when `n` is not one.
    fn read(&mut self, n: &Node, retry_min: u32) -> R<bool> {
        match n.keyword() {
            "delay_loop" => self.delay_loop = Some(timer(n)?),
            "connect_timeout" => self.connect_timeout = Some(timer(n)?),
            "retry" | "nb_get_retry" => {
                let v = number(n, u64::from(retry_min), u64::from(u32::MAX))? as u32;
                self.retry = Some(v);
            }
            "delay_before_retry" => self.delay_before_retry = Some(timer(n)?),
            "warmup" => self.warmup = Some(timer(n)?),
            "virtualhost" => self.virtualhost = Some(one(n)?.to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

pub(crate) fn one(n: &Node) -> R<&str> {
    match n.args() {
        [a] => Ok(a),
        [] => Err(n.error(format!("{} needs a value", n.keyword()))),
        _ => Err(n.error(format!("{} takes one value", n.keyword()))),
    }
}

pub(crate) fn number(n: &Node, min: u64, max: u64) -> R<u64> {
    let v = one(n)?;
    match v.parse::<u64>() {
        Ok(x) if (min..=max).contains(&x) => Ok(x),
        _ => Err(n.error(format!("{} '{v}' is not a number from {min} to {max}", n.keyword()))),
    }
}

pub(crate) fn timer(n: &Node) -> R<f64> {
    let v = one(n)?;
    match v.parse::<f64>() {
        Ok(x) if (0.0..=86_400.0).contains(&x) => Ok(x),
        _ => Err(n.error(format!("{} '{v}' is not a time in seconds", n.keyword()))),
    }
}

/// keepalived's `<BOOL>`: absent means true.
pub(crate) fn flag(n: &Node) -> R<bool> {
    match n.args() {
        [] => Ok(true),
        [v] => match v.as_str() {
            "true" | "on" | "yes" => Ok(true),
            "false" | "off" | "no" => Ok(false),
            _ => Err(n.error(format!("{} '{v}' is not one of true/on/yes/false/off/no", n.keyword()))),
        },
        _ => Err(n.error(format!("{} takes at most one value", n.keyword()))),
    }
}

pub(crate) fn no_args(n: &Node) -> R<()> {
    if n.args().is_empty() {
        Ok(())
    } else {
        Err(n.error(format!("{} takes no value", n.keyword())))
    }
}

pub(crate) fn block(n: &Node) -> R<&[Node]> {
    n.block.as_deref().ok_or_else(|| n.error(format!("{} needs a {{ }} block", n.keyword())))
}

pub(crate) fn no_block(n: &Node) -> R<()> {
    if n.block.is_some() {
        return Err(n.error(format!("'{}' does not take a block", n.keyword())));
    }
    Ok(())
}

pub(crate) fn ip(n: &Node, s: &str) -> R<IpAddr> {
    s.parse().map_err(|_| n.error(format!("'{s}' is not an IP address")))
}

fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn port(n: &Node, s: &str) -> R<u16> {
    s.parse().map_err(|_| n.error(format!("'{s}' is not a port")))
}

/// A script keyword: `"command args" [user [group]]`.
pub(crate) fn script(n: &Node) -> R<String> {
    match n.args() {
        [cmd] if !cmd.trim().is_empty() => Ok(cmd.clone()),
        [_, ..] if n.args().len() > 1 => Err(n.error(format!(
            "{}: a user for one script is not supported by xvs; scripts run as global_defs script_user",
            n.keyword()
        ))),
        _ => Err(n.error(format!("{} needs a command", n.keyword()))),
    }
}

/// `NAT`, `DR`, `TUN [type ipip]` into the file's method names.
fn method(n: &Node) -> R<(String, Option<TunnelSpec>)> {
    let args = n.args();
    let m = match args.first().map(String::as_str) {
        Some("NAT") => "masq",
        Some("DR") => "route",
        Some("TUN") => "tunnel",
        Some(other) => return Err(n.error(format!("{} '{other}' is not NAT, DR or TUN", n.keyword()))),
        None => return Err(n.error(format!("{} needs NAT, DR or TUN", n.keyword()))),
    };
    if args.len() == 1 {
        return Ok((m.to_string(), None));
    }
    if m != "tunnel" {
        return Err(n.error(format!("{} {} takes no options", n.keyword(), args[0])));
    }
    // keepalived: TUN [type ipip|gue port PORT|gre] [nocsum|csum|remcsum]
    let mut t = TunnelSpec::default();
    let mut rest = &args[1..];
    if rest.first().map(String::as_str) == Some("type") {
        t.kind = match rest.get(1).map(String::as_str) {
            Some("ipip") => TunnelKindName::Ipip,
            Some("gue") => TunnelKindName::Gue,
            Some("gre") => TunnelKindName::Gre,
            _ => return Err(n.error("TUN type is ipip, gue or gre")),
        };
        rest = &rest[2..];
        if t.kind == TunnelKindName::Gue {
            match rest {
                [p, v, ..] if p == "port" => {
                    t.port =
                        v.parse().ok().filter(|p| *p != 0).ok_or_else(|| n.error(format!("'{v}' is not a port")))?;
                    rest = &rest[2..];
                }
                _ => return Err(n.error("TUN type gue needs port PORT")),
            }
        }
    }
    match rest {
        [] => {}
        [c] if t.kind != TunnelKindName::Ipip => {
            t.csum = match c.as_str() {
                "nocsum" => CsumName::Nocsum,
                "csum" => CsumName::Csum,
                "remcsum" if t.kind == TunnelKindName::Gue => CsumName::Remcsum,
                _ => return Err(n.error(format!("'{c}' is not a checksum option of this tunnel type"))),
            };
        }
        _ => return Err(n.error(format!("unexpected '{}' after the tunnel type", rest.join(" ")))),
    }
    Ok((m.to_string(), Some(t)))
}

/// Reads the statements of a keepalived.conf (see [`crate::syntax`]).
pub fn convert(nodes: &[Node]) -> R<Loaded> {
    let mut notices = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    // keepalived leaves virtual servers its file does not define alone unless lvs_flush is set.
    let mut config = Config { keep_unlisted: true, ..Config::default() };
    // Groups first: a virtual_server may name a group defined after it.
    for n in nodes.iter().filter(|n| n.keyword() == "virtual_server_group") {
        let name = one(n)?.to_string();
        if groups.iter().any(|(g, _, _)| *g == name) {
            return Err(n.error(format!("virtual_server_group {name} is defined twice")));
        }
        let members = group_members(n, &mut notices)?;
        groups.push((name, members, n.pos.clone()));
    }
    let mut files = TrackFiles::new();
    for n in nodes.iter().filter(|n| matches!(n.keyword(), "track_file" | "vrrp_track_file")) {
        let (name, f) = track_file(n, &mut notices)?;
        if files.insert(name.clone(), f).is_some() {
            return Err(n.error(format!("track_file {name} is defined twice")));
        }
    }
    for n in nodes {
        let kw = n.keyword();
        match kw {
            "virtual_server_group" | "track_file" | "vrrp_track_file" => {}
            "virtual_server" => virtual_server(n, &groups, &files, &mut config, &mut notices)?,
            "global_defs" => global_defs(n, &mut config, &mut notices)?,
            "vrrp_instance" => config.vrrp_instances.push(crate::vrrp::instance(n, &mut notices)?),
            "vrrp_sync_group" => config.vrrp_sync_groups.push(crate::vrrp::sync_group(n, &mut notices)?),
            "vrrp_script" => config.vrrp_scripts.push(crate::vrrp::script(n)?),
            k if VRRP_BLOCKS.contains(&k) => notices.push(Notice {
                pos: n.pos.clone(),
                message: format!("{k} is not supported by xvs: this block is not applied"),
            }),
            "SSL" => return Err(n.error("SSL client certificates for SSL_GET are not supported by xvs")),
            k @ ("net_namespace"
            | "net_namespace_ipvs"
            | "instance"
            | "child_wait_time"
            | "linkbeat_use_polling"
            | "use_pid_dir"
            | "namespace_with_ipsets") => notices.push(Notice {
                pos: n.pos.clone(),
                message: format!("{k} is a keepalived process setting; it does not apply to xvsd"),
            }),
            other => return Err(n.error(format!("unknown keyword '{other}'"))),
        }
    }
    crate::vrrp::finish(nodes, &mut config)?;
    for (name, _, pos) in &groups {
        let used =
            nodes.iter().any(|n| n.keyword() == "virtual_server" && n.args() == ["group".to_string(), name.clone()]);
        if !used {
            notices.push(Notice { pos: pos.clone(), message: format!("virtual_server_group {name} is not used") });
        }
    }
    Ok(Loaded { config, notices })
}

fn global_defs(n: &Node, config: &mut Config, notices: &mut Vec<Notice>) -> R<()> {
    for g in block(n)? {
        match g.keyword() {
            "lvs_timeouts" => {
                // lvs_timeouts [tcp N] [tcpfin N] [udp N]
                let mut t = config.timeouts.clone().unwrap_or_default();
                let mut args = g.args().iter();
                while let Some(k) = args.next() {
                    let v = args
                        .next()
                        .and_then(|v| v.parse::<u32>().ok())
                        .ok_or_else(|| g.error(format!("lvs_timeouts {k} needs seconds")))?;
                    match k.as_str() {
                        "tcp" => t.tcp = v,
                        "tcpfin" => t.tcpfin = v,
                        "udp" => t.udp = v,
                        other => return Err(g.error(format!("lvs_timeouts: '{other}' is not tcp, tcpfin or udp"))),
                    }
                }
                config.timeouts = Some(TimeoutsEntry { tcp: t.tcp, tcpfin: t.tcpfin, udp: t.udp });
            }
            // At start and reload, flush services the file does not define (keepalived's
            // lvs_flush); without it they are left alone.
            "lvs_flush" => config.keep_unlisted = false,
            "script_user" => match g.args() {
                [u] => config.script_user = Some(u.clone()),
                [u, grp] => config.script_user = Some(format!("{u}:{grp}")),
                _ => return Err(g.error("script_user takes USER [GROUP]")),
            },
            "enable_script_security" => config.script_security = true,
            k @ ("vrrp_version"
            | "vrrp_garp_master_delay"
            | "vrrp_garp_master_repeat"
            | "vrrp_garp_master_refresh"
            | "vrrp_skip_check_adv_addr") => crate::vrrp::global(g, k, notices)?,
            "lvs_sync_daemon" => config.sync_daemon = Some(crate::vrrp::sync_daemon(g)?),
            k if GLOBAL_UNSUPPORTED.contains(&k) || k.starts_with("lvs_sync_daemon") => {
                return Err(g.error(format!("{k} is not supported by xvs yet")));
            }
            k => notices.push(Notice { pos: g.pos.clone(), message: format!("global_defs {k}: not used by xvs") }),
        }
    }
    Ok(())
}

/// Members of a `virtual_server_group`: `IP PORT`, `A.B.C.D-E PORT`, `CIDR PORT`.
fn group_members(n: &Node, notices: &mut Vec<Notice>) -> R<Vec<Target>> {
    const MAX_MEMBERS: usize = 4096;
    let mut out = Vec::new();
    for m in block(n)? {
        no_block(m)?;
        let first = m.keyword();
        if first == "fwmark" {
            let (mark, family) = match m.args() {
                [v] => (v, None),
                [v, f] => (v, Some(f.as_str())),
                _ => return Err(m.error("a group's fwmark entry is 'fwmark N [inet|inet6]'")),
            };
            let mark: u32 = mark
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| m.error(format!("fwmark '{mark}' is not a number from 1 to {}", u32::MAX)))?;
            let family = match family {
                None => None,
                Some("inet") => Some(false),
                Some("inet6") => Some(true),
                Some(f) => return Err(m.error(format!("fwmark {mark}: family '{f}' is not inet or inet6"))),
            };
            out.push(Target::Fwmark(mark, family));
            continue;
        }
        let port = match m.args() {
            [p] => port(m, p)?,
            [] => 0,
            _ => return Err(m.error("a group entry is 'IP PORT', 'IP-RANGE PORT' or 'CIDR PORT'")),
        };
        let addrs: Vec<IpAddr> = if let Some((base, last)) = first.split_once('-') {
            let b = ip(m, base)?;
            match b {
                IpAddr::V4(v4) => {
                    let o = v4.octets();
                    let end: u8 = last.parse().map_err(|_| m.error(format!("range end '{last}' is not 0-255")))?;
                    if end <= o[3] {
                        return Err(m.error(format!("range {first}: the end must be above the start")));
                    }
                    (o[3]..=end).map(|x| IpAddr::from([o[0], o[1], o[2], x])).collect()
                }
                IpAddr::V6(v6) => {
                    let mut seg = v6.segments();
                    let end = u16::from_str_radix(last, 16)
                        .map_err(|_| m.error(format!("range end '{last}' is not hexadecimal")))?;
                    if end <= seg[7] {
                        return Err(m.error(format!("range {first}: the end must be above the start")));
                    }
                    let start = seg[7];
                    (start..=end)
                        .map(|x| {
                            seg[7] = x;
                            IpAddr::from(seg)
                        })
                        .collect()
                }
            }
        } else if let Some((base, len)) = first.split_once('/') {
            let b = ip(m, base)?;
            let bits = if b.is_ipv4() { 32 } else { 128 };
            let len: u32 = len
                .parse()
                .ok()
                .filter(|l| *l <= bits)
                .ok_or_else(|| m.error(format!("'{first}' has a bad prefix length")))?;
            let host_bits = bits - len;
            if host_bits > 12 {
                return Err(m.error(format!("{first} holds more than {MAX_MEMBERS} addresses")));
            }
            let count = 1u128 << host_bits;
            let base_n: u128 = match b {
                IpAddr::V4(a) => u128::from(u32::from(a)),
                IpAddr::V6(a) => u128::from(a),
            };
            if base_n & (count - 1) != 0 {
                return Err(m.error(format!("{first}: the host bits must be zero")));
            }
            (0..count)
                .map(|i| match b {
                    IpAddr::V4(_) => IpAddr::from(((base_n + i) as u32).to_be_bytes()),
                    IpAddr::V6(_) => IpAddr::from((base_n + i).to_be_bytes()),
                })
                .collect()
        } else {
            vec![ip(m, first)?]
        };
        out.extend(addrs.into_iter().map(|a| Target::Addr(a, port)));
        if out.len() > MAX_MEMBERS {
            return Err(m.error(format!("virtual_server_group holds more than {MAX_MEMBERS} addresses")));
        }
    }
    if out.is_empty() {
        notices.push(Notice { pos: n.pos.clone(), message: "empty virtual_server_group (keepalived drops it)".into() });
    }
    Ok(out)
}

struct VsSettings {
    protocol: Option<String>,
    scheduler: Option<String>,
    method: Option<(String, Option<TunnelSpec>)>,
    flags: Vec<String>,
    persistent: Option<u32>,
    netmask: Option<String>,
    ops: bool,
    weight: Option<i32>,
    entry: ServiceEntry,
}

/// `track_file NAME { file PATH; weight N [reverse]; init_file … }`.
fn track_file(n: &Node, notices: &mut Vec<Notice>) -> R<(String, (String, i32, bool))> {
    let name = one(n)?.to_string();
    let (mut file, mut weight, mut reverse) = (None, 1, false);
    for s in block(n)? {
        no_block(s)?;
        match s.keyword() {
            "file" => file = Some(one(s)?.to_string()),
            "weight" => {
                let (w, rev) = file_weight(s, false)?;
                weight = w;
                reverse = rev;
            }
            "init_file" => notices.push(Notice {
                pos: s.pos.clone(),
                message: "init_file: xvs does not create or write the tracked file (a missing file reads as 0)".into(),
            }),
            k => return Err(s.error(format!("unknown keyword '{k}' in track_file"))),
        }
    }
    let file = file.ok_or_else(|| n.error(format!("track_file {name} needs file")))?;
    if !file.starts_with('/') {
        return Err(n.error(format!("track_file {name}: file '{file}' must be an absolute path")));
    }
    Ok((name, (file, weight, reverse)))
}

/// `weight N [reverse]` (with `noreverse` too in FILE_CHECK).
fn file_weight(s: &Node, noreverse: bool) -> R<(i32, bool)> {
    let w = match s.args().first().map(|a| a.parse::<i32>()) {
        Some(Ok(w)) => w,
        _ => return Err(s.error("weight takes a number, then reverse if it counts the other way")),
    };
    let reverse = match s.args().get(1).map(String::as_str) {
        None => false,
        Some("reverse") => true,
        Some("noreverse") if noreverse => false,
        Some(other) => return Err(s.error(format!("'{other}' after the weight is not reverse"))),
    };
    Ok((w, reverse))
}

fn virtual_server(
    n: &Node,
    groups: &[Group],
    files: &TrackFiles,
    config: &mut Config,
    notices: &mut Vec<Notice>,
) -> R<()> {
    let targets: Vec<Target> = match n.args() {
        [g, name] if g == "group" => match groups.iter().find(|(x, _, _)| x == name) {
            Some((_, members, _)) => members.clone(),
            None => return Err(n.error(format!("virtual_server_group {name} is not defined"))),
        },
        [f, m] if f == "fwmark" => match m.parse::<u32>() {
            Ok(mark) if mark > 0 => vec![Target::Fwmark(mark, None)],
            _ => return Err(n.error(format!("fwmark '{m}' is not a number from 1 to {}", u32::MAX))),
        },
        [a, p] => vec![Target::Addr(ip(n, a)?, port(n, p)?)],
        [a] => vec![Target::Addr(ip(n, a)?, 0)],
        _ => return Err(n.error("virtual_server takes 'IP PORT', 'fwmark N' or 'group NAME'")),
    };
    let body = block(n)?;
    let mut inherit = Inherit::default();
    let mut real_servers: Vec<&Node> = Vec::new();
    // A firewall-mark service's family: ip_family, else its real servers' (keepalived).
    let mut family: Option<bool> = None;
    let entry = ServiceEntry {
        protocol: String::new(),
        address: None,
        fwmark: None,
        ipv6: false,
        scheduler: String::new(),
        flags: Vec::new(),
        persistent: None,
        netmask: None,
        ops: false,
        persistence_engine: None,
        allowed_sources: Vec::new(),
        vrrp_instance: None,
        real_servers: Vec::new(),
        quorum: None,
        hysteresis: 0,
        sorry_server: None,
        sorry_server_method: None,
        sorry_server_inhibit: false,
        alpha: false,
        omega: false,
        quorum_up: None,
        quorum_down: None,
        inhibit_on_failure: false,
    };
    let mut vs = VsSettings {
        protocol: None,
        scheduler: None,
        method: None,
        flags: Vec::new(),
        persistent: None,
        netmask: None,
        ops: false,
        weight: None,
        entry,
    };
    for s in body {
        if s.keyword() != "real_server" {
            no_block(s)?;
        }
        if inherit.read(s, 1)? {
            continue;
        }
        match s.keyword() {
            "lb_algo" | "lvs_sched" => {
                let v = one(s)?;
                if !SCHEDULERS.contains(&v) {
                    return Err(s.error(format!("scheduler '{v}' is not one of {}", SCHEDULERS.join(" "))));
                }
                vs.scheduler = Some(v.to_string());
            }
            "lb_kind" | "lvs_method" => vs.method = Some(method(s)?),
            "persistence_timeout" => {
                vs.persistent = Some(if s.args().is_empty() { 360 } else { number(s, 1, 2_678_400)? as u32 })
            }
            "persistence_granularity" => {
                vs.netmask = Some(one(s)?.to_string());
                vs.persistent.get_or_insert(360);
            }
            "persistence_engine" => match one(s)? {
                "sip" => vs.entry.persistence_engine = Some("sip".into()),
                pe => return Err(s.error(format!("persistence engine '{pe}' is not one of sip"))),
            },
            "protocol" => {
                let p = one(s)?.to_ascii_lowercase();
                match p.as_str() {
                    "tcp" | "udp" | "sctp" => vs.protocol = Some(p),
                    _ => return Err(s.error(format!("protocol '{p}' is not TCP, UDP or SCTP"))),
                }
            }
            "ip_family" => match one(s)? {
                "inet" => family = Some(false),
                "inet6" => family = Some(true),
                f => return Err(s.error(format!("ip_family '{f}' is not inet or inet6"))),
            },
            "ha_suspend" => {
                no_args(s)?;
                notices.push(Notice {
                    pos: s.pos.clone(),
                    message: "ha_suspend has no effect: xvs runs checks on backups too, so a takeover starts with known health".into(),
                });
            }
            "alpha" => {
                no_args(s)?;
                inherit.alpha = Some(true);
            }
            "omega" => {
                no_args(s)?;
                vs.entry.omega = true;
            }
            "quorum" => vs.entry.quorum = Some(number(s, 1, u64::from(u32::MAX))? as u32),
            "hysteresis" => vs.entry.hysteresis = number(s, 0, u64::from(u32::MAX))? as u32,
            "quorum_up" => vs.entry.quorum_up = Some(script(s)?),
            "quorum_down" => vs.entry.quorum_down = Some(script(s)?),
            "sorry_server" => {
                let (a, p) = match s.args() {
                    [a, p] => (ip(s, a)?, port(s, p)?),
                    [a] => (ip(s, a)?, 0),
                    _ => return Err(s.error("sorry_server takes 'IP [PORT]'")),
                };
                vs.entry.sorry_server = Some(endpoint(a, p));
            }
            "sorry_server_inhibit" => vs.entry.sorry_server_inhibit = flag(s)?,
            "sorry_server_lvs_method" => {
                let (m, t) = method(s)?;
                if t.is_some() {
                    return Err(s.error("tunnel options for the sorry server are not supported"));
                }
                vs.entry.sorry_server_method = Some(m)
            }
            "weight" => vs.weight = Some(number(s, 0, i32::MAX as u64)? as i32),
            "inhibit_on_failure" => vs.entry.inhibit_on_failure = flag(s)?,
            "ops" => {
                no_args(s)?;
                vs.ops = true;
            }
            f @ ("flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port" | "mh-fallback") => {
                no_args(s)?;
                let name = match f {
                    "flag-1" => match vs.scheduler.as_deref() {
                        Some("mh") => "mh-fallback",
                        _ => "sh-fallback",
                    },
                    "flag-2" => match vs.scheduler.as_deref() {
                        Some("mh") => "mh-port",
                        _ => "sh-port",
                    },
                    "flag-3" => return Err(s.error("flag-3 has no meaning for the schedulers xvs has")),
                    other => other,
                };
                vs.flags.push(name.to_string());
            }
            "hashed" => no_args(s)?,
            "smtp_alert" | "snmp_name" => notices.push(Notice {
                pos: s.pos.clone(),
                message: format!("{}: xvs sends no e-mail or SNMP traps", s.keyword()),
            }),
            "real_server" => real_servers.push(s),
            other => return Err(s.error(format!("unknown keyword '{other}' in virtual_server"))),
        }
    }
    if real_servers.is_empty() {
        notices.push(Notice {
            pos: n.pos.clone(),
            message: "virtual_server without real servers: ignored, as keepalived ignores it".into(),
        });
        return Ok(());
    }
    let only_marks = targets.iter().all(|t| matches!(t, Target::Fwmark(..)));
    let protocol = match &vs.protocol {
        Some(p) => p.clone(),
        // A mark covers whatever the firewall rules mark: no protocol to default.
        None if only_marks => "tcp".into(),
        None => {
            notices.push(Notice {
                pos: n.pos.clone(),
                message: "no protocol given: UDP, as keepalived defaults (write 'protocol TCP' for a TCP service)"
                    .into(),
            });
            "udp".into()
        }
    };
    let scheduler = match &vs.scheduler {
        Some(s) => s.clone(),
        None => {
            notices
                .push(Notice { pos: n.pos.clone(), message: "no lb_algo given: wlc, as keepalived defaults".into() });
            "wlc".into()
        }
    };
    let vs_method = match &vs.method {
        Some(m) => m.clone(),
        None => {
            notices
                .push(Notice { pos: n.pos.clone(), message: "no lb_kind given: NAT, as keepalived defaults".into() });
            ("masq".into(), None)
        }
    };
    // misc_timeout defaults to the virtual server's delay_loop (keepalived's misc_check_thread).
    let vs_delay_loop = inherit.delay_loop;
    let mut rss = Vec::new();
    for r in real_servers {
        rss.push(real_server(r, &inherit, &vs_method, vs.weight.unwrap_or(1), vs_delay_loop, files, notices)?);
    }
    let mut seen = std::collections::HashSet::new();
    // keepalived: ip_family, else the real servers' family when they agree, else IPv4.
    let rs_family = {
        let mut f = rss.iter().map(|(a, _, _)| a.is_ipv6());
        let first = f.next();
        first.filter(|v6| f.all(|x| x == *v6))
    };
    for target in targets {
        let mut entry = vs.entry.clone();
        entry.protocol = protocol.clone();
        entry.scheduler = scheduler.clone();
        entry.flags = vs.flags.clone();
        entry.netmask = vs.netmask.clone();
        entry.persistent = vs.persistent;
        let vport = match target {
            Target::Addr(addr, vport) => {
                entry.ops = vs.ops && protocol == "udp";
                if vport == 0 && entry.persistent.is_none() {
                    notices.push(Notice {
                        pos: n.pos.clone(),
                        message: "virtual_server without a port: persistent 360 s, as keepalived forces".into(),
                    });
                    entry.persistent = Some(360);
                }
                entry.address = Some(endpoint(addr, vport));
                vport
            }
            Target::Fwmark(mark, group_family) => {
                entry.ops = vs.ops;
                entry.fwmark = Some(mark);
                entry.ipv6 = group_family.or(family).or(rs_family).unwrap_or(false);
                0
            }
        };
        entry.real_servers = Vec::new();
        for (rs_addr, rs_port, rs) in &rss {
            if entry.fwmark.is_some() && rs_addr.is_ipv6() != entry.ipv6 && rs.method != "tunnel" {
                return Err(n.error(format!(
                    "real server {rs_addr} is not of the firewall-mark service's family ({})",
                    if entry.ipv6 { "inet6" } else { "inet" }
                )));
            }
            // A real server without a port takes the service's; DR and TUN always do.
            let p = if *rs_port == 0 || rs.method != "masq" { vport } else { *rs_port };
            let mut rs = rs.clone();
            rs.address = endpoint(*rs_addr, p);
            if !seen.insert((target, rs.address.clone())) {
                notices.push(Notice {
                    pos: n.pos.clone(),
                    message: format!("real server {} listed twice: once is kept", rs.address),
                });
                continue;
            }
            entry.real_servers.push(rs);
        }
        let twice = config.services.iter().any(|s| match entry.fwmark {
            Some(m) => s.fwmark == Some(m) && s.ipv6 == entry.ipv6,
            None => s.fwmark.is_none() && s.address == entry.address && s.protocol == entry.protocol,
        });
        if twice {
            return Err(n.error(match entry.fwmark {
                Some(m) => format!("fwmark {m}{} is defined twice", if entry.ipv6 { " (inet6)" } else { "" }),
                None => {
                    format!("{} {} is defined twice", protocol.to_uppercase(), entry.address.as_deref().unwrap_or(""))
                }
            }));
        }
        config.services.push(entry);
    }
    Ok(())
}

fn real_server(
    n: &Node,
    vs: &Inherit,
    vs_method: &(String, Option<TunnelSpec>),
    vs_weight: i32,
    vs_delay_loop: Option<f64>,
    files: &TrackFiles,
    notices: &mut Vec<Notice>,
) -> R<(IpAddr, u16, RealServerEntry)> {
    let (addr, p) = match n.args() {
        [a, p] => (ip(n, a)?, port(n, p)?),
        [a] => (ip(n, a)?, 0),
        _ => return Err(n.error("real_server takes 'IP [PORT]'")),
    };
    let mut own = Inherit::default();
    let mut rs = RealServerEntry {
        address: String::new(),
        method: vs_method.0.clone(),
        tunnel: vs_method.1,
        weight: vs_weight,
        u_threshold: 0,
        l_threshold: 0,
        checks: Vec::new(),
        inhibit_on_failure: None,
        alpha: None,
        notify_up: None,
        notify_down: None,
    };
    let mut checkers: Vec<&Node> = Vec::new();
    for s in block(n)? {
        if s.block.is_none() && own.read(s, 1)? {
            continue;
        }
        match s.keyword() {
            "weight" => rs.weight = number(s, 0, i32::MAX as u64)? as i32,
            "lvs_method" => (rs.method, rs.tunnel) = method(s)?,
            "lb_kind" => {
                return Err(s.error("lb_kind is not accepted inside real_server (keepalived takes lvs_method there)"))
            }
            "uthreshold" => rs.u_threshold = number(s, 0, u64::from(u32::MAX))? as u32,
            "lthreshold" => rs.l_threshold = number(s, 0, u64::from(u32::MAX))? as u32,
            "inhibit_on_failure" => rs.inhibit_on_failure = Some(flag(s)?),
            "notify_up" => rs.notify_up = Some(script(s)?),
            "notify_down" => rs.notify_down = Some(script(s)?),
            "alpha" => own.alpha = Some(flag(s)?),
            "smtp_alert" | "snmp_name" => notices.push(Notice {
                pos: s.pos.clone(),
                message: format!("{}: xvs sends no e-mail or SNMP traps", s.keyword()),
            }),
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "UDP_CHECK" | "DNS_CHECK" | "MISC_CHECK" | "SMTP_CHECK"
            | "PING_CHECK" => checkers.push(s),
            "FILE_CHECK" => rs.checks.push(file_check(s, files)?),
            "BFD_CHECK" => {
                return Err(s.error(
                "BFD_CHECK is not supported by xvs (TCP_CHECK, HTTP_GET, SSL_GET, UDP_CHECK, DNS_CHECK, SMTP_CHECK, PING_CHECK, FILE_CHECK and MISC_CHECK are)"
            ))
            }
            other => return Err(s.error(format!("unknown keyword '{other}' in real_server"))),
        }
    }
    let inh = own.over(vs);
    rs.alpha = inh.alpha;
    for c in checkers {
        rs.checks.extend(checker(c, &inh, vs_delay_loop, notices)?);
    }
    Ok((addr, p, rs))
}

/// FILE_CHECK { track_file NAME; weight N [reverse|noreverse] }: the tracked file's number
/// (keepalived takes no other keyword there: no delay_loop, no retries).
fn file_check(n: &Node, files: &TrackFiles) -> R<CheckEntry> {
    let mut name = None;
    let mut weight = None;
    for s in block(n)? {
        no_block(s)?;
        match s.keyword() {
            "track_file" => name = Some(one(s)?.to_string()),
            "weight" => weight = Some(file_weight(s, true)?),
            k => {
                return Err(
                    s.error(format!("unknown keyword '{k}' in FILE_CHECK (track_file and weight are its keywords)"))
                )
            }
        }
    }
    let name = name.ok_or_else(|| n.error("FILE_CHECK needs track_file NAME"))?;
    let (file, w, rev) = files.get(&name).ok_or_else(|| n.error(format!("FILE_CHECK: no track_file {name}")))?;
    let (weight, reverse) = weight.unwrap_or((*w, *rev));
    Ok(CheckEntry {
        kind: "file".into(),
        file: Some(file.clone()),
        weight: Some(weight),
        reverse,
        ..CheckEntry::default()
    })
}

/// One checker block: one check, or for SMTP_CHECK with (deprecated) `host` blocks one per host.
fn checker(n: &Node, rs: &Inherit, vs_delay_loop: Option<f64>, notices: &mut Vec<Notice>) -> R<Vec<CheckEntry>> {
    let kind = n.keyword();
    let mut own = Inherit::default();
    let mut e = CheckEntry { kind: kind.to_ascii_lowercase(), ..CheckEntry::default() };
    let misc = kind == "MISC_CHECK";
    let mut hosts: Vec<&Node> = Vec::new();
    for s in block(n)? {
        if kind == "SMTP_CHECK" && s.keyword() == "host" {
            hosts.push(s);
            continue;
        }
        if s.keyword() != "url" {
            no_block(s)?;
        }
        if s.keyword() != "virtualhost" && own.read(s, 0)? {
            if s.keyword() == "nb_get_retry" {
                notices.push(Notice { pos: s.pos.clone(), message: "nb_get_retry is the old name of retry".into() });
            }
            continue;
        }
        let net = !misc;
        match (s.keyword(), kind) {
            ("bindto" | "bind_port", "PING_CHECK") => notices.push(Notice {
                pos: s.pos.clone(),
                message: format!(
                    "{}: PING_CHECK sends from the routed address (keepalived ignores it too)",
                    s.keyword()
                ),
            }),
            ("helo_name", "SMTP_CHECK") => e.helo_name = Some(one(s)?.to_string()),
            ("connect_ip", _) if net => e.connect_ip = Some(ip(s, one(s)?)?.to_string()),
            ("connect_port", _) if net => e.connect_port = Some(port(s, one(s)?)?),
            ("bindto", _) if net => e.bindto = Some(ip(s, one(s)?)?.to_string()),
            ("bind_port", _) if net => e.bind_port = Some(port(s, one(s)?)?),
            ("bind_if" | "fwmark", _) => return Err(s.error(format!("{} is not supported by xvs checks", s.keyword()))),
            ("alpha", _) => {
                if flag(s)? != rs.alpha.unwrap_or(false) {
                    return Err(s.error(
                        "alpha per checker is not supported by xvs: set it on the real_server or virtual_server",
                    ));
                }
            }
            ("log_all_failures", _) => notices
                .push(Notice { pos: s.pos.clone(), message: "log_all_failures: xvsd logs every state change".into() }),
            ("url", "HTTP_GET" | "SSL_GET") => e.url.push(url(s)?),
            ("virtualhost", "HTTP_GET" | "SSL_GET") => e.virtualhost = Some(one(s)?.to_string()),
            ("enable_sni", "SSL_GET") => e.enable_sni = flag(s)?,
            ("sni_name", "SSL_GET") => {
                return Err(s.error("sni_name is not supported by xvs; enable_sni sends the virtualhost"))
            }
            ("http_protocol", "HTTP_GET" | "SSL_GET") => {
                let v = one(s)?;
                if !["1.0", "1.1", "1.0C"].contains(&v) {
                    return Err(s.error(format!("http_protocol '{v}' is not 1.0, 1.1 or 1.0C")));
                }
                if v == "1.1" {
                    return Err(s.error("http_protocol 1.1 is not supported by xvs checks (1.0 and 1.0C are)"));
                }
            }
            ("fast_recovery", "HTTP_GET" | "SSL_GET") => notices.push(Notice {
                pos: s.pos.clone(),
                message: "fast_recovery: xvs checks every url in each attempt, so recovery is always immediate".into(),
            }),
            ("tls_compliant", "SSL_GET") => {}
            ("payload", "UDP_CHECK") => e.payload = Some(s.args().join(" ")),
            ("require_reply", "UDP_CHECK") => {
                e.require_reply = Some(true);
                if !s.args().is_empty() {
                    if s.args().iter().any(|a| a.contains(['x', 'X'])) {
                        return Err(s.error("wildcard nibbles (x) in require_reply are not supported by xvs"));
                    }
                    e.reply = Some(s.args().join(" "));
                }
            }
            ("type", "DNS_CHECK") => e.dns_type = Some(one(s)?.to_string()),
            ("name", "DNS_CHECK") => e.dns_name = Some(one(s)?.to_string()),
            ("misc_path", "MISC_CHECK") => e.misc_path = Some(script(s)?),
            ("misc_timeout", "MISC_CHECK") => e.misc_timeout = Some(number(s, 0, 86_400)? as f64),
            ("misc_dynamic", "MISC_CHECK") => e.misc_dynamic = flag(s)?,
            ("user", "MISC_CHECK") => match s.args() {
                [u] => e.user = Some(u.clone()),
                _ => return Err(s.error("user takes one user name (a group is not supported by xvs)")),
            },
            (k, _) => return Err(s.error(format!("unknown keyword '{k}' in {kind}"))),
        }
    }
    let inh = own.over(rs);
    e.delay_loop = inh.delay_loop;
    e.connect_timeout = inh.connect_timeout;
    e.retry = inh.retry;
    e.delay_before_retry = inh.delay_before_retry;
    e.warmup = inh.warmup;
    if matches!(kind, "HTTP_GET" | "SSL_GET") {
        e.virtualhost = e.virtualhost.or(inh.virtualhost);
        if e.url.is_empty() {
            return Err(n.error(format!("{kind} without a url (keepalived drops such a checker)")));
        }
    }
    if misc {
        if e.misc_path.is_none() {
            return Err(n.error("MISC_CHECK needs misc_path"));
        }
        if e.misc_timeout.is_none_or(|t| t == 0.0) {
            e.misc_timeout = Some(vs_delay_loop.unwrap_or(60.0));
        }
    }
    if hosts.is_empty() {
        return Ok(vec![e]);
    }
    // keepalived (2.2.0-2.2.7): each host is a checker of its own with the host's connection
    // settings (the real server's address and port otherwise); the first host takes the main
    // block's place when that names no connection setting of its own.
    notices.push(Notice {
        pos: hosts[0].pos.clone(),
        message: "SMTP_CHECK host blocks (deprecated in keepalived): each host is a check of its own".into(),
    });
    let main_has_own =
        e.connect_ip.is_some() || e.connect_port.is_some() || e.bindto.is_some() || e.bind_port.is_some();
    let mut out = if main_has_own { vec![e.clone()] } else { Vec::new() };
    for h in hosts {
        let mut c = CheckEntry { connect_ip: None, connect_port: None, bindto: None, bind_port: None, ..e.clone() };
        for s in block(h)? {
            no_block(s)?;
            match s.keyword() {
                "connect_ip" => c.connect_ip = Some(ip(s, one(s)?)?.to_string()),
                "connect_port" => c.connect_port = Some(port(s, one(s)?)?),
                "bindto" => c.bindto = Some(ip(s, one(s)?)?.to_string()),
                "bind_port" => c.bind_port = Some(port(s, one(s)?)?),
                "connect_timeout" => c.connect_timeout = Some(number(s, 1, 86_400)? as f64),
                k @ ("bind_if" | "fwmark") => return Err(s.error(format!("{k} is not supported by xvs checks"))),
                k => return Err(s.error(format!("unknown keyword '{k}' in an SMTP_CHECK host block"))),
            }
        }
        out.push(c);
    }
    Ok(out)
}

fn url(n: &Node) -> R<UrlEntry> {
    let mut u = UrlEntry::default();
    let mut path = None;
    for s in block(n)? {
        no_block(s)?;
        match s.keyword() {
            "path" => path = Some(one(s)?.to_string()),
            "digest" => u.digest = Some(one(s)?.to_string()),
            "status_code" => {
                if s.args().is_empty() {
                    return Err(s.error("status_code needs codes"));
                }
                u.status_code = Some(s.args().join(","));
            }
            "virtualhost" => return Err(s.error("virtualhost per url is not supported by xvs: set it on the checker")),
            k if k.starts_with("regex") => return Err(s.error(format!("{k} is not supported by xvs checks"))),
            other => return Err(s.error(format!("unknown keyword '{other}' in url"))),
        }
    }
    u.path = path.ok_or_else(|| n.error("url without a path"))?;
    Ok(u)
}
