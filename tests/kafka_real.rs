//! End-to-end tests of `driftwatch run` against a real Apache Kafka broker.
//!
//! Every test is `#[ignore]`d in a plain `cargo test`: `scripts/test-all` starts a broker
//! (`scripts/kafka start`), exports `DRIFTWATCH_TEST_BROKERS` and runs them with
//! `--include-ignored`. Without that variable they fail; they never pass silently.
//!
//! Each test uses its own topics, consumer groups and HTTP port, so they can run in parallel.
//! Traffic comes from the library's generator in event time: its timestamps advance by 1/rate
//! seconds per event whatever the wall clock, so windows close as fast as events flow.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use driftwatch::event::parse_rfc3339_ms;
use driftwatch::generate::{Generator, GeneratorConfig};
use serde_json::Value;

use common::{
    brokers, committed_offsets, produce_generated, produce_lines, produce_raw, time_of, Driftwatch,
    MonitorConfig, RawMessage, TopicReader, Topics,
};

/// Event-time rate of every generated stream, predictions per second.
const RATE: f64 = 1000.0;

/// Events of prediction traffic on one topic, whatever their outcome.
const PREDICTIONS: &[(&str, &str)] = &[("topic", "prediction")];

fn window_end_ms(v: &Value) -> i64 {
    let s = v["window"]["end"]
        .as_str()
        .unwrap_or_else(|| panic!("no window.end in {v}"));
    parse_rfc3339_ms(s).unwrap_or_else(|| panic!("window.end {s} is not RFC 3339"))
}

/// Firing data-drift alerts of one feature each (dataset-level ones have no feature).
fn firing_feature_drift(outputs: &[Value]) -> Vec<&Value> {
    outputs
        .iter()
        .filter(|v| {
            v["type"] == "alert"
                && v["kind"] == "data_drift"
                && v["status"] == "firing"
                && v["feature"].is_string()
        })
        .collect()
}

fn of_type<'a>(outputs: &'a [Value], t: &str) -> Vec<&'a Value> {
    outputs.iter().filter(|v| v["type"] == t).collect()
}

/// Waits until the monitor has taken in `n` prediction events (any outcome), then a little
/// longer so that the outputs they caused are published.
fn wait_consumed(dw: &mut Driftwatch, n: u64, timeout: Duration) {
    dw.wait_metric_at_least("driftwatch_events_total", PREDICTIONS, n as f64, timeout);
    // Inputs with nothing left turn idle after `kafka.idle_after` (1 s here), then the last
    // windows close and their outputs are published within a tick.
    std::thread::sleep(Duration::from_millis(2500));
}

