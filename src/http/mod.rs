//! HTTP: Prometheus exposition on `/metrics`, `/healthz`, `/readyz` and a small JSON API.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::telemetry::Telemetry;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// Metrics.
    pub telemetry: Telemetry,
    /// Ready when partitions are assigned (or, in replay/demo, when running).
    pub ready: Arc<AtomicBool>,
    /// Latest outputs, newest last (bounded), for `/api/v1/outputs`.
    pub recent: Arc<RwLock<std::collections::VecDeque<serde_json::Value>>>,
}

impl HttpState {
    /// Keeps the last 200 outputs for the API.
    pub fn remember(&self, v: serde_json::Value) {
        let mut r = self.recent.write().expect("not poisoned");
        if r.len() >= 200 {
            r.pop_front();
        }
        r.push_back(v);
    }
}

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/outputs", get(outputs))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.telemetry.render(),
    )
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no partitions assigned")
    }
}

async fn outputs(State(s): State<HttpState>) -> impl IntoResponse {
    let r = s.recent.read().expect("not poisoned");
    Json(r.iter().cloned().collect::<Vec<_>>())
}

/// Binds `addr` and serves until `shutdown`; returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(state);
    let handle = tokio::spawn(async move {
        let res = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "http server failed");
        }
    });
    Ok((bound, handle))
}
