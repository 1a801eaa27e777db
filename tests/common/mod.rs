//! Shared helpers for the integration tests that run driftwatch against real services: an
//! Apache Kafka broker (`scripts/kafka`) and Prometheus (`scripts/prometheus`).
//!
//! Everything here is synchronous and bounded in time: every wait takes a deadline and panics
//! with a descriptive message when it passes, and every process or service started by a helper is
//! stopped by a `Drop` guard, so a failing test never leaks a process.
//!
//! The pieces:
//! - [`brokers`]: the broker address from `DRIFTWATCH_TEST_BROKERS` (panics when unset).
//! - [`Topics`]: one uniquely named set of driftwatch's topics, created with the admin API.
//! - [`MonitorConfig`]: a driftwatch TOML configuration with test-friendly defaults.
//! - [`Driftwatch`]: the compiled binary running `run --config`, with its log, `/metrics` and
//!   signal helpers.
//! - [`TopicReader`]: reads topics from the beginning (outputs, dead letters).
//! - [`produce_generated`], [`produce_lines`], [`produce_raw`]: input traffic.
//! - [`committed_offsets`]: what a consumer group has committed.
//! - [`Metrics`]: parsed Prometheus text exposition.
//! - [`Prometheus`]: a Prometheus server scraping driftwatch, with its HTTP query API.
//! - [`Alertmanager`]: an Alertmanager receiving Prometheus's alerts, with its alert API.
//! - [`http_get`]: a minimal HTTP/1.0 client.
//! - [`bin`], [`command`]: the compiled binary, and a command for it that no
//!   `DRIFTWATCH__*` variable of the caller leaks into.
//! - [`kserve`]: a generated stream re-encoded as KServe payload-logger CloudEvents.
//! - [`offline`] (re-exported here): the CLI, replay through the library, generated streams
//!   and their event times, reading outputs — for the tests that need no external service.

// Each integration test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer, ThreadedProducer,
};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use driftwatch::generate::{Generator, GeneratorConfig};

pub mod kserve;
pub mod offline;
// As with `dead_code` above: some test binaries use none of these.
#[allow(unused_imports)]
pub use offline::*;

/// The `driftwatch` binary built for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_driftwatch"))
}

/// A command running [`bin`], without the caller's `DRIFTWATCH__SECTION__KEY` variables: the
/// configuration layers read them, and none may leak into a test.
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("DRIFTWATCH__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Environment variable holding the bootstrap servers of the test broker.
pub const BROKERS_ENV: &str = "DRIFTWATCH_TEST_BROKERS";

/// The bootstrap servers of the real test broker. Panics when `DRIFTWATCH_TEST_BROKERS` is not
/// set: these tests must fail, never pass silently, when no broker was provided.
pub fn brokers() -> String {
    match std::env::var(BROKERS_ENV) {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "{BROKERS_ENV} is not set: this test needs a real Kafka broker. Run scripts/test-all, \
             or start one with `scripts/kafka start` and export \
             {BROKERS_ENV}=$(scripts/kafka bootstrap)"
        ),
    }
}

/// `prefix` followed by a random suffix: topic names, group ids.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Polls `f` every `every` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

// ---------------------------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------------------------

/// One set of driftwatch's topics, uniquely named for one test. Created by [`Topics::create`];
/// deleted (best effort) on drop unless the test is failing, so a failed run can be inspected.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Broker the topics live on.
    pub brokers: String,
    /// Prediction events (input).
    pub predictions: String,
    /// Separately published features (input).
    pub features: String,
    /// Ground-truth labels (input).
    pub labels: String,
    /// Alerts (output).
    pub alerts: String,
    /// Retraining triggers (output).
    pub retrain: String,
    /// Canary verdicts (output).
    pub verdicts: String,
    /// Dead letters (output).
    pub dead_letters: String,
    /// Durable state (compacted, one partition; output read back at start-up).
    pub state: String,
}

