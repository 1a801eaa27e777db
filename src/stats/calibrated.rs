//! Drift decisions with a controlled false-alarm rate, for a reference that is a sample.
//!
//! Evidently's rules (see [`super::drift`]) treat the reference's sampled shares as the true
//! distribution and test every feature of every window at 0.05: on a 500-event baseline the
//! reference's own sampling noise reads as drift, and a monitor evaluating 25 features every
//! slide raises false alarms by the hundred per model-day. The calibrated decision instead:
//!
//! - tests two samples against each other: the two-sample Kolmogorov–Smirnov test for
//!   numerical features (rank-based: one far outlier in the baseline changes nothing), and the
//!   chi-square test of *homogeneity* on the 2×k table of reference and window counts for
//!   categorical ones and numerical ones with few distinct values (categories too rare for the
//!   asymptotic distribution are pooled);
//! - holds each test to a level that bounds the expected number of false alarms per model and
//!   day of event time ([`feature_alpha`]): the rate is spread over the windows of a day (one
//!   per slide) and the drift tests of a window (Bonferroni). Overlapping windows make the
//!   bound conservative, never exceeded: a false alarm needs a window whose test rejected;
//! - asks for an effect worth acting on: the KS distance or the total variation distance
//!   between the shares must reach `min_effect`, so a negligible shift seen by a huge window
//!   does not alert.

use super::special::chi2_sf;

/// Milliseconds in a day.
const DAY_MS: f64 = 86_400_000.0;

/// Smallest expected count of a cell for the chi-square approximation (Cochran's rule).
const MIN_EXPECTED: f64 = 5.0;

/// Level of each drift test of a window so that a model evaluated every `slide_ms` with
/// `tests` drift tests per window expects at most `false_alarms_per_day` false alarms per day
/// of event time.
pub fn feature_alpha(false_alarms_per_day: f64, slide_ms: i64, tests: usize) -> f64 {
    let windows_per_day = DAY_MS / (slide_ms.max(1) as f64);
    (false_alarms_per_day / windows_per_day / tests.max(1) as f64).min(1.0)
}

/// A chi-square test of homogeneity on a 2×k table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homogeneity {
    /// Pearson's statistic over the (pooled) table.
    pub statistic: f64,
    /// Degrees of freedom: columns after pooling, less one.
    pub dof: u64,
    /// Its p-value (1 when fewer than two columns remain).
    pub pvalue: f64,
    /// Columns of the table before pooling.
    pub columns: usize,
    /// Columns after pooling the rare ones.
    pub pooled_columns: usize,
}

/// Chi-square test of homogeneity of two samples given as counts per category (aligned):
/// whether they come from one distribution, both sampled. Categories whose expected count in
/// either sample is under 5 are pooled, rarest first, into one column (and that column with the
/// next rarest until it reaches 5), so that the chi-square approximation holds in the tail.
pub fn homogeneity(reference: &[u64], current: &[u64]) -> Homogeneity {
    let columns = reference
        .iter()
        .zip(current)
        .filter(|(r, c)| **r + **c > 0)
        .count();
    let nr: u64 = reference.iter().sum();
    let nc: u64 = current.iter().sum();
    let none = Homogeneity {
        statistic: 0.0,
        dof: 0,
        pvalue: 1.0,
        columns,
        pooled_columns: columns.min(1),
    };
    if nr == 0 || nc == 0 {
        return none;
    }
    let n = (nr + nc) as f64;
    // The smaller row decides whether a column's expected counts are large enough.
    let small_row = nr.min(nc) as f64 / n;
    let mut cells: Vec<(u64, u64)> = reference
        .iter()
        .zip(current)
        .filter(|(r, c)| **r + **c > 0)
        .map(|(r, c)| (*r, *c))
        .collect();
    cells.sort_unstable_by_key(|(r, c)| r + c);
    let expected = |(r, c): (u64, u64)| (r + c) as f64 * small_row;
    let mut pooled = (0u64, 0u64);
    let mut kept: Vec<(u64, u64)> = Vec::with_capacity(cells.len());
    for cell in cells {
        if expected(cell) < MIN_EXPECTED
            || (pooled.0 + pooled.1 > 0 && expected(pooled) < MIN_EXPECTED)
        {
            pooled = (pooled.0 + cell.0, pooled.1 + cell.1);
        } else {
            kept.push(cell);
        }
    }
    if pooled.0 + pooled.1 > 0 {
        kept.push(pooled);
    }
    if kept.len() < 2 {
        return none;
    }
    let mut statistic = 0.0;
    for &(r, c) in &kept {
        let total = (r + c) as f64;
        for (observed, row) in [(r, nr), (c, nc)] {
            let e = total * row as f64 / n;
            let d = observed as f64 - e;
            statistic += d * d / e;
        }
    }
    let dof = (kept.len() - 1) as u64;
    Homogeneity {
        statistic,
        dof,
        pvalue: chi2_sf(statistic, dof as f64),
        columns,
        pooled_columns: kept.len(),
    }
}

