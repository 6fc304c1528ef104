//! ipvsadm's listing formats, byte for byte (reference §8.4, and the outputs recorded from the
//! real ipvsadm in `testdata/ipvsadm/`), printed from a [`Snapshot`].
//!
//! The padding is ipvsadm's, trailing spaces included, so scripts that cut columns out of
//! `ipvsadm -Ln` keep working on `xvsadm -Ln`.

use std::cmp::Ordering;
use std::fmt::Write;
use std::net::IpAddr;

use xvs_api::{ConnState, DestState, KeySpec, ServiceState, Snapshot};
use xvs_core::{Counters, SchedFlags};

/// Which columns a listing shows (`--stats`, `--rate`, ...).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Columns {
    /// Forward, Weight, ActiveConn, InActConn.
    #[default]
    Default,
    /// `--stats`.
    Stats,
    /// `--rate`.
    Rate,
    /// `--thresholds`.
    Thresholds,
    /// `--persistent-conn`.
    PersistentConn,
    /// `--tun-info`.
    TunInfo,
}

/// How to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Columns.
    pub columns: Columns,
    /// `--exact`: full numbers instead of K/M/G.
    pub exact: bool,
    /// `--nosort`: the order services were added in.
    pub nosort: bool,
    /// `-n`: numeric ports (otherwise names from /etc/services).
    pub numeric: bool,
}

/// The IPVS version ipvsadm reports; scripts look for it.
pub const IPVS_VERSION: &str = "1.2.1";

fn proto_name(key: &KeySpec) -> &'static str {
    match key {
        KeySpec::Addr { proto, .. } => match proto {
            xvs_api::ProtoName::Tcp => "TCP",
            xvs_api::ProtoName::Udp => "UDP",
            xvs_api::ProtoName::Sctp => "SCTP",
        },
        KeySpec::Fwmark { .. } => "FWM",
    }
}

/// `addr:port` as ipvsadm prints it (`[v6]:port`).
pub fn endpoint(addr: &IpAddr, port: &str) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// The service column: `TCP  198.18.0.100:80`, `FWM  7`, `FWM  7 IPv6`.
pub fn service_name(key: &KeySpec, numeric: bool, services: &dyn Fn(u16, &str) -> Option<String>) -> String {
    match key {
        KeySpec::Addr { addr, port, .. } => {
            let proto = proto_name(key);
            let p = port_text(*port, proto, numeric, services);
            let mut s = format!("{:<4} {}", proto, endpoint(addr, &p));
            if addr.is_ipv4() {
                s.truncate(33);
            }
            s
        }
        KeySpec::Fwmark { mark, ipv6: false } => format!("FWM  {mark}"),
        KeySpec::Fwmark { mark, ipv6: true } => format!("FWM  {mark} IPv6"),
    }
}

fn port_text(port: u16, proto: &str, numeric: bool, services: &dyn Fn(u16, &str) -> Option<String>) -> String {
    if numeric {
        return port.to_string();
    }
    services(port, &proto.to_ascii_lowercase()).unwrap_or_else(|| port.to_string())
}

fn dest_name(d: &DestState, proto: &str, numeric: bool, services: &dyn Fn(u16, &str) -> Option<String>) -> String {
    let p = port_text(d.spec.port, proto, numeric, services);
    let mut s = endpoint(&d.spec.addr, &p);
    if d.spec.addr.is_ipv4() {
        s.truncate(28);
    }
    s
}

/// ipvsadm's sort: fwmark, family, protocol, address, port. Addresses and marks are compared
/// by subtracting two 32-bit values and reading the result as signed, so addresses more than
/// 2^31 apart sort "backwards" (10.0.0.1 after 192.168.0.1) — reproduced on purpose.
fn cmp_services(a: &ServiceState, b: &ServiceState) -> Ordering {
    let parts = |s: &ServiceState| -> (u32, u8, u8, IpAddr, u16) {
        match s.spec.key {
            KeySpec::Addr { proto, addr, port } => {
                (0, u8::from(addr.is_ipv6()), xvs_core::Protocol::from(proto).number(), addr, port)
            }
            KeySpec::Fwmark { mark, ipv6 } => (mark, u8::from(ipv6), 0, IpAddr::from([0, 0, 0, 0]), 0),
        }
    };
    let (fa, afa, pa, aa, pta) = parts(a);
    let (fb, afb, pb, ab, ptb) = parts(b);
    signed(fa, fb).then(afa.cmp(&afb)).then(pa.cmp(&pb)).then(cmp_addr(&aa, &ab)).then(pta.cmp(&ptb))
}

