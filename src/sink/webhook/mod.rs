//! Webhook sink: publishes driftwatch outputs (alerts, retraining triggers and
//! canary verdicts) to CI systems over HTTP.
//!
//! Three request templates are supported:
//!
//! * [`WebhookTemplate::Generic`] — `POST` the output object itself as JSON.
//! * [`WebhookTemplate::GithubRepositoryDispatch`] — `POST` a GitHub
//!   `repository_dispatch` event (`{"event_type": .., "client_payload": {..}}`)
//!   to `https://api.github.com/repos/OWNER/REPO/dispatches`.
//! * [`WebhookTemplate::GitlabPipelineTrigger`] — `POST` a GitLab pipeline
//!   trigger (`{"token": .., "ref": .., "variables": {"DRIFTWATCH_*": ..}}`) to
//!   `https://GITLAB/api/v4/projects/ID/trigger/pipeline`.
//!
//! Every request carries `Content-Type: application/json`,
//! `X-Driftwatch-Event: <type>`, `X-Driftwatch-Idempotency-Key: <id>`,
//! `X-Driftwatch-Delivery-Attempt: <n>`, `X-Driftwatch-Timestamp: <Unix seconds of this
//! attempt>` and, when a secret is configured,
//! `X-Driftwatch-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<exact body bytes>">`:
//! the timestamp is signed with the body, so a receiver that rejects old timestamps (five
//! minutes, say) cannot be fed a captured request again later ([`verify_signature`]).
//!
//! Delivery retries connect errors, timeouts, `429` and `5xx` with capped
//! exponential backoff (honouring `Retry-After`). When retries are exhausted
//! or a non-retryable answer comes back, the original output object is
//! appended as one JSON line to the dead-letter file and an error is returned:
//! nothing is dropped silently. The sink takes typed [`Output`]s: the kind and
//! the idempotency key are the output's own ([`Output::output_type`],
//! [`Output::idempotency_key`]); the bodies are rendered in [`render`]; the
//! configuration is [`crate::config::webhook`]. Outputs reach the sink through
//! the queue of [`crate::sink::fanout`].
//!
//! `https` URLs are verified against the system's root certificates (reqwest's
//! `native-tls` backend: OpenSSL on Linux); there is no switch to turn verification off. A
//! build without a TLS backend reports an `https` URL as a non-retryable dead-lettered error
//! that says so.

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;
use serde_json::json;
use sha2::Sha256;

pub use crate::config::webhook::{redact_url, WebhookConfig, WebhookTemplate};
use crate::output::{Output, OutputType};

pub mod render;
#[cfg(test)]
mod tests;

pub use render::{GITHUB_CLIENT_PAYLOAD_MAX_BYTES, GITHUB_CLIENT_PAYLOAD_MAX_KEYS};

type HmacSha256 = Hmac<Sha256>;

/// Header carrying `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-driftwatch-signature";
/// Header carrying the attempt's time, whole seconds since the Unix epoch; signed with the
/// body.
pub const TIMESTAMP_HEADER: &str = "x-driftwatch-timestamp";
/// Header carrying the output's id (`alert_id`, `trigger_id` or verdict id).
pub const IDEMPOTENCY_HEADER: &str = "x-driftwatch-idempotency-key";
/// Header carrying the output's `type`.
pub const EVENT_HEADER: &str = "x-driftwatch-event";
/// Header carrying the 1-based delivery attempt number.
pub const ATTEMPT_HEADER: &str = "x-driftwatch-delivery-attempt";

/// How much of an error response body is kept in the failure reason.
const RESPONSE_SNIPPET_BYTES: usize = 512;

// ---------------------------------------------------------------------------
// Errors, results, counters
// ---------------------------------------------------------------------------

