//! Categorical drift: exact statistics over full samples, and the streaming path
//! ([`CategoricalProfile`] with the top-K reference categories plus an `__other__` bucket,
//! per-pane [`CategoricalPane`] counts with a bounded map of categories unseen in the reference,
//! and [`categorical_drift`]). All statistics are counts-based and therefore exact.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::shares::{share_stats, ShareStats};
use super::special::{chi2_sf, normal_cdf, normal_sf};

/// Name of the bucket holding reference categories outside the top K (and overflowed unseen ones).
pub const OTHER: &str = "__other__";

/// FNV-1a hasher: fast for the short category strings used as keys.
#[derive(Default, Clone, Copy, Debug)]
pub struct FnvHasher(u64);

impl Hasher for FnvHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Hash map keyed by category with the FNV hasher.
pub type CategoryMap<V> = HashMap<String, V, BuildHasherDefault<FnvHasher>>;

/// Options for building a [`CategoricalProfile`].
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CategoricalProfileConfig {
    /// Number of most frequent reference categories kept individually.
    pub top_k: usize,
    /// Maximum number of reference tail categories (beyond top K) remembered so that they are
    /// recognised as `__other__` rather than as unseen. If the reference has more, every unknown
    /// value is counted as `__other__`.
    pub max_tail: usize,
    /// Maximum number of distinct unseen categories tracked per pane/window.
    pub max_unseen: usize,
}

impl Default for CategoricalProfileConfig {
    fn default() -> Self {
        CategoricalProfileConfig {
            top_k: 256,
            max_tail: 100_000,
            max_unseen: 64,
        }
    }
}

/// Reference profile of a categorical feature.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CategoricalProfile {
    /// Top-K reference categories in code-point order.
    categories: Vec<String>,
    /// Reference counts per category; the last entry is `__other__`.
    ref_counts: Vec<u64>,
    n_ref: u64,
    /// Category -> index (`categories.len()` for tail categories, i.e. `__other__`).
    index: CategoryMap<u32>,
    /// Whether every reference category is in `index`.
    tail_complete: bool,
    max_unseen: usize,
}

impl CategoricalProfile {
    /// Builds a profile from the reference values.
    pub fn build<S: AsRef<str>>(reference: &[S], config: &CategoricalProfileConfig) -> Self {
        let mut counts: CategoryMap<u64> = CategoryMap::default();
        for v in reference {
            let v = v.as_ref();
            if let Some(c) = counts.get_mut(v) {
                *c += 1;
            } else {
                counts.insert(v.to_string(), 1);
            }
        }
        let mut by_freq: Vec<(String, u64)> = counts.into_iter().collect();
        by_freq.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let k = config.top_k.max(1).min(by_freq.len());
        let mut top: Vec<(String, u64)> = by_freq[..k].to_vec();
        top.sort_by(|a, b| a.0.cmp(&b.0));
        let tail = &by_freq[k..];
        let other_idx = top.len() as u32;
        let mut index: CategoryMap<u32> = CategoryMap::default();
        for (i, (name, _)) in top.iter().enumerate() {
            index.insert(name.clone(), i as u32);
        }
        let tail_complete = tail.len() <= config.max_tail;
        for (name, _) in tail.iter().take(config.max_tail) {
            index.insert(name.clone(), other_idx);
        }
        let mut ref_counts: Vec<u64> = top.iter().map(|(_, c)| *c).collect();
        ref_counts.push(tail.iter().map(|(_, c)| *c).sum());
        CategoricalProfile {
            categories: top.into_iter().map(|(n, _)| n).collect(),
            ref_counts,
            n_ref: reference.len() as u64,
            index,
            tail_complete,
            max_unseen: config.max_unseen,
        }
    }

    /// Top-K reference categories (code-point order).
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// Reference counts per category, last entry `__other__`.
    pub fn reference_counts(&self) -> &[u64] {
        &self.ref_counts
    }

    /// Reference sample size.
    pub fn n_reference(&self) -> u64 {
        self.n_ref
    }

