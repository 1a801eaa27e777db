//! Applying one admitted event: a prediction to its model version (bootstrap, window, join
//! buffer), a label or late features to the prediction they join, or held until it comes.

use super::*;

/// The version a joined label or late features belong to, unless it is gone (counted as a
/// join miss); `input` feeds its model from now on.
pub(super) fn pending_version<'a>(
    models: &'a mut [Option<ModelState>],
    counts: &mut Counts,
    p: &Pending,
    input: u32,
) -> Option<&'a mut VersionState> {
    let live = models
        .get(p.model as usize)
        .and_then(Option::as_ref)
        .is_some_and(|m| (p.version as usize) < m.versions.len());
    if !live {
        counts.join_misses += 1;
        return None;
    }
    let model = models[p.model as usize].as_mut().expect("checked");
    model.fed_by(input);
    Some(&mut model.versions[p.version as usize])
}

impl Monitor {
    /// Applies one admitted event; `from_waiting` when it comes out of a bootstrapping
    /// version's waiting predictions.
    pub(super) fn apply(
        &mut self,
        ii: usize,
        e: &Event<'_>,
        input: Input<'_>,
        from_waiting: bool,
    ) -> Outcome {
        let origin = Origin {
            input: ii as u32,
            offset: input.offset,
        };
        let (outcome, pane) = match e.kind {
            EventKind::Prediction => self.apply_prediction(e, input, origin, from_waiting),
            EventKind::Label => self.apply_label(e, origin),
            EventKind::Features => self.apply_features(e, origin),
        };
        if !matches!(outcome, Outcome::Held | Outcome::Waiting) {
            self.inputs[ii].offsets.note(pane, input.offset);
        }
        outcome
    }

