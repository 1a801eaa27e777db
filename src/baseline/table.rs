//! Reading training / reference data files into memory with Apache DataFusion.
//!
//! A reference profile is built from a *reference table*: the training set, a
//! validation set, or a dump of logged prediction events. [`read_table`] loads
//! such a file completely into memory as a [`Table`] of named columns, each
//! either [`ColumnData::Numeric`] (`f64`) or [`ColumnData::Text`] (`String`),
//! with `None` for null / missing values.
//!
//! # Formats
//!
//! The format is chosen by file extension (case-insensitive):
//!
//! | extension                  | format                                    |
//! |----------------------------|-------------------------------------------|
//! | `.parquet`                 | Apache Parquet                            |
//! | `.csv`                     | CSV with a header row                     |
//! | `.jsonl`, `.ndjson`        | JSON Lines (one object per line)          |
//! | `.json`                    | JSON Lines; a file whose first non-blank character is `[` is read as one JSON array of objects |
//!
//! CSV and JSON schemas are inferred from up to [`SCHEMA_INFER_MAX_RECORDS`]
//! rows, so a column whose early rows are integers and later rows are floats is
//! still read as a float column.
//!
//! # Columns
//!
//! * Struct columns (e.g. the `features`, `prediction` and `attributes` objects
//!   of a prediction event) are flattened **one level** into dotted names:
//!   `features.income`, `prediction.score`, ... A row whose struct is null or
//!   absent yields `None` in every child column. Structs nested deeper than one
//!   level are not flattened further; they are skipped like other unsupported types.
//! * Integer, float and decimal types become [`ColumnData::Numeric`]; booleans
//!   become numeric `0.0` / `1.0`.
//! * `Utf8`, `LargeUtf8`, `Utf8View` and dictionary-encoded strings become
//!   [`ColumnData::Text`]; dictionary-encoded numbers become numeric.
//! * Timestamps and dates become [`ColumnData::Text`] in RFC 3339 form:
//!   timestamps as UTC instants (`2026-01-01T00:00:00Z`, fractional seconds only
//!   when non-zero; a timestamp without time zone is taken to be UTC), dates as
//!   `2026-01-01`.
//! * Every other type (lists, maps, binary, times of day, durations, all-null
//!   columns, deeper structs, ...) is **skipped**, not an error: its name and
//!   Arrow type are recorded in [`Table::skipped`].
//!
//! Rows are returned in file order (the scan runs with a single partition), and
//! columns in file order: for JSON, the order in which keys first appear in the
//! first few MiB of the file (keys first seen later follow alphabetically).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, StructArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    ArrowTimestampType, DataType, Date32Type, Date64Type, Float64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::prelude::{
    CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionConfig, SessionContext,
};

/// Maximum number of rows DataFusion reads from a CSV / JSON file to infer its
/// schema.
///
/// DataFusion's default (1000) can infer `Int64` for a column whose later rows
/// hold floats, which then fails (or truncates) at read time; reading many rows
/// makes the inferred type cover the whole of any realistic reference file.
pub const SCHEMA_INFER_MAX_RECORDS: usize = 100_000;

/// Name under which the file is registered in the private DataFusion session.
const TABLE_NAME: &str = "reference";

/// How much of a JSON file is scanned for the order of its keys.
const JSON_KEY_SCAN_BYTES: u64 = 4 << 20;

/// How many column names a "missing column" error lists at most.
const MAX_LISTED_COLUMNS: usize = 30;

/// Column values as read, one entry per row; `None` = null/missing.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// Integer, float, decimal or boolean (`0.0` / `1.0`) values as `f64`.
    Numeric(Vec<Option<f64>>),
    /// String values; timestamps and dates rendered as RFC 3339 text.
    Text(Vec<Option<String>>),
}

impl ColumnData {
    /// Number of rows (entries, including `None`s).
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Numeric(v) => v.len(),
            ColumnData::Text(v) => v.len(),
        }
    }

    /// `true` if the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of `None` (null / missing) entries.
    pub fn null_count(&self) -> usize {
        match self {
            ColumnData::Numeric(v) => v.iter().filter(|x| x.is_none()).count(),
            ColumnData::Text(v) => v.iter().filter(|x| x.is_none()).count(),
        }
    }

    /// `"numeric"` or `"text"`; used in error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ColumnData::Numeric(_) => "numeric",
            ColumnData::Text(_) => "text",
        }
    }
}

/// One named column of a [`Table`].
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name; children of struct columns are named `parent.child`.
    pub name: String,
    /// The column's values, one per row of the table.
    pub data: ColumnData,
}

/// A reference data file read completely into memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The file the table was read from, as passed to [`read_table`].
    pub path: PathBuf,
    /// Number of rows; every column holds exactly this many entries.
    pub rows: usize,
    /// Supported columns in file order (struct children in place of their parent).
    pub columns: Vec<Column>,
    /// Columns that were not read because their type is not supported, as
    /// `(name, Arrow data type)`, in file order.
    pub skipped: Vec<(String, String)>,
}

