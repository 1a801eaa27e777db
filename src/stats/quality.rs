//! Model quality metrics (scikit-learn 1.9 definitions).
//!
//! * Binary classification, streaming: [`BinarySummary`] = [`BinaryCounts`] (confusion counts
//!   and log-loss/Brier sums) + [`ScoreHistogram`] (per-class score histogram for ROC AUC).
//!   Exact: [`binary_metrics_exact`], [`roc_auc_exact`].
//! * Regression, streaming: [`RegressionSums`]. Exact: [`regression_metrics_exact`].
//!
//! All summaries support `merge` and `unmerge` (subtract a previously merged pane). Sums are
//! kept as [`CompensatedSum`] (double-double) so that merge/unmerge do not lose precision.
//!
//! Undefined values: precision/recall/F1 with a zero denominator are 0.0 (sklearn's
//! zero-division result); ROC AUC with only one class present is NaN (sklearn raises); means
//! over zero rows are NaN.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Clipping epsilon of log loss and floor of MAPE's denominator (f64 machine epsilon).
pub const EPS: f64 = f64::EPSILON;

/// A compensated (double-double) running sum: `hi + lo` carries ~106 bits, so sums of many
/// terms and subtraction of sub-sums (unmerge) stay accurate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct CompensatedSum {
    hi: f64,
    lo: f64,
}

impl CompensatedSum {
    /// Zero.
    pub fn new() -> Self {
        CompensatedSum { hi: 0.0, lo: 0.0 }
    }

    /// Adds `x`.
    pub fn add(&mut self, x: f64) {
        let s = self.hi + x;
        if !s.is_finite() {
            self.hi = s;
            return;
        }
        let bb = s - self.hi;
        let err = (self.hi - (s - bb)) + (x - bb);
        self.hi = s;
        self.lo += err;
    }

    /// Adds the exact product `a*b` (uses a fused multiply-add for the rounding error).
    pub fn add_product(&mut self, a: f64, b: f64) {
        let p = a * b;
        self.add(p);
        if p.is_finite() {
            self.lo += a.mul_add(b, -p);
        }
    }

    /// Adds another sum.
    pub fn add_sum(&mut self, other: &CompensatedSum) {
        self.add(other.hi);
        self.lo += other.lo;
    }

    /// Subtracts another sum.
    pub fn sub_sum(&mut self, other: &CompensatedSum) {
        self.add(-other.hi);
        self.lo -= other.lo;
    }

    /// The current value.
    pub fn value(&self) -> f64 {
        if !self.hi.is_finite() {
            self.hi
        } else {
            self.hi + self.lo
        }
    }
}

