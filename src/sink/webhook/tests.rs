//! Tests of the webhook sink against a scripted local HTTP server.

use super::*;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::output::{
    Alert, AlertKind, CanaryCheck, CanaryVerdict, ReferenceRef, RetrainTrigger, Severity,
    TriggerReason, Verdict, WindowRef,
};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap as AxHeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

const SECRET: &str = "s3cr3t-for-tests";

/// One request as the test server saw it.
#[derive(Clone)]
struct Hit {
    uri: String,
    headers: AxHeaderMap,
    body: Vec<u8>,
}

impl Hit {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct Server {
    /// (status, Retry-After, delay) per request; the last one repeats.
    script: Vec<(u16, Option<&'static str>, Duration)>,
    hits: Mutex<Vec<Hit>>,
}

async fn handle(
    State(st): State<Arc<Server>>,
    uri: Uri,
    headers: AxHeaderMap,
    body: Bytes,
) -> Response {
    let n = {
        let mut hits = st.hits.lock().unwrap();
        hits.push(Hit {
            uri: uri.to_string(),
            headers,
            body: body.to_vec(),
        });
        hits.len() - 1
    };
    let (status, retry_after, delay) = st.script[n.min(st.script.len() - 1)];
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut resp = (
        StatusCode::from_u16(status).unwrap(),
        format!("scripted {status}"),
    )
        .into_response();
    if let Some(ra) = retry_after {
        resp.headers_mut()
            .insert("retry-after", ra.parse().unwrap());
    }
    resp
}

/// Starts a scripted server on 127.0.0.1:0; returns its base URL.
async fn serve(script: Vec<(u16, Option<&'static str>, Duration)>) -> (String, Arc<Server>) {
    let state = Arc::new(Server {
        script,
        hits: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(handle).with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn statuses(codes: &[u16]) -> Vec<(u16, Option<&'static str>, Duration)> {
    codes.iter().map(|c| (*c, None, Duration::ZERO)).collect()
}

/// Sets a uniquely named env var and returns its name.
fn env(name: &str, value: &str) -> String {
    let name = format!("DRIFTWATCH_WEBHOOK_TEST_{name}");
    std::env::set_var(&name, value);
    name
}

fn config(url: String, template: WebhookTemplate, dir: &tempfile::TempDir) -> WebhookConfig {
    let mut c = WebhookConfig::new(url, template);
    c.secret_env = Some(env("SECRET", SECRET));
    c.timeout = Duration::from_secs(5);
    c.max_retries = 3;
    c.initial_backoff = Duration::from_millis(1);
    c.max_backoff = Duration::from_millis(4);
    c.dead_letter_file = dir.path().join("dead.jsonl");
    c
}

fn window() -> WindowRef {
    WindowRef {
        start: "2027-01-01T00:00:25.000Z".into(),
        end: "2027-01-01T00:00:45.000Z".into(),
        count: 2000,
    }
}

fn reference() -> ReferenceRef {
    ReferenceRef {
        id: "fraud-scorer@v12:5d26fda50406".into(),
        sha256: "5d26fda50406a2b3722f9cf3838671323a969a7ac2b1f9aa57d72f8fdb61cea2".into(),
    }
}

const SNAPSHOT: &str = "/var/lib/driftwatch/snapshots/fraud-scorer/v12/trg-0001.parquet";

fn trigger() -> Output {
    Output::Trigger(RetrainTrigger {
        type_: "retrain_trigger",
        trigger_id: "trg-0001".into(),
        model_id: "fraud-scorer".into(),
        model_version: "v12".into(),
        reasons: vec![
            TriggerReason {
                alert_id: "a1".into(),
                kind: AlertKind::DataDrift,
                metric: "psi".into(),
                feature: Some("amount".into()),
                value: 0.31,
                threshold: 0.2,
            },
            TriggerReason {
                alert_id: "a2".into(),
                kind: AlertKind::Performance,
                metric: "accuracy".into(),
                feature: None,
                value: 0.84,
                threshold: 0.88,
            },
        ],
        policy: "data_drift".into(),
        window: window(),
        reference: reference(),
        evidence: json!({"snapshot": {"path": SNAPSHOT, "format": "parquet", "events": 2000}}),
        emitted_at: "2027-01-01T00:00:45.000Z".into(),
    })
}

fn verdict_output() -> Output {
    Output::Verdict(CanaryVerdict {
        type_: "canary_verdict",
        verdict_id: "cv-42".into(),
        model_id: "fraud-scorer".into(),
        model_version: "v13".into(),
        baseline_version: "v12".into(),
        candidate_version: "v13".into(),
        verdict: Verdict::Rollback,
        checks: vec![
            CanaryCheck {
                metric: "p99_ms".into(),
                baseline: 120.0,
                candidate: 180.0,
                threshold: 1.2,
                passed: false,
            },
            CanaryCheck {
                metric: "prediction_mean".into(),
                baseline: 0.5,
                candidate: 0.51,
                threshold: 0.1,
                passed: true,
            },
        ],
        window: window(),
        emitted_at: "2027-01-01T00:00:45.000Z".into(),
    })
}

fn alert(id: &str) -> Output {
    Output::Alert(Alert {
        type_: "alert",
        alert_id: id.into(),
        kind: AlertKind::Latency,
        severity: Severity::Critical,
        status: crate::output::AlertStatus::Firing,
        model_id: "m".into(),
        model_version: "v1".into(),
        metric: "p99_ms".into(),
        feature: None,
        value: 180.0,
        threshold: 120.0,
        window: window(),
        reference: reference(),
        evidence: json!({}),
        emitted_at: "2027-01-01T00:00:45.000Z".into(),
    })
}

fn dead_lines(c: &WebhookConfig) -> Vec<Value> {
    match std::fs::read_to_string(&c.dead_letter_file) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn generic_signed_with_idempotency_and_event_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = serve(statuses(&[200])).await;
    let cfg = config(format!("{base}/hook?x=1"), WebhookTemplate::Generic, &dir);
    let sink = WebhookSink::new(cfg.clone()).unwrap();
    let out = trigger();
    let d = sink.deliver(&out).await.unwrap();
    assert_eq!(
        d,
        Delivery::Delivered {
            status: 200,
            attempts: 1,
            idempotency_key: "trg-0001".into()
        }
    );
    let hits = server.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.uri, "/hook?x=1");
    // Signature: recompute the HMAC over the timestamp and the bytes actually received.
    let sig = hit.header(SIGNATURE_HEADER).expect("signature header");
    let ts = hit.header(TIMESTAMP_HEADER).expect("timestamp header");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sent: u64 = ts.parse().expect("whole seconds");
    assert!(sent.abs_diff(now) <= 5, "timestamp {sent}, now {now}");
    let mut mac = HmacSha256::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&hit.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(sig, expected);
    assert!(verify_signature(SECRET.as_bytes(), &ts, &hit.body, &sig));
    assert!(!verify_signature(b"wrong", &ts, &hit.body, &sig));
    // A captured request sent again with a fresh timestamp does not verify.
    let later = (sent + 600).to_string();
    assert!(!verify_signature(
        SECRET.as_bytes(),
        &later,
        &hit.body,
        &sig
    ));
    assert_eq!(hit.header(IDEMPOTENCY_HEADER).as_deref(), Some("trg-0001"));
    assert_eq!(hit.header(EVENT_HEADER).as_deref(), Some("retrain_trigger"));
    assert_eq!(hit.header(ATTEMPT_HEADER).as_deref(), Some("1"));
    assert_eq!(
        hit.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(hit.header("authorization").is_none());
    assert_eq!(hit.json(), out.to_json());
    let c = sink.counters();
    assert_eq!((c.delivered, c.retried, c.dead_lettered), (1, 0, 0));
    assert!(dead_lines(&cfg).is_empty());
}

#[tokio::test]
async fn unsigned_when_no_secret_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = serve(statuses(&[204])).await;
    let mut cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
    cfg.secret_env = None;
    let sink = WebhookSink::new(cfg).unwrap();
    sink.deliver(&alert("al-1")).await.unwrap();
    let hit = server.hits.lock().unwrap()[0].clone();
    assert!(hit.header(SIGNATURE_HEADER).is_none());
    assert!(hit.header(TIMESTAMP_HEADER).is_some());
    assert_eq!(
        hit.header(IDEMPOTENCY_HEADER).as_deref(),
        Some("al-1:firing")
    );
    assert_eq!(hit.header(EVENT_HEADER).as_deref(), Some("alert"));
}

#[tokio::test]
async fn github_repository_dispatch_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = serve(statuses(&[204])).await;
    let mut cfg = config(
        format!("{base}/repos/acme/models/dispatches"),
        WebhookTemplate::GithubRepositoryDispatch,
        &dir,
    );
    cfg.token_env = Some(env("GH_TOKEN", "ghp_test_token"));
    let sink = WebhookSink::new(cfg).unwrap();
    let out = trigger();
    sink.deliver(&out).await.unwrap();
    let hit = server.hits.lock().unwrap()[0].clone();
    assert_eq!(hit.uri, "/repos/acme/models/dispatches");
    assert_eq!(
        hit.header("authorization").as_deref(),
        Some("Bearer ghp_test_token")
    );
    assert_eq!(
        hit.header("accept").as_deref(),
        Some("application/vnd.github+json")
    );
    assert!(hit
        .header("user-agent")
        .unwrap()
        .starts_with("driftwatch-webhook/"));
    assert!(verify_signature(
        SECRET.as_bytes(),
        &hit.header(TIMESTAMP_HEADER).unwrap(),
        &hit.body,
        &hit.header(SIGNATURE_HEADER).unwrap()
    ));
    let body = hit.json();
    assert_eq!(body.as_object().unwrap().len(), 2);
    assert_eq!(body["event_type"], "driftwatch-retrain");
    let p = body["client_payload"].as_object().unwrap();
    assert!(
        p.len() <= GITHUB_CLIENT_PAYLOAD_MAX_KEYS,
        "{} keys",
        p.len()
    );
    assert_eq!(p["type"], "retrain_trigger");
    assert_eq!(p["id"], "trg-0001");
    assert_eq!(p["model_id"], "fraud-scorer");
    assert_eq!(p["model_version"], "v12");
    // The snapshot where triggers put it (evidence.snapshot.path).
    assert_eq!(p["snapshot"], SNAPSHOT);
    // Reasons as text; the structured form stays in the full object.
    assert_eq!(
        p["reasons"],
        json!([
            "data_drift: psi of amount = 0.31 (threshold 0.2)",
            "performance: accuracy = 0.84 (threshold 0.88)"
        ])
    );
    assert_eq!(p["verdict"], Value::Null);
    assert_eq!(
        p["summary"],
        "retrain fraud-scorer@v12 (data_drift): data_drift: psi of amount = 0.31 (threshold 0.2); performance: accuracy = 0.84 (threshold 0.88)"
    );
    assert_eq!(p["driftwatch"], out.to_json());
    assert_eq!(p["driftwatch"]["reasons"][0]["feature"], "amount");

    // A canary verdict: the decision, the candidate as model_version, failed checks as reasons.
    sink.deliver(&verdict_output()).await.unwrap();
    let hit = server.hits.lock().unwrap()[1].clone();
    let p = hit.json()["client_payload"].clone();
    assert_eq!(p["verdict"], "rollback");
    assert_eq!(p["model_version"], "v13");
    assert_eq!(
        p["reasons"],
        json!(["p99_ms failed: candidate 180, baseline 120 (threshold 1.2)"])
    );
    assert_eq!(p["id"], "cv-42");
    assert_eq!(hit.header(EVENT_HEADER).as_deref(), Some("canary_verdict"));
}

#[tokio::test]
async fn gitlab_pipeline_trigger_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = serve(statuses(&[201])).await;
    let mut cfg = config(
        format!("{base}/api/v4/projects/42/trigger/pipeline"),
        WebhookTemplate::GitlabPipelineTrigger,
        &dir,
    );
    cfg.token_env = Some(env("GL_TOKEN", "glptt-test"));
    cfg.gitlab_ref = "release".into();
    let sink = WebhookSink::new(cfg).unwrap();
    let out = trigger();
    let d = sink.deliver(&out).await.unwrap();
    assert!(matches!(
        d,
        Delivery::Delivered {
            status: 201,
            attempts: 1,
            ..
        }
    ));
    let hit = server.hits.lock().unwrap()[0].clone();
    assert!(hit.header("authorization").is_none());
    assert!(verify_signature(
        SECRET.as_bytes(),
        &hit.header(TIMESTAMP_HEADER).unwrap(),
        &hit.body,
        &hit.header(SIGNATURE_HEADER).unwrap()
    ));
    let body = hit.json();
    assert_eq!(body["token"], "glptt-test");
    assert_eq!(body["ref"], "release");
    let v = body["variables"].as_object().unwrap();
    assert!(
        v.values().all(Value::is_string),
        "GitLab variables must be strings"
    );
    assert_eq!(v["DRIFTWATCH_TYPE"], "retrain_trigger");
    assert_eq!(v["DRIFTWATCH_MODEL_ID"], "fraud-scorer");
    assert_eq!(v["DRIFTWATCH_MODEL_VERSION"], "v12");
    assert_eq!(v["DRIFTWATCH_ID"], "trg-0001");
    assert_eq!(v["DRIFTWATCH_VERDICT"], "");
    assert_eq!(v["DRIFTWATCH_SNAPSHOT"], SNAPSHOT);
    assert_eq!(
        v["DRIFTWATCH_REASONS"],
        "data_drift: psi of amount = 0.31 (threshold 0.2)\nperformance: accuracy = 0.84 (threshold 0.88)"
    );
    let payload: Value = serde_json::from_str(v["DRIFTWATCH_PAYLOAD"].as_str().unwrap()).unwrap();
    assert_eq!(payload, out.to_json());
}

#[tokio::test]
async fn retries_500_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = serve(statuses(&[500, 200])).await;
    let cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
    let sink = WebhookSink::new(cfg.clone()).unwrap();
    let d = sink.deliver(&trigger()).await.unwrap();
    assert!(matches!(
        d,
        Delivery::Delivered {
            status: 200,
            attempts: 2,
            ..
        }
    ));
    let hits = server.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 2);
    // Same body, same idempotency key, attempt number advances.
    assert_eq!(hits[0].body, hits[1].body);
    assert_eq!(
        hits[0].header(IDEMPOTENCY_HEADER),
        hits[1].header(IDEMPOTENCY_HEADER)
    );
    assert_eq!(hits[1].header(ATTEMPT_HEADER).as_deref(), Some("2"));
    let c = sink.counters();
    assert_eq!((c.delivered, c.retried, c.dead_lettered), (1, 1, 0));
    assert!(dead_lines(&cfg).is_empty());
}

#[tokio::test]
async fn retries_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let script = vec![
        (429, Some("0"), Duration::ZERO),
        (200, None, Duration::ZERO),
    ];
    let (base, server) = serve(script).await;
    let sink = WebhookSink::new(config(
        format!("{base}/hook"),
        WebhookTemplate::Generic,
        &dir,
    ))
    .unwrap();
    let d = sink.deliver(&trigger()).await.unwrap();
    assert!(matches!(d, Delivery::Delivered { attempts: 2, .. }));
    assert_eq!(server.hits.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn permanent_400_dead_letters_after_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = serve(statuses(&[400])).await;
    let cfg = config(
        format!("{base}/hook?token=supersecret"),
        WebhookTemplate::Generic,
        &dir,
    );
    let sink = WebhookSink::new(cfg.clone()).unwrap();
    let out = trigger();
    let err = sink.deliver(&out).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.is_dead_lettered());
    assert!(matches!(
        err,
        WebhookError::DeadLettered {
            attempts: 1,
            status: Some(400),
            ..
        }
    ));
    assert!(err.to_string().contains("dead-letter"), "{err}");
    assert!(!err.to_string().contains("supersecret"));
    assert_eq!(server.hits.lock().unwrap().len(), 1);
    let lines = dead_lines(&cfg);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["status"], 400);
    assert_eq!(l["attempts"], 1);
    assert_eq!(l["url"], format!("{base}/hook"));
    assert_eq!(l["payload"], out.to_json());
    assert!(l["reason"].as_str().unwrap().contains("400"));
    let failed_at = l["failed_at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(failed_at).is_ok(), "{failed_at}");
    assert!(failed_at.ends_with('Z') && failed_at.len() == "2024-01-01T00:00:00.000Z".len());
    let c = sink.counters();
    assert_eq!((c.delivered, c.retried, c.dead_lettered), (0, 0, 1));
}

