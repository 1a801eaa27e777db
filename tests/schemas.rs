//! The JSON Schemas in `schemas/` against what driftwatch emits and accepts: every output of a
//! few replays validates; generator events validate; and for a handful of edge cases the
//! decoder (`driftwatch::event::decode`) accepts exactly what the schemas accept.
//!
//! The schemas refer to each other (`alert.schema.json#/$defs/window`); they are registered
//! as resources under their `$id`s so that jsonschema (without its file/http resolvers)
//! resolves those references locally.

mod common;

use std::path::Path;

use common::*;
use jsonschema::{Resource, Validator};
use serde_json::{json, Value};

const SCHEMAS: [&str; 8] = [
    "alert",
    "canary_verdict",
    "dead_letter",
    "baseline_profile",
    "features",
    "label",
    "prediction",
    "retrain_trigger",
];

fn load(name: &str) -> Value {
    let p = repo().join("schemas").join(format!("{name}.schema.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// A validator for `name`, with every schema registered as a resource and formats checked.
fn validator(name: &str) -> Validator {
    let mut opts = jsonschema::options().should_validate_formats(true);
    for s in SCHEMAS {
        let v = load(s);
        let id = v["$id"].as_str().expect("$id").to_string();
        opts = opts.with_resource(id, Resource::from_contents(v).expect("resource"));
    }
    opts.build(&load(name))
        .unwrap_or_else(|e| panic!("{name} schema does not compile: {e}"))
}

fn assert_valid(v: &Validator, name: &str, instance: &Value) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{name}: {errors:?}\n{}",
        serde_json::to_string_pretty(instance).unwrap()
    );
}

#[test]
fn cross_file_refs_resolve_locally() {
    let v = validator("canary_verdict");
    let bad = json!({"type": "canary_verdict", "verdict_id": "0123456789abcdef0123456789abcdef",
        "model_id": "m", "model_version": "v2", "baseline_version": "v1", "candidate_version": "v2", "verdict": "promote",
        "checks": [], "window": {"start": "not a time", "end": "2027-01-01T00:00:00.000Z", "count": 1},
        "emitted_at": "2027-01-01T00:00:00.000Z"});
    // The referenced definition is really applied (not silently skipped).
    assert!(!v.is_valid(&bad));
    let mut good = bad.clone();
    good["window"]["start"] = json!("2027-01-01T00:00:00.000Z");
    assert_valid(&v, "canary_verdict", &good);
}

fn replay_outputs(
    dir: &Path,
    g: &driftwatch::generate::GeneratorConfig,
    name: &str,
    extra: &[u8],
) -> (Vec<Value>, Vec<Value>) {
    let input = dir.join(format!("{name}.jsonl"));
    write_stream(&input, g);
    if !extra.is_empty() {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&input)
            .unwrap();
        f.write_all(extra).unwrap();
    }
    let cfg = replay_config(20, 5, 2000, &dir.join("snapshots"));
    replay(cfg, &input)
}

#[test]
fn every_output_of_a_few_replays_validates() {
    let dir = tempfile::tempdir().unwrap();
    let validators: Vec<(&str, Validator)> = ["alert", "retrain_trigger", "canary_verdict"]
        .into_iter()
        .map(|n| (n, validator(n)))
        .collect();
    let dead_v = validator("dead_letter");
    let mut seen = std::collections::BTreeSet::new();

    // Drift with labels and concept flip (alerts incl. performance, trigger), two versions
    // with a slow candidate (verdicts), and some bad lines (dead letters).
    let mut g1 = gen(4_242, 30_000, 200.0);
    g1.numeric_features = 5;
    g1.categorical_features = 2;
    g1.drift_at = Some(15_000);
    g1.drift_features = vec!["f1".into(), "c0".into()];
    g1.drift_magnitude = 1.5;
    g1.label_share = 0.5;
    g1.label_delay_ms = 5_000;
    g1.concept_flip = 0.4;
    let mut g2 = gen(4_243, 20_000, 200.0);
    g2.versions = 2;
    g2.latency_factors = vec![1.0, 2.5];
    g2.numeric_features = 3;
    g2.categorical_features = 1;
    let bad = b"nope\n{\"event_id\":\"x\"\n{\"event_id\":\"x\",\"model_id\":\"m\",\"model_version\":\"v\",\"timestamp\":\"?\",\"prediction\":{\"score\":0.1}}\n\xff\n";
    for (name, g, extra) in [("a", &g1, &bad[..]), ("b", &g2, &b""[..])] {
        let (out, dead) = replay_outputs(dir.path(), g, name, extra);
        assert!(!out.is_empty());
        for o in &out {
            let ty = o["type"].as_str().expect("every output has a type");
            let (n, v) = validators
                .iter()
                .find(|(n, _)| o["type"] == *n || (ty == "alert" && *n == "alert"))
                .unwrap_or_else(|| panic!("unknown output type {ty}"));
            assert_valid(v, n, o);
            seen.insert(ty.to_string());
        }
        for d in &dead {
            assert_valid(&dead_v, "dead_letter", d);
            seen.insert("dead_letter".into());
        }
    }
    for ty in ["alert", "retrain_trigger", "canary_verdict", "dead_letter"] {
        assert!(seen.contains(ty), "no {ty} was produced: {seen:?}");
    }
}

