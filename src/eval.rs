//! Window → findings: every check the monitor runs on a closed window of one model version.
//!
//! Each check yields a [`Finding`], breached or not, so the policy can both fire and resolve
//! alerts. Pure and synchronous: statistics come from `stats`, thresholds from configuration.

mod drift;

use serde_json::json;

use drift::{data_drift, dataset_drift_check, method_name, prediction_drift};

use crate::baseline::{FeatureKind, FeatureProfile, Profile};
use crate::config::DriftDecision;
use crate::config::{Config, FairnessConfig, PerformanceConfig};
use crate::output::{AlertKind, ReferenceRef};
use crate::state::pane::{AttributePane, FeaturePane, Pane, QualityCounts};
use crate::state::window::WindowBounds;
use crate::state::GroupIndex;
use crate::stats::calibrated::{feature_alpha, homogeneity, total_variation};
use crate::stats::categorical::categorical_drift;
use crate::stats::drift::{
    dataset_drift, evaluate_categorical, evaluate_numeric, numeric_as_categorical, DatasetDrift,
    DriftMethod, FeatureDrift, MethodOverride,
};
use crate::stats::ks::{ks_pvalue_asymp, KsMethod};
use crate::stats::latency::{LatencyReport, LatencySummary, REPORT_QUANTILES};
use crate::stats::numeric::numeric_drift_with;
use crate::stats::quality::{BinarySummary, RegressionSums};

/// One check's result on one window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// What kind of alert it would raise.
    pub kind: AlertKind,
    /// Metric name.
    pub metric: String,
    /// Feature, when per feature.
    pub feature: Option<String>,
    /// Value in the window.
    pub value: f64,
    /// Threshold compared with.
    pub threshold: f64,
    /// Whether the threshold is broken.
    pub breached: bool,
    /// Whether it is broken badly enough to be critical.
    pub critical: bool,
    /// Supporting numbers.
    pub evidence: serde_json::Value,
}

/// Numbers the canary analysis compares between versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionSummary {
    /// Latency p99, milliseconds.
    pub p99_ms: Option<f64>,
    /// Share of labelled predictions that were wrong.
    pub error_rate: Option<f64>,
    /// Labelled predictions behind `error_rate`.
    pub labelled: u64,
    /// Share of positive predictions.
    pub positive_rate: Option<f64>,
    /// Prediction counts over the profile's prediction bins (same profile for all versions).
    pub prediction_bins: Option<Vec<u64>>,
    /// Largest demographic parity difference over the attributes.
    pub max_dp_difference: Option<f64>,
    /// Share of missing feature values.
    pub missing_share: f64,
    /// Prediction events.
    pub events: u64,
}

/// Everything evaluated on one closed window of one model version.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Model id.
    pub model_id: String,
    /// Model version.
    pub model_version: String,
    /// Window.
    pub bounds: WindowBounds,
    /// Baseline used.
    pub reference: ReferenceRef,
    /// Per-feature drift verdicts, in profile order.
    pub features: Vec<(String, FeatureDrift)>,
    /// Drift verdicts of the prediction outputs (`prediction`, `prediction.label`).
    pub predictions: Vec<(String, FeatureDrift)>,
    /// Dataset-level drift.
    pub dataset: Option<DatasetDrift>,
    /// Latency summary.
    pub latency: Option<LatencyReport>,
    /// Every quality metric of the window once `performance.min_labels` pairs joined, finite
    /// values only: classification (`accuracy`, `precision`, `recall`, `f1`, `roc_auc`,
    /// `log_loss`, `brier`, `error_rate`) and regression (`mae`, `mse`, `rmse`, `mape`, `r2`).
    pub quality: Vec<(&'static str, f64)>,
    /// All checks.
    pub findings: Vec<Finding>,
    /// For canary comparisons.
    pub summary: VersionSummary,
}

/// A JSON number, or null for NaN and infinities (JSON has no such numbers).
pub fn finite(x: f64) -> serde_json::Value {
    if x.is_finite() {
        json!(x)
    } else {
        serde_json::Value::Null
    }
}

