//! The Kafka consumer-group source.
//!
//! At-least-once: `enable.auto.offset.store=false`, and the loop stores an offset only when the
//! monitor reports that every event before it is reflected in emitted outputs (its pane has left
//! the window) and the sink has flushed those outputs. librdkafka auto-commits stored offsets; the
//! loop also commits synchronously on partition revocation and at shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, InputFormat};
use crate::event::EventKind;
use crate::ingest::Ingest;
use crate::monitor::Monitor;
use crate::output::Output;
use crate::sink::fanout::Fanout;
use crate::sink::kafka::KafkaSink;
use crate::telemetry::Telemetry;

use super::batch::{process_batch, store_progress, MAX_BATCH};
use super::flow::Pacing;
use super::pacing::Tp;
use super::restore;

/// Errors that stop the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The consumer could not be created or subscribed.
    #[error("kafka consumer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The input topics have different partition counts.
    #[error("input topics are not co-partitioned: {0}")]
    NotCoPartitioned(String),
    /// The brokers did not answer at start-up; not retried further (see
    /// [`check_brokers`]).
    #[error("cannot use the Kafka brokers {brokers}: {cause}")]
    Unreachable {
        /// `kafka.brokers`.
        brokers: String,
        /// What went wrong, from librdkafka's own report: connection, TLS or SASL.
        cause: String,
    },
}

/// Records the first connection-level error librdkafka reports (connection refused, TLS
/// handshake, SASL authentication), which a metadata request only sees as a time-out.
#[derive(Default)]
struct FirstError(Mutex<Option<(rdkafka::types::RDKafkaErrorCode, String)>>);

impl FirstError {
    fn record(&self, code: rdkafka::types::RDKafkaErrorCode, reason: &str) {
        let mut first = self.0.lock().expect("not poisoned");
        // An authentication or TLS failure is the cause even when a disconnect came first.
        if first.is_none() || fatal_cause(code).is_some() {
            *first = Some((code, reason.to_string()));
        }
    }
}

impl ClientContext for FirstError {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        // librdkafka reports a failed TLS handshake only in its log, not as an error event.
        use rdkafka::config::RDKafkaLogLevel as L;
        if matches!(level, L::Emerg | L::Alert | L::Critical | L::Error)
            && message.contains("SSL handshake failed")
        {
            self.record(rdkafka::types::RDKafkaErrorCode::SSL, message);
        }
        rdkafka::client::DefaultClientContext.log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            self.record(code, reason);
        }
    }
}

impl ConsumerContext for FirstError {}

/// What a TLS or SASL failure is called; `None` for errors a retry may cure.
fn fatal_cause(code: rdkafka::types::RDKafkaErrorCode) -> Option<&'static str> {
    use rdkafka::types::RDKafkaErrorCode as C;
    match code {
        C::Authentication | C::SaslAuthenticationFailed => Some("SASL authentication failed"),
        C::SSL => Some("TLS handshake failed (is the broker's certificate trusted?)"),
        _ => None,
    }
}

/// Waits up to `kafka.connect_timeout` for the brokers to answer a metadata request (blocking),
/// with the consumers' properties (TLS, SASL). A TLS or SASL failure ends the wait at once; a
/// broker that cannot be reached ends it at the time-out. Either way the error names the cause
/// as librdkafka reported it — never a secret: librdkafka does not print passwords.
pub fn check_brokers(cfg: &Config) -> Result<(), SourceError> {
    let consumer: BaseConsumer<FirstError> = cfg
        .kafka_consumer_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .create_with_context(FirstError::default())?;
    let unreachable = |cause: String| SourceError::Unreachable {
        brokers: cfg.kafka.brokers.clone(),
        cause,
    };
    let deadline = std::time::Instant::now() + cfg.kafka.connect_timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let attempt = consumer.fetch_metadata(
            Some(&cfg.topics.predictions),
            left.min(Duration::from_millis(500)),
        );
        let err = match attempt {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // Error events are served by polling.
        let _ = consumer.poll(Duration::ZERO);
        let seen = consumer.context().0.lock().expect("not poisoned").clone();
        if let Some((code, reason)) = &seen {
            if let Some(what) = fatal_cause(*code) {
                return Err(unreachable(format!("{what}: {reason}")));
            }
        }
        if std::time::Instant::now() >= deadline {
            let cause = match seen {
                Some((_, reason)) => format!(
                    "no answer within kafka.connect_timeout ({}): {reason}",
                    humantime::format_duration(cfg.kafka.connect_timeout)
                ),
                None => format!(
                    "no answer within kafka.connect_timeout ({}): {err}",
                    humantime::format_duration(cfg.kafka.connect_timeout)
                ),
            };
            return Err(unreachable(cause));
        }
    }
}

