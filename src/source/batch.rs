//! Taking messages in: batches decoded on a second thread, and offsets stored once the outputs
//! of the events before them are acknowledged.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::event::decode;
use crate::ingest::Ingest;
use crate::monitor::Monitor;
use crate::output::Output;
use crate::sink::kafka::KafkaSink;
use crate::state::Input;

use super::kafka::{kind_of, SourceContext};
use super::pacing::Tp;

/// Messages taken from the consumer at a time when they are ready.
pub(super) const MAX_BATCH: usize = 1024;

/// Batches at least this long are decoded on a second thread.
const PARALLEL_MIN: usize = 128;

/// Messages decoded and handed over at a time.
const DECODE_BATCH: usize = 64;

/// Processes messages in order, then emits their outputs in order (a trigger's snapshot is
/// written on the snapshot thread meanwhile). A long batch is decoded on a scoped second
/// thread, a few messages ahead of the monitor; the monitor sees the same events in the same
/// order either way.
pub(super) fn process_batch<M: Message>(
    cfg: &Config,
    messages: &[M],
    ingest: &mut Ingest,
    monitor: &mut Monitor,
    outputs: &mut Vec<Output>,
    emit: &mut impl FnMut(&Output),
) {
    if !matches!(ingest, Ingest::Driftwatch) {
        // Formats that read headers and keys; v1 messages below never collect their headers.
        let mut headers: Vec<(&str, &[u8])> = Vec::new();
        for m in messages {
            headers.clear();
            if let Some(h) = m.headers() {
                headers.extend(h.iter().map(|h| (h.key, h.value.unwrap_or_default())));
            }
            let message = crate::ingest::Message {
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key(),
                headers: &headers,
                timestamp_ms: m.timestamp().to_millis(),
                payload: m.payload().unwrap_or_default(),
            };
            ingest.process(message, monitor, outputs);
        }
        outputs.drain(..).for_each(|o| emit(&o));
        return;
    }
    let inputs: Vec<Input<'_>> = messages
        .iter()
        .map(|m| {
            let topic = m.topic();
            Input {
                kind: kind_of(cfg, topic),
                topic,
                partition: m.partition(),
                offset: m.offset(),
                payload: m.payload().unwrap_or_default(),
            }
        })
        .collect();
    if inputs.len() < PARALLEL_MIN {
        for input in inputs {
            monitor.process(input, outputs);
        }
        outputs.drain(..).for_each(|o| emit(&o));
        return;
    }
    let max_bytes = monitor.max_event_bytes();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let all = &inputs;
        scope.spawn(move || {
            for chunk in all.chunks(DECODE_BATCH) {
                let decoded: Vec<_> = chunk
                    .iter()
                    .map(|i| decode(i.payload, i.kind, max_bytes))
                    .collect();
                if tx.send(decoded).is_err() {
                    return;
                }
            }
        });
        let mut next = inputs.iter();
        for decoded in rx {
            for d in &decoded {
                let input = *next.next().expect("one decoded event per input");
                monitor.process_decoded(input, d, outputs);
            }
        }
    });
    outputs.drain(..).for_each(|o| emit(&o));
}

/// Stores the offsets the monitor no longer needs, after the outputs they produced are
/// acknowledged.
pub(super) fn store_progress(
    cfg: &Config,
    consumer: &StreamConsumer<SourceContext>,
    monitor: &mut Monitor,
    sink: &KafkaSink,
    stored: &mut BTreeMap<Tp, i64>,
) {
    // Bootstrapped baselines become durable before the offsets of their events are stored.
    for (p, starts) in monitor.take_new_profiles() {
        let key =
            super::restore::state_key(&cfg.kafka.group_id, &p.model_id, p.model_version.as_deref());
        let record = super::restore::StateBaseline {
            profile: Arc::unwrap_or_clone(p),
            window_starts_ms: (starts != i64::MIN).then_some(starts),
        };
        sink.send_state(
            &key,
            &serde_json::to_vec(&record).expect("baselines serialize"),
        );
    }
    // The alert and trigger state of the windows evaluated so far, before the offsets after
    // them: a restart carries on from there instead of counting windows afresh.
    for c in monitor.take_checkpoints() {
        let key = super::restore::checkpoint_key(&cfg.kafka.group_id, &c.model_id);
        sink.send_state(
            &key,
            &serde_json::to_vec(&c).expect("checkpoints serialize"),
        );
    }
    let progress = monitor.committable();
    if progress.is_empty() {
        return;
    }
    if let Err(e) = sink.flush(cfg.kafka.drain_timeout) {
        tracing::error!(error = %e, "outputs not acknowledged; offsets not stored");
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in progress {
        let key = (topic, partition);
        if stored.get(&key).is_some_and(|s| *s >= next) {
            continue;
        }
        if tpl
            .add_partition_offset(&key.0, partition, Offset::Offset(next))
            .is_ok()
        {
            stored.insert(key, next);
        }
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.store_offsets(&tpl) {
            tracing::warn!(error = %e, "storing offsets failed");
        }
    }
}