/// Evaluates one closed window: every check below, in this order (the order of the findings).
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    cfg: &Config,
    model_id: &str,
    version: &str,
    profile: &Profile,
    w: &Pane,
    bounds: WindowBounds,
    attributes: &[GroupIndex],
    detections: Vec<(&'static str, u64)>,
    reference_accuracy: Option<f64>,
) -> Evaluation {
    // Distributions need a full enough window; counts-based checks have minimums of their own.
    let enough = w.events >= cfg.window.min_events;
    // Every drift test of the window shares the calibrated level: one per feature, and one per
    // prediction output the baseline profiled.
    let tests = profile.features.len()
        + usize::from(profile.prediction.is_some())
        + usize::from(profile.predicted_label.is_some());
    let (mut findings, features) = if enough {
        data_drift(cfg, &profile.features, &w.features, tests)
    } else {
        Default::default()
    };
    let dataset = dataset_drift_check(cfg.drift.dataset_share, &features).map(|(ds, f)| {
        findings.push(f);
        ds
    });
    let predictions = if enough {
        let (f, verdicts) = prediction_drift(cfg, profile, w, tests);
        findings.extend(f);
        verdicts
    } else {
        Vec::new()
    };
    let quality = data_quality(cfg, &profile.features, &w.quality);
    findings.extend(quality.findings);
    let latency = (!w.latency.is_empty()).then(|| w.latency.report());
    let p99 = (!w.latency.is_empty()).then(|| w.latency.quantile(0.99));
    findings.extend(latency_check(cfg.latency.slo_p99_ms, &w.latency));
    let reference = reference_accuracy.or(profile.quality.as_ref().and_then(|q| q.accuracy));
    let (accuracy, error_rate) = accuracy_check(&cfg.performance, &w.binary, reference);
    findings.extend(accuracy);
    let reference_rmse = profile.quality.as_ref().and_then(|q| q.rmse);
    findings.extend(rmse_check(&cfg.performance, &w.regression, reference_rmse));
    let mut max_dp: Option<f64> = None;
    for (attr, pane) in attributes.iter().zip(&w.attributes) {
        let fair = fairness_checks(&cfg.fairness, &attr.attribute, &attr.groups, pane);
        if let Some(diff) = fair.dp_difference {
            max_dp = Some(max_dp.map_or(diff, |m: f64| m.max(diff)));
        }
        findings.extend(fair.findings);
    }
    findings.extend(concept_checks(&cfg.concept.detectors, &detections));
    Evaluation {
        model_id: model_id.to_string(),
        model_version: version.to_string(),
        bounds,
        reference: ReferenceRef {
            id: profile.id.clone(),
            sha256: profile.sha256.clone(),
        },
        features,
        predictions,
        dataset,
        latency,
        quality: quality_metrics(&cfg.performance, &w.binary, &w.regression),
        findings,
        summary: VersionSummary {
            p99_ms: p99,
            error_rate,
            labelled: w.binary.counts.n(),
            positive_rate: positive_rate(attributes, w),
            prediction_bins: prediction_bins(profile, w),
            max_dp_difference: max_dp,
            missing_share: quality.missing_share,
            events: w.events,
        },
    }
}
/// The data-quality findings and the window's share of missing values.
struct DataQuality {
    findings: Vec<Finding>,
    missing_share: f64,
}