impl Topics {
    /// Creates the topics, named `dw-<test>-<kind>-<random>`: the input and output topics with
    /// `partitions` partitions each, the state topic compacted with one partition (replication
    /// factor 1), and waits until the broker reports them.
    pub fn create(brokers: &str, test: &str, partitions: i32) -> TopicsGuard {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let t = Topics::named(brokers, |kind| format!("dw-{test}-{kind}-{}", &id[..12]));
        let mut io = t.all();
        io.retain(|n| *n != t.state);
        create_topics(brokers, &io, partitions);
        create_topics_with(brokers, &[&t.state], 1, &[("cleanup.policy", "compact")]);
        TopicsGuard(t)
    }

    /// The topics `name(kind)` on `brokers`, without creating them.
    pub fn named(brokers: &str, name: impl Fn(&str) -> String) -> Topics {
        Topics {
            brokers: brokers.to_string(),
            predictions: name("predictions"),
            features: name("features"),
            labels: name("labels"),
            alerts: name("alerts"),
            retrain: name("retrain"),
            verdicts: name("verdicts"),
            dead_letters: name("dead-letters"),
            state: name("state"),
        }
    }

    /// Every topic name.
    pub fn all(&self) -> Vec<&str> {
        vec![
            &self.predictions,
            &self.features,
            &self.labels,
            &self.alerts,
            &self.retrain,
            &self.verdicts,
            &self.dead_letters,
            &self.state,
        ]
    }

    /// The output topics (the state topic is not one: it holds records, not outputs).
    pub fn outputs(&self) -> Vec<&str> {
        vec![
            &self.alerts,
            &self.retrain,
            &self.verdicts,
            &self.dead_letters,
        ]
    }
}

/// Owns a [`Topics`]; deletes them on drop when the test passed.
#[derive(Debug)]
pub struct TopicsGuard(pub Topics);

impl std::ops::Deref for TopicsGuard {
    type Target = Topics;
    fn deref(&self) -> &Topics {
        &self.0
    }
}

impl Drop for TopicsGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed; topics kept for inspection: {:?}",
                self.0.all()
            );
            return;
        }
        let _ = delete_topics(&self.0.brokers, &self.0.all());
    }
}

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client")
}

/// Creates topics with the admin API (replication factor 1) and waits until their metadata is
/// visible. Panics on any error other than "already exists".
pub fn create_topics(brokers: &str, names: &[&str], partitions: i32) {
    create_topics_with(brokers, names, partitions, &[]);
}

