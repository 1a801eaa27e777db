//! Version and model lifecycle on replayed streams: every new deployment of a model is
//! monitored however many came before it, and limit slots cannot be taken by junk (one-off
//! model ids, an event with hundreds of one-off feature names) arriving before the real stream.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use driftwatch::config::Config;
use driftwatch::generate::{Generator, GeneratorConfig};
use driftwatch::replay::ReplayStats;
use serde_json::Value;

const DRIFTED: [&str; 3] = ["f2", "f7", "c0"];

/// A stream of model `model-0` with 12 numerical and 2 categorical features.
fn stream(seed: u64, events: u64, start_ms: i64) -> GeneratorConfig {
    let mut g = gen(seed, events, 200.0);
    g.numeric_features = 12;
    g.categorical_features = 2;
    g.start_ms = start_ms;
    g
}

/// Writes the lines of `g` with the version renamed to `version` and event ids prefixed by
/// `prefix`.
fn write_version(f: &mut impl Write, g: &GeneratorConfig, version: &str, prefix: &str) {
    for (_, line) in Generator::new(g.clone()) {
        let line = line
            .replacen("\"event_id\":\"", &format!("\"event_id\":\"{prefix}"), 1)
            .replacen(
                "\"model_version\":\"v1\"",
                &format!("\"model_version\":\"{version}\""),
                1,
            );
        writeln!(f, "{line}").unwrap();
    }
}

/// Replays `input` through the library: outputs and what was cut.
fn replay_with_stats(cfg: Config, input: &Path) -> (Vec<Value>, ReplayStats) {
    let mut out = Vec::new();
    let mut dead = Vec::new();
    let stats = driftwatch::replay::replay(cfg, input, &mut out, Some(&mut dead)).unwrap();
    assert!(dead.is_empty(), "{}", String::from_utf8_lossy(&dead));
    (parse_lines(&out), stats)
}

/// Data-drift alerts fire on exactly the drifted features, all of them with `key` equal to
/// `value` and on windows ending after the drift started.
fn assert_drift_alerts_only(out: &[Value], (key, value): (&str, &str), drift_start: i64) {
    let s = summary(out);
    let firing = alerts(out, "data_drift", Some("firing"));
    assert!(!firing.is_empty(), "no data_drift alert:\n{s}");
    for a in alerts(out, "data_drift", None) {
        assert_eq!(a[key], value, "{a}");
        assert!(ms(&a["window"]["end"]) > drift_start, "{a}");
    }
    assert_eq!(features_of(&firing), sorted(&DRIFTED), "\n{s}");
}

#[test]
fn six_successive_versions_are_all_monitored_and_only_the_drifted_sixth_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("deployments.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    // v1..v5 for 80 s each, then v6 for 240 s with drift from its 120th second on; one seed, so
    // that every version serves the same population (the generator draws it from the seed).
    let mut start = T0;
    let mut v6 = None;
    for k in 1..=6u64 {
        let mut g = stream(61_001, if k < 6 { 16_000 } else { 48_000 }, start);
        if k == 6 {
            g.drift_at = Some(24_000);
            g.drift_features = DRIFTED.iter().map(|s| s.to_string()).collect();
            g.drift_magnitude = 1.5;
            v6 = Some(g.clone());
        }
        write_version(&mut f, &g, &format!("v{k}"), &format!("d{k}-"));
        start = end_ms(&g);
    }
    f.flush().unwrap();
    drop(f);
    let v6 = v6.unwrap();
    let drift_start = time_of(&v6, v6.drift_at.unwrap());

    let cfg = replay_config(60, 10, 8000, &dir.path().join("snapshots"));
    assert_eq!(cfg.limits.max_versions_per_model, 4);
    let (out, stats) = replay_with_stats(cfg, &input);
    assert_drift_alerts_only(&out, ("model_version", "v6"), drift_start);
    // v5 and v6 each took the slot of the least recently active version (v1, then v2); none
    // went idle within the hour, and no event was refused.
    assert_eq!(
        stats.evictions.get(&("version", "capacity")),
        Some(&2),
        "{stats:?}"
    );
    assert_eq!(stats.evictions.len(), 1, "{stats:?}");
    assert!(stats.limits_hit.is_empty(), "{stats:?}");
    assert_eq!(stats.cut(), "evicted: 2 versions (capacity)");
}

