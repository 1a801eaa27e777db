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
//! `X-Driftwatch-Delivery-Attempt: <n>` and, when a secret is configured,
//! `X-Driftwatch-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`.
//!
//! Delivery retries connect errors, timeouts, `429` and `5xx` with capped
//! exponential backoff (honouring `Retry-After`). When retries are exhausted
//! or a non-retryable answer comes back, the original output object is
//! appended as one JSON line to the dead-letter file and an error is returned:
//! nothing is dropped silently.
//!
//! Note: `https` URLs need a TLS backend in `reqwest` (e.g. its `rustls-tls`
//! feature). A build without one reports the failure as a non-retryable
//! dead-lettered error that says so.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "x-driftwatch-signature";
/// Header carrying the output's id (`alert_id`, `trigger_id` or verdict id).
pub const IDEMPOTENCY_HEADER: &str = "x-driftwatch-idempotency-key";
/// Header carrying the output's `type`.
pub const EVENT_HEADER: &str = "x-driftwatch-event";
/// Header carrying the 1-based delivery attempt number.
pub const ATTEMPT_HEADER: &str = "x-driftwatch-delivery-attempt";

/// GitHub rejects a `client_payload` with more than this many top-level keys.
pub const GITHUB_CLIENT_PAYLOAD_MAX_KEYS: usize = 10;
/// GitHub rejects a `client_payload` of 64 KB or more; above this size the
/// full object (`driftwatch`) is left out (the GitLab/generic templates and the
/// Kafka topic still carry it).
pub const GITHUB_CLIENT_PAYLOAD_MAX_BYTES: usize = 60 * 1024;
/// GitHub rejects an `event_type` longer than this.
const GITHUB_EVENT_TYPE_MAX_LEN: usize = 100;
/// How much of an error response body is kept in the failure reason.
const RESPONSE_SNIPPET_BYTES: usize = 512;
/// Longest `summary` string put in a GitHub `client_payload`.
const SUMMARY_MAX_CHARS: usize = 500;
/// Most reasons copied into a GitHub `client_payload`.
const REASONS_MAX: usize = 10;
/// Longest single reason copied into a GitHub `client_payload`.
const REASON_MAX_CHARS: usize = 200;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// The kind of driftwatch output, i.e. the value of its `"type"` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// A monitoring alert (`"type": "alert"`, id in `alert_id`).
    Alert,
    /// A retraining trigger (`"type": "retrain_trigger"`, id in `trigger_id`).
    RetrainTrigger,
    /// A canary verdict (`"type": "canary_verdict"`, id in `verdict_id`).
    CanaryVerdict,
}

impl OutputKind {
    /// All output kinds.
    pub const ALL: [OutputKind; 3] = [
        OutputKind::Alert,
        OutputKind::RetrainTrigger,
        OutputKind::CanaryVerdict,
    ];

    /// The wire name, as found in the output's `"type"` field.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Alert => "alert",
            OutputKind::RetrainTrigger => "retrain_trigger",
            OutputKind::CanaryVerdict => "canary_verdict",
        }
    }

    /// Parses a wire name; `None` for anything unknown.
    pub fn parse(s: &str) -> Option<Self> {
        OutputKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Fields holding this kind's id, in order of preference.
    fn id_fields(self) -> &'static [&'static str] {
        match self {
            OutputKind::Alert => &["alert_id"],
            OutputKind::RetrainTrigger => &["trigger_id"],
            OutputKind::CanaryVerdict => &["verdict_id", "canary_id", "id"],
        }
    }
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shape of the HTTP request sent for each output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookTemplate {
    /// `POST` the output object itself as JSON.
    Generic,
    /// `POST` a GitHub `repository_dispatch` event; needs `token_env`.
    GithubRepositoryDispatch,
    /// `POST` a GitLab pipeline trigger; needs `token_env` (a trigger token).
    GitlabPipelineTrigger,
}

/// Configuration of one webhook sink (one `[[sinks.webhook]]` table).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Endpoint to `POST` to (`http` or `https`). Query string and userinfo
    /// are never written to logs or the dead-letter file.
    pub url: String,
    /// Request shape; default `generic`.
    #[serde(default = "default_template")]
    pub template: WebhookTemplate,
    /// Output types to send; others are skipped (and counted). Default: all.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<OutputKind>,
    /// Name of the environment variable holding the HMAC-SHA256 signing
    /// secret. The secret itself never appears in config or logs. When unset,
    /// requests are not signed.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Name of the environment variable holding the bearer / CI token. GitHub
    /// gets `Authorization: Bearer <token>`; GitLab gets the `token` body
    /// field; generic gets `Authorization: Bearer <token>` when set.
    #[serde(default)]
    pub token_env: Option<String>,
    /// `event_type` of GitHub `repository_dispatch` events.
    #[serde(default = "default_github_event_type")]
    pub github_event_type: String,
    /// Git ref the GitLab pipeline is triggered on.
    #[serde(default = "default_gitlab_ref")]
    pub gitlab_ref: String,
    /// Per-attempt timeout (connect + request + response), humantime string.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Retries after the first attempt (so at most `max_retries + 1` attempts).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Delay before the first retry; doubles per retry. Humantime string.
    #[serde(default = "default_initial_backoff", deserialize_with = "de_duration")]
    pub initial_backoff: Duration,
    /// Upper bound of the retry delay, also for `Retry-After`. Humantime string.
    #[serde(default = "default_max_backoff", deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// JSON-lines file receiving outputs that could not be delivered.
    #[serde(default = "default_dead_letter_file")]
    pub dead_letter_file: PathBuf,
}

/// Default [`WebhookConfig::template`]: `generic`.
pub fn default_template() -> WebhookTemplate {
    WebhookTemplate::Generic
}

/// Default [`WebhookConfig::kinds`]: all three output kinds.
pub fn default_kinds() -> Vec<OutputKind> {
    OutputKind::ALL.to_vec()
}