#[tokio::test]
async fn always_503_exhausts_retries_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = serve(statuses(&[503])).await;
    let cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
    let sink = WebhookSink::new(cfg.clone()).unwrap();
    let err = sink.deliver(&verdict_output()).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(
        matches!(
            err,
            WebhookError::DeadLettered {
                attempts: 4,
                status: Some(503),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(server.hits.lock().unwrap().len(), 4);
    let lines = dead_lines(&cfg);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["attempts"], 4);
    assert_eq!(lines[0]["status"], 503);
    assert_eq!(lines[0]["payload"], verdict_output().to_json());
    assert!(lines[0]["reason"]
        .as_str()
        .unwrap()
        .contains("retries exhausted"));
    let c = sink.counters();
    assert_eq!((c.delivered, c.retried, c.dead_lettered), (0, 3, 1));
}

#[tokio::test]
async fn connection_refused_is_retried_then_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // listener dropped: nothing listens there now
    let cfg = config(
        format!("http://127.0.0.1:{port}/hook"),
        WebhookTemplate::Generic,
        &dir,
    );
    let sink = WebhookSink::new(cfg.clone()).unwrap();
    let err = sink.deliver(&trigger()).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(
        matches!(
            err,
            WebhookError::DeadLettered {
                attempts: 4,
                status: None,
                ..
            }
        ),
        "{err}"
    );
    let lines = dead_lines(&cfg);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], Value::Null);
    assert!(
        lines[0]["reason"].as_str().unwrap().contains("connect"),
        "{}",
        lines[0]["reason"]
    );
    assert_eq!(sink.counters().retried, 3);
}

