//! Configuration: serde structs, layered loading and one validation pass.
//!
//! Layers, later ones win: built-in defaults, then the TOML file, then environment variables
//! `DRIFTWATCH__SECTION__KEY` (double underscore between levels). Unknown keys and values of
//! the wrong type are errors (nothing is coerced), and [`Config::load`] reports every unknown
//! key, wrong type and invalid value at once, sorted, the same on every run (see [`load`]).

pub mod load;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::drift::DriftMethod;

pub mod webhook;

/// Every problem found while loading or validating a configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Kafka connection and consumer settings.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub topics: TopicsConfig,
    /// What the input topics carry: driftwatch's own v1 events or an inference server's.
    pub input: InputConfig,
    /// Event-time windows.
    pub window: WindowConfig,
    /// Hard limits that bound memory whatever the traffic.
    pub limits: LimitsConfig,
    /// Reference profiles.
    pub baseline: BaselineConfig,
    /// Data and prediction drift.
    pub drift: DriftConfig,
    /// Data-quality thresholds.
    pub data_quality: DataQualityConfig,
    /// Latency thresholds.
    pub latency: LatencyConfig,
    /// Model quality once labels join.
    pub performance: PerformanceConfig,
    /// Group fairness.
    pub fairness: FairnessConfig,
    /// Concept-drift detectors over the joined error stream.
    pub concept: ConceptConfig,
    /// HTTP server for /metrics, health and the API.
    pub http: HttpConfig,
    /// Alert lifecycle.
    pub alerts: AlertPolicyConfig,
    /// Retraining-trigger rules.
    pub triggers: TriggerConfig,
    /// Canary and shadow analysis.
    pub canary: CanaryConfig,
    /// CI webhooks (in addition to the Kafka topics).
    pub sinks: SinksConfig,
    /// Object storage for trigger snapshots.
    pub storage: StorageConfig,
    /// Per-model policy: a section given under `[models.<model_id>]` replaces the global
    /// `[alerts]`, `[triggers]` or `[canary]` section for that model (keys it leaves out take the
    /// built-in defaults).
    pub models: BTreeMap<String, ModelPolicy>,
}

/// Policy sections for one model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelPolicy {
    /// Alert lifecycle for this model.
    pub alerts: Option<AlertPolicyConfig>,
    /// Retraining triggers for this model.
    pub triggers: Option<TriggerConfig>,
    /// Canary analysis for this model.
    pub canary: Option<CanaryConfig>,
}

/// Alert lifecycle: when an alert fires and when it resolves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertPolicyConfig {
    /// Fire when at least this many of the last `fire_window` windows breached.
    pub fire_after: u32,
    /// Windows considered for firing.
    pub fire_window: u32,
    /// Resolve after this many consecutive clean windows.
    pub resolve_after: u32,
    /// After a resolve, the same alert does not fire again for this long (event time).
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Critical thresholds by metric name (e.g. `wasserstein = 0.3`, `accuracy = 0.7`,
    /// `p99_ms = 500`): a firing alert whose value is at or beyond it, in the direction of the
    /// breach, is critical. Metrics not listed are critical at twice their threshold (or, for
    /// p-values, a fiftieth of it).
    pub critical: BTreeMap<String, f64>,
}

impl Default for AlertPolicyConfig {
    fn default() -> Self {
        Self {
            fire_after: 2,
            fire_window: 3,
            resolve_after: 3,
            cooldown: Duration::ZERO,
            critical: BTreeMap::new(),
        }
    }
}

/// Retraining-trigger rules; a trigger fires when any enabled rule holds for `sustain_windows`
/// consecutive windows, once per episode and at most once per `min_interval` per model version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TriggerConfig {
    /// Master switch.
    pub enabled: bool,
    /// Sustained data drift on at least this many features (0 disables the rule).
    pub min_drifted_features: usize,
    /// Only these features count for the data-drift rule; empty means every feature.
    pub features: Vec<String>,
    /// Dataset-level drift (share of drifted features) triggers.
    pub on_dataset_drift: bool,
    /// Prediction drift triggers.
    pub on_prediction_drift: bool,
    /// A performance alert triggers.
    pub on_performance: bool,
    /// A concept-drift detection triggers.
    pub on_concept_drift: bool,
    /// A fairness alert triggers.
    pub on_fairness: bool,
    /// Consecutive windows a rule must hold.
    pub sustain_windows: u32,
    /// Minimum event time between two triggers of one model version.
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// Trigger when a version has been in service this long (event time); none disables.
    #[serde(with = "humantime_serde")]
    pub max_model_age: Option<Duration>,
    /// Cron expression (UTC, with seconds: `sec min hour day month weekday`) for scheduled
    /// retraining, evaluated in event time; none disables.
    pub schedule: Option<String>,
    /// Directory for Parquet snapshots of triggering windows.
    pub snapshot_dir: PathBuf,
    /// Most recent events kept per model version for snapshots.
    pub snapshot_events: usize,
    /// Bytes those events may take per model version (events beyond a few KiB are kept as the
    /// fields a snapshot reads; the oldest go first).
    pub snapshot_max_bytes: usize,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_drifted_features: 1,
            features: Vec::new(),
            on_dataset_drift: true,
            on_prediction_drift: false,
            on_performance: true,
            on_concept_drift: false,
            on_fairness: false,
            sustain_windows: 2,
            min_interval: Duration::from_secs(3600),
            max_model_age: None,
            schedule: None,
            snapshot_dir: PathBuf::from("driftwatch-snapshots"),
            snapshot_events: 5000,
            snapshot_max_bytes: 4 << 20,
        }
    }
}

