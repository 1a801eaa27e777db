//! Conformance checks of `latency/*.json`.
//!
//! Streaming: values recorded into ~7 [`LatencySummary`] panes merged into a window (plus a
//! decoy pane merged and unmerged); quantiles, min and max within 1 % relative, mean and count
//! within 1e-9. Exact: quantiles, min, max bit-exact, `rank0.*` exact, mean 1e-9 relative.

use std::collections::BTreeMap;

use serde_json::Value;

use super::quality::{compare_all, f64_array, window_from_panes, Tol};
use super::{f64_json, Check, PathKind};
use crate::stats::latency::{ExactLatency, LatencyReport, LatencySummary, REPORT_QUANTILES};

/// Checks one latency case on one path.
pub fn check_case(
    name: &str,
    case: &Value,
    path: PathKind,
    out: &mut Vec<Check>,
) -> Result<(), String> {
    let expected = case.get("expected").ok_or("missing `expected`")?;
    let values = f64_array(case, "values_ms")?;
    let mut got: BTreeMap<String, Value> = BTreeMap::new();
    let report: LatencyReport = match path {
        PathKind::Exact => {
            let e = ExactLatency::from_values(&values);
            for &(q_name, q) in &REPORT_QUANTILES {
                let r = e.rank0(q).map_or(Value::Null, Value::from);
                got.insert(format!("rank0.{q_name}"), r);
            }
            e.report()
        }
        PathKind::Streaming => window_from_panes(
            values.len(),
            LatencySummary::new,
            |s, i| s.record(values[i]),
            LatencySummary::merge,
            LatencySummary::unmerge,
        )
        .report(),
    };
    for (q_name, v) in &report.quantiles {
        got.insert(q_name.clone(), f64_json(*v));
    }
    got.insert("min".into(), f64_json(report.min));
    got.insert("max".into(), f64_json(report.max));
    got.insert("mean".into(), f64_json(report.mean));
    got.insert("count".into(), Value::from(report.count));
    compare_all(
        name,
        "latency",
        path,
        expected,
        &got,
        |stat| match (path, stat) {
            (PathKind::Streaming, s) if s.starts_with("rank0.") => None,
            (_, "mean") | (_, "count") => Some(Tol::Rel(1e-9)),
            (PathKind::Streaming, _) => Some(Tol::Rel(0.01)),
            (PathKind::Exact, _) => Some(Tol::Exact),
        },
        out,
    );
    Ok(())
}