impl Table {
    /// The column called `name` (exact, case-sensitive match), if it was read.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Names of all columns that were read, in order.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }
}

/// Errors from reading a reference table or looking up its columns.
///
/// Every message names the file, and the column where one is involved.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file does not exist.
    #[error("reference data file {} does not exist", .path.display())]
    NotFound {
        /// The file that was asked for.
        path: PathBuf,
    },
    /// The path exists but is not a regular file (e.g. a directory).
    #[error("reference data path {} is not a regular file", .path.display())]
    NotAFile {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The file (or its metadata) could not be accessed.
    #[error("cannot access reference data file {}: {source}", .path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path is not valid UTF-8, which DataFusion requires.
    #[error("reference data file path {} is not valid UTF-8", .path.display())]
    InvalidPath {
        /// The file that was asked for.
        path: PathBuf,
    },
    /// The extension does not name a supported format.
    #[error(
        "unsupported reference data file {}: extension {} is not one of \
         .parquet, .csv, .jsonl, .ndjson, .json",
        .path.display(),
        if .extension.is_empty() { "(none)".to_string() } else { format!("`.{}`", .extension) }
    )]
    UnsupportedFormat {
        /// The file that was asked for.
        path: PathBuf,
        /// Its extension without the dot (empty if it has none).
        extension: String,
    },
    /// DataFusion could not read the file: corrupt / truncated data, a file whose
    /// content does not match its extension, rows that do not fit the inferred
    /// schema, ...
    #[error("cannot read reference data file {} as {format}: {source}", .path.display())]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// The format the file was read as (`parquet`, `csv`, `json`).
        format: &'static str,
        /// The DataFusion error.
        #[source]
        source: Box<DataFusionError>,
    },
    /// A column's values could not be converted.
    #[error(
        "cannot convert column `{column}` of type {data_type} in reference data file {}: {source}",
        .path.display()
    )]
    Convert {
        /// The file that was read.
        path: PathBuf,
        /// The column being converted.
        column: String,
        /// The column's Arrow data type.
        data_type: String,
        /// The Arrow error.
        #[source]
        source: ArrowError,
    },
    /// The file was read but holds zero rows (e.g. an empty file or a CSV with
    /// only a header).
    #[error("reference data file {} has no rows", .path.display())]
    NoRows {
        /// The file that was read.
        path: PathBuf,
    },
    /// A required column is not in the table.
    #[error(
        "column `{column}` not found in reference data file {} (columns: {available})",
        .path.display()
    )]
    MissingColumn {
        /// The table's file.
        path: PathBuf,
        /// The requested column.
        column: String,
        /// The columns the table does have, comma-separated (possibly abbreviated).
        available: String,
    },
    /// A required column has the wrong type.
    #[error(
        "column `{column}` in reference data file {} is {actual}, expected {expected}",
        .path.display()
    )]
    WrongType {
        /// The table's file.
        path: PathBuf,
        /// The requested column.
        column: String,
        /// The type that was required (`numeric` or `text`).
        expected: &'static str,
        /// The column's actual type: `numeric`, `text`, or the Arrow type of a
        /// skipped column.
        actual: String,
    },
}

/// Supported file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Parquet,
    Csv,
    Json,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

/// Reads the whole file at `path` into a [`Table`].
///
/// The format is chosen by extension (see the [module docs](self)). The file is
/// registered with a fresh DataFusion [`SessionContext`] and scanned in full
/// (`SELECT *`, expressed through the DataFrame API because the SQL frontend is
/// not compiled in). Must be called within a Tokio runtime.
///
/// # Errors
///
/// [`TableError::NotFound`], [`TableError::NotAFile`], [`TableError::Io`],
/// [`TableError::InvalidPath`], [`TableError::UnsupportedFormat`],
/// [`TableError::Read`] (unreadable / corrupt file), [`TableError::Convert`],
/// and [`TableError::NoRows`] if the file holds no rows.
pub async fn read_table(path: &Path) -> Result<Table, TableError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TableError::NotFound { path: path.into() })
        }
        Err(source) => {
            return Err(TableError::Io {
                path: path.into(),
                source,
            })
        }
    };
    if !meta.is_file() {
        return Err(TableError::NotAFile { path: path.into() });
    }

    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    let format = match extension.to_ascii_lowercase().as_str() {
        "parquet" => Format::Parquet,
        "csv" => Format::Csv,
        "jsonl" | "ndjson" | "json" => Format::Json,
        _ => {
            return Err(TableError::UnsupportedFormat {
                path: path.into(),
                extension,
            })
        }
    };

    let absolute = std::fs::canonicalize(path).map_err(|source| TableError::Io {
        path: path.into(),
        source,
    })?;
    let location = absolute
        .to_str()
        .ok_or_else(|| TableError::InvalidPath { path: path.into() })?;
    // DataFusion only picks up files ending in the configured extension, so pass
    // the file's own (original-case) extension.
    let file_extension = format!(".{extension}");

    let read_err = |e: DataFusionError| TableError::Read {
        path: path.into(),
        format: format.name(),
        source: Box::new(e),
    };

    let json_prefix = if format == Format::Json {
        read_prefix(&absolute, JSON_KEY_SCAN_BYTES)
    } else {
        Vec::new()
    };

    // One partition: rows come back in file order and no repartitioning work is
    // spent on what is a one-off full scan.
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    match format {
        Format::Parquet => {
            let options = ParquetReadOptions {
                file_extension: &file_extension,
                ..Default::default()
            };
            ctx.register_parquet(TABLE_NAME, location, options).await
        }
        Format::Csv => {
            let options = CsvReadOptions::new()
                .has_header(true)
                .schema_infer_max_records(SCHEMA_INFER_MAX_RECORDS)
                .file_extension(&file_extension);
            ctx.register_csv(TABLE_NAME, location, options).await
        }
        Format::Json => {
            let options = JsonReadOptions::default()
                .schema_infer_max_records(SCHEMA_INFER_MAX_RECORDS)
                .file_extension(&file_extension)
                .newline_delimited(!is_json_array(&json_prefix));
            ctx.register_json(TABLE_NAME, location, options).await
        }
    }
    .map_err(read_err)?;

    let batches = ctx
        .table(TABLE_NAME)
        .await
        .map_err(read_err)?
        .collect()
        .await
        .map_err(read_err)?;

    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        return Err(TableError::NoRows { path: path.into() });
    }
    let (mut columns, mut skipped) = convert_batches(path, &batches, rows)?;
    if format == Format::Json {
        let order = json_key_order(&json_prefix);
        sort_by_order(&mut columns, &order, |c| c.name.as_str());
        sort_by_order(&mut skipped, &order, |(n, _)| n.as_str());
    }
    Ok(Table {
        path: path.into(),
        rows,
        columns,
        skipped,
    })
}

