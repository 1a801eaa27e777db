//! Event-time sliding windows made of panes.
//!
//! A window of length W sliding every S is W/S panes. Each pane holds a mergeable summary.
//! Closing a pane merges it into the window aggregate and un-merges the pane that falls out, so a
//! slide costs O(summary size), never O(events). Panes close when the watermark passes their
//! end; events for a closed pane are late: counted by the caller, never mixed in.

use std::collections::{BTreeMap, VecDeque};

/// A summary that can be added to and subtracted from an aggregate.
pub trait PaneSummary {
    /// Called once when the pane closes, before it is merged into the window: a summary that
    /// buffers work (see `NumericPane`) completes it here so that the pane is merged and later
    /// un-merged in its final form.
    fn seal(&mut self) {}
    /// Adds `other` into `self`.
    fn merge(&mut self, other: &Self);
    /// Subtracts `other`, previously merged, from `self`.
    fn unmerge(&mut self, other: &Self);
    /// Number of events recorded.
    fn count(&self) -> u64;
}

/// The bounds of an evaluated window, epoch milliseconds, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowBounds {
    /// First millisecond covered.
    pub start_ms: i64,
    /// First millisecond after the window.
    pub end_ms: i64,
    /// Events in the window.
    pub count: u64,
    /// Whether every pane of the window was closed after the window started (a window that
    /// began before the version's baseline existed, or before the first event, is partial).
    #[serde(default)]
    pub full: bool,
}

impl From<WindowBounds> for crate::output::WindowRef {
    fn from(b: WindowBounds) -> Self {
        crate::output::WindowRef {
            start: crate::event::format_rfc3339_ms(b.start_ms),
            end: crate::event::format_rfc3339_ms(b.end_ms),
            count: b.count,
        }
    }
}

/// Sliding window over panes of summary `P`.
#[derive(Debug)]
pub struct SlidingWindow<P> {
    slide_ms: i64,
    panes_per_window: usize,
    /// Panes not yet closed, by pane index (event time / slide).
    open: BTreeMap<i64, P>,
    /// The last closed panes, oldest first, at most `panes_per_window`.
    ring: VecDeque<(i64, P)>,
    aggregate: P,
    /// Lowest pane index that is not closed yet; `None` before the first event.
    next_to_close: Option<i64>,
    /// An empty summary, cloned for every new pane.
    empty: P,
    /// Panes closed since the window was created, capped at `panes_per_window`.
    closed: usize,
    /// The pane of the last event placed, `(index, start_ms, end_ms)`: events mostly fall in
    /// the pane of the one before, whose index then needs no division.
    last: (i64, i64, i64),
}

impl<P: PaneSummary + Clone> SlidingWindow<P> {
    /// A window of `panes_per_window` panes of `slide_ms` each; `empty` is cloned for new panes.
    pub fn new(slide_ms: i64, panes_per_window: usize, empty: P) -> Self {
        assert!(slide_ms > 0 && panes_per_window > 0);
        Self {
            slide_ms,
            panes_per_window,
            open: BTreeMap::new(),
            ring: VecDeque::with_capacity(panes_per_window + 1),
            aggregate: empty.clone(),
            next_to_close: None,
            empty,
            closed: 0,
            // (no pane yet: an index no event time gives in practice, an empty range)
            last: (i64::MIN, 1, 0),
        }
    }

    /// Pane index of an event time.
    #[inline]
    pub fn pane_of(&self, ts_ms: i64) -> i64 {
        let (idx, start, end) = self.last;
        if start <= ts_ms && ts_ms < end {
            idx
        } else {
            ts_ms.div_euclid(self.slide_ms)
        }
    }

    /// The open pane that an event at `ts_ms` belongs to, or `None` if that pane is closed
    /// (the event is late).
    pub fn pane_mut(&mut self, ts_ms: i64) -> Option<&mut P> {
        let idx = self.pane_of(ts_ms);
        if idx != self.last.0 {
            // Remembered for the next events (unless its bounds overflow).
            let start = idx.checked_mul(self.slide_ms);
            if let Some(end) = start.and_then(|s| s.checked_add(self.slide_ms)) {
                self.last = (idx, end - self.slide_ms, end);
            }
        }
        // Late only once the watermark has passed the pane: before the first close, an event
        // of an earlier pane than the first one seen is as welcome as any.
        if self.next_to_close.is_some_and(|n| idx < n) {
            return None;
        }
        let empty = &self.empty;
        Some(self.open.entry(idx).or_insert_with(|| empty.clone()))
    }

