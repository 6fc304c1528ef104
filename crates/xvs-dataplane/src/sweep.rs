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
use crate::error::{Context, Error};

/// Something the sweep can be run on: the [`Director`], or a [`SweepRunner`] (its own handle
/// on the sweep program and the gauge, usable without the director).
pub trait SweepTarget {
    /// Runs the sweep program with `args`.
    fn sweep_with(&self, args: abi::SweepArgs) -> Result<abi::SweepOut, Error>;
    /// Connections not yet assured, now.
    fn half_open(&self) -> Result<i64, Error>;
    /// The most not yet assured connections accepted.
    fn max_half(&self) -> u32;
    /// Entries put in the tables so far: IPv4 and IPv6 connections (`CONN_NEW`), then IPv6
    /// connections and templates (`OTHER_NEW`); each summed over CPUs.
    fn inserts(&self) -> Result<[u64; 2], Error>;
}

impl SweepTarget for Director {
    fn sweep_with(&self, args: abi::SweepArgs) -> Result<abi::SweepOut, Error> {
        Director::sweep_with(self, args)
    }
    fn half_open(&self) -> Result<i64, Error> {
        Director::half_open(self)
    }
    fn max_half(&self) -> u32 {
        self.options.max_half
    }
    fn inserts(&self) -> Result<[u64; 2], Error> {
        Ok([self.counter(abi::counter::CONN_NEW)?, self.counter(abi::counter::OTHER_NEW)?])
    }
}

/// The sweep program and the half-open gauge opened a second time, so that a daemon can sweep
/// without holding the lock that guards its configuration: a sweep visits every bucket of the
/// tables that may hold entries (174 ms for all five at the default size, 781 ms with 4 M
/// connections:
/// docs/benchmarks.md), and requests must not wait for it. Sweeping concurrently with the
/// packets, and with a sweep of the director's own handle, is safe: entries are claimed
/// before they are removed.
pub struct SweepRunner {
    prog: aya::programs::Xdp,
    gauges: aya::maps::Array<aya::maps::MapData, abi::Gauges>,
    counters: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    max_half: u32,
}

impl SweepTarget for SweepRunner {
    fn sweep_with(&self, args: abi::SweepArgs) -> Result<abi::SweepOut, Error> {
        crate::director::run_sweep(&self.prog, args)
    }
    fn half_open(&self) -> Result<i64, Error> {
        Ok(self.gauges.get(&0, 0).ctx(|| "read xvs_gauges".into())?.half)
    }
    fn max_half(&self) -> u32 {
        self.max_half
    }
    fn inserts(&self) -> Result<[u64; 2], Error> {
        let sum = |i: u32| -> Result<u64, Error> {
            Ok(self.counters.get(&i, 0).ctx(|| "read xvs_counters".into())?.iter().sum())
        };
        Ok([sum(abi::counter::CONN_NEW)?, sum(abi::counter::OTHER_NEW)?])
    }
}

impl Director {
    /// A [`SweepRunner`] on this director's sweep program and gauge.
    pub fn sweep_runner(&self) -> Result<SweepRunner, Error> {
        let prog = self.prog("xvs_sweep")?;
        let info = prog.info().ctx(|| "read xvs_sweep's info".into())?;
        let prog = aya::programs::Xdp::from_program_info(
            info,
            "xvs_sweep".into(),
            aya_obj::programs::XdpAttachType::Interface,
        )
        .ctx(|| "open xvs_sweep again".into())?;
        Ok(SweepRunner {
            prog,
            gauges: crate::readback::open_pinned(self, "xvs_gauges")?,
            counters: crate::readback::open_pinned(self, "xvs_counters")?,
            max_half: self.options.max_half,
        })
    }
}

/// How often lblc/lblcr entries are checked for expiry (the kernel's full check).
const LBLC_FULL_CHECK: Duration = Duration::from_secs(30 * 60);
/// How often NAT reply entries whose connection is gone are looked for.
const NAT_GC: Duration = Duration::from_secs(60);
/// Unassured entries idle this long go while the half-open gauge is high: a real client's
/// handshake completes within a round trip, a spoofed source's never does.
pub const EARLY_IDLE: Duration = Duration::from_millis(500);
/// How often to sweep while the half-open gauge is high (otherwise once a second).
pub const PRESSURE_PERIOD: Duration = Duration::from_millis(200);
/// Every table is walked at least this often, even one found empty with nothing counted in
/// since: a bound on how late an entry put there unseen (an insert counted between the read
/// of the counters and the walk, say) can expire.
pub const FULL_WALK: Duration = Duration::from_secs(8);

