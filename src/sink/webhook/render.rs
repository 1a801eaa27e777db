//! Request bodies of the three templates, rendered from a typed [`Output`].
//!
//! What CI jobs read is taken from where the outputs put it: the snapshot of a trigger from
//! `evidence.snapshot.path`, the version of a verdict from `model_version` (the candidate).
//! Reasons are rendered as one line of text each; the structured form stays in the full object
//! (`driftwatch` in GitHub's `client_payload`, `DRIFTWATCH_PAYLOAD` for GitLab, the body itself
//! for the generic template).

use serde_json::{json, Map, Value};

use crate::config::webhook::{WebhookConfig, WebhookTemplate};
use crate::output::{AlertStatus, CanaryCheck, Output, TriggerReason, Verdict};

/// GitHub rejects a `client_payload` with more than this many top-level keys.
pub const GITHUB_CLIENT_PAYLOAD_MAX_KEYS: usize = 10;
/// GitHub rejects a `client_payload` of 64 KB or more; above this size the bulky `evidence` is
/// left out of the full object (`driftwatch`), and if that is not enough the object itself (the
/// GitLab/generic templates and the Kafka topic still carry it).
pub const GITHUB_CLIENT_PAYLOAD_MAX_BYTES: usize = 60 * 1024;
/// Longest `summary` string put in a GitHub `client_payload`.
const SUMMARY_MAX_CHARS: usize = 500;
/// Most reasons rendered.
const REASONS_MAX: usize = 10;
/// Longest single rendered reason.
const REASON_MAX_CHARS: usize = 200;

/// The exact request body bytes (which are also what gets signed). `token` is the GitLab
/// trigger token, which travels in the body.
pub fn body(config: &WebhookConfig, token: Option<&str>, output: &Output) -> Vec<u8> {
    let key = output.idempotency_key();
    let body = match config.template {
        WebhookTemplate::Generic => output.to_json(),
        WebhookTemplate::GithubRepositoryDispatch => json!({
            "event_type": config.github_event_type,
            "client_payload": github_client_payload(&key, output),
        }),
        WebhookTemplate::GitlabPipelineTrigger => json!({
            "token": token.unwrap_or_default(),
            "ref": config.gitlab_ref,
            "variables": gitlab_variables(&key, output),
        }),
    };
    serde_json::to_vec(&body).expect("serializing a serde_json::Value cannot fail")
}

/// The compact GitHub `client_payload`: at most [`GITHUB_CLIENT_PAYLOAD_MAX_KEYS`] top-level
/// keys (missing values are null so workflows see a stable shape) and at most
/// [`GITHUB_CLIENT_PAYLOAD_MAX_BYTES`] bytes.
pub fn github_client_payload(key: &str, output: &Output) -> Value {
    let mut p = Map::new();
    p.insert("type".into(), json!(output.output_type().as_str()));
    p.insert("id".into(), json!(key));
    p.insert("model_id".into(), json!(output.key()));
    p.insert("model_version".into(), json!(output.model_version()));
    p.insert("verdict".into(), json!(verdict(output)));
    p.insert("reasons".into(), json!(reasons(output)));
    p.insert("summary".into(), json!(summary(output)));
    p.insert("snapshot".into(), json!(snapshot(output)));
    p.insert("driftwatch".into(), output.to_json());
    let mut payload = Value::Object(p);
    if payload.to_string().len() > GITHUB_CLIENT_PAYLOAD_MAX_BYTES {
        tracing::warn!(kind = %output.output_type(), id = %key, "output too large for a GitHub client_payload; sending it without its evidence");
        payload["driftwatch_truncated"] = Value::Bool(true);
        if let Some(o) = payload["driftwatch"].as_object_mut() {
            o.remove("evidence");
        }
        if payload.to_string().len() > GITHUB_CLIENT_PAYLOAD_MAX_BYTES {
            payload["driftwatch"] = Value::Null;
        }
    }
    debug_assert!(payload.as_object().map_or(0, Map::len) <= GITHUB_CLIENT_PAYLOAD_MAX_KEYS);
    payload
}

/// GitLab trigger variables (values must be strings; absent ones are empty).
pub fn gitlab_variables(key: &str, output: &Output) -> Value {
    json!({
        "DRIFTWATCH_TYPE": output.output_type().as_str(),
        "DRIFTWATCH_MODEL_ID": output.key().unwrap_or_default(),
        "DRIFTWATCH_MODEL_VERSION": output.model_version().unwrap_or_default(),
        "DRIFTWATCH_ID": key,
        "DRIFTWATCH_VERDICT": verdict(output).unwrap_or_default(),
        "DRIFTWATCH_SNAPSHOT": snapshot(output).unwrap_or_default(),
        "DRIFTWATCH_SUMMARY": summary(output),
        "DRIFTWATCH_REASONS": reasons(output).join("\n"),
        "DRIFTWATCH_PAYLOAD": output.to_json().to_string(),
    })
}

