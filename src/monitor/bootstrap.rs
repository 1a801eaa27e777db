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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::testing::{feed, predictions, test_monitor};

    /// A prediction of model `m` version `v1` at `ms` with the category `c`.
    fn prediction(ms: i64, c: &str) -> String {
        format!(
            r#"{{"event_id":"e{ms}","model_id":"m","model_version":"v1","timestamp":"{}","features":{{"x":{},"c":"{c}"}},"prediction":{{"score":0.5,"label":1}}}}"#,
            crate::event::format_rfc3339_ms(ms),
            ms % 17
        )
    }

    /// Feeds `lines` as consecutive messages of prediction partition `partition`.
    fn feed_partition(m: &mut Monitor, partition: i32, lines: &[String]) {
        for (offset, line) in lines.iter().enumerate() {
            let input = Input {
                kind: Some(EventKind::Prediction),
                topic: "predictions",
                partition,
                offset: offset as i64,
                payload: line.as_bytes(),
            };
            m.process(input, &mut Vec::new());
        }
    }

    /// The categories of feature `c` in a profile, read from its serialized form.
    fn categories(p: &Profile) -> String {
        let json = serde_json::to_value(p).unwrap();
        let c = json["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "c")
            .expect("feature c profiled");
        c.to_string()
    }

    #[test]
    fn a_baseline_is_the_first_events_in_event_time_whichever_partition_comes_first() {
        let (mut m, _) = test_monitor(|_| {});
        m.expect_input("predictions", 0, EventKind::Prediction);
        m.expect_input("predictions", 1, EventKind::Prediction);
        // Partition 1 (the later half of the stream) is delivered whole before partition 0.
        let late: Vec<String> = (2000..4000).map(|i| prediction(i * 50, "late")).collect();
        let early: Vec<String> = (0..2000).map(|i| prediction(i * 50, "early")).collect();
        feed_partition(&mut m, 1, &late);
        assert!(
            m.take_new_profiles().is_empty(),
            "nothing decided before partition 0"
        );
        assert_eq!(m.bootstrap_fill(), Fill::Some, "2,000 of 4,096 waiting");
        feed_partition(&mut m, 0, &early);
        let profiles = m.take_new_profiles();
        assert_eq!(profiles.len(), 1);
        let (profile, starts_ms) = &profiles[0];
        let c = categories(profile);
        assert_eq!(profile.rows, 100);
        assert!(c.contains("early") && !c.contains("late"), "{c}");
        // Windows start after the last baseline event (the 100th, at 4.95 s).
        assert!(*starts_ms <= 10_000, "{starts_ms}");
        assert_eq!(m.counts().limits_hit.get("bootstrap_waiting"), None);
        // The predictions before the first window (one every 50 ms) go to the baseline or
        // wait for the first window; the rest are recorded, none late.
        let count = |o| m.counts().events(Some(EventKind::Prediction), o);
        assert_eq!(count(Outcome::Bootstrapped), 1);
        assert_eq!(
            count(Outcome::Bootstrap) + count(Outcome::Bootstrapped),
            *starts_ms as u64 / 50
        );
        assert_eq!(count(Outcome::Late), 0);
    }

    #[test]
    fn a_model_whose_watermark_does_not_move_is_fed_in_arrival_order_past_the_cap() {
        let (mut m, _) = test_monitor(|_| {});
        // Partition 0 is assigned but never delivers: the watermark stays unknown.
        m.expect_input("predictions", 0, EventKind::Prediction);
        let cap = waiting_cap(&m.cfg);
        let lines: Vec<String> = (0..cap as i64 + 200)
            .map(|i| prediction(i * 50, "only"))
            .collect();
        feed_partition(&mut m, 1, &lines[..cap]);
        assert!(m.take_new_profiles().is_empty());
        assert_eq!(m.bootstrap_fill(), Fill::High);
        feed_partition(&mut m, 1, &lines[cap..]);
        assert!(m.counts().limits_hit["bootstrap_waiting"] > 0);
        let profiles = m.take_new_profiles();
        assert_eq!(
            profiles.len(),
            1,
            "the earliest waiting fed to the baseline"
        );
        assert_eq!(profiles[0].0.rows, 100);
        assert!(
            m.bootstrap_fill() != Fill::High,
            "the queue drains once active"
        );
    }

    #[test]
    fn versions_bootstrapping_side_by_side_share_the_first_baseline() {
        let (mut m, _) = test_monitor(|_| {});
        let mut offset = 0;
        // v1 takes nine of ten predictions, the canary v2 one.
        let v1 = predictions("m", "v1", 0, 60);
        let v2 = predictions("m", "v2", 0, 60);
        for (i, (a, b)) in v1.iter().zip(&v2).enumerate() {
            let line = if i % 10 == 9 { b } else { a };
            feed(&mut m, &mut offset, line);
        }
        m.finish(&mut Vec::new());
        let profiles = m.take_new_profiles();
        assert_eq!(profiles.len(), 1, "one baseline, v1's");
        assert_eq!(profiles[0].0.model_version.as_deref(), Some("v1"));
        let model = m.models().next().expect("model m");
        let phases: Vec<&Arc<Profile>> = model
            .versions
            .iter()
            .map(|v| match &v.phase {
                Phase::Active(a) => &a.profile,
                Phase::Bootstrapping { .. } => panic!("{} still bootstrapping", v.version),
            })
            .collect();
        assert_eq!(phases.len(), 2);
        assert!(
            Arc::ptr_eq(phases[0], phases[1]),
            "v2 compared against v1's reference"
        );
    }
}
