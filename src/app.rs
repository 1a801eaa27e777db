//! Wiring of the long-running service: source → state → evaluation → policy → sinks.
//!
//! `run(config, shutdown)` reads top to bottom as the data flows. The consumer loop owns the
//! monitor (no locks on the hot path) and publishes through one fan-out (`sink::fanout`):
//! Kafka gates offset commits; webhooks are delivered by their own tasks behind bounded queues
//! so a slow CI endpoint never stalls consumption. Every task runs in one `TaskTracker`, which
//! shutdown waits for within `kafka.drain_timeout`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::http::{self, HttpState};
use crate::monitor::Monitor;
use crate::output::Output;
use crate::policy::Clock;
use crate::sink::fanout::{self, Fanout, WebhookQueue};
use crate::sink::kafka::KafkaSink;
use crate::sink::snapshot::SnapshotWriter;
use crate::sink::webhook::WebhookSink;
use crate::source::kafka as source;
use crate::source::restore;
use crate::state::Baselines;
use crate::telemetry::Telemetry;

pub use crate::sink::fanout::OutputHook;

/// Handles the caller may want to observe (tests, the demo).
#[derive(Clone, Default)]
pub struct Observers {
    /// Called with every output as it is published.
    pub on_output: Option<OutputHook>,
    /// Receives the bound HTTP address.
    pub http_bound: Option<Arc<std::sync::Mutex<Option<std::net::SocketAddr>>>>,
}

