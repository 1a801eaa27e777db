//! The v1 output contracts: alerts, retraining triggers, canary verdicts and dead letters.
//!
//! Every output object carries a `type`, deterministic ids, and RFC 3339 UTC timestamps with
//! milliseconds. JSON Schemas for them live in `schemas/`.

use serde::{Deserialize, Deserializer, Serialize};

/// The constant `type` of an output object. (A named type also keeps serde from reading it as
/// borrowed from the input: outputs are read back from any JSON, owned or not.)
pub type TypeTag = &'static str;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A feature's distribution moved away from the baseline (or the dataset as a whole).
    DataDrift,
    /// The prediction distribution moved.
    PredictionDrift,
    /// The error stream changed (ADWIN, DDM, Page-Hinkley).
    ConceptDrift,
    /// Model quality dropped once labels joined.
    Performance,
    /// Latency broke its objective.
    Latency,
    /// A group fairness metric broke its bound.
    Fairness,
    /// Missing values, wrong types, out-of-range values or unseen categories.
    DataQuality,
}

impl AlertKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::DataDrift => "data_drift",
            AlertKind::PredictionDrift => "prediction_drift",
            AlertKind::ConceptDrift => "concept_drift",
            AlertKind::Performance => "performance",
            AlertKind::Latency => "latency",
            AlertKind::Fairness => "fairness",
            AlertKind::DataQuality => "data_quality",
        }
    }
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Warning,
    /// Act now.
    Critical,
}

/// Alert lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The condition holds.
    Firing,
    /// The condition cleared.
    Resolved,
}

impl AlertStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// The window an output was computed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRef {
    /// First instant covered.
    pub start: String,
    /// First instant after the window.
    pub end: String,
    /// Events in the window.
    pub count: u64,
}

/// The baseline an output compared against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceRef {
    /// Profile id.
    pub id: String,
    /// sha256 of the profile content.
    pub sha256: String,
}

/// An alert (`"type": "alert"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Always `alert`.
    #[serde(rename = "type", deserialize_with = "alert_tag")]
    pub type_: TypeTag,
    /// Stable for the whole episode: the firing and the resolved record share it.
    pub alert_id: String,
    /// What it is about.
    pub kind: AlertKind,
    /// Severity.
    pub severity: Severity,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Model id.
    pub model_id: String,
    /// Model version.
    pub model_version: String,
    /// Metric name, e.g. `wasserstein_normed`, `p99_ms`, `accuracy`.
    pub metric: String,
    /// Feature, when the metric is per feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// Metric value in the window.
    pub value: f64,
    /// Threshold it was compared with.
    pub threshold: f64,
    /// Window evaluated.
    pub window: WindowRef,
    /// Baseline used.
    pub reference: ReferenceRef,
    /// Supporting statistics.
    pub evidence: serde_json::Value,
    /// When it was emitted.
    pub emitted_at: String,
}

/// A retraining trigger (`"type": "retrain_trigger"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainTrigger {
    /// Always `retrain_trigger`.
    #[serde(rename = "type", deserialize_with = "trigger_tag")]
    pub type_: TypeTag,
    /// Deterministic idempotency key.
    pub trigger_id: String,
    /// Model id.
    pub model_id: String,
    /// Model version.
    pub model_version: String,
    /// The alerts that caused it.
    pub reasons: Vec<TriggerReason>,
    /// The rule that fired.
    pub policy: String,
    /// The window that completed the evidence.
    pub window: WindowRef,
    /// Baseline used.
    pub reference: ReferenceRef,
    /// Statistics and the snapshot location.
    pub evidence: serde_json::Value,
    /// When it was emitted.
    pub emitted_at: String,
}

/// Where the events behind a trigger are kept (`evidence.snapshot`): a Parquet file of the
/// most recent events of the triggering window, and its copy in object storage when there is
/// one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// Always `parquet`.
    pub format: String,
    /// The file.
    pub path: String,
    /// Rows in it.
    pub events: usize,
    /// What it holds.
    pub note: String,
    /// Its copy in object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The offsets of the predictions of a trigger's window in one input partition
/// (`evidence.input`, and `evidence.inputs` when there are several).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRange {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset of the window's predictions.
    pub from_offset: i64,
    /// Last offset of the window's predictions.
    pub to_offset: i64,
}

/// One alert behind a trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerReason {
    /// The alert's id.
    pub alert_id: String,
    /// Its kind.
    pub kind: AlertKind,
    /// Its metric.
    pub metric: String,
    /// Its feature, when per feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// Its value.
    pub value: f64,
    /// Its threshold.
    pub threshold: f64,
}

