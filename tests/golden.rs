//! Golden-file tests: one small scripted stream per rule, replayed and compared with the
//! checked-in outputs.
//!
//! Layout: `tests/golden/<case>/input.jsonl` (the stream), `config.toml` (replay
//! configuration), `expected.jsonl` (the outputs, one JSON object a line). The comparison is
//! exact JSON equality line by line after parsing (floats included: replay is deterministic and
//! stamps `emitted_at` with event time). The one machine-specific value, the snapshot path in
//! `evidence.snapshot.path`, is written as `<snapshots>/<file name>`.
//!
//! To regenerate the expected outputs after an intended behaviour change:
//!
//! ```text
//! DRIFTWATCH_UPDATE_GOLDEN=1 cargo test --test golden
//! ```
//!
//! then review `git diff tests/golden` by eye before committing: the outputs must make sense
//! (the drift trigger names the drifted features, the slow canary is rolled back, …); the
//! sanity assertions in each test below check the main points even in update mode.
//!
//! The inputs were made with `driftwatch generate` (see `tests/golden/README.md` for the exact
//! commands); they are checked in so that a change in the generator does not move them.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use driftwatch::config::Config;
use serde_json::Value;

fn case_dir(name: &str) -> PathBuf {
    repo().join("tests").join("golden").join(name)
}

/// Replays a case and returns its outputs with the snapshot path normalized.
fn run_case(name: &str) -> Vec<Value> {
    let dir = case_dir(name);
    let snapshots = tempfile::tempdir().unwrap();
    let mut cfg = Config::load(Some(&dir.join("config.toml"))).expect("case config is valid");
    cfg.triggers.snapshot_dir = snapshots.path().to_path_buf();
    let (mut out, dead) = replay(cfg, &dir.join("input.jsonl"));
    assert!(dead.is_empty(), "{name}: {dead:?}");
    for o in &mut out {
        normalize_snapshot(o, snapshots.path());
    }
    out
}

fn normalize_snapshot(o: &mut Value, dir: &Path) {
    if let Some(p) = o
        .pointer_mut("/evidence/snapshot/path")
        .filter(|p| p.is_string())
    {
        let path = PathBuf::from(p.as_str().unwrap());
        assert!(
            path.starts_with(dir),
            "snapshot outside snapshot_dir: {path:?}"
        );
        assert!(path.exists(), "snapshot {path:?} was not written");
        *p = Value::String(format!(
            "<snapshots>/{}",
            path.strip_prefix(dir).unwrap().display()
        ));
    }
}

/// Compares `actual` with the case's `expected.jsonl`, or rewrites it in update mode.
fn check_golden(name: &str, actual: &[Value]) {
    let path = case_dir(name).join("expected.jsonl");
    if std::env::var("DRIFTWATCH_UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        let mut text = String::new();
        for v in actual {
            text.push_str(&serde_json::to_string(v).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run DRIFTWATCH_UPDATE_GOLDEN=1 cargo test --test golden",
            path.display()
        )
    });
    let expected = parse_lines(text.as_bytes());
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_eq!(
            a,
            e,
            "{name}: output line {} differs\nactual:   {a}\nexpected: {e}\n\
             (DRIFTWATCH_UPDATE_GOLDEN=1 regenerates, after review)",
            i + 1
        );
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "{name}: {} outputs, {} expected\nactual:\n{}",
        actual.len(),
        expected.len(),
        summary(actual)
    );
}

#[test]
fn golden_data_drift_trigger() {
    // Drift from event 4000 (t = 40 s) in f1 and c0.
    let out = run_case("data_drift_trigger");
    let s = summary(&out);
    let drift_start = T0 + 40_000;
    let firing = alerts(&out, "data_drift", Some("firing"));
    assert_eq!(features_of(&firing), sorted(&["c0", "f1"]), "\n{s}");
    assert!(firing.iter().all(|a| ms(&a["window"]["end"]) > drift_start));
    let t = of_type(&out, "retrain_trigger");
    assert_eq!(t.len(), 1, "\n{s}");
    let reasons: Vec<&Value> = t[0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "data_drift")
        .collect();
    assert_eq!(features_of(&reasons), sorted(&["c0", "f1"]), "{}", t[0]);
    check_golden("data_drift_trigger", &out);
}

#[test]
fn golden_performance_drop() {
    // Half of the labels contradict the model from event 3500 (t = 35 s) on.
    let out = run_case("performance_drop");
    let s = summary(&out);
    let perf = alerts(&out, "performance", Some("firing"));
    assert!(!perf.is_empty(), "\n{s}");
    for a in &perf {
        assert!(ms(&a["window"]["end"]) > T0 + 35_000, "{a}");
        assert_eq!(a["metric"], "accuracy");
        assert!(a["value"].as_f64() < a["threshold"].as_f64(), "{a}");
    }
    let t = of_type(&out, "retrain_trigger");
    assert_eq!(t.len(), 1, "\n{s}");
    assert!(
        t[0]["policy"].as_str().unwrap().contains("performance"),
        "{}",
        t[0]
    );
    assert!(alerts(&out, "data_drift", None).is_empty(), "\n{s}");
    check_golden("performance_drop", &out);
}

