//! The monitor: routes each input message to its model version, keeps event time per input,
//! closes windows when a model's watermark passes them, and turns closed windows into
//! evaluations, alerts, triggers and verdicts. Synchronous and free of I/O: the Kafka source and
//! `replay` feed it messages and publish what it returns.
//!
//! # Event time
//!
//! Every input — a (topic, partition) of the live service, or one kind of event in a replayed
//! file — has its own clock ([`crate::state::clock`]). A model's watermark is the minimum of the
//! clocks of the inputs that have carried its events, less `window.allowed_lateness`; an input
//! with nothing left to fetch is idle and does not hold it back (unless every input of the model
//! is idle). So whichever topic the consumer happens to fetch first, no event is late that would
//! not be late in a replay of the same events in event-time order. Inputs known to exist but
//! that have delivered nothing yet (partitions just assigned) hold every watermark back until
//! they deliver or turn out to be idle.
//!
//! Models are kept per instance, not per partition: a model whose events are spread over
//! several partitions has one window, one baseline and one join buffer here.

mod apply;
mod bootstrap;
mod checkpoint;
mod close;
mod inputs;
mod lifecycle;
#[cfg(test)]
mod testing;
mod version;

use std::collections::HashMap;
use std::sync::Arc;

use crate::baseline::Profile;
use crate::config::Config;
use crate::eval::{self, Evaluation};
use crate::event::{decode, decode_reusing, DecodeError, Event, EventKind, FeatureValue};
use crate::output::{DeadLetter, Output};
use crate::policy::Clock;
use crate::state::clock::{Admission, Decided, InputClock};
use crate::state::join::{
    self, EarlyFeatures, EarlyLabel, EarlyQueue, Held, JoinBuffer, Origin, Pending,
};
use crate::state::offsets::OffsetTracker;
use crate::state::{same_str, Baselines, Input};
use crate::telemetry::{Counts, Evicted, EvictionReason, Outcome, Telemetry};
use version::{
    activate, predicted_positive, record_label, record_late_features, record_prediction,
    version_slot, LabelRef, ModelState, Phase, VersionState, Waiting,
};

use bootstrap::waiting_cap;
pub use bootstrap::Fill;
use checkpoint::resume_from_checkpoint;
pub use checkpoint::{emitted_key, emitted_key_json, PolicyCheckpoint, VersionCheckpoint};
pub use inputs::InputView;
use inputs::{watermark_of, HeldMessage, InputState};

/// Events processed between two checks of the watermarks. Watermarks only ever hold panes
/// open longer when checked less often, so the interval changes when windows close, never what
/// they contain; a fixed count keeps replays reproducible.
const ADVANCE_EVERY: u32 = 256;

/// The monitor: all per-model state of this instance.
pub struct Monitor {
    cfg: Arc<Config>,
    baselines: Baselines,
    models: Vec<Option<ModelState>>,
    model_index: HashMap<String, usize>,
    /// Model of the previous event (events of one model usually come in runs).
    last_model: usize,
    joins: JoinBuffer,
    inputs: Vec<InputState>,
    /// Input of the previous message.
    last_input: usize,
    since_advance: u32,
    counts: Counts,
    telemetry: Option<Telemetry>,
    clock: Clock,
    version_seq: u64,
    slide_ms: i64,
    lateness_ms: i64,
    max_skew_ms: i64,
    ledger: crate::policy::TriggerLedger,
    snapshots: Option<crate::sink::snapshot::SnapshotWriter>,
    /// Whether versions keep their recent events (only snapshots read them).
    keep_recent: bool,
    new_profiles: Vec<(Arc<Profile>, i64)>,
    /// The lists [`Monitor::process`] decodes into, kept from message to message.
    buffers: crate::event::DecodeBuffers,
    /// Origins of held labels and features given up, to unpin.
    evicted: Vec<Origin>,
    /// Predictions put in a bootstrapping version's waiting queue so far.
    waiting_seq: u64,
    /// A model whose waiting predictions went over the cap.
    waiting_overflow: Option<usize>,
    /// Policy checkpoints read back, applied to models and versions as they are created.
    checkpoints: HashMap<String, PolicyCheckpoint>,
    /// Alerts and verdicts published before (by an earlier run or owner), not published again.
    emitted: std::collections::HashSet<String>,
    /// Slots of `models` emptied by evictions, reused first.
    free_models: Vec<usize>,
    /// Event time of the instance: the most advanced model's watermark (before lateness).
    event_now: Option<i64>,
    /// Event time at which idle models and versions are looked for next.
    next_idle_check_ms: i64,
}