fn signed(a: u32, b: u32) -> Ordering {
    (a.wrapping_sub(b) as i32).cmp(&0)
}

fn cmp_addr(a: &IpAddr, b: &IpAddr) -> Ordering {
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => signed(u32::from(*x), u32::from(*y)),
        (IpAddr::V6(x), IpAddr::V6(y)) => x.octets().cmp(&y.octets()),
        _ => Ordering::Equal,
    }
}

fn cmp_dests(a: &DestState, b: &DestState) -> Ordering {
    cmp_addr(&a.spec.addr, &b.spec.addr).then(a.spec.port.cmp(&b.spec.port))
}

/// Services in listing order (sorted unless `nosort`), each with its dests in order.
pub fn ordered(snap: &Snapshot, nosort: bool) -> Vec<ServiceState> {
    let mut v = snap.services.clone();
    if !nosort {
        v.sort_by(cmp_services);
        for s in &mut v {
            s.dests.sort_by(cmp_dests);
        }
    }
    v
}

/// The `<sched>[ (flags)][ persistent T][ mask M][ pe P][ ops][ allow P,…]` part of a service
/// line (`allow` is xvs's own: the service's allowed sources, shown only when it has some).
fn service_flags(s: &ServiceState) -> String {
    let spec = &s.spec;
    let mut out = format!(" {}", spec.scheduler);
    let names = SchedFlags::from_bits(spec.flags).names(&spec.scheduler);
    if !names.is_empty() {
        let _ = write!(out, " ({})", names.join(","));
    }
    if let Some(t) = spec.persistence {
        let _ = write!(out, " persistent {t}");
        if let Some(m) = &spec.netmask {
            let _ = write!(out, " mask {m}");
        }
        if let Some(pe) = &spec.pe {
            let _ = write!(out, " pe {pe}");
        }
    }
    if spec.one_packet {
        out.push_str(" ops");
    }
    if !spec.allowed_sources.is_empty() {
        let _ = write!(out, " allow {}", spec.allowed_sources.join(","));
    }
    out
}

fn forward_name(method: &str) -> &'static str {
    match method {
        "masq" => "Masq",
        "tunnel" => "Tunnel",
        "local" => "Local",
        _ => "Route",
    }
}

/// ipvsadm's `largenum`: 9 columns, scaled to K/M/G/T beyond 8 digits; with `--exact` the
/// whole number, at least 9 wide.
pub fn largenum(n: u64, exact: bool) -> String {
    if exact {
        let digits = n.to_string();
        let width = if digits.len() > 8 { digits.len() + 1 } else { 9 };
        return format!("{n:>width$}");
    }
    if n < 100_000_000 {
        format!("{n:>9}")
    } else if n < 1_000_000_000 {
        format!("{:>8}K", n / 1000)
    } else if n < 100_000_000_000 {
        format!("{:>8}M", n / 1_000_000)
    } else if n < 100_000_000_000_000 {
        format!("{:>8}G", n / 1_000_000_000)
    } else {
        format!("{:>8}T", n / 1_000_000_000_000)
    }
}

fn five(c: &Counters, exact: bool) -> String {
    [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes].iter().map(|v| largenum(*v, exact)).collect()
}

