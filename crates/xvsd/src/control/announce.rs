//! What the VIP announcer needs to know of the services (see [`crate::bgp`]).

use super::*;

impl Control {
    /// Every service with an address, as the announcer weighs it: real servers that take new
    /// connections, the health checks' quorum, standby.
    pub fn announce_inputs(&self) -> Vec<xvs_announce::ServiceInput> {
        let quorum: HashMap<ServiceKey, bool> = self
            .health
            .as_ref()
            .map(|m| m.quorums().map(|(k, q)| (ServiceKey::from(k), q)).collect())
            .unwrap_or_default();
        self.lb
            .services
            .iter()
            .filter_map(|(id, s)| {
                let key = *s.key();
                let ServiceKey::Addr { addr, .. } = key else { return None };
                let usable = self
                    .lb
                    .services
                    .view(id)
                    .map(|v| v.iter().filter(|(_, d)| d.weight() > 0).count() as u32)
                    .unwrap_or(0);
                Some(xvs_announce::ServiceInput {
                    vip: addr,
                    // "TCP  198.18.0.1:80" as ipvsadm pads it, with one space.
                    name: key.to_string().split_whitespace().collect::<Vec<_>>().join(" "),
                    usable,
                    quorum_up: quorum.get(&key).copied(),
                    standby: self.dp.as_ref().is_some_and(|dp| dp.publisher.is_standby(&key)),
                })
            })
            .collect()
    }
}
