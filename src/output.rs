//! The v1 output contracts: alerts, retraining triggers, canary verdicts and dead letters.
//!
//! Every output object carries a `type`, deterministic ids, and RFC 3339 UTC timestamps with
//! milliseconds. JSON Schemas for them live in `schemas/`.

use serde::Serialize;

use crate::event::format_rfc3339_ms;
use crate::state::window::WindowBounds;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Warning,
    /// Act now.
    Critical,
}

/// Alert lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The condition holds.
    Firing,
    /// The condition cleared.
    Resolved,
}

/// The window an output was computed on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowRef {
    /// First instant covered.
    pub start: String,
    /// First instant after the window.
    pub end: String,
    /// Events in the window.
    pub count: u64,
}

impl From<WindowBounds> for WindowRef {
    fn from(b: WindowBounds) -> Self {
        WindowRef {
            start: format_rfc3339_ms(b.start_ms),
            end: format_rfc3339_ms(b.end_ms),
            count: b.count,
        }
    }
}

/// The baseline an output compared against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceRef {
    /// Profile id.
    pub id: String,
    /// sha256 of the profile content.
    pub sha256: String,
}

/// An alert (`"type": "alert"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Always `alert`.
    #[serde(rename = "type")]
    pub type_: &'static str,
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrainTrigger {
    /// Always `retrain_trigger`.
    #[serde(rename = "type")]
    pub type_: &'static str,
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

/// One alert behind a trigger.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The candidate is at least as good: promote it.
    Promote,
    /// The candidate failed too many checks: roll it back.
    Rollback,
    /// Not enough evidence yet.
    Continue,
}

/// One canary comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryVerdict {
    /// Always `canary_verdict`.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// Deterministic id: model, versions and window end.
    pub verdict_id: String,
    /// Model id.
    pub model_id: String,
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

impl Output {
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