/// Where a trigger's Parquet snapshot was written (`evidence.snapshot.path`); `None` for other
/// outputs and for triggers without a snapshot.
pub fn snapshot(output: &Output) -> Option<&str> {
    match output {
        Output::Trigger(t) => t.evidence.pointer("/snapshot/path")?.as_str(),
        _ => None,
    }
}

/// A verdict's decision (`promote`, `rollback`, `continue`).
pub fn verdict(output: &Output) -> Option<&'static str> {
    match output {
        Output::Verdict(v) => Some(match v.verdict {
            Verdict::Promote => "promote",
            Verdict::Rollback => "rollback",
            Verdict::Continue => "continue",
        }),
        _ => None,
    }
}

/// Why the output was emitted, one readable line each: a trigger's alerts, an alert's own
/// breach, a verdict's failed checks (or that all passed).
pub fn reasons(output: &Output) -> Vec<String> {
    let lines: Vec<String> = match output {
        // Scheduled and age triggers have no alerts behind them: the policy is the reason.
        Output::Trigger(t) if t.reasons.is_empty() => vec![format!("{} policy", t.policy)],
        Output::Trigger(t) => t.reasons.iter().map(reason_text).collect(),
        Output::Alert(a) => {
            let mut line = breach(
                a.kind.as_str(),
                &a.metric,
                a.feature.as_deref(),
                a.value,
                a.threshold,
            );
            if a.status == AlertStatus::Resolved {
                line.push_str(" (resolved)");
            }
            vec![line]
        }
        Output::Verdict(v) => {
            let failed: Vec<String> = v
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(check_text)
                .collect();
            if failed.is_empty() {
                vec![format!("all {} checks passed", v.checks.len())]
            } else {
                failed
            }
        }
        Output::DeadLetter(d) => vec![format!("{}: {}", d.reason, d.detail)],
    };
    lines
        .into_iter()
        .take(REASONS_MAX)
        .map(|l| truncate_chars(&l, REASON_MAX_CHARS))
        .collect()
}

/// One trigger reason as text, e.g. `data_drift: ks of f0 = 2.1e-41 (threshold 4.63e-9)`.
pub fn reason_text(r: &TriggerReason) -> String {
    breach(
        r.kind.as_str(),
        &r.metric,
        r.feature.as_deref(),
        r.value,
        r.threshold,
    )
}

fn breach(kind: &str, metric: &str, feature: Option<&str>, value: f64, threshold: f64) -> String {
    let of = feature.map(|f| format!(" of {f}")).unwrap_or_default();
    format!(
        "{kind}: {metric}{of} = {} (threshold {})",
        number(value),
        number(threshold)
    )
}

/// A failed canary check, e.g. `p99_ms failed: candidate 29.6, baseline 11.8 (threshold 1.5)`.
fn check_text(c: &CanaryCheck) -> String {
    format!(
        "{} failed: candidate {}, baseline {} (threshold {})",
        c.metric,
        number(c.candidate),
        number(c.baseline),
        number(c.threshold)
    )
}

/// At most four decimals, without trailing zeros.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v != 0.0 && v.abs() < 1e-3 {
        // p-values and the levels they are held to: 4.6e-9, not 0.
        let s = format!("{v:.3e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{mantissa}e{exponent}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// One line for humans: what, for which model version, and why.
pub fn summary(output: &Output) -> String {
    let model = output.key().unwrap_or("?");
    let version = output.model_version().unwrap_or("?");
    let head = match output {
        Output::Alert(a) => {
            let severity = match a.severity {
                crate::output::Severity::Warning => "warning",
                crate::output::Severity::Critical => "critical",
            };
            format!("{severity} {} alert for {model}@{version}", a.kind.as_str())
        }
        Output::Trigger(t) => format!("retrain {model}@{version} ({})", t.policy),
        Output::Verdict(v) => format!(
            "canary {} for {model}@{version} against {}",
            verdict(output).unwrap_or("verdict"),
            v.baseline_version
        ),
        Output::DeadLetter(d) => format!("dead letter from {}", d.topic),
    };
    let reasons = reasons(output);
    let text = if reasons.is_empty() {
        head
    } else {
        format!("{head}: {}", reasons.join("; "))
    };
    truncate_chars(&text, SUMMARY_MAX_CHARS)
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_exact_where_they_can_be() {
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(1.127511421508465), "1.1275");
        assert_eq!(number(2000.0), "2000");
        assert_eq!(number(-0.00001), "-1e-5");
        assert_eq!(number(4.6296e-9), "4.63e-9");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(f64::INFINITY), "inf");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(truncate_chars("ééé", 2), "éé…");
        assert_eq!(truncate_chars("abc", 3), "abc");
    }
}
