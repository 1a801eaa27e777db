//! Group fairness metrics (fairlearn 0.15 defaults: `method="between_groups"`,
//! `agg="worst_case"`).
//!
//! * Streaming: [`GroupCounts`], per-group confusion counts, mergeable and subtractable, with a
//!   bounded number of groups; rows of groups beyond the bound are counted in an overflow
//!   bucket that is part of the overall rates but of no group.
//! * Exact: [`fairness_exact`] from full samples.
//!
//! **Undefined rates** follow fairlearn: a rate whose denominator is 0 (TPR of a group without
//! positives, FPR of a group without negatives) is 0.0 and the group is *not* skipped.
//!
//! **Ratios whose maximum is 0** are NaN, as in fairlearn (0/0). `equalized_odds_ratio`
//! replicates Python's `min([tpr_ratio, fpr_ratio])`: NaN if the TPR ratio is NaN, otherwise
//! the smaller value ignoring a NaN FPR ratio. With no groups at all every disparity metric is
//! NaN; with a single group differences are 0 and ratios 1 (or NaN when the rate is 0).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Confusion counts of one group (positive label = 1).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfusionCounts {
    /// y_true = 1, y_pred = 1.
    pub tp: u64,
    /// y_true = 0, y_pred = 1.
    pub fp: u64,
    /// y_true = 0, y_pred = 0.
    pub tn: u64,
    /// y_true = 1, y_pred = 0.
    pub fn_: u64,
}

fn rate(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl ConfusionCounts {
    /// Records one row.
    pub fn record(&mut self, y_true: bool, y_pred: bool) {
        match (y_true, y_pred) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
    }

    /// Adds counts.
    pub fn merge(&mut self, o: &ConfusionCounts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.tn += o.tn;
        self.fn_ += o.fn_;
    }

    /// Subtracts counts (saturating at 0).
    pub fn unmerge(&mut self, o: &ConfusionCounts) {
        self.tp = self.tp.saturating_sub(o.tp);
        self.fp = self.fp.saturating_sub(o.fp);
        self.tn = self.tn.saturating_sub(o.tn);
        self.fn_ = self.fn_.saturating_sub(o.fn_);
    }

    /// Number of rows.
    pub fn n(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// Rows with y_true = 1.
    pub fn positives(&self) -> u64 {
        self.tp + self.fn_
    }

    /// Rows with y_true = 0.
    pub fn negatives(&self) -> u64 {
        self.fp + self.tn
    }

    /// Fraction of rows with y_pred = 1 (0.0 when empty).
    pub fn selection_rate(&self) -> f64 {
        rate(self.tp + self.fp, self.n())
    }

    /// tp/(tp+fn), 0.0 when there are no positives.
    pub fn tpr(&self) -> f64 {
        rate(self.tp, self.positives())
    }

    /// fp/(fp+tn), 0.0 when there are no negatives.
    pub fn fpr(&self) -> f64 {
        rate(self.fp, self.negatives())
    }

    /// The three rates.
    pub fn rates(&self) -> Rates {
        Rates {
            selection_rate: self.selection_rate(),
            tpr: self.tpr(),
            fpr: self.fpr(),
        }
    }
}

/// Selection rate, TPR and FPR of a group or of all rows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    /// Fraction predicted positive.
    pub selection_rate: f64,
    /// True positive rate.
    pub tpr: f64,
    /// False positive rate.
    pub fpr: f64,
}

/// Per-group confusion counts with a bounded number of groups (streaming path).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct GroupCounts {
    max_groups: usize,
    groups: BTreeMap<String, ConfusionCounts>,
    /// Rows whose group could not be tracked because `max_groups` was reached.
    overflow: ConfusionCounts,
}

impl Default for GroupCounts {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_GROUPS)
    }
}

impl GroupCounts {
    /// Default bound on the number of tracked groups.
    pub const DEFAULT_MAX_GROUPS: usize = 256;

    /// Empty counts tracking at most `max_groups` groups.
    pub fn new(max_groups: usize) -> Self {
        GroupCounts {
            max_groups,
            groups: BTreeMap::new(),
            overflow: ConfusionCounts::default(),
        }
    }

