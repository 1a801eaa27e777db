//! Consuming in event-time order across topics and partitions.
//!
//! The broker delivers whichever partition it fetched first; a file has one order, a consumer
//! group has many. Two rules make the live service see what a replay of the same events sees:
//!
//! - **Idle inputs.** An input (topic partition) whose position has stayed at its high
//!   watermark for `kafka.idle_after` has nothing left to fetch: it is reported idle and does
//!   not hold the watermarks back. One with data still to fetch does, however slowly it arrives
//!   (Kafka Streams' `max.task.idle.ms` rule); so does one read up to the producers' head,
//!   which is empty for a moment many times a second.
//! - **Pausing.** An input whose event time runs more than `kafka.max_time_ahead` ahead of the
//!   slowest input that still has data is paused, and resumed once it is within half of that,
//!   so that what is buffered ahead of the watermarks (panes of future windows, labels waiting
//!   for their predictions) stays bounded when one topic is far ahead.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::EventKind;
pub use crate::monitor::Fill;
use crate::monitor::InputView;

/// A topic partition.
pub type Tp = (String, i32);

/// Pause and resume decisions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Inputs to pause.
    pub pause: Vec<Tp>,
    /// Inputs to resume.
    pub resume: Vec<Tp>,
}

/// Which inputs to pause and which to resume, given where each stands and which are paused.
///
/// Prediction inputs are kept within `max_ahead_ms` of the slowest prediction input with data
/// (resumed once within half of it). While a bootstrapping model's waiting predictions are
/// over half their cap (`bootstrap` high), every prediction input ahead of the slowest input
/// with data of any kind (labels and features hold watermarks back too), or all of them while
/// an input with data has delivered nothing yet, is paused, and resumed once it is the
/// slowest or the queue is under a quarter full: the baseline is the first events in event
/// time, not the first fetched. Label and feature inputs run ahead of the predictions by
/// nature (a label comes after its prediction) and cost memory only while they wait for
/// predictions not read yet: those ahead of the slowest prediction input are paused when the
/// waiting buffers are over half full (`joins` high), and resumed under a quarter.
pub fn plan(
    inputs: &[InputView<'_>],
    paused: &BTreeSet<Tp>,
    max_ahead_ms: i64,
    joins: Fill,
    bootstrap: Fill,
) -> Plan {
    let predictions = || {
        inputs
            .iter()
            .filter(|i| !i.idle && i.kind == EventKind::Prediction)
    };
    let slowest = predictions().filter_map(|i| i.clock).min();
    // What holds the watermarks back: the slowest input with data of any kind, or one that has
    // delivered nothing yet (it may hold the earliest events).
    let active = || inputs.iter().filter(|i| !i.idle);
    let holder = active().filter_map(|i| i.clock).min();
    let unread = active().any(|i| i.clock.is_none());
    let mut plan = Plan::default();
    for i in inputs {
        // Runs after every batch: an owned key only for an input that changes state.
        let is_paused = paused
            .iter()
            .any(|(t, p)| *p == i.partition && t == i.topic);
        let (pause, resume) = match (slowest, i.clock) {
            (Some(s), Some(t)) if !i.idle && i.kind == EventKind::Prediction => {
                let ahead = unread || holder.is_some_and(|h| t > h);
                (
                    t > s.saturating_add(max_ahead_ms) || (ahead && bootstrap == Fill::High),
                    t <= s.saturating_add(max_ahead_ms / 2) && (!ahead || bootstrap == Fill::Low),
                )
            }
            (Some(s), Some(t)) if !i.idle => {
                (t > s && joins == Fill::High, t <= s || joins == Fill::Low)
            }
            // Nothing to wait for (no prediction input with data), or nothing known of this one.
            _ => (false, true),
        };
        if pause && !is_paused {
            plan.pause.push((i.topic.to_string(), i.partition));
        } else if resume && is_paused {
            plan.resume.push((i.topic.to_string(), i.partition));
        }
    }
    // Inputs paused and since revoked or gone are forgotten by the caller.
    plan
}

/// Where inputs stand against the ends of their partitions.
#[derive(Debug, Default)]
pub struct Positions {
    /// Where each assigned input starts, for inputs that delivered nothing yet (its committed
    /// offset, or where `auto.offset.reset` puts it).
    start: BTreeMap<Tp, i64>,
    /// Since when each input has been seen at its end.
    at_end: BTreeMap<Tp, std::time::Instant>,
}

impl Positions {
    /// Notes where an assigned input starts.
    pub fn assigned(&mut self, tp: Tp, start: i64) {
        self.start.insert(tp, start);
    }

    /// Where an input that delivered nothing yet starts.
    pub fn start(&self, topic: &str, partition: i32) -> Option<i64> {
        self.start.get(&(topic.to_string(), partition)).copied()
    }

    /// Forgets a revoked input.
    pub fn revoked(&mut self, tp: &Tp) {
        self.start.remove(tp);
        self.at_end.remove(tp);
    }

    /// Whether `input` is idle at `now`: it has had nothing left to fetch (its position at the
    /// high watermark of its partition, `high`) for at least `idle_after`. `None` when that is
    /// not known.
    pub fn idle(
        &mut self,
        input: &InputView<'_>,
        high: Option<i64>,
        now: std::time::Instant,
        idle_after: std::time::Duration,
    ) -> Option<bool> {
        let tp = (input.topic.to_string(), input.partition);
        let position = input.next_offset.or_else(|| self.start.get(&tp).copied())?;
        if position < high? {
            self.at_end.remove(&tp);
            return Some(false);
        }
        if input.idle {
            // Still at its end (or assigned empty): stays idle.
            return Some(true);
        }
        let since = *self.at_end.entry(tp).or_insert(now);
        Some(now.duration_since(since) >= idle_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(topic: &str, partition: i32, clock: Option<i64>, idle: bool) -> InputView<'_> {
        let kind = match topic {
            "labels" => EventKind::Label,
            "features" => EventKind::Features,
            _ => EventKind::Prediction,
        };
        InputView {
            topic,
            partition,
            kind,
            clock,
            idle,
            next_offset: None,
        }
    }

    fn tp(t: &str, p: i32) -> Tp {
        (t.to_string(), p)
    }

    #[test]
    fn a_prediction_partition_far_ahead_of_the_slowest_is_paused_until_it_catches_up() {
        let none = BTreeSet::new();
        let inputs = [
            view("predictions", 0, Some(1_000), false),
            view("predictions", 1, Some(12_001), false),
            view("features", 0, None, false),
        ];
        let p = plan(&inputs, &none, 10_000, Fill::Low, Fill::Low);
        assert_eq!(p.pause, vec![tp("predictions", 1)]);
        assert!(p.resume.is_empty());

        let paused: BTreeSet<Tp> = [tp("predictions", 1)].into();
        // Still more than half the allowance ahead: stays paused.
        let inputs = [
            view("predictions", 0, Some(6_000), false),
            view("predictions", 1, Some(12_001), false),
        ];
        assert_eq!(
            plan(&inputs, &paused, 10_000, Fill::Low, Fill::Low),
            Plan::default()
        );
        let inputs = [
            view("predictions", 0, Some(7_001), false),
            view("predictions", 1, Some(12_001), false),
        ];
        let p = plan(&inputs, &paused, 10_000, Fill::Low, Fill::Low);
        assert_eq!(p.resume, vec![tp("predictions", 1)]);
    }

    #[test]
    fn labels_ahead_are_paused_only_while_the_labels_waiting_for_predictions_pile_up() {
        let none = BTreeSet::new();
        let inputs = [
            view("predictions", 0, Some(1_000), false),
            view("labels", 0, Some(61_000), false),
        ];
        // A minute ahead, as labels are, costs nothing while they find their predictions.
        assert_eq!(
            plan(&inputs, &none, 10_000, Fill::Low, Fill::Low),
            Plan::default()
        );
        assert_eq!(
            plan(&inputs, &none, 10_000, Fill::Some, Fill::Low),
            Plan::default()
        );
        let p = plan(&inputs, &none, 10_000, Fill::High, Fill::Low);
        assert_eq!(p.pause, vec![tp("labels", 0)]);
        let paused: BTreeSet<Tp> = [tp("labels", 0)].into();
        assert_eq!(
            plan(&inputs, &paused, 10_000, Fill::Some, Fill::Low),
            Plan::default()
        );
        assert_eq!(
            plan(&inputs, &paused, 10_000, Fill::Low, Fill::Low).resume,
            vec![tp("labels", 0)]
        );
        // Caught up with the predictions: resumed whatever is held.
        let inputs = [
            view("predictions", 0, Some(61_000), false),
            view("labels", 0, Some(61_000), false),
        ];
        assert_eq!(
            plan(&inputs, &paused, 10_000, Fill::High, Fill::Low).resume,
            vec![tp("labels", 0)]
        );
    }

    #[test]
    fn while_a_bootstrap_queue_fills_only_the_slowest_prediction_input_is_read() {
        let none = BTreeSet::new();
        let inputs = [
            view("predictions", 0, Some(1_000), false),
            view("predictions", 1, Some(9_000), false),
            view("predictions", 2, Some(30_000), true),
            view("labels", 0, Some(20_000), false),
        ];
        // Within the allowance: nothing paused until the queue is over half full.
        assert_eq!(
            plan(&inputs, &none, 60_000, Fill::Low, Fill::Some),
            Plan::default()
        );
        let p = plan(&inputs, &none, 60_000, Fill::Low, Fill::High);
        assert_eq!(p.pause, vec![tp("predictions", 1)]);
        let paused: BTreeSet<Tp> = [tp("predictions", 1)].into();
        // Still ahead while the queue drains: stays paused until it is under a quarter.
        assert_eq!(
            plan(&inputs, &paused, 60_000, Fill::Low, Fill::Some),
            Plan::default()
        );
        assert_eq!(
            plan(&inputs, &paused, 60_000, Fill::Low, Fill::Low).resume,
            vec![tp("predictions", 1)]
        );
        // Or until the slowest has passed it.
        let passed = [
            view("predictions", 0, Some(9_500), false),
            view("predictions", 1, Some(9_000), false),
        ];
        assert_eq!(
            plan(&passed, &paused, 60_000, Fill::Low, Fill::High).resume,
            vec![tp("predictions", 1)]
        );
        // A slow label input holds the watermarks back as much.
        let slow_labels = [
            view("predictions", 0, Some(1_000), false),
            view("labels", 0, Some(500), false),
        ];
        let p = plan(&slow_labels, &none, 60_000, Fill::Low, Fill::High);
        assert_eq!(p.pause, vec![tp("predictions", 0)]);
        // An input with data that has delivered nothing yet may hold the earliest events:
        // every other prediction input waits for it.
        let unread = [
            view("predictions", 0, Some(1_000), false),
            view("predictions", 1, Some(9_000), false),
            view("predictions", 3, None, false),
        ];
        let p = plan(&unread, &none, 60_000, Fill::Low, Fill::High);
        assert_eq!(p.pause, vec![tp("predictions", 0), tp("predictions", 1)]);
    }

    #[test]
    fn idle_inputs_neither_hold_others_back_nor_stay_paused() {
        // The slow input has nothing left: nobody is paused for it.
        let inputs = [
            view("predictions", 0, Some(1_000), true),
            view("predictions", 1, Some(50_000), false),
        ];
        assert_eq!(
            plan(&inputs, &BTreeSet::new(), 10_000, Fill::High, Fill::Low),
            Plan::default()
        );
        // A paused input is resumed once the slowest with data is within reach, or gone.
        let paused: BTreeSet<Tp> = [tp("predictions", 1)].into();
        assert_eq!(
            plan(&inputs, &paused, 10_000, Fill::Low, Fill::Low).resume,
            vec![tp("predictions", 1)]
        );
        let alone = [view("predictions", 1, Some(50_000), true)];
        assert_eq!(
            plan(&alone, &paused, 10_000, Fill::Low, Fill::Low).resume,
            vec![tp("predictions", 1)]
        );
    }

    #[test]
    fn an_input_is_idle_once_its_position_stayed_at_the_high_watermark() {
        use std::time::{Duration, Instant};
        let after = Duration::from_secs(3);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut pos = Positions::default();
        let fresh = view("labels", 2, None, false);
        // Nothing known yet.
        assert_eq!(pos.idle(&fresh, Some(10), at(0), after), None);
        pos.assigned(tp("labels", 2), 10);
        assert_eq!(pos.idle(&fresh, Some(10), at(0), after), Some(false));
        assert_eq!(pos.idle(&fresh, Some(10), at(2), after), Some(false));
        assert_eq!(pos.idle(&fresh, Some(10), at(3), after), Some(true));
        assert_eq!(pos.idle(&fresh, None, at(4), after), None);
        // Data again: not idle, and the wait starts over.
        assert_eq!(pos.idle(&fresh, Some(11), at(5), after), Some(false));
        let seen = InputView {
            next_offset: Some(11),
            ..fresh
        };
        assert_eq!(pos.idle(&seen, Some(11), at(6), after), Some(false));
        assert_eq!(pos.idle(&seen, Some(11), at(9), after), Some(true));
        pos.revoked(&tp("labels", 2));
        assert_eq!(pos.idle(&fresh, Some(10), at(9), after), None);
        // Assigned with nothing to fetch, so idle at once: stays idle while at its end.
        pos.assigned(tp("labels", 2), 10);
        let empty = InputView {
            idle: true,
            ..fresh
        };
        assert_eq!(pos.idle(&empty, Some(10), at(10), after), Some(true));
        assert_eq!(pos.idle(&empty, Some(12), at(11), after), Some(false));
    }
}
