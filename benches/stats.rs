//! Pane-summary and window-evaluation benchmarks (targets (a) and (b) of the performance issues).
//!
//! * `pane_update/event_20num_5cat`: recording one event of 20 numerical and 5 categorical
//!   features into pane summaries (target <= 300 ns per event on one core).
//! * `pane_update/numeric_value`, `pane_update/categorical_value`: the same per single value.
//! * `window_eval/25_features/*`: numerical and categorical drift plus method selection of all
//!   25 features of a window against the baseline, as `eval::evaluate` does (target <= 100 us).
//! * `window_eval_ks/25_features/*`: the same against a 1,000-row reference, where KS (with
//!   its p-value) decides numerical drift.
//!
//! * `fleet/*`: the per-model costs of a fleet of small models (200 models of 500-row
//!   references): building the 20 numerical profiles of one model, and evaluating one model's
//!   window of 2,000 events (KS decides, with its exact p-value).
//!
//! Profiles are built from 10,000 generated reference values per feature; the recorded values
//! are generated in advance. Run with `cargo bench --bench stats`.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use driftwatch::stats::categorical::{
    CategoricalPane, CategoricalProfile, CategoricalProfileConfig,
};
use driftwatch::stats::drift::{
    dataset_drift, evaluate_categorical, evaluate_numeric, MethodOverride,
};
use driftwatch::stats::numeric::{NumericPane, NumericProfile, NumericProfileConfig};

const NUMERIC: usize = 20;
const CATEGORICAL: usize = 5;
const REFERENCE: u64 = 10_000;

struct Setup {
    numeric: Vec<NumericProfile>,
    categorical: Vec<CategoricalProfile>,
    /// Current values, event-major: `cur_num[i * NUMERIC + f]`.
    cur_num: Vec<f64>,
    /// Current categories, event-major.
    cur_cat: Vec<String>,
    events: usize,
}

fn setup(current: u64) -> Setup {
    setup_with(REFERENCE, current)
}

fn setup_with(reference: u64, current: u64) -> Setup {
    // One stream (the feature shapes depend on the seed): the first `reference` events are the
    // reference, the rest the current values.
    let all = common::columns(1, reference + current, NUMERIC, CATEGORICAL);
    let r = reference as usize;
    let numeric = all
        .numeric
        .iter()
        .map(|x| NumericProfile::build(&x[..r], None, &NumericProfileConfig::default()))
        .collect();
    let categorical = all
        .categorical
        .iter()
        .map(|x| CategoricalProfile::build(&x[..r], &CategoricalProfileConfig::default()))
        .collect();
    let events = current as usize;
    let mut cur_num = Vec::with_capacity(events * NUMERIC);
    let mut cur_cat = Vec::with_capacity(events * CATEGORICAL);
    for i in r..r + events {
        cur_num.extend(all.numeric.iter().map(|c| c[i]));
        cur_cat.extend(all.categorical.iter().map(|c| c[i].clone()));
    }
    Setup {
        numeric,
        categorical,
        cur_num,
        cur_cat,
        events,
    }
}

struct Panes {
    numeric: Vec<NumericPane>,
    categorical: Vec<CategoricalPane>,
}

impl Panes {
    fn new(s: &Setup) -> Self {
        Panes {
            numeric: s.numeric.iter().map(NumericProfile::new_pane).collect(),
            categorical: s
                .categorical
                .iter()
                .map(CategoricalProfile::new_pane)
                .collect(),
        }
    }

    #[inline]
    fn record_event(&mut self, s: &Setup, i: usize) {
        let nv = &s.cur_num[i * NUMERIC..(i + 1) * NUMERIC];
        for ((pane, prof), &v) in self.numeric.iter_mut().zip(&s.numeric).zip(nv) {
            pane.record(prof, v);
        }
        let cv = &s.cur_cat[i * CATEGORICAL..(i + 1) * CATEGORICAL];
        for ((pane, prof), v) in self.categorical.iter_mut().zip(&s.categorical).zip(cv) {
            pane.record(prof, v);
        }
    }
}

