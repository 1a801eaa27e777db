//! The per-pane summary of one model version: everything a window evaluation needs, kept as
//! mergeable counts so a window slide adds one pane and subtracts another.

use std::sync::Arc;

use crate::baseline::{FeatureKind, Profile};
use crate::state::window::PaneSummary;
use crate::stats::categorical::CategoricalPane;
use crate::stats::fairness::GroupCounts;
use crate::stats::latency::LatencySummary;
use crate::stats::numeric::NumericPane;
use crate::stats::quality::{BinarySummary, RegressionSums};

/// Summary of one feature's values in a pane.
#[derive(Debug, Clone)]
pub enum FeaturePane {
    /// Bin counts over the profile's bins.
    Numeric(NumericPane),
    /// Category counts.
    Categorical(CategoricalPane),
}

/// Data-quality counts of one feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QualityCounts {
    /// Events where the feature was present or explicitly null.
    pub seen: u64,
    /// Null or absent.
    pub missing: u64,
    /// Number where text was expected or the reverse.
    pub type_mismatch: u64,
    /// Numerical values outside the baseline's range.
    pub out_of_range: u64,
    /// Categories the baseline never saw.
    pub unseen: u64,
}

impl QualityCounts {
    fn add(&mut self, o: &Self, sign: i8) {
        let f = |a: &mut u64, b: u64| {
            if sign > 0 {
                *a += b
            } else {
                *a -= b
            }
        };
        f(&mut self.seen, o.seen);
        f(&mut self.missing, o.missing);
        f(&mut self.type_mismatch, o.type_mismatch);
        f(&mut self.out_of_range, o.out_of_range);
        f(&mut self.unseen, o.unseen);
    }
}

/// Selection counts of one group, for fairness without labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selection {
    /// Predictions for the group.
    pub n: u64,
    /// Positive predictions.
    pub positive: u64,
}

/// Fairness counts for one attribute.
#[derive(Debug, Clone, Default)]
pub struct AttributePane {
    /// Selection counts by group index (group names live in the version state).
    pub selection: Vec<Selection>,
    /// Confusion counts by group for labelled pairs.
    pub labelled: GroupCounts,
}

/// Everything one pane of one model version holds.
#[derive(Debug, Clone)]
pub struct Pane {
    /// The profile the summaries are shaped by.
    pub profile: Arc<Profile>,
    /// Prediction events recorded.
    pub events: u64,
    /// Per feature of the profile, in profile order.
    pub features: Vec<FeaturePane>,
    /// Data quality per feature of the profile.
    pub quality: Vec<QualityCounts>,
    /// Features not in the profile.
    pub unknown_features: u64,
    /// Prediction (score or value) and predicted label, against the profile.
    pub prediction: Option<FeaturePane>,
    /// Predicted class.
    pub predicted_label: Option<FeaturePane>,
    /// Inference latency.
    pub latency: LatencySummary,
    /// Binary-classification quality of labelled pairs (confusion counts and scores).
    pub binary: BinarySummary,
    /// Regression quality of labelled pairs.
    pub regression: RegressionSums,
    /// Fairness per attribute index.
    pub attributes: Vec<AttributePane>,
}

impl Pane {
    /// An empty pane shaped by `profile`.
    pub fn new(profile: &Arc<Profile>) -> Self {
        let features = profile
            .features
            .iter()
            .map(|f| f.kind.empty_pane())
            .collect();
        Self {
            profile: Arc::clone(profile),
            events: 0,
            features,
            quality: vec![QualityCounts::default(); profile.features.len()],
            unknown_features: 0,
            prediction: profile.prediction.as_ref().map(|f| f.kind.empty_pane()),
            predicted_label: profile
                .predicted_label
                .as_ref()
                .map(|f| f.kind.empty_pane()),
            latency: LatencySummary::new(),
            binary: BinarySummary::new(),
            regression: RegressionSums::default(),
            attributes: Vec::new(),
        }
    }

    /// The fairness counts of attribute `i`, growing the list as attributes appear.
    pub fn attribute_mut(&mut self, i: usize) -> &mut AttributePane {
        if self.attributes.len() <= i {
            self.attributes.resize_with(i + 1, AttributePane::default);
        }
        &mut self.attributes[i]
    }
}