/// A change of assignment, in the order the rebalance callbacks saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Revoked(Tp),
    Assigned(Tp),
}

/// Shared between the rebalance callbacks and the loop.
#[derive(Default)]
pub struct SourceShared {
    /// True while partitions are assigned (readiness).
    pub ready: AtomicBool,
    changes: Mutex<Vec<Change>>,
    rebalanced: AtomicBool,
}

impl SourceShared {
    fn push(&self, changes: impl IntoIterator<Item = Change>) {
        self.changes.lock().expect("not poisoned").extend(changes);
        self.rebalanced.store(true, Ordering::Release);
    }
}

/// Consumer context: commits stored offsets before partitions are taken away and exports lag.
pub struct SourceContext {
    shared: Arc<SourceShared>,
    telemetry: Telemetry,
    errors: Throttle,
    logs: Throttle,
}

/// Logs a repeated error once, then at most once per [`Throttle::EVERY`] with how many were
/// left out (a broker that is down makes librdkafka report the same failure ten times a
/// second).
#[derive(Default)]
struct Throttle {
    state: Mutex<Option<(std::time::Instant, u64)>>,
}

impl Throttle {
    const EVERY: Duration = Duration::from_secs(10);

    /// Whether to log now, and how many were left out since the last time.
    fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().expect("not poisoned");
        let now = std::time::Instant::now();
        match &mut *s {
            Some((last, skipped)) if now.duration_since(*last) < Self::EVERY => {
                *skipped += 1;
                None
            }
            Some((last, skipped)) => {
                let n = *skipped;
                *last = now;
                *skipped = 0;
                Some(n)
            }
            None => {
                *s = Some((now, 0));
                Some(0)
            }
        }
    }
}

impl ClientContext for SourceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                if let Some(skipped) = self.logs.allow() {
                    tracing::error!(target: "librdkafka", fac, skipped, "{message}");
                }
            }
            L::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{message}"),
            L::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if let Some(skipped) = self.errors.allow() {
            tracing::error!(error = %error, reason, skipped, "kafka client error");
        }
    }

    fn stats(&self, stats: Statistics) {
        for (topic, t) in stats.topics {
            for (p, part) in t.partitions {
                if p >= 0 && part.consumer_lag >= 0 {
                    self.telemetry
                        .consumer_lag
                        .with_label_values(&[&topic, &p.to_string()])
                        .set(part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Offsets already stored cover only events whose outputs were flushed.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                log_commit_error("commit on revoke", &e);
            }
            self.shared.push(
                tpl.elements()
                    .iter()
                    .map(|e| Change::Revoked((e.topic().to_string(), e.partition()))),
            );
            self.shared.ready.store(false, Ordering::Release);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "partitions assigned");
            self.shared.push(
                tpl.elements()
                    .iter()
                    .map(|e| Change::Assigned((e.topic().to_string(), e.partition()))),
            );
        }
        let n = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.telemetry.assigned_partitions.set(n as i64);
        self.shared.ready.store(n > 0, Ordering::Release);
    }
}

/// `NoOffset` only means nothing new was stored since the last (auto-)commit.
fn log_commit_error(what: &str, e: &rdkafka::error::KafkaError) {
    if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::NoOffset) {
        tracing::debug!("{what}: nothing new to commit");
    } else {
        tracing::warn!(error = %e, "{what} failed");
    }
}

