//! What earlier owners of a partition made durable in Kafka, read back when partitions are
//! assigned: baselines bootstrapped from live traffic (the compacted state topic, keyed by
//! group, model and version), policy checkpoints, and the triggers, alerts and verdicts already
//! published (their topics), so that an instance taking a partition over neither bootstraps a
//! new baseline from drifted traffic nor publishes an output a second time.

use std::time::Duration;

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::baseline::Profile;
use crate::config::Config;
use crate::monitor::PolicyCheckpoint;
use crate::policy::TriggerLedger;

/// Key of a bootstrapped baseline on the state topic.
pub fn state_key(group: &str, model_id: &str, version: Option<&str>) -> String {
    format!("baseline/{group}/{model_id}/{}", version.unwrap_or("*"))
}

/// Key of a model's policy checkpoint on the state topic.
pub fn checkpoint_key(group: &str, model_id: &str) -> String {
    format!("policy/{group}/{model_id}")
}

/// What the state and trigger topics hold for this consumer group.
#[derive(Debug, Default)]
pub struct Restored {
    /// Triggers already emitted.
    pub ledger: TriggerLedger,
    /// Baselines bootstrapped by any instance of the group, newest per model and version.
    pub baselines: Vec<StateBaseline>,
    /// The newest policy checkpoint of each model.
    pub checkpoints: Vec<PolicyCheckpoint>,
    /// Alerts and verdicts already published ([`crate::monitor::emitted_key`]): an instance
    /// that evaluates again the windows after the last checkpoint does not publish them twice.
    pub emitted: std::collections::HashSet<String>,
}

/// A bootstrapped baseline as the state topic holds it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StateBaseline {
    /// The profile.
    pub profile: Profile,
    /// Start of the first window evaluated against it (the pane after its last bootstrap
    /// event), so that an instance that takes the model over evaluates the same windows.
    pub window_starts_ms: Option<i64>,
}

impl StateBaseline {
    /// Reads a state record: `{"profile": …, "window_starts_ms": …}`, or a bare profile as
    /// earlier versions wrote it.
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice::<StateBaseline>(bytes).or_else(|_| {
            serde_json::from_slice::<Profile>(bytes).map(|profile| StateBaseline {
                profile,
                window_starts_ms: None,
            })
        })
    }
}

/// Reads the trigger topic and this group's baselines on the state topic to their current end.
pub fn read(cfg: &Config) -> anyhow::Result<Restored> {
    let mut ledger = TriggerLedger::default();
    read_topic_to_end(cfg, &cfg.topics.retrain, |_, v| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(v) {
            ledger.record_json(&v);
        }
    })?;
    let mut emitted = std::collections::HashSet::new();
    for topic in [&cfg.topics.alerts, &cfg.topics.verdicts] {
        read_topic_to_end(cfg, topic, |_, v| {
            if let Some(key) = serde_json::from_slice::<serde_json::Value>(v)
                .ok()
                .and_then(|v| crate::monitor::emitted_key_json(&v))
            {
                emitted.insert(key);
            }
        })?;
    }
    let baseline_prefix = format!("baseline/{}/", cfg.kafka.group_id);
    let policy_prefix = format!("policy/{}/", cfg.kafka.group_id);
    let mut profiles: std::collections::BTreeMap<String, StateBaseline> = Default::default();
    let mut checkpoints: std::collections::BTreeMap<String, PolicyCheckpoint> = Default::default();
    read_topic_to_end(cfg, &cfg.topics.state, |k, v| {
        let Some(key) = k.and_then(|k| std::str::from_utf8(k).ok()) else {
            return;
        };
        if key.starts_with(&baseline_prefix) {
            match StateBaseline::from_json(v) {
                Ok(p) => {
                    profiles.insert(key.to_string(), p);
                }
                Err(e) => tracing::warn!(key, error = %e, "unreadable baseline on the state topic"),
            }
        } else if key.starts_with(&policy_prefix) {
            match serde_json::from_slice::<PolicyCheckpoint>(v) {
                Ok(c) => {
                    checkpoints.insert(key.to_string(), c);
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "unreadable policy checkpoint on the state topic")
                }
            }
        }
    })?;
    Ok(Restored {
        ledger,
        baselines: profiles.into_values().collect(),
        checkpoints: checkpoints.into_values().collect(),
        emitted,
    })
}

/// Creates the compacted state topic if it does not exist (best effort: without it, baselines
/// are bootstrapped again after a restart).
pub fn ensure_state_topic(cfg: &Config) {
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
