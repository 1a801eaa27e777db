//! Input formats other than driftwatch's v1 events (`[input] format`), turned into v1
//! prediction events for the monitor.
//!
//! A v1 message is one event and goes to [`Monitor::process`] as it is. An inference server's
//! message is not: KServe logs a request and its response as two messages, each a batch of
//! rows. The adapters here join and split them and hand every row to the monitor as a v1
//! prediction event written out as JSON. The monitor keeps the bytes of the events it holds
//! (far-ahead events, bootstrap predictions) and decodes them again later, so a row must be a
//! self-contained v1 message; writing it costs an allocation per row, on these formats' path
//! only — the v1 path is untouched.

pub mod kserve;

use crate::config::{Config, InputFormat};
use crate::monitor::Monitor;
use crate::output::Output;
use crate::state::Input;

/// One input message as a source delivers it, with what formats other than v1 read besides
/// the value.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Topic (or file name in `replay`).
    pub topic: &'a str,
    /// Partition (0 for files).
    pub partition: i32,
    /// Offset (line number for files).
    pub offset: i64,
    /// Message key.
    pub key: Option<&'a [u8]>,
    /// Message headers, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The broker's or producer's timestamp, epoch milliseconds.
    pub timestamp_ms: Option<i64>,
    /// Message value.
    pub payload: &'a [u8],
}

/// Feeds messages of the configured input format to a monitor.
#[derive(Debug)]
pub enum Ingest {
    /// v1 events: straight to the monitor.
    Driftwatch,
    /// KServe payload-logger CloudEvents.
    Kserve(Box<kserve::Kserve>),
}

impl Ingest {
    /// The adapter for `cfg.input.format`.
    pub fn new(cfg: &Config) -> Ingest {
        match cfg.input.format {
            InputFormat::Kserve => Ingest::Kserve(Box::new(kserve::Kserve::new(cfg))),
            // Validation refuses the formats not supported yet.
            InputFormat::Driftwatch | InputFormat::Oip | InputFormat::Mapped => Ingest::Driftwatch,
        }
    }

    /// Processes one message, appending what it causes to `out`.
    pub fn process(&mut self, m: Message<'_>, monitor: &mut Monitor, out: &mut Vec<Output>) {
        match self {
            Ingest::Driftwatch => monitor.process(
                Input {
                    kind: None,
                    topic: m.topic,
                    partition: m.partition,
                    offset: m.offset,
                    payload: m.payload,
                },
                out,
            ),
            Ingest::Kserve(k) => k.process(m, monitor, out),
        }
    }

    /// A partition was revoked: what came from it and waits is forgotten (its new owner reads
    /// it again).
    pub fn drop_input(&mut self, topic: &str, partition: i32) {
        if let Ingest::Kserve(k) = self {
            k.drop_input(topic, partition);
        }
    }

    /// At the end of a replay: what still waits for its other half is given up.
    pub fn finish(&mut self, monitor: &mut Monitor, out: &mut Vec<Output>) {
        if let Ingest::Kserve(k) = self {
            k.finish(monitor, out);
        }
    }
}
