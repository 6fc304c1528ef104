//! The table of virtual services and their real servers: the control-plane half of IPVS
//! (`ip_vs_ctl.c`). Every request is validated completely before anything changes, so a refused
//! request leaves the table exactly as it was.

use core::net::IpAddr;
use core::time::Duration;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::addr::Family;
use crate::arena::{Arena, RawId};
use crate::dest::{Dest, DestArena, DestId, DestView};
use crate::model::MAX_PERSISTENCE_TIMEOUT;
use crate::model::{DestConfig, Error, ForwardMethod, Netmask, Protocol, ServiceConfig, ServiceKey, TunnelKind};
use crate::sched::{self, DestChange, SchedEnv, SchedInput, Scheduler};
use crate::stats::Stats;
use crate::time::Instant;

/// The identity of a live service object.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceId(RawId);

impl ServiceId {
    /// A number that identifies the slot, reused after the service is deleted; the dataplane
    /// indexes its per-service arrays with it.
    pub fn index(&self) -> u32 {
        self.0.index
    }
}

/// How long the trash keeps a real server after the check that first found it idle
/// (`IP_VS_DEST_TRASH_PERIOD`).
pub(crate) const TRASH_IDLE: Duration = Duration::from_secs(120);
/// How often the trash is checked (`IP_VS_DEST_TRASH_PERIOD` / 2).
pub(crate) const TRASH_PERIOD: Duration = Duration::from_secs(60);
/// The FTP control port, which IPVS treats specially in service lookup and persistence.
pub(crate) const FTP_PORT: u16 = 21;

/// A virtual service.
#[derive(Debug)]
pub struct Service {
    key: ServiceKey,
    config: ServiceConfig,
    /// Servers in list order, newest first.
    pub(crate) dests: Vec<DestId>,
    pub(crate) sched: Option<Box<dyn Scheduler>>,
    /// Statistics of the service.
    pub stats: Stats,
    seq: u64,
    generation: u64,
}

impl Service {
    /// The service's identity.
    pub fn key(&self) -> &ServiceKey {
        &self.key
    }

    /// Its place in the order services were added (listings' order): larger is later.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Its servers in the kernel's list order (newest first).
    pub fn dest_ids(&self) -> &[DestId] {
        &self.dests
    }

    /// The bound scheduler, if any (`-s none` has none).
    pub fn scheduler(&self) -> Option<&dyn Scheduler> {
        self.sched.as_deref()
    }

    /// A number that grows with every change to the service or its list of servers (the
    /// moments the kernel calls a scheduler's hooks), so a mirror can tell that it is behind
    /// even when the change left every value as it was.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The persistence timeout, when persistent.
    pub fn persistence(&self) -> Option<Duration> {
        self.config.persistence.map(|s| Duration::from_secs(u64::from(s)))
    }
}

/// A real server's connection counters as the dataplane keeps them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DestCounters {
    /// Active connections.
    pub active: u32,
    /// Inactive connections.
    pub inactive: u32,
    /// Persistence templates.
    pub persistent: u32,
    /// The overload flag (upper threshold reached).
    pub overloaded: bool,
}

/// All services, all real servers (live and trashed), and the lookup indexes.
#[derive(Debug, Default)]
pub struct Services {
    services: Arena<Service>,
    by_key: HashMap<ServiceKey, ServiceId>,
    /// Insertion order, for a stable unsorted listing.
    order: BTreeMap<u64, ServiceId>,
    next_seq: u64,
    pub(crate) dests: DestArena,
    /// Services on port 0 and on the FTP port, which widen the packet lookup.
    port_zero: usize,
    ftp: usize,
    next_trash_check: Option<Instant>,
    /// Removed servers by identity, so adding one back finds it without scanning every
    /// server (which made adding 100k services quadratic).
    trashed: HashMap<(ServiceKey, IpAddr, u16), DestId>,
    /// Trashed servers that lblc/lblcr entries kept elsewhere (the dataplane's) name.
    held_elsewhere: HashSet<DestId>,
}

fn check_unicast(addr: &IpAddr) -> Result<(), Error> {
    let ok = match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.octets()[0] == 0 || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast() || a.is_unicast_link_local()),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("real server address {addr} is not a unicast address")))
    }
}