/// Total variation distance between the shares of two samples given as aligned counts: half
/// the sum of the absolute differences of the shares, in [0, 1] (NaN when a sample is empty).
pub fn total_variation(reference: &[u64], current: &[u64]) -> f64 {
    let nr: u64 = reference.iter().sum();
    let nc: u64 = current.iter().sum();
    if nr == 0 || nc == 0 {
        return f64::NAN;
    }
    let (nr, nc) = (nr as f64, nc as f64);
    0.5 * reference
        .iter()
        .zip(current)
        .map(|(r, c)| (*r as f64 / nr - *c as f64 / nc).abs())
        .sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_spreads_the_daily_rate_over_windows_and_tests() {
        // 10 s slides: 8,640 windows a day; 27 tests a window.
        let a = feature_alpha(0.1, 10_000, 27);
        assert!((a - 0.1 / 8_640.0 / 27.0).abs() < 1e-18, "{a}");
        assert_eq!(feature_alpha(1e9, 10_000, 1), 1.0);
    }

    #[test]
    fn homogeneity_matches_scipy() {
        // The example: a uniform feature of 8 categories, 500 reference and 600 window
        // events. scipy.stats.chi2_contingency([r, c], correction=False) gives statistic
        // 17.631791954537736, p 0.013746467086392612, dof 7 (goodness of fit: p = 2.1e-6).
        let r = [54, 56, 80, 55, 46, 56, 89, 64];
        let c = [76, 75, 67, 64, 73, 96, 76, 73];
        let h = homogeneity(&r, &c);
        assert_eq!((h.dof, h.columns, h.pooled_columns), (7, 8, 8));
        assert!((h.statistic - 17.631791954537736).abs() < 1e-9, "{h:?}");
        assert!(
            (h.pvalue / 0.013746467086392612 - 1.0).abs() < 1e-9,
            "{h:?}"
        );
        // scipy: [[250, 250, 250, 250], [400, 200, 200, 200]] -> 51.282051282051285,
        // p 4.259912617306968e-11.
        let h = homogeneity(&[250, 250, 250, 250], &[400, 200, 200, 200]);
        assert!((h.statistic - 51.282051282051285).abs() < 1e-9, "{h:?}");
        assert!(
            (h.pvalue / 4.259912617306968e-11 - 1.0).abs() < 1e-6,
            "{h:?}"
        );
    }

    #[test]
    fn rare_categories_are_pooled_until_expected_counts_reach_five() {
        let r = [500, 480, 3, 1, 0, 2];
        let c = [510, 470, 2, 0, 4, 1];
        let h = homogeneity(&r, &c);
        assert_eq!(h.columns, 6);
        // The four rare categories become one column of 13.
        assert_eq!(h.pooled_columns, 3);
        assert_eq!(h.dof, 2);
        // One sample only, or a single category: nothing to test.
        assert_eq!(homogeneity(&[10, 20], &[0, 0]).pvalue, 1.0);
        assert_eq!(homogeneity(&[30, 0], &[40, 0]).pvalue, 1.0);
    }

    #[test]
    fn total_variation_is_half_the_sum_of_share_differences() {
        let r = [250, 250, 250, 250];
        let c = [400, 200, 200, 200];
        assert!((total_variation(&r, &c) - 0.15).abs() < 1e-12);
        assert!(total_variation(&r, &[0, 0, 0, 0]).is_nan());
    }
}