impl Monitor {
    /// A monitor for `cfg` with the configured `baselines`; `clock` stamps `emitted_at`.
    pub fn new(cfg: Arc<Config>, baselines: Baselines, clock: Clock) -> Self {
        let slide_ms = cfg.window.slide.as_millis() as i64;
        let lateness_ms = cfg.window.allowed_lateness.as_millis() as i64;
        let max_skew_ms = cfg.window.max_skew.as_millis() as i64;
        Self {
            cfg,
            baselines,
            models: Vec::new(),
            model_index: HashMap::new(),
            last_model: 0,
            joins: JoinBuffer::default(),
            inputs: Vec::new(),
            last_input: 0,
            since_advance: 0,
            counts: Counts::default(),
            telemetry: None,
            clock,
            version_seq: 0,
            slide_ms,
            lateness_ms,
            max_skew_ms,
            ledger: Default::default(),
            snapshots: None,
            keep_recent: false,
            new_profiles: Vec::new(),
            buffers: Default::default(),
            evicted: Vec::new(),
            waiting_seq: 0,
            waiting_overflow: None,
            checkpoints: HashMap::new(),
            emitted: Default::default(),
            free_models: Vec::new(),
            event_now: None,
            next_idle_check_ms: i64::MIN,
        }
    }

    /// Baselines bootstrapped since the last call, to be made durable (the Kafka service writes
    /// them to the compacted state topic before it commits the offsets of the events they came
    /// from, and reads them back when it is assigned partitions), each with the start of its
    /// first window (see [`Monitor::add_baseline`]).
    pub fn take_new_profiles(&mut self) -> Vec<(Arc<Profile>, i64)> {
        std::mem::take(&mut self.new_profiles)
    }

    /// Writes a Parquet snapshot of the triggering window's events with every trigger.
    pub fn with_snapshots(mut self, writer: crate::sink::snapshot::SnapshotWriter) -> Self {
        self.snapshots = Some(writer);
        self.keep_recent = true;
        self
    }

    /// Exports model metrics to `telemetry` at every evaluation.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Starts from triggers already emitted (read back from the trigger topic), so none is
    /// emitted twice across restarts.
    pub fn with_ledger(mut self, ledger: crate::policy::TriggerLedger) -> Self {
        self.ledger = ledger;
        self
    }

    /// Adds triggers emitted elsewhere (by the previous owner of newly assigned partitions).
    pub fn extend_ledger(&mut self, other: crate::policy::TriggerLedger) {
        self.ledger.extend(other);
    }

    /// Adds a baseline made durable elsewhere (by the previous owner of newly assigned
    /// partitions), unless one is known for the model and version; versions not seen yet use
    /// it instead of bootstrapping their own, with windows from `window_starts_ms` on (where the
    /// bootstrapping owner's started; `None` for the first event).
    pub fn add_baseline(&mut self, p: Profile, window_starts_ms: Option<i64>) -> bool {
        let version = p.model_version.clone();
        if self.baselines.contains(&p.model_id, version.as_deref()) {
            return false;
        }
        let model = p.model_id.clone();
        match window_starts_ms {
            Some(s) => self
                .baselines
                .insert_bootstrapped(&model, version.as_deref(), p, s),
            None => self.baselines.insert(&model, version.as_deref(), p),
        }
        true
    }

    /// The snapshot writer, when triggers come with snapshots.
    pub fn snapshot_writer(&self) -> Option<&crate::sink::snapshot::SnapshotWriter> {
        self.snapshots.as_ref()
    }

