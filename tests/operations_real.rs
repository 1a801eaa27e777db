//! What operators run next to driftwatch, against a real run: a real Kafka broker carries
//! drifting two-version traffic with labels, a real Prometheus scrapes driftwatch and evaluates
//! the shipped alerting rules, and a real Alertmanager receives their alerts.
//!
//! - Every query of the Grafana dashboard (`docker/grafana/driftwatch.json`), its template
//!   variables resolved by their own `label_values` queries, returns series.
//! - The shipped rules (`docker/prometheus/driftwatch-rules.yml`, `for:` shortened to 1 s)
//!   fire on the drifted feature, and Alertmanager holds every alert Prometheus has firing.
//! - `promtool check metrics` accepts driftwatch's `/metrics`.
//!
//! `#[ignore]`d in a plain `cargo test`: `scripts/test-all` starts the broker, exports
//! `DRIFTWATCH_TEST_BROKERS` and runs it with `--include-ignored`; Prometheus and Alertmanager
//! are started here on free ports (`scripts/prometheus`, `scripts/alertmanager`) and stopped by
//! guards.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use driftwatch::generate::GeneratorConfig;
use serde_json::Value;

use common::{
    brokers, http_get, produce_generated, url_encode, wait_for, Alertmanager, Driftwatch,
    MonitorConfig, Prometheus, Topics,
};

const DRIFTED: &str = "f3";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The shipped rules with every `for:` shortened to 1 s, written to `dir`.
fn fast_rules(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo("docker/prometheus/driftwatch-rules.yml"))
        .expect("shipped rules");
    let mut shortened = 0;
    let fast: Vec<String> = text
        .lines()
        .map(|l| match l.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => {
                shortened += 1;
                format!("{indent}for: 1s")
            }
            _ => l.to_string(),
        })
        .collect();
    assert!(shortened > 0, "the rules have `for:` clauses to shorten");
    let path = dir.join("driftwatch-rules.yml");
    std::fs::write(&path, fast.join("\n") + "\n").expect("write rules");
    path
}

/// Every `expr` of every panel, rows' nested panels included: `(panel title, expr)`.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("every target has an expr");
                out.push((p["title"].as_str().unwrap_or("").to_string(), expr.into()));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Replaces `$name` and `${name}` in `expr` by `vars`, longest names first.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = expr.to_string();
    for n in names {
        out = out
            .replace(&format!("${{{n}}}"), &vars[n])
            .replace(&format!("${n}"), &vars[n]);
    }
    out
}

/// Resolves the dashboard's query variables in order, as Grafana does: each
/// `label_values(selector, label)` (earlier variables substituted) through Prometheus's label
/// API. A single-value variable takes the first value, a multi-value one all of them, as
/// Grafana formats several values for Prometheus: `(a|b)`.
fn resolve_variables(dashboard: &Value, prometheus: &Prometheus) -> BTreeMap<String, String> {
    // Grafana's own interval variable: a range long enough for two samples at any resolution.
    let mut vars = BTreeMap::from([("__rate_interval".to_string(), "1m".to_string())]);
    for v in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().expect("variable name");
        let def = v["definition"].as_str().expect("variable definition");
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap_or_else(|| panic!("${name}: not a label_values query: {def}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let selector = substitute(selector.trim(), &vars);
        let path = format!(
            "/api/v1/label/{}/values?match[]={}",
            label.trim(),
            url_encode(&selector)
        );
        let values: Vec<String> = prometheus
            .api(&path)
            .as_array()
            .expect("label values")
            .iter()
            .map(|x| x.as_str().expect("string").to_string())
            .collect();
        assert!(
            !values.is_empty(),
            "${name} ({def} → {selector}) has no values"
        );
        let value = if v["multi"] == true {
            format!("({})", values.join("|"))
        } else {
            values[0].clone()
        };
        vars.insert(name.to_string(), value);
    }
    vars
}

/// `promtool check metrics` on `text`: its output, empty when nothing is wrong.
fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/prometheus install)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said.trim().to_string())
}