fn tun_info(d: &DestState) -> String {
    if d.spec.method != "tunnel" {
        return "n/a".into();
    }
    let t = &d.spec.tunnel;
    let csum = |c: xvs_api::CsumName, gue: bool| match c {
        xvs_api::CsumName::Nocsum => "-c",
        xvs_api::CsumName::Csum => "+c",
        xvs_api::CsumName::Remcsum if gue => "r+c",
        xvs_api::CsumName::Remcsum => "-c",
    };
    match t.kind {
        xvs_api::TunnelKindName::Ipip => "ipip".into(),
        xvs_api::TunnelKindName::Gue => format!("gue:{}:{}", t.port, csum(t.csum, true)),
        xvs_api::TunnelKindName::Gre => format!("gre:{}", csum(t.csum, false)),
    }
}

/// A full listing (`-L`), or one service's (`-L -t ...`: no version header).
pub fn list(
    snap: &Snapshot,
    only: Option<&KeySpec>,
    o: &ListOptions,
    services: &dyn Fn(u16, &str) -> Option<String>,
) -> String {
    let mut out = String::new();
    if only.is_none() {
        let _ = writeln!(out, "IP Virtual Server version {IPVS_VERSION} (size={})", snap.conn_table_size);
    }
    match o.columns {
        Columns::Default => {
            out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
            out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
        }
        Columns::Stats => {
            let _ = writeln!(
                out,
                "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
                "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
            );
        }
        Columns::Rate => {
            let _ = writeln!(
                out,
                "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
                "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
            );
        }
        Columns::Thresholds => {
            let _ = writeln!(
                out,
                "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
                "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
            );
        }
        Columns::PersistentConn => {
            let _ = writeln!(
                out,
                "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
                "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
            );
        }
        Columns::TunInfo => {
            out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
            out.push_str("  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n");
        }
    }
    for s in ordered(snap, o.nosort) {
        if only.is_some_and(|k| *k != s.spec.key) {
            continue;
        }
        let proto = proto_name(&s.spec.key);
        let name = service_name(&s.spec.key, o.numeric, services);
        match o.columns {
            Columns::Stats => {
                let _ = writeln!(out, "{name:<33}{}", five(&s.stats, o.exact));
            }
            Columns::Rate => {
                let r = &s.rates;
                let c =
                    Counters { conns: r.cps, inpkts: r.inpps, outpkts: r.outpps, inbytes: r.inbps, outbytes: r.outbps };
                let _ = writeln!(out, "{name:<33}{}", five(&c, o.exact));
            }
            _ => {
                let _ = writeln!(out, "{name}{}", service_flags(&s));
            }
        }
        for d in &s.dests {
            let dn = dest_name(d, proto, o.numeric, services);
            let line = match o.columns {
                Columns::Default => format!(
                    "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                    dn,
                    forward_name(&d.spec.method),
                    d.spec.weight,
                    d.active,
                    d.inactive
                ),
                Columns::Stats => format!("  -> {:<28}{}", dn, five(&d.stats, o.exact)),
                Columns::Rate => {
                    let r = &d.rates;
                    format!(
                        "  -> {:<28} {:>8} {:>8} {:>8}{}{}",
                        dn,
                        r.cps,
                        r.inpps,
                        r.outpps,
                        largenum(r.inbps, o.exact),
                        largenum(r.outbps, o.exact)
                    )
                }
                Columns::Thresholds => format!(
                    "  -> {:<28} {:<10} {:<10} {:<10} {:<10}",
                    dn, d.spec.u_threshold, d.spec.l_threshold, d.active, d.inactive
                ),
                Columns::PersistentConn => format!(
                    "  -> {:<28} {:<9} {:<11} {:<10} {:<10}",
                    dn, d.spec.weight, d.persistent, d.active, d.inactive
                ),
                Columns::TunInfo => format!(
                    "  -> {:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                    dn,
                    forward_name(&d.spec.method),
                    tun_info(d),
                    d.spec.weight,
                    d.active,
                    d.inactive
                ),
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// `-L -c`: the connection table.
pub fn connections(conns: &[ConnState]) -> String {
    let mut out = String::from("IPVS connection entries\n");
    out.push_str("pro expire state       source             virtual            destination\n");
    for c in conns {
        let expire = format!("{:02}:{:02}", c.expires / 60, c.expires % 60);
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            c.proto,
            expire,
            c.state,
            endpoint(&c.caddr, &c.cport.to_string()),
            endpoint(&c.vaddr, &c.vport.to_string()),
            endpoint(&c.daddr, &c.dport.to_string())
        );
    }
    out
}

/// `--timeout`.
pub fn timeouts(snap: &Snapshot) -> String {
    let (t, f, u) = snap.timeouts;
    format!("Timeout (tcp tcpfin udp): {t} {f} {u}\n")
}

/// `-S`: the rules in restore format (thresholds are not saved, as ipvsadm does not).
pub fn save(snap: &Snapshot, numeric: bool, services: &dyn Fn(u16, &str) -> Option<String>) -> String {
    let mut out = String::new();
    for s in ordered(snap, false) {
        let key = &s.spec.key;
        let svc = match key {
            KeySpec::Addr { proto, addr, port } => {
                let flag = match proto {
                    xvs_api::ProtoName::Tcp => "-t",
                    xvs_api::ProtoName::Udp => "-u",
                    xvs_api::ProtoName::Sctp => "--sctp-service",
                };
                format!("{flag} {}", endpoint(addr, &port_text(*port, proto_name(key), numeric, services)))
            }
            KeySpec::Fwmark { mark, ipv6 } => {
                if *ipv6 {
                    format!("-f {mark} -6")
                } else {
                    format!("-f {mark}")
                }
            }
        };
        let spec = &s.spec;
        let _ = write!(out, "-A {svc} -s {}", spec.scheduler);
        if let Some(t) = spec.persistence {
            let _ = write!(out, " -p {t}");
        }
        if let Some(m) = &spec.netmask {
            let _ = write!(out, " -M {m}");
        }
        if let Some(pe) = &spec.pe {
            let _ = write!(out, " --pe {pe}");
        }
        if spec.one_packet {
            out.push_str(" -o");
        }
        let names = SchedFlags::from_bits(spec.flags).names(&spec.scheduler);
        if !names.is_empty() {
            let _ = write!(out, " -b {}", names.join(","));
        }
        out.push('\n');
        let svc_short = match key {
            KeySpec::Fwmark { mark, .. } => format!("-f {mark}"),
            _ => svc.clone(),
        };
        for d in &s.dests {
            let method = match d.spec.method.as_str() {
                "masq" => "-m",
                "tunnel" => "-i",
                _ => "-g",
            };
            let port = port_text(d.spec.port, proto_name(key), numeric, services);
            let _ = write!(out, "-a {svc_short} -r {} {method} -w {}", endpoint(&d.spec.addr, &port), d.spec.weight);
            if d.spec.method == "tunnel" {
                let t = &d.spec.tunnel;
                match t.kind {
                    xvs_api::TunnelKindName::Ipip => out.push_str(" --tun-type ipip"),
                    xvs_api::TunnelKindName::Gue => {
                        let c = match t.csum {
                            xvs_api::CsumName::Nocsum => "--tun-nocsum",
                            xvs_api::CsumName::Csum => "--tun-csum",
                            xvs_api::CsumName::Remcsum => "--tun-remcsum",
                        };
                        let _ = write!(out, " --tun-type gue --tun-port {} {c}", t.port);
                    }
                    xvs_api::TunnelKindName::Gre => {
                        let c = if t.csum == xvs_api::CsumName::Csum { "--tun-csum" } else { "--tun-nocsum" };
                        let _ = write!(out, " --tun-type gre {c}");
                    }
                }
            }
            out.push('\n');
        }
    }
    out
}

/// `-L --daemon`: one line per running synchronisation daemon, as ipvsadm prints them.
pub fn daemons(daemons: &[xvs_api::DaemonState]) -> String {
    let mut out = String::new();
    for d in daemons {
        let o = &d.options;
        let _ = write!(out, "{} sync daemon (mcast={}, syncid={}", d.role, o.mcast_interface, o.syncid);
        if o.maxlen != 0 {
            let _ = write!(out, ", maxlen={}", o.maxlen);
        }
        if let Some(g) = o.group {
            let _ = write!(out, ", group={g}");
        }
        let _ = writeln!(out, ", port={}, ttl={})", o.port, o.ttl);
    }
    out
}

/// `xvsadm bgp`: the routing daemon, then one line per VIP.
pub fn bgp(b: Option<&xvs_api::bgp::BgpStatus>) -> String {
    let mut out = String::new();
    let Some(b) = b else {
        out.push_str("no VIPs announced ([bgp] in xvsd's --config file)\n");
        return out;
    };
    let _ = writeln!(
        out,
        "{} at {}; routes through {}{}",
        b.daemon,
        b.control_socket,
        b.interface,
        if b.drained { "; the director is DRAINED" } else { "" }
    );
    if let Some(e) = &b.error {
        let _ = writeln!(out, "  last update failed (retrying): {e}");
    }
    for v in &b.vips {
        let state = if v.announced { "announced" } else { "withdrawn" };
        let why = if v.reason == "ready" { String::new() } else { format!(": {}", v.detail) };
        let _ = writeln!(out, "  {:<40} {state}{why}", v.vip);
    }
    out
}

/// `xvsadm vrrp`: one block per instance.
pub fn vrrp(instances: &[xvs_api::vrrp::VrrpStatus]) -> String {
    let mut out = String::new();
    if instances.is_empty() {
        out.push_str("no VRRP instances (vrrp_instance in xvsd's --config file)\n");
        return out;
    }
    for v in instances {
        let group = v.group.as_ref().map(|g| format!(" group {g}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{} ({} vrid {} v{}){group}: {} for {}s, priority {} (configured {})",
            v.name, v.interface, v.vrid, v.version, v.state, v.since_s, v.priority, v.base_priority
        );
        let master = match (&v.master, v.master_priority) {
            (Some(m), Some(p)) => format!("{m} priority {p}"),
            _ => "unknown".into(),
        };
        let _ = writeln!(out, "  master {master}; addresses {}", v.vips.join(" "));
        let _ = writeln!(
            out,
            "  adverts sent {} received {} invalid {}; transitions {}, became master {}",
            v.adverts_sent, v.adverts_received, v.adverts_invalid, v.transitions, v.became_master
        );
    }
    out
}

/// `xvsadm health`: per service its quorum, per real server its state, weight in the table and
/// its checks, keepalived-style (`UP`/`DOWN`, the last result and its reason).
pub fn health(services: &[xvs_api::health::ServiceStatus]) -> String {
    let mut out = String::new();
    if services.is_empty() {
        out.push_str("no health checks configured (xvsadm apply -f FILE, or xvsd --config)\n");
        return out;
    }
    for s in services {
        let key = xvs_core::ServiceKey::from(s.service).to_string();
        let quorum = if s.quorum_up { "up" } else { "LOST" };
        let _ = writeln!(out, "{key}  quorum {quorum} (alive weight {} of quorum {})", s.alive_weight, s.quorum);
        if let Some(sorry) = &s.sorry_active {
            let _ = writeln!(out, "  sorry server {sorry} in use");
        }
        for r in &s.servers {
            let state = if r.alive { "UP" } else { "DOWN" };
            let weight = match r.weight {
                Some(w) => format!("weight {w}"),
                None => "not in table".into(),
            };
            let _ = writeln!(out, "  -> {:<28} {:<5} {}", r.server.to_string(), state, weight);
            for c in &r.checks {
                let last = match &c.last {
                    None => "not run yet".to_string(),
                    Some(l) => format!(
                        "{} {:.1}s ago: {}",
                        if l.ok { "ok" } else { "FAILED" },
                        l.ago_ms as f64 / 1000.0,
                        l.reason
                    ),
                };
                let retry = if c.retries > 0 { format!(" (retry {})", c.retries) } else { String::new() };
                let shared =
                    if c.shared_with > 0 { format!(" [shared with {}]", c.shared_with) } else { String::new() };
                let _ = writeln!(
                    out,
                    "       {} {} {}: {last}{retry}{shared}",
                    c.kind,
                    c.target,
                    if c.up { "up" } else { "down" }
                );
            }
        }
    }
    out
}