    /// The bound on tracked groups.
    pub fn max_groups(&self) -> usize {
        self.max_groups
    }

    fn slot(&mut self, group: &str) -> &mut ConfusionCounts {
        if !self.groups.contains_key(group) && self.groups.len() >= self.max_groups {
            return &mut self.overflow;
        }
        self.groups.entry(group.to_string()).or_default()
    }

    /// Records one row of `group`.
    pub fn record(&mut self, group: &str, y_true: bool, y_pred: bool) {
        self.slot(group).record(y_true, y_pred);
    }

    /// Adds another pane (groups beyond the bound go to overflow).
    pub fn merge(&mut self, other: &GroupCounts) {
        for (g, c) in &other.groups {
            self.slot(g).merge(c);
        }
        self.overflow.merge(&other.overflow);
    }

    /// Removes a previously merged pane. Counts of a group that is not tracked here (it went to
    /// overflow) are taken from the overflow; groups left with no rows are dropped.
    pub fn unmerge(&mut self, other: &GroupCounts) {
        for (g, c) in &other.groups {
            match self.groups.get_mut(g) {
                Some(mine) => {
                    mine.unmerge(c);
                    if mine.n() == 0 {
                        self.groups.remove(g);
                    }
                }
                None => self.overflow.unmerge(c),
            }
        }
        self.overflow.unmerge(&other.overflow);
    }

    /// Tracked groups and their counts, sorted by label.
    pub fn groups(&self) -> &BTreeMap<String, ConfusionCounts> {
        &self.groups
    }

    /// Counts of rows in untracked groups.
    pub fn overflow(&self) -> &ConfusionCounts {
        &self.overflow
    }

    /// Counts over all rows (tracked groups and overflow).
    pub fn overall(&self) -> ConfusionCounts {
        let mut all = self.overflow;
        for c in self.groups.values() {
            all.merge(c);
        }
        all
    }

    /// The fairness report over the tracked groups.
    pub fn report(&self) -> FairnessReport {
        FairnessReport::from_counts(&self.groups, &self.overall())
    }
}

/// Fairness metrics of a window (all fields as in the conformance vectors).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FairnessReport {
    /// Sorted group labels.
    pub groups: Vec<String>,
    /// Counts per group.
    pub counts_by_group: BTreeMap<String, ConfusionCounts>,
    /// Rates per group.
    pub rates_by_group: BTreeMap<String, Rates>,
    /// Rates over all rows.
    pub overall: Rates,
    /// max − min selection rate.
    pub demographic_parity_difference: f64,
    /// min / max selection rate.
    pub demographic_parity_ratio: f64,
    /// max(TPR difference, FPR difference).
    pub equalized_odds_difference: f64,
    /// min(TPR ratio, FPR ratio) (Python `min` NaN semantics, see module docs).
    pub equalized_odds_ratio: f64,
    /// max − min TPR.
    pub equal_opportunity_difference: f64,
    /// min / max TPR.
    pub equal_opportunity_ratio: f64,
    /// min / max selection rate (same as `demographic_parity_ratio`).
    pub disparate_impact_ratio: f64,
}

