//! driftwatch against the real broker's SASL_SSL listener (SCRAM-SHA-512, a certificate signed
//! by the test CA of `scripts/kafka`), start-up failures that name their cause, the API's bearer
//! token, and secrets that never reach any output.
//!
//! Every test is `#[ignore]`d in a plain `cargo test`: `scripts/test-all` starts the broker and
//! exports `DRIFTWATCH_TEST_BROKERS` and, from `scripts/kafka sasl-env`, the SASL_SSL listener's
//! address, user, password and CA (`DRIFTWATCH_TEST_SASL_*`, `DRIFTWATCH_TEST_CA`), and the
//! listener's certificate and key (`DRIFTWATCH_TEST_SERVER_CERT`, `DRIFTWATCH_TEST_SERVER_KEY`),
//! which the HTTPS test serves. Topics are created and read over the plaintext listener;
//! driftwatch itself only talks SASL_SSL.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use driftwatch::generate::GeneratorConfig;
use serde_json::Value;

use common::{
    brokers, command, http_get, http_get_with, produce_generated, produce_raw, unique, Driftwatch,
    MonitorConfig, RawMessage, TopicReader, Topics,
};

/// The SASL_SSL listener of the test broker.
struct Sasl {
    brokers: String,
    user: String,
    password: String,
    ca: String,
}

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs the SASL_SSL listener of the test broker. Run \
             scripts/test-all, or start it with `scripts/kafka start` and \
             eval \"$(scripts/kafka sasl-env)\""
        ),
    }
}

fn sasl() -> Sasl {
    Sasl {
        brokers: required_env("DRIFTWATCH_TEST_SASL_BROKERS"),
        user: required_env("DRIFTWATCH_TEST_SASL_USER"),
        password: required_env("DRIFTWATCH_TEST_SASL_PASSWORD"),
        ca: required_env("DRIFTWATCH_TEST_CA"),
    }
}

/// Environment variables the configurations name for their secrets.
const SASL_PASSWORD_ENV: &str = "DW_TEST_KAFKA_PASSWORD";
const WEBHOOK_TOKEN_ENV: &str = "DW_TEST_WEBHOOK_TOKEN";
const WEBHOOK_SECRET_ENV: &str = "DW_TEST_WEBHOOK_SECRET";
const API_TOKEN_ENV: &str = "DW_TEST_API_TOKEN";

/// Every secret a run is given; none may appear in anything driftwatch writes or serves.
struct Secrets {
    sasl_password: String,
    webhook_token: String,
    webhook_secret: String,
    api_token: String,
    /// A token in the webhook URL's query string (written in the configuration file).
    url_token: String,
}

impl Secrets {
    fn new(sasl_password: &str) -> Self {
        Self {
            sasl_password: sasl_password.to_string(),
            webhook_token: unique("whtoken"),
            webhook_secret: unique("whsecret"),
            api_token: unique("apitoken"),
            url_token: unique("urltoken"),
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            (SASL_PASSWORD_ENV, self.sasl_password.as_str()),
            (WEBHOOK_TOKEN_ENV, self.webhook_token.as_str()),
            (WEBHOOK_SECRET_ENV, self.webhook_secret.as_str()),
            (API_TOKEN_ENV, self.api_token.as_str()),
        ]
    }

    fn all(&self) -> [(&str, &str); 5] {
        [
            ("SASL password", &self.sasl_password),
            ("webhook token", &self.webhook_token),
            ("webhook HMAC secret", &self.webhook_secret),
            ("API token", &self.api_token),
            ("webhook URL token", &self.url_token),
        ]
    }

    /// Panics naming the secret and where it showed when `text` contains any of them.
    fn assert_absent(&self, what: &str, text: &str) {
        for (name, secret) in self.all() {
            if let Some(at) = text.find(secret) {
                let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
                // The line, the secret itself masked: a failing test must not print it either.
                let line = text[from..to].replace(secret, "<SECRET>");
                panic!("the {name} appears in {what}: {line}");
            }
        }
    }
}

