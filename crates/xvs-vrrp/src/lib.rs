//! # xvs-vrrp
//!
//! VRRP as keepalived speaks it, with no I/O and no clock: the advertisement codec
//! ([`wire`]), one instance's state machine ([`instance`]), tracking ([`track`]), and the
//! [`Router`] that holds a daemon's instances and sync groups and routes packets to them.
//!
//! xvsd owns the sockets and timers. It calls [`Router::start`], then
//! [`Router::handle_packet`] for every VRRP packet, [`Router::handle_timeout`] when
//! [`Router::poll_timeout`] says, [`Router::set_tracked`] when a tracked script or interface
//! changes, and [`Router::stop`] on the way out; after each call it carries out
//! [`Router::poll_event`]'s events in order.

#![warn(missing_docs)]

pub mod instance;
pub mod track;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use xvs_core::Instant;

pub use instance::{Config, Event, Instance, Refused, State, Stats};
pub use track::{Target, Tracked};
pub use wire::{Advert, Version, WireError};

/// One instance with where it runs and what it tracks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Its name (`vrrp_instance NAME`).
    pub name: String,
    /// The interface it advertises on.
    pub interface: String,
    /// Unicast peers; empty: multicast to the VRRP group.
    pub unicast_peers: Vec<IpAddr>,
    /// The state machine's settings.
    pub config: Config,
    /// Scripts and interfaces that change its priority or put it in FAULT.
    pub tracked: Vec<Tracked>,
}

/// Why a packet was not taken by any instance.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// Malformed.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// Multicast with a TTL / hop limit other than 255: not from this link.
    #[error("TTL {0} (must be 255)")]
    Ttl(u8),
    /// No instance for this router id on this interface and family.
    #[error("no instance for VRID {0}")]
    UnknownVrid(u8),
    /// A unicast instance got it from an address that is not one of its peers.
    #[error("{0} is not a unicast peer")]
    NotPeer(IpAddr),
    /// Multicast to a unicast instance, or unicast to a multicast one.
    #[error("unicast and multicast mixed")]
    Mode,
    /// Sent by this router itself (multicast looped back).
    #[error("our own advertisement")]
    Own,
    /// The instance refused it.
    #[error("{instance}: {reason}")]
    Refused {
        /// The instance's name.
        instance: String,
        /// Why.
        reason: Refused,
    },
}

/// The instances and sync groups of one daemon.
#[derive(Debug)]
pub struct Router {
    specs: Vec<InstanceSpec>,
    instances: Vec<Instance>,
    /// Sync group of each instance (index into `groups`).
    group_of: Vec<Option<usize>>,
    /// Sync groups: their names and member instances.
    groups: Vec<(String, Vec<usize>)>,
    /// Whether each tracked target succeeds now (unknown ones do).
    ok: HashMap<Target, bool>,
    events: VecDeque<(usize, Event)>,
    /// Packets dropped before reaching an instance.
    pub dropped: u64,
}

impl Router {
    /// A router for `instances`; `groups` are (name, member names) of `vrrp_sync_group`s.
    pub fn new(instances: Vec<InstanceSpec>, groups: Vec<(String, Vec<String>)>) -> Result<Router, String> {
        let mut seen = HashMap::new();
        for (i, s) in instances.iter().enumerate() {
            let key = (s.interface.clone(), s.config.own.is_ipv4(), s.config.vrid);
            if let Some(j) = seen.insert(key, i) {
                let other: &InstanceSpec = &instances[j];
                return Err(format!(
                    "vrrp_instance {} and {} both use virtual_router_id {} on {}",
                    other.name, s.name, s.config.vrid, s.interface
                ));
            }
        }
        let mut group_of = vec![None; instances.len()];
        let mut gs = Vec::new();
        for (g, (name, members)) in groups.into_iter().enumerate() {
            let mut idx = Vec::new();
            for m in members {
                let i = instances
                    .iter()
                    .position(|s| s.name == m)
                    .ok_or_else(|| format!("vrrp_sync_group {name}: no vrrp_instance {m}"))?;
                if group_of[i].is_some() {
                    return Err(format!("vrrp_instance {m} is in two sync groups"));
                }
                group_of[i] = Some(g);
                idx.push(i);
            }
            gs.push((name, idx));
        }
        Ok(Router {
            instances: instances.iter().map(|s| Instance::new(s.config.clone())).collect(),
            specs: instances,
            group_of,
            groups: gs,
            ok: HashMap::new(),
            events: VecDeque::new(),
            dropped: 0,
        })
    }

