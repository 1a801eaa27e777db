//! HTTP: Prometheus exposition on `/metrics`, `/healthz`, `/readyz` and a small JSON API.
//!
//! With `http.api_token_env`, `/api/*` answers only requests that carry
//! `Authorization: Bearer <token>` (compared in constant time), and with `http.token_for_all`
//! every endpoint does; others get `401`. With `http.tls_cert` and `http.tls_key` the
//! listener speaks HTTPS only (the handshake, too, within `http.header_read_timeout`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_native_tls::{native_tls, TlsAcceptor};
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

/// The bearer token requests must present. Only its SHA-256 digest is kept, and a presented
/// token is hashed and compared in constant time, so neither its content nor its length shows
/// in response times; `Debug` never prints it.
#[derive(Clone)]
pub struct ApiToken([u8; 32]);

impl ApiToken {
    /// The token `token`.
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn accepts(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(presented) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        Sha256::digest(presented.trim().as_bytes())
            .as_slice()
            .ct_eq(&self.0)
            .into()
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

async fn require_token(State(token): State<ApiToken>, req: Request, next: Next) -> Response {
    if token.accepts(req.headers().get(header::AUTHORIZATION)) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response()
    }
}

/// The router, every endpoint open.
pub fn router(state: HttpState) -> Router {
    secured_router(state, None, false)
}

/// The router: `/api/*` needs `token` when there is one, and so do `/metrics`, `/healthz` and
/// `/readyz` when `token_for_all`.
pub fn secured_router(state: HttpState, token: Option<ApiToken>, token_for_all: bool) -> Router {
    let mut open = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    let mut api = Router::new().route("/api/v1/outputs", get(outputs));
    if let Some(token) = token {
        let auth = middleware::from_fn_with_state(token, require_token);
        if token_for_all {
            open = open.route_layer(auth.clone());
        }
        api = api.route_layer(auth);
    }
    open.merge(api).with_state(state)
}

/// The API token named by `http.api_token_env`, read from the environment (`None` when
/// unset in the configuration).
pub fn api_token(http: &HttpConfig) -> std::io::Result<Option<ApiToken>> {
    let Some(var) = &http.api_token_env else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(t) if !t.trim().is_empty() => Ok(Some(ApiToken::new(t.trim()))),
        _ => Err(std::io::Error::other(format!(
            "http.api_token_env names environment variable {var}, which is not set or empty"
        ))),
    }
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
    let token = api_token(http)?;
    let tls = tls_acceptor(http)?;
    let listener = tokio::net::TcpListener::bind(http.addr).await?;
    let bound = listener.local_addr()?;
    let app = secured_router(state, token, http.token_for_all);
    let handle = tokio::spawn(accept(
        listener,
        app,
        tls,
        http.header_read_timeout,
        http.max_connections,
        shutdown,
    ));
    Ok((bound, handle))
}

/// The TLS acceptor of `http.tls_cert` and `http.tls_key`, `None` when they are unset.
pub fn tls_acceptor(http: &HttpConfig) -> std::io::Result<Option<TlsAcceptor>> {
    let (Some(cert), Some(key)) = (&http.tls_cert, &http.tls_key) else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| std::io::Error::other(format!("{}: {e}", p.display())))
    };
    let identity = native_tls::Identity::from_pkcs8(&read(cert)?, &read(key)?).map_err(|e| {
        std::io::Error::other(format!(
            "http.tls_cert {} / http.tls_key {}: {e}",
            cert.display(),
            key.display()
        ))
    })?;
    let acceptor = native_tls::TlsAcceptor::new(identity).map_err(std::io::Error::other)?;
    Ok(Some(TlsAcceptor::from(acceptor)))
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
    tls: Option<TlsAcceptor>,
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
        let app = app.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            let Some(tls) = tls else {
                return serve_connection(stream, app, header_read_timeout, shutdown).await;
            };
            // The handshake counts against the header-read time: a silent client is closed.
            match tokio::time::timeout(header_read_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    serve_connection(stream, app, header_read_timeout, shutdown).await
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "https handshake failed"),
                Err(_) => tracing::debug!("https handshake timed out"),
            }
        });
    }
    // Stop accepting, then let the connections in flight finish.
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Serves one connection (plain or TLS) until it ends or `shutdown`, then lets the request in
/// flight finish.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
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
}

#[cfg(test)]
mod tests {
    use super::{ApiToken, HeaderValue, REFUSAL};

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let t = ApiToken::new("s3cret-token");
        let h = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(t.accepts(Some(&h("Bearer s3cret-token"))));
        assert!(!t.accepts(Some(&h("Bearer s3cret-toke"))));
        assert!(!t.accepts(Some(&h("Bearer s3cret-token2"))));
        assert!(!t.accepts(Some(&h("Basic s3cret-token"))));
        assert!(!t.accepts(Some(&h("s3cret-token"))));
        assert!(!t.accepts(None));
        assert!(!format!("{t:?}").contains("s3cret"));
    }

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