fn drift_generator(events: u64, drift_at: u64, features: &[&str]) -> GeneratorConfig {
    GeneratorConfig {
        seed: 11,
        events,
        rate: RATE,
        drift_at: Some(drift_at),
        drift_features: features.iter().map(|f| f.to_string()).collect(),
        drift_magnitude: 1.0,
        ..Default::default()
    }
}

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one)"]
fn drift_in_three_of_twenty_features() {
    let brokers = brokers();
    let topics = Topics::create(&brokers, "drift20", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    let drifted = ["f2", "f9", "f15"];
    let gen = GeneratorConfig {
        numeric_features: 20,
        categorical_features: 0,
        ..drift_generator(80_000, 20_000, &drifted)
    };
    let mut dw = Driftwatch::start("drift20", &cfg, dir.path());
    let sent = produce_generated(&topics, gen.clone());
    wait_consumed(&mut dw, sent, Duration::from_secs(90));

    let mut reader = TopicReader::new(&brokers, &[&topics.alerts]);
    reader.read_to_end(Duration::from_secs(30));
    let alerts = reader.json_of(&topics.alerts);
    let drift_alerts = firing_feature_drift(&alerts);
    let mut first_end: BTreeMap<String, i64> = BTreeMap::new();
    for a in &drift_alerts {
        let f = a["feature"].as_str().expect("feature").to_string();
        let end = window_end_ms(a);
        let e = first_end.entry(f).or_insert(end);
        *e = (*e).min(end);
    }
    let got: BTreeSet<&str> = first_end.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = drifted.into_iter().collect();
    assert_eq!(
        got, want,
        "data_drift alerts must name exactly the drifted features; alerts: {drift_alerts:#?}"
    );

    let drift_ms = time_of(&gen, gen.drift_at.expect("drift"));
    let full_ms = drift_ms + cfg.window.as_millis() as i64;
    let deadline_ms = full_ms + 2 * cfg.slide.as_millis() as i64;
    for (f, end) in &first_end {
        assert!(
            *end > drift_ms,
            "{f}: first alert on a window ending at {end} before the drift started at {drift_ms}"
        );
        assert!(
            *end <= deadline_ms,
            "{f}: first alert on a window ending at {end}, later than the window full of drifted \
             events ({full_ms}) + 2 slides = {deadline_ms}"
        );
    }
}

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one)"]
fn stationary_stream_no_drift_alerts() {
    let brokers = brokers();
    let topics = Topics::create(&brokers, "stationary", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    let gen = GeneratorConfig {
        seed: 5,
        events: 200_000,
        rate: RATE,
        ..Default::default()
    };
    let mut dw = Driftwatch::start("stationary", &cfg, dir.path());
    let sent = produce_generated(&topics, gen.clone());
    assert_eq!(sent, 200_000, "no labels: one message per prediction");
    wait_consumed(&mut dw, sent, Duration::from_secs(120));

    // Windows were evaluated: every feature has a drift score.
    let m = dw.metrics();
    let scored: BTreeSet<&str> = m
        .matching("driftwatch_feature_drift_score", &[])
        .filter_map(|s| s.labels.get("feature").map(String::as_str))
        .collect();
    let features = gen.numeric_features + gen.categorical_features;
    assert!(
        scored.len() >= features,
        "expected drift scores for all {features} features, got {scored:?}"
    );

    let mut reader = TopicReader::new(&brokers, &[&topics.alerts]);
    reader.read_to_end(Duration::from_secs(30));
    let alerts = reader.json_of(&topics.alerts);
    let drift: Vec<&Value> = alerts
        .iter()
        .filter(|v| v["kind"] == "data_drift")
        .collect();
    assert!(
        drift.is_empty(),
        "{} data_drift alerts on a stationary stream of {sent} events: {drift:#?}",
        drift.len()
    );
}

/// One malformed message and the dead-letter reason it must get.
struct Bad {
    reason: &'static str,
    bytes: Vec<u8>,
}

fn malformed_messages(good_line: &str) -> Vec<Bad> {
    let good: Value = serde_json::from_str(good_line).expect("generator emits JSON");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        serde_json::to_vec(&v).expect("serialize")
    };
    let mut oversize = good.clone();
    for i in 0..200 {
        oversize["features"][format!("padding_{i}")] = Value::from(i as f64 + 0.5);
    }
    let oversize = serde_json::to_vec(&oversize).expect("serialize");
    assert!(oversize.len() > 2048, "oversize message is big enough");
    let mut invalid_utf8 = br#"{"event_id":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid_utf8.extend_from_slice(br#"","model_id":"model-0"}"#);
    vec![
        Bad {
            reason: "not_json",
            bytes: b"this is not JSON".to_vec(),
        },
        Bad {
            reason: "not_json",
            bytes: b"{}}".to_vec(),
        },
        Bad {
            reason: "truncated",
            bytes: good_line.as_bytes()[..good_line.len() / 2].to_vec(),
        },
        Bad {
            reason: "invalid_utf8",
            bytes: invalid_utf8,
        },
        Bad {
            reason: "wrong_type",
            bytes: with(&|v| v["model_id"] = Value::from(42)),
        },
        Bad {
            reason: "missing_field",
            bytes: with(&|v| {
                v.as_object_mut().expect("object").remove("model_version");
            }),
        },
        Bad {
            reason: "bad_timestamp",
            bytes: with(&|v| v["timestamp"] = Value::from("yesterday at noon")),
        },
        Bad {
            reason: "invalid_value",
            bytes: with(&|v| v["prediction"]["score"] = Value::from(1.5)),
        },
        Bad {
            reason: "wrong_kind",
            bytes: serde_json::to_vec(&serde_json::json!({
                "event_id": good["event_id"], "model_id": good["model_id"],
                "timestamp": good["timestamp"], "label": 1
            }))
            .expect("serialize"),
        },
        Bad {
            reason: "oversize",
            bytes: oversize,
        },
    ]
}

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one)"]
fn malformed_messages_dead_lettered() {
    let brokers = brokers();
    let topics = Topics::create(&brokers, "deadletter", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    cfg.bootstrap_events = 1000;
    cfg.set("limits", "max_event_bytes", "2048");
    let good: Vec<(String, String)> = Generator::new(GeneratorConfig {
        seed: 3,
        events: 3000,
        rate: RATE,
        ..Default::default()
    })
    .collect();
    assert!(good.iter().all(|(_, l)| l.len() < 2048));
    let bad = malformed_messages(&good[0].1);

    // Good events with the malformed ones spread among them (the last one after the last good
    // event but one, so good events follow every kind of bad one).
    let mut messages = Vec::new();
    let mut bad_positions = Vec::new();
    let every = good.len() / (bad.len() + 1);
    let mut bad_iter = bad.iter();
    for (i, (model, line)) in good.iter().enumerate() {
        messages.push(RawMessage {
            key: Some(model.as_bytes().to_vec()),
            payload: line.as_bytes().to_vec(),
        });
        if i % every == every - 1 {
            if let Some(b) = bad_iter.next() {
                bad_positions.push(messages.len());
                messages.push(RawMessage {
                    key: Some(b"model-0".to_vec()),
                    payload: b.bytes.clone(),
                });
            }
        }
    }
    assert_eq!(bad_positions.len(), bad.len(), "every bad message placed");
    let placed = produce_raw(&brokers, &topics.predictions, &messages);

    let mut dw = Driftwatch::start("deadletter", &cfg, dir.path());
    let total = messages.len() as f64;
    dw.wait_metric_at_least(
        "driftwatch_events_total",
        PREDICTIONS,
        total,
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_millis(1000));

    // Every malformed message is on the dead-letter topic, with its origin.
    let mut reader = TopicReader::new(&brokers, &[&topics.dead_letters]);
    reader.read_until("all dead letters", Duration::from_secs(30), |r| {
        r.len() >= bad.len()
    });
    reader.poll_for(Duration::from_millis(500));
    let letters = reader.of_topic(&topics.dead_letters);
    assert_eq!(
        letters.len(),
        bad.len(),
        "one dead letter per malformed message (and none for good ones)"
    );
    for (b, pos) in bad.iter().zip(&bad_positions) {
        let (partition, offset) = placed[*pos];
        let l = letters
            .iter()
            .find(|l| l.header("source-offset") == Some(offset.to_string()))
            .unwrap_or_else(|| {
                panic!(
                    "no dead letter for the {} message at offset {offset}",
                    b.reason
                )
            });
        assert_eq!(
            l.header("reason").as_deref(),
            Some(b.reason),
            "reason of the message at offset {offset} (detail: {:?})",
            l.header("detail")
        );
        assert_eq!(l.header("source-topic"), Some(topics.predictions.clone()));
        assert_eq!(l.header("source-partition"), Some(partition.to_string()));
        assert_eq!(
            l.payload, b.bytes,
            "original bytes of the {} message",
            b.reason
        );
    }

    // The metrics count them by reason, and every good event was used.
    let m = dw.metrics();
    let mut want: BTreeMap<&str, f64> = driftwatch::event::DecodeError::REASONS
        .iter()
        .map(|r| (*r, 0.0))
        .collect();
    for b in &bad {
        *want.entry(b.reason).or_default() += 1.0;
    }
    for (reason, n) in &want {
        assert_eq!(
            m.sum("driftwatch_dead_letters_total", &[("reason", reason)]),
            *n,
            "driftwatch_dead_letters_total{{reason=\"{reason}\"}}"
        );
    }
    // Outcomes of events that were used: "bootstrapped" is the event completing a baseline.
    let used: f64 = ["recorded", "bootstrap", "bootstrapped"]
        .iter()
        .map(|o| {
            m.sum(
                "driftwatch_events_total",
                &[("topic", "prediction"), ("outcome", o)],
            )
        })
        .sum();
    let outcomes: Vec<_> = m.matching("driftwatch_events_total", &[]).collect();
    assert_eq!(
        used,
        good.len() as f64,
        "good events recorded or bootstrapped: {outcomes:?}"
    );
    assert_eq!(
        m.sum(
            "driftwatch_events_total",
            &[("topic", "prediction"), ("outcome", "dead_letter")]
        ),
        bad.len() as f64
    );
}

/// The `consumed=` count of the shutdown summary line, if the binary logs one.
fn logged_consumed(dw: &Driftwatch) -> Option<u64> {
    dw.log_field("source stopped", "consumed")
        .and_then(|v| v.parse().ok())
}

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one)"]
fn sigterm_restart_at_least_once() {
    let brokers = brokers();
    let topics = Topics::create(&brokers, "sigterm", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    let n: u64 = 150_000;
    let sent = produce_generated(
        &topics,
        GeneratorConfig {
            seed: 9,
            events: n,
            rate: RATE,
            ..Default::default()
        },
    );
    assert_eq!(sent, n);

    // Run 1: SIGTERM part-way.
    let mut run1 = Driftwatch::start("run1", &cfg, dir.path());
    let seen1 = run1.wait_metric_at_least(
        "driftwatch_events_total",
        &[],
        (n / 3) as f64,
        Duration::from_secs(60),
    ) as u64;
    run1.sigterm();
    let t0 = Instant::now();
    let status = run1
        .wait_exit(cfg.drain_timeout + Duration::from_secs(10))
        .expect("driftwatch exits after SIGTERM");
    let took = t0.elapsed();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        took <= cfg.drain_timeout,
        "shutdown took {took:?}, longer than kafka.drain_timeout {:?}",
        cfg.drain_timeout
    );
    let processed1 = logged_consumed(&run1).unwrap_or_else(|| {
        eprintln!(
            "FINDING: no `source stopped consumed=N` line at shutdown; using the last scraped \
             events_total ({seen1}) as a lower bound"
        );
        seen1
    });
    assert!(
        processed1 >= seen1,
        "{processed1} < {seen1} already counted"
    );
    assert!(
        processed1 < n,
        "SIGTERM came too late: run 1 consumed everything"
    );
    let committed = committed_offsets(&brokers, &cfg.group_id, &topics.predictions);
    let committed1 = committed[&0].expect("run 1 committed an offset");
    eprintln!("run 1: processed {processed1}, committed {committed1}, shutdown took {took:?}");
    assert!(
        committed1 as u64 <= processed1,
        "committed offset {committed1} is past the {processed1} events run 1 processed"
    );

    // Run 2: same group, until everything is consumed.
    let mut run2 = Driftwatch::start("run2", &cfg, dir.path());
    let rest = n - committed1 as u64;
    run2.wait_metric_at_least(
        "driftwatch_events_total",
        &[],
        rest as f64,
        Duration::from_secs(90),
    );
    std::thread::sleep(Duration::from_millis(1000));
    let m2 = run2.metrics();
    let seen2 = m2.sum("driftwatch_events_total", &[]) as u64;
    // The baseline bootstrapped by run 1 is durable (state topic): run 2 does not bootstrap.
    assert!(
        run2.logs()
            .iter()
            .any(|l| l.contains("baseline restored from the state topic")),
        "run 2 restores run 1's bootstrapped baseline from the state topic"
    );
    assert_eq!(
        m2.sum(
            "driftwatch_events_total",
            &[("topic", "prediction"), ("outcome", "bootstrap")]
        ),
        0.0,
        "run 2 must not bootstrap a new baseline"
    );
    run2.sigterm();
    let status = run2
        .wait_exit(cfg.drain_timeout + Duration::from_secs(10))
        .expect("driftwatch exits after SIGTERM");
    assert!(status.success(), "exit status of run 2: {status}");
    let processed2 = logged_consumed(&run2).unwrap_or(seen2);
    assert_eq!(
        processed2, rest,
        "run 2 resumes at the committed offset {committed1} and reads to the end"
    );

    let window_events = MonitorConfig::events_in(cfg.window, RATE)
        + MonitorConfig::events_in(cfg.slide, RATE)
        + MonitorConfig::events_in(cfg.lateness, RATE);
    let total = processed1 + processed2;
    assert!(total >= n, "events lost: {processed1} + {processed2} < {n}");
    assert!(
        total - n <= window_events,
        "{} events processed twice, more than a window's worth ({window_events})",
        total - n
    );
}

