//! Bootstrapping versions in event time: predictions wait for the model's watermark so that a
//! baseline is made of the first events in event time, however the broker delivers them.

use super::*;

/// How full a bounded buffer is: labels and features waiting for their prediction
/// ([`Monitor::held_for_join`]), predictions waiting for a bootstrapping model's watermark
/// ([`Monitor::bootstrap_fill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Under a quarter of their capacity.
    Low,
    /// Between a quarter and a half.
    Some,
    /// Over half.
    High,
}

impl Fill {
    /// The level of a buffer filled to `share` of its capacity.
    fn of(share: f64) -> Self {
        if share > 0.5 {
            Fill::High
        } else if share < 0.25 {
            Fill::Low
        } else {
            Fill::Some
        }
    }
}

/// Most predictions a bootstrapping version keeps waiting for its model's watermark (four
/// times `baseline.bootstrap_events`, at least 4,096); beyond it the earliest are fed to the
/// baseline regardless.
pub(super) fn waiting_cap(cfg: &Config) -> usize {
    cfg.baseline.bootstrap_events.saturating_mul(4).max(4096)
}

impl Monitor {
    /// How full the buffers of labels and features waiting for their prediction are, against
    /// `limits.max_pending_joins` (labels) and a quarter of it (features).
    pub fn held_for_join(&self) -> Fill {
        let cap = self.cfg.limits.max_pending_joins.max(4);
        Fill::of(
            (self.joins.early_labels.len() as f64 / cap as f64)
                .max(self.joins.early_features.len() as f64 / (cap / 4) as f64),
        )
    }

    /// How full the fullest queue of predictions waiting for a bootstrapping version's
    /// watermark is, against its cap (four times `baseline.bootstrap_events`). The source
    /// pauses the prediction inputs ahead of the slowest while it is over half full, so that
    /// the baseline is made of the first events in event time however unevenly the broker
    /// delivers its partitions.
    pub fn bootstrap_fill(&self) -> Fill {
        let most = self
            .models
            .iter()
            .flatten()
            .flat_map(|m| m.versions.iter().map(|v| v.waiting.len()))
            .max()
            .unwrap_or(0);
        Fill::of(most as f64 / waiting_cap(&self.cfg) as f64)
    }

    /// Feeds the predictions waiting in bootstrapping versions to them, earliest first, as far
    /// as each model's watermark allows (all of them at the end of a replay); once a version
    /// is active, the rest of its waiting predictions are recorded into its window. A version
    /// with more than four times `baseline.bootstrap_events` waiting (a model whose watermark
    /// does not move) is fed its earliest regardless.
    pub(super) fn release_waiting(&mut self, at_end: bool) {
        for mi in 0..self.models.len() {
            let Some(model) = self.models[mi].as_ref() else {
                continue;
            };
            if model.versions.iter().all(|v| v.waiting.is_empty()) {
                continue;
            }
            let watermark = if at_end {
                i64::MAX
            } else {
                match watermark_of(&self.inputs, &model.feeders) {
                    Some(c) => c.saturating_sub(self.lateness_ms),
                    None => continue,
                }
            };
            self.release_model(mi, watermark);
        }
    }

    /// Releases model `mi`'s waiting predictions up to `watermark`, those of active versions,
    /// and those beyond the cap, earliest first.
    pub(super) fn release_model(&mut self, mi: usize, watermark: i64) {
        let cap = waiting_cap(&self.cfg);
        while let Some(model) = self.models[mi].as_mut() {
            let next = model
                .versions
                .iter()
                .enumerate()
                .filter_map(|(vi, v)| {
                    let w = v.waiting.peek()?;
                    let due = matches!(v.phase, Phase::Active(_))
                        || w.ts <= watermark
                        || v.waiting.len() > cap;
                    due.then_some((w.ts, w.seq, vi))
                })
                .min();
            let Some((_, _, vi)) = next else {
                break;
            };
            let w = model.versions[vi].waiting.pop().expect("peeked");
            self.apply_waiting(w);
        }
    }

    /// Logs (once per model) that a bootstrapping version is fed in arrival order, and the
    /// inputs that hold its watermark back.
    #[cold]
    pub(super) fn warn_overflow(&mut self, mi: usize) {
        let Some(model) = self.models[mi].as_mut() else {
            return;
        };
        if std::mem::replace(&mut model.overflow_warned, true) {
            return;
        }
        let holding: Vec<String> = self
            .inputs
            .iter()
            .filter(|i| !i.dropped && !i.idle)
            .map(|i| format!("{}[{}]@{:?}", i.topic, i.partition, i.clock.floor()))
            .collect();
        tracing::warn!(
            model_id = %model.model_id,
            cap = waiting_cap(&self.cfg),
            inputs = ?holding,
            "bootstrap predictions fed in arrival order: the model's watermark does not move"
        );
    }

    pub(super) fn apply_waiting(&mut self, w: Waiting) {
        let ii = w.origin.input as usize;
        let inp = &mut self.inputs[ii];
        inp.offsets.unpin(w.origin.offset);
        if inp.dropped {
            return;
        }
        let (topic, partition) = (inp.topic.clone(), inp.partition);
        let Ok(e) = decode(&w.payload, Some(EventKind::Prediction), usize::MAX) else {
            return;
        };
        let input = Input {
            kind: Some(EventKind::Prediction),
            topic: &topic,
            partition,
            offset: w.origin.offset,
            payload: &w.payload,
        };
        let outcome = self.apply(ii, &e, input, true);
        self.counts.event(Some(EventKind::Prediction), outcome);
    }
}