    /// Waits for the snapshots still being written and their copies to object storage.
    pub fn finish_snapshots(&self) {
        if let Some(s) = &self.snapshots {
            s.finish();
        }
    }

    /// Counts accumulated since the last flush.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Adds accumulated counts to the metrics.
    pub fn flush_telemetry(&mut self, telemetry: &Telemetry) {
        telemetry.flush_counts(&mut self.counts);
        let versions: usize = self.models().map(|m| m.versions.len()).sum();
        telemetry.models.set(versions as i64);
        telemetry
            .held_for_join
            .with_label_values(&["label"])
            .set(self.joins.early_labels.len() as i64);
        telemetry
            .held_for_join
            .with_label_values(&["features"])
            .set(self.joins.early_features.len() as i64);
    }

    fn models(&self) -> impl Iterator<Item = &ModelState> {
        self.models.iter().flatten()
    }

    /// The largest message accepted (`limits.max_event_bytes`), for callers that decode.
    pub fn max_event_bytes(&self) -> usize {
        self.cfg.limits.max_event_bytes
    }

    /// Processes one message, appending what it causes to `out`.
    pub fn process(&mut self, input: Input<'_>, out: &mut Vec<Output>) {
        let mut decoded = decode_reusing(
            input.payload,
            input.kind,
            self.cfg.limits.max_event_bytes,
            &mut self.buffers,
        );
        self.process_decoded(input, &decoded, out);
        if let Ok(e) = &mut decoded {
            self.buffers.take_back(e);
        }
    }

    /// Processes one message that the caller already decoded with
    /// `decode(input.payload, input.kind, self.max_event_bytes())` (so decoding can run on
    /// another thread); the same as [`Monitor::process`] otherwise.
    pub fn process_decoded(
        &mut self,
        input: Input<'_>,
        decoded: &Result<Event<'_>, DecodeError>,
        out: &mut Vec<Output>,
    ) {
        let event = match decoded {
            Ok(e) => e,
            Err(err) => {
                let kind = input.kind.unwrap_or(EventKind::Prediction);
                let ii = self.input_index(input.topic, input.partition, kind);
                self.dead_letter(input, err, out);
                self.inputs[ii].offsets.note(None, input.offset);
                return;
            }
        };
        let ii = self.input_index(input.topic, input.partition, event.kind);
        // Data arrived: whatever the source last saw, the input is not idle.
        self.inputs[ii].idle = false;
        let admission = self.inputs[ii]
            .clock
            .admit(event.timestamp_ms, self.max_skew_ms);
        if admission == Admission::Hold {
            let inp = &mut self.inputs[ii];
            inp.held.push(HeldMessage {
                offset: input.offset,
                payload: input.payload.to_vec(),
            });
            inp.offsets.pin(input.offset);
        }
        if let Some(d) = self.inputs[ii].clock.take_decided(self.max_skew_ms) {
            self.resolve_held(ii, d, out);
        }
        if admission == Admission::Admit {
            self.handle(ii, event, input, out);
        }
    }

    fn dead_letter(&mut self, input: Input<'_>, err: &DecodeError, out: &mut Vec<Output>) {
        self.counts.event(input.kind, Outcome::DeadLetter);
        *self.counts.dead_letters.entry(err.reason()).or_insert(0) += 1;
        out.push(Output::DeadLetter(DeadLetter {
            reason: err.reason(),
            detail: err.to_string(),
            topic: input.topic.to_string(),
            partition: input.partition,
            offset: input.offset,
            payload: input.payload.to_vec(),
        }));
    }

