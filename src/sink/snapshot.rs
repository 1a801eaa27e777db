//! Parquet snapshots of the events behind a retraining trigger: the evidence a retraining job
//! reads. One file per trigger: `<dir>/<model_id>/<model_version>/<trigger_id>.parquet`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;

use crate::baseline::{FeatureKind, Profile};
use crate::event::{decode, FeatureValue};

/// The most recent raw prediction events of one model version, bounded; buffers are reused so
/// keeping an event costs a copy, not an allocation.
#[derive(Debug, Default)]
pub struct RecentEvents {
    buf: VecDeque<(i64, Vec<u8>)>,
    cap: usize,
}

impl RecentEvents {
    /// Keeps at most `cap` events.
    pub fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(cap.min(1 << 16)),
            cap,
        }
    }

    /// Keeps one event.
    #[inline]
    pub fn push(&mut self, ts: i64, payload: &[u8]) {
        if self.cap == 0 {
            return;
        }
        let mut slot = if self.buf.len() >= self.cap {
            self.buf.pop_front().expect("full").1
        } else {
            Vec::with_capacity(payload.len())
        };
        slot.clear();
        slot.extend_from_slice(payload);
        self.buf.push_back((ts, slot));
    }

    /// Events with `start <= ts < end`.
    pub fn between(&self, start: i64, end: i64) -> impl Iterator<Item = &[u8]> {
        self.buf
            .iter()
            .filter(move |(ts, _)| *ts >= start && *ts < end)
            .map(|(_, b)| b.as_slice())
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

/// Writes snapshots under a directory.
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    dir: PathBuf,
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
        }
    }

    /// Writes the events as Parquet: `event_id`, `timestamp`, one column per profile feature
    /// (Float64 or Utf8), `prediction_score`, `prediction_label`, `latency_ms`. Returns the
    /// path and the number of rows.
    pub fn write<'a>(
        &self,
        model_id: &str,
        version: &str,
        trigger_id: &str,
        profile: &Profile,
        events: impl Iterator<Item = &'a [u8]>,
    ) -> Result<(PathBuf, usize), SnapshotError> {
        let dir = self.dir.join(safe(model_id)).join(safe(version));
        let path = dir.join(format!("{}.parquet", safe(trigger_id)));
        let shown = path.display().to_string();
        std::fs::create_dir_all(&dir).map_err(|source| SnapshotError::Io {
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
        let mut rows = 0;
        let mut row: Vec<Option<FeatureValue<'_>>> = vec![None; cols.len()];
        for bytes in events {
            let Ok(e) = decode(bytes, None, usize::MAX) else {
                continue;
            };
            rows += 1;
            ids.append_value(&e.event_id);
            ts.append_value(e.timestamp_ms);
            let p = e.prediction.as_ref();
            score.append_option(p.and_then(|p| p.score.or(p.value)));
            label.append_option(p.and_then(|p| p.label.as_deref()));
            latency.append_option(e.latency_ms);
            row.iter_mut().for_each(|v| *v = None);
            for (k, v) in &e.features {
                if let Some(&i) = index.get(k.as_ref()) {
                    row[i] = Some(v.clone());
                }
            }
            for (c, v) in cols.iter_mut().zip(&row) {
                match (c, v) {
                    (Col::Num(b), Some(FeatureValue::Number(x))) => b.append_value(*x),
                    (Col::Num(b), _) => b.append_null(),
                    (Col::Text(b), Some(FeatureValue::Text(s))) => b.append_value(s),
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
        std::fs::rename(&tmp, &path).map_err(|source| SnapshotError::Io {
            path: shown.clone(),
            source,
        })?;
        Ok((path, rows))
    }
}
