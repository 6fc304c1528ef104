//! Services and real servers as plain data, and their conversion to the core's types.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};
use xvs_core::{
    DestConfig, Error, Family, ForwardMethod, Netmask, Protocol, SchedFlags, SchedKind, ServiceConfig, ServiceKey,
    Tunnel, TunnelCsum, TunnelKind,
};

/// A service's identity.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeySpec {
    /// `-t`, `-u`, `--sctp-service`.
    Addr {
        /// `tcp`, `udp` or `sctp`.
        proto: ProtoName,
        /// Virtual address.
        addr: IpAddr,
        /// Virtual port.
        port: u16,
    },
    /// `-f`.
    Fwmark {
        /// The mark.
        mark: u32,
        /// `-6`.
        ipv6: bool,
    },
}

/// A protocol as named in files and messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtoName {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl From<ProtoName> for Protocol {
    fn from(p: ProtoName) -> Protocol {
        match p {
            ProtoName::Tcp => Protocol::Tcp,
            ProtoName::Udp => Protocol::Udp,
            ProtoName::Sctp => Protocol::Sctp,
        }
    }
}

impl From<Protocol> for ProtoName {
    fn from(p: Protocol) -> ProtoName {
        match p {
            Protocol::Tcp => ProtoName::Tcp,
            Protocol::Udp => ProtoName::Udp,
            Protocol::Sctp => ProtoName::Sctp,
        }
    }
}

impl From<KeySpec> for ServiceKey {
    fn from(k: KeySpec) -> ServiceKey {
        match k {
            KeySpec::Addr { proto, addr, port } => ServiceKey::Addr { proto: proto.into(), addr, port },
            KeySpec::Fwmark { mark, ipv6 } => {
                ServiceKey::Fwmark { af: if ipv6 { Family::V6 } else { Family::V4 }, mark }
            }
        }
    }
}

impl From<ServiceKey> for KeySpec {
    fn from(k: ServiceKey) -> KeySpec {
        match k {
            ServiceKey::Addr { proto, addr, port } => KeySpec::Addr { proto: proto.into(), addr, port },
            ServiceKey::Fwmark { af, mark } => KeySpec::Fwmark { mark, ipv6: af == Family::V6 },
        }
    }
}

/// A service's configuration with its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Identity.
    pub key: KeySpec,
    /// Scheduler name (`wlc` by default in ipvsadm; `none` for no scheduler).
    pub scheduler: String,
    /// Scheduler flag bits (bit 0 = flag-1 = sh-fallback/mh-fallback, bit 1 = sh-port/mh-port).
    pub flags: u8,
    /// Persistence timeout in seconds.
    pub persistence: Option<u32>,
    /// IPv4 dotted mask, or IPv6 prefix length as a number; `None` for a single address.
    pub netmask: Option<String>,
    /// One-packet scheduling.
    pub one_packet: bool,
    /// Persistence engine.
    pub pe: Option<String>,
    /// Clients allowed to connect (`198.18.1.0/24`, `2001:2::/48`, or a bare address); empty:
    /// everyone. An xvs extension: XDP runs before the firewall.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_sources: Vec<String>,
}

impl ServiceSpec {
    /// The core's key.
    pub fn core_key(&self) -> ServiceKey {
        self.key.into()
    }

    /// The core's configuration, with the kernel's validation of names and masks.
    pub fn core_config(&self) -> Result<ServiceConfig, Error> {
        let key = self.core_key();
        let scheduler = if self.scheduler == "none" { None } else { Some(self.scheduler.parse::<SchedKind>()?) };
        let netmask = match (&self.netmask, key.family()) {
            (None, af) => Netmask::host(af),
            (Some(m), Family::V4) => {
                Netmask::V4(m.parse::<Ipv4Addr>().map_err(|_| Error::Invalid(format!("'{m}' is not an IPv4 netmask")))?)
            }
            (Some(m), Family::V6) => {
                Netmask::V6(m.parse::<u8>().map_err(|_| Error::Invalid(format!("'{m}' is not an IPv6 prefix length")))?)
            }
        };
        Ok(ServiceConfig {
            scheduler,
            flags: SchedFlags::from_bits(self.flags),
            persistence: self.persistence,
            netmask,
            one_packet: self.one_packet,
            pe: self.pe.clone(),
            allowed_sources: self.allowed_prefixes(key.family())?,
        })
    }

