//! `driftwatch baseline build`: a reference profile from a Parquet, CSV or JSON Lines file.
//!
//! Two layouts are understood. A file of prediction events (columns `features.*`,
//! `prediction.*`, `latency_ms`, `label`) uses the nested features; a flat training table uses
//! every column that is not an id, time, prediction, label, latency or attribute column, or the
//! columns named with `--features`.
//!
//! Reading the file takes DataFusion, the cargo feature `datafusion` (on by default); a binary
//! built without it answers `baseline build` with an error that says so.

use std::path::Path;

#[cfg(feature = "datafusion")]
use crate::baseline::table::{read_table, Column, ColumnData, Table};
#[cfg(feature = "datafusion")]
use crate::baseline::ProfileBuilder;
use crate::baseline::{BaselineError, BuildLimits, Profile};
#[cfg(feature = "datafusion")]
use crate::event::FeatureValue;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Model id.
    pub model_id: String,
    /// Model version, if the profile is version-specific.
    pub model_version: Option<String>,
    /// Feature columns; empty means all non-reserved columns.
    pub features: Vec<String>,
    /// Ground-truth column of a flat table (default: `label` when present).
    pub label_column: Option<String>,
    /// Limits.
    pub limits: BuildLimits,
}

#[cfg(feature = "datafusion")]
const RESERVED: [&str; 6] = [
    "event_id",
    "model_id",
    "model_version",
    "timestamp",
    "latency_ms",
    "label",
];

#[cfg(feature = "datafusion")]
fn is_reserved(name: &str, label: Option<&str>) -> bool {
    RESERVED.contains(&name)
        || Some(name) == label
        || name == "value"
        || name.starts_with("prediction")
        || name.starts_with("attributes.")
}

#[cfg(feature = "datafusion")]
fn value_at(c: &Column, row: usize) -> FeatureValue<'_> {
    match &c.data {
        ColumnData::Numeric(v) => v[row].map_or(FeatureValue::Null, FeatureValue::Number),
        ColumnData::Text(v) => v[row]
            .as_deref()
            .map_or(FeatureValue::Null, |s| FeatureValue::Text(s.into())),
    }
}

#[cfg(feature = "datafusion")]
fn text_at(c: &Column, row: usize) -> Option<String> {
    match &c.data {
        ColumnData::Numeric(v) => v[row].map(|x| {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{}", x as i64)
            } else {
                x.to_string()
            }
        }),
        ColumnData::Text(v) => v[row].clone(),
    }
}

#[cfg(feature = "datafusion")]
fn number_at(c: &Column, row: usize) -> Option<f64> {
    match &c.data {
        ColumnData::Numeric(v) => v[row],
        ColumnData::Text(_) => None,
    }
}

#[cfg(feature = "datafusion")]
fn data_err(path: &Path, msg: String) -> BaselineError {
    BaselineError::Data(format!("{}: {msg}", path.display()))
}

/// Builds a profile from `path`.
#[cfg(feature = "datafusion")]
pub async fn from_file(path: &Path, opts: &BuildOptions) -> Result<Profile, BaselineError> {
    let table = read_table(path)
        .await
        .map_err(|e| BaselineError::Data(e.to_string()))?;
    from_table(&table, opts)
}

/// Builds a profile from `path`: not in this binary, which was built without DataFusion.
#[cfg(not(feature = "datafusion"))]
pub async fn from_file(path: &Path, _opts: &BuildOptions) -> Result<Profile, BaselineError> {
    Err(BaselineError::Data(format!(
        "{}: `baseline build` needs the cargo feature `datafusion`, which this binary was built \
         without (build it with the default features, e.g. `cargo build --release`)",
        path.display()
    )))
}

/// Builds a profile from a table already read.
#[cfg(feature = "datafusion")]
pub fn from_table(table: &Table, opts: &BuildOptions) -> Result<Profile, BaselineError> {
    let path = table.path.as_path();
    if table.rows == 0 {
        return Err(data_err(path, "no rows".into()));
    }
    let events_layout = table
        .columns
        .iter()
        .any(|c| c.name.starts_with("features."));
    let label_name = opts.label_column.clone().or_else(|| {
        ["label", "value"]
            .into_iter()
            .find(|n| table.column(n).is_some())
            .map(str::to_string)
    });
    if let Some(l) = &opts.label_column {
        if table.column(l).is_none() {
            return Err(data_err(path, format!("label column `{l}` does not exist")));
        }
    }
    // (profile name, column)
    let mut features: Vec<(String, &Column)> = Vec::new();
    if opts.features.is_empty() {
        for c in &table.columns {
            if events_layout {
                if let Some(n) = c.name.strip_prefix("features.") {
                    features.push((n.to_string(), c));
                }
            } else if !is_reserved(&c.name, label_name.as_deref()) {
                features.push((c.name.clone(), c));
            }
        }
    } else {
        for name in &opts.features {
            let c = table
                .column(name)
                .or_else(|| table.column(&format!("features.{name}")))
                .ok_or_else(|| data_err(path, format!("feature column `{name}` does not exist")))?;
            features.push((name.clone(), c));
        }
    }
    if features.is_empty() {
        return Err(data_err(path, "no feature columns".into()));
    }
    let score = table
        .column("prediction.score")
        .or_else(|| table.column("prediction.value"))
        .or_else(|| table.column("prediction"));
    if let Some(c) = score {
        if matches!(c.data, ColumnData::Text(_)) {
            return Err(data_err(
                path,
                format!("column `{}` must be numeric, found text", c.name),
            ));
        }
    }
    let predicted = table.column("prediction.label");
    let latency = table.column("latency_ms");
    if let Some(c) = latency {
        if matches!(c.data, ColumnData::Text(_)) {
            return Err(data_err(
                path,
                "column `latency_ms` must be numeric, found text".into(),
            ));
        }
    }
    let label = label_name.as_deref().and_then(|n| table.column(n));
    let mut b = ProfileBuilder::new(
        &opts.model_id,
        opts.model_version.as_deref(),
        &format!("file:{}", path.display()),
        opts.limits,
    );
    for row in 0..table.rows {
        for (name, c) in &features {
            b.push_feature(name, &value_at(c, row));
        }
        let s = score.and_then(|c| number_at(c, row));
        let p = predicted.and_then(|c| text_at(c, row));
        if s.is_some() || p.is_some() {
            b.push_prediction(s, p.as_deref());
        }
        if let Some(l) = latency.and_then(|c| number_at(c, row)) {
            b.push_latency(l);
        }
        if let Some(c) = label {
            let is_value = label_name.as_deref() == Some("value")
                || (matches!(c.data, ColumnData::Numeric(_))
                    && predicted.is_none()
                    && score.is_some()
                    && table.column("prediction.value").is_some());
            if is_value {
                b.push_label(None, number_at(c, row), (None, s));
            } else {
                let t = text_at(c, row);
                b.push_label(t.as_deref(), None, (p.as_deref(), None));
            }
        }
        b.end_row();
    }
    b.finish()
}
