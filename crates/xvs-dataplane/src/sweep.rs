//! The sweeper: runs the sweep program, notices when the LRU tables evicted entries behind the
//! counters' back, and then asks for a recount.
//!
//! Every insertion and removal of a connection is counted (`CONN_NEW`, `CONN_DEL`). Without
//! evictions, the entries a sweep sees equal inserted minus removed, give or take the packets
//! that insert or remove entries while the sweep runs. When the sweep sees fewer than even the
//! most generous reading allows, entries vanished without their accounting: the counters are
//! then re-derived from the tables (`SWEEP_RECOUNT`).

use std::time::{Duration, Instant};

use xvs_abi as abi;

use crate::director::Director;
use crate::error::Error;

/// How often lblc/lblcr entries are checked for expiry (the kernel's full check).
const LBLC_FULL_CHECK: Duration = Duration::from_secs(30 * 60);

/// What one sweep did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Connections present.
    pub seen: u64,
    /// Connections expired.
    pub expired: u64,
    /// Templates expired.
    pub tpl_expired: u64,
    /// Connections that disappeared without being removed (LRU evictions), at least.
    pub evicted: u64,
    /// True when the counters were re-derived from the tables.
    pub recounted: bool,
}

/// Sweeps and keeps the totals.
#[derive(Debug)]
pub struct Sweeper {
    last_lblc: Instant,
    /// Evictions detected since start.
    pub evicted_total: u64,
    /// Recounts done since start.
    pub recounts: u64,
    /// Entries (connections and templates, both families) left by the last sweep.
    pub live: u64,
}

impl Default for Sweeper {
    fn default() -> Self {
        Sweeper { last_lblc: Instant::now(), evicted_total: 0, recounts: 0, live: 0 }
    }
}

impl Sweeper {
    /// Runs one sweep, and a recount after it if entries were evicted.
    pub fn run(&mut self, dp: &Director) -> Result<SweepReport, Error> {
        let mut flags = 0;
        if self.last_lblc.elapsed() >= LBLC_FULL_CHECK {
            flags |= abi::SWEEP_LBLC_FULL;
            self.last_lblc = Instant::now();
        }
        let n0 = dp.counter(abi::counter::CONN_NEW)?;
        let d0 = dp.counter(abi::counter::CONN_DEL)?;
        let out = dp.sweep(flags)?;
        let d1 = dp.counter(abi::counter::CONN_DEL)?;
        // Entries alive when the sweep started: inserted, not removed, not evicted before.
        // Removals by packets during the sweep (beyond the sweep's own) may hide some of them
        // from it; insertions during the sweep can only add to what it saw.
        let other_dels = (d1 - d0).saturating_sub(out.expired);
        let expected_min = (n0 - d0).saturating_sub(self.evicted_total).saturating_sub(other_dels);
        let evicted = expected_min.saturating_sub(out.seen);
        self.live = (out.seen + out.tpl_seen).saturating_sub(out.expired + out.tpl_expired);
        let mut report = SweepReport {
            seen: out.seen,
            expired: out.expired,
            tpl_expired: out.tpl_expired,
            evicted,
            recounted: false,
        };
        if evicted > 0 {
            self.evicted_total += evicted;
            self.recount(dp)?;
            report.recounted = true;
        }
        Ok(report)
    }

    /// Re-derives every counter from the tables.
    pub fn recount(&mut self, dp: &Director) -> Result<(), Error> {
        dp.sweep(abi::SWEEP_RECOUNT)?;
        self.recounts += 1;
        Ok(())
    }
}
