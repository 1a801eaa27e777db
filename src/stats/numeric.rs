//! Numerical drift: exact statistics over full samples, and the streaming path
//! (a [`NumericProfile`] built once from the reference, per-pane [`NumericPane`] summaries that
//! can be merged/unmerged for sliding windows, and [`numeric_drift`] over a window summary).
//!
//! Streaming design: the profile holds one sorted list of finite edges, the union of fine edges
//! and the inner coarse edges used for PSI/KL/JS/Hellinger. Fine edges are the distinct
//! reference values when there are at most `max_fine_bins` of them; otherwise they follow the
//! reference quantiles where it is dense (at most 2 n / `max_fine_bins` reference values inside
//! a bin) and take every value where it is sparse (tails, outliers). The bins that stay wide
//! are then split with the rest of the budget; in all, at most `max_fine_bins` fine edges and
//! at most twice the distinct reference values. One bin lookup per value serves every
//! statistic: coarse counts are exact sums of fine counts, KS is evaluated at every fine edge
//! (exact when the reference has at most `max_fine_bins` distinct values and the current values
//! fall on them), and Wasserstein uses per-bin counts and sums of value offsets: exact outside
//! the reference range, and inside it bounded per bin from both sides (see `BinTerms`).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::ks::{self, KsResult};
use super::shares::{share_stats, ShareStats};

// ---------------------------------------------------------------------------
// Exact path
// ---------------------------------------------------------------------------

/// Population standard deviation (ddof = 0) of the non-NaN values; NaN when there are none.
pub fn reference_std(x: &[f64]) -> f64 {
    let vals: Vec<f64> = x.iter().copied().filter(|v| !v.is_nan()).collect();
    if vals.is_empty() {
        return f64::NAN;
    }
    let n = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / n;
    let ss: f64 = vals.iter().map(|v| (v - mean) * (v - mean)).sum();
    (ss / n).sqrt()
}

/// `scipy.stats.wasserstein_distance(u, v)` = integral of |F_u - F_v|. NaN if a sample is empty.
pub fn wasserstein_distance(u: &[f64], v: &[f64]) -> f64 {
    let a = ks::sorted_finite(u);
    let b = ks::sorted_finite(v);
    wasserstein_sorted(&a, &b)
}

/// Wasserstein-1 distance of two sorted samples.
pub fn wasserstein_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return f64::NAN;
    }
    let mut all: Vec<f64> = Vec::with_capacity(n1 + n2);
    all.extend_from_slice(a);
    all.extend_from_slice(b);
    all.sort_by(|x, y| x.partial_cmp(y).expect("no NaN"));
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    for k in 0..all.len() - 1 {
        let x = all[k];
        while i < n1 && a[i] <= x {
            i += 1;
        }
        while j < n2 && b[j] <= x {
            j += 1;
        }
        let d = (i as f64 / n1 as f64 - j as f64 / n2 as f64).abs();
        total += d * (all[k + 1] - x);
    }
    total
}

/// Evidently's normed Wasserstein: `w / max(std, 0.001)`.
pub fn wasserstein_normed(w: f64, reference_std: f64) -> f64 {
    w / reference_std.max(0.001)
}

/// Counts per bin with `e[i] <= v < e[i+1]`, the last bin closed (`v == e[K]` included).
/// Values outside `[e[0], e[K]]` and NaN are not counted (numpy.histogram semantics).
pub fn bin_counts(values: &[f64], edges: &[f64]) -> Vec<u64> {
    if edges.len() < 2 {
        return Vec::new();
    }
    let k = edges.len() - 1;
    let mut counts = vec![0u64; k];
    for &v in values {
        if v.is_nan() || v < edges[0] || v > edges[k] {
            continue;
        }
        let idx = if v == edges[k] {
            k - 1
        } else {
            edges.partition_point(|&e| e <= v) - 1
        };
        counts[idx.min(k - 1)] += 1;
    }
    counts
}

/// `numpy.percentile(sorted, q)` with the default `linear` method (`q` in percent).
pub fn percentile_linear(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let qq = q / 100.0;
    // numpy: n*q + (alpha + q*(1 - alpha - beta)) - 1 with alpha = beta = 1
    let virtual_index = n as f64 * qq + (1.0 - qq) - 1.0;
    if virtual_index >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if virtual_index <= 0.0 {
        return sorted[0];
    }
    let prev = virtual_index.floor();
    let gamma = virtual_index - prev;
    let a = sorted[prev as usize];
    let b = sorted[(prev as usize + 1).min(n - 1)];
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// Default coarse edges: `-inf`, the reference deciles (numpy linear, duplicates removed), `+inf`.
pub fn reference_decile_edges(reference: &[f64]) -> Vec<f64> {
    let sorted = ks::sorted_finite(reference);
    let mut edges = vec![f64::NEG_INFINITY];
    if !sorted.is_empty() {
        for q in 1..10 {
            let p = percentile_linear(&sorted, (q * 10) as f64);
            if *edges.last().expect("non-empty") != p {
                edges.push(p);
            }
        }
    }
    edges.push(f64::INFINITY);
    edges
}

/// Number of distinct non-NaN values.
pub fn count_distinct(values: &[f64]) -> u64 {
    let s = ks::sorted_finite(values);
    let mut n = 0u64;
    for (i, v) in s.iter().enumerate() {
        if i == 0 || *v != s[i - 1] {
            n += 1;
        }
    }
    n
}

/// All numerical drift statistics (exact or streaming).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct NumericDrift {
    /// Reference sample size (non-NaN values).
    pub n_reference: u64,
    /// Current sample size (non-NaN values).
    pub n_current: u64,
    /// Number of distinct reference values.
    pub n_distinct_reference: u64,
    /// KS statistic and p-values.
    pub ks: KsResult,
    /// Wasserstein-1 distance.
    pub wasserstein: f64,
    /// Wasserstein divided by max(reference std, 0.001).
    pub wasserstein_normed: f64,
    /// Reference standard deviation (ddof 0).
    pub reference_std: f64,
    /// Reference counts per coarse bin.
    pub reference_bin_counts: Vec<u64>,
    /// Current counts per coarse bin.
    pub current_bin_counts: Vec<u64>,
    /// PSI / KL / JS / Hellinger over the coarse bins.
    pub shares: ShareStats,
}

/// Exact numerical drift from full samples. `bin_edges` are the coarse edges (README bin rule);
/// `None` uses [`reference_decile_edges`].
pub fn numeric_drift_exact(
    reference: &[f64],
    current: &[f64],
    bin_edges: Option<&[f64]>,
) -> NumericDrift {
    let a = ks::sorted_finite(reference);
    let b = ks::sorted_finite(current);
    let edges = match bin_edges {
        Some(e) => e.to_vec(),
        None => reference_decile_edges(&a),
    };
    let (d, num) = ks::ks_statistic_sorted(&a, &b);
    let ksr = ks::ks_from_counts(d, num, a.len() as u64, b.len() as u64, None);
    let w = wasserstein_sorted(&a, &b);
    let std = reference_std(&a);
    let rc = bin_counts(&a, &edges);
    let cc = bin_counts(&b, &edges);
    let shares = share_stats(&rc, a.len() as u64, &cc, b.len() as u64);
    NumericDrift {
        n_reference: a.len() as u64,
        n_current: b.len() as u64,
        n_distinct_reference: count_distinct(&a),
        ks: ksr,
        wasserstein: w,
        wasserstein_normed: wasserstein_normed(w, std),
        reference_std: std,
        reference_bin_counts: rc,
        current_bin_counts: cc,
        shares,
    }
}

// ---------------------------------------------------------------------------
// Streaming path
// ---------------------------------------------------------------------------

/// Options for building a [`NumericProfile`].
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct NumericProfileConfig {
    /// Maximum number of fine bins (distinct reference values are used as edges when there are
    /// at most this many, so F_ref is exact).
    pub max_fine_bins: usize,
    /// Cap on the work of the exact KS p-value (about max(n1,n2) x band width operations);
    /// beyond it the asymptotic p-value is used. `None` follows scipy's `auto` rule only.
    pub ks_exact_work_budget: Option<f64>,
}

impl Default for NumericProfileConfig {
    fn default() -> Self {
        NumericProfileConfig {
            max_fine_bins: 2048,
            ks_exact_work_budget: Some(2.0e7),
        }
    }
}

/// Uniform-grid index into sorted edges: cell -> range of candidate edge positions.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct BinIndex {
    lo: f64,
    hi: f64,
    inv_w: f64,
    cells: usize,
    table: Vec<u32>,
}