/// Promote, roll back, or keep watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The candidate is at least as good: promote it.
    Promote,
    /// The candidate failed too many checks: roll it back.
    Rollback,
    /// Not enough evidence yet.
    Continue,
}

impl Verdict {
    /// Every verdict, in declaration order.
    pub const ALL: [Verdict; 3] = [Verdict::Promote, Verdict::Rollback, Verdict::Continue];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Promote => "promote",
            Verdict::Rollback => "rollback",
            Verdict::Continue => "continue",
        }
    }
}

/// One canary comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryCheck {
    /// What was compared.
    pub metric: String,
    /// Baseline version's value.
    pub baseline: f64,
    /// Candidate version's value.
    pub candidate: f64,
    /// Bound the check applies.
    pub threshold: f64,
    /// Whether the candidate passed.
    pub passed: bool,
}

/// A canary verdict (`"type": "canary_verdict"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryVerdict {
    /// Always `canary_verdict`.
    #[serde(rename = "type", deserialize_with = "verdict_tag")]
    pub type_: TypeTag,
    /// Deterministic id: model, versions and window end.
    pub verdict_id: String,
    /// Model id.
    pub model_id: String,
    /// The version the verdict is about: the candidate (the same as `candidate_version`), so
    /// that every output names its model version in the same field.
    pub model_version: String,
    /// Version serving as the baseline.
    pub baseline_version: String,
    /// Version under test.
    pub candidate_version: String,
    /// The decision.
    pub verdict: Verdict,
    /// The comparisons behind it.
    pub checks: Vec<CanaryCheck>,
    /// Window compared.
    pub window: WindowRef,
    /// When it was emitted.
    pub emitted_at: String,
}

/// An input record that could not be used, with why and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Reason code (a closed list; see [`crate::event::DecodeError::REASONS`]).
    pub reason: &'static str,
    /// Human-readable detail.
    pub detail: String,
    /// Source topic (or input file).
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset (or line number).
    pub offset: i64,
    /// The original bytes.
    pub payload: Vec<u8>,
}

/// Anything the monitor emits.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// To the alerts topic.
    Alert(Alert),
    /// To the retraining-trigger topic.
    Trigger(RetrainTrigger),
    /// To the verdicts topic.
    Verdict(CanaryVerdict),
    /// To the dead-letter topic.
    DeadLetter(DeadLetter),
}

/// The kind of an output: the value of its `type` field (dead letters, which have no JSON body
/// of their own, are `dead_letter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    /// [`Output::Alert`].
    Alert,
    /// [`Output::Trigger`].
    RetrainTrigger,
    /// [`Output::Verdict`].
    CanaryVerdict,
    /// [`Output::DeadLetter`].
    DeadLetter,
}

impl OutputType {
    /// The outputs published with a JSON body of their own (every kind but dead letters).
    pub const PUBLISHED: [OutputType; 3] = [
        OutputType::Alert,
        OutputType::RetrainTrigger,
        OutputType::CanaryVerdict,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputType::Alert => "alert",
            OutputType::RetrainTrigger => "retrain_trigger",
            OutputType::CanaryVerdict => "canary_verdict",
            OutputType::DeadLetter => "dead_letter",
        }
    }
}

impl std::fmt::Display for OutputType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a JSON object is not an output.
#[derive(Debug, thiserror::Error)]
pub enum OutputParseError {
    /// The `type` field is missing or names no published output.
    #[error("`type` must be alert, retrain_trigger or canary_verdict, got {0}")]
    UnknownType(String),
    /// The object does not match the output's contract.
    #[error("not a valid {kind}: {source}")]
    Invalid {
        /// The output type named by `type`.
        kind: OutputType,
        /// What did not match.
        #[source]
        source: serde_json::Error,
    },
}

impl Output {
    /// Reads an alert, trigger or verdict back from its JSON body (what [`Output::to_json`]
    /// gives and the Kafka topics carry).
    pub fn from_json(v: &serde_json::Value) -> Result<Output, OutputParseError> {
        let kind = match v.get("type").and_then(serde_json::Value::as_str) {
            Some("alert") => OutputType::Alert,
            Some("retrain_trigger") => OutputType::RetrainTrigger,
            Some("canary_verdict") => OutputType::CanaryVerdict,
            Some(other) => return Err(OutputParseError::UnknownType(format!("{other:?}"))),
            None => return Err(OutputParseError::UnknownType("nothing".into())),
        };
        let invalid = |source| OutputParseError::Invalid { kind, source };
        Ok(match kind {
            OutputType::Alert => Output::Alert(Alert::deserialize(v).map_err(invalid)?),
            OutputType::RetrainTrigger => {
                Output::Trigger(RetrainTrigger::deserialize(v).map_err(invalid)?)
            }
            _ => Output::Verdict(CanaryVerdict::deserialize(v).map_err(invalid)?),
        })
    }

