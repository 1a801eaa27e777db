//! End to end on librdkafka's in-process mock cluster: the service (`app::run`) consumes
//! generated events with drift, and its outputs name the drifted features.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftwatch::app::{self, Observers};
use driftwatch::config::Config;
use driftwatch::generate::{produce_to_kafka, Generator};
use driftwatch::output::{AlertKind, AlertStatus, Output};
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_end_to_end_drift_alerts() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let cluster = MockCluster::new(1).expect("mock cluster");
    let snapshots = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.kafka.brokers = cluster.bootstrap_servers();
    cfg.kafka.group_id = "driftwatch-embedded-test".into();
    cfg.kafka.session_timeout = Duration::from_secs(10);
    cfg.kafka.drain_timeout = Duration::from_secs(3);
    cfg.http.addr = "127.0.0.1:0".parse().unwrap();
    cfg.window.length = Duration::from_secs(30);
    cfg.window.slide = Duration::from_secs(10);
    cfg.window.allowed_lateness = Duration::from_secs(2);
    cfg.baseline.bootstrap_events = 5_000;
    cfg.triggers.snapshot_dir = snapshots.path().to_path_buf();
    for t in [
        &cfg.topics.predictions,
        &cfg.topics.features,
        &cfg.topics.labels,
        &cfg.topics.alerts,
        &cfg.topics.retrain,
        &cfg.topics.verdicts,
        &cfg.topics.dead_letters,
        &cfg.topics.state,
    ] {
        cluster.create_topic(t, 1, 1).expect("topic");
    }

    // 60k events at 500/s of event time (120 s); f2 and c1 drift from event 30k (60 s).
    let mut g = common::gen(8_675_309, 60_000, 500.0);
    g.numeric_features = 6;
    g.categorical_features = 2;
    g.drift_at = Some(30_000);
    g.drift_features = vec!["f2".into(), "c1".into()];
    g.drift_magnitude = 1.5;
    let drift_start = common::time_of(&g, 30_000);
    let brokers = cfg.kafka.brokers.clone();
    let (pt, lt) = (cfg.topics.predictions.clone(), cfg.topics.labels.clone());

    let outputs: Arc<Mutex<Vec<Output>>> = Arc::default();
    let sink = Arc::clone(&outputs);
    let bound: Arc<Mutex<Option<std::net::SocketAddr>>> = Arc::default();
    let observers = Observers {
        on_output: Some(Arc::new(move |o: &Output| {
            sink.lock().unwrap().push(o.clone());
        })),
        http_bound: Some(Arc::clone(&bound)),
    };
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(app::run(cfg, shutdown.clone(), observers));

    // The mock cluster keeps only a few MB per partition: produce once the consumer group has
    // its partitions (/readyz), as a real deployment's monitor runs before the traffic.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let addr = *bound.lock().unwrap();
        if let Some(addr) = addr {
            let ready = reqwest::get(format!("http://{addr}/readyz"))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the monitor never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let producer = std::thread::spawn(move || {
        produce_to_kafka(
            Generator::new(g),
            &brokers,
            &pt,
            &lt,
            Some(Duration::from_secs(6)),
            None,
        )
    });

    let sent = tokio::task::spawn_blocking(move || producer.join().expect("producer"))
        .await
        .unwrap()
        .expect("produced");
    assert_eq!(sent, 60_000);

    // Wait until both drifted features fired (or time out).
    let started = Instant::now();
    let fired = |outs: &[Output]| -> Vec<String> {
        let mut f: Vec<String> = outs
            .iter()
            .filter_map(|o| match o {
                Output::Alert(a)
                    if a.kind == AlertKind::DataDrift && a.status == AlertStatus::Firing =>
                {
                    a.feature.clone()
                }
                _ => None,
            })
            .collect();
        f.sort();
        f.dedup();
        f
    };
    loop {
        let f = fired(&outputs.lock().unwrap());
        if f == ["c1", "f2"] || started.elapsed() > Duration::from_secs(45) {
            break;
        }
        if service.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(30), service)
        .await
        .expect("run returns after shutdown")
        .expect("no panic");
    assert!(result.is_ok(), "run returned {result:?}");

    let outs = outputs.lock().unwrap();
    assert_eq!(fired(&outs), ["c1", "f2"], "outputs: {outs:#?}");
    for o in outs.iter() {
        if let Output::Alert(a) = o {
            if a.kind == AlertKind::DataDrift {
                let end = driftwatch::event::parse_rfc3339_ms(&a.window.end).unwrap();
                assert!(end > drift_start, "alert before the drift: {a:?}");
            }
        }
    }
    drop(cluster);
}
