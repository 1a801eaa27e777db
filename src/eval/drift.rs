//! The drift checks of a window: each feature and the prediction against the baseline's
//! profile, decided as `drift.decision` says (calibrated two-sample tests, or Evidently's rule),
//! and the dataset-level share of drifted features.

use super::*;

pub(super) fn override_for(cfg: &Config, name: &str) -> MethodOverride {
    cfg.drift
        .features
        .get(name)
        .map(|o| MethodOverride {
            method: Some(o.method),
            threshold: Some(o.threshold),
        })
        .unwrap_or_default()
}

pub(super) fn is_critical(d: &FeatureDrift) -> bool {
    if !d.drifted {
        return false;
    }
    if d.method.is_pvalue() {
        d.score < d.threshold / 50.0
    } else {
        d.score >= 2.0 * d.threshold
    }
}

/// Drift of one feature's window against its profile; `None` when the window has no values.
/// `tests` is the number of drift tests of the window (the calibrated level is shared among
/// them).
pub(super) fn feature_drift(
    cfg: &Config,
    fp: &FeatureProfile,
    pane: &FeaturePane,
    tests: usize,
) -> Option<(FeatureDrift, serde_json::Value)> {
    let ov = override_for(cfg, &fp.name);
    let calibrated = cfg.drift.decision == DriftDecision::Calibrated && ov.method.is_none();
    match (&fp.kind, pane) {
        (FeatureKind::Numeric(prof), FeaturePane::Numeric(p)) => {
            if p.n() == 0 {
                return None;
            }
            let few_values = prof.n_distinct() <= FEW_DISTINCT;
            let (d, v) = if calibrated {
                // The exact KS p-value (up to milliseconds a feature) only where it can decide:
                // under the effect gate the cheap asymptotic one is reported.
                let mut d = numeric_drift_with(prof, p, false);
                if !few_values {
                    if d.ks.statistic >= cfg.drift.min_effect {
                        d = numeric_drift_with(prof, p, true);
                    } else {
                        d.ks.pvalue = ks_pvalue_asymp(d.ks.statistic, d.n_reference, d.n_current);
                        d.ks.pvalue_asymp = d.ks.pvalue;
                        d.ks.method = KsMethod::Asymp;
                    }
                }
                (d, None)
            } else {
                let (d, v) = evaluate_numeric(prof, p, &ov);
                (d, Some(v))
            };
            let mut ev = json!({
                "n_reference": d.n_reference,
                "n_current": d.n_current,
                "ks_statistic": finite(d.ks.statistic),
                "wasserstein": finite(d.wasserstein),
                "wasserstein_normed": finite(d.wasserstein_normed),
                "psi": finite(d.shares.psi),
                "jensenshannon_distance": finite(d.shares.jensenshannon_distance),
                "hellinger": finite(d.shares.hellinger_sqdiff),
                "reference_bin_counts": d.reference_bin_counts,
                "current_bin_counts": d.current_bin_counts,
            });
            let v = match v {
                Some(v) => FeatureDrift {
                    effect: d.ks.statistic,
                    ..v
                },
                None if few_values => {
                    let c = numeric_as_categorical(prof, p);
                    calibrated_counts(cfg, tests, &c.reference_counts, &c.current_counts, &mut ev)
                }
                None => {
                    let test = CalibratedTest {
                        method: DriftMethod::Ks,
                        pvalue: d.ks.pvalue,
                        effect: d.ks.statistic,
                        effect_name: "ks_distance",
                    };
                    test.decide(cfg, tests, &mut ev)
                }
            };
            if v.method == DriftMethod::Ks {
                ev["ks_pvalue"] = finite(d.ks.pvalue);
                ev["ks_pvalue_method"] = serde_json::json!(d.ks.method.as_str());
            }
            Some((v, ev))
        }
        (FeatureKind::Categorical(prof), FeaturePane::Categorical(p)) => {
            if p.n() == 0 {
                return None;
            }
            let (d, v) = if calibrated {
                (categorical_drift(prof, p), None)
            } else {
                let (d, v) = evaluate_categorical(prof, p, &ov);
                (d, Some(v))
            };
            let mut ev = json!({
                "n_reference": d.n_reference,
                "n_current": d.n_current,
                "chi2_pvalue": finite(d.chi2_pvalue),
                "psi": finite(d.shares.psi),
                "jensenshannon_distance": finite(d.shares.jensenshannon_distance),
                "categories": d.categories,
                "reference_counts": d.reference_counts,
                "current_counts": d.current_counts,
            });
            let v = match v {
                Some(v) => FeatureDrift {
                    effect: total_variation(&d.reference_counts, &d.current_counts),
                    ..v
                },
                None => {
                    calibrated_counts(cfg, tests, &d.reference_counts, &d.current_counts, &mut ev)
                }
            };
            Some((v, ev))
        }
        _ => None,
    }
}

/// Numerical features with at most this many distinct reference values are compared as
/// categories (the KS test is very conservative on so many ties).
const FEW_DISTINCT: u64 = 5;