fn ratio_or_zero(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Binary-classification confusion counts plus log-loss and Brier sums (positive label = 1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BinaryCounts {
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    pub fn_: u64,
    /// Rows with a non-NaN score (denominator of log loss and Brier).
    pub n_scored: u64,
    log_loss_sum: CompensatedSum,
    brier_sum: CompensatedSum,
}

/// Log-loss term of one row, as sklearn computes it: the probability of the true class taken
/// from `[1-p, p]` and clipped to `[EPS, 1-EPS]`.
pub fn log_loss_term(y_true: bool, score: f64) -> f64 {
    let p = if y_true { score } else { 1.0 - score };
    -p.clamp(EPS, 1.0 - EPS).ln()
}

impl BinaryCounts {
    /// Empty counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one row. A NaN `score` counts in the confusion matrix only; other scores are
    /// clamped to `[0, 1]` (sklearn rejects them; clamping keeps the sums finite).
    pub fn record(&mut self, y_true: bool, y_pred: bool, score: f64) {
        let score = score.clamp(0.0, 1.0);
        match (y_true, y_pred) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
        if !score.is_nan() {
            self.n_scored += 1;
            self.log_loss_sum.add(log_loss_term(y_true, score));
            let d = score - if y_true { 1.0 } else { 0.0 };
            self.brier_sum.add_product(d, d);
        }
    }

    /// Adds another pane.
    pub fn merge(&mut self, o: &BinaryCounts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.tn += o.tn;
        self.fn_ += o.fn_;
        self.n_scored += o.n_scored;
        self.log_loss_sum.add_sum(&o.log_loss_sum);
        self.brier_sum.add_sum(&o.brier_sum);
    }

    /// Removes a previously merged pane (counts saturate at 0).
    pub fn unmerge(&mut self, o: &BinaryCounts) {
        self.tp = self.tp.saturating_sub(o.tp);
        self.fp = self.fp.saturating_sub(o.fp);
        self.tn = self.tn.saturating_sub(o.tn);
        self.fn_ = self.fn_.saturating_sub(o.fn_);
        self.n_scored = self.n_scored.saturating_sub(o.n_scored);
        if self.n_scored == 0 {
            self.log_loss_sum = CompensatedSum::new();
            self.brier_sum = CompensatedSum::new();
        } else {
            self.log_loss_sum.sub_sum(&o.log_loss_sum);
            self.brier_sum.sub_sum(&o.brier_sum);
        }
    }

    /// Number of rows.
    pub fn n(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// (tp+tn)/n; NaN when empty.
    pub fn accuracy(&self) -> f64 {
        let n = self.n();
        if n == 0 {
            f64::NAN
        } else {
            (self.tp + self.tn) as f64 / n as f64
        }
    }

    /// tp/(tp+fp); 0.0 when there are no predicted positives.
    pub fn precision(&self) -> f64 {
        ratio_or_zero(self.tp, self.tp + self.fp)
    }

    /// tp/(tp+fn); 0.0 when there are no positives.
    pub fn recall(&self) -> f64 {
        ratio_or_zero(self.tp, self.tp + self.fn_)
    }

    /// 2tp/(2tp+fp+fn); 0.0 when the denominator is 0.
    pub fn f1(&self) -> f64 {
        ratio_or_zero(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// Mean clipped log loss over scored rows; NaN when none.
    pub fn log_loss(&self) -> f64 {
        if self.n_scored == 0 {
            f64::NAN
        } else {
            self.log_loss_sum.value() / self.n_scored as f64
        }
    }

    /// Mean squared difference between score and label over scored rows; NaN when none.
    pub fn brier(&self) -> f64 {
        if self.n_scored == 0 {
            f64::NAN
        } else {
            self.brier_sum.value() / self.n_scored as f64
        }
    }
}

/// Per-class score counts for the streaming ROC AUC.
///
/// Scores are clamped to `[0, 1]`; NaN scores are ignored. While the summary holds at most
/// [`ScoreHistogram::MAX_EXACT_KEYS`] distinct scores it keeps them exactly (the AUC then equals
/// the exact Mann-Whitney value, ties included). Beyond that it switches, for good, to `bins`
/// equal-width bins (last bin closed; default 65 536). Pairs of a positive and a negative in
/// the same bin get half credit, exactly like tied scores, so the AUC error is at most half the
/// fraction of positive/negative pairs sharing a bin (typically < 1e-4). Storage is sparse.
/// Merging an exact summary into a binned one (or unmerging) re-bins the exact scores, so
/// merge/unmerge stay consistent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ScoreHistogram {
    bins: u32,
    /// Keys are f64 bits of the clamped score while `binned` is false, bin indices after.
    binned: bool,
    /// key -> [negatives, positives]
    counts: BTreeMap<u64, [u64; 2]>,
}

impl Default for ScoreHistogram {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BINS)
    }
}

impl ScoreHistogram {
    /// Default number of bins once binned.
    pub const DEFAULT_BINS: u32 = 1 << 16;
    /// Maximum number of distinct exact scores kept before switching to bins.
    pub const MAX_EXACT_KEYS: usize = 4096;

    /// Empty histogram that bins into `bins` bins (at least 1) once it holds too many distinct
    /// scores.
    pub fn new(bins: u32) -> Self {
        ScoreHistogram {
            bins: bins.max(1),
            binned: false,
            counts: BTreeMap::new(),
        }
    }

    /// Whether the summary has switched to bins.
    pub fn is_binned(&self) -> bool {
        self.binned
    }

    fn bin(&self, score: f64) -> u64 {
        let s = score.clamp(0.0, 1.0);
        ((s * self.bins as f64) as u64).min(u64::from(self.bins) - 1)
    }

    /// Key of a (non-NaN) score under this summary's current representation.
    fn key(&self, score: f64) -> u64 {
        if self.binned {
            self.bin(score)
        } else {
            // +0.0 for -0.0; bits of non-negative floats are ordered like the floats
            (score.clamp(0.0, 1.0) + 0.0).to_bits()
        }
    }

    /// Key of `other`'s key `k` under this summary's representation (`self.binned` must be at
    /// least as coarse as `other`).
    fn rekey(&self, other: &ScoreHistogram, k: u64) -> u64 {
        match (other.binned, self.binned) {
            (false, false) => k,
            (false, true) => self.bin(f64::from_bits(k)),
            (true, true) if other.bins == self.bins => k,
            _ => self.bin((k as f64 + 0.5) / other.bins as f64),
        }
    }

    fn switch_to_bins(&mut self) {
        if self.binned {
            return;
        }
        let old = std::mem::take(&mut self.counts);
        self.binned = true;
        for (k, c) in old {
            let b = self.bin(f64::from_bits(k));
            let e = self.counts.entry(b).or_insert([0, 0]);
            e[0] += c[0];
            e[1] += c[1];
        }
    }

    fn check_size(&mut self) {
        if !self.binned && self.counts.len() > Self::MAX_EXACT_KEYS {
            self.switch_to_bins();
        }
    }

    /// Records one scored row (NaN scores are ignored).
    pub fn record(&mut self, y_true: bool, score: f64) {
        if score.is_nan() {
            return;
        }
        let k = self.key(score);
        self.counts.entry(k).or_insert([0, 0])[usize::from(y_true)] += 1;
        self.check_size();
    }

    /// Adds another pane.
    pub fn merge(&mut self, other: &ScoreHistogram) {
        if other.binned {
            self.switch_to_bins();
        }
        for (&k, &c) in &other.counts {
            let k = self.rekey(other, k);
            let e = self.counts.entry(k).or_insert([0, 0]);
            e[0] += c[0];
            e[1] += c[1];
        }
        self.check_size();
    }

    /// Removes a previously merged pane (counts saturate at 0; empty keys are dropped).
    pub fn unmerge(&mut self, other: &ScoreHistogram) {
        if other.binned {
            self.switch_to_bins();
        }
        for (&k, &c) in &other.counts {
            let k = self.rekey(other, k);
            if let Some(e) = self.counts.get_mut(&k) {
                e[0] = e[0].saturating_sub(c[0]);
                e[1] = e[1].saturating_sub(c[1]);
                if e[0] == 0 && e[1] == 0 {
                    self.counts.remove(&k);
                }
            }
        }
    }

    /// Number of (negatives, positives) recorded.
    pub fn class_counts(&self) -> (u64, u64) {
        self.counts
            .values()
            .fold((0, 0), |(n, p), c| (n + c[0], p + c[1]))
    }

    /// ROC AUC (Mann-Whitney with half credit for equal keys); NaN unless both classes occur.
    pub fn roc_auc(&self) -> f64 {
        let (n_neg, n_pos) = self.class_counts();
        if n_neg == 0 || n_pos == 0 {
            return f64::NAN;
        }
        // Σ over positives of (#negatives below + ½ #negatives with the same key), doubled to
        // stay in integers.
        let mut neg_below: u128 = 0;
        let mut twice_u: u128 = 0;
        for c in self.counts.values() {
            let (neg, pos) = (c[0] as u128, c[1] as u128);
            twice_u += pos * (2 * neg_below + neg);
            neg_below += neg;
        }
        twice_u as f64 / (2.0 * n_neg as f64 * n_pos as f64)
    }
}

/// Streaming binary-classification summary of one pane or window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BinarySummary {
    /// Confusion counts and loss sums.
    pub counts: BinaryCounts,
    /// Score histogram for ROC AUC.
    pub scores: ScoreHistogram,
}

impl BinarySummary {
    /// Empty summary with the default AUC resolution.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one row: true label, predicted label, probability of class 1.
    pub fn record(&mut self, y_true: bool, y_pred: bool, score: f64) {
        self.counts.record(y_true, y_pred, score);
        self.scores.record(y_true, score);
    }

    /// Adds another pane.
    pub fn merge(&mut self, other: &BinarySummary) {
        self.counts.merge(&other.counts);
        self.scores.merge(&other.scores);
    }

    /// Removes a previously merged pane.
    pub fn unmerge(&mut self, other: &BinarySummary) {
        self.counts.unmerge(&other.counts);
        self.scores.unmerge(&other.scores);
    }

    /// All metrics.
    pub fn metrics(&self) -> BinaryMetrics {
        BinaryMetrics::from_counts(&self.counts, self.scores.roc_auc())
    }
}

/// Binary-classification metrics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BinaryMetrics {
    /// (tp+tn)/n.
    pub accuracy: f64,
    /// tp/(tp+fp), 0.0 if undefined.
    pub precision: f64,
    /// tp/(tp+fn), 0.0 if undefined.
    pub recall: f64,
    /// 2tp/(2tp+fp+fn), 0.0 if undefined.
    pub f1: f64,
    /// ROC AUC; NaN when only one class is present.
    pub roc_auc: f64,
    /// Mean clipped log loss.
    pub log_loss: f64,
    /// Brier score.
    pub brier: f64,
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    pub fn_: u64,
}

