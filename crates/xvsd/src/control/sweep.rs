//! Expiry: the dataplane's sweep, planned and taken in under the lock and run without it
//! ([`crate::refresh::sweep`]): it visits every bucket of the tables that may hold entries (the
//! largest in steps), which takes long enough (docs/benchmarks.md, "Scale of state") that
//! requests must not wait for it.

use std::sync::Arc;

use xvs_dataplane::{SweepDone, SweepPlan, SweepReport, SweepRunner};

use super::*;

impl Control {
    /// Expires connections (the dataplane's sweep) under the lock: tests, and daemons without
    /// a separate handle on the sweep.
    pub fn sweep(&mut self) -> Option<SweepReport> {
        let dp = self.dp.as_mut()?;
        let plan = match dp.sweeper.plan(&dp.director) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(error = %e, "sweep failed");
                return None;
            }
        };
        let done = plan.execute(&dp.director);
        self.sweep_done(&plan, done)
    }

    /// The sweep due now: its runner (without the lock) and arguments; None without a
    /// dataplane, or when the gauge cannot be read (logged).
    pub fn sweep_job(&mut self) -> Option<(Arc<SweepRunner>, SweepPlan)> {
        let runner = self.sweep_runner.clone()?;
        let dp = self.dp.as_mut()?;
        match dp.sweeper.plan(runner.as_ref()) {
            Ok(plan) => Some((runner, plan)),
            Err(e) => {
                tracing::error!(error = %e, "sweep failed");
                None
            }
        }
    }

    /// Takes in what a sweep did, and says so when it dropped unassured entries early.
    pub fn sweep_done(
        &mut self,
        plan: &SweepPlan,
        done: Result<SweepDone, xvs_dataplane::Error>,
    ) -> Option<SweepReport> {
        let dp = self.dp.as_mut()?;
        match done {
            Ok(done) => {
                let r = dp.sweeper.record(plan, &done, dp.director.options.max_half);
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