/// One calibrated two-sample test's result, before the decision.
struct CalibratedTest {
    method: DriftMethod,
    pvalue: f64,
    effect: f64,
    effect_name: &'static str,
}

impl CalibratedTest {
    /// Drift when the p-value is under the calibrated level and the effect reaches
    /// `drift.min_effect`; what was decided, and on what, goes into the evidence.
    fn decide(&self, cfg: &Config, tests: usize, ev: &mut serde_json::Value) -> FeatureDrift {
        let d = &cfg.drift;
        let slide_ms = cfg.window.slide.as_millis() as i64;
        let alpha = feature_alpha(d.false_alarms_per_day, slide_ms, tests);
        let drifted = self.pvalue < alpha && self.effect >= d.min_effect;
        ev["decision"] = json!({
            "test": self.method,
            "p_value": finite(self.pvalue),
            "alpha": alpha,
            "false_alarms_per_day": d.false_alarms_per_day,
            "tests_per_window": tests,
            "effect": self.effect_name,
            "effect_value": finite(self.effect),
            "min_effect": d.min_effect,
        });
        FeatureDrift {
            method: self.method,
            score: self.pvalue,
            threshold: alpha,
            drifted,
            effect: self.effect,
        }
    }
}

/// The calibrated decision on two samples given as aligned counts per category.
pub(super) fn calibrated_counts(
    cfg: &Config,
    tests: usize,
    reference: &[u64],
    current: &[u64],
    ev: &mut serde_json::Value,
) -> FeatureDrift {
    let h = homogeneity(reference, current);
    ev["chi2_homogeneity"] = json!({
        "statistic": h.statistic,
        "dof": h.dof,
        "columns": h.columns,
        "pooled_columns": h.pooled_columns,
    });
    CalibratedTest {
        method: DriftMethod::Homogeneity,
        pvalue: h.pvalue,
        effect: total_variation(reference, current),
        effect_name: "total_variation",
    }
    .decide(cfg, tests, ev)
}

pub(super) fn method_name(d: &FeatureDrift) -> String {
    serde_json::to_value(d.method)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(super) fn drift_finding(
    kind: AlertKind,
    name: &str,
    d: &FeatureDrift,
    evidence: serde_json::Value,
) -> Finding {
    Finding {
        kind,
        metric: method_name(d),
        feature: Some(name.to_string()),
        value: d.score,
        threshold: d.threshold,
        breached: d.drifted,
        critical: is_critical(d),
        evidence,
    }
}

/// Drift of every feature with values in the window, in profile order: the findings and the
/// verdicts.
pub(super) fn data_drift(
    cfg: &Config,
    profiles: &[FeatureProfile],
    panes: &[FeaturePane],
    tests: usize,
) -> (Vec<Finding>, Vec<(String, FeatureDrift)>) {
    let mut findings = Vec::new();
    let mut features = Vec::new();
    for (fp, pane) in profiles.iter().zip(panes) {
        if let Some((d, ev)) = feature_drift(cfg, fp, pane, tests) {
            findings.push(drift_finding(AlertKind::DataDrift, &fp.name, &d, ev));
            features.push((fp.name.clone(), d));
        }
    }
    (findings, features)
}

/// Dataset drift (the share of drifted features against `share`); `None` without features.
pub(super) fn dataset_drift_check(
    share: f64,
    features: &[(String, FeatureDrift)],
) -> Option<(DatasetDrift, Finding)> {
    if features.is_empty() {
        return None;
    }
    let all: Vec<FeatureDrift> = features.iter().map(|(_, d)| *d).collect();
    let ds = dataset_drift(&all, share);
    let drifted: Vec<&str> = features
        .iter()
        .filter(|(_, d)| d.drifted)
        .map(|(n, _)| n.as_str())
        .collect();
    let finding = Finding {
        kind: AlertKind::DataDrift,
        metric: "drifted_feature_share".into(),
        feature: None,
        value: ds.share,
        threshold: ds.share_threshold,
        breached: ds.drifted,
        critical: ds.drifted,
        evidence: json!({"n_features": ds.n_features, "n_drifted": ds.n_drifted, "drifted_features": drifted}),
    };
    Some((ds, finding))
}

/// Drift of the prediction (score or value) and of the predicted label.
pub(super) fn prediction_drift(
    cfg: &Config,
    profile: &Profile,
    w: &Pane,
    tests: usize,
) -> (Vec<Finding>, Vec<(String, FeatureDrift)>) {
    let mut findings = Vec::new();
    let mut verdicts = Vec::new();
    for (fp, pane) in [
        (profile.prediction.as_ref(), w.prediction.as_ref()),
        (profile.predicted_label.as_ref(), w.predicted_label.as_ref()),
    ] {
        if let (Some(fp), Some(pane)) = (fp, pane) {
            if let Some((d, ev)) = feature_drift(cfg, fp, pane, tests) {
                findings.push(drift_finding(AlertKind::PredictionDrift, &fp.name, &d, ev));
                verdicts.push((fp.name.clone(), d));
            }
        }
    }
    (findings, verdicts)
}
