//! What the monitor's unit tests share: a small configuration, feeding lines of one file,
//! predictions of a model version at a steady rate.

use super::*;

/// A monitor over 60 s windows sliding by 10 s, bootstrapping from 100 events, with
/// `configure` applied and metrics exported.
pub(super) fn test_monitor(configure: impl FnOnce(&mut Config)) -> (Monitor, Telemetry) {
    let mut cfg = Config::default();
    cfg.window.length = std::time::Duration::from_secs(60);
    cfg.window.slide = std::time::Duration::from_secs(10);
    cfg.window.allowed_lateness = std::time::Duration::from_secs(5);
    cfg.window.min_events = 50;
    cfg.baseline.bootstrap_events = 100;
    cfg.limits.version_idle = std::time::Duration::from_secs(60);
    cfg.limits.model_idle = std::time::Duration::from_secs(120);
    configure(&mut cfg);
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let telemetry = Telemetry::new();
    let monitor = Monitor::new(Arc::new(cfg), Baselines::default(), Clock::EventTime)
        .with_telemetry(telemetry.clone());
    (monitor, telemetry)
}

/// Feeds `payload` as the next line of one file.
pub(super) fn feed(m: &mut Monitor, offset: &mut i64, payload: &str) {
    *offset += 1;
    let input = Input {
        kind: None,
        topic: "events.jsonl",
        partition: 0,
        offset: *offset,
        payload: payload.as_bytes(),
    };
    let mut out = Vec::new();
    m.process(input, &mut out);
}

/// Predictions of `model`/`version` at 20 a second over `[from_s, to_s)`, ids
/// `<model>-<version>-<ms>`.
pub(super) fn predictions(model: &str, version: &str, from_s: i64, to_s: i64) -> Vec<String> {
    (from_s * 20..to_s * 20)
        .map(|i| {
            let ms = i * 50;
            format!(
                r#"{{"event_id":"{model}-{version}-{ms}","model_id":"{model}","model_version":"{version}","timestamp":"{}","features":{{"x":{}}},"prediction":{{"score":0.5,"label":1}}}}"#,
                crate::event::format_rfc3339_ms(ms),
                (i % 17) as f64
            )
        })
        .collect()
}

pub(super) fn has_series(t: &Telemetry, labels: &str) -> bool {
    t.render()
        .lines()
        .any(|l| !l.starts_with('#') && l.contains(labels))
}
