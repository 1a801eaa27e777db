//! Drift method selection (Evidently's default rule, per-feature override) and dataset-level
//! drift share.

use serde::{Deserialize, Serialize};

use super::calibrated::homogeneity;
use super::categorical::{
    categorical_drift, categorical_stats, CategoricalDrift, CategoricalPane, CategoricalProfile,
};
use super::numeric::{numeric_drift_with, NumericDrift, NumericPane, NumericProfile};

/// Statistical test / distance used to decide drift for one feature.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DriftMethod {
    /// Two-sample KS p-value; drift when p <= threshold.
    Ks,
    /// Normed Wasserstein distance; drift when >= threshold.
    Wasserstein,
    /// Population stability index; drift when >= threshold.
    Psi,
    /// KL divergence; drift when >= threshold.
    Kl,
    /// Jensen-Shannon distance; drift when >= threshold.
    JensenShannon,
    /// Hellinger distance; drift when >= threshold.
    Hellinger,
    /// Chi-square goodness-of-fit p-value; drift when p < threshold.
    ChiSquare,
    /// Two-proportion z-test p-value; drift when p < threshold.
    ZTest,
    /// Chi-square test of homogeneity on the 2×k table of reference and window counts (both
    /// samples), rare categories pooled; drift when p < threshold.
    #[serde(rename = "chisquare_homogeneity")]
    Homogeneity,
}

impl DriftMethod {
    /// Default threshold of the method (0.05 for p-values, 0.1 for distances).
    pub fn default_threshold(self) -> f64 {
        match self {
            DriftMethod::Ks
            | DriftMethod::ChiSquare
            | DriftMethod::ZTest
            | DriftMethod::Homogeneity => 0.05,
            _ => 0.1,
        }
    }

    /// Whether the score is a p-value (small means drift).
    pub fn is_pvalue(self) -> bool {
        matches!(
            self,
            DriftMethod::Ks
                | DriftMethod::ChiSquare
                | DriftMethod::ZTest
                | DriftMethod::Homogeneity
        )
    }

    /// Drift decision for a score: p-values drift when `p <= t` (KS) or `p < t` (chi-square,
    /// z-test); distances when `score >= t`. NaN scores never drift.
    pub fn decide(self, score: f64, threshold: f64) -> bool {
        if score.is_nan() {
            return false;
        }
        match self {
            DriftMethod::Ks => score <= threshold,
            DriftMethod::ChiSquare | DriftMethod::ZTest | DriftMethod::Homogeneity => {
                score < threshold
            }
            _ => score >= threshold,
        }
    }
}

/// Kind of feature.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    /// Numerical feature.
    Numerical,
    /// Categorical feature.
    Categorical,
}

/// Per-feature override of the method and/or threshold.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct MethodOverride {
    /// Method to use instead of the default rule.
    pub method: Option<DriftMethod>,
    /// Threshold to use instead of the method's default.
    pub threshold: Option<f64>,
}

/// Drift verdict of one feature.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct FeatureDrift {
    /// Method used.
    pub method: DriftMethod,
    /// Score (p-value or distance).
    pub score: f64,
    /// Threshold applied.
    pub threshold: f64,
    /// Whether drift was detected.
    pub drifted: bool,
    /// Size of the shift, in [0, 1]: the KS distance (numerical features) or the total
    /// variation distance between the shares (categorical ones, and numerical ones compared as
    /// categories); NaN where not computed.
    #[serde(default = "nan")]
    pub effect: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// Evidently's default method: `n_reference` reference rows, `n_distinct` distinct reference
/// values (numerical) or union categories (categorical).
pub fn default_method(kind: FeatureKind, n_reference: u64, n_distinct: u64) -> DriftMethod {
    let few = match kind {
        FeatureKind::Numerical => n_distinct <= 5,
        FeatureKind::Categorical => true,
    };
    if n_reference > 1000 {
        if few {
            DriftMethod::JensenShannon
        } else {
            DriftMethod::Wasserstein
        }
    } else if !few {
        DriftMethod::Ks
    } else if n_distinct <= 2 {
        DriftMethod::ZTest
    } else {
        DriftMethod::ChiSquare
    }
}

