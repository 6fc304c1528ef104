//! The sweeper: runs the sweep program, which expires connections and templates with their
//! accounting, and decides when unassured entries must go early.
//!
//! The connection tables are plain hash tables: nothing evicts an entry behind the counters'
//! back, so the counters are never re-derived (a recount would race with the packets that move
//! them). What bounds a flood is the half-open gauge: connections not yet assured are refused
//! past `max_half`, and while the gauge is above three quarters of it the sweep runs more often
//! and removes unassured entries idle for [`EARLY_IDLE`] (conntrack's early drop; IPVS's
//! `drop_entry` defence). Established connections are never touched by it.

use std::time::{Duration, Instant};

use xvs_abi as abi;

use crate::director::Director;
use crate::error::Error;

/// How often lblc/lblcr entries are checked for expiry (the kernel's full check).
const LBLC_FULL_CHECK: Duration = Duration::from_secs(30 * 60);
/// How often NAT reply entries whose connection is gone are looked for.
const NAT_GC: Duration = Duration::from_secs(60);
/// Unassured entries idle this long go while the half-open gauge is high: a real client's
/// handshake completes within a round trip, a spoofed source's never does.
pub const EARLY_IDLE: Duration = Duration::from_millis(500);
/// How often to sweep while the half-open gauge is high (otherwise once a second).
pub const PRESSURE_PERIOD: Duration = Duration::from_millis(200);

/// What one sweep did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Connections present.
    pub seen: u64,
    /// Connections expired (including those dropped early).
    pub expired: u64,
    /// Templates expired.
    pub tpl_expired: u64,
    /// Unassured connections and templates dropped early.
    pub early_dropped: u64,
    /// Connections not yet assured after the sweep.
    pub half: i64,
    /// True when the half-open gauge is high: sweep again after [`PRESSURE_PERIOD`].
    pub pressure: bool,
}

/// Sweeps and keeps the totals.
#[derive(Debug)]
pub struct Sweeper {
    last_lblc: Instant,
    last_nat_gc: Instant,
    /// Unassured entries dropped early since start.
    pub early_total: u64,
    /// Entries (connections and templates, both families) left by the last sweep.
    pub live: u64,
    /// Connections not yet assured, as of the last sweep.
    pub half: i64,
}

impl Default for Sweeper {
    fn default() -> Self {
        Sweeper { last_lblc: Instant::now(), last_nat_gc: Instant::now(), early_total: 0, live: 0, half: 0 }
    }
}

impl Sweeper {
    /// Removes the connections of the server that held slot `dest_id` with generation `gen`
    /// (a deleted server, with `expire_nodest_conn`), with their accounting; returns how many.
    pub fn flush_dest(&mut self, dp: &Director, dest_id: u32, gen: u32) -> Result<u64, Error> {
        let args = abi::SweepArgs { flags: abi::SWEEP_DEST, dest_id, gen, ..abi::SweepArgs::default() };
        let out = dp.sweep_with(args)?;
        self.live = (out.seen + out.tpl_seen).saturating_sub(out.expired + out.tpl_expired);
        Ok(out.expired)
    }

    /// Runs one sweep; with the half-open gauge above three quarters of `max_half`, it also
    /// drops unassured entries idle for [`EARLY_IDLE`].
    pub fn run(&mut self, dp: &Director) -> Result<SweepReport, Error> {
        let mut args = abi::SweepArgs::default();
        if self.last_lblc.elapsed() >= LBLC_FULL_CHECK {
            args.flags |= abi::SWEEP_LBLC_FULL;
            self.last_lblc = Instant::now();
        }
        if self.last_nat_gc.elapsed() >= NAT_GC {
            args.flags |= abi::SWEEP_NAT_GC;
            self.last_nat_gc = Instant::now();
        }
        let limit = i64::from(dp.options.max_half);
        let high = |half: i64| half * 4 >= limit * 3;
        if high(dp.half_open()?) {
            args.flags |= abi::SWEEP_EARLY;
            args.early_ms = EARLY_IDLE.as_millis() as u32;
        }
        let out = dp.sweep_with(args)?;
        self.live = (out.seen + out.tpl_seen).saturating_sub(out.expired + out.tpl_expired);
        self.early_total += out.early_dropped;
        self.half = out.half;
        Ok(SweepReport {
            seen: out.seen,
            expired: out.expired,
            tpl_expired: out.tpl_expired,
            early_dropped: out.early_dropped,
            half: out.half,
            pressure: high(out.half) || out.early_dropped > 0,
        })
    }
}