#[test]
fn generator_events_validate() {
    let pred = validator("prediction");
    let label = validator("label");
    let mut g = gen(99, 3000, 100.0);
    g.versions = 2;
    g.label_share = 0.5;
    g.label_delay_ms = 1000;
    g.drift_at = Some(1000);
    g.drift_features = vec!["f0".into(), "c1".into()];
    g.concept_flip = 0.3;
    let (mut np, mut nl) = (0, 0);
    for (_, line) in driftwatch::generate::Generator::new(g) {
        let v: Value = serde_json::from_str(&line).unwrap();
        if v.get("prediction").is_some() {
            assert_valid(&pred, "prediction", &v);
            assert!(!label.is_valid(&v), "a prediction is not a label: {v}");
            np += 1;
        } else {
            assert_valid(&label, "label", &v);
            nl += 1;
        }
    }
    assert_eq!(np, 3000);
    assert!(nl > 1000);
}

/// Which contract's schema accepts `v`, as the decoder would classify it.
fn schema_kind(
    v: &Value,
    pred: &Validator,
    label: &Validator,
    feat: &Validator,
) -> Option<&'static str> {
    if v.get("prediction").is_some() {
        pred.is_valid(v).then_some("prediction")
    } else if v.get("label").is_some() || v.get("value").is_some() {
        label.is_valid(v).then_some("label")
    } else if v.get("features").is_some() {
        feat.is_valid(v).then_some("features")
    } else {
        None
    }
}

