//! The control socket: JSON lines, only for root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use xvs_api::{ApiError, Request, Response};

use crate::control::Control;

/// The largest request accepted (an apply of 100k services with two real servers each is
/// about 70 MB of JSON).
pub const MAX_REQUEST: usize = 256 << 20;

/// Creates the socket at `path` (mode 0600, replacing a stale socket) with no moment at which
/// anyone else could reach it: it is bound and restricted inside a private (0700) directory and
/// only then renamed into place.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let private = dir.join(format!(".xvsd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let result = (|| -> anyhow::Result<UnixListener> {
        let tmp = private.join("sock");
        let listener = UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

use std::os::unix::fs::DirBuilderExt;

/// Serves requests on `listener` for the life of the daemon. A failing accept() (out of file
/// descriptors, say) is logged and retried: the daemon never stops answering over it.
pub async fn serve(listener: UnixListener, control: Arc<Mutex<Control>>) {
    serve_with(listener, control, Extras::default()).await
}

/// What the daemon runs beside the control: listings show them, and the synchronisation
/// daemons are started and stopped here.
#[derive(Clone, Default)]
pub struct Extras {
    /// The VRRP instances' states.
    pub vrrp: Option<crate::vrrp::View>,
    /// The synchronisation daemons.
    pub sync: Option<Arc<crate::sync::Daemons>>,
    /// The VIP announcer, when `[bgp]` is configured.
    pub bgp: Option<crate::bgp::Announce>,
    /// The routing of marked packets to the dataplane, kept in line with the services.
    pub fwmark: Option<Arc<crate::fwmark::Plumbing>>,
}

impl Extras {
    /// Adds to a snapshot of the control what runs beside it: the VRRP instances' states, the
    /// synchronisation daemons' counters, the VIP announcer's state.
    pub fn complete(&self, s: &mut xvs_api::Snapshot) {
        if let Some(v) = &self.vrrp {
            s.vrrp = v.lock().map(|v| v.clone()).unwrap_or_default();
        }
        if let Some(d) = &self.sync {
            s.daemons = d.states();
        }
        s.bgp = self.bgp.as_ref().map(|b| b.status());
    }
}