/// Returns the numeric values of column `name` of `t`.
///
/// # Errors
///
/// [`TableError::MissingColumn`] if there is no such column,
/// [`TableError::WrongType`] if it is text or was skipped as unsupported; both
/// name the file and the column (and the actual type).
pub fn require_numeric<'a>(t: &'a Table, name: &str) -> Result<&'a [Option<f64>], TableError> {
    match lookup(t, name, "numeric")? {
        ColumnData::Numeric(v) => Ok(v),
        other => Err(wrong_type(t, name, "numeric", other.kind().to_string())),
    }
}

/// Returns the text values of column `name` of `t` (timestamps and dates as
/// RFC 3339 text).
///
/// # Errors
///
/// [`TableError::MissingColumn`] if there is no such column,
/// [`TableError::WrongType`] if it is numeric or was skipped as unsupported;
/// both name the file and the column (and the actual type).
pub fn require_text<'a>(t: &'a Table, name: &str) -> Result<&'a [Option<String>], TableError> {
    match lookup(t, name, "text")? {
        ColumnData::Text(v) => Ok(v),
        other => Err(wrong_type(t, name, "text", other.kind().to_string())),
    }
}

fn lookup<'a>(
    t: &'a Table,
    name: &str,
    expected: &'static str,
) -> Result<&'a ColumnData, TableError> {
    if let Some(c) = t.column(name) {
        return Ok(&c.data);
    }
    if let Some((_, ty)) = t.skipped.iter().find(|(n, _)| n == name) {
        return Err(wrong_type(
            t,
            name,
            expected,
            format!("of unsupported type {ty} (column skipped)"),
        ));
    }
    Err(TableError::MissingColumn {
        path: t.path.clone(),
        column: name.to_string(),
        available: list_names(t.column_names()),
    })
}

fn wrong_type(t: &Table, name: &str, expected: &'static str, actual: String) -> TableError {
    TableError::WrongType {
        path: t.path.clone(),
        column: name.to_string(),
        expected,
        actual,
    }
}

fn list_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        return "none".to_string();
    }
    let mut out = names
        .iter()
        .take(MAX_LISTED_COLUMNS)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_LISTED_COLUMNS {
        out.push_str(&format!(
            ", ... ({} more)",
            names.len() - MAX_LISTED_COLUMNS
        ));
    }
    out
}

/// Reads at most `limit` bytes from the start of `path` (empty on error;
/// DataFusion reports unreadable files itself).
fn read_prefix(path: &Path, limit: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(limit).read_to_end(&mut buf);
    }
    buf
}