impl BinaryMetrics {
    fn from_counts(c: &BinaryCounts, roc_auc: f64) -> Self {
        BinaryMetrics {
            accuracy: c.accuracy(),
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            roc_auc,
            log_loss: c.log_loss(),
            brier: c.brier(),
            tp: c.tp,
            fp: c.fp,
            tn: c.tn,
            fn_: c.fn_,
        }
    }
}

/// Exact ROC AUC with average ranks for ties (Mann-Whitney U / (n1·n0)). Rows with a NaN
/// score are ignored; NaN unless both classes occur. Slices are truncated to the shorter length.
pub fn roc_auc_exact(y_true: &[bool], y_score: &[f64]) -> f64 {
    let mut rows: Vec<(f64, bool)> = y_score
        .iter()
        .zip(y_true)
        .filter(|(s, _)| !s.is_nan())
        .map(|(&s, &y)| (s, y))
        .collect();
    let n_pos = rows.iter().filter(|r| r.1).count() as u64;
    let n_neg = rows.len() as u64 - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return f64::NAN;
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Doubled rank sums keep everything integral: average rank of a tie group [i, j) (1-based)
    // is (i + 1 + j) / 2.
    let mut twice_rank_sum: u128 = 0;
    let mut i = 0;
    while i < rows.len() {
        let mut j = i + 1;
        while j < rows.len() && rows[j].0 == rows[i].0 {
            j += 1;
        }
        let pos_in_group = rows[i..j].iter().filter(|r| r.1).count() as u128;
        twice_rank_sum += pos_in_group * (i as u128 + 1 + j as u128);
        i = j;
    }
    let np = n_pos as u128;
    let twice_u = twice_rank_sum - np * (np + 1);
    twice_u as f64 / (2.0 * n_pos as f64 * n_neg as f64)
}

