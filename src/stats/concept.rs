//! Concept-drift detectors ported from river 0.26.1: [`Adwin`], [`PageHinkley`] and [`Ddm`].
//!
//! Every detector has `update(x) -> bool`, which returns `drift_detected` immediately after the
//! update. As in river, the update that *follows* a detection first replaces the detector's
//! state with a brand-new one (same parameters) and then processes its element.
//!
//! The arithmetic (operation order included) follows river's implementation so that detection
//! indices match exactly.

use serde::{Deserialize, Serialize};

/// One level of ADWIN's exponential histogram: up to `max_buckets + 1` summaries
/// (total, variance) of `2^level` elements each, oldest first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct AdwinLevel {
    totals: Vec<f64>,
    variances: Vec<f64>,
}

impl AdwinLevel {
    fn new() -> Self {
        AdwinLevel {
            totals: Vec::new(),
            variances: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.totals.len()
    }

    fn push(&mut self, total: f64, variance: f64) {
        self.totals.push(total);
        self.variances.push(variance);
    }

    /// Removes the `n` oldest summaries (saturating).
    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.totals.len());
        self.totals.drain(..n);
        self.variances.drain(..n);
    }

    fn total_at(&self, i: usize) -> f64 {
        self.totals.get(i).copied().unwrap_or(0.0)
    }

    fn variance_at(&self, i: usize) -> f64 {
        self.variances.get(i).copied().unwrap_or(0.0)
    }
}

/// ADWIN (ADaptive WINdowing) drift detector, a port of river's `drift.ADWIN`
/// (`AdaptiveWindowing` helper, river 0.26.1).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Adwin {
    /// Significance value δ.
    pub delta: f64,
    /// The cut test runs only every `clock` updates (values below 1 are treated as 1).
    pub clock: u32,
    /// Maximum number of summaries per level before two are merged (values below 1 are treated as 1).
    pub max_buckets: usize,
    /// Minimum length of each sub-window at a split point.
    pub min_window_length: u32,
    /// No cut test until the window is wider than this.
    pub grace_period: u32,
    total: f64,
    variance: f64,
    width: f64,
    tick: u64,
    n_detections: u64,
    levels: Vec<AdwinLevel>,
    drift_detected: bool,
}

impl Default for Adwin {
    /// river defaults: delta=0.002, clock=32, max_buckets=5, min_window_length=5, grace_period=10.
    fn default() -> Self {
        Adwin::new(0.002, 32, 5, 5, 10)
    }
}

impl Adwin {
    /// Creates a detector with the given river parameters.
    pub fn new(
        delta: f64,
        clock: u32,
        max_buckets: usize,
        min_window_length: u32,
        grace_period: u32,
    ) -> Self {
        Adwin {
            delta,
            clock,
            max_buckets,
            min_window_length,
            grace_period,
            total: 0.0,
            variance: 0.0,
            width: 0.0,
            tick: 0,
            n_detections: 0,
            levels: vec![AdwinLevel::new()],
            drift_detected: false,
        }
    }

    fn reset(&mut self) {
        *self = Adwin::new(
            self.delta,
            self.clock,
            self.max_buckets,
            self.min_window_length,
            self.grace_period,
        );
    }

    /// Whether the last update detected a drift.
    pub fn drift_detected(&self) -> bool {
        self.drift_detected
    }

    /// Current window width (number of elements).
    pub fn width(&self) -> f64 {
        self.width
    }

    /// Sum of the elements in the window.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// Running sum of squared deviations of the window (river's `variance`).
    pub fn variance(&self) -> f64 {
        self.variance
    }

    /// Mean of the window (0.0 when empty).
    pub fn estimation(&self) -> f64 {
        if self.width == 0.0 {
            0.0
        } else {
            self.total / self.width
        }
    }

    /// Number of detections since the last reset (0 or 1 in practice, river semantics).
    pub fn n_detections(&self) -> u64 {
        self.n_detections
    }

    /// Feeds one value; returns whether a drift was detected by this update.
    pub fn update(&mut self, x: f64) -> bool {
        if self.drift_detected {
            self.reset();
        }
        if x.is_nan() {
            return false;
        }
        self.insert_element(x, 0.0);
        self.drift_detected = self.detect_change();
        self.drift_detected
    }

    fn cap(&self) -> usize {
        self.max_buckets.max(1)
    }