fn pane_update(c: &mut Criterion) {
    let s = setup(if common::full_run() { 8192 } else { 256 });
    let mut g = c.benchmark_group("pane_update");
    g.throughput(Throughput::Elements(1));
    g.bench_function("event_20num_5cat", |b| {
        let mut panes = Panes::new(&s);
        let mut i = 0;
        b.iter(|| {
            panes.record_event(&s, black_box(i));
            i += 1;
            if i == s.events {
                i = 0;
            }
        });
        black_box(&panes.numeric);
    });
    g.bench_function("numeric_value", |b| {
        let mut panes = Panes::new(&s);
        let n = s.cur_num.len();
        let mut i = 0;
        b.iter(|| {
            let f = i % NUMERIC;
            panes.numeric[f].record(&s.numeric[f], black_box(s.cur_num[i]));
            i += 1;
            if i == n {
                i = 0;
            }
        });
        black_box(&panes.numeric);
    });
    g.bench_function("categorical_value", |b| {
        let mut panes = Panes::new(&s);
        let n = s.cur_cat.len();
        let mut i = 0;
        b.iter(|| {
            let f = i % CATEGORICAL;
            panes.categorical[f].record(&s.categorical[f], black_box(&s.cur_cat[i]));
            i += 1;
            if i == n {
                i = 0;
            }
        });
        black_box(&panes.categorical);
    });
    g.finish();
}

fn evaluate_window(s: &Setup, w: &Panes) -> usize {
    let ov = MethodOverride::default();
    let mut verdicts = Vec::with_capacity(NUMERIC + CATEGORICAL);
    for (prof, pane) in s.numeric.iter().zip(&w.numeric) {
        verdicts.push(black_box(evaluate_numeric(prof, pane, &ov)).1);
    }
    for (prof, pane) in s.categorical.iter().zip(&w.categorical) {
        verdicts.push(black_box(evaluate_categorical(prof, pane, &ov)).1);
    }
    dataset_drift(&verdicts, 0.5).n_drifted
}

/// A window of `current` values per feature against a profile of `reference` rows, every
/// value binned (as in the monitor's window aggregate, whose panes are sealed when they close).
fn recorded_window(reference: u64, current: u64) -> (Setup, Panes) {
    let s = setup_with(reference, current);
    let mut w = Panes::new(&s);
    for i in 0..s.events {
        w.record_event(&s, i);
    }
    for (pane, prof) in w.numeric.iter_mut().zip(&s.numeric) {
        pane.flush(prof);
    }
    (s, w)
}

fn window_eval(c: &mut Criterion) {
    let full = common::full_run();
    let mut g = c.benchmark_group("window_eval/25_features");
    // The reference has 10,000 rows, so the default rule decides numerical drift by the
    // normed Wasserstein distance and the KS p-values are not computed.
    let sizes: &[u64] = if full { &[20_000, 5_000] } else { &[500] };
    for &n in sizes {
        let (s, w) = recorded_window(REFERENCE, n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &w, |b, w| {
            b.iter(|| black_box(evaluate_window(&s, w)))
        });
    }
    g.finish();
    // A reference of 1,000 rows: KS decides numerical drift (exact p-value while both samples
    // have at most 10,000 values, scipy's `auto` rule; asymptotic beyond), chi-square the
    // categorical drift.
    let mut g = c.benchmark_group("window_eval_ks/25_features");
    let sizes: &[u64] = if full {
        &[20_000, 5_000, 1_000]
    } else {
        &[200]
    };
    for &n in sizes {
        let (s, w) = recorded_window(1_000, n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &w, |b, w| {
            b.iter(|| black_box(evaluate_window(&s, w)))
        });
    }
    g.finish();
}

/// One small model of a fleet: 500-row references, windows of 2,000 events.
fn fleet(c: &mut Criterion) {
    let mut g = c.benchmark_group("fleet");
    let all = common::columns(3, 500, NUMERIC, 0);
    g.bench_function("profile_build_20x500", |b| {
        b.iter(|| {
            all.numeric
                .iter()
                .map(|x| {
                    let p =
                        NumericProfile::build(black_box(x), None, &NumericProfileConfig::default());
                    p.n_bins()
                })
                .sum::<usize>()
        })
    });
    let (s, w) = recorded_window(500, 2_000);
    g.bench_function("window_eval_500x2000", |b| {
        b.iter(|| black_box(evaluate_window(&s, &w)))
    });
    g.finish();
}

criterion_group!(benches, pane_update, window_eval, fleet);
criterion_main!(benches);