/// Paths and content checks of the Parquet snapshot a trigger points to.
fn assert_parquet_snapshot(trigger: &Value) {
    let path = trigger["evidence"]["snapshot"]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("no evidence.snapshot.path in {trigger:#}"));
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("snapshot {path}: {e}"));
    assert!(
        bytes.len() > 8 && bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
        "{path} is not a Parquet file ({} bytes)",
        bytes.len()
    );
}

fn assert_one_trigger_naming(triggers: &[&Value], drifted: &[&str]) {
    assert_eq!(
        triggers.len(),
        1,
        "exactly one retraining trigger expected: {triggers:#?}"
    );
    let t = triggers[0];
    assert_eq!(t["type"], "retrain_trigger");
    let named: BTreeSet<&str> = t["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter(|r| r["kind"] == "data_drift")
        .filter_map(|r| r["feature"].as_str())
        .collect();
    assert_eq!(
        named,
        drifted.iter().copied().collect::<BTreeSet<_>>(),
        "trigger reasons must name the drifted features: {t:#}"
    );
}

const TRIGGER_DRIFTED: [&str; 2] = ["f3", "f5"];

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one)"]
fn drift_exactly_one_trigger() {
    let brokers = brokers();
    let topics = Topics::create(&brokers, "trigger", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    let mut dw = Driftwatch::start("trigger", &cfg, dir.path());
    let sent = produce_generated(&topics, drift_generator(80_000, 20_000, &TRIGGER_DRIFTED));
    wait_consumed(&mut dw, sent, Duration::from_secs(90));

    let mut reader = TopicReader::new(&brokers, &[&topics.retrain]);
    reader.read_to_end(Duration::from_secs(30));
    let outputs = reader.json_of(&topics.retrain);
    let triggers = of_type(&outputs, "retrain_trigger");
    assert_eq!(
        outputs.len(),
        triggers.len(),
        "only triggers on the retrain topic"
    );
    assert_one_trigger_naming(&triggers, &TRIGGER_DRIFTED);
    assert_parquet_snapshot(triggers[0]);
}

/// Where to SIGKILL the monitor in a drift episode.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KillPoint {
    /// After the first data-drift alert, before the trigger.
    AfterAlert,
    /// After the trigger was published.
    AfterTrigger,
}

