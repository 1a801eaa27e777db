//! Parquet snapshots of the events behind a retraining trigger: the evidence a retraining job
//! reads. One file per trigger: `<dir>/<model_id>/<model_version>/<trigger_id>.parquet`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex};

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;

use crate::baseline::{FeatureKind, Profile};
use crate::event::{decode, FeatureValue};
use crate::output::SnapshotRef;

/// Messages up to this size are kept as they are (one copy); larger ones are kept as the fields
/// a snapshot reads.
pub const KEEP_RAW_BYTES: usize = 8 << 10;

/// One kept event: the message itself, or (for a large message) the fields a snapshot reads.
#[derive(Debug)]
pub enum KeptEvent {
    /// The message's bytes.
    Raw(Vec<u8>),
    /// The snapshot's fields of a large message.
    Fields(Box<SnapshotRow>),
}

/// The fields of a prediction event that a snapshot writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotRow {
    /// `event_id`.
    pub event_id: String,
    /// Event time, epoch milliseconds.
    pub timestamp_ms: i64,
    /// Prediction score, or value of a regressor.
    pub score: Option<f64>,
    /// Predicted label.
    pub label: Option<String>,
    /// Inference latency.
    pub latency_ms: Option<f64>,
    /// Features: a number, a category, or missing (`None`).
    pub features: Vec<(String, Option<SnapshotValue>)>,
}

/// A feature value of a [`SnapshotRow`].
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotValue {
    /// Numerical.
    Number(f64),
    /// Categorical.
    Text(String),
}

impl SnapshotRow {
    /// The snapshot's fields of a decoded event.
    pub fn of(e: &crate::event::Event<'_>) -> Self {
        let p = e.prediction.as_ref();
        SnapshotRow {
            event_id: e.event_id.to_string(),
            timestamp_ms: e.timestamp_ms,
            score: p.and_then(|p| p.score.or(p.value)),
            label: p.and_then(|p| p.label.as_deref().map(str::to_string)),
            latency_ms: e.latency_ms,
            features: e
                .features
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        FeatureValue::Number(x) => Some(SnapshotValue::Number(*x)),
                        FeatureValue::Text(t) => Some(SnapshotValue::Text(t.to_string())),
                        FeatureValue::Null => None,
                    };
                    (k.to_string(), v)
                })
                .collect(),
        }
    }

    /// Heap and inline bytes this row takes (approximately: allocator overheads left out).
    fn footprint(&self) -> usize {
        let text = |s: &str| s.len();
        std::mem::size_of::<SnapshotRow>()
            + text(&self.event_id)
            + self.label.as_deref().map_or(0, text)
            + self.features.capacity() * std::mem::size_of::<(String, Option<SnapshotValue>)>()
            + self
                .features
                .iter()
                .map(|(k, v)| {
                    k.len()
                        + match v {
                            Some(SnapshotValue::Text(t)) => t.len(),
                            _ => 0,
                        }
                })
                .sum::<usize>()
    }
}

impl KeptEvent {
    /// Bytes it holds.
    fn footprint(&self) -> usize {
        match self {
            KeptEvent::Raw(b) => b.capacity(),
            KeptEvent::Fields(r) => r.footprint(),
        }
    }

    /// Its snapshot row; `None` for a message that does not decode.
    fn row(&self) -> Option<SnapshotRow> {
        match self {
            KeptEvent::Raw(b) => decode(b, None, usize::MAX)
                .ok()
                .map(|e| SnapshotRow::of(&e)),
            KeptEvent::Fields(r) => Some((**r).clone()),
        }
    }
}

/// The most recent prediction events of one model version, bounded in number and in bytes.
/// Messages up to [`KEEP_RAW_BYTES`] are kept whole in reused buffers (a copy, not an
/// allocation); larger ones as the fields a snapshot reads; the oldest go first, and an event
/// that alone exceeds the byte bound is not kept.
#[derive(Debug, Default)]
pub struct RecentEvents {
    buf: VecDeque<(i64, KeptEvent)>,
    cap: usize,
    max_bytes: usize,
    bytes: usize,
    /// A buffer of an evicted small event, for the next one.
    spare: Option<Vec<u8>>,
}

