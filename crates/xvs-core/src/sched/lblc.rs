//! lblc — locality-based least connection (`ip_vs_lblc.c`, reference §2.10).
//!
//! For caches: each destination IP address (the packet's, which for transparent caches behind a
//! fwmark service is the origin server) is remembered with the server that took it, and keeps
//! going there while that server is available, has a positive weight and is not "overloaded" in
//! lblc's own sense: more active connections than its weight *while* some server in the service
//! is below half its weight. Otherwise a server is picked by wlc and the entry is replaced.
//!
//! The table is the kernel's: 1024 buckets by `hash_32(addr, 10)`, new entries at the bucket
//! head, no limit on new entries (16384 is only the size the collector trims to: recorded in
//! `testdata/kernel/lblc-cap-6.12.txt`), and a collector every 60 s that either drops entries
//! idle for 6 min until enough are gone (when the table is over that size) or, every 30th quiet
//! run, drops entries idle for `lblc_expiration`.

use core::net::IpAddr;
use core::time::Duration;

use super::{weighted_least, SchedEnv, SchedInput, SchedKind, Scheduler};
use crate::addr::{addr_fold, hash_32};
use crate::dest::{DestId, DestView};
use crate::time::Instant;

/// Buckets in an lblc/lblcr table (`IP_VS_LBLC_TAB_BITS` = 10).
pub(crate) const TAB_BITS: u32 = 10;
pub(crate) const TAB_SIZE: usize = 1 << TAB_BITS;
/// Entries beyond which the collector trims (`TAB_SIZE * 16`); new entries are never refused.
pub const LBLC_TABLE_MAX: usize = TAB_SIZE * 16;
/// The collector's period (`CHECK_EXPIRE_INTERVAL`).
pub(crate) const CHECK_EXPIRE_INTERVAL: Duration = Duration::from_secs(60);
/// Idle time after which a trimming run may drop an entry (`ENTRY_TIMEOUT`).
pub(crate) const ENTRY_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// Every this many quiet runs, a full expiry check runs (`COUNT_FOR_FULL_EXPIRATION`).
pub(crate) const COUNT_FOR_FULL_EXPIRATION: u32 = 30;

pub(crate) fn bucket_of(addr: &IpAddr) -> usize {
    hash_32(addr_fold(addr), TAB_BITS) as usize
}

/// The collector shared by lblc and lblcr: the run counter, the rover and the next deadline.
#[derive(Debug)]
pub(crate) struct Collector {
    pub(crate) next: Instant,
    counter: u32,
    rover: usize,
}

impl Collector {
    pub(crate) fn new(now: Instant) -> Self {
        Collector { next: now + CHECK_EXPIRE_INTERVAL, counter: 1, rover: 0 }
    }

    /// Runs every collection due at `now` over `buckets`, whose entries expose `lastuse`.
    pub(crate) fn run<E>(
        &mut self,
        now: Instant,
        expiration: Duration,
        buckets: &mut [Vec<E>],
        lastuse: impl Fn(&E) -> Instant,
    ) {
        while now >= self.next {
            let at = self.next;
            self.next = at + CHECK_EXPIRE_INTERVAL;
            let entries: usize = buckets.iter().map(Vec::len).sum();
            if self.counter % COUNT_FOR_FULL_EXPIRATION == 0 {
                let mut j = self.rover;
                for _ in 0..TAB_SIZE {
                    j = (j + 1) & (TAB_SIZE - 1);
                    buckets[j].retain(|e| lastuse(e) + expiration > at);
                }
                self.rover = j;
                self.counter = 1;
                continue;
            }
            if entries <= LBLC_TABLE_MAX {
                self.counter += 1;
                continue;
            }
            let mut goal = ((entries - LBLC_TABLE_MAX) * 4 / 3).min(LBLC_TABLE_MAX / 2) as i64;
            let mut j = self.rover;
            for _ in 0..TAB_SIZE {
                j = (j + 1) & (TAB_SIZE - 1);
                let before = buckets[j].len();
                buckets[j].retain(|e| at < lastuse(e) + ENTRY_TIMEOUT);
                goal -= (before - buckets[j].len()) as i64;
                if goal <= 0 {
                    break;
                }
            }
            self.rover = j;
        }
    }
}

/// lblc's "overloaded": more active connections than its weight while some server of the
/// service has fewer than half its weight in active connections.
pub(crate) fn is_overloaded(d: &crate::Dest, dests: &DestView<'_>) -> bool {
    d.activeconns > d.weight() && dests.iter().any(|(_, o)| o.activeconns.wrapping_mul(2) < o.weight())
}

#[derive(Debug)]
struct Entry {
    addr: IpAddr,
    dest: DestId,
    lastuse: Instant,
}

#[derive(Debug)]
pub(crate) struct Lblc {
    buckets: Vec<Vec<Entry>>,
    gc: Collector,
}

impl Lblc {
    pub(crate) fn new(now: Instant) -> Self {
        Lblc { buckets: (0..TAB_SIZE).map(|_| Vec::new()).collect(), gc: Collector::new(now) }
    }
}

impl Scheduler for Lblc {
    fn kind(&self) -> SchedKind {
        SchedKind::Lblc
    }

    fn schedule(&mut self, dests: &DestView<'_>, input: &SchedInput, env: &mut SchedEnv<'_>) -> Option<DestId> {
        let b = bucket_of(&input.daddr);
        if let Some(e) = self.buckets[b].iter_mut().find(|e| e.addr == input.daddr) {
            e.lastuse = env.now;
            if let Some(d) = dests.get(e.dest) {
                if d.is_available() && d.weight() > 0 && !is_overloaded(d, dests) {
                    return Some(e.dest);
                }
            }
        }
        let dest = weighted_least(dests.iter(), crate::Dest::overhead)?;
        // ip_vs_lblc_new: keep a matching entry, else replace it; the table's size does not
        // refuse one (only the collector looks at it).
        if let Some(pos) = self.buckets[b].iter().position(|e| e.addr == input.daddr) {
            if self.buckets[b][pos].dest == dest {
                return Some(dest);
            }
            self.buckets[b].remove(pos);
        }
        self.buckets[b].insert(0, Entry { addr: input.daddr, dest, lastuse: env.now });
        Some(dest)
    }

    fn handle_timeout(&mut self, now: Instant, _: &DestView<'_>, expiration: Duration) {
        self.gc.run(now, expiration, &mut self.buckets, |e| e.lastuse);
    }

    fn held(&self, out: &mut Vec<DestId>) {
        out.extend(self.buckets.iter().flatten().map(|e| e.dest));
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.gc.next)
    }
}