    /// Processes the held messages the clock of input `ii` decided about: rejected ones are
    /// dead-lettered, admitted ones processed in the order they came.
    fn resolve_held(&mut self, ii: usize, d: Decided, out: &mut Vec<Output>) {
        let mut held = std::mem::take(&mut self.inputs[ii].held);
        if d.admit.is_empty() && d.reject.is_empty() {
            self.inputs[ii].held = held;
            return;
        }
        let (topic, partition, kind) = {
            let i = &self.inputs[ii];
            (i.topic.clone(), i.partition, i.kind)
        };
        let clock = self.inputs[ii].clock.time();
        let mut admit = d.admit.iter().peekable();
        let mut reject = d.reject.iter().peekable();
        for (n, m) in held.iter_mut().enumerate() {
            let input = Input {
                kind: Some(kind),
                topic: &topic,
                partition,
                offset: m.offset,
                payload: &m.payload,
            };
            self.inputs[ii].offsets.unpin(m.offset);
            if reject.peek() == Some(&&n) {
                reject.next();
                let decoded = decode(&m.payload, Some(kind), usize::MAX);
                let ts = decoded.as_ref().map(|e| e.timestamp_ms).unwrap_or_default();
                let err = DecodeError::FutureTimestamp {
                    timestamp_ms: ts,
                    clock_ms: clock.unwrap_or_default(),
                    max_skew_ms: self.max_skew_ms,
                };
                self.dead_letter(input, &err, out);
                self.inputs[ii].offsets.note(None, m.offset);
            } else if admit.peek() == Some(&&n) {
                admit.next();
                if let Ok(e) = decode(&m.payload, Some(kind), usize::MAX) {
                    self.handle(ii, &e, input, out);
                }
            }
        }
    }

    /// Applies an admitted event and checks the watermarks every [`ADVANCE_EVERY`] events.
    fn handle(&mut self, ii: usize, e: &Event<'_>, input: Input<'_>, out: &mut Vec<Output>) {
        let kind = e.kind;
        let outcome = self.apply(ii, e, input, false);
        if outcome != Outcome::Waiting {
            // Counted when it leaves the queue.
            self.counts.event(Some(kind), outcome);
        }
        if let Some(mi) = self.waiting_overflow.take() {
            self.counts.limit("bootstrap_waiting");
            self.warn_overflow(mi);
            self.release_model(mi, i64::MIN);
        }
        self.since_advance += 1;
        if self.since_advance >= ADVANCE_EVERY {
            self.advance(out);
        }
    }

    /// Closes every pane (end of a replay file), evaluating what remains: held events are
    /// decided, and every input counts as idle.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        for ii in 0..self.inputs.len() {
            let d = self.inputs[ii].clock.settle(self.max_skew_ms);
            self.resolve_held(ii, d, out);
        }
        for i in self.inputs.iter_mut() {
            i.idle = true;
        }
        self.close_windows(out, true);
        self.counts.join_misses +=
            (self.joins.early_labels.len() + self.joins.early_features.len()) as u64;
    }

    /// Next offset to commit per input `(topic, partition)`: every earlier event is reflected
    /// in outputs already produced, so a restart from there loses nothing.
    pub fn committable(&mut self) -> Vec<((String, i32), i64)> {
        let n = self.inputs.len();
        let mut oldest: Vec<Option<i64>> = vec![None; n];
        let mut pins: Vec<Option<i64>> = vec![None; n];
        let min = |a: Option<i64>, b: i64| Some(a.map_or(b, |a| a.min(b)));
        for m in self.models.iter().flatten() {
            if let Some(o) = m.oldest_needed_pane() {
                for &f in &m.feeders {
                    oldest[f as usize] = min(oldest[f as usize], o);
                }
            }
            for v in &m.versions {
                if let Phase::Bootstrapping { pins: p, .. } = &v.phase {
                    for &(i, off) in p {
                        pins[i as usize] = min(pins[i as usize], off);
                    }
                }
            }
        }
        let mut res = Vec::new();
        for (i, inp) in self.inputs.iter_mut().enumerate() {
            if inp.dropped {
                continue;
            }
            // No model needs a pane of this input: what is recorded in its panes belongs to
            // models evicted or dropped, given up with them.
            let oldest = oldest[i].or(Some(i64::MAX));
            if let Some(next) = inp.offsets.committable(oldest, pins[i]) {
                res.push(((inp.topic.clone(), inp.partition), next));
            }
        }
        res
    }
}