    fn insert_element(&mut self, value: f64, variance: f64) {
        if self.levels.is_empty() {
            self.levels.push(AdwinLevel::new());
        }
        self.levels[0].push(value, variance);
        self.width += 1.0;
        let mut incremental_variance = 0.0;
        if self.width > 1.0 {
            let delta_v = value - self.total / (self.width - 1.0);
            incremental_variance = (self.width - 1.0) * delta_v * delta_v / self.width;
        }
        self.variance += incremental_variance;
        self.total += value;
        self.compress_buckets();
    }

    fn compress_buckets(&mut self) {
        let cap = self.cap();
        let mut idx = 0usize;
        while idx < self.levels.len() && self.levels[idx].len() == cap + 1 {
            let n1 = (idx as f64).exp2();
            let t0 = self.levels[idx].total_at(0);
            let t1 = self.levels[idx].total_at(1);
            let v0 = self.levels[idx].variance_at(0);
            let v1 = self.levels[idx].variance_at(1);
            let mu1 = t0 / n1;
            let mu2 = t1 / n1;
            let total12 = t0 + t1;
            let temp = n1 * 0.5 * (mu1 - mu2) * (mu1 - mu2);
            let v12 = v0 + v1 + temp;
            if idx + 1 >= self.levels.len() {
                self.levels.push(AdwinLevel::new());
            }
            self.levels[idx + 1].push(total12, v12);
            self.levels[idx].drop_front(2);
            if self.levels[idx + 1].len() <= cap {
                break;
            }
            idx += 1;
        }
    }

    fn delete_element(&mut self) {
        let Some(last) = self.levels.len().checked_sub(1) else {
            return;
        };
        let n = (last as f64).exp2();
        let u = self.levels[last].total_at(0);
        let v = self.levels[last].variance_at(0);
        let mu = u / n;
        self.width -= n;
        self.total -= u;
        let mu_window = self.total / self.width;
        let inc = v + n * self.width * (mu - mu_window) * (mu - mu_window) / (n + self.width);
        self.variance -= inc;
        self.levels[last].drop_front(1);
        if self.levels[last].len() == 0 && self.levels.len() > 1 {
            self.levels.pop();
        }
    }

    fn detect_change(&mut self) -> bool {
        let mut change_detected = false;
        self.tick += 1;
        let clock = u64::from(self.clock.max(1));
        let mwl = f64::from(self.min_window_length);
        if self.tick.is_multiple_of(clock) && self.width > f64::from(self.grace_period) {
            let mut reduce_width = true;
            while reduce_width {
                reduce_width = false;
                let mut n0 = 0.0_f64;
                let mut n1 = self.width;
                let mut u0 = 0.0_f64;
                let mut u1 = self.total;
                let mut cut = false;
                'outer: for idx in (0..self.levels.len()).rev() {
                    let bucket_size = (idx as f64).exp2();
                    let len = self.levels[idx].len();
                    for k in 0..len {
                        n0 += bucket_size;
                        n1 -= bucket_size;
                        let t = self.levels[idx].total_at(k);
                        u0 += t;
                        u1 -= t;
                        if idx == 0 && k == len - 1 {
                            break 'outer;
                        }
                        let delta_mean = (u0 / n0) - (u1 / n1);
                        if n1 >= mwl && n0 >= mwl && self.evaluate_cut(n0, n1, delta_mean) {
                            change_detected = true;
                            cut = true;
                            break 'outer;
                        }
                    }
                }
                if cut && self.width > 0.0 {
                    reduce_width = true;
                    self.delete_element();
                }
            }
        }
        if change_detected {
            self.n_detections += 1;
        }
        change_detected
    }

    fn evaluate_cut(&self, n0: f64, n1: f64, delta_mean: f64) -> bool {
        let mwl = f64::from(self.min_window_length);
        let delta_prime = (2.0 * self.width.ln() / self.delta).ln();
        let m_recip = 1.0 / (n0 - mwl + 1.0) + 1.0 / (n1 - mwl + 1.0);
        let epsilon = (2.0 * m_recip * (self.variance / self.width) * delta_prime).sqrt()
            + 2.0 / 3.0 * delta_prime * m_recip;
        delta_mean.abs() > epsilon
    }
}

/// Which direction(s) of change [`PageHinkley`] reports.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PhMode {
    /// Increases of the mean only.
    Up,
    /// Decreases of the mean only.
    Down,
    /// Both directions (river default).
    #[default]
    Both,
}

