//! Offline mode: the same decode → state → evaluation → policy path over a JSON Lines file, in
//! event time. Outputs are stamped with event time, so a replay is reproducible and shows exactly
//! what the live service would have emitted.
//!
//! A file of v1 events has one event a line. A file of another input format (`[input] format`,
//! `replay --format`) has one Kafka message a line:
//! `{"headers": {"ce_id": "…", …}, "key": "…", "value": …, "timestamp": ms}` (all but `value`
//! optional), `value` being the message's JSON, or its text as a JSON string.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::config::{Config, InputFormat};
use crate::event::{decode, DecodeError, Event, EventKind};
use crate::ingest::{Ingest, Message};
use crate::monitor::Monitor;
use crate::output::Output;
use crate::policy::Clock;
use crate::sink::fanout::Fanout;
use crate::sink::snapshot::SnapshotWriter;
use crate::sink::JsonLinesSink;
use crate::state::{Baselines, Input};
use crate::telemetry::Outcome;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    /// Non-empty lines read.
    pub lines: u64,
    /// Lines rejected to the dead-letter output.
    pub dead_letters: u64,
    /// Alerts emitted.
    pub alerts: u64,
    /// Triggers emitted.
    pub triggers: u64,
    /// Verdicts emitted.
    pub verdicts: u64,
    /// Events for windows already closed (`driftwatch_late_events_total` of the service).
    pub late: u64,
    /// Labels and features whose prediction never came or had expired
    /// (`driftwatch_join_misses_total`).
    pub join_misses: u64,
    /// Labels joined to their prediction.
    pub labels_joined: u64,
    /// Limit name → events or values not tracked because of it
    /// (`driftwatch_limit_hits_total{limit}`).
    pub limits_hit: BTreeMap<&'static str, u64>,
    /// (what, reason) → models or versions evicted (`driftwatch_evictions_total{what,reason}`).
    pub evictions: BTreeMap<(&'static str, &'static str), u64>,
}

impl ReplayStats {
    /// What was cut, for the summary line: `limits hit: models 100, features 44; evicted: 2
    /// versions (capacity)`, or `no limit hit, nothing evicted`.
    pub fn cut(&self) -> String {
        let limits: Vec<String> = self
            .limits_hit
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let evictions: Vec<String> = self
            .evictions
            .iter()
            .map(|((what, reason), n)| {
                let s = if *n == 1 { "" } else { "s" };
                format!("{n} {what}{s} ({reason})")
            })
            .collect();
        match (limits.is_empty(), evictions.is_empty()) {
            (true, true) => "no limit hit, nothing evicted".into(),
            (false, true) => format!("limits hit: {}", limits.join(", ")),
            (true, false) => format!("evicted: {}", evictions.join(", ")),
            (false, false) => format!(
                "limits hit: {}; evicted: {}",
                limits.join(", "),
                evictions.join(", ")
            ),
        }
    }
}

/// Bytes of whole lines handed to the decoding thread at a time.
const CHUNK_BYTES: usize = 4 << 20;

/// Decoded lines sent to the processing thread at a time.
const BATCH_LINES: usize = 256;

/// One non-empty line, decoded.
struct Decoded<'a> {
    /// Line number (1-based), the event's offset.
    number: i64,
    payload: &'a [u8],
    result: Result<Event<'a>, DecodeError>,
}

/// Replays `input`, writing outputs to `out` and rejected lines to `dead_letters` (or to `out`
/// when none is given).
///
/// Two threads share the work: while the calling thread runs the monitor over the lines of one
/// chunk of the file in order, a second thread decodes them ahead of it, then reads the next
/// chunk. Events reach the monitor in file order, so outputs are the same as decoding and
/// processing one line after the other.
pub fn replay<W: Write, D: Write>(
    cfg: Config,
    input: &Path,
    out: W,
    dead_letters: Option<D>,
) -> anyhow::Result<ReplayStats> {
    match cfg.input.format {
        InputFormat::Driftwatch => {
            replay_in_chunks(cfg, input, out, dead_letters, CHUNK_BYTES, READ_BYTES)
        }
        _ => replay_messages(cfg, input, out, dead_letters),
    }
}

