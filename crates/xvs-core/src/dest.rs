//! Real servers ("destinations") with the runtime state IPVS keeps for each.

use core::net::IpAddr;

use crate::addr::Family;
use crate::arena::{Arena, RawId};
use crate::model::{DestConfig, ForwardMethod, ServiceKey};
use crate::service::ServiceId;
use crate::stats::Stats;
use crate::time::Instant;

/// The identity of a real server object. It survives removal from the service while
/// connections still refer to it (the kernel's "trash"), and a stale id finds nothing.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DestId(pub(crate) RawId);

impl DestId {
    /// A number that identifies the slot (not unique over time; use the id itself for that).
    pub fn index(&self) -> u32 {
        self.0.index
    }
}

/// A real server and its counters.
#[derive(Clone, Debug)]
pub struct Dest {
    addr: IpAddr,
    port: u16,
    pub(crate) config: DestConfig,
    /// The service this server belongs to, or belonged to when it was removed: the kernel
    /// revives a removed server only into a service with the same identity.
    pub(crate) svc_key: ServiceKey,
    /// The service it is linked into; `None` while in the trash.
    pub(crate) svc: Option<ServiceId>,
    pub(crate) last_weight: i32,
    pub(crate) activeconns: i32,
    pub(crate) totalconns: i32,
    pub(crate) persistconns: i32,
    pub(crate) overload: bool,
    /// Statistics of this server.
    pub stats: Stats,
    /// When it went to the trash with nothing referring to it.
    pub(crate) idle_since: Option<Instant>,
}

