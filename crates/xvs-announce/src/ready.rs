//! Whether a VIP can be served by this director, from the states of its services.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// What the announcer needs to know of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInput {
    /// The service's address (the VIP).
    pub vip: IpAddr,
    /// The service's name in messages (`TCP 198.18.0.1:80`).
    pub name: String,
    /// Real servers that may take new connections (weight above 0).
    pub usable: u32,
    /// The health checks' quorum, when the service has checks.
    pub quorum_up: Option<bool>,
    /// The service is on standby (this director is a VRRP backup for it).
    pub standby: bool,
}

/// Which services of a VIP must be ready for it to be announced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// At least one (the default): a VIP is announced while any of its ports can be served.
    /// Directors with the same configuration usually lose a service together (its servers are
    /// down), and withdrawing the VIP everywhere would take the healthy ports down with it.
    #[default]
    Any,
    /// Every one: a director that cannot serve one port of the VIP leaves all of it to others.
    All,
}

impl Policy {
    /// Parses `any` or `all`.
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "any" => Some(Policy::Any),
            "all" => Some(Policy::All),
            _ => None,
        }
    }
}

/// Why a VIP is announced or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Announced: it can be served here.
    Ready,
    /// No service has this address (any more).
    NoService,
    /// A service has no real server that takes new connections.
    NoServer(String),
    /// A service's health-check quorum is lost.
    QuorumLost(String),
    /// A service is on standby (VRRP backup).
    Standby(String),
    /// The operator drained this VIP or the whole director.
    Drained,
    /// xvsd is stopping.
    Stopping,
}

impl Reason {
    /// The reason's short name, for listings and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Ready => "ready",
            Reason::NoService => "no_service",
            Reason::NoServer(_) => "no_server",
            Reason::QuorumLost(_) => "quorum_lost",
            Reason::Standby(_) => "standby",
            Reason::Drained => "drained",
            Reason::Stopping => "stopping",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Ready => write!(f, "ready"),
            Reason::NoService => write!(f, "no service has this address"),
            Reason::NoServer(s) => write!(f, "{s}: no real server takes new connections"),
            Reason::QuorumLost(s) => write!(f, "{s}: quorum lost"),
            Reason::Standby(s) => write!(f, "{s}: on standby (VRRP backup)"),
            Reason::Drained => write!(f, "drained by the operator"),
            Reason::Stopping => write!(f, "xvsd is stopping"),
        }
    }
}

fn service_reason(s: &ServiceInput) -> Reason {
    if s.standby {
        Reason::Standby(s.name.clone())
    } else if s.quorum_up == Some(false) {
        Reason::QuorumLost(s.name.clone())
    } else if s.usable == 0 {
        Reason::NoServer(s.name.clone())
    } else {
        Reason::Ready
    }
}

/// The readiness of every VIP that `wanted` names (every service address when `wanted` is
/// `None`), from the services' states.
pub fn readiness(services: &[ServiceInput], wanted: Option<&[IpAddr]>, policy: Policy) -> BTreeMap<IpAddr, Reason> {
    let mut out: BTreeMap<IpAddr, Reason> = BTreeMap::new();
    if let Some(w) = wanted {
        for v in w {
            out.insert(*v, Reason::NoService);
        }
    }
    for s in services {
        if wanted.is_some_and(|w| !w.contains(&s.vip)) {
            continue;
        }
        let r = service_reason(s);
        let slot = out.entry(s.vip).or_insert(Reason::NoService);
        *slot = match (policy, &*slot, r) {
            (_, Reason::NoService, r) => r,
            // Any: one ready service makes the VIP ready; otherwise the first reason stays.
            (Policy::Any, Reason::Ready, _) => Reason::Ready,
            (Policy::Any, _, Reason::Ready) => Reason::Ready,
            // All: the first service that is not ready names the reason.
            (Policy::All, Reason::Ready, r) => r,
            (_, kept, _) => kept.clone(),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(vip: &str, port: u16, usable: u32, quorum_up: Option<bool>, standby: bool) -> ServiceInput {
        ServiceInput { vip: vip.parse().unwrap(), name: format!("TCP {vip}:{port}"), usable, quorum_up, standby }
    }

    #[test]
    fn any_and_all() {
        let s = [svc("198.18.0.1", 80, 2, Some(true), false), svc("198.18.0.1", 443, 0, None, false)];
        let any = readiness(&s, None, Policy::Any);
        assert_eq!(any[&"198.18.0.1".parse::<IpAddr>().unwrap()], Reason::Ready);
        let all = readiness(&s, None, Policy::All);
        assert_eq!(all[&"198.18.0.1".parse::<IpAddr>().unwrap()], Reason::NoServer("TCP 198.18.0.1:443".into()));
    }

    #[test]
    fn reasons_in_order_of_weight() {
        let q = [svc("198.18.0.1", 80, 2, Some(false), false)];
        assert_eq!(readiness(&q, None, Policy::Any).values().next().unwrap().name(), "quorum_lost");
        let st = [svc("198.18.0.1", 80, 2, Some(true), true)];
        assert_eq!(readiness(&st, None, Policy::Any).values().next().unwrap().name(), "standby");
    }

    #[test]
    fn wanted_vips_without_services_are_listed() {
        let w: Vec<IpAddr> = vec!["198.18.0.9".parse().unwrap()];
        let r = readiness(&[svc("198.18.0.1", 80, 1, None, false)], Some(&w), Policy::Any);
        assert_eq!(r.len(), 1);
        assert_eq!(r[&w[0]], Reason::NoService);
    }
}