/// Runs the service until `shutdown` is cancelled, then drains.
pub async fn run(
    cfg: Config,
    shutdown: CancellationToken,
    observers: Observers,
) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let telemetry = Telemetry::new();
    let shared = Arc::new(source::SourceShared::default());
    let tasks = TaskTracker::new();

    // HTTP first, so /healthz answers while Kafka connects.
    let ready = Arc::new(AtomicBool::new(false));
    let http_state = HttpState {
        telemetry: telemetry.clone(),
        ready: Arc::clone(&ready),
        recent: Default::default(),
    };
    let (bound, http_task) = http::serve(&cfg.http, http_state.clone(), shutdown.clone())
        .await
        .with_context(|| format!("cannot listen on {}", cfg.http.addr))?;
    tracing::info!(%bound, https = cfg.http.tls_cert.is_some(), "http listening");
    if let Some(slot) = &observers.http_bound {
        *slot.lock().expect("not poisoned") = Some(bound);
    }

    // State: configured baselines here; baselines bootstrapped and triggers emitted by earlier
    // owners of the partitions are read back from the state and trigger topics whenever
    // partitions are assigned (source::restore).
    let baselines = Baselines::load(&cfg).context("loading baselines")?;
    // Start-up waits on the broker (metadata, topic creation): a shutdown meanwhile stops it at
    // once instead of after the request timeouts. First the brokers must answer at all: a
    // wrong password or an untrusted certificate ends start-up with its cause, not in retries.
    let Some(reachable) = start_up_step(&cfg, &shutdown, source::check_brokers).await? else {
        return Ok(());
    };
    reachable?;
    if start_up_step(&cfg, &shutdown, restore::ensure_state_topic)
        .await?
        .is_none()
    {
        return Ok(());
    }
    let snapshots = SnapshotWriter::from_config(&cfg)?;
    crate::sink::metrics::export_snapshot_writes(&telemetry, snapshots.write_counts());
    if let Some(counts) = snapshots.upload_counts() {
        crate::sink::metrics::export_uploads(&telemetry, counts);
    }
    let monitor = Monitor::new(Arc::clone(&cfg), baselines, Clock::Wall)
        .with_telemetry(telemetry.clone())
        .with_snapshots(snapshots.clone());

    // Sinks: Kafka topics gate offset commits; webhooks, the HTTP API's recent outputs and the
    // caller's hook are best effort.
    let sink = KafkaSink::new(&cfg, telemetry.clone())?;
    let give_up = CancellationToken::new();
    let mut outputs = Fanout::new(sink.clone()).with_snapshots(snapshots.clone());
    for queue in spawn_webhooks(&cfg, &telemetry, &tasks, give_up.clone())? {
        outputs = outputs.with_webhook(queue);
    }
    outputs = outputs.with_hook(Arc::new(move |o: &Output| {
        if !matches!(o, Output::DeadLetter(_)) {
            http_state.remember(o.to_json());
        }
    }));
    if let Some(hook) = observers.on_output.clone() {
        outputs = outputs.with_hook(hook);
    }

    // Source.
    let consumer = source::consumer(&cfg, Arc::clone(&shared), telemetry.clone())?;
    // Other formats join nothing across the three v1 topics.
    if cfg.kafka.check_copartitioning && cfg.input.format == crate::config::InputFormat::Driftwatch
    {
        match start_up_step(&cfg, &shutdown, source::check_copartitioning).await? {
            Some(check) => check?,
            None => return Ok(()),
        }
    }
    let ready_flag = Arc::clone(&ready);
    let shared_for_ready = Arc::clone(&shared);
    tasks.spawn({
        let shutdown = shutdown.clone();
        async move {
            loop {
                let r = shared_for_ready
                    .ready
                    .load(std::sync::atomic::Ordering::Acquire);
                ready_flag.store(r, std::sync::atomic::Ordering::Release);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    });
    tasks.spawn(async move {
        let _ = http_task.await;
    });
    // The drain timeout counts from the shutdown signal; webhook deliveries go on while the
    // source drains.
    let deadline = tokio::spawn({
        let (shutdown, timeout) = (shutdown.clone(), cfg.kafka.drain_timeout);
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(timeout).await;
        }
    });
    let result = source::run(
        Arc::clone(&cfg),
        consumer,
        monitor,
        sink,
        shared,
        telemetry,
        shutdown.clone(),
        outputs,
    )
    .await;
    shutdown.cancel();
    let stop_timer = deadline.abort_handle();
    let deadline = async move {
        let _ = deadline.await;
    };
    fanout::drain(tasks, deadline, give_up, cfg.kafka.drain_timeout).await;
    stop_timer.abort();
    // Snapshot copies to object storage still queued, within the drain budget.
    let uploads = tokio::task::spawn_blocking(move || snapshots.finish());
    if tokio::time::timeout(cfg.kafka.drain_timeout, uploads)
        .await
        .is_err()
    {
        tracing::warn!("snapshot uploads still queued at exit; the snapshots stay local");
    }
    result.map_err(Into::into)
}

/// Starts one delivery task per configured webhook, and exports their counters.
/// Runs a blocking start-up step that waits on the broker; `None` when a shutdown came first
/// (it is not waited for: the runtime abandons it).
async fn start_up_step<T: Send + 'static>(
    cfg: &Arc<Config>,
    shutdown: &CancellationToken,
    step: fn(&Config) -> T,
) -> anyhow::Result<Option<T>> {
    let cfg = Arc::clone(cfg);
    let task = tokio::task::spawn_blocking(move || step(&cfg));
    tokio::select! {
        r = task => Ok(Some(r?)),
        _ = shutdown.cancelled() => {
            tracing::info!("shutdown during start-up");
            Ok(None)
        }
    }
}

fn spawn_webhooks(
    cfg: &Config,
    telemetry: &Telemetry,
    tasks: &TaskTracker,
    give_up: CancellationToken,
) -> anyhow::Result<Vec<WebhookQueue>> {
    let sinks = cfg
        .sinks
        .webhook
        .iter()
        .map(|w| WebhookSink::new(w.clone()).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    crate::sink::metrics::export_webhooks(telemetry, sinks.clone());
    Ok(sinks
        .into_iter()
        .map(|s| WebhookQueue::spawn(s, tasks, give_up.clone()))
        .collect())
}