/// Canary analysis between two versions of one model receiving traffic in the same windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CanaryConfig {
    /// Master switch.
    pub enabled: bool,
    /// Version serving as the baseline; none means the version seen first.
    pub baseline_version: Option<String>,
    /// Version under test; none means the most recently seen other version.
    pub candidate_version: Option<String>,
    /// Largest allowed candidate/baseline latency p99 ratio.
    pub max_latency_p99_ratio: f64,
    /// Largest allowed Jensen-Shannon distance between the versions' prediction distributions.
    pub max_prediction_distance: f64,
    /// Largest allowed increase of the error rate once labels joined.
    pub max_error_rate_increase: f64,
    /// Largest allowed increase of the demographic parity difference.
    pub max_fairness_gap_increase: f64,
    /// Largest allowed increase of the missing-value share.
    pub max_missing_share_increase: f64,
    /// Failed windows that roll the candidate back.
    pub failure_threshold: u32,
    /// Consecutive passing windows that promote the candidate.
    pub promote_after: u32,
    /// Events each version needs in a window for it to count.
    pub min_events: u64,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            baseline_version: None,
            candidate_version: None,
            max_latency_p99_ratio: 1.5,
            max_prediction_distance: 0.1,
            max_error_rate_increase: 0.02,
            max_fairness_gap_increase: 0.1,
            max_missing_share_increase: 0.05,
            failure_threshold: 3,
            promote_after: 5,
            min_events: 100,
        }
    }
}

/// Extra sinks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SinksConfig {
    /// CI webhooks.
    #[serde(skip_serializing)]
    pub webhook: Vec<webhook::WebhookConfig>,
}

/// Kafka connection and consumer settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Consumer group id; instances with the same id share the partitions.
    pub group_id: String,
    /// Client id reported to the broker.
    pub client_id: String,
    /// Extra librdkafka properties passed through verbatim to every client (TLS, SASL
    /// mechanism, …).
    pub options: BTreeMap<String, OptionValue>,
    /// librdkafka properties for the consumers only (`fetch.*`, `queued.*`, …), on top of
    /// `options`.
    pub consumer_options: BTreeMap<String, OptionValue>,
    /// librdkafka properties for the producers only (`linger.ms`, `batch.*`, …), on top of
    /// `options`.
    pub producer_options: BTreeMap<String, OptionValue>,
    /// librdkafka properties whose values are read from the named environment variables
    /// (for secrets such as `sasl.password`); the values are never logged.
    pub options_from_env: BTreeMap<String, OptionValue>,
    /// Consumer session timeout.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How long shutdown and partition revocation may take to finish in-flight work and commit.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How long start-up waits for the brokers to answer a metadata request before it gives
    /// up with the cause (connection refused, TLS handshake, SASL authentication). A failed
    /// TLS handshake or authentication ends start-up at once: retrying cannot fix it.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Refuse to start unless the input topics have the same partition count.
    pub check_copartitioning: bool,
    /// Where to start a partition that has no committed offset: `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// How far (in event time) an input partition may run ahead of the slowest one that still
    /// has data before it is paused until the others catch up; bounds what is buffered when one
    /// topic is far ahead (a backlog, labels produced first).
    #[serde(with = "humantime_serde")]
    pub max_time_ahead: Duration,
    /// How long an input partition must have had nothing left to fetch before it stops holding
    /// the watermarks back (Kafka Streams' `max.task.idle.ms`): a partition read up to the
    /// producers' head is momentarily empty many times a second, and its next events must not
    /// be late for that.
    #[serde(with = "humantime_serde")]
    pub idle_after: Duration,
}

/// A librdkafka property value. Dotted property names (`security.protocol`) may arrive split
/// into nested tables by the layered loader; [`flatten_options`] joins them back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    /// A string value.
    Text(String),
    /// A boolean, written as `true`/`false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number.
    Float(f64),
    /// A nested table (a dotted name split by the loader).
    Nested(BTreeMap<String, OptionValue>),
}

/// Flattens option tables into `dotted.name = value` strings.
pub fn flatten_options(map: &BTreeMap<String, OptionValue>) -> BTreeMap<String, String> {
    fn walk(prefix: &str, map: &BTreeMap<String, OptionValue>, out: &mut BTreeMap<String, String>) {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                OptionValue::Text(s) => {
                    out.insert(key, s.clone());
                }
                OptionValue::Bool(b) => {
                    out.insert(key, b.to_string());
                }
                OptionValue::Int(i) => {
                    out.insert(key, i.to_string());
                }
                OptionValue::Float(f) => {
                    out.insert(key, f.to_string());
                }
                OptionValue::Nested(m) => walk(&key, m, out),
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", map, &mut out);
    out
}

fn default_brokers() -> String {
    "127.0.0.1:9092".into()
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: default_brokers(),
            group_id: "driftwatch".into(),
            client_id: "driftwatch".into(),
            options: BTreeMap::new(),
            consumer_options: BTreeMap::new(),
            producer_options: BTreeMap::new(),
            options_from_env: BTreeMap::new(),
            session_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            max_time_ahead: Duration::from_secs(60),
            idle_after: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(30),
            check_copartitioning: true,
            auto_offset_reset: "earliest".into(),
        }
    }
}

/// Topic names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicsConfig {
    /// Prediction events (input).
    pub predictions: String,
    /// Feature events published separately from predictions (input).
    pub features: String,
    /// Ground-truth label events (input).
    pub labels: String,
    /// Alerts (output).
    pub alerts: String,
    /// Retraining triggers (output).
    pub retrain: String,
    /// Canary verdicts (output).
    pub verdicts: String,
    /// Input records that could not be decoded, with the reason in headers (output).
    pub dead_letters: String,
    /// Compacted topic of durable state: bootstrapped baselines, keyed by group, model and
    /// version (output, read back at start-up).
    pub state: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            predictions: "predictions".into(),
            features: "features".into(),
            labels: "labels".into(),
            alerts: "driftwatch.alerts".into(),
            retrain: "driftwatch.retrain".into(),
            verdicts: "driftwatch.verdicts".into(),
            dead_letters: "driftwatch.dead-letters".into(),
            state: "driftwatch.state".into(),
        }
    }
}

/// The format of the input topics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// driftwatch's v1 events on the three topics of `[topics]`.
    #[default]
    Driftwatch,
    /// KServe's payload logger: CloudEvents (binary or structured mode), request and response
    /// joined by `ce_id`, V1 or Open Inference Protocol v2 bodies.
    Kserve,
    /// Open Inference Protocol v2 without CloudEvents (not supported yet: rejected by
    /// validation).
    Oip,
    /// JSON of the user's own shape mapped by pointers (not supported yet: rejected by
    /// validation).
    Mapped,
}

impl InputFormat {
    /// The name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Driftwatch => "driftwatch",
            InputFormat::Kserve => "kserve",
            InputFormat::Oip => "oip",
            InputFormat::Mapped => "mapped",
        }
    }
}