/// Default [`WebhookConfig::github_event_type`]: `driftwatch-retrain`.
pub fn default_github_event_type() -> String {
    "driftwatch-retrain".to_owned()
}

/// Default [`WebhookConfig::gitlab_ref`]: `main`.
pub fn default_gitlab_ref() -> String {
    "main".to_owned()
}

/// Default [`WebhookConfig::timeout`]: 10 s.
pub fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Default [`WebhookConfig::max_retries`]: 5.
pub fn default_max_retries() -> u32 {
    5
}

/// Default [`WebhookConfig::initial_backoff`]: 500 ms.
pub fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}

/// Default [`WebhookConfig::max_backoff`]: 30 s.
pub fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

/// Default [`WebhookConfig::dead_letter_file`]:
/// `driftwatch-webhook-dead-letters.jsonl`.
pub fn default_dead_letter_file() -> PathBuf {
    PathBuf::from("driftwatch-webhook-dead-letters.jsonl")
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(s.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {s:?}: {e} (expected e.g. \"500ms\", \"10s\", \"1m\")"
        ))
    })
}

impl fmt::Debug for WebhookConfig {
    // Hand-written so that a token in the url's query string is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = Url::parse(&self.url)
            .map(|u| redact_url(&u))
            .unwrap_or_else(|_| "<unparsable url>".to_owned());
        f.debug_struct("WebhookConfig")
            .field("url", &url)
            .field("template", &self.template)
            .field("kinds", &self.kinds)
            .field("secret_env", &self.secret_env)
            .field("token_env", &self.token_env)
            .field("github_event_type", &self.github_event_type)
            .field("gitlab_ref", &self.gitlab_ref)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("dead_letter_file", &self.dead_letter_file)
            .finish()
    }
}

impl WebhookConfig {
    /// A config for `url` and `template` with every other field at its default.
    pub fn new(url: impl Into<String>, template: WebhookTemplate) -> Self {
        WebhookConfig {
            url: url.into(),
            template,
            kinds: default_kinds(),
            secret_env: None,
            token_env: None,
            github_event_type: default_github_event_type(),
            gitlab_ref: default_gitlab_ref(),
            timeout: default_timeout(),
            max_retries: default_max_retries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            dead_letter_file: default_dead_letter_file(),
        }
    }

    /// Every problem with this config (empty when it is usable). Reads the
    /// environment variables named by `secret_env` / `token_env` to check they
    /// are set, but never reports their values.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();

        match Url::parse(&self.url) {
            Err(e) => problems.push(format!("url {:?} is not a valid URL: {e}", self.url)),
            Ok(url) => {
                if url.scheme() != "http" && url.scheme() != "https" {
                    problems.push(format!(
                        "url scheme must be http or https, got {:?}",
                        url.scheme()
                    ));
                }
                if url.host_str().unwrap_or("").is_empty() {
                    problems.push("url has no host".to_owned());
                }
                if !url.username().is_empty() || url.password().is_some() {
                    problems.push(
                        "url must not embed credentials; put the token in the variable named by token_env"
                            .to_owned(),
                    );
                }
                let path = url.path().trim_end_matches('/');
                match self.template {
                    WebhookTemplate::GithubRepositoryDispatch if !path.ends_with("/dispatches") => {
                        problems.push(format!(
                            "template github_repository_dispatch expects a url like https://api.github.com/repos/OWNER/REPO/dispatches, got path {:?}",
                            url.path()
                        ));
                    }
                    WebhookTemplate::GitlabPipelineTrigger
                        if !path.ends_with("/trigger/pipeline") =>
                    {
                        problems.push(format!(
                            "template gitlab_pipeline_trigger expects a url like https://gitlab.example.com/api/v4/projects/ID/trigger/pipeline, got path {:?}",
                            url.path()
                        ));
                    }
                    _ => {}
                }
            }
        }

        if self.kinds.is_empty() {
            problems.push("kinds is empty: nothing would ever be sent".to_owned());
        }

        check_env("secret_env", self.secret_env.as_deref(), &mut problems);
        check_env("token_env", self.token_env.as_deref(), &mut problems);
        if self.token_env.is_none() {
            match self.template {
                WebhookTemplate::GithubRepositoryDispatch => problems.push(
                    "template github_repository_dispatch needs token_env (a token allowed to create repository dispatch events)"
                        .to_owned(),
                ),
                WebhookTemplate::GitlabPipelineTrigger => problems.push(
                    "template gitlab_pipeline_trigger needs token_env (a pipeline trigger token)"
                        .to_owned(),
                ),
                WebhookTemplate::Generic => {}
            }
        }

        if self.template == WebhookTemplate::GithubRepositoryDispatch {
            let n = self.github_event_type.chars().count();
            if n == 0 || n > GITHUB_EVENT_TYPE_MAX_LEN {
                problems.push(format!(
                    "github_event_type must be 1..={GITHUB_EVENT_TYPE_MAX_LEN} characters, got {n}"
                ));
            }
        }
        if self.template == WebhookTemplate::GitlabPipelineTrigger
            && self.gitlab_ref.trim().is_empty()
        {
            problems.push("gitlab_ref must not be empty".to_owned());
        }

        if self.timeout.is_zero() {
            problems.push("timeout must be greater than zero".to_owned());
        }
        if self.initial_backoff.is_zero() {
            problems.push("initial_backoff must be greater than zero".to_owned());
        }
        if self.max_backoff < self.initial_backoff {
            problems.push(format!(
                "max_backoff ({}) must not be smaller than initial_backoff ({})",
                humantime::format_duration(self.max_backoff),
                humantime::format_duration(self.initial_backoff)
            ));
        }
        if self.dead_letter_file.as_os_str().is_empty() {
            problems.push("dead_letter_file must not be empty".to_owned());
        } else if self.dead_letter_file.is_dir() {
            problems.push(format!(
                "dead_letter_file {} is a directory",
                self.dead_letter_file.display()
            ));
        }
        problems
    }
}

