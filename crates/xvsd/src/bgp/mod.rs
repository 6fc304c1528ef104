//! Announcing the VIPs to routers through BIRD (`[bgp]` in the file): the announcer's
//! decisions are [`xvs_announce`]'s; this module wires them to the services' states, the
//! liveness interface, BIRD's control socket and the operator's drains.
//!
//! Every 250 ms (at once after a drain) the services' states give each VIP's readiness; when
//! the routes BIRD should announce change, the include file is rewritten and BIRD is asked to
//! `configure`. When xvsd stops it withdraws everything first; when it dies, the kernel removes
//! the liveness interface and BIRD withdraws the routes through it by itself.

mod bird;
mod tun;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};
use xvs_announce::{readiness, Announcer, Policy, Settings};
use xvs_api::bgp::{BgpStatus, BgpVip};
use xvs_api::{ApiError, Response};

use crate::control::Control;

/// How long one push to BIRD may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// `[bgp]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// BIRD's control socket.
    pub socket: PathBuf,
    /// The include file.
    pub file: PathBuf,
    /// The liveness interface.
    pub interface: String,
    /// Which services of a VIP must be ready.
    pub policy: Policy,
    /// The VIPs to announce (`None`: every service address).
    pub vips: Option<Vec<IpAddr>>,
}

impl Plan {
    /// The plan of `config`'s `[bgp]`, if it has one.
    pub fn from_config(config: &xvs_api::config::Config) -> Result<Option<Plan>, String> {
        let Some(b) = &config.bgp else { return Ok(None) };
        if b.daemon != "bird" {
            return Err(format!("[bgp] daemon = \"{}\": xvs drives BIRD 2 (daemon = \"bird\")", b.daemon));
        }
        let policy = Policy::parse(&b.require)
            .ok_or_else(|| format!("[bgp] require = \"{}\": expected \"any\" or \"all\"", b.require))?;
        if b.interface.is_empty() || b.interface.len() > 15 || b.interface.contains(['/', ' ', '"']) {
            return Err(format!("[bgp] interface = \"{}\": not a valid interface name (1-15 characters)", b.interface));
        }
        let file = PathBuf::from(&b.include_file);
        if !file.is_absolute() || file.file_name().is_none() {
            return Err(format!("[bgp] include_file = \"{}\": an absolute file path is needed", b.include_file));
        }
        let vips = if b.vips.is_empty() {
            None
        } else {
            let mut v = Vec::new();
            for s in &b.vips {
                v.push(s.parse::<IpAddr>().map_err(|_| format!("[bgp] vips: '{s}' is not an IP address"))?);
            }
            Some(v)
        };
        Ok(Some(Plan { socket: PathBuf::from(&b.control_socket), file, interface: b.interface.clone(), policy, vips }))
    }
}

/// The drains, as kept on disk across restarts.
#[derive(Default, Serialize, Deserialize)]
struct Drains {
    all: bool,
    vips: BTreeSet<IpAddr>,
}

/// The announcer as the control socket and the metrics see it.
#[derive(Clone)]
pub struct Announce {
    inner: Arc<std::sync::Mutex<Announcer>>,
    wake: Arc<Notify>,
    drains_file: PathBuf,
    plan: Arc<Plan>,
}

impl Announce {
    /// `xvsadm bgp drain|undrain [VIP]`: kept on disk, so that a restarted xvsd does not
    /// announce a director the operator took out.
    pub fn drain(&self, drain: bool, vip: Option<IpAddr>) -> Response {
        let result = {
            let mut a = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let before = a.drains();
            let r = if drain { a.drain(vip) } else { a.undrain(vip) };
            r.and_then(|()| {
                let (all, vips) = a.drains();
                save_drains(&self.drains_file, &Drains { all, vips }).map_err(|e| {
                    // Not kept: back as it was, so that what the operator sees is what a
                    // restart keeps.
                    a.restore_drains(before.0, before.1.clone());
                    format!("cannot keep the drain in {}: {e}", self.drains_file.display())
                })
            })
        };
        match result {
            Ok(()) => {
                let what = vip.map_or("the director".to_string(), |v| v.to_string());
                tracing::info!(target = %what, "{} by the operator", if drain { "drained" } else { "undrained" });
                self.wake.notify_one();
                Response::Ok
            }
            Err(message) => Response::Error(ApiError { errno: "EINVAL".into(), message, ..Default::default() }),
        }
    }

    /// The settings it runs with.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The state for listings and metrics.
    pub fn status(&self) -> BgpStatus {
        let a = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        BgpStatus {
            daemon: "bird".into(),
            control_socket: self.plan.socket.display().to_string(),
            interface: self.plan.interface.clone(),
            drained: a.drains().0,
            error: a.last_error().map(str::to_string),
            pushes: a.pushes(),
            vips: a
                .status()
                .into_iter()
                .map(|s| BgpVip {
                    vip: s.vip,
                    announced: s.announced,
                    reason: s.reason.name().to_string(),
                    detail: s.reason.to_string(),
                })
                .collect(),
        }
    }
}

