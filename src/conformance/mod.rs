//! `driftwatch conformance`: runs reference vectors through the same statistics code the
//! monitor uses, on the streaming path (values fed one at a time into pane summaries) and the
//! exact path (full samples), and compares with the tolerances of each family.
//! Family modules push one [`Check`] per (path, statistic).

use serde_json::Value;

/// Which computation path a check exercised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Values fed one at a time into the pane summaries the live monitor keeps.
    Streaming,
    /// Computed from the full samples.
    Exact,
}

impl PathKind {
    /// The name used in the jsonl output.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Streaming => "streaming",
            PathKind::Exact => "exact",
        }
    }
}

/// One compared statistic.
#[derive(Debug, Clone)]
pub struct Check {
    /// File stem of the case.
    pub case: String,
    /// drift | fairness | latency | quality | concept
    pub family: &'static str,
    /// Path exercised.
    pub path: PathKind,
    /// Expected key, e.g. `ks_pvalue`, `tpr_by_group.a`, `adwin_detections`.
    pub statistic: String,
    /// Expected value as in the file (non-finite as "inf"/"-inf"/"nan" strings).
    pub expected: Value,
    /// Value we computed, in the same encoding.
    pub got: Value,
    /// Within tolerance.
    pub pass: bool,
}

/// Encodes an f64 the way the vectors do: finite numbers as JSON numbers, others as strings.
pub fn f64_json(x: f64) -> Value {
    if x.is_nan() {
        Value::String("nan".into())
    } else if x == f64::INFINITY {
        Value::String("inf".into())
    } else if x == f64::NEG_INFINITY {
        Value::String("-inf".into())
    } else {
        serde_json::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// Decodes an f64 the way the vectors write it (numbers, or "inf"/"-inf"/"nan"); `None` for null.
pub fn json_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            "nan" => Some(f64::NAN),
            _ => None,
        },
        _ => None,
    }
}

/// Relative comparison with the conventions of the vectors: equal non-finite values match,
/// and values whose magnitudes are both below `zero_floor` (p-values under 1e-300) count as 0.
pub fn close_rel(expected: f64, got: f64, rel: f64, zero_floor: f64) -> bool {
    if expected.is_nan() || got.is_nan() {
        return expected.is_nan() && got.is_nan();
    }
    if expected.is_infinite() || got.is_infinite() {
        return expected == got;
    }
    if expected.abs() < zero_floor && got.abs() < zero_floor {
        return true;
    }
    (expected - got).abs() <= rel * expected.abs().max(got.abs())
}

pub mod concept;
pub mod drift;
pub mod fairness;
pub mod latency;
pub mod quality;

use std::io::Write;
use std::path::Path;

/// Results of a conformance run.
#[derive(Debug, Default)]
pub struct Report {
    /// Every check, in file order.
    pub checks: Vec<Check>,
    /// Case files that could not be run at all: (file, error).
    pub errors: Vec<(String, String)>,
}

impl Report {
    /// True when every check passed and every case file ran.
    pub fn all_passed(&self) -> bool {
        self.errors.is_empty() && !self.checks.is_empty() && self.checks.iter().all(|c| c.pass)
    }

    /// One JSON object per check.
    pub fn write_jsonl(&self, w: &mut impl Write) -> std::io::Result<()> {
        for c in &self.checks {
            let line = serde_json::json!({
                "case": c.case, "family": c.family, "path": c.path.as_str(),
                "statistic": c.statistic, "expected": c.expected, "got": c.got, "pass": c.pass,
            });
            writeln!(w, "{line}")?;
        }
        for (file, err) in &self.errors {
            let line = serde_json::json!({"case": file, "error": err, "pass": false});
            writeln!(w, "{line}")?;
        }
        Ok(())
    }

    /// Failures in full and a summary per family and path.
    pub fn write_text(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut summary: std::collections::BTreeMap<(&str, &str), (usize, usize)> =
            Default::default();
        for c in &self.checks {
            let e = summary.entry((c.family, c.path.as_str())).or_default();
            e.0 += 1;
            if !c.pass {
                e.1 += 1;
                writeln!(
                    w,
                    "FAIL {}/{} [{}] {}: expected {} got {}",
                    c.family,
                    c.case,
                    c.path.as_str(),
                    c.statistic,
                    c.expected,
                    c.got
                )?;
            }
        }
        for (file, err) in &self.errors {
            writeln!(w, "ERROR {file}: {err}")?;
        }
        for ((family, path), (n, failed)) in &summary {
            writeln!(w, "{family:<9} {path:<9} {} checks, {failed} failed", n)?;
        }
        let failed = self.checks.iter().filter(|c| !c.pass).count();
        writeln!(
            w,
            "{} passed, {} failed",
            self.checks.len() - failed,
            failed + self.errors.len()
        )
    }
}

/// Runs every case file under `dir` (by family subdirectory) on the given paths.
pub fn run_dir(dir: &Path, paths: &[PathKind]) -> std::io::Result<Report> {
    let mut report = Report::default();
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a directory", dir.display()),
        ));
    }
    for family in ["drift", "fairness", "latency", "quality", "concept"] {
        let sub = dir.join(family);
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let case: Value = match std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(v) => v,
                Err(e) => {
                    report.errors.push((file.display().to_string(), e));
                    continue;
                }
            };
            for &path in paths {
                let res = match family {
                    "drift" => drift::check_case(&name, &case, path, &mut report.checks),
                    "fairness" => fairness::check_case(&name, &case, path, &mut report.checks),
                    "latency" => latency::check_case(&name, &case, path, &mut report.checks),
                    "quality" => quality::check_case(&name, &case, path, &mut report.checks),
                    _ => concept::check_case(&name, &case, path, &mut report.checks),
                };
                if let Err(e) = res {
                    report
                        .errors
                        .push((format!("{} [{}]", file.display(), path.as_str()), e));
                }
            }
        }
    }
    Ok(report)
}