impl FeatureKind {
    /// An empty pane summary for this feature.
    pub fn empty_pane(&self) -> FeaturePane {
        match self {
            FeatureKind::Numeric(p) => FeaturePane::Numeric(NumericPane::new(p)),
            FeatureKind::Categorical(p) => FeaturePane::Categorical(CategoricalPane::new(p)),
        }
    }
}

fn merge_feature(
    a: &mut FeaturePane,
    b: &FeaturePane,
    fp: &crate::baseline::FeatureProfile,
    add: bool,
) {
    match (a, b) {
        (FeaturePane::Numeric(a), FeaturePane::Numeric(b)) => {
            let FeatureKind::Numeric(prof) = &fp.kind else {
                unreachable!("pane and profile agree")
            };
            if add {
                a.merge(prof, b)
            } else {
                a.unmerge(prof, b)
            }
        }
        (FeaturePane::Categorical(a), FeaturePane::Categorical(b)) => {
            let FeatureKind::Categorical(prof) = &fp.kind else {
                unreachable!("pane and profile agree")
            };
            if add {
                a.merge(b, prof)
            } else {
                a.unmerge(b)
            }
        }
        _ => unreachable!("panes of one version share the profile's shape"),
    }
}

fn merge_selection(a: &mut Vec<Selection>, b: &[Selection], add: bool) {
    if a.len() < b.len() {
        a.resize(b.len(), Selection::default());
    }
    for (x, y) in a.iter_mut().zip(b) {
        if add {
            x.n += y.n;
            x.positive += y.positive;
        } else {
            x.n -= y.n;
            x.positive -= y.positive;
        }
    }
}

impl Pane {
    fn combine(&mut self, o: &Self, add: bool) {
        if add {
            self.events += o.events;
            self.unknown_features += o.unknown_features;
            self.latency.merge(&o.latency);
            self.binary.merge(&o.binary);
            self.regression.merge(&o.regression);
        } else {
            self.events -= o.events;
            self.unknown_features -= o.unknown_features;
            self.latency.unmerge(&o.latency);
            self.binary.unmerge(&o.binary);
            self.regression.unmerge(&o.regression);
        }
        let profile = Arc::clone(&self.profile);
        for ((a, b), fp) in self
            .features
            .iter_mut()
            .zip(&o.features)
            .zip(&profile.features)
        {
            merge_feature(a, b, fp, add);
        }
        for (a, b) in self.quality.iter_mut().zip(&o.quality) {
            a.add(b, if add { 1 } else { -1 });
        }
        if let (Some(a), Some(b), Some(fp)) = (
            self.prediction.as_mut(),
            o.prediction.as_ref(),
            profile.prediction.as_ref(),
        ) {
            merge_feature(a, b, fp, add);
        }
        if let (Some(a), Some(b), Some(fp)) = (
            self.predicted_label.as_mut(),
            o.predicted_label.as_ref(),
            profile.predicted_label.as_ref(),
        ) {
            merge_feature(a, b, fp, add);
        }
        for (i, b) in o.attributes.iter().enumerate() {
            let a = self.attribute_mut(i);
            merge_selection(&mut a.selection, &b.selection, add);
            if add {
                a.labelled.merge(&b.labelled);
            } else {
                a.labelled.unmerge(&b.labelled);
            }
        }
    }
}

impl Pane {
    /// Bins every staged numerical value (see [`NumericPane`]).
    pub fn flush(&mut self) {
        let profile = Arc::clone(&self.profile);
        let features = self.features.iter_mut().zip(&profile.features);
        let outputs = [
            (self.prediction.as_mut(), profile.prediction.as_ref()),
            (
                self.predicted_label.as_mut(),
                profile.predicted_label.as_ref(),
            ),
        ];
        let outputs = outputs.into_iter().filter_map(|(p, fp)| Some((p?, fp?)));
        for (pane, fp) in features.chain(outputs) {
            if let (FeaturePane::Numeric(p), FeatureKind::Numeric(prof)) = (pane, &fp.kind) {
                p.flush(prof);
            }
        }
    }
}

impl PaneSummary for Pane {
    fn seal(&mut self) {
        self.flush();
    }
    fn merge(&mut self, other: &Self) {
        self.combine(other, true);
    }
    fn unmerge(&mut self, other: &Self) {
        self.combine(other, false);
    }
    fn count(&self) -> u64 {
        self.events + self.binary.counts.n() + self.regression.n
    }
}
