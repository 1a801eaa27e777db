//! Acceptance tests of `driftwatch replay` on generated streams (seeds chosen here, not in the
//! code): drift → alerts and one retraining trigger with evidence; stationary → nothing;
//! canary rollback / promote; dead letters; alert lifecycle.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

const DRIFTED: [&str; 4] = ["f3", "f9", "f14", "c1"];

fn drift_stream_config(seed: u64, drift: bool) -> driftwatch::generate::GeneratorConfig {
    let mut g = gen(seed, 80_000, 200.0);
    g.numeric_features = 20;
    g.categorical_features = 2;
    if drift {
        g.drift_at = Some(40_000);
        g.drift_features = DRIFTED.iter().map(|s| s.to_string()).collect();
        g.drift_magnitude = 1.5;
    }
    g
}

#[test]
fn drift_part_way_alerts_on_exactly_the_drifted_features_and_triggers_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("drift.jsonl");
    let g = drift_stream_config(90_817, true);
    write_stream(&input, &g);
    let drift_start = time_of(&g, g.drift_at.unwrap());
    let cfg = replay_config(60, 10, 8000, &dir.path().join("snapshots"));
    let (out, dead) = replay(cfg, &input);
    assert!(dead.is_empty(), "{dead:?}");
    let s = summary(&out);

    let drift_alerts = alerts(&out, "data_drift", None);
    let firing = alerts(&out, "data_drift", Some("firing"));
    assert!(!firing.is_empty(), "no data_drift alert:\n{s}");
    for a in &drift_alerts {
        assert!(
            ms(&a["window"]["end"]) > drift_start,
            "data_drift alert on a window ending before the drift started ({drift_start}):\n{a}"
        );
        assert!(
            a["feature"].is_string(),
            "dataset-level drift alert with 4 of 22 features drifted:\n{a}"
        );
    }
    assert_eq!(features_of(&firing), sorted(&DRIFTED), "\n{s}");
    // One firing per feature (the drift never stops).
    for f in DRIFTED {
        let n = firing.iter().filter(|a| a["feature"] == f).count();
        assert_eq!(n, 1, "{f} fired {n} times:\n{s}");
    }

    let triggers = of_type(&out, "retrain_trigger");
    assert_eq!(triggers.len(), 1, "\n{s}");
    let t = triggers[0];
    assert!(ms(&t["window"]["end"]) > drift_start, "{t}");
    assert!(ms(&t["emitted_at"]) > drift_start, "{t}");
    assert!(t["policy"].as_str().unwrap().contains("data_drift"), "{t}");
    let reason_features: Vec<&Value> = t["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "data_drift")
        .collect();
    assert_eq!(features_of(&reason_features), sorted(&DRIFTED), "{t}");
    // Every reason names a firing alert.
    for r in t["reasons"].as_array().unwrap() {
        assert!(
            out.iter()
                .any(|o| o["type"] == "alert" && o["alert_id"] == r["alert_id"]),
            "reason without alert: {r}"
        );
    }
    // Evidence: per-feature statistics with the drifted ones marked.
    let ev = t["evidence"]["features"]
        .as_object()
        .expect("evidence.features");
    assert_eq!(ev.len(), 22, "{t}");
    let mut marked: Vec<String> = ev
        .iter()
        .filter(|(_, v)| v["drifted"] == true)
        .map(|(k, _)| k.clone())
        .collect();
    marked.sort();
    assert_eq!(marked, sorted(&DRIFTED), "{t}");
    // Evidence: a Parquet snapshot.
    let snap = &t["evidence"]["snapshot"];
    assert_eq!(snap["format"], "parquet", "{t}");
    let path = std::path::PathBuf::from(snap["path"].as_str().expect("snapshot.path"));
    let bytes = std::fs::read(&path).expect("snapshot exists");
    assert_eq!(&bytes[..4], b"PAR1");
    assert_eq!(&bytes[bytes.len() - 4..], b"PAR1");
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let rows = reader.metadata().file_metadata().num_rows();
    assert!(rows > 0);
    assert_eq!(rows, snap["events"].as_i64().unwrap(), "{t}");
}

#[test]
fn stationary_stream_gives_no_trigger_and_no_drift_alert() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("stationary.jsonl");
    let g = drift_stream_config(90_817, false);
    write_stream(&input, &g);
    let cfg = replay_config(60, 10, 8000, &dir.path().join("snapshots"));
    let (out, dead) = replay(cfg, &input);
    assert!(dead.is_empty());
    let s = summary(&out);
    assert!(alerts(&out, "data_drift", None).is_empty(), "\n{s}");
    assert!(of_type(&out, "retrain_trigger").is_empty(), "\n{s}");
}