impl RecentEvents {
    /// Keeps at most `cap` events taking at most `max_bytes`.
    pub fn new(cap: usize, max_bytes: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(cap.min(1 << 12)),
            cap,
            max_bytes,
            bytes: 0,
            spare: None,
        }
    }

    /// Keeps one event (a prediction message).
    #[inline]
    pub fn push(&mut self, ts: i64, payload: &[u8]) {
        if self.cap == 0 {
            return;
        }
        if payload.len() > KEEP_RAW_BYTES {
            self.push_large(ts, payload);
            return;
        }
        let mut slot = match self.spare.take() {
            Some(b) if b.capacity() <= 2 * payload.len().max(256) => b,
            _ => Vec::with_capacity(payload.len()),
        };
        slot.clear();
        // Exactly the message's length when the reused buffer is short (no doubling).
        slot.reserve_exact(payload.len());
        slot.extend_from_slice(payload);
        self.keep(ts, KeptEvent::Raw(slot));
    }

    /// Keeps `kept`, the oldest events out while it does not fit; not at all when it alone
    /// exceeds the bound.
    fn keep(&mut self, ts: i64, kept: KeptEvent) {
        let size = kept.footprint();
        if size > self.max_bytes {
            return;
        }
        while !self.buf.is_empty()
            && (self.buf.len() >= self.cap || self.bytes + size > self.max_bytes)
        {
            self.evict();
        }
        self.bytes += size;
        self.buf.push_back((ts, kept));
    }

    /// A message larger than [`KEEP_RAW_BYTES`]: its snapshot fields, if they fit at all.
    #[cold]
    #[inline(never)]
    fn push_large(&mut self, ts: i64, payload: &[u8]) {
        let Ok(e) = decode(payload, None, usize::MAX) else {
            return;
        };
        self.keep(ts, KeptEvent::Fields(Box::new(SnapshotRow::of(&e))));
    }

    fn evict(&mut self) {
        if let Some((_, old)) = self.buf.pop_front() {
            self.bytes -= old.footprint();
            if let KeptEvent::Raw(b) = old {
                self.spare = Some(b);
            }
        }
    }

    /// Bytes the kept events take (at most the configured bound).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of kept events.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Events with `start <= ts < end`.
    pub fn between(&self, start: i64, end: i64) -> impl Iterator<Item = &KeptEvent> {
        self.buf
            .iter()
            .filter(move |(ts, _)| *ts >= start && *ts < end)
            .map(|(_, k)| k)
    }
}

/// Errors of writing a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Arrow or Parquet.
    #[error("{path}: {reason}")]
    Encode {
        /// File.
        path: String,
        /// Cause.
        reason: String,
    },
}

/// Writes snapshots under a directory, on a thread of its own: the consumer loop hands over
/// the rows ([`SnapshotWriter::submit`]) and goes on; the source waits for the writes
/// ([`SnapshotWriter::wait_written`]) only before it publishes the triggers that name them.
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    dir: PathBuf,
    /// Copies each snapshot to object storage, when configured.
    uploader: Option<Arc<super::s3::Uploader>>,
    queue: Arc<WriteQueue>,
}

/// Snapshots handed over and not written yet, at most; beyond, handing one over waits.
const WRITE_QUEUE: usize = 8;

/// Snapshot writes, by outcome (exported as `driftwatch_snapshot_writes_total{outcome}`).
#[derive(Debug, Default)]
pub struct WriteCounts {
    /// Files written.
    pub written: AtomicU64,
    /// Writes that failed (logged with the cause; the trigger names a file that is not there).
    pub failed: AtomicU64,
}

/// One snapshot to write.
struct Job {
    path: PathBuf,
    profile: Arc<Profile>,
    rows: Vec<SnapshotRow>,
    /// Where the file is copied to in object storage, under which relative name.
    upload: Option<(Arc<super::s3::Uploader>, String)>,
}

