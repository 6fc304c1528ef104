//! The control socket: JSON lines, only for root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use xvs_api::{ApiError, Request, Response};

use crate::control::Control;

/// Listens on `path` (created mode 0600, replacing a stale socket) and serves requests.
pub async fn serve(path: &Path, control: Arc<Mutex<Control>>) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %path.display(), "listening for xvsadm");
    loop {
        let (stream, _) = listener.accept().await?;
        let control = control.clone();
        tokio::spawn(async move {
            if let Err(e) = client(stream, control).await {
                tracing::debug!(error = %e, "client went away");
            }
        });
    }
}

async fn client(stream: UnixStream, control: Arc<Mutex<Control>>) -> anyhow::Result<()> {
    // The socket's mode already keeps others out; the peer's credentials say it again.
    let root = stream.peer_cred().map(|c| c.uid() == 0).unwrap_or(false);
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let resp = if !root {
            Response::Error(ApiError { errno: "EPERM".into(), message: "only root may configure xvs".into() })
        } else {
            match xvs_api::decode::<Request>(&line) {
                Ok(req) => {
                    let mut c = control.lock().await;
                    c.handle(req, crate::now())
                }
                Err(e) => Response::Error(ApiError { errno: "EINVAL".into(), message: e }),
            }
        };
        w.write_all(xvs_api::encode(&resp).as_bytes()).await?;
    }
    Ok(())
}