#[tokio::test]
async fn timeout_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let script = vec![
        (200, None, Duration::from_millis(1500)),
        (200, None, Duration::ZERO),
    ];
    let (base, server) = serve(script).await;
    let mut cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
    cfg.timeout = Duration::from_millis(300);
    let sink = WebhookSink::new(cfg).unwrap();
    let d = sink.deliver(&trigger()).await.unwrap();
    assert!(matches!(d, Delivery::Delivered { attempts: 2, .. }));
    assert_eq!(server.hits.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn skipped_kinds_and_outputs_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = serve(statuses(&[200])).await;
    let mut cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
    cfg.kinds = vec![OutputType::RetrainTrigger];
    let sink = WebhookSink::new(cfg.clone()).unwrap();
    assert_eq!(
        sink.deliver(&alert("al-9")).await.unwrap(),
        Delivery::Skipped {
            kind: OutputType::Alert
        }
    );
    // Outputs that are not going to be attempted are dead-lettered, never dropped.
    sink.give_up(&trigger(), Undelivered::QueueFull).unwrap();
    sink.give_up(&trigger(), Undelivered::Shutdown).unwrap();
    assert!(server.hits.lock().unwrap().is_empty());
    let lines = dead_lines(&cfg);
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["payload"] == trigger().to_json()));
    assert!(lines[0]["reason"].as_str().unwrap().contains("queue full"));
    assert!(lines[1]["reason"]
        .as_str()
        .unwrap()
        .contains("drain timeout"));
    let c = sink.counters();
    assert_eq!(
        (
            c.skipped,
            c.dead_lettered,
            c.queue_full,
            c.unsent_at_shutdown,
            c.delivered
        ),
        (1, 2, 1, 1, 0)
    );
}

