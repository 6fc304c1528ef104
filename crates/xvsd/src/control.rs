//! The daemon's state machine: every request from xvsadm, the periodic work, and the snapshot
//! listings are built from. It keeps the configuration in `xvs-core` and mirrors it into the
//! dataplane; each request is validated completely first, and a change the dataplane cannot
//! take is undone in the core, so a refused request leaves everything as it was.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use xvs_api::{
    ApiError, ConnState, DestSpec, DestState, KeySpec, Request, Response, ServiceSpec, ServiceState, Snapshot,
};
use xvs_core::{Balancer, Error, Instant, ServiceId, ServiceKey};
use xvs_dataplane::{Director, Publisher, Sweeper};
use xvs_health::{CheckId, Event, Monitor, Outcome, Plan};

mod announce;
mod apply;
mod drops;
mod part;
mod standby;
mod sweep;
mod sysctl;
mod trash;

/// The dataplane side: the loaded director, its publisher and its sweeper.
pub struct Dp {
    /// The loaded director.
    pub director: Director,
    /// Mirrors the core into the maps.
    pub publisher: Publisher,
    /// Expires connections.
    pub sweeper: Sweeper,
}

/// The daemon's state.
pub struct Control {
    /// Configuration, statistics, estimator.
    pub lb: Balancer,
    /// The dataplane (absent in tests that exercise only the control plane).
    pub dp: Option<Dp>,
    /// Health checks of the applied configuration, when it has any.
    pub health: Option<Monitor>,
    /// Health events not yet handed to the daemon (logs and scripts).
    events: Vec<Event>,
    /// Grows with every `-Z`: counters read before one must not land after it. (Other changes
    /// need no such guard: ids are generational, so counters read for a server or service that
    /// has gone since find nothing to land on.)
    changes: u64,
    /// A large apply is running: one log line for it, not one per service.
    bulk: bool,
    /// Real servers added since the daemon last resolved their neighbours.
    new_servers: HashSet<IpAddr>,
    /// Health state a previous daemon saved, for the first monitor this one starts.
    pub restore_health: Option<xvs_health::Saved>,
    /// What the last applied keepalived.conf (or `keep_unlisted` file) asked for, health
    /// included: a reload changes only what differs from it.
    file_target: Vec<(ServiceSpec, Vec<DestSpec>)>,
    /// The connection tables opened apart, for listings without the lock.
    conn_tables: Option<std::sync::Arc<xvs_dataplane::ConnTables>>,
    /// The counter maps opened apart, read without the lock.
    counter_reader: Option<std::sync::Arc<xvs_dataplane::CounterReader>>,
    /// The sweep program's own handle, run without the lock ([`crate::refresh::sweep`]).
    sweep_runner: Option<std::sync::Arc<xvs_dataplane::SweepRunner>>,
    /// The token of the table the last plain apply left, while nothing else changed it.
    base: part::Base,
}

fn api_error(e: &Error) -> Response {
    Response::Error(ApiError { errno: e.errno().to_string(), message: e.to_string(), ..Default::default() })
}

fn dp_error(e: &xvs_dataplane::Error) -> Response {
    let errno = match e {
        xvs_dataplane::Error::Capacity(_) => "ENOMEM",
        xvs_dataplane::Error::Unsupported(_) => "EOPNOTSUPP",
        _ => "EIO",
    };
    Response::Error(ApiError { errno: errno.into(), message: e.to_string(), ..Default::default() })
}

fn unsupported(msg: &str) -> Error {
    Error::Unsupported(msg.to_string())
}

/// What the XDP dataplane cannot carry, refused before anything changes (docs/differences.md).
fn check_service(key: &ServiceKey) -> Result<(), Error> {
    xvs_dataplane::Publisher::check_service(key).map_err(|e| unsupported(&e.to_string()))
}

/// A real server's core configuration, if the XDP dataplane can carry it.
fn dest_config(key: &ServiceKey, d: &DestSpec) -> Result<xvs_core::DestConfig, Error> {
    let c = d.core_config()?;
    xvs_dataplane::Publisher::check_dest(key, d.port, &c).map_err(|e| unsupported(&e.to_string()))?;
    Ok(c)
}

