//! What an operator configures: virtual services and their real servers.
//!
//! These types carry configuration only. The runtime state that IPVS keeps beside them
//! (connection counters, the overload flag, statistics) lives in [`crate::Service`] and
//! [`crate::Dest`], which own one of these each.

mod error;

pub use error::{Errno, Error};

use core::fmt;
use core::net::{IpAddr, Ipv4Addr};
use core::str::FromStr;

use crate::addr::Family;
use crate::sched::SchedKind;

/// A transport protocol that a virtual service can balance.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132). Accepted by the model and the CLI as IPVS does; the XDP dataplane does not
    /// balance it and `xvsd` says so when such a service is added.
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// The protocol with this IP protocol number, if IPVS balances it.
    pub const fn from_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name ipvsadm prints (`TCP`, `UDP`, `SCTP`).
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The identity of a virtual service. It can never be edited: a different key is a different
/// service.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKey {
    /// A service on `(protocol, address, port)`. Port 0 matches every port (persistent only).
    Addr {
        /// The transport protocol.
        proto: Protocol,
        /// The virtual IP address.
        addr: IpAddr,
        /// The virtual port; 0 for "any port".
        port: u16,
    },
    /// A service selected by firewall mark (`-f`); the mark is never 0.
    Fwmark {
        /// The address family of the packets it takes (`-6` makes it IPv6).
        af: Family,
        /// The firewall mark.
        mark: u32,
    },
}

impl ServiceKey {
    /// A TCP service.
    pub fn tcp(addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr { proto: Protocol::Tcp, addr, port }
    }

    /// A UDP service.
    pub fn udp(addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr { proto: Protocol::Udp, addr, port }
    }

    /// An SCTP service.
    pub fn sctp(addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr { proto: Protocol::Sctp, addr, port }
    }

    /// The address family of the service.
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr),
            ServiceKey::Fwmark { af, .. } => *af,
        }
    }

    /// The protocol the kernel records: fwmark services are stored as TCP.
    pub fn protocol(&self) -> Protocol {
        match self {
            ServiceKey::Addr { proto, .. } => *proto,
            ServiceKey::Fwmark { .. } => Protocol::Tcp,
        }
    }

    /// The virtual port, or 0 for fwmark services.
    pub fn port(&self) -> u16 {
        match self {
            ServiceKey::Addr { port, .. } => *port,
            ServiceKey::Fwmark { .. } => 0,
        }
    }

    /// The virtual address, or the unspecified address for fwmark services.
    pub fn addr(&self) -> IpAddr {
        match self {
            ServiceKey::Addr { addr, .. } => *addr,
            ServiceKey::Fwmark { af, .. } => af.unspecified(),
        }
    }

    /// The firewall mark, or 0 for address services.
    pub fn fwmark(&self) -> u32 {
        match self {
            ServiceKey::Addr { .. } => 0,
            ServiceKey::Fwmark { mark, .. } => *mark,
        }
    }
}

impl fmt::Display for ServiceKey {
    /// Formats the key as ipvsadm's numeric listing does (`TCP  198.18.0.1:80`, `FWM  3`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { proto, addr: IpAddr::V4(a), port } => write!(f, "{:<4} {a}:{port}", proto.name()),
            ServiceKey::Addr { proto, addr: IpAddr::V6(a), port } => write!(f, "{:<4} [{a}]:{port}", proto.name()),
            ServiceKey::Fwmark { af: Family::V4, mark } => write!(f, "FWM  {mark}"),
            ServiceKey::Fwmark { af: Family::V6, mark } => write!(f, "FWM  {mark} IPv6"),
        }
    }
}

/// The persistence granularity: which part of the client address a template keeps.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Netmask {
    /// An IPv4 mask, ANDed with the client address as given (`-M 255.255.255.0`).
    V4(Ipv4Addr),
    /// An IPv6 prefix length, 1..=128.
    V6(u8),
}

impl Netmask {
    /// The default for a family: a single client address (`/32` or `/128`).
    pub fn host(af: Family) -> Netmask {
        match af {
            Family::V4 => Netmask::V4(Ipv4Addr::BROADCAST),
            Family::V6 => Netmask::V6(128),
        }
    }

    /// True when the mask keeps the whole address.
    pub fn is_host(&self) -> bool {
        matches!(self, Netmask::V4(m) if *m == Ipv4Addr::BROADCAST) || matches!(self, Netmask::V6(128))
    }
}

/// Scheduler flags (`-b`): three raw bits whose meaning depends on the scheduler.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SchedFlags(u8);

impl SchedFlags {
    /// `flag-1`; `sh-fallback` with sh, `mh-fallback` with mh.
    pub const SCHED1: SchedFlags = SchedFlags(0x1);
    /// `flag-2`; `sh-port` with sh, `mh-port` with mh.
    pub const SCHED2: SchedFlags = SchedFlags(0x2);
    /// `flag-3`; no scheduler uses it.
    pub const SCHED3: SchedFlags = SchedFlags(0x4);