fn check_service(key: &ServiceKey, config: &ServiceConfig) -> Result<(), Error> {
    if let ServiceKey::Fwmark { mark: 0, .. } = key {
        return Err(Error::Invalid("firewall mark 0 cannot select a service".into()));
    }
    match (key.family(), config.netmask) {
        (Family::V6, Netmask::V6(p)) if !(1..=128).contains(&p) => {
            return Err(Error::Invalid(format!("IPv6 netmask /{p} is outside 1..128")))
        }
        (Family::V4, Netmask::V4(_)) | (Family::V6, Netmask::V6(_)) => {}
        _ => return Err(Error::Invalid("the persistence netmask is of the other address family".into())),
    }
    if let Some(t) = config.persistence {
        if !(1..=MAX_PERSISTENCE_TIMEOUT).contains(&t) {
            return Err(Error::Invalid(format!("persistence timeout {t} is outside 1..{MAX_PERSISTENCE_TIMEOUT}")));
        }
    }
    match config.pe.as_deref() {
        None | Some("sip") => {}
        Some(pe) => return Err(Error::PeNotFound(pe.to_string())),
    }
    Ok(())
}

fn check_dest(svc: &ServiceKey, addr: &IpAddr, config: &DestConfig) -> Result<(), Error> {
    if config.weight < 0 {
        return Err(Error::WeightRange(i64::from(config.weight)));
    }
    if config.l_threshold > config.u_threshold {
        return Err(Error::ThresholdRange { upper: config.u_threshold, lower: config.l_threshold });
    }
    if config.u_threshold > i32::MAX as u32 || config.l_threshold > i32::MAX as u32 {
        return Err(Error::Invalid("connection thresholds must be at most 2147483647".into()));
    }
    if config.method == ForwardMethod::Tunnel && config.tunnel.kind == TunnelKind::Gue && config.tunnel.port == 0 {
        return Err(Error::Invalid("a GUE tunnel needs a non-zero port (--tun-port)".into()));
    }
    if Family::of(addr) != svc.family() && config.method != ForwardMethod::Tunnel {
        return Err(Error::Invalid(format!(
            "real server {addr} is of another address family than the service; only tunnelling can mix families"
        )));
    }
    check_unicast(addr)
}

impl Services {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True without services.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The service with this key.
    pub fn find(&self, key: &ServiceKey) -> Option<ServiceId> {
        self.by_key.get(key).copied()
    }

    /// A service by id.
    pub fn get(&self, id: ServiceId) -> Option<&Service> {
        self.services.get(id.0)
    }

    pub(crate) fn get_mut(&mut self, id: ServiceId) -> Option<&mut Service> {
        self.services.get_mut(id.0)
    }

    /// A real server by id (live or in the trash).
    pub fn dest(&self, id: DestId) -> Option<&Dest> {
        self.dests.dest(id)
    }

    pub(crate) fn dest_mut(&mut self, id: DestId) -> Option<&mut Dest> {
        self.dests.dest_mut(id)
    }