/// The tables a sweep can leave alone (`SWEEP_SKIP_*` flags): those its last walk found empty
/// (`held`, [`abi::SweepOut::held`]) and that nothing entered since, as the insert counters
/// tell (`before` at the last sweep, `now`: [`SweepTarget::inserts`]). A walk costs the table's
/// bucket count whether it holds anything or not (15 ns a bucket; 11.5 M buckets at the
/// default sizes), so a director with no IPv6 traffic and no persistence walks one table of
/// five.
pub fn skip_flags(held: u64, before: [u64; 2], now: [u64; 2]) -> u32 {
    let mut flags = 0;
    for (i, _) in abi::TABLES.iter().enumerate() {
        // IPv4 connections are counted in CONN_NEW; the other tables' entries in OTHER_NEW.
        let entered = if i == 0 { now[0] != before[0] } else { now[1] != before[1] };
        if held & (1 << i) == 0 && !entered {
            flags |= abi::SWEEP_SKIP_CONN4 << i;
        }
    }
    flags
}

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
    last_full: Instant,
    /// The insert counters as of the last sweep recorded, and as read by the last plan.
    inserts: Option<[u64; 2]>,
    planned_inserts: Option<[u64; 2]>,
    /// The tables the last recorded sweep found holding entries.
    held: u64,
    /// Unassured entries dropped early since start.
    pub early_total: u64,
    /// Entries (connections and templates, both families) left by the last sweep.
    pub live: u64,
    /// Connections not yet assured, as of the last sweep.
    pub half: i64,
}

impl Default for Sweeper {
    fn default() -> Self {
        Sweeper {
            last_lblc: Instant::now(),
            last_nat_gc: Instant::now(),
            last_full: Instant::now(),
            inserts: None,
            planned_inserts: None,
            held: 0,
            early_total: 0,
            live: 0,
            half: 0,
        }
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
    pub fn run(&mut self, dp: &impl SweepTarget) -> Result<SweepReport, Error> {
        let args = self.plan(dp)?;
        let out = dp.sweep_with(args)?;
        Ok(self.record(&out, dp.max_half()))
    }

    /// The arguments of the next sweep (what is due, and whether the gauge is high), to be run
    /// with [`SweepTarget::sweep_with`] and its result given to [`Sweeper::record`].
    pub fn plan(&mut self, dp: &impl SweepTarget) -> Result<abi::SweepArgs, Error> {
        let mut args = abi::SweepArgs::default();
        if self.last_lblc.elapsed() >= LBLC_FULL_CHECK {
            args.flags |= abi::SWEEP_LBLC_FULL;
            self.last_lblc = Instant::now();
        }
        if self.last_nat_gc.elapsed() >= NAT_GC {
            args.flags |= abi::SWEEP_NAT_GC;
            self.last_nat_gc = Instant::now();
        }
        if high(dp.half_open()?, dp.max_half()) {
            args.flags |= abi::SWEEP_EARLY;
            args.early_ms = EARLY_IDLE.as_millis() as u32;
        }
        // Counters read before the walk: an entry counted after this read is walked next time.
        let now = dp.inserts()?;
        match self.inserts {
            Some(before) if self.last_full.elapsed() < FULL_WALK => args.flags |= skip_flags(self.held, before, now),
            _ => self.last_full = Instant::now(),
        }
        self.planned_inserts = Some(now);
        Ok(args)
    }

    /// Takes in what a sweep did.
    pub fn record(&mut self, out: &abi::SweepOut, max_half: u32) -> SweepReport {
        // Only a sweep that ran moves the baseline: after a failed one, what entered since the
        // previous baseline is walked next time.
        if let Some(p) = self.planned_inserts.take() {
            self.inserts = Some(p);
            self.held = out.held;
        }
        self.live = (out.seen + out.tpl_seen).saturating_sub(out.expired + out.tpl_expired);
        self.early_total += out.early_dropped;
        self.half = out.half;
        SweepReport {
            seen: out.seen,
            expired: out.expired,
            tpl_expired: out.tpl_expired,
            early_dropped: out.early_dropped,
            half: out.half,
            pressure: high(out.half, max_half) || out.early_dropped > 0,
        }
    }
}

/// The half-open gauge is above three quarters of its limit.
fn high(half: i64, max_half: u32) -> bool {
    half * 4 >= i64::from(max_half) * 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_skipped_only_when_found_empty_and_nothing_entered() {
        let all = abi::SWEEP_SKIP_CONN4
            | abi::SWEEP_SKIP_CONN6
            | abi::SWEEP_SKIP_TPL4
            | abi::SWEEP_SKIP_TPL6
            | abi::SWEEP_SKIP_SIP;
        assert_eq!(skip_flags(0, [5, 7], [5, 7]), all);
        // Held entries: walked again.
        assert_eq!(skip_flags(0b101, [5, 7], [5, 7]), all & !(abi::SWEEP_SKIP_CONN4 | abi::SWEEP_SKIP_TPL4));
        // An IPv4 connection entered: only its table.
        assert_eq!(skip_flags(0, [5, 7], [6, 7]), all & !abi::SWEEP_SKIP_CONN4);
        // Something entered another table: every other table.
        assert_eq!(skip_flags(0, [5, 7], [5, 8]), abi::SWEEP_SKIP_CONN4);
    }
}