/// Errors of the webhook sink.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The config has problems (see [`WebhookConfig::validate`]).
    #[error("invalid webhook config: {}", .0.join("; "))]
    InvalidConfig(Vec<String>),
    /// The HTTP client could not be built.
    #[error("could not build the webhook HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// Delivery failed for good; the output was appended to the dead-letter
    /// file.
    #[error(
        "webhook delivery to {url} failed after {attempts} attempt(s): {reason}; the output was written to the dead-letter file {}",
        dead_letter_file.display()
    )]
    DeadLettered {
        /// Endpoint, without query string or credentials.
        url: String,
        /// HTTP attempts made (0 when the output itself was invalid).
        attempts: u32,
        /// Last HTTP status, if any answer came back.
        status: Option<u16>,
        /// Why delivery failed.
        reason: String,
        /// Whether the last failure was transient (re-sending later may work).
        transient: bool,
        /// Where the output was written.
        dead_letter_file: PathBuf,
    },
    /// Delivery failed and the dead-letter file could not be written either:
    /// the output is NOT persisted anywhere, the caller must keep it.
    #[error(
        "webhook delivery to {url} failed ({reason}) and the output could NOT be written to the dead-letter file {}: {source}",
        dead_letter_file.display()
    )]
    DeadLetterWrite {
        /// Endpoint, without query string or credentials.
        url: String,
        /// Why delivery failed.
        reason: String,
        /// The dead-letter file that could not be written.
        dead_letter_file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl WebhookError {
    /// Whether handing the same output to the sink again later might
    /// succeed: true for transient delivery failures (connect errors,
    /// timeouts, 429, 5xx) and when the dead-letter write failed; false for
    /// config errors, invalid outputs and permanent HTTP answers (other 4xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            WebhookError::InvalidConfig(_) | WebhookError::Client(_) => false,
            WebhookError::DeadLettered { transient, .. } => *transient,
            WebhookError::DeadLetterWrite { .. } => true,
        }
    }

    /// Whether the output is safely persisted in the dead-letter file.
    pub fn is_dead_lettered(&self) -> bool {
        matches!(self, WebhookError::DeadLettered { .. })
    }
}

/// Successful outcome of [`WebhookSink::deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The endpoint answered with a 2xx status.
    Delivered {
        /// The 2xx status.
        status: u16,
        /// Attempts it took (1 = first try).
        attempts: u32,
        /// Value sent in `X-Driftwatch-Idempotency-Key`.
        idempotency_key: String,
    },
    /// The output's kind is not in [`WebhookConfig::kinds`]; nothing was sent.
    Skipped {
        /// The output's kind.
        kind: OutputType,
    },
}

/// Snapshot of a sink's counters, for export as Prometheus counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookCounters {
    /// Outputs delivered (2xx).
    pub delivered: u64,
    /// Retries made (attempts beyond the first).
    pub retried: u64,
    /// Outputs written to the dead-letter file, whatever the cause (the next two included).
    pub dead_lettered: u64,
    /// Outputs written to the dead-letter file because the delivery queue was full.
    pub queue_full: u64,
    /// Outputs still queued (or in flight) when the drain timeout ran out at shutdown, written
    /// to the dead-letter file.
    pub unsent_at_shutdown: u64,
    /// Outputs skipped because their kind is not configured.
    pub skipped: u64,
    /// Outputs that failed and could not be written to the dead-letter file.
    pub dead_letter_write_errors: u64,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    queue_full: AtomicU64,
    unsent_at_shutdown: AtomicU64,
    skipped: AtomicU64,
    dead_letter_write_errors: AtomicU64,
}

/// Why an output went to the dead-letter file without a (final) delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// The delivery queue was full when the output was published.
    QueueFull,
    /// Shutdown's drain timeout ran out before the output was delivered.
    Shutdown,
}

/// A secret that never shows in `Debug` output.
struct Redacted<T>(T);

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

/// `sha256=<hex HMAC-SHA256 keyed with secret of "<timestamp>.<body>">`, the value of the
/// `X-Driftwatch-Signature` header sent with `X-Driftwatch-Timestamp: <timestamp>`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(signed_mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks an `X-Driftwatch-Signature` header value against the `X-Driftwatch-Timestamp`
/// header value and `body`, in constant time. Whether the timestamp is recent enough is the
/// receiver's decision (see `examples/ci/README.md`).
pub fn verify_signature(secret: &[u8], timestamp: &str, body: &[u8], header_value: &str) -> bool {
    let Some(hex_sig) = header_value.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    signed_mac(secret, timestamp, body)
        .verify_slice(&sig)
        .is_ok()
}

