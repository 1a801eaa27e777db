//! Decode throughput of KServe payload-logger CloudEvents (binary mode, Open Inference Protocol
//! v2: a request with one FP64 tensor of shape [4, 15] and its response with an FP64 tensor of
//! shape [4]), counted in rows (prediction events):
//!
//! * `kserve/decode_pair_4x15`: both messages' attributes from their `ce_*` headers and their
//!   bodies into rows (`driftwatch::event::kserve`).
//! * `kserve/ingest_pair_4x15`: what the Kafka source does with the two messages — decode, join
//!   by `ce_id`, each row written as a v1 event and processed by the monitor (with a configured
//!   baseline, so the version's window is active).
//!
//! Run with `cargo bench --no-default-features --bench kserve`.

mod common;
#[path = "../tests/common/kserve.rs"]
#[allow(dead_code)]
mod encode;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch::config::{Config, InputFormat, PredictionField};
use driftwatch::event::kserve;
use driftwatch::ingest::{kserve::Kserve, Message};
use driftwatch::monitor::Monitor;
use driftwatch::policy::Clock;

/// Rows per batch.
const ROWS: usize = 4;

/// One Kafka message as the source hands it over: headers borrowed as `(name, value)`.
struct Owned {
    headers: Vec<(String, String)>,
    value: String,
}

impl Owned {
    fn headers(&self) -> Vec<(&str, &[u8])> {
        self.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect()
    }
}

fn kserve_bench(c: &mut Criterion) {
    let lines = encode::drift_lines(5);
    let reference = 10_000;
    let baselines = common::baseline_of(&lines[..reference], "model-0");
    let current = if common::full_run() {
        &lines[reference..]
    } else {
        &lines[reference..reference + 400]
    };
    let encoded = encode::encode(current, ROWS, encode::Encoding::BinaryV2);
    let messages: Vec<Owned> = encoded
        .messages
        .iter()
        .map(|m| Owned {
            headers: m.headers.clone(),
            value: m.value.clone(),
        })
        .collect();
    let headers: Vec<Vec<(&str, &[u8])>> = messages.iter().map(Owned::headers).collect();
    eprintln!(
        "kserve: {} messages of {} bytes on average, {ROWS} rows each",
        messages.len(),
        messages.iter().map(|m| m.value.len()).sum::<usize>() / messages.len()
    );
    let mut cfg = Config::default();
    cfg.input.format = InputFormat::Kserve;
    cfg.input.topics = vec!["kserve".into()];
    cfg.input.feature_names = encoded.feature_names.clone();
    cfg.input.prediction = PredictionField::Score;
    let cfg = Arc::new(cfg);

    let mut g = c.benchmark_group("kserve");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("decode_pair_4x15", |b| {
        let mut i = 0usize;
        b.iter(|| {
            for k in [i, i + 1] {
                let ce = kserve::cloud_event(&headers[k], black_box(messages[k].value.as_bytes()))
                    .expect("decodes");
                match ce.half {
                    kserve::Half::Request => {
                        black_box(kserve::request(ce.data, &cfg.input.feature_names).ok());
                    }
                    kserve::Half::Response => {
                        black_box(kserve::response(ce.data).ok());
                    }
                }
            }
            i = (i + 2) % messages.len();
        });
    });
    g.bench_function("ingest_pair_4x15", |b| {
        // Event time must move forward: after the last message, a fresh monitor starts over
        // (outside the timed section).
        let fresh = || {
            let m = Monitor::new(Arc::clone(&cfg), baselines.clone(), Clock::EventTime);
            (Kserve::new(&cfg), m)
        };
        let mut state = fresh();
        let mut out = Vec::new();
        let mut pair = 0usize;
        b.iter_custom(|iters| {
            let pairs = messages.len() / 2;
            common::cycle(iters, pairs, &mut pair, &mut state, fresh, |(k, m), p| {
                for i in [2 * p, 2 * p + 1] {
                    let message = Message {
                        topic: "kserve",
                        partition: 0,
                        offset: i as i64,
                        key: None,
                        headers: &headers[i],
                        timestamp_ms: None,
                        payload: messages[i].value.as_bytes(),
                    };
                    k.process(message, m, &mut out);
                    out.clear();
                }
            })
        });
    });
    g.finish();
}

criterion_group!(benches, kserve_bench);
criterion_main!(benches);
