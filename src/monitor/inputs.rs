//! Inputs: one per topic partition (or kind of event in a file), each with its own clock, the
//! messages the clock holds and the offsets still needed; a model's watermark is made of them.

use super::*;

/// A message held by its input's clock until the clock decides about it.
#[derive(Debug)]
pub(super) struct HeldMessage {
    pub(super) offset: i64,
    pub(super) payload: Vec<u8>,
}

/// One input: a topic partition (or one kind of event in a file).
#[derive(Debug)]
pub(super) struct InputState {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) kind: EventKind,
    pub(super) clock: InputClock,
    /// Messages held by the clock, in the order it holds their times.
    pub(super) held: Vec<HeldMessage>,
    /// Nothing left to fetch (told by the source; a file's inputs are never idle).
    pub(super) idle: bool,
    /// Revoked: kept so that indices stay valid, ignored otherwise.
    pub(super) dropped: bool,
    pub(super) offsets: OffsetTracker,
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

/// Event time a model's inputs have all reached, the watermark before lateness; `None` while
/// one of them, not idle, has no clock yet.
///
/// A model's windows are made of its predictions: prediction inputs that are idle do not hold
/// it back while another prediction input is active, and when every prediction input is idle
/// it stands at the newest of them. Label and feature inputs hold it back while active, but
/// never carry it past the predictions: labels of a resumed stream often reach the broker
/// before their predictions, and an idle prediction partition must not let them close the
/// windows its next predictions belong to.
pub(super) fn watermark_of(inputs: &[InputState], feeders: &[u32]) -> Option<i64> {
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

impl Monitor {
    /// Index of an input's state, created on first use.
    #[inline]
    pub(super) fn input_index(&mut self, topic: &str, partition: i32, kind: EventKind) -> usize {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::clock::InputClock;

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
