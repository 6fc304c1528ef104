//! The sweeper: runs the sweep program, which expires connections and templates with their
//! accounting, and decides when unassured entries must go early.
//!
//! The connection tables are plain hash tables: nothing evicts an entry behind the counters'
//! back, so the counters are never re-derived (a recount would race with the packets that move
//! them). What bounds a flood is the half-open gauge: connections not yet assured are refused
//! past `max_half`, and while the gauge is above three quarters of it the sweep runs more often
//! and removes unassured entries idle for [`EARLY_IDLE`] (conntrack's early drop; IPVS's
//! `drop_entry` defence). Established connections are never touched by it.
//!
//! From [`STEP_ABOVE`] connections on, the connection tables are walked in steps
//! ([`ConnWalk`]) rather than in one go: each sweep visits a bounded number of connections and
//! the next resumes there, so a director with millions of connections spends a few percent of a
//! CPU on expiry instead of most of one, in preemptible reads.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xvs_abi as abi;

use crate::director::Director;
use crate::error::{Context, Error};
use crate::walk::{ConnWalk, WalkStep};

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
    /// The stepwise walk of the connection tables ([`ConnWalk`]), or why there is none.
    fn walk(&self) -> &Mutex<Result<ConnWalk, String>>;
}

/// Runs `budget` connections of table `table` (0: IPv4, 1: IPv6) through the stepwise walk.
fn walk_step(t: &impl SweepTarget, table: usize, budget: usize) -> Result<WalkStep, Error> {
    let mut walk = t.walk().lock().unwrap_or_else(|p| p.into_inner());
    let step = match walk.as_mut() {
        Ok(w) => w.step(table, budget),
        Err(e) => return Err(Error::Unsupported(format!("no stepwise walk: {e}"))),
    };
    match step {
        Err(e) => {
            // Never again: the next sweeps walk the tables in one go rather than not at all.
            let why = format!("the stepwise walk failed ({e}); the connection tables are walked in one go from now on");
            *walk = Err(why.clone());
            Err(Error::Unsupported(why))
        }
        ok => ok,
    }
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
    fn walk(&self) -> &Mutex<Result<ConnWalk, String>> {
        &self.walk
    }
}