impl Control {
    /// A control with an empty configuration.
    pub fn new(dp: Option<Dp>) -> Control {
        Control {
            lb: Balancer::new(seed()),
            dp,
            health: None,
            events: Vec::new(),
            changes: 0,
            bulk: false,
            new_servers: HashSet::new(),
            restore_health: None,
            file_target: Vec::new(),
            conn_tables: None,
            counter_reader: None,
            sweep_runner: None,
            base: part::Base::new(seed()),
        }
    }

    /// Picks up a running dataplane: its services, real servers (in their slots) and tunables
    /// become the core's configuration, and nothing in the maps is rewritten.
    pub fn adopt(director: Director, now: Instant) -> Result<Control, String> {
        let adopted = xvs_dataplane::adopt::read_published(&director).map_err(|e| e.to_string())?;
        let mut lb = Balancer::new(seed());
        if let Some((t, s)) = xvs_dataplane::adopt::read_config(&director).map_err(|e| e.to_string())? {
            lb.timeouts = t;
            lb.sysctl = s;
        }
        for a in &adopted {
            lb.services
                .restore_service(a.slot, a.key, a.config.clone(), &a.dests, now)
                .map_err(|e| format!("service {} found in the pinned maps: {e}", a.key))?;
        }
        let mut publisher = Publisher::adopt(&director, &lb.services, &adopted).map_err(|e| e.to_string())?;
        // Servers removed while busy: back into the trash in their slots, so that the next
        // server added does not take a slot that live connections still name.
        let busy = xvs_dataplane::adopt::read_busy_removed(&director, &adopted).map_err(|e| e.to_string())?;
        for b in &busy {
            let id = lb
                .services
                .restore_trashed(b.slot, b.svc_key, b.addr, b.port, b.config, now)
                .map_err(|e| format!("removed server {} found in the connection table: {e}", b.addr))?;
            publisher.adopt_removed(&director, id, b).map_err(|e| e.to_string())?;
            tracing::info!(server = %b.addr, service = %b.svc_key, refs = b.refs, "kept a removed server that connections still use");
        }
        let sweeper = Sweeper::default();
        let conn_tables = director.conn_tables().map_err(|e| e.to_string())?;
        let counter_reader = director.counter_reader().map_err(|e| e.to_string())?;
        let sweep_runner = director.sweep_runner().map_err(|e| e.to_string())?;
        let mut c = Control::new(Some(Dp { director, publisher, sweeper }));
        c.lb = lb;
        c.conn_tables = Some(std::sync::Arc::new(conn_tables));
        c.counter_reader = Some(std::sync::Arc::new(counter_reader));
        c.sweep_runner = Some(std::sync::Arc::new(sweep_runner));
        if adopted.is_empty() {
            c.write_config().map_err(|e| e.to_string())?;
        } else {
            tracing::info!(services = adopted.len(), "picked up the running configuration from the pinned maps");
        }
        c.lb.add_service_hook_estimator(now);
        Ok(c)
    }

    fn publish(&mut self, id: ServiceId) -> Result<(), xvs_dataplane::Error> {
        match &mut self.dp {
            Some(dp) => dp.publisher.publish(&mut dp.director, &self.lb.services, id),
            None => Ok(()),
        }
    }

    fn republish_key(&mut self, key: &ServiceKey) -> Result<(), xvs_dataplane::Error> {
        match self.lb.services.find(key) {
            Some(id) => self.publish(id),
            None => Ok(()),
        }
    }

    /// Handles one request at `now`; refusals are logged with their reason.
    pub fn handle(&mut self, req: Request, now: Instant) -> Response {
        let what = request_name(&req);
        if matches!(req, Request::Zero { .. }) {
            self.changes += 1;
        }
        if let Err(e) = self.base.admit(&req) {
            return e;
        }
        let resp = self.handle_inner(req, now);
        if let Response::Error(e) = &resp {
            tracing::warn!(request = what, errno = %e.errno, "refused: {}", e.message);
        }
        resp
    }