impl BinIndex {
    fn new(edges: &[f64]) -> Self {
        if edges.len() < 2 {
            return BinIndex {
                lo: edges.first().copied().unwrap_or(0.0),
                hi: edges.last().copied().unwrap_or(0.0),
                inv_w: 0.0,
                cells: 0,
                table: Vec::new(),
            };
        }
        let lo = edges[0];
        let hi = edges[edges.len() - 1];
        let cells = (edges.len() * 8).clamp(64, 1 << 17);
        let span = hi - lo;
        let inv_w = if span.is_finite() && span > 0.0 {
            cells as f64 / span
        } else {
            0.0
        };
        let mut table = Vec::with_capacity(cells + 1);
        if inv_w > 0.0 {
            for g in 0..=cells {
                let x = lo + g as f64 / inv_w;
                table.push(edges.partition_point(|&e| e <= x) as u32);
            }
            table[cells] = edges.len() as u32;
        }
        BinIndex {
            lo,
            hi,
            inv_w,
            cells,
            table,
        }
    }
}

/// Uniform cells per finite edge of the hot-path lookup grid.
const CELLS_PER_EDGE: usize = 4;

/// Cells holding up to this many edges are resolved with this many comparisons, without
/// branches; fuller cells (dense regions of skewed references) are bisected.
const SCAN_K: usize = 4;

/// Cell -> first edge position, as `u16` while the edges allow (half the cache footprint).
#[derive(Clone, Debug, Default)]
enum CellStarts {
    #[default]
    None,
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

/// Hot-path bin lookup (not serialized; derived from the edges). The grid maps a value to a
/// cell with a monotone function, and `starts[g]` counts the edges whose own cell is below `g`:
/// every such edge is `< v` and every edge of a higher cell is `> v`, so the bin index is
/// `starts[g]` plus the edges of cell `g` that are `<= v`, exact without correction steps, and
/// and since edges of higher cells are `> v`, comparing a fixed [`SCAN_K`] edges from
/// `starts[g]` on (past the end: +inf) counts exactly the right ones whenever the cell holds
/// at most that many. No data-dependent branch in the common case, so lookups of consecutive
/// values overlap in the pipeline.
#[derive(Clone, Debug, Default)]
struct FastIndex {
    lo: f64,
    hi: f64,
    inv_w: f64,
    last_cell: usize,
    starts: CellStarts,
    /// `[e0, e0, e1, ..., e_last, +inf x SCAN_K]`: `padded[j]` is the anchor of bin `j` (its
    /// lower edge; e0 for the bottom bin) and `padded[i + 1]` is edge `i`.
    padded: Vec<f64>,
}

impl FastIndex {
    fn new(edges: &[f64]) -> Self {
        let first = edges.first().copied().unwrap_or(0.0);
        let mut padded = Vec::with_capacity(edges.len() + 1 + SCAN_K);
        padded.push(first);
        padded.extend_from_slice(edges);
        padded.extend_from_slice(&[f64::INFINITY; SCAN_K]);
        let mut ix = FastIndex {
            lo: first,
            hi: edges.last().copied().unwrap_or(0.0),
            padded,
            ..FastIndex::default()
        };
        if edges.len() < 2 {
            return ix;
        }
        let cells = (edges.len() * CELLS_PER_EDGE).clamp(64, 1 << 18);
        let span = ix.hi - ix.lo;
        let inv_w = cells as f64 / span;
        if !(span.is_finite() && span > 0.0 && inv_w.is_finite() && inv_w > 0.0) {
            return ix;
        }
        ix.inv_w = inv_w;
        ix.last_cell = cells - 1;
        let mut starts = vec![0u32; cells + 1];
        for &e in edges {
            starts[ix.cell(e) + 1] += 1;
        }
        for g in 1..=cells {
            starts[g] += starts[g - 1];
        }
        ix.starts = if edges.len() <= u16::MAX as usize {
            CellStarts::Narrow(starts.iter().map(|&x| x as u16).collect())
        } else {
            CellStarts::Wide(starts)
        };
        ix
    }

    /// The cell of `v` in `[lo, hi]` (edges, and values the range checks let through):
    /// monotone non-decreasing in `v` (subtraction, multiplication by a positive constant and
    /// rounding all preserve order), the same function for edges and values.
    #[inline(always)]
    fn cell(&self, v: f64) -> usize {
        (round_to_u64((v - self.lo) * self.inv_w) as usize).min(self.last_cell)
    }

    /// Number of edges `<= v` for non-NaN `v` (bins (-inf,e0),[e0,e1),...,[e_last,inf)).
    #[inline(always)]
    fn find(&self, edges: &[f64], v: f64) -> usize {
        let len = edges.len();
        if len == 0 || v < self.lo {
            return 0;
        }
        if v >= self.hi {
            return len;
        }
        let g = self.cell(v);
        let (a, b) = match &self.starts {
            CellStarts::Narrow(t) => (t[g] as usize, t[g + 1] as usize),
            CellStarts::Wide(t) => (t[g] as usize, t[g + 1] as usize),
            CellStarts::None => return edges.partition_point(|&e| e <= v),
        };
        if b - a <= SCAN_K {
            let cand: &[f64; SCAN_K] = self.padded[a + 1..a + 1 + SCAN_K]
                .try_into()
                .expect("SCAN_K edges");
            a + cand.iter().map(|&e| (e <= v) as usize).sum::<usize>()
        } else {
            a + edges[a..b].partition_point(|&e| e <= v)
        }
    }

    /// [`FastIndex::find`] for each of `values` (non-NaN) into `bins`, the cell table chosen
    /// once for all of them.
    #[inline(always)]
    fn find_all(&self, edges: &[f64], values: &[f64], bins: &mut [u32]) {
        match &self.starts {
            CellStarts::Narrow(t) => self.find_all_in(t, edges, values, bins),
            CellStarts::Wide(t) => self.find_all_in(t, edges, values, bins),
            CellStarts::None => {
                for (b, &v) in bins.iter_mut().zip(values) {
                    *b = self.find(edges, v) as u32;
                }
            }
        }
    }

