//! Closing windows: the panes every model's watermark has passed are evaluated, policy and
//! canary applied, outputs published once.

use super::*;
use crate::output::InputRange;
use crate::policy::TriggerContext;
use crate::state::window::WindowBounds;

impl Monitor {
    /// Closes the panes that every model's watermark has passed, evaluating the windows they
    /// complete, then evicts what is idle.
    pub fn advance(&mut self, out: &mut Vec<Output>) {
        self.since_advance = 0;
        // An input that has delivered nothing yet may carry any model's events.
        if self
            .inputs
            .iter()
            .any(|i| !i.dropped && !i.idle && i.clock.floor().is_none())
        {
            return;
        }
        self.close_windows(out, false);
        self.evict_idle();
    }

    pub(super) fn close_windows(&mut self, out: &mut Vec<Output>, at_end: bool) {
        self.release_waiting(at_end);
        let slide_ms = self.slide_ms;
        for mi in 0..self.models.len() {
            let Some(model) = self.models[mi].as_mut() else {
                continue;
            };
            let Some(clock) = watermark_of(&self.inputs, &model.feeders) else {
                continue;
            };
            self.event_now = Some(self.event_now.map_or(clock, |n| n.max(clock)));
            let watermark = if at_end {
                // Everything up to and including the newest pane closes.
                clock.saturating_add(slide_ms)
            } else {
                clock.saturating_sub(self.lateness_ms)
            };
            if watermark < model.next_close_ms && !at_end {
                continue;
            }
            if let Some(t) = &self.telemetry {
                t.watermark
                    .with_label_values(&[&model.model_id])
                    .set(watermark as f64 / 1000.0);
            }
            model.next_close_ms = (watermark.div_euclid(slide_ms) + 1) * slide_ms;
            let Monitor {
                cfg,
                inputs,
                telemetry,
                ledger,
                snapshots,
                clock: out_clock,
                emitted,
                ..
            } = self;
            let cfg: &Config = cfg;
            let mut evaluations: Vec<(usize, Evaluation)> = Vec::new();
            for (vi, v) in model.versions.iter_mut().enumerate() {
                let Phase::Active(active) = &mut v.phase else {
                    continue;
                };
                let profile = Arc::clone(&active.profile);
                let attributes = &v.attributes;
                let learned = v.policy.learned_accuracy;
                let mut detections = Some(std::mem::take(&mut v.detectors.detections));
                let skip_through = v.skip_through_ms;
                let mut evaluated_through = v.evaluated_through_ms;
                active.window.close_until(watermark, |bounds, agg| {
                    // Statistics of a window that started before the baseline existed would
                    // compare a fraction of the traffic; wait for the first full window. Windows
                    // an earlier run evaluated (its checkpoint) are not evaluated again.
                    if !bounds.full || bounds.end_ms <= skip_through {
                        return;
                    }
                    evaluated_through = evaluated_through.max(bounds.end_ms);
                    let started = std::time::Instant::now();
                    let ev = eval::evaluate(
                        cfg,
                        &model.model_id,
                        &v.version,
                        &profile,
                        agg,
                        bounds,
                        attributes,
                        detections.take().unwrap_or_default(),
                        learned,
                    );
                    if let Some(t) = telemetry {
                        t.eval_seconds.observe(started.elapsed().as_secs_f64());
                        eval::export(t, &ev);
                    }
                    evaluations.push((vi, ev));
                });
                v.evaluated_through_ms = evaluated_through;
                if let Some(d) = detections {
                    v.detectors.detections = d;
                }
            }
            model.checkpoint_due |= !evaluations.is_empty();
            let first_output = out.len();
            for (vi, ev) in &evaluations {
                let v = &mut model.versions[*vi];
                let (model_id, feeders) = (&model.model_id, &model.feeders);
                let (recent, phase, version) = (&v.recent, &v.phase, &v.version);
                // A trigger names the snapshot of its window's events (written on the
                // snapshot thread) and the offsets of its window's predictions.
                let mut context = |trigger_id: &str| TriggerContext {
                    snapshot: match (&*snapshots, phase) {
                        (Some(writer), Phase::Active(a)) => Some(writer.submit(
                            model_id,
                            version,
                            trigger_id,
                            &a.profile,
                            recent.between(ev.bounds.start_ms, ev.bounds.end_ms),
                        )),
                        _ => None,
                    },
                    inputs: input_ranges(inputs, feeders, ev.bounds, slide_ms),
                };
                v.policy
                    .apply(cfg, ev, out_clock, ledger, &mut context, out);
            }
            crate::policy::canary::compare_versions(
                cfg,
                &mut model.canary,
                &model.model_id,
                &model
                    .versions
                    .iter()
                    .map(|v| (v.version.as_str(), v.seq))
                    .collect::<Vec<_>>(),
                &evaluations,
                out_clock,
                out,
            );
            if let Some(t) = telemetry {
                for (vi, _) in &evaluations {
                    let v = &model.versions[*vi];
                    t.export_alerts(&model.model_id, &v.version, v.policy.alerts());
                }
                t.record_decisions(&out[first_output..]);
            }
            if !emitted.is_empty() {
                // Windows evaluated again after a restart give the same ids: published once.
                let mut i = first_output;
                while i < out.len() {
                    if let Some(key) = emitted_key(&out[i]).filter(|k| emitted.contains(k)) {
                        tracing::debug!(%key, "published before; not again");
                        out.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
        }
    }
}

/// The offsets of the predictions in a window, per prediction input of the model.
fn input_ranges(
    inputs: &[InputState],
    feeders: &[u32],
    bounds: WindowBounds,
    slide_ms: i64,
) -> Vec<InputRange> {
    let first = bounds.start_ms.div_euclid(slide_ms);
    let last = (bounds.end_ms - 1).div_euclid(slide_ms);
    feeders
        .iter()
        .map(|&f| &inputs[f as usize])
        .filter(|i| i.kind == EventKind::Prediction && !i.dropped)
        .filter_map(|i| {
            let (from_offset, to_offset) = i.offsets.range(first, last)?;
            Some(InputRange {
                topic: i.topic.clone(),
                partition: i.partition,
                from_offset,
                to_offset,
            })
        })
        .collect()
}
