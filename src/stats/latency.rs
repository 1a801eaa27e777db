//! Latency summaries.
//!
//! * Streaming path: [`LatencySummary`], a mergeable/subtractable per-pane summary built on an
//!   HDR histogram plus an exact (compensated) sum and count for the mean.
//! * Exact path: [`ExactLatency`], from the full sample (sort and pick).
//!
//! Quantiles follow numpy's `method="inverted_cdf"`: the k-th smallest value with
//! `k = ceil(n*q)` (1-based), `k >= 1`.
//!
//! **Scaling and accuracy.** Values are milliseconds. The histogram stores integer units of
//! 1e-6 ms (one nanosecond) with 2 significant digits (256 sub-buckets per power of two),
//! so a bucket spans at most 1/128 of its lower bound; quantiles report the bucket midpoint,
//! which is within 0.4 % relative of every value in the bucket for values from 2.56e-4 ms up
//! to the saturation limit [`LatencySummary::MAX_MS`] (1e12 ms). Rounding to 1e-6 ms adds at
//! most 0.05 % at 1e-3 ms.
//!
//! **Out-of-range input.** NaN is ignored (counted in [`LatencySummary::rejected`]); negative
//! values and -0.0 are recorded as 0; values above `MAX_MS` (including +inf) saturate to
//! `MAX_MS`. The clamped value is what enters min, max and mean.

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::stats::quality::CompensatedSum;

/// Histogram units per millisecond.
const UNITS_PER_MS: f64 = 1e6;
/// Significant figures of the histogram.
const SIGFIG: u8 = 2;

/// The quantile levels reported by [`LatencySummary::report`] and [`ExactLatency::report`].
pub const REPORT_QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p999", 0.999),
];

/// 1-based rank `k = ceil(n*q)` of numpy's `inverted_cdf` quantile, clamped to `[1, n]`
/// (`q` is clamped to `[0, 1]`). Returns 0 when `n == 0` or `q` is NaN.
pub fn inverted_cdf_rank(n: u64, q: f64) -> u64 {
    if n == 0 || q.is_nan() {
        return 0;
    }
    let q = q.clamp(0.0, 1.0);
    let k = (n as f64 * q).ceil();
    (k as u64).clamp(1, n)
}

/// Records `count` at `units`, growing the histogram if needed (saturating as a last resort).
fn record_units(h: &mut Histogram<u64>, units: u64, count: u64) {
    if h.record_n(units, count).is_err() {
        h.saturating_record_n(units, count);
    }
}

/// `x.round() as u64` for `0 <= x < 2^64`, without the library call `round` is on the baseline
/// x86-64 target: the truncation is exact as a float (below 2^52 it is a small integer, above it
/// `x` is one already), so `x - t` is the exact fraction.
#[inline]
fn round_non_negative(x: f64) -> u64 {
    let t = x as u64;
    t + u64::from(x - t as f64 >= 0.5)
}

fn new_histogram() -> Histogram<u64> {
    // 1..2 with auto-resize: grows on demand, starts tiny. Cannot fail for these bounds.
    let mut h = Histogram::<u64>::new_with_bounds(1, 2, SIGFIG)
        .unwrap_or_else(|_| Histogram::<u64>::new(SIGFIG).expect("valid sigfig"));
    h.auto(true);
    h
}

/// Serializable form of the histogram: the recorded buckets as `(value, count)` pairs.
mod hist_serde {
    use super::*;

    pub fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(u64, u64)> = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let pairs: Vec<(u64, u64)> = Vec::deserialize(d)?;
        let mut h = new_histogram();
        for (v, c) in pairs {
            record_units(&mut h, v.min(LatencySummary::MAX_UNITS), c);
        }
        Ok(h)
    }
}

/// Mergeable streaming latency summary (one per pane). See the module docs for accuracy.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct LatencySummary {
    #[serde(with = "hist_serde")]
    hist: Histogram<u64>,
    count: u64,
    sum: CompensatedSum,
    min: f64,
    max: f64,
    /// `min`/`max` are exact (false after an unmerge; then they come from the histogram).
    min_max_exact: bool,
    rejected: u64,
}

