//! What a restart or a new owner resumes from: policy checkpoints (alert, trigger and canary
//! state per model) and the keys of alerts and verdicts published before.

use super::*;

/// The alert, trigger and canary state of one model as of its last evaluated windows, which the
/// Kafka service writes to the state topic before committing the offsets that follow them, and
/// reads back when partitions are assigned: a restart or a new owner re-reads the windows but
/// does not evaluate again those the checkpoint covers, and carries on counting from there.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PolicyCheckpoint {
    /// Model.
    pub model_id: String,
    /// Per version.
    pub versions: Vec<VersionCheckpoint>,
    /// Canary comparison between the model's versions.
    pub canary: crate::policy::canary::CanaryState,
}

/// One version's part of a [`PolicyCheckpoint`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VersionCheckpoint {
    /// Version.
    pub version: String,
    /// End of the last window evaluated.
    pub evaluated_through_ms: i64,
    /// Alert and trigger state.
    pub policy: crate::policy::VersionPolicy,
}

/// Identity of a published alert transition or verdict, to publish it once across restarts
/// and takeovers: `alert/<alert_id>/<status>`, `verdict/<verdict_id>`. Triggers have their
/// own ledger.
pub fn emitted_key(o: &Output) -> Option<String> {
    match o {
        Output::Alert(a) => Some(format!("alert/{}/{}", a.alert_id, a.status.as_str())),
        Output::Verdict(v) => Some(format!("verdict/{}", v.verdict_id)),
        _ => None,
    }
}

/// [`emitted_key`] of an output read back as JSON from its topic.
pub fn emitted_key_json(v: &serde_json::Value) -> Option<String> {
    match v["type"].as_str()? {
        "alert" => Some(format!(
            "alert/{}/{}",
            v["alert_id"].as_str()?,
            v["status"].as_str()?
        )),
        "canary_verdict" => Some(format!("verdict/{}", v["verdict_id"].as_str()?)),
        _ => None,
    }
}

/// Gives a version just created (index `vi`) the policy state a checkpoint holds for it, and
/// the model its canary state when this is its first version.
pub(super) fn resume_from_checkpoint(
    model: &mut ModelState,
    vi: usize,
    checkpoints: &HashMap<String, PolicyCheckpoint>,
) {
    let Some(c) = checkpoints.get(&model.model_id) else {
        return;
    };
    if vi == 0 {
        model.canary = c.canary.clone();
    }
    let v = &mut model.versions[vi];
    if let Some(vc) = c.versions.iter().find(|vc| vc.version == v.version) {
        v.policy = vc.policy.clone();
        v.evaluated_through_ms = vc.evaluated_through_ms;
        v.skip_through_ms = vc.evaluated_through_ms;
    }
}

impl Monitor {
    /// Adds alerts and verdicts published before ([`emitted_key`]).
    pub fn extend_emitted(&mut self, keys: impl IntoIterator<Item = String>) {
        self.emitted.extend(keys);
    }

    /// Adds a policy checkpoint read back from the state topic (see [`PolicyCheckpoint`]); it
    /// applies to the model's versions created from now on.
    pub fn add_checkpoint(&mut self, c: PolicyCheckpoint) {
        self.checkpoints.insert(c.model_id.clone(), c);
    }

    /// Checkpoints of the models that evaluated windows since the last call.
    pub fn take_checkpoints(&mut self) -> Vec<PolicyCheckpoint> {
        self.models
            .iter_mut()
            .flatten()
            .filter_map(|m| std::mem::take(&mut m.checkpoint_due).then_some(&*m))
            .map(|m| PolicyCheckpoint {
                model_id: m.model_id.clone(),
                versions: m
                    .versions
                    .iter()
                    .map(|v| VersionCheckpoint {
                        version: v.version.clone(),
                        evaluated_through_ms: v.evaluated_through_ms,
                        policy: v.policy.clone(),
                    })
                    .collect(),
                canary: m.canary.clone(),
            })
            .collect()
    }
}