    /// Number of distinct reference categories kept (top K) plus one if `__other__` is non-empty.
    pub fn n_distinct(&self) -> u64 {
        self.categories.len() as u64 + (self.ref_counts[self.categories.len()] > 0) as u64
    }

    /// Index of a category: `Some(i)` for a top-K category, `Some(K)` for `__other__`,
    /// `None` when unseen in the reference.
    #[inline]
    pub fn lookup(&self, value: &str) -> Option<u32> {
        match self.index.get(value) {
            Some(&i) => Some(i),
            None if !self.tail_complete => Some(self.categories.len() as u32),
            None => None,
        }
    }

    /// A new empty pane sized for this profile.
    pub fn new_pane(&self) -> CategoricalPane {
        CategoricalPane::new(self)
    }
}

/// Per-pane (or per-window) category counts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CategoricalPane {
    /// Counts per profile category; the last entry is `__other__`.
    counts: Vec<u64>,
    /// Counts of categories unseen in the reference (at most the profile's `max_unseen`).
    unseen: BTreeMap<String, u64>,
    /// Unseen values counted in `__other__` because the unseen map was full.
    overflow: u64,
    n: u64,
}

impl CategoricalPane {
    /// Empty pane for `profile`.
    pub fn new(profile: &CategoricalProfile) -> Self {
        CategoricalPane {
            counts: vec![0; profile.categories.len() + 1],
            unseen: BTreeMap::new(),
            overflow: 0,
            n: 0,
        }
    }

    /// Records one value; returns whether the reference knew the category.
    #[inline]
    pub fn record(&mut self, profile: &CategoricalProfile, value: &str) -> bool {
        self.n += 1;
        if let Some(i) = profile.lookup(value) {
            self.counts[i as usize] += 1;
            return true;
        }
        if let Some(c) = self.unseen.get_mut(value) {
            *c += 1;
        } else if self.unseen.len() < profile.max_unseen {
            self.unseen.insert(value.to_string(), 1);
        } else {
            let last = self.counts.len() - 1;
            self.counts[last] += 1;
            self.overflow += 1;
        }
        false
    }

    /// Adds another pane. Unseen categories beyond the limit overflow into `__other__`.
    pub fn merge(&mut self, other: &CategoricalPane, profile: &CategoricalProfile) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        let last = self.counts.len() - 1;
        for (k, &c) in &other.unseen {
            if let Some(x) = self.unseen.get_mut(k) {
                *x += c;
            } else if self.unseen.len() < profile.max_unseen {
                self.unseen.insert(k.clone(), c);
            } else {
                self.counts[last] += c;
                self.overflow += c;
            }
        }
        self.overflow += other.overflow;
        self.n += other.n;
    }

    /// Subtracts a pane previously merged into this one. Totals stay exact; an unseen category
    /// that had overflowed into `__other__` is taken back from `__other__`.
    pub fn unmerge(&mut self, other: &CategoricalPane) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_sub(*b);
        }
        let last = self.counts.len() - 1;
        for (k, &c) in &other.unseen {
            let mut rest = c;
            if let Some(x) = self.unseen.get_mut(k) {
                let take = (*x).min(rest);
                *x -= take;
                rest -= take;
                if *x == 0 {
                    self.unseen.remove(k);
                }
            }
            if rest > 0 {
                self.counts[last] = self.counts[last].saturating_sub(rest);
                self.overflow = self.overflow.saturating_sub(rest);
            }
        }
        self.overflow = self.overflow.saturating_sub(other.overflow);
        self.n = self.n.saturating_sub(other.n);
    }

    /// Resets to empty.
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.unseen.clear();
        self.overflow = 0;
        self.n = 0;
    }

    /// Number of values recorded.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Unseen values that were counted in `__other__` because the unseen map was full.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// Counts of categories unseen in the reference.
    pub fn unseen(&self) -> &BTreeMap<String, u64> {
        &self.unseen
    }
}