    pub(super) fn apply_prediction(
        &mut self,
        e: &Event<'_>,
        input: Input<'_>,
        origin: Origin,
        from_waiting: bool,
    ) -> (Outcome, Option<i64>) {
        let Some(mi) = self.model_slot(&e.model_id, e.timestamp_ms) else {
            return (Outcome::Limit, None);
        };
        let version = e
            .model_version
            .as_deref()
            .expect("predictions have versions");
        let (was_established, full) = {
            let model = self.models[mi].as_ref().expect("live model");
            let full = model.versions.len() >= self.cfg.limits.max_versions_per_model
                && model.version_index(version).is_none();
            (model.established(), full)
        };
        if full {
            // A version that sent nothing for a slide of event time makes room; while every
            // version is active the new one waits, so that versions served side by side do
            // not evict each other.
            let model = self.models[mi].as_ref().expect("live model");
            let settled = self.cfg.baseline.bootstrap_events as u64;
            let idle_before = e.timestamp_ms.saturating_sub(self.slide_ms);
            match model.version_to_replace(settled, idle_before) {
                Some(vi) => self.evict_version(mi, vi, EvictionReason::Capacity),
                None => {
                    self.counts
                        .limit_for("versions", 1, format_args!("{}/{version}", e.model_id));
                    return (Outcome::Limit, None);
                }
            }
        }
        // A model that gets its baseline with this event takes a `max_models` slot, if one is
        // left (counted before the borrows below).
        let no_slot_left = !was_established
            && self.model_index.len() > self.cfg.limits.max_models
            && self.established_models(mi) >= self.cfg.limits.max_models;
        let cfg: &Config = &self.cfg;
        let Monitor {
            models,
            baselines,
            counts,
            version_seq,
            keep_recent,
            new_profiles,
            joins,
            waiting_seq,
            checkpoints,
            ..
        } = self;
        let model = models[mi].as_mut().expect("live model");
        model.fed_by(origin.input);
        let known_versions = model.versions.len();
        let vi = version_slot(model, version, cfg, baselines, version_seq, *keep_recent);
        if model.versions.len() > known_versions {
            resume_from_checkpoint(model, vi, checkpoints);
        }
        let v = &mut model.versions[vi];
        v.last_ts = v.last_ts.max(e.timestamp_ms);
        let (outcome, pane, groups) = record_prediction(
            &mut model.versions[vi],
            e,
            origin,
            from_waiting,
            cfg,
            counts,
        );
        if outcome == Outcome::Waiting {
            *waiting_seq += 1;
            model.versions[vi].waiting.push(Waiting {
                ts: e.timestamp_ms,
                seq: *waiting_seq,
                origin,
                payload: input.payload.to_vec(),
            });
            self.inputs[origin.input as usize]
                .offsets
                .pin(origin.offset);
            if model.versions[vi].waiting.len() > waiting_cap(cfg) {
                self.waiting_overflow = Some(mi);
            }
            return (Outcome::Waiting, None);
        }
        if no_slot_left && model.established() {
            counts.limit_for("models", 1, format_args!("{}", e.model_id));
            self.evict_model(mi, EvictionReason::Capacity);
            return (Outcome::Limit, None);
        }
        if outcome == Outcome::Bootstrapped {
            if let Phase::Active(a) = &model.versions[vi].phase {
                let (profile, starts) = (Arc::clone(&a.profile), a.starts_ms);
                new_profiles.push((Arc::clone(&profile), starts));
                // Versions still bootstrapping share it: a canary is compared against the same
                // reference as its baseline version.
                for (i, other) in model.versions.iter_mut().enumerate() {
                    if i != vi
                        && matches!(other.phase, Phase::Bootstrapping { .. })
                        && baselines.find(&model.model_id, &other.version).is_none()
                    {
                        other.phase =
                            Phase::Active(Box::new(activate(Arc::clone(&profile), cfg, starts)));
                    }
                }
            }
        }
        if outcome == Outcome::Recorded {
            model.versions[vi]
                .recent
                .push(e.timestamp_ms, input.payload);
        }
        if !matches!(
            outcome,
            Outcome::Recorded | Outcome::Bootstrap | Outcome::Bootstrapped
        ) {
            return (outcome, pane);
        }
        let p = e.prediction.as_ref().expect("predictions have a payload");
        let pending = Pending {
            model: mi as u32,
            version: vi as u16,
            ts: e.timestamp_ms,
            score: p.score.or(p.value).unwrap_or(f64::NAN),
            label_hash: p.label.as_deref().map(join::hash_str),
            positive: predicted_positive(p),
            groups,
            features_pending: e.features.is_empty(),
        };
        let ttl_ms = cfg.limits.join_ttl.as_millis() as i64;
        counts.join_expired += joins.insert(
            &e.event_id,
            pending,
            e.timestamp_ms,
            ttl_ms,
            cfg.limits.max_pending_joins,
        );
        // Features and a label that came before their prediction: their offsets stay pinned
        // until they are in a pane, then that pane keeps them.
        let mut used: [Option<(Origin, Option<i64>)>; 2] = [None, None];
        if e.features.is_empty() {
            if let Some(early) = joins.early_features.take(&e.event_id) {
                let borrowed: Vec<_> = early
                    .features
                    .iter()
                    .map(|(k, v)| (std::borrow::Cow::Borrowed(k.as_str()), v.as_value()))
                    .collect();
                joins.take_features_slot(&e.event_id);
                let (_, fpane) = record_late_features(
                    &mut model.versions[vi],
                    e.timestamp_ms,
                    &borrowed,
                    counts,
                );
                model.fed_by(early.origin.input);
                used[0] = Some((early.origin, fpane));
            }
        }
        if let Some(early) = joins.early_labels.take(&e.event_id) {
            let mut lpane = None;
            if let Some(pending) = joins.take_for_label(&e.event_id) {
                let l = LabelRef {
                    ts: early.ts,
                    label: early.label.as_deref(),
                    value: early.value,
                };
                lpane = record_label(&mut model.versions[vi], &pending, l, counts).1;
                model.fed_by(early.origin.input);
            }
            used[1] = Some((early.origin, lpane));
        }
        for (o, pane) in used.into_iter().flatten() {
            let inp = &mut self.inputs[o.input as usize];
            inp.offsets.unpin(o.offset);
            inp.offsets.note(pane, o.offset);
        }
        (outcome, pane)
    }