    /// Its kind.
    pub fn output_type(&self) -> OutputType {
        match self {
            Output::Alert(_) => OutputType::Alert,
            Output::Trigger(_) => OutputType::RetrainTrigger,
            Output::Verdict(_) => OutputType::CanaryVerdict,
            Output::DeadLetter(_) => OutputType::DeadLetter,
        }
    }

    /// The model version it is about (a verdict: the candidate; dead letters: none).
    pub fn model_version(&self) -> Option<&str> {
        match self {
            Output::Alert(a) => Some(&a.model_version),
            Output::Trigger(t) => Some(&t.model_version),
            Output::Verdict(v) => Some(&v.model_version),
            Output::DeadLetter(_) => None,
        }
    }

    /// Kafka message key: the model id (dead letters: none).
    pub fn key(&self) -> Option<&str> {
        match self {
            Output::Alert(a) => Some(&a.model_id),
            Output::Trigger(t) => Some(&t.model_id),
            Output::Verdict(v) => Some(&v.model_id),
            Output::DeadLetter(_) => None,
        }
    }

    /// Idempotency key for consumers that de-duplicate.
    pub fn idempotency_key(&self) -> String {
        match self {
            Output::Alert(a) => format!("{}:{}", a.alert_id, status_str(a.status)),
            Output::Trigger(t) => t.trigger_id.clone(),
            Output::Verdict(v) => v.verdict_id.clone(),
            Output::DeadLetter(d) => format!("{}:{}:{}", d.topic, d.partition, d.offset),
        }
    }

    /// The JSON body (dead letters: the original bytes are the body; this gives the JSON Lines
    /// record used by `replay --dead-letter`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Output::Alert(a) => serde_json::to_value(a),
            Output::Trigger(t) => serde_json::to_value(t),
            Output::Verdict(v) => serde_json::to_value(v),
            Output::DeadLetter(d) => Ok(serde_json::json!({
                "reason": d.reason,
                "detail": d.detail,
                "source": d.topic,
                "partition": d.partition,
                "offset": d.offset,
                "original": String::from_utf8_lossy(&d.payload),
            })),
        }
        .expect("outputs serialize")
    }
}

/// Reads a `type` field that must be `expected`.
fn tag<'de, D: Deserializer<'de>>(d: D, expected: &'static str) -> Result<&'static str, D::Error> {
    let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
    if s == expected {
        Ok(expected)
    } else {
        Err(serde::de::Error::custom(format!(
            "`type` must be {expected:?}, got {s:?}"
        )))
    }
}

fn alert_tag<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    tag(d, "alert")
}

fn trigger_tag<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    tag(d, "retrain_trigger")
}

fn verdict_tag<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    tag(d, "canary_verdict")
}

fn status_str(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    }
}

/// A short deterministic id: the first 16 bytes of sha256 over the parts, hex-encoded.
pub fn stable_id(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_read_back_from_their_json() {
        let v = CanaryVerdict {
            type_: "canary_verdict",
            verdict_id: "0123456789abcdef0123456789abcdef".into(),
            model_id: "m".into(),
            model_version: "v2".into(),
            baseline_version: "v1".into(),
            candidate_version: "v2".into(),
            verdict: Verdict::Promote,
            checks: vec![CanaryCheck {
                metric: "p99_ms".into(),
                baseline: 10.0,
                candidate: 11.0,
                threshold: 1.5,
                passed: true,
            }],
            window: WindowRef {
                start: "2027-01-01T00:00:00.000Z".into(),
                end: "2027-01-01T00:00:20.000Z".into(),
                count: 10,
            },
            emitted_at: "2027-01-01T00:00:20.000Z".into(),
        };
        let o = Output::Verdict(v);
        let json = o.to_json();
        assert_eq!(Output::from_json(&json).unwrap(), o);
        assert_eq!(o.output_type(), OutputType::CanaryVerdict);
        assert_eq!(o.model_version(), Some("v2"));

        let mut wrong = json.clone();
        wrong["type"] = "alert".into();
        assert!(matches!(
            Output::from_json(&wrong),
            Err(OutputParseError::Invalid {
                kind: OutputType::Alert,
                ..
            })
        ));
        let mut unknown = json.clone();
        unknown["type"] = "heartbeat".into();
        assert!(matches!(
            Output::from_json(&unknown),
            Err(OutputParseError::UnknownType(_))
        ));
        let mut extra = json;
        extra["surprise"] = 1.into();
        let e = Output::from_json(&extra).unwrap_err();
        assert!(e.to_string().contains("surprise"), "{e}");
    }
}