/// [`create_topics`] with topic configs (`("cleanup.policy", "compact")`, …).
pub fn create_topics_with(
    brokers: &str,
    names: &[&str],
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let admin = admin(brokers);
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| {
            configs.iter().fold(
                NewTopic::new(n, partitions, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let results = futures::executor::block_on(admin.create_topics(&new, &opts))
        .unwrap_or_else(|e| panic!("create_topics against {brokers} failed: {e}"));
    for r in results {
        match r {
            Ok(_) => {}
            Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                eprintln!("topic {name} already exists")
            }
            Err((name, code)) => panic!("cannot create topic {name}: {code:?}"),
        }
    }
    // Metadata propagates asynchronously; wait until every partition has a leader.
    let probe = metadata_consumer(brokers);
    for name in names {
        wait_for(
            &format!("metadata of topic {name}"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                let md = probe
                    .fetch_metadata(Some(name), Duration::from_secs(5))
                    .ok()?;
                let t = md.topics().iter().find(|t| t.name() == *name)?;
                (t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0))
                .then_some(())
            },
        );
    }
}

/// Deletes topics (best effort).
pub fn delete_topics(brokers: &str, names: &[&str]) -> Result<(), String> {
    let admin = admin(brokers);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    futures::executor::block_on(admin.delete_topics(names, &opts))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn metadata_consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("dw-test-probe"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("probe consumer")
}

/// Partition ids of a topic.
pub fn partitions_of(brokers: &str, topic: &str) -> Vec<i32> {
    let c = metadata_consumer(brokers);
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    md.topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default()
}

/// Offsets committed by `group` on every partition of `topic` (`None`: nothing committed).
pub fn committed_offsets(brokers: &str, group: &str, topic: &str) -> BTreeMap<i32, Option<i64>> {
    // A consumer that never subscribes does not join the group; it only reads its offsets.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset reader");
    let mut tpl = TopicPartitionList::new();
    for p in partitions_of(brokers, topic) {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("committed offsets of group {group}: {e}"));
    got.elements()
        .iter()
        .map(|e| {
            let o = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            (e.partition(), o)
        })
        .collect()
}

/// Sum of the high watermarks of every partition of `topic` (messages ever written to it).
pub fn topic_end(brokers: &str, topic: &str) -> i64 {
    let c = metadata_consumer(brokers);
    partitions_of(brokers, topic)
        .into_iter()
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"))
                .1
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Producing
// ---------------------------------------------------------------------------------------------

/// Produces a generated stream with the library's own [`driftwatch::generate::produce_to_kafka`]
/// (predictions and labels to their topics, key = model id). Returns the messages sent.
pub fn produce_generated(topics: &Topics, cfg: GeneratorConfig) -> u64 {
    let expected = cfg.events;
    let sent = driftwatch::generate::produce_to_kafka(
        Generator::new(cfg),
        &topics.brokers,
        &topics.predictions,
        &topics.labels,
        None,
        None,
    )
    .expect("producing generated events");
    assert!(
        sent >= expected,
        "produce_to_kafka sent {sent} messages, expected at least {expected}"
    );
    sent
}

/// Produces `(model_id, json line)` pairs as `produce_to_kafka` does (predictions to the
/// predictions topic, anything else to the labels topic; key = model id), and waits until all
/// are acknowledged. Use it to send one generated stream in several parts. Returns the messages
/// sent.
pub fn produce_lines(topics: &Topics, lines: impl IntoIterator<Item = (String, String)>) -> u64 {
    let producer = bulk_producer(&topics.brokers);
    let mut sent = 0u64;
    for (model, line) in lines {
        let topic = if line.contains("\"prediction\"") {
            &topics.predictions
        } else {
            &topics.labels
        };
        send_waiting(&producer, BaseRecord::to(topic).key(&model).payload(&line));
        sent += 1;
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("all produced messages acknowledged");
    sent
}

/// An idempotent producer with a deep local queue, for sending many messages in order.
pub fn bulk_producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

/// Sends `record`, waiting while the producer's local queue is full.
pub fn send_waiting<
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
>(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, K, P>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                record = r;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, r)) => panic!("cannot produce to {}: {e}", r.topic),
        }
    }
}

/// One message to produce verbatim.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Message key.
    pub key: Option<Vec<u8>>,
    /// Message bytes, sent as they are.
    pub payload: Vec<u8>,
}

/// Produces raw messages to one topic, in order (idempotent producer), and returns where each
/// landed: `(partition, offset)`, in input order.
pub fn produce_raw(brokers: &str, topic: &str, messages: &[RawMessage]) -> Vec<(i32, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "10000000")
        .create()
        .expect("producer");
    let futures: Vec<_> = messages
        .iter()
        .map(|m| {
            let mut r = FutureRecord::to(topic).payload(&m.payload);
            if let Some(k) = &m.key {
                r = r.key(k);
            }
            producer.send_result(r).expect("enqueue")
        })
        .collect();
    futures::executor::block_on(async {
        let mut out = Vec::with_capacity(futures.len());
        for f in futures {
            let d = f
                .await
                .expect("delivery future not cancelled")
                .unwrap_or_else(|(e, _)| panic!("cannot produce to {topic}: {e}"));
            out.push((d.partition, d.offset));
        }
        out
    })
}

// ---------------------------------------------------------------------------------------------
// Reading topics
// ---------------------------------------------------------------------------------------------