#[tokio::test]
async fn unwritable_dead_letter_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _server) = serve(statuses(&[404])).await;
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let mut cfg = config(format!("{base}/hook"), WebhookTemplate::Generic, &dir);
    cfg.dead_letter_file = blocker.join("dead.jsonl");
    let sink = WebhookSink::new(cfg).unwrap();
    let err = sink.deliver(&trigger()).await.unwrap_err();
    assert!(matches!(err, WebhookError::DeadLetterWrite { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(!err.is_dead_lettered());
    assert_eq!(sink.counters().dead_letter_write_errors, 1);
}

#[tokio::test]
async fn https_without_tls_backend_is_not_retried_pointlessly() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = config(
        format!("https://127.0.0.1:{port}/hook?token=abc"),
        WebhookTemplate::Generic,
        &dir,
    );
    let sink = WebhookSink::new(cfg.clone()).unwrap();
    let err = sink.deliver(&trigger()).await.unwrap_err();
    let WebhookError::DeadLettered {
        attempts, reason, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(!reason.contains("token=abc"), "{reason}");
    if reason.contains("no TLS support") {
        // reqwest built without a TLS feature (as in this crate).
        assert_eq!(*attempts, 1);
        assert!(!err.is_retryable());
    } else {
        // With a TLS backend this is an ordinary connection refusal.
        assert_eq!(*attempts, cfg.max_retries + 1);
    }
}

#[test]
fn config_defaults_and_unknown_fields() {
    let c: WebhookConfig =
        serde_json::from_value(json!({"url": "https://example.com/hook"})).unwrap();
    assert_eq!(
        c,
        WebhookConfig::new("https://example.com/hook", WebhookTemplate::Generic)
    );
    assert_eq!(c.kinds, OutputType::PUBLISHED.to_vec());
    assert_eq!(c.queue_capacity, 10_000);
    assert_eq!(c.github_event_type, "driftwatch-retrain");
    assert_eq!(c.gitlab_ref, "main");
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert_eq!(c.max_retries, 5);
    assert_eq!(c.initial_backoff, Duration::from_millis(500));
    assert_eq!(c.max_backoff, Duration::from_secs(30));
    assert_eq!(
        c.dead_letter_file,
        PathBuf::from("driftwatch-webhook-dead-letters.jsonl")
    );

    let c: WebhookConfig = serde_json::from_value(json!({
        "url": "https://api.github.com/repos/a/b/dispatches",
        "template": "github_repository_dispatch",
        "kinds": ["retrain_trigger", "canary_verdict"],
        "timeout": "2s 500ms",
        "initial_backoff": "1s",
    }))
    .unwrap();
    assert_eq!(c.template, WebhookTemplate::GithubRepositoryDispatch);
    assert_eq!(c.timeout, Duration::from_millis(2500));
    assert_eq!(c.kinds.len(), 2);

    let err = serde_json::from_value::<WebhookConfig>(json!({"url": "http://x", "secret": "nope"}))
        .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err =
        serde_json::from_value::<WebhookConfig>(json!({"url": "http://x", "timeout": "soon"}))
            .unwrap_err();
    assert!(err.to_string().contains("invalid duration"), "{err}");
    assert!(serde_json::from_value::<WebhookConfig>(
        json!({"url": "http://x", "kinds": ["heartbeat"]})
    )
    .is_err());
}

#[test]
fn validate_reports_every_problem() {
    let mut c = WebhookConfig::new(
        "ftp://user:pw@host/x",
        WebhookTemplate::GithubRepositoryDispatch,
    );
    c.timeout = Duration::ZERO;
    c.secret_env = Some("DRIFTWATCH_WEBHOOK_TEST_DEFINITELY_UNSET_SECRET".into());
    c.kinds.clear();
    c.github_event_type = String::new();
    c.max_backoff = Duration::from_millis(1);
    let problems = c.validate();
    let all = problems.join("\n");
    for needle in [
        "scheme",
        "credentials",
        "/dispatches",
        "kinds is empty",
        "DRIFTWATCH_WEBHOOK_TEST_DEFINITELY_UNSET_SECRET",
        "needs token_env",
        "github_event_type",
        "timeout must be greater than zero",
        "max_backoff",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert!(
        matches!(WebhookSink::new(c), Err(WebhookError::InvalidConfig(p)) if p.len() == problems.len())
    );

    assert!(!WebhookConfig::new("not a url", WebhookTemplate::Generic)
        .validate()
        .is_empty());
    let gl = WebhookConfig::new(
        "https://gitlab.example.com/api/v4/projects/1/pipeline",
        WebhookTemplate::GitlabPipelineTrigger,
    );
    let all = gl.validate().join("\n");
    assert!(
        all.contains("/trigger/pipeline") && all.contains("token_env"),
        "{all}"
    );
    assert!(
        WebhookConfig::new("https://ci.example.com/hook", WebhookTemplate::Generic)
            .validate()
            .is_empty()
    );
}

#[test]
fn oversized_output_is_trimmed_for_github() {
    // Bulky evidence: left out, the rest of the object (structured reasons included) kept.
    let mut out = trigger();
    let Output::Trigger(t) = &mut out else {
        unreachable!()
    };
    t.evidence["histogram"] = json!(vec![1.2345_f64; 20_000]);
    let p = render::github_client_payload("trg-0001", &out);
    assert!(p.to_string().len() <= GITHUB_CLIENT_PAYLOAD_MAX_BYTES);
    assert!(p.as_object().unwrap().len() <= GITHUB_CLIENT_PAYLOAD_MAX_KEYS);
    assert_eq!(p["driftwatch_truncated"], true);
    assert_eq!(p["driftwatch"]["evidence"], Value::Null);
    assert_eq!(p["driftwatch"]["reasons"][0]["metric"], "psi");
    assert_eq!(p["snapshot"], SNAPSHOT);
    // Bulky everything: the full object left out, the summary fields kept.
    let Output::Trigger(t) = &mut out else {
        unreachable!()
    };
    t.policy = "x".repeat(GITHUB_CLIENT_PAYLOAD_MAX_BYTES);
    let p = render::github_client_payload("trg-0001", &out);
    assert!(p.to_string().len() <= GITHUB_CLIENT_PAYLOAD_MAX_BYTES);
    assert_eq!(p["driftwatch"], Value::Null);
    assert_eq!(p["model_id"], "fraud-scorer");
}

#[test]
fn secrets_never_in_debug_output() {
    let mut c = WebhookConfig::new(
        "http://127.0.0.1:9/hook?token=qs-hunter2",
        WebhookTemplate::Generic,
    );
    c.secret_env = Some(env("DEBUG_SECRET", "hunter2-secret"));
    c.token_env = Some(env("DEBUG_TOKEN", "hunter2-token"));
    assert!(!format!("{c:?}").contains("hunter2"));
    let sink = WebhookSink::new(c).unwrap();
    let dbg = format!("{sink:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
}

#[test]
fn backoff_doubles_caps_and_honours_retry_after() {
    let (i, m) = (Duration::from_millis(500), Duration::from_secs(30));
    let ms = |r, ra| retry_delay(i, m, r, ra).as_millis();
    assert_eq!(ms(0, None), 500);
    assert_eq!(ms(1, None), 1000);
    assert_eq!(ms(2, None), 2000);
    assert_eq!(ms(6, None), 30_000);
    assert_eq!(ms(40, None), 30_000);
    assert_eq!(ms(0, Some(Duration::from_secs(7))), 7000);
    assert_eq!(ms(3, Some(Duration::from_secs(1))), 4000);
    assert_eq!(ms(0, Some(Duration::from_secs(600))), 30_000);
}

#[test]
fn github_payload_respects_key_limit_and_redaction_of_urls() {
    for out in [trigger(), verdict_output(), alert("a")] {
        let p = render::github_client_payload(&out.idempotency_key(), &out);
        assert!(p.as_object().unwrap().len() <= GITHUB_CLIENT_PAYLOAD_MAX_KEYS);
    }
    let u =
        Url::parse("https://u:p@gitlab.example.com/api/v4/projects/1/trigger/pipeline?token=t#f")
            .unwrap();
    assert_eq!(
        redact_url(&u),
        "https://gitlab.example.com/api/v4/projects/1/trigger/pipeline"
    );
    assert_eq!(sign(b"k", "1", b"body"), sign(b"k", "1", b"body"));
    assert_ne!(sign(b"k", "1", b"body"), sign(b"k", "1", b"body "));
    assert_ne!(sign(b"k", "1", b"body"), sign(b"k", "2", b"body"));
    // The value examples/ci/README.md's Python receiver computes for these inputs.
    assert_eq!(
        sign(b"s3cret", "1700000000", br#"{"type":"alert"}"#),
        "sha256=c3bdda25aee20e82d27932e6a56c82243ee243158af0e7d89d776613b4808d74"
    );
}