/// The sweep program and the half-open gauge opened a second time, so that a daemon can sweep
/// without holding the lock that guards its configuration: a sweep visits every bucket of the
/// tables that may hold entries (174 ms for all five at the default size; docs/benchmarks.md),
/// and requests must not wait for it. Sweeping concurrently with the
/// packets, and with a sweep of the director's own handle, is safe: entries are claimed
/// before they are removed.
pub struct SweepRunner {
    prog: aya::programs::Xdp,
    gauges: aya::maps::Array<aya::maps::MapData, abi::Gauges>,
    counters: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    max_half: u32,
    walk: Arc<Mutex<Result<ConnWalk, String>>>,
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
    fn walk(&self) -> &Mutex<Result<ConnWalk, String>> {
        &self.walk
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
            walk: self.walk.clone(),
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
/// From this many connections on, the connection tables are walked in steps ([`ConnWalk`]).
/// A walk in one go costs about 200 ns a connection with preemption off (850 ms a second at
/// 4 M); a step about 400 ns a connection visited (the iterator's own overhead), in preemptible
/// reads.
pub const STEP_ABOVE: u64 = 131_072;
/// Connections a step visits at least: 7 reads of 16 KiB, about 45 ms at 4 M connections (under
/// 5 % of a CPU, sweeping once a second).
pub const STEP: u64 = 7 * 16_384;
/// A pass of the steps over a table takes at most this long (past [`STEP`] × 40 connections,
/// 4.6 M, a step visits more): the most an expired connection outlives its timeout.
pub const PASS_MAX: Duration = Duration::from_secs(40);

/// A sweep to run: the sweep program's arguments, and how many connections of each table
/// (IPv4, IPv6) to visit stepwise after it (0: none; the program walks it, or it is skipped).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepPlan {
    /// The sweep program's arguments.
    pub args: abi::SweepArgs,
    /// Connections to visit stepwise, per table.
    pub steps: [usize; 2],
}

/// What a planned sweep did.
#[derive(Copy, Clone, Debug, Default)]
pub struct SweepDone {
    /// The sweep program's result.
    pub out: abi::SweepOut,
    /// The stepwise walks' (none where the plan had none).
    pub steps: [WalkStep; 2],
}

impl SweepPlan {
    /// Runs the sweep program, then the steps.
    pub fn execute(&self, t: &impl SweepTarget) -> Result<SweepDone, Error> {
        let out = t.sweep_with(self.args)?;
        let mut steps = [WalkStep::default(); 2];
        for (i, &budget) in self.steps.iter().enumerate() {
            if budget > 0 {
                steps[i] = walk_step(t, i, budget)?;
            }
        }
        Ok(SweepDone { out, steps })
    }
}

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
    /// Connections in the tables, as last counted: by a walk in one go, or by the stepwise
    /// passes (the last complete one, or the one in progress once it has seen more).
    conns: u64,
    /// The connection tables are walked stepwise from this many connections on.
    step_above: u64,
    /// The connection tables are walked stepwise.
    stepping: bool,
    /// Per table: connections seen by the pass in progress, and by the last complete one.
    pass: [u64; 2],
    last_pass: [u64; 2],
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
            conns: 0,
            step_above: STEP_ABOVE,
            stepping: false,
            pass: [0; 2],
            last_pass: [0; 2],
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
        let plan = self.plan(dp)?;
        let done = plan.execute(dp)?;
        Ok(self.record(&plan, &done, dp.max_half()))
    }

    /// A sweeper that walks the connection tables in steps from `conns` connections on
    /// (default [`STEP_ABOVE`]); a step visits at least [`STEP`] connections, or `conns` if
    /// fewer.
    pub fn stepping_from(conns: u64) -> Sweeper {
        Sweeper { step_above: conns.max(1), ..Sweeper::default() }
    }

    /// True while the connection tables are walked in steps.
    pub fn stepping(&self) -> bool {
        self.stepping
    }

    /// The next sweep (what is due, whether the gauge is high, which connection tables are
    /// walked in steps), to be run with [`SweepPlan::execute`] and its result given to
    /// [`Sweeper::record`].
    pub fn plan(&mut self, dp: &impl SweepTarget) -> Result<SweepPlan, Error> {
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
        let skip = match self.inserts {
            Some(before) if self.last_full.elapsed() < FULL_WALK => skip_flags(self.held, before, now),
            _ => {
                self.last_full = Instant::now();
                0
            }
        };
        args.flags |= skip;
        self.planned_inserts = Some(now);
        // In steps from step_above connections down to half of it; never under an early drop,
        // which must reach every unassured entry now.
        let can = dp.walk().lock().map(|w| w.is_ok()).unwrap_or(false);
        let above = self.step_above;
        let was = self.stepping;
        self.stepping = can && if was { self.conns >= above / 2 } else { self.conns >= above };
        if was && !self.stepping {
            // Stepping again later starts fresh passes, with fresh counts.
            if let Ok(mut w) = dp.walk().lock() {
                if let Ok(w) = w.as_mut() {
                    w.restart();
                }
            }
            self.pass = [0; 2];
            self.last_pass = [0; 2];
        }
        let mut steps = [0; 2];
        if self.stepping && args.flags & abi::SWEEP_EARLY == 0 {
            let budget = STEP.min(above).max(self.conns / PASS_MAX.as_secs()) as usize;
            for (i, step) in steps.iter_mut().enumerate() {
                let bit = abi::SWEEP_SKIP_CONN4 << i;
                if skip & bit == 0 {
                    *step = budget;
                }
                args.flags |= bit;
            }
        }
        Ok(SweepPlan { args, steps })
    }

    /// Takes in what a planned sweep did.
    pub fn record(&mut self, plan: &SweepPlan, done: &SweepDone, max_half: u32) -> SweepReport {
        let out = &done.out;
        let mut held = out.held;
        let mut conns = out.seen.saturating_sub(out.expired);
        for i in 0..2 {
            let bit = abi::SWEEP_SKIP_CONN4 << i;
            if plan.args.flags & bit == 0 {
                continue; // walked in one go (counted in `out`); a pass in progress goes on later
            }
            if plan.steps[i] == 0 {
                continue; // skipped: found empty, nothing entered
            }
            let step = &done.steps[i];
            self.pass[i] += step.seen - step.expired;
            if step.finished {
                self.last_pass[i] = self.pass[i];
                self.pass[i] = 0;
            }
            let n = self.last_pass[i].max(self.pass[i]);
            if n > 0 || step.seen > 0 {
                held |= 1 << i;
            }
            conns += n;
        }
        // Only a sweep that ran moves the baseline: after a failed one, what entered since the
        // previous baseline is walked next time.
        if let Some(p) = self.planned_inserts.take() {
            self.inserts = Some(p);
            self.held = held;
        }
        self.conns = conns;
        self.live = conns + out.tpl_seen.saturating_sub(out.tpl_expired);
        self.early_total += out.early_dropped;
        self.half = out.half;
        let (seen, expired) = done.steps.iter().fold((out.seen, out.expired), |(s, e), w| (s + w.seen, e + w.expired));
        SweepReport {
            seen,
            expired,
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
