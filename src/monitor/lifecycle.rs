//! Models and versions coming and going: limit slots, and eviction when idle or to make room.

use super::*;

impl Monitor {
    /// Index of model `model_id`, created for an event at `ts` when new and there is room
    /// (see `limits.max_models` and `limits.max_bootstrapping_models`).
    pub(super) fn model_slot(&mut self, model_id: &str, ts: i64) -> Option<usize> {
        if self
            .models
            .get(self.last_model)
            .and_then(Option::as_ref)
            .is_some_and(|m| same_str(&m.model_id, model_id))
        {
            return Some(self.last_model);
        }
        if let Some(&i) = self.model_index.get(model_id) {
            self.last_model = i;
            return Some(i);
        }
        let limits = &self.cfg.limits;
        if self.model_index.len() >= limits.max_models
            && self.established_models(usize::MAX) >= limits.max_models
        {
            self.counts
                .limit_for("models", 1, format_args!("{model_id}"));
            return None;
        }
        // A model holds a `max_models` slot once it has a baseline; until then it is one of
        // at most `max_bootstrapping_models`. When they are all taken, one that has sent
        // nothing for a slide of event time gives way (the one with the fewest events, then the
        // least recently active): one-off ids make room for the next, while models that keep
        // sending go on collecting, so a fleet larger than the bound bootstraps a batch at a
        // time instead of evicting each other.
        let idle_before = ts.saturating_sub(self.slide_ms);
        let (mut count, mut weakest) = (0, None::<(u64, i64, usize)>);
        for (i, m) in self.models.iter().enumerate() {
            let Some(m) = m.as_ref().filter(|m| !m.established()) else {
                continue;
            };
            count += 1;
            let key = (m.bootstrap_events(), m.last_ts(), i);
            if key.1 <= idle_before && weakest.is_none_or(|w| key < w) {
                weakest = Some(key);
            }
        }
        if count >= limits.max_bootstrapping_models {
            let Some((_, _, victim)) = weakest else {
                self.counts
                    .limit_for("bootstrapping_models", 1, format_args!("{model_id}"));
                return None;
            };
            self.evict_model(victim, EvictionReason::Capacity);
        }
        let model = ModelState {
            model_id: model_id.to_string(),
            next_close_ms: i64::MIN,
            ..Default::default()
        };
        let i = match self.free_models.pop() {
            Some(i) => {
                self.models[i] = Some(model);
                i
            }
            None => {
                self.models.push(Some(model));
                self.models.len() - 1
            }
        };
        self.model_index.insert(model_id.to_string(), i);
        self.last_model = i;
        Some(i)
    }

    /// Models with a baseline, model `except` aside.
    pub(super) fn established_models(&self, except: usize) -> usize {
        self.models
            .iter()
            .enumerate()
            .filter(|(i, m)| *i != except && m.as_ref().is_some_and(ModelState::established))
            .count()
    }

    /// Stops monitoring model `mi`: its slot is freed, its series removed, its pending
    /// predictions forgotten (their labels will count as join misses) and its waiting
    /// predictions given up (their offsets may be committed).
    pub(super) fn evict_model(&mut self, mi: usize, reason: EvictionReason) {
        let Some(m) = self.models[mi].take() else {
            return;
        };
        self.counts
            .evicted(Evicted::Model, reason, format_args!("{}", m.model_id));
        self.model_index.remove(&m.model_id);
        self.checkpoints.remove(&m.model_id);
        self.free_models.push(mi);
        if let Some(t) = &self.telemetry {
            t.forget_model(&m.model_id);
        }
        self.counts.join_expired += self.joins.retain_pending(|p| p.model as usize != mi);
        for v in m.versions {
            self.give_up_waiting(v.waiting);
        }
    }