    fn handle_inner(&mut self, req: Request, now: Instant) -> Response {
        match req {
            Request::AddService { service } => self.add_service(&service, now),
            Request::EditService { mut service } => {
                // ipvsadm's -E cannot name allowed sources: it keeps the service's own.
                if service.allowed_sources.is_empty() {
                    if let Some(s) = self.lb.services.find(&service.core_key()).and_then(|id| self.lb.services.get(id))
                    {
                        service.allowed_sources = s.config().allowed_sources.iter().map(|p| p.to_string()).collect();
                    }
                }
                self.edit_service(&service, now)
            }
            Request::DeleteService { key } => {
                let key: ServiceKey = key.into();
                let Some(id) = self.lb.services.find(&key) else { return api_error(&Error::NoSuchService) };
                if let Err(e) = self.lb.services.delete_service(&key, now) {
                    return api_error(&e);
                }
                if let Some(dp) = &mut self.dp {
                    if let Err(e) = dp.publisher.unpublish(&mut dp.director, id) {
                        return dp_error(&e);
                    }
                }
                if !self.bulk {
                    tracing::info!(service = %key, "service deleted");
                }
                Response::Ok
            }
            Request::Clear => {
                self.lb.services.flush(now);
                if let Some(dp) = &mut self.dp {
                    if let Err(e) = dp.publisher.sync_all(&mut dp.director, &self.lb.services) {
                        return dp_error(&e);
                    }
                }
                tracing::info!("all services deleted");
                Response::Ok
            }
            Request::AddDest { key, dest } => self.add_dest(&key.into(), &dest),
            Request::EditDest { key, dest } => self.edit_dest(&key.into(), &dest),
            Request::DeleteDest { key, addr, port } => {
                let key: ServiceKey = key.into();
                let slot = self
                    .lb
                    .services
                    .find(&key)
                    .and_then(|sid| self.lb.services.find_dest(sid, &addr, port))
                    .and_then(|did| self.dp.as_ref()?.publisher.dest_slot(did));
                if let Err(e) = self.lb.services.delete_dest(&key, &addr, port, now) {
                    return api_error(&e);
                }
                if !self.bulk {
                    tracing::info!(service = %key, real_server = %addr, port, "real server removed");
                }
                if let Err(e) = self.republish_key(&key) {
                    return dp_error(&e);
                }
                // expire_nodest_conn: the kernel (>= 5.9) expires the server's connections at
                // once, not at their next packet.
                if let (true, Some((idx, gen)), Some(dp)) = (self.lb.sysctl.expire_nodest_conn, slot, self.dp.as_mut())
                {
                    match dp.sweeper.flush_dest(&dp.director, idx, gen) {
                        Ok(n) => {
                            tracing::info!(real_server = %addr, connections = n, "expired its connections (expire_nodest_conn)")
                        }
                        Err(e) => tracing::warn!(real_server = %addr, error = %e, "cannot expire its connections"),
                    }
                }
                Response::Ok
            }
            Request::Zero { key } => {
                let key: Option<ServiceKey> = key.map(Into::into);
                match self.lb.zero(key.as_ref()) {
                    Ok(()) => Response::Ok,
                    Err(e) => api_error(&e),
                }
            }
            Request::SetTimeouts { tcp, tcpfin, udp } => {
                let max = xvs_core::sysctl::MAX_SET_TIMEOUT;
                if tcp > max || tcpfin > max || udp > max {
                    return api_error(&Error::Invalid(format!("timeouts are at most {max} seconds")));
                }
                self.lb.timeouts.set(tcp, tcpfin, udp);
                self.write_config().map_or_else(|e| dp_error(&e), |()| Response::Ok)
            }
            Request::Snapshot { conns } => Response::Snapshot(Box::new(self.snapshot(conns, now))),
            Request::Apply { config, dry_run } => self.apply(&config, dry_run, now),
            Request::ApplyPart { removed, added, dry_run, .. } => self.apply_part(&removed, added, dry_run, now),
            Request::Batch { requests } => self.batch(requests, now),
            Request::SetSysctl { name, value } => self.set_sysctl(&name, value),
            // The daemons run beside the control (crate::sync); a control alone has none.
            Request::Drain { .. } => Response::Error(ApiError {
                errno: "ENOENT".into(),
                message: "xvsd announces no VIPs: its --config file has no [bgp] section".into(),
                ..Default::default()
            }),
            Request::StartDaemon { .. } => {
                api_error(&unsupported("synchronisation daemons run in xvsd (this control has none)"))
            }
            Request::Trace { .. } => {
                api_error(&unsupported("traces are served by xvsd's socket (this control has none)"))
            }
            Request::StopDaemon { .. } => Response::Error(ApiError {
                errno: "ESRCH".into(),
                message: "no synchronisation daemon is running".into(),
                ..Default::default()
            }),
        }
    }