    /// Services in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (ServiceId, &Service)> {
        self.order.values().map(|id| (*id, self.services.get(id.0).expect("ordered services are live")))
    }

    /// The servers of a service, in list order.
    pub fn view(&self, id: ServiceId) -> Option<DestView<'_>> {
        let svc = self.services.get(id.0)?;
        Some(DestView { ids: &svc.dests, arena: &self.dests })
    }

    /// The real server `(addr, port)` of service `svc`.
    pub fn find_dest(&self, svc: ServiceId, addr: &IpAddr, port: u16) -> Option<DestId> {
        let s = self.services.get(svc.0)?;
        s.dests.iter().copied().find(|d| self.dests.dest(*d).is_some_and(|d| d.addr() == *addr && d.port() == port))
    }

    /// Real servers in the trash (removed, still referenced by connections), in slot order.
    pub fn trash(&self) -> impl Iterator<Item = (DestId, &Dest)> {
        let mut ids: Vec<DestId> = self.trashed.values().copied().collect();
        ids.sort_by_key(|d| d.index());
        ids.into_iter().map(|id| (id, self.dests.dest(id).expect("trashed servers are in the arena")))
    }

    /// Adds a service (`-A`). At `now` its scheduler is bound.
    pub fn add_service(&mut self, key: ServiceKey, config: ServiceConfig, now: Instant) -> Result<ServiceId, Error> {
        if self.by_key.contains_key(&key) {
            return Err(Error::ServiceExists);
        }
        check_service(&key, &config)?;
        let view = DestView { ids: &[], arena: &self.dests };
        let sched = config.scheduler.map(|k| sched::bind(k, &view, now));
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = ServiceId(self.services.insert(Service {
            key,
            config,
            dests: Vec::new(),
            sched,
            stats: Stats::default(),
            seq,
            generation: 0,
        }));
        self.by_key.insert(key, id);
        self.order.insert(seq, id);
        self.count_special(&key, 1);
        // Servers of an earlier service with the same identity come back from the trash only
        // when added again, as in the kernel.
        Ok(id)
    }

    fn count_special(&mut self, key: &ServiceKey, add: isize) {
        if let ServiceKey::Addr { port, .. } = key {
            let counter = match *port {
                0 => &mut self.port_zero,
                FTP_PORT => &mut self.ftp,
                _ => return,
            };
            *counter = counter.checked_add_signed(add).expect("special-port counters stay consistent");
        }
    }

    /// Replaces a service's configuration (`-E`). A different scheduler is bound afresh; the
    /// same scheduler keeps its state.
    pub fn edit_service(&mut self, key: &ServiceKey, config: ServiceConfig, now: Instant) -> Result<(), Error> {
        let id = self.find(key).ok_or(Error::NoSuchService)?;
        check_service(key, &config)?;
        let svc = self.services.get(id.0).expect("indexed services are live");
        if let Some(k) = config.scheduler {
            if svc.dests.len() > sched::max_dests(k) {
                return Err(Error::Invalid(format!("{k} takes at most {} real servers", sched::max_dests(k))));
            }
        }
        let rebind = svc.sched.as_ref().map(|s| s.kind()) != config.scheduler;
        let new_sched = if rebind {
            let view = DestView { ids: &svc.dests, arena: &self.dests };
            Some(config.scheduler.map(|k| sched::bind(k, &view, now)))
        } else {
            None
        };
        let svc = self.services.get_mut(id.0).expect("indexed services are live");
        if let Some(s) = new_sched {
            svc.sched = s;
        }
        svc.config = config;
        svc.generation += 1;
        Ok(())
    }

    /// Deletes a service (`-D`); its servers go to the trash.
    pub fn delete_service(&mut self, key: &ServiceKey, now: Instant) -> Result<(), Error> {
        let id = self.find(key).ok_or(Error::NoSuchService)?;
        let svc = self.services.remove(id.0).expect("indexed services are live");
        self.by_key.remove(key);
        self.order.remove(&svc.seq);
        self.count_special(key, -1);
        for d in svc.dests {
            self.trash_dest(d, now);
        }
        Ok(())
    }

    /// Deletes every service (`-C`).
    pub fn flush(&mut self, now: Instant) {
        let keys: Vec<ServiceKey> = self.by_key.keys().copied().collect();
        for k in keys {
            self.delete_service(&k, now).expect("listed services exist");
        }
    }

    fn trash_dest(&mut self, id: DestId, now: Instant) {
        let was_empty = self.trashed.is_empty();
        let d = self.dests.dest_mut(id).expect("listed destinations are live");
        d.svc = None;
        self.trashed.insert((d.svc_key, d.addr(), d.port()), id);
        // As the kernel's trash (ip_vs_trash_put_dest, ip_vs_dest_trash_expire): the first server
        // into an empty trash (re)arms its timer 60 s ahead; a server's idle time counts from the
        // first check that finds it idle, and it is freed 120 s after that: about 180 s after
        // its deletion (testdata/kernel/trash-6.12.txt).
        if was_empty {
            self.next_trash_check = Some(now + TRASH_PERIOD);
        }
    }

    /// Adds a real server (`-a`); a removed server with the same identity comes back from the
    /// trash with its counters.
    pub fn add_dest(&mut self, key: &ServiceKey, addr: IpAddr, port: u16, config: DestConfig) -> Result<DestId, Error> {
        let svc_id = self.find(key).ok_or(Error::NoSuchService)?;
        check_dest(key, &addr, &config)?;
        if self.find_dest(svc_id, &addr, port).is_some() {
            return Err(Error::DestExists);
        }
        let svc = self.services.get(svc_id.0).expect("indexed services are live");
        if let Some(k) = svc.config.scheduler {
            if svc.dests.len() + 1 > sched::max_dests(k) {
                return Err(Error::Invalid(format!("{k} takes at most {} real servers", sched::max_dests(k))));
            }
        }
        let trashed = self.trashed.remove(&(*key, addr, port));
        let id = match trashed {
            Some(id) => {
                let d = self.dests.dest_mut(id).expect("found in the arena");
                d.svc = Some(svc_id);
                d.idle_since = None;
                d.reconfigure(config, true);
                id
            }
            None => DestId(self.dests.insert(Dest::new(*key, svc_id, addr, port, config))),
        };
        let svc = self.services.get_mut(svc_id.0).expect("indexed services are live");
        svc.dests.insert(0, id);
        svc.generation += 1;
        let view = DestView { ids: &svc.dests, arena: &self.dests };
        if let Some(s) = svc.sched.as_mut() {
            s.dests_changed(DestChange::Added(id), &view);
        }
        Ok(id)
    }

    /// Replaces a real server's configuration (`-e`).
    pub fn edit_dest(
        &mut self,
        key: &ServiceKey,
        addr: IpAddr,
        port: u16,
        config: DestConfig,
    ) -> Result<DestId, Error> {
        let svc_id = self.find(key).ok_or(Error::NoSuchService)?;
        check_dest(key, &addr, &config)?;
        let id = self.find_dest(svc_id, &addr, port).ok_or(Error::NoSuchDest)?;
        self.dests.dest_mut(id).expect("listed destinations are live").reconfigure(config, false);
        let svc = self.services.get_mut(svc_id.0).expect("indexed services are live");
        svc.generation += 1;
        let view = DestView { ids: &svc.dests, arena: &self.dests };
        if let Some(s) = svc.sched.as_mut() {
            s.dests_changed(DestChange::Updated(id), &view);
        }
        Ok(id)
    }

    /// Removes a real server (`-d`); it stays in the trash while connections refer to it.
    pub fn delete_dest(&mut self, key: &ServiceKey, addr: &IpAddr, port: u16, now: Instant) -> Result<(), Error> {
        let svc_id = self.find(key).ok_or(Error::NoSuchService)?;
        let id = self.find_dest(svc_id, addr, port).ok_or(Error::NoSuchDest)?;
        let svc = self.services.get_mut(svc_id.0).expect("indexed services are live");
        let pos = svc.dests.iter().position(|d| *d == id).expect("found in the list");
        let prev = pos.checked_sub(1).map(|p| svc.dests[p]);
        svc.dests.remove(pos);
        svc.generation += 1;
        let view = DestView { ids: &svc.dests, arena: &self.dests };
        if let Some(s) = svc.sched.as_mut() {
            s.dests_changed(DestChange::Removed { id, prev }, &view);
        }
        self.trash_dest(id, now);
        Ok(())
    }

    /// Overwrites a real server's connection counters and overload flag with values kept
    /// elsewhere: `xvsd` mirrors what the dataplane counts, so listings and schedulers that run
    /// in the core see the same numbers.
    pub fn set_dest_counters(&mut self, id: DestId, counters: DestCounters) -> Result<(), Error> {
        let d = self.dests.dest_mut(id).ok_or(Error::NoSuchDest)?;
        let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        d.activeconns = clamp(counters.active);
        d.totalconns = clamp(counters.active.saturating_add(counters.inactive));
        d.persistconns = clamp(counters.persistent);
        d.overload = counters.overloaded;
        Ok(())
    }

    /// Overwrites a real server's statistics with running totals kept elsewhere (the
    /// dataplane's per-CPU counters); `-Z` and the estimator keep working on top.
    pub fn set_dest_stats(&mut self, id: DestId, raw: crate::Counters) -> Result<(), Error> {
        self.dests.dest_mut(id).ok_or(Error::NoSuchDest)?.stats.set_raw(raw);
        Ok(())
    }

    /// Overwrites a service's statistics with running totals kept elsewhere.
    pub fn set_service_stats(&mut self, id: ServiceId, raw: crate::Counters) -> Result<(), Error> {
        self.services.get_mut(id.0).ok_or(Error::NoSuchService)?.stats.set_raw(raw);
        Ok(())
    }

    /// Re-creates a service and its real servers in the slots they had, as read back from the
    /// dataplane by a restarted daemon. The servers are given in list order (newest first).
    /// Refused (and nothing changed) when a slot or the key is taken or a value is invalid.
    pub fn restore_service(
        &mut self,
        slot: u32,
        key: ServiceKey,
        config: ServiceConfig,
        dests: &[(u32, IpAddr, u16, DestConfig)],
        now: Instant,
    ) -> Result<ServiceId, Error> {
        if self.by_key.contains_key(&key) {
            return Err(Error::ServiceExists);
        }
        check_service(&key, &config)?;
        for (_, addr, _, c) in dests {
            check_dest(&key, addr, c)?;
        }
        if self.services.get_at(slot) || dests.iter().any(|(s, ..)| self.dests.get_at(*s)) {
            return Err(Error::Invalid("a slot to restore into is taken".into()));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let raw = self
            .services
            .insert_at(
                slot,
                Service {
                    key,
                    config: config.clone(),
                    dests: Vec::new(),
                    sched: None,
                    stats: Stats::default(),
                    seq,
                    generation: 0,
                },
            )
            .expect("checked free above");
        let id = ServiceId(raw);
        let mut ids = Vec::with_capacity(dests.len());
        for (s, addr, port, c) in dests {
            let d = self.dests.insert_at(*s, Dest::new(key, id, *addr, *port, *c)).expect("checked free above");
            ids.push(DestId(d));
        }
        let view = DestView { ids: &ids, arena: &self.dests };
        let sched = config.scheduler.map(|k| sched::bind(k, &view, now));
        let svc = self.services.get_mut(raw).expect("just inserted");
        svc.dests = ids;
        svc.sched = sched;
        self.by_key.insert(key, id);
        self.order.insert(seq, id);
        self.count_special(&key, 1);
        Ok(id)
    }

    /// Re-creates a removed real server that connections still refer to, in the slot it had,
    /// straight into the trash: a restarted daemon finds it in the connection tables, and its
    /// slot must not go to another server while those connections live. `svc_key` is the
    /// service it belonged to (adding it back there revives it, as in the kernel).
    pub fn restore_trashed(
        &mut self,
        slot: u32,
        svc_key: ServiceKey,
        addr: IpAddr,
        port: u16,
        config: DestConfig,
        now: Instant,
    ) -> Result<DestId, Error> {
        if self.dests.get_at(slot) {
            return Err(Error::Invalid(format!("real server slot {slot} is taken")));
        }
        if self.trashed.contains_key(&(svc_key, addr, port)) {
            return Err(Error::DestExists);
        }
        let placeholder = ServiceId(RawId { index: u32::MAX, gen: 0 });
        let mut d = Dest::new(svc_key, placeholder, addr, port, config);
        d.svc = None;
        let id = DestId(self.dests.insert_at(slot, d).expect("checked free above"));
        self.trashed.insert((svc_key, addr, port), id);
        self.next_trash_check.get_or_insert(now + TRASH_PERIOD);
        Ok(id)
    }

    /// Zeroes the statistics of one service and its servers, or of everything (`-Z`).
    pub fn zero(&mut self, key: Option<&ServiceKey>) -> Result<(), Error> {
        let ids: Vec<ServiceId> = match key {
            Some(k) => vec![self.find(k).ok_or(Error::NoSuchService)?],
            None => self.order.values().copied().collect(),
        };
        for id in ids {
            let svc = self.services.get_mut(id.0).expect("listed services are live");
            svc.stats.zero();
            for d in &svc.dests {
                self.dests.dest_mut(*d).expect("listed destinations are live").stats.zero();
            }
        }
        Ok(())
    }

    /// Finds the service for a packet to `(vaddr, vport)`, in the kernel's order: firewall
    /// mark, exact match, the FTP service for FTP data ports, then a port-0 service.
    pub fn lookup(&self, af: Family, proto: Protocol, vaddr: &IpAddr, vport: u16, fwmark: u32) -> Option<ServiceId> {
        if fwmark != 0 {
            if let Some(id) = self.find(&ServiceKey::Fwmark { af, mark: fwmark }) {
                return Some(id);
            }
        }
        let exact = |port| self.find(&ServiceKey::Addr { proto, addr: *vaddr, port });
        if let Some(id) = exact(vport) {
            return Some(id);
        }
        if proto == Protocol::Tcp && self.ftp > 0 && (vport == 20 || vport >= 1024) {
            if let Some(id) = exact(FTP_PORT) {
                return Some(id);
            }
        }
        if self.port_zero > 0 {
            return exact(0);
        }
        None
    }

    /// Runs the service's scheduler for a new connection.
    pub fn schedule(&mut self, id: ServiceId, input: &SchedInput, env: &mut SchedEnv<'_>) -> Option<DestId> {
        let svc = self.services.get_mut(id.0)?;
        env.flags = svc.config.flags;
        let view = DestView { ids: &svc.dests, arena: &self.dests };
        svc.sched.as_mut()?.schedule(&view, input, env)
    }

    /// Says which trashed servers lblc/lblcr entries kept outside the core name (xvsd reads the
    /// dataplane's table, where its connections are scheduled): they stay in the trash, as a
    /// server an entry of the core's own schedulers names does.
    pub fn set_held_elsewhere(&mut self, ids: impl IntoIterator<Item = DestId>) {
        self.held_elsewhere = ids.into_iter().collect();
    }

    /// True when the trash check is due at `now`: the moment [`Services::set_held_elsewhere`]
    /// should be brought up to date.
    pub fn trash_check_due(&self, now: Instant) -> bool {
        self.next_trash_check.is_some_and(|t| now >= t)
    }

    /// The services that schedule by lblc or lblcr (whose entries can hold a server).
    pub fn locality_services(&self) -> impl Iterator<Item = ServiceId> + '_ {
        self.services
            .iter()
            .filter(|(_, s)| matches!(s.config.scheduler, Some(sched::SchedKind::Lblc | sched::SchedKind::Lblcr)))
            .map(|(id, _)| ServiceId(id))
    }

    /// When periodic work (trash, scheduler collectors) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sched = self.services.iter().filter_map(|(_, s)| s.sched.as_ref()?.poll_timeout()).min();
        match (sched, self.next_trash_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the periodic work due at `now`: frees idle trashed servers, runs lblc/lblcr
    /// collectors with the given expirations.
    pub fn handle_timeout(&mut self, now: Instant, lblc_expiration: Duration, lblcr_expiration: Duration) {
        if self.next_trash_check.is_some_and(|t| now >= t) {
            // An lblc/lblcr entry naming a server is a reference too, as in the kernel.
            let mut held = Vec::new();
            for (_, s) in self.services.iter() {
                if let Some(sched) = s.sched.as_ref() {
                    sched.held(&mut held);
                }
            }
            let held: HashSet<DestId> = held.into_iter().chain(self.held_elsewhere.iter().copied()).collect();
            // Counters mirrored from elsewhere (set_dest_counters) reach zero without an
            // unbind: the idle period starts when this check first sees it.
            for id in self.trashed.values() {
                if let Some(d) = self.dests.dest_mut(*id) {
                    if d.refs() == 0 && !held.contains(id) && d.idle_since.is_none() {
                        d.idle_since = Some(now);
                    }
                }
            }
            let dests = &self.dests;
            let free: Vec<(ServiceKey, IpAddr, u16)> = self
                .trashed
                .iter()
                .filter(|(_, id)| {
                    !held.contains(id)
                        && dests
                            .dest(**id)
                            .is_some_and(|d| d.refs() == 0 && d.idle_since.is_some_and(|t| now >= t + TRASH_IDLE))
                })
                .map(|(k, _)| *k)
                .collect();
            for k in free {
                if let Some(id) = self.trashed.remove(&k) {
                    self.dests.remove(id.0);
                }
            }
            self.next_trash_check = (!self.trashed.is_empty()).then_some(now + TRASH_PERIOD);
        }
        let ids: Vec<RawId> = self.services.iter().map(|(id, _)| id).collect();
        for id in ids {
            let svc = self.services.get_mut(id).expect("listed services are live");
            let Some(s) = svc.sched.as_mut() else {
                continue;
            };
            if s.poll_timeout().is_some_and(|t| now >= t) {
                let exp = if s.kind() == sched::SchedKind::Lblcr { lblcr_expiration } else { lblc_expiration };
                let view = DestView { ids: &svc.dests, arena: &self.dests };
                s.handle_timeout(now, &view, exp);
            }
        }
    }
}