#[test]
fn decoder_accepts_exactly_what_the_schemas_accept() {
    let pred = validator("prediction");
    let label = validator("label");
    let feat = validator("features");
    let p = |extra: Value| {
        let mut base = json!({"event_id": "e1", "model_id": "m", "model_version": "v1",
            "timestamp": "2027-01-01T00:00:00.123Z", "prediction": {"score": 0.3}});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() && k.starts_with('-') {
                base.as_object_mut().unwrap().remove(&k[1..]);
            } else {
                base[k] = v.clone();
            }
        }
        base
    };
    let l = |label_v: Value| json!({"event_id": "e1", "model_id": "m", "timestamp": 1798761600000i64, "label": label_v});
    let cases: Vec<(&str, Value, bool)> = vec![
        (
            "timestamp integer ms",
            p(json!({"timestamp": 1798761600123i64})),
            true,
        ),
        ("timestamp RFC 3339 Z", p(json!({})), true),
        (
            "timestamp RFC 3339 offset",
            p(json!({"timestamp": "2027-01-01T01:00:00+01:00"})),
            true,
        ),
        (
            "timestamp RFC 3339 no fraction",
            p(json!({"timestamp": "2027-01-01T00:00:00Z"})),
            true,
        ),
        (
            "timestamp float",
            p(json!({"timestamp": 1798761600123.5})),
            false,
        ),
        (
            "timestamp garbage",
            p(json!({"timestamp": "2027-13-01T00:00:00Z"})),
            false,
        ),
        (
            "timestamp date only",
            p(json!({"timestamp": "2027-01-01"})),
            false,
        ),
        ("timestamp bool", p(json!({"timestamp": true})), false),
        (
            "null feature",
            p(json!({"features": {"a": null, "b": 1.5}})),
            true,
        ),
        (
            "boolean feature",
            p(json!({"features": {"a": true, "b": "x"}})),
            true,
        ),
        (
            "array feature",
            p(json!({"features": {"a": [1, 2]}})),
            false,
        ),
        (
            "object feature",
            p(json!({"features": {"a": {"b": 1}}})),
            false,
        ),
        (
            "missing model_version",
            p(json!({"-model_version": null})),
            false,
        ),
        (
            "empty model_version",
            p(json!({"model_version": ""})),
            false,
        ),
        ("empty event_id", p(json!({"event_id": ""})), false),
        ("missing event_id", p(json!({"-event_id": null})), false),
        ("model_id number", p(json!({"model_id": 7})), false),
        (
            "score out of range",
            p(json!({"prediction": {"score": 1.01}})),
            false,
        ),
        (
            "score negative",
            p(json!({"prediction": {"score": -0.01}})),
            false,
        ),
        (
            "score boundary",
            p(json!({"prediction": {"score": 1.0}})),
            true,
        ),
        ("prediction empty", p(json!({"prediction": {}})), false),
        ("prediction null", p(json!({"prediction": null})), false),
        (
            "prediction label only",
            p(json!({"prediction": {"label": "cat"}})),
            true,
        ),
        (
            "prediction label int",
            p(json!({"prediction": {"label": 3}})),
            true,
        ),
        (
            "prediction value only",
            p(json!({"prediction": {"value": 12.5}})),
            true,
        ),
        ("latency negative", p(json!({"latency_ms": -1})), false),
        ("latency string", p(json!({"latency_ms": "5"})), false),
        (
            "attribute int and bool",
            p(json!({"attributes": {"g": 1, "h": false}})),
            true,
        ),
        (
            "attribute float",
            p(json!({"attributes": {"g": 1.5}})),
            false,
        ),
        (
            "unknown top-level field",
            p(json!({"extra": {"x": 1}})),
            true,
        ),
        ("label string", l(json!("spam")), true),
        ("label int", l(json!(1)), true),
        ("label bool", l(json!(true)), true),
        ("label float", l(json!(0.5)), false),
        ("label null", l(Value::Null), false),
        ("label array", l(json!([1])), false),
        (
            "label value",
            json!({"event_id": "e1", "model_id": "m", "timestamp": 1, "value": 2.5}),
            true,
        ),
        (
            "label without timestamp",
            json!({"event_id": "e1", "model_id": "m", "label": 1}),
            false,
        ),
        (
            "features event",
            json!({"event_id": "e1", "model_id": "m", "timestamp": 5, "features": {"a": 1}}),
            true,
        ),
    ];
    let mut disagreements = Vec::new();
    for (name, v, expected) in &cases {
        let bytes = serde_json::to_vec(v).unwrap();
        let decoded = driftwatch::event::decode(&bytes, None, 1 << 20);
        let schema = schema_kind(v, &pred, &label, &feat);
        let decoder_ok = decoded.is_ok();
        let schema_ok = schema.is_some();
        if decoder_ok != schema_ok || decoder_ok != *expected {
            disagreements.push(format!(
                "{name}: expected {expected}, schema {schema_ok}, decoder {:?} — {v}",
                decoded.as_ref().map(|e| e.kind).map_err(|e| e.reason())
            ));
        }
        if let (Ok(e), Some(k)) = (&decoded, schema) {
            assert_eq!(e.kind.as_str(), k, "{name}");
        }
    }
    assert!(
        disagreements.is_empty(),
        "decoder and schemas disagree:\n{}",
        disagreements.join("\n")
    );
}

#[test]
fn built_and_bootstrapped_profiles_validate() {
    use driftwatch::baseline::{BuildLimits, ProfileBuilder};
    use driftwatch::event::FeatureValue;
    let v = validator("baseline_profile");
    let mut b = ProfileBuilder::new("m", Some("v1"), "bootstrap", BuildLimits::default());
    for i in 0..3000u32 {
        b.push_feature("x", &FeatureValue::Number(f64::from(i % 97) * 0.5));
        b.push_feature("few", &FeatureValue::Number(f64::from(i % 3)));
        let c = ["a", "b", "c"][(i % 3) as usize];
        b.push_feature("c", &FeatureValue::Text(c.into()));
        b.push_prediction(
            Some(f64::from(i % 100) / 100.0),
            Some(if i % 2 == 0 { "1" } else { "0" }),
        );
        b.push_latency(f64::from(i % 40) + 0.5);
        b.end_row();
    }
    let p = b.finish().unwrap();
    assert_valid(
        &v,
        "bootstrapped profile",
        &serde_json::to_value(&p).unwrap(),
    );
}
