//! Conformance checks of `fairness/*.json`.
//!
//! Streaming: rows recorded into ~7 [`GroupCounts`] panes merged into a window (plus a decoy
//! pane merged and unmerged). Both paths: counts and group lists exact, rates and disparity
//! metrics 1e-9 relative.

use std::collections::BTreeMap;

use serde_json::Value;

use super::quality::{bool_array, compare_all, window_from_panes, Tol};
use super::{f64_json, Check, PathKind};
use crate::stats::fairness::{fairness_exact, FairnessReport, GroupCounts};

/// Checks one fairness case on one path.
pub fn check_case(
    name: &str,
    case: &Value,
    path: PathKind,
    out: &mut Vec<Check>,
) -> Result<(), String> {
    let expected = case.get("expected").ok_or("missing `expected`")?;
    let yt = bool_array(case, "y_true")?;
    let yp = bool_array(case, "y_pred")?;
    let sensitive: Vec<String> = case
        .get("sensitive")
        .and_then(Value::as_array)
        .ok_or("missing array `sensitive`")?
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    if yt.len() != yp.len() || yt.len() != sensitive.len() {
        return Err("y_true, y_pred and sensitive differ in length".into());
    }
    let r: FairnessReport = match path {
        PathKind::Exact => fairness_exact(&yt, &yp, &sensitive),
        PathKind::Streaming => window_from_panes(
            yt.len(),
            || GroupCounts::new(usize::MAX),
            |s, i| s.record(&sensitive[i], yt[i], yp[i]),
            GroupCounts::merge,
            GroupCounts::unmerge,
        )
        .report(),
    };
    let mut got: BTreeMap<String, Value> = BTreeMap::new();
    got.insert(
        "groups".into(),
        Value::from(
            r.groups
                .iter()
                .map(|g| Value::from(g.as_str()))
                .collect::<Vec<_>>(),
        ),
    );
    for (g, c) in &r.counts_by_group {
        got.insert(format!("count_by_group.{g}"), Value::from(c.n()));
        got.insert(
            format!("positives_by_group.{g}"),
            Value::from(c.positives()),
        );
        got.insert(
            format!("negatives_by_group.{g}"),
            Value::from(c.negatives()),
        );
    }
    for (g, rt) in &r.rates_by_group {
        got.insert(
            format!("selection_rate_by_group.{g}"),
            f64_json(rt.selection_rate),
        );
        got.insert(format!("tpr_by_group.{g}"), f64_json(rt.tpr));
        got.insert(format!("fpr_by_group.{g}"), f64_json(rt.fpr));
    }
    got.insert(
        "overall.selection_rate".into(),
        f64_json(r.overall.selection_rate),
    );
    got.insert("overall.tpr".into(), f64_json(r.overall.tpr));
    got.insert("overall.fpr".into(), f64_json(r.overall.fpr));
    for (k, v) in [
        (
            "demographic_parity_difference",
            r.demographic_parity_difference,
        ),
        ("demographic_parity_ratio", r.demographic_parity_ratio),
        ("equalized_odds_difference", r.equalized_odds_difference),
        ("equalized_odds_ratio", r.equalized_odds_ratio),
        (
            "equal_opportunity_difference",
            r.equal_opportunity_difference,
        ),
        ("equal_opportunity_ratio", r.equal_opportunity_ratio),
        ("disparate_impact_ratio", r.disparate_impact_ratio),
    ] {
        got.insert(k.into(), f64_json(v));
    }
    compare_all(
        name,
        "fairness",
        path,
        expected,
        &got,
        |stat| {
            Some(
                if stat == "groups"
                    || stat.starts_with("count_by_group.")
                    || stat.starts_with("positives_by_group.")
                    || stat.starts_with("negatives_by_group.")
                {
                    Tol::Exact
                } else {
                    Tol::Rel(1e-9)
                },
            )
        },
        out,
    );
    Ok(())
}
