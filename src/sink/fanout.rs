//! One way out for every output, in the live service and in replay alike.
//!
//! A [`Fanout`] hands each output first to its gating sink, then to the best-effort ones:
//!
//! - The **gating** sink ([`GatingSink`]) is the one input offsets wait for: the Kafka producer
//!   in the live service (the source flushes it before it stores an offset, see
//!   `source::kafka`), the JSON Lines writer in replay. An error there is the caller's.
//! - **Best-effort** sinks never hold the consumer back: CI webhooks behind bounded queues
//!   ([`WebhookQueue`]), and hooks (the HTTP API's recent outputs, the demo's printer, tests).
//!   "Best effort" still means nothing is dropped silently: an output that finds its webhook
//!   queue full goes straight to that webhook's dead-letter file (counted as `queue_full`), and
//!   the delivery tasks run in a [`TaskTracker`] that shutdown waits for: what is still queued
//!   when the drain timeout runs out is written to the dead-letter file too (counted as
//!   `unsent_at_shutdown`).
//!
//! Dead letters (input records that could not be used) go to the gating sink and the hooks;
//! webhooks are for alerts, triggers and verdicts.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::output::Output;
use crate::sink::kafka::KafkaSink;
use crate::sink::snapshot::SnapshotWriter;
use crate::sink::webhook::{Undelivered, WebhookSink};
use crate::sink::JsonLinesSink;

/// A callback that sees every output as it is published.
pub type OutputHook = Arc<dyn Fn(&Output) + Send + Sync>;

/// The sink whose outputs must be durable before the offsets of the events behind them are
/// stored.
pub trait GatingSink {
    /// What a failed send reports.
    type Error;
    /// Publishes one output (or enqueues it, when the sink has its own flush).
    fn send(&mut self, o: &Output) -> Result<(), Self::Error>;
}

impl GatingSink for KafkaSink {
    /// Enqueueing waits while librdkafka's queue is full; other failures are counted and
    /// reported by the next [`KafkaSink::flush`], before which no offset is stored.
    type Error = Infallible;

    fn send(&mut self, o: &Output) -> Result<(), Infallible> {
        KafkaSink::send(self, o);
        Ok(())
    }
}

impl<W: Write, D: Write> GatingSink for JsonLinesSink<W, D> {
    type Error = std::io::Error;

    fn send(&mut self, o: &Output) -> std::io::Result<()> {
        self.write(o)
    }
}

/// Every output to the gating sink, then to the best-effort sinks.
pub struct Fanout<G> {
    gating: G,
    webhooks: Vec<WebhookQueue>,
    hooks: Vec<OutputHook>,
    /// Triggers wait for the snapshots they name to be written.
    snapshots: Option<SnapshotWriter>,
}

impl<G: GatingSink> Fanout<G> {
    /// A fan-out to `gating` alone.
    pub fn new(gating: G) -> Self {
        Self {
            gating,
            webhooks: Vec::new(),
            hooks: Vec::new(),
            snapshots: None,
        }
    }

    /// Adds a webhook behind its queue.
    pub fn with_webhook(mut self, queue: WebhookQueue) -> Self {
        self.webhooks.push(queue);
        self
    }

    /// Publishes a trigger only once the snapshots handed to `writer` are written: the file a
    /// trigger names is there when a consumer reads the trigger. The writes run on the
    /// writer's thread meanwhile; the source publishes a batch's outputs at its end, so the
    /// consumer loop waits only for what is left of a write by then.
    pub fn with_snapshots(mut self, writer: SnapshotWriter) -> Self {
        self.snapshots = Some(writer);
        self
    }

