//! The output fan-out against a slow local webhook receiver: outputs queue up, shutdown comes,
//! and every output ends up either delivered or in the webhook's dead-letter file — none lost,
//! whether the queue overflows, the drain timeout runs out, or both.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Router;
use driftwatch::config::webhook::{WebhookConfig, WebhookTemplate};
use driftwatch::output::{
    Alert, AlertKind, AlertStatus, DeadLetter, Output, ReferenceRef, Severity, WindowRef,
};
use driftwatch::sink::fanout::{self, Fanout, WebhookQueue};
use driftwatch::sink::webhook::{WebhookSink, IDEMPOTENCY_HEADER};
use driftwatch::sink::JsonLinesSink;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Idempotency keys received, answering each request after `delay`.
struct Receiver {
    delay: Duration,
    keys: Mutex<Vec<String>>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, _body: Bytes) -> &'static str {
    tokio::time::sleep(r.delay).await;
    let key = headers[IDEMPOTENCY_HEADER].to_str().unwrap().to_owned();
    r.keys.lock().unwrap().push(key);
    "ok"
}

async fn serve(delay: Duration) -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver {
        delay,
        keys: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .fallback(receive)
        .with_state(Arc::clone(&state));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), state)
}

fn alert(i: usize) -> Output {
    Output::Alert(Alert {
        type_: "alert",
        alert_id: format!("alert-{i:04}"),
        kind: AlertKind::Latency,
        severity: Severity::Warning,
        status: AlertStatus::Firing,
        model_id: "m".into(),
        model_version: "v1".into(),
        metric: "p99_ms".into(),
        feature: None,
        value: 180.0 + i as f64,
        threshold: 120.0,
        window: WindowRef {
            start: "2027-01-01T00:00:00.000Z".into(),
            end: "2027-01-01T00:00:20.000Z".into(),
            count: 100,
        },
        reference: ReferenceRef {
            id: "m@v1:0123".into(),
            sha256: "0".repeat(64),
        },
        evidence: json!({}),
        emitted_at: "2027-01-01T00:00:20.000Z".into(),
    })
}

struct Outcome {
    /// Keys the receiver got.
    received: Vec<String>,
    /// The dead-letter file's records.
    dead: Vec<Value>,
    /// What the gating sink wrote, one JSON line per output.
    gated: Vec<Value>,
    counters: driftwatch::sink::webhook::WebhookCounters,
}

/// Publishes `n` alerts (and one dead letter) through a fan-out with a webhook whose receiver
/// answers after `delay` and whose queue holds `capacity`; then shuts down as the service
/// does: drop the fan-out, and [`fanout::drain`] with a drain timeout of `drain`.
async fn run(n: usize, capacity: usize, delay: Duration, drain: Duration) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (url, receiver) = serve(delay).await;
    let mut cfg = WebhookConfig::new(url, WebhookTemplate::Generic);
    cfg.queue_capacity = capacity;
    cfg.max_retries = 0;
    cfg.dead_letter_file = dir.path().join("webhook-dead.jsonl");
    let sink = Arc::new(WebhookSink::new(cfg.clone()).unwrap());
    let tasks = TaskTracker::new();
    let give_up = CancellationToken::new();
    let seen = Arc::new(Mutex::new(0usize));
    let mut gated = Vec::new();
    {
        let counted = Arc::clone(&seen);
        let mut fanout = Fanout::new(JsonLinesSink::new(&mut gated, None::<Vec<u8>>))
            .with_webhook(WebhookQueue::spawn(
                Arc::clone(&sink),
                &tasks,
                give_up.clone(),
            ))
            .with_hook(Arc::new(move |_| *counted.lock().unwrap() += 1));
        for i in 0..n {
            fanout.publish(&alert(i)).unwrap();
        }
        fanout
            .publish(&Output::DeadLetter(DeadLetter {
                reason: "not_json",
                detail: "expected value".into(),
                topic: "predictions".into(),
                partition: 0,
                offset: 7,
                payload: b"{oops".to_vec(),
            }))
            .unwrap();
        // Dropping the fan-out is what the source does when it stops.
    }
    assert_eq!(*seen.lock().unwrap(), n + 1, "hooks see every output");
    let started = std::time::Instant::now();
    let grace = Duration::from_secs(10);
    fanout::drain(tasks.clone(), tokio::time::sleep(drain), give_up, grace).await;
    assert!(tasks.is_empty(), "every task ended");
    assert!(started.elapsed() < drain + grace);
    // A request cancelled at the deadline may still reach the handler's end.
    tokio::time::sleep(delay + Duration::from_millis(50)).await;
    let dead = std::fs::read_to_string(&cfg.dead_letter_file)
        .map(|t| {
            t.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .unwrap_or_default();
    let received = receiver.keys.lock().unwrap().clone();
    Outcome {
        received,
        dead,
        gated: gated
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect(),
        counters: sink.counters(),
    }
}

/// Every alert is in the receiver or in the dead-letter file (and the gating sink has all).
fn assert_none_lost(o: &Outcome, n: usize) {
    let all: BTreeSet<String> = (0..n).map(|i| alert(i).idempotency_key()).collect();
    let delivered: BTreeSet<String> = o.received.iter().cloned().collect();
    let dead: BTreeSet<String> = o
        .dead
        .iter()
        .map(|d| format!("{}:firing", d["payload"]["alert_id"].as_str().unwrap()))
        .collect();
    let accounted: BTreeSet<String> = delivered.union(&dead).cloned().collect();
    assert_eq!(accounted, all, "lost: {:?}", all.difference(&accounted));
    assert_eq!(o.gated.len(), n + 1, "the gating sink has every output");
    let c = o.counters;
    assert_eq!(c.dead_lettered as usize, o.dead.len());
    assert_eq!(
        c.dead_lettered,
        c.queue_full + c.unsent_at_shutdown,
        "{c:?}"
    );
    // An output is delivered once, or dead-lettered once; a request cut off at the deadline
    // may be both (consumers de-duplicate by the idempotency key).
    assert!(c.delivered as usize <= o.received.len());
    assert!(c.delivered + c.dead_lettered >= n as u64, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_outputs_are_delivered_at_shutdown_within_the_drain_timeout() {
    // 40 outputs at 20 ms each need about 0.8 s; the drain allows 10 s.
    let n = 40;
    let o = run(n, 100, Duration::from_millis(20), Duration::from_secs(10)).await;
    assert_none_lost(&o, n);
    assert!(o.dead.is_empty(), "{:?}", o.dead);
    assert_eq!(o.counters.delivered as usize, n);
    let mut received = o.received.clone();
    received.sort();
    received.dedup();
    assert_eq!(received.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_and_the_drain_timeout_send_outputs_to_the_dead_letter_file() {
    // 300 outputs into a queue of 50 in front of a receiver taking 100 ms each, 600 ms of drain:
    // most overflow the queue, a few are delivered, the rest are still queued at the deadline.
    let n = 300;
    let o = run(
        n,
        50,
        Duration::from_millis(100),
        Duration::from_millis(600),
    )
    .await;
    assert_none_lost(&o, n);
    let c = o.counters;
    assert!(c.queue_full > 0, "{c:?}");
    assert!(c.unsent_at_shutdown > 0, "{c:?}");
    assert!(c.delivered > 0, "{c:?}");
    let reasons: BTreeSet<&str> = o
        .dead
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("queue full")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("drain timeout")),
        "{reasons:?}"
    );
    // Dead letters carry the full output, readable back as an output.
    for d in &o.dead {
        let back = Output::from_json(&d["payload"]).unwrap();
        assert_eq!(back.to_json(), d["payload"]);
    }
}
