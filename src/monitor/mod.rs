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
use crate::telemetry::{Counts, Evicted, EvictionReason, Telemetry};
use version::{
    activate, predicted_positive, record_label, record_late_features, record_prediction,
    version_slot, LabelRef, ModelState, Phase, VersionState, Waiting,
};

/// Events processed between two checks of the watermarks. Watermarks only ever hold panes
/// open longer when checked less often, so the interval changes when windows close, never what
/// they contain; a fixed count keeps replays reproducible.
const ADVANCE_EVERY: u32 = 256;

/// A message held by its input's clock until the clock decides about it.
#[derive(Debug)]
struct HeldMessage {
    offset: i64,
    payload: Vec<u8>,
}

/// One input: a topic partition (or one kind of event in a file).
#[derive(Debug)]
struct InputState {
    topic: String,
    partition: i32,
    kind: EventKind,
    clock: InputClock,
    /// Messages held by the clock, in the order it holds their times.
    held: Vec<HeldMessage>,
    /// Nothing left to fetch (told by the source; a file's inputs are never idle).
    idle: bool,
    /// Revoked: kept so that indices stay valid, ignored otherwise.
    dropped: bool,
    offsets: OffsetTracker,
}

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

/// Where one input stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputView<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// What it carries.
    pub kind: EventKind,
    /// Event time it has reached (see [`InputClock::floor`]); `None` before its first event.
    pub clock: Option<i64>,
    /// Whether it was reported to have nothing left to fetch.
    pub idle: bool,
    /// Offset after the last message it delivered.
    pub next_offset: Option<i64>,
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

/// Most predictions a bootstrapping version keeps waiting for its model's watermark (four
/// times `baseline.bootstrap_events`, at least 4,096); beyond it the earliest are fed to the
/// baseline regardless.
fn waiting_cap(cfg: &Config) -> usize {
    cfg.baseline.bootstrap_events.saturating_mul(4).max(4096)
}

/// Event time a model's inputs have all reached, the watermark before lateness; `None` while
/// one of them, not idle, has no clock yet.
///
/// A model's windows are made of its predictions: prediction inputs that are idle do not hold
/// it back while another prediction input is active, and when every prediction input is idle
/// it stands at the newest of them. Label and feature inputs hold it back while active, but
/// never carry it past the predictions: labels of a resumed stream often reach the broker
/// before their predictions, and an idle prediction partition must not let them close the
/// windows its next predictions belong to.
fn watermark_of(inputs: &[InputState], feeders: &[u32]) -> Option<i64> {
    let min = |a: Option<i64>, t: i64| Some(a.map_or(t, |a| a.min(t)));
    let (mut predictions, mut idle_predictions, mut others) = (None, None::<i64>, None);
    for &f in feeders {
        let inp = &inputs[f as usize];
        if inp.dropped {
            continue;
        }
        let prediction = inp.kind == EventKind::Prediction;
        match (inp.idle, inp.clock.floor()) {
            (false, None) => return None,
            (false, Some(t)) if prediction => predictions = min(predictions, t),
            (false, Some(t)) => others = min(others, t),
            (true, Some(t)) if prediction => {
                idle_predictions = Some(idle_predictions.map_or(t, |a| a.max(t)))
            }
            (true, _) => {}
        }
    }
    let p = predictions.or(idle_predictions)?;
    Some(others.map_or(p, |o| o.min(p)))
}

