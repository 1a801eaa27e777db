//! Reference profiles ("baselines"): what a model's inputs and outputs looked like when it was
//! trained, in the form the streaming statistics compare against.
//!
//! A profile is built from training data (`driftwatch baseline build`, through DataFusion in
//! `table`, cargo feature `datafusion`) or bootstrapped from the first N live events
//! ([`ProfileBuilder`]). Its id is the sha256 of its canonical JSON content, so every alert
//! names exactly the profile it used.

pub mod build;
#[cfg(feature = "datafusion")]
pub mod table;

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::event::{Event, FeatureValue};
use crate::stats::categorical::{CategoricalProfile, CategoricalProfileConfig};
use crate::stats::latency::ExactLatency;
use crate::stats::numeric::{NumericProfile, NumericProfileConfig};

/// Format version written into every profile.
pub const PROFILE_FORMAT: u32 = 1;

/// Errors of loading or building a profile.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a valid profile.
    #[error("{path}: not a driftwatch profile: {reason}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The input data cannot make a profile.
    #[error("{0}")]
    Data(String),
}

/// Per-feature reference summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureKind {
    /// Numerical feature.
    Numeric(NumericProfile),
    /// Categorical feature.
    Categorical(CategoricalProfile),
}

/// One feature of the profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureProfile {
    /// Feature name as in events.
    pub name: String,
    /// Share of reference rows where it was missing.
    pub missing_share: f64,
    /// The reference summary.
    pub kind: FeatureKind,
}

/// Reference latency.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencyProfile {
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Values summarised.
    pub count: u64,
}

/// Reference model quality, when the reference had labels.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QualityProfile {
    /// Accuracy (classification).
    pub accuracy: Option<f64>,
    /// Root mean squared error (regression).
    pub rmse: Option<f64>,
    /// Labelled rows.
    pub count: u64,
}

/// A reference profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Format version.
    pub format: u32,
    /// Human-readable id: `model_id@version` plus the first 12 hex digits of the hash.
    pub id: String,
    /// sha256 of the canonical content (every field but `id` and `sha256`).
    pub sha256: String,
    /// Model id.
    pub model_id: String,
    /// Model version it applies to, if specific.
    pub model_version: Option<String>,
    /// Where the reference came from (`file:<path>` or `bootstrap`).
    pub source: String,
    /// Reference rows.
    pub rows: u64,
    /// Features, in a stable order.
    pub features: Vec<FeatureProfile>,
    /// Score (binary) or value (regression) distribution.
    pub prediction: Option<FeatureProfile>,
    /// Predicted class distribution.
    pub predicted_label: Option<FeatureProfile>,
    /// Ground-truth label distribution.
    pub label: Option<FeatureProfile>,
    /// Latency.
    pub latency: Option<LatencyProfile>,
    /// Quality.
    pub quality: Option<QualityProfile>,
}

impl Profile {
    /// Computes `sha256` and `id` from the content.
    pub fn seal(mut self) -> Self {
        use sha2::{Digest, Sha256};
        self.id = String::new();
        self.sha256 = String::new();
        let canonical = serde_json::to_vec(&self).expect("profiles serialize");
        let digest = hex::encode(Sha256::digest(&canonical));
        self.id = format!(
            "{}@{}:{}",
            self.model_id,
            self.model_version.as_deref().unwrap_or("*"),
            &digest[..12]
        );
        self.sha256 = digest;
        self
    }

    /// Index of a feature by name.
    pub fn feature_index(&self) -> HashMap<String, usize> {
        self.features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect()
    }

