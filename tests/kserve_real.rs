//! `driftwatch run` with `[input] format = "kserve"` against a real Apache Kafka broker: a
//! generated stream with drift in two of fifteen features, re-published as KServe payload-logger
//! CloudEvents in binary mode (`ce_*` headers, Open Inference Protocol v2 FP64 tensors of shape
//! [4, 15], request and response as separate unkeyed messages spread over three partitions),
//! read through a topic pattern, alerts on exactly the drifted features.
//!
//! `#[ignore]`d in a plain `cargo test`, like `tests/kafka_real.rs`: `scripts/test-all` starts
//! the broker, exports `DRIFTWATCH_TEST_BROKERS` and runs it with `--include-ignored`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::kserve::{drift_lines, encode, produce, Encoding, DRIFTED};
use common::{brokers, Driftwatch, MonitorConfig, TopicReader, Topics};

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one)"]
fn kserve_cloudevents_from_the_broker_alert_on_the_drifted_features() {
    let brokers = brokers();
    let topics = Topics::create(&brokers, "kserve", 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = drift_lines(27_182);
    let encoded = encode(&lines, 4, Encoding::BinaryV2);

    let mut cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    cfg.window = Duration::from_secs(60);
    cfg.slide = Duration::from_secs(20);
    let names: Vec<String> = encoded
        .feature_names
        .iter()
        .map(|f| format!("\"{f}\""))
        .collect();
    cfg.set("input", "format", "\"kserve\"")
        .set(
            "input",
            "topics",
            &format!("[\"^{}$\"]", topics.predictions),
        )
        .set("input", "feature_names", &format!("[{}]", names.join(", ")))
        .set("input", "prediction", "\"score\"");
    let mut dw = Driftwatch::start("kserve", &cfg, dir.path());
    let sent = produce(&brokers, &topics.predictions, &encoded.messages);
    assert_eq!(sent, encoded.messages.len());
    dw.wait_metric_at_least(
        "driftwatch_events_total",
        &[("topic", "prediction")],
        encoded.v1.len() as f64,
        Duration::from_secs(180),
    );
    // Partitions turn idle after a second, then the last windows close and are published.
    std::thread::sleep(Duration::from_millis(2500));

    let mut reader = TopicReader::new(&brokers, &[&topics.alerts, &topics.dead_letters]);
    reader.read_to_end(Duration::from_secs(30));
    let dead = reader.json_of(&topics.dead_letters);
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    let alerts = reader.json_of(&topics.alerts);
    let firing: BTreeSet<&str> = alerts
        .iter()
        .filter(|a| a["kind"] == "data_drift" && a["status"] == "firing")
        .filter_map(|a| a["feature"].as_str())
        .collect();
    assert_eq!(
        firing,
        DRIFTED.into_iter().collect(),
        "data_drift alerts must name exactly the drifted features: {alerts:#?}"
    );
    for a in &alerts {
        assert_eq!(a["model_id"], "model-0", "{a}");
        assert_eq!(a["model_version"], "v1", "{a}");
    }
}