    /// The allowed sources, parsed, checked against the service's family, sorted, deduplicated.
    pub fn allowed_prefixes(&self, af: Family) -> Result<Vec<xvs_core::SourcePrefix>, Error> {
        let mut out = Vec::new();
        for s in &self.allowed_sources {
            let p: xvs_core::SourcePrefix = s.parse()?;
            if Family::of(&p.addr) != af {
                return Err(Error::Invalid(format!("allowed source {p} is not of the service's address family")));
            }
            out.push(p);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The spec of a core service.
    pub fn from_core(key: &ServiceKey, c: &ServiceConfig) -> ServiceSpec {
        let netmask = if c.netmask.is_host() {
            None
        } else {
            Some(match c.netmask {
                Netmask::V4(m) => m.to_string(),
                Netmask::V6(p) => p.to_string(),
            })
        };
        ServiceSpec {
            key: (*key).into(),
            scheduler: c.scheduler_name().to_string(),
            flags: c.flags.bits(),
            persistence: c.persistence,
            netmask,
            one_packet: c.one_packet,
            pe: c.pe.clone(),
            allowed_sources: c.allowed_sources.iter().map(|p| p.to_string()).collect(),
        }
    }
}

/// Tunnel options of a real server (in files: `tunnel = { kind = "gue", port = 6080, csum =
/// "csum" }`; what is left out is ipip, 0, nocsum).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TunnelSpec {
    /// `ipip`, `gue` or `gre`.
    pub kind: TunnelKindName,
    /// GUE port.
    pub port: u16,
    /// `nocsum`, `csum` or `remcsum`.
    pub csum: CsumName,
}

/// Tunnel types by name.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelKindName {
    /// IP-in-IP.
    #[default]
    Ipip,
    /// GUE.
    Gue,
    /// GRE.
    Gre,
}

/// Tunnel checksum options by name.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CsumName {
    /// No checksum.
    #[default]
    Nocsum,
    /// Checksum.
    Csum,
    /// Remote checksum offload.
    Remcsum,
}

/// A real server's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// `masq`, `route`, `tunnel` or `local`.
    pub method: String,
    /// Weight.
    pub weight: i32,
    /// Upper threshold.
    pub u_threshold: u32,
    /// Lower threshold.
    pub l_threshold: u32,
    /// Tunnel options.
    pub tunnel: TunnelSpec,
}

impl DestSpec {
    /// The core's configuration.
    pub fn core_config(&self) -> Result<DestConfig, Error> {
        let method: ForwardMethod = self.method.parse()?;
        let tunnel = Tunnel {
            kind: match self.tunnel.kind {
                TunnelKindName::Ipip => TunnelKind::Ipip,
                TunnelKindName::Gue => TunnelKind::Gue,
                TunnelKindName::Gre => TunnelKind::Gre,
            },
            port: self.tunnel.port,
            csum: match self.tunnel.csum {
                CsumName::Nocsum => TunnelCsum::None,
                CsumName::Csum => TunnelCsum::Csum,
                CsumName::Remcsum => TunnelCsum::Remcsum,
            },
        };
        Ok(DestConfig {
            method,
            weight: self.weight,
            u_threshold: self.u_threshold,
            l_threshold: self.l_threshold,
            tunnel,
        })
    }

    /// The spec of a core real server.
    pub fn from_core(addr: IpAddr, port: u16, c: &DestConfig) -> DestSpec {
        DestSpec {
            addr,
            port,
            method: match c.method {
                ForwardMethod::Masq => "masq",
                ForwardMethod::Local => "local",
                ForwardMethod::Tunnel => "tunnel",
                ForwardMethod::Route | ForwardMethod::Bypass => "route",
            }
            .into(),
            weight: c.weight,
            u_threshold: c.u_threshold,
            l_threshold: c.l_threshold,
            tunnel: TunnelSpec {
                kind: match c.tunnel.kind {
                    TunnelKind::Ipip => TunnelKindName::Ipip,
                    TunnelKind::Gue => TunnelKindName::Gue,
                    TunnelKind::Gre => TunnelKindName::Gre,
                },
                port: c.tunnel.port,
                csum: match c.tunnel.csum {
                    TunnelCsum::None => CsumName::Nocsum,
                    TunnelCsum::Csum => CsumName::Csum,
                    TunnelCsum::Remcsum => CsumName::Remcsum,
                },
            },
        }
    }
}