/// Builds the consumer from configuration.
pub fn consumer(
    cfg: &Config,
    shared: Arc<SourceShared>,
    telemetry: Telemetry,
) -> Result<StreamConsumer<SourceContext>, SourceError> {
    let mut cc = ClientConfig::new();
    // Throughput defaults, before the configured properties so that those win. When the local
    // fetch queue is over its thresholds (`queued.min.messages`, 100,000 messages by default),
    // librdkafka waits `fetch.queue.backoff.ms` (1 s by default) before fetching again: a
    // consumer that drains the queue faster than that stalls for the rest of the second,
    // capping consumption near 100,000 messages/s whatever the processing speed.
    cc.set("fetch.queue.backoff.ms", "10");
    cc.extend(cfg.kafka_consumer_properties());
    cc.set("group.id", &cfg.kafka.group_id)
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", &cfg.kafka.auto_offset_reset)
        .set(
            "session.timeout.ms",
            cfg.kafka.session_timeout.as_millis().to_string(),
        )
        .set("statistics.interval.ms", "5000")
        // The range assignor gives partition p of every co-partitioned input topic to the same
        // instance, which the label and feature joins rely on; sticky assignors do not.
        .set("partition.assignment.strategy", "range");
    let c: StreamConsumer<SourceContext> = cc.create_with_context(SourceContext {
        shared,
        telemetry,
        errors: Throttle::default(),
        logs: Throttle::default(),
    })?;
    Ok(c)
}

/// Fails unless the input topics that exist have the same partition count (blocking: asks the
/// broker for their metadata with a client of its own).
pub fn check_copartitioning(cfg: &Config) -> Result<(), SourceError> {
    let consumer: BaseConsumer = cfg
        .kafka_consumer_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .create()?;
    let mut counts = BTreeMap::new();
    for topic in [
        &cfg.topics.predictions,
        &cfg.topics.features,
        &cfg.topics.labels,
    ] {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for t in md.topics() {
            if t.error().is_none() && !t.partitions().is_empty() {
                counts.insert(t.name().to_string(), t.partitions().len());
            }
        }
    }
    let distinct: std::collections::BTreeSet<_> = counts.values().collect();
    if distinct.len() > 1 {
        let desc = counts
            .iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SourceError::NotCoPartitioned(desc));
    }
    Ok(())
}

pub(super) fn kind_of(cfg: &Config, topic: &str) -> Option<EventKind> {
    if cfg.input.format != InputFormat::Driftwatch {
        // Other formats' messages become predictions, on whatever topic they come.
        Some(EventKind::Prediction)
    } else if topic == cfg.topics.predictions {
        Some(EventKind::Prediction)
    } else if topic == cfg.topics.labels {
        Some(EventKind::Label)
    } else if topic == cfg.topics.features {
        Some(EventKind::Features)
    } else {
        None
    }
}