/// Points `cfg` at the SASL_SSL listener: SCRAM-SHA-512 as the test user, the password from
/// `SASL_PASSWORD_ENV`, certificates verified against `ca` (the system's store when `None`).
fn over_sasl_ssl(cfg: &mut MonitorConfig, s: &Sasl, brokers: &str, ca: Option<&str>) {
    let q = |v: &str| toml::Value::String(v.to_string()).to_string();
    cfg.topics.brokers = brokers.to_string();
    cfg.set("kafka.options", "\"security.protocol\"", &q("SASL_SSL"))
        .set("kafka.options", "\"sasl.mechanisms\"", &q("SCRAM-SHA-512"))
        .set("kafka.options", "\"sasl.username\"", &q(&s.user))
        .set(
            "kafka.options_from_env",
            "\"sasl.password\"",
            &q(SASL_PASSWORD_ENV),
        );
    if let Some(ca) = ca {
        cfg.set("kafka.options", "\"ssl.ca.location\"", &q(ca));
    }
}

/// A webhook with every secret, to `https://<the SASL_SSL listener>`: a TLS server whose
/// certificate only the test CA trusts, so verification (on by default) fails and the outputs
/// are dead-lettered to `dead_letters` after one attempt. The API needs the token.
fn with_webhook_and_api_token(
    cfg: &mut MonitorConfig,
    secrets: &Secrets,
    s: &Sasl,
    dead_letters: &Path,
) {
    let q = |v: &str| toml::Value::String(v.to_string()).to_string();
    let url = format!(
        "https://{}/hook?access_token={}",
        s.brokers, secrets.url_token
    );
    cfg.set(
        "sinks",
        "webhook",
        &format!(
            "[{{ url = {}, token_env = {}, secret_env = {}, max_retries = 0, timeout = \"1s\", \
             dead_letter_file = {} }}]",
            q(&url),
            q(WEBHOOK_TOKEN_ENV),
            q(WEBHOOK_SECRET_ENV),
            q(&dead_letters.display().to_string())
        ),
    )
    .set("http", "api_token_env", &q(API_TOKEN_ENV));
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Runs `driftwatch ARGS` with `env`, killing it after `limit`; returns its output and how long
/// it ran.
fn run_bounded(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = command()
        .args(args)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("driftwatch starts");
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "driftwatch {args:?} still running after {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    (child.wait_with_output().expect("output"), took)
}

fn text_of(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
#[ignore = "needs a real Kafka broker with its SASL_SSL listener (scripts/test-all starts one)"]
fn over_sasl_ssl_with_every_secret_set_nothing_secret_is_printed() {
    let plain = brokers();
    let s = sasl();
    let secrets = Secrets::new(&s.password);
    let topics = Topics::create(&plain, "sasl", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let webhook_dead = dir.path().join("webhook-dead-letters.jsonl");
    let mut cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    cfg.window = Duration::from_secs(10);
    cfg.slide = Duration::from_secs(2);
    cfg.min_events = 500;
    cfg.bootstrap_events = 3000;
    over_sasl_ssl(&mut cfg, &s, &s.brokers, Some(&s.ca));
    with_webhook_and_api_token(&mut cfg, &secrets, &s, &webhook_dead);
    // librdkafka's own debug output of its configuration and of the SASL handshake too.
    cfg.set("kafka.options", "debug", "\"conf,security\"");
    let mut env = secrets.env();
    env.push(("DRIFTWATCH_LOG", "trace"));

    // `config check` with the same configuration and secrets.
    let path = dir.path().join("check.toml");
    std::fs::write(&path, cfg.to_toml()).expect("write config");
    let path = path.display().to_string();
    let (check, _) = run_bounded(
        &["config", "check", "--config", &path],
        &env,
        Duration::from_secs(30),
    );
    assert!(check.status.success(), "config check: {}", text_of(&check));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains(SASL_PASSWORD_ENV),
        "config check prints the effective configuration, the variable's name included: {}",
        text_of(&check)
    );
    secrets.assert_absent("`config check` output", &text_of(&check));

    let mut dw = Driftwatch::start_with_env("sasl", &cfg, dir.path(), &env);
    // One malformed input for the dead-letter topic.
    produce_raw(
        &plain,
        &topics.predictions,
        &[RawMessage {
            key: Some(b"m".to_vec()),
            payload: b"{not json".to_vec(),
        }],
    );
    let gen = GeneratorConfig {
        seed: 19,
        events: 30_000,
        rate: 1000.0,
        drift_at: Some(12_000),
        drift_features: vec!["f1".into()],
        drift_magnitude: 1.0,
        ..Default::default()
    };
    let sent = produce_generated(&topics, gen);
    dw.wait_metric_at_least(
        "driftwatch_events_total",
        &[("topic", "prediction")],
        sent as f64 * 0.5,
        Duration::from_secs(90),
    );

    // Consumed, published and checkpointed over SASL_SSL.
    let mut reader = TopicReader::new(&plain, &[&topics.alerts, &topics.dead_letters]);
    reader.read_until(
        "a firing alert and a dead letter",
        Duration::from_secs(60),
        |r| {
            r.iter().any(|r| r.topic == topics.alerts)
                && r.iter().any(|r| r.topic == topics.dead_letters)
        },
    );
    let mut state = TopicReader::new(&plain, &[&topics.state]);
    state.read_until(
        "a bootstrapped baseline on the state topic",
        Duration::from_secs(30),
        |r| {
            r.iter().any(|r| {
                r.key
                    .as_deref()
                    .is_some_and(|k| k.starts_with(b"baseline/"))
            })
        },
    );
    let alert = reader.json_of(&topics.alerts)[0].clone();
    assert_eq!(alert["type"], "alert", "{alert}");

    // The API needs the token; metrics and probes stay open.
    let api = "/api/v1/outputs";
    let t = Duration::from_secs(5);
    let bearer = format!("Bearer {}", secrets.api_token);
    let (status, _) = http_get(dw.http, api, t).expect("GET api");
    assert_eq!(status, 401, "{api} without a token");
    let (status, _) =
        http_get_with(dw.http, api, &[("Authorization", "Bearer wrong")], t).expect("GET api");
    assert_eq!(status, 401, "{api} with a wrong token");
    let (status, outputs) =
        http_get_with(dw.http, api, &[("Authorization", &bearer)], t).expect("GET api");
    assert_eq!(status, 200, "{api} with the token: {outputs}");
    let listed: Value = serde_json::from_str(&outputs).expect("JSON");
    assert!(
        listed.as_array().is_some_and(|a| !a.is_empty()),
        "{outputs}"
    );
    let (status, metrics) = http_get(dw.http, "/metrics", t).expect("GET /metrics");
    assert_eq!(status, 200);
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(http_get(dw.http, probe, t).expect("GET").0, 200, "{probe}");
    }

    // The webhook's outputs were dead-lettered: its server's certificate is not trusted.
    let webhook_dead_letters = wait_file(&webhook_dead, Duration::from_secs(30));
    assert!(
        webhook_dead_letters.contains("certificate verify failed"),
        "https is verified: {webhook_dead_letters}"
    );

    dw.sigterm();
    let status = dw
        .wait_exit(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");

    secrets.assert_absent("/api/v1/outputs", &outputs);
    secrets.assert_absent("/metrics", &metrics);
    secrets.assert_absent("the webhook dead-letter file", &webhook_dead_letters);
    let mut dead = TopicReader::new(&plain, &[&topics.dead_letters]);
    for r in dead.read_to_end(Duration::from_secs(30)) {
        let headers: String = r
            .headers
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}\n",
                    String::from_utf8_lossy(v.as_deref().unwrap_or_default())
                )
            })
            .collect();
        secrets.assert_absent("a dead-letter record", &String::from_utf8_lossy(&r.payload));
        secrets.assert_absent("a dead-letter record's headers", &headers);
    }
    let log = dw.logs().join("\n");
    assert!(
        log.contains("http listening") && log.contains("sasl.password = [redacted]"),
        "the log, librdkafka's configuration dump included, was collected: {log}"
    );
    secrets.assert_absent("stdout or stderr (DRIFTWATCH_LOG=trace)", &log);
}

