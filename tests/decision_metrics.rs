//! Decisions as metrics: after a monitor ran over a drifting two-version stream with labels,
//! `/metrics` holds the state of every alert, the triggers emitted and the last canary verdict
//! of the candidate as the outputs say, every quality metric, and process metrics; a model whose
//! input was revoked leaves no series behind.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use driftwatch::config::Config;
use driftwatch::generate::Generator;
use driftwatch::monitor::Monitor;
use driftwatch::output::{AlertStatus, Output};
use driftwatch::policy::Clock;
use driftwatch::state::{Baselines, Input};
use driftwatch::telemetry::Telemetry;

use common::{gen, Metrics};

/// A monitor with telemetry run over a drifting stream; its outputs and telemetry.
fn run() -> (Monitor, Vec<Output>, Telemetry) {
    let mut cfg = Config::default();
    cfg.window.length = Duration::from_secs(30);
    cfg.window.slide = Duration::from_secs(5);
    cfg.window.allowed_lateness = Duration::from_secs(1);
    cfg.window.min_events = 1000;
    cfg.baseline.bootstrap_events = 5000;
    let mut g = gen(23, 60_000, 1000.0);
    g.versions = 2;
    g.drift_at = Some(20_000);
    g.drift_features = vec!["f3".into()];
    g.label_share = 0.5;
    g.label_delay_ms = 1000;
    // The candidate is slower: the canary has something to decide.
    g.latency_factors = vec![1.0, 3.0];
    let telemetry = Telemetry::new();
    let mut monitor = Monitor::new(Arc::new(cfg), Baselines::default(), Clock::EventTime)
        .with_telemetry(telemetry.clone());
    let mut out = Vec::new();
    for (i, (_, line)) in Generator::new(g).enumerate() {
        let input = Input {
            kind: None,
            topic: "stream",
            partition: 0,
            offset: i as i64,
            payload: line.as_bytes(),
        };
        monitor.process(input, &mut out);
    }
    monitor.finish(&mut out);
    monitor.flush_telemetry(&telemetry);
    (monitor, out, telemetry)
}

fn value(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = m.matching(name, labels).map(|s| s.value).collect();
    assert!(found.len() <= 1, "{name}{labels:?}: {found:?}");
    found.first().copied()
}

#[test]
fn decisions_are_metrics_and_revoked_models_leave_no_series() {
    let (mut monitor, outputs, telemetry) = run();
    let m = Metrics::parse(&telemetry.render());

    // Alerts: the status of each alert's last output is what the gauge says.
    let mut last_status = BTreeMap::new();
    for o in &outputs {
        if let Output::Alert(a) = o {
            let key = (
                a.model_id.clone(),
                a.model_version.clone(),
                a.kind.as_str(),
                a.metric.clone(),
                a.feature.clone().unwrap_or_default(),
            );
            last_status.insert(key, a.status);
        }
    }
    assert!(
        last_status.values().any(|s| *s == AlertStatus::Firing),
        "the drifted stream fires alerts: {last_status:?}"
    );
    for ((model, version, kind, metric, feature), status) in &last_status {
        let labels = [
            ("model_id", model.as_str()),
            ("model_version", version.as_str()),
            ("kind", *kind),
            ("metric", metric.as_str()),
            ("feature", feature.as_str()),
        ];
        let want = if *status == AlertStatus::Firing {
            1.0
        } else {
            0.0
        };
        assert_eq!(
            value(&m, "driftwatch_alert_active", &labels),
            Some(want),
            "{labels:?}"
        );
    }
    let active: f64 = m
        .matching("driftwatch_alert_active", &[])
        .map(|s| s.value)
        .sum();
    let firing = last_status
        .values()
        .filter(|s| **s == AlertStatus::Firing)
        .count();
    assert_eq!(
        active, firing as f64,
        "no gauge is 1 without a firing alert"
    );

    // Triggers, counted per model version.
    let mut triggers: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut verdicts = BTreeMap::new();
    for o in &outputs {
        match o {
            Output::Trigger(t) => {
                *triggers
                    .entry((t.model_id.clone(), t.model_version.clone()))
                    .or_default() += 1.0
            }
            Output::Verdict(v) => {
                verdicts.insert(
                    (v.model_id.clone(), v.candidate_version.clone()),
                    v.verdict.as_str(),
                );
            }
            _ => {}
        }
    }
    assert!(!triggers.is_empty(), "sustained drift emits a trigger");
    for ((model, version), n) in &triggers {
        let labels = [
            ("model_id", model.as_str()),
            ("model_version", version.as_str()),
        ];
        assert_eq!(value(&m, "driftwatch_triggers_total", &labels), Some(*n));
    }

    // The last verdict per candidate is 1, the other verdicts 0.
    assert!(!verdicts.is_empty(), "two versions get a canary verdict");
    for ((model, candidate), last) in &verdicts {
        for s in m.matching(
            "driftwatch_canary_verdict",
            &[
                ("model_id", model.as_str()),
                ("model_version", candidate.as_str()),
            ],
        ) {
            let want = if s.labels["verdict"] == *last {
                1.0
            } else {
                0.0
            };
            assert_eq!(s.value, want, "{s:?}, last verdict {last}");
        }
        assert_eq!(
            m.matching(
                "driftwatch_canary_verdict",
                &[
                    ("model_id", model.as_str()),
                    ("model_version", candidate.as_str())
                ]
            )
            .count(),
            3
        );
    }

    // Every classification metric, not only the accuracy the alerts compare.
    let versions: Vec<&str> = ["v1", "v2"].into();
    for v in &versions {
        for metric in ["accuracy", "precision", "recall", "f1", "roc_auc", "brier"] {
            let q = value(
                &m,
                "driftwatch_model_quality",
                &[("model_version", v), ("metric", metric)],
            )
            .unwrap_or_else(|| panic!("quality {metric} of {v}"));
            assert!((0.0..=1.0).contains(&q), "{metric} of {v}: {q}");
        }
    }
    let cpu = value(&m, "process_cpu_seconds_total", &[]).expect("process metrics");
    assert!(cpu > 0.0, "the run used CPU time: {cpu}");

    // The model's only input is revoked: its series go, the service's own stay.
    let model = m
        .matching("driftwatch_window_events", &[])
        .next()
        .expect("window events")
        .labels["model_id"]
        .clone();
    monitor.drop_input("stream", 0);
    let after = Metrics::parse(&telemetry.render());
    let left: Vec<_> = after
        .samples
        .iter()
        .filter(|s| s.labels.get("model_id") == Some(&model))
        .collect();
    assert!(left.is_empty(), "series of {model} left: {left:#?}");
    assert!(after.matching("driftwatch_events_total", &[]).count() > 0);
}