    #[inline(always)]
    fn find_all_in<T: Copy + Into<u32>>(
        &self,
        starts: &[T],
        edges: &[f64],
        values: &[f64],
        bins: &mut [u32],
    ) {
        let len = edges.len();
        // The index's fields in locals (the stores to `bins` would otherwise make the compiler
        // read them again for every value), and the tables cut to the lengths they are built
        // with — a start for every cell and the one after it, the edges and their padding — so
        // that the indexing below needs no checks.
        let (lo, hi, last_cell) = (self.lo, self.hi, self.last_cell);
        let starts = &starts[..last_cell + 2];
        let padded = &self.padded[..len + 1 + SCAN_K];
        for (b, &v) in bins.iter_mut().zip(values) {
            let j = if v < lo {
                0
            } else if v >= hi {
                len
            } else {
                let g = self.cell(v);
                let (a, z) = (starts[g].into() as usize, starts[g + 1].into() as usize);
                if z - a <= SCAN_K {
                    // (starts count edges: never more than `len`)
                    let a = a.min(len);
                    let cand: &[f64; SCAN_K] = padded[a + 1..a + 1 + SCAN_K]
                        .try_into()
                        .expect("SCAN_K edges");
                    a + cand.iter().map(|&e| (e <= v) as usize).sum::<usize>()
                } else {
                    a + edges[a..z].partition_point(|&e| e <= v)
                }
            };
            *b = j as u32;
        }
    }
}

/// `x` rounded to the nearest integer (ties to even) for `0 <= x < 2^51`, with one addition
/// instead of a saturating conversion: adding 2^52 leaves exactly the rounded integer in the
/// low bits of the sum. Monotone non-decreasing over that range; for anything else (the cells
/// never see it) the result is some integer, which callers clamp.
#[inline(always)]
fn round_to_u64(x: f64) -> u64 {
    const TWO_52: f64 = 4_503_599_627_370_496.0;
    (x + TWO_52).to_bits().wrapping_sub(TWO_52.to_bits())
}

/// Adds non-NaN value `v`, whose union bin is `j`, to per-bin accumulators; `anchors[j]`
/// is bin `j`'s anchor, its lower edge (the first edge for the bottom bin): the index's
/// `padded` edges.
#[inline(always)]
fn add_to_bin(anchors: &[f64], hot: &mut [HotAcc], eq: &mut [u64], j: usize, v: f64) {
    let anchor = anchors[j];
    let b = &mut hot[j];
    b.count += 1;
    b.offset_sum += v - anchor;
    if j > 0 && v == anchor {
        eq[j] += 1;
    }
}

/// Reference-side terms of the window statistics, derived from the profile (not serialized):
/// one f64 array per term, indexed by union bin (so that pairs of bins load as pairs); counts
/// are exact in f64 far beyond any reference size.
#[derive(Clone, Debug, Default)]
struct EvalCache {
    /// Reference count up to the end of the bin.
    cum: Vec<f64>,
    /// Reference count below the bin plus the reference values equal to its lower edge.
    at_edge: Vec<f64>,
    /// Width of the bin (interior bins; 0 for the outer ones).
    width: Vec<f64>,
    /// Outer bins: `|S_c / n_c - S_r / n_r|` is their whole Wasserstein integral, weighted 1;
    /// interior bins 0 (see [`BinTerms`]).
    outer: Vec<f64>,
    /// `F_ref(end) * width - S_ref / n_ref`: the reference part of an outer bin's Wasserstein
    /// integral (S_ref the bin's offset sum).
    w_ref: Vec<f64>,
    /// F_ref at the bin's lower edge (values equal to it included) and at its end.
    f_lo: Vec<f64>,
    f_hi: Vec<f64>,
    /// Mean offset from the lower edge of the reference values inside the bin (those not equal
    /// to the edge; 0 when there are none).
    mid: Vec<f64>,
    /// Union bins of each coarse bin (consecutive ranges: the union edges include the inner
    /// coarse edges).
    coarse_ranges: Vec<std::ops::Range<usize>>,
}

impl EvalCache {
    fn new(p: &NumericProfile) -> Self {
        let nb = p.ref_bins.len();
        let nr = p.n_ref as f64;
        let mut c = EvalCache::default();
        let mut cr = 0u64;
        for (j, rb) in p.ref_bins.iter().enumerate() {
            let is_outer = j == 0 || j == nb - 1;
            c.at_edge.push((cr + rb.eq) as f64);
            c.f_lo.push((cr + rb.eq) as f64 / nr);
            cr += rb.count;
            c.cum.push(cr as f64);
            c.f_hi.push(cr as f64 / nr);
            let width = if is_outer {
                0.0
            } else {
                p.edges[j] - p.edges[j - 1]
            };
            c.width.push(width);
            c.outer.push(if is_outer { 1.0 } else { 0.0 });
            c.w_ref.push(cr as f64 / nr * width - rb.offset_sum / nr);
            let inside = rb.count - rb.eq;
            c.mid.push(if is_outer || inside == 0 {
                0.0
            } else {
                (rb.offset_sum / inside as f64).clamp(0.0, width)
            });
        }
        let mut coarse_ranges = vec![0..0; p.ref_coarse.len()];
        for (j, &k) in p.coarse_of_bin.iter().enumerate() {
            let r = &mut coarse_ranges[k as usize];
            if r.start == r.end {
                *r = j..j + 1;
            } else {
                r.end = j + 1;
            }
        }
        debug_assert!(
            coarse_ranges
                .iter()
                .try_fold(0, |end, r| (r.start == end || r.start == r.end)
                    .then_some(r.end.max(end)))
                == Some(nb),
            "coarse ranges partition the union bins in order"
        );
        c.coarse_ranges = coarse_ranges;
        c
    }

    /// Wasserstein integral of union bin `j` for a window with `at_edge` values below the bin
    /// or equal to its lower edge, `upto` up to its end, and offset sum `off` in the bin
    /// ([`BinTerms`]).
    #[inline(always)]
    fn bin_wasserstein(&self, j: usize, inv_nc: f64, at_edge: f64, upto: f64, off: f64) -> f64 {
        BinTerms {
            width: self.width[j],
            outer: self.outer[j],
            w_ref: self.w_ref[j],
            f_lo: self.f_lo[j],
            f_hi: self.f_hi[j],
            mid: self.mid[j],
        }
        .integral(inv_nc, at_edge, upto, off)
    }
}

/// The reference terms of one union bin's share of the Wasserstein integral ∫|F_r - F_c|.
///
/// Outer bins are exact from the offset sums: below the first edge F_r = 0 <= F_c, above the
/// last F_r = 1 >= F_c, so |F_r - F_c| keeps its sign and its integral is |S_c/n_c - S_r/n_r|.
///
/// Inside an interior bin `[a, a + width)` each ECDF jumps at the lower edge (values equal to
/// it), then climbs through the values inside the bin; counts and offset sums give each ECDF at
/// both ends and the mean position of the values inside. Two bounds of the bin's ∫|F_r - F_c|
/// follow. From below, |∫(F_r - F_c)|, exact in the bin (the offset sums): the rule this path
/// used alone, which loses up to the whole integral where the ECDFs cross inside a wide bin.
/// From above, the integral with each climb taken as one step at its mean: the step has the
/// staircase's integral and, where F_r is constant inside the bin (bins between consecutive
/// reference values and their subdivisions), D = F_r - F_c is monotone, so the step's D spreads
/// further from 0 than the true D and the convex |.| can only grow; it is exact when the window
/// has one value (or ties) inside the bin. The estimate is the midpoint, so its error is at most
/// half the gap between the bounds, itself at most `width` times the window's climb inside the
/// bin where the ECDFs cross there, and zero where they do not. The profile keeps that product
/// small by its choice of edges: every reference value where the reference is sparse, and
/// wide bins subdivided.
#[derive(Clone, Copy)]
struct BinTerms {
    width: f64,
    outer: f64,
    w_ref: f64,
    f_lo: f64,
    f_hi: f64,
    mid: f64,
}

impl BinTerms {
    /// The bin's integral for a window of `1 / inv_nc` values with `at_edge` of them below
    /// the bin or equal to its lower edge, `upto` up to its end, and offset sum `off` in it.
    #[inline(always)]
    fn integral(&self, inv_nc: f64, at_edge: f64, upto: f64, off: f64) -> f64 {
        // Outer bins: the exact one-signed integral (their width is 0, so the step model
        // below contributes nothing).
        let outer = self.outer * (self.w_ref + (off - upto * self.width) * inv_nc).abs();
        let (c_lo, c_hi) = (at_edge * inv_nc, upto * inv_nc);
        let inside = upto - at_edge;
        let c_mid = (off / inside.max(1.0)).clamp(0.0, self.width);
        let (lo, hi) = (self.mid.min(c_mid), self.mid.max(c_mid));
        let middle = if self.mid <= c_mid {
            self.f_hi - c_lo
        } else {
            self.f_lo - c_hi
        };
        // Upper bound: each climb as one step at its mean.
        let stepped = (self.f_lo - c_lo).abs() * lo
            + middle.abs() * (hi - lo)
            + (self.f_hi - c_hi).abs() * (self.width - hi);
        // Lower bound: |∫(F_r - F_c)|.
        let signed = (self.f_hi * self.width - self.mid * (self.f_hi - self.f_lo))
            - (c_hi * self.width - c_mid * (c_hi - c_lo));
        outer + 0.5 * (stepped + signed.abs())
    }
}

/// Hot per-bin accumulator of a pane: count and sum of value offsets, 16 bytes (four bins per
/// cache line); the rarely non-zero counts of values equal to the lower edge live apart.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
struct HotAcc {
    count: u64,
    offset_sum: f64,
}

/// Per-bin accumulator: count, count of values equal to the bin's lower edge, and the sum of
/// value offsets from the bin anchor (lower edge; the upper edge for the bottom bin).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct BinAcc {
    /// Values in the bin.
    pub count: u64,
    /// Values exactly equal to the bin's lower edge.
    pub eq: u64,
    /// Sum of (value - anchor).
    pub offset_sum: f64,
}

/// Reference profile of a numerical feature for the streaming path.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct NumericProfile {
    /// Finite union edges, strictly increasing; bin j covers [edges[j-1], edges[j]).
    edges: Vec<f64>,
    /// Coarse edges as given / computed (may contain infinities).
    #[serde(with = "super::serde_float")]
    coarse_edges: Vec<f64>,
    /// Union bin -> coarse bin.
    coarse_of_bin: Vec<u32>,
    /// Reference accumulators per union bin.
    ref_bins: Vec<BinAcc>,
    /// Reference counts per coarse bin.
    ref_coarse: Vec<u64>,
    n_ref: u64,
    ref_std: f64,
    ref_mean: f64,
    ref_min: f64,
    ref_max: f64,
    n_distinct: u64,
    /// Fine edges are exactly the distinct reference values (F_ref constant inside every bin).
    distinct_edges: bool,
    ks_exact_work_budget: Option<f64>,
    /// Serialized lookup grid (kept so that profile files and their hashes do not change).
    index: BinIndex,
    /// Hot-path lookup, built with the profile or on first use after loading.
    #[serde(skip)]
    fast: OnceLock<Box<FastIndex>>,
    /// Reference terms of the window statistics, built on first use.
    #[serde(skip)]
    eval: OnceLock<Box<EvalCache>>,
}