/// Reads `path` once it has a line, or panics after `timeout`.
fn wait_file(path: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "nothing written to {} within {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `driftwatch run` against `brokers` over SASL_SSL with `password` (and the CA when
/// `ca`), in JSON logs at trace level; expects it to exit non-zero within `limit` with an error
/// containing `cause`. Returns what it printed.
fn start_fails(test: &str, brokers: &str, password: &str, ca: bool, cause: &str) -> String {
    let plain = common::brokers();
    let s = sasl();
    let secrets = Secrets::new(password);
    let topics = Topics::named(&plain, |kind| format!("dw-{test}-{kind}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    over_sasl_ssl(&mut cfg, &s, brokers, ca.then_some(s.ca.as_str()));
    with_webhook_and_api_token(&mut cfg, &secrets, &s, &dir.path().join("dead.jsonl"));
    cfg.set("kafka", "connect_timeout", "\"5s\"");
    let path = dir.path().join(format!("{test}.toml"));
    std::fs::write(&path, cfg.to_toml()).expect("write config");
    let mut env = secrets.env();
    env.push(("DRIFTWATCH_LOG", "trace"));
    let (out, took) = run_bounded(
        &[
            "--log-format",
            "json",
            "run",
            "--config",
            &path.display().to_string(),
        ],
        &env,
        Duration::from_secs(30),
    );
    let text = text_of(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{test}: start-up must fail: {text}"
    );
    assert!(
        took < Duration::from_secs(15),
        "{test}: start-up took {took:?} to fail (connect_timeout 5 s): {text}"
    );
    let error = text
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{test}: no error line: {text}"));
    assert!(
        error.contains(cause) && error.contains(brokers),
        "{test}: the error must name the brokers and `{cause}`: {error}"
    );
    // Every log line is JSON; the last line is the error.
    for line in text.lines().filter(|l| !l.starts_with("error: ")) {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("{test}: not a JSON log line ({e}): {line}"));
    }
    secrets.assert_absent(&format!("{test}: stdout or stderr (JSON, trace)"), &text);
    text
}

#[tokio::test]
#[ignore = "needs a real Kafka broker with its SASL_SSL listener (scripts/test-all starts one)"]
async fn https_listener_serves_only_tls_and_the_api_only_with_the_token() {
    let plain = brokers();
    let (cert, key) = (
        required_env("DRIFTWATCH_TEST_SERVER_CERT"),
        required_env("DRIFTWATCH_TEST_SERVER_KEY"),
    );
    let ca = std::fs::read(required_env("DRIFTWATCH_TEST_CA")).expect("the test CA");
    let token = unique("apitoken");
    let topics = Topics::create(&plain, "https", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let q = |v: &str| toml::Value::String(v.to_string()).to_string();
    let mut cfg = MonitorConfig::new(&topics, &dir.path().join("snapshots"));
    cfg.set("http", "tls_cert", &q(&cert))
        .set("http", "tls_key", &q(&key))
        .set("http", "api_token_env", &q(API_TOKEN_ENV))
        .set("http", "token_for_all", "true");
    let env = [(API_TOKEN_ENV, token.as_str())];
    let dw = Driftwatch::start_with_env("https", &cfg, dir.path(), &env);
    let base = format!("https://{}", dw.http);

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("PEM"))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let get = |path: &str, token: Option<&str>| {
        let mut r = trusting.get(format!("{base}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.expect("https request").status().as_u16() }
    };
    for path in ["/healthz", "/metrics", "/api/v1/outputs"] {
        assert_eq!(get(path, None).await, 401, "{path} without the token");
        assert_eq!(get(path, Some("wrong")).await, 401, "{path}, wrong token");
        assert_eq!(get(path, Some(&token)).await, 200, "{path} with the token");
    }
    // Plain HTTP on the HTTPS port gets no answer, and a client that does not trust the CA
    // refuses the certificate.
    assert!(http_get(dw.http, "/healthz", Duration::from_secs(3)).is_err());
    let err = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect_err("an untrusted certificate");
    assert!(
        format!("{err:?}").contains("certificate verify failed"),
        "{err:?}"
    );
}

#[test]
#[ignore = "needs a real Kafka broker with its SASL_SSL listener (scripts/test-all starts one)"]
fn wrong_password_ends_start_up_naming_authentication() {
    let s = sasl();
    start_fails(
        "wrong-password",
        &s.brokers,
        &unique("wrong-password"),
        true,
        "SASL authentication failed",
    );
}

#[test]
#[ignore = "needs a real Kafka broker with its SASL_SSL listener (scripts/test-all starts one)"]
fn untrusted_certificate_ends_start_up_naming_tls() {
    // Without the test CA, the broker's certificate is checked against the system's roots.
    let s = sasl();
    let text = start_fails(
        "untrusted",
        &s.brokers,
        &s.password,
        false,
        "TLS handshake failed",
    );
    assert!(text.contains("certificate verify failed"), "{text}");
}

#[test]
#[ignore = "needs a real Kafka broker with its SASL_SSL listener (scripts/test-all starts one)"]
fn unreachable_listener_ends_start_up_after_connect_timeout() {
    let s = sasl();
    let brokers = format!("127.0.0.1:{}", free_port());
    let text = start_fails(
        "unreachable",
        &brokers,
        &s.password,
        true,
        "no answer within kafka.connect_timeout (5s)",
    );
    assert!(text.contains("Connection refused"), "{text}");
}