/// Consumes until `shutdown`, feeding the monitor and publishing its outputs, then drains:
/// flushes outputs and commits within `kafka.drain_timeout`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cfg: Arc<Config>,
    consumer: StreamConsumer<SourceContext>,
    mut monitor: Monitor,
    sink: KafkaSink,
    shared: Arc<SourceShared>,
    telemetry: Telemetry,
    shutdown: CancellationToken,
    mut outputs_to: Fanout<KafkaSink>,
) -> Result<(), SourceError> {
    let topics: Vec<&str> = match cfg.input.format {
        InputFormat::Driftwatch => vec![
            cfg.topics.predictions.as_str(),
            cfg.topics.features.as_str(),
            cfg.topics.labels.as_str(),
        ],
        // Names starting with `^` are patterns: librdkafka subscribes to every topic matching.
        _ => cfg.input.topics.iter().map(String::as_str).collect(),
    };
    consumer.subscribe(&topics)?;
    let mut ingest = Ingest::new(&cfg);
    let mut outputs: Vec<Output> = Vec::with_capacity(64);
    let mut stream = consumer.stream();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stored: BTreeMap<Tp, i64> = BTreeMap::new();
    let mut pacing = Pacing::default();
    let consumer_errors = Throttle::default();
    let mut consumed: u64 = 0;
    let max_ahead_ms = cfg.kafka.max_time_ahead.as_millis() as i64;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if shared.rebalanced.swap(false, Ordering::AcqRel) {
                    rebalance(&cfg, &consumer, &shared, &mut monitor, &mut ingest, &mut pacing, &mut stored, &shutdown, &mut outputs)
                        .await;
                }
                pacing.idle(&consumer, &mut monitor, cfg.kafka.idle_after, &mut outputs);
                pacing.pace(&consumer, &monitor, max_ahead_ms, &telemetry);
                monitor.advance(&mut outputs);
                outputs.drain(..).for_each(|o| outputs_to.publish_live(&o));
                store_progress(&cfg, &consumer, &mut monitor, &sink, &mut stored);
                monitor.flush_telemetry(&telemetry);
            }
            msg = stream.next() => {
                let Some(msg) = msg else { break };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        if let Some(skipped) = consumer_errors.allow() {
                            tracing::warn!(error = %e, skipped, "consumer error");
                        }
                        continue;
                    }
                };
                // Take what else is ready now, up to a batch, so that a second thread can
                // decode it while this one processes it. A rebalance may happen inside any
                // poll: the batch then ends before the first message polled after it, which is
                // handled on its own once the assignment change is applied, in the same order
                // as handling messages one at a time.
                let mut batch = vec![msg];
                let mut after_rebalance = None;
                let mut ended = false;
                while batch.len() < MAX_BATCH {
                    match stream.next().now_or_never() {
                        Some(Some(Ok(m))) => {
                            if shared.rebalanced.load(Ordering::Acquire) {
                                after_rebalance = Some(m);
                                break;
                            }
                            batch.push(m);
                        }
                        Some(Some(Err(e))) => {
                            if let Some(skipped) = consumer_errors.allow() {
                                tracing::warn!(error = %e, skipped, "consumer error");
                            }
                        }
                        Some(None) => {
                            ended = true;
                            break;
                        }
                        None => break,
                    }
                }
                for batch in [batch, after_rebalance.into_iter().collect()] {
                    if batch.is_empty() {
                        continue;
                    }
                    if shared.rebalanced.swap(false, Ordering::AcqRel) {
                        rebalance(&cfg, &consumer, &shared, &mut monitor, &mut ingest, &mut pacing, &mut stored, &shutdown, &mut outputs)
                            .await;
                        outputs.drain(..).for_each(|o| outputs_to.publish_live(&o));
                    }
                    pacing.wake(&consumer, &mut monitor);
                    consumed += batch.len() as u64;
                    process_batch(&cfg, &batch, &mut ingest, &mut monitor, &mut outputs, &mut |o| {
                        outputs_to.publish_live(o);
                    });
                    pacing.pace(&consumer, &monitor, max_ahead_ms, &telemetry);
                }
                if ended {
                    break;
                }
            }
        }
    }
    // Drain: outputs flushed, then the offsets they cover committed.
    tracing::info!("draining");
    store_progress(&cfg, &consumer, &mut monitor, &sink, &mut stored);
    monitor.flush_telemetry(&telemetry);
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        log_commit_error("final commit", &e);
    }
    let committed: Vec<String> = stored
        .iter()
        .map(|((t, p), o)| format!("{t}/{p}@{o}"))
        .collect();
    tracing::info!(
        consumed,
        committed = %committed.join(","),
        "source stopped"
    );
    Ok(())
}