fn dedup_sorted(v: &mut Vec<f64>) {
    v.dedup_by(|a, b| a == b);
}

/// Distinct values of a sorted sample with their counts.
fn distinct_counts(sorted: &[f64]) -> Vec<(f64, u64)> {
    let mut out: Vec<(f64, u64)> = Vec::new();
    for &v in sorted {
        match out.last_mut() {
            Some((last, c)) if *last == v => *c += 1,
            _ => out.push((v, 1)),
        }
    }
    out
}

/// Adds up to `budget` edges inside the bins of `edges` (sorted, from the reference `sorted`)
/// whose width times reference share (at least one value) is largest: bin `j` is cut into
/// `k_j` equal parts, `k_j` the smallest with `width_j * share_j / k_j^2 <= tau` and `tau`
/// the smallest that fits the budget (bisected). Inside a bin between two consecutive
/// reference values this bounds what a current value can cost the Wasserstein integral when
/// the ECDFs cross in it.
fn subdivide_wide_bins(edges: &[f64], sorted: &[f64], budget: usize) -> Vec<f64> {
    if edges.len() < 2 || budget == 0 {
        return edges.to_vec();
    }
    let n = sorted.len() as f64;
    // cost of each bin with one part
    let costs: Vec<f64> = edges
        .windows(2)
        .map(|w| {
            let inside =
                sorted.partition_point(|&x| x < w[1]) - sorted.partition_point(|&x| x < w[0]);
            (w[1] - w[0]) * (inside.max(1) as f64 / n)
        })
        .collect();
    let parts = |tau: f64| -> Vec<usize> {
        costs
            .iter()
            .map(|&c| {
                if c <= tau {
                    1
                } else {
                    ((c / tau).sqrt().ceil() as usize).max(1)
                }
            })
            .collect()
    };
    let total = |k: &[usize]| k.iter().map(|&k| k - 1).sum::<usize>();
    let max_cost = costs.iter().copied().fold(0.0, f64::max);
    if !(max_cost > 0.0 && max_cost.is_finite()) {
        return edges.to_vec();
    }
    let (mut lo, mut hi) = (max_cost * 1e-18, max_cost);
    if total(&parts(lo)) <= budget {
        hi = lo;
    } else {
        for _ in 0..80 {
            let mid = (lo * hi).sqrt();
            if total(&parts(mid)) <= budget {
                hi = mid;
            } else {
                lo = mid;
            }
            if hi <= lo * (1.0 + 1e-3) {
                break;
            }
        }
    }
    let k = parts(hi);
    let mut out = Vec::with_capacity(edges.len() + budget);
    for (j, w) in edges.windows(2).enumerate() {
        out.push(w[0]);
        let step = (w[1] - w[0]) / k[j] as f64;
        for i in 1..k[j] {
            let e = w[0] + step * i as f64;
            if e > w[0] && e < w[1] {
                out.push(e);
            }
        }
    }
    out.push(edges[edges.len() - 1]);
    dedup_sorted(&mut out);
    out
}

/// Fine edges for a reference with more distinct values than `max_bins`: the first and last
/// value and, walking up the distinct values, a new edge wherever the current bin would
/// otherwise hold more than `2 n / max_bins` reference values inside it (so KS is evaluated
/// at least every 1/1024 of the reference at the default) or where the bin's width times the
/// share of reference values inside it would pass a bound `tau` — the part of the bin's
/// Wasserstein error that comes from the reference ([`BinTerms`]). `tau` is the smallest that
/// keeps the edges within `max_bins` (bisected), so that the edges follow the quantiles where
/// the reference is dense and take every value where it is sparse (the tails of heavy-tailed
/// samples, far outliers).
fn sparse_aware_edges(distinct: &[(f64, u64)], n: u64, max_bins: usize) -> Vec<f64> {
    let cap = (2 * n).div_ceil(max_bins as u64).max(1);
    let inv_n = 1.0 / n as f64;
    let d = distinct.len();
    let walk = |tau: f64, out: &mut Vec<f64>| -> usize {
        out.clear();
        out.push(distinct[0].0);
        let mut start = distinct[0].0;
        let mut inside = 0u64;
        for i in 1..d {
            let (v, c) = distinct[i];
            let cut = i == d - 1
                || inside + c > cap
                || (distinct[i + 1].0 - start) * ((inside + c) as f64 * inv_n) > tau;
            if cut {
                out.push(v);
                start = v;
                inside = 0;
            } else {
                inside += c;
            }
        }
        out.len()
    };
    let mut edges = Vec::with_capacity(max_bins);
    let span = distinct[d - 1].0 - distinct[0].0;
    // No width cut at `hi` (a bin's cost never exceeds the whole span); every value an edge
    // at `lo` (more than `max_bins` of them).
    let (mut lo, mut hi) = (0.0f64, span.max(f64::MIN_POSITIVE));
    if walk(hi, &mut edges) > max_bins {
        // Mass cuts alone exceed the budget only for tiny budgets: fall back to them.
        return edges;
    }
    for _ in 0..60 {
        let mid = if lo > 0.0 {
            (lo * hi).sqrt()
        } else {
            hi * 1e-12
        };
        if walk(mid, &mut edges) <= max_bins {
            hi = mid;
        } else {
            lo = mid;
        }
        if hi <= lo * (1.0 + 1e-3) {
            break;
        }
    }
    walk(hi, &mut edges);
    edges
}

impl NumericProfile {
    /// Builds a profile from a reference sample (NaN ignored). `coarse_edges` are the PSI/KL/JS
    /// bin edges (e.g. `[-inf, ..., inf]`); `None` uses the reference deciles. Values outside
    /// finite outer coarse edges are counted in the first/last coarse bin.
    pub fn build(
        reference: &[f64],
        coarse_edges: Option<&[f64]>,
        config: &NumericProfileConfig,
    ) -> Self {
        let sorted = ks::sorted_finite(reference);
        let n = sorted.len();
        let coarse: Vec<f64> = match coarse_edges {
            Some(e) if e.len() >= 2 => e.to_vec(),
            _ => reference_decile_edges(&sorted),
        };
        let inner: Vec<f64> = coarse[1..coarse.len() - 1]
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        let distinct = distinct_counts(&sorted);
        let max_bins = config.max_fine_bins.max(2);
        // At most as many distinct values as bins: every one is an edge, so F_ref is constant
        // inside every bin and exact at every edge.
        let distinct_edges = distinct.len() <= max_bins;
        let mut fine: Vec<f64> = if distinct_edges {
            distinct.iter().map(|&(v, _)| v).collect()
        } else {
            sparse_aware_edges(&distinct, n as u64, max_bins / 2)
        };
        let budget = max_bins.min(2 * distinct.len()).saturating_sub(fine.len());
        fine = subdivide_wide_bins(&fine, &sorted, budget);
        fine.extend_from_slice(&inner);
        fine.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        dedup_sorted(&mut fine);
        let edges = fine;
        let nb = edges.len() + 1;
        let coarse_of_bin: Vec<u32> = (0..nb)
            .map(|j| {
                if j == 0 {
                    0
                } else {
                    let lower = edges[j - 1];
                    inner.partition_point(|&e| e <= lower) as u32
                }
            })
            .collect();
        let index = BinIndex::new(&edges);
        let mut prof = NumericProfile {
            edges,
            coarse_edges: coarse,
            coarse_of_bin,
            ref_bins: vec![BinAcc::default(); nb],
            ref_coarse: vec![0; inner.len() + 1],
            n_ref: n as u64,
            ref_std: reference_std(&sorted),
            ref_mean: if n > 0 {
                sorted.iter().sum::<f64>() / n as f64
            } else {
                f64::NAN
            },
            ref_min: sorted.first().copied().unwrap_or(f64::NAN),
            ref_max: sorted.last().copied().unwrap_or(f64::NAN),
            n_distinct: distinct.len() as u64,
            distinct_edges,
            ks_exact_work_budget: config.ks_exact_work_budget,
            index,
            fast: OnceLock::new(),
            eval: OnceLock::new(),
        };
        let _ = prof.fast.set(Box::new(FastIndex::new(&prof.edges)));
        let mut hot = vec![HotAcc::default(); nb];
        let mut eq = vec![0u64; nb];
        for &v in &sorted {
            prof.accumulate(&mut hot, &mut eq, v);
        }
        for (j, b) in hot.iter().enumerate() {
            prof.ref_coarse[prof.coarse_of_bin[j] as usize] += b.count;
        }
        prof.ref_bins = hot
            .iter()
            .zip(&eq)
            .map(|(h, &eq)| BinAcc {
                count: h.count,
                eq,
                offset_sum: h.offset_sum,
            })
            .collect();
        prof
    }

