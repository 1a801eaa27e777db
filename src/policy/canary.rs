//! Canary and shadow analysis: two versions of one model compared window by window.
//!
//! Flagger-like: a window in which any check fails increments the failure count, and at
//! `failure_threshold` failures the verdict is `rollback`; `promote_after` consecutive passing
//! windows give `promote`; otherwise `continue`. A final verdict is emitted once per candidate.

use crate::config::Config;
use crate::eval::Evaluation;
use crate::output::{stable_id, CanaryCheck, CanaryVerdict, Output, Verdict, WindowRef};
use crate::policy::Clock;
use crate::stats::shares::jensenshannon;

/// Canary state of one model.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CanaryState {
    pair: Option<(String, String)>,
    failures: u32,
    passes: u32,
    decided: Option<Verdict>,
}

/// Compares the versions evaluated in this batch of closed windows; `versions` lists every
/// version of the model with its first-seen order, `evaluations` pairs version indices with
/// their evaluations.
pub fn compare_versions(
    cfg: &Config,
    state: &mut CanaryState,
    model_id: &str,
    versions: &[(&str, u64)],
    evaluations: &[(usize, Evaluation)],
    clock: &Clock,
    out: &mut Vec<Output>,
) {
    let c = cfg.canary_for(model_id);
    if !c.enabled || versions.len() < 2 {
        return;
    }
    let by_seq = |want_first: bool| {
        let it = versions.iter();
        if want_first {
            it.min_by_key(|v| v.1).map(|v| v.0)
        } else {
            it.max_by_key(|v| v.1).map(|v| v.0)
        }
    };
    let baseline = c
        .baseline_version
        .as_deref()
        .or_else(|| by_seq(true))
        .unwrap_or_default();
    let candidate = c
        .candidate_version
        .as_deref()
        .filter(|v| *v != baseline)
        .or_else(|| {
            versions
                .iter()
                .filter(|v| v.0 != baseline)
                .max_by_key(|v| v.1)
                .map(|v| v.0)
        })
        .unwrap_or_default();
    let pair = (baseline.to_string(), candidate.to_string());
    if state.pair.as_ref() != Some(&pair) {
        *state = CanaryState {
            pair: Some(pair),
            ..Default::default()
        };
    }
    if state.decided.is_some() {
        return;
    }
    // Pair the evaluations of both versions on the same window.
    let find = |name: &str| {
        evaluations
            .iter()
            .filter(|(vi, _)| versions[*vi].0 == name)
            .map(|(_, e)| e)
            .collect::<Vec<_>>()
    };
    let (base_evs, cand_evs) = (find(baseline), find(candidate));
    for b in base_evs {
        let Some(k) = cand_evs.iter().find(|e| e.bounds.end_ms == b.bounds.end_ms) else {
            continue;
        };
        if b.summary.events < c.min_events || k.summary.events < c.min_events {
            continue;
        }
        let checks = checks(c, b, k);
        if checks.iter().any(|ch| !ch.passed) {
            state.failures += 1;
            state.passes = 0;
        } else {
            state.passes += 1;
        }
        let verdict = if state.failures >= c.failure_threshold {
            Verdict::Rollback
        } else if state.passes >= c.promote_after {
            Verdict::Promote
        } else {
            Verdict::Continue
        };
        if verdict != Verdict::Continue {
            state.decided = Some(verdict);
        }
        out.push(Output::Verdict(CanaryVerdict {
            type_: "canary_verdict",
            verdict_id: stable_id(&[model_id, baseline, candidate, &b.bounds.end_ms.to_string()]),
            model_id: model_id.to_string(),
            baseline_version: baseline.to_string(),
            model_version: candidate.to_string(),
            candidate_version: candidate.to_string(),
            verdict,
            checks,
            window: WindowRef::from(k.bounds),
            emitted_at: clock.stamp(b.bounds.end_ms),
        }));
        if state.decided.is_some() {
            return;
        }
    }
}

fn checks(c: &crate::config::CanaryConfig, b: &Evaluation, k: &Evaluation) -> Vec<CanaryCheck> {
    let (bs, ks) = (&b.summary, &k.summary);
    let mut out = Vec::new();
    if let (Some(bp), Some(kp)) = (bs.p99_ms, ks.p99_ms) {
        // The bound is the baseline's p99 times the allowed ratio, in milliseconds like the values.
        let bound = bp * c.max_latency_p99_ratio;
        out.push(CanaryCheck {
            metric: "latency_p99_ms".into(),
            baseline: bp,
            candidate: kp,
            threshold: bound,
            passed: kp <= bound,
        });
    }
    if let (Some(bb), Some(kb)) = (&bs.prediction_bins, &ks.prediction_bins) {
        if bb.len() == kb.len() && bb.iter().sum::<u64>() > 0 && kb.iter().sum::<u64>() > 0 {
            let p: Vec<f64> = bb.iter().map(|&x| x as f64).collect();
            let q: Vec<f64> = kb.iter().map(|&x| x as f64).collect();
            let d = jensenshannon(&p, &q, None);
            out.push(CanaryCheck {
                metric: "prediction_js_distance".into(),
                baseline: 0.0,
                candidate: d,
                threshold: c.max_prediction_distance,
                passed: d <= c.max_prediction_distance,
            });
        }
    }
    if let (Some(be), Some(ke)) = (bs.error_rate, ks.error_rate) {
        out.push(CanaryCheck {
            metric: "error_rate".into(),
            baseline: be,
            candidate: ke,
            threshold: be + c.max_error_rate_increase,
            passed: ke <= be + c.max_error_rate_increase,
        });
    }
    if let (Some(bf), Some(kf)) = (bs.max_dp_difference, ks.max_dp_difference) {
        out.push(CanaryCheck {
            metric: "demographic_parity_difference".into(),
            baseline: bf,
            candidate: kf,
            threshold: bf + c.max_fairness_gap_increase,
            passed: kf <= bf + c.max_fairness_gap_increase,
        });
    }
    out.push(CanaryCheck {
        metric: "missing_share".into(),
        baseline: bs.missing_share,
        candidate: ks.missing_share,
        threshold: bs.missing_share + c.max_missing_share_increase,
        passed: ks.missing_share <= bs.missing_share + c.max_missing_share_increase,
    });
    out
}