    /// Stops monitoring version `vi` of model `mi`, as [`Monitor::evict_model`] does a model;
    /// the model's later versions move down one index, in pending predictions too.
    pub(super) fn evict_version(&mut self, mi: usize, vi: usize, reason: EvictionReason) {
        let Some(model) = self.models[mi].as_mut() else {
            return;
        };
        let v = model.versions.remove(vi);
        self.counts.evicted(
            Evicted::Version,
            reason,
            format_args!("{}/{}", model.model_id, v.version),
        );
        if let Some(t) = &self.telemetry {
            t.forget_version(&model.model_id, &v.version);
        }
        let (mi, vi) = (mi as u32, vi as u16);
        self.counts.join_expired += self.joins.retain_pending(|p| {
            if p.model != mi || p.version < vi {
                return true;
            }
            if p.version == vi {
                return false;
            }
            p.version -= 1;
            true
        });
        self.give_up_waiting(v.waiting);
    }

    /// Unpins the offsets of predictions that waited for an evicted version's baseline.
    pub(super) fn give_up_waiting(&mut self, waiting: std::collections::BinaryHeap<Waiting>) {
        for w in waiting {
            self.counts
                .event(Some(EventKind::Prediction), Outcome::Evicted);
            if let Some(inp) = self.inputs.get_mut(w.origin.input as usize) {
                inp.offsets.unpin(w.origin.offset);
                inp.offsets.note(None, w.origin.offset);
            }
        }
    }

