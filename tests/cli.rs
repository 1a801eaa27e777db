//! The command line: `config check` and `conformance --format jsonl`.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::*;

#[test]
fn config_check_accepts_a_good_sample() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("good.toml");
    std::fs::write(
        &p,
        r#"
[kafka]
brokers = "localhost:9092"
group_id = "dw"

[window]
length = "10m"
slide = "1m"

[drift.features.income]
method = "psi"
threshold = 0.2

[triggers]
min_drifted_features = 2
sustain_windows = 3
"#,
    )
    .unwrap();
    let o = run_cli(&["config", "check", "--config", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("configuration is valid"));
    let effective: toml::Value = toml::from_str(&stdout(&o)).expect("prints the effective TOML");
    assert_eq!(effective["window"]["length"].as_str(), Some("10m"));
    assert_eq!(
        effective["triggers"]["min_drifted_features"].as_integer(),
        Some(2)
    );
    // Defaults only.
    let o = run_cli(&["config", "check"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn config_check_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        r#"
[window]
length = "90s"
slide = "1m"
colour = "blue"

[kafka]
brokers = ""

[drift]
dataset_share = 1.5

[alerts]
fire_after = 5
fire_window = 3

[canary]
max_latency_p99_ratio = 0.5

[mystery]
x = 1
"#,
    )
    .unwrap();
    let o = run_cli(&["config", "check", "--config", p.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    for needle in [
        "unknown key `window.colour`",
        "mystery",
        "window.length",
        "kafka.brokers",
        "drift.dataset_share",
        "alerts.fire_after",
        "canary.max_latency_p99_ratio",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in:\n{err}");
    }
    let problems = err
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .count();
    assert!(problems >= 7, "one line per problem:\n{err}");

    // A missing file is an error too.
    let o = run_cli(&["config", "check", "--config", "/nonexistent/dw.toml"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent/dw.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn env_override_of_window_slide() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[window]\nlength = \"10m\"\nslide = \"1m\"\n").unwrap();
    let o = run_cli_env(
        &["config", "check", "--config", p.to_str().unwrap()],
        &[("DRIFTWATCH__WINDOW__SLIDE", "2m")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let effective: toml::Value = toml::from_str(&stdout(&o)).unwrap();
    assert_eq!(effective["window"]["slide"].as_str(), Some("2m"));
    assert_eq!(effective["window"]["length"].as_str(), Some("10m"));
    // An invalid value from the environment is reported like one from the file.
    let o = run_cli_env(
        &["config", "check", "--config", p.to_str().unwrap()],
        &[("DRIFTWATCH__WINDOW__SLIDE", "7m")],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("window.length"), "{}", stderr(&o));
}

fn conformance_dir() -> PathBuf {
    let dir = std::env::var_os("DRIFTWATCH_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("..").join("shared").join("conformance"));
    assert!(
        dir.is_dir(),
        "conformance reference vectors not found at {} — set DRIFTWATCH_CONFORMANCE_DIR to the \
         directory holding drift/, fairness/, latency/, quality/, concept/",
        dir.display()
    );
    dir
}

#[test]
fn conformance_jsonl_prints_one_line_per_check() {
    let dir = conformance_dir();
    let o = run_cli(&["conformance", dir.to_str().unwrap(), "--format", "jsonl"]);
    let out = stdout(&o);
    let lines: Vec<Value> = parse_lines(out.as_bytes());
    assert!(lines.len() > 10, "too few checks:\n{out}");
    let mut failed = Vec::new();
    for l in &lines {
        for k in [
            "case",
            "family",
            "path",
            "statistic",
            "expected",
            "got",
            "pass",
        ] {
            assert!(l.get(k).is_some(), "missing `{k}` in {l}");
        }
        assert!(l["pass"].is_boolean(), "{l}");
        assert!(
            matches!(l["path"].as_str(), Some("exact" | "streaming")),
            "{l}"
        );
        if l["pass"] == false {
            failed.push(l.to_string());
        }
    }
    let families: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l["family"].as_str()).collect();
    for f in ["drift", "fairness", "latency", "quality", "concept"] {
        assert!(families.contains(f), "no {f} checks: {families:?}");
    }
    assert_eq!(
        o.status.success(),
        failed.is_empty(),
        "exit status reflects the checks"
    );
    assert!(
        failed.is_empty(),
        "{} failing checks:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Built without DataFusion (`--no-default-features`), `baseline build` says what it needs
/// instead of failing obscurely.
#[cfg(not(feature = "datafusion"))]
#[test]
fn baseline_build_without_datafusion_names_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("train.csv");
    std::fs::write(&input, "income,age\n1.0,2\n").unwrap();
    let out = dir.path().join("profile.json");
    let o = run_cli(&[
        "baseline",
        "build",
        "--input",
        input.to_str().unwrap(),
        "--model",
        "m",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("needs the cargo feature `datafusion`"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}