    /// Writes timeouts and tunables to the dataplane.
    pub fn write_config(&mut self) -> Result<(), xvs_dataplane::Error> {
        match &mut self.dp {
            Some(dp) => Publisher::write_config(&mut dp.director, &self.lb.timeouts, &self.lb.sysctl),
            None => Ok(()),
        }
    }

    fn add_service(&mut self, spec: &ServiceSpec, now: Instant) -> Response {
        self.add_service_with_dests(spec, &[], now)
    }

    fn edit_service(&mut self, spec: &ServiceSpec, now: Instant) -> Response {
        let key = spec.core_key();
        // The kernel finds the service before it looks at the scheduler's name.
        let Some(id) = self.lb.services.find(&key) else { return api_error(&Error::NoSuchService) };
        let config = match spec.core_config() {
            Ok(c) => c,
            Err(e) => return api_error(&e),
        };
        let old = self.lb.services.get(id).expect("found").config().clone();
        if let Err(e) = self.lb.services.edit_service(&key, config, now) {
            return api_error(&e);
        }
        if let Err(e) = self.publish(id) {
            let _ = self.lb.services.edit_service(&key, old, now);
            let _ = self.publish(id);
            return dp_error(&e);
        }
        if !self.bulk {
            tracing::info!(service = %key, "service edited");
        }
        Response::Ok
    }

    fn add_dest(&mut self, key: &ServiceKey, d: &DestSpec) -> Response {
        let c = match dest_config(key, d) {
            Ok(c) => c,
            Err(e) => return api_error(&e),
        };
        if self.lb.services.find(key).is_none() {
            return api_error(&Error::NoSuchService);
        }
        if let Err(e) = self.lb.services.add_dest(key, d.addr, d.port, c) {
            return api_error(&e);
        }
        self.new_servers.insert(d.addr);
        if let Err(e) = self.republish_key(key) {
            let _ = self.lb.services.delete_dest(key, &d.addr, d.port, xvs_core::Instant::ZERO);
            let _ = self.republish_key(key);
            return dp_error(&e);
        }
        if !self.bulk {
            tracing::info!(service = %key, real_server = %d.addr, port = d.port, weight = d.weight, "real server added");
        }
        Response::Ok
    }

    fn edit_dest(&mut self, key: &ServiceKey, d: &DestSpec) -> Response {
        let c = match dest_config(key, d) {
            Ok(c) => c,
            Err(e) => return api_error(&e),
        };
        let Some(sid) = self.lb.services.find(key) else { return api_error(&Error::NoSuchService) };
        let Some(did) = self.lb.services.find_dest(sid, &d.addr, d.port) else { return api_error(&Error::NoSuchDest) };
        let old = *self.lb.services.dest(did).expect("found").config();
        if let Err(e) = self.lb.services.edit_dest(key, d.addr, d.port, c) {
            return api_error(&e);
        }
        if let Err(e) = self.republish_key(key) {
            let _ = self.lb.services.edit_dest(key, d.addr, d.port, old);
            let _ = self.republish_key(key);
            return dp_error(&e);
        }
        if !self.bulk {
            tracing::info!(service = %key, real_server = %d.addr, port = d.port, weight = d.weight, "real server edited");
        }
        Response::Ok
    }

    /// The current configuration as specs (what `-S` and `apply` compare against).
    pub fn specs(&self) -> Vec<(ServiceSpec, Vec<DestSpec>)> {
        self.lb.services.iter().map(|(id, _)| self.spec_at(id)).collect()
    }

