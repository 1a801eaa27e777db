//! Prometheus scrapes driftwatch's `/metrics` while it monitors drifting traffic from a real
//! Kafka broker, and answers queries about the drift metric.
//!
//! `#[ignore]`d in a plain `cargo test`: `scripts/test-all` starts the broker, exports
//! `DRIFTWATCH_TEST_BROKERS` and runs it with `--include-ignored`; Prometheus is started here
//! through `scripts/prometheus` (port 9090) and stopped by a guard.

mod common;

use std::time::Duration;

use driftwatch::generate::GeneratorConfig;

use common::{brokers, produce_generated, wait_for, Driftwatch, MonitorConfig, Prometheus, Topics};

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one)"]
fn prometheus_reads_drift_metric() {
    let brokers = brokers();
    let topics = Topics::create(&brokers, "prometheus", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    let mut dw = Driftwatch::start("prometheus", &cfg, dir.path());
    let drifted = "f3";
    let sent = produce_generated(
        &topics,
        GeneratorConfig {
            seed: 17,
            events: 60_000,
            rate: 1000.0,
            drift_at: Some(20_000),
            drift_features: vec![drifted.into()],
            drift_magnitude: 1.0,
            ..Default::default()
        },
    );
    dw.wait_metric_at_least(
        "driftwatch_events_total",
        &[("topic", "prediction")],
        sent as f64,
        Duration::from_secs(90),
    );
    // The last evaluated window is full of drifted events: the monitor's own /metrics says so
    // (the effect: the KS distance, in [0, 1]).
    let labels = [("feature", drifted)];
    let local = dw.wait_metric_at_least(
        "driftwatch_feature_drift_effect",
        &labels,
        0.1,
        Duration::from_secs(30),
    );

    let prometheus = Prometheus::start(dw.http);
    let expr = format!("driftwatch_feature_drift_effect{{feature=\"{drifted}\"}}");
    let (series, value) = wait_for(
        "Prometheus to return the drift effect of the drifted feature",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let result = prometheus.query(&expr);
            let s = result.first()?.clone();
            let v: f64 = s["value"][1].as_str()?.parse().ok()?;
            v.is_finite().then_some((s, v))
        },
    );
    assert_eq!(series["metric"]["feature"], drifted, "{series}");
    assert!(
        series["metric"]["model_id"].is_string() && series["metric"]["model_version"].is_string(),
        "labels model_id and model_version: {series}"
    );
    assert!(
        value >= 0.1,
        "drift effect of {drifted} as Prometheus sees it: {value} (monitor: {local})"
    );
    // The test's own score: a p-value under the level it was held to.
    let p = dw.metrics().sum("driftwatch_feature_drift_score", &labels);
    assert!(p < 1e-6, "p-value of {drifted}: {p}");
    let now = dw.metrics().sum("driftwatch_feature_drift_effect", &labels);
    assert!(
        (value - now).abs() < 1e-9,
        "Prometheus has {value}, driftwatch exposes {now}"
    );
}