/// The writer thread and what it has still to do.
#[derive(Debug)]
struct WriteQueue {
    tx: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Jobs handed over and not finished.
    pending: Mutex<usize>,
    finished: Condvar,
    counts: Arc<WriteCounts>,
}

impl WriteQueue {
    fn start() -> Arc<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(WRITE_QUEUE);
        let queue = Arc::new(WriteQueue {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(None),
            pending: Mutex::new(0),
            finished: Condvar::new(),
            counts: Arc::default(),
        });
        // The thread holds what it reports to, not the queue: dropping the last writer closes
        // the channel, and the thread ends once it has written what was handed over.
        let (done, counts) = (Arc::downgrade(&queue), Arc::clone(&queue.counts));
        let thread = std::thread::Builder::new()
            .name("snapshot-write".into())
            .spawn(move || {
                for job in rx {
                    match write_rows(&job.path, &job.profile, &job.rows) {
                        Ok(()) => {
                            counts.written.fetch_add(1, Ordering::Relaxed);
                            if let Some((uploader, relative)) = &job.upload {
                                uploader.upload(job.path.clone(), relative);
                            }
                        }
                        Err(e) => {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %e, "snapshot not written");
                        }
                    }
                    if let Some(q) = done.upgrade() {
                        q.finish_one();
                    }
                }
            });
        match thread {
            Ok(t) => *queue.thread.lock().expect("not poisoned") = Some(t),
            Err(e) => {
                // Without a thread, jobs are written where they are handed over.
                tracing::warn!(error = %e, "snapshots written on the consumer loop");
                queue.tx.lock().expect("not poisoned").take();
            }
        }
        queue
    }

    fn finish_one(&self) {
        let mut pending = self.pending.lock().expect("not poisoned");
        *pending -= 1;
        if *pending == 0 {
            self.finished.notify_all();
        }
    }

    /// Hands a job to the thread (waiting while the queue is full), or writes it here when
    /// there is no thread.
    fn submit(&self, job: Job) {
        *self.pending.lock().expect("not poisoned") += 1;
        let tx = self.tx.lock().expect("not poisoned").clone();
        let job = match tx {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(job)) => job,
            },
            None => job,
        };
        match write_rows(&job.path, &job.profile, &job.rows) {
            Ok(()) => {
                self.counts.written.fetch_add(1, Ordering::Relaxed);
                if let Some((uploader, relative)) = &job.upload {
                    uploader.upload(job.path.clone(), relative);
                }
            }
            Err(e) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "snapshot not written");
            }
        }
        self.finish_one();
    }

    fn wait(&self) {
        let mut pending = self.pending.lock().expect("not poisoned");
        while *pending > 0 {
            pending = self.finished.wait(pending).expect("not poisoned");
        }
    }
}

