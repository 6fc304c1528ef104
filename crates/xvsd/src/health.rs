//! Runs the health checks of the applied configuration: takes the due checks from the monitor,
//! probes them with bounded concurrency (each probe bounded by its own timeout), feeds the
//! outcomes back, and logs the events and runs their scripts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex, Semaphore};
use xvs_health::script::{RunAs, ScriptPolicy};
use xvs_health::{CheckId, Event, Outcome};

use crate::control::Control;

/// Probes running at once, at most (a slow or hung server holds one slot for its timeout).
pub const MAX_PARALLEL_PROBES: usize = 64;

/// A notify or quorum script is killed after this long.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads a configuration file: keepalived.conf (a `.conf` name) or xvs's own TOML/YAML.
/// keepalived notices are logged as warnings.
pub fn load_config(path: &Path, config_id: Option<&str>) -> anyhow::Result<xvs_api::config::Config> {
    let name = path.to_string_lossy();
    if xvs_keepalived::is_keepalived_path(&name) {
        let id = config_id.map(String::from).or_else(xvs_keepalived::default_config_id);
        let loaded = xvs_keepalived::load_for(path, id.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
        for n in &loaded.notices {
            tracing::warn!("{n}");
        }
        return Ok(loaded.config);
    }
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?;
    let config =
        xvs_api::config::Config::parse_file(&name, &text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(config)
}

/// The health loop; runs for the life of the daemon. Whenever the checkers' states change,
/// they are written to `state_file` for the next xvsd (crate::state).
pub async fn run(control: Arc<Mutex<Control>>, state_file: std::path::PathBuf) {
    let permits = Arc::new(Semaphore::new(MAX_PARALLEL_PROBES));
    let (tx, mut rx) = mpsc::channel::<(CheckId, Outcome)>(1024);
    let mut written: Option<xvs_health::Saved> = None;
    loop {
        let (due, next, events, saved, policy) = {
            let mut c = control.lock().await;
            let now = std::time::Instant::now();
            let due = c.health.as_mut().map(|m| m.take_due(now)).unwrap_or_default();
            let next = c.health.as_ref().and_then(|m| m.next_due());
            let policy = c.health.as_ref().map(|m| m.plan().scripts.clone()).unwrap_or_default();
            (due, next, c.take_events(), c.health.as_ref().map(|m| m.save()), policy)
        };
        handle(events, &policy);
        save_if_changed(&state_file, saved, &mut written);
        for (id, spec) in due {
            let permits = permits.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else { return };
                let outcome = xvs_health::probe::run(&spec.probe, spec.connect_timeout).await;
                let _ = tx.send((id, outcome)).await;
            });
        }
        // Wake for the next due check, a result, or at least every second (for the events
        // of configuration changes).
        let now = tokio::time::Instant::now();
        let wake = match next {
            Some(n) => {
                let left = n.saturating_duration_since(std::time::Instant::now());
                now + left.min(Duration::from_secs(1))
            }
            None => now + Duration::from_secs(1),
        };
        tokio::select! {
            Some((id, outcome)) = rx.recv() => {
                let (events, saved, policy) = {
                    let mut c = control.lock().await;
                    c.health_report(id, &outcome, crate::now());
                    let policy = c.health.as_ref().map(|m| m.plan().scripts.clone()).unwrap_or_default();
                    (c.take_events(), c.health.as_ref().map(|m| m.save()), policy)
                };
                handle(events, &policy);
                // At once: a restart right after a failure must not forget it.
                save_if_changed(&state_file, saved, &mut written);
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Writes the checkers' states when they differ from what was last written.
fn save_if_changed(file: &Path, saved: Option<xvs_health::Saved>, written: &mut Option<xvs_health::Saved>) {
    let Some(saved) = saved.filter(|s| written.as_ref() != Some(s)) else { return };
    match crate::state::save(file, &saved) {
        Ok(()) => *written = Some(saved),
        Err(e) => tracing::warn!(file = %file.display(), error = %e, "cannot save the health state"),
    }
}

/// Logs events and starts their scripts (as `policy` says, at most
/// [`xvs_health::script::MAX_RUNNING`] at once).
pub fn handle(events: Vec<Event>, policy: &ScriptPolicy) {
    for e in events {
        let script = match &e {
            Event::ServerUp { service, server, script } => {
                tracing::info!(service = %service_name(service), real_server = %server, "real server up");
                script
            }
            Event::ServerDown { service, server, reason, script } => {
                tracing::warn!(service = %service_name(service), real_server = %server, %reason, "real server down");
                script
            }
            Event::QuorumUp { service, script } => {
                tracing::info!(service = %service_name(service), "quorum up");
                script
            }
            Event::QuorumDown { service, script } => {
                tracing::warn!(service = %service_name(service), "quorum lost");
                script
            }
        };
        if let Some(cmd) = script.clone() {
            tokio::spawn(run_script(cmd, policy.run_as.clone(), SCRIPT_TIMEOUT));
        }
    }
}

/// Runs the scripts of events now and waits for them (at most `timeout` each), for shutdown.
pub async fn handle_and_wait(events: Vec<Event>, policy: &ScriptPolicy, timeout: Duration) {
    let scripts: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::ServerUp { script, .. }
            | Event::ServerDown { script, .. }
            | Event::QuorumUp { script, .. }
            | Event::QuorumDown { script, .. } => script.clone(),
        })
        .collect();
    for s in scripts {
        run_script(s, policy.run_as.clone(), timeout).await;
    }
}

/// Scripts running at once.
static RUNNING: Semaphore = Semaphore::const_new(xvs_health::script::MAX_RUNNING);

async fn run_script(cmd: String, run_as: RunAs, timeout: Duration) {
    let Ok(_turn) = RUNNING.acquire().await else { return };
    match xvs_health::script::run(&cmd, &run_as, timeout).await {
        Ok(r) => {
            let output = r.output.as_str();
            match r.code {
                Some(0) => tracing::info!(script = %cmd, user = %run_as.name, %output, "script done"),
                _ if r.timed_out => {
                    tracing::warn!(script = %cmd, user = %run_as.name, "script stopped after {}s with what it started", timeout.as_secs())
                }
                Some(code) => tracing::warn!(script = %cmd, user = %run_as.name, code, %output, "script failed"),
                None => tracing::warn!(script = %cmd, user = %run_as.name, %output, "script killed by a signal"),
            }
        }
        Err(e) => tracing::warn!(script = %cmd, error = %e, "cannot run script"),
    }
}

fn service_name(k: &xvs_api::KeySpec) -> String {
    xvs_core::ServiceKey::from(*k).to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}
