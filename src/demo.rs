//! `driftwatch demo`: librdkafka's in-process mock cluster, synthetic traffic with drift
//! injected part-way and delayed labels, and the monitor, with every alert, trigger and verdict
//! printed as one JSON line on stdout as it fires.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use crate::app::{self, Observers};
use crate::config::Config;
use crate::generate::{Generator, GeneratorConfig};
use crate::output::Output;

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How long to run.
    pub duration: Duration,
    /// HTTP address for /metrics.
    pub http_addr: std::net::SocketAddr,
}

/// The demo's configuration: one-minute windows sliding every ten seconds of event time.
pub fn demo_config(brokers: String, http_addr: std::net::SocketAddr) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.brokers = brokers;
    cfg.kafka.group_id = "driftwatch-demo".into();
    cfg.window.length = Duration::from_secs(60);
    cfg.window.slide = Duration::from_secs(10);
    cfg.window.allowed_lateness = Duration::from_secs(5);
    cfg.baseline.bootstrap_events = 5000;
    cfg.http.addr = http_addr;
    cfg.triggers.snapshot_dir = std::env::temp_dir().join("driftwatch-demo-snapshots");
    cfg
}

/// Runs the demo.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let cluster = MockCluster::new(1)?;
    let cfg = demo_config(cluster.bootstrap_servers(), opts.http_addr);
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
        cluster.create_topic(t, 1, 1)?;
    }
    eprintln!(
        "driftwatch demo: mock Kafka at {}, metrics on http://{}/metrics, running {}",
        cluster.bootstrap_servers(),
        opts.http_addr,
        humantime::format_duration(opts.duration)
    );
    let shutdown = CancellationToken::new();
    // Traffic: 500 predictions per second of event time (10 minutes); drift from event 150,000
    // on (event time 300 s) in f1, f3 and c0; half the predictions get a label 30 s later, and
    // after the drift 30 % of labels contradict the model (concept drift).
    let events = 300_000u64;
    let gen_cfg = GeneratorConfig {
        events,
        rate: 500.0,
        numeric_features: 8,
        categorical_features: 2,
        drift_at: Some(150_000),
        drift_features: vec!["f1".into(), "f3".into(), "c0".into()],
        drift_magnitude: 1.0,
        label_share: 0.5,
        label_delay_ms: 30_000,
        concept_flip: 0.3,
        ..Default::default()
    };
    let producer_cfg = cfg.clone();
    let pace = opts.duration.mul_f64(0.5);
    let stop = shutdown.clone();
    let http_addr = opts.http_addr;
    let producer = std::thread::spawn(move || {
        // The mock cluster keeps only a few MB per partition: produce once the monitor has its
        // partitions, at a pace it keeps up with.
        wait_ready(http_addr, Duration::from_secs(30), &stop);
        crate::generate::produce_to_kafka(
            Generator::new(gen_cfg),
            &producer_cfg.kafka.brokers,
            &producer_cfg.topics.predictions,
            &producer_cfg.topics.labels,
            Some(pace),
            Some(&stop),
        )
    });
    let timer = {
        let s = shutdown.clone();
        let d = opts.duration;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(d) => s.cancel(),
                _ = s.cancelled() => {}
            }
        })
    };
    let ctrl_c = {
        let s = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                s.cancel();
            }
        })
    };
    let print: Arc<dyn Fn(&Output) + Send + Sync> = Arc::new(|o: &Output| {
        if matches!(o, Output::DeadLetter(_)) {
            return;
        }
        let line = serde_json::to_string(&o.to_json()).expect("outputs serialize");
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    });
    let result = app::run(
        cfg,
        shutdown.clone(),
        Observers {
            on_output: Some(print),
            http_bound: None,
        },
    )
    .await;
    shutdown.cancel();
    timer.abort();
    ctrl_c.abort();
    let produced = producer
        .join()
        .map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    eprintln!("driftwatch demo: produced {produced} events; done");
    drop(cluster);
    result
}

/// Polls `/readyz` until it answers 200, the deadline passes, or `stop` is cancelled.
fn wait_ready(addr: std::net::SocketAddr, timeout: Duration, stop: &CancellationToken) {
    use std::io::Read;
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline && !stop.is_cancelled() {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = s.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let mut buf = [0u8; 16];
            if s.read(&mut buf)
                .is_ok_and(|n| n >= 12 && &buf[9..12] == b"200")
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