/// `true` if the first byte after an optional UTF-8 byte-order mark and
/// whitespace is `[` (a JSON array rather than JSON Lines).
fn is_json_array(prefix: &[u8]) -> bool {
    let body = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// Column names (`key` and `parent.child`) in order of first appearance in the
/// JSON text `bytes`, which may be JSON Lines or a JSON array of objects and may
/// be cut off anywhere.
///
/// DataFusion's JSON schema inference sorts keys alphabetically; this lets
/// [`read_table`] restore the order of the file. It only affects ordering.
fn json_key_order(bytes: &[u8]) -> Vec<String> {
    // Open containers: (is_object, key under which it sits in its parent object).
    let mut stack: Vec<(bool, Option<String>)> = Vec::new();
    let mut expect_key = false;
    let mut last_key: Option<String> = None;
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < bytes.len() && bytes[j] != b'"' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                if j >= bytes.len() {
                    break; // string cut off by the prefix limit
                }
                if expect_key {
                    let key = String::from_utf8_lossy(&bytes[start..j]).into_owned();
                    // Rows are the top-level objects, or the elements of a top-level array.
                    let base = usize::from(matches!(stack.first(), Some((false, _))));
                    let name = if stack.len() == base + 1 {
                        Some(key.clone())
                    } else if stack.len() == base + 2 {
                        match &stack[base + 1] {
                            (true, Some(parent)) => Some(format!("{parent}.{key}")),
                            _ => None,
                        }
                    } else {
                        None
                    };
                    if let Some(name) = name {
                        if seen.insert(name.clone()) {
                            order.push(name);
                        }
                    }
                    last_key = Some(key);
                    expect_key = false;
                }
                i = j;
            }
            b'{' => {
                stack.push((true, last_key.take()));
                expect_key = true;
            }
            b'[' => {
                stack.push((false, last_key.take()));
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                last_key = None;
                expect_key = false;
            }
            b',' => {
                last_key = None;
                expect_key = matches!(stack.last(), Some((true, _)));
            }
            _ => {}
        }
        i += 1;
    }
    order
}

/// Stable-sorts `items` by the position of their name in `order`; names not in
/// `order` keep their relative order after all that are.
fn sort_by_order<T>(items: &mut [T], order: &[String], name: impl Fn(&T) -> &str) {
    let pos: std::collections::HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    items.sort_by_key(|item| pos.get(name(item)).copied().unwrap_or(usize::MAX));
}

/// How a source column is turned into a [`ColumnData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Numeric,
    Text,
}

/// Classifies an Arrow type; `None` = unsupported (skipped).
fn classify(dt: &DataType) -> Option<Kind> {
    match dt {
        DataType::Boolean => Some(Kind::Numeric),
        t if t.is_numeric() => Some(Kind::Numeric),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Kind::Text),
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => Some(Kind::Text),
        DataType::Dictionary(_, value) => match value.as_ref() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Kind::Text),
            v if v.is_numeric() || *v == DataType::Boolean => Some(Kind::Numeric),
            _ => None,
        },
        _ => None,
    }
}

/// `(name, Arrow data type)` of a column that was not read.
type SkippedColumn = (String, String);

/// Where an output column comes from in each record batch.
struct Slot {
    name: String,
    kind: Kind,
    data_type: DataType,
    /// Index of the top-level column.
    top: usize,
    /// Index of the child within the top-level struct column, if flattened.
    child: Option<usize>,
}

fn convert_batches(
    path: &Path,
    batches: &[RecordBatch],
    rows: usize,
) -> Result<(Vec<Column>, Vec<SkippedColumn>), TableError> {
    let schema = batches[0].schema();
    let mut slots = Vec::new();
    let mut skipped = Vec::new();
    for (top, field) in schema.fields().iter().enumerate() {
        if let DataType::Struct(children) = field.data_type() {
            for (child, cf) in children.iter().enumerate() {
                let name = format!("{}.{}", field.name(), cf.name());
                match classify(cf.data_type()) {
                    Some(kind) => slots.push(Slot {
                        name,
                        kind,
                        data_type: cf.data_type().clone(),
                        top,
                        child: Some(child),
                    }),
                    None => skipped.push((name, cf.data_type().to_string())),
                }
            }
        } else {
            match classify(field.data_type()) {
                Some(kind) => slots.push(Slot {
                    name: field.name().clone(),
                    kind,
                    data_type: field.data_type().clone(),
                    top,
                    child: None,
                }),
                None => skipped.push((field.name().clone(), field.data_type().to_string())),
            }
        }
    }

    let mut columns = Vec::with_capacity(slots.len());
    for slot in &slots {
        let convert_err = |source: ArrowError| TableError::Convert {
            path: path.into(),
            column: slot.name.clone(),
            data_type: slot.data_type.to_string(),
            source,
        };
        let mut data = match slot.kind {
            Kind::Numeric => ColumnData::Numeric(Vec::with_capacity(rows)),
            Kind::Text => ColumnData::Text(Vec::with_capacity(rows)),
        };
        for batch in batches {
            let top = batch.column(slot.top);
            let (array, parent): (&ArrayRef, Option<&StructArray>) = match slot.child {
                Some(i) => {
                    let s = top.as_struct();
                    (s.column(i), Some(s))
                }
                None => (top, None),
            };
            match &mut data {
                ColumnData::Numeric(out) => {
                    let start = out.len();
                    append_numeric(array.as_ref(), out).map_err(convert_err)?;
                    mask_parent_nulls(parent, &mut out[start..]);
                }
                ColumnData::Text(out) => {
                    let start = out.len();
                    append_text(array.as_ref(), out).map_err(convert_err)?;
                    mask_parent_nulls(parent, &mut out[start..]);
                }
            }
        }
        columns.push(Column {
            name: slot.name.clone(),
            data,
        });
    }
    Ok((columns, skipped))
}