    fn eval_cache(&self) -> &EvalCache {
        self.eval.get_or_init(|| Box::new(EvalCache::new(self)))
    }

    #[inline(always)]
    fn fast(&self) -> &FastIndex {
        self.fast
            .get_or_init(|| Box::new(FastIndex::new(&self.edges)))
    }

    /// Adds a non-NaN value to per-bin accumulators.
    #[inline(always)]
    fn accumulate(&self, hot: &mut [HotAcc], eq: &mut [u64], v: f64) {
        let ix = self.fast();
        add_to_bin(&ix.padded, hot, eq, ix.find(&self.edges, v), v);
    }

    /// Union bin index of a value (0 = below the first edge).
    #[inline]
    pub fn bin_of(&self, v: f64) -> usize {
        if v.is_nan() {
            // As the original grid lookup answered (NaN compares false with every edge).
            let len = self.edges.len();
            let (lo, hi) = (self.index.lo, self.index.hi);
            return if len >= 2 && (hi - lo).is_finite() && hi - lo > 0.0 {
                1
            } else {
                0
            };
        }
        self.fast().find(&self.edges, v)
    }

    /// Number of union bins.
    pub fn n_bins(&self) -> usize {
        self.edges.len() + 1
    }

    /// Finite union edges.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// Coarse edges (as given or the reference deciles).
    pub fn coarse_edges(&self) -> &[f64] {
        &self.coarse_edges
    }

    /// Reference counts per union (fine) bin.
    pub fn reference_bin_counts(&self) -> Vec<u64> {
        self.ref_bins.iter().map(|b| b.count).collect()
    }

    /// Reference counts per coarse bin.
    pub fn reference_coarse_counts(&self) -> &[u64] {
        &self.ref_coarse
    }

    /// Reference sample size.
    pub fn n_reference(&self) -> u64 {
        self.n_ref
    }

    /// Reference standard deviation (ddof 0).
    pub fn reference_std(&self) -> f64 {
        self.ref_std
    }

    /// Reference mean.
    pub fn reference_mean(&self) -> f64 {
        self.ref_mean
    }

    /// Reference minimum and maximum.
    pub fn reference_range(&self) -> (f64, f64) {
        (self.ref_min, self.ref_max)
    }

    /// Number of distinct reference values.
    pub fn n_distinct(&self) -> u64 {
        self.n_distinct
    }

    /// A new empty pane sized for this profile.
    pub fn new_pane(&self) -> NumericPane {
        NumericPane::new(self)
    }
}

/// Per-pane (or per-window) summary of a numerical feature.
///
/// Recorded values are staged in a small buffer and binned [`STAGE_CAP`] at a time: binning
/// one feature's values together keeps that feature's lookup grid and bins in the core's cache,
/// where binning each value as it arrives (one event's features one after another) touches
/// every feature's tables in turn. Everything that reads the bins sees the staged values too.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NumericPane {
    /// Counts and offset sums per union bin (the part every value touches).
    hot: Vec<HotAcc>,
    /// Values equal to the bin's lower edge, per union bin.
    eq: Vec<u64>,
    /// Non-NaN values recorded, staged ones included.
    n: u64,
    n_nan: u64,
    /// Raw values while the pane holds at most [`SMALL_EXACT_CAP`] binned values (exact
    /// Wasserstein for tiny windows); `None` once exceeded.
    small: Option<Vec<f64>>,
    /// Recorded values not binned yet (fewer than [`STAGE_CAP`]).
    #[serde(default)]
    staged: Vec<f64>,
}

/// Windows with at most this many values keep their raw values for an exact Wasserstein.
pub const SMALL_EXACT_CAP: usize = 64;

/// Values staged per numerical feature before they are binned together.
pub const STAGE_CAP: usize = 128;

impl NumericPane {
    /// Empty pane for `profile`.
    pub fn new(profile: &NumericProfile) -> Self {
        NumericPane {
            hot: vec![HotAcc::default(); profile.n_bins()],
            eq: vec![0; profile.n_bins()],
            n: 0,
            n_nan: 0,
            small: Some(Vec::new()),
            staged: Vec::new(),
        }
    }

    /// Records one value (NaN is counted separately and otherwise ignored).
    #[inline]
    pub fn record(&mut self, profile: &NumericProfile, v: f64) {
        if v.is_nan() {
            self.n_nan += 1;
            return;
        }
        self.n += 1;
        if self.staged.capacity() == 0 {
            self.staged.reserve_exact(STAGE_CAP);
        }
        self.staged.push(v);
        if self.staged.len() >= STAGE_CAP {
            self.flush_stage(profile);
        }
    }

    /// [`NumericPane::flush`] from [`NumericPane::record`], once every [`STAGE_CAP`] values:
    /// kept out of line so that the recording loop around it keeps its registers.
    #[cold]
    #[inline(never)]
    fn flush_stage(&mut self, profile: &NumericProfile) {
        self.flush(profile);
    }

    /// Bins the staged values.
    pub fn flush(&mut self, profile: &NumericProfile) {
        if self.staged.is_empty() {
            return;
        }
        let ix = profile.fast();
        // All lookups first (independent loads the core overlaps), then the updates.
        let mut bins = [0u32; STAGE_CAP];
        ix.find_all(&profile.edges, &self.staged, &mut bins);
        // Bins are at most the number of edges; the three per-bin lists are cut to that length
        // once, so indexing them within it needs no further checks.
        let last = profile.edges.len();
        let (hot, eq, anchors) = (
            &mut self.hot[..=last],
            &mut self.eq[..=last],
            &ix.padded[..=last],
        );
        for (&j, &v) in bins.iter().zip(&self.staged) {
            add_to_bin(anchors, hot, eq, (j as usize).min(last), v);
        }
        if let Some(buf) = &mut self.small {
            if buf.len() + self.staged.len() <= SMALL_EXACT_CAP {
                buf.extend_from_slice(&self.staged);
            } else {
                self.small = None;
            }
        }
        self.staged.clear();
    }

