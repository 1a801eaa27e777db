//! Shared set-up of the benchmarks: generated events decoded into per-feature columns.

#![allow(dead_code)]

use driftwatch::baseline::{BuildLimits, ProfileBuilder};
use driftwatch::event::{decode, FeatureValue};
use driftwatch::generate::{Generator, GeneratorConfig};
use driftwatch::state::Baselines;

/// Whether criterion runs for real (`cargo bench`) rather than in test mode
/// (`cargo test --benches`), where every benchmark runs once and sizes are kept small.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Generated prediction lines (no labels) with `numeric` numerical and `categorical`
/// categorical features.
pub fn lines(seed: u64, events: u64, numeric: usize, categorical: usize) -> Vec<String> {
    let g = Generator::new(GeneratorConfig {
        seed,
        numeric_features: numeric,
        categorical_features: categorical,
        events,
        ..GeneratorConfig::default()
    });
    g.map(|(_, line)| line).collect()
}

/// Columns of generated events: numerical values per feature, categories per feature.
pub struct Columns {
    /// `numeric[f][i]`: value of feature `f` in event `i`.
    pub numeric: Vec<Vec<f64>>,
    /// `categorical[f][i]`: category of feature `f` in event `i`.
    pub categorical: Vec<Vec<String>>,
}

/// Decodes generated events into columns.
pub fn columns(seed: u64, events: u64, numeric: usize, categorical: usize) -> Columns {
    let mut c = Columns {
        numeric: vec![Vec::with_capacity(events as usize); numeric],
        categorical: vec![Vec::with_capacity(events as usize); categorical],
    };
    for line in lines(seed, events, numeric, categorical) {
        let e = decode(line.as_bytes(), None, 1 << 20).expect("generated events decode");
        let (mut n, mut k) = (0, 0);
        for (_, v) in &e.features {
            match v {
                FeatureValue::Number(x) => {
                    c.numeric[n].push(*x);
                    n += 1;
                }
                FeatureValue::Text(s) => {
                    c.categorical[k].push(s.to_string());
                    k += 1;
                }
                FeatureValue::Null => {}
            }
        }
    }
    c
}

/// A configured baseline of `model` (any version) profiled from v1 event lines.
pub fn baseline_of(lines: &[String], model: &str) -> Baselines {
    let mut builder = ProfileBuilder::new(model, None, "bench", BuildLimits::default());
    for line in lines {
        let e = decode(line.as_bytes(), None, 1 << 20).expect("generated events decode");
        builder.push_event(&e);
    }
    let profile = builder.finish().expect("profile");
    let mut baselines = Baselines::default();
    baselines.insert(model, None, profile);
    baselines
}

/// Times `iters` steps over inputs `0..len` in order, from where the last call stopped (`i`),
/// for state that must see event time move forward: after the last input, `state` starts over
/// as `fresh()`, outside the timed section.
pub fn cycle<S>(
    iters: u64,
    len: usize,
    i: &mut usize,
    state: &mut S,
    fresh: impl Fn() -> S,
    mut step: impl FnMut(&mut S, usize),
) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    let mut start = std::time::Instant::now();
    for _ in 0..iters {
        if *i == len {
            total += start.elapsed();
            *state = fresh();
            *i = 0;
            start = std::time::Instant::now();
        }
        step(state, *i);
        *i += 1;
    }
    total + start.elapsed()
}
