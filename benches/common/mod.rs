//! Shared set-up of the benchmarks: generated events decoded into per-feature columns.

#![allow(dead_code)]

use driftwatch::event::{decode, FeatureValue};
use driftwatch::generate::{Generator, GeneratorConfig};

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