/// Gives a version just created (index `vi`) the policy state a checkpoint holds for it, and
/// the model its canary state when this is its first version.
fn resume_from_checkpoint(
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

/// The version a joined label or late features belong to, unless it is gone (counted as a
/// join miss); `input` feeds its model from now on.
fn pending_version<'a>(
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

    /// Waits for the snapshot copies to object storage still queued.
    pub fn finish_snapshots(&self) {
        if let Some(s) = &self.snapshots {
            s.finish();
        }
    }

    /// Adds alerts and verdicts published before ([`emitted_key`]).
    pub fn extend_emitted(&mut self, keys: impl IntoIterator<Item = String>) {
        self.emitted.extend(keys);
    }

    /// Adds a policy checkpoint read back from the state topic (see [`PolicyCheckpoint`]); it
    /// applies to the model's versions created from now on.
    pub fn add_checkpoint(&mut self, c: PolicyCheckpoint) {
        self.checkpoints.insert(c.model_id.clone(), c);
    }

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

    /// Index of an input's state, created on first use.
    #[inline]
    fn input_index(&mut self, topic: &str, partition: i32, kind: EventKind) -> usize {
        if let Some(i) = self.inputs.get(self.last_input) {
            if i.partition == partition && i.kind == kind && !i.dropped && same_str(&i.topic, topic)
            {
                return self.last_input;
            }
        }
        let i = match self.inputs.iter().position(|i| {
            i.partition == partition && i.kind == kind && !i.dropped && i.topic == topic
        }) {
            Some(i) => i,
            None => {
                self.inputs.push(InputState {
                    topic: topic.to_string(),
                    partition,
                    kind,
                    clock: InputClock::default(),
                    held: Vec::new(),
                    idle: false,
                    dropped: false,
                    offsets: OffsetTracker::default(),
                });
                self.inputs.len() - 1
            }
        };
        self.last_input = i;
        i
    }

    /// Announces an input that will deliver `kind` events (a partition just assigned): until
    /// it delivers an event or is reported idle, no window closes, since its events may belong
    /// to any model.
    pub fn expect_input(&mut self, topic: &str, partition: i32, kind: EventKind) {
        self.input_index(topic, partition, kind);
    }

    /// Whether an input has nothing left to fetch. An idle input does not hold watermarks back.
    pub fn set_idle(&mut self, topic: &str, partition: i32, idle: bool, out: &mut Vec<Output>) {
        let Some(i) = self
            .inputs
            .iter()
            .position(|i| !i.dropped && i.partition == partition && i.topic == topic)
        else {
            return;
        };
        if self.inputs[i].idle == idle {
            return;
        }
        self.inputs[i].idle = idle;
        if idle {
            if let Some(d) = self.inputs[i].clock.on_idle(self.max_skew_ms) {
                self.resolve_held(i, d, out);
            }
            self.advance(out);
        }
    }

    /// The live inputs: where each stands in event time and in offsets (the source pauses
    /// those that run ahead and tells which have nothing left to fetch).
    pub fn inputs(&self) -> impl Iterator<Item = InputView<'_>> {
        self.inputs
            .iter()
            .filter(|i| !i.dropped)
            .map(|i| InputView {
                topic: &i.topic,
                partition: i.partition,
                kind: i.kind,
                clock: i.clock.floor(),
                idle: i.idle,
                next_offset: i.offsets.last().map(|o| o + 1),
            })
    }

    /// Forgets a revoked input, and every model it fed (their new owner rebuilds them from the
    /// committed offsets).
    pub fn drop_input(&mut self, topic: &str, partition: i32) {
        let dropped: Vec<u32> = self
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, i)| !i.dropped && i.partition == partition && i.topic == topic)
            .map(|(n, _)| n as u32)
            .collect();
        for &n in &dropped {
            let inp = &mut self.inputs[n as usize];
            inp.dropped = true;
            inp.held.clear();
            inp.offsets = OffsetTracker::default();
        }
        let first_freed = self.free_models.len();
        for (mi, slot) in self.models.iter_mut().enumerate() {
            if slot
                .as_ref()
                .is_some_and(|m| m.feeders.iter().any(|f| dropped.contains(f)))
            {
                let m = slot.take().expect("checked");
                self.model_index.remove(&m.model_id);
                self.free_models.push(mi);
                // Its new owner exports it from now on.
                if let Some(t) = &self.telemetry {
                    t.forget_model(&m.model_id);
                }
            }
        }
        // Their slots may be reused: labels must not join a newcomer's versions.
        let freed = &self.free_models[first_freed..];
        if !freed.is_empty() {
            self.joins
                .retain_pending(|p| !freed.contains(&(p.model as usize)));
        }
        if self.inputs.iter().all(|i| i.dropped) {
            // Nothing left: start afresh (indices in the join buffer refer to dropped models).
            if let Some(t) = &self.telemetry {
                for m in self.models.iter().flatten() {
                    t.forget_model(&m.model_id);
                }
            }
            self.inputs.clear();
            self.models.clear();
            self.free_models.clear();
            self.model_index.clear();
            self.joins = JoinBuffer::default();
        }
        self.last_input = 0;
        self.last_model = 0;
    }

    /// Keeps `offset` of a prediction input from being committed until
    /// [`Monitor::release_offset`]: a message an input format holds outside the monitor (half
    /// of a KServe inference waiting for the other half).
    pub fn hold_offset(&mut self, topic: &str, partition: i32, offset: i64) {
        let ii = self.input_index(topic, partition, EventKind::Prediction);
        self.inputs[ii].offsets.pin(offset);
    }

    /// Releases an offset held by [`Monitor::hold_offset`] (or never held): the message is
    /// done with.
    pub fn release_offset(&mut self, topic: &str, partition: i32, offset: i64) {
        // Never creates an input: one revoked meanwhile stays dropped.
        if let Some(inp) = self.inputs.iter_mut().find(|i| {
            !i.dropped
                && i.partition == partition
                && i.kind == EventKind::Prediction
                && i.topic == topic
        }) {
            inp.offsets.unpin(offset);
            inp.offsets.note(None, offset);
        }
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
        let kind_label = input.kind.map(EventKind::as_str).unwrap_or("file");
        self.counts.event(kind_label, "dead_letter");
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
        if outcome != "waiting" {
            // Counted when it leaves the queue.
            self.counts.event(kind.as_str(), outcome);
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

    /// Applies one admitted event; `from_waiting` when it comes out of a bootstrapping
    /// version's waiting predictions.
    fn apply(
        &mut self,
        ii: usize,
        e: &Event<'_>,
        input: Input<'_>,
        from_waiting: bool,
    ) -> &'static str {
        let origin = Origin {
            input: ii as u32,
            offset: input.offset,
        };
        let (outcome, pane) = match e.kind {
            EventKind::Prediction => self.apply_prediction(e, input, origin, from_waiting),
            EventKind::Label => self.apply_label(e, origin),
            EventKind::Features => self.apply_features(e, origin),
        };
        if !matches!(outcome, "held" | "waiting") {
            self.inputs[ii].offsets.note(pane, input.offset);
        }
        outcome
    }

    /// Feeds the predictions waiting in bootstrapping versions to them, earliest first, as far
    /// as each model's watermark allows (all of them at the end of a replay); once a version
    /// is active, the rest of its waiting predictions are recorded into its window. A version
    /// with more than four times `baseline.bootstrap_events` waiting (a model whose watermark
    /// does not move) is fed its earliest regardless.
    fn release_waiting(&mut self, at_end: bool) {
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
    fn release_model(&mut self, mi: usize, watermark: i64) {
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
    fn warn_overflow(&mut self, mi: usize) {
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

    fn apply_waiting(&mut self, w: Waiting) {
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
        self.counts.event(EventKind::Prediction.as_str(), outcome);
    }

    fn apply_prediction(
        &mut self,
        e: &Event<'_>,
        input: Input<'_>,
        origin: Origin,
        from_waiting: bool,
    ) -> (&'static str, Option<i64>) {
        let Some(mi) = self.model_slot(&e.model_id, e.timestamp_ms) else {
            return ("limit", None);
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
                    return ("limit", None);
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
        if outcome == "waiting" {
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
            return ("waiting", None);
        }
        if no_slot_left && model.established() {
            counts.limit_for("models", 1, format_args!("{}", e.model_id));
            self.evict_model(mi, EvictionReason::Capacity);
            return ("limit", None);
        }
        if outcome == "bootstrapped" {
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
        if outcome == "recorded" {
            model.versions[vi]
                .recent
                .push(e.timestamp_ms, input.payload);
        }
        if !matches!(outcome, "recorded" | "bootstrap" | "bootstrapped") {
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
    fn hold_early<T: Held>(
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
    fn release_evicted(&mut self) {
        for o in self.evicted.drain(..) {
            if let Some(inp) = self.inputs.get_mut(o.input as usize) {
                inp.offsets.unpin(o.offset);
                inp.offsets.note(None, o.offset);
            }
        }
    }

    fn apply_label(&mut self, e: &Event<'_>, origin: Origin) -> (&'static str, Option<i64>) {
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
            return ("held", None);
        };
        let Some(v) = pending_version(&mut self.models, &mut self.counts, &p, origin.input) else {
            return ("unjoined", None);
        };
        let l = LabelRef {
            ts: e.timestamp_ms,
            label: e.label.as_deref(),
            value: e.value,
        };
        record_label(v, &p, l, &mut self.counts)
    }

    fn apply_features(&mut self, e: &Event<'_>, origin: Origin) -> (&'static str, Option<i64>) {
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
            return ("held", None);
        };
        let Some(v) = pending_version(&mut self.models, &mut self.counts, &p, origin.input) else {
            return ("unjoined", None);
        };
        record_late_features(v, p.ts, &e.features, &mut self.counts)
    }

    /// Index of model `model_id`, created for an event at `ts` when new and there is room
    /// (see `limits.max_models` and `limits.max_bootstrapping_models`).
    fn model_slot(&mut self, model_id: &str, ts: i64) -> Option<usize> {
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
    fn established_models(&self, except: usize) -> usize {
        self.models
            .iter()
            .enumerate()
            .filter(|(i, m)| *i != except && m.as_ref().is_some_and(ModelState::established))
            .count()
    }

    /// Stops monitoring model `mi`: its slot is freed, its series removed, its pending
    /// predictions forgotten (their labels will count as join misses) and its waiting
    /// predictions given up (their offsets may be committed).
    fn evict_model(&mut self, mi: usize, reason: EvictionReason) {
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
    fn evict_version(&mut self, mi: usize, vi: usize, reason: EvictionReason) {
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
    fn give_up_waiting(&mut self, waiting: std::collections::BinaryHeap<Waiting>) {
        for w in waiting {
            self.counts.event(EventKind::Prediction.as_str(), "evicted");
            if let Some(inp) = self.inputs.get_mut(w.origin.input as usize) {
                inp.offsets.unpin(w.origin.offset);
                inp.offsets.note(None, w.origin.offset);
            }
        }
    }

    /// Evicts the models idle for `limits.model_idle` and the versions idle for
    /// `limits.version_idle` (each model keeping its most recently active one) behind the
    /// instance's event time; looked for once per slide of event time.
    fn evict_idle(&mut self) {
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

    fn close_windows(&mut self, out: &mut Vec<Output>, at_end: bool) {
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
                let Some(idx) = v.policy.apply(cfg, ev, out_clock, ledger, out) else {
                    continue;
                };
                let (Some(writer), Phase::Active(a), Some(Output::Trigger(t))) =
                    (&*snapshots, &v.phase, out.get_mut(idx))
                else {
                    continue;
                };
                let events = v.recent.between(ev.bounds.start_ms, ev.bounds.end_ms);
                let snapshot = match writer.write(
                    &model.model_id,
                    &v.version,
                    &t.trigger_id,
                    &a.profile,
                    events,
                ) {
                    Ok((path, rows)) => {
                        let mut s = serde_json::json!({
                            "format": "parquet",
                            "path": path.display().to_string(),
                            "events": rows,
                            "note": "the most recent events of the window, at most triggers.snapshot_events",
                        });
                        if let Some(url) = writer.upload(&path) {
                            s["url"] = serde_json::json!(url);
                        }
                        s
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "snapshot not written");
                        serde_json::json!({"error": e.to_string()})
                    }
                };
                t.evidence["snapshot"] = snapshot;
                // The input the trigger covers: offsets of the predictions in its window, per
                // prediction input of the model.
                let panes = (
                    ev.bounds.start_ms.div_euclid(slide_ms),
                    (ev.bounds.end_ms - 1).div_euclid(slide_ms),
                );
                let ranges: Vec<serde_json::Value> = model
                    .feeders
                    .iter()
                    .map(|&f| &inputs[f as usize])
                    .filter(|i| i.kind == EventKind::Prediction && !i.dropped)
                    .filter_map(|i| {
                        let (from, to) = i.offsets.range(panes.0, panes.1)?;
                        Some(serde_json::json!({
                            "topic": i.topic,
                            "partition": i.partition,
                            "from_offset": from,
                            "to_offset": to,
                        }))
                    })
                    .collect();
                match ranges.len() {
                    0 => {}
                    1 => t.evidence["input"] = ranges.into_iter().next().expect("one"),
                    _ => {
                        t.evidence["input"] = ranges[0].clone();
                        t.evidence["inputs"] = serde_json::Value::Array(ranges);
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn input(kind: EventKind, clock: Option<i64>, idle: bool) -> InputState {
        let mut c = InputClock::default();
        if let Some(t) = clock {
            for _ in 0..crate::state::clock::CONFIRM_EVENTS {
                c.admit(t, 60_000);
            }
            c.settle(60_000);
        }
        InputState {
            topic: kind.as_str().to_string(),
            partition: 0,
            kind,
            clock: c,
            held: Vec::new(),
            idle,
            dropped: false,
            offsets: OffsetTracker::default(),
        }
    }

    /// A monitor over 60 s windows sliding by 10 s, bootstrapping from 100 events, with
    /// `configure` applied and metrics exported.
    fn lifecycle_monitor(configure: impl FnOnce(&mut Config)) -> (Monitor, Telemetry) {
        let mut cfg = Config::default();
        cfg.window.length = std::time::Duration::from_secs(60);
        cfg.window.slide = std::time::Duration::from_secs(10);
        cfg.window.allowed_lateness = std::time::Duration::from_secs(5);
        cfg.window.min_events = 50;
        cfg.baseline.bootstrap_events = 100;
        cfg.limits.version_idle = std::time::Duration::from_secs(60);
        cfg.limits.model_idle = std::time::Duration::from_secs(120);
        configure(&mut cfg);
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        let telemetry = Telemetry::new();
        let monitor = Monitor::new(Arc::new(cfg), Baselines::default(), Clock::EventTime)
            .with_telemetry(telemetry.clone());
        (monitor, telemetry)
    }

    /// Feeds `payload` as the next line of one file.
    fn feed(m: &mut Monitor, offset: &mut i64, payload: &str) {
        *offset += 1;
        let input = Input {
            kind: None,
            topic: "events.jsonl",
            partition: 0,
            offset: *offset,
            payload: payload.as_bytes(),
        };
        let mut out = Vec::new();
        m.process(input, &mut out);
    }

    /// Predictions of `model`/`version` at 20 a second over `[from_s, to_s)`, ids
    /// `<model>-<version>-<ms>`.
    fn predictions(model: &str, version: &str, from_s: i64, to_s: i64) -> Vec<String> {
        (from_s * 20..to_s * 20)
            .map(|i| {
                let ms = i * 50;
                format!(
                    r#"{{"event_id":"{model}-{version}-{ms}","model_id":"{model}","model_version":"{version}","timestamp":"{}","features":{{"x":{}}},"prediction":{{"score":0.5,"label":1}}}}"#,
                    crate::event::format_rfc3339_ms(ms),
                    (i % 17) as f64
                )
            })
            .collect()
    }

    fn has_series(t: &Telemetry, labels: &str) -> bool {
        t.render()
            .lines()
            .any(|l| !l.starts_with('#') && l.contains(labels))
    }

    #[test]
    fn an_idle_model_is_evicted_its_series_removed_and_its_slot_given_to_the_next() {
        let (mut m, t) = lifecycle_monitor(|c| c.limits.max_models = 1);
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
        let (mut m, _) = lifecycle_monitor(|c| c.limits.max_bootstrapping_models = 4);
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
        let (mut m, _) = lifecycle_monitor(|c| c.limits.max_versions_per_model = 4);
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
        let (mut m, t) = lifecycle_monitor(|_| {});
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
        let joined = |m: &Monitor| {
            m.counts()
                .events
                .iter()
                .find(|((kind, outcome), _)| *kind == "label" && *outcome == "joined")
                .map_or(0, |(_, n)| *n)
        };
        assert_eq!(joined(&m), 1, "{:?}", m.counts());
    }

    #[test]
    fn watermarks_follow_the_predictions_and_wait_for_every_active_input() {
        use EventKind::{Label, Prediction};
        let all = [0, 1, 2];
        // Every input active: the slowest.
        let inputs = [
            input(Prediction, Some(10_000), false),
            input(Prediction, Some(12_000), false),
            input(Label, Some(9_000), false),
        ];
        assert_eq!(watermark_of(&inputs, &all), Some(9_000));
        // An active input without a clock holds everything.
        let inputs = [
            input(Prediction, Some(10_000), false),
            input(Prediction, None, false),
            input(Label, Some(9_000), false),
        ];
        assert_eq!(watermark_of(&inputs, &all), None);
        // An idle prediction partition does not hold back the active one.
        let inputs = [
            input(Prediction, Some(10_000), false),
            input(Prediction, Some(4_000), true),
            input(Label, Some(11_000), false),
        ];
        assert_eq!(watermark_of(&inputs, &all), Some(10_000));
        // Labels flowing while every prediction partition is idle do not carry the
        // watermark past the predictions.
        let inputs = [
            input(Prediction, Some(10_000), true),
            input(Prediction, Some(8_000), true),
            input(Label, Some(30_000), false),
        ];
        assert_eq!(watermark_of(&inputs, &all), Some(10_000));
        // Everything idle: the newest prediction.
        let inputs = [
            input(Prediction, Some(10_000), true),
            input(Prediction, Some(8_000), true),
            input(Label, Some(10_500), true),
        ];
        assert_eq!(watermark_of(&inputs, &all), Some(10_000));
        // Only the model's own inputs count.
        assert_eq!(watermark_of(&inputs, &[1]), Some(8_000));
    }
}
