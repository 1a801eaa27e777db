//! Helpers for the tests that need no external service: the CLI, replay through the library,
//! generated streams, and reading outputs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use driftwatch::config::Config;
use driftwatch::generate::{Generator, GeneratorConfig};
use serde_json::Value;

/// Runs the CLI with `args`, no `DRIFTWATCH__*` environment leaking in from the caller.
pub fn run_cli(args: &[&str]) -> Output {
    run_cli_env(args, &[])
}

/// Runs the CLI with `args` and extra environment variables.
pub fn run_cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = super::command();
    cmd.args(args);
    cmd.env("DRIFTWATCH_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("driftwatch runs")
}

/// Text of a process's stdout / stderr.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Text of a process's stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// 2027-01-01T00:00:00Z, the generator's default start.
pub const T0: i64 = 1_798_761_600_000;

/// A generator configuration with the test defaults (seeded, no drift).
pub fn gen(seed: u64, events: u64, rate: f64) -> GeneratorConfig {
    GeneratorConfig {
        seed,
        events,
        rate,
        start_ms: T0,
        ..Default::default()
    }
}

/// Event time right after the last prediction of `g`.
pub fn end_ms(g: &GeneratorConfig) -> i64 {
    g.start_ms + (g.events as f64 * 1000.0 / g.rate) as i64
}

/// Event time of prediction `i` of `g` (as the generator computes it).
pub fn time_of(g: &GeneratorConfig, i: u64) -> i64 {
    g.start_ms + (i as f64 * 1000.0 / g.rate) as i64
}

/// Writes the concatenation of generated segments to `path` (one JSON event a line). Event ids
/// are made unique per segment by prefixing `s<k>-`.
pub fn write_segments(path: &Path, segments: &[GeneratorConfig]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create stream"));
    for (k, g) in segments.iter().enumerate() {
        for (_, line) in Generator::new(g.clone()) {
            let line = if segments.len() > 1 {
                line.replacen("\"event_id\":\"", &format!("\"event_id\":\"s{k}-"), 1)
            } else {
                line
            };
            writeln!(f, "{line}").expect("write stream");
        }
    }
    f.flush().expect("flush stream");
}

/// Writes one generated stream to `path`.
pub fn write_stream(path: &Path, g: &GeneratorConfig) {
    write_segments(path, std::slice::from_ref(g));
}

/// A replay configuration: window `window_s`, slide `slide_s`, bootstrap from `baseline`
/// events, snapshots under `snapshots`.
pub fn replay_config(window_s: u64, slide_s: u64, baseline: usize, snapshots: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.window.length = Duration::from_secs(window_s);
    cfg.window.slide = Duration::from_secs(slide_s);
    cfg.window.allowed_lateness = Duration::from_secs(slide_s.min(5));
    cfg.baseline.bootstrap_events = baseline;
    cfg.triggers.snapshot_dir = snapshots.to_path_buf();
    cfg
}

/// Replays `input` through the library and returns the outputs (and dead letters) as JSON.
pub fn replay(cfg: Config, input: &Path) -> (Vec<Value>, Vec<Value>) {
    let mut out = Vec::new();
    let mut dead = Vec::new();
    driftwatch::replay::replay(cfg, input, &mut out, Some(&mut dead)).expect("replay succeeds");
    (parse_lines(&out), parse_lines(&dead))
}

/// Parses JSON Lines.
pub fn parse_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l}: {e}")))
        .collect()
}

/// Outputs of one `type`.
pub fn of_type<'a>(outputs: &'a [Value], ty: &str) -> Vec<&'a Value> {
    outputs.iter().filter(|o| o["type"] == ty).collect()
}

/// Alerts of one kind (and status, when given).
pub fn alerts<'a>(outputs: &'a [Value], kind: &str, status: Option<&str>) -> Vec<&'a Value> {
    outputs
        .iter()
        .filter(|o| o["type"] == "alert" && o["kind"] == kind)
        .filter(|o| status.is_none_or(|s| o["status"] == s))
        .collect()
}

/// Epoch milliseconds of an output timestamp.
pub fn ms(v: &Value) -> i64 {
    driftwatch::event::parse_rfc3339_ms(v.as_str().expect("timestamp string"))
        .unwrap_or_else(|| panic!("not RFC 3339: {v}"))
}

/// Sorted, de-duplicated feature names of per-feature alerts.
pub fn features_of(alerts: &[&Value]) -> Vec<String> {
    let mut f: Vec<String> = alerts
        .iter()
        .filter_map(|a| a["feature"].as_str().map(str::to_string))
        .collect();
    f.sort();
    f.dedup();
    f
}

/// Sorted names.
pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Short summary of outputs for assertion messages.
pub fn summary(outputs: &[Value]) -> String {
    outputs
        .iter()
        .map(|o| {
            format!(
                "{} {} {} {} {} {} end={}",
                o["type"].as_str().unwrap_or(""),
                o["kind"].as_str().or(o["verdict"].as_str()).unwrap_or(""),
                o["status"].as_str().unwrap_or(""),
                o["model_version"]
                    .as_str()
                    .or(o["candidate_version"].as_str())
                    .unwrap_or(""),
                o["metric"].as_str().or(o["policy"].as_str()).unwrap_or(""),
                o["feature"].as_str().unwrap_or(""),
                o["window"]["end"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