    /// Adds a hook called with every output (dead letters included).
    pub fn with_hook(mut self, hook: OutputHook) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Publishes one output: to the gating sink (its error returned before any best-effort
    /// sink sees the output), then to every webhook queue and hook.
    pub fn publish(&mut self, o: &Output) -> Result<(), G::Error> {
        if let (Some(writer), Output::Trigger(_)) = (&self.snapshots, o) {
            writer.wait_written();
        }
        self.gating.send(o)?;
        if !matches!(o, Output::DeadLetter(_)) {
            for w in &self.webhooks {
                w.offer(o);
            }
        }
        for h in &self.hooks {
            h(o);
        }
        Ok(())
    }

    /// The gating sink.
    pub fn gating_mut(&mut self) -> &mut G {
        &mut self.gating
    }
}

impl Fanout<KafkaSink> {
    /// [`Fanout::publish`] for the Kafka sink, which cannot fail at enqueue time.
    pub fn publish_live(&mut self, o: &Output) {
        match self.publish(o) {
            Ok(()) => {}
            Err(never) => match never {},
        }
    }
}

/// A webhook's bounded queue and the task that delivers from it, in order.
pub struct WebhookQueue {
    sink: Arc<WebhookSink>,
    tx: mpsc::Sender<Output>,
}

impl WebhookQueue {
    /// Starts the delivery task of `sink` on `tracker`. Once `give_up` is cancelled (the drain
    /// timeout ran out), the output in flight and every queued one are written to the
    /// dead-letter file instead. The task ends when every [`WebhookQueue`] handle is dropped
    /// and the queue is empty.
    pub fn spawn(
        sink: Arc<WebhookSink>,
        tracker: &TaskTracker,
        give_up: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(sink.config().queue_capacity.max(1));
        tracker.spawn(deliver_queued(Arc::clone(&sink), rx, give_up));
        Self { sink, tx }
    }

    /// Queues one output without waiting: a full (or closed) queue sends it to the dead-letter
    /// file at once.
    pub fn offer(&self, o: &Output) {
        if !self.sink.accepts(o.output_type()) {
            self.sink.count_skipped();
            return;
        }
        let (o, why) = match self.tx.try_send(o.clone()) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(o)) => (o, Undelivered::QueueFull),
            Err(mpsc::error::TrySendError::Closed(o)) => (o, Undelivered::Shutdown),
        };
        give_up(&self.sink, &o, why);
    }
}

/// Writes `o` to the sink's dead-letter file; the sink logs and counts a failed write.
fn give_up(sink: &WebhookSink, o: &Output, why: Undelivered) {
    match sink.give_up(o, why) {
        Ok(()) => tracing::warn!(
            url = %sink.display_url(), id = %o.idempotency_key(), reason = ?why,
            "webhook output written to the dead-letter file"
        ),
        Err(e) => tracing::error!(error = %e, "webhook output lost"),
    }
}

async fn deliver_queued(
    sink: Arc<WebhookSink>,
    mut rx: mpsc::Receiver<Output>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            o = rx.recv() => o,
        };
        let Some(o) = next else { return };
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                // The receiver may have seen it already: consumers de-duplicate by the
                // idempotency key, as with any retry.
                give_up(&sink, &o, Undelivered::Shutdown);
                break;
            }
            // Failures are logged, counted and dead-lettered by the sink itself.
            _ = sink.deliver(&o) => {}
        }
    }
    rx.close();
    while let Some(o) = rx.recv().await {
        give_up(&sink, &o, Undelivered::Shutdown);
    }
}

/// Shutdown's wait: closes `tasks` and waits for them until `deadline`; then tells the webhook
/// tasks to write what they still hold to their dead-letter files (`give_up`), and waits for
/// that, bounded once more by `grace`.
pub async fn drain(
    tasks: TaskTracker,
    deadline: impl Future<Output = ()>,
    give_up: CancellationToken,
    grace: Duration,
) {
    tasks.close();
    tokio::select! {
        _ = tasks.wait() => return,
        _ = deadline => {}
    }
    tracing::warn!(
        "drain timeout reached; undelivered webhook outputs go to the dead-letter files"
    );
    give_up.cancel();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::error!(
            tasks = tasks.len(),
            "tasks still running after the drain timeout"
        );
    }
}