    /// Holds a label or features for a prediction not seen yet (their offset stays pinned
    /// until they are used or given up); returns how many held entries were given up.
    pub(super) fn hold_early<T: Held>(
        &mut self,
        queue: fn(&mut JoinBuffer) -> &mut EarlyQueue<T>,
        event_id: &str,
        item: T,
        capacity: usize,
    ) -> u64 {
        let (origin, ts) = (item.origin(), item.ts());
        self.inputs[origin.input as usize]
            .offsets
            .pin(origin.offset);
        let ttl_ms = self.cfg.limits.join_ttl.as_millis() as i64;
        queue(&mut self.joins).hold(event_id, item, ts, ttl_ms, capacity, &mut self.evicted);
        let n = self.evicted.len() as u64;
        self.release_evicted();
        n
    }

    /// Unpins the offsets of held labels and features that were given up.
    pub(super) fn release_evicted(&mut self) {
        for o in self.evicted.drain(..) {
            if let Some(inp) = self.inputs.get_mut(o.input as usize) {
                inp.offsets.unpin(o.offset);
                inp.offsets.note(None, o.offset);
            }
        }
    }

    pub(super) fn apply_label(&mut self, e: &Event<'_>, origin: Origin) -> (Outcome, Option<i64>) {
        let cfg: &Config = &self.cfg;
        let Some(p) = self.joins.take_for_label(&e.event_id) else {
            // The prediction has not arrived yet (or never will): hold the label, bounded.
            let early = EarlyLabel {
                ts: e.timestamp_ms,
                origin,
                label: e.label.as_deref().map(Into::into),
                value: e.value,
            };
            let evicted = self.hold_early(
                |j| &mut j.early_labels,
                &e.event_id,
                early,
                cfg.limits.max_pending_joins,
            );
            self.counts.join_misses += evicted;
            return (Outcome::Held, None);
        };
        let Some(v) = pending_version(&mut self.models, &mut self.counts, &p, origin.input) else {
            return (Outcome::Unjoined, None);
        };
        let l = LabelRef {
            ts: e.timestamp_ms,
            label: e.label.as_deref(),
            value: e.value,
        };
        record_label(v, &p, l, &mut self.counts)
    }

    pub(super) fn apply_features(
        &mut self,
        e: &Event<'_>,
        origin: Origin,
    ) -> (Outcome, Option<i64>) {
        let cfg: &Config = &self.cfg;
        let Some(p) = self.joins.take_features_slot(&e.event_id) else {
            // The prediction has not arrived yet (or never will): hold the features, bounded.
            let early = EarlyFeatures {
                ts: e.timestamp_ms,
                origin,
                features: e
                    .features
                    .iter()
                    .map(|(k, v)| {
                        let owned = match v {
                            FeatureValue::Number(x) => join::OwnedValue::Number(*x),
                            FeatureValue::Text(t) => join::OwnedValue::Text(t.to_string()),
                            FeatureValue::Null => join::OwnedValue::Null,
                        };
                        (k.to_string(), owned)
                    })
                    .collect(),
            };
            let evicted = self.hold_early(
                |j| &mut j.early_features,
                &e.event_id,
                early,
                (cfg.limits.max_pending_joins / 4).max(1),
            );
            self.counts.join_expired += evicted;
            return (Outcome::Held, None);
        };
        let Some(v) = pending_version(&mut self.models, &mut self.counts, &p, origin.input) else {
            return (Outcome::Unjoined, None);
        };
        record_late_features(v, p.ts, &e.features, &mut self.counts)
    }
}