    /// Closes every pane that ends at or before `watermark_ms`, calling `on_close` with each
    /// resulting window (bounds and aggregate) whose aggregate holds at least one event.
    pub fn close_until(&mut self, watermark_ms: i64, mut on_close: impl FnMut(WindowBounds, &P)) {
        let Some(mut next) = self
            .next_to_close
            .or_else(|| self.open.keys().next().copied())
        else {
            return;
        };
        // Panes [next, last] are closable: their end (idx + 1) * slide <= watermark.
        let last = watermark_ms.div_euclid(self.slide_ms) - 1;
        while next <= last {
            // After a gap longer than a window, skip straight to the panes that matter.
            let first_open = self.open.keys().next().copied();
            if self.aggregate.count() == 0 && self.ring.iter().all(|(_, p)| p.count() == 0) {
                let jump_to = first_open.unwrap_or(last + 1).min(last + 1);
                if jump_to > next {
                    self.ring.clear();
                    self.aggregate = self.empty.clone();
                    next = jump_to;
                    continue;
                }
            }
            let mut pane = match self.open.remove(&next) {
                Some(p) => p,
                None => self.empty.clone(),
            };
            pane.seal();
            self.aggregate.merge(&pane);
            self.ring.push_back((next, pane));
            if self.ring.len() > self.panes_per_window {
                let (_, old) = self.ring.pop_front().expect("ring is not empty");
                self.aggregate.unmerge(&old);
            }
            self.closed = (self.closed + 1).min(self.panes_per_window);
            let bounds = WindowBounds {
                start_ms: (next + 1 - self.panes_per_window as i64) * self.slide_ms,
                end_ms: (next + 1) * self.slide_ms,
                count: self.aggregate.count(),
                full: self.closed == self.panes_per_window,
            };
            if bounds.count > 0 {
                on_close(bounds, &self.aggregate);
            }
            next += 1;
        }
        self.next_to_close = Some(next);
    }

    /// The current aggregate of closed panes.
    pub fn aggregate(&self) -> &P {
        &self.aggregate
    }

    /// Open (not yet closed) panes.
    pub fn open_panes(&self) -> usize {
        self.open.len()
    }

    /// Index of the oldest pane still needed: the oldest pane in the window ring, else the
    /// oldest open pane. Events in older panes are fully reflected in emitted outputs.
    pub fn oldest_needed_pane(&self) -> Option<i64> {
        self.ring
            .front()
            .map(|(i, _)| *i)
            .or_else(|| self.open.keys().next().copied())
            .or(self.next_to_close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Clone, PartialEq)]
    struct Sum {
        n: u64,
        total: i64,
    }

    impl PaneSummary for Sum {
        fn merge(&mut self, o: &Self) {
            self.n += o.n;
            self.total += o.total;
        }
        fn unmerge(&mut self, o: &Self) {
            self.n -= o.n;
            self.total -= o.total;
        }
        fn count(&self) -> u64 {
            self.n
        }
    }

    fn record(w: &mut SlidingWindow<Sum>, ts: i64) -> bool {
        match w.pane_mut(ts) {
            Some(p) => {
                p.n += 1;
                p.total += ts;
                true
            }
            None => false,
        }
    }

    /// Pane indices with the remembered last pane are those of the division, for times that
    /// stay in a pane, move on, go back and sit at the ends of the range.
    #[test]
    fn remembered_pane_matches_division() {
        let mut w = SlidingWindow::new(7, 3, Sum::default());
        let mut times: Vec<i64> = (-50..50).chain((-50..50).rev()).collect();
        times.extend([
            i64::MIN,
            i64::MIN + 3,
            i64::MAX,
            i64::MAX - 8,
            0,
            -1,
            6,
            7,
            -7,
            -8,
        ]);
        for ts in times {
            let want = ts.div_euclid(7);
            w.pane_mut(ts);
            assert_eq!(w.pane_of(ts), want, "{ts}");
            for near in [ts.saturating_sub(1), ts.saturating_add(1)] {
                assert_eq!(w.pane_of(near), near.div_euclid(7), "{near} after {ts}");
            }
        }
    }

    #[test]
    fn slides_equal_recomputation() {
        // slide 10 ms, window 3 panes = 30 ms.
        let mut w = SlidingWindow::new(10, 3, Sum::default());
        let times: Vec<i64> = (0..200).map(|i| (i * 37) % 7 + i).collect();
        let mut closed = Vec::new();
        for &t in &times {
            assert!(record(&mut w, t));
            w.close_until(t - 5, |b, agg| closed.push((b, agg.clone())));
        }
        w.close_until(i64::MAX / 2, |b, agg| closed.push((b, agg.clone())));
        assert!(!closed.is_empty());
        for (b, agg) in closed {
            let inside: Vec<i64> = times
                .iter()
                .copied()
                .filter(|&t| t >= b.start_ms && t < b.end_ms)
                .collect();
            assert_eq!(agg.n as usize, inside.len(), "{b:?}");
            assert_eq!(agg.total, inside.iter().sum::<i64>());
            assert_eq!(b.count, agg.n);
        }
    }

    #[test]
    fn late_events_are_refused() {
        let mut w = SlidingWindow::new(10, 2, Sum::default());
        assert!(record(&mut w, 5));
        assert!(record(&mut w, 25));
        w.close_until(20, |_, _| {});
        assert!(!record(&mut w, 15), "pane [10,20) is closed");
        assert!(record(&mut w, 20));
    }

    #[test]
    fn long_gaps_do_not_walk_every_pane() {
        let mut w = SlidingWindow::new(10, 2, Sum::default());
        record(&mut w, 0);
        record(&mut w, 10_000_000_000);
        let mut windows = 0;
        w.close_until(10_000_000_100, |_, _| windows += 1);
        // Two windows hold the first pane, two the far one; the empty gap is skipped.
        assert_eq!(windows, 4);
        assert_eq!(w.aggregate().n, 0);
    }
}