    /// No flag set.
    pub const fn empty() -> Self {
        SchedFlags(0)
    }

    /// The flags from their bits (bit 0 = SCHED1).
    pub const fn from_bits(bits: u8) -> Self {
        SchedFlags(bits & 0x7)
    }

    /// The bits (bit 0 = SCHED1).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True if every flag of `other` is set.
    pub const fn contains(self, other: SchedFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// The union of two sets.
    pub const fn union(self, other: SchedFlags) -> Self {
        SchedFlags(self.0 | other.0)
    }

    /// Parses ipvsadm's `-b` list for scheduler `sched`, with ipvsadm's messages.
    pub fn parse(list: &str, sched: &str) -> Result<SchedFlags, String> {
        let mut flags = SchedFlags::empty();
        for name in list.split(',') {
            let bit = match name {
                "flag-1" => SchedFlags::SCHED1,
                "flag-2" => SchedFlags::SCHED2,
                "flag-3" => SchedFlags::SCHED3,
                "sh-fallback" | "sh-port" if sched != "sh" => {
                    return Err(format!("incompatible scheduler flag '{name}'"))
                }
                "mh-fallback" | "mh-port" if sched != "mh" => {
                    return Err(format!("incompatible scheduler flag '{name}'"))
                }
                "sh-fallback" | "mh-fallback" => SchedFlags::SCHED1,
                "sh-port" | "mh-port" => SchedFlags::SCHED2,
                _ => return Err(format!("invalid scheduler flag `{name}'")),
            };
            flags = flags.union(bit);
        }
        Ok(flags)
    }

    /// The names ipvsadm prints for these flags under scheduler `sched`, in bit order.
    pub fn names(self, sched: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        let named = |one: &'static str, sh: &'static str, mh: &'static str| match sched {
            "sh" => sh,
            "mh" => mh,
            _ => one,
        };
        if self.contains(SchedFlags::SCHED1) {
            out.push(named("flag-1", "sh-fallback", "mh-fallback"));
        }
        if self.contains(SchedFlags::SCHED2) {
            out.push(named("flag-2", "sh-port", "mh-port"));
        }
        if self.contains(SchedFlags::SCHED3) {
            out.push("flag-3");
        }
        out
    }
}

/// Longest persistence timeout the kernel accepts through ipvsadm: 31 days.
pub const MAX_PERSISTENCE_TIMEOUT: u32 = 31 * 24 * 3600;
/// ipvsadm's default when `-p` has no value (libipvs's 6 minutes; the man page says 300).
pub const DEFAULT_PERSISTENCE_TIMEOUT: u32 = 360;

/// A client address prefix (`198.18.1.0/24`, `2001:2::/48`), as allowed-source lists take them.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourcePrefix {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length: 0..=32 or 0..=128.
    pub len: u8,
}

impl SourcePrefix {
    /// A prefix, with host bits cleared; refused when the length exceeds the family's width.
    pub fn new(addr: IpAddr, len: u8) -> Result<SourcePrefix, Error> {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if u32::from(len) > bits {
            return Err(Error::Invalid(format!("prefix length /{len} is longer than {bits} bits")));
        }
        let addr = match addr {
            IpAddr::V4(a) => {
                let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
            }
            IpAddr::V6(a) => {
                let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
                IpAddr::V6(core::net::Ipv6Addr::from(u128::from(a) & m))
            }
        };
        Ok(SourcePrefix { addr, len })
    }

    /// True when `a` lies in the prefix (never across families).
    pub fn contains(&self, a: &IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let m = if self.len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.len)) };
                u32::from(*a) & m == u32::from(p)
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let m = if self.len == 0 { 0 } else { u128::MAX << (128 - u32::from(self.len)) };
                u128::from(*a) & m == u128::from(p)
            }
            _ => false,
        }
    }
}

impl core::fmt::Display for SourcePrefix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl core::str::FromStr for SourcePrefix {
    type Err = Error;
    /// `addr/len`, or a bare address for a single host.
    fn from_str(s: &str) -> Result<SourcePrefix, Error> {
        let bad = || Error::Invalid(format!("'{s}' is not an address prefix (like 198.18.1.0/24)"));
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let len = match l {
            Some(l) => l.trim().parse::<u8>().map_err(|_| bad())?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        let p = SourcePrefix::new(addr, len)?;
        if p.addr != addr {
            return Err(Error::Invalid(format!("'{s}' has host bits set (did you mean {p}?)")));
        }
        Ok(p)
    }
}

/// The editable part of a virtual service. An edit replaces all of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The scheduler; `None` is the kernel's special name `none` (no scheduler).
    pub scheduler: Option<SchedKind>,
    /// Scheduler flags.
    pub flags: SchedFlags,
    /// Persistence timeout in seconds, when the service is persistent.
    pub persistence: Option<u32>,
    /// Persistence granularity.
    pub netmask: Netmask,
    /// One-packet scheduling (UDP only).
    pub one_packet: bool,
    /// Persistence engine name (`sip`), if any.
    pub pe: Option<String>,
    /// Clients allowed to open connections (an xvs extension; empty: everyone). XDP runs
    /// before netfilter, so this is where a VIP's source filtering lives.
    pub allowed_sources: Vec<SourcePrefix>,
}

