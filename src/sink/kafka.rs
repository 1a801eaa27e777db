//! Kafka producer for alerts, triggers, verdicts and dead letters.
//!
//! Sends are non-blocking enqueues into librdkafka; [`KafkaSink::flush`] waits until every
//! enqueued output is acknowledged, and the source calls it before storing offsets, so an offset
//! is never committed ahead of the outputs its events produced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::config::Config;
use crate::output::Output;
use crate::telemetry::Telemetry;

/// Errors of the Kafka sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The producer could not be created (bad properties).
    #[error("cannot create Kafka producer: {0}")]
    Create(#[source] rdkafka::error::KafkaError),
    /// Outputs were not all acknowledged in time; retryable.
    #[error("{pending} outputs not acknowledged within {timeout:?}")]
    FlushTimeout {
        /// Outputs still queued.
        pending: i32,
        /// How long we waited.
        timeout: Duration,
    },
    /// The broker rejected outputs for good; not retryable without operator action.
    #[error("{0} outputs could not be delivered")]
    Undelivered(u64),
}

impl SinkError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::FlushTimeout { .. })
    }
}

/// Counts delivery failures reported by librdkafka's delivery callback.
pub struct DeliveryCounter {
    failed: AtomicU64,
    telemetry: Telemetry,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = Box<&'static str>;
    fn delivery(&self, result: &DeliveryResult<'_>, kind: Self::DeliveryOpaque) {
        match result {
            Ok(_) => self.telemetry.outputs.with_label_values(&[*kind]).inc(),
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.telemetry
                    .output_failures
                    .with_label_values(&[*kind])
                    .inc();
                tracing::error!(error = %e, kind = *kind, "output not delivered");
            }
        }
    }
}

/// Producer of every output topic.
#[derive(Clone)]
pub struct KafkaSink {
    producer: Arc<ThreadedProducer<DeliveryCounter>>,
    topics: crate::config::TopicsConfig,
}

impl KafkaSink {
    /// A producer with idempotence on, configured from `cfg`.
    pub fn new(cfg: &Config, telemetry: Telemetry) -> Result<Self, SinkError> {
        let mut cc: ClientConfig = cfg.kafka_producer_properties().into_iter().collect();
        cc.set("enable.idempotence", "true");
        cc.set("linger.ms", "5");
        // Baseline profiles on the state topic are large JSON documents that compress well.
        cc.set("compression.type", "gzip");
        cc.set("message.max.bytes", "33554432");
        let producer = cc
            .create_with_context(DeliveryCounter {
                failed: AtomicU64::new(0),
                telemetry,
            })
            .map_err(SinkError::Create)?;
        Ok(Self {
            producer: Arc::new(producer),
            topics: cfg.topics.clone(),
        })
    }

    /// Enqueues one output: key = model id, header `idempotency-key`; dead letters carry the
    /// original bytes with `reason`, `source-topic`, `source-partition` and `source-offset`
    /// headers.
    pub fn send(&self, o: &Output) {
        let key = o.idempotency_key();
        let (topic, kind, payload, headers) = match o {
            Output::DeadLetter(d) => {
                let partition = d.partition.to_string();
                let offset = d.offset.to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "reason",
                        value: Some(d.reason),
                    })
                    .insert(Header {
                        key: "detail",
                        value: Some(&d.detail),
                    })
                    .insert(Header {
                        key: "source-topic",
                        value: Some(&d.topic),
                    })
                    .insert(Header {
                        key: "source-partition",
                        value: Some(&partition),
                    })
                    .insert(Header {
                        key: "source-offset",
                        value: Some(&offset),
                    });
                (
                    &self.topics.dead_letters,
                    "dead_letter",
                    d.payload.clone(),
                    headers,
                )
            }
            other => {
                let (topic, kind) = match other {
                    Output::Alert(_) => (&self.topics.alerts, "alert"),
                    Output::Trigger(_) => (&self.topics.retrain, "retrain_trigger"),
                    _ => (&self.topics.verdicts, "canary_verdict"),
                };
                let body = serde_json::to_vec(&other.to_json()).expect("outputs serialize");
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "idempotency-key",
                        value: Some(&key),
                    })
                    .insert(Header {
                        key: "type",
                        value: Some(kind),
                    });
                (topic, kind, body, headers)
            }
        };
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(kind))
            .payload(payload.as_slice())
            .headers(headers);
        if let Some(k) = o.key() {
            record = record.key(k);
        }
        self.enqueue(record, kind);
    }

    /// Enqueues a durable-state record (compacted topic, key = what it describes).
    pub fn send_state(&self, key: &str, payload: &[u8]) {
        let record = BaseRecord::with_opaque_to(&self.topics.state, Box::new("state"))
            .key(key)
            .payload(payload);
        self.enqueue(record, "state");
    }

    /// Enqueues a record, waiting for deliveries while librdkafka's queue is full (back-pressure
    /// instead of dropping); any other failure is counted so the next flush reports it.
    // rdkafka's delivery opaque must be a Box, so the kind's `&'static str` is boxed.
    #[allow(clippy::redundant_allocation)]
    fn enqueue(&self, mut record: BaseRecord<'_, str, [u8], Box<&'static str>>, kind: &str) {
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    self.producer.poll(Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, kind, "cannot enqueue output");
                    self.producer
                        .context()
                        .failed
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Waits until every enqueued output is acknowledged; fails if any was not delivered since
    /// the last successful flush.
    pub fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        if self.producer.flush(timeout).is_err() {
            return Err(SinkError::FlushTimeout {
                pending: self.producer.in_flight_count(),
                timeout,
            });
        }
        let failed = self.producer.context().failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            return Err(SinkError::Undelivered(failed));
        }
        Ok(())
    }
}
