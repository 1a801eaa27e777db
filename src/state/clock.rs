//! Event time of one input (a topic partition, or one kind of event in a replayed file).
//!
//! An input's clock is the newest event time it has delivered. Inputs are mostly in event-time
//! order, but a producer with a skewed clock, or one stray event dated years ahead, must not
//! move the clock for everyone: an event more than `max_skew` ahead of the clock is *held*
//! instead of admitted. [`CONFIRM_EVENTS`] held events in a row confirm a real jump (traffic
//! resumed after a gap): they are admitted and the clock moves. An admitted event arriving
//! while events are held breaks the run: the held events were outliers and are rejected
//! (dead-lettered as `future_timestamp` by the monitor).
//!
//! Before an input has a clock, its first [`CONFIRM_EVENTS`] events are held and the clock
//! starts at their median, so that an outlier among the first events cannot set it either.

/// Held events in a row that confirm a jump of the clock (and that start it).
pub const CONFIRM_EVENTS: usize = 16;

/// What to do with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Process it now; the clock includes it.
    Admit,
    /// Keep it aside (the caller stores it) until [`InputClock::take_decided`] says what it is.
    Hold,
}

/// What became of held events once the clock decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decided {
    /// Held positions (in the order they were held) to process now, in that order.
    pub admit: Vec<usize>,
    /// Held positions that were outliers.
    pub reject: Vec<usize>,
}

/// The clock of one input.
#[derive(Debug, Clone, Default)]
pub struct InputClock {
    /// Newest admitted event time; `None` until the clock has started.
    time: Option<i64>,
    /// Event times of the held events, in arrival order.
    held: Vec<i64>,
    /// A decision on the held events is ready.
    decided: bool,
}

impl InputClock {
    /// Newest admitted event time.
    pub fn time(&self) -> Option<i64> {
        self.time
    }

    /// The clock, or before it starts the earliest held event time: a lower bound of what the
    /// input will still admit (short of events far behind, which are late anyway).
    pub fn floor(&self) -> Option<i64> {
        self.time.or_else(|| self.held.iter().copied().min())
    }

    /// Whether events are held.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Admits or holds an event at `ts`. After a `Hold`, or an `Admit` while events were held,
    /// call [`InputClock::take_decided`].
    #[inline]
    pub fn admit(&mut self, ts: i64, max_skew_ms: i64) -> Admission {
        match self.time {
            Some(t) if ts <= t.saturating_add(max_skew_ms) => {
                if ts > t {
                    self.time = Some(ts);
                }
                if !self.held.is_empty() {
                    // The run of far-ahead events is broken: they were outliers.
                    self.decided = true;
                }
                Admission::Admit
            }
            _ => {
                self.held.push(ts);
                if self.held.len() >= CONFIRM_EVENTS {
                    self.decided = true;
                }
                Admission::Hold
            }
        }
    }

    /// Whether [`InputClock::take_decided`] has something to say.
    pub fn has_decision(&self) -> bool {
        self.decided
    }

    /// The decision on the held events, if one is ready (they are then no longer held).
    pub fn take_decided(&mut self, max_skew_ms: i64) -> Option<Decided> {
        if !self.decided {
            return None;
        }
        self.decided = false;
        Some(self.decide(max_skew_ms, false))
    }

    /// Decides on whatever is held because no more events will come (end of a replay):
    /// without a clock, it starts from what is held; with one, held events are rejected.
    pub fn settle(&mut self, max_skew_ms: i64) -> Decided {
        self.decided = false;
        self.decide(max_skew_ms, true)
    }

    /// Starts the clock from what is held when the input has nothing more to deliver for now
    /// (an input with fewer than [`CONFIRM_EVENTS`] events must not wait for more). A clock
    /// that has started keeps holding: a lone event far ahead stays suspect until a run
    /// confirms it or an ordinary event rejects it.
    pub fn on_idle(&mut self, max_skew_ms: i64) -> Option<Decided> {
        if self.time.is_none() && !self.held.is_empty() {
            self.decided = false;
            return Some(self.decide(max_skew_ms, true));
        }
        None
    }

    fn decide(&mut self, max_skew_ms: i64, at_end: bool) -> Decided {
        let held = std::mem::take(&mut self.held);
        let mut d = Decided::default();
        if held.is_empty() {
            return d;
        }
        let run_complete = held.len() >= CONFIRM_EVENTS;
        match self.time {
            // A full run confirms a jump; anything less was broken by an admitted event (or
            // the input ended) and was a run of outliers.
            Some(_) if run_complete => {
                // The run may itself contain an outlier far ahead of the rest: start from the
                // run's median, as for a new clock.
                self.start_from(&held, max_skew_ms, &mut d);
            }
            Some(_) => d.reject = (0..held.len()).collect(),
            None if run_complete || at_end => self.start_from(&held, max_skew_ms, &mut d),
            None => {
                // Not decided yet: keep holding.
                self.held = held;
            }
        }
        d
    }