#[test]
fn junk_model_ids_and_feature_names_before_the_stream_leave_the_real_model_monitored() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("junk.jsonl");
    let mut g = stream(52_001, 60_000, T0);
    g.drift_at = Some(30_000);
    g.drift_features = DRIFTED.iter().map(|s| s.to_string()).collect();
    g.drift_magnitude = 1.5;
    let drift_start = time_of(&g, g.drift_at.unwrap());

    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    // 100 one-off model ids a minute before the stream, then one event of the real model with
    // 300 one-off feature names.
    let junk_features: serde_json::Map<String, Value> = (0..300)
        .map(|i| (format!("junk{i}"), Value::from(i)))
        .collect();
    let event = |id: String, model: String, ms: i64, features: serde_json::Map<String, Value>| {
        serde_json::json!({
            "event_id": id,
            "model_id": model,
            "model_version": "v1",
            "timestamp": driftwatch::event::format_rfc3339_ms(ms),
            "features": features,
            "prediction": {"score": 0.5, "label": 0},
        })
    };
    for i in 0..100 {
        let features = serde_json::Map::from_iter([("x".to_string(), Value::from(i))]);
        writeln!(
            f,
            "{}",
            event(
                format!("junk-{i}"),
                format!("junk-model-{i}"),
                T0 - 60_000,
                features
            )
        )
        .unwrap();
    }
    writeln!(
        f,
        "{}",
        event(
            "junk-features".into(),
            "model-0".into(),
            T0 - 30_000,
            junk_features
        )
    )
    .unwrap();
    write_version(&mut f, &g, "v1", "");
    f.flush().unwrap();
    drop(f);

    let mut cfg = replay_config(60, 10, 8000, &dir.path().join("snapshots"));
    // Fewer slots than junk ids, bootstrapping or not.
    cfg.limits.max_models = 64;
    cfg.limits.max_bootstrapping_models = 32;
    let (bootstrapping, features) = (
        cfg.limits.max_bootstrapping_models as u64,
        cfg.limits.max_features,
    );
    assert!(bootstrapping < 100 && features < 300);
    let (out, stats) = replay_with_stats(cfg, &input);
    assert_drift_alerts_only(&out, ("model_id", "model-0"), drift_start);
    let s = summary(&out);
    // The baseline profiles the real features only.
    let trigger = of_type(&out, "retrain_trigger");
    assert!(!trigger.is_empty(), "\n{s}");
    let profiled: Vec<&String> = trigger[0]["evidence"]["features"]
        .as_object()
        .expect("evidence.features")
        .keys()
        .collect();
    assert_eq!(profiled.len(), 14, "{profiled:?}");
    assert!(
        profiled.iter().all(|f| !f.starts_with("junk")),
        "{profiled:?}"
    );
    // The junk took every bootstrapping slot, the rest of it was refused, and the real model
    // took the slot of one junk model idle for a slide; the 300 names went over `max_features`
    // and gave way to the real features.
    assert_eq!(
        stats.evictions.get(&("model", "capacity")),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(
        stats.limits_hit.get("bootstrapping_models"),
        Some(&(100 - bootstrapping)),
        "{stats:?}"
    );
    let cut_features = stats.limits_hit.get("features").copied().unwrap_or(0);
    // The names beyond the slots in their own event, and those the 14 real names replaced.
    assert_eq!(cut_features, (300 - features) as u64 + 14, "{stats:?}");
    assert!(!stats.limits_hit.contains_key("models"), "{stats:?}");
    assert!(stats.cut().contains("features"), "{}", stats.cut());
}