/// The monitor a replay feeds, and the name its outputs give the file.
fn start(cfg: Config, input: &Path) -> anyhow::Result<(Monitor, String)> {
    let baselines = Baselines::load(&cfg)?;
    let snapshots = SnapshotWriter::from_config(&cfg)?;
    let monitor =
        Monitor::new(Arc::new(cfg), baselines, Clock::EventTime).with_snapshots(snapshots);
    // Outputs name the file, not the directory it was replayed from (reproducible backtests).
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| input.display().to_string());
    Ok((monitor, name))
}

/// The fan-out, its triggers published once the snapshots they name are written.
fn with_snapshots<G: crate::sink::fanout::GatingSink>(
    sink: Fanout<G>,
    monitor: &Monitor,
) -> Fanout<G> {
    match monitor.snapshot_writer() {
        Some(w) => sink.with_snapshots(w.clone()),
        None => sink,
    }
}

/// Closes every window at the end of the file and completes the statistics.
fn end<W: Write, D: Write>(
    mut monitor: Monitor,
    sink: &mut Fanout<JsonLinesSink<W, D>>,
    outputs: &mut Vec<Output>,
    mut stats: ReplayStats,
) -> anyhow::Result<ReplayStats> {
    monitor.finish(outputs);
    emit(sink, outputs, &mut stats)?;
    sink.gating_mut().flush()?;
    // Snapshots copied to object storage are there when replay returns.
    monitor.finish_snapshots();
    let counts = monitor.counts();
    stats.late = counts.late;
    stats.join_misses = counts.join_misses;
    stats.limits_hit = counts.limits_hit.clone();
    stats.evictions = counts.evictions.clone();
    stats.labels_joined = Outcome::ALL
        .iter()
        .filter(|o| o.joined())
        .map(|&o| counts.events(Some(EventKind::Label), o))
        .sum();
    Ok(stats)
}

/// One line of a replayed stream of an inference server's messages: the Kafka message's
/// headers (text values), key, value and timestamp (epoch milliseconds). A `value` that is a
/// JSON string is the message's text; any other JSON value is the message's JSON itself.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageLine<'a> {
    #[serde(borrow, default)]
    headers: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: &'a RawValue,
    #[serde(default)]
    timestamp: Option<i64>,
}

/// Replays a JSON Lines file of messages of `cfg.input.format` (see [`MessageLine`]): headers
/// as objects of text values, in file order.
fn replay_messages<W: Write, D: Write>(
    cfg: Config,
    input: &Path,
    out: W,
    dead_letters: Option<D>,
) -> anyhow::Result<ReplayStats> {
    let file = std::fs::File::open(input)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", input.display()))?;
    let mut ingest = Ingest::new(&cfg);
    let (mut monitor, name) = start(cfg, input)?;
    let mut sink = with_snapshots(Fanout::new(JsonLinesSink::new(out, dead_letters)), &monitor);
    let mut stats = ReplayStats::default();
    let mut outputs = Vec::new();
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut number = 0i64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if number == 0 {
            skip_bom(&mut line);
        }
        number += 1;
        let payload = trim_line(&line);
        if payload.is_empty() {
            continue;
        }
        stats.lines += 1;
        match parse_message_line(payload) {
            Ok(m) => {
                let headers: Vec<(&str, &[u8])> = m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_ref(), v.as_bytes()))
                    .collect();
                let text;
                let value = match serde_json::from_str::<Cow<'_, str>>(m.value.get()) {
                    Ok(t) => {
                        text = t;
                        text.as_bytes()
                    }
                    Err(_) => m.value.get().as_bytes(),
                };
                let message = Message {
                    topic: &name,
                    partition: 0,
                    offset: number,
                    key: m.key.as_deref().map(str::as_bytes),
                    headers: &headers,
                    timestamp_ms: m.timestamp,
                    payload: value,
                };
                ingest.process(message, &mut monitor, &mut outputs);
            }
            Err(e) => {
                let input = Input {
                    kind: None,
                    topic: &name,
                    partition: 0,
                    offset: number,
                    payload,
                };
                monitor.process_decoded(input, &Err(e), &mut outputs);
            }
        }
        emit(&mut sink, &mut outputs, &mut stats)?;
    }
    ingest.finish(&mut monitor, &mut outputs);
    end(monitor, &mut sink, &mut outputs, stats)
}