impl PhMode {
    /// Parses river's mode strings `"up"`, `"down"`, `"both"`.
    pub fn parse(s: &str) -> Option<PhMode> {
        match s {
            "up" => Some(PhMode::Up),
            "down" => Some(PhMode::Down),
            "both" => Some(PhMode::Both),
            _ => None,
        }
    }
}

/// Page-Hinkley test, a port of river's `drift.PageHinkley`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PageHinkley {
    /// Minimum number of instances before a drift can be flagged.
    pub min_instances: u64,
    /// Magnitude of tolerated changes.
    pub delta: f64,
    /// Detection threshold (lambda).
    pub threshold: f64,
    /// Forgetting factor of the cumulative sums.
    pub alpha: f64,
    /// Direction(s) monitored.
    pub mode: PhMode,
    n: f64,
    mean: f64,
    sum_increase: f64,
    sum_decrease: f64,
    /// `None` stands for river's initial +inf.
    min_increase: Option<f64>,
    max_decrease: f64,
    drift_detected: bool,
}

impl Default for PageHinkley {
    /// river defaults: min_instances=30, delta=0.005, threshold=50, alpha=0.9999, mode=both.
    fn default() -> Self {
        PageHinkley::new(30, 0.005, 50.0, 1.0 - 0.0001, PhMode::Both)
    }
}

impl PageHinkley {
    /// Creates a detector with the given river parameters.
    pub fn new(min_instances: u64, delta: f64, threshold: f64, alpha: f64, mode: PhMode) -> Self {
        PageHinkley {
            min_instances,
            delta,
            threshold,
            alpha,
            mode,
            n: 0.0,
            mean: 0.0,
            sum_increase: 0.0,
            sum_decrease: 0.0,
            min_increase: None,
            max_decrease: -1.0,
            drift_detected: false,
        }
    }

    fn reset(&mut self) {
        *self = PageHinkley::new(
            self.min_instances,
            self.delta,
            self.threshold,
            self.alpha,
            self.mode,
        );
    }

    /// Whether the last update detected a drift.
    pub fn drift_detected(&self) -> bool {
        self.drift_detected
    }

    /// Feeds one value; returns whether a drift was detected by this update.
    pub fn update(&mut self, x: f64) -> bool {
        if self.drift_detected {
            self.reset();
        }
        if x.is_nan() {
            return false;
        }
        // river stats.Mean: n += 1; mean += (1 / n) * (x - mean)
        self.n += 1.0;
        self.mean += (1.0 / self.n) * (x - self.mean);
        let dev = x - self.mean;
        self.sum_increase = self.alpha * self.sum_increase + dev - self.delta;
        self.sum_decrease = self.alpha * self.sum_decrease + dev + self.delta;
        if self.sum_increase < self.min_increase.unwrap_or(f64::INFINITY) {
            self.min_increase = Some(self.sum_increase);
        }
        if self.sum_decrease > self.max_decrease {
            self.max_decrease = self.sum_decrease;
        }
        if self.n >= self.min_instances as f64 {
            let test_increase = self.sum_increase - self.min_increase.unwrap_or(f64::INFINITY);
            let test_decrease = self.max_decrease - self.sum_decrease;
            self.drift_detected = match self.mode {
                PhMode::Up => test_increase > self.threshold,
                PhMode::Down => test_decrease > self.threshold,
                PhMode::Both => test_increase > self.threshold || test_decrease > self.threshold,
            };
        }
        self.drift_detected
    }
}

/// Drift Detection Method, a port of river's `drift.binary.DDM`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Ddm {
    /// Number of observations before detection is possible (strictly more are needed).
    pub warm_start: u64,
    /// Warning threshold (multiples of `s_min`).
    pub warning_threshold: f64,
    /// Drift threshold (multiples of `s_min`).
    pub drift_threshold: f64,
    n: f64,
    p: f64,
    /// `None` until set after the warm start (river's `None`).
    p_min: Option<f64>,
    s_min: Option<f64>,
    /// `None` stands for river's initial +inf.
    ps_min: Option<f64>,
    warning_detected: bool,
    drift_detected: bool,
}

impl Default for Ddm {
    /// river defaults: warm_start=30, warning_threshold=2.0, drift_threshold=3.0.
    fn default() -> Self {
        Ddm::new(30, 2.0, 3.0)
    }
}

impl Ddm {
    /// Creates a detector with the given river parameters.
    pub fn new(warm_start: u64, warning_threshold: f64, drift_threshold: f64) -> Self {
        Ddm {
            warm_start,
            warning_threshold,
            drift_threshold,
            n: 0.0,
            p: 0.0,
            p_min: None,
            s_min: None,
            ps_min: None,
            warning_detected: false,
            drift_detected: false,
        }
    }