#[test]
fn golden_canary_rollback() {
    let out = run_case("canary_rollback");
    let s = summary(&out);
    let v = of_type(&out, "canary_verdict");
    assert_eq!(
        v.iter().filter(|v| v["verdict"] == "rollback").count(),
        1,
        "\n{s}"
    );
    assert!(!v.iter().any(|v| v["verdict"] == "promote"), "\n{s}");
    assert_eq!(v.last().unwrap()["verdict"], "rollback", "\n{s}");
    check_golden("canary_rollback", &out);
}

#[test]
fn golden_canary_promote() {
    let out = run_case("canary_promote");
    let s = summary(&out);
    let v = of_type(&out, "canary_verdict");
    assert_eq!(
        v.iter().filter(|v| v["verdict"] == "promote").count(),
        1,
        "\n{s}"
    );
    assert!(!v.iter().any(|v| v["verdict"] == "rollback"), "\n{s}");
    assert_eq!(v.last().unwrap()["verdict"], "promote", "\n{s}");
    check_golden("canary_promote", &out);
}

#[test]
fn golden_alert_resolve() {
    // f0 drifts from t = 30 s to t = 50 s.
    let out = run_case("alert_resolve");
    let s = summary(&out);
    let firing = alerts(&out, "data_drift", Some("firing"));
    let resolved = alerts(&out, "data_drift", Some("resolved"));
    let f1_fire: Vec<_> = firing.iter().filter(|a| a["feature"] == "f0").collect();
    let f1_res: Vec<_> = resolved.iter().filter(|a| a["feature"] == "f0").collect();
    assert_eq!(f1_fire.len(), 1, "\n{s}");
    assert_eq!(f1_res.len(), 1, "\n{s}");
    assert_eq!(f1_fire[0]["alert_id"], f1_res[0]["alert_id"]);
    assert!(ms(&f1_res[0]["window"]["end"]) > T0 + 50_000, "\n{s}");
    assert_eq!(features_of(&firing), vec!["f0".to_string()], "\n{s}");
    check_golden("alert_resolve", &out);
}

#[test]
fn golden_concept_drift_trigger() {
    // Half of the labels contradict the model from t = 35 s: the detectors fire on the error
    // stream, and with only the concept-drift rule enabled the trigger names that alert.
    let out = run_case("concept_drift_trigger");
    let s = summary(&out);
    let concept = alerts(&out, "concept_drift", Some("firing"));
    assert!(!concept.is_empty(), "\n{s}");
    for a in &concept {
        assert!(ms(&a["window"]["end"]) > T0 + 35_000, "{a}");
    }
    let t = of_type(&out, "retrain_trigger");
    assert_eq!(t.len(), 1, "\n{s}");
    assert_eq!(t[0]["policy"], "concept_drift", "{}", t[0]);
    assert!(
        t[0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] == "concept_drift"),
        "{}",
        t[0]
    );
    check_golden("concept_drift_trigger", &out);
}

#[test]
fn golden_scheduled_retrain() {
    // No drift: triggers come from the cron schedule and the model-age rule only, at least
    // min_interval (25 s) apart, and no data-drift alert fires.
    let out = run_case("scheduled_retrain");
    let s = summary(&out);
    assert!(alerts(&out, "data_drift", None).is_empty(), "\n{s}");
    let t = of_type(&out, "retrain_trigger");
    assert!(t.len() >= 2, "\n{s}");
    for w in t.windows(2) {
        assert!(
            ms(&w[1]["window"]["end"]) - ms(&w[0]["window"]["end"]) >= 25_000,
            "\n{s}"
        );
    }
    for trig in &t {
        let p = trig["policy"].as_str().unwrap();
        assert!(
            p.split('+')
                .all(|r| r == "schedule" || r == "max_model_age"),
            "{trig}"
        );
    }
    check_golden("scheduled_retrain", &out);
}

#[test]
fn golden_prediction_drift_trigger() {
    // The drift in f1 and c0 moves the scores; with only the prediction-drift rule enabled the
    // trigger names prediction-drift alerts and nothing else.
    let out = run_case("prediction_drift_trigger");
    let s = summary(&out);
    let t = of_type(&out, "retrain_trigger");
    assert_eq!(t.len(), 1, "\n{s}");
    assert_eq!(t[0]["policy"], "prediction_drift", "{}", t[0]);
    let reasons = t[0]["reasons"].as_array().unwrap();
    assert!(!reasons.is_empty(), "{}", t[0]);
    assert!(
        reasons.iter().all(|r| r["kind"] == "prediction_drift"),
        "{}",
        t[0]
    );
    check_golden("prediction_drift_trigger", &out);
}

#[test]
fn golden_fairness_trigger() {
    // From t = 40 s group gender = f is selected far less often: a demographic-parity alert on
    // `gender` fires after that, and with only the fairness rule enabled it is the trigger's
    // reason.
    let out = run_case("fairness_trigger");
    let s = summary(&out);
    let fair = alerts(&out, "fairness", Some("firing"));
    assert!(!fair.is_empty(), "\n{s}");
    for a in &fair {
        assert_eq!(a["feature"], "gender", "{a}");
        assert!(ms(&a["window"]["end"]) > T0 + 40_000, "{a}");
    }
    let t = of_type(&out, "retrain_trigger");
    assert_eq!(t.len(), 1, "\n{s}");
    assert_eq!(t[0]["policy"], "fairness", "{}", t[0]);
    assert!(
        t[0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] == "fairness"),
        "{}",
        t[0]
    );
    check_golden("fairness_trigger", &out);
}