/// Exact binary metrics from full samples (slices are truncated to the shortest length).
pub fn binary_metrics_exact(y_true: &[bool], y_pred: &[bool], y_score: &[f64]) -> BinaryMetrics {
    let mut c = BinaryCounts::new();
    let n = y_true.len().min(y_pred.len());
    for i in 0..n {
        c.record(
            y_true[i],
            y_pred[i],
            y_score.get(i).copied().unwrap_or(f64::NAN),
        );
    }
    let m = y_true.len().min(y_score.len());
    BinaryMetrics::from_counts(&c, roc_auc_exact(&y_true[..m], &y_score[..m]))
}

/// Streaming regression sums (one pane or window).
///
/// Keeps n, Σ|e|, Σe², Σ|e|/max(|y|, EPS) and, for R², Σ(y−c) and Σ(y−c)² around a shift `c`
/// (the first target seen), all compensated, so SS_tot = Σ(y−c)² − (Σ(y−c))²/n does not suffer
/// from cancellation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RegressionSums {
    /// Number of rows.
    pub n: u64,
    /// Rows ignored because a value was not finite.
    pub rejected: u64,
    abs_err: CompensatedSum,
    sq_err: CompensatedSum,
    abs_pct_err: CompensatedSum,
    shift: Option<f64>,
    sum_dy: CompensatedSum,
    sum_dy2: CompensatedSum,
}