/// Which field of a prediction a model's scalar output becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PredictionField {
    /// `value` (regression).
    #[default]
    Value,
    /// `score`, the probability of the positive class (binary classification).
    Score,
    /// `label`, the predicted class.
    Label,
}

/// The input topics' format and how its messages become prediction events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct InputConfig {
    /// `driftwatch` (v1 events on `[topics]`, the default), `kserve`, `oip` or `mapped`.
    pub format: InputFormat,
    /// The topics to read for formats other than `driftwatch`; a name starting with `^` is a
    /// regular expression (librdkafka's pattern subscription).
    pub topics: Vec<String>,
    /// Names of the columns of a positional input (a V1 instance given as a list, one OIP
    /// tensor of shape [N, F]), in order.
    pub feature_names: Vec<String>,
    /// Where the model id comes from: `attribute:NAME` (a CloudEvents attribute, from its
    /// `ce_NAME` header in binary mode), `key` (the Kafka message key) or `fixed:ID`.
    pub model_id: String,
    /// Where the model version comes from: `auto` (the response's `model_version`, else the
    /// `endpoint` attribute, else `default`), `attribute:NAME`, `key` or `fixed:VERSION`.
    pub model_version: String,
    /// Which prediction field a model's numeric output becomes (text outputs are labels; an
    /// output of two columns is the binary score, of more the arg-max label).
    pub prediction: PredictionField,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            format: InputFormat::Driftwatch,
            topics: Vec::new(),
            feature_names: Vec::new(),
            model_id: "attribute:inferenceservicename".into(),
            model_version: "auto".into(),
            prediction: PredictionField::Value,
        }
    }
}

/// Where an identifier comes from (`input.model_id`, `input.model_version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSource {
    /// The response's `model_version`, else the `endpoint` attribute, else `default`.
    Auto,
    /// A CloudEvents attribute (`ce_NAME` header in binary mode).
    Attribute(String),
    /// The Kafka message key.
    Key,
    /// A fixed text.
    Fixed(String),
}

impl IdSource {
    /// Parses `auto`, `attribute:NAME`, `key` or `fixed:TEXT` (`auto` only where `allow_auto`).
    pub fn parse(spec: &str, allow_auto: bool) -> Result<IdSource, String> {
        let nonempty = |rest: &str, what: &str| {
            if rest.is_empty() {
                Err(format!("`{spec}` names no {what}"))
            } else {
                Ok(rest.to_string())
            }
        };
        match spec.split_once(':') {
            _ if spec == "key" => Ok(IdSource::Key),
            _ if spec == "auto" && allow_auto => Ok(IdSource::Auto),
            Some(("attribute", rest)) => nonempty(rest, "attribute").map(IdSource::Attribute),
            Some(("fixed", rest)) => nonempty(rest, "text").map(IdSource::Fixed),
            _ => Err(format!(
                "`{spec}` is none of {}`attribute:NAME`, `key`, `fixed:TEXT`",
                if allow_auto { "`auto`, " } else { "" }
            )),
        }
    }
}

impl InputConfig {
    /// Problems of the section.
    fn validate(&self, p: &mut Vec<String>) {
        match self.format {
            InputFormat::Driftwatch => {
                if !self.topics.is_empty() {
                    p.push(
                        "input.topics is for formats other than `driftwatch`, whose topics are \
                         named in [topics]"
                            .into(),
                    );
                }
            }
            InputFormat::Kserve => {
                if self.topics.is_empty() {
                    p.push("input.topics must name at least one topic for format `kserve`".into());
                }
            }
            InputFormat::Oip | InputFormat::Mapped => p.push(format!(
                "input.format `{}` is not supported yet (`driftwatch` and `kserve` are)",
                self.format.as_str()
            )),
        }
        if self.topics.iter().any(|t| t.trim().is_empty()) {
            p.push("input.topics must not hold an empty name".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in &self.feature_names {
            if name.is_empty() {
                p.push("input.feature_names must not hold an empty name".into());
            } else if !seen.insert(name) {
                p.push(format!("input.feature_names names `{name}` twice"));
            }
        }
        if let Err(e) = IdSource::parse(&self.model_id, false) {
            p.push(format!("input.model_id: {e}"));
        }
        if let Err(e) = IdSource::parse(&self.model_version, true) {
            p.push(format!("input.model_version: {e}"));
        }
    }
}

/// Event-time sliding windows made of panes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowConfig {
    /// Window length W; must be a whole multiple of `slide`.
    #[serde(with = "humantime_serde")]
    pub length: Duration,
    /// Slide S: one pane per slide, one evaluation per slide.
    #[serde(with = "humantime_serde")]
    pub slide: Duration,
    /// How far behind the newest event time an event may be and still be counted.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A window with fewer events than this is not evaluated for drift.
    pub min_events: u64,
    /// How far ahead of its input's event time an event may be dated. One further ahead is
    /// held until 16 such events in a row confirm that time really jumped (traffic resumed
    /// after a gap); otherwise it is dead-lettered with reason `future_timestamp`, so a stray
    /// timestamp or a skewed producer clock cannot close everyone's windows.
    #[serde(with = "humantime_serde")]
    pub max_skew: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            length: Duration::from_secs(600),
            slide: Duration::from_secs(60),
            allowed_lateness: Duration::from_secs(30),
            min_events: 200,
            max_skew: Duration::from_secs(60),
        }
    }
}

impl LimitsConfig {
    /// Event time without predictions after which a version and a model are evicted:
    /// `version_idle` and `model_idle`, raised to `window.length` (and the model's to the
    /// version's) so that nothing is evicted before its last windows were evaluated.
    pub fn idle_times(&self, window: &WindowConfig) -> (Duration, Duration) {
        let version = self.version_idle.max(window.length);
        (version, self.model_idle.max(version))
    }
}

impl WindowConfig {
    /// Number of panes in a window (W / S).
    pub fn panes(&self) -> usize {
        (self.length.as_millis() / self.slide.as_millis().max(1)).max(1) as usize
    }
}