impl Default for LatencySummary {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for LatencySummary {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count
            && self.hist == other.hist
            && self.sum.value() == other.sum.value()
            && self.rejected == other.rejected
    }
}

impl LatencySummary {
    /// Largest representable value in ms; larger values saturate to it.
    pub const MAX_MS: f64 = 1e12;
    /// `MAX_MS` in histogram units.
    const MAX_UNITS: u64 = 1_000_000_000_000_000_000;

    /// An empty summary.
    pub fn new() -> Self {
        LatencySummary {
            hist: new_histogram(),
            count: 0,
            sum: CompensatedSum::new(),
            min: 0.0,
            max: 0.0,
            min_max_exact: true,
            rejected: 0,
        }
    }

    /// Clamps a raw value to the recordable range; `None` for NaN.
    pub fn clamp_value(v: f64) -> Option<f64> {
        if v.is_nan() {
            None
        } else if v <= 0.0 {
            Some(0.0)
        } else {
            Some(v.min(Self::MAX_MS))
        }
    }

    /// A clamped value (`0 <= v <= MAX_MS`) in histogram units, rounded half away from zero.
    fn to_units(v: f64) -> u64 {
        round_non_negative(v * UNITS_PER_MS).min(Self::MAX_UNITS)
    }

    /// Records one latency in milliseconds (clamped; NaN ignored and counted as rejected).
    pub fn record(&mut self, value_ms: f64) {
        let Some(v) = Self::clamp_value(value_ms) else {
            self.rejected += 1;
            return;
        };
        record_units(&mut self.hist, Self::to_units(v), 1);
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum.add(v);
    }

    /// Adds another summary (e.g. a pane) into this one.
    pub fn merge(&mut self, other: &LatencySummary) {
        if other.count == 0 && other.rejected == 0 {
            return;
        }
        if self.hist.add(&other.hist).is_err() {
            for v in other.hist.iter_recorded() {
                record_units(&mut self.hist, v.value_iterated_to(), v.count_at_value());
            }
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
            self.min_max_exact = other.min_max_exact;
        } else if other.count > 0 {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
            self.min_max_exact &= other.min_max_exact;
        }
        self.count += other.count;
        self.sum.add_sum(&other.sum);
        self.rejected += other.rejected;
    }

    /// Removes a summary previously merged into this one (sliding windows). Counts saturate at
    /// zero if `other` was not actually part of `self`. Afterwards min and max are derived from
    /// the histogram (bucket bounds, within the histogram's precision) instead of being exact.
    pub fn unmerge(&mut self, other: &LatencySummary) {
        if other.count == 0 && other.rejected == 0 {
            return;
        }
        if self.hist.subtract(&other.hist).is_err() {
            let mut h = new_histogram();
            for v in self.hist.iter_recorded() {
                let value = v.value_iterated_to();
                let c = v
                    .count_at_value()
                    .saturating_sub(other.hist.count_at(value));
                if c > 0 {
                    record_units(&mut h, value, c);
                }
            }
            self.hist = h;
        }
        self.count = self.count.saturating_sub(other.count);
        self.rejected = self.rejected.saturating_sub(other.rejected);
        if self.count == 0 {
            self.sum = CompensatedSum::new();
            self.min = 0.0;
            self.max = 0.0;
            self.min_max_exact = true;
        } else {
            self.sum.sub_sum(&other.sum);
            self.min_max_exact = false;
            self.min = self.hist.lowest_equivalent(self.hist.min()) as f64 / UNITS_PER_MS;
            self.max = self.hist.highest_equivalent(self.hist.max()) as f64 / UNITS_PER_MS;
        }
    }