impl RegressionSums {
    /// Empty sums.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one row. Rows with a non-finite value (or a non-finite error) are ignored and
    /// counted in `rejected`.
    pub fn record(&mut self, y_true: f64, y_pred: f64) {
        let e = y_pred - y_true;
        if !e.is_finite() {
            self.rejected += 1;
            return;
        }
        self.n += 1;
        self.abs_err.add(e.abs());
        self.sq_err.add_product(e, e);
        self.abs_pct_err.add(e.abs() / y_true.abs().max(EPS));
        let c = *self.shift.get_or_insert(y_true);
        let d = y_true - c;
        self.sum_dy.add(d);
        self.sum_dy2.add_product(d, d);
    }

    /// `other`'s centred sums re-expressed around `c`: (Σ(y−c), Σ(y−c)²).
    fn shifted(other: &RegressionSums, c: f64) -> (CompensatedSum, CompensatedSum) {
        let oc = other.shift.unwrap_or(c);
        let s = oc - c;
        let n = other.n as f64;
        let s1 = other.sum_dy.value();
        // Σ(y−c) = Σ(y−oc) + n·s ; Σ(y−c)² = Σ(y−oc)² + 2sΣ(y−oc) + n·s²
        let mut d1 = other.sum_dy;
        d1.add_product(n, s);
        let mut d2 = other.sum_dy2;
        d2.add_product(2.0 * s, s1);
        d2.add_product(n * s, s);
        (d1, d2)
    }

    /// Adds another pane.
    pub fn merge(&mut self, o: &RegressionSums) {
        self.rejected += o.rejected;
        if o.n == 0 {
            return;
        }
        let c = *self.shift.get_or_insert(o.shift.unwrap_or(0.0));
        let (d1, d2) = Self::shifted(o, c);
        self.n += o.n;
        self.abs_err.add_sum(&o.abs_err);
        self.sq_err.add_sum(&o.sq_err);
        self.abs_pct_err.add_sum(&o.abs_pct_err);
        self.sum_dy.add_sum(&d1);
        self.sum_dy2.add_sum(&d2);
    }

    /// Removes a previously merged pane (resets to empty when no rows remain).
    pub fn unmerge(&mut self, o: &RegressionSums) {
        self.rejected = self.rejected.saturating_sub(o.rejected);
        if o.n == 0 {
            return;
        }
        if o.n >= self.n {
            *self = RegressionSums {
                rejected: self.rejected,
                ..Self::new()
            };
            return;
        }
        let c = self.shift.unwrap_or(0.0);
        let (d1, d2) = Self::shifted(o, c);
        self.n -= o.n;
        self.abs_err.sub_sum(&o.abs_err);
        self.sq_err.sub_sum(&o.sq_err);
        self.abs_pct_err.sub_sum(&o.abs_pct_err);
        self.sum_dy.sub_sum(&d1);
        self.sum_dy2.sub_sum(&d2);
    }

    /// All metrics (NaN when empty).
    pub fn metrics(&self) -> RegressionMetrics {
        if self.n == 0 {
            return RegressionMetrics::nan();
        }
        let n = self.n as f64;
        let mse = self.sq_err.value() / n;
        // SS_tot = Σd² − (Σd)²/n, computed in double-double.
        let s1 = self.sum_dy.value();
        let mut ss_tot = self.sum_dy2;
        let t = s1 / n;
        ss_tot.add_product(-s1, t);
        let ss_tot = ss_tot.value().max(0.0);
        RegressionMetrics {
            mae: self.abs_err.value() / n,
            mse,
            rmse: mse.sqrt(),
            mape: self.abs_pct_err.value() / n,
            r2: r2_from(self.n, self.sq_err.value(), ss_tot),
        }
    }
}

/// sklearn's r2 for one output: 1 − SS_res/SS_tot; NaN with fewer than 2 rows; when
/// SS_tot = 0 it is 1.0 for a perfect fit and 0.0 otherwise (sklearn's `force_finite=True`).
fn r2_from(n: u64, ss_res: f64, ss_tot: f64) -> f64 {
    if n < 2 {
        f64::NAN
    } else if ss_tot == 0.0 {
        if ss_res == 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        1.0 - ss_res / ss_tot
    }
}

/// Regression metrics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RegressionMetrics {
    /// Mean absolute error.
    pub mae: f64,
    /// Mean squared error.
    pub mse: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute percentage error (a fraction), denominator floored at [`EPS`].
    pub mape: f64,
    /// Coefficient of determination.
    pub r2: f64,
}