/// (max − min, min / max) of the values; NaN for an empty list.
fn diff_ratio(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut any = false;
    for v in values {
        any = true;
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !any {
        return (f64::NAN, f64::NAN);
    }
    (hi - lo, lo / hi)
}

/// Python's builtin `max`/`min` over two values: keeps the first unless the second compares
/// strictly better.
fn py_max(a: f64, b: f64) -> f64 {
    if b > a {
        b
    } else {
        a
    }
}

fn py_min(a: f64, b: f64) -> f64 {
    if b < a {
        b
    } else {
        a
    }
}

impl FairnessReport {
    /// Builds the report from per-group counts and the overall counts.
    pub fn from_counts(
        groups: &BTreeMap<String, ConfusionCounts>,
        overall: &ConfusionCounts,
    ) -> Self {
        let rates: BTreeMap<String, Rates> =
            groups.iter().map(|(g, c)| (g.clone(), c.rates())).collect();
        let (sr_d, sr_r) = diff_ratio(rates.values().map(|r| r.selection_rate));
        let (tpr_d, tpr_r) = diff_ratio(rates.values().map(|r| r.tpr));
        let (fpr_d, fpr_r) = diff_ratio(rates.values().map(|r| r.fpr));
        FairnessReport {
            groups: groups.keys().cloned().collect(),
            counts_by_group: groups.clone(),
            rates_by_group: rates,
            overall: overall.rates(),
            demographic_parity_difference: sr_d,
            demographic_parity_ratio: sr_r,
            equalized_odds_difference: py_max(tpr_d, fpr_d),
            equalized_odds_ratio: py_min(tpr_r, fpr_r),
            equal_opportunity_difference: tpr_d,
            equal_opportunity_ratio: tpr_r,
            disparate_impact_ratio: sr_r,
        }
    }
}

/// Exact fairness report from full samples (no bound on groups; slices truncated to the
/// shortest length).
pub fn fairness_exact<S: AsRef<str>>(
    y_true: &[bool],
    y_pred: &[bool],
    sensitive: &[S],
) -> FairnessReport {
    let mut groups: BTreeMap<String, ConfusionCounts> = BTreeMap::new();
    let mut overall = ConfusionCounts::default();
    for ((&t, &p), g) in y_true.iter().zip(y_pred).zip(sensitive) {
        overall.record(t, p);
        match groups.get_mut(g.as_ref()) {
            Some(c) => c.record(t, p),
            None => {
                let mut c = ConfusionCounts::default();
                c.record(t, p);
                groups.insert(g.as_ref().to_string(), c);
            }
        }
    }
    FairnessReport::from_counts(&groups, &overall)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<(String, bool, bool)> {
        let mut s = 99u64;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let g = ["a", "b", "c", "d"][(s >> 60) as usize % 4];
                let t = (s >> 20) & 3 == 0 && g != "d";
                let p = (s >> 30) & 1 == 1;
                (g.to_string(), t, p)
            })
            .collect()
    }

    #[test]
    fn empty_single_and_no_positive_groups() {
        let r = GroupCounts::default().report();
        assert!(r.groups.is_empty() && r.demographic_parity_difference.is_nan());
        let mut g = GroupCounts::default();
        g.record("x", false, false);
        let r = g.report();
        assert_eq!(r.demographic_parity_difference, 0.0);
        assert!(r.demographic_parity_ratio.is_nan());
        assert_eq!(r.rates_by_group["x"].tpr, 0.0);
        let r = fairness_exact(
            &[true, false, false],
            &[true, true, false],
            &["a", "b", "b"],
        );
        assert_eq!(r.equal_opportunity_ratio, 0.0);
        assert_eq!(r.equal_opportunity_difference, 1.0);
        // FPR ratio NaN (no negatives anywhere... only in b), TPR ratio defined
        assert_eq!(r.rates_by_group["a"].fpr, 0.0);
    }

    #[test]
    fn sliding_window_matches_recomputation_and_overflow() {
        let data = rows(4000);
        let panes: Vec<GroupCounts> = data
            .chunks(400)
            .map(|c| {
                let mut g = GroupCounts::default();
                c.iter().for_each(|(k, t, p)| g.record(k, *t, *p));
                g
            })
            .collect();
        let mut w = GroupCounts::default();
        for (i, p) in panes.iter().enumerate() {
            w.merge(p);
            if i >= 3 {
                w.unmerge(&panes[i - 3]);
            }
            let start = i.saturating_sub(2);
            let s = &data[start * 400..(i + 1) * 400];
            let yt: Vec<bool> = s.iter().map(|r| r.1).collect();
            let yp: Vec<bool> = s.iter().map(|r| r.2).collect();
            let gs: Vec<&str> = s.iter().map(|r| r.0.as_str()).collect();
            assert_eq!(w.report(), fairness_exact(&yt, &yp, &gs));
        }
        let mut b = GroupCounts::new(2);
        for (k, t, p) in &data {
            b.record(k, *t, *p);
        }
        assert_eq!(b.groups().len(), 2);
        assert_eq!(b.overall().n(), data.len() as u64);
        assert!(b.overflow().n() > 0);
    }
}
