//! Share-based divergences shared by numerical (binned) and categorical drift:
//! Evidently's zero-share fill, PSI, KL (scipy `entropy`), Jensen-Shannon distance and Hellinger.

use serde::{Deserialize, Serialize};

/// Divergences between two binned distributions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ShareStats {
    /// Population stability index over the filled shares.
    pub psi: f64,
    /// KL divergence of the renormalised filled shares (natural log).
    pub kl_divergence: f64,
    /// Jensen-Shannon distance on the unfilled shares, natural log.
    pub jensenshannon_distance: f64,
    /// Jensen-Shannon distance on the unfilled shares, base 2.
    pub jensenshannon_distance_base2: f64,
    /// Evidently's Hellinger form sqrt(1 - clip(BC, 0, 1)).
    pub hellinger: f64,
    /// Numerically stable Hellinger sqrt(1/2 sum (sqrt r - sqrt c)^2).
    pub hellinger_sqdiff: f64,
    /// Fill value used for zero reference shares (`None` when there was none).
    pub fill_value_reference: Option<f64>,
    /// Fill value used for zero current shares (`None` when there was none).
    pub fill_value_current: Option<f64>,
}

impl ShareStats {
    /// All-NaN result (used when a sample is empty).
    pub fn nan() -> Self {
        ShareStats {
            psi: f64::NAN,
            kl_divergence: f64::NAN,
            jensenshannon_distance: f64::NAN,
            jensenshannon_distance_base2: f64::NAN,
            hellinger: f64::NAN,
            hellinger_sqdiff: f64::NAN,
            fill_value_reference: None,
            fill_value_current: None,
        }
    }
}

/// Shares count/n for each bin.
pub fn shares_from_counts(counts: &[u64], n: u64) -> Vec<f64> {
    let nf = n as f64;
    counts.iter().map(|&c| c as f64 / nf).collect()
}

/// Evidently's zero fill (`get_binned_data(feel_zeroes=True)`): every zero share is replaced by
/// `m / 1e6` if the smallest non-zero share `m <= 0.0001`, else by `0.0001`. Returns the filled
/// vector and the fill value (`None` when there was no zero share or no non-zero share).
pub fn fill_zero_shares(shares: &[f64]) -> (Vec<f64>, Option<f64>) {
    let has_zero = shares.contains(&0.0);
    if !has_zero {
        return (shares.to_vec(), None);
    }
    let m = shares
        .iter()
        .copied()
        .filter(|&s| s != 0.0)
        .fold(f64::INFINITY, f64::min);
    if !m.is_finite() {
        return (shares.to_vec(), None);
    }
    let fill = if m <= 0.0001 { m / 1e6 } else { 0.0001 };
    let v = shares
        .iter()
        .map(|&s| if s == 0.0 { fill } else { s })
        .collect();
    (v, Some(fill))
}

fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// PSI over already filled shares: sum (r - c) ln(r / c).
pub fn psi(r_filled: &[f64], c_filled: &[f64]) -> f64 {
    r_filled
        .iter()
        .zip(c_filled)
        .map(|(&r, &c)| (r - c) * (r / c).ln())
        .sum()
}

/// `scipy.stats.entropy(p, q)`: both vectors renormalised to sum 1, natural log.
pub fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let sp: f64 = p.iter().sum();
    let sq: f64 = q.iter().sum();
    p.iter()
        .zip(q)
        .map(|(&a, &b)| rel_entr(a / sp, b / sq))
        .sum()
}

/// `scipy.spatial.distance.jensenshannon(p, q, base)`; `base = None` means natural log.
pub fn jensenshannon(p: &[f64], q: &[f64], base: Option<f64>) -> f64 {
    let js = jensenshannon_sum(p, q);
    match base {
        Some(b) => (js / b.ln() / 2.0).sqrt(),
        None => (js / 2.0).sqrt(),
    }
}

/// The sum `rel_entr(p, m) + rel_entr(q, m)` under scipy's `jensenshannon` (natural log).
fn jensenshannon_sum(p: &[f64], q: &[f64]) -> f64 {
    let sp: f64 = p.iter().sum();
    let sq: f64 = q.iter().sum();
    let mut left = 0.0;
    let mut right = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        let pa = a / sp;
        let qb = b / sq;
        let m = (pa + qb) / 2.0;
        left += rel_entr(pa, m);
        right += rel_entr(qb, m);
    }
    left + right
}

/// Evidently's Hellinger: sqrt(1 - clip(sum sqrt(r c), 0, 1)) on unfilled shares.
pub fn hellinger(r: &[f64], c: &[f64]) -> f64 {
    let bc: f64 = r.iter().zip(c).map(|(&a, &b)| (a * b).sqrt()).sum();
    (1.0 - bc.clamp(0.0, 1.0)).sqrt()
}

/// Stable Hellinger: sqrt(1/2 sum (sqrt r - sqrt c)^2) on unfilled shares.
pub fn hellinger_sqdiff(r: &[f64], c: &[f64]) -> f64 {
    let s: f64 = r
        .iter()
        .zip(c)
        .map(|(&a, &b)| {
            let d = a.sqrt() - b.sqrt();
            d * d
        })
        .sum();
    (0.5 * s).sqrt()
}

/// All share statistics from per-bin counts of both samples (same bin order).
/// Returns [`ShareStats::nan`] when either sample is empty.
pub fn share_stats(ref_counts: &[u64], n_ref: u64, cur_counts: &[u64], n_cur: u64) -> ShareStats {
    if n_ref == 0 || n_cur == 0 || ref_counts.is_empty() {
        return ShareStats::nan();
    }
    let r = shares_from_counts(ref_counts, n_ref);
    let c = shares_from_counts(cur_counts, n_cur);
    let (rf, fill_r) = fill_zero_shares(&r);
    let (cf, fill_c) = fill_zero_shares(&c);
    let js = jensenshannon_sum(&r, &c);
    ShareStats {
        psi: psi(&rf, &cf),
        kl_divergence: kl_divergence(&rf, &cf),
        jensenshannon_distance: (js / 2.0).sqrt(),
        jensenshannon_distance_base2: (js / std::f64::consts::LN_2 / 2.0).sqrt(),
        hellinger: hellinger(&r, &c),
        hellinger_sqdiff: hellinger_sqdiff(&r, &c),
        fill_value_reference: fill_r,
        fill_value_current: fill_c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_rule() {
        let (v, f) = fill_zero_shares(&[0.5, 0.5, 0.0]);
        assert_eq!(f, Some(0.0001));
        assert_eq!(v[2], 0.0001);
        let (_, f) = fill_zero_shares(&[1.0 / 10000.0, 0.0, 0.9999]);
        assert_eq!(f, Some(1e-4 / 1e6));
        let (_, f) = fill_zero_shares(&[0.3, 0.7]);
        assert_eq!(f, None);
    }

    #[test]
    fn identical_is_zero() {
        let s = share_stats(&[1, 2, 3], 6, &[2, 4, 6], 12);
        assert!(s.psi.abs() < 1e-15);
        assert!(s.kl_divergence.abs() < 1e-15);
        assert!(s.hellinger_sqdiff.abs() < 1e-15);
    }
}