    /// Evicts the models idle for `limits.model_idle` and the versions idle for
    /// `limits.version_idle` (each model keeping its most recently active one) behind the
    /// instance's event time; looked for once per slide of event time.
    pub(super) fn evict_idle(&mut self) {
        let Some(now) = self.event_now else {
            return;
        };
        if now < self.next_idle_check_ms {
            return;
        }
        self.next_idle_check_ms = now.saturating_add(self.slide_ms);
        let idle = |d: std::time::Duration| now.saturating_sub(d.as_millis() as i64);
        let (version_idle, model_idle) = self.cfg.limits.idle_times(&self.cfg.window);
        let (versions_before, models_before) = (idle(version_idle), idle(model_idle));
        for mi in 0..self.models.len() {
            let Some(m) = self.models[mi].as_ref() else {
                continue;
            };
            if m.last_ts() < models_before {
                self.evict_model(mi, EvictionReason::Idle);
                continue;
            }
            while let Some(vi) = self.models[mi]
                .as_ref()
                .and_then(|m| m.idle_version(versions_before))
            {
                self.evict_version(mi, vi, EvictionReason::Idle);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::testing::{feed, has_series, predictions, test_monitor};

    #[test]
    fn an_idle_model_is_evicted_its_series_removed_and_its_slot_given_to_the_next() {
        let (mut m, t) = test_monitor(|c| c.limits.max_models = 1);
        let mut offset = 0;
        for p in predictions("a", "v1", 0, 150) {
            feed(&mut m, &mut offset, &p);
        }
        let last_of_a = offset;
        assert!(has_series(&t, r#"model_id="a""#), "a exported");
        // b has no slot while a holds it, then takes it once a is idle for `model_idle`.
        for p in predictions("b", "v1", 150, 600) {
            feed(&mut m, &mut offset, &p);
        }
        m.flush_telemetry(&t);
        let text = t.render();
        assert!(!has_series(&t, r#"model_id="a""#), "{text}");
        assert!(has_series(&t, r#"model_id="b""#), "{text}");
        assert!(
            text.contains(r#"driftwatch_evictions_total{reason="idle",what="model"} 1"#),
            "{text}"
        );
        assert!(
            sample_above_zero(&text, r#"driftwatch_limit_hits_total{limit="models"}"#),
            "{text}"
        );
        // b reuses a's slot, and a's events no longer hold the committed offset back.
        assert_eq!(m.models.len(), 1);
        assert!(m.models[0]
            .as_ref()
            .is_some_and(|b| b.model_id == "b" && b.established()));
        assert!(!m.model_index.contains_key("a"));
        let committable = m.committable();
        assert!(
            committable.iter().all(|(_, o)| *o > last_of_a),
            "{committable:?} (a's last offset {last_of_a})"
        );
    }

    #[test]
    fn a_fleet_larger_than_the_bootstrapping_bound_bootstraps_a_batch_at_a_time() {
        let (mut m, _) = test_monitor(|c| c.limits.max_bootstrapping_models = 4);
        let fleet: Vec<Vec<String>> = (0..10)
            .map(|k| predictions(&format!("m{k}"), "v1", 0, 60))
            .collect();
        let mut offset = 0;
        // Round robin: every model sends one event in turn.
        for i in 0..fleet[0].len() {
            for stream in &fleet {
                feed(&mut m, &mut offset, &stream[i]);
            }
        }
        m.finish(&mut Vec::new());
        let established = m.models().filter(|m| m.established()).count();
        assert_eq!(established, 10, "{:?}", m.counts());
        // Models beyond the bound waited for a slot instead of evicting those collecting.
        assert!(m.counts().evictions.is_empty(), "{:?}", m.counts());
        assert!(m.counts().limits_hit["bootstrapping_models"] > 0);
    }

    #[test]
    fn versions_served_side_by_side_do_not_evict_each_other() {
        let (mut m, _) = test_monitor(|c| c.limits.max_versions_per_model = 4);
        let versions: Vec<Vec<String>> = (1..=5)
            .map(|k| predictions("a", &format!("v{k}"), 0, 30))
            .collect();
        let mut offset = 0;
        for i in 0..versions[0].len() {
            for stream in &versions {
                feed(&mut m, &mut offset, &stream[i]);
            }
        }
        let kept: Vec<&str> = m.models[0]
            .as_ref()
            .unwrap()
            .versions
            .iter()
            .map(|v| v.version.as_str())
            .collect();
        assert_eq!(kept, ["v1", "v2", "v3", "v4"]);
        assert!(m.counts().evictions.is_empty(), "{:?}", m.counts());
        assert_eq!(m.counts().limits_hit["versions"], 30 * 20);
    }

    fn sample_above_zero(text: &str, series: &str) -> bool {
        text.lines()
            .filter_map(|l| l.strip_prefix(series))
            .any(|v| v.trim().parse::<f64>().is_ok_and(|v| v > 0.0))
    }

    #[test]
    fn an_idle_version_is_evicted_and_labels_still_join_the_versions_after_it() {
        let (mut m, t) = test_monitor(|_| {});
        let mut offset = 0;
        for p in predictions("a", "v1", 0, 100) {
            feed(&mut m, &mut offset, &p);
        }
        let v2 = predictions("a", "v2", 100, 300);
        // v2 until 150 s: v1 is not idle for `version_idle` yet.
        for p in &v2[..50 * 20] {
            feed(&mut m, &mut offset, p);
        }
        assert!(has_series(&t, r#"model_id="a",model_version="v1""#));
        assert_eq!(m.models[0].as_ref().unwrap().versions.len(), 2);
        for p in &v2[50 * 20..] {
            feed(&mut m, &mut offset, p);
        }
        let model = m.models[0].as_ref().unwrap();
        assert_eq!(model.versions.len(), 1);
        assert_eq!(model.versions[0].version, "v2");
        assert!(!has_series(&t, r#"model_version="v1""#), "{}", t.render());
        assert!(has_series(&t, r#"model_id="a",model_version="v2""#));
        assert_eq!(
            m.counts().evictions.get(&("version", "idle")),
            Some(&1),
            "{:?}",
            m.counts()
        );
        // A v2 prediction made before the eviction (index 1 then, 0 now) still joins its label.
        let label = r#"{"event_id":"a-v2-150000","model_id":"a","timestamp":"1970-01-01T00:04:58Z","label":1}"#;
        feed(&mut m, &mut offset, label);
        // The label input's clock decides about its first event at the end.
        m.finish(&mut Vec::new());
        let joined = |m: &Monitor| m.counts().events(Some(EventKind::Label), Outcome::Joined);
        assert_eq!(joined(&m), 1, "{:?}", m.counts());
    }
}