    /// This pane with every value binned: itself when nothing is staged, else a binned copy.
    pub fn binned(&self, profile: &NumericProfile) -> std::borrow::Cow<'_, NumericPane> {
        if self.staged.is_empty() {
            std::borrow::Cow::Borrowed(self)
        } else {
            let mut p = self.clone();
            p.flush(profile);
            std::borrow::Cow::Owned(p)
        }
    }

    /// Adds another pane (same profile).
    pub fn merge(&mut self, profile: &NumericProfile, other: &NumericPane) {
        self.flush(profile);
        let other = other.binned(profile);
        debug_assert_eq!(self.hot.len(), other.hot.len());
        for (a, b) in self.hot.iter_mut().zip(&other.hot) {
            a.count += b.count;
            a.offset_sum += b.offset_sum;
        }
        for (a, b) in self.eq.iter_mut().zip(&other.eq) {
            *a += b;
        }
        self.n += other.n;
        self.n_nan += other.n_nan;
        self.small = match (self.small.take(), &other.small) {
            (Some(mut a), Some(b)) if a.len() + b.len() <= SMALL_EXACT_CAP => {
                a.extend_from_slice(b);
                Some(a)
            }
            _ => None,
        };
    }

    /// Subtracts a pane previously merged into this one (sliding windows).
    pub fn unmerge(&mut self, profile: &NumericProfile, other: &NumericPane) {
        self.flush(profile);
        let other = other.binned(profile);
        debug_assert_eq!(self.hot.len(), other.hot.len());
        for (a, b) in self.hot.iter_mut().zip(&other.hot) {
            a.count = a.count.saturating_sub(b.count);
            if a.count == 0 {
                a.offset_sum = 0.0;
            } else {
                a.offset_sum -= b.offset_sum;
            }
        }
        for (a, b) in self.eq.iter_mut().zip(&other.eq) {
            *a = a.saturating_sub(*b);
        }
        self.n = self.n.saturating_sub(other.n);
        self.n_nan = self.n_nan.saturating_sub(other.n_nan);
        self.small = match (self.small.take(), &other.small) {
            (Some(mut a), Some(b)) => {
                let mut ok = true;
                for x in b {
                    match a.iter().position(|y| y.to_bits() == x.to_bits()) {
                        Some(i) => {
                            a.swap_remove(i);
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(a)
            }
            _ if self.n == 0 => Some(Vec::new()),
            _ => None,
        };
    }

    /// Resets to empty.
    pub fn clear(&mut self) {
        self.hot.iter_mut().for_each(|b| *b = HotAcc::default());
        self.eq.iter_mut().for_each(|e| *e = 0);
        self.n = 0;
        self.n_nan = 0;
        self.small = Some(Vec::new());
        self.staged.clear();
    }

    /// Number of non-NaN values recorded.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Number of NaN values seen.
    pub fn n_nan(&self) -> u64 {
        self.n_nan
    }

    /// Per union-bin accumulators (assembled from the pane's separate count/sum and
    /// equal-to-edge arrays).
    pub fn bins(&self, profile: &NumericProfile) -> Vec<BinAcc> {
        let p = self.binned(profile);
        p.hot
            .iter()
            .zip(&p.eq)
            .map(|(h, &eq)| BinAcc {
                count: h.count,
                eq,
                offset_sum: h.offset_sum,
            })
            .collect()
    }

    /// Counts per coarse bin.
    pub fn coarse_counts(&self, profile: &NumericProfile) -> Vec<u64> {
        let p = self.binned(profile);
        let mut c = vec![0u64; profile.ref_coarse.len()];
        for (b, &k) in p.hot.iter().zip(&profile.coarse_of_bin) {
            c[k as usize] += b.count;
        }
        c
    }
}

/// KS numerator max |F_r n_c - F_c n_r| over all union edges (both the value at the edge and the
/// left limit), as used by [`numeric_drift`]. `cur_total` is the sum of the pane's bin counts.
fn streaming_ks_numerator(profile: &NumericProfile, pane: &NumericPane, cur_total: u64) -> u128 {
    let ec = profile.eval_cache();
    let (nr, nc) = (profile.n_ref, pane.n);
    // Every product below is at most n_r * max(n_c, 2 cur_total) (a bin's equal-to-edge count
    // is part of its count): exact in u64 when that fits, as in the u128 fallback.
    if (nr as u128) * (nc.max(cur_total.saturating_mul(2)) as u128) <= u64::MAX as u128 {
        let mut cc = 0u64;
        let mut best = 0u64;
        for (j, (cb, &ceq)) in pane.hot.iter().zip(&pane.eq).enumerate() {
            if j > 0 {
                let fc = cc + ceq;
                best = best.max((ec.at_edge[j] as u64 * nc).abs_diff(fc * nr));
            }
            cc += cb.count;
            best = best.max((ec.cum[j] as u64 * nc).abs_diff(cc * nr));
        }
        return best as u128;
    }
    let (nr, nc) = (nr as u128, nc as u128);
    let mut cc = 0u128;
    let mut best = 0u128;
    for (j, (cb, &ceq)) in pane.hot.iter().zip(&pane.eq).enumerate() {
        if j > 0 {
            let fr = ec.at_edge[j] as u128;
            let fc = cc + ceq as u128;
            best = best.max((fr * nc).abs_diff(fc * nr));
        }
        cc += cb.count as u128;
        best = best.max((ec.cum[j] as u128 * nc).abs_diff(cc * nr));
    }
    best
}

/// KS numerator, Wasserstein-1 and coarse counts of a window in one pass over the union bins:
/// the three loops of [`streaming_ks_numerator`], [`streaming_wasserstein`] and
/// [`NumericPane::coarse_counts`] fused, in f64, two bins per step in independent lanes and
/// without branches (the compiler packs the lanes into vector instructions). `None` when the
/// KS products (integers below 2 n_r n_c) are not exact in f64; the callers then use the
/// separate functions.
fn fused_window_pass(profile: &NumericProfile, pane: &NumericPane) -> Option<(u64, f64, Vec<u64>)> {
    let (nr, nc) = (profile.n_ref, pane.n);
    if 2 * (nr as u128) * (nc as u128) >= 1u128 << 53 {
        return None;
    }
    let ec = profile.eval_cache();
    let (nrf, ncf, inv_nc) = (nr as f64, nc as f64, 1.0 / nc as f64);
    let nb = pane.hot.len();
    let (hot, eq) = (&pane.hot[..nb], &pane.eq[..nb]);
    let (cum, at_edge) = (&ec.cum[..nb], &ec.at_edge[..nb]);
    let (width, w_ref, outer) = (&ec.width[..nb], &ec.w_ref[..nb], &ec.outer[..nb]);
    let (f_lo, f_hi, mid) = (&ec.f_lo[..nb], &ec.f_hi[..nb], &ec.mid[..nb]);
    let mut best = [0.0f64; 2];
    let mut w = [0.0f64; 2];
    // Bin j, lane l: current values below the bin (`prev`) and up to its end (`now`). KS at
    // the lower edge itself (the values below it plus those equal to it; where no value
    // equals the edge this repeats the previous bin's end) and at the bin's end; Wasserstein:
    // (F_r - F_c at the bin's end) times its width (0 for the outer bins) plus
    // S_c/n_c - S_r/n_r. (Counts fit in i64, whose conversion to f64 is one instruction.)
    let mut step = |j: usize, l: usize, prev: u64, now: u64, off: f64| {
        let (p, c) = (prev as i64 as f64, now as i64 as f64);
        let e = p + eq[j] as i64 as f64;
        let d = (at_edge[j] * ncf - e * nrf)
            .abs()
            .max((cum[j] * ncf - c * nrf).abs());
        best[l] = if d > best[l] { d } else { best[l] };
        w[l] += BinTerms {
            width: width[j],
            outer: outer[j],
            w_ref: w_ref[j],
            f_lo: f_lo[j],
            f_hi: f_hi[j],
            mid: mid[j],
        }
        .integral(inv_nc, e, c, off);
    };
    // Coarse bin by coarse bin (consecutive ranges of union bins), so that its count is the
    // difference of the running count.
    let mut cc = 0u64;
    let mut coarse = vec![0u64; ec.coarse_ranges.len()];
    for (k, r) in ec.coarse_ranges.iter().enumerate() {
        let before = cc;
        let mut j = r.start;
        while j + 1 < r.end {
            let (a, b) = (hot[j], hot[j + 1]);
            let c0 = cc + a.count;
            let c1 = c0 + b.count;
            step(j, 0, cc, c0, a.offset_sum);
            step(j + 1, 1, c0, c1, b.offset_sum);
            cc = c1;
            j += 2;
        }
        if j < r.end {
            let c0 = cc + hot[j].count;
            step(j, 0, cc, c0, hot[j].offset_sum);
            cc = c0;
        }
        coarse[k] = cc - before;
    }
    Some((best[0].max(best[1]) as u64, w[0] + w[1], coarse))
}

/// Streaming Wasserstein-1: the sum of every union bin's integral of |F_r - F_c| (see
/// [`BinTerms`]), the reference terms precomputed.
fn streaming_wasserstein(profile: &NumericProfile, pane: &NumericPane) -> f64 {
    let ec = profile.eval_cache();
    let inv_nc = 1.0 / pane.n as f64;
    let mut cc = 0u64;
    let mut total = 0.0;
    for (j, (cb, &ceq)) in pane.hot.iter().zip(&pane.eq).enumerate() {
        let below = cc as f64;
        cc += cb.count;
        total += ec.bin_wasserstein(j, inv_nc, below + ceq as f64, cc as f64, cb.offset_sum);
    }
    total
}

/// Exact Wasserstein when the reference is exactly represented (distinct-value edges) and the
/// window still holds its raw values.
fn small_exact_wasserstein(profile: &NumericProfile, pane: &NumericPane) -> Option<f64> {
    let buf = pane.small.as_ref()?;
    if !profile.distinct_edges || buf.len() as u64 != pane.n || buf.is_empty() {
        return None;
    }
    let mut cur = buf.clone();
    cur.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    // reference as (value, count): bin j >= 1 holds only the value edges[j-1]
    let refv: Vec<(f64, u64)> = profile
        .ref_bins
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, b)| b.count > 0)
        .map(|(j, b)| (profile.edges[j - 1], b.count))
        .collect();
    let (nr, nc) = (profile.n_ref as f64, cur.len() as f64);
    let (mut i, mut k) = (0usize, 0usize);
    let (mut cr, mut cc) = (0u64, 0u64);
    let mut total = 0.0;
    let mut prev: Option<f64> = None;
    while i < refv.len() || k < cur.len() {
        let x = match (refv.get(i), cur.get(k)) {
            (Some(r), Some(&c)) => r.0.min(c),
            (Some(r), None) => r.0,
            (None, Some(&c)) => c,
            (None, None) => break,
        };
        if let Some(p) = prev {
            total += (cr as f64 / nr - cc as f64 / nc).abs() * (x - p);
        }
        while i < refv.len() && refv[i].0 <= x {
            cr += refv[i].1;
            i += 1;
        }
        while k < cur.len() && cur[k] <= x {
            cc += 1;
            k += 1;
        }
        prev = Some(x);
    }
    Some(total)
}