/// Hard limits: memory is bounded by these, not by traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Models monitored at once: models with a baseline (bootstrapped or configured). A model
    /// takes a slot only once it has one; while the slots are all taken, events of further
    /// models are counted (`driftwatch_limit_hits_total{limit="models"}`) and dropped.
    pub max_models: usize,
    /// Models still collecting the events of their first baseline. Beyond it, a new model
    /// evicts the one with the fewest events so far (the least recently active of those), so
    /// one-off model ids cannot keep a real model from bootstrapping.
    pub max_bootstrapping_models: usize,
    /// Versions tracked per model. A new version beyond it evicts the model's least recently
    /// active version if one has sent nothing for a slide of event time; while all are active,
    /// the new version's events are counted (`limit="versions"`) and dropped.
    pub max_versions_per_model: usize,
    /// Features profiled per model version. While the baseline is collected, a new feature
    /// beyond it replaces the feature seen in the fewest events so far.
    pub max_features: usize,
    /// Categories kept per categorical feature; the rest count as `__other__`.
    pub max_categories: usize,
    /// Groups kept per fairness attribute; the rest count as `__other__`.
    pub max_groups: usize,
    /// Predictions waiting for their label or features.
    pub max_pending_joins: usize,
    /// How long a prediction waits for its label or features.
    #[serde(with = "humantime_serde")]
    pub join_ttl: Duration,
    /// Larger messages are dead-lettered as `oversize`.
    pub max_event_bytes: usize,
    /// A version without predictions for this long in event time (behind the most advanced
    /// model's watermark) is evicted, unless it is its model's most recently active one. Never
    /// less than `window.length` is used, so that its last windows were evaluated.
    #[serde(with = "humantime_serde")]
    pub version_idle: Duration,
    /// A model without predictions for this long in event time is evicted with its versions.
    /// Never less than the version idle time is used.
    #[serde(with = "humantime_serde")]
    pub model_idle: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_models: 1000,
            max_bootstrapping_models: 256,
            max_versions_per_model: 4,
            max_features: 256,
            max_categories: 256,
            max_groups: 32,
            max_pending_joins: 200_000,
            join_ttl: Duration::from_secs(3600),
            max_event_bytes: 1 << 20,
            version_idle: Duration::from_secs(3600),
            model_idle: Duration::from_secs(6 * 3600),
        }
    }
}

/// Reference profiles.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BaselineConfig {
    /// Without a profile file, build the profile from this many first events of each version.
    pub bootstrap_events: usize,
    /// Profile files built by `driftwatch baseline build`.
    pub files: Vec<BaselineFile>,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            bootstrap_events: 10_000,
            files: Vec::new(),
        }
    }
}

/// One profile file and the model version it applies to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineFile {
    /// Model id.
    pub model_id: String,
    /// Model version; absent means every version of the model.
    #[serde(default)]
    pub model_version: Option<String>,
    /// Path of the profile JSON.
    pub path: PathBuf,
}