/// Sets entries to `None` where the parent struct itself is null.
fn mask_parent_nulls<T>(parent: Option<&StructArray>, values: &mut [Option<T>]) {
    if let Some(nulls) = parent.and_then(|p| p.logical_nulls()) {
        for (i, v) in values.iter_mut().enumerate() {
            if nulls.is_null(i) {
                *v = None;
            }
        }
    }
}

fn append_numeric(array: &dyn Array, out: &mut Vec<Option<f64>>) -> Result<(), ArrowError> {
    let floats = cast(array, &DataType::Float64)?;
    out.extend(floats.as_primitive::<Float64Type>().iter());
    Ok(())
}

fn append_text(array: &dyn Array, out: &mut Vec<Option<String>>) -> Result<(), ArrowError> {
    match array.data_type() {
        DataType::Utf8 => out.extend(
            array
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_owned)),
        ),
        DataType::LargeUtf8 => out.extend(
            array
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(str::to_owned)),
        ),
        DataType::Utf8View => {
            out.extend(array.as_string_view().iter().map(|v| v.map(str::to_owned)))
        }
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => append_timestamps::<TimestampSecondType>(array, out),
            TimeUnit::Millisecond => append_timestamps::<TimestampMillisecondType>(array, out),
            TimeUnit::Microsecond => append_timestamps::<TimestampMicrosecondType>(array, out),
            TimeUnit::Nanosecond => append_timestamps::<TimestampNanosecondType>(array, out),
        },
        DataType::Date32 => append_dates(array.as_primitive::<Date32Type>(), out),
        DataType::Date64 => append_dates(array.as_primitive::<Date64Type>(), out),
        _ => {
            // Dictionary-encoded strings (and anything else castable to text).
            let strings = cast(array, &DataType::Utf8)?;
            out.extend(
                strings
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_owned)),
            );
        }
    }
    Ok(())
}