/// One consumed message, owned.
#[derive(Debug, Clone)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Payload (empty when null).
    pub payload: Vec<u8>,
    /// Headers in order; `None` values are null headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The payload parsed as JSON; panics (with the payload) when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "{}/{}@{} is not JSON ({e}): {}",
                self.topic,
                self.partition,
                self.offset,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }

    /// The first header called `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads topics from the beginning with manual assignment (no consumer-group join, no commits),
/// accumulating every record read so far.
pub struct TopicReader {
    consumer: BaseConsumer,
    /// Records read so far, in arrival order.
    pub records: Vec<Record>,
    topics: Vec<String>,
    brokers: String,
}

impl TopicReader {
    /// Assigns every partition of `topics` from the beginning.
    pub fn new(brokers: &str, topics: &[&str]) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", unique("dw-test-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .expect("reader consumer");
        let mut tpl = TopicPartitionList::new();
        for t in topics {
            for p in partitions_of(brokers, t) {
                tpl.add_partition_offset(t, p, Offset::Beginning)
                    .expect("valid partition");
            }
        }
        consumer.assign(&tpl).expect("assign");
        Self {
            consumer,
            records: Vec::new(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            brokers: brokers.to_string(),
        }
    }

    /// Reads what is available for up to `max_wait`; returns how many records were added.
    pub fn poll_for(&mut self, max_wait: Duration) -> usize {
        let deadline = Instant::now() + max_wait;
        let before = self.records.len();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.consumer.poll(left.min(Duration::from_millis(100))) {
                Some(Ok(m)) => self.records.push(Record {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                Some(Err(e)) => panic!("reading {:?}: {e}", self.topics),
                None => {
                    if self.records.len() > before {
                        // Something arrived and the topic went quiet: good enough for a poll.
                        break;
                    }
                }
            }
        }
        self.records.len() - before
    }

    /// Reads until `pred(records)` holds, or panics with `what` after `timeout`.
    pub fn read_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&[Record]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !pred(&self.records) {
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what} on {:?}; {} records read: {:#?}",
                    self.topics,
                    self.records.len(),
                    self.records
                        .iter()
                        .rev()
                        .take(5)
                        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
                        .collect::<Vec<_>>()
                );
            }
            self.poll_for(Duration::from_millis(200));
        }
    }

    /// Reads until every partition has been read up to its high watermark as of this call
    /// (everything written so far), or panics after `timeout`.
    pub fn read_to_end(&mut self, timeout: Duration) -> &[Record] {
        let probe = metadata_consumer(&self.brokers);
        let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for t in &self.topics {
            for p in partitions_of(&self.brokers, t) {
                let (_, hi) = probe
                    .fetch_watermarks(t, p, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("watermarks of {t}/{p}: {e}"));
                ends.insert((t.clone(), p), hi);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let done = ends.iter().all(|((t, p), hi)| {
                *hi == 0
                    || self
                        .records
                        .iter()
                        .any(|r| r.topic == *t && r.partition == *p && r.offset + 1 >= *hi)
            });
            if done {
                return &self.records;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} reading {:?} to its end {ends:?}; {} records read",
                    self.topics,
                    self.records.len()
                );
            }
            self.poll_for(Duration::from_millis(200));
        }
    }

    /// Records of one topic.
    pub fn of_topic(&self, topic: &str) -> Vec<&Record> {
        self.records.iter().filter(|r| r.topic == topic).collect()
    }

    /// Payloads of one topic parsed as JSON.
    pub fn json_of(&self, topic: &str) -> Vec<serde_json::Value> {
        self.of_topic(topic).into_iter().map(Record::json).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// A driftwatch configuration for a test, rendered to TOML. The fields cover what the tests vary
/// most; anything else goes through [`MonitorConfig::set`].
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Broker and topic names.
    pub topics: Topics,
    /// Consumer group of the monitor.
    pub group_id: String,
    /// `window.length`.
    pub window: Duration,
    /// `window.slide`.
    pub slide: Duration,
    /// `window.allowed_lateness`.
    pub lateness: Duration,
    /// `window.min_events`.
    pub min_events: u64,
    /// `baseline.bootstrap_events`.
    pub bootstrap_events: usize,
    /// `kafka.session_timeout` (the broker's minimum is 6 s).
    pub session_timeout: Duration,
    /// `kafka.drain_timeout`.
    pub drain_timeout: Duration,
    /// `triggers.snapshot_dir`.
    pub snapshot_dir: PathBuf,
    /// Extra settings: section → key → TOML value (already quoted as TOML needs).
    pub extra: BTreeMap<String, BTreeMap<String, String>>,
}