fn save_drains(path: &std::path::Path, d: &Drains) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(d).unwrap_or_default())?;
    std::fs::rename(&tmp, path)
}

fn load_drains(path: &std::path::Path) -> Drains {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Drains::default(),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot read the drains: the director stays drained");
            Drains { all: true, vips: BTreeSet::new() }
        }
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::error!(file = %path.display(), error = %e, "the drains file is damaged: the director stays drained");
            Drains { all: true, vips: BTreeSet::new() }
        }),
    }
}

/// The running announcer.
pub struct Running {
    task: tokio::task::JoinHandle<()>,
    stop: Arc<Notify>,
    done: Arc<Notify>,
}

/// Where the drains are kept, beside the health checks' states.
pub fn drains_path(state_file: &std::path::Path) -> PathBuf {
    PathBuf::from(format!("{}.bgp-drains", state_file.display()))
}

/// Creates the liveness interface and starts announcing.
pub async fn spawn(
    plan: Plan,
    control: Arc<Mutex<Control>>,
    drains_file: PathBuf,
) -> anyhow::Result<(Announce, Running)> {
    let live = tun::Liveness::create(&plan.interface)
        .await
        .with_context(|| format!("create the liveness interface {}", plan.interface))?;
    let mut announcer = Announcer::new(Settings::default());
    let d = load_drains(&drains_file);
    if d.all || !d.vips.is_empty() {
        tracing::info!(director = d.all, vips = ?d.vips, "drains kept from before the restart");
    }
    announcer.restore_drains(d.all, d.vips);
    let handle = Announce {
        inner: Arc::new(std::sync::Mutex::new(announcer)),
        wake: Arc::new(Notify::new()),
        drains_file,
        plan: Arc::new(plan),
    };
    let stop = Arc::new(Notify::new());
    let done = Arc::new(Notify::new());
    let h = handle.clone();
    let (s, dn) = (stop.clone(), done.clone());
    let task = tokio::spawn(async move {
        run(h, control, s, dn).await;
        drop(live);
    });
    Ok((handle, Running { task, stop, done }))
}

impl Running {
    /// Withdraws every route (waiting at most a push's time), then removes the interface.
    pub async fn stop(self) {
        self.stop.notify_one();
        let _ = tokio::time::timeout(PUSH_TIMEOUT + Duration::from_secs(1), self.done.notified()).await;
        self.task.abort();
        let _ = self.task.await;
    }

    /// Completes if the task ended (it runs for the life of the daemon).
    pub async fn ended(&mut self) {
        let _ = (&mut self.task).await;
    }
}

async fn run(h: Announce, control: Arc<Mutex<Control>>, stop: Arc<Notify>, done: Arc<Notify>) {
    let mut every = tokio::time::interval(Duration::from_millis(250));
    let mut stopping = false;
    let mut logged_error: Option<String> = None;
    let mut announced: Option<BTreeSet<IpAddr>> = None;
    loop {
        if !stopping {
            tokio::select! {
                _ = every.tick() => {}
                _ = h.wake.notified() => {}
                _ = stop.notified() => {
                    stopping = true;
                    h.inner.lock().unwrap_or_else(|e| e.into_inner()).handle_stop();
                }
            }
        }
        let inputs = control.lock().await.announce_inputs();
        let push = {
            let mut a = h.inner.lock().unwrap_or_else(|e| e.into_inner());
            a.handle_readiness(readiness(&inputs, h.plan.vips.as_deref(), h.plan.policy));
            a.poll(crate::now())
        };
        if let Some(p) = push {
            let r = match tokio::time::timeout(PUSH_TIMEOUT, bird::push(&h.plan, &p.routes)).await {
                Ok(r) => r,
                Err(_) => Err(format!("BIRD did not answer within {} s", PUSH_TIMEOUT.as_secs())),
            };
            match &r {
                Ok(()) => {
                    if announced.as_ref() != Some(&p.routes) {
                        let prev = announced.clone().unwrap_or_default();
                        let up: Vec<_> = p.routes.difference(&prev).collect();
                        let down: Vec<_> = prev.difference(&p.routes).collect();
                        tracing::info!(announced = ?up, withdrawn = ?down, total = p.routes.len(), "BIRD announces the new set of VIPs");
                        announced = Some(p.routes.clone());
                    }
                    if logged_error.take().is_some() {
                        tracing::info!("BIRD answers again");
                    }
                }
                Err(e) => {
                    if logged_error.as_ref() != Some(e) {
                        tracing::warn!(error = %e, "cannot update the announced VIPs; retrying");
                        logged_error = Some(e.clone());
                    }
                }
            }
            h.inner.lock().unwrap_or_else(|e| e.into_inner()).handle_result(p.id, p.routes, r, crate::now());
        }
        if stopping {
            let a = h.inner.lock().unwrap_or_else(|e| e.into_inner());
            if a.settled() || a.failures() > 0 {
                break;
            }
        }
    }
    done.notify_one();
}
