//! Wiring of the long-running service: source → state → evaluation → policy → sinks.
//!
//! `run(config, shutdown)` reads top to bottom as the data flows. The consumer loop owns the
//! monitor (no locks on the hot path); webhooks are delivered by their own task behind a
//! bounded channel so a slow CI endpoint never stalls consumption.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::baseline::Profile;
use crate::config::Config;
use crate::http::{self, HttpState};
use crate::output::Output;
use crate::policy::{Clock, TriggerLedger};
use crate::sink::kafka::KafkaSink;
use crate::sink::snapshot::SnapshotWriter;
use crate::sink::webhook::WebhookSink;
use crate::source::kafka as source;
use crate::state::{Baselines, Monitor};
use crate::telemetry::Telemetry;

/// A callback that sees every output as it is published.
pub type OutputHook = Arc<dyn Fn(&Output) + Send + Sync>;

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
    tracing::info!(%bound, "http listening");
    if let Some(slot) = &observers.http_bound {
        *slot.lock().expect("not poisoned") = Some(bound);
    }

    // State: configured baselines, baselines bootstrapped before this start (state topic), and
    // the triggers already emitted (trigger topic).
    let mut baselines = Baselines::load(&cfg).context("loading baselines")?;
    let (ledger, restored) = tokio::task::spawn_blocking({
        let cfg = Arc::clone(&cfg);
        move || -> anyhow::Result<(TriggerLedger, Vec<Profile>)> {
            tracing::debug!("ensuring the state topic");
            ensure_state_topic(&cfg);
            tracing::debug!("reading the trigger topic");
            let mut ledger = TriggerLedger::default();
            read_topic_to_end(&cfg, &cfg.topics.retrain, |_, v| {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(v) {
                    ledger.record_json(&v);
                }
            })?;
            tracing::debug!("reading the state topic");
            let prefix = format!("baseline/{}/", cfg.kafka.group_id);
            let mut profiles: std::collections::BTreeMap<String, Profile> = Default::default();
            read_topic_to_end(&cfg, &cfg.topics.state, |k, v| {
                let Some(key) = k.and_then(|k| std::str::from_utf8(k).ok()) else {
                    return;
                };
                if !key.starts_with(&prefix) {
                    return;
                }
                match serde_json::from_slice::<Profile>(v) {
                    Ok(p) => {
                        profiles.insert(key.to_string(), p);
                    }
                    Err(e) => {
                        tracing::warn!(key, error = %e, "unreadable baseline on the state topic")
                    }
                }
            })?;
            Ok((ledger, profiles.into_values().collect()))
        }
    })
    .await??;
    for p in restored {
        let version = p.model_version.clone();
        if !baselines.contains(&p.model_id, version.as_deref()) {
            tracing::info!(profile = %p.id, "baseline restored from the state topic");
            let model = p.model_id.clone();
            baselines.insert(&model, version.as_deref(), p);
        }
    }
    tracing::info!(triggers = ledger.len(), "trigger ledger restored");
    let monitor = Monitor::new(Arc::clone(&cfg), baselines, Clock::Wall)
        .with_telemetry(telemetry.clone())
        .with_ledger(ledger)
        .with_snapshots(SnapshotWriter::new(&cfg.triggers.snapshot_dir));

    // Sinks: Kafka topics, and webhooks through a bounded channel.
    let sink = KafkaSink::new(&cfg, telemetry.clone())?;
    let webhook_tx = spawn_webhooks(&cfg, shutdown.clone())?;

    // Source.
    let consumer = source::consumer(&cfg, Arc::clone(&shared), telemetry.clone())?;
    if cfg.kafka.check_copartitioning {
        source::check_copartitioning(&consumer, &cfg)?;
    }
    let ready_flag = Arc::clone(&ready);
    let shared_for_ready = Arc::clone(&shared);
    let ready_task = tokio::spawn({
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
    let on_output = observers.on_output.clone();
    let result = source::run(
        Arc::clone(&cfg),
        consumer,
        monitor,
        sink,
        shared,
        telemetry,
        shutdown.clone(),
        move |o| {
            if !matches!(o, Output::DeadLetter(_)) {
                http_state.remember(o.to_json());
                if let Some(tx) = &webhook_tx {
                    if tx.try_send(o.to_json()).is_err() {
                        tracing::error!("webhook queue full; output not sent to webhooks");
                    }
                }
            }
            if let Some(f) = &on_output {
                f(o);
            }
        },
    )
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(cfg.kafka.drain_timeout, http_task).await;
    let _ = ready_task.await;
    result.map_err(Into::into)
}

/// Starts one delivery task for all configured webhooks; `None` when there are none.
fn spawn_webhooks(
    cfg: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<mpsc::Sender<serde_json::Value>>> {
    if cfg.sinks.webhook.is_empty() {
        return Ok(None);
    }
    let sinks = cfg
        .sinks
        .webhook
        .iter()
        .map(|w| WebhookSink::new(w.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let (tx, mut rx) = mpsc::channel::<serde_json::Value>(10_000);
    tokio::spawn(async move {
        loop {
            let v = tokio::select! {
                v = rx.recv() => v,
                _ = shutdown.cancelled() => {
                    // Deliver what is queued before stopping.
                    rx.close();
                    rx.recv().await
                }
            };
            let Some(v) = v else { break };
            for s in &sinks {
                if let Err(e) = s.deliver(&v).await {
                    tracing::error!(error = %e, "webhook delivery failed");
                }
            }
        }
    });
    Ok(Some(tx))
}

/// Creates the compacted state topic if it does not exist (best effort: without it, baselines
/// are bootstrapped again after a restart).
fn ensure_state_topic(cfg: &Config) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    // Nothing to do when it exists (the common case, and the only one on brokers that do not
    // serve admin requests, such as librdkafka's mock cluster).
    let consumer_config: ClientConfig = cfg.kafka_consumer_properties().into_iter().collect();
    if let Ok(consumer) = consumer_config.create::<BaseConsumer>() {
        if let Ok(md) = consumer.fetch_metadata(Some(&cfg.topics.state), Duration::from_secs(5)) {
            if md
                .topics()
                .iter()
                .any(|t| t.error().is_none() && !t.partitions().is_empty())
            {
                return;
            }
        }
    }
    // librdkafka's admin client is a producer handle.
    let admin_config: ClientConfig = cfg.kafka_producer_properties().into_iter().collect();
    let Ok(admin) = admin_config.create::<AdminClient<DefaultClientContext>>() else {
        return;
    };
    // Baselines are large documents: allow messages up to the producer's limit.
    let topic = NewTopic::new(&cfg.topics.state, 1, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact")
        .set("max.message.bytes", "33554432");
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let fut = admin.create_topics([&topic], &opts);
    match futures::executor::block_on(fut) {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(t) => tracing::info!(topic = %t, "created the state topic"),
                    Err((t, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                        tracing::debug!(topic = %t, "state topic exists")
                    }
                    Err((t, e)) => {
                        tracing::warn!(topic = %t, error = %e, "cannot create the state topic")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot create the state topic"),
    }
}

/// Reads `topic` from the beginning to its current end, calling `f(key, payload)` per message.
/// A topic that does not exist yet reads as empty.
pub fn read_topic_to_end(
    cfg: &Config,
    topic: &str,
    mut f: impl FnMut(Option<&[u8]>, &[u8]),
) -> anyhow::Result<()> {
    let mut cc: ClientConfig = cfg.kafka_consumer_properties().into_iter().collect();
    cc.set("group.id", format!("{}-restore", cfg.kafka.group_id))
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = cc.create().context("restore consumer")?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("fetching metadata of {topic}"))?;
    let mut tpl = TopicPartitionList::new();
    // Partition → offset of its last message at start-up; read until each is reached.
    let mut ends: std::collections::HashMap<i32, i64> = Default::default();
    for t in md.topics() {
        if t.error().is_some() {
            continue;
        }
        for p in t.partitions() {
            let (lo, hi) = consumer
                .fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))
                .with_context(|| format!("fetching watermarks of {topic}"))?;
            if hi > lo {
                tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)?;
                ends.insert(p.id(), hi - 1);
            }
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                f(m.key(), m.payload().unwrap_or_default());
                if ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() >= *end)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => return Err(e).with_context(|| format!("reading {topic}")),
            None => {}
        }
    }
    let remaining = ends.len();
    if remaining > 0 {
        anyhow::bail!("timed out reading {topic} back");
    }
    Ok(())
}