/// Sends the first part of a drift stream, SIGKILLs the monitor at `kill`, restarts it with the
/// same group, sends the rest, and checks that exactly one trigger was published overall.
fn sigkill_mid_episode(kill: KillPoint) {
    let brokers = brokers();
    let topics = Topics::create(&brokers, "sigkill", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    // Only full windows are evaluated: the first one ends a window length after the baseline
    // is bootstrapped (5 s + 30 s). Drift starts after it, so that the alert fires on the
    // second window with drifted events and the trigger one slide later.
    let drift_at = 40_000u64;
    let gen = drift_generator(90_000, drift_at, &TRIGGER_DRIFTED);
    let lines: Vec<(String, String)> = Generator::new(gen.clone()).collect();
    let slide = MonitorConfig::events_in(cfg.slide, RATE);
    let lateness = MonitorConfig::events_in(cfg.lateness, RATE);
    // With fire_after = 2 and sustain_windows = 2 (defaults), the alert fires on the second
    // window with drifted events and the trigger one slide later. Cut half a slide after the
    // window that must have closed.
    let slides_to_kill_point = match kill {
        KillPoint::AfterAlert => 2,
        KillPoint::AfterTrigger => 3,
    };
    let cut = (drift_at + slides_to_kill_point * slide + lateness + slide / 2) as usize;

    let mut run1 = Driftwatch::start("run1", &cfg, dir.path());
    produce_lines(&topics, lines[..cut].iter().cloned());
    let mut reader = TopicReader::new(&brokers, &[&topics.alerts, &topics.retrain]);
    match kill {
        KillPoint::AfterAlert => {
            reader.read_until("a data_drift alert", Duration::from_secs(60), |r| {
                r.iter()
                    .any(|r| r.topic == topics.alerts && r.json()["kind"] == "data_drift")
            });
            wait_consumed(&mut run1, cut as u64, Duration::from_secs(60));
            reader.read_to_end(Duration::from_secs(30));
            assert!(
                reader.of_topic(&topics.retrain).is_empty(),
                "test premise: no trigger yet after the first {cut} events"
            );
        }
        KillPoint::AfterTrigger => {
            reader.read_until("a retraining trigger", Duration::from_secs(60), |r| {
                r.iter().any(|r| r.topic == topics.retrain)
            });
        }
    }
    run1.sigkill();
    let alerts_before = firing_feature_drift(&reader.json_of(&topics.alerts)).len();
    let committed = committed_offsets(&brokers, &cfg.group_id, &topics.predictions)[&0];
    eprintln!("killed at {kill:?}; committed offset {committed:?}; {alerts_before} drift alerts");
    assert!(
        !matches!(committed, Some(c) if c as u64 > drift_at),
        "test premise: the restart must replay the drift onset (committed {committed:?})"
    );

    let mut run2 = Driftwatch::start("run2", &cfg, dir.path());
    produce_lines(&topics, lines[cut..].iter().cloned());
    let rest = lines.len() as u64 - committed.unwrap_or(0) as u64;
    wait_consumed(&mut run2, rest, Duration::from_secs(90));
    reader.read_to_end(Duration::from_secs(30));
    // The restart re-read the drift onset but carried on from run 1's policy checkpoint
    // instead of evaluating those windows again.
    let checkpoints: u64 = run2
        .log_field("state of the assigned partitions restored", "checkpoints")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        checkpoints >= 1,
        "run 2 resumes from run 1's policy checkpoint:\n{}",
        run2.logs().join("\n")
    );
    let alerts_after = firing_feature_drift(&reader.json_of(&topics.alerts)).len();
    assert!(
        alerts_after >= alerts_before,
        "{alerts_before} alerts before the kill, {alerts_after} after"
    );
    let outputs = reader.json_of(&topics.retrain);
    let triggers = of_type(&outputs, "retrain_trigger");
    assert_one_trigger_naming(&triggers, &TRIGGER_DRIFTED);
    assert_parquet_snapshot(triggers[0]);
}

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one)"]
fn sigkill_mid_episode_still_one_trigger() {
    sigkill_mid_episode(KillPoint::AfterTrigger);
}

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one)"]
fn sigkill_after_alert_before_trigger_still_one_trigger() {
    sigkill_mid_episode(KillPoint::AfterAlert);
}

