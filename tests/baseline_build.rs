//! `driftwatch baseline build` on Parquet, CSV and JSON Lines files written here; the profile
//! in replay; every kind of bad input fails naming the file (and the column).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use driftwatch::baseline::Profile;
use serde_json::Value;

const ROWS: usize = 3000;

/// Deterministic flat training rows: x (numeric), y (numeric), colour (categorical), label.
fn rows() -> Vec<(f64, f64, &'static str, i64)> {
    let colours = ["red", "green", "blue"];
    (0..ROWS)
        .map(|i| {
            let u = ((i * 7919) % 1000) as f64 / 1000.0;
            let x = 10.0 + 4.0 * (u - 0.5);
            let y = ((i * 104_729) % 997) as f64 / 10.0;
            (x, y, colours[(i * 31) % 3], (i % 2) as i64)
        })
        .collect()
}

fn write_csv(path: &Path) {
    let mut s = String::from("id,x,y,colour,label\n");
    for (i, (x, y, c, l)) in rows().iter().enumerate() {
        s.push_str(&format!("r{i},{x},{y},{c},{l}\n"));
    }
    std::fs::write(path, s).unwrap();
}

fn write_jsonl(path: &Path) {
    let mut s = String::new();
    for (i, (x, y, c, l)) in rows().iter().enumerate() {
        s.push_str(&format!(
            "{{\"id\":\"r{i}\",\"x\":{x},\"y\":{y},\"colour\":\"{c}\",\"label\":{l}}}\n"
        ));
    }
    std::fs::write(path, s).unwrap();
}

fn write_parquet(path: &Path) {
    use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::parquet::arrow::ArrowWriter;
    let r = rows();
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "id",
            Arc::new(StringArray::from(
                (0..ROWS).map(|i| format!("r{i}")).collect::<Vec<_>>(),
            )),
        ),
        (
            "x",
            Arc::new(Float64Array::from(
                r.iter().map(|t| t.0).collect::<Vec<_>>(),
            )),
        ),
        (
            "y",
            Arc::new(Float64Array::from(
                r.iter().map(|t| t.1).collect::<Vec<_>>(),
            )),
        ),
        (
            "colour",
            Arc::new(StringArray::from(r.iter().map(|t| t.2).collect::<Vec<_>>())),
        ),
        (
            "label",
            Arc::new(Int64Array::from(r.iter().map(|t| t.3).collect::<Vec<_>>())),
        ),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn build(input: &Path, extra: &[&str], out: &Path) -> std::process::Output {
    let mut args = vec![
        "baseline",
        "build",
        "--input",
        input.to_str().unwrap(),
        "--model",
        "model-0",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_cli(&args)
}

fn kinds(p: &Value) -> Vec<(String, String)> {
    p["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["kind"]["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn check_profile(out: &Path, printed: &str) -> Profile {
    let summary: Value = serde_json::from_str(printed.trim()).expect("summary line");
    let text = std::fs::read_to_string(out).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(summary["sha256"], v["sha256"]);
    assert_eq!(summary["id"], v["id"]);
    let p = Profile::load(out).expect("profile loads and verifies");
    let resealed = p.clone().seal();
    assert_eq!(resealed.sha256, p.sha256, "sha256 matches re-sealing");
    assert_eq!(resealed.id, p.id);
    assert_eq!(p.sha256.len(), 64);
    assert!(p.id.starts_with("model-0@"), "{}", p.id);
    p
}

#[test]
fn flat_tables_in_every_format_give_the_same_features_and_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let mut shas = Vec::new();
    for (ext, write) in [
        ("csv", write_csv as fn(&Path)),
        ("jsonl", write_jsonl),
        ("parquet", write_parquet),
    ] {
        let input = dir.path().join(format!("train.{ext}"));
        write(&input);
        let out = dir.path().join(format!("profile-{ext}.json"));
        let o = build(&input, &[], &out);
        assert!(o.status.success(), "{ext}: {}", stderr(&o));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        // x, y numeric, colour categorical; label is the label, not a feature.
        let k = kinds(&v);
        let names: Vec<&str> = k.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            !names.contains(&"label"),
            "{ext}: label is not a feature: {k:?}"
        );
        for (n, want) in [
            ("x", "numeric"),
            ("y", "numeric"),
            ("colour", "categorical"),
        ] {
            assert!(
                k.iter().any(|(name, kind)| name == n && kind == want),
                "{ext}: {n} should be {want}: {k:?}"
            );
        }
        assert_eq!(v["rows"], ROWS as u64, "{ext}");
        assert!(
            v["label"].is_object(),
            "{ext}: label distribution: {}",
            v["label"]
        );
        let p = check_profile(&out, &stdout(&o));
        shas.push((ext, p.sha256.clone(), k));
    }
    // Same data, same features in every format.
    assert_eq!(shas[0].2, shas[1].2);
    assert_eq!(shas[0].2, shas[2].2);
}

#[test]
fn selected_features_only() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("train.csv");
    write_csv(&input);
    let out = dir.path().join("p.json");
    let o = build(&input, &["--features", "x,colour", "--version", "v3"], &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        kinds(&v),
        vec![
            ("x".to_string(), "numeric".to_string()),
            ("colour".to_string(), "categorical".to_string())
        ]
    );
    let p = check_profile(&out, &stdout(&o));
    assert_eq!(p.model_version.as_deref(), Some("v3"));
    assert!(p.id.starts_with("model-0@v3:"), "{}", p.id);
}