/// [`serve`], with the VRRP instances and synchronisation daemons of `extras`.
pub async fn serve_with(listener: UnixListener, control: Arc<Mutex<Control>>, extras: Extras) {
    let mut failures = 0u32;
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => {
                failures = 0;
                s
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures % 100 == 0 {
                    tracing::error!(error = %e, failures, "accept on the control socket failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let control = control.clone();
        let extras = extras.clone();
        tokio::spawn(async move {
            if let Err(e) = client(stream, control, extras).await {
                tracing::debug!(error = %e, "client went away");
            }
        });
    }
}

async fn client(stream: UnixStream, control: Arc<Mutex<Control>>, extras: Extras) -> anyhow::Result<()> {
    // The socket's mode already keeps others out; the peer's credentials say it again.
    let root = stream.peer_cred().map(|c| c.uid() == 0).unwrap_or(false);
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    loop {
        let mut line = Vec::new();
        let n = (&mut reader).take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_REQUEST {
            let resp = Response::Error(ApiError {
                errno: "E2BIG".into(),
                message: format!("request larger than {} MiB refused", MAX_REQUEST >> 20),
                ..Default::default()
            });
            w.write_all(xvs_api::encode(&resp).as_bytes()).await?;
            return Ok(()); // the rest of it cannot be read as a request
        }
        let line = String::from_utf8_lossy(&line);
        if root && line.contains("\"trace\"") {
            // A trace answers with many lines, until it ends (crate::trace).
            if let Ok(Request::Trace { filter, count, seconds }) = xvs_api::decode_request(line.trim_end()) {
                crate::trace::serve(&mut reader, &mut w, &control, filter, count, seconds).await?;
                continue;
            }
        }
        let resp = if !root {
            Response::Error(ApiError {
                errno: "EPERM".into(),
                message: "only root may configure xvs".into(),
                ..Default::default()
            })
        } else {
            // Listings show the counters of the last 2-second tick, as the kernel shows its
            // estimator's snapshot (testdata/kernel/zero-6.12.txt): not read afresh here.
            let request = xvs_api::decode_request(line.trim_end());
            match request {
                Ok(Request::Snapshot { conns: true }) => {
                    // The connection tables are walked without the lock: a million entries
                    // must not stop other clients, the timers or the health checks.
                    let (snap, lister) = {
                        let mut c = control.lock().await;
                        let lister = c.conn_lister();
                        let snap = c.handle(Request::Snapshot { conns: lister.is_none() }, crate::now());
                        (snap, lister)
                    };
                    match (snap, lister) {
                        (Response::Snapshot(mut s), Some((tables, timeouts))) => {
                            let now = crate::now();
                            s.conns = tokio::task::spawn_blocking(move || crate::conns::list(&tables, &timeouts, now))
                                .await
                                .unwrap_or_default();
                            Response::Snapshot(s)
                        }
                        (other, _) => other,
                    }
                }
                Ok(Request::StartDaemon { role, options }) => match (&extras.sync, crate::sync::Role::parse(&role)) {
                    (Some(d), Some(r)) => d.start(r, options),
                    (_, None) => Response::Error(ApiError {
                        errno: "EINVAL".into(),
                        message: format!("'{role}' is not master or backup"),
                        ..Default::default()
                    }),
                    (None, _) => control.lock().await.handle(Request::StartDaemon { role, options }, crate::now()),
                },
                Ok(Request::StopDaemon { role }) => match (&extras.sync, crate::sync::Role::parse(&role)) {
                    (Some(d), Some(r)) => d.stop(r).await,
                    _ => control.lock().await.handle(Request::StopDaemon { role }, crate::now()),
                },
                Ok(Request::Drain { drain, vip }) => match &extras.bgp {
                    Some(b) => b.drain(drain, vip),
                    None => control.lock().await.handle(Request::Drain { drain, vip }, crate::now()),
                },
                Ok(req) => {
                    let marks = may_change_marks(&req);
                    let resp = control.lock().await.handle(req, crate::now());
                    // A firewall-mark service added or deleted: its marked packets are routed
                    // before the answer, so a client may connect as soon as the command returns.
                    match (&extras.fwmark, resp) {
                        (Some(f), resp @ (Response::Ok | Response::Applied { .. })) if marks => {
                            match f.sync(&control).await {
                                Ok(()) => resp,
                                Err(e) => Response::Error(ApiError {
                                    errno: "EIO".into(),
                                    message: format!(
                                        "done, but marked packets cannot reach the firewall-mark services: {e:#}"
                                    ),
                                    ..Default::default()
                                }),
                            }
                        }
                        (_, resp) => resp,
                    }
                }
                Err(e) => Response::Error(ApiError { errno: "EINVAL".into(), message: e, ..Default::default() }),
            }
        };
        let resp = match resp {
            Response::Snapshot(mut s) => {
                extras.complete(&mut s);
                Response::Snapshot(s)
            }
            r => r,
        };
        w.write_all(xvs_api::encode(&resp).as_bytes()).await?;
    }
}

/// Whether `req` may add or remove a firewall-mark service, so that the marks routed to the
/// dataplane must be checked again. Other requests skip that check: it reads every service
/// (about 2 ms a request at 100,000 services).
fn may_change_marks(req: &Request) -> bool {
    match req {
        Request::AddService { service } | Request::EditService { service } => {
            matches!(service.key, xvs_api::KeySpec::Fwmark { .. })
        }
        Request::DeleteService { key } => matches!(key, xvs_api::KeySpec::Fwmark { .. }),
        Request::ApplyPart { removed, added, .. } => {
            removed.iter().any(|k| matches!(k, xvs_api::KeySpec::Fwmark { .. }))
                || added.iter().any(|s| s.fwmark.is_some())
        }
        Request::Clear | Request::Batch { .. } | Request::Apply { .. } => true,
        _ => false,
    }
}