/// All categorical drift statistics.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CategoricalDrift {
    /// Reference sample size.
    pub n_reference: u64,
    /// Current sample size.
    pub n_current: u64,
    /// Union of categories with a non-zero count in either sample, code-point order.
    pub categories: Vec<String>,
    /// Reference counts per category.
    pub reference_counts: Vec<u64>,
    /// Current counts per category.
    pub current_counts: Vec<u64>,
    /// Evidently's goodness-of-fit chi-square statistic (`inf` if a category is only in current).
    pub chi2_statistic: f64,
    /// chi2.sf(statistic, K-1) (NaN when K = 1).
    pub chi2_pvalue: f64,
    /// Degrees of freedom K-1.
    pub chi2_dof: u64,
    /// Two-proportion z statistic (exactly 2 categories only).
    pub z_statistic: Option<f64>,
    /// 2 (1 - Phi(|z|)), evaluated literally.
    pub z_test_pvalue: Option<f64>,
    /// 2 Phi-bar(|z|), accurate in the tail.
    pub z_test_pvalue_sf: Option<f64>,
    /// PSI / KL / JS / Hellinger over the categories.
    pub shares: ShareStats,
    /// Unseen values folded into `__other__` (streaming only).
    pub overflow: u64,
}

/// Statistics from aligned category counts (categories in the order to sum over).
pub fn categorical_stats(
    categories: Vec<String>,
    ref_counts: Vec<u64>,
    cur_counts: Vec<u64>,
    overflow: u64,
) -> CategoricalDrift {
    let nr: u64 = ref_counts.iter().sum();
    let nc: u64 = cur_counts.iter().sum();
    let k = categories.len();
    let mut chi2 = f64::NAN;
    let mut chi2_p = f64::NAN;
    let mut z = None;
    let mut zp = None;
    let mut zp_sf = None;
    if nr > 0 && nc > 0 && k > 0 {
        let k_norm = nc as f64 / nr as f64;
        let mut stat = 0.0;
        for (&r, &c) in ref_counts.iter().zip(&cur_counts) {
            let f_exp = r as f64 * k_norm;
            let f_obs = c as f64;
            let d = f_obs - f_exp;
            stat += d * d / f_exp;
        }
        chi2 = stat;
        chi2_p = if k >= 2 {
            chi2_sf(stat, (k - 1) as f64)
        } else {
            f64::NAN
        };
        if k == 2 {
            let (n1, n2) = (nr as f64, nc as f64);
            let p1 = ref_counts[1] as f64 / n1;
            let p2 = cur_counts[1] as f64 / n2;
            let pp = (p1 * n1 + p2 * n2) / (n1 + n2);
            let zz = (p1 - p2) / (pp * (1.0 - pp) * (1.0 / n1 + 1.0 / n2)).sqrt();
            z = Some(zz);
            zp = Some(2.0 * (1.0 - normal_cdf(zz.abs())));
            zp_sf = Some(2.0 * normal_sf(zz.abs()));
        }
    }
    let shares = share_stats(&ref_counts, nr, &cur_counts, nc);
    CategoricalDrift {
        n_reference: nr,
        n_current: nc,
        categories,
        reference_counts: ref_counts,
        current_counts: cur_counts,
        chi2_statistic: chi2,
        chi2_pvalue: chi2_p,
        chi2_dof: k.saturating_sub(1) as u64,
        z_statistic: z,
        z_test_pvalue: zp,
        z_test_pvalue_sf: zp_sf,
        shares,
        overflow,
    }
}

/// Exact categorical drift from full samples.
pub fn categorical_drift_exact<S: AsRef<str>, T: AsRef<str>>(
    reference: &[S],
    current: &[T],
) -> CategoricalDrift {
    let mut map: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for v in reference {
        map.entry(v.as_ref()).or_default().0 += 1;
    }
    for v in current {
        map.entry(v.as_ref()).or_default().1 += 1;
    }
    let categories = map.keys().map(|s| s.to_string()).collect();
    let rc = map.values().map(|v| v.0).collect();
    let cc = map.values().map(|v| v.1).collect();
    categorical_stats(categories, rc, cc, 0)
}