fn signed_mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

// ---------------------------------------------------------------------------
// The sink
// ---------------------------------------------------------------------------

/// Delivers driftwatch outputs to one webhook endpoint. Share it behind an
/// `Arc`; `deliver` may be called concurrently.
pub struct WebhookSink {
    config: WebhookConfig,
    client: reqwest::Client,
    url: Url,
    /// `url` without query string, fragment or credentials.
    display_url: String,
    secret: Option<Redacted<Vec<u8>>>,
    token: Option<Redacted<String>>,
    kinds: HashSet<OutputType>,
    counters: Counters,
    /// Held while a line is appended: whole lines, never interleaved. A std mutex because the
    /// append does not await, so a cancelled delivery cannot leave half a line behind.
    dead_letter_lock: std::sync::Mutex<()>,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.display_url)
            .field("template", &self.config.template)
            .field("kinds", &self.config.kinds)
            .field("secret", &self.secret)
            .field("token", &self.token)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

/// How one attempt failed.
struct AttemptFailure {
    reason: String,
    status: Option<u16>,
    transient: bool,
    retry_after: Option<Duration>,
}

impl WebhookSink {
    /// Validates `config`, reads the secret and token from the environment and
    /// builds the HTTP client.
    pub fn new(config: WebhookConfig) -> Result<Self, WebhookError> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(WebhookError::InvalidConfig(problems));
        }
        let url = Url::parse(&config.url)
            .map_err(|e| WebhookError::InvalidConfig(vec![e.to_string()]))?;
        let display_url = redact_url(&url);
        let read = |name: &Option<String>| name.as_deref().and_then(|n| std::env::var(n).ok());
        let secret = read(&config.secret_env).map(|s| Redacted(s.into_bytes()));
        let token = read(&config.token_env).map(Redacted);
        if secret.is_none() {
            tracing::warn!(url = %display_url, "webhook sink has no secret_env: requests are not signed");
        }
        if token.is_some() && url.scheme() == "http" && !is_loopback(&url) {
            tracing::warn!(url = %display_url, "webhook sink sends a token over plain http");
        }

        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("driftwatch-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebhookError::Client)?;

        Ok(WebhookSink {
            kinds: config.kinds.iter().copied().collect(),
            config,
            client,
            url,
            display_url,
            secret,
            token,
            counters: Counters::default(),
            dead_letter_lock: std::sync::Mutex::new(()),
        })
    }

    /// The config this sink was built from.
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// The endpoint without query string, fragment or credentials.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// Whether outputs of this kind are sent (the others are skipped).
    pub fn accepts(&self, kind: OutputType) -> bool {
        self.kinds.contains(&kind)
    }

    /// Counts an output skipped before it reached [`WebhookSink::deliver`] (its kind is not
    /// configured).
    pub fn count_skipped(&self) {
        self.counters.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Current counter values.
    pub fn counters(&self) -> WebhookCounters {
        let c = &self.counters;
        WebhookCounters {
            delivered: c.delivered.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            queue_full: c.queue_full.load(Ordering::Relaxed),
            unsent_at_shutdown: c.unsent_at_shutdown.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            dead_letter_write_errors: c.dead_letter_write_errors.load(Ordering::Relaxed),
        }
    }

    /// Sends one output. Returns [`Delivery::Skipped`] for kinds not
    /// configured, [`Delivery::Delivered`] on a 2xx answer, and otherwise an
    /// error after the output has been appended to the dead-letter file
    /// ([`WebhookError::DeadLettered`]) — or, if even that failed,
    /// [`WebhookError::DeadLetterWrite`].
    pub async fn deliver(&self, output: &Output) -> Result<Delivery, WebhookError> {
        let kind = output.output_type();
        if !self.accepts(kind) {
            self.count_skipped();
            tracing::debug!(url = %self.display_url, kind = %kind, "webhook sink skips output kind");
            return Ok(Delivery::Skipped { kind });
        }
        let key = output.idempotency_key();
        let body = render::body(
            &self.config,
            self.token.as_ref().map(|t| t.0.trim()),
            output,
        );
        let headers = self.headers(kind, &key);

        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let failure = match self.attempt(&headers, attempts, &body).await {
                Ok(status) => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(url = %self.display_url, kind = %kind, id = %key, status, attempts, "webhook delivered");
                    return Ok(Delivery::Delivered {
                        status,
                        attempts,
                        idempotency_key: key,
                    });
                }
                Err(f) => f,
            };
            let retries_done = attempts - 1;
            if !failure.transient || retries_done >= self.config.max_retries {
                let reason = if failure.transient {
                    format!("retries exhausted, last error: {}", failure.reason)
                } else {
                    failure.reason
                };
                return Err(self.dead_letter(
                    output,
                    reason,
                    failure.status,
                    attempts,
                    failure.transient,
                ));
            }
            let delay = retry_delay(
                self.config.initial_backoff,
                self.config.max_backoff,
                retries_done,
                failure.retry_after,
            );
            tracing::warn!(
                url = %self.display_url, kind = %kind, id = %key, attempt = attempts,
                status = ?failure.status, delay_ms = delay.as_millis() as u64,
                reason = %failure.reason, "webhook delivery failed, retrying"
            );
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP attempt: `Ok(status)` on 2xx.
    async fn attempt(
        &self,
        headers: &HeaderMap,
        attempt: u32,
        body: &[u8],
    ) -> Result<u16, AttemptFailure> {
        // Each attempt has its own timestamp, and so its own signature: a retry is not a replay.
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .to_string();
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(headers.clone())
            .header(ATTEMPT_HEADER, attempt)
            .header(TIMESTAMP_HEADER, &timestamp);
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, sign(&secret.0, &timestamp, body));
        }
        let request = request.body(body.to_vec());
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Err(classify_transport_error(e)),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let transient = status.as_u16() == 429 || status.is_server_error();
        let snippet = read_snippet(response).await;
        let mut reason = format!("HTTP {status}");
        if status.is_redirection() {
            reason.push_str(" (redirects are not followed; point url at the final endpoint)");
        }
        if !snippet.is_empty() {
            reason.push_str(": ");
            reason.push_str(&snippet);
        }
        Err(AttemptFailure {
            reason,
            status: Some(status.as_u16()),
            transient,
            retry_after,
        })
    }

    fn headers(&self, kind: OutputType, key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(
            HeaderName::from_static(EVENT_HEADER),
            HeaderValue::from_static(kind.as_str()),
        );
        h.insert(
            HeaderName::from_static(IDEMPOTENCY_HEADER),
            header_value(key),
        );
        match self.config.template {
            WebhookTemplate::GithubRepositoryDispatch => {
                h.insert(
                    ACCEPT,
                    HeaderValue::from_static("application/vnd.github+json"),
                );
                h.insert(
                    HeaderName::from_static("x-github-api-version"),
                    HeaderValue::from_static("2022-11-28"),
                );
                self.insert_bearer(&mut h);
            }
            WebhookTemplate::Generic => self.insert_bearer(&mut h),
            // The GitLab trigger token travels in the body.
            WebhookTemplate::GitlabPipelineTrigger => {}
        }
        h
    }

    fn insert_bearer(&self, h: &mut HeaderMap) {
        if let Some(token) = &self.token {
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", token.0.trim())) {
                v.set_sensitive(true);
                h.insert(AUTHORIZATION, v);
            } else {
                tracing::error!(url = %self.display_url, "token is not a valid header value; sending without Authorization");
            }
        }
    }

    /// Writes an output that is not (or no longer) going to be attempted to the dead-letter
    /// file and counts it; `Err` when even that failed (it is logged and counted too).
    pub fn give_up(&self, output: &Output, why: Undelivered) -> Result<(), WebhookError> {
        let (reason, counter) = match why {
            Undelivered::QueueFull => (
                format!(
                    "delivery queue full ({} outputs waiting)",
                    self.config.queue_capacity
                ),
                &self.counters.queue_full,
            ),
            Undelivered::Shutdown => (
                "not delivered before the drain timeout at shutdown".to_owned(),
                &self.counters.unsent_at_shutdown,
            ),
        };
        let result = self.dead_letter(output, reason, None, 0, true);
        if !result.is_dead_lettered() {
            return Err(result);
        }
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Appends the output to the dead-letter file and returns the error to
    /// hand back to the caller.
    fn dead_letter(
        &self,
        output: &Output,
        reason: String,
        status: Option<u16>,
        attempts: u32,
        transient: bool,
    ) -> WebhookError {
        let record = json!({
            "reason": reason,
            "status": status,
            "attempts": attempts,
            "url": self.display_url,
            "payload": output.to_json(),
            "failed_at": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        });
        let mut line =
            serde_json::to_vec(&record).expect("serializing a serde_json::Value cannot fail");
        line.push(b'\n');
        let path = &self.config.dead_letter_file;
        let written = {
            let _guard = self
                .dead_letter_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            append_line(path, &line)
        };
        match written {
            Ok(()) => {
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    url = %self.display_url, attempts, status = ?status, reason = %reason,
                    dead_letter_file = %path.display(), "webhook delivery failed; output dead-lettered"
                );
                WebhookError::DeadLettered {
                    url: self.display_url.clone(),
                    attempts,
                    status,
                    reason,
                    transient,
                    dead_letter_file: path.clone(),
                }
            }
            Err(source) => {
                self.counters
                    .dead_letter_write_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    url = %self.display_url, reason = %reason, dead_letter_file = %path.display(),
                    error = %source, "webhook delivery failed and the dead-letter write failed"
                );
                WebhookError::DeadLetterWrite {
                    url: self.display_url.clone(),
                    reason,
                    dead_letter_file: path.clone(),
                    source,
                }
            }
        }
    }
}

