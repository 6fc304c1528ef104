//! lblcr — locality-based least connection with replication (`ip_vs_lblcr.c`, reference §2.11).
//!
//! Like lblc, but each destination IP maps to a *set* of servers. The least loaded member of
//! the set (wlc over members that are available, not overloaded, with a positive weight) is
//! used unless it is lblc-overloaded; then a server picked by wlc over the whole service joins
//! the set. A set of several members that has not changed for `lblcr_expiration` loses its most
//! loaded member. Table, cap and collector are lblc's.

use core::net::IpAddr;
use core::time::Duration;

use super::lblc::{bucket_of, is_overloaded, Collector, TAB_SIZE};
use super::{weighted_least, SchedEnv, SchedInput, SchedKind, Scheduler};
use crate::dest::{DestId, DestView};
use crate::time::Instant;

#[derive(Debug)]
struct Entry {
    addr: IpAddr,
    /// Set members, most recently inserted first.
    set: Vec<DestId>,
    lastmod: Instant,
    lastuse: Instant,
}

#[derive(Debug)]
pub(crate) struct Lblcr {
    buckets: Vec<Vec<Entry>>,
    gc: Collector,
}

/// `ip_vs_dest_set_min`.
fn set_min(set: &[DestId], dests: &DestView<'_>) -> Option<DestId> {
    let mut least: Option<(DestId, i64, i64)> = None;
    for &id in set {
        let Some(d) = dests.get(id) else { continue };
        if d.is_overloaded() {
            continue;
        }
        match least {
            None => {
                if d.weight() > 0 && d.is_available() {
                    least = Some((id, i64::from(d.overhead()), i64::from(d.weight())));
                }
            }
            Some((_, loh, lw)) => {
                let doh = i64::from(d.overhead());
                if loh * i64::from(d.weight()) > doh * lw && d.is_available() {
                    least = Some((id, doh, i64::from(d.weight())));
                }
            }
        }
    }
    least.map(|(id, _, _)| id)
}

/// `ip_vs_dest_set_max`.
fn set_max(set: &[DestId], dests: &DestView<'_>) -> Option<DestId> {
    let mut most: Option<(DestId, i64, i64)> = None;
    for &id in set {
        let Some(d) = dests.get(id) else { continue };
        match most {
            None => {
                if d.weight() > 0 {
                    most = Some((id, i64::from(d.overhead()), i64::from(d.weight())));
                }
            }
            Some((_, moh, mw)) => {
                let doh = i64::from(d.overhead());
                if moh * i64::from(d.weight()) < doh * mw && d.weight() > 0 {
                    most = Some((id, doh, i64::from(d.weight())));
                }
            }
        }
    }
    most.map(|(id, _, _)| id)
}

impl Lblcr {
    pub(crate) fn new(now: Instant) -> Self {
        Lblcr { buckets: (0..TAB_SIZE).map(|_| Vec::new()).collect(), gc: Collector::new(now) }
    }
}

impl Scheduler for Lblcr {
    fn kind(&self) -> SchedKind {
        SchedKind::Lblcr
    }

    fn schedule(&mut self, dests: &DestView<'_>, input: &SchedInput, env: &mut SchedEnv<'_>) -> Option<DestId> {
        let now = env.now;
        let b = bucket_of(&input.daddr);
        if let Some(e) = self.buckets[b].iter_mut().find(|e| e.addr == input.daddr) {
            e.lastuse = now;
            let dest = set_min(&e.set, dests);
            if e.set.len() > 1 && now > e.lastmod + env.expiration {
                if let Some(m) = set_max(&e.set, dests) {
                    e.set.retain(|x| *x != m);
                    e.lastmod = now;
                }
            }
            if let Some(id) = dest {
                let d = dests.get(id).expect("set_min returns a live server");
                if !is_overloaded(d, dests) {
                    return Some(id);
                }
            }
            let dest = weighted_least(dests.iter(), crate::Dest::overhead)?;
            if !e.set.contains(&dest) {
                e.set.insert(0, dest);
                e.lastmod = now;
            }
            return Some(dest);
        }
        let dest = weighted_least(dests.iter(), crate::Dest::overhead)?;
        // ip_vs_lblcr_new, like lblc's: no size limit on a new entry.
        self.buckets[b].insert(0, Entry { addr: input.daddr, set: vec![dest], lastmod: now, lastuse: now });
        Some(dest)
    }

    fn handle_timeout(&mut self, now: Instant, _: &DestView<'_>, expiration: Duration) {
        self.gc.run(now, expiration, &mut self.buckets, |e| e.lastuse);
    }

    fn held(&self, out: &mut Vec<DestId>) {
        out.extend(self.buckets.iter().flatten().flat_map(|e| e.set.iter().copied()));
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.gc.next)
    }
}
