//! HTTP: Prometheus exposition on `/metrics`, `/healthz`, `/readyz` and a small JSON API.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HttpConfig;
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

/// Binds `http.addr` and serves until `shutdown`; returns the bound address (useful with
/// port 0).
///
/// Each connection must deliver a request's whole header within `http.header_read_timeout`
/// (a client trickling it byte by byte is closed all the same), and at most
/// `http.max_connections` are served at once: a connection beyond them is answered
/// `503 Service Unavailable` and closed at once, so a crowd of slow clients cannot hold the
/// server, and `/healthz` answers again as soon as their time is up.
pub async fn serve(
    http: &HttpConfig,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(http.addr).await?;
    let bound = listener.local_addr()?;
    let app = router(state);
    let handle = tokio::spawn(accept(
        listener,
        app,
        http.header_read_timeout,
        http.max_connections,
        shutdown,
    ));
    Ok((bound, handle))
}

/// What a connection beyond the cap is told before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain\r\n\
content-length: 21\r\n\
connection: close\r\n\
\r\n\
too many connections\n";

async fn accept(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let connections = TaskTracker::new();
    // Whether the last connection was refused: the cap is logged once per time it is reached.
    let mut refusing = false;
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            if !refusing {
                tracing::warn!(
                    max_connections,
                    "http connection cap reached, refusing connections"
                );
                refusing = true;
            }
            // Best effort and without waiting: the socket's buffer takes the few bytes.
            let _ = stream.try_write(REFUSAL);
            continue;
        };
        refusing = false;
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "http connection closed");
            }
        });
    }
    // Stop accepting, then let the connections in flight finish.
    drop(listener);
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests {
    use super::REFUSAL;

    #[test]
    fn the_refusal_is_a_whole_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{text}"
        );
    }
}