    /// Number of recorded (non-NaN) values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of NaN values that were ignored.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Arithmetic mean of the (clamped) values; NaN when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.sum.value() / self.count as f64
        }
    }

    /// Sum of the (clamped) values.
    pub fn sum(&self) -> f64 {
        self.sum.value()
    }

    /// Smallest value (exact unless an unmerge happened); NaN when empty.
    pub fn min(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.min
        }
    }

    /// Largest value (exact unless an unmerge happened); NaN when empty.
    pub fn max(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.max
        }
    }

    /// `inverted_cdf` quantile estimate (bucket midpoint, clamped to `[min, max]`);
    /// NaN when empty or `q` is NaN.
    pub fn quantile(&self, q: f64) -> f64 {
        let n = self.hist.len();
        let k = inverted_cdf_rank(n, q);
        if k == 0 {
            return f64::NAN;
        }
        let mut cum = 0u64;
        let mut units = self.hist.max();
        for v in self.hist.iter_recorded() {
            cum += v.count_at_value();
            if cum >= k {
                units = v.value_iterated_to();
                break;
            }
        }
        let est = self.hist.median_equivalent(units) as f64 / UNITS_PER_MS;
        if self.count > 0 && self.min <= self.max {
            est.clamp(self.min, self.max)
        } else {
            est
        }
    }

    /// The standard report (p50..p999, min, max, mean, count).
    pub fn report(&self) -> LatencyReport {
        LatencyReport {
            quantiles: REPORT_QUANTILES
                .iter()
                .map(|&(name, q)| (name.to_string(), self.quantile(q)))
                .collect(),
            min: self.min(),
            max: self.max(),
            mean: self.mean(),
            count: self.count,
        }
    }
}

/// Latency statistics of a full sample.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ExactLatency {
    /// The non-NaN values, sorted ascending (NaN values are ignored).
    sorted: Vec<f64>,
    sum: CompensatedSum,
}

impl ExactLatency {
    /// Builds from a full sample; NaN values are ignored.
    pub fn from_values(values: &[f64]) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let mut sum = CompensatedSum::new();
        for &v in &sorted {
            sum.add(v);
        }
        ExactLatency { sorted, sum }
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.sorted.len() as u64
    }

    /// 0-based index into the sorted values of the `inverted_cdf` quantile (`None` when empty).
    pub fn rank0(&self, q: f64) -> Option<usize> {
        let k = inverted_cdf_rank(self.count(), q);
        (k > 0).then(|| (k - 1) as usize)
    }

    /// numpy `quantile(values, q, method="inverted_cdf")`; NaN when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        self.rank0(q).map_or(f64::NAN, |i| self.sorted[i])
    }

    /// Smallest value; NaN when empty.
    pub fn min(&self) -> f64 {
        self.sorted.first().copied().unwrap_or(f64::NAN)
    }

    /// Largest value; NaN when empty.
    pub fn max(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(f64::NAN)
    }

    /// Arithmetic mean; NaN when empty.
    pub fn mean(&self) -> f64 {
        if self.sorted.is_empty() {
            f64::NAN
        } else {
            self.sum.value() / self.sorted.len() as f64
        }
    }

    /// The standard report (p50..p999, min, max, mean, count).
    pub fn report(&self) -> LatencyReport {
        LatencyReport {
            quantiles: REPORT_QUANTILES
                .iter()
                .map(|&(name, q)| (name.to_string(), self.quantile(q)))
                .collect(),
            min: self.min(),
            max: self.max(),
            mean: self.mean(),
            count: self.count(),
        }
    }
}

