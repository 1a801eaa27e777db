//! The command line: `config check`, `conformance --format jsonl`, `--log-format`, and
//! `baseline build` without DataFusion.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

/// `text` written to a configuration file in a new temporary directory.
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("driftwatch.toml");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

#[test]
fn config_check_accepts_a_good_sample() {
    let (_dir, p) = config_file(
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
    );
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
    let (_dir, p) = config_file(
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
    );
    let o = run_cli(&["config", "check", "--config", p.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    for needle in [
        "`window.colour`: unknown key",
        "`mystery`: unknown key",
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
    let (_dir, p) = config_file("[window]\nlength = \"10m\"\nslide = \"1m\"\n");
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

/// Twelve type errors and unknown keys, across sections, a map and an array: `config check`
/// reports all of them, sorted by key, the same on every run (the `config` crate's hash-map
/// order and its stop at the first error used to give a different one to three of them).
#[test]
fn config_check_reports_every_type_error_and_unknown_key_the_same_every_run() {
    let (_dir, p) = config_file(
        r#"
[window]
min_events = 1.5
slide = 60
shape = "round"

[limits]
max_models = "64"
max_features = -1

[triggers]
enabled = 1
sustain_windows = true

[canary]
max_latency_p99_ratio = "2"

[drift.features.income]
method = "psi"
threshold = "high"

[[baseline.files]]
model_id = 8
path = "p.json"

[mystery]
x = 1

[kafka.bogus]
y = 2
"#,
    );
    let check = || {
        let o = run_cli(&["config", "check", "--config", p.to_str().unwrap()]);
        assert!(!o.status.success());
        stderr(&o)
    };
    let first = check();
    let problems: Vec<&str> = first
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- "))
        .collect();
    assert_eq!(
        problems,
        [
            "`baseline.files[0].model_id`: invalid type: integer `8`, expected a string",
            "`canary.max_latency_p99_ratio`: invalid type: string \"2\", expected f64",
            "`drift.features.income.threshold`: invalid type: string \"high\", expected f64",
            "`kafka.bogus`: unknown key",
            "`limits.max_features`: invalid value: integer `-1`, expected usize",
            "`limits.max_models`: invalid type: string \"64\", expected usize",
            "`mystery`: unknown key",
            "`triggers.enabled`: invalid type: integer `1`, expected a boolean",
            "`triggers.sustain_windows`: invalid type: boolean `true`, expected u32",
            "`window.min_events`: invalid type: floating point `1.5`, expected u64",
            "`window.shape`: unknown key",
            "`window.slide`: invalid type: integer `60`, expected a duration",
        ],
        "{first}"
    );
    for _ in 0..5 {
        assert_eq!(check(), first);
    }
}

/// Environment variables are text: parsed to the key's type, or an error naming the variable.
#[test]
fn config_check_parses_environment_values_to_the_key_type() {
    let o = run_cli_env(
        &["config", "check"],
        &[
            ("DRIFTWATCH__LIMITS__MAX_MODELS", "128"),
            ("DRIFTWATCH__TRIGGERS__ENABLED", "false"),
            ("DRIFTWATCH__KAFKA__GROUP_ID", "42"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let effective: toml::Value = toml::from_str(&stdout(&o)).unwrap();
    assert_eq!(effective["limits"]["max_models"].as_integer(), Some(128));
    assert_eq!(effective["triggers"]["enabled"].as_bool(), Some(false));
    assert_eq!(effective["kafka"]["group_id"].as_str(), Some("42"));

    let o = run_cli_env(
        &["config", "check"],
        &[
            ("DRIFTWATCH__WINDOW__MIN_EVENTS", "1.5"),
            ("DRIFTWATCH__TRIGGERS__ENABLED", "yes"),
        ],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    for needle in [
        "`triggers.enabled` (environment variable DRIFTWATCH__TRIGGERS__ENABLED=yes): \
         invalid type: string \"yes\", expected a boolean",
        "`window.min_events` (environment variable DRIFTWATCH__WINDOW__MIN_EVENTS=1.5): \
         invalid type: floating point `1.5`, expected u64",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in:\n{err}");
    }
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

/// SIGTERM while start-up still waits on a broker that does not answer: the process stops
/// within `kafka.drain_timeout`, not after the metadata and admin request timeouts.
#[test]
fn sigterm_during_start_up_stops_within_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let topics = Topics::named("127.0.0.1:1", |kind| format!("dw-unreachable-{kind}"));
    let mut cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    cfg.drain_timeout = std::time::Duration::from_secs(2);
    let mut dw = Driftwatch::start("unreachable", &cfg, dir.path());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t0 = std::time::Instant::now();
    dw.sigterm();
    let status = dw
        .wait_exit(std::time::Duration::from_secs(30))
        .expect("driftwatch exits after SIGTERM");
    let took = t0.elapsed();
    assert!(status.success(), "exit status: {status}\n{:?}", dw.logs());
    assert!(
        took <= cfg.drain_timeout,
        "stopping took {took:?}, more than kafka.drain_timeout ({:?}):\n{}",
        cfg.drain_timeout,
        dw.logs().join("\n")
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

/// `--log-format json` (or `DRIFTWATCH_LOG_FORMAT=json`) writes the logs as one JSON object
/// per line on stderr; stdout keeps only the outputs.
#[test]
fn log_format_json_writes_one_object_per_log_line_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    write_stream(&input, &gen(7, 300, 100.0));
    let args = [
        "replay",
        "--input",
        input.to_str().unwrap(),
        "--baseline-events",
        "100",
    ];
    let bootstrapped = |logs: &[Value]| {
        logs.iter()
            .find(|l| l["message"] == "baseline bootstrapped")
            .cloned()
    };
    let json_logs = |o: &std::process::Output| -> Vec<Value> {
        stderr(o)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };

    let flag: Vec<&str> = ["--log-format", "json"].into_iter().chain(args).collect();
    let by_flag = run_cli_env(&flag, &[("DRIFTWATCH_LOG", "info")]);
    let by_env = run_cli_env(
        &args,
        &[
            ("DRIFTWATCH_LOG", "info"),
            ("DRIFTWATCH_LOG_FORMAT", "json"),
        ],
    );
    for o in [&by_flag, &by_env] {
        assert!(o.status.success(), "{}", stderr(o));
        let logs = json_logs(o);
        let event = bootstrapped(&logs).unwrap_or_else(|| panic!("{}", stderr(o)));
        assert_eq!(event["level"], "INFO", "{event}");
        assert!(event["timestamp"].is_string(), "{event}");
        assert!(event["model_id"].is_string(), "{event}");
        // Every stderr line but the closing summary is a JSON log object.
        for line in stderr(o).lines() {
            assert!(
                serde_json::from_str::<Value>(line).is_ok() || line.starts_with("replayed "),
                "not JSON: {line}"
            );
        }
        // stdout holds the outputs only.
        for line in stdout(o).lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(v.get("level").is_none(), "a log on stdout: {line}");
        }
    }

    // The default is text; a flag after the subcommand works too; the flag wins over the
    // environment.
    let text = run_cli_env(&args, &[("DRIFTWATCH_LOG", "info")]);
    assert!(text.status.success());
    assert!(stderr(&text).contains("baseline bootstrapped"));
    assert!(!stderr(&text).contains('\x1b'), "no colours off a terminal");
    assert!(json_logs(&text).is_empty(), "{}", stderr(&text));
    let after: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--log-format", "text"])
        .collect();
    let o = run_cli_env(
        &after,
        &[
            ("DRIFTWATCH_LOG", "info"),
            ("DRIFTWATCH_LOG_FORMAT", "json"),
        ],
    );
    assert!(o.status.success());
    assert!(json_logs(&o).is_empty(), "{}", stderr(&o));

    let o = run_cli(&["--log-format", "xml", "config", "check"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("xml"), "{}", stderr(&o));
}
