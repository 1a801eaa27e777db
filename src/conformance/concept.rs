//! Conformance checks of `concept/*.json`: detection indices of ADWIN (clock 32 and 1),
//! Page-Hinkley and DDM, exact on both paths (the detectors are streaming by nature, so both
//! paths run the same code). Parameters come from `detector_params`, with river defaults for
//! missing ones.

use std::collections::BTreeMap;

use serde_json::Value;

use super::quality::{compare_all, f64_array, Tol};
use super::{Check, PathKind};
use crate::stats::concept::{Adwin, Ddm, PageHinkley, PhMode};

fn param_f64(p: Option<&Value>, key: &str, default: f64) -> f64 {
    p.and_then(|p| p.get(key))
        .and_then(Value::as_f64)
        .unwrap_or(default)
}

fn param_u64(p: Option<&Value>, key: &str, default: u64) -> u64 {
    p.and_then(|p| p.get(key))
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
        .unwrap_or(default)
}

fn adwin_from(p: Option<&Value>, default_clock: u32) -> Adwin {
    let d = Adwin::default();
    Adwin::new(
        param_f64(p, "delta", d.delta),
        param_u64(p, "clock", u64::from(default_clock)).min(u64::from(u32::MAX)) as u32,
        param_u64(p, "max_buckets", d.max_buckets as u64) as usize,
        param_u64(p, "min_window_length", u64::from(d.min_window_length)).min(u64::from(u32::MAX))
            as u32,
        param_u64(p, "grace_period", u64::from(d.grace_period)).min(u64::from(u32::MAX)) as u32,
    )
}

fn detections(xs: &[f64], mut update: impl FnMut(f64) -> bool) -> Value {
    Value::from(
        xs.iter()
            .enumerate()
            .filter(|&(_, &x)| update(x))
            .map(|(i, _)| Value::from(i as u64))
            .collect::<Vec<_>>(),
    )
}

/// Checks one concept-drift case on one path.
pub fn check_case(
    name: &str,
    case: &Value,
    path: PathKind,
    out: &mut Vec<Check>,
) -> Result<(), String> {
    let expected = case.get("expected").ok_or("missing `expected`")?;
    let xs = f64_array(case, "errors")?;
    let params = case.get("detector_params");
    let sub = |k: &str| params.and_then(|p| p.get(k));

    let mut adwin = adwin_from(sub("adwin"), 32);
    let mut adwin1 = adwin_from(sub("adwin_clock1"), 1);
    let ph_p = sub("page_hinkley");
    let dph = PageHinkley::default();
    let mode = match ph_p.and_then(|p| p.get("mode")).and_then(Value::as_str) {
        Some(s) => PhMode::parse(s).ok_or_else(|| format!("invalid Page-Hinkley mode `{s}`"))?,
        None => dph.mode,
    };
    let mut ph = PageHinkley::new(
        param_u64(ph_p, "min_instances", dph.min_instances),
        param_f64(ph_p, "delta", dph.delta),
        param_f64(ph_p, "threshold", dph.threshold),
        param_f64(ph_p, "alpha", dph.alpha),
        mode,
    );
    let ddm_p = sub("ddm");
    let dd = Ddm::default();
    let mut ddm = Ddm::new(
        param_u64(ddm_p, "warm_start", dd.warm_start),
        param_f64(ddm_p, "warning_threshold", dd.warning_threshold),
        param_f64(ddm_p, "drift_threshold", dd.drift_threshold),
    );

    let mut got: BTreeMap<String, Value> = BTreeMap::new();
    got.insert(
        "adwin_detections".into(),
        detections(&xs, |x| adwin.update(x)),
    );
    got.insert(
        "adwin_clock1_detections".into(),
        detections(&xs, |x| adwin1.update(x)),
    );
    got.insert(
        "page_hinkley_detections".into(),
        detections(&xs, |x| ph.update(x)),
    );
    got.insert("ddm_detections".into(), detections(&xs, |x| ddm.update(x)));
    compare_all(
        name,
        "concept",
        path,
        expected,
        &got,
        |_| Some(Tol::Exact),
        out,
    );
    Ok(())
}
