//! Two-sample Kolmogorov-Smirnov statistic and p-values (scipy `ks_2samp`, two-sided).

use serde::{Deserialize, Serialize};

use crate::stats::special::kolmogorov_n_sf;

/// `ks_2samp(method='auto')` uses the exact distribution when max(n1, n2) is at most this.
pub const MAX_AUTO_N: u64 = 10_000;

/// Which p-value computation produced a KS p-value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KsMethod {
    /// Exact lattice-path probability.
    Exact,
    /// `kstwo.sf(D, round(n1*n2/(n1+n2)))`.
    Asymp,
}

impl KsMethod {
    /// `"exact"` or `"asymp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            KsMethod::Exact => "exact",
            KsMethod::Asymp => "asymp",
        }
    }
}

/// Result of a two-sided two-sample KS test.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct KsResult {
    /// D statistic as scipy returns it (lattice-rounded when exact was used).
    pub statistic: f64,
    /// p-value of the `auto` rule.
    pub pvalue: f64,
    /// Method the `auto` rule actually used.
    pub method: KsMethod,
    /// p-value of the asymptotic (`kstwo`) method.
    pub pvalue_asymp: f64,
}

impl KsResult {
    /// The result for an empty sample: every number NaN.
    pub fn undefined() -> Self {
        KsResult {
            statistic: f64::NAN,
            pvalue: f64::NAN,
            method: KsMethod::Asymp,
            pvalue_asymp: f64::NAN,
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// KS statistic of two **sorted** samples with right-continuous ECDFs evaluated at every
/// data point (ties handled), computed like scipy: as a difference of two float ECDF values.
/// Returns `(d_float, d_numerator)` where the exact value is `d_numerator / (n1*n2)`.
/// Both are 0 when a sample is empty.
pub fn ks_statistic_sorted(a: &[f64], b: &[f64]) -> (f64, u128) {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return (0.0, 0);
    }
    let (mut i, mut j) = (0usize, 0usize);
    let mut best_num: u128 = 0;
    let mut max_s = f64::NEG_INFINITY;
    let mut min_s = f64::INFINITY;
    while i < n1 || j < n2 {
        let x = if j >= n2 || (i < n1 && a[i] <= b[j]) {
            a[i]
        } else {
            b[j]
        };
        while i < n1 && a[i] <= x {
            i += 1;
        }
        while j < n2 && b[j] <= x {
            j += 1;
        }
        let diff = i as f64 / n1 as f64 - j as f64 / n2 as f64;
        max_s = max_s.max(diff);
        min_s = min_s.min(diff);
        let lhs = i as u128 * n2 as u128;
        let rhs = j as u128 * n1 as u128;
        let num = lhs.abs_diff(rhs);
        best_num = best_num.max(num);
    }
    let min_abs = (-min_s).clamp(0.0, 1.0);
    let d = if min_abs > max_s { min_abs } else { max_s };
    (d, best_num)
}

/// KS statistic of two (unsorted) samples; NaN values are ignored.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let sa = sorted_finite(a);
    let sb = sorted_finite(b);
    ks_statistic_sorted(&sa, &sb).0
}

/// Copy of the non-NaN values, sorted ascending.
pub fn sorted_finite(a: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = a.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(|x, y| x.partial_cmp(y).expect("no NaN"));
    v
}

/// Probability of a path leaving the band for n1 == n2 == n (scipy `_compute_prob_outside_square`).
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let mut p = 0.0f64;
    let mut k = (n / h) as i64;
    let (nf, hf) = (n as f64, h as f64);
    while k >= 0 {
        let kf = k as f64;
        let mut p1 = 1.0f64;
        for j in 0..h {
            let jf = j as f64;
            p1 = (nf - kf * hf - jf) * p1 / (nf + kf * hf + jf + 1.0);
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// scipy `_compute_outer_prob_inside_method`: probability that a lattice path leaves the band.
fn outer_prob_inside_method(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let mg = (m / g) as i64;
    let ng = (n / g) as i64;
    let (n_i, h_i) = (n as i64, h as i64);
    let mut minj: i64 = 0;
    let mut maxj: i64 = ((h as f64 / mg as f64).ceil() as i64).min(n_i + 1);
    let mut curlen = maxj - minj;
    let len_a = ((2 * maxj + 2).min(n_i + 1)) as usize;
    let mut a = vec![1.0f64; len_a.max(1)];
    for z in a.iter_mut().take(maxj as usize) {
        *z = 0.0;
    }
    for i in 1..=(m as i64) {
        let lastminj = minj;
        let lastlen = curlen;
        minj = (((ng * i - h_i) as f64 / mg as f64).floor() as i64 + 1).max(0);
        minj = minj.min(n_i);
        maxj = (((ng * i + h_i) as f64 / mg as f64).ceil() as i64).min(n_i + 1);
        if maxj <= minj {
            return 1.0;
        }
        let fi = i as f64;
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            let idx = (jj + minj - lastminj) as usize;
            let prev = a.get(idx).copied().unwrap_or(1.0);
            val = (prev * fi + val * j as f64) / (fi + j as f64);
            if let Some(slot) = a.get_mut(jj as usize) {
                *slot = val;
            }
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = (maxj - minj) as usize;
            let to = ((maxj - minj + (lastlen - curlen)) as usize).min(a.len());
            for z in a.iter_mut().take(to).skip(from) {
                *z = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

/// Exact two-sided p-value for lattice statistic `h / lcm(n1, n2)` (scipy `_attempt_exact_2kssamp`).
/// Returns `None` when the computation fails (scipy would then fall back to asymp).
pub fn ks_pvalue_exact_lattice(n1: u64, n2: u64, h: u64) -> Option<f64> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    if h == 0 {
        return Some(1.0);
    }
    let g = gcd(n1, n2);
    let prob = if n1 == n2 {
        prob_outside_square(n1, h)
    } else {
        outer_prob_inside_method(n1, n2, g, h)
    };
    if prob.is_finite() && (0.0..=1.0).contains(&prob) {
        Some(prob)
    } else {
        None
    }
}

/// Asymptotic two-sided p-value `kstwo.sf(d, round(n1*n2/(n1+n2)))` (NaN if that n rounds to 0).
pub fn ks_pvalue_asymp(d: f64, n1: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return f64::NAN;
    }
    let (m, n) = if n1 >= n2 {
        (n1 as f64, n2 as f64)
    } else {
        (n2 as f64, n1 as f64)
    };
    let en = m * n / (m + n);
    let ne = round_half_even(en);
    if ne < 1.0 {
        return f64::NAN;
    }
    kolmogorov_n_sf(ne as u64, d).clamp(0.0, 1.0)
}

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// The `ks_2samp` statistic alone, from the lattice numerator of D, with both p-values NaN:
/// for windows where KS does not decide drift and the p-values' cost is not needed.
pub fn ks_statistic_only(d_float: f64, d_num: u128, n1: u64, n2: u64) -> KsResult {
    if n1 == 0 || n2 == 0 {
        return KsResult::undefined();
    }
    let exact = n1.max(n2) <= MAX_AUTO_N;
    let statistic = if exact {
        let g = gcd(n1, n2);
        let lcm = (n1 / g) as u128 * n2 as u128;
        (d_num / g as u128) as f64 / lcm as f64
    } else {
        d_float
    };
    KsResult {
        statistic,
        pvalue: f64::NAN,
        method: if exact {
            KsMethod::Exact
        } else {
            KsMethod::Asymp
        },
        pvalue_asymp: f64::NAN,
    }
}

/// Full `ks_2samp` result from the lattice numerator of D (`D = num / (n1*n2)`) and the float
/// statistic scipy reports in asymp mode. `exact_work_budget` caps the cost of the exact
/// method (roughly max(n1,n2) * band width operations); `None` means no cap (scipy behaviour).
pub fn ks_from_counts(
    d_float: f64,
    d_num: u128,
    n1: u64,
    n2: u64,
    exact_work_budget: Option<f64>,
) -> KsResult {
    if n1 == 0 || n2 == 0 {
        return KsResult::undefined();
    }
    let g = gcd(n1, n2);
    let lcm = (n1 / g) as u128 * n2 as u128;
    let h = (d_num / g as u128) as u64; // D * lcm, exact integer
    let d_exact = h as f64 / lcm as f64;
    let pvalue_asymp = ks_pvalue_asymp(d_float, n1, n2);
    let mut use_exact = n1.max(n2) <= MAX_AUTO_N;
    if use_exact {
        if let Some(budget) = exact_work_budget {
            let (m, n) = if n1 >= n2 { (n1, n2) } else { (n2, n1) };
            let band = if n1 == n2 {
                (n1 / h.max(1)) as f64 * h as f64
            } else {
                let mg = (m / g) as f64;
                (2.0 * (h as f64 / mg).ceil() + 2.0).min(n as f64 + 1.0) * m as f64
            };
            if band > budget {
                use_exact = false;
            }
        }
    }
    if use_exact {
        if let Some(p) = ks_pvalue_exact_lattice(n1, n2, h) {
            return KsResult {
                statistic: d_exact,
                pvalue: p.clamp(0.0, 1.0),
                method: KsMethod::Exact,
                pvalue_asymp,
            };
        }
        // scipy falls back to asymp with the lattice-rounded d
        let p = ks_pvalue_asymp(d_exact, n1, n2);
        return KsResult {
            statistic: d_exact,
            pvalue: p,
            method: KsMethod::Asymp,
            pvalue_asymp,
        };
    }
    KsResult {
        statistic: d_float,
        pvalue: pvalue_asymp,
        method: KsMethod::Asymp,
        pvalue_asymp,
    }
}

/// `scipy.stats.ks_2samp(reference, current, method='auto')` plus the asymp p-value.
/// NaN values are dropped; empty samples give NaN results.
pub fn ks_2samp(reference: &[f64], current: &[f64]) -> KsResult {
    let a = sorted_finite(reference);
    let b = sorted_finite(current);
    let (d, num) = ks_statistic_sorted(&a, &b);
    ks_from_counts(d, num, a.len() as u64, b.len() as u64, None)
}

/// p-value of the `auto` rule for an already computed statistic (see [`ks_2samp`]).
pub fn ks_pvalue(reference: &[f64], current: &[f64]) -> f64 {
    ks_2samp(reference, current).pvalue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_samples() {
        for n1 in 1..6usize {
            for n2 in 1..6usize {
                let a: Vec<f64> = (0..n1).map(|i| i as f64).collect();
                let b: Vec<f64> = (0..n2).map(|i| i as f64 + 0.5).collect();
                let r = ks_2samp(&a, &b);
                assert!(r.pvalue >= 0.0 && r.pvalue <= 1.0, "{n1} {n2} {r:?}");
            }
        }
        let r = ks_2samp(&[1.0, 2.0, 3.0], &[10.0, 11.0, 12.0]);
        assert_eq!(r.statistic, 1.0);
        // scipy: ks_2samp([1,2,3],[10,11,12]).pvalue == 0.1
        assert!((r.pvalue - 0.1).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn identical_samples() {
        let a = [1.0, 2.0, 2.0, 3.0];
        let r = ks_2samp(&a, &a);
        assert_eq!(r.statistic, 0.0);
        assert_eq!(r.pvalue, 1.0);
    }
}