/// Appends one line and waits until it is on disk: a dead letter is durable once written.
fn append_line(path: &Path, line: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line)?;
    file.sync_data()
}

/// Delay before retry number `retries_done + 1`: `initial * 2^retries_done`
/// capped at `max`; a `Retry-After` is honoured (as a lower bound) up to `max`.
fn retry_delay(
    initial: Duration,
    max: Duration,
    retries_done: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let factor = 2u32.checked_pow(retries_done).unwrap_or(u32::MAX);
    let backoff = initial.checked_mul(factor).unwrap_or(max).min(max);
    match retry_after {
        Some(ra) => backoff.max(ra.min(max)),
        None => backoff,
    }
}

fn classify_transport_error(e: reqwest::Error) -> AttemptFailure {
    let (timeout, connect, permanent) = (
        e.is_timeout(),
        e.is_connect(),
        e.is_builder() || e.is_redirect(),
    );
    // reqwest's Display names the request URL, whose query string may carry a
    // token: drop it before the text reaches logs or the dead-letter file.
    let chain = error_chain(&e.without_url());
    // A reqwest built without a TLS backend cannot talk https at all.
    if chain.contains("scheme is not http") {
        return AttemptFailure {
            reason: format!(
                "{chain} (this build has no TLS support for https; enable a reqwest TLS feature such as rustls-tls)"
            ),
            status: None,
            transient: false,
            retry_after: None,
        };
    }
    let (what, transient) = if timeout {
        ("timeout", true)
    } else if connect {
        ("connect error", true)
    } else if permanent {
        ("request error", false)
    } else {
        // Connection reset, broken pipe, malformed response, ...: transient.
        ("transport error", true)
    };
    AttemptFailure {
        reason: format!("{what}: {chain}"),
        status: None,
        transient,
        retry_after: None,
    }
}

/// `e` and its sources joined with `: `.
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

async fn read_snippet(mut response: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < RESPONSE_SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(RESPONSE_SNIPPET_BYTES);
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        // Non-visible-ASCII ids: fall back to a lossless, header-safe form.
        HeaderValue::from_str(&s.escape_default().to_string())
            .expect("escaped string is visible ASCII")
    })
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or("");
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
