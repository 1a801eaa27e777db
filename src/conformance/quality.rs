//! Conformance checks of `quality/*.json` (binary and regression cases).
//!
//! Streaming: rows are fed one at a time into ~7 panes that are merged into a window (plus a
//! decoy pane merged and unmerged again). Tolerances: 1e-9 relative for every metric, confusion
//! counts exact, streaming ROC AUC 0.005 absolute.
//!
//! This module also holds the comparison helpers shared by the other family modules.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{close_rel, f64_json, json_f64, Check, PathKind};
use crate::stats::quality::{
    binary_metrics_exact, regression_metrics_exact, BinarySummary, RegressionSums,
};

/// How one statistic is compared.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Tol {
    /// Relative tolerance (`close_rel`).
    Rel(f64),
    /// Absolute tolerance.
    Abs(f64),
    /// JSON equality (arrays, strings, integers) or bit-exact floats.
    Exact,
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

fn values_match(expected: &Value, got: &Value, tol: Tol) -> bool {
    if expected.is_null() {
        return got.is_null() || json_f64(got).is_some_and(f64::is_nan);
    }
    match (json_f64(expected), json_f64(got)) {
        (Some(e), Some(g)) => match tol {
            Tol::Rel(r) => close_rel(e, g, r, 0.0),
            Tol::Abs(a) => {
                if e.is_nan() || g.is_nan() {
                    e.is_nan() && g.is_nan()
                } else if e.is_infinite() || g.is_infinite() {
                    e == g
                } else {
                    (e - g).abs() <= a
                }
            }
            Tol::Exact => (e.is_nan() && g.is_nan()) || e == g,
        },
        _ => expected == got,
    }
}

/// Compares every leaf of `expected` (dotted keys for nested objects) with `got`; leaves for
/// which `tol` returns `None` are not checked on this path.
pub(crate) fn compare_all(
    name: &str,
    family: &'static str,
    path: PathKind,
    expected: &Value,
    got: &BTreeMap<String, Value>,
    tol: impl Fn(&str) -> Option<Tol>,
    out: &mut Vec<Check>,
) {
    let mut leaves = Vec::new();
    flatten("", expected, &mut leaves);
    for (stat, exp) in leaves {
        let Some(t) = tol(&stat) else { continue };
        let g = got.get(&stat).cloned().unwrap_or(Value::Null);
        let pass = got.contains_key(&stat) && values_match(&exp, &g, t);
        out.push(Check {
            case: name.to_string(),
            family,
            path,
            statistic: stat,
            expected: exp,
            got: g,
            pass,
        });
    }
}

/// Reads an array field as f64 values.
pub(crate) fn f64_array(case: &Value, key: &str) -> Result<Vec<f64>, String> {
    case.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("missing array `{key}`"))?
        .iter()
        .map(|v| json_f64(v).ok_or_else(|| format!("non-numeric value in `{key}`")))
        .collect()
}

/// Reads a 0/1 array field as booleans.
pub(crate) fn bool_array(case: &Value, key: &str) -> Result<Vec<bool>, String> {
    Ok(f64_array(case, key)?
        .into_iter()
        .map(|v| v != 0.0)
        .collect())
}

/// Splits `n` rows into consecutive pane ranges (about 7 panes).
pub(crate) fn pane_ranges(n: usize) -> Vec<std::ops::Range<usize>> {
    let size = n.div_ceil(7).max(1);
    (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect()
}

/// Feeds rows into panes, merges them into a window and merges/unmerges a decoy pane.
pub(crate) fn window_from_panes<T: Clone>(
    n: usize,
    new: impl Fn() -> T,
    mut record: impl FnMut(&mut T, usize),
    merge: impl Fn(&mut T, &T),
    unmerge: impl Fn(&mut T, &T),
) -> T {
    let mut window = new();
    let mut decoy = new();
    for r in pane_ranges(n) {
        let mut pane = new();
        for i in r {
            record(&mut pane, i);
        }
        merge(&mut window, &pane);
    }
    // decoy: the rows in reverse order, in one pane, added and removed again
    for i in (0..n).rev().take(n.min(97)) {
        record(&mut decoy, i);
    }
    merge(&mut window, &decoy);
    unmerge(&mut window, &decoy);
    window
}

/// Checks one quality case on one path.
pub fn check_case(
    name: &str,
    case: &Value,
    path: PathKind,
    out: &mut Vec<Check>,
) -> Result<(), String> {
    let expected = case.get("expected").ok_or("missing `expected`")?;
    let task = case.get("task").and_then(Value::as_str).unwrap_or("binary");
    let mut got: BTreeMap<String, Value> = BTreeMap::new();
    let mut put = |k: &str, v: f64| {
        got.insert(k.to_string(), f64_json(v));
    };
    match task {
        "binary" => {
            let yt = bool_array(case, "y_true")?;
            let yp = bool_array(case, "y_pred")?;
            let ys = f64_array(case, "y_score")?;
            if yt.len() != yp.len() || yt.len() != ys.len() {
                return Err("y_true, y_pred and y_score differ in length".into());
            }
            let m = match path {
                PathKind::Exact => binary_metrics_exact(&yt, &yp, &ys),
                PathKind::Streaming => window_from_panes(
                    yt.len(),
                    BinarySummary::new,
                    |s, i| s.record(yt[i], yp[i], ys[i]),
                    BinarySummary::merge,
                    BinarySummary::unmerge,
                )
                .metrics(),
            };
            put("accuracy", m.accuracy);
            put("precision", m.precision);
            put("recall", m.recall);
            put("f1", m.f1);
            put("roc_auc", m.roc_auc);
            put("log_loss", m.log_loss);
            put("brier", m.brier);
            for (k, v) in [("tp", m.tp), ("fp", m.fp), ("tn", m.tn), ("fn", m.fn_)] {
                got.insert(format!("confusion.{k}"), Value::from(v));
            }
        }
        "regression" => {
            let yt = f64_array(case, "y_true")?;
            let yp = f64_array(case, "y_pred")?;
            if yt.len() != yp.len() {
                return Err("y_true and y_pred differ in length".into());
            }
            let m = match path {
                PathKind::Exact => regression_metrics_exact(&yt, &yp),
                PathKind::Streaming => window_from_panes(
                    yt.len(),
                    RegressionSums::new,
                    |s, i| s.record(yt[i], yp[i]),
                    RegressionSums::merge,
                    RegressionSums::unmerge,
                )
                .metrics(),
            };
            put("mae", m.mae);
            put("mse", m.mse);
            put("rmse", m.rmse);
            put("mape", m.mape);
            put("r2", m.r2);
        }
        other => return Err(format!("unknown task `{other}`")),
    }
    compare_all(
        name,
        "quality",
        path,
        expected,
        &got,
        |stat| {
            Some(if stat.starts_with("confusion.") {
                Tol::Exact
            } else if stat == "roc_auc" && path == PathKind::Streaming {
                Tol::Abs(0.005)
            } else {
                Tol::Rel(1e-9)
            })
        },
        out,
    );
    Ok(())
}