    fn reset(&mut self) {
        *self = Ddm::new(
            self.warm_start,
            self.warning_threshold,
            self.drift_threshold,
        );
    }

    /// Whether the last update detected a drift.
    pub fn drift_detected(&self) -> bool {
        self.drift_detected
    }

    /// Whether the detector is in the warning zone.
    pub fn warning_detected(&self) -> bool {
        self.warning_detected
    }

    /// Feeds one value (1 = error, 0 = correct); returns whether a drift was detected.
    pub fn update(&mut self, x: f64) -> bool {
        if self.drift_detected {
            self.reset();
        }
        if x.is_nan() {
            return false;
        }
        self.n += 1.0;
        self.p += (1.0 / self.n) * (x - self.p);
        let p_i = self.p;
        let s_i = (p_i * (1.0 - p_i) / self.n).sqrt();
        if self.n > self.warm_start as f64 {
            if p_i + s_i <= self.ps_min.unwrap_or(f64::INFINITY) {
                self.p_min = Some(p_i);
                self.s_min = Some(s_i);
                self.ps_min = Some(p_i + s_i);
            }
            // p_min/s_min are set on the first update past the warm start unless p_i + s_i
            // is NaN; NaN then makes both comparisons false, like river's arithmetic would.
            let p_min = self.p_min.unwrap_or(f64::NAN);
            let s_min = self.s_min.unwrap_or(f64::NAN);
            self.warning_detected = p_i + s_i > p_min + self.warning_threshold * s_min;
            if p_i + s_i > p_min + self.drift_threshold * s_min {
                self.drift_detected = true;
                self.warning_detected = false;
            }
        }
        self.drift_detected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_river() {
        let a = Adwin::default();
        assert_eq!((a.delta, a.clock, a.max_buckets), (0.002, 32, 5));
        assert_eq!((a.min_window_length, a.grace_period), (5, 10));
        let p = PageHinkley::default();
        assert_eq!(
            (p.min_instances, p.threshold, p.mode),
            (30, 50.0, PhMode::Both)
        );
        let d = Ddm::default();
        assert_eq!((d.warm_start, d.drift_threshold), (30, 3.0));
    }

    #[test]
    fn short_and_constant_streams_do_not_detect() {
        let mut a = Adwin::new(0.002, 1, 5, 5, 10);
        let mut p = PageHinkley::default();
        let mut d = Ddm::default();
        for _ in 0..5 {
            assert!(!a.update(1.0));
            assert!(!p.update(1.0));
            assert!(!d.update(1.0));
        }
        for _ in 0..2000 {
            assert!(!a.update(0.0));
        }
    }

    #[test]
    fn adwin_detects_shift_and_resets() {
        let mut a = Adwin::new(0.002, 1, 5, 5, 10);
        let mut hits = vec![];
        for i in 0..400 {
            let x = if i < 200 { 0.0 } else { 1.0 };
            if a.update(x) {
                hits.push(i);
            }
        }
        assert!(!hits.is_empty());
        let w = a.width();
        assert!(a.drift_detected() || w > 0.0);
        // Checkpoint round trip (JSON) mid-stream keeps the same behaviour.
        let mut p = PageHinkley::default();
        let mut d = Ddm::default();
        for i in 0..100 {
            p.update((i % 3 == 0) as u8 as f64);
            d.update((i % 3 == 0) as u8 as f64);
        }
        let a2: Adwin = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        let p2: PageHinkley = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        let d2: Ddm = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!((a2, p2, d2), (a.clone(), p.clone(), d.clone()));
        let fresh: PageHinkley =
            serde_json::from_str(&serde_json::to_string(&PageHinkley::default()).unwrap()).unwrap();
        assert_eq!(fresh, PageHinkley::default());
        let fresh: Ddm =
            serde_json::from_str(&serde_json::to_string(&Ddm::default()).unwrap()).unwrap();
        assert_eq!(fresh, Ddm::default());
        // NaN input is ignored.
        assert!(!p.update(f64::NAN) && !d.update(f64::NAN) && !a.update(f64::NAN));
        // Degenerate parameters do not panic.
        let mut b = Adwin::new(0.5, 0, 0, 0, 0);
        for i in 0..300 {
            b.update((i % 7) as f64);
        }
    }
}