/// Per feature seen at least `window.min_events` times: missing values (against the
/// baseline's share), type mismatches, and out-of-range values (numerical) or unseen
/// categories (categorical).
fn data_quality(
    cfg: &Config,
    profiles: &[FeatureProfile],
    quality: &[QualityCounts],
) -> DataQuality {
    let dq = &cfg.data_quality;
    let mut findings = Vec::new();
    let mut missing = 0u64;
    let mut seen = 0u64;
    for (fp, q) in profiles.iter().zip(quality) {
        missing += q.missing;
        seen += q.seen;
        if q.seen < cfg.window.min_events {
            continue;
        }
        let n = q.seen as f64;
        let missing_share = q.missing as f64 / n;
        let mut checks = vec![
            (
                "missing_share",
                missing_share,
                fp.missing_share + dq.max_missing_increase,
            ),
            (
                "type_mismatch_share",
                q.type_mismatch as f64 / n,
                dq.max_type_mismatch,
            ),
        ];
        match fp.kind {
            FeatureKind::Numeric(_) => checks.push((
                "out_of_range_share",
                q.out_of_range as f64 / n,
                dq.max_out_of_range,
            )),
            FeatureKind::Categorical(_) => checks.push((
                "unseen_category_share",
                q.unseen as f64 / n,
                dq.max_unseen_categories,
            )),
        }
        for (metric, value, threshold) in checks {
            findings.push(Finding {
                kind: AlertKind::DataQuality,
                metric: metric.into(),
                feature: Some(fp.name.clone()),
                value,
                threshold,
                breached: value > threshold,
                critical: value > (2.0 * threshold).min(1.0),
                evidence: json!({"seen": q.seen, "missing": q.missing, "type_mismatch": q.type_mismatch,
                    "out_of_range": q.out_of_range, "unseen": q.unseen, "baseline_missing_share": fp.missing_share}),
            });
        }
    }
    DataQuality {
        findings,
        missing_share: if seen > 0 {
            missing as f64 / seen as f64
        } else {
            0.0
        },
    }
}

/// p99 latency against the objective, when one is configured and the window has latencies.
fn latency_check(slo_p99_ms: Option<f64>, latency: &LatencySummary) -> Option<Finding> {
    let slo = slo_p99_ms?;
    if latency.is_empty() {
        return None;
    }
    let p99 = latency.quantile(0.99);
    Some(Finding {
        kind: AlertKind::Latency,
        metric: "p99_ms".into(),
        feature: None,
        value: p99,
        threshold: slo,
        breached: p99 > slo,
        critical: p99 > 2.0 * slo,
        evidence: json!({"p50_ms": latency.quantile(0.5), "p95_ms": latency.quantile(0.95),
            "p99_ms": p99, "max_ms": latency.max(), "count": latency.count()}),
    })
}

/// Accuracy of the labelled pairs against the reference accuracy less the allowed drop, once
/// `performance.min_labels` pairs joined; also the error rate (for the canary), with or
/// without a reference.
fn accuracy_check(
    perf: &PerformanceConfig,
    binary: &BinarySummary,
    reference: Option<f64>,
) -> (Option<Finding>, Option<f64>) {
    let labelled = binary.counts.n();
    if labelled < perf.min_labels {
        return (None, None);
    }
    let m = binary.metrics();
    let error_rate = Some(1.0 - m.accuracy);
    let Some(reference) = reference else {
        return (None, error_rate);
    };
    let threshold = reference - perf.max_accuracy_drop;
    let finding = Finding {
        kind: AlertKind::Performance,
        metric: "accuracy".into(),
        feature: None,
        value: m.accuracy,
        threshold,
        breached: m.accuracy < threshold,
        critical: m.accuracy < reference - 2.0 * perf.max_accuracy_drop,
        evidence: json!({"reference_accuracy": reference, "labelled": labelled,
            "precision": finite(m.precision), "recall": finite(m.recall), "f1": finite(m.f1),
            "roc_auc": finite(m.roc_auc), "log_loss": finite(m.log_loss), "brier": finite(m.brier)}),
    };
    (Some(finding), error_rate)
}

/// Every quality metric with enough labelled pairs (see [`Evaluation::quality`]).
fn quality_metrics(
    perf: &PerformanceConfig,
    binary: &BinarySummary,
    regression: &RegressionSums,
) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    if binary.counts.n() >= perf.min_labels {
        let m = binary.metrics();
        out.extend([
            ("accuracy", m.accuracy),
            ("precision", m.precision),
            ("recall", m.recall),
            ("f1", m.f1),
            ("roc_auc", m.roc_auc),
            ("log_loss", m.log_loss),
            ("brier", m.brier),
            ("error_rate", 1.0 - m.accuracy),
        ]);
    }
    if regression.n >= perf.min_labels {
        let m = regression.metrics();
        out.extend([
            ("mae", m.mae),
            ("mse", m.mse),
            ("rmse", m.rmse),
            ("mape", m.mape),
            ("r2", m.r2),
        ]);
    }
    out.retain(|(_, v)| v.is_finite());
    out
}