fn parse_message_line(line: &[u8]) -> Result<MessageLine<'_>, DecodeError> {
    use serde_json::error::Category;
    let text = std::str::from_utf8(line).map_err(|e| DecodeError::InvalidUtf8(e.to_string()))?;
    serde_json::from_str(text).map_err(|e| {
        let msg = format!("a replayed message ({{headers, key, value, timestamp}}): {e}");
        match e.classify() {
            Category::Eof => DecodeError::Truncated(msg),
            Category::Syntax | Category::Io => DecodeError::NotJson(msg),
            Category::Data if e.to_string().starts_with("missing field") => {
                DecodeError::MissingField(msg)
            }
            Category::Data => DecodeError::WrongType(msg),
        }
    })
}

fn replay_in_chunks<W: Write, D: Write>(
    cfg: Config,
    input: &Path,
    out: W,
    dead_letters: Option<D>,
    chunk_bytes: usize,
    read_bytes: usize,
) -> anyhow::Result<ReplayStats> {
    let file = std::fs::File::open(input)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", input.display()))?;
    let mut reader = ChunkReader {
        inner: file,
        chunk_bytes,
        read_bytes,
    };
    let (mut monitor, name) = start(cfg, input)?;
    let max_bytes = monitor.max_event_bytes();
    let mut sink = with_snapshots(Fanout::new(JsonLinesSink::new(out, dead_letters)), &monitor);
    let mut stats = ReplayStats::default();
    let mut outputs = Vec::new();
    let mut chunk = Vec::with_capacity(chunk_bytes + read_bytes);
    let mut next = Vec::with_capacity(chunk_bytes + read_bytes);
    let mut carry = Vec::new();
    reader.fill(&mut chunk, &mut carry)?;
    skip_bom(&mut chunk);
    let mut number = 0i64;
    while !chunk.is_empty() {
        let first = number;
        number = std::thread::scope(|scope| -> anyhow::Result<i64> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decoded<'_>>>(8);
            let lines = &chunk;
            let (next, carry, reader) = (&mut next, &mut carry, &mut reader);
            let decoder = scope.spawn(move || -> std::io::Result<i64> {
                let mut number = first;
                let mut batch = Vec::with_capacity(BATCH_LINES);
                for line in lines.split_inclusive(|&b| b == b'\n') {
                    number += 1;
                    let payload = trim_line(line);
                    if payload.is_empty() {
                        continue;
                    }
                    let result = decode(payload, None, max_bytes);
                    batch.push(Decoded {
                        number,
                        payload,
                        result,
                    });
                    if batch.len() == BATCH_LINES {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_LINES));
                        if tx.send(full).is_err() {
                            // The processing side stopped on an error.
                            return Ok(number);
                        }
                    }
                }
                if !batch.is_empty() && tx.send(batch).is_err() {
                    return Ok(number);
                }
                drop(tx);
                reader.fill(next, carry)?;
                Ok(number)
            });
            for batch in rx {
                for d in &batch {
                    stats.lines += 1;
                    monitor.process_decoded(
                        Input {
                            kind: None,
                            topic: &name,
                            partition: 0,
                            offset: d.number,
                            payload: d.payload,
                        },
                        &d.result,
                        &mut outputs,
                    );
                    emit(&mut sink, &mut outputs, &mut stats)?;
                }
            }
            Ok(decoder
                .join()
                .expect("the decoding thread does not panic")?)
        })?;
        std::mem::swap(&mut chunk, &mut next);
    }
    end(monitor, &mut sink, &mut outputs, stats)
}

/// Bytes read from the file at a time.
const READ_BYTES: usize = 1 << 20;

/// Reads a file in chunks of whole lines.
struct ChunkReader<R> {
    inner: R,
    /// Bytes a chunk reaches at least, unless the file ends first.
    chunk_bytes: usize,
    /// Bytes asked of `inner` at a time.
    read_bytes: usize,
}

impl<R: Read> ChunkReader<R> {
    /// Fills `buf` with `carry` (the partial line left over last time) and more, up to at
    /// least `chunk_bytes` or the end of the file, cut after the last newline;
    /// what follows it becomes the new `carry`. `buf` stays empty only at the end of the file.
    fn fill(&mut self, buf: &mut Vec<u8>, carry: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        buf.append(carry);
        // The carry has no newline.
        let mut last_newline = None;
        loop {
            let start = buf.len();
            let n = (&mut self.inner)
                .take(self.read_bytes as u64)
                .read_to_end(buf)?;
            if n == 0 {
                // End of file: the last line may lack its newline.
                return Ok(());
            }
            if let Some(i) = buf[start..].iter().rposition(|&b| b == b'\n') {
                last_newline = Some(start + i);
            }
            if let (true, Some(end)) = (buf.len() >= self.chunk_bytes, last_newline) {
                carry.extend_from_slice(&buf[end + 1..]);
                buf.truncate(end + 1);
                return Ok(());
            }
        }
    }
}