    /// Starts (or restarts) the clock at the median of `held`: events up to `max_skew` past
    /// it are admitted, the rest rejected.
    fn start_from(&mut self, held: &[i64], max_skew_ms: i64, d: &mut Decided) {
        let mut sorted = held.to_vec();
        sorted.sort_unstable();
        let median = sorted[(sorted.len() - 1) / 2];
        let limit = median.saturating_add(max_skew_ms);
        let mut newest = self.time.unwrap_or(i64::MIN).max(median);
        for (i, &ts) in held.iter().enumerate() {
            if ts <= limit {
                newest = newest.max(ts);
                d.admit.push(i);
            } else {
                d.reject.push(i);
            }
        }
        self.time = Some(newest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: i64 = 60_000;

    /// Feeds `times` through a clock, returning (admitted in processing order, rejected).
    fn run(times: &[i64], settle: bool) -> (Vec<i64>, Vec<i64>) {
        let mut c = InputClock::default();
        let (mut admitted, mut rejected) = (Vec::new(), Vec::new());
        let mut held: Vec<i64> = Vec::new();
        for &ts in times {
            let a = c.admit(ts, SKEW);
            if a == Admission::Hold {
                held.push(ts);
            }
            // Held events are decided before an admitted one is processed.
            if let Some(d) = c.take_decided(SKEW) {
                admitted.extend(d.admit.iter().map(|&i| held[i]));
                rejected.extend(d.reject.iter().map(|&i| held[i]));
                held.clear();
            }
            if a == Admission::Admit {
                admitted.push(ts);
            }
        }
        if settle {
            let d = c.settle(SKEW);
            admitted.extend(d.admit.iter().map(|&i| held[i]));
            rejected.extend(d.reject.iter().map(|&i| held[i]));
        }
        (admitted, rejected)
    }

    #[test]
    fn an_ordered_stream_is_admitted_whole_and_in_order_after_the_start() {
        let times: Vec<i64> = (0..100).map(|i| i * 1000).collect();
        let (admitted, rejected) = run(&times, true);
        assert!(rejected.is_empty());
        assert_eq!(admitted, times);
    }

    #[test]
    fn a_stray_event_years_ahead_is_rejected_wherever_it_stands() {
        let far = 10 * 365 * 86_400_000i64;
        for at in [0, 3, 15, 16, 50, 99] {
            let mut times: Vec<i64> = (0..100).map(|i| i * 1000).collect();
            times.insert(at, far);
            let (admitted, rejected) = run(&times, true);
            assert_eq!(rejected, vec![far], "stray event at {at}");
            assert_eq!(admitted.len(), 100, "stray event at {at}");
        }
    }

    #[test]
    fn scattered_events_minutes_ahead_are_rejected() {
        let mut times = Vec::new();
        let mut outliers = Vec::new();
        for i in 0..2000i64 {
            if i % 100 == 37 {
                outliers.push(i * 100 + 300_000);
                times.push(i * 100 + 300_000);
            } else {
                times.push(i * 100);
            }
        }
        let (admitted, rejected) = run(&times, true);
        assert_eq!(rejected, outliers);
        assert_eq!(admitted.len(), 2000 - outliers.len());
    }

    #[test]
    fn a_real_jump_is_confirmed_by_a_run_and_nothing_is_lost() {
        let mut times: Vec<i64> = (0..50).map(|i| i * 1000).collect();
        // Traffic resumes two hours later.
        times.extend((0..50).map(|i| 7_200_000 + i * 1000));
        let (admitted, rejected) = run(&times, true);
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(admitted, times);
    }

    #[test]
    fn a_short_input_starts_its_clock_when_idle() {
        let mut c = InputClock::default();
        assert_eq!(c.admit(5_000, SKEW), Admission::Hold);
        assert_eq!(c.admit(6_000, SKEW), Admission::Hold);
        assert!(c.take_decided(SKEW).is_none());
        let d = c.on_idle(SKEW).expect("starts");
        assert_eq!(d.admit, vec![0, 1]);
        assert_eq!(c.time(), Some(6_000));
        // Once started, a lone far event stays held when idle.
        assert_eq!(c.admit(9_000_000, SKEW), Admission::Hold);
        assert!(c.on_idle(SKEW).is_none());
        assert!(c.holding());
    }
}