    fn spec_at(&self, id: ServiceId) -> (ServiceSpec, Vec<DestSpec>) {
        let s = self.lb.services.get(id).expect("listed");
        let view = self.lb.services.view(id).expect("listed");
        let dests = view.iter().map(|(_, d)| DestSpec::from_core(d.addr(), d.port(), d.config())).collect();
        (ServiceSpec::from_core(s.key(), s.config()), dests)
    }

    /// Real servers added since the last call, whose neighbours the daemon should resolve
    /// now (a direct-routing packet to an unresolved neighbour is dropped).
    pub fn take_new_servers(&mut self) -> HashSet<IpAddr> {
        std::mem::take(&mut self.new_servers)
    }

    /// Health events since the last call (for the log and the notify scripts).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Everything listings need.
    /// Counters are as the last gather left them: the daemon gathers them without its lock
    /// just before a listing ([`crate::refresh`]); tests without a daemon call
    /// [`Control::sync_counters`].
    pub fn snapshot(&mut self, conns: bool, now: Instant) -> Snapshot {
        let services = self
            .lb
            .services
            .iter()
            .map(|(id, s)| ServiceState {
                spec: ServiceSpec::from_core(s.key(), s.config()),
                stats: s.stats.counters(),
                rates: s.stats.rates(),
                dests: self
                    .lb
                    .services
                    .view(id)
                    .expect("listed")
                    .iter()
                    .map(|(_, d)| DestState {
                        spec: DestSpec::from_core(d.addr(), d.port(), d.config()),
                        active: d.active_conns(),
                        inactive: d.inactive_conns(),
                        persistent: d.persist_conns(),
                        overloaded: d.is_overloaded(),
                        stats: d.stats.counters(),
                        rates: d.stats.rates(),
                    })
                    .collect(),
            })
            .collect();
        let conn_table_size = self.dp.as_ref().map_or(4096, |d| d.director.options.max_conns);
        let conns = if conns { self.connections(now) } else { Vec::new() };
        let health = self.health.as_ref().map(|m| m.status(std::time::Instant::now())).unwrap_or_default();
        Snapshot {
            conn_table_size,
            timeouts: self.lb.timeouts.shown(),
            services,
            conns,
            health,
            vrrp: Vec::new(),
            daemons: Vec::new(),
            sysctl: self.sysctl_values(),
            bgp: None,
            drops: self.drops(),
        }
    }

    fn connections(&self, now: Instant) -> Vec<ConnState> {
        let Some(t) = &self.conn_tables else { return Vec::new() };
        crate::conns::list(t, &self.lb.timeouts, now)
    }

    /// What listing the connections needs, to do it without the lock (`-Lc` walks every entry).
    pub fn conn_lister(&self) -> Option<(std::sync::Arc<xvs_dataplane::ConnTables>, xvs_core::Timeouts)> {
        self.conn_tables.clone().map(|t| (t, self.lb.timeouts))
    }

    /// The slots whose counters [`Control::gather`] reads, and the change count they belong to.
    pub fn counter_slots(&self) -> CounterSlots {
        CounterSlots {
            changes: self.changes,
            svcs: self.lb.services.iter().map(|(id, _)| id).collect(),
            dests: self
                .lb
                .services
                .iter()
                .flat_map(|(id, _)| self.lb.services.view(id).expect("listed").ids().to_vec())
                .chain(self.lb.services.trash().map(|(id, _)| id))
                .collect(),
        }
    }

    /// What a gather of every counter needs, taken under the lock ([`crate::refresh`]).
    pub fn counter_job(&self) -> Option<(std::sync::Arc<xvs_dataplane::CounterReader>, CounterSlots)> {
        self.counter_reader.clone().map(|r| (r, self.counter_slots()))
    }

    /// Reads the counters of `slots` (without the daemon's lock: this is the slow part).
    pub fn gather(reader: &xvs_dataplane::CounterReader, slots: CounterSlots) -> Gathered {
        Gathered {
            changes: slots.changes,
            svcs: reader.svc_stats_many(&slots.svcs),
            dests: reader.dests_many(&slots.dests),
        }
    }

