//! Where outputs go: Kafka topics, JSON Lines on stdout or in files, and CI webhooks, all
//! through one [`fanout::Fanout`].

pub mod fanout;
pub mod kafka;
pub mod metrics;
pub mod s3;
pub mod snapshot;
pub mod webhook;

use std::io::Write;

use crate::output::Output;

/// Writes outputs as JSON Lines: alerts, triggers and verdicts to `out`, dead letters to
/// `dead_letters` (one record with `reason` and the original text per rejected line).
pub struct JsonLinesSink<W: Write, D: Write> {
    out: W,
    dead_letters: Option<D>,
}

impl<W: Write, D: Write> JsonLinesSink<W, D> {
    /// A sink over the two writers; without a dead-letter writer, dead letters go to `out`.
    pub fn new(out: W, dead_letters: Option<D>) -> Self {
        Self { out, dead_letters }
    }

    /// Writes one output as one line.
    pub fn write(&mut self, o: &Output) -> std::io::Result<()> {
        let line = serde_json::to_string(&o.to_json()).expect("outputs serialize");
        match (o, self.dead_letters.as_mut()) {
            (Output::DeadLetter(_), Some(d)) => writeln!(d, "{line}"),
            _ => writeln!(self.out, "{line}"),
        }
    }

    /// Flushes both writers.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if let Some(d) = self.dead_letters.as_mut() {
            d.flush()?;
        }
        Ok(())
    }
}