/// Drops a UTF-8 byte order mark at the start of a file (editors on Windows write one): it
/// is not part of the first line's JSON.
fn skip_bom(start: &mut Vec<u8>) {
    if start.starts_with(BOM) {
        start.drain(..BOM.len());
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    let bytes = &line[..end];
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        &[]
    } else {
        bytes
    }
}

/// Publishes the monitor's outputs through the same fan-out as the live service, whose gating
/// sink here is the JSON Lines writer.
fn emit<W: Write, D: Write>(
    sink: &mut Fanout<JsonLinesSink<W, D>>,
    outputs: &mut Vec<Output>,
    stats: &mut ReplayStats,
) -> std::io::Result<()> {
    for o in outputs.drain(..) {
        match &o {
            Output::Alert(_) => stats.alerts += 1,
            Output::Trigger(_) => stats.triggers += 1,
            Output::Verdict(_) => stats.verdicts += 1,
            Output::DeadLetter(_) => stats.dead_letters += 1,
        }
        sink.publish(&o)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outputs of a replay, as text.
    fn outputs(run: impl FnOnce(&mut Vec<u8>) -> ReplayStats) -> (ReplayStats, String) {
        let mut out = Vec::new();
        let stats = run(&mut out);
        (stats, String::from_utf8(out).unwrap())
    }

    /// Chunk boundaries anywhere (inside lines, lines longer than a chunk, blank and CRLF lines,
    /// a bad line, a last line without newline) change nothing: the outputs are those of
    /// processing the lines one after the other.
    #[test]
    fn chunked_replay_matches_line_by_line_processing() {
        let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/data_drift_trigger");
        let mut text = std::fs::read(case.join("input.jsonl")).unwrap();
        text.splice(0..0, b"\n  \r\n{not json}\r\n".iter().copied());
        assert_eq!(text.pop(), Some(b'\n'));
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.jsonl");
        std::fs::write(&input, &text).unwrap();
        let mut cfg = Config::load(Some(&case.join("config.toml"))).unwrap();
        cfg.triggers.snapshot_dir = dir.path().join("snapshots");

        let (want_stats, want) = outputs(|out| {
            let baselines = Baselines::load(&cfg).unwrap();
            let mut monitor = Monitor::new(Arc::new(cfg.clone()), baselines, Clock::EventTime)
                .with_snapshots(SnapshotWriter::new(&cfg.triggers.snapshot_dir));
            let mut sink = Fanout::new(JsonLinesSink::new(out, None::<Vec<u8>>));
            let mut stats = ReplayStats::default();
            let mut outputs = Vec::new();
            for (i, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
                let payload = trim_line(line);
                if payload.is_empty() {
                    continue;
                }
                stats.lines += 1;
                let input = Input {
                    kind: None,
                    topic: "input.jsonl",
                    partition: 0,
                    offset: i as i64 + 1,
                    payload,
                };
                monitor.process(input, &mut outputs);
                emit(&mut sink, &mut outputs, &mut stats).unwrap();
            }
            monitor.finish(&mut outputs);
            emit(&mut sink, &mut outputs, &mut stats).unwrap();
            sink.gating_mut().flush().unwrap();
            stats
        });
        assert!(want_stats.triggers > 0 && want_stats.dead_letters == 1);
        for (chunk, read) in [
            (1, 7),
            (1000, 333),
            (50_000, 4096),
            (CHUNK_BYTES, READ_BYTES),
        ] {
            let got = outputs(|out| {
                replay_in_chunks(cfg.clone(), &input, out, None::<Vec<u8>>, chunk, read).unwrap()
            });
            assert_eq!(got.0, want_stats, "chunks of {chunk} bytes");
            assert!(got.1 == want, "chunks of {chunk} bytes: outputs differ");
        }
        // A byte order mark before the first line changes nothing either.
        let with_bom = dir.path().join("bom.jsonl");
        std::fs::write(&with_bom, [BOM, &text[..]].concat()).unwrap();
        let got = outputs(|out| {
            replay_in_chunks(cfg.clone(), &with_bom, out, None::<Vec<u8>>, 1, 2).unwrap()
        });
        assert_eq!(got.0, want_stats, "with a byte order mark");
    }
}