    /// Takes counters read by [`Control::gather`], unless a `-Z` came since (the next round
    /// reads them again). Health activity never throws a gather away.
    pub fn apply_counters(&mut self, g: Gathered) {
        if g.changes != self.changes {
            return;
        }
        let mut total = xvs_core::Counters::default();
        for (id, c) in g.svcs {
            total.accumulate(&c);
            let _ = self.lb.services.set_service_stats(id, c);
        }
        for (d, counters, stats) in g.dests {
            if let Some(c) = counters {
                let _ = self.lb.services.set_dest_counters(d, c);
            }
            if let Some(s) = stats {
                let _ = self.lb.services.set_dest_stats(d, s);
            }
        }
        self.lb.total.set_raw(total);
    }

    /// Runs the core's timers (estimator, trash, scheduler collectors) due at `now`.
    pub fn timers(&mut self, now: Instant) {
        self.note_held_servers(now);
        while let Some(t) = self.lb.poll_timeout().filter(|t| *t <= now) {
            self.lb.handle_timeout(t);
        }
        // An interface's MAC may change while attached (the other-host check compares with it).
        if let Some(dp) = self.dp.as_mut() {
            if let Err(e) = dp.director.refresh_macs() {
                tracing::warn!(error = %e, "cannot refresh the interfaces' MACs");
            }
        }
    }

    /// Copies the dataplane's counters and statistics into the core.
    pub fn sync_counters(&mut self) {
        let Some(dp) = &self.dp else { return };
        let mut total = xvs_core::Counters::default();
        let ids: Vec<ServiceId> = self.lb.services.iter().map(|(id, _)| id).collect();
        for id in ids {
            if let Ok(c) = dp.director.svc_stats(id) {
                total.accumulate(&c);
                let _ = self.lb.services.set_service_stats(id, c);
            }
        }
        let dests: Vec<xvs_core::DestId> = self
            .lb
            .services
            .iter()
            .flat_map(|(id, _)| self.lb.services.view(id).expect("listed").ids().to_vec())
            .chain(self.lb.services.trash().map(|(id, _)| id))
            .collect();
        for d in dests {
            if let Ok(c) = dp.director.dest_counters(d) {
                let _ = self.lb.services.set_dest_counters(d, c);
            }
            if let Ok(s) = dp.director.dest_stats(d) {
                let _ = self.lb.services.set_dest_stats(d, s);
            }
        }
        self.lb.total.set_raw(total);
    }

    /// The periodic work in one call (tests; xvsd splits it so the slow counter reads happen
    /// without its lock): expire connections, copy counters, run the core's timers.
    pub fn tick(&mut self, now: Instant) -> Option<xvs_dataplane::SweepReport> {
        let report = self.sweep();
        self.sync_counters();
        self.timers(now);
        report
    }
}

/// Which counters to read: services and real servers (including removed ones still
/// draining), at a given change count.
pub struct CounterSlots {
    changes: u64,
    svcs: Vec<ServiceId>,
    dests: Vec<xvs_core::DestId>,
}

/// Counters read from the dataplane, to be applied under the lock.
pub struct Gathered {
    changes: u64,
    svcs: Vec<(ServiceId, xvs_core::Counters)>,
    dests: Vec<(xvs_core::DestId, Option<xvs_core::DestCounters>, Option<xvs_core::Counters>)>,
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

fn request_name(req: &Request) -> &'static str {
    match req {
        Request::AddService { .. } => "add-service",
        Request::EditService { .. } => "edit-service",
        Request::DeleteService { .. } => "delete-service",
        Request::Clear => "clear",
        Request::AddDest { .. } => "add-server",
        Request::EditDest { .. } => "edit-server",
        Request::DeleteDest { .. } => "delete-server",
        Request::Zero { .. } => "zero",
        Request::SetTimeouts { .. } => "set",
        Request::Snapshot { .. } => "list",
        Request::Apply { .. } | Request::ApplyPart { .. } => "apply",
        Request::Batch { .. } => "restore",
        Request::StartDaemon { .. } => "start-daemon",
        Request::StopDaemon { .. } => "stop-daemon",
        Request::SetSysctl { .. } => "sysctl",
        Request::Drain { .. } => "bgp-drain",
        Request::Trace { .. } => "trace",
    }
}

/// The key listings and errors print for a service spec.
pub fn key_text(k: &KeySpec) -> String {
    ServiceKey::from(*k).to_string()
}
