//! Configuration of the CI webhooks (`[[sinks.webhook]]` tables); the sink itself is
//! [`crate::sink::webhook`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Deserializer};

pub use crate::output::OutputType;

/// GitHub rejects an `event_type` longer than this.
const GITHUB_EVENT_TYPE_MAX_LEN: usize = 100;

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
    /// Output types to send (`alert`, `retrain_trigger`, `canary_verdict`); others are skipped
    /// (and counted). Default: all three.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<OutputType>,
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
    /// JSON-lines file receiving outputs that could not be delivered: retries exhausted, a
    /// permanent error, the queue full, or still queued when the drain timeout ran out.
    #[serde(default = "default_dead_letter_file")]
    pub dead_letter_file: PathBuf,
    /// Outputs waiting for delivery at most; when the queue is full, an output goes straight
    /// to the dead-letter file (counted) instead of stalling the consumer.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

/// Default [`WebhookConfig::template`]: `generic`.
pub fn default_template() -> WebhookTemplate {
    WebhookTemplate::Generic
}

/// Default [`WebhookConfig::kinds`]: alerts, retraining triggers and canary verdicts.
pub fn default_kinds() -> Vec<OutputType> {
    OutputType::PUBLISHED.to_vec()
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

/// Default [`WebhookConfig::queue_capacity`]: 10,000 outputs.
pub fn default_queue_capacity() -> usize {
    10_000
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
            .field("queue_capacity", &self.queue_capacity)
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
            queue_capacity: default_queue_capacity(),
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
        if self.kinds.contains(&OutputType::DeadLetter) {
            problems.push(
                "kinds: dead_letter records go to the dead-letter topic, not to webhooks (expected alert, retrain_trigger or canary_verdict)"
                    .to_owned(),
            );
        }
        if self.queue_capacity == 0 {
            problems.push("queue_capacity must be at least 1".to_owned());
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

/// `url` without query string, fragment or credentials (what logs and dead letters show).
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}