impl Dest {
    pub(crate) fn new(svc_key: ServiceKey, svc: ServiceId, addr: IpAddr, port: u16, config: DestConfig) -> Dest {
        Dest {
            addr,
            port,
            config,
            svc_key,
            svc: Some(svc),
            last_weight: config.weight,
            activeconns: 0,
            totalconns: 0,
            persistconns: 0,
            overload: false,
            stats: Stats::default(),
            idle_since: None,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The server's port (0 means "the packet's port").
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address family.
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    /// The configuration (method, weight, thresholds, tunnel).
    pub fn config(&self) -> &DestConfig {
        &self.config
    }

    /// The forwarding method.
    pub fn method(&self) -> ForwardMethod {
        self.config.method
    }

    /// The current weight.
    pub fn weight(&self) -> i32 {
        self.config.weight
    }

    /// The latest non-zero weight (mh builds its table from it, so quiescing does not move it).
    pub fn last_weight(&self) -> i32 {
        self.last_weight
    }

    /// Active connections (TCP ESTABLISHED and the SYN states).
    pub fn active_conns(&self) -> u32 {
        self.activeconns.max(0) as u32
    }

    /// Inactive connections: all bound connections that are not active.
    pub fn inactive_conns(&self) -> u32 {
        (self.totalconns - self.activeconns).max(0) as u32
    }

    /// All connections bound to this server (templates excluded).
    pub fn total_conns(&self) -> u32 {
        self.totalconns.max(0) as u32
    }

    /// Persistence templates bound to this server.
    pub fn persist_conns(&self) -> u32 {
        self.persistconns.max(0) as u32
    }

    /// True while the upper threshold holds new connections off.
    pub fn is_overloaded(&self) -> bool {
        self.overload
    }

    /// True while the server belongs to a service (false in the trash).
    pub fn is_available(&self) -> bool {
        self.svc.is_some()
    }

    /// The service it belongs to.
    pub fn service(&self) -> Option<ServiceId> {
        self.svc
    }

    /// What most schedulers require: not overloaded and a positive weight.
    pub fn is_usable(&self) -> bool {
        !self.overload && self.config.weight > 0
    }

    /// `ip_vs_dest_conn_overhead`: `(active << 8) + total`, i.e. 257·active + inactive.
    /// Computed in 32-bit arithmetic as the kernel's `int`.
    pub fn overhead(&self) -> i32 {
        (self.activeconns.wrapping_shl(8)).wrapping_add(self.totalconns)
    }

    /// The lower threshold in use: `-y`, or three quarters of `-x` when `-y` is 0.
    pub fn l_threshold_val(&self) -> u32 {
        let c = &self.config;
        if c.l_threshold != 0 {
            c.l_threshold
        } else {
            c.u_threshold - c.u_threshold / 4
        }
    }

    /// Re-evaluates the overload flag after a threshold edit (reference §3.7).
    pub(crate) fn rethreshold(&mut self) {
        let total = self.total_conns();
        if self.config.u_threshold == 0 {
            self.overload = false;
        } else if total >= self.config.u_threshold {
            self.overload = true;
        } else if total < self.l_threshold_val() {
            self.overload = false;
        }
    }

    /// A connection (or a template) starts referring to this server.
    pub(crate) fn bind(&mut self, template: bool, active: bool) {
        self.idle_since = None;
        if template {
            self.persistconns += 1;
            return;
        }
        if active {
            self.activeconns += 1;
        }
        self.totalconns += 1;
        if self.config.u_threshold != 0 && self.totalconns as u32 == self.config.u_threshold {
            self.overload = true;
        }
    }

    /// A connection (or template) stops referring to this server.
    pub(crate) fn unbind(&mut self, template: bool, active: bool) {
        if template {
            self.persistconns -= 1;
        } else {
            if active {
                self.activeconns -= 1;
            }
            if self.overload && self.totalconns.max(0) as u32 == self.l_threshold_val() {
                self.overload = false;
            }
            self.totalconns -= 1;
        }
    }

    /// A connection crossed between the active and the inactive states.
    pub(crate) fn set_active(&mut self, active: bool) {
        if active {
            self.activeconns += 1;
        } else {
            self.activeconns -= 1;
        }
    }

    pub(crate) fn refs(&self) -> i32 {
        self.totalconns + self.persistconns
    }

    /// Updates the configuration, keeping the last non-zero weight.
    pub(crate) fn reconfigure(&mut self, config: DestConfig, add: bool) {
        if add || config.weight != 0 {
            self.last_weight = config.weight;
        }
        self.config = config;
        self.rethreshold();
    }
}

/// All real server objects, live and in the trash.
pub(crate) type DestArena = Arena<Dest>;

impl DestArena {
    pub(crate) fn dest(&self, id: DestId) -> Option<&Dest> {
        self.get(id.0)
    }

    pub(crate) fn dest_mut(&mut self, id: DestId) -> Option<&mut Dest> {
        self.get_mut(id.0)
    }
}

/// The real servers of one service, in the kernel's list order (newest first), as schedulers
/// see them.
#[derive(Copy, Clone)]
pub struct DestView<'a> {
    pub(crate) ids: &'a [DestId],
    pub(crate) arena: &'a DestArena,
}

impl<'a> DestView<'a> {
    /// The ids in list order.
    pub fn ids(&self) -> &'a [DestId] {
        self.ids
    }

    /// Number of servers in the list.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the service has no server.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The server at list position `i`.
    pub fn at(&self, i: usize) -> (DestId, &'a Dest) {
        let id = self.ids[i];
        (id, self.arena.dest(id).expect("a listed destination is live"))
    }

    /// Any server by id, including one in the trash; `None` once it was freed.
    pub fn get(&self, id: DestId) -> Option<&'a Dest> {
        self.arena.dest(id)
    }

    /// The list position of `id`, if it is in the list.
    pub fn position(&self, id: DestId) -> Option<usize> {
        self.ids.iter().position(|d| *d == id)
    }

    /// Servers in list order.
    pub fn iter(&self) -> impl Iterator<Item = (DestId, &'a Dest)> + 'a {
        let arena = self.arena;
        self.ids.iter().map(move |id| (*id, arena.dest(*id).expect("a listed destination is live")))
    }
}