fn resolve(default: DriftMethod, ov: &MethodOverride) -> (DriftMethod, f64) {
    let m = ov.method.unwrap_or(default);
    (m, ov.threshold.unwrap_or_else(|| m.default_threshold()))
}

fn categorical_score(method: DriftMethod, c: &CategoricalDrift) -> (DriftMethod, f64) {
    match method {
        DriftMethod::ZTest => match c.z_test_pvalue {
            Some(p) => (DriftMethod::ZTest, p),
            // z-test needs exactly two categories; fall back to chi-square
            None => (DriftMethod::ChiSquare, c.chi2_pvalue),
        },
        DriftMethod::ChiSquare => (method, c.chi2_pvalue),
        DriftMethod::Homogeneity => (
            method,
            homogeneity(&c.reference_counts, &c.current_counts).pvalue,
        ),
        DriftMethod::Psi => (method, c.shares.psi),
        DriftMethod::Kl => (method, c.shares.kl_divergence),
        DriftMethod::JensenShannon => (method, c.shares.jensenshannon_distance),
        DriftMethod::Hellinger => (method, c.shares.hellinger_sqdiff),
        // KS / Wasserstein are not defined on categories: use chi-square.
        DriftMethod::Ks | DriftMethod::Wasserstein => (DriftMethod::ChiSquare, c.chi2_pvalue),
    }
}

/// Verdict for a categorical feature.
pub fn categorical_feature_drift(c: &CategoricalDrift, ov: &MethodOverride) -> FeatureDrift {
    let default = default_method(
        FeatureKind::Categorical,
        c.n_reference,
        c.categories.len() as u64,
    );
    let (m, t) = resolve(default, ov);
    let (m, score) = categorical_score(m, c);
    let threshold = if m != ov.method.unwrap_or(m) && ov.threshold.is_none() {
        m.default_threshold()
    } else {
        t
    };
    FeatureDrift {
        method: m,
        score,
        threshold,
        drifted: m.decide(score, threshold),
        effect: f64::NAN,
    }
}

/// Categorical view of a numerical window over the profile's union bins (exact per distinct
/// value when the reference has few distinct values); used for chi-square / z-test on
/// few-valued numerical features.
pub fn numeric_as_categorical(profile: &NumericProfile, pane: &NumericPane) -> CategoricalDrift {
    let edges = profile.edges();
    let mut names = Vec::new();
    let mut rc = Vec::new();
    let mut cc = Vec::new();
    let ref_bins = profile.reference_bin_counts();
    for (j, (r, c)) in ref_bins.iter().zip(pane.bins(profile)).enumerate() {
        if *r > 0 || c.count > 0 {
            names.push(if j == 0 {
                "<min".to_string()
            } else {
                format!("{}", edges[j - 1])
            });
            rc.push(*r);
            cc.push(c.count);
        }
    }
    categorical_stats(names, rc, cc, 0)
}

/// Verdict for a numerical feature (`window` is needed for chi-square / z-test).
pub fn numeric_feature_drift(
    d: &NumericDrift,
    profile: &NumericProfile,
    window: &NumericPane,
    ov: &MethodOverride,
) -> FeatureDrift {
    let default = default_method(
        FeatureKind::Numerical,
        d.n_reference,
        d.n_distinct_reference,
    );
    let (m, t) = resolve(default, ov);
    let score = match m {
        DriftMethod::Ks => d.ks.pvalue,
        DriftMethod::Wasserstein => d.wasserstein_normed,
        DriftMethod::Psi => d.shares.psi,
        DriftMethod::Kl => d.shares.kl_divergence,
        DriftMethod::JensenShannon => d.shares.jensenshannon_distance,
        DriftMethod::Hellinger => d.shares.hellinger_sqdiff,
        DriftMethod::ChiSquare | DriftMethod::ZTest | DriftMethod::Homogeneity => {
            let c = numeric_as_categorical(profile, window);
            let (m2, s) = categorical_score(m, &c);
            let t2 = if m2 != m && ov.threshold.is_none() {
                m2.default_threshold()
            } else {
                t
            };
            return FeatureDrift {
                method: m2,
                score: s,
                threshold: t2,
                drifted: m2.decide(s, t2),
                effect: f64::NAN,
            };
        }
    };
    FeatureDrift {
        method: m,
        score,
        threshold: t,
        drifted: m.decide(score, t),
        effect: f64::NAN,
    }
}