fn canary(factors: &[f64], seed: u64) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("canary.jsonl");
    let mut g = gen(seed, 40_000, 200.0);
    g.versions = 2;
    g.latency_factors = factors.to_vec();
    write_stream(&input, &g);
    let cfg = replay_config(30, 10, 4000, &dir.path().join("snapshots"));
    let (out, dead) = replay(cfg, &input);
    assert!(dead.is_empty());
    out
}

#[test]
fn slow_candidate_is_rolled_back_and_never_promoted() {
    let out = canary(&[1.0, 2.5], 5_551);
    let verdicts = of_type(&out, "canary_verdict");
    let s = summary(&out);
    assert!(verdicts.iter().any(|v| v["verdict"] == "rollback"), "\n{s}");
    assert!(!verdicts.iter().any(|v| v["verdict"] == "promote"), "\n{s}");
    assert_eq!(
        verdicts
            .iter()
            .filter(|v| v["verdict"] == "rollback")
            .count(),
        1,
        "one final verdict per candidate:\n{s}"
    );
    for v in &verdicts {
        assert_eq!(v["baseline_version"], "v1");
        assert_eq!(v["candidate_version"], "v2");
    }
    let rb = verdicts
        .iter()
        .find(|v| v["verdict"] == "rollback")
        .unwrap();
    let lat = rb["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == "latency_p99_ms")
        .expect("latency check");
    assert_eq!(lat["passed"], false, "{rb}");
    let ratio = lat["candidate"].as_f64().unwrap() / lat["baseline"].as_f64().unwrap();
    assert!((2.0..3.2).contains(&ratio), "{rb}");
}

#[test]
fn healthy_candidate_is_promoted_and_never_rolled_back() {
    let out = canary(&[1.0, 1.0], 5_552);
    let verdicts = of_type(&out, "canary_verdict");
    let s = summary(&out);
    assert!(verdicts.iter().any(|v| v["verdict"] == "promote"), "\n{s}");
    assert!(
        !verdicts.iter().any(|v| v["verdict"] == "rollback"),
        "\n{s}"
    );
    assert_eq!(
        verdicts
            .iter()
            .filter(|v| v["verdict"] == "promote")
            .count(),
        1,
        "\n{s}"
    );
}

#[test]
fn malformed_lines_are_dead_lettered_one_each_and_good_lines_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good.jsonl");
    let mut g = gen(777, 3000, 100.0);
    g.numeric_features = 3;
    g.categorical_features = 1;
    write_stream(&good_path, &g);
    let good = std::fs::read_to_string(&good_path).unwrap();
    let good: Vec<&str> = good.lines().collect();
    let ts = "\"2027-01-01T00:00:05.000Z\"";
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("not_json", b"this is not json".to_vec()),
        (
            "truncated",
            format!(r#"{{"event_id":"t1","model_id":"model-0","timestamp":{ts},"pre"#).into_bytes(),
        ),
        ("invalid_utf8", {
            let mut v = br#"{"event_id":"u1","model_id":"model-"#.to_vec();
            v.extend_from_slice(&[0xff, 0xfe, 0xc3]);
            v.extend_from_slice(br#"","model_version":"v1","timestamp":1798761605000,"prediction":{"score":0.5}}"#);
            v
        }),
        (
            "wrong_type",
            format!(r#"{{"event_id":"w1","model_id":42,"model_version":"v1","timestamp":{ts},"prediction":{{"score":0.5}}}}"#).into_bytes(),
        ),
        (
            "wrong_type",
            format!(r#"{{"event_id":"w2","model_id":"model-0","model_version":"v1","timestamp":{ts},"prediction":{{"score":"high"}}}}"#).into_bytes(),
        ),
        (
            "missing_field",
            format!(r#"{{"model_id":"model-0","model_version":"v1","timestamp":{ts},"prediction":{{"score":0.5}}}}"#).into_bytes(),
        ),
        (
            "missing_field",
            br#"{"event_id":"m2","model_id":"model-0","model_version":"v1","prediction":{"score":0.5}}"#.to_vec(),
        ),
        (
            "bad_timestamp",
            br#"{"event_id":"b1","model_id":"model-0","model_version":"v1","timestamp":"yesterday","prediction":{"score":0.5}}"#.to_vec(),
        ),
        (
            "bad_timestamp",
            br#"{"event_id":"b2","model_id":"model-0","model_version":"v1","timestamp":1798761605000.5,"prediction":{"score":0.5}}"#.to_vec(),
        ),
        (
            "invalid_value",
            format!(r#"{{"event_id":"s1","model_id":"model-0","model_version":"v1","timestamp":{ts},"prediction":{{"score":1.5}}}}"#).into_bytes(),
        ),
    ];
    // Interleave: a bad line after every 100 good lines, blank lines here and there.
    let mut file: Vec<u8> = Vec::new();
    let mut bad_iter = bad.iter();
    for (i, l) in good.iter().enumerate() {
        file.extend_from_slice(l.as_bytes());
        file.push(b'\n');
        if i % 100 == 50 {
            if let Some((_, b)) = bad_iter.next() {
                file.extend_from_slice(b);
                file.push(b'\n');
            }
            file.extend_from_slice(b"\n   \n\r\n");
        }
    }
    assert!(bad_iter.next().is_none());
    let input = dir.path().join("mixed.jsonl");
    std::fs::write(&input, &file).unwrap();
    let dead_path = dir.path().join("dead.jsonl");
    let cfgp = dir.path().join("c.toml");
    std::fs::write(
        &cfgp,
        format!(
            "[triggers]\nsnapshot_dir = {:?}\n",
            dir.path().join("snap").display().to_string()
        ),
    )
    .unwrap();
    let o = run_cli(&[
        "replay",
        "--input",
        input.to_str().unwrap(),
        "--config",
        cfgp.to_str().unwrap(),
        "--window",
        "10s",
        "--slide",
        "5s",
        "--baseline-events",
        "500",
        "--dead-letter",
        dead_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dead = parse_lines(&std::fs::read(&dead_path).unwrap());
    assert_eq!(dead.len(), bad.len(), "{dead:#?}");
    for ((reason, bytes), d) in bad.iter().zip(&dead) {
        assert_eq!(d["reason"], *reason, "{d}");
        assert_eq!(
            d["original"].as_str().unwrap(),
            String::from_utf8_lossy(bytes),
            "{d}"
        );
        assert!(!d["detail"].as_str().unwrap().is_empty());
        let line_no = d["offset"].as_i64().unwrap() as usize;
        let line = file.split(|b| *b == b'\n').nth(line_no - 1).unwrap();
        assert_eq!(line, &bytes[..], "offset is the 1-based line number: {d}");
    }
    // Nothing but dead letters in the dead-letter file, none on stdout.
    let outs = parse_lines(&o.stdout);
    assert!(outs.iter().all(|v| v.get("reason").is_none()));
    assert!(
        stderr(&o).contains(&format!("replayed {} lines", good.len() + bad.len())),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(&format!("{} dead letters", bad.len())),
        "{}",
        stderr(&o)
    );
    // The good lines were processed: same outputs as a replay of the good lines alone.
    let o2 = run_cli(&[
        "replay",
        "--input",
        good_path.to_str().unwrap(),
        "--config",
        cfgp.to_str().unwrap(),
        "--window",
        "10s",
        "--slide",
        "5s",
        "--baseline-events",
        "500",
    ]);
    assert!(o2.status.success());
    // Triggers name their input (file and line range), which differs between the two files.
    let without_input = |mut v: Vec<serde_json::Value>| {
        for o in &mut v {
            if let Some(e) = o.get_mut("evidence").and_then(|e| e.as_object_mut()) {
                e.remove("input");
            }
        }
        v
    };
    assert_eq!(
        without_input(outs.clone()),
        without_input(parse_lines(&o2.stdout))
    );
    assert!(!outs.is_empty() || stderr(&o2).contains("replayed"));
}

#[test]
fn drift_that_stops_fires_once_and_resolves_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("episode.jsonl");
    let rate = 250.0;
    let mut a = gen(31_337, 40_000, rate);
    a.numeric_features = 6;
    a.categorical_features = 2;
    let mut b = a.clone();
    b.start_ms = end_ms(&a);
    b.events = 30_000;
    b.drift_at = Some(0);
    b.drift_features = vec!["f4".into(), "c1".into()];
    b.drift_magnitude = 1.5;
    let mut c = a.clone();
    c.start_ms = end_ms(&b);
    write_segments(&input, &[a.clone(), b.clone(), c.clone()]);
    let cfg = replay_config(60, 10, 8000, &dir.path().join("snapshots"));
    let (out, dead) = replay(cfg, &input);
    assert!(dead.is_empty());
    let s = summary(&out);
    let (drift_start, drift_end) = (b.start_ms, c.start_ms);

    // Per episode key, statuses alternate firing → resolved → firing …, ids pair up.
    let mut by_key: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for a in of_type(&out, "alert") {
        let key = format!(
            "{}/{}/{}/{}/{}",
            a["model_id"], a["model_version"], a["kind"], a["metric"], a["feature"]
        );
        by_key.entry(key).or_default().push(a);
    }
    for (key, list) in &by_key {
        for (i, a) in list.iter().enumerate() {
            let want = if i % 2 == 0 { "firing" } else { "resolved" };
            assert_eq!(a["status"], want, "{key}: {}", summary(&out));
            if i % 2 == 1 {
                assert_eq!(a["alert_id"], list[i - 1]["alert_id"], "{key}");
                assert!(ms(&a["window"]["end"]) > ms(&list[i - 1]["window"]["end"]));
            }
        }
    }
    let firing = alerts(&out, "data_drift", Some("firing"));
    let resolved = alerts(&out, "data_drift", Some("resolved"));
    assert_eq!(features_of(&firing), sorted(&["f4", "c1"]), "\n{s}");
    for f in ["f4", "c1"] {
        let fi: Vec<_> = firing.iter().filter(|a| a["feature"] == f).collect();
        let re: Vec<_> = resolved.iter().filter(|a| a["feature"] == f).collect();
        assert_eq!(fi.len(), 1, "{f}:\n{s}");
        assert_eq!(re.len(), 1, "{f}:\n{s}");
        assert_eq!(fi[0]["alert_id"], re[0]["alert_id"]);
        let fire_end = ms(&fi[0]["window"]["end"]);
        let resolve_end = ms(&re[0]["window"]["end"]);
        assert!(fire_end > drift_start && fire_end <= drift_end, "{}", fi[0]);
        // Resolves once windows are clean again: after the drift ended, within a few slides
        // of the window (60 s) emptying of drifted events.
        assert!(
            resolve_end > drift_end && resolve_end <= drift_end + 60_000 + 6 * 10_000,
            "{}",
            re[0]
        );
        assert_eq!(re[0]["status"], "resolved");
        assert_eq!(re[0]["feature"], f);
    }
}

/// Event time of a stream line.
fn ts_of(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// Sets the event time of a stream line.
fn set_ts(v: &mut Value, ms: i64) {
    v["timestamp"] = Value::from(
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
}

/// Rewrites the lines of a written stream that `edit` changes (it returns whether it did).
fn rewrite(path: &std::path::Path, mut edit: impl FnMut(usize, &mut Value) -> bool) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(n, l)| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if edit(n, &mut v) {
                changed += 1;
                v.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    changed
}

/// Replays a drifting stream whose clock was disturbed and checks that it still alerts on
/// exactly the drifted features, after the onset only, and that every disturbed event is
/// dead-lettered as `future_timestamp`.
fn drift_survives(edit: impl FnMut(usize, &mut Value) -> bool, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("drift.jsonl");
    let g = drift_stream_config(seed, true);
    write_stream(&input, &g);
    let changed = rewrite(&input, edit);
    assert!(changed > 0);
    let drift_start = time_of(&g, g.drift_at.unwrap());
    let cfg = replay_config(60, 10, 8000, &dir.path().join("snapshots"));
    let (out, dead) = replay(cfg, &input);
    let s = summary(&out);
    assert_eq!(dead.len(), changed, "{dead:?}");
    for d in &dead {
        assert_eq!(d["reason"], "future_timestamp", "{d}");
    }
    let firing = alerts(&out, "data_drift", Some("firing"));
    assert_eq!(features_of(&firing), sorted(&DRIFTED), "\n{s}");
    for a in alerts(&out, "data_drift", None) {
        assert!(ms(&a["window"]["end"]) > drift_start, "{a}\n{s}");
    }
    assert_eq!(of_type(&out, "retrain_trigger").len(), 1, "\n{s}");
}

/// One event of another model dated ten years ahead, in the middle of the stream.
#[test]
fn one_event_of_another_model_ten_years_ahead_does_not_stop_the_windows() {
    let ten_years = 10 * 365 * 86_400_000_i64;
    drift_survives(
        |n, v| {
            if n != 30_123 {
                return false;
            }
            let t = ts_of(v);
            set_ts(v, t + ten_years);
            v["model_id"] = Value::from("stray-model");
            v["event_id"] = Value::from("stray-0");
            true
        },
        41_207,
    );
}

/// One prediction in a hundred stamped five minutes ahead.
#[test]
fn one_percent_of_events_five_minutes_ahead_do_not_move_the_watermark() {
    drift_survives(
        |n, v| {
            if n % 100 != 37 || !v["prediction"].is_object() {
                return false;
            }
            let t = ts_of(v);
            set_ts(v, t + 5 * 60_000);
            true
        },
        52_981,
    );
}