/// Arrow stores timestamps as UTC instants (also when a time zone is attached),
/// so they are rendered in UTC with a `Z` offset.
fn append_timestamps<T: ArrowTimestampType>(array: &dyn Array, out: &mut Vec<Option<String>>) {
    let a: &PrimitiveArray<T> = array.as_primitive::<T>();
    out.extend((0..a.len()).map(|i| {
        if a.is_null(i) {
            return None;
        }
        a.value_as_datetime(i)
            .map(|dt| dt.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
    }));
}

fn append_dates<T>(a: &PrimitiveArray<T>, out: &mut Vec<Option<String>>)
where
    T: datafusion::arrow::datatypes::ArrowTemporalType,
    i64: From<T::Native>,
{
    out.extend((0..a.len()).map(|i| {
        if a.is_null(i) {
            return None;
        }
        a.value_as_date(i).map(|d| d.format("%Y-%m-%d").to_string())
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use datafusion::arrow::array::{
        BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float64Array, Int32Array,
        Int64Array, ListArray, StringArray, TimestampMillisecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Int32Type, Schema};
    use datafusion::parquet::arrow::ArrowWriter;
    use tempfile::TempDir;

    fn write(dir: &TempDir, name: &str, content: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    fn write_parquet(dir: &TempDir, name: &str, batch: &RecordBatch) -> PathBuf {
        let p = dir.path().join(name);
        let file = std::fs::File::create(&p).unwrap();
        let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
        p
    }

    fn num<'a>(t: &'a Table, name: &str) -> &'a [Option<f64>] {
        require_numeric(t, name).unwrap_or_else(|e| panic!("{e}"))
    }

    fn text<'a>(t: &'a Table, name: &str) -> Vec<Option<&'a str>> {
        require_text(t, name)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|v| v.as_deref())
            .collect()
    }

    fn names(t: &Table) -> Vec<&str> {
        t.column_names().collect()
    }

    async fn read_err(p: &Path) -> TableError {
        match read_table(p).await {
            Ok(t) => panic!("expected an error for {}, got {t:?}", p.display()),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn reads_flat_parquet_with_all_type_mappings() {
        let dir = TempDir::new().unwrap();
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![]),
        ]);
        let dict: DictionaryArray<Int32Type> = vec![Some("north"), None, Some("south")]
            .into_iter()
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("income", DataType::Float64, true),
            Field::new("age", DataType::Int32, true),
            Field::new("region", DataType::Utf8, true),
            Field::new("label", DataType::Int64, false),
            Field::new("approved", DataType::Boolean, true),
            Field::new("amount", DataType::Decimal128(10, 2), true),
            Field::new(
                "seen_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+02:00".into())),
                true,
            ),
            Field::new("day", DataType::Date32, true),
            Field::new("segment", dict.data_type().clone(), true),
            Field::new("history", list.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![Some(52000.0), None, Some(61000.5)])),
                Arc::new(Int32Array::from(vec![Some(41), Some(35), None])),
                Arc::new(StringArray::from(vec![Some("north"), None, Some("south")])),
                Arc::new(Int64Array::from(vec![1, 0, 1])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
                Arc::new(
                    Decimal128Array::from(vec![Some(12345), None, Some(-50)])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(
                    TimestampMillisecondArray::from(vec![
                        Some(1_767_225_600_000),
                        Some(1_767_225_600_250),
                        None,
                    ])
                    .with_timezone("+02:00"),
                ),
                Arc::new(Date32Array::from(vec![Some(20454), None, Some(0)])),
                Arc::new(dict),
                Arc::new(list),
            ],
        )
        .unwrap();
        let p = write_parquet(&dir, "train.parquet", &batch);

        let t = read_table(&p).await.unwrap();
        assert_eq!(t.path, p);
        assert_eq!(t.rows, 3);
        assert_eq!(
            names(&t),
            [
                "income", "age", "region", "label", "approved", "amount", "seen_at", "day",
                "segment"
            ]
        );
        assert_eq!(num(&t, "income"), [Some(52000.0), None, Some(61000.5)]);
        assert_eq!(num(&t, "age"), [Some(41.0), Some(35.0), None]);
        assert_eq!(text(&t, "region"), [Some("north"), None, Some("south")]);
        assert_eq!(num(&t, "label"), [Some(1.0), Some(0.0), Some(1.0)]);
        assert_eq!(num(&t, "approved"), [Some(1.0), Some(0.0), None]);
        assert_eq!(num(&t, "amount"), [Some(123.45), None, Some(-0.5)]);
        assert_eq!(
            text(&t, "seen_at"),
            [
                Some("2026-01-01T00:00:00Z"),
                Some("2026-01-01T00:00:00.250Z"),
                None
            ]
        );
        assert_eq!(
            text(&t, "day"),
            [Some("2026-01-01"), None, Some("1970-01-01")]
        );
        assert_eq!(text(&t, "segment"), [Some("north"), None, Some("south")]);
        assert_eq!(t.skipped.len(), 1);
        assert_eq!(t.skipped[0].0, "history");
        assert!(t.skipped[0].1.contains("List"), "{:?}", t.skipped);
        assert_eq!(t.column("income").unwrap().data.null_count(), 1);
        assert_eq!(t.column("income").unwrap().data.kind(), "numeric");
        assert!(t.column("nope").is_none());
    }

    #[tokio::test]
    async fn reads_flat_csv_with_nulls_and_mixed_numbers() {
        let dir = TempDir::new().unwrap();
        let p = write(
            &dir,
            "train.csv",
            "income,age,region,label,flag,ts\n\
             52000.5,41,north,1,true,2026-01-01T00:00:00Z\n\
             ,35,,0,false,\n\
             61000,29.5,south,1,,2026-01-02T12:30:00Z\n",
        );
        let t = read_table(&p).await.unwrap();
        assert_eq!(t.rows, 3);
        assert_eq!(
            names(&t),
            ["income", "age", "region", "label", "flag", "ts"]
        );
        assert_eq!(num(&t, "income"), [Some(52000.5), None, Some(61000.0)]);
        assert_eq!(num(&t, "age"), [Some(41.0), Some(35.0), Some(29.5)]);
        assert_eq!(text(&t, "region"), [Some("north"), None, Some("south")]);
        assert_eq!(num(&t, "label"), [Some(1.0), Some(0.0), Some(1.0)]);
        assert_eq!(num(&t, "flag"), [Some(1.0), Some(0.0), None]);
        assert_eq!(
            text(&t, "ts"),
            [
                Some("2026-01-01T00:00:00Z"),
                None,
                Some("2026-01-02T12:30:00Z")
            ]
        );
        assert!(t.skipped.is_empty(), "{:?}", t.skipped);
    }

    #[tokio::test]
    async fn flattens_prediction_event_jsonl() {
        let dir = TempDir::new().unwrap();
        let p = write(
            &dir,
            "events.jsonl",
            concat!(
                r#"{"event_id":"a","model_id":"m","model_version":"v1","timestamp":"2026-01-01T00:00:00Z","features":{"income":52000.0,"age":41,"region":"north"},"prediction":{"score":0.8,"label":1},"latency_ms":12.5,"attributes":{"gender":"f"},"label":1}"#,
                "\n",
                r#"{"event_id":"b","model_id":"m","model_version":"v1","timestamp":"2026-01-01T00:00:01Z","features":{"income":null,"age":35,"region":"south"},"prediction":{"score":0.2,"label":0},"latency_ms":8,"attributes":{"gender":"m"},"label":null}"#,
                "\n\n",
                r#"{"event_id":"c","model_id":"m","model_version":"v1","timestamp":"2026-01-01T00:00:02Z","prediction":{"score":0.5,"label":1},"latency_ms":9.25}"#,
                "\n",
            ),
        );
        let t = read_table(&p).await.unwrap();
        assert_eq!(t.rows, 3);
        assert_eq!(
            names(&t),
            [
                "event_id",
                "model_id",
                "model_version",
                "timestamp",
                "features.income",
                "features.age",
                "features.region",
                "prediction.score",
                "prediction.label",
                "latency_ms",
                "attributes.gender",
                "label",
            ]
        );
        assert_eq!(text(&t, "event_id"), [Some("a"), Some("b"), Some("c")]);
        assert_eq!(
            text(&t, "timestamp"),
            [
                Some("2026-01-01T00:00:00Z"),
                Some("2026-01-01T00:00:01Z"),
                Some("2026-01-01T00:00:02Z")
            ]
        );
        // Null inside a present struct, and the whole struct missing in row 3.
        assert_eq!(num(&t, "features.income"), [Some(52000.0), None, None]);
        assert_eq!(num(&t, "features.age"), [Some(41.0), Some(35.0), None]);
        assert_eq!(
            text(&t, "features.region"),
            [Some("north"), Some("south"), None]
        );
        assert_eq!(
            num(&t, "prediction.score"),
            [Some(0.8), Some(0.2), Some(0.5)]
        );
        assert_eq!(
            num(&t, "prediction.label"),
            [Some(1.0), Some(0.0), Some(1.0)]
        );
        // 12.5 then 8 (an integer) then 9.25: one float column.
        assert_eq!(num(&t, "latency_ms"), [Some(12.5), Some(8.0), Some(9.25)]);
        assert_eq!(text(&t, "attributes.gender"), [Some("f"), Some("m"), None]);
        assert_eq!(num(&t, "label"), [Some(1.0), None, None]);
        assert!(t.skipped.is_empty(), "{:?}", t.skipped);
    }

    #[tokio::test]
    async fn json_skips_lists_and_deeper_structs() {
        let dir = TempDir::new().unwrap();
        let p = write(
            &dir,
            "events.ndjson",
            concat!(
                r#"{"id":1,"tags":["x","y"],"features":{"geo":{"lat":1.5},"n":2}}"#,
                "\n",
                r#"{"id":2,"tags":[],"features":{"geo":{"lat":2.5},"n":3}}"#,
                "\n",
            ),
        );
        let t = read_table(&p).await.unwrap();
        assert_eq!(names(&t), ["id", "features.n"]);
        assert_eq!(num(&t, "features.n"), [Some(2.0), Some(3.0)]);
        let skipped: Vec<&str> = t.skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(skipped, ["tags", "features.geo"]);
        assert!(t.skipped[0].1.contains("List"), "{:?}", t.skipped);
        assert!(t.skipped[1].1.contains("Struct"), "{:?}", t.skipped);
        // Asking for a skipped column names its real type.
        let e = require_numeric(&t, "tags").unwrap_err().to_string();
        assert!(e.contains("events.ndjson") && e.contains("`tags`"), "{e}");
        assert!(e.contains("List") && e.contains("expected numeric"), "{e}");
    }

    #[tokio::test]
    async fn mixed_int_float_column_beyond_default_inference_window() {
        // DataFusion's default inference window is 1000 rows; the first float
        // appears after 1500 integer rows.
        let dir = TempDir::new().unwrap();
        let mut jsonl = String::new();
        let mut csv = String::from("id,x\n");
        for i in 0..1500 {
            jsonl.push_str(&format!("{{\"id\":\"r{i}\",\"x\":{i}}}\n"));
            csv.push_str(&format!("r{i},{i}\n"));
        }
        jsonl.push_str("{\"id\":\"last\",\"x\":0.25}\n");
        csv.push_str("last,0.25\n");
        for p in [
            write(&dir, "mixed.jsonl", &jsonl),
            write(&dir, "mixed.csv", &csv),
        ] {
            let t = read_table(&p).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(t.rows, 1501);
            let x = num(&t, "x");
            assert_eq!(x[0], Some(0.0));
            assert_eq!(x[1499], Some(1499.0));
            assert_eq!(x[1500], Some(0.25));
        }
    }

    #[tokio::test]
    async fn json_extension_accepts_lines_and_array() {
        let dir = TempDir::new().unwrap();
        let lines = write(
            &dir,
            "a.json",
            "{\"x\":1,\"s\":\"p\"}\n{\"x\":2.5,\"s\":null}\n",
        );
        let t = read_table(&lines).await.unwrap();
        assert_eq!(num(&t, "x"), [Some(1.0), Some(2.5)]);
        assert_eq!(text(&t, "s"), [Some("p"), None]);

        let array = write(
            &dir,
            "b.json",
            " \n[{\"x\":1,\"s\":\"p\"},\n {\"x\":2.5}]\n",
        );
        let t = read_table(&array).await.unwrap();
        assert_eq!(num(&t, "x"), [Some(1.0), Some(2.5)]);
        assert_eq!(text(&t, "s"), [Some("p"), None]);
    }

    #[tokio::test]
    async fn extension_is_case_insensitive() {
        let dir = TempDir::new().unwrap();
        let p = write(&dir, "TRAIN.CSV", "a,b\n1,x\n");
        let t = read_table(&p).await.unwrap();
        assert_eq!(num(&t, "a"), [Some(1.0)]);
        assert_eq!(text(&t, "b"), [Some("x")]);
    }

    #[tokio::test]
    async fn error_missing_file() {
        let dir = TempDir::new().unwrap();
        let p = dir.path().join("absent.parquet");
        let e = read_err(&p).await;
        assert!(matches!(e, TableError::NotFound { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains("does not exist"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn error_directory() {
        let dir = TempDir::new().unwrap();
        let p = dir.path().join("data.csv");
        std::fs::create_dir(&p).unwrap();
        let e = read_err(&p).await;
        assert!(matches!(e, TableError::NotAFile { .. }), "{e:?}");
        assert!(e.to_string().contains("data.csv"), "{e}");
    }

    #[tokio::test]
    async fn error_unknown_extension() {
        let dir = TempDir::new().unwrap();
        let p = write(&dir, "train.xlsx", "whatever");
        let e = read_err(&p).await;
        assert!(matches!(e, TableError::UnsupportedFormat { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("train.xlsx") && msg.contains("`.xlsx`"),
            "{msg}"
        );
        assert!(msg.contains(".parquet") && msg.contains(".jsonl"), "{msg}");

        let p = write(&dir, "noext", "a\n1\n");
        let msg = read_err(&p).await.to_string();
        assert!(msg.contains("noext") && msg.contains("(none)"), "{msg}");
    }

    #[tokio::test]
    async fn error_corrupt_parquet() {
        let dir = TempDir::new().unwrap();
        let p = write(&dir, "train.parquet", "income,age\n1,2\n");
        let e = read_err(&p).await;
        assert!(
            matches!(
                e,
                TableError::Read {
                    format: "parquet",
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("train.parquet") && msg.contains("as parquet"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn error_malformed_jsonl() {
        let dir = TempDir::new().unwrap();
        let p = write(&dir, "events.jsonl", "{\"a\":1}\n{not json\n");
        let e = read_err(&p).await;
        assert!(
            matches!(e, TableError::Read { format: "json", .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("events.jsonl"), "{e}");
    }

    #[tokio::test]
    async fn error_no_rows() {
        let dir = TempDir::new().unwrap();
        let header_only = write(&dir, "header.csv", "income,age,region,label\n");
        let empty_csv = write(&dir, "empty.csv", "");
        let empty_jsonl = write(&dir, "empty.jsonl", "");
        let blank_jsonl = write(&dir, "blank.jsonl", "\n\n");
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let empty_parquet = write_parquet(&dir, "empty.parquet", &RecordBatch::new_empty(schema));
        for p in [
            header_only,
            empty_csv,
            empty_jsonl,
            blank_jsonl,
            empty_parquet,
        ] {
            let e = read_err(&p).await;
            assert!(
                matches!(e, TableError::NoRows { .. }),
                "{}: {e:?}",
                p.display()
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&p.display().to_string()) && msg.contains("no rows"),
                "{msg}"
            );
        }
    }

    #[tokio::test]
    async fn require_errors_name_file_column_and_type() {
        let dir = TempDir::new().unwrap();
        let p = write(&dir, "train.csv", "income,region\n1.5,north\n");
        let t = read_table(&p).await.unwrap();

        let e = require_numeric(&t, "region").unwrap_err();
        assert!(
            matches!(
                e,
                TableError::WrongType {
                    expected: "numeric",
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("train.csv") && msg.contains("`region`"),
            "{msg}"
        );
        assert!(msg.contains("is text, expected numeric"), "{msg}");

        let msg = require_text(&t, "income").unwrap_err().to_string();
        assert!(
            msg.contains("train.csv") && msg.contains("`income`"),
            "{msg}"
        );
        assert!(msg.contains("is numeric, expected text"), "{msg}");

        for e in [
            require_numeric(&t, "age").unwrap_err(),
            require_text(&t, "age").unwrap_err(),
        ] {
            assert!(matches!(e, TableError::MissingColumn { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(msg.contains("train.csv") && msg.contains("`age`"), "{msg}");
            assert!(
                msg.contains("not found") && msg.contains("income, region"),
                "{msg}"
            );
        }

        assert_eq!(require_numeric(&t, "income").unwrap(), [Some(1.5)]);
        assert_eq!(
            require_text(&t, "region").unwrap(),
            [Some("north".to_string())]
        );
    }

    #[test]
    fn json_key_order_handles_nesting_arrays_escapes_and_truncation() {
        let text = br#"{"b":1,"a":{"y":[{"deep":1}],"x":"s,{\"q\":1}"},"l":[1,{"no":2}]}
{"c":null,"a":{"z":{"w":1}},"b":2}
{"d":"cut"#;
        assert_eq!(
            json_key_order(text),
            ["b", "a", "a.y", "a.x", "l", "c", "a.z", "d"]
        );
        let array = b" [ {\"k\":1,\"s\":{\"t\":2}}, {\"j\":3} ]";
        assert_eq!(json_key_order(array), ["k", "s", "s.t", "j"]);
        assert!(is_json_array(b"\xEF\xBB\xBF\n [{}]"));
        assert!(!is_json_array(b"{\"a\":[1]}"));
    }

    #[test]
    fn lists_column_names_abbreviated() {
        let many: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        let s = list_names(many.iter().map(String::as_str));
        assert!(
            s.starts_with("c0, c1,") && s.ends_with("... (10 more)"),
            "{s}"
        );
        assert_eq!(list_names(std::iter::empty()), "none");
    }
}