/// Drift of one numerical feature's window as the live monitor evaluates it: the statistics
/// and the verdict. The KS p-values (up to milliseconds for windows of thousands of values)
/// are computed only when KS is the method deciding drift; otherwise they are NaN.
pub fn evaluate_numeric(
    profile: &NumericProfile,
    window: &NumericPane,
    ov: &MethodOverride,
) -> (NumericDrift, FeatureDrift) {
    let default = default_method(
        FeatureKind::Numerical,
        profile.n_reference(),
        profile.n_distinct(),
    );
    let (method, _) = resolve(default, ov);
    let d = numeric_drift_with(profile, window, method == DriftMethod::Ks);
    let verdict = numeric_feature_drift(&d, profile, window, ov);
    (d, verdict)
}

/// Drift of one categorical feature's window: the statistics and the verdict.
pub fn evaluate_categorical(
    profile: &CategoricalProfile,
    window: &CategoricalPane,
    ov: &MethodOverride,
) -> (CategoricalDrift, FeatureDrift) {
    let d = categorical_drift(profile, window);
    let verdict = categorical_feature_drift(&d, ov);
    (d, verdict)
}

/// Dataset-level drift summary.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct DatasetDrift {
    /// Features evaluated (NaN scores count as not drifted).
    pub n_features: usize,
    /// Features with drift.
    pub n_drifted: usize,
    /// n_drifted / n_features (0 when there are no features).
    pub share: f64,
    /// Threshold on the share.
    pub share_threshold: f64,
    /// share >= share_threshold (and at least one feature).
    pub drifted: bool,
}

/// Default share of drifted features above which the dataset is drifted.
pub const DEFAULT_DRIFT_SHARE: f64 = 0.5;

/// Dataset drift: share of drifted features compared with `share_threshold` (Evidently: >=).
pub fn dataset_drift(features: &[FeatureDrift], share_threshold: f64) -> DatasetDrift {
    let n = features.len();
    let k = features.iter().filter(|f| f.drifted).count();
    let share = if n == 0 { 0.0 } else { k as f64 / n as f64 };
    DatasetDrift {
        n_features: n,
        n_drifted: k,
        share,
        share_threshold,
        drifted: n > 0 && share >= share_threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rule() {
        assert_eq!(
            default_method(FeatureKind::Numerical, 5000, 100),
            DriftMethod::Wasserstein
        );
        assert_eq!(
            default_method(FeatureKind::Numerical, 5000, 3),
            DriftMethod::JensenShannon
        );
        assert_eq!(
            default_method(FeatureKind::Numerical, 500, 100),
            DriftMethod::Ks
        );
        assert_eq!(
            default_method(FeatureKind::Numerical, 500, 4),
            DriftMethod::ChiSquare
        );
        assert_eq!(
            default_method(FeatureKind::Categorical, 500, 2),
            DriftMethod::ZTest
        );
        assert_eq!(
            default_method(FeatureKind::Categorical, 5000, 2),
            DriftMethod::JensenShannon
        );
    }

    #[test]
    fn share() {
        let f = |d| FeatureDrift {
            method: DriftMethod::Psi,
            score: 0.0,
            threshold: 0.1,
            drifted: d,
            effect: f64::NAN,
        };
        let r = dataset_drift(&[f(true), f(false)], DEFAULT_DRIFT_SHARE);
        assert!(r.drifted);
        let r = dataset_drift(&[f(true), f(false), f(false)], DEFAULT_DRIFT_SHARE);
        assert!(!r.drifted);
        assert!(!dataset_drift(&[], 0.5).drifted);
    }
}