/// Splits `s3://bucket/prefix` into bucket and prefix (without trailing slash).
pub fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    Some((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

/// S3-compatible object storage for trigger snapshots (see `sink::s3`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// `s3://bucket/prefix`: every trigger snapshot is also copied there; empty: local only.
    pub snapshots_url: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`), addressed path-style; empty: AWS
    /// S3 in `region`, virtual-hosted.
    pub endpoint: String,
    /// Region the requests are signed for.
    pub region: String,
    /// Environment variable holding the access key id.
    pub access_key_id_env: String,
    /// Environment variable holding the secret access key.
    pub secret_access_key_env: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            snapshots_url: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id_env: "AWS_ACCESS_KEY_ID".into(),
            secret_access_key_env: "AWS_SECRET_ACCESS_KEY".into(),
        }
    }
}

/// Data and prediction drift.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftConfig {
    /// How a feature's drift is decided.
    pub decision: DriftDecision,
    /// `calibrated`: expected false drift alarms per model and day of event time; each test
    /// of a window is held to this rate spread over a day's windows and the window's tests.
    pub false_alarms_per_day: f64,
    /// `calibrated`: smallest effect that counts as drift — the KS distance for numerical
    /// features, the total variation distance between the shares for categorical ones (and
    /// numerical ones with few distinct values); 0 turns the gate off.
    pub min_effect: f64,
    /// Dataset-level drift when at least this share of features drifted.
    pub dataset_share: f64,
    /// Per-feature method and threshold overrides, by feature name (these features are decided
    /// by the named method, as `evidently` would).
    pub features: BTreeMap<String, FeatureDriftOverride>,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            decision: DriftDecision::Calibrated,
            false_alarms_per_day: 0.01,
            min_effect: 0.1,
            dataset_share: 0.5,
            features: BTreeMap::new(),
        }
    }
}

/// How a feature's drift is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftDecision {
    /// Two-sample tests (KS; chi-square of homogeneity) held to `false_alarms_per_day`, with
    /// an effect-size gate (see `stats::calibrated`).
    Calibrated,
    /// Evidently's default rule: the method chosen by reference size and distinct values, its
    /// default threshold (0.05 for p-values, 0.1 for distances), per feature and window.
    Evidently,
}

/// Method and threshold for one feature, replacing the default rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureDriftOverride {
    /// Statistic to use.
    pub method: DriftMethod,
    /// Threshold: a distance at or above it, or a p-value below it, is drift.
    pub threshold: f64,
}

/// Data-quality thresholds (shares of the window's events).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DataQualityConfig {
    /// Alert when a feature's missing share exceeds its baseline share by this much.
    pub max_missing_increase: f64,
    /// Alert when this share of a feature's values has the wrong type.
    pub max_type_mismatch: f64,
    /// Alert when this share of a numerical feature's values lies outside the baseline range.
    pub max_out_of_range: f64,
    /// Alert when this share of a categorical feature's values was never seen in the baseline.
    pub max_unseen_categories: f64,
}

impl Default for DataQualityConfig {
    fn default() -> Self {
        Self {
            max_missing_increase: 0.1,
            max_type_mismatch: 0.01,
            max_out_of_range: 0.05,
            max_unseen_categories: 0.05,
        }
    }
}

/// Latency objective.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyConfig {
    /// Alert when the window's p99 exceeds this many milliseconds; none means no latency alert.
    pub slo_p99_ms: Option<f64>,
}

/// Model quality once labels join.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PerformanceConfig {
    /// Labelled pairs a window needs before its quality is judged.
    pub min_labels: u64,
    /// Alert when accuracy (classification) falls this far below the baseline's.
    pub max_accuracy_drop: f64,
    /// Alert when RMSE (regression) rises by this fraction over the baseline's.
    pub max_rmse_increase: f64,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            min_labels: 100,
            max_accuracy_drop: 0.05,
            max_rmse_increase: 0.2,
        }
    }
}

/// Group fairness.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FairnessConfig {
    /// Attributes to evaluate; empty means every attribute seen.
    pub attributes: Vec<String>,
    /// Alert when the demographic parity difference exceeds this.
    pub max_demographic_parity_difference: f64,
    /// Alert when the equalized odds difference (needs labels) exceeds this.
    pub max_equalized_odds_difference: f64,
    /// Groups smaller than this in a window are left out of the comparison.
    pub min_group_size: u64,
}

impl Default for FairnessConfig {
    fn default() -> Self {
        Self {
            attributes: Vec::new(),
            max_demographic_parity_difference: 0.2,
            max_equalized_odds_difference: 0.2,
            min_group_size: 30,
        }
    }
}

/// Concept-drift detectors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConceptConfig {
    /// Detectors to run on the joined error stream: any of `adwin`, `ddm`, `page_hinkley`.
    pub detectors: Vec<String>,
}

impl Default for ConceptConfig {
    fn default() -> Self {
        Self {
            detectors: vec!["adwin".into(), "ddm".into()],
        }
    }
}

/// HTTP server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Listen address for /metrics, /healthz, /readyz and /api/v1.
    pub addr: SocketAddr,
    /// A connection must deliver a request's whole header within this time of the server
    /// starting to read it (on connecting, and after each response), or it is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Connections served at once; a connection beyond them is answered 503 and closed.
    pub max_connections: usize,
    /// Name of the environment variable holding the bearer token that `/api/*` requests must
    /// present (`Authorization: Bearer <token>`). Unset: the API is open.
    pub api_token_env: Option<String>,
    /// Whether `/metrics`, `/healthz` and `/readyz` need the API token too (default: they stay
    /// open for scrapers and probes).
    pub token_for_all: bool,
    /// PEM certificate chain (server certificate first): with `tls_key`, the listener speaks
    /// HTTPS only. Unset: plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, `BEGIN PRIVATE KEY`) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 256,
            api_token_env: None,
            token_for_all: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (if any), then `DRIFTWATCH__…` environment variables, and
    /// validates the result, reporting every problem at once.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut layers = load::Layers::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                problems: vec![format!("config file {}: {e}", path.display())],
            })?;
            layers.file(&path.display().to_string(), &text)?;
        }
        layers.env(std::env::vars_os());
        layers.into_config()
    }

    /// Parses a TOML string over the defaults (no environment), validating it.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let mut layers = load::Layers::default();
        layers.file("configuration", text)?;
        layers.into_config()
    }

    /// Every semantic problem of an already parsed configuration.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        self.input.validate(&mut p);
        let w = &self.window;
        if w.slide.is_zero() {
            p.push("window.slide must be positive".into());
        } else if w.length < w.slide {
            p.push(format!(
                "window.length ({}) must be at least window.slide ({})",
                humantime::format_duration(w.length),
                humantime::format_duration(w.slide)
            ));
        } else if !w.length.as_millis().is_multiple_of(w.slide.as_millis()) {
            p.push("window.length must be a whole multiple of window.slide".into());
        } else if w.panes() > 1440 {
            p.push("window.length / window.slide must be at most 1440 panes".into());
        }
        if self.kafka.brokers.trim().is_empty() {
            p.push("kafka.brokers must not be empty".into());
        }
        if self.kafka.group_id.trim().is_empty() {
            p.push("kafka.group_id must not be empty".into());
        }
        if !matches!(self.kafka.auto_offset_reset.as_str(), "earliest" | "latest") {
            p.push("kafka.auto_offset_reset must be `earliest` or `latest`".into());
        }
        if self.kafka.max_time_ahead.is_zero() {
            p.push(
                "kafka.max_time_ahead must be positive (how far one input may run ahead of the \
                 slowest before it is paused)"
                    .to_string(),
            );
        }
        if self.kafka.drain_timeout >= self.kafka.session_timeout {
            p.push(
                "kafka.drain_timeout must be shorter than kafka.session_timeout, or a revoked \
                 partition could be reassigned before its offsets are committed"
                    .into(),
            );
        }
        if self.kafka.connect_timeout.is_zero() {
            p.push("kafka.connect_timeout must be positive".into());
        }
        if let Some(var) = &self.http.api_token_env {
            match std::env::var(var) {
                Err(_) => p.push(format!(
                    "http.api_token_env names environment variable {var}, which is not set"
                )),
                Ok(t) if t.trim().is_empty() => p.push(format!(
                    "http.api_token_env names environment variable {var}, which is empty"
                )),
                Ok(_) => {}
            }
        } else if self.http.token_for_all {
            p.push("http.token_for_all needs http.api_token_env".into());
        }
        match (&self.http.tls_cert, &self.http.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                p.push("http.tls_cert and http.tls_key go together".into())
            }
            (Some(cert), Some(key)) => {
                for (name, path) in [("tls_cert", cert), ("tls_key", key)] {
                    if !path.is_file() {
                        p.push(format!("http.{name}: {} is not a file", path.display()));
                    }
                }
            }
            (None, None) => {}
        }
        for (key, var) in flatten_options(&self.kafka.options_from_env) {
            if std::env::var(&var).is_err() {
                p.push(format!(
                    "kafka.options_from_env.{key} names environment variable {var}, which is not set"
                ));
            }
        }
        let t = &self.topics;
        let inputs = [&t.predictions, &t.features, &t.labels];
        let outputs = [
            &t.alerts,
            &t.retrain,
            &t.verdicts,
            &t.dead_letters,
            &t.state,
        ];
        for name in inputs.iter().chain(outputs.iter()) {
            if name.trim().is_empty() {
                p.push("topic names must not be empty".into());
                break;
            }
        }
        for o in outputs {
            if inputs.contains(&o) {
                p.push(format!("output topic `{o}` is also an input topic"));
            }
        }
        if self.http.header_read_timeout.is_zero() {
            p.push("http.header_read_timeout must be positive".into());
        }
        let l = &self.limits;
        for (name, v) in [
            ("http.max_connections", self.http.max_connections),
            ("limits.max_models", l.max_models),
            (
                "limits.max_bootstrapping_models",
                l.max_bootstrapping_models,
            ),
            ("limits.max_versions_per_model", l.max_versions_per_model),
            ("limits.max_features", l.max_features),
            ("limits.max_categories", l.max_categories),
            ("limits.max_groups", l.max_groups),
            ("limits.max_pending_joins", l.max_pending_joins),
            ("limits.max_event_bytes", l.max_event_bytes),
        ] {
            if v == 0 {
                p.push(format!("{name} must be positive"));
            }
        }
        if self.baseline.bootstrap_events < 10 {
            p.push("baseline.bootstrap_events must be at least 10".into());
        }
        for f in &self.baseline.files {
            if !f.path.exists() {
                p.push(format!(
                    "baseline file {} (model {}) does not exist",
                    f.path.display(),
                    f.model_id
                ));
            }
        }
        let share = |name: &str, v: f64, p: &mut Vec<String>| {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                p.push(format!("{name} must be between 0 and 1, got {v}"));
            }
        };
        share("drift.dataset_share", self.drift.dataset_share, &mut p);
        let st = &self.storage;
        if !st.snapshots_url.is_empty() && parse_s3_url(&st.snapshots_url).is_none() {
            p.push(format!(
                "storage.snapshots_url must look like s3://bucket/prefix, got {:?}",
                st.snapshots_url
            ));
        }
        share("drift.min_effect", self.drift.min_effect, &mut p);
        let far = self.drift.false_alarms_per_day;
        if !(far.is_finite() && far > 0.0) {
            p.push(format!(
                "drift.false_alarms_per_day must be a positive number, got {far}"
            ));
        }
        let dq = &self.data_quality;
        share(
            "data_quality.max_missing_increase",
            dq.max_missing_increase,
            &mut p,
        );
        share(
            "data_quality.max_type_mismatch",
            dq.max_type_mismatch,
            &mut p,
        );
        share("data_quality.max_out_of_range", dq.max_out_of_range, &mut p);
        share(
            "data_quality.max_unseen_categories",
            dq.max_unseen_categories,
            &mut p,
        );
        share(
            "performance.max_accuracy_drop",
            self.performance.max_accuracy_drop,
            &mut p,
        );
        let f = &self.fairness;
        share(
            "fairness.max_demographic_parity_difference",
            f.max_demographic_parity_difference,
            &mut p,
        );
        share(
            "fairness.max_equalized_odds_difference",
            f.max_equalized_odds_difference,
            &mut p,
        );
        if !(self.performance.max_rmse_increase.is_finite()
            && self.performance.max_rmse_increase > 0.0)
        {
            p.push("performance.max_rmse_increase must be positive".into());
        }
        for (name, o) in &self.drift.features {
            if !o.threshold.is_finite() || o.threshold < 0.0 {
                p.push(format!(
                    "drift.features.{name}.threshold must be a non-negative number"
                ));
            }
        }
        if let Some(slo) = self.latency.slo_p99_ms {
            if !(slo.is_finite() && slo > 0.0) {
                p.push("latency.slo_p99_ms must be positive".into());
            }
        }
        validate_policies("", &self.alerts, &self.triggers, &self.canary, &mut p);
        for (model, mp) in &self.models {
            let prefix = format!("models.{model}.");
            validate_policies(
                &prefix,
                mp.alerts.as_ref().unwrap_or(&self.alerts),
                mp.triggers.as_ref().unwrap_or(&self.triggers),
                mp.canary.as_ref().unwrap_or(&self.canary),
                &mut p,
            );
        }
        for (i, w) in self.sinks.webhook.iter().enumerate() {
            for problem in w.validate() {
                p.push(format!("sinks.webhook[{i}]: {problem}"));
            }
        }
        for d in &self.concept.detectors {
            if !matches!(d.as_str(), "adwin" | "ddm" | "page_hinkley") {
                p.push(format!(
                    "concept.detectors: unknown detector `{d}` (expected adwin, ddm or page_hinkley)"
                ));
            }
        }
        p
    }

    /// Alert policy of a model.
    pub fn alerts_for(&self, model_id: &str) -> &AlertPolicyConfig {
        self.models
            .get(model_id)
            .and_then(|m| m.alerts.as_ref())
            .unwrap_or(&self.alerts)
    }

    /// Trigger rules of a model.
    pub fn triggers_for(&self, model_id: &str) -> &TriggerConfig {
        self.models
            .get(model_id)
            .and_then(|m| m.triggers.as_ref())
            .unwrap_or(&self.triggers)
    }

    /// Canary analysis of a model.
    pub fn canary_for(&self, model_id: &str) -> &CanaryConfig {
        self.models
            .get(model_id)
            .and_then(|m| m.canary.as_ref())
            .unwrap_or(&self.canary)
    }

    /// The librdkafka properties of the consumers: the common ones (brokers, client id,
    /// `kafka.options`, secrets resolved from the environment) and `kafka.consumer_options`.
    pub fn kafka_consumer_properties(&self) -> BTreeMap<String, String> {
        self.kafka_properties(&self.kafka.consumer_options)
    }

    /// The librdkafka properties of the producers: the common ones and
    /// `kafka.producer_options`.
    pub fn kafka_producer_properties(&self) -> BTreeMap<String, String> {
        self.kafka_properties(&self.kafka.producer_options)
    }

    fn kafka_properties(&self, own: &BTreeMap<String, OptionValue>) -> BTreeMap<String, String> {
        let mut props = BTreeMap::new();
        props.insert("bootstrap.servers".to_string(), self.kafka.brokers.clone());
        props.insert("client.id".to_string(), self.kafka.client_id.clone());
        props.extend(flatten_options(&self.kafka.options));
        props.extend(flatten_options(own));
        for (k, var) in flatten_options(&self.kafka.options_from_env) {
            if let Ok(v) = std::env::var(&var) {
                props.insert(k, v);
            }
        }
        props
    }
}

/// Problems of the alert, trigger and canary sections; `prefix` names where they came from.
fn validate_policies(
    prefix: &str,
    a: &AlertPolicyConfig,
    tr: &TriggerConfig,
    c: &CanaryConfig,
    p: &mut Vec<String>,
) {
    if a.fire_after == 0 || a.fire_window == 0 || a.fire_after > a.fire_window || a.fire_window > 32
    {
        p.push(format!(
            "{prefix}alerts.fire_after must be between 1 and alerts.fire_window (at most 32)"
        ));
    }
    if a.resolve_after == 0 {
        p.push(format!("{prefix}alerts.resolve_after must be positive"));
    }
    for (metric, v) in &a.critical {
        if !v.is_finite() {
            p.push(format!("{prefix}alerts.critical.{metric} must be a number"));
        }
    }
    if tr.sustain_windows == 0 {
        p.push(format!("{prefix}triggers.sustain_windows must be positive"));
    }
    if tr.snapshot_events == 0 {
        p.push(format!("{prefix}triggers.snapshot_events must be positive"));
    }
    if tr.snapshot_max_bytes == 0 {
        p.push(format!(
            "{prefix}triggers.snapshot_max_bytes must be positive"
        ));
    }
    if let Some(expr) = &tr.schedule {
        if let Err(e) = expr.parse::<cron::Schedule>() {
            p.push(format!(
                "{prefix}triggers.schedule `{expr}` is not a cron expression: {e}"
            ));
        }
    }
    if !(c.max_latency_p99_ratio.is_finite() && c.max_latency_p99_ratio >= 1.0) {
        p.push(format!(
            "{prefix}canary.max_latency_p99_ratio must be at least 1"
        ));
    }
    if c.failure_threshold == 0 || c.promote_after == 0 {
        p.push(format!(
            "{prefix}canary.failure_threshold and canary.promote_after must be positive"
        ));
    }
    if let (Some(b), Some(cand)) = (&c.baseline_version, &c.candidate_version) {
        if b == cand {
            p.push(format!(
                "{prefix}canary.baseline_version and canary.candidate_version must differ"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_times_never_evict_before_a_window_was_evaluated() {
        let mut cfg = Config::default();
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(cfg.limits.idle_times(&cfg.window), (h(1), h(6)));
        cfg.window.length = h(2);
        assert_eq!(cfg.limits.idle_times(&cfg.window), (h(2), h(6)));
        cfg.window.length = h(8);
        assert_eq!(cfg.limits.idle_times(&cfg.window), (h(8), h(8)));
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    }

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_empty());
        assert_eq!(Config::default().window.panes(), 10);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let err = Config::from_toml_str(
            r#"
            [window]
            length = "90s"
            slide = "1m"
            colour = "blue"
            [kafka]
            brokers = ""
            [drift]
            dataset_share = 1.5
            "#,
        )
        .unwrap_err();
        let all = err.problems.join("\n");
        assert!(all.contains("`window.colour`: unknown key"), "{all}");
        assert!(all.contains("window.length"), "{all}");
        assert!(all.contains("kafka.brokers"), "{all}");
        assert!(all.contains("drift.dataset_share"), "{all}");
        assert_eq!(err.problems.len(), 4, "{all}");
    }

    #[test]
    fn problems_come_sorted_the_same_each_time_with_array_elements_numbered_as_written() {
        // The first and third files are rejected (wrong types); the second is well typed but
        // missing, which the validation after the parse reports.
        let text = r#"
            [window]
            shape = "round"
            [[baseline.files]]
            model_id = "m"
            path = 7
            [[baseline.files]]
            model_id = "m"
            path = "/nonexistent/a.json"
            [[baseline.files]]
            model_id = 8
            path = "b.json"
        "#;
        let first = Config::from_toml_str(text).unwrap_err().problems;
        assert_eq!(
            first,
            [
                "`baseline.files[0].path`: invalid type: integer `7`, expected path string",
                "`baseline.files[2].model_id`: invalid type: integer `8`, expected a string",
                "`window.shape`: unknown key",
                "baseline file /nonexistent/a.json (model m) does not exist",
            ]
        );
        for _ in 0..20 {
            assert_eq!(Config::from_toml_str(text).unwrap_err().problems, first);
        }
    }

    #[test]
    fn wrong_types_are_not_coerced() {
        for (text, key, expected) in [
            (
                "[window]\nmin_events = 1.5\n",
                "window.min_events",
                "expected u64",
            ),
            (
                "[triggers]\nenabled = 1\n",
                "triggers.enabled",
                "expected a boolean",
            ),
            (
                "[limits]\nmax_models = \"64\"\n",
                "limits.max_models",
                "expected usize",
            ),
            (
                "[canary]\nenabled = \"true\"\n",
                "canary.enabled",
                "expected a boolean",
            ),
            (
                "[kafka]\ngroup_id = 5\n",
                "kafka.group_id",
                "expected a string",
            ),
        ] {
            let err = Config::from_toml_str(text).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{text}: {err}");
            let p = &err.problems[0];
            assert!(p.starts_with(&format!("`{key}`: ")), "{text}: {p}");
            assert!(p.ends_with(expected), "{text}: {p}");
        }
        // An integer is a float without loss.
        let cfg = Config::from_toml_str("[drift]\ndataset_share = 1\n").unwrap();
        assert_eq!(cfg.drift.dataset_share, 1.0);
    }

    fn with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut layers = load::Layers::default();
        layers.file("test", text)?;
        layers.env(vars.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        layers.into_config()
    }

    #[test]
    fn environment_values_are_parsed_to_the_key_type_or_name_the_variable() {
        let cfg = with_env(
            "[window]\nmin_events = 5\n",
            &[
                ("DRIFTWATCH__LIMITS__MAX_MODELS", "100"),
                ("DRIFTWATCH__TRIGGERS__ENABLED", "false"),
                ("DRIFTWATCH__KAFKA__GROUP_ID", "123"),
                ("DRIFTWATCH__WINDOW__MIN_EVENTS", "7"),
                ("DRIFTWATCH__DRIFT__DATASET_SHARE", "0.25"),
                ("DRIFTWATCH__WINDOW__SLIDE", "2m"),
                ("DRIFTWATCH__CONCEPT__DETECTORS", "[\"ddm\"]"),
                ("DRIFTWATCH_LOG_FORMAT", "json"),
                ("OTHER__WINDOW__SLIDE", "x"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.limits.max_models, 100);
        assert!(!cfg.triggers.enabled);
        assert_eq!(cfg.kafka.group_id, "123");
        assert_eq!(cfg.window.min_events, 7);
        assert_eq!(cfg.drift.dataset_share, 0.25);
        assert_eq!(cfg.window.slide, Duration::from_secs(120));
        assert_eq!(cfg.concept.detectors, ["ddm"]);

        let err = with_env(
            "",
            &[
                ("DRIFTWATCH__WINDOW__MIN_EVENTS", "1.5"),
                ("DRIFTWATCH__TRIGGERS__ENABLED", "1"),
                ("DRIFTWATCH__LIMITS__MAX_MODELS", "sixty-four"),
                ("DRIFTWATCH__WINDOW__COLOUR", "blue"),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err.problems,
            [
                "`limits.max_models` (environment variable DRIFTWATCH__LIMITS__MAX_MODELS=\
                 sixty-four): invalid type: string \"sixty-four\", expected usize",
                "`triggers.enabled` (environment variable DRIFTWATCH__TRIGGERS__ENABLED=1): \
                 invalid type: integer `1`, expected a boolean",
                "`window.colour` (environment variable DRIFTWATCH__WINDOW__COLOUR=blue): \
                 unknown key",
                "`window.min_events` (environment variable DRIFTWATCH__WINDOW__MIN_EVENTS=1.5): \
                 invalid type: floating point `1.5`, expected u64",
            ],
            "{err}"
        );
    }

    #[test]
    fn checks_on_a_rejected_key_are_not_reported_about_its_default() {
        // window.slide is rejected and holds its default (1m), which 90s is no multiple of:
        // that is not a problem of the file.
        let err = Config::from_toml_str("[window]\nlength = \"90s\"\nslide = 30\n").unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].starts_with("`window.slide`"), "{err}");
    }

    #[test]
    fn per_feature_override_parses() {
        let cfg = Config::from_toml_str(
            r#"
            [drift.features.income]
            method = "psi"
            threshold = 0.2
            "#,
        )
        .unwrap();
        assert_eq!(cfg.drift.features["income"].method, DriftMethod::Psi);
    }

    #[test]
    fn librdkafka_options_keep_their_dotted_names() {
        let cfg = Config::from_toml_str(
            "[kafka.options]\n\"security.protocol\" = \"SSL\"\n\"fetch.wait.max.ms\" = 50\n",
        )
        .unwrap();
        let props = cfg.kafka_consumer_properties();
        assert_eq!(props["security.protocol"], "SSL");
        assert_eq!(props["fetch.wait.max.ms"], "50");
    }

    #[test]
    fn consumer_and_producer_options_reach_only_their_clients() {
        let cfg = Config::from_toml_str(
            "[kafka.options]\n\"security.protocol\" = \"SSL\"\n\"linger.ms\" = 1\n\
             [kafka.consumer_options]\n\"fetch.wait.max.ms\" = 50\n\
             [kafka.producer_options]\n\"linger.ms\" = 20\n",
        )
        .unwrap();
        let consumer = cfg.kafka_consumer_properties();
        let producer = cfg.kafka_producer_properties();
        for props in [&consumer, &producer] {
            assert_eq!(props["security.protocol"], "SSL");
        }
        assert_eq!(consumer["fetch.wait.max.ms"], "50");
        assert!(!producer.contains_key("fetch.wait.max.ms"));
        // A client's own section wins over the common one.
        assert_eq!(producer["linger.ms"], "20");
        assert_eq!(consumer["linger.ms"], "1");
    }

    #[test]
    fn the_input_section_is_checked() {
        let cfg = Config::from_toml_str(
            "[input]\nformat = \"kserve\"\ntopics = [\"^kserve-.*\"]\nfeature_names = [\"a\", \"b\"]\nmodel_version = \"fixed:v2\"\n",
        )
        .unwrap();
        assert_eq!(cfg.input.format, InputFormat::Kserve);
        assert_eq!(
            IdSource::parse(&cfg.input.model_version, true),
            Ok(IdSource::Fixed("v2".into()))
        );
        let err = Config::from_toml_str(
            "[input]\nformat = \"kserve\"\nfeature_names = [\"a\", \"a\"]\nmodel_id = \"auto\"\nmodel_version = \"header\"\nshape = 1\n",
        )
        .unwrap_err();
        let all = err.problems.join("\n");
        for want in [
            "`input.shape`: unknown key",
            "input.topics must name at least one topic",
            "input.feature_names names `a` twice",
            "input.model_id: `auto` is none of",
            "input.model_version: `header` is none of",
        ] {
            assert!(all.contains(want), "{want} not in {all}");
        }
        let err =
            Config::from_toml_str("[input]\nformat = \"oip\"\ntopics = [\"t\"]\n").unwrap_err();
        assert!(err.problems[0].contains("not supported yet"), "{err}");
        let err = Config::from_toml_str("[input]\ntopics = [\"t\"]\n").unwrap_err();
        assert!(err.problems[0].contains("[topics]"), "{err}");
    }

    #[test]
    fn sample_config_is_valid_and_matches_defaults() {
        let text = include_str!("../../config/driftwatch.toml");
        let cfg = Config::from_toml_str(text).unwrap();
        let defaults = Config::default();
        assert_eq!(
            toml::to_string(&cfg).unwrap(),
            toml::to_string(&defaults).unwrap(),
            "config/driftwatch.toml documents the defaults"
        );
    }

    #[test]
    fn per_model_policy_replaces_the_global_section() {
        let cfg = Config::from_toml_str(
            r#"
            [alerts]
            fire_after = 1
            [models.credit-risk.alerts]
            fire_after = 3
            fire_window = 3
            critical = { wasserstein = 0.5 }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.alerts_for("credit-risk").fire_after, 3);
        assert_eq!(cfg.alerts_for("credit-risk").critical["wasserstein"], 0.5);
        assert_eq!(cfg.alerts_for("other").fire_after, 1);
        let err = Config::from_toml_str("[models.m.canary]\nfailure_threshold = 0\n").unwrap_err();
        assert!(err.problems[0].starts_with("models.m.canary."), "{err}");
    }

    #[test]
    fn drain_must_fit_in_session() {
        let err = Config::from_toml_str("[kafka]\ndrain_timeout = \"60s\"\n").unwrap_err();
        assert!(err.problems[0].contains("drain_timeout"));
    }
}
