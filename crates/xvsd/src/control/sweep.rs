//! Expiry: the dataplane's sweep, planned and taken in under the lock and run without it
//! ([`crate::refresh::sweep`]): it visits every bucket of the tables that may hold entries,
//! which takes long enough (docs/benchmarks.md, "Scale of state") that requests must not wait for it.

use std::sync::Arc;

use xvs_dataplane::{SweepReport, SweepRunner};

use super::*;

impl Control {
    /// Expires connections (the dataplane's sweep) under the lock: tests, and daemons without
    /// a separate handle on the sweep.
    pub fn sweep(&mut self) -> Option<SweepReport> {
        let dp = self.dp.as_mut()?;
        let out = dp.sweeper.plan(&dp.director).and_then(|args| dp.director.sweep_with(args));
        self.sweep_done(out)
    }

    /// The sweep due now: its runner (without the lock) and arguments; None without a
    /// dataplane, or when the gauge cannot be read (logged).
    pub fn sweep_job(&mut self) -> Option<(Arc<SweepRunner>, xvs_abi::SweepArgs)> {
        let runner = self.sweep_runner.clone()?;
        let dp = self.dp.as_mut()?;
        match dp.sweeper.plan(runner.as_ref()) {
            Ok(args) => Some((runner, args)),
            Err(e) => {
                tracing::error!(error = %e, "sweep failed");
                None
            }
        }
    }

    /// Takes in what a sweep did, and says so when it dropped unassured entries early.
    pub fn sweep_done(&mut self, out: Result<xvs_abi::SweepOut, xvs_dataplane::Error>) -> Option<SweepReport> {
        let dp = self.dp.as_mut()?;
        match out {
            Ok(out) => {
                let r = dp.sweeper.record(&out, dp.director.options.max_half);
                if r.early_dropped > 0 {
                    tracing::warn!(
                        dropped = r.early_dropped,
                        half_open = r.half,
                        "many connections are not completing their handshake (a SYN flood?): \
                         unassured ones dropped early; established connections are kept"
                    );
                }
                Some(r)
            }
            Err(e) => {
                tracing::error!(error = %e, "sweep failed");
                None
            }
        }
    }
}
