//! False alarms of continuous monitoring, measured with replay on generated streams (seeds and
//! shapes chosen here, not in the code):
//!
//! - a fleet of 200 low-traffic models, 5 of them drifting: triggers for exactly the 5, and
//!   almost no data-drift alert on the 195 stationary ones;
//! - stationary streams of different sizes and shapes: the false alarms per model-day against
//!   the bound the configuration promises (`drift.false_alarms_per_day`);
//! - drift of given sizes: how long after the onset the first alert comes (printed, and quoted
//!   in README, Alert quality).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use common::*;
use driftwatch::config::Config;
use driftwatch::generate::{Generator, GeneratorConfig};
use serde_json::Value;

/// Drifted features of the drifting models.
const DRIFTED: [&str; 3] = ["f1", "f4", "c0"];

/// One model's stream: `events` predictions at `rate` per second, renamed to `model`.
struct ModelStream {
    model: String,
    g: GeneratorConfig,
}

/// Writes the streams merged in event time (each model's own order kept), one JSON event a line.
fn write_merged(path: &std::path::Path, streams: &[ModelStream]) {
    let mut lines: Vec<(i64, usize, String)> = Vec::new();
    for (k, s) in streams.iter().enumerate() {
        for (_, line) in Generator::new(s.g.clone()) {
            let line = line.replace("model-0", &s.model);
            let v: Value = serde_json::from_str(&line).expect("generated JSON");
            lines.push((ms(&v["timestamp"]), k, line));
        }
    }
    lines.sort_by_key(|(ts, k, _)| (*ts, *k));
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create stream"));
    for (_, _, line) in lines {
        writeln!(f, "{line}").expect("write stream");
    }
    f.flush().expect("flush stream");
}

/// A replay configuration for many models.
fn fleet_config(window_s: u64, slide_s: u64, baseline: usize, dir: &std::path::Path) -> Config {
    let mut cfg = replay_config(window_s, slide_s, baseline, &dir.join("snapshots"));
    cfg.limits.max_models = 1000;
    cfg
}

/// Per model: firing data-drift alerts (feature or dataset level) and triggers.
#[derive(Debug, Default)]
struct Tally {
    drift_alerts: Vec<String>,
    triggers: usize,
}

fn tally(out: &[Value]) -> BTreeMap<String, Tally> {
    let mut t: BTreeMap<String, Tally> = BTreeMap::new();
    for o in out {
        let model = o["model_id"].as_str().unwrap_or_default().to_string();
        if o["type"] == "alert"
            && o["status"] == "firing"
            && (o["kind"] == "data_drift" || o["kind"] == "prediction_drift")
        {
            let what = format!(
                "{} {} {}",
                o["kind"].as_str().unwrap_or_default(),
                o["feature"].as_str().unwrap_or("-"),
                o["window"]["end"].as_str().unwrap_or_default()
            );
            t.entry(model).or_default().drift_alerts.push(what);
        } else if o["type"] == "retrain_trigger" {
            t.entry(model).or_default().triggers += 1;
        }
    }
    t
}

#[test]
fn a_fleet_of_two_hundred_low_traffic_models_triggers_for_exactly_the_drifting_five() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.jsonl");
    let streams: Vec<ModelStream> = (0..200u64)
        .map(|i| {
            let mut g = gen(70_000 + i, 3_000, 10.0);
            g.numeric_features = 20;
            g.categorical_features = 5;
            if i < 5 {
                g.drift_at = Some(1_500);
                g.drift_features = DRIFTED.iter().map(|s| s.to_string()).collect();
                g.drift_magnitude = 1.5;
            }
            ModelStream {
                model: format!("fleet-{i:03}"),
                g,
            }
        })
        .collect();
    write_merged(&path, &streams);
    let cfg = fleet_config(60, 10, 500, dir.path());
    let (out, dead) = replay(cfg, &path);
    assert!(dead.is_empty(), "{} dead letters", dead.len());
    let t = tally(&out);
    let drifting: BTreeSet<String> = streams[..5].iter().map(|s| s.model.clone()).collect();
    let triggered: BTreeSet<String> = t
        .iter()
        .filter(|(_, v)| v.triggers > 0)
        .map(|(m, _)| m.clone())
        .collect();
    let stationary_alerts: Vec<String> = t
        .iter()
        .filter(|(m, _)| !drifting.contains(*m))
        .flat_map(|(m, v)| v.drift_alerts.iter().map(move |a| format!("{m} {a}")))
        .collect();
    eprintln!(
        "fleet: {} models triggered, {} drift alerts on stationary models",
        triggered.len(),
        stationary_alerts.len()
    );
    assert_eq!(
        triggered, drifting,
        "triggers; stationary alerts: {stationary_alerts:#?}"
    );
    assert!(
        stationary_alerts.len() <= 2,
        "drift alerts on stationary models: {stationary_alerts:#?}"
    );
    // The drifting models alert on their drifted features.
    for m in &drifting {
        let features: BTreeSet<&str> = t[m]
            .drift_alerts
            .iter()
            .filter(|a| a.starts_with("data_drift "))
            .filter_map(|a| a.split(' ').nth(1))
            .filter(|f| *f != "-")
            .collect();
        assert_eq!(features, DRIFTED.into_iter().collect(), "{m}: {:#?}", t[m]);
    }
}