impl ServiceConfig {
    /// A non-persistent service with the given scheduler and the defaults of ipvsadm.
    pub fn new(af: Family, scheduler: SchedKind) -> Self {
        ServiceConfig {
            scheduler: Some(scheduler),
            flags: SchedFlags::empty(),
            persistence: None,
            netmask: Netmask::host(af),
            one_packet: false,
            pe: None,
            allowed_sources: Vec::new(),
        }
    }

    /// Makes the service persistent for `secs` seconds.
    pub fn persistent(mut self, secs: u32) -> Self {
        self.persistence = Some(secs);
        self
    }

    /// Sets the scheduler flags.
    pub fn with_flags(mut self, flags: SchedFlags) -> Self {
        self.flags = flags;
        self
    }

    /// The scheduler name as ipvsadm prints it (`none` for no scheduler).
    pub fn scheduler_name(&self) -> &'static str {
        self.scheduler.map_or("none", SchedKind::name)
    }
}

/// How packets reach a real server.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ForwardMethod {
    /// NAT (`-m`): destination rewritten, replies come back through the director.
    Masq,
    /// Local node: delivered to the director's own stack (settable, shown as `Local`).
    Local,
    /// IP-in-IP tunnel (`-i`).
    Tunnel,
    /// Direct routing (`-g`, the default): only the MAC address changes.
    Route,
    /// Bypass: forwarded to the original destination (cache_bypass).
    Bypass,
}

impl ForwardMethod {
    /// The kernel's value in the low bits of the connection flags.
    pub const fn bits(self) -> u32 {
        match self {
            ForwardMethod::Masq => 0,
            ForwardMethod::Local => 1,
            ForwardMethod::Tunnel => 2,
            ForwardMethod::Route => 3,
            ForwardMethod::Bypass => 4,
        }
    }

    /// The word ipvsadm prints in the Forward column.
    pub const fn name(self) -> &'static str {
        match self {
            ForwardMethod::Masq => "Masq",
            ForwardMethod::Local => "Local",
            ForwardMethod::Tunnel => "Tunnel",
            ForwardMethod::Route => "Route",
            ForwardMethod::Bypass => "Bypass",
        }
    }
}

/// The encapsulation used by the tunnel method.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// IP-in-IP (IPv4 proto 4) or IPv6-in-IPv6/IPv4-in-IPv6 (proto 41/4).
    #[default]
    Ipip,
    /// Generic UDP encapsulation to a port.
    Gue,
    /// GRE.
    Gre,
}

/// Checksum option of a GUE or GRE tunnel.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum TunnelCsum {
    /// No checksum (default).
    #[default]
    None,
    /// Outer checksum.
    Csum,
    /// Remote checksum offload (GUE only).
    Remcsum,
}

/// Tunnel parameters of a real server.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tunnel {
    /// The encapsulation.
    pub kind: TunnelKind,
    /// Destination UDP port for GUE (must be non-zero for GUE).
    pub port: u16,
    /// Checksum option.
    pub csum: TunnelCsum,
}

/// The editable part of a real server. An edit replaces all of it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct DestConfig {
    /// Forwarding method.
    pub method: ForwardMethod,
    /// Weight, 0..=i32::MAX; 0 quiesces the server (no new connections).
    pub weight: i32,
    /// Upper connection threshold (`-x`), 0 = none.
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = three quarters of the upper one.
    pub l_threshold: u32,
    /// Tunnel parameters (used with [`ForwardMethod::Tunnel`]).
    pub tunnel: Tunnel,
}

impl DestConfig {
    /// A real server with weight 1, no thresholds, and the given method.
    pub fn new(method: ForwardMethod) -> Self {
        DestConfig { method, weight: 1, u_threshold: 0, l_threshold: 0, tunnel: Tunnel::default() }
    }

    /// Sets the weight.
    pub fn weight(mut self, weight: i32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the thresholds.
    pub fn thresholds(mut self, upper: u32, lower: u32) -> Self {
        self.u_threshold = upper;
        self.l_threshold = lower;
        self
    }
}

impl FromStr for ForwardMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "masq" | "nat" | "m" => Ok(ForwardMethod::Masq),
            "route" | "dr" | "droute" | "g" => Ok(ForwardMethod::Route),
            "tunnel" | "tun" | "ipip" | "i" => Ok(ForwardMethod::Tunnel),
            "local" => Ok(ForwardMethod::Local),
            _ => Err(Error::Invalid(format!("unknown forwarding method '{s}' (use masq, route or tunnel)"))),
        }
    }
}