    /// The instances, in configuration order, with their specs.
    pub fn instances(&self) -> impl Iterator<Item = (&InstanceSpec, &Instance)> {
        self.specs.iter().zip(&self.instances)
    }

    /// The sync group of instance `i`, by name.
    pub fn group(&self, i: usize) -> Option<&str> {
        self.group_of[i].map(|g| self.groups[g].0.as_str())
    }

    /// Starts every instance (tracking first: an instance whose tracked object already fails
    /// starts in FAULT).
    pub fn start(&mut self, now: Instant) {
        for i in 0..self.instances.len() {
            self.retrack(i, now);
        }
        self.sync_faults(now);
        for i in 0..self.instances.len() {
            self.instances[i].start(now);
        }
        self.collect(now);
    }

    /// Stops every instance (masters send priority 0 and release their addresses).
    pub fn stop(&mut self, now: Instant) {
        for i in &mut self.instances {
            i.stop(now);
        }
        self.collect(now);
    }

    /// A VRRP packet that arrived on `interface` from `src` to `dst` with this TTL / hop
    /// limit; `payload` is the VRRP message.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        interface: &str,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        payload: &[u8],
    ) -> Result<(), Dropped> {
        let r = self.route(now, interface, src, dst, ttl, payload);
        if r.is_err() {
            self.dropped += 1;
        }
        self.collect(now);
        r
    }

    fn route(
        &mut self,
        now: Instant,
        interface: &str,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        payload: &[u8],
    ) -> Result<(), Dropped> {
        let adv = Advert::parse(src, dst, payload)?;
        let i = self
            .specs
            .iter()
            .position(|s| {
                s.interface == interface && s.config.own.is_ipv4() == src.is_ipv4() && s.config.vrid == adv.vrid
            })
            .ok_or(Dropped::UnknownVrid(adv.vrid))?;
        let spec = &self.specs[i];
        if src == spec.config.own {
            return Err(Dropped::Own);
        }
        if dst.is_multicast() && ttl != wire::TTL {
            return Err(Dropped::Ttl(ttl));
        }
        // keepalived keeps unicast and multicast instances apart: each refuses the other kind.
        if spec.unicast_peers.is_empty() != dst.is_multicast() {
            return Err(Dropped::Mode);
        }
        if !spec.unicast_peers.is_empty() && !spec.unicast_peers.contains(&src) {
            return Err(Dropped::NotPeer(src));
        }
        self.instances[i]
            .handle_advert(now, src, &adv)
            .map_err(|reason| Dropped::Refused { instance: spec.name.clone(), reason })
    }

    /// Runs every timer that is due. A member of a sync group claims the addresses only when
    /// no other member hears a master it would not preempt (keepalived's
    /// `vrrp_sync_can_goto_master`); otherwise its timer starts again.
    pub fn handle_timeout(&mut self, now: Instant) {
        for k in 0..self.instances.len() {
            if self.instances[k].poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            if self.instances[k].down_due(now) {
                if let Some(g) = self.group_of[k] {
                    let held = self.groups[g].1.iter().any(|&m| m != k && self.instances[m].hears_master(now));
                    if held {
                        self.instances[k].restart_down_timer(now);
                    }
                }
            }
            self.instances[k].handle_timeout(now);
        }
        self.collect(now);
    }

    /// The earliest timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.instances.iter().filter_map(Instance::poll_timeout).min()
    }

    /// The next event: the instance's index and what to do.
    pub fn poll_event(&mut self) -> Option<(usize, Event)> {
        self.events.pop_front()
    }

    /// A tracked script or interface now succeeds (`ok`) or fails.
    pub fn set_tracked(&mut self, now: Instant, target: Target, ok: bool) {
        if self.ok.get(&target) == Some(&ok) {
            return;
        }
        self.ok.insert(target.clone(), ok);
        for i in 0..self.instances.len() {
            if self.specs[i].tracked.iter().any(|t| t.what == target) {
                self.retrack(i, now);
            }
        }
        self.sync_faults(now);
        self.collect(now);
    }

    fn retrack(&mut self, i: usize, now: Instant) {
        let ok = &self.ok;
        let (p, fault) =
            track::effective(self.specs[i].config.priority, &self.specs[i].tracked, |t| *ok.get(t).unwrap_or(&true));
        // Before start these only record the values.
        self.instances[i].set_priority(now, p);
        self.instances[i].set_fault(now, fault);
    }

    /// A group with a member faulted by its own tracking holds all its members in FAULT.
    fn sync_faults(&mut self, now: Instant) {
        for (_, members) in &self.groups {
            let any = members.iter().any(|&m| self.instances[m].own_fault());
            for &m in members {
                self.instances[m].set_group_fault(now, any);
            }
        }
    }

    /// Moves the instances' events to the router's queue, making sync groups follow a member
    /// that became master or backup.
    fn collect(&mut self, now: Instant) {
        let mut k = 0;
        // Following can cause further changes; each instance changes at most twice per
        // call, so this ends.
        while k < self.instances.len() {
            let mut follow = None;
            while let Some(e) = self.instances[k].poll_event() {
                // The group follows a member into MASTER, and out of MASTER into BACKUP; other
                // changes (a start, the end of a fault) are each member's own.
                match e {
                    Event::Changed { to: State::Master, .. } => follow = Some(State::Master),
                    Event::Changed { from: State::Master, to: State::Backup } => follow = Some(State::Backup),
                    _ => {}
                }
                self.events.push_back((k, e));
            }
            if let (Some(to), Some(g)) = (follow, self.group_of[k]) {
                let members = self.groups[g].1.clone();
                let mut again = usize::MAX;
                for m in members {
                    if m != k && self.instances[m].state() != to {
                        self.instances[m].follow(now, to);
                        again = again.min(m);
                    }
                }
                if again < k {
                    // Drain the followers that come before k too.
                    for m in again..k {
                        while let Some(e) = self.instances[m].poll_event() {
                            self.events.push_back((m, e));
                        }
                    }
                }
            }
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn spec(name: &str, vrid: u8, vip: &str) -> InstanceSpec {
        InstanceSpec {
            name: name.into(),
            interface: "eth1".into(),
            unicast_peers: vec![],
            config: Config {
                version: Version::V2,
                vrid,
                priority: 100,
                interval_cs: 100,
                preempt: true,
                preempt_delay: Duration::ZERO,
                start_master: false,
                addrs: vec![ip(vip)],
                password: None,
                own: ip("198.18.1.2"),
                garp_repeat: 5,
                garp_delay: Duration::ZERO,
                garp_refresh: Duration::ZERO,
                check_addrs: true,
            },
            tracked: vec![],
        }
    }

    fn states(r: &Router) -> Vec<State> {
        r.instances().map(|(_, i)| i.state()).collect()
    }

    #[test]
    fn packets_reach_their_instance_or_are_dropped_with_a_reason() {
        let mut r = Router::new(vec![spec("A", 1, "198.18.0.1"), spec("B", 2, "198.18.0.2")], vec![]).unwrap();
        let now = Instant::from_secs(1);
        r.start(now);
        let (src, dst) = (ip("198.18.1.3"), IpAddr::V4(wire::GROUP4));
        let adv = |vrid, vip: &str| {
            Advert { version: Version::V2, vrid, priority: 200, interval_cs: 100, password: None, addrs: vec![ip(vip)] }
                .emit(src, dst)
        };
        assert_eq!(r.handle_packet(now, "eth1", src, dst, 255, &adv(2, "198.18.0.2")), Ok(()));
        assert_eq!(r.handle_packet(now, "eth1", src, dst, 254, &adv(2, "198.18.0.2")), Err(Dropped::Ttl(254)));
        assert_eq!(r.handle_packet(now, "eth1", src, dst, 255, &adv(3, "198.18.0.2")), Err(Dropped::UnknownVrid(3)));
        assert_eq!(r.handle_packet(now, "eth2", src, dst, 255, &adv(1, "198.18.0.1")), Err(Dropped::UnknownVrid(1)));
        assert!(matches!(
            r.handle_packet(now, "eth1", src, dst, 255, &adv(1, "198.18.0.2")),
            Err(Dropped::Refused { reason: Refused::Addresses, .. })
        ));
        assert_eq!(r.dropped, 4);
        assert!(Router::new(vec![spec("A", 1, "198.18.0.1"), spec("B", 1, "198.18.0.2")], vec![]).is_err());
    }

    #[test]
    fn a_sync_group_moves_together() {
        let mut r = Router::new(
            vec![spec("A", 1, "198.18.0.1"), spec("B", 2, "198.18.0.2")],
            vec![("G".into(), vec!["A".into(), "B".into()])],
        )
        .unwrap();
        let mut a = spec("A", 1, "198.18.0.1");
        a.tracked.push(Tracked { what: Target::Interface("eth9".into()), weight: 0, reverse: false });
        let t0 = Instant::from_secs(1);
        r.start(t0);
        assert_eq!(states(&r), [State::Backup, State::Backup]);
        // B hears a master, A does not: A's timer makes both masters.
        let (src, dst) = (ip("198.18.1.3"), IpAddr::V4(wire::GROUP4));
        let b_adv = Advert {
            version: Version::V2,
            vrid: 2,
            priority: 200,
            interval_cs: 100,
            password: None,
            addrs: vec![ip("198.18.0.2")],
        }
        .emit(src, dst);
        // A's timer runs out while B hears its master every second: the group stays backup
        // (no flapping).
        for s in 0..8 {
            r.handle_packet(t0 + Duration::from_secs(s), "eth1", src, dst, 255, &b_adv).unwrap();
            r.handle_timeout(t0 + Duration::from_millis(s * 1000 + 500));
            assert_eq!(states(&r), [State::Backup, State::Backup], "at {s}.5 s");
        }
        // B's master falls silent too: both become masters together.
        for s in [12, 16] {
            r.handle_timeout(t0 + Duration::from_secs(s));
        }
        assert_eq!(states(&r), [State::Master, State::Master]);
        // B hears a higher master again: the whole group steps back.
        r.handle_packet(t0 + Duration::from_secs(17), "eth1", src, dst, 255, &b_adv).unwrap();
        assert_eq!(states(&r), [State::Backup, State::Backup]);
        // A fault of one member faults the group; recovery brings both back as backups.
        let mut r2 =
            Router::new(vec![a, spec("B", 2, "198.18.0.2")], vec![("G".into(), vec!["A".into(), "B".into()])]).unwrap();
        r2.start(t0);
        r2.set_tracked(t0, Target::Interface("eth9".into()), false);
        assert_eq!(states(&r2), [State::Fault, State::Fault]);
        r2.set_tracked(t0, Target::Interface("eth9".into()), true);
        assert_eq!(states(&r2), [State::Backup, State::Backup]);
        let _ = std::iter::from_fn(|| r.poll_event()).count();
    }
}
