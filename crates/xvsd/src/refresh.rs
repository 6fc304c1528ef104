//! The periodic work done without the daemon's lock. Counters: the slots to read are taken
//! under it, the hundreds of thousands of map reads happen outside it, and the results are put
//! back under it (ids are generational, so a server gone meanwhile simply takes nothing).
//! Expiry: the sweep is planned under it, run outside it, and its result taken in under it.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::control::Control;

/// Brings the core's copy of every counter and statistic up to date.
pub async fn refresh_counters(control: &Arc<Mutex<Control>>) {
    let Some((reader, slots)) = control.lock().await.counter_job() else { return };
    if let Ok(gathered) = tokio::task::spawn_blocking(move || Control::gather(&reader, slots)).await {
        control.lock().await.apply_counters(gathered);
    }
}

/// Runs the sweep due now without holding the lock while it walks the tables.
pub async fn sweep(control: &Arc<Mutex<Control>>) -> Option<xvs_dataplane::SweepReport> {
    let Some((runner, plan)) = control.lock().await.sweep_job() else {
        // No separate handle (a control without a dataplane, say): under the lock.
        return control.lock().await.sweep();
    };
    let done = tokio::task::spawn_blocking(move || plan.execute(runner.as_ref())).await.ok()?;
    control.lock().await.sweep_done(&plan, done)
}