/// Applies an assignment change before any message polled after it: revoked inputs are
/// dropped; assigned ones are announced to the monitor (they hold the watermarks until they
/// deliver or turn out idle), their start positions looked up, and what earlier owners made
/// durable — baselines, emitted triggers — read back. Inputs assigned with nothing to fetch
/// are idle at once (what that lets close goes to `out`).
#[allow(clippy::too_many_arguments)]
async fn rebalance(
    cfg: &Arc<Config>,
    consumer: &StreamConsumer<SourceContext>,
    shared: &SourceShared,
    monitor: &mut Monitor,
    ingest: &mut Ingest,
    pacing: &mut Pacing,
    stored: &mut BTreeMap<Tp, i64>,
    shutdown: &CancellationToken,
    out: &mut Vec<Output>,
) {
    let changes = std::mem::take(&mut *shared.changes.lock().expect("not poisoned"));
    let mut assigned = Vec::new();
    for change in changes {
        match change {
            Change::Revoked(tp) => {
                monitor.drop_input(&tp.0, tp.1);
                ingest.drop_input(&tp.0, tp.1);
                pacing.revoked(&tp);
                stored.remove(&tp);
                assigned.retain(|a| *a != tp);
            }
            Change::Assigned(tp) => assigned.push(tp),
        }
    }
    if assigned.is_empty() {
        return;
    }
    // librdkafka keeps a partition's pause across a rebalance that gives it back: start every
    // assigned input unpaused, as the pacing state does.
    let mut tpl = TopicPartitionList::new();
    for tp in &assigned {
        if let Some(kind) = kind_of(cfg, &tp.0) {
            monitor.expect_input(&tp.0, tp.1, kind);
        }
        tpl.add_partition(&tp.0, tp.1);
    }
    if let Err(e) = consumer.resume(&tpl) {
        tracing::warn!(error = %e, "resuming the assigned partitions failed");
    }
    let starts = start_offsets(cfg, consumer, &assigned);
    let mut empty = Vec::new();
    for (tp, start, high) in starts {
        if high.is_some_and(|h| start >= h) {
            empty.push(tp.clone());
        }
        pacing.positions.assigned(tp, start);
    }
    let read = tokio::task::spawn_blocking({
        let cfg = Arc::clone(cfg);
        move || restore::read(&cfg)
    });
    let restored = tokio::select! {
        r = read => r,
        // Stopping: nothing will be processed that needed it.
        _ = shutdown.cancelled() => return,
    };
    match restored {
        Ok(Ok(r)) => {
            let triggers = r.ledger.len();
            monitor.extend_ledger(r.ledger);
            let mut added = 0;
            for b in r.baselines {
                let id = b.profile.id.clone();
                if monitor.add_baseline(b.profile, b.window_starts_ms) {
                    tracing::info!(profile = %id, "baseline restored from the state topic");
                    added += 1;
                }
            }
            let published = r.emitted.len();
            monitor.extend_emitted(r.emitted);
            let checkpoints = r.checkpoints.len();
            for c in r.checkpoints {
                monitor.add_checkpoint(c);
            }
            tracing::info!(
                triggers,
                baselines = added,
                checkpoints,
                published,
                "state of the assigned partitions restored"
            );
        }
        Ok(Err(e)) => tracing::error!(error = %e, "cannot read the state and trigger topics back"),
        Err(e) => tracing::error!(error = %e, "reading the state and trigger topics back failed"),
    }
    // After the state is back: being idle lets windows close. A partition that receives data
    // later is woken before its first batch.
    for (topic, partition) in empty {
        tracing::debug!(%topic, partition, "input assigned with nothing to fetch");
        monitor.set_idle(&topic, partition, true, out);
    }
}

/// Where each assigned input starts — its committed offset, or where `auto.offset.reset` puts
/// a partition without one — and its high watermark when the broker told it.
fn start_offsets(
    cfg: &Config,
    consumer: &StreamConsumer<SourceContext>,
    assigned: &[Tp],
) -> Vec<(Tp, i64, Option<i64>)> {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in assigned {
        tpl.add_partition(t, *p);
    }
    let committed = match consumer.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read committed offsets");
            return Vec::new();
        }
    };
    let mut starts = Vec::new();
    for e in committed.elements() {
        let tp = (e.topic().to_string(), e.partition());
        let marks = consumer.fetch_watermarks(&tp.0, tp.1, Duration::from_secs(5));
        if let Err(e) = &marks {
            tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "no watermarks");
        }
        let marks = marks.ok();
        let start = match (e.offset(), marks) {
            (Offset::Offset(o), _) => o,
            (_, Some((lo, hi))) if cfg.kafka.auto_offset_reset == "latest" => hi.max(lo),
            (_, Some((lo, _))) => lo,
            (_, None) => continue,
        };
        starts.push((tp, start, marks.map(|(_, hi)| hi)));
    }
    starts
}