#[test]
#[ignore = "needs a real Kafka broker (scripts/test-all starts one), Prometheus and Alertmanager"]
fn dashboard_rules_and_alertmanager_on_a_real_run() {
    let brokers = brokers();
    let topics = Topics::create(&brokers, "operations", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    let mut dw = Driftwatch::start("operations", &cfg, dir.path());
    let generated = GeneratorConfig {
        seed: 29,
        versions: 2,
        events: 60_000,
        rate: 1000.0,
        drift_at: Some(20_000),
        drift_features: vec![DRIFTED.into()],
        drift_magnitude: 1.0,
        label_share: 0.5,
        label_delay_ms: 1000,
        // The candidate is slower: the canary has something to decide.
        latency_factors: vec![1.0, 3.0],
        ..Default::default()
    };
    let predictions = generated.events as f64;
    produce_generated(&topics, generated);
    dw.wait_metric_at_least(
        "driftwatch_events_total",
        &[("topic", "prediction")],
        predictions,
        Duration::from_secs(90),
    );
    // Sustained drift on both versions: a trigger, and a verdict on the candidate.
    for metric in ["driftwatch_triggers_total", "driftwatch_canary_verdict"] {
        dw.wait_metric_at_least(metric, &[], 1.0, Duration::from_secs(30));
    }

    // `promtool check metrics` on a real scrape.
    let (status, body) =
        http_get(dw.http, "/metrics", Duration::from_secs(5)).expect("GET /metrics");
    assert_eq!(status, 200);
    let (ok, said) = promtool_check_metrics(&body);
    assert!(ok && said.is_empty(), "promtool check metrics: {said}");

    let alertmanager = Alertmanager::start(&dir.path().join("alertmanager"));
    let rules = fast_rules(dir.path());
    let prometheus = Prometheus::start_isolated(
        dw.http,
        &dir.path().join("prometheus"),
        &[&rules],
        Some(alertmanager.host_port()),
    );

    // Every panel's queries return series once Prometheus has scraped a few times.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("docker/grafana/driftwatch.json")).expect("dashboard"),
    )
    .expect("dashboard is JSON");
    let queries = panel_queries(&dashboard);
    assert!(queries.len() >= 12, "{} queries", queries.len());
    let vars = wait_for(
        "the dashboard's variables to resolve",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                resolve_variables(&dashboard, &prometheus)
            }))
            .ok()
        },
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let empty: Vec<(&str, String)> = queries
            .iter()
            .map(|(title, expr)| (title.as_str(), substitute(expr, &vars)))
            .filter(|(_, expr)| prometheus.query(expr).is_empty())
            .collect();
        if empty.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dashboard queries without series after 30 s (variables {vars:?}): {empty:#?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    for (_, expr) in &queries {
        let q = substitute(expr, &vars);
        assert!(!q.contains('$'), "unresolved variable in {q}");
    }

    // The drifted feature's alert fires in Prometheus, and Alertmanager holds every alert
    // Prometheus has firing.
    let firing = wait_for(
        "Prometheus to fire ModelFeatureDrift on the drifted feature",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let alerts = prometheus.api("/api/v1/alerts")["alerts"].clone();
            let firing: Vec<Value> = alerts
                .as_array()?
                .iter()
                .filter(|a| a["state"] == "firing")
                .cloned()
                .collect();
            firing
                .iter()
                .any(|a| {
                    a["labels"]["alertname"] == "ModelFeatureDrift"
                        && a["labels"]["feature"] == DRIFTED
                })
                .then_some(firing)
        },
    );
    let received = wait_for(
        "Alertmanager to hold every alert Prometheus fires",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let held = alertmanager.alerts();
            firing
                .iter()
                .all(|f| held.iter().any(|h| h["labels"] == f["labels"]))
                .then_some(held)
        },
    );
    let drift = received
        .iter()
        .find(|a| {
            a["labels"]["alertname"] == "ModelFeatureDrift" && a["labels"]["feature"] == DRIFTED
        })
        .expect("ModelFeatureDrift received");
    assert_eq!(drift["status"]["state"], "active", "{drift}");
    assert_eq!(drift["labels"]["severity"], "warning", "{drift}");
    assert!(
        drift["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains(DRIFTED)),
        "{drift}"
    );
}
