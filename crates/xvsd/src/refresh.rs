//! Counters gathered from the dataplane without the daemon's lock: the slots to read are taken
//! under it, the hundreds of thousands of map reads happen outside it, and the results are put
//! back under it (ids are generational, so a server gone meanwhile simply takes nothing).

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