impl RegressionMetrics {
    fn nan() -> Self {
        RegressionMetrics {
            mae: f64::NAN,
            mse: f64::NAN,
            rmse: f64::NAN,
            mape: f64::NAN,
            r2: f64::NAN,
        }
    }
}

/// Exact regression metrics from full samples (two-pass SS_tot; slices truncated to the
/// shorter length); NaN when empty.
pub fn regression_metrics_exact(y_true: &[f64], y_pred: &[f64]) -> RegressionMetrics {
    let n = y_true.len().min(y_pred.len());
    if n == 0 {
        return RegressionMetrics::nan();
    }
    let (yt, yp) = (&y_true[..n], &y_pred[..n]);
    let nf = n as f64;
    let mut abs = CompensatedSum::new();
    let mut sq = CompensatedSum::new();
    let mut pct = CompensatedSum::new();
    let mut sy = CompensatedSum::new();
    for (&t, &p) in yt.iter().zip(yp) {
        let e = p - t;
        abs.add(e.abs());
        sq.add_product(e, e);
        pct.add(e.abs() / t.abs().max(EPS));
        sy.add(t);
    }
    let mean = sy.value() / nf;
    let mut ss_tot = CompensatedSum::new();
    for &t in yt {
        let d = t - mean;
        ss_tot.add_product(d, d);
    }
    let mse = sq.value() / nf;
    RegressionMetrics {
        mae: abs.value() / nf,
        mse,
        rmse: mse.sqrt(),
        mape: pct.value() / nf,
        r2: r2_from(n as u64, sq.value(), ss_tot.value()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    fn rel(a: f64, b: f64) -> f64 {
        if a == b {
            0.0
        } else {
            (a - b).abs() / a.abs().max(b.abs())
        }
    }

    #[test]
    fn score_histogram_exact_then_binned() {
        let mut seed = 5;
        let rows: Vec<(bool, f64)> = (0..20000)
            .map(|_| {
                let y = lcg(&mut seed) < 0.4;
                (y, (lcg(&mut seed) + if y { 0.3 } else { 0.0 }).min(1.0))
            })
            .collect();
        let yt: Vec<bool> = rows.iter().map(|r| r.0).collect();
        let ys: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let mut small = ScoreHistogram::default();
        rows[..1000].iter().for_each(|&(y, s)| small.record(y, s));
        assert!(!small.is_binned());
        assert_eq!(small.roc_auc(), roc_auc_exact(&yt[..1000], &ys[..1000]));
        let panes: Vec<ScoreHistogram> = rows
            .chunks(2000)
            .map(|c| {
                let mut h = ScoreHistogram::default();
                c.iter().for_each(|&(y, s)| h.record(y, s));
                h
            })
            .collect();
        let mut w = ScoreHistogram::default();
        for (i, p) in panes.iter().enumerate() {
            w.merge(p);
            if i >= 3 {
                w.unmerge(&panes[i - 3]);
            }
            let start = i.saturating_sub(2);
            let mut fresh = ScoreHistogram::default();
            fresh.switch_to_bins();
            for q in &panes[start..=i] {
                fresh.merge(q);
            }
            let exact = roc_auc_exact(
                &yt[start * 2000..(i + 1) * 2000],
                &ys[start * 2000..(i + 1) * 2000],
            );
            assert!((w.roc_auc() - exact).abs() < 1e-3);
            if w.is_binned() {
                assert_eq!(w.counts, fresh.counts);
            }
        }
        assert!(w.is_binned());
    }

    #[test]
    fn compensated_sum_cancels() {
        let mut s = CompensatedSum::new();
        s.add(1e16);
        s.add(1.0);
        s.add(-1e16);
        assert_eq!(s.value(), 1.0);
    }

    #[test]
    fn binary_edge_cases() {
        let empty = BinarySummary::new().metrics();
        assert!(empty.accuracy.is_nan() && empty.roc_auc.is_nan());
        assert_eq!(empty.precision, 0.0);
        let mut one = BinarySummary::new();
        one.record(true, false, 0.3);
        let m = one.metrics();
        assert_eq!(
            (m.accuracy, m.precision, m.recall, m.f1),
            (0.0, 0.0, 0.0, 0.0)
        );
        assert!(m.roc_auc.is_nan());
        assert!(
            binary_metrics_exact(&[false, false], &[false, true], &[0.1, 0.9])
                .roc_auc
                .is_nan()
        );
        // all tied scores -> 0.5; extreme scores are clipped
        assert_eq!(roc_auc_exact(&[true, false, true], &[0.5, 0.5, 0.5]), 0.5);
        let m = binary_metrics_exact(&[true, false], &[true, false], &[0.0, 1.0]);
        assert!(rel(m.log_loss, -(EPS.ln())) < 1e-12);
        assert_eq!(m.brier, 1.0);
    }

    #[test]
    fn binary_sliding_window_matches_recomputation() {
        let mut seed = 1;
        let rows: Vec<(bool, bool, f64)> = (0..6000)
            .map(|_| {
                let y = lcg(&mut seed) < 0.3;
                let s = (lcg(&mut seed) * 0.6 + if y { 0.4 } else { 0.0 }).min(1.0);
                (y, s > 0.5, (s * 100.0).round() / 100.0)
            })
            .collect();
        let panes: Vec<BinarySummary> = rows
            .chunks(600)
            .map(|c| {
                let mut p = BinarySummary::new();
                c.iter().for_each(|&(y, p_, s)| p.record(y, p_, s));
                p
            })
            .collect();
        let mut w = BinarySummary::new();
        for (i, p) in panes.iter().enumerate() {
            w.merge(p);
            if i >= 3 {
                w.unmerge(&panes[i - 3]);
            }
            let start = i.saturating_sub(2);
            let slice = &rows[start * 600..(i + 1) * 600];
            let yt: Vec<bool> = slice.iter().map(|r| r.0).collect();
            let yp: Vec<bool> = slice.iter().map(|r| r.1).collect();
            let ys: Vec<f64> = slice.iter().map(|r| r.2).collect();
            let e = binary_metrics_exact(&yt, &yp, &ys);
            let g = w.metrics();
            assert_eq!((g.tp, g.fp, g.tn, g.fn_), (e.tp, e.fp, e.tn, e.fn_));
            assert!(rel(g.log_loss, e.log_loss) < 1e-12);
            assert!(rel(g.brier, e.brier) < 1e-12);
            // scores on a 0.01 grid: ties are preserved by the bins, AUC is exact
            assert!((g.roc_auc - e.roc_auc).abs() < 1e-12);
        }
    }

    #[test]
    fn regression_sliding_window_and_cancellation() {
        let mut seed = 7;
        let rows: Vec<(f64, f64)> = (0..5000)
            .map(|_| {
                let y = 1e8 + lcg(&mut seed);
                (y, y + 0.1 * (lcg(&mut seed) - 0.5))
            })
            .collect();
        let panes: Vec<RegressionSums> = rows
            .chunks(500)
            .map(|c| {
                let mut p = RegressionSums::new();
                c.iter().for_each(|&(t, p_)| p.record(t, p_));
                p
            })
            .collect();
        let mut w = RegressionSums::new();
        for (i, p) in panes.iter().enumerate() {
            w.merge(p);
            if i >= 4 {
                w.unmerge(&panes[i - 4]);
            }
            let start = i.saturating_sub(3);
            let slice = &rows[start * 500..(i + 1) * 500];
            let yt: Vec<f64> = slice.iter().map(|r| r.0).collect();
            let yp: Vec<f64> = slice.iter().map(|r| r.1).collect();
            let e = regression_metrics_exact(&yt, &yp);
            let g = w.metrics();
            assert_eq!(w.n, slice.len() as u64);
            for (a, b) in [
                (g.mae, e.mae),
                (g.mse, e.mse),
                (g.mape, e.mape),
                (g.r2, e.r2),
            ] {
                assert!(rel(a, b) < 1e-9, "{a} vs {b}");
            }
        }
        assert!(RegressionSums::new().metrics().r2.is_nan());
        let mut one = RegressionSums::new();
        one.record(2.0, 2.0);
        assert!(one.metrics().r2.is_nan());
        one.record(2.0, 2.0);
        assert_eq!(one.metrics().r2, 1.0);
        let mut z = RegressionSums::new();
        z.record(0.0, 1.0);
        assert!(z.metrics().mape > 1e15);
    }
}
