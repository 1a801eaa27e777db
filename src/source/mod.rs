//! Input sources: the Kafka consumer group.

pub mod kafka;
pub mod pacing;
pub mod restore;