#[test]
fn prediction_events_profile_works_in_replay() {
    let dir = tempfile::tempdir().unwrap();
    // Reference: 5000 generated events (seed A); live: a drifted stream (same shapes).
    let mut reference = gen(2_024, 5_000, 100.0);
    reference.numeric_features = 4;
    reference.categorical_features = 1;
    let ref_path = dir.path().join("reference.jsonl");
    write_stream(&ref_path, &reference);
    let out = dir.path().join("profile.json");
    let o = build(&ref_path, &[], &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        kinds(&v),
        vec![
            ("f0".to_string(), "numeric".to_string()),
            ("f1".to_string(), "numeric".to_string()),
            ("f2".to_string(), "numeric".to_string()),
            ("f3".to_string(), "numeric".to_string()),
            ("c0".to_string(), "categorical".to_string()),
        ]
    );
    assert!(v["prediction"].is_object(), "score distribution");
    assert!(v["latency"].is_object(), "latency");
    let p = check_profile(&out, &stdout(&o));

    let mut live = reference.clone();
    live.events = 12_000;
    live.start_ms = end_ms(&reference) + 3_600_000;
    live.drift_at = Some(4_000);
    live.drift_features = vec!["f2".into()];
    live.drift_magnitude = 2.0;
    let live_path = dir.path().join("live.jsonl");
    write_stream(&live_path, &live);
    let cfg_path = dir.path().join("c.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[window]\nlength = \"30s\"\nslide = \"10s\"\n[triggers]\nsnapshot_dir = {:?}\n\
             [[baseline.files]]\nmodel_id = \"model-0\"\npath = {:?}\n",
            dir.path().join("snap").display().to_string(),
            out.display().to_string()
        ),
    )
    .unwrap();
    let cfg = driftwatch::config::Config::load(Some(&cfg_path)).unwrap();
    let (outs, dead) = replay(cfg, &live_path);
    assert!(dead.is_empty());
    let a = alerts(&outs, "data_drift", Some("firing"));
    assert_eq!(
        features_of(&a),
        vec!["f2".to_string()],
        "{}",
        summary(&outs)
    );
    for o in &outs {
        if let Some(r) = o.get("reference") {
            assert_eq!(r["id"], p.id.as_str(), "{o}");
            assert_eq!(r["sha256"], p.sha256.as_str(), "{o}");
        }
    }
    assert_eq!(of_type(&outs, "retrain_trigger").len(), 1);
}

fn assert_fails(o: &std::process::Output, needles: &[&str]) {
    assert!(!o.status.success(), "should fail: {}", stdout(o));
    let err = stderr(o);
    for n in needles {
        assert!(err.contains(n), "message should name `{n}`:\n{err}");
    }
}

#[test]
fn bad_inputs_fail_naming_the_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| -> PathBuf { dir.path().join(n) };
    let out = d("p.json");

    // Missing file.
    let missing = d("nope.csv");
    assert_fails(&build(&missing, &[], &out), &["nope.csv"]);

    // Empty tables: header-only CSV, empty JSON Lines, empty file.
    std::fs::write(d("empty.csv"), "x,y\n").unwrap();
    assert_fails(&build(&d("empty.csv"), &[], &out), &["empty.csv"]);
    std::fs::write(d("empty.jsonl"), "").unwrap();
    assert_fails(&build(&d("empty.jsonl"), &[], &out), &["empty.jsonl"]);

    // Missing --features column.
    let train = d("train.csv");
    write_csv(&train);
    assert_fails(
        &build(&train, &["--features", "x,nosuch"], &out),
        &["train.csv", "nosuch"],
    );

    // Missing --label-column.
    assert_fails(
        &build(&train, &["--label-column", "truth"], &out),
        &["train.csv", "truth"],
    );

    // Mistyped prediction / latency columns in a prediction-event file.
    let mut s = String::new();
    for i in 0..50 {
        s.push_str(&format!(
            "{{\"event_id\":\"e{i}\",\"features\":{{\"a\":{i}}},\"prediction\":{{\"score\":\"high\"}},\"latency_ms\":3}}\n"
        ));
    }
    std::fs::write(d("badscore.jsonl"), s).unwrap();
    assert_fails(
        &build(&d("badscore.jsonl"), &[], &out),
        &["badscore.jsonl", "prediction.score"],
    );
    let mut s = String::new();
    for i in 0..50 {
        s.push_str(&format!(
            "{{\"event_id\":\"e{i}\",\"features\":{{\"a\":{i}}},\"prediction\":{{\"score\":0.5}},\"latency_ms\":\"slow\"}}\n"
        ));
    }
    std::fs::write(d("badlatency.jsonl"), s).unwrap();
    assert_fails(
        &build(&d("badlatency.jsonl"), &[], &out),
        &["badlatency.jsonl", "latency_ms"],
    );

    // Unknown extension.
    std::fs::write(d("train.xlsx"), "x\n1\n").unwrap();
    assert_fails(&build(&d("train.xlsx"), &[], &out), &["train.xlsx", "xlsx"]);
    // No extension.
    std::fs::write(d("train"), "x\n1\n").unwrap();
    assert_fails(&build(&d("train"), &[], &out), &["train"]);

    // Corrupt Parquet.
    std::fs::write(d("bad.parquet"), "not parquet at all").unwrap();
    assert_fails(&build(&d("bad.parquet"), &[], &out), &["bad.parquet"]);

    assert!(!out.exists(), "no profile is written on failure");
}