    /// Reads and verifies a profile file.
    pub fn load(path: &Path) -> Result<Profile, BaselineError> {
        let shown = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| BaselineError::Io {
            path: shown.clone(),
            source,
        })?;
        let p: Profile = serde_json::from_slice(&text).map_err(|e| BaselineError::Invalid {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        if p.format != PROFILE_FORMAT {
            return Err(BaselineError::Invalid {
                path: shown,
                reason: format!("format {} is not {PROFILE_FORMAT}", p.format),
            });
        }
        let resealed = p.clone().seal();
        if resealed.sha256 != p.sha256 {
            return Err(BaselineError::Invalid {
                path: shown,
                reason: "sha256 does not match the content (file edited by hand?)".into(),
            });
        }
        Ok(p)
    }

    /// Writes the profile as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), BaselineError> {
        let text = serde_json::to_vec_pretty(self).expect("profiles serialize");
        std::fs::write(path, text).map_err(|source| BaselineError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_of_one_off_names_does_not_crowd_out_the_features_every_row_carries() {
        let mut b = ProfileBuilder::new("m", Some("v1"), "test", BuildLimits::default());
        for i in 0..300 {
            b.push_feature(&format!("junk{i}"), &FeatureValue::Number(f64::from(i)));
        }
        b.end_row();
        let real: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
        for row in 0..200 {
            for (i, name) in real.iter().enumerate() {
                b.push_feature(name, &FeatureValue::Number(f64::from(row * i as i32 % 13)));
            }
            b.end_row();
        }
        // 44 names found every slot taken by the same row; 10 replaced one-off names.
        assert_eq!(b.dropped_features(), 44 + 10);
        let p = b.finish().unwrap();
        let names: Vec<&str> = p.features.iter().map(|f| f.name.as_str()).collect();
        // The 246 one-off names left appeared in one row of 201: too rare to profile.
        let mut sorted = names.clone();
        sorted.sort();
        let mut want: Vec<&str> = real.iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(sorted, want);
        assert!(
            p.features.iter().all(|f| f.missing_share < 0.01),
            "{names:?}"
        );
    }

    #[test]
    fn a_saved_profile_loads_back_with_the_same_hash() {
        let mut b = ProfileBuilder::new("m", Some("v1"), "test", BuildLimits::default());
        for i in 0..500 {
            b.push_feature("x", &FeatureValue::Number(f64::from(i % 37)));
            b.push_feature(
                "c",
                &FeatureValue::Text(if i % 3 == 0 { "a" } else { "b" }.into()),
            );
            b.push_prediction(
                Some(f64::from(i % 10) / 10.0),
                Some(if i % 2 == 0 { "1" } else { "0" }),
            );
            b.push_latency(f64::from(i % 50));
            b.end_row();
        }
        let p = b.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        p.save(&path).unwrap();
        let back = Profile::load(&path).unwrap();
        assert_eq!(back.sha256, p.sha256);
        assert_eq!(back.features.len(), 2);
        assert!(matches!(back.features[1].kind, FeatureKind::Categorical(_)));
    }
}

/// Limits applied while building.
#[derive(Debug, Clone, Copy)]
pub struct BuildLimits {
    /// Features kept. A new feature beyond it replaces the one that appeared in the fewest rows
    /// so far (not one of the current row), or is ignored when every kept feature is in the
    /// current row; either way counted in [`ProfileBuilder::dropped_features`]. So a few rows
    /// with many one-off names cannot crowd out the features every row carries.
    pub max_features: usize,
    /// Categories kept per categorical feature; the rest become `__other__`.
    pub max_categories: usize,
}

impl Default for BuildLimits {
    fn default() -> Self {
        Self {
            max_features: 256,
            max_categories: 256,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Column {
    numbers: Vec<f64>,
    texts: Vec<String>,
    missing: u64,
    /// Rows in which the feature appeared (with any value, null included).
    rows_seen: u64,
    /// The row it last appeared in, counting from 1.
    last_row: u64,
}

/// A feature that appeared in fewer than one row in this many is left out of the profile: too
/// few values to be a reference, and typically a one-off name.
const MIN_PRESENCE_RATIO: u64 = 100;

impl Column {
    fn push(&mut self, v: &FeatureValue<'_>) {
        match v {
            FeatureValue::Number(x) if x.is_finite() => self.numbers.push(*x),
            FeatureValue::Number(_) | FeatureValue::Null => self.missing += 1,
            FeatureValue::Text(t) => self.texts.push(t.to_string()),
        }
    }

    fn into_profile(self, name: String, rows: u64, limits: BuildLimits) -> Option<FeatureProfile> {
        let present = self.numbers.len() + self.texts.len();
        if present == 0 {
            return None;
        }
        let missing_share = (rows.saturating_sub(present as u64)) as f64 / rows.max(1) as f64;
        let kind = if self.numbers.len() >= self.texts.len() {
            FeatureKind::Numeric(NumericProfile::build(
                &self.numbers,
                None,
                &NumericProfileConfig::default(),
            ))
        } else {
            let refs: Vec<&str> = self.texts.iter().map(String::as_str).collect();
            FeatureKind::Categorical(CategoricalProfile::build(
                &refs,
                &CategoricalProfileConfig {
                    top_k: limits.max_categories,
                    ..Default::default()
                },
            ))
        };
        Some(FeatureProfile {
            name,
            missing_share,
            kind,
        })
    }
}

/// Collects reference values, from live events or table rows, and builds a [`Profile`].
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    model_id: String,
    model_version: Option<String>,
    source: String,
    limits: BuildLimits,
    rows: u64,
    names: Vec<String>,
    index: HashMap<String, usize>,
    columns: Vec<Column>,
    dropped_features: u64,
    scores: Column,
    predicted: Column,
    labels: Column,
    latencies: Vec<f64>,
    correct: u64,
    labelled: u64,
    sq_err: f64,
}

impl ProfileBuilder {
    /// An empty builder.
    pub fn new(
        model_id: &str,
        model_version: Option<&str>,
        source: &str,
        limits: BuildLimits,
    ) -> Self {
        Self {
            model_id: model_id.to_string(),
            model_version: model_version.map(str::to_string),
            source: source.to_string(),
            limits,
            rows: 0,
            names: Vec::new(),
            index: HashMap::new(),
            columns: Vec::new(),
            dropped_features: 0,
            scores: Column::default(),
            predicted: Column::default(),
            labels: Column::default(),
            latencies: Vec::new(),
            correct: 0,
            labelled: 0,
            sq_err: 0.0,
        }
    }

    /// Rows added so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Feature names beyond `max_features` that were ignored or replaced (see
    /// [`BuildLimits::max_features`]).
    pub fn dropped_features(&self) -> u64 {
        self.dropped_features
    }

    /// Adds one value of feature `name` for the current row.
    pub fn push_feature(&mut self, name: &str, v: &FeatureValue<'_>) {
        let row = self.rows + 1;
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                // Rows before this feature appeared had it missing.
                let fresh = Column {
                    missing: self.rows,
                    ..Column::default()
                };
                if self.columns.len() < self.limits.max_features {
                    self.index.insert(name.to_string(), self.columns.len());
                    self.names.push(name.to_string());
                    self.columns.push(fresh);
                    self.columns.len() - 1
                } else {
                    self.dropped_features += 1;
                    // The rarest feature so far gives way, unless every one is in this row.
                    let Some(i) = self
                        .columns
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.last_row != row)
                        .min_by_key(|(i, c)| (c.rows_seen, *i))
                        .map(|(i, _)| i)
                    else {
                        return;
                    };
                    self.index.remove(&self.names[i]);
                    self.index.insert(name.to_string(), i);
                    self.names[i] = name.to_string();
                    self.columns[i] = fresh;
                    i
                }
            }
        };
        let c = &mut self.columns[i];
        if c.last_row != row {
            c.last_row = row;
            c.rows_seen += 1;
        }
        c.push(v);
    }

    /// Adds the prediction part of a row.
    pub fn push_prediction(&mut self, score_or_value: Option<f64>, label: Option<&str>) {
        if let Some(s) = score_or_value {
            self.scores.push(&FeatureValue::Number(s));
        }
        if let Some(l) = label {
            self.predicted.texts.push(l.to_string());
        }
    }

    /// Adds a ground-truth label (class or value) of the current row.
    pub fn push_label(
        &mut self,
        label: Option<&str>,
        value: Option<f64>,
        predicted: (Option<&str>, Option<f64>),
    ) {
        if let Some(l) = label {
            self.labels.texts.push(l.to_string());
            if let Some(p) = predicted.0 {
                self.labelled += 1;
                self.correct += u64::from(p == l);
            }
        } else if let Some(v) = value {
            self.labels.numbers.push(v);
            if let Some(p) = predicted.1 {
                self.labelled += 1;
                self.sq_err += (p - v) * (p - v);
            }
        }
    }

    /// Adds a latency in milliseconds.
    pub fn push_latency(&mut self, ms: f64) {
        if ms.is_finite() && ms >= 0.0 {
            self.latencies.push(ms);
        }
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        self.rows += 1;
        // Features absent from this row count as missing.
        let rows = self.rows;
        for c in &mut self.columns {
            let present = (c.numbers.len() + c.texts.len()) as u64 + c.missing;
            if present < rows {
                c.missing += rows - present;
            }
        }
    }

    /// Adds a whole prediction event as one row.
    pub fn push_event(&mut self, e: &Event<'_>) {
        for (name, v) in &e.features {
            self.push_feature(name, v);
        }
        if let Some(p) = &e.prediction {
            self.push_prediction(p.score.or(p.value), p.label.as_deref());
        }
        if let Some(l) = e.latency_ms {
            self.push_latency(l);
        }
        self.end_row();
    }

    /// Builds and seals the profile.
    pub fn finish(self) -> Result<Profile, BaselineError> {
        if self.rows == 0 {
            return Err(BaselineError::Data("no reference rows".into()));
        }
        let rows = self.rows;
        let limits = self.limits;
        let mut features = Vec::with_capacity(self.columns.len());
        for (name, col) in self.names.into_iter().zip(self.columns) {
            if col.rows_seen * MIN_PRESENCE_RATIO < rows {
                continue;
            }
            if let Some(f) = col.into_profile(name, rows, limits) {
                features.push(f);
            }
        }
        let prediction = self.scores.into_profile("prediction".into(), rows, limits);
        let predicted_label = self
            .predicted
            .into_profile("prediction.label".into(), rows, limits);
        let label = self.labels.into_profile("label".into(), rows, limits);
        let latency = (!self.latencies.is_empty()).then(|| {
            let l = ExactLatency::from_values(&self.latencies);
            LatencyProfile {
                p50_ms: l.quantile(0.5),
                p99_ms: l.quantile(0.99),
                count: l.count(),
            }
        });
        let quality = (self.labelled > 0).then(|| QualityProfile {
            accuracy: (self.correct > 0 || self.sq_err == 0.0)
                .then(|| self.correct as f64 / self.labelled as f64),
            rmse: (self.sq_err > 0.0).then(|| (self.sq_err / self.labelled as f64).sqrt()),
            count: self.labelled,
        });
        Ok(Profile {
            format: PROFILE_FORMAT,
            id: String::new(),
            sha256: String::new(),
            model_id: self.model_id,
            model_version: self.model_version,
            source: self.source,
            rows,
            features,
            prediction,
            predicted_label,
            label,
            latency,
            quality,
        }
        .seal())
    }
}
