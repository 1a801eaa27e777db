//! KServe payload-logger CloudEvents replayed: the same generated stream as v1 events and
//! re-encoded as KServe request and response messages (binary mode with OIP v2 tensors or V1
//! bodies, structured mode) gives the same data-drift alerts, on exactly the drifted features;
//! bad messages are dead-lettered with their reason and the rest is monitored.

mod common;

use std::io::Write;
use std::path::Path;

use common::kserve::{drift_lines, encode, Encoded, Encoding, DRIFTED};
use common::*;
use driftwatch::config::{Config, InputFormat, PredictionField};
use serde_json::Value;

fn write_lines(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
}

/// Windows of 6,000 events (one minute at 100 events/s) sliding every 20 s, a baseline of the
/// first 5,000.
fn config(dir: &Path) -> Config {
    replay_config(60, 20, 5000, &dir.join("snapshots"))
}

fn kserve_config(dir: &Path, encoded: &Encoded, encoding: Encoding) -> Config {
    let mut cfg = config(dir);
    cfg.input.format = InputFormat::Kserve;
    cfg.input.feature_names = encoded.feature_names.clone();
    cfg.input.prediction = PredictionField::Score;
    if encoding == Encoding::BinaryV1 {
        // V1 responses carry no model version.
        cfg.input.model_version = "fixed:v1".into();
    }
    cfg
}

#[test]
fn kserve_cloudevents_give_the_alerts_of_the_same_v1_stream() {
    let lines = drift_lines(31_415);
    let dir = tempfile::tempdir().unwrap();
    for encoding in [
        Encoding::BinaryV2,
        Encoding::BinaryV1,
        Encoding::StructuredV2,
    ] {
        let encoded = encode(&lines, 4, encoding);
        let v1_path = dir.path().join("v1.jsonl");
        write_lines(&v1_path, encoded.v1.iter().cloned());
        let (v1_out, v1_dead) = replay(config(dir.path()), &v1_path);
        assert!(v1_dead.is_empty(), "{v1_dead:?}");

        // The same file name: outputs name the file they were replayed from.
        let k_dir = dir.path().join(format!("{encoding:?}"));
        std::fs::create_dir_all(&k_dir).unwrap();
        let k_path = k_dir.join("v1.jsonl");
        write_lines(&k_path, encoded.messages.iter().map(|m| m.replay_line()));
        let (k_out, k_dead) = replay(kserve_config(dir.path(), &encoded, encoding), &k_path);
        assert!(k_dead.is_empty(), "{encoding:?}: {k_dead:?}");

        let want = alerts(&v1_out, "data_drift", None);
        let got = alerts(&k_out, "data_drift", None);
        let firing = alerts(&k_out, "data_drift", Some("firing"));
        assert_eq!(
            features_of(&firing),
            sorted(&DRIFTED),
            "{encoding:?}:\n{}",
            summary(&k_out)
        );
        assert_eq!(
            got,
            want,
            "{encoding:?}: data_drift alerts differ\nKServe:\n{}\nv1:\n{}",
            summary(&k_out),
            summary(&v1_out)
        );
    }
}

/// Dead-letter reasons of a replayed KServe stream.
fn reasons(dead: &[Value]) -> Vec<String> {
    let mut r: Vec<String> = dead
        .iter()
        .map(|d| d["reason"].as_str().unwrap_or("?").to_string())
        .collect();
    r.sort();
    r
}

#[test]
fn bad_kserve_messages_are_dead_lettered_and_the_rest_monitored() {
    let lines = drift_lines(31_415);
    let encoded = encode(&lines, 4, Encoding::BinaryV2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kserve.jsonl");
    let mut text: Vec<String> = encoded.messages.iter().map(|m| m.replay_line()).collect();
    // Copies of good messages: a request without `ce_id`, a response with a tensor of an
    // unknown datatype, and a response whose request never comes; and a line that is not a
    // message.
    let bad_request = text[0].replacen("\"ce_id\"", "\"ce_idx\"", 1);
    let bad_datatype = text[2].replacen("\"FP64\"", "\"FP128\"", 1);
    let alone = text[1].replacen("inference-0", "alone", 1);
    text.insert(0, bad_request);
    text.push(bad_datatype);
    text.push("[1, 2]".into());
    text.push(alone);
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(text.join("\n").into_bytes());
    std::fs::write(&path, bytes).unwrap();
    let cfg = kserve_config(dir.path(), &encoded, Encoding::BinaryV2);
    let mut out = Vec::new();
    let mut dead = Vec::new();
    let stats = driftwatch::replay::replay(cfg, &path, &mut out, Some(&mut dead)).unwrap();
    let dead = parse_lines(&dead);
    assert_eq!(
        reasons(&dead),
        [
            "missing_field",
            "unjoined",
            "unknown_datatype",
            "wrong_type"
        ],
        "{dead:?}"
    );
    let detail = |reason: &str| -> Vec<String> {
        dead.iter()
            .filter(|d| d["reason"] == reason)
            .map(|d| d["detail"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(detail("missing_field")[0].contains("ce_id"), "{dead:?}");
    assert!(detail("unknown_datatype")[0].contains("FP128"), "{dead:?}");
    assert!(detail("unjoined")[0].contains("never came"), "{dead:?}");
    assert_eq!(stats.dead_letters, 4);
    // The rest was monitored.
    let out = parse_lines(&out);
    let firing = alerts(&out, "data_drift", Some("firing"));
    assert_eq!(features_of(&firing), sorted(&DRIFTED), "{}", summary(&out));
    assert_eq!(stats.lines as usize, text.len());
}

/// The README's example of a replayed KServe stream is read as it says: both messages joined,
/// nothing dead-lettered.
#[test]
fn the_readme_example_replays_without_dead_letters() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme.find("**Replaying such a stream.**").unwrap()..];
    let start = section.find("```json\n").unwrap() + "```json\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("kserve.jsonl");
    std::fs::write(&input, example).unwrap();
    let config = dir.path().join("driftwatch.toml");
    std::fs::write(
        &config,
        "[input]\nfeature_names = [\"age\", \"income\", \"tenure\"]\nprediction = \"score\"\n",
    )
    .unwrap();
    let dead = dir.path().join("dead.jsonl");
    let out = run_cli(&[
        "replay",
        "--format",
        "kserve",
        "--input",
        input.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--dead-letter",
        dead.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("replayed 2 lines"),
        "{}",
        stderr(&out)
    );
    let dead = std::fs::read_to_string(&dead).unwrap();
    assert!(dead.is_empty(), "{dead}");
}
