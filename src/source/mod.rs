//! Input sources: the Kafka consumer group.

pub mod kafka;
