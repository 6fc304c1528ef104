//! The announced set and how it reaches the routing daemon.
//!
//! The caller feeds the VIPs' readiness ([`Announcer::handle_readiness`]), the operator's drain
//! and the daemon's stop; [`Announcer::poll`] says when the routing daemon must be told a new
//! set of routes ([`Push`]), and [`Announcer::handle_result`] what came of it. One push is in
//! flight at a time; a failed one is retried with a doubling delay, always with the set that is
//! wanted at that moment (never an outdated one).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use xvs_core::Instant;

use crate::ready::Reason;

/// Retry delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The first retry after a failed push.
    pub retry_min: Duration,
    /// The longest delay between retries.
    pub retry_max: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { retry_min: Duration::from_secs(1), retry_max: Duration::from_secs(30) }
    }
}

/// Routes the routing daemon must announce from now on (and no others).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// Identifies the push in [`Announcer::handle_result`].
    pub id: u64,
    /// The VIPs to announce, as host routes.
    pub routes: BTreeSet<IpAddr>,
}

/// One VIP as listings show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipStatus {
    /// The VIP.
    pub vip: IpAddr,
    /// The routing daemon confirmed that it announces it.
    pub announced: bool,
    /// Why it is (`Ready`) or is not wanted.
    pub reason: Reason,
}

/// The announcer's state.
#[derive(Clone, Debug)]
pub struct Announcer {
    settings: Settings,
    ready: BTreeMap<IpAddr, Reason>,
    drained_all: bool,
    drained: BTreeSet<IpAddr>,
    stopping: bool,
    /// What the daemon confirmed; `None` until the first push succeeds (it may still announce
    /// what an earlier xvsd left).
    applied: Option<BTreeSet<IpAddr>>,
    in_flight: Option<u64>,
    next_id: u64,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    pushes: u64,
}

impl Announcer {
    /// An announcer that has announced nothing yet.
    pub fn new(settings: Settings) -> Announcer {
        Announcer {
            settings,
            ready: BTreeMap::new(),
            drained_all: false,
            drained: BTreeSet::new(),
            stopping: false,
            applied: None,
            in_flight: None,
            next_id: 1,
            failures: 0,
            retry_at: None,
            last_error: None,
            pushes: 0,
        }
    }

    /// The VIPs' readiness now (from [`crate::readiness`]); VIPs not in `ready` are not
    /// announced.
    pub fn handle_readiness(&mut self, ready: BTreeMap<IpAddr, Reason>) {
        self.ready = ready;
    }

    /// The operator drains `vip` (or, with `None`, the whole director): it is withdrawn and
    /// stays withdrawn, whatever its readiness, until undrained.
    pub fn drain(&mut self, vip: Option<IpAddr>) -> Result<(), String> {
        match vip {
            None => self.drained_all = true,
            Some(v) if self.ready.contains_key(&v) => {
                self.drained.insert(v);
            }
            Some(v) => return Err(format!("{v} is not a VIP this director announces")),
        }
        Ok(())
    }

    /// Ends a drain of `vip` (with `None`: every drain, the director's and each VIP's).
    pub fn undrain(&mut self, vip: Option<IpAddr>) -> Result<(), String> {
        match vip {
            None => {
                self.drained_all = false;
                self.drained.clear();
            }
            Some(v) if self.drained.remove(&v) => {}
            Some(v) if self.drained_all => {
                return Err(format!("the whole director is drained; undrain it (not {v} alone) first"))
            }
            Some(v) => return Err(format!("{v} is not drained")),
        }
        Ok(())
    }

    /// The drains, to be kept across restarts: (the whole director, single VIPs).
    pub fn drains(&self) -> (bool, BTreeSet<IpAddr>) {
        (self.drained_all, self.drained.clone())
    }

    /// Drains kept by an earlier daemon (see [`Announcer::drains`]).
    pub fn restore_drains(&mut self, all: bool, vips: BTreeSet<IpAddr>) {
        self.drained_all = all;
        self.drained = vips;
    }

    /// xvsd is stopping: everything is withdrawn.
    pub fn handle_stop(&mut self) {
        self.stopping = true;
    }

    fn reason(&self, vip: &IpAddr, ready: &Reason) -> Reason {
        if self.stopping {
            Reason::Stopping
        } else if self.drained_all || self.drained.contains(vip) {
            Reason::Drained
        } else {
            ready.clone()
        }
    }

    /// The VIPs that should be announced now.
    pub fn wanted(&self) -> BTreeSet<IpAddr> {
        self.ready.iter().filter(|(v, r)| self.reason(v, r) == Reason::Ready).map(|(v, _)| *v).collect()
    }

    /// A push to make now, if the daemon's routes differ from the wanted ones (or it has not
    /// confirmed any yet) and no push is in flight or waiting for its retry time.
    pub fn poll(&mut self, now: Instant) -> Option<Push> {
        if self.in_flight.is_some() || self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        let routes = self.wanted();
        if self.applied.as_ref() == Some(&routes) {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight = Some(id);
        self.pushes += 1;
        Some(Push { id, routes })
    }

    /// What came of push `id`: on success the daemon announces its routes; on failure the
    /// next push waits (1 s, doubling up to 30 s by default).
    pub fn handle_result(&mut self, id: u64, routes: BTreeSet<IpAddr>, result: Result<(), String>, now: Instant) {
        if self.in_flight != Some(id) {
            return;
        }
        self.in_flight = None;
        match result {
            Ok(()) => {
                self.applied = Some(routes);
                self.failures = 0;
                self.retry_at = None;
                self.last_error = None;
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                let shift = (self.failures - 1).min(16);
                let delay = self.settings.retry_min.saturating_mul(1 << shift).min(self.settings.retry_max);
                self.retry_at = Some(now + delay);
                self.last_error = Some(e);
            }
        }
    }

    /// Every VIP, with what the daemon announces and why.
    pub fn status(&self) -> Vec<VipStatus> {
        let applied = self.applied.clone().unwrap_or_default();
        let mut out: Vec<VipStatus> = self
            .ready
            .iter()
            .map(|(v, r)| VipStatus { vip: *v, announced: applied.contains(v), reason: self.reason(v, r) })
            .collect();
        // Routes still announced for VIPs no longer configured (until the next push lands).
        for v in applied.iter().filter(|v| !self.ready.contains_key(v)) {
            out.push(VipStatus { vip: *v, announced: true, reason: Reason::NoService });
        }
        out
    }

    /// The daemon announces exactly the wanted routes and nothing is in flight.
    pub fn settled(&self) -> bool {
        self.in_flight.is_none() && self.applied.as_ref() == Some(&self.wanted())
    }

    /// The last push's error, while pushes fail.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Pushes made since start.
    pub fn pushes(&self) -> u64 {
        self.pushes
    }

    /// Pushes that failed in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}
