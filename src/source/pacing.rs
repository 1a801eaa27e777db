//! Consuming in event-time order across topics and partitions.
//!
//! The broker delivers whichever partition it fetched first; a file has one order, a consumer
//! group has many. Two rules make the live service see what a replay of the same events sees:
//!
//! - **Idle inputs.** An input (topic partition) whose position has reached its high watermark
//!   has nothing left to fetch: it is reported idle and does not hold the watermarks back. One
//!   with data still to fetch does, however slowly it arrives (Kafka Streams'
//!   `max.task.idle.ms` rule).
//! - **Pausing.** An input whose event time runs more than `kafka.max_time_ahead` ahead of the
//!   slowest input that still has data is paused, and resumed once it is within half of that,
//!   so that what is buffered ahead of the watermarks (panes of future windows, labels waiting
//!   for their predictions) stays bounded when one topic is far ahead.

use std::collections::{BTreeMap, BTreeSet};

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
pub fn plan(inputs: &[InputView<'_>], paused: &BTreeSet<Tp>, max_ahead_ms: i64) -> Plan {
    let slowest = inputs
        .iter()
        .filter(|i| !i.idle)
        .filter_map(|i| i.clock)
        .min();
    let mut plan = Plan::default();
    for i in inputs {
        let tp = (i.topic.to_string(), i.partition);
        let is_paused = paused.contains(&tp);
        match (slowest, i.clock) {
            (Some(s), Some(t)) if !i.idle => {
                if !is_paused && t > s.saturating_add(max_ahead_ms) {
                    plan.pause.push(tp);
                } else if is_paused && t <= s.saturating_add(max_ahead_ms / 2) {
                    plan.resume.push(tp);
                }
            }
            // Nothing to wait for (no other input with data), or nothing known of this one.
            _ if is_paused => plan.resume.push(tp),
            _ => {}
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
}

impl Positions {
    /// Notes where an assigned input starts.
    pub fn assigned(&mut self, tp: Tp, start: i64) {
        self.start.insert(tp, start);
    }

    /// Forgets a revoked input.
    pub fn revoked(&mut self, tp: &Tp) {
        self.start.remove(tp);
    }

    /// Whether `input` has nothing left to fetch, given the high watermark of its partition;
    /// `None` when that is not known.
    pub fn idle(&self, input: &InputView<'_>, high: Option<i64>) -> Option<bool> {
        let position = input.next_offset.or_else(|| {
            self.start
                .get(&(input.topic.to_string(), input.partition))
                .copied()
        })?;
        Some(position >= high?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(topic: &str, partition: i32, clock: Option<i64>, idle: bool) -> InputView<'_> {
        InputView {
            topic,
            partition,
            clock,
            idle,
            next_offset: None,
        }
    }

    fn tp(t: &str, p: i32) -> Tp {
        (t.to_string(), p)
    }

    #[test]
    fn an_input_far_ahead_of_the_slowest_is_paused_and_resumed_when_it_catches_up() {
        let none = BTreeSet::new();
        let inputs = [
            view("predictions", 0, Some(1_000), false),
            view("labels", 0, Some(12_001), false),
            view("features", 0, None, false),
        ];
        let p = plan(&inputs, &none, 10_000);
        assert_eq!(p.pause, vec![tp("labels", 0)]);
        assert!(p.resume.is_empty());

        let paused: BTreeSet<Tp> = [tp("labels", 0)].into();
        // Still more than half the allowance ahead: stays paused.
        let inputs = [
            view("predictions", 0, Some(6_000), false),
            view("labels", 0, Some(12_001), false),
        ];
        assert_eq!(plan(&inputs, &paused, 10_000), Plan::default());
        let inputs = [
            view("predictions", 0, Some(7_001), false),
            view("labels", 0, Some(12_001), false),
        ];
        assert_eq!(plan(&inputs, &paused, 10_000).resume, vec![tp("labels", 0)]);
    }

    #[test]
    fn idle_inputs_neither_hold_others_back_nor_stay_paused() {
        // The slow input has nothing left: nobody is paused for it.
        let inputs = [
            view("predictions", 0, Some(1_000), true),
            view("labels", 0, Some(50_000), false),
        ];
        assert_eq!(plan(&inputs, &BTreeSet::new(), 10_000), Plan::default());
        // A paused input is resumed once the slowest with data is within reach, or gone.
        let paused: BTreeSet<Tp> = [tp("labels", 0)].into();
        assert_eq!(plan(&inputs, &paused, 10_000).resume, vec![tp("labels", 0)]);
        let alone = [view("labels", 0, Some(50_000), true)];
        assert_eq!(plan(&alone, &paused, 10_000).resume, vec![tp("labels", 0)]);
    }

    #[test]
    fn an_input_is_idle_when_its_position_reaches_the_high_watermark() {
        let mut pos = Positions::default();
        let fresh = view("labels", 2, None, false);
        // Nothing known yet.
        assert_eq!(pos.idle(&fresh, Some(10)), None);
        pos.assigned(tp("labels", 2), 10);
        assert_eq!(pos.idle(&fresh, Some(10)), Some(true));
        assert_eq!(pos.idle(&fresh, Some(11)), Some(false));
        assert_eq!(pos.idle(&fresh, None), None);
        // Once it delivered, its own position counts.
        let seen = InputView {
            next_offset: Some(11),
            ..fresh
        };
        assert_eq!(pos.idle(&seen, Some(11)), Some(true));
        pos.revoked(&tp("labels", 2));
        assert_eq!(pos.idle(&fresh, Some(10)), None);
    }
}
