//! Input sources: the Kafka consumer group.

mod batch;
mod flow;
pub mod kafka;
pub mod pacing;
pub mod restore;
