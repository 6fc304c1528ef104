//! The metrics address: Prometheus metrics (`/metrics`), a read-only status page (`/`) and the
//! snapshot it is drawn from (`/status.json`, the same document as `xvsadm -Ln --json`). The
//! page is one self-contained file: no external scripts, styles or fonts, so it works on a
//! director without Internet access.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::Mutex;

use crate::control::Control;
use crate::server::Extras;

/// The status page.
pub const STATUS_PAGE: &str = include_str!("status.html");

/// The routes, reading `control` and `extras` at each request.
pub fn router(control: Arc<Mutex<Control>>, extras: Extras) -> axum::Router {
    let (c, e) = (control.clone(), extras.clone());
    let metrics = move || {
        let (c, e) = (c.clone(), e.clone());
        async move {
            // The counters of the last 2-second tick, the same the listings show.
            let input = crate::metrics::input(&mut *c.lock().await, &e, crate::now());
            let body = tokio::task::spawn_blocking(move || crate::metrics::render(input)).await.unwrap_or_default();
            ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body)
        }
    };
    let status = move || {
        let (c, e) = (control.clone(), extras.clone());
        async move {
            let mut snap = c.lock().await.snapshot(false, crate::now());
            e.complete(&mut snap);
            let body = tokio::task::spawn_blocking(move || serde_json::to_string(&snap).unwrap_or_default())
                .await
                .unwrap_or_default();
            ([(CONTENT_TYPE, "application/json"), (CACHE_CONTROL, "no-store")], body)
        }
    };
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/status.json", get(status))
        .route("/", get(|| async { ([(CONTENT_TYPE, "text/html; charset=utf-8")], STATUS_PAGE).into_response() }))
}

/// The first try at the metrics address, made before systemd is told the daemon is ready, so
/// that a busy port is in the log by then.
pub async fn bind(addr: SocketAddr) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot serve metrics and the status page yet; retrying every 10 s");
            None
        }
    }
}

/// Serves [`router`] on `addr` (on `first` if [`bind`] got it) for the life of the daemon. A
/// busy port is not a reason to leave the dataplane without a control plane: the address is
/// retried every 10 s.
pub async fn serve(
    addr: SocketAddr,
    first: Option<tokio::net::TcpListener>,
    control: Arc<Mutex<Control>>,
    extras: Extras,
) {
    let app = router(control, extras);
    let listener = match first {
        Some(l) => l,
        None => loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
                break l;
            }
        },
    };
    tracing::info!(%addr, "metrics at http://{addr}/metrics, status page at http://{addr}/");
    let _ = axum::serve(listener, app).await;
}