/// RMSE of the labelled regression pairs against the reference RMSE plus the allowed
/// increase, once `performance.min_labels` pairs joined.
fn rmse_check(
    perf: &PerformanceConfig,
    regression: &RegressionSums,
    reference: Option<f64>,
) -> Option<Finding> {
    if regression.n < perf.min_labels {
        return None;
    }
    let reference = reference?;
    let m = regression.metrics();
    let threshold = reference * (1.0 + perf.max_rmse_increase);
    Some(Finding {
        kind: AlertKind::Performance,
        metric: "rmse".into(),
        feature: None,
        value: m.rmse,
        threshold,
        breached: m.rmse > threshold,
        critical: m.rmse > reference * (1.0 + 2.0 * perf.max_rmse_increase),
        evidence: json!({"reference_rmse": reference, "labelled": regression.n,
            "mae": finite(m.mae), "mape": finite(m.mape), "r2": finite(m.r2)}),
    })
}

/// The fairness findings of one attribute, and its demographic parity difference.
struct Fairness {
    findings: Vec<Finding>,
    dp_difference: Option<f64>,
}

/// Demographic parity over the groups with at least `fairness.min_group_size` predictions
/// (when there are two such groups), and equalized odds over the labelled groups (when all of
/// them, and at least two, are that large). `groups` names the pane's group indices.
fn fairness_checks(
    fair: &FairnessConfig,
    attribute: &str,
    groups: &[String],
    pane: &AttributePane,
) -> Fairness {
    let mut findings = Vec::new();
    let mut dp_difference = None;
    let rates: Vec<(&str, f64, u64)> = pane
        .selection
        .iter()
        .enumerate()
        .filter(|(_, s)| s.n >= fair.min_group_size)
        .map(|(gi, s)| (groups[gi].as_str(), s.positive as f64 / s.n as f64, s.n))
        .collect();
    if rates.len() >= 2 {
        let max = rates.iter().map(|r| r.1).fold(f64::MIN, f64::max);
        let min = rates.iter().map(|r| r.1).fold(f64::MAX, f64::min);
        let diff = max - min;
        dp_difference = Some(diff);
        let by_group: serde_json::Map<String, serde_json::Value> = rates
            .iter()
            .map(|(g, r, n)| (g.to_string(), json!({"selection_rate": r, "count": n})))
            .collect();
        findings.push(Finding {
            kind: AlertKind::Fairness,
            metric: "demographic_parity_difference".into(),
            feature: Some(attribute.to_string()),
            value: diff,
            threshold: fair.max_demographic_parity_difference,
            breached: diff > fair.max_demographic_parity_difference,
            critical: diff > 2.0 * fair.max_demographic_parity_difference,
            evidence: json!({"groups": by_group, "demographic_parity_ratio": finite(if max > 0.0 { min / max } else { f64::NAN })}),
        });
    }
    let labelled_groups = pane.labelled.groups();
    let big_enough = labelled_groups
        .values()
        .filter(|c| c.n() >= fair.min_group_size)
        .count();
    if big_enough >= 2
        && labelled_groups
            .values()
            .all(|c| c.n() >= fair.min_group_size)
    {
        let r = pane.labelled.report();
        findings.push(Finding {
            kind: AlertKind::Fairness,
            metric: "equalized_odds_difference".into(),
            feature: Some(attribute.to_string()),
            value: r.equalized_odds_difference,
            threshold: fair.max_equalized_odds_difference,
            breached: r.equalized_odds_difference > fair.max_equalized_odds_difference,
            critical: r.equalized_odds_difference > 2.0 * fair.max_equalized_odds_difference,
            evidence: json!({"equal_opportunity_difference": finite(r.equal_opportunity_difference),
                "equalized_odds_ratio": finite(r.equalized_odds_ratio), "groups": r.groups}),
        });
    }
    Fairness {
        findings,
        dp_difference,
    }
}