impl Drop for WriteQueue {
    fn drop(&mut self) {
        self.tx.lock().expect("not poisoned").take();
        if let Some(t) = self.thread.lock().expect("not poisoned").take() {
            let _ = t.join();
        }
    }
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl SnapshotWriter {
    /// Writer under `dir` (created on first use).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            uploader: None,
            queue: WriteQueue::start(),
        }
    }

    /// The writer `cfg` configures: under `triggers.snapshot_dir`, copying to object storage
    /// when `storage.snapshots_url` is set (credentials from the environment variables it
    /// names; an error says which is missing).
    pub fn from_config(cfg: &crate::config::Config) -> anyhow::Result<Self> {
        let writer = Self::new(&cfg.triggers.snapshot_dir);
        match super::s3::S3Target::from_config(&cfg.storage, |k| std::env::var(k).ok())
            .map_err(anyhow::Error::msg)?
        {
            Some(target) => {
                Ok(writer.with_uploader(std::sync::Arc::new(super::s3::Uploader::start(target)?)))
            }
            None => Ok(writer),
        }
    }

    /// Also copies every snapshot to object storage (see [`super::s3`]).
    pub fn with_uploader(mut self, uploader: std::sync::Arc<super::s3::Uploader>) -> Self {
        self.uploader = Some(uploader);
        self
    }

    /// Upload counts, when snapshots are copied to object storage.
    pub fn upload_counts(&self) -> Option<std::sync::Arc<super::s3::UploadCounts>> {
        self.uploader.as_deref().map(super::s3::Uploader::counts)
    }

    /// Write counts.
    pub fn write_counts(&self) -> Arc<WriteCounts> {
        Arc::clone(&self.queue.counts)
    }

    /// Waits until every snapshot handed over is written (or failed).
    pub fn wait_written(&self) {
        self.queue.wait();
    }

    /// Waits for the snapshots handed over, then for their copies to object storage.
    pub fn finish(&self) {
        self.queue.wait();
        if let Some(u) = self.uploader.as_deref() {
            u.finish();
        }
    }

    /// Hands the events over to be written as Parquet on the writer's thread, at
    /// `<dir>/<model_id>/<version>/<trigger_id>.parquet` (see [`write_rows`] for the columns),
    /// and says where the file will be: its path, rows and copy in object storage.
    pub fn submit<'a>(
        &self,
        model_id: &str,
        version: &str,
        trigger_id: &str,
        profile: &Arc<Profile>,
        events: impl Iterator<Item = &'a KeptEvent>,
    ) -> SnapshotRef {
        let relative = format!(
            "{}/{}/{}.parquet",
            safe(model_id),
            safe(version),
            safe(trigger_id)
        );
        let path = self.dir.join(&relative);
        let rows: Vec<SnapshotRow> = events.filter_map(KeptEvent::row).collect();
        let upload = self
            .uploader
            .as_ref()
            .map(|u| (Arc::clone(u), relative.clone()));
        let snapshot = SnapshotRef {
            format: "parquet".into(),
            path: path.display().to_string(),
            events: rows.len(),
            note: "the most recent events of the window, at most triggers.snapshot_events".into(),
            url: upload.as_ref().map(|(u, r)| u.url_of(r)),
        };
        self.queue.submit(Job {
            path,
            profile: Arc::clone(profile),
            rows,
            upload,
        });
        snapshot
    }
}