/// Summary values reported for a latency window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LatencyReport {
    /// `(name, value)` for each of [`REPORT_QUANTILES`], e.g. `("p99", 41.4)`.
    pub quantiles: Vec<(String, f64)>,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Number of values.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f64> {
        let mut s = 12345u64;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (s >> 11) as f64 / (1u64 << 53) as f64;
                10f64.powf(-3.0 + 9.0 * u)
            })
            .collect()
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / a.abs().max(b.abs())
    }

    #[test]
    fn round_non_negative_is_round() {
        let mut xs = vec![
            0.0,
            0.5,
            1.5,
            2.5,
            0.499_999_999_999_999_94,
            4_503_599_627_370_495.5,
            9_007_199_254_740_993.0,
            1e18,
        ];
        let mut x: f64 = 0.1234;
        for _ in 0..10_000 {
            x = (x * 7.31 + 0.17) % 1e7;
            xs.push(x);
            xs.push(x * 1e6);
            xs.push(x.floor() + 0.5);
        }
        for x in xs {
            assert_eq!(round_non_negative(x), x.round() as u64, "{x}");
        }
    }

    #[test]
    fn ranks() {
        assert_eq!(inverted_cdf_rank(0, 0.5), 0);
        assert_eq!(inverted_cdf_rank(1, 0.0), 1);
        assert_eq!(inverted_cdf_rank(10, 0.5), 5);
        assert_eq!(inverted_cdf_rank(10, 0.51), 6);
        assert_eq!(inverted_cdf_rank(10, 1.0), 10);
    }

    #[test]
    fn empty_and_single() {
        let s = LatencySummary::new();
        assert!(s.quantile(0.5).is_nan() && s.mean().is_nan() && s.min().is_nan());
        let e = ExactLatency::from_values(&[]);
        assert!(e.quantile(0.5).is_nan());
        let mut s = LatencySummary::new();
        s.record(3.25);
        assert_eq!(s.quantile(0.999), 3.25);
        assert_eq!(s.mean(), 3.25);
        assert_eq!(ExactLatency::from_values(&[3.25]).quantile(0.1), 3.25);
    }

    #[test]
    fn wide_range_accuracy_and_clamping() {
        let vs = values(20000);
        let mut s = LatencySummary::new();
        for &v in &vs {
            s.record(v);
        }
        let e = ExactLatency::from_values(&vs);
        for q in [0.0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert!(rel(s.quantile(q), e.quantile(q)) < 0.005, "q={q}");
        }
        let mut s = LatencySummary::new();
        for v in [f64::NAN, -1.0, f64::INFINITY, 1e300, 5.0] {
            s.record(v);
        }
        assert_eq!(s.count(), 4);
        assert_eq!(s.rejected(), 1);
        assert_eq!(s.min(), 0.0);
        assert_eq!(s.max(), LatencySummary::MAX_MS);
        assert!(rel(s.quantile(1.0), LatencySummary::MAX_MS) < 0.005);
    }

    #[test]
    fn sliding_window_matches_recomputation() {
        let vs = values(5000);
        let panes: Vec<LatencySummary> = vs
            .chunks(500)
            .map(|c| {
                let mut p = LatencySummary::new();
                c.iter().for_each(|&v| p.record(v));
                p
            })
            .collect();
        let width = 4;
        let mut window = LatencySummary::new();
        for (i, p) in panes.iter().enumerate() {
            window.merge(p);
            if i >= width {
                window.unmerge(&panes[i - width]);
            }
            let start = i.saturating_sub(width - 1);
            let mut fresh = LatencySummary::new();
            for q in &panes[start..=i] {
                fresh.merge(q);
            }
            assert_eq!(window.count(), fresh.count());
            assert!(rel(window.mean(), fresh.mean()) < 1e-12);
            for q in [0.5, 0.9, 0.99] {
                assert_eq!(window.quantile(q), fresh.quantile(q));
            }
            let exact = ExactLatency::from_values(&vs[start * 500..(i + 1) * 500]);
            assert!(rel(window.max(), exact.max()) < 0.01);
            assert!(rel(window.min(), exact.min()) < 0.01);
        }
        let empty: LatencySummary =
            serde_json::from_str(&serde_json::to_string(&LatencySummary::new()).unwrap()).unwrap();
        assert!(empty.is_empty());
        let json = serde_json::to_string(&window).unwrap();
        let back: LatencySummary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, window);
        assert_eq!(back.quantile(0.9), window.quantile(0.9));
    }
}