/// Runs two interleaved versions with the given latency factors; returns the verdicts in order
/// of their window, and the configured failure threshold and promote count.
fn canary_verdicts(test: &str, latency_factors: [f64; 2]) -> (Vec<Value>, u32, u32, i64) {
    let brokers = brokers();
    let topics = Topics::create(&brokers, test, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    let (failure_threshold, promote_after) = (3u32, 5u32);
    cfg.set(
        "canary",
        "failure_threshold",
        &failure_threshold.to_string(),
    )
    .set("canary", "promote_after", &promote_after.to_string())
    .set("canary", "max_latency_p99_ratio", "1.5");
    let mut dw = Driftwatch::start(test, &cfg, dir.path());
    let sent = produce_generated(
        &topics,
        GeneratorConfig {
            seed: 21,
            versions: 2,
            latency_factors: latency_factors.to_vec(),
            events: 80_000,
            rate: RATE,
            ..Default::default()
        },
    );
    wait_consumed(&mut dw, sent, Duration::from_secs(90));
    let mut reader = TopicReader::new(&brokers, &[&topics.verdicts]);
    reader.read_to_end(Duration::from_secs(30));
    let mut verdicts: Vec<Value> = reader.json_of(&topics.verdicts);
    verdicts.sort_by_key(window_end_ms);
    for v in &verdicts {
        assert_eq!(v["type"], "canary_verdict");
        assert_eq!(v["baseline_version"], "v1", "{v:#}");
        assert_eq!(v["candidate_version"], "v2", "{v:#}");
    }
    (
        verdicts,
        failure_threshold,
        promote_after,
        cfg.slide.as_millis() as i64,
    )
}

/// Whether a check whose metric name starts with `metric` failed (the latency check has been
/// called `latency_p99_ratio` and `latency_p99_ms`).
fn check_failed(v: &Value, metric: &str) -> bool {
    v["checks"].as_array().is_some_and(|c| {
        c.iter().any(|c| {
            c["metric"].as_str().is_some_and(|m| m.starts_with(metric)) && c["passed"] == false
        })
    })
}

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one)"]
fn slow_candidate_rolled_back() {
    let (verdicts, threshold, _, slide_ms) = canary_verdicts("canaryslow", [1.0, 2.5]);
    assert!(
        verdicts.iter().all(|v| v["verdict"] != "promote"),
        "a 2.5x slower candidate must never be promoted: {verdicts:#?}"
    );
    let pos = verdicts
        .iter()
        .position(|v| v["verdict"] == "rollback")
        .unwrap_or_else(|| panic!("no rollback verdict: {verdicts:#?}"));
    assert_eq!(
        pos + 1,
        threshold as usize,
        "rollback on the failure_threshold-th compared window: {verdicts:#?}"
    );
    for v in &verdicts[..=pos] {
        assert!(
            check_failed(v, "latency_p99_ms"),
            "every compared window fails the latency check: {v:#}"
        );
    }
    assert!(
        window_end_ms(&verdicts[pos]) - window_end_ms(&verdicts[0])
            <= (threshold as i64 - 1) * slide_ms,
        "the failing windows are consecutive: {verdicts:#?}"
    );
    assert_eq!(verdicts.len(), pos + 1, "no verdict after the final one");
}

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one)"]
fn healthy_candidate_promoted() {
    let (verdicts, _, promote_after, _) = canary_verdicts("canaryok", [1.0, 1.0]);
    assert!(
        verdicts.iter().all(|v| v["verdict"] != "rollback"),
        "a candidate as fast as the baseline must not be rolled back: {verdicts:#?}"
    );
    let pos = verdicts
        .iter()
        .position(|v| v["verdict"] == "promote")
        .unwrap_or_else(|| panic!("no promote verdict: {verdicts:#?}"));
    assert!(
        pos + 1 >= promote_after as usize,
        "promoted after {} windows, before promote_after = {promote_after}",
        pos + 1
    );
    assert_eq!(verdicts.len(), pos + 1, "no verdict after the final one");
}