/// All numerical drift statistics of a window summary against the profile.
/// With an empty window or reference, the statistics are NaN and the counts are returned.
pub fn numeric_drift(profile: &NumericProfile, pane: &NumericPane) -> NumericDrift {
    numeric_drift_with(profile, pane, true)
}

/// [`numeric_drift`], with the KS p-values only when `ks_pvalues` (otherwise NaN): the
/// exact lattice and `kstwo` p-values cost up to milliseconds for windows of thousands of
/// values, and the live monitor needs them only where KS decides drift.
pub fn numeric_drift_with(
    profile: &NumericProfile,
    pane: &NumericPane,
    ks_pvalues: bool,
) -> NumericDrift {
    let pane = &*pane.binned(profile);
    let (nr, nc) = (profile.n_ref, pane.n);
    if nr == 0 || nc == 0 {
        let cur_coarse = pane.coarse_counts(profile);
        return NumericDrift {
            n_reference: nr,
            n_current: nc,
            n_distinct_reference: profile.n_distinct,
            ks: ks::ks_from_counts(f64::NAN, 0, nr, nc, None),
            wasserstein: f64::NAN,
            wasserstein_normed: f64::NAN,
            reference_std: profile.ref_std,
            reference_bin_counts: profile.ref_coarse.clone(),
            current_bin_counts: cur_coarse,
            shares: ShareStats::nan(),
        };
    }
    let (num, streaming_w, cur_coarse) = match fused_window_pass(profile, pane) {
        Some((num, w, coarse)) => (num as u128, w, coarse),
        None => {
            let cur_coarse = pane.coarse_counts(profile);
            (
                streaming_ks_numerator(profile, pane, cur_coarse.iter().sum()),
                streaming_wasserstein(profile, pane),
                cur_coarse,
            )
        }
    };
    let d = num as f64 / (nr as f64 * nc as f64);
    let ksr = if ks_pvalues {
        ks::ks_from_counts(d, num, nr, nc, profile.ks_exact_work_budget)
    } else {
        ks::ks_statistic_only(d, num, nr, nc)
    };
    let w = small_exact_wasserstein(profile, pane).unwrap_or(streaming_w);
    let shares = share_stats(&profile.ref_coarse, nr, &cur_coarse, nc);
    NumericDrift {
        n_reference: nr,
        n_current: nc,
        n_distinct_reference: profile.n_distinct,
        ks: ksr,
        wasserstein: w,
        wasserstein_normed: wasserstein_normed(w, profile.ref_std),
        reference_std: profile.ref_std,
        reference_bin_counts: profile.ref_coarse.clone(),
        current_bin_counts: cur_coarse,
        shares,
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

    fn sample(seed: u64, n: usize, shift: f64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                let u1 = lcg(&mut s).max(1e-300);
                let u2 = lcg(&mut s);
                (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() + shift
            })
            .collect()
    }

    fn pane_of(p: &NumericProfile, xs: &[f64]) -> NumericPane {
        let mut pane = p.new_pane();
        for &x in xs {
            pane.record(p, x);
        }
        pane
    }

    #[test]
    fn fused_pass_equals_the_separate_statistics() {
        let round = |x: &f64| (x * 20.0).round() / 20.0;
        let continuous = (sample(7, 5000, 0.0), sample(8, 3000, 0.3));
        let rounded: (Vec<f64>, Vec<f64>) = (
            continuous.0.iter().map(round).collect(),
            continuous.1.iter().map(round).collect(),
        );
        for (reference, current) in [&continuous, &rounded] {
            // 2048: distinct-value edges for the rounded sample; 64: quantile edges.
            for max_fine_bins in [2048, 64] {
                let cfg = NumericProfileConfig {
                    max_fine_bins,
                    ..NumericProfileConfig::default()
                };
                let p = NumericProfile::build(reference, None, &cfg);
                let pane = pane_of(&p, current).binned(&p).into_owned();
                let (num, w, coarse) = fused_window_pass(&p, &pane).expect("exact in f64");
                assert_eq!(num as u128, streaming_ks_numerator(&p, &pane, pane.n));
                let w_sep = streaming_wasserstein(&p, &pane);
                assert!((w - w_sep).abs() <= 1e-12 * w_sep, "{w} vs {w_sep}");
                assert_eq!(coarse, pane.coarse_counts(&p));
            }
        }
    }

    #[test]
    fn sliding_equals_recompute() {
        let reference = sample(1, 5000, 0.0);
        let p = NumericProfile::build(&reference, None, &NumericProfileConfig::default());
        let panes: Vec<Vec<f64>> = (0..10)
            .map(|i| sample(100 + i, 700, 0.1 * i as f64))
            .collect();
        let summaries: Vec<NumericPane> = panes.iter().map(|x| pane_of(&p, x)).collect();
        let mut window = p.new_pane();
        for s in &summaries[0..4] {
            window.merge(&p, s);
        }
        for start in 1..=6 {
            window.unmerge(&p, &summaries[start - 1]);
            window.merge(&p, &summaries[start + 3]);
            let all: Vec<f64> = panes[start..start + 4].concat();
            let fresh = pane_of(&p, &all);
            let a = numeric_drift(&p, &window);
            let b = numeric_drift(&p, &fresh);
            for (x, y) in window.bins(&p).iter().zip(fresh.bins(&p)) {
                assert_eq!(x.count, y.count);
                assert_eq!(x.eq, y.eq);
                assert!((x.offset_sum - y.offset_sum).abs() <= 1e-9 * (1.0 + y.offset_sum.abs()));
            }
            assert_eq!(a.ks.statistic, b.ks.statistic);
            assert_eq!(a.ks.pvalue, b.ks.pvalue);
            assert_eq!(a.current_bin_counts, b.current_bin_counts);
            assert_eq!(a.shares, b.shares);
            assert!((a.wasserstein - b.wasserstein).abs() <= 1e-10 * b.wasserstein);
        }
    }

    #[test]
    fn streaming_close_to_exact() {
        let reference = sample(7, 4000, 0.0);
        let current = sample(8, 3000, 0.3);
        let p = NumericProfile::build(&reference, None, &NumericProfileConfig::default());
        let s = numeric_drift(&p, &pane_of(&p, &current));
        let e = numeric_drift_exact(&reference, &current, None);
        assert!((s.ks.statistic - e.ks.statistic).abs() < 0.01);
        assert!((s.wasserstein - e.wasserstein).abs() < 0.02 * e.wasserstein);
        assert_eq!(s.reference_bin_counts, e.reference_bin_counts);
        assert_eq!(s.current_bin_counts, e.current_bin_counts);
    }

    #[test]
    fn empty_window_and_single_value() {
        let reference = sample(3, 100, 0.0);
        let p = NumericProfile::build(&reference, None, &NumericProfileConfig::default());
        let empty = p.new_pane();
        let d = numeric_drift(&p, &empty);
        assert_eq!(d.n_current, 0);
        assert!(d.wasserstein.is_nan());
        let one = pane_of(&p, &[0.5]);
        let d = numeric_drift(&p, &one);
        let e = numeric_drift_exact(&reference, &[0.5], None);
        assert!(d.ks.pvalue.is_finite());
        assert!((d.ks.statistic - e.ks.statistic).abs() < 1e-12);
        assert!((d.ks.pvalue - e.ks.pvalue).abs() < 1e-12);
        assert!((d.wasserstein - e.wasserstein).abs() < 1e-9);
    }

    #[test]
    fn constant_reference() {
        let reference = vec![3.0; 50];
        let p = NumericProfile::build(&reference, None, &NumericProfileConfig::default());
        assert_eq!(p.reference_std(), 0.0);
        let current = [3.0, 3.0, 4.0, 2.0, 3.0];
        let d = numeric_drift(&p, &pane_of(&p, &current));
        let e = numeric_drift_exact(&reference, &current, None);
        assert!(d.wasserstein_normed.is_finite());
        assert!((d.wasserstein - e.wasserstein).abs() < 1e-12);
        assert!((d.wasserstein_normed - e.wasserstein_normed).abs() < 1e-9);
        assert_eq!(d.ks.statistic, e.ks.statistic);
        assert!((d.ks.pvalue - e.ks.pvalue).abs() < 1e-12);
        assert_eq!(d.reference_bin_counts, e.reference_bin_counts);
        assert_eq!(d.current_bin_counts, e.current_bin_counts);
        assert!(d.shares.psi.is_finite());
    }

    #[test]
    fn current_outside_reference() {
        let reference = sample(5, 500, 0.0);
        let current: Vec<f64> = (0..300).map(|i| 100.0 + i as f64 * 0.01).collect();
        let p = NumericProfile::build(&reference, None, &NumericProfileConfig::default());
        let d = numeric_drift(&p, &pane_of(&p, &current));
        let e = numeric_drift_exact(&reference, &current, None);
        assert_eq!(d.ks.statistic, 1.0);
        assert!((d.ks.pvalue - e.ks.pvalue).abs() <= 1e-12 + 1e-9 * e.ks.pvalue);
        assert!((d.wasserstein - e.wasserstein).abs() < 1e-9 * e.wasserstein);
        assert_eq!(d.current_bin_counts, e.current_bin_counts);
        assert!(d.shares.psi.is_finite() && d.shares.psi > 1.0);
    }

    #[test]
    fn few_distinct_values_exact() {
        let reference: Vec<f64> = (0..300).map(|i| (i % 4) as f64).collect();
        let current: Vec<f64> = (0..200).map(|i| ((i * 7) % 5) as f64).collect();
        let p = NumericProfile::build(&reference, None, &NumericProfileConfig::default());
        let d = numeric_drift(&p, &pane_of(&p, &current));
        let e = numeric_drift_exact(&reference, &current, None);
        assert_eq!(d.ks.statistic, e.ks.statistic);
        assert!((d.ks.pvalue - e.ks.pvalue).abs() <= 1e-9 * e.ks.pvalue.max(1e-300));
        assert!((d.wasserstein - e.wasserstein).abs() < 1e-9 * e.wasserstein);
    }

    #[test]
    fn bin_rule_closed_last() {
        let c = bin_counts(&[0.0, 0.5, 1.0, 2.0, 2.5], &[0.0, 1.0, 2.0]);
        assert_eq!(c, vec![2, 2]);
    }

    #[test]
    fn round_to_u64_rounds_to_nearest_even() {
        let mut seed = 7;
        let mut xs: Vec<f64> = (0..10_000).map(|_| lcg(&mut seed) * 300_000.0).collect();
        xs.extend([
            0.0,
            0.5,
            1.5,
            2.5,
            262_143.5,
            262_144.0,
            0.499_999_999_999_999_9,
        ]);
        for x in xs {
            assert_eq!(round_to_u64(x), x.round_ties_even() as u64, "{x}");
        }
    }

    #[test]
    fn fast_index_agrees_with_binary_search() {
        let mut seed = 11;
        // Spread edges, repeated edges and a cluster denser than one cell's scan.
        let mut edges: Vec<f64> = (0..200).map(|_| lcg(&mut seed) * 100.0 - 50.0).collect();
        edges.extend([3.0, 3.0, 3.0, 7.25, 7.25]);
        edges.extend((0..40).map(|k| 20.0 + k as f64 * 1e-9));
        edges.sort_by(f64::total_cmp);
        let ix = FastIndex::new(&edges);
        assert!(!matches!(ix.starts, CellStarts::None));
        let mut values: Vec<f64> = (0..20_000).map(|_| lcg(&mut seed) * 120.0 - 60.0).collect();
        values.extend(edges.iter().copied());
        values.extend([
            -50.0,
            50.0,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            -f64::INFINITY,
        ]);
        values.extend(edges.iter().map(|e| e + 1e-12));
        let mut bins = vec![0u32; values.len()];
        ix.find_all(&edges, &values, &mut bins);
        for (&v, &b) in values.iter().zip(&bins) {
            let want = edges.partition_point(|&e| e <= v);
            assert_eq!(ix.find(&edges, v), want, "find({v})");
            assert_eq!(b as usize, want, "find_all({v})");
        }
    }

    /// Heavy-tailed samples: a reference and a current sample of one generator.
    struct Rng(u64);

    impl Rng {
        fn uniform(&mut self) -> f64 {
            // In (0, 1): never 0, so that logarithms and tangents stay finite.
            (lcg(&mut self.0) * (1u64 << 53) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u1, u2) = (self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
        fn cauchy(&mut self) -> f64 {
            (std::f64::consts::PI * (self.uniform() - 0.5)).tan()
        }
        fn student_t(&mut self, df: u32) -> f64 {
            let z = self.normal();
            let chi2: f64 = (0..df).map(|_| self.normal().powi(2)).sum();
            z / (chi2 / df as f64).sqrt()
        }
    }

    #[test]
    fn streaming_wasserstein_within_tolerance_on_heavy_tails() {
        type Gen = fn(&mut Rng) -> f64;
        let shapes: [(&str, Gen); 8] = [
            ("cauchy", |r| r.cauchy()),
            ("t1", |r| r.student_t(1)),
            ("t2", |r| r.student_t(2)),
            ("t3", |r| r.student_t(3)),
            ("lognormal_sigma2", |r| (2.0 * r.normal()).exp()),
            ("lognormal_sigma3", |r| (3.0 * r.normal()).exp()),
            // 1 % far outliers around +-10^4, and a few at 10^8.
            ("outliers", |r| {
                let u = r.uniform();
                if u < 0.01 {
                    1e4 * r.normal()
                } else if u < 0.0105 {
                    1e8 * r.uniform()
                } else {
                    r.normal()
                }
            }),
            ("bimodal_far", |r| {
                if r.uniform() < 0.5 {
                    r.cauchy()
                } else {
                    1e6 + r.cauchy()
                }
            }),
        ];
        let mut worst = (0.0f64, String::new());
        for (name, gen) in shapes {
            for (nr, nc) in [(500, 500), (1000, 800), (4000, 4000), (10_000, 8000)] {
                // no drift, a shift, a change of scale
                for (shift, scale) in [(0.0, 1.0), (0.3, 1.0), (0.0, 1.5)] {
                    for seed in 0..2u64 {
                        let mut r = Rng(seed * 7919 + nr as u64);
                        let reference: Vec<f64> = (0..nr).map(|_| gen(&mut r)).collect();
                        let current: Vec<f64> =
                            (0..nc).map(|_| gen(&mut r) * scale + shift).collect();
                        let edges = reference_decile_edges(&reference);
                        let p = NumericProfile::build(
                            &reference,
                            Some(&edges),
                            &NumericProfileConfig::default(),
                        );
                        let streaming = numeric_drift(&p, &pane_of(&p, &current)).wasserstein;
                        let exact = wasserstein_distance(&reference, &current);
                        let rel = (streaming - exact).abs() / exact;
                        let case = format!(
                            "{name} n_ref={nr} n_cur={nc} shift={shift} scale={scale} \
                             seed={seed}: exact {exact} streaming {streaming}"
                        );
                        assert!(rel <= 0.02, "{case}: {rel}");
                        if rel > worst.0 {
                            worst = (rel, case);
                        }
                    }
                }
            }
        }
        println!("largest relative error {}: {}", worst.0, worst.1);
    }

    #[test]
    fn bins_are_sized_to_the_reference() {
        let cfg = NumericProfileConfig::default();
        for n in [1usize, 2, 10, 500, 1000] {
            let reference = sample(21, n, 0.0);
            let p = NumericProfile::build(&reference, None, &cfg);
            // Every distinct value an edge, wide gaps split: at most twice as many edges, and
            // the inner coarse edges.
            let inner = p.coarse_edges().len() - 2;
            assert!(p.edges().len() <= 2 * n + inner, "{n}: {}", p.edges().len());
            let r = reference.iter().all(|v| p.edges().contains(v));
            assert!(r, "{n}: every reference value is an edge");
        }
        let reference = sample(22, 50_000, 0.0);
        let p = NumericProfile::build(&reference, None, &cfg);
        assert!(
            p.edges().len() <= cfg.max_fine_bins + 9,
            "{}",
            p.edges().len()
        );
        // The mass rule: no bin holds more than 2 n / max_fine_bins reference values inside.
        let cap = (2 * 50_000u64).div_ceil(cfg.max_fine_bins as u64);
        assert!(p.ref_bins.iter().all(|b| b.count - b.eq <= cap));
    }
}