fn check_env(field: &str, name: Option<&str>, problems: &mut Vec<String>) {
    let Some(name) = name else { return };
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        problems.push(format!(
            "{field} {name:?} is not a valid environment variable name"
        ));
        return;
    }
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => {}
        Ok(_) => problems.push(format!(
            "environment variable {name} (named by {field}) is empty"
        )),
        Err(std::env::VarError::NotPresent) => problems.push(format!(
            "environment variable {name} (named by {field}) is not set"
        )),
        Err(std::env::VarError::NotUnicode(_)) => problems.push(format!(
            "environment variable {name} (named by {field}) is not valid UTF-8"
        )),
    }
}

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
        kind: OutputKind,
    },
}

/// Snapshot of a sink's counters, for export as Prometheus counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookCounters {
    /// Outputs delivered (2xx).
    pub delivered: u64,
    /// Retries made (attempts beyond the first).
    pub retried: u64,
    /// Outputs written to the dead-letter file.
    pub dead_lettered: u64,
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
    skipped: AtomicU64,
    dead_letter_write_errors: AtomicU64,
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

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`, the value of the
/// `X-Driftwatch-Signature` header.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks an `X-Driftwatch-Signature` header value against `body` in constant
/// time.
pub fn verify_signature(secret: &[u8], body: &[u8], header_value: &str) -> bool {
    let Some(hex_sig) = header_value.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
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
    kinds: HashSet<OutputKind>,
    counters: Counters,
    dead_letter_lock: tokio::sync::Mutex<()>,
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
            dead_letter_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The config this sink was built from.
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Current counter values.
    pub fn counters(&self) -> WebhookCounters {
        let c = &self.counters;
        WebhookCounters {
            delivered: c.delivered.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            dead_letter_write_errors: c.dead_letter_write_errors.load(Ordering::Relaxed),
        }
    }

    /// Sends one output object. Returns [`Delivery::Skipped`] for kinds not
    /// configured, [`Delivery::Delivered`] on a 2xx answer, and otherwise an
    /// error after the output has been appended to the dead-letter file
    /// ([`WebhookError::DeadLettered`]) — or, if even that failed,
    /// [`WebhookError::DeadLetterWrite`].
    pub async fn deliver(&self, output: &Value) -> Result<Delivery, WebhookError> {
        let (kind, key) = match classify(output) {
            Ok(x) => x,
            Err(reason) => {
                return Err(self
                    .dead_letter(output, format!("invalid output: {reason}"), None, 0, false)
                    .await)
            }
        };
        if !self.kinds.contains(&kind) {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(url = %self.display_url, kind = %kind, "webhook sink skips output kind");
            return Ok(Delivery::Skipped { kind });
        }

        let body = self.render_body(kind, &key, output);
        let headers = self.headers(kind, &key, &body);

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
                return Err(self
                    .dead_letter(output, reason, failure.status, attempts, failure.transient)
                    .await);
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
        let request = self
            .client
            .post(self.url.clone())
            .headers(headers.clone())
            .header(ATTEMPT_HEADER, attempt)
            .body(body.to_vec());
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

    fn headers(&self, kind: OutputKind, key: &str, body: &[u8]) -> HeaderMap {
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
        if let Some(secret) = &self.secret {
            h.insert(
                HeaderName::from_static(SIGNATURE_HEADER),
                header_value(&sign(&secret.0, body)),
            );
        }
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

    /// The exact request body bytes (which are also what gets signed).
    fn render_body(&self, kind: OutputKind, key: &str, output: &Value) -> Vec<u8> {
        let body = match self.config.template {
            WebhookTemplate::Generic => output.clone(),
            WebhookTemplate::GithubRepositoryDispatch => json!({
                "event_type": self.config.github_event_type,
                "client_payload": github_client_payload(kind, key, output),
            }),
            WebhookTemplate::GitlabPipelineTrigger => json!({
                "token": self.token.as_ref().map(|t| t.0.trim()).unwrap_or_default(),
                "ref": self.config.gitlab_ref,
                "variables": gitlab_variables(kind, key, output),
            }),
        };
        serde_json::to_vec(&body).expect("serializing a serde_json::Value cannot fail")
    }

    /// Appends the output to the dead-letter file and returns the error to
    /// hand back to the caller.
    async fn dead_letter(
        &self,
        output: &Value,
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
            "payload": output,
            "failed_at": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        });
        let mut line =
            serde_json::to_vec(&record).expect("serializing a serde_json::Value cannot fail");
        line.push(b'\n');
        let path = &self.config.dead_letter_file;
        let written = {
            let _guard = self.dead_letter_lock.lock().await;
            append_line(path, &line).await
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

async fn append_line(path: &Path, line: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    file.write_all(line).await?;
    file.sync_data().await?;
    Ok(())
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

fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
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

// ---------------------------------------------------------------------------
// Output inspection and templates
// ---------------------------------------------------------------------------

/// The output's kind and idempotency key, or why it is unusable.
fn classify(output: &Value) -> Result<(OutputKind, String), String> {
    let obj = output.as_object().ok_or("not a JSON object")?;
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or("missing string field \"type\"")?;
    let kind = OutputKind::parse(ty).ok_or_else(|| {
        format!("unknown type {ty:?} (expected alert, retrain_trigger or canary_verdict)")
    })?;
    let key = kind
        .id_fields()
        .iter()
        .find_map(|f| scalar_string(obj.get(*f)?).filter(|s| !s.is_empty()))
        .ok_or_else(|| {
            format!(
                "{ty} has no id (looked for {})",
                kind.id_fields().join(", ")
            )
        })?;
    Ok((kind, key))
}

/// Strings as-is, numbers and booleans as text; `None` for null and containers.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn field_string(output: &Value, field: &str) -> Option<String> {
    output.get(field).and_then(scalar_string)
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// Short human-readable reasons found in the output.
fn reasons(output: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match output.get("reasons") {
        Some(Value::Array(items)) => {
            for item in items.iter().take(REASONS_MAX) {
                let text = match item {
                    Value::Object(o) => ["message", "reason", "detail", "description"]
                        .iter()
                        .find_map(|k| o.get(*k).and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_else(|| item.to_string()),
                    other => scalar_string(other).unwrap_or_else(|| other.to_string()),
                };
                out.push(truncate_chars(&text, REASON_MAX_CHARS));
            }
        }
        Some(v) => {
            if let Some(s) = scalar_string(v) {
                out.push(truncate_chars(&s, REASON_MAX_CHARS));
            }
        }
        None => {
            for k in ["reason", "message"] {
                if let Some(s) = field_string(output, k) {
                    out.push(truncate_chars(&s, REASON_MAX_CHARS));
                    break;
                }
            }
        }
    }
    out
}

fn verdict(output: &Value) -> Option<String> {
    field_string(output, "verdict").or_else(|| field_string(output, "decision"))
}

fn snapshot(output: &Value) -> Option<String> {
    [
        "snapshot_path",
        "evidence_path",
        "snapshot",
        "evidence_uri",
        "evidence",
    ]
    .iter()
    .find_map(|k| field_string(output, k))
    .or_else(|| {
        output
            .get("evidence")
            .and_then(|e| e.get("snapshot_path").or_else(|| e.get("path")))
            .and_then(scalar_string)
    })
}

fn summary(kind: OutputKind, output: &Value) -> String {
    let model = field_string(output, "model_id").unwrap_or_else(|| "?".to_owned());
    let version = field_string(output, "model_version").unwrap_or_else(|| "?".to_owned());
    let head = match kind {
        OutputKind::Alert => {
            let severity = field_string(output, "severity").unwrap_or_else(|| "alert".to_owned());
            format!("{severity} alert for {model}@{version}")
        }
        OutputKind::RetrainTrigger => format!("retrain {model}@{version}"),
        OutputKind::CanaryVerdict => format!(
            "canary {} for {model}@{version}",
            verdict(output).unwrap_or_else(|| "verdict".to_owned())
        ),
    };
    let reasons = reasons(output);
    let text = if reasons.is_empty() {
        head
    } else {
        format!("{head}: {}", reasons.join("; "))
    };
    truncate_chars(&text, SUMMARY_MAX_CHARS)
}

/// The compact GitHub `client_payload`: at most
/// [`GITHUB_CLIENT_PAYLOAD_MAX_KEYS`] top-level keys (missing values are null
/// so workflows see a stable shape) and at most
/// [`GITHUB_CLIENT_PAYLOAD_MAX_BYTES`] bytes.
fn github_client_payload(kind: OutputKind, key: &str, output: &Value) -> Value {
    let mut p = Map::new();
    p.insert("type".into(), Value::String(kind.as_str().to_owned()));
    p.insert("id".into(), Value::String(key.to_owned()));
    p.insert("model_id".into(), opt(field_string(output, "model_id")));
    p.insert(
        "model_version".into(),
        opt(field_string(output, "model_version")),
    );
    p.insert("verdict".into(), opt(verdict(output)));
    p.insert(
        "reasons".into(),
        Value::Array(reasons(output).into_iter().map(Value::String).collect()),
    );
    p.insert("summary".into(), Value::String(summary(kind, output)));
    p.insert("snapshot".into(), opt(snapshot(output)));
    p.insert("driftwatch".into(), output.clone());
    let mut payload = Value::Object(p);
    if payload.to_string().len() > GITHUB_CLIENT_PAYLOAD_MAX_BYTES {
        tracing::warn!(kind = %kind, id = %key, "output too large for a GitHub client_payload; sending it without the full object");
        payload["driftwatch"] = Value::Null;
        payload["driftwatch_truncated"] = Value::Bool(true);
    }
    debug_assert!(payload.as_object().map_or(0, Map::len) <= GITHUB_CLIENT_PAYLOAD_MAX_KEYS);
    payload
}

fn opt(v: Option<String>) -> Value {
    v.map(Value::String).unwrap_or(Value::Null)
}

/// GitLab trigger variables (values must be strings).
fn gitlab_variables(kind: OutputKind, key: &str, output: &Value) -> Value {
    json!({
        "DRIFTWATCH_TYPE": kind.as_str(),
        "DRIFTWATCH_MODEL_ID": field_string(output, "model_id").unwrap_or_default(),
        "DRIFTWATCH_MODEL_VERSION": field_string(output, "model_version").unwrap_or_default(),
        "DRIFTWATCH_ID": key,
        "DRIFTWATCH_VERDICT": verdict(output).unwrap_or_default(),
        "DRIFTWATCH_PAYLOAD": output.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap as AxHeaderMap, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use axum::Router;

    const SECRET: &str = "s3cr3t-for-tests";

    /// One request as the test server saw it.
    #[derive(Clone)]
    struct Hit {
        uri: String,
        headers: AxHeaderMap,
        body: Vec<u8>,
    }

    impl Hit {
        fn header(&self, name: &str) -> Option<String> {
            self.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        }
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    struct Server {
        /// (status, Retry-After, delay) per request; the last one repeats.
        script: Vec<(u16, Option<&'static str>, Duration)>,
        hits: Mutex<Vec<Hit>>,
    }

    async fn handle(
        State(st): State<Arc<Server>>,
        uri: Uri,
        headers: AxHeaderMap,
        body: Bytes,
    ) -> Response {
        let n = {
            let mut hits = st.hits.lock().unwrap();
            hits.push(Hit {
                uri: uri.to_string(),
                headers,
                body: body.to_vec(),
            });
            hits.len() - 1
        };
        let (status, retry_after, delay) = st.script[n.min(st.script.len() - 1)];
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut resp = (
            StatusCode::from_u16(status).unwrap(),
            format!("scripted {status}"),
        )
            .into_response();
        if let Some(ra) = retry_after {
            resp.headers_mut()
                .insert("retry-after", ra.parse().unwrap());
        }
        resp
    }

    /// Starts a scripted server on 127.0.0.1:0; returns its base URL.
    async fn serve(script: Vec<(u16, Option<&'static str>, Duration)>) -> (String, Arc<Server>) {
        let state = Arc::new(Server {
            script,
            hits: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), state)
    }

    fn statuses(codes: &[u16]) -> Vec<(u16, Option<&'static str>, Duration)> {
        codes.iter().map(|c| (*c, None, Duration::ZERO)).collect()
    }

    /// Sets a uniquely named env var and returns its name.
    fn env(name: &str, value: &str) -> String {
        let name = format!("DRIFTWATCH_WEBHOOK_TEST_{name}");
        std::env::set_var(&name, value);
        name
    }

    fn config(url: String, template: WebhookTemplate, dir: &tempfile::TempDir) -> WebhookConfig {
        let mut c = WebhookConfig::new(url, template);
        c.secret_env = Some(env("SECRET", SECRET));
        c.timeout = Duration::from_secs(5);
        c.max_retries = 3;
        c.initial_backoff = Duration::from_millis(1);
        c.max_backoff = Duration::from_millis(4);
        c.dead_letter_file = dir.path().join("dead.jsonl");
        c
    }

    fn trigger() -> Value {
        json!({
            "type": "retrain_trigger",
            "trigger_id": "trg-0001",
            "model_id": "fraud-scorer",
            "model_version": "v12",
            "reasons": [{"message": "psi 0.31 > 0.2 on amount"}, "accuracy dropped 4.1%"],
            "snapshot_path": "s3://dw/snapshots/fraud-scorer/v12/2024-05-01.parquet",
        })
    }

    fn verdict_output() -> Value {
        json!({
            "type": "canary_verdict",
            "verdict_id": "cv-42",
            "model_id": "fraud-scorer",
            "model_version": 13,
            "verdict": "rollback",
            "reasons": ["p99 latency 180ms > 120ms"],
        })
    }

    fn dead_lines(c: &WebhookConfig) -> Vec<Value> {
        match std::fs::read_to_string(&c.dead_letter_file) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    #[tokio::test]
    async fn generic_signed_with_idempotency_and_event_headers() {
        let dir = tempfile::tempdir().unwrap();
        let (base, server) = serve(statuses(&[200])).await;
        let cfg = config(format!("{base}/hook?x=1"), WebhookTemplate::Generic, &dir);
        let sink = WebhookSink::new(cfg.clone()).unwrap();
        let out = trigger();
        let d = sink.deliver(&out).await.unwrap();
        assert_eq!(
            d,
            Delivery::Delivered {
                status: 200,
                attempts: 1,
                idempotency_key: "trg-0001".into()
            }
        );
        let hits = server.hits.lock().unwrap().clone();
        assert_eq!(hits.len(), 1);
        let hit = &hits[0];
        assert_eq!(hit.uri, "/hook?x=1");
        // Signature: recompute the HMAC over the bytes actually received.
        let sig = hit.header(SIGNATURE_HEADER).expect("signature header");
        let mut mac = HmacSha256::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&hit.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sig, expected);
        assert!(verify_signature(SECRET.as_bytes(), &hit.body, &sig));
        assert!(!verify_signature(b"wrong", &hit.body, &sig));
        assert_eq!(hit.header(IDEMPOTENCY_HEADER).as_deref(), Some("trg-0001"));
        assert_eq!(hit.header(EVENT_HEADER).as_deref(), Some("retrain_trigger"));
        assert_eq!(hit.header(ATTEMPT_HEADER).as_deref(), Some("1"));
        assert_eq!(
            hit.header("content-type").as_deref(),
            Some("application/json")
        );
        assert!(hit.header("authorization").is_none());
        assert_eq!(hit.json(), out);
        let c = sink.counters();
        assert_eq!((c.delivered, c.retried, c.dead_lettered), (1, 0, 0));
        assert!(dead_lines(&cfg).is_empty());
    }

    #[tokio::test]
    async fn unsigned_when_no_secret_configured() {
        let dir = tempfile::tempdir().unwrap();
        let (base, server) = serve(statuses(&[204])).await;
        let mut cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
        cfg.secret_env = None;
        let sink = WebhookSink::new(cfg).unwrap();
        let alert =
            json!({"type": "alert", "alert_id": "al-1", "model_id": "m", "severity": "critical"});
        sink.deliver(&alert).await.unwrap();
        let hit = server.hits.lock().unwrap()[0].clone();
        assert!(hit.header(SIGNATURE_HEADER).is_none());
        assert_eq!(hit.header(IDEMPOTENCY_HEADER).as_deref(), Some("al-1"));
        assert_eq!(hit.header(EVENT_HEADER).as_deref(), Some("alert"));
    }

    #[tokio::test]
    async fn github_repository_dispatch_shape() {
        let dir = tempfile::tempdir().unwrap();
        let (base, server) = serve(statuses(&[204])).await;
        let mut cfg = config(
            format!("{base}/repos/acme/models/dispatches"),
            WebhookTemplate::GithubRepositoryDispatch,
            &dir,
        );
        cfg.token_env = Some(env("GH_TOKEN", "ghp_test_token"));
        let sink = WebhookSink::new(cfg).unwrap();
        let out = trigger();
        sink.deliver(&out).await.unwrap();
        let hit = server.hits.lock().unwrap()[0].clone();
        assert_eq!(hit.uri, "/repos/acme/models/dispatches");
        assert_eq!(
            hit.header("authorization").as_deref(),
            Some("Bearer ghp_test_token")
        );
        assert_eq!(
            hit.header("accept").as_deref(),
            Some("application/vnd.github+json")
        );
        assert!(hit
            .header("user-agent")
            .unwrap()
            .starts_with("driftwatch-webhook/"));
        assert!(verify_signature(
            SECRET.as_bytes(),
            &hit.body,
            &hit.header(SIGNATURE_HEADER).unwrap()
        ));
        let body = hit.json();
        assert_eq!(body.as_object().unwrap().len(), 2);
        assert_eq!(body["event_type"], "driftwatch-retrain");
        let p = body["client_payload"].as_object().unwrap();
        assert!(
            p.len() <= GITHUB_CLIENT_PAYLOAD_MAX_KEYS,
            "{} keys",
            p.len()
        );
        assert_eq!(p["type"], "retrain_trigger");
        assert_eq!(p["id"], "trg-0001");
        assert_eq!(p["model_id"], "fraud-scorer");
        assert_eq!(p["model_version"], "v12");
        assert_eq!(
            p["snapshot"],
            "s3://dw/snapshots/fraud-scorer/v12/2024-05-01.parquet"
        );
        assert_eq!(
            p["reasons"],
            json!(["psi 0.31 > 0.2 on amount", "accuracy dropped 4.1%"])
        );
        assert_eq!(p["verdict"], Value::Null);
        assert!(p["summary"]
            .as_str()
            .unwrap()
            .starts_with("retrain fraud-scorer@v12: psi"));
        assert_eq!(p["driftwatch"], out);

        // A canary verdict: verdict surfaced, numeric version stringified.
        sink.deliver(&verdict_output()).await.unwrap();
        let hit = server.hits.lock().unwrap()[1].clone();
        let p = hit.json()["client_payload"].clone();
        assert_eq!(p["verdict"], "rollback");
        assert_eq!(p["model_version"], "13");
        assert_eq!(p["id"], "cv-42");
        assert_eq!(hit.header(EVENT_HEADER).as_deref(), Some("canary_verdict"));
    }

    #[tokio::test]
    async fn gitlab_pipeline_trigger_shape() {
        let dir = tempfile::tempdir().unwrap();
        let (base, server) = serve(statuses(&[201])).await;
        let mut cfg = config(
            format!("{base}/api/v4/projects/42/trigger/pipeline"),
            WebhookTemplate::GitlabPipelineTrigger,
            &dir,
        );
        cfg.token_env = Some(env("GL_TOKEN", "glptt-test"));
        cfg.gitlab_ref = "release".into();
        let sink = WebhookSink::new(cfg).unwrap();
        let out = trigger();
        let d = sink.deliver(&out).await.unwrap();
        assert!(matches!(
            d,
            Delivery::Delivered {
                status: 201,
                attempts: 1,
                ..
            }
        ));
        let hit = server.hits.lock().unwrap()[0].clone();
        assert!(hit.header("authorization").is_none());
        assert!(verify_signature(
            SECRET.as_bytes(),
            &hit.body,
            &hit.header(SIGNATURE_HEADER).unwrap()
        ));
        let body = hit.json();
        assert_eq!(body["token"], "glptt-test");
        assert_eq!(body["ref"], "release");
        let v = body["variables"].as_object().unwrap();
        assert!(
            v.values().all(Value::is_string),
            "GitLab variables must be strings"
        );
        assert_eq!(v["DRIFTWATCH_TYPE"], "retrain_trigger");
        assert_eq!(v["DRIFTWATCH_MODEL_ID"], "fraud-scorer");
        assert_eq!(v["DRIFTWATCH_MODEL_VERSION"], "v12");
        assert_eq!(v["DRIFTWATCH_ID"], "trg-0001");
        let payload: Value =
            serde_json::from_str(v["DRIFTWATCH_PAYLOAD"].as_str().unwrap()).unwrap();
        assert_eq!(payload, out);
    }

    #[tokio::test]
    async fn retries_500_then_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let (base, server) = serve(statuses(&[500, 200])).await;
        let cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
        let sink = WebhookSink::new(cfg.clone()).unwrap();
        let d = sink.deliver(&trigger()).await.unwrap();
        assert!(matches!(
            d,
            Delivery::Delivered {
                status: 200,
                attempts: 2,
                ..
            }
        ));
        let hits = server.hits.lock().unwrap().clone();
        assert_eq!(hits.len(), 2);
        // Same body, same idempotency key, attempt number advances.
        assert_eq!(hits[0].body, hits[1].body);
        assert_eq!(
            hits[0].header(IDEMPOTENCY_HEADER),
            hits[1].header(IDEMPOTENCY_HEADER)
        );
        assert_eq!(hits[1].header(ATTEMPT_HEADER).as_deref(), Some("2"));
        let c = sink.counters();
        assert_eq!((c.delivered, c.retried, c.dead_lettered), (1, 1, 0));
        assert!(dead_lines(&cfg).is_empty());
    }

    #[tokio::test]
    async fn retries_429_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let script = vec![
            (429, Some("0"), Duration::ZERO),
            (200, None, Duration::ZERO),
        ];
        let (base, server) = serve(script).await;
        let sink = WebhookSink::new(config(
            format!("{base}/hook"),
            WebhookTemplate::Generic,
            &dir,
        ))
        .unwrap();
        let d = sink.deliver(&trigger()).await.unwrap();
        assert!(matches!(d, Delivery::Delivered { attempts: 2, .. }));
        assert_eq!(server.hits.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn permanent_400_dead_letters_after_one_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let (base, server) = serve(statuses(&[400])).await;
        let cfg = config(
            format!("{base}/hook?token=supersecret"),
            WebhookTemplate::Generic,
            &dir,
        );
        let sink = WebhookSink::new(cfg.clone()).unwrap();
        let out = trigger();
        let err = sink.deliver(&out).await.unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.is_dead_lettered());
        assert!(matches!(
            err,
            WebhookError::DeadLettered {
                attempts: 1,
                status: Some(400),
                ..
            }
        ));
        assert!(err.to_string().contains("dead-letter"), "{err}");
        assert!(!err.to_string().contains("supersecret"));
        assert_eq!(server.hits.lock().unwrap().len(), 1);
        let lines = dead_lines(&cfg);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["status"], 400);
        assert_eq!(l["attempts"], 1);
        assert_eq!(l["url"], format!("{base}/hook"));
        assert_eq!(l["payload"], out);
        assert!(l["reason"].as_str().unwrap().contains("400"));
        let failed_at = l["failed_at"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(failed_at).is_ok(), "{failed_at}");
        assert!(failed_at.ends_with('Z') && failed_at.len() == "2024-01-01T00:00:00.000Z".len());
        let c = sink.counters();
        assert_eq!((c.delivered, c.retried, c.dead_lettered), (0, 0, 1));
    }

    #[tokio::test]
    async fn always_503_exhausts_retries_and_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let (base, server) = serve(statuses(&[503])).await;
        let cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
        let sink = WebhookSink::new(cfg.clone()).unwrap();
        let err = sink.deliver(&verdict_output()).await.unwrap_err();
        assert!(err.is_retryable());
        assert!(
            matches!(
                err,
                WebhookError::DeadLettered {
                    attempts: 4,
                    status: Some(503),
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(server.hits.lock().unwrap().len(), 4);
        let lines = dead_lines(&cfg);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["attempts"], 4);
        assert_eq!(lines[0]["status"], 503);
        assert_eq!(lines[0]["payload"], verdict_output());
        assert!(lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("retries exhausted"));
        let c = sink.counters();
        assert_eq!((c.delivered, c.retried, c.dead_lettered), (0, 3, 1));
    }

    #[tokio::test]
    async fn connection_refused_is_retried_then_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        }; // listener dropped: nothing listens there now
        let cfg = config(
            format!("http://127.0.0.1:{port}/hook"),
            WebhookTemplate::Generic,
            &dir,
        );
        let sink = WebhookSink::new(cfg.clone()).unwrap();
        let err = sink.deliver(&trigger()).await.unwrap_err();
        assert!(err.is_retryable());
        assert!(
            matches!(
                err,
                WebhookError::DeadLettered {
                    attempts: 4,
                    status: None,
                    ..
                }
            ),
            "{err}"
        );
        let lines = dead_lines(&cfg);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["status"], Value::Null);
        assert!(
            lines[0]["reason"].as_str().unwrap().contains("connect"),
            "{}",
            lines[0]["reason"]
        );
        assert_eq!(sink.counters().retried, 3);
    }

    #[tokio::test]
    async fn timeout_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let script = vec![
            (200, None, Duration::from_millis(1500)),
            (200, None, Duration::ZERO),
        ];
        let (base, server) = serve(script).await;
        let mut cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
        cfg.timeout = Duration::from_millis(300);
        let sink = WebhookSink::new(cfg).unwrap();
        let d = sink.deliver(&trigger()).await.unwrap();
        assert!(matches!(d, Delivery::Delivered { attempts: 2, .. }));
        assert_eq!(server.hits.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn skipped_kinds_and_invalid_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let (base, server) = serve(statuses(&[200])).await;
        let mut cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
        cfg.kinds = vec![OutputKind::RetrainTrigger];
        let sink = WebhookSink::new(cfg.clone()).unwrap();
        let alert = json!({"type": "alert", "alert_id": "al-9"});
        assert_eq!(
            sink.deliver(&alert).await.unwrap(),
            Delivery::Skipped {
                kind: OutputKind::Alert
            }
        );
        // Invalid outputs are dead-lettered, never dropped.
        let bad = json!({"type": "retrain_trigger", "model_id": "m"});
        let err = sink.deliver(&bad).await.unwrap_err();
        assert!(
            matches!(err, WebhookError::DeadLettered { attempts: 0, .. }),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert!(server.hits.lock().unwrap().is_empty());
        let lines = dead_lines(&cfg);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["payload"], bad);
        assert!(lines[0]["reason"].as_str().unwrap().contains("trigger_id"));
        let c = sink.counters();
        assert_eq!((c.skipped, c.dead_lettered, c.delivered), (1, 1, 0));
    }

    #[tokio::test]
    async fn unwritable_dead_letter_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (base, _server) = serve(statuses(&[404])).await;
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let mut cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
        cfg.dead_letter_file = blocker.join("dead.jsonl");
        let sink = WebhookSink::new(cfg).unwrap();
        let err = sink.deliver(&trigger()).await.unwrap_err();
        assert!(matches!(err, WebhookError::DeadLetterWrite { .. }), "{err}");
        assert!(err.is_retryable());
        assert!(!err.is_dead_lettered());
        assert_eq!(sink.counters().dead_letter_write_errors, 1);
    }

    #[tokio::test]
    async fn https_without_tls_backend_is_not_retried_pointlessly() {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = config(
            format!("https://127.0.0.1:{port}/hook?token=abc"),
            WebhookTemplate::Generic,
            &dir,
        );
        let sink = WebhookSink::new(cfg.clone()).unwrap();
        let err = sink.deliver(&trigger()).await.unwrap_err();
        let WebhookError::DeadLettered {
            attempts, reason, ..
        } = &err
        else {
            panic!("{err}")
        };
        assert!(!reason.contains("token=abc"), "{reason}");
        if reason.contains("no TLS support") {
            // reqwest built without a TLS feature (as in this crate).
            assert_eq!(*attempts, 1);
            assert!(!err.is_retryable());
        } else {
            // With a TLS backend this is an ordinary connection refusal.
            assert_eq!(*attempts, cfg.max_retries + 1);
        }
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: WebhookConfig =
            serde_json::from_value(json!({"url": "https://example.com/hook"})).unwrap();
        assert_eq!(
            c,
            WebhookConfig::new("https://example.com/hook", WebhookTemplate::Generic)
        );
        assert_eq!(c.kinds, OutputKind::ALL.to_vec());
        assert_eq!(c.github_event_type, "driftwatch-retrain");
        assert_eq!(c.gitlab_ref, "main");
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.max_retries, 5);
        assert_eq!(c.initial_backoff, Duration::from_millis(500));
        assert_eq!(c.max_backoff, Duration::from_secs(30));
        assert_eq!(
            c.dead_letter_file,
            PathBuf::from("driftwatch-webhook-dead-letters.jsonl")
        );

        let c: WebhookConfig = serde_json::from_value(json!({
            "url": "https://api.github.com/repos/a/b/dispatches",
            "template": "github_repository_dispatch",
            "kinds": ["retrain_trigger", "canary_verdict"],
            "timeout": "2s 500ms",
            "initial_backoff": "1s",
        }))
        .unwrap();
        assert_eq!(c.template, WebhookTemplate::GithubRepositoryDispatch);
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.kinds.len(), 2);

        let err =
            serde_json::from_value::<WebhookConfig>(json!({"url": "http://x", "secret": "nope"}))
                .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err =
            serde_json::from_value::<WebhookConfig>(json!({"url": "http://x", "timeout": "soon"}))
                .unwrap_err();
        assert!(err.to_string().contains("invalid duration"), "{err}");
        assert!(serde_json::from_value::<WebhookConfig>(
            json!({"url": "http://x", "kinds": ["heartbeat"]})
        )
        .is_err());
    }

    #[test]
    fn validate_reports_every_problem() {
        let mut c = WebhookConfig::new(
            "ftp://user:pw@host/x",
            WebhookTemplate::GithubRepositoryDispatch,
        );
        c.timeout = Duration::ZERO;
        c.secret_env = Some("DRIFTWATCH_WEBHOOK_TEST_DEFINITELY_UNSET_SECRET".into());
        c.kinds.clear();
        c.github_event_type = String::new();
        c.max_backoff = Duration::from_millis(1);
        let problems = c.validate();
        let all = problems.join("\n");
        for needle in [
            "scheme",
            "credentials",
            "/dispatches",
            "kinds is empty",
            "DRIFTWATCH_WEBHOOK_TEST_DEFINITELY_UNSET_SECRET",
            "needs token_env",
            "github_event_type",
            "timeout must be greater than zero",
            "max_backoff",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert!(
            matches!(WebhookSink::new(c), Err(WebhookError::InvalidConfig(p)) if p.len() == problems.len())
        );

        assert!(!WebhookConfig::new("not a url", WebhookTemplate::Generic)
            .validate()
            .is_empty());
        let gl = WebhookConfig::new(
            "https://gitlab.example.com/api/v4/projects/1/pipeline",
            WebhookTemplate::GitlabPipelineTrigger,
        );
        let all = gl.validate().join("\n");
        assert!(
            all.contains("/trigger/pipeline") && all.contains("token_env"),
            "{all}"
        );
        assert!(
            WebhookConfig::new("https://ci.example.com/hook", WebhookTemplate::Generic)
                .validate()
                .is_empty()
        );
    }

    #[test]
    fn oversized_output_is_trimmed_for_github() {
        let mut out = trigger();
        out["histogram"] = json!(vec![1.2345_f64; 20_000]);
        let (kind, key) = classify(&out).unwrap();
        let p = github_client_payload(kind, &key, &out);
        assert!(p.to_string().len() <= GITHUB_CLIENT_PAYLOAD_MAX_BYTES);
        assert!(p.as_object().unwrap().len() <= GITHUB_CLIENT_PAYLOAD_MAX_KEYS);
        assert_eq!(p["driftwatch"], Value::Null);
        assert_eq!(p["driftwatch_truncated"], true);
        assert_eq!(p["model_id"], "fraud-scorer");
    }

    #[test]
    fn secrets_never_in_debug_output() {
        let mut c = WebhookConfig::new(
            "http://127.0.0.1:9/hook?token=qs-hunter2",
            WebhookTemplate::Generic,
        );
        c.secret_env = Some(env("DEBUG_SECRET", "hunter2-secret"));
        c.token_env = Some(env("DEBUG_TOKEN", "hunter2-token"));
        assert!(!format!("{c:?}").contains("hunter2"));
        let sink = WebhookSink::new(c).unwrap();
        let dbg = format!("{sink:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let (i, m) = (Duration::from_millis(500), Duration::from_secs(30));
        let ms = |r, ra| retry_delay(i, m, r, ra).as_millis();
        assert_eq!(ms(0, None), 500);
        assert_eq!(ms(1, None), 1000);
        assert_eq!(ms(2, None), 2000);
        assert_eq!(ms(6, None), 30_000);
        assert_eq!(ms(40, None), 30_000);
        assert_eq!(ms(0, Some(Duration::from_secs(7))), 7000);
        assert_eq!(ms(3, Some(Duration::from_secs(1))), 4000);
        assert_eq!(ms(0, Some(Duration::from_secs(600))), 30_000);
    }

    #[test]
    fn github_payload_respects_key_limit_and_redaction_of_urls() {
        for out in [
            trigger(),
            verdict_output(),
            json!({"type": "alert", "alert_id": "a"}),
        ] {
            let (kind, key) = classify(&out).unwrap();
            let p = github_client_payload(kind, &key, &out);
            assert!(p.as_object().unwrap().len() <= GITHUB_CLIENT_PAYLOAD_MAX_KEYS);
        }
        let u = Url::parse(
            "https://u:p@gitlab.example.com/api/v4/projects/1/trigger/pipeline?token=t#f",
        )
        .unwrap();
        assert_eq!(
            redact_url(&u),
            "https://gitlab.example.com/api/v4/projects/1/trigger/pipeline"
        );
        assert_eq!(sign(b"k", b"body"), sign(b"k", b"body"));
        assert_ne!(sign(b"k", b"body"), sign(b"k", b"body "));
    }
}