/// Writes the rows as Parquet at `path` (through a temporary file renamed into place, so the
/// path never shows a partial file): `event_id`, `timestamp`, one column per profile feature
/// (Float64 or Utf8), `prediction_score`, `prediction_label`, `latency_ms`.
fn write_rows(path: &Path, profile: &Profile, rows: &[SnapshotRow]) -> Result<(), SnapshotError> {
    let shown = path.display().to_string();
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| SnapshotError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut ids = StringBuilder::new();
    let mut ts = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut score = Float64Builder::new();
    let mut label = StringBuilder::new();
    let mut latency = Float64Builder::new();
    enum Col {
        Num(Float64Builder),
        Text(StringBuilder),
    }
    let mut cols: Vec<Col> = profile
        .features
        .iter()
        .map(|f| match f.kind {
            FeatureKind::Numeric(_) => Col::Num(Float64Builder::new()),
            FeatureKind::Categorical(_) => Col::Text(StringBuilder::new()),
        })
        .collect();
    let index = profile.feature_index();
    for e in rows {
        ids.append_value(&e.event_id);
        ts.append_value(e.timestamp_ms);
        score.append_option(e.score);
        label.append_option(e.label.as_deref());
        latency.append_option(e.latency_ms);
        let mut row: Vec<Option<&SnapshotValue>> = vec![None; cols.len()];
        for (k, v) in &e.features {
            if let Some(&i) = index.get(k.as_str()) {
                row[i] = v.as_ref();
            }
        }
        for (c, v) in cols.iter_mut().zip(&row) {
            match (c, v) {
                (Col::Num(b), Some(SnapshotValue::Number(x))) => b.append_value(*x),
                (Col::Num(b), _) => b.append_null(),
                (Col::Text(b), Some(SnapshotValue::Text(s))) => b.append_value(s),
                (Col::Text(b), _) => b.append_null(),
            }
        }
    }
    let mut fields = vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(ids.finish()), Arc::new(ts.finish())];
    for (f, c) in profile.features.iter().zip(cols) {
        match c {
            Col::Num(mut b) => {
                fields.push(Field::new(&f.name, DataType::Float64, true));
                arrays.push(Arc::new(b.finish()));
            }
            Col::Text(mut b) => {
                fields.push(Field::new(&f.name, DataType::Utf8, true));
                arrays.push(Arc::new(b.finish()));
            }
        }
    }
    fields.push(Field::new("prediction_score", DataType::Float64, true));
    arrays.push(Arc::new(score.finish()));
    fields.push(Field::new("prediction_label", DataType::Utf8, true));
    arrays.push(Arc::new(label.finish()));
    fields.push(Field::new("latency_ms", DataType::Float64, true));
    arrays.push(Arc::new(latency.finish()));
    let schema = Arc::new(Schema::new(fields));
    let enc = |e: &dyn std::fmt::Display| SnapshotError::Encode {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| enc(&e))?;
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(|source| SnapshotError::Io {
        path: tmp.display().to_string(),
        source,
    })?;
    let mut w = ArrowWriter::try_new(file, schema, None).map_err(|e| enc(&e))?;
    w.write(&batch).map_err(|e| enc(&e))?;
    w.close().map_err(|e| enc(&e))?;
    std::fs::rename(&tmp, path).map_err(|source| SnapshotError::Io {
        path: shown.clone(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prediction message of about `size` bytes: 20 numerical features and, for large
    /// ones, a category of `size` bytes (which the snapshot keeps) or padding in an attribute
    /// (which it does not).
    fn message(i: usize, size: usize, big_feature: bool) -> Vec<u8> {
        let features: String = (0..20)
            .map(|f| format!("\"f{f}\":{}.25,", i + f))
            .collect::<String>();
        let pad = "x".repeat(size);
        let (feature, attribute) = if big_feature {
            (format!(",\"blob\":\"{pad}\""), String::new())
        } else {
            (
                String::new(),
                format!(",\"attributes\":{{\"note\":\"{pad}\"}}"),
            )
        };
        format!(
            "{{\"event_id\":\"e{i}\",\"model_id\":\"m\",\"model_version\":\"v1\",\
             \"timestamp\":{ts},\"features\":{{{features}\"c\":\"a\"{feature}}},\
             \"prediction\":{{\"score\":0.5,\"label\":1}},\"latency_ms\":3.0{attribute}}}",
            ts = 1_700_000_000_000i64 + i as i64,
            features = features.trim_end_matches(',').to_string() + ",",
        )
        .into_bytes()
    }

    #[test]
    fn large_events_stay_within_the_byte_bound() {
        let bound = 4 << 20;
        for big_feature in [true, false] {
            let mut recent = RecentEvents::new(5000, bound);
            let mut most = 0;
            for i in 0..400 {
                let m = message(i, 500_000, big_feature);
                assert!(decode(&m, None, usize::MAX).is_ok());
                recent.push(i as i64, &m);
                let held: usize = recent.buf.iter().map(|(_, k)| k.footprint()).sum();
                assert_eq!(held, recent.bytes());
                most = most.max(recent.bytes());
            }
            assert!(most <= bound, "{most}");
            assert!(!recent.is_empty());
            if big_feature {
                // Half a megabyte each: eight fit.
                assert_eq!(recent.len(), bound / 500_100);
            } else {
                // The padding is not part of a snapshot: every event fits, a few KiB each.
                assert_eq!(recent.len(), 400);
                assert!(recent.bytes() < 400 * 4096, "{}", recent.bytes());
            }
            // The newest are the ones kept, with what the snapshot writes.
            let last = recent.between(399, 400).next().expect("newest kept");
            let row = last.row().expect("decodes");
            assert_eq!(row.event_id, "e399");
            assert_eq!(row.score, Some(0.5));
            assert_eq!(
                row.features[0],
                ("f0".into(), Some(SnapshotValue::Number(399.25)))
            );
        }
    }

    #[test]
    fn small_events_bounded_by_count_and_bytes() {
        let mut recent = RecentEvents::new(100, 1 << 20);
        for i in 0..1000 {
            recent.push(i, &message(i as usize, 0, false));
        }
        assert_eq!(recent.len(), 100);
        let ts: Vec<i64> = recent.buf.iter().map(|(t, _)| *t).collect();
        assert_eq!(ts, (900..1000).collect::<Vec<_>>());
        let m = message(0, 0, false);
        let mut tight = RecentEvents::new(100, 10 * m.len());
        for i in 0..50 {
            tight.push(i, &message(i as usize, 0, false));
            assert!(tight.bytes() <= 10 * m.len());
        }
        assert!(tight.len() >= 5 && tight.len() <= 10, "{}", tight.len());
        // Events between two times, in order.
        let rows: Vec<String> = tight
            .between(45, 48)
            .map(|k| k.row().expect("decodes").event_id)
            .collect();
        assert_eq!(rows, ["e45", "e46", "e47"]);
    }

    #[test]
    fn nothing_kept_without_room() {
        let mut off = RecentEvents::new(0, 1 << 20);
        off.push(1, &message(1, 0, false));
        assert!(off.is_empty());
        let mut tiny = RecentEvents::new(10, 100);
        tiny.push(1, &message(1, 0, false));
        tiny.push(2, &message(2, 20_000, true));
        assert!(tiny.is_empty());
        assert_eq!(tiny.bytes(), 0);
    }

    /// A profile of the 20 numerical features and the category `c` of [`message`].
    fn profile() -> Arc<Profile> {
        use crate::baseline::{BuildLimits, ProfileBuilder};
        let mut b = ProfileBuilder::new("m", Some("v1"), "test", BuildLimits::default());
        for i in 0..50 {
            let m = message(i, 0, false);
            let e = decode(&m, None, usize::MAX).unwrap();
            for (k, v) in &e.features {
                b.push_feature(k, v);
            }
            b.end_row();
        }
        Arc::new(b.finish().unwrap())
    }

    #[test]
    fn snapshots_are_written_on_the_writer_thread_and_named_before() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let dir = tempfile::tempdir().unwrap();
        let writer = SnapshotWriter::new(&dir.path().join("snapshots"));
        let mut recent = RecentEvents::new(100, 1 << 20);
        for i in 0..30 {
            recent.push(i as i64, &message(i, 0, false));
        }
        let profile = profile();
        let named: Vec<SnapshotRef> = (0..3)
            .map(|n| {
                writer.submit(
                    "m",
                    "v/1",
                    &format!("t{n}"),
                    &profile,
                    recent.between(10, 20),
                )
            })
            .collect();
        writer.wait_written();
        for (n, s) in named.iter().enumerate() {
            assert_eq!(s.events, 10);
            assert!(
                s.path.ends_with(&format!("m/v_1/t{n}.parquet")),
                "{}",
                s.path
            );
            assert_eq!(s.url, None);
            let file = std::fs::File::open(&s.path).expect("written once waited for");
            let rows = SerializedFileReader::new(file)
                .unwrap()
                .metadata()
                .file_metadata()
                .num_rows();
            assert_eq!(rows, 10);
        }
        let counts = writer.write_counts();
        assert_eq!(counts.written.load(Ordering::Relaxed), 3);
        assert_eq!(counts.failed.load(Ordering::Relaxed), 0);
        // A directory that cannot be created: counted, and nothing to wait for after it.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"not a directory").unwrap();
        let writer = SnapshotWriter::new(&blocked);
        let s = writer.submit("m", "v1", "t", &profile, recent.between(0, 5));
        writer.finish();
        assert_eq!(s.events, 5);
        assert_eq!(writer.write_counts().failed.load(Ordering::Relaxed), 1);
        assert!(!Path::new(&s.path).exists());
    }
}