/// Categorical drift of a window summary against the profile: the union of the top-K
/// categories, `__other__` (when non-empty in either) and unseen categories, in code-point order.
pub fn categorical_drift(profile: &CategoricalProfile, pane: &CategoricalPane) -> CategoricalDrift {
    let mut rows: Vec<(&str, u64, u64)> =
        Vec::with_capacity(profile.categories.len() + 1 + pane.unseen.len());
    for (i, name) in profile.categories.iter().enumerate() {
        rows.push((name.as_str(), profile.ref_counts[i], pane.counts[i]));
    }
    let k = profile.categories.len();
    if profile.ref_counts[k] > 0 || pane.counts[k] > 0 {
        rows.push((OTHER, profile.ref_counts[k], pane.counts[k]));
    }
    for (name, &c) in &pane.unseen {
        if c > 0 {
            rows.push((name.as_str(), 0, c));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let categories = rows.iter().map(|r| r.0.to_string()).collect();
    let rc = rows.iter().map(|r| r.1).collect();
    let cc = rows.iter().map(|r| r.2).collect();
    categorical_stats(categories, rc, cc, pane.overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_equals_recompute() {
        let reference: Vec<String> = (0..1000).map(|i| format!("c{}", i % 7)).collect();
        let p = CategoricalProfile::build(&reference, &CategoricalProfileConfig::default());
        let panes: Vec<Vec<String>> = (0..8)
            .map(|j| {
                (0..300)
                    .map(|i| format!("c{}", (i * (j + 1)) % 9))
                    .collect()
            })
            .collect();
        let sums: Vec<CategoricalPane> = panes
            .iter()
            .map(|vals| {
                let mut pn = p.new_pane();
                vals.iter().for_each(|v| {
                    pn.record(&p, v);
                });
                pn
            })
            .collect();
        let mut w = p.new_pane();
        for s in &sums[0..3] {
            w.merge(s, &p);
        }
        for start in 1..=5 {
            w.unmerge(&sums[start - 1]);
            w.merge(&sums[start + 2], &p);
            let mut fresh = p.new_pane();
            for vals in &panes[start..start + 3] {
                vals.iter().for_each(|v| {
                    fresh.record(&p, v);
                });
            }
            assert_eq!(w, fresh);
            let a = categorical_drift(&p, &w);
            let e = categorical_drift_exact(&reference, &panes[start..start + 3].concat());
            assert_eq!(a.categories, e.categories);
            assert_eq!(a.current_counts, e.current_counts);
            assert_eq!(a.chi2_statistic, e.chi2_statistic);
        }
    }

    #[test]
    fn only_unseen_and_single_category() {
        let reference = vec!["a"; 10];
        let p = CategoricalProfile::build(&reference, &CategoricalProfileConfig::default());
        let mut pn = p.new_pane();
        for v in ["x", "y", "ü", "x"] {
            pn.record(&p, v);
        }
        let d = categorical_drift(&p, &pn);
        assert_eq!(d.categories, vec!["a", "x", "y", "ü"]);
        assert_eq!(d.chi2_statistic, f64::INFINITY);
        assert_eq!(d.chi2_pvalue, 0.0);
        assert!(d.shares.psi.is_finite());
        let mut same = p.new_pane();
        same.record(&p, "a");
        let d = categorical_drift(&p, &same);
        assert_eq!(d.chi2_dof, 0);
        assert!(d.shares.psi.abs() < 1e-15);
        let empty = categorical_drift(&p, &p.new_pane());
        assert_eq!(empty.n_current, 0);
    }

    #[test]
    fn top_k_and_overflow() {
        let reference: Vec<String> = (0..100).map(|i| format!("k{}", i % 10)).collect();
        let cfg = CategoricalProfileConfig {
            top_k: 3,
            max_tail: 100,
            max_unseen: 2,
        };
        let p = CategoricalProfile::build(&reference, &cfg);
        assert_eq!(p.categories().len(), 3);
        assert_eq!(p.reference_counts()[3], 70);
        let mut pn = p.new_pane();
        for v in ["k9", "new1", "new2", "new3", "new3"] {
            pn.record(&p, v);
        }
        assert_eq!(pn.overflow(), 2);
        let d = categorical_drift(&p, &pn);
        assert_eq!(d.n_current, 5);
        assert!(d.categories.contains(&OTHER.to_string()));
    }
}