impl MonitorConfig {
    /// Defaults sized for fast event-time tests at about 1000 events/s of event time: a 30 s
    /// window sliding every 5 s, 1 s lateness, 5000 bootstrap events, a fresh consumer group.
    pub fn new(topics: &Topics, snapshot_dir: &Path) -> Self {
        Self {
            topics: topics.clone(),
            group_id: unique("dw-test-group"),
            window: Duration::from_secs(30),
            slide: Duration::from_secs(5),
            lateness: Duration::from_secs(1),
            min_events: 1000,
            bootstrap_events: 5000,
            session_timeout: Duration::from_secs(6),
            drain_timeout: Duration::from_secs(5),
            snapshot_dir: snapshot_dir.to_path_buf(),
            extra: BTreeMap::new(),
        }
    }

    /// Sets `section.key = value`; `value` is TOML (`"5s"`, `3`, `true`, `["a"]`).
    pub fn set(&mut self, section: &str, key: &str, value: &str) -> &mut Self {
        self.extra
            .entry(section.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
        self
    }

    /// Events of event time `d` at `rate` events per second.
    pub fn events_in(d: Duration, rate: f64) -> u64 {
        (d.as_secs_f64() * rate).ceil() as u64
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let ms = |d: Duration| q(&format!("{}ms", d.as_millis()));
        let t = &self.topics;
        let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut put = |s: &str, k: &str, v: String| {
            sections
                .entry(s.to_string())
                .or_default()
                .insert(k.to_string(), v);
        };
        put("kafka", "brokers", q(&t.brokers));
        put("kafka", "group_id", q(&self.group_id));
        put("kafka", "session_timeout", ms(self.session_timeout));
        put("kafka", "drain_timeout", ms(self.drain_timeout));
        // Test streams are produced in one go: a partition read to its end stays there.
        put("kafka", "idle_after", ms(Duration::from_secs(1)));
        put("topics", "predictions", q(&t.predictions));
        put("topics", "features", q(&t.features));
        put("topics", "labels", q(&t.labels));
        put("topics", "alerts", q(&t.alerts));
        put("topics", "retrain", q(&t.retrain));
        put("topics", "verdicts", q(&t.verdicts));
        put("topics", "dead_letters", q(&t.dead_letters));
        put("topics", "state", q(&t.state));
        put("window", "length", ms(self.window));
        put("window", "slide", ms(self.slide));
        put("window", "allowed_lateness", ms(self.lateness));
        put("window", "min_events", self.min_events.to_string());
        put(
            "baseline",
            "bootstrap_events",
            self.bootstrap_events.to_string(),
        );
        put("http", "addr", q("127.0.0.1:0"));
        put(
            "triggers",
            "snapshot_dir",
            q(&self.snapshot_dir.display().to_string()),
        );
        for (s, kv) in &self.extra {
            for (k, v) in kv {
                put(s, k, v.clone());
            }
        }
        let mut out = String::new();
        for (s, kv) in sections {
            out.push_str(&format!("[{s}]\n"));
            for (k, v) in kv {
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The driftwatch process
// ---------------------------------------------------------------------------------------------

/// A running `driftwatch run --config <toml>`, killed (SIGKILL) on drop if still running. Its
/// stderr (the log) and stdout are collected line by line and printed when the test fails.
pub struct Driftwatch {
    name: String,
    child: Child,
    /// The bound `/metrics` address.
    pub http: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

impl Driftwatch {
    /// Writes `cfg` to `<dir>/<name>.toml` and starts the binary; returns once it logged its
    /// bound HTTP address. `name` tells several instances of one test apart in the logs.
    pub fn start(name: &str, cfg: &MonitorConfig, dir: &Path) -> Self {
        Self::start_with_env(name, cfg, dir, &[])
    }

    /// [`Driftwatch::start`] with extra environment variables (secrets, `DRIFTWATCH_LOG`),
    /// set last. Its stdout, if it prints anything, is collected into the log too.
    pub fn start_with_env(
        name: &str,
        cfg: &MonitorConfig,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, cfg.to_toml()).expect("write config");
        let mut cmd = command();
        cmd.arg("run")
            .arg("--config")
            .arg(&path)
            .env("NO_COLOR", "1")
            // DRIFTWATCH_TEST_LOG (e.g. `driftwatch=debug`) for more of what a failing test
            // prints.
            .env(
                "DRIFTWATCH_LOG",
                std::env::var("DRIFTWATCH_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin().display()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let collect = |pipe: Box<dyn Read + Send>| {
            let log = Arc::clone(&log);
            move || {
                let mut r = BufReader::new(pipe);
                let mut buf = Vec::new();
                while let Ok(n) = r.read_until(b'\n', &mut buf) {
                    if n == 0 {
                        break;
                    }
                    let line = strip_ansi(String::from_utf8_lossy(&buf).trim_end());
                    log.lock().expect("not poisoned").push(line);
                    buf.clear();
                }
            }
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let stdout_reader = std::thread::spawn(collect(Box::new(stdout)));
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_reader = std::thread::spawn(collect(Box::new(stderr)));
        let reader = std::thread::spawn(move || {
            let _ = stdout_reader.join();
            let _ = stderr_reader.join();
        });
        let mut me = Self {
            name: name.to_string(),
            child,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            reader: Some(reader),
            exit: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(addr) = me.log_field("http listening", "bound") {
                me.http = addr.parse().expect("bound address");
                break;
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                me.exit = Some(status);
                panic!(
                    "driftwatch {name} exited during start-up ({status}):\n{}",
                    me.logs().join("\n")
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "driftwatch {name} did not report its HTTP address within 30 s:\n{}",
                    me.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line so far (ANSI colours stripped).
    pub fn logs(&self) -> Vec<String> {
        self.log.lock().expect("not poisoned").clone()
    }

    /// The value of `field=` on the last log line containing `message`, if any.
    pub fn log_field(&self, message: &str, field: &str) -> Option<String> {
        let log = self.log.lock().expect("not poisoned");
        let line = log.iter().rev().find(|l| l.contains(message))?;
        log_field_of(line, field)
    }

    /// `GET /metrics`, parsed.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = http_get(self.http, "/metrics", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("GET /metrics of driftwatch {}: {e}", self.name));
        assert_eq!(status, 200, "GET /metrics: {body}");
        Metrics::parse(&body)
    }

    /// Polls `/metrics` until `metric{labels}` (summed over matching series) reaches `target`;
    /// returns the value. Panics after `timeout` with the log and the last value, or if the
    /// process exits.
    pub fn wait_metric_at_least(
        &mut self,
        metric: &str,
        labels: &[(&str, &str)],
        target: f64,
        timeout: Duration,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        let mut last = f64::NAN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                panic!(
                    "driftwatch {} exited ({status}) while waiting for {metric}{labels:?} >= \
                     {target} (last {last})",
                    self.name
                );
            }
            if let Ok((200, body)) = http_get(self.http, "/metrics", Duration::from_secs(5)) {
                last = Metrics::parse(&body).sum(metric, labels);
                if last >= target {
                    return last;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?}: {metric}{labels:?} = {last}, wanted >= {target}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM {} failed", self.pid());
    }

    /// Sends SIGKILL and reaps the process.
    pub fn sigkill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exit = Some(s);
                // The log reader ends with the pipe; join it so the log is complete.
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return self.exit;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Driftwatch {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if std::thread::panicking() {
            let log = self.logs();
            let skip = log.len().saturating_sub(60);
            eprintln!(
                "---- driftwatch {} log (last {} of {} lines) ----\n{}\n---- end of log ----",
                self.name,
                log.len() - skip,
                log.len(),
                log[skip..].join("\n")
            );
        }
    }
}

/// `field=value` of a tracing `fmt` line (values end at whitespace; quotes removed).
pub fn log_field_of(line: &str, field: &str) -> Option<String> {
    let pat = format!(" {field}=");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    let v = if let Some(stripped) = rest.strip_prefix('"') {
        stripped.split('"').next().unwrap_or_default()
    } else {
        rest.split_whitespace().next().unwrap_or_default()
    };
    Some(v.to_string())
}

// ---------------------------------------------------------------------------------------------
// Metrics and HTTP
// ---------------------------------------------------------------------------------------------

/// One sample of the Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed `/metrics` answer.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Every sample.
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the Prometheus text format (comments skipped).
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) => (&line[..i], &line[i..]),
                None => continue,
            };
            let mut labels = BTreeMap::new();
            let rest = if let Some(body) = rest.strip_prefix('{') {
                // label="value" pairs; values may contain escaped quotes.
                let mut chars = body.char_indices().peekable();
                let mut end = body.len();
                let mut key = String::new();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '}' => {
                            end = i + 1;
                            break;
                        }
                        ',' | ' ' => {}
                        '=' => {
                            chars.next(); // opening quote
                            let mut val = String::new();
                            while let Some((_, c)) = chars.next() {
                                match c {
                                    '\\' => {
                                        if let Some((_, e)) = chars.next() {
                                            val.push(match e {
                                                'n' => '\n',
                                                other => other,
                                            });
                                        }
                                    }
                                    '"' => break,
                                    c => val.push(c),
                                }
                            }
                            labels.insert(std::mem::take(&mut key), val);
                        }
                        c => key.push(c),
                    }
                }
                &body[end..]
            } else {
                rest
            };
            let value = rest
                .split_whitespace()
                .next()
                .map(|v| match v {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap_or(f64::NAN),
                })
                .unwrap_or(f64::NAN);
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Self { samples }
    }

    /// Samples of `name` whose labels include every `(key, value)` of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
    }

    /// Sum over the matching samples (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }
}

/// A minimal HTTP/1.0 GET (no chunked encoding to deal with); returns status and body.
pub fn http_get(
    addr: impl ToSocketAddrs,
    path_and_query: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    http_get_with(addr, path_and_query, &[], timeout)
}

/// [`http_get`] with extra request headers (`("Authorization", "Bearer …")`).
pub fn http_get_with(
    addr: impl ToSocketAddrs,
    path_and_query: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("malformed HTTP answer: {text}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in: {head}")))?;
    Ok((status, body.to_string()))
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------------

/// Path of a script in the repository's `scripts/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Environment variables for a script (`PROM_PORT`, `AM_DIR`, …).
pub type ScriptEnv = Vec<(String, String)>;

fn run_script(name: &str, args: &[&str], env: &ScriptEnv) -> std::process::Output {
    Command::new(script(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/{name}: {e}"))
}

/// Runs a script and returns its trimmed stdout; panics with its output when it fails.
fn run_script_ok(name: &str, args: &[&str], env: &ScriptEnv) -> String {
    let out = run_script(name, args, env);
    assert!(
        out.status.success(),
        "scripts/{name} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A Prometheus server (`scripts/prometheus`) scraping one driftwatch; stopped on drop.
pub struct Prometheus {
    base: String,
    env: ScriptEnv,
}

impl Prometheus {
    /// `scripts/prometheus start TARGET` then `wait-up`, with the script's defaults (port 9090);
    /// panics with the script's output on failure.
    pub fn start(target: SocketAddr) -> Self {
        Self::start_with(target, Vec::new())
    }

    /// As [`Prometheus::start`], with `env` for the script (`PROM_PORT`, `PROM_DIR`,
    /// `PROM_RULE_FILES`, `PROM_ALERTMANAGER`).
    pub fn start_with(target: SocketAddr, env: ScriptEnv) -> Self {
        // Created first, so that a failed start still stops whatever was started.
        let mut me = Prometheus {
            base: String::new(),
            env,
        };
        run_script_ok("prometheus", &["start", &target.to_string()], &me.env);
        run_script_ok("prometheus", &["wait-up", "30"], &me.env);
        me.base = run_script_ok("prometheus", &["url"], &me.env);
        me
    }

    /// [`Prometheus::start_with`] on a free port with its state in `dir`, loading `rule_files`
    /// and sending alerts to `alertmanager` (`HOST:PORT`) when given: apart from any other
    /// Prometheus on the machine.
    pub fn start_isolated(
        target: SocketAddr,
        dir: &Path,
        rule_files: &[&Path],
        alertmanager: Option<&str>,
    ) -> Self {
        let files: Vec<String> = rule_files.iter().map(|p| p.display().to_string()).collect();
        let mut env = vec![
            ("PROM_PORT".to_string(), free_port().to_string()),
            ("PROM_DIR".to_string(), dir.display().to_string()),
            ("PROM_RULE_FILES".to_string(), files.join(" ")),
        ];
        if let Some(am) = alertmanager {
            env.push(("PROM_ALERTMANAGER".to_string(), am.to_string()));
        }
        Self::start_with(target, env)
    }

    /// `GET path` on the HTTP API; the JSON answer's `data` (panics on API errors).
    pub fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(self.host_port(), path, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("GET {}{path}: {e}", self.base));
        assert_eq!(
            status, 200,
            "Prometheus answered {status} to {path}: {body}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
        assert_eq!(v["status"], "success", "{v}");
        v["data"].clone()
    }

    /// Host and port of the HTTP API.
    pub fn host_port(&self) -> String {
        self.base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    }

    /// Instant query through `/api/v1/query`; returns `data.result` (panics on API errors).
    pub fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        self.api(&path)["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let out = run_script("prometheus", &["stop"], &self.env);
        if !out.status.success() {
            eprintln!(
                "scripts/prometheus stop failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Alertmanager
// ---------------------------------------------------------------------------------------------

/// An Alertmanager (`scripts/alertmanager`) on a free port with its state in its own directory;
/// stopped on drop.
pub struct Alertmanager {
    host_port: String,
    env: ScriptEnv,
}

impl Alertmanager {
    /// `scripts/alertmanager start` with its state in `dir`; panics with the script's output on
    /// failure.
    pub fn start(dir: &Path) -> Self {
        let mut me = Alertmanager {
            host_port: String::new(),
            env: vec![
                ("AM_DIR".to_string(), dir.display().to_string()),
                ("AM_PORT".to_string(), free_port().to_string()),
            ],
        };
        run_script_ok("alertmanager", &["start"], &me.env);
        me.host_port = run_script_ok("alertmanager", &["host-port"], &me.env);
        me
    }

    /// `HOST:PORT` of its API (what Prometheus sends alerts to).
    pub fn host_port(&self) -> &str {
        &self.host_port
    }

    /// The alerts it holds (`GET /api/v2/alerts`).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = http_get(&self.host_port, "/api/v2/alerts", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("GET {}/api/v2/alerts: {e}", self.host_port));
        assert_eq!(status, 200, "Alertmanager answered {status}: {body}");
        serde_json::from_str(&body).expect("Alertmanager answers JSON")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let out = run_script("alertmanager", &["stop"], &self.env);
        if !out.status.success() {
            eprintln!(
                "scripts/alertmanager stop failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