/// One finding per configured detector: breached when it fired in this window (the label
/// indices where it did are the evidence).
fn concept_checks(detectors: &[String], detections: &[(&'static str, u64)]) -> Vec<Finding> {
    detectors
        .iter()
        .map(|name| {
            let hits: Vec<u64> = detections
                .iter()
                .filter(|(d, _)| d == name)
                .map(|(_, i)| *i)
                .collect();
            Finding {
                kind: AlertKind::ConceptDrift,
                metric: name.clone(),
                feature: None,
                value: hits.len() as f64,
                threshold: 1.0,
                breached: !hits.is_empty(),
                critical: false,
                evidence: json!({"detections_at_label_index": hits}),
            }
        })
        .collect()
}

/// Share of positive predictions, from the selection counts of the first attribute.
fn positive_rate(attributes: &[GroupIndex], w: &Pane) -> Option<f64> {
    let (n, pos) = attributes
        .first()
        .and_then(|_| w.attributes.first())
        .map(|a| {
            a.selection
                .iter()
                .fold((0, 0), |(n, p), s| (n + s.n, p + s.positive))
        })
        .unwrap_or((0, 0));
    (n > 0).then(|| pos as f64 / n as f64)
}

/// Prediction counts over the profile's coarse prediction bins (numerical predictions).
fn prediction_bins(profile: &Profile, w: &Pane) -> Option<Vec<u64>> {
    match (&profile.prediction, &w.prediction) {
        (
            Some(FeatureProfile {
                kind: FeatureKind::Numeric(prof),
                ..
            }),
            Some(FeaturePane::Numeric(p)),
        ) => Some(p.coarse_counts(prof)),
        _ => None,
    }
}

/// Sets the model gauges from an evaluation.
pub fn export(t: &crate::telemetry::Telemetry, ev: &Evaluation) {
    let (m, v) = (ev.model_id.as_str(), ev.model_version.as_str());
    t.window_events
        .with_label_values(&[m, v])
        .set(ev.bounds.count as f64);
    for (name, d) in &ev.features {
        t.drift_detected
            .with_label_values(&[m, v, name])
            .set(if d.drifted { 1.0 } else { 0.0 });
    }
    for (name, d) in ev.features.iter().chain(&ev.predictions) {
        t.drift_score
            .with_label_values(&[m, v, name, &method_name(d)])
            .set(d.score);
        if d.effect.is_finite() {
            t.drift_effect
                .with_label_values(&[m, v, name])
                .set(d.effect);
        }
    }
    if let Some(ds) = &ev.dataset {
        t.dataset_drift_share
            .with_label_values(&[m, v])
            .set(ds.share);
    }
    if let Some(l) = &ev.latency {
        for ((_, value), (name, _)) in l.quantiles.iter().zip(REPORT_QUANTILES) {
            t.latency
                .with_label_values(&[m, v, name])
                .set(value / 1000.0);
        }
    }
    for (metric, value) in &ev.quality {
        t.quality.with_label_values(&[m, v, metric]).set(*value);
    }
    for f in &ev.findings {
        match f.kind {
            AlertKind::Fairness => {
                let attr = f.feature.as_deref().unwrap_or("");
                t.fairness
                    .with_label_values(&[m, v, attr, &f.metric])
                    .set(f.value);
            }
            AlertKind::DataQuality => {
                let feat = f.feature.as_deref().unwrap_or("");
                t.data_quality
                    .with_label_values(&[m, v, feat, &f.metric])
                    .set(f.value);
            }
            AlertKind::ConceptDrift if f.breached => {
                t.concept_detections
                    .with_label_values(&[m, v, &f.metric])
                    .inc_by(f.value as u64);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
