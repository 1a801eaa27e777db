//! End-to-end per-event cost of `Monitor::process` (target (c) of the performance issues):
//! decode + join + window update of one prediction event with 20 numerical features
//! (about 600 bytes), with a configured baseline so the version's window is active.
//!
//! * `pipeline/process_prediction_20num`: the whole `Monitor::process` call (pane closes and
//!   their evaluations included, as they come every 60,000 events at the generator's rate).
//! * `pipeline/decode_only_20num`: decoding alone, as `Monitor::process` decodes (into
//!   recycled lists), to split the cost.
//!
//! Run with `cargo bench --bench pipeline`; throughput is reported in events/s.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch::config::Config;
use driftwatch::event::{decode, decode_reusing, DecodeBuffers, EventKind};
use driftwatch::monitor::Monitor;
use driftwatch::policy::Clock;
use driftwatch::state::{Baselines, Input};

const NUMERIC: usize = 20;
const REFERENCE: usize = 10_000;

fn setup(current: usize) -> (Baselines, Vec<String>) {
    let mut lines = common::lines(3, (REFERENCE + current) as u64, NUMERIC, 0);
    let baselines = common::baseline_of(&lines[..REFERENCE], "model-0");
    let current = lines.split_off(REFERENCE);
    (baselines, current)
}

fn monitor(cfg: &Arc<Config>, baselines: &Baselines) -> Monitor {
    Monitor::new(Arc::clone(cfg), baselines.clone(), Clock::EventTime)
}

fn pipeline(c: &mut Criterion) {
    let n = if common::full_run() { 100_000 } else { 2_000 };
    let (baselines, lines) = setup(n);
    let mean_len = lines.iter().map(String::len).sum::<usize>() / lines.len();
    let e = decode(lines[0].as_bytes(), None, 1 << 20).expect("decodes");
    let borrowed = e
        .features
        .iter()
        .filter(|(k, _)| matches!(k, std::borrow::Cow::Borrowed(_)))
        .count();
    eprintln!(
        "pipeline: {} events of {mean_len} bytes on average; {borrowed} of {} feature names \
         borrowed by decode, event_id borrowed: {}",
        lines.len(),
        e.features.len(),
        matches!(e.event_id, std::borrow::Cow::Borrowed(_))
    );
    let cfg = Arc::new(Config::default());
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("process_prediction_20num", |b| {
        // Event time must move forward: after the last line, a fresh monitor starts over
        // (outside the timed section).
        let mut m = monitor(&cfg, &baselines);
        let mut out = Vec::new();
        let mut i = 0usize;
        b.iter_custom(|iters| {
            let fresh = || monitor(&cfg, &baselines);
            common::cycle(iters, lines.len(), &mut i, &mut m, fresh, |m, i| {
                m.process(
                    Input {
                        kind: Some(EventKind::Prediction),
                        topic: "predictions",
                        partition: 0,
                        offset: i as i64,
                        payload: lines[i].as_bytes(),
                    },
                    &mut out,
                );
                out.clear();
            })
        });
    });
    g.bench_function("decode_only_20num", |b| {
        // As `Monitor::process` decodes: into lists recycled from the previous event.
        let mut buffers = DecodeBuffers::default();
        let mut i = 0usize;
        b.iter(|| {
            let e = decode_reusing(
                black_box(lines[i].as_bytes()),
                Some(EventKind::Prediction),
                1 << 20,
                &mut buffers,
            );
            i = (i + 1) % lines.len();
            if let Ok(e) = e {
                buffers.recycle(black_box(e));
            }
        });
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
